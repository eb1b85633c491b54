//! Amazon S3 and S3-compatible stores (MinIO, Ceph RGW, …) over `aws-sdk-s3`.
//!
//! Uploads up to one part size are a single PutObject; larger files are
//! multipart uploads whose parts are read in order (hashing every byte) and
//! sent in parallel, each with its CRC32C so the store refuses a damaged
//! part. Memory is bounded by the shared [`Limits`] buffer budget. A failed
//! multipart upload is aborted; [`S3Store::abort_stale_uploads`] cleans up
//! uploads orphaned by a killed process.
//!
//! The SDK's own retries are off: the crate-wide [`RetryPolicy`] decides.
//! With a custom endpoint the client uses path-style addressing and sends
//! checksums only where an operation requires them, because the SDK's newer
//! default checksums break several S3-compatible stores; the CRC32C header
//! kassette sets itself is understood by S3, MinIO and Ceph.

use std::path::Path;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier,
    ServerSideEncryption, StorageClass,
};
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::task::JoinSet;

use super::digest::{Digest, crc32c_base64};
use super::error::{Error, Result, error_chain};
use super::key::{ObjectKey, full_name, relative_key};
use super::limits::Limits;
use super::retry::RetryPolicy;
use super::transfer::{PartReader, paginate, part_size_for, write_verified};
use super::{ObjectMeta, PutMode, Store};
use crate::config::{Backend, S3Encryption, StorageConfig};

/// Keys per DeleteObjects request (the S3 maximum).
const DELETE_BATCH: usize = 1000;

#[derive(Debug, Clone)]
pub struct S3Store {
    client: Client,
    bucket: String,
    root: String,
    limits: Limits,
    retry: RetryPolicy,
    storage_class: Option<StorageClass>,
    encryption: Encryption,
}

/// Encryption headers, ready to send.
#[derive(Clone)]
enum Encryption {
    BucketDefault,
    Kms {
        key_id: String,
    },
    /// SSE-C: the key and its MD5, both base64, sent with every request
    /// that writes or reads object data.
    CustomerKey {
        key: String,
        key_md5: String,
    },
}

impl std::fmt::Debug for Encryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::BucketDefault => f.write_str("BucketDefault"),
            Self::Kms { key_id } => write!(f, "Kms({key_id})"),
            Self::CustomerKey { .. } => f.write_str("CustomerKey(<redacted>)"),
        }
    }
}

impl Encryption {
    fn from_config(config: &S3Encryption) -> Self {
        use base64::Engine;
        use md5::Digest as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        match config {
            S3Encryption::BucketDefault => Self::BucketDefault,
            S3Encryption::Kms { key_id } => Self::Kms {
                key_id: key_id.clone(),
            },
            S3Encryption::CustomerKey { key } => Self::CustomerKey {
                key: b64.encode(key),
                key_md5: b64.encode(md5::Md5::digest(key)),
            },
        }
    }

    /// The SSE-C triple (algorithm, key, key MD5), when SSE-C is on.
    fn customer(&self) -> (Option<String>, Option<String>, Option<String>) {
        match self {
            Self::CustomerKey { key, key_md5 } => (
                Some("AES256".into()),
                Some(key.clone()),
                Some(key_md5.clone()),
            ),
            _ => (None, None, None),
        }
    }

    /// The SSE-KMS pair (algorithm, key id), when SSE-KMS is on.
    fn kms(&self) -> (Option<ServerSideEncryption>, Option<String>) {
        match self {
            Self::Kms { key_id } => (Some(ServerSideEncryption::AwsKms), Some(key_id.clone())),
            _ => (None, None),
        }
    }
}

/// Adds the SSE-C headers (if any) to any request builder that takes them.
macro_rules! with_customer_key {
    ($request:expr, $encryption:expr) => {{
        let (algorithm, key, key_md5) = $encryption.customer();
        $request
            .set_sse_customer_algorithm(algorithm)
            .set_sse_customer_key(key)
            .set_sse_customer_key_md5(key_md5)
    }};
}

