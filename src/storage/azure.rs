//! Azure Blob Storage over its REST API: a thin client on `reqwest`.
//!
//! Why not a crate (see `docs/storage.md`): the Azure SDK for Rust
//! (`azure_storage_blob` 1.x) authorises only with Entra ID tokens or a SAS,
//! not with the account key that K8ssandra's `medusa_azure_credentials.json`
//! and connection strings hold, and has no Blob Batch; `object_store`'s Azure
//! backend cannot send a per-block checksum. The REST calls kassette needs
//! are few and small; `azure_identity` supplies Entra ID tokens.
//!
//! Files up to one part are a single Put Blob; larger files are Put Block
//! calls, read in order (hashing every byte) and sent in parallel within
//! the shared [`Limits`], then one Put Block List, which makes the blob
//! appear whole. Every Put Blob and Put Block carries the `Content-MD5` of
//! its bytes, which the service verifies (a mismatch is retried: the bytes
//! were damaged in transit); BLAKE3 of the whole file is kassette's record.
//! Blocks of a failed upload are never visible and the service discards them
//! (after a week, or at the next commit of that blob). Create-if-absent is
//! `If-None-Match: *`. Deletes go in Blob Batch requests of 256.

mod auth;
mod batch;

use std::path::Path;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use base64::Engine;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use md5::Digest as _;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, IF_NONE_MATCH};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::Deserialize;
use tokio::task::JoinSet;
use url::Url;

use super::digest::Digest;
use super::error::{Error, Result, error_chain};
use super::key::{ObjectKey, full_name, relative_key};
use super::limits::Limits;
use super::retry::RetryPolicy;
use super::transfer::{PartHasher, PartRange, SourceFile, paginate, part_size_for, write_verified};
use super::{ObjectMeta, PutMode, Store};
use crate::config::{Backend, StorageConfig};
use auth::Auth;
use tokio::sync::OwnedSemaphorePermit;

/// The service version kassette speaks (Azurite 3.35 knows it too).
pub const API_VERSION: &str = "2025-11-05";
/// Blobs per List Blobs page (the service maximum is 5,000; 1,000 bounds
/// memory like the other backends).
const LIST_PAGE: &str = "1000";
/// Single deletes in flight when a batch cannot be used (under a SAS).
const DELETE_CONCURRENCY: usize = 16;

#[derive(Clone)]
pub struct AzureStore {
    http: reqwest::Client,
    auth: Auth,
    /// The account's blob service URL, ending with `/`.
    service: Url,
    container: String,
    root: String,
    limits: Limits,
    retry: RetryPolicy,
}

impl std::fmt::Debug for AzureStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureStore")
            .field("service", &self.service.as_str())
            .field("container", &self.container)
            .field("root", &self.root)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

