//! Google Cloud Storage over its JSON API, with the `gcloud-storage` crate.
//!
//! Why this crate (see `docs/storage.md`): Google's official
//! `google-cloud-storage` lists and deletes only over gRPC, which the GCS
//! emulator does not serve, so those operations could not be tested here;
//! `gcloud-storage` does every operation kassette needs — media, multipart
//! and resumable uploads with `ifGenerationMatch`, streamed downloads,
//! paginated listing, delete — over the JSON API, against both GCS and
//! fake-gcs-server, with Application Default Credentials (workload
//! identity), service-account key files, or anonymous access for an
//! emulator.
//!
//! Files up to one part are a single multipart upload carrying their CRC32C,
//! which GCS verifies. Larger files go as a resumable upload in sequential
//! part-sized chunks (GCS resumable uploads are sequential); after it is
//! finalised, the CRC32C GCS computed is compared with kassette's, and a
//! mismatch deletes the object and fails the attempt. A failed attempt is
//! retried from the start of the file: resuming mid-upload needs a status
//! query that the emulator answers wrongly, and correctness comes first.

use std::path::Path;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use gcloud_storage::client::{Client, ClientConfig};
use gcloud_storage::http::Error as GcsError;
use gcloud_storage::http::objects::Object;
use gcloud_storage::http::objects::delete::DeleteObjectRequest;
use gcloud_storage::http::objects::download::Range;
use gcloud_storage::http::objects::get::GetObjectRequest;
use gcloud_storage::http::objects::list::ListObjectsRequest;
use gcloud_storage::http::objects::upload::{UploadObjectRequest, UploadType};
use gcloud_storage::http::resumable_upload_client::ChunkSize;

use super::digest::{Digest, crc32c_from_base64};
use super::error::{Error, Result, error_chain};
use super::key::{ObjectKey, full_name, relative_key};
use super::limits::Limits;
use super::retry::RetryPolicy;
use super::transfer::{PartHasher, SourceFile, paginate, part_size_for, write_verified};
use super::{ObjectMeta, PutMode, Store};
use crate::config::{Backend, StorageConfig};

/// Concurrent single-object deletes (the JSON API has no bulk delete).
const DELETE_CONCURRENCY: usize = 16;

#[derive(Clone)]
pub struct GcsStore {
    client: Client,
    bucket: String,
    /// Set once a bucket-level request succeeded: from then on a 404 on an
    /// object request means the object is missing.
    bucket_exists: std::sync::Arc<std::sync::OnceLock<()>>,
    root: String,
    limits: Limits,
    retry: RetryPolicy,
}