/// Adds everything a request creating an object carries: SSE-KMS or SSE-C,
/// and the storage class.
macro_rules! with_object_settings {
    ($request:expr, $store:expr) => {{
        let (sse, kms_key) = $store.encryption.kms();
        with_customer_key!($request, $store.encryption)
            .set_server_side_encryption(sse)
            .set_ssekms_key_id(kms_key)
            .set_storage_class($store.storage_class.clone())
    }};
}

impl S3Store {
    /// Builds the client from validated settings; no request is sent.
    pub async fn open(config: &StorageConfig, limits: Limits) -> Result<Self> {
        let Backend::S3 {
            bucket,
            endpoint,
            region,
            credentials_file,
            ca_bundle,
            storage_class,
            encryption,
        } = &config.backend
        else {
            return Err(Error::setup("not an S3 configuration"));
        };
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(region) = region {
            // A configured region needs no lookup (the default chain would
            // ask the instance metadata service, and warn where there is none).
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(file) = credentials_file {
            let files = aws_runtime::env_config::file::EnvConfigFiles::builder()
                .with_file(
                    aws_runtime::env_config::file::EnvConfigFileKind::Credentials,
                    file,
                )
                .build();
            let provider = aws_config::profile::ProfileFileCredentialsProvider::builder()
                .profile_files(files)
                .build();
            loader = loader.credentials_provider(provider);
        }
        if let Some(pem) = ca_bundle {
            loader = loader.http_client(http_client_trusting(pem)?);
        }
        let shared = loader.load().await;
        let region = region
            .clone()
            .map(Region::new)
            .or_else(|| shared.region().cloned())
            .unwrap_or_else(|| Region::new("us-east-1"));
        let mut builder = aws_sdk_s3::config::Builder::from(&shared)
            .region(region)
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(10))
                    .read_timeout(Duration::from_secs(60))
                    .build(),
            );
        if let Some(url) = endpoint {
            builder = builder
                .endpoint_url(url.as_str().trim_end_matches('/'))
                .force_path_style(true)
                .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
                .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        }
        Ok(Self {
            client: Client::from_conf(builder.build()),
            bucket: bucket.clone(),
            root: config.prefix.clone(),
            limits,
            retry: RetryPolicy::default(),
            storage_class: storage_class.as_deref().map(StorageClass::from),
            encryption: Encryption::from_config(encryption),
        })
    }

    fn name(&self, key: &ObjectKey) -> String {
        full_name(&self.root, key.as_str())
    }

    /// Aborts multipart uploads of keys starting with `prefix` (relative to
    /// the store's root) started more than `older_than` ago: leftovers of
    /// killed processes, which S3 bills for and never shows in listings.
    /// Returns how many were aborted.
    ///
    /// MinIO lists uploads only for an exact object key (and expires stale
    /// uploads itself after 24 h); AWS S3 and Ceph accept any prefix.
    pub async fn abort_stale_uploads(&self, prefix: &str, older_than: Duration) -> Result<usize> {
        let stale = self.list_stale_uploads(prefix, older_than).await?;
        for upload in &stale {
            self.abort(&upload.name, &upload.id).await;
        }
        Ok(stale.len())
    }

    /// Multipart uploads of keys starting with `prefix` (relative to the
    /// store's root) initiated before now − `older_than`.
    async fn list_stale_uploads(
        &self,
        prefix: &str,
        older_than: Duration,
    ) -> Result<Vec<super::PendingUpload>> {
        let cutoff = SystemTime::now()
            .checked_sub(older_than)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let prefix = full_name(&self.root, prefix);
        let mut stale = Vec::new();
        let mut key_marker: Option<String> = None;
        let mut id_marker: Option<String> = None;
        loop {
            let page = self
                .retry
                .run("list multipart uploads", || async {
                    self.client
                        .list_multipart_uploads()
                        .bucket(&self.bucket)
                        .prefix(&prefix)
                        .set_key_marker(key_marker.clone())
                        .set_upload_id_marker(id_marker.clone())
                        .send()
                        .await
                        .map_err(|e| classify("list multipart uploads", &prefix, e))
                })
                .await?;
            for upload in page.uploads() {
                let started = upload
                    .initiated()
                    .and_then(|t| SystemTime::try_from(*t).ok());
                if started.is_some_and(|t| t < cutoff)
                    && let (Some(key), Some(id)) = (upload.key(), upload.upload_id())
                {
                    stale.push(super::PendingUpload {
                        name: key.to_string(),
                        id: id.to_string(),
                        started,
                    });
                }
            }
            if page.is_truncated() != Some(true) {
                return Ok(stale);
            }
            key_marker = page.next_key_marker().map(String::from);
            id_marker = page.next_upload_id_marker().map(String::from);
        }
    }

    /// Best-effort abort; a failure only leaves work for
    /// [`S3Store::abort_stale_uploads`].
    async fn abort(&self, name: &str, upload_id: &str) {
        let result = self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(name)
            .upload_id(upload_id)
            .send()
            .await;
        if let Err(err) = result {
            tracing::warn!(key = name, error = %classify("abort upload", name, err), "could not abort multipart upload");
        }
    }

    async fn put_single(
        &self,
        name: &str,
        data: Bytes,
        digest: &Digest,
        mode: PutMode,
    ) -> Result<()> {
        let len = data.len() as u64;
        self.retry
            .run("put", || async {
                let _slot = self.limits.slot().await;
                self.limits.bandwidth(len).await;
                let request = self
                    .client
                    .put_object()
                    .bucket(&self.bucket)
                    .key(name)
                    .content_length(len as i64)
                    .checksum_crc32_c(digest.crc32c_base64())
                    .body(ByteStream::from(data.clone()));
                let mut request = with_object_settings!(request, self);
                if mode == PutMode::Create {
                    request = request.if_none_match("*");
                }
                request
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| classify_put(name, mode, e))
            })
            .await
    }

    async fn put_multipart(&self, name: &str, mut reader: PartReader, size: u64) -> Result<Digest> {
        let part_size = part_size_for(size);
        let created = self
            .retry
            .run("create multipart upload", || async {
                let request = self
                    .client
                    .create_multipart_upload()
                    .bucket(&self.bucket)
                    .key(name)
                    .checksum_algorithm(ChecksumAlgorithm::Crc32C);
                with_object_settings!(request, self)
                    .send()
                    .await
                    .map_err(|e| classify("create multipart upload", name, e))
            })
            .await?;
        let upload_id = created
            .upload_id()
            .ok_or_else(|| {
                Error::permanent("create multipart upload", name, "no upload id returned")
            })?
            .to_string();
        let result = self
            .send_parts(name, &upload_id, &mut reader, part_size)
            .await;
        let completed = match result {
            Ok(parts) => match reader.finish(size).await {
                Ok(digest) => self
                    .complete(name, &upload_id, parts)
                    .await
                    .map(|()| digest),
                Err(err) => Err(err),
            },
            Err(err) => Err(err),
        };
        if completed.is_err() {
            self.abort(name, &upload_id).await;
        }
        completed
    }

    /// Reads parts in order and uploads them concurrently; returns them
    /// sorted by part number.
    async fn send_parts(
        &self,
        name: &str,
        upload_id: &str,
        reader: &mut PartReader,
        part_size: u64,
    ) -> Result<Vec<CompletedPart>> {
        let mut tasks: JoinSet<Result<CompletedPart>> = JoinSet::new();
        let mut parts = Vec::new();
        for number in 1.. {
            let buffer = self.limits.buffer(part_size).await;
            let data = reader.next_part(part_size).await?;
            if data.is_empty() {
                break;
            }
            let store = self.clone();
            let (task_name, task_id) = (name.to_string(), upload_id.to_string());
            tasks.spawn(async move {
                let part = store.upload_part(&task_name, &task_id, number, data).await;
                drop(buffer);
                part
            });
            // Collect finished parts as we go so an early failure stops the
            // upload instead of reading the rest of the file.
            while let Some(done) = tasks.try_join_next() {
                parts.push(joined(done, name)?);
            }
        }
        while let Some(done) = tasks.join_next().await {
            parts.push(joined(done, name)?);
        }
        parts.sort_by_key(|p| p.part_number());
        Ok(parts)
    }

    async fn upload_part(
        &self,
        name: &str,
        upload_id: &str,
        number: i32,
        data: Bytes,
    ) -> Result<CompletedPart> {
        let crc = crc32c_base64(crc32c::crc32c(&data));
        let len = data.len() as u64;
        let done = self
            .retry
            .run("upload part", || async {
                let _slot = self.limits.slot().await;
                self.limits.bandwidth(len).await;
                let request = self
                    .client
                    .upload_part()
                    .bucket(&self.bucket)
                    .key(name)
                    .upload_id(upload_id)
                    .part_number(number)
                    .content_length(len as i64)
                    .checksum_crc32_c(&crc)
                    .body(ByteStream::from(data.clone()));
                with_customer_key!(request, self.encryption)
                    .send()
                    .await
                    .map_err(|e| classify("upload part", name, e))
            })
            .await?;
        Ok(CompletedPart::builder()
            .part_number(number)
            .set_e_tag(done.e_tag().map(String::from))
            .checksum_crc32_c(crc)
            .build())
    }

    async fn complete(&self, name: &str, upload_id: &str, parts: Vec<CompletedPart>) -> Result<()> {
        let upload = CompletedMultipartUpload::builder()
            .set_parts(Some(parts))
            .build();
        self.retry
            .run("complete multipart upload", || async {
                let request = self
                    .client
                    .complete_multipart_upload()
                    .bucket(&self.bucket)
                    .key(name)
                    .upload_id(upload_id)
                    .multipart_upload(upload.clone());
                // S3 wants the SSE-C key again when parts carried checksums.
                with_customer_key!(request, self.encryption)
                    .send()
                    .await
                    .map_err(|e| classify("complete multipart upload", name, e))
            })
            .await
            .map(|_| ())
    }

    async fn list_page(
        &self,
        prefix: &str,
        token: Option<String>,
    ) -> Result<(Vec<ObjectMeta>, Option<String>)> {
        let full = full_name(&self.root, prefix);
        let page = self
            .retry
            .run("list", || async {
                self.client
                    .list_objects_v2()
                    .bucket(&self.bucket)
                    .prefix(&full)
                    .set_continuation_token(token.clone())
                    .send()
                    .await
                    .map_err(|e| classify("list", &full, e))
            })
            .await?;
        let items = page
            .contents()
            .iter()
            .filter_map(|o| {
                Some(ObjectMeta {
                    key: relative_key(&self.root, o.key()?)?,
                    size: o.size().unwrap_or(0).max(0) as u64,
                    last_modified: o
                        .last_modified()
                        .and_then(|t| SystemTime::try_from(*t).ok()),
                })
            })
            .collect();
        let next = match page.is_truncated() {
            Some(true) => page.next_continuation_token().map(String::from),
            _ => None,
        };
        Ok((items, next))
    }
}

