//! Amazon S3 and S3-compatible stores (MinIO, Ceph RGW, …) over `aws-sdk-s3`.
//!
//! Uploads up to one part size are a single PutObject; larger files are
//! multipart uploads ([`multipart`]) whose parts are hashed in order and
//! sent in parallel, each with its CRC32C so the store refuses a damaged
//! part. Part bytes are streamed from the file, never held: memory per
//! request in flight is a read chunk, whatever the part size.
//!
//! Split by concern: [`client`] (configuration), [`encryption`] (SSE-KMS,
//! SSE-C), [`multipart`] (multipart uploads and their leftovers),
//! [`errors`] (what an SDK error means), [`tls`] (a private CA); this file
//! holds the [`Store`] operations on single objects.

#[macro_use]
mod encryption;
mod client;
mod errors;
mod multipart;
mod tls;

use std::path::Path;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{Delete, ObjectIdentifier, StorageClass};
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::OwnedSemaphorePermit;

use super::digest::Digest;
use super::error::{Error, Result};
use super::key::{ObjectKey, full_name, relative_key};
use super::limits::Limits;
use super::retry::RetryPolicy;
use super::transfer::{PartHasher, PartRange, SourceFile, paginate, part_size_for, write_verified};
use super::{ObjectMeta, PutMode, Store};
use encryption::Encryption;
use errors::{classify, classify_put, transient};

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

impl S3Store {
    fn name(&self, key: &ObjectKey) -> String {
        full_name(&self.root, key.as_str())
    }

    /// One PutObject carrying `crc32c`, retried as a whole. `slot`, when
    /// given, is a concurrency slot already taken: the first attempt uses
    /// it, later ones wait for their own.
    async fn put_single(
        &self,
        name: &str,
        body: Body<'_>,
        crc32c: u32,
        mode: PutMode,
        slot: Option<OwnedSemaphorePermit>,
    ) -> Result<()> {
        let len = body.len();
        let crc = super::crc32c_base64(crc32c);
        let mut first = slot;
        self.retry
            .run("put", || {
                let held = first.take();
                let (crc, body) = (&crc, &body);
                async move {
                    let _slot = match held {
                        Some(slot) => slot,
                        None => self.limits.slot().await,
                    };
                    self.limits.bandwidth(len).await;
                    let request = self
                        .client
                        .put_object()
                        .bucket(&self.bucket)
                        .key(name)
                        .content_length(len as i64)
                        .checksum_crc32_c(crc)
                        .body(body.stream());
                    let mut request = with_object_settings!(request, self);
                    if mode == PutMode::Create {
                        request = request.if_none_match("*");
                    }
                    request
                        .send()
                        .await
                        .map(|_| ())
                        .map_err(|e| classify_put(name, mode, e))
                }
            })
            .await
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
        let source = SourceFile::open(path).await?;
        let size = source.size();
        if size > part_size_for(size) {
            return self.put_multipart(&name, &source).await;
        }
        let slot = self.limits.slot().await;
        let (range, sums, digest) = PartHasher::whole(&source, false).await?;
        let body = Body::File(&source, range);
        self.put_single(&name, body, sums.crc32c, PutMode::Overwrite, Some(slot))
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
        let crc32c = super::digest_of(&data).crc32c;
        self.put_single(&self.name(key), Body::Memory(&data), crc32c, mode, None)
            .await
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

/// What a PutObject sends: a small object from memory, or a range of a
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

    fn stream(&self) -> ByteStream {
        match self {
            Body::Memory(data) => ByteStream::from((*data).clone()),
            Body::File(source, range) => body(source, *range),
        }
    }
}

/// A request body that streams `range` from the file: the SDK signs it
/// `UNSIGNED-PAYLOAD` (no SHA-256 pass over the bytes); the CRC32C header
/// is what the store checks.
fn body(source: &SourceFile, range: PartRange) -> ByteStream {
    ByteStream::from_body_1_x(reqwest::Body::wrap_stream(source.stream(range)))
}