impl AzureStore {
    /// Builds the client from validated settings; no request is sent (an
    /// Entra ID token is fetched with the first request).
    pub async fn open(config: &StorageConfig, limits: Limits) -> Result<Self> {
        let Backend::Azure(settings) = &config.backend else {
            return Err(Error::setup("not an Azure configuration"));
        };
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(60));
        if let Some(path) = &settings.ca_bundle {
            let pem = std::fs::read(path).map_err(|e| Error::local(path, e))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| Error::setup(&format!("CA bundle {}: {e}", path.display())))?;
            builder = builder.tls_certs_merge(certs);
        }
        let http = builder
            .build()
            .map_err(|e| Error::setup(&format!("HTTP client: {}", error_chain(&e))))?;
        let mut service = settings.endpoint.clone();
        if !service.path().ends_with('/') {
            let path = format!("{}/", service.path());
            service.set_path(&path);
        }
        service.set_query(None);
        Ok(Self {
            http,
            auth: Auth::new(&settings.account, &settings.credentials)?,
            service,
            container: settings.container.clone(),
            root: config.prefix.clone(),
            limits,
            retry: RetryPolicy::default(),
        })
    }

    /// Creates the container; one that exists already is fine. kassette
    /// never needs this (the container is the operator's); tests and the
    /// benchmark do.
    pub async fn create_container(&self) -> Result<()> {
        let mut url = self.container_url();
        url.query_pairs_mut().append_pair("restype", "container");
        let request = self.request(Method::PUT, url).header(CONTENT_LENGTH, 0);
        match self
            .send("create container", &self.container, request)
            .await
        {
            Ok(_) => Ok(()),
            Err(Error::Store { message, .. }) if message.contains("ContainerAlreadyExists") => {
                Ok(())
            }
            Err(err) => Err(err),
        }
    }

    /// Sends one authorised request on blob `name` (relative to the
    /// container, without the store's prefix) as it is: no retries, limits
    /// or checksums. For tests (acting behind kassette's back) and the
    /// benchmark's baseline.
    pub async fn send_raw(
        &self,
        method: Method,
        name: &str,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
        body: Option<Bytes>,
    ) -> Result<Response> {
        let mut url = self.blob_url(name);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let mut request = self.request(method, url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.header(CONTENT_LENGTH, body.len()).body(body);
        }
        self.send("request", name, request).await
    }

    fn name(&self, key: &ObjectKey) -> String {
        full_name(&self.root, key.as_str())
    }

    fn container_url(&self) -> Url {
        let mut url = self.service.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop_if_empty().push(&self.container);
        }
        url
    }

    fn blob_url(&self, name: &str) -> Url {
        let mut url = self.container_url();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.extend(name.split('/'));
        }
        url
    }

    /// A request with the headers every call carries.
    fn request(&self, method: Method, url: Url) -> RequestBuilder {
        self.http
            .request(method, url)
            .header("x-ms-version", API_VERSION)
            .header("x-ms-date", httpdate::fmt_http_date(SystemTime::now()))
    }

    /// Authorises and sends a request; any status but success becomes the
    /// error it means.
    async fn send(
        &self,
        operation: &'static str,
        key: &str,
        builder: RequestBuilder,
    ) -> Result<Response> {
        let mut request = builder
            .build()
            .map_err(|e| Error::permanent(operation, key, &error_chain(&e.without_url())))?;
        self.auth.add_query(request.url_mut());
        self.auth.authorize(&mut request).await?;
        let response = self
            .http
            .execute(request)
            .await
            .map_err(|e| transport(operation, key, e))?;
        if response.status().is_success() {
            return Ok(response);
        }
        Err(self.failure(operation, key, response).await)
    }

    /// The error a failed response means.
    async fn failure(&self, operation: &'static str, key: &str, response: Response) -> Error {
        let status = response.status();
        let code = response
            .headers()
            .get("x-ms-error-code")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let body = response.text().await.unwrap_or_default();
        let message = service_message(&body)
            .unwrap_or_else(|| status.canonical_reason().unwrap_or_default().to_string());
        classify(operation, key, &self.container, status, &code, &message)
    }

    /// One Put Blob carrying the body's MD5, retried as a whole. `slot`,
    /// when given, is a concurrency slot already taken: the first attempt
    /// uses it, later ones wait for their own.
    async fn put_single(
        &self,
        name: &str,
        body: Body<'_>,
        md5: &str,
        mode: PutMode,
        slot: Option<OwnedSemaphorePermit>,
    ) -> Result<()> {
        let len = body.len();
        let mut first = slot;
        self.retry
            .run("put", || {
                let held = first.take();
                let body = &body;
                async move {
                    let _slot = match held {
                        Some(slot) => slot,
                        None => self.limits.slot().await,
                    };
                    self.limits.bandwidth(len).await;
                    let mut request = self
                        .request(Method::PUT, self.blob_url(name))
                        .header("x-ms-blob-type", "BlockBlob")
                        .header(CONTENT_LENGTH, len)
                        .header("content-md5", md5)
                        .body(body.reqwest());
                    if mode == PutMode::Create {
                        request = request.header(IF_NONE_MATCH, "*");
                    }
                    self.send("put", name, request).await.map(|_| ())
                }
            })
            .await
    }

    /// Uploads a file of more than one part as blocks and commits them.
    /// Blocks are hashed in order (each with its MD5) and streamed from the
    /// file, read again for every attempt; none is held in memory.
    async fn put_blocks(&self, name: &str, source: &SourceFile) -> Result<Digest> {
        let part_size = part_size_for(source.size());
        // A fresh prefix per upload: blocks left by an earlier failed attempt
        // can never be mistaken for this one's.
        let upload: u64 = rand::random();
        let mut ids = Vec::new();
        let mut hasher = PartHasher::new(source, part_size, true);
        let mut tasks: JoinSet<Result<()>> = JoinSet::new();
        loop {
            let slot = self.limits.slot().await;
            let Some((range, sums)) = hasher.next().await? else {
                break;
            };
            let id = block_id(upload, range.index);
            ids.push(id.clone());
            let store = self.clone();
            let (task_name, task_source) = (name.to_string(), source.clone());
            let md5 = sums.md5_base64().unwrap_or_default();
            tasks.spawn(async move {
                store
                    .put_block(&task_name, &id, &task_source, range, &md5, slot)
                    .await
            });
            // An early failure stops the upload instead of reading on.
            while let Some(done) = tasks.try_join_next() {
                joined(done, name)?;
            }
        }
        while let Some(done) = tasks.join_next().await {
            joined(done, name)?;
        }
        let digest = hasher.finish().await?;
        self.put_block_list(name, &ids).await?;
        Ok(digest)
    }

    async fn put_block(
        &self,
        name: &str,
        id: &str,
        source: &SourceFile,
        range: PartRange,
        md5: &str,
        slot: OwnedSemaphorePermit,
    ) -> Result<()> {
        let mut url = self.blob_url(name);
        url.query_pairs_mut()
            .append_pair("comp", "block")
            .append_pair("blockid", id);
        let mut first = Some(slot);
        self.retry
            .run("put block", || {
                let held = first.take();
                let url = &url;
                async move {
                    let _slot = match held {
                        Some(slot) => slot,
                        None => self.limits.slot().await,
                    };
                    self.limits.bandwidth(range.len).await;
                    let request = self
                        .request(Method::PUT, url.clone())
                        .header(CONTENT_LENGTH, range.len)
                        .header("content-md5", md5)
                        .body(reqwest::Body::wrap_stream(source.stream(range)));
                    self.send("put block", name, request).await.map(|_| ())
                }
            })
            .await
    }

    async fn put_block_list(&self, name: &str, ids: &[String]) -> Result<()> {
        let mut xml = String::from(r#"<?xml version="1.0" encoding="utf-8"?><BlockList>"#);
        for id in ids {
            xml.push_str("<Latest>");
            xml.push_str(id);
            xml.push_str("</Latest>");
        }
        xml.push_str("</BlockList>");
        let body = Bytes::from(xml);
        let md5 = md5_base64(&body);
        let mut url = self.blob_url(name);
        url.query_pairs_mut().append_pair("comp", "blocklist");
        self.retry
            .run("put block list", || async {
                let request = self
                    .request(Method::PUT, url.clone())
                    .header(CONTENT_LENGTH, body.len())
                    .header(CONTENT_TYPE, "application/xml")
                    .header("content-md5", &md5)
                    .body(body.clone());
                self.send("put block list", name, request).await.map(|_| ())
            })
            .await
    }

    async fn get(&self, key: &ObjectKey) -> Result<Response> {
        let request = self.request(Method::GET, self.blob_url(&self.name(key)));
        self.send("get", key.as_str(), request).await
    }

    async fn list_page(
        &self,
        prefix: &str,
        marker: Option<String>,
    ) -> Result<(Vec<ObjectMeta>, Option<String>)> {
        let full = full_name(&self.root, prefix);
        let mut url = self.container_url();
        url.query_pairs_mut()
            .append_pair("restype", "container")
            .append_pair("comp", "list")
            .append_pair("prefix", &full)
            .append_pair("maxresults", LIST_PAGE);
        if let Some(marker) = &marker {
            url.query_pairs_mut().append_pair("marker", marker);
        }
        let text = self
            .retry
            .run("list", || async {
                let response = self
                    .send("list", &full, self.request(Method::GET, url.clone()))
                    .await?;
                response
                    .text()
                    .await
                    .map_err(|e| transport("list", &full, e))
            })
            .await?;
        let page: EnumerationResults = quick_xml::de::from_str(&text)
            .map_err(|e| Error::permanent("list", &full, &format!("unreadable listing: {e}")))?;
        let items = page
            .blobs
            .blob
            .into_iter()
            .filter_map(|blob| {
                Some(ObjectMeta {
                    key: relative_key(&self.root, &blob.name)?,
                    size: blob.properties.content_length,
                    last_modified: blob
                        .properties
                        .last_modified
                        .as_deref()
                        .and_then(|t| httpdate::parse_http_date(t).ok()),
                })
            })
            .collect();
        Ok((items, page.next_marker.filter(|m| !m.is_empty())))
    }

    /// One Delete Blob; a missing blob is fine.
    async fn delete_one(&self, key: &ObjectKey) -> Result<()> {
        let url = self.blob_url(&self.name(key));
        let result = self
            .retry
            .run("delete", || async {
                self.send(
                    "delete",
                    key.as_str(),
                    self.request(Method::DELETE, url.clone()),
                )
                .await
            })
            .await;
        match result {
            Ok(_) | Err(Error::NotFound { .. }) => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// Deletes up to [`batch::MAX_BATCH`] blobs in one Blob Batch request.
    async fn delete_batch(&self, keys: &[ObjectKey]) -> Result<()> {
        let first = keys.first().map(ObjectKey::as_str).unwrap_or_default();
        let mut requests = Vec::with_capacity(keys.len());
        for key in keys {
            let mut request = self
                .request(Method::DELETE, self.blob_url(&self.name(key)))
                .header(CONTENT_LENGTH, 0)
                .build()
                .map_err(|e| {
                    Error::permanent("delete", key.as_str(), &error_chain(&e.without_url()))
                })?;
            self.auth.add_query(request.url_mut());
            self.auth.authorize(&mut request).await?;
            // The request line names the path as on the wire (with
            // Azurite's account segment), as the signature does.
            let path = request.url()[url::Position::BeforePath..]
                .trim_start_matches('/')
                .to_string();
            let headers = request
                .headers()
                .iter()
                .map(|(n, v)| {
                    (
                        n.as_str().to_string(),
                        v.to_str().unwrap_or_default().to_string(),
                    )
                })
                .collect();
            requests.push(batch::SubRequest { path, headers });
        }
        let boundary = format!("batch_{:032x}", rand::random::<u128>());
        let body = Bytes::from(batch::body(&boundary, &requests));
        let mut url = self.container_url();
        url.query_pairs_mut()
            .append_pair("restype", "container")
            .append_pair("comp", "batch");
        let (content_type, text) = self
            .retry
            .run("delete", || async {
                let request = self
                    .request(Method::POST, url.clone())
                    .header(
                        CONTENT_TYPE,
                        format!("multipart/mixed; boundary={boundary}"),
                    )
                    .header(CONTENT_LENGTH, body.len())
                    .body(body.clone());
                let response = self.send("delete", first, request).await?;
                let content_type = response
                    .headers()
                    .get(CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                let text = response
                    .text()
                    .await
                    .map_err(|e| transport("delete", first, e))?;
                Ok((content_type, text))
            })
            .await?;
        let statuses = batch::boundary_of(&content_type)
            .and_then(|b| batch::statuses(b, &text, keys.len()))
            .ok_or_else(|| Error::permanent("delete", first, "unreadable Blob Batch response"))?;
        for (key, status) in keys.iter().zip(statuses) {
            match StatusCode::from_u16(status) {
                Ok(s) if s.is_success() || s == StatusCode::NOT_FOUND => {}
                _ => {
                    return Err(Error::from_status(
                        "delete",
                        key.as_str(),
                        status,
                        "Delete Blob in a batch failed",
                    ));
                }
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Store for AzureStore {
    async fn put_file(&self, key: &ObjectKey, path: &Path) -> Result<Digest> {
        let name = self.name(key);
        let source = SourceFile::open(path).await?;
        let size = source.size();
        if size > part_size_for(size) {
            return self.put_blocks(&name, &source).await;
        }
        let slot = self.limits.slot().await;
        let (range, sums, digest) = PartHasher::whole(&source, true).await?;
        let md5 = sums.md5_base64().unwrap_or_default();
        self.put_single(
            &name,
            Body::File(&source, range),
            &md5,
            PutMode::Overwrite,
            Some(slot),
        )
        .await?;
        Ok(digest)
    }

    async fn get_file(&self, key: &ObjectKey, dest: &Path, expected: &Digest) -> Result<()> {
        self.retry
            .run("get", || async {
                let _slot = self.limits.slot().await;
                let response = self.get(key).await?;
                let chunks = response
                    .bytes_stream()
                    .map_err(|e| transport("get", key.as_str(), e))
                    .boxed();
                write_verified(key.as_str(), dest, expected, chunks, &self.limits).await
            })
            .await
    }

    async fn put_bytes(&self, key: &ObjectKey, data: Bytes, mode: PutMode) -> Result<()> {
        let md5 = md5_base64(&data);
        self.put_single(&self.name(key), Body::Memory(&data), &md5, mode, None)
            .await
    }

    async fn get_bytes(&self, key: &ObjectKey) -> Result<Bytes> {
        self.retry
            .run("get", || async {
                let _slot = self.limits.slot().await;
                let response = self.get(key).await?;
                response
                    .bytes()
                    .await
                    .map_err(|e| transport("get", key.as_str(), e))
            })
            .await
    }

    async fn head(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>> {
        let url = self.blob_url(&self.name(key));
        let result = self
            .retry
            .run("head", || async {
                self.send(
                    "head",
                    key.as_str(),
                    self.request(Method::HEAD, url.clone()),
                )
                .await
            })
            .await;
        match result {
            Ok(response) => {
                let header = |name| {
                    response
                        .headers()
                        .get(name)
                        .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
                };
                Ok(Some(ObjectMeta {
                    key: key.clone(),
                    size: header("content-length")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0),
                    last_modified: header("last-modified")
                        .and_then(|t| httpdate::parse_http_date(t).ok()),
                }))
            }
            Err(Error::NotFound { .. }) => Ok(None),
            Err(err) => Err(err),
        }
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxStream<'a, Result<ObjectMeta>> {
        paginate(move |marker| self.list_page(prefix, marker))
    }

    async fn delete_many(&self, keys: &[ObjectKey]) -> Result<()> {
        if self.auth.is_sas() {
            // Azurite fails a Blob Batch under a SAS (HTTP 500), so it
            // cannot be tested here: blob by blob, several at once.
            return futures::stream::iter(keys.to_vec())
                .map(|key| async move { self.delete_one(&key).await })
                .buffer_unordered(DELETE_CONCURRENCY)
                .try_collect::<Vec<()>>()
                .await
                .map(|_| ());
        }
        for chunk in keys.chunks(batch::MAX_BATCH) {
            self.delete_batch(chunk).await?;
        }
        Ok(())
    }
}

/// A List Blobs response, as far as kassette reads it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EnumerationResults {
    #[serde(default)]
    blobs: Blobs,
    #[serde(default)]
    next_marker: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Blobs {
    #[serde(rename = "Blob", default)]
    blob: Vec<BlobItem>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct BlobItem {
    name: String,
    properties: BlobProperties,
}

#[derive(Debug, Deserialize)]
struct BlobProperties {
    #[serde(rename = "Last-Modified", default)]
    last_modified: Option<String>,
    #[serde(rename = "Content-Length", default)]
    content_length: u64,
}

/// The first line of the `<Message>` of an error body. Nothing else is
/// taken from it: `AuthenticationErrorDetail` quotes the request's
/// signature.
fn service_message(body: &str) -> Option<String> {
    let start = body.find("<Message>")? + "<Message>".len();
    let end = body[start..].find("</Message>")? + start;
    let message = body[start..end].lines().next()?.trim();
    (!message.is_empty()).then(|| message.to_string())
}

/// The meaning of a failed response.
fn classify(
    operation: &'static str,
    key: &str,
    container: &str,
    status: StatusCode,
    code: &str,
    message: &str,
) -> Error {
    let transient = |message: String| Error::Store {
        operation,
        key: key.to_string(),
        message,
        transient: true,
    };
    match code {
        "ContainerNotFound" => Error::NoSuchBucket {
            bucket: container.to_string(),
        },
        "BlobAlreadyExists" => Error::AlreadyExists {
            key: key.to_string(),
        },
        // The bytes that arrived are not the bytes sent: send them again.
        "Md5Mismatch" | "Crc64Mismatch" => {
            transient(format!("{code}: {message} (upload damaged in transit)"))
        }
        "ServerBusy" | "OperationTimedOut" | "InternalError" => {
            transient(format!("{code}: {message}"))
        }
        // Azurite reports a Content-MD5 mismatch as InvalidOperation.
        _ if status == StatusCode::BAD_REQUEST && message.contains("MD5") => {
            transient(format!("{code}: {message} (upload damaged in transit)"))
        }
        "AuthenticationFailed" | "AuthorizationFailure" | "InvalidAuthenticationInfo" => {
            Error::Denied {
                operation,
                key: key.to_string(),
                message: format!(
                    "{code}: {message} (check the account key, SAS or identity in use)"
                ),
            }
        }
        _ => {
            let text = if code.is_empty() {
                message.to_string()
            } else {
                format!("{code}: {message}")
            };
            Error::from_status(operation, key, status.as_u16(), text)
        }
    }
}

/// A failure to talk to the service at all. The URL is dropped from the
/// message: with a SAS it carries the signature.
fn transport(operation: &'static str, key: &str, err: reqwest::Error) -> Error {
    let err = err.without_url();
    let chain = error_chain(&err);
    if [
        "invalid peer certificate",
        "InvalidCertificate",
        "certificate verify failed",
    ]
    .iter()
    .any(|marker| chain.contains(marker))
    {
        return Error::Store {
            operation,
            key: key.to_string(),
            message: format!(
                "TLS certificate not trusted ({chain}); set KASSETTE_STORAGE_CA_BUNDLE to the CA that issued it"
            ),
            transient: false,
        };
    }
    let transient = err.is_timeout()
        || err.is_connect()
        || err.is_request()
        || err.is_body()
        || err.is_decode();
    Error::Store {
        operation,
        key: key.to_string(),
        message: chain,
        transient,
    }
}

/// What a Put Blob sends: a small object from memory, or a range of a
/// file, read again for every attempt.
enum Body<'a> {
    Memory(&'a Bytes),
    File(&'a SourceFile, PartRange),
}

impl Body<'_> {
    fn len(&self) -> u64 {
        match self {
            Body::Memory(data) => data.len() as u64,
            Body::File(_, range) => range.len,
        }
    }

    fn reqwest(&self) -> reqwest::Body {
        match self {
            Body::Memory(data) => reqwest::Body::from((*data).clone()),
            Body::File(source, range) => reqwest::Body::wrap_stream(source.stream(*range)),
        }
    }
}

fn md5_base64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(data))
}

/// Block ids: base64 of a fixed-length text (all ids of a blob must have
/// the same length), unique per upload attempt.
fn block_id(upload: u64, number: u32) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{upload:016x}{number:08}"))
}

fn joined(done: std::result::Result<Result<()>, tokio::task::JoinError>, name: &str) -> Result<()> {
    done.map_err(|join| Error::permanent("put block", name, &join.to_string()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_pages_parse() {
        let xml = r#"<?xml version="1.0" encoding="utf-8"?>
<EnumerationResults ServiceEndpoint="http://127.0.0.1:10000/kassette" ContainerName="c">
  <Prefix>p/</Prefix><MaxResults>1000</MaxResults>
  <Blobs>
    <Blob><Name>p/a</Name><Properties><Last-Modified>Wed, 02 Dec 2026 02:40:31 GMT</Last-Modified><Content-Length>3</Content-Length><BlobType>BlockBlob</BlobType></Properties></Blob>
    <Blob><Name>p/b/c</Name><Properties><Content-Length>0</Content-Length></Properties></Blob>
  </Blobs>
  <NextMarker>opaque</NextMarker>
</EnumerationResults>"#;
        let page: EnumerationResults = quick_xml::de::from_str(xml).unwrap();
        assert_eq!(page.blobs.blob.len(), 2);
        assert_eq!(page.blobs.blob[0].properties.content_length, 3);
        assert!(page.blobs.blob[0].properties.last_modified.is_some());
        assert_eq!(page.next_marker.as_deref(), Some("opaque"));

        let last = r#"<EnumerationResults><Blobs /><NextMarker /></EnumerationResults>"#;
        let page: EnumerationResults = quick_xml::de::from_str(last).unwrap();
        assert!(page.blobs.blob.is_empty());
        assert!(page.next_marker.filter(|m| !m.is_empty()).is_none());
    }

    #[test]
    fn errors_mean_what_the_service_says() {
        let c = |status: u16, code: &str, message: &str| {
            classify(
                "put",
                "k",
                "backups",
                StatusCode::from_u16(status).unwrap(),
                code,
                message,
            )
        };
        assert!(matches!(
            c(404, "ContainerNotFound", "x"),
            Error::NoSuchBucket { .. }
        ));
        assert!(matches!(
            c(404, "BlobNotFound", "x"),
            Error::NotFound { .. }
        ));
        assert!(matches!(
            c(409, "BlobAlreadyExists", "x"),
            Error::AlreadyExists { .. }
        ));
        assert!(matches!(
            c(412, "ConditionNotMet", "x"),
            Error::AlreadyExists { .. }
        ));
        assert!(matches!(
            c(403, "AuthenticationFailed", "x"),
            Error::Denied { .. }
        ));
        assert!(c(400, "Md5Mismatch", "x").is_transient());
        assert!(
            c(
                400,
                "InvalidOperation",
                "Provided contentMD5 doesn't match."
            )
            .is_transient()
        );
        assert!(c(503, "ServerBusy", "x").is_transient());
        assert!(c(500, "", "x").is_transient());
        assert!(!c(400, "InvalidBlockList", "x").is_transient());
    }

    #[test]
    fn error_messages_keep_only_the_message() {
        let body = "<?xml version=\"1.0\"?><Error><Code>AuthenticationFailed</Code><Message>Server failed to authenticate the request.\nRequestId:1</Message><AuthenticationErrorDetail>The MAC signature found in the HTTP request 'c2ln' is not the same</AuthenticationErrorDetail></Error>";
        assert_eq!(
            service_message(body).as_deref(),
            Some("Server failed to authenticate the request.")
        );
    }

    #[test]
    fn block_ids_have_one_length() {
        assert_eq!(block_id(1, 0).len(), block_id(u64::MAX, 49_999).len());
        assert_ne!(block_id(1, 0), block_id(2, 0));
    }
}