#[async_trait]
impl Store for S3Store {
    async fn put_file(&self, key: &ObjectKey, path: &Path) -> Result<Digest> {
        let name = self.name(key);
        let (mut reader, size) = PartReader::open(path).await?;
        if size > part_size_for(size) {
            return self.put_multipart(&name, reader, size).await;
        }
        let _buffer = self.limits.buffer(size).await;
        let data = reader.next_part(size).await?;
        let digest = reader.finish(size).await?;
        self.put_single(&name, data, &digest, PutMode::Overwrite)
            .await?;
        Ok(digest)
    }

    async fn get_file(&self, key: &ObjectKey, dest: &Path, expected: &Digest) -> Result<()> {
        let name = self.name(key);
        let name: &str = &name;
        self.retry
            .run("get", || async move {
                let _slot = self.limits.slot().await;
                let request = self.client.get_object().bucket(&self.bucket).key(name);
                let object = with_customer_key!(request, self.encryption)
                    .send()
                    .await
                    .map_err(|e| classify("get", key.as_str(), e))?;
                let chunks = futures::stream::unfold(object.body, move |mut body| async move {
                    let next = body.next().await?;
                    Some((next.map_err(|e| transient("get", name, e)), body))
                })
                .boxed();
                write_verified(key.as_str(), dest, expected, chunks, &self.limits).await
            })
            .await
    }