impl std::fmt::Debug for GcsStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcsStore")
            .field("bucket", &self.bucket)
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl GcsStore {
    /// Builds the client; with credentials this fetches no token yet, but
    /// reads the key file and resolves Application Default Credentials.
    pub async fn open(config: &StorageConfig, limits: Limits) -> Result<Self> {
        let Backend::Gcs {
            bucket,
            endpoint,
            credentials_file,
        } = &config.backend
        else {
            return Err(Error::setup("not a GCS configuration"));
        };
        let mut client_config = ClientConfig::default();
        if let Some(url) = endpoint {
            client_config.storage_endpoint = url.as_str().trim_end_matches('/').to_string();
        }
        let client_config = match (credentials_file, endpoint) {
            (Some(file), _) => {
                let path = file.to_string_lossy().into_owned();
                let credentials =
                    gcloud_storage::client::google_cloud_auth::credentials::CredentialsFile::new_from_file(path)
                        .await
                        .map_err(|e| Error::setup(&format!("credentials file {}: {e}", file.display())))?;
                client_config
                    .with_credentials(credentials)
                    .await
                    .map_err(|e| {
                        Error::setup(&format!("credentials file {}: {e}", file.display()))
                    })?
            }
            // An emulator endpoint without credentials: anonymous access.
            (None, Some(_)) => client_config.anonymous(),
            (None, None) => client_config
                .with_auth()
                .await
                .map_err(|e| Error::setup(&format!("Application Default Credentials: {e}")))?,
        };
        Ok(Self {
            client: Client::new(client_config),
            bucket: bucket.clone(),
            bucket_exists: Default::default(),
            root: config.prefix.clone(),
            limits,
            retry: RetryPolicy::default(),
        })
    }

    fn name(&self, key: &ObjectKey) -> String {
        full_name(&self.root, key.as_str())
    }

    /// A 404 on an object request means the object or the bucket is
    /// missing, and the JSON API answers both alike. Which one is decided by
    /// the answer to a bucket-level request (a one-object listing, which
    /// needs no permission kassette lacks), never by words in the message.
    async fn missing(&self, err: Error) -> Error {
        if !matches!(err, Error::NotFound { .. }) || self.bucket_exists.get().is_some() {
            return err;
        }
        let request = ListObjectsRequest {
            bucket: self.bucket.clone(),
            max_results: Some(1),
            ..Default::default()
        };
        match self.client.list_objects(&request).await {
            Ok(_) => {
                let _ = self.bucket_exists.set(());
                err
            }
            Err(GcsError::Response(response)) if response.code == 404 => Error::NoSuchBucket {
                bucket: self.bucket.clone(),
            },
            // Cannot tell: the object's own answer stands.
            Err(_) => err,
        }
    }

    /// A 404 on a request that addresses the bucket itself (a listing, an
    /// upload) means the bucket is missing.
    fn bucket_missing(&self, err: Error) -> Error {
        match err {
            Error::NotFound { .. } => Error::NoSuchBucket {
                bucket: self.bucket.clone(),
            },
            other => other,
        }
    }

    fn upload_request(&self, mode: PutMode) -> UploadObjectRequest {
        UploadObjectRequest {
            bucket: self.bucket.clone(),
            if_generation_match: (mode == PutMode::Create).then_some(0),
            ..Default::default()
        }
    }

    /// One attempt at uploading a whole file; returns its digest.
    ///
    /// A file of one part is read into memory (the client builds a
    /// multipart request whose length it must know); larger files are
    /// hashed part by part and each chunk of the resumable upload is
    /// streamed from the file, so no chunk is held.
    async fn upload_file_once(&self, name: &str, path: &Path) -> Result<Digest> {
        let source = SourceFile::open(path).await?;
        let size = source.size();
        let part_size = part_size_for(size);
        if size <= part_size {
            let _slot = self.limits.slot().await;
            let (range, _, digest) = PartHasher::whole(&source, false).await?;
            let data = source.read(range).await?;
            drop(_slot);
            self.put_small(name, data, &digest, PutMode::Overwrite)
                .await?;
            return Ok(digest);
        }
        let meta = Object {
            name: name.to_string(),
            ..Default::default()
        };
        let session = self
            .client
            .prepare_resumable_upload(
                &self.upload_request(PutMode::Overwrite),
                &UploadType::Multipart(Box::new(meta)),
            )
            .await
            .map_err(|e| classify("start resumable upload", name, e))?;
        let mut hasher = PartHasher::new(&source, part_size, false);
        loop {
            let _slot = self.limits.slot().await;
            let Some((range, _)) = hasher.next().await? else {
                break;
            };
            self.limits.bandwidth(range.len).await;
            let chunk = ChunkSize::new(range.offset, range.offset + range.len - 1, Some(size));
            session
                .upload_multiple_chunk(reqwest::Body::wrap_stream(source.stream(range)), &chunk)
                .await
                .map_err(|e| classify("upload chunk", name, e))?;
        }
        let digest = hasher.finish().await?;
        self.check_stored_crc(name, &digest).await?;
        Ok(digest)
    }

    /// Compares the CRC32C GCS computed for `name` with ours; on mismatch
    /// deletes the object and reports a transient error so it is re-sent.
    async fn check_stored_crc(&self, name: &str, digest: &Digest) -> Result<()> {
        let object = self.get_object(name).await?;
        let stored = object.crc32c.as_deref().and_then(crc32c_from_base64);
        if stored.is_some_and(|crc| crc != digest.crc32c) || object.size as u64 != digest.size {
            let _ = self.delete_one(name).await;
            return Err(Error::Store {
                operation: "put",
                key: name.to_string(),
                message: "stored object does not match the bytes sent; upload damaged in transit"
                    .into(),
                transient: true,
            });
        }
        Ok(())
    }

    async fn put_small(
        &self,
        name: &str,
        data: Bytes,
        digest: &Digest,
        mode: PutMode,
    ) -> Result<()> {
        let meta = Object {
            name: name.to_string(),
            crc32c: Some(digest.crc32c_base64()),
            ..Default::default()
        };
        let request = self.upload_request(mode);
        let len = data.len() as u64;
        let _slot = self.limits.slot().await;
        self.limits.bandwidth(len).await;
        self.client
            .upload_object(&request, data, &UploadType::Multipart(Box::new(meta)))
            .await
            .map(|_| ())
            .map_err(|e| self.bucket_missing(classify("put", name, e)))
    }

    async fn get_object(&self, name: &str) -> Result<Object> {
        let request = GetObjectRequest {
            bucket: self.bucket.clone(),
            object: name.to_string(),
            ..Default::default()
        };
        self.retry
            .run("head", || async {
                self.client
                    .get_object(&request)
                    .await
                    .map_err(|e| classify("head", name, e))
            })
            .await
    }

    async fn delete_one(&self, name: &str) -> Result<()> {
        let request = DeleteObjectRequest {
            bucket: self.bucket.clone(),
            object: name.to_string(),
            ..Default::default()
        };
        let result = self
            .retry
            .run("delete", || async {
                self.client
                    .delete_object(&request)
                    .await
                    .map_err(|e| classify("delete", name, e))
            })
            .await;
        match result {
            Ok(()) | Err(Error::NotFound { .. }) => Ok(()),
            Err(err) => Err(err),
        }
    }

    async fn list_page(
        &self,
        prefix: &str,
        token: Option<String>,
    ) -> Result<(Vec<ObjectMeta>, Option<String>)> {
        let full = full_name(&self.root, prefix);
        let request = ListObjectsRequest {
            bucket: self.bucket.clone(),
            prefix: Some(full.clone()),
            page_token: token,
            ..Default::default()
        };
        let page = self
            .retry
            .run("list", || async {
                self.client
                    .list_objects(&request)
                    .await
                    .map_err(|e| self.bucket_missing(classify("list", &full, e)))
            })
            .await?;
        let items = page
            .items
            .unwrap_or_default()
            .into_iter()
            .filter_map(|o| {
                Some(ObjectMeta {
                    key: relative_key(&self.root, &o.name)?,
                    size: o.size.max(0) as u64,
                    last_modified: o.updated.map(SystemTime::from),
                })
            })
            .collect();
        Ok((items, page.next_page_token))
    }
}

