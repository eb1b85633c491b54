//! TLS of the S3 backend: an HTTPS client that also trusts the CAs of
//! `KASSETTE_STORAGE_CA_BUNDLE` (a private CA in front of MinIO or Ceph).

use std::path::Path;

use crate::storage::error::{Error, Result};

/// An HTTPS client that trusts the system roots plus the PEM bundle at
/// `path` (a private CA in front of MinIO or Ceph).
pub(super) fn http_client_trusting(path: &Path) -> Result<aws_sdk_s3::config::SharedHttpClient> {
    use aws_smithy_http_client::tls::{self, TlsContext, TrustStore};
    let pem = std::fs::read(path).map_err(|e| Error::local(path, e))?;
    let context = TlsContext::builder()
        .with_trust_store(
            TrustStore::empty()
                .with_native_roots(true)
                .with_pem_certificate(pem),
        )
        .build()
        .map_err(|e| Error::setup(&format!("CA bundle {}: {e}", path.display())))?;
    Ok(aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::AwsLc,
        ))
        .tls_context(context)
        .build_https())
}