    async fn put_bytes(&self, key: &ObjectKey, data: Bytes, mode: PutMode) -> Result<()> {
        let digest = super::digest_of(&data);
        self.put_single(&self.name(key), data, &digest, mode).await
    }

    async fn get_bytes(&self, key: &ObjectKey) -> Result<Bytes> {
        let name = self.name(key);
        self.retry
            .run("get", || async {
                let _slot = self.limits.slot().await;
                let request = self.client.get_object().bucket(&self.bucket).key(&name);
                let object = with_customer_key!(request, self.encryption)
                    .send()
                    .await
                    .map_err(|e| classify("get", key.as_str(), e))?;
                if let Some(size) = object.content_length()
                    && size as u64 > super::MAX_SMALL_OBJECT
                {
                    return Err(super::too_large(key.as_str(), size as u64));
                }
                let chunks = futures::stream::unfold(object.body, |mut body| async move {
                    body.next().await.map(|chunk| (chunk, body))
                });
                super::collect_small(key.as_str(), Box::pin(chunks), |e| {
                    transient("get", key.as_str(), e)
                })
                .await
            })
            .await
    }

    async fn head(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>> {
        let name = self.name(key);
        let result = self
            .retry
            .run("head", || async {
                let request = self.client.head_object().bucket(&self.bucket).key(&name);
                with_customer_key!(request, self.encryption)
                    .send()
                    .await
                    .map_err(|e| classify("head", key.as_str(), e))
            })
            .await;
        match result {
            Ok(head) => Ok(Some(ObjectMeta {
                key: key.clone(),
                size: head.content_length().unwrap_or(0).max(0) as u64,
                last_modified: head
                    .last_modified()
                    .and_then(|t| SystemTime::try_from(*t).ok()),
            })),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(err) => Err(err),
        }
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxStream<'a, Result<ObjectMeta>> {
        paginate(move |token| self.list_page(prefix, token))
    }

    async fn delete_many(&self, keys: &[ObjectKey]) -> Result<()> {
        for batch in keys.chunks(DELETE_BATCH) {
            let objects = batch
                .iter()
                .map(|k| ObjectIdentifier::builder().key(self.name(k)).build())
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| Error::permanent("delete", batch[0].as_str(), &e.to_string()))?;
            let delete = Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .map_err(|e| Error::permanent("delete", batch[0].as_str(), &e.to_string()))?;
            let output = self
                .retry
                .run("delete", || async {
                    self.client
                        .delete_objects()
                        .bucket(&self.bucket)
                        .delete(delete.clone())
                        .send()
                        .await
                        .map_err(|e| classify("delete", batch[0].as_str(), e))
                })
                .await?;
            if let Some(failed) = output.errors().first() {
                let key = failed.key().unwrap_or_default();
                let status = match failed.code() {
                    Some("AccessDenied") => 403,
                    Some("NoSuchKey") => continue,
                    _ => 500,
                };
                return Err(Error::from_status(
                    "delete",
                    key,
                    status,
                    failed.message().unwrap_or_default(),
                ));
            }
        }
        Ok(())
    }

