//! Object storage: one small interface, four backends (S3 and
//! S3-compatible stores, Google Cloud Storage, Azure Blob Storage, a local
//! directory), and the
//! shared machinery every byte goes through — checksums, retries, limits.
//!
//! # Contract
//!
//! Every [`Store`] guarantees, whatever the backend:
//!
//! - **Atomic writes.** Nobody ever sees a partial object: an object exists
//!   with its complete content or not at all (S3 PutObject / multipart
//!   complete, GCS upload finalisation, local temp file + fsync + rename).
//! - **Verified transfers.** [`Store::put_file`] hashes the file part by
//!   part, computing its [`Digest`] and each part's CRC32C, and hands the
//!   CRC32C to the store with the part so that a damaged upload is refused
//!   by the store itself: the digest returned is of the bytes accepted.
//!   [`Store::get_file`] writes to a temporary name, checks size and
//!   BLAKE3 against what the caller expects, and renames only on a match;
//!   a mismatch is [`Error::Corrupt`] naming the object.
//! - **Bounded memory.** Transfers stream: a part is sent by reading its
//!   range from the file as the request body is written (again for a
//!   retry), never held; what a request in flight holds is a read chunk or
//!   two, and requests in flight are bounded by [`Limits`].
//! - **Create-if-absent.** [`PutMode::Create`] succeeds for exactly one of
//!   several concurrent writers; the others get [`Error::AlreadyExists`].
//!   [`create`] is the form callers use: a retried create whose first
//!   response was lost finds its own bytes and succeeds.
//! - **Unfinished uploads are visible to clean-up.** A process killed
//!   mid-upload leaves an S3 multipart upload or a local temporary file;
//!   [`Store::stale_uploads`] finds those under a prefix and
//!   [`Store::abort_upload`] removes one.
//! - **Listing streams.** [`Store::list`] yields keys page by page, never
//!   holding a whole listing in memory, in no promised order.
//! - **One retry policy** ([`retry`]) for transient failures; permanent ones
//!   (denied, missing bucket, not found) surface at once.
//!
//! Keys are [`ObjectKey`]s relative to the store's root (bucket + prefix, or
//! directory); the layout of kassette's objects is the catalog's business,
//! not this module's.

pub mod azure;
mod digest;
mod error;
pub mod gcs;
mod key;
mod limits;
pub mod local;
pub mod memory;
pub mod retry;
pub mod s3;
mod transfer;

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

pub use digest::{Digest, Hasher, crc32c_base64, digest_of};
pub use error::{Error, Result, error_chain};
pub use key::{InvalidKey, ObjectKey};
pub use limits::Limits;
pub use transfer::{MAX_PARTS, MIN_PART_SIZE, part_size_for};

use crate::config::{Backend, StorageConfig};

/// The largest object [`Store::get_bytes`] reads into memory (a node
/// manifest of a million files is about 300 MB).
pub const MAX_SMALL_OBJECT: u64 = 512 << 20;

/// The error of an object too large to read whole.
pub(crate) fn too_large(key: &str, size: u64) -> Error {
    Error::permanent(
        "get",
        key,
        &format!(
            "{size} bytes or more, larger than the {MAX_SMALL_OBJECT} bytes a manifest, index or lease may have"
        ),
    )
}

/// Gathers a body streamed in chunks, stopping with [`too_large`] as soon
/// as it passes [`MAX_SMALL_OBJECT`].
pub(crate) async fn collect_small<E>(
    key: &str,
    mut chunks: impl futures::Stream<Item = std::result::Result<Bytes, E>> + Unpin,
    chunk_error: impl Fn(E) -> Error,
) -> Result<Bytes> {
    use futures::StreamExt;
    let mut data = bytes::BytesMut::new();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(&chunk_error)?;
        if (data.len() + chunk.len()) as u64 > MAX_SMALL_OBJECT {
            return Err(too_large(key, (data.len() + chunk.len()) as u64));
        }
        data.extend_from_slice(&chunk);
    }
    Ok(data.freeze())
}

/// What a listing or a head returns about one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub key: ObjectKey,
    pub size: u64,
    pub last_modified: Option<SystemTime>,
}