#[async_trait]
impl Store for GcsStore {
    async fn put_file(&self, key: &ObjectKey, path: &Path) -> Result<Digest> {
        let name = self.name(key);
        self.retry
            .run("put", || self.upload_file_once(&name, path))
            .await
    }

    async fn get_file(&self, key: &ObjectKey, dest: &Path, expected: &Digest) -> Result<()> {
        let name = self.name(key);
        let request = GetObjectRequest {
            bucket: self.bucket.clone(),
            object: name.clone(),
            ..Default::default()
        };
        let result = self
            .retry
            .run("get", || async {
                let _slot = self.limits.slot().await;
                let stream = self
                    .client
                    .download_streamed_object(&request, &Range::default())
                    .await
                    .map_err(|e| classify("get", key.as_str(), e))?;
                let chunks = stream.map_err(|e| classify("get", key.as_str(), e)).boxed();
                write_verified(key.as_str(), dest, expected, chunks, &self.limits).await
            })
            .await;
        match result {
            Err(err) => Err(self.missing(err).await),
            ok => ok,
        }
    }

    async fn put_bytes(&self, key: &ObjectKey, data: Bytes, mode: PutMode) -> Result<()> {
        let name = self.name(key);
        let digest = super::digest_of(&data);
        self.retry
            .run("put", || self.put_small(&name, data.clone(), &digest, mode))
            .await
    }

    async fn get_bytes(&self, key: &ObjectKey) -> Result<Bytes> {
        let request = GetObjectRequest {
            bucket: self.bucket.clone(),
            object: self.name(key),
            ..Default::default()
        };
        let result = self
            .retry
            .run("get", || async {
                let _slot = self.limits.slot().await;
                let stream = self
                    .client
                    .download_streamed_object(&request, &Range::default())
                    .await
                    .map_err(|e| classify("get", key.as_str(), e))?;
                super::collect_small(key.as_str(), stream.boxed(), |e| {
                    classify("get", key.as_str(), e)
                })
                .await
            })
            .await;
        match result {
            Err(err) => Err(self.missing(err).await),
            ok => ok,
        }
    }

    async fn head(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>> {
        match self.get_object(&self.name(key)).await {
            Ok(object) => Ok(Some(ObjectMeta {
                key: key.clone(),
                size: object.size.max(0) as u64,
                last_modified: object.updated.map(SystemTime::from),
            })),
            Err(err) => match self.missing(err).await {
                Error::NotFound { .. } => Ok(None),
                err => Err(err),
            },
        }
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxStream<'a, Result<ObjectMeta>> {
        paginate(move |token| self.list_page(prefix, token))
    }

    async fn delete_many(&self, keys: &[ObjectKey]) -> Result<()> {
        let names: Vec<String> = keys.iter().map(|key| self.name(key)).collect();
        futures::stream::iter(names)
            .map(|name| async move { self.delete_one(&name).await })
            .buffer_unordered(DELETE_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await
            .map(|_| ())
    }
}

/// Classifies an error by the response's status alone: a 404 is
/// [`Error::NotFound`] here, and the caller, who knows which resource the
/// request addressed, decides whether that was the object or the bucket
/// ([`GcsStore::missing`], [`GcsStore::bucket_missing`]).
fn classify(operation: &'static str, key: &str, err: GcsError) -> Error {
    match err {
        GcsError::Response(response) => {
            Error::from_status(operation, key, response.code, response.message)
        }
        GcsError::HttpClient(e) => {
            let transient =
                e.is_timeout() || e.is_connect() || e.is_request() || e.is_body() || e.is_decode();
            match e.status() {
                Some(status) => Error::from_status(operation, key, status.as_u16(), e.to_string()),
                None => Error::Store {
                    operation,
                    key: key.to_string(),
                    message: error_chain(&e),
                    transient,
                },
            }
        }
        other => Error::Store {
            operation,
            key: key.to_string(),
            message: error_chain(&other),
            transient: false,
        },
    }
}