    async fn stale_uploads(
        &self,
        prefix: &str,
        older_than: Duration,
    ) -> Result<Vec<super::PendingUpload>> {
        self.list_stale_uploads(prefix, older_than).await
    }

    async fn abort_upload(&self, upload: &super::PendingUpload) -> Result<()> {
        self.retry
            .run("abort multipart upload", || async {
                self.client
                    .abort_multipart_upload()
                    .bucket(&self.bucket)
                    .key(&upload.name)
                    .upload_id(&upload.id)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| classify("abort multipart upload", &upload.name, e))
            })
            .await
            .or_else(|err| match err {
                // Already gone (completed, or aborted by someone else).
                Error::NotFound { .. } => Ok(()),
                err => Err(err),
            })
    }
}

/// Translates an SDK error into the storage error's meaning.
fn classify<E>(operation: &'static str, key: &str, err: SdkError<E, HttpResponse>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &err {
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let code = service.err().code().unwrap_or_default();
            let message = service.err().message().unwrap_or(code).to_string();
            match code {
                "NoSuchBucket" => Error::NoSuchBucket {
                    bucket: key.split('/').next().unwrap_or_default().to_string(),
                },
                "NoSuchKey" | "NotFound" | "NoSuchUpload" if status == 404 => Error::NotFound {
                    key: key.to_string(),
                },
                "SlowDown" | "RequestTimeout" | "InternalError" | "ServiceUnavailable" => {
                    Error::Store {
                        operation,
                        key: key.to_string(),
                        message: format!("{code}: {message}"),
                        transient: true,
                    }
                }
                _ => Error::from_status(
                    operation,
                    key,
                    status,
                    format!("{code}: {message}")
                        .trim_start_matches(": ")
                        .to_string(),
                ),
            }
        }
        SdkError::ConstructionFailure(_) => Error::permanent(operation, key, &error_chain(&err)),
        // A certificate the client does not trust will not become trusted by
        // trying again: fail at once, saying what to configure.
        _ if is_certificate_failure(&error_chain(&err)) => Error::Store {
            operation,
            key: key.to_string(),
            message: format!(
                "TLS certificate not trusted ({}); set KASSETTE_STORAGE_CA_BUNDLE to the CA that issued it",
                error_chain(&err)
            ),
            transient: false,
        },
        // Dispatch failures, timeouts and broken responses: the request may
        // succeed when tried again.
        _ => Error::Store {
            operation,
            key: key.to_string(),
            message: error_chain(&err),
            transient: true,
        },
    }
}