/// How [`Store::put_bytes`] treats an existing object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutMode {
    /// Replace it (atomically).
    Overwrite,
    /// Fail with [`Error::AlreadyExists`] if it exists (locks, commit markers).
    Create,
}

/// The storage interface; see the module documentation for its contract.
#[async_trait]
pub trait Store: Send + Sync + fmt::Debug {
    /// Uploads the local file at `path` to `key` and returns its digest,
    /// computed from the very bytes sent.
    async fn put_file(&self, key: &ObjectKey, path: &Path) -> Result<Digest>;

    /// Downloads `key` to `dest`, which appears only once its content
    /// matches `expected`.
    async fn get_file(&self, key: &ObjectKey, dest: &Path, expected: &Digest) -> Result<()>;

    /// Writes a small object (a manifest, a lock) from memory.
    async fn put_bytes(&self, key: &ObjectKey, data: Bytes, mode: PutMode) -> Result<()>;

    /// Reads a small object into memory: at most [`MAX_SMALL_OBJECT`]
    /// bytes, a larger one is an error naming it (never loaded whole).
    async fn get_bytes(&self, key: &ObjectKey) -> Result<Bytes>;

    /// Size and time of `key`, or `None` when it does not exist.
    async fn head(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>>;

    /// Every object whose key starts with `prefix` (a plain string prefix,
    /// e.g. `backups/` or `data/ab`), streamed page by page.
    fn list<'a>(&'a self, prefix: &'a str) -> BoxStream<'a, Result<ObjectMeta>>;

    /// Deletes `keys`, batched where the store allows; missing keys are not
    /// an error.
    async fn delete_many(&self, keys: &[ObjectKey]) -> Result<()>;

    /// Uploads under `prefix` started more than `older_than` ago and never
    /// finished: leftovers of killed processes (S3 multipart uploads, local
    /// temporary files). Stores that keep no such state (GCS expires its
    /// resumable uploads itself) report none.
    async fn stale_uploads(
        &self,
        prefix: &str,
        older_than: Duration,
    ) -> Result<Vec<PendingUpload>> {
        let _ = (prefix, older_than);
        Ok(Vec::new())
    }

    /// Removes one unfinished upload found by [`Store::stale_uploads`].
    async fn abort_upload(&self, upload: &PendingUpload) -> Result<()> {
        let _ = upload;
        Ok(())
    }
}

/// An upload that was started and never finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingUpload {
    /// The object (or file) it was writing, as the store names it.
    pub name: String,
    /// The store's handle on it: an S3 upload id, a temporary file's path.
    pub id: String,
    pub started: Option<SystemTime>,
}

impl fmt::Display for PendingUpload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (upload {})", self.name, self.id)
    }
}

/// Create-if-absent (for the lease, the backup manifest) that survives a
/// lost response: when the object exists and holds exactly `data`, the
/// earlier attempt of this very write succeeded (every such record is
/// unique to its writer: a run id, a finish time) and it is ours.
/// Otherwise [`Error::AlreadyExists`]: another writer won.
pub async fn create(store: &dyn Store, key: &ObjectKey, data: Bytes) -> Result<()> {
    match store.put_bytes(key, data.clone(), PutMode::Create).await {
        Err(Error::AlreadyExists { key: name }) => match store.get_bytes(key).await {
            Ok(existing) if existing == data => {
                tracing::info!(key = %key, "create found its own bytes (an earlier attempt succeeded; its response was lost)");
                Ok(())
            }
            Ok(_) | Err(Error::NotFound { .. }) => Err(Error::AlreadyExists { key: name }),
            Err(err) => Err(err),
        },
        other => other,
    }
}

/// Opens the store a validated configuration describes.
pub async fn open(config: &StorageConfig) -> Result<Arc<dyn Store>> {
    let limits = Limits::new(&config.limits);
    let store: Arc<dyn Store> = match &config.backend {
        Backend::Local { root } => Arc::new(local::LocalStore::new(root, &config.prefix, limits)?),
        Backend::S3 { .. } => Arc::new(s3::S3Store::open(config, limits).await?),
        Backend::Gcs { .. } => Arc::new(gcs::GcsStore::open(config, limits).await?),
        Backend::Azure(_) => Arc::new(azure::AzureStore::open(config, limits).await?),
    };
    Ok(store)
}
