//! Authorising Blob Storage requests: Shared Key signatures, SAS tokens and
//! Entra ID bearer tokens.
//!
//! Shared Key is what K8ssandra's `medusa_azure_credentials.json` and
//! connection strings hold, and what Azurite checks; the Azure SDK for Rust
//! does not offer it, which is one reason this backend is a thin client (see
//! `docs/storage.md`). The signature follows the Blob service's "Shared Key"
//! scheme: HMAC-SHA256 over the verb, the standard headers, the `x-ms-*`
//! headers and the canonicalised resource.

use std::sync::Arc;

use azure_core::credentials::TokenCredential;
use base64::Engine;
use hmac::{KeyInit, Mac};
use reqwest::Request;
use reqwest::header::{AUTHORIZATION, HeaderValue};

use crate::config::AzureCredentials;
use crate::storage::error::{Error, Result};

/// The scope of an Entra ID token for Azure Storage.
const STORAGE_SCOPE: &str = "https://storage.azure.com/.default";

/// How a request is authorised; built once per store.
#[derive(Clone)]
pub(crate) enum Auth {
    SharedKey { account: String, key: Vec<u8> },
    Sas { pairs: Vec<(String, String)> },
    Bearer(Arc<dyn TokenCredential>),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::SharedKey { .. } => "SharedKey(<redacted>)",
            Self::Sas { .. } => "Sas(<redacted>)",
            Self::Bearer(_) => "Bearer",
        })
    }
}

impl Auth {
    pub(crate) fn new(account: &str, credentials: &AzureCredentials) -> Result<Self> {
        Ok(match credentials {
            AzureCredentials::SharedKey { key } => Self::SharedKey {
                account: account.to_string(),
                key: key.clone(),
            },
            AzureCredentials::Sas { token } => Self::Sas {
                pairs: url::form_urlencoded::parse(token.as_bytes())
                    .into_owned()
                    .collect(),
            },
            AzureCredentials::Identity => Self::Bearer(identity_chain()?),
        })
    }

    pub(crate) fn is_sas(&self) -> bool {
        matches!(self, Self::Sas { .. })
    }

    /// Adds the query pairs of a SAS; call before the request is signed or
    /// sent. A SAS URL must never reach a message: transport errors are
    /// reported without their URL.
    pub(crate) fn add_query(&self, url: &mut url::Url) {
        if let Self::Sas { pairs } = self {
            url.query_pairs_mut().extend_pairs(pairs);
        }
    }

    /// Adds the `Authorization` header a request needs, if any. The request
    /// must be complete: its `x-ms-*` and standard headers are signed.
    pub(crate) async fn authorize(&self, request: &mut Request) -> Result<()> {
        let value = match self {
            Self::Sas { .. } => return Ok(()),
            Self::SharedKey { account, key } => {
                let signature = sign(key, &string_to_sign(account, request));
                format!("SharedKey {account}:{signature}")
            }
            Self::Bearer(credential) => {
                let token = credential
                    .get_token(&[STORAGE_SCOPE], None)
                    .await
                    .map_err(|e| Error::Denied {
                        operation: "authenticate",
                        key: String::new(),
                        message: format!("no Entra ID token for Azure Storage: {e}"),
                    })?;
                format!("Bearer {}", token.token.secret())
            }
        };
        let mut value = HeaderValue::from_str(&value)
            .map_err(|_| Error::setup("authorization header is not valid text"))?;
        value.set_sensitive(true);
        request.headers_mut().insert(AUTHORIZATION, value);
        Ok(())
    }
}