/// Whether a connection failed because the server's certificate was refused
/// (rustls: "invalid peer certificate: UnknownIssuer" and the like).
fn is_certificate_failure(chain: &str) -> bool {
    [
        "invalid peer certificate",
        "InvalidCertificate",
        "certificate verify failed",
    ]
    .iter()
    .any(|marker| chain.contains(marker))
}

/// As [`classify`], but a 412 on a create-if-absent means another writer
/// won, and a 409 (S3's "conditional request conflict" while a concurrent
/// conditional write is in flight) is worth retrying to learn the outcome.
fn classify_put<E>(name: &str, mode: PutMode, err: SdkError<E, HttpResponse>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    if mode == PutMode::Create
        && let SdkError::ServiceError(service) = &err
        && service.raw().status().as_u16() == 409
    {
        return Error::Store {
            operation: "put",
            key: name.to_string(),
            message: "conditional write conflict".into(),
            transient: true,
        };
    }
    classify("put", name, err)
}

fn transient(operation: &'static str, key: &str, err: impl std::error::Error) -> Error {
    Error::Store {
        operation,
        key: key.to_string(),
        message: error_chain(&err),
        transient: true,
    }
}

/// The outcome of a part upload task.
fn joined(
    done: std::result::Result<Result<CompletedPart>, tokio::task::JoinError>,
    name: &str,
) -> Result<CompletedPart> {
    done.map_err(|join| Error::permanent("upload part", name, &join.to_string()))?
}

/// An HTTPS client that trusts the system roots plus the PEM bundle at
/// `path` (a private CA in front of MinIO or Ceph).
fn http_client_trusting(path: &Path) -> Result<aws_sdk_s3::config::SharedHttpClient> {
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
