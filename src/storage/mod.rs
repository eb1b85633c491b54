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
//! - **Verified transfers.** [`Store::put_file`] reads the file once,
//!   computing its [`Digest`] in the same pass, and hands the CRC32C to the
//!   store so that a damaged upload is refused by the store itself.
//!   [`Store::get_file`] writes to a temporary name, checks size and
//!   BLAKE3 against what the caller expects, and renames only on a match;
//!   a mismatch is [`Error::Corrupt`] naming the object.
//! - **Bounded memory.** Transfers stream; the only buffers are parts in
//!   flight, bounded by [`Limits`] (concurrency × part size).
//! - **Create-if-absent.** [`PutMode::Create`] succeeds for exactly one of
//!   several concurrent writers; the others get [`Error::AlreadyExists`].
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
pub mod retry;
pub mod s3;
mod transfer;

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

pub use digest::{Digest, Hasher, crc32c_base64, digest_of};
pub use error::{Error, Result, error_chain};
pub use key::{InvalidKey, ObjectKey};
pub use limits::Limits;
pub use transfer::{MAX_PARTS, MIN_PART_SIZE, part_size_for};

use crate::config::{Backend, StorageConfig};

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

    /// Reads a small object into memory.
    async fn get_bytes(&self, key: &ObjectKey) -> Result<Bytes>;

    /// Size and time of `key`, or `None` when it does not exist.
    async fn head(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>>;

    /// Every object whose key starts with `prefix` (a plain string prefix,
    /// e.g. `backups/` or `data/ab`), streamed page by page.
    fn list<'a>(&'a self, prefix: &'a str) -> BoxStream<'a, Result<ObjectMeta>>;

    /// Deletes `keys`, batched where the store allows; missing keys are not
    /// an error.
    async fn delete_many(&self, keys: &[ObjectKey]) -> Result<()>;
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