/// The Entra ID credential the environment describes, in the order of the
/// Azure identity libraries' default chain: a client secret
/// (`AZURE_CLIENT_SECRET`), workload identity (`AZURE_FEDERATED_TOKEN_FILE`,
/// as AKS injects it), else the managed identity (`AZURE_CLIENT_ID` selects
/// a user-assigned one). Developer tools (the Azure CLI) are left out: a
/// backup in a pod must not depend on a logged-in user.
fn identity_chain() -> Result<Arc<dyn TokenCredential>> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let failed = |what: &str, e: azure_core::Error| Error::setup(&format!("{what}: {e}"));
    if let (Some(tenant), Some(client), Some(secret)) = (
        env("AZURE_TENANT_ID"),
        env("AZURE_CLIENT_ID"),
        env("AZURE_CLIENT_SECRET"),
    ) {
        let credential =
            azure_identity::ClientSecretCredential::new(&tenant, client, secret.into(), None)
                .map_err(|e| failed("client secret credential (AZURE_CLIENT_SECRET)", e))?;
        return Ok(credential);
    }
    if env("AZURE_FEDERATED_TOKEN_FILE").is_some() {
        let credential = azure_identity::WorkloadIdentityCredential::new(None)
            .map_err(|e| failed("workload identity (AZURE_FEDERATED_TOKEN_FILE)", e))?;
        return Ok(credential);
    }
    let options =
        env("AZURE_CLIENT_ID").map(|id| azure_identity::ManagedIdentityCredentialOptions {
            user_assigned_id: Some(azure_identity::UserAssignedId::ClientId(id)),
            ..Default::default()
        });
    let credential = azure_identity::ManagedIdentityCredential::new(options)
        .map_err(|e| failed("managed identity", e))?;
    Ok(credential)
}

fn sign(key: &[u8], text: &str) -> String {
    // HMAC accepts keys of any length; this cannot fail.
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(text.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The Shared Key string-to-sign of a Blob service request (service
/// version 2009-09-19 and later).
fn string_to_sign(account: &str, request: &Request) -> String {
    let headers = request.headers();
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    };
    // An empty body is signed as an empty Content-Length, not "0".
    let length = match header("content-length") {
        "0" => "",
        other => other,
    };
    let mut text = format!(
        "{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n",
        request.method().as_str(),
        header("content-encoding"),
        header("content-language"),
        length,
        header("content-md5"),
        header("content-type"),
        header("date"),
        header("if-modified-since"),
        header("if-match"),
        header("if-none-match"),
        header("if-unmodified-since"),
        header("range"),
    );
    let mut ms: Vec<(String, &str)> = headers
        .iter()
        .filter(|(name, _)| name.as_str().starts_with("x-ms-"))
        .map(|(name, value)| {
            (
                name.as_str().to_string(),
                value.to_str().unwrap_or_default(),
            )
        })
        .collect();
    ms.sort();
    for (name, value) in ms {
        text.push_str(&name);
        text.push(':');
        text.push_str(value.trim());
        text.push('\n');
    }
    text.push('/');
    text.push_str(account);
    text.push_str(request.url().path());
    let mut params: Vec<(String, String)> = request
        .url()
        .query_pairs()
        .map(|(k, v)| (k.to_lowercase(), v.into_owned()))
        .collect();
    params.sort();
    let mut i = 0;
    while i < params.len() {
        let name = params[i].0.clone();
        let values: Vec<&str> = params[i..]
            .iter()
            .take_while(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
            .collect();
        i += values.len();
        text.push('\n');
        text.push_str(&name);
        text.push(':');
        text.push_str(&values.join(","));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_to_sign_follows_the_shared_key_scheme() {
        let client = reqwest::Client::new();
        let request = client
            .put("http://127.0.0.1:10000/acct/c/a/b?comp=block&blockid=QUJD%2B")
            .header("x-ms-version", "2025-11-05")
            .header("x-ms-date", "Wed, 02 Dec 2026 02:40:31 GMT")
            .header("content-length", "3")
            .header("content-md5", "kAFQmDzST7DWlj99KOF/cg==")
            .build()
            .unwrap();
        assert_eq!(
            string_to_sign("acct", &request),
            "PUT\n\n\n3\nkAFQmDzST7DWlj99KOF/cg==\n\n\n\n\n\n\n\n\
             x-ms-date:Wed, 02 Dec 2026 02:40:31 GMT\nx-ms-version:2025-11-05\n\
             /acct/acct/c/a/b\nblockid:QUJD+\ncomp:block"
        );
    }

    #[test]
    fn signatures_are_hmac_sha256_in_base64() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign(b"Jefe", "what do ya want for nothing?"),
            base64::engine::general_purpose::STANDARD.encode(
                hex::decode("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
                    .unwrap()
            )
        );
    }

    #[test]
    fn debug_output_hides_secrets() {
        let auth = Auth::SharedKey {
            account: "acct".into(),
            key: b"hunter2".to_vec(),
        };
        assert!(!format!("{auth:?}").contains("hunter2"));
    }
}
