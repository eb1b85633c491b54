//! An in-memory store, for unit tests of the plans that decide what to
//! write and delete (garbage collection, retention) without a server. It
//! keeps the [`Store`] contract — atomic objects, create-if-absent,
//! verified downloads — and can be given unfinished uploads to find.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

use super::{Digest, Error, ObjectKey, ObjectMeta, PendingUpload, PutMode, Result, Store};

/// Objects in a map; a test double for unit tests (see the module docs).
#[derive(Debug, Default)]
pub struct MemoryStore {
    objects: Mutex<BTreeMap<String, (Bytes, SystemTime)>>,
    uploads: Mutex<Vec<PendingUpload>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Pretends a killed process left an unfinished upload.
    pub fn add_pending_upload(&self, upload: PendingUpload) {
        self.lock_uploads().push(upload);
    }

    /// Every key present, sorted.
    pub fn keys(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    /// The unfinished uploads still present.
    pub fn pending_uploads(&self) -> Vec<PendingUpload> {
        self.lock_uploads().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, (Bytes, SystemTime)>> {
        self.objects.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_uploads(&self) -> std::sync::MutexGuard<'_, Vec<PendingUpload>> {
        self.uploads.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn put_file(&self, key: &ObjectKey, path: &Path) -> Result<Digest> {
        let data = tokio::fs::read(path)
            .await
            .map_err(|e| Error::local(path, e))?;
        let digest = super::digest_of(&data);
        self.put_bytes(key, data.into(), PutMode::Overwrite).await?;
        Ok(digest)
    }

    async fn get_file(&self, key: &ObjectKey, dest: &Path, expected: &Digest) -> Result<()> {
        let data = self.get_bytes(key).await?;
        let actual = super::digest_of(&data);
        if !actual.same_content(expected) {
            return Err(Error::Corrupt {
                key: key.to_string(),
                expected: expected.to_string(),
                actual: actual.to_string(),
            });
        }
        tokio::fs::write(dest, &data)
            .await
            .map_err(|e| Error::local(dest, e))
    }

    async fn put_bytes(&self, key: &ObjectKey, data: Bytes, mode: PutMode) -> Result<()> {
        let mut objects = self.lock();
        if mode == PutMode::Create && objects.contains_key(key.as_str()) {
            return Err(Error::AlreadyExists {
                key: key.to_string(),
            });
        }
        objects.insert(key.to_string(), (data, SystemTime::now()));
        Ok(())
    }

    async fn get_bytes(&self, key: &ObjectKey) -> Result<Bytes> {
        self.lock()
            .get(key.as_str())
            .map(|(data, _)| data.clone())
            .ok_or_else(|| Error::NotFound {
                key: key.to_string(),
            })
    }

    async fn head(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>> {
        Ok(self.lock().get(key.as_str()).map(|(data, at)| ObjectMeta {
            key: key.clone(),
            size: data.len() as u64,
            last_modified: Some(*at),
        }))
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxStream<'a, Result<ObjectMeta>> {
        let found: Vec<Result<ObjectMeta>> = self
            .lock()
            .iter()
            .filter(|(key, _)| key.starts_with(prefix))
            .map(|(key, (data, at))| {
                ObjectKey::new(key.clone())
                    .map_err(Error::from)
                    .map(|key| ObjectMeta {
                        key,
                        size: data.len() as u64,
                        last_modified: Some(*at),
                    })
            })
            .collect();
        Box::pin(futures::stream::iter(found))
    }

    async fn delete_many(&self, keys: &[ObjectKey]) -> Result<()> {
        let mut objects = self.lock();
        for key in keys {
            objects.remove(key.as_str());
        }
        Ok(())
    }

    async fn stale_uploads(
        &self,
        prefix: &str,
        older_than: Duration,
    ) -> Result<Vec<PendingUpload>> {
        let cutoff = SystemTime::now()
            .checked_sub(older_than)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        Ok(self
            .lock_uploads()
            .iter()
            .filter(|u| u.name.starts_with(prefix) && u.started.is_some_and(|t| t < cutoff))
            .cloned()
            .collect())
    }

    async fn abort_upload(&self, upload: &PendingUpload) -> Result<()> {
        self.lock_uploads().retain(|u| u != upload);
        Ok(())
    }
}
