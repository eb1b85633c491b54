//! A directory as a store: a mounted volume or NFS share.
//!
//! Objects are files under `root/prefix/`, named by their key. Writes go to
//! a temporary file in the destination directory, are fsynced, then renamed
//! (overwrite) or hard-linked (create-if-absent: `link` fails when the name
//! exists, which makes concurrent creators safe and never exposes a partial
//! file). Listing walks the tree one directory at a time.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::io::AsyncWriteExt;

use super::digest::Digest;
use super::digest::Hasher;
use super::error::{Error, Result};
use super::key::ObjectKey;
use super::limits::Limits;
use super::transfer::{PartRange, SourceFile, TEMP_MARKER, temp_path_for, write_verified};
use super::{ObjectMeta, PendingUpload, PutMode, Store};

/// Bytes copied per read when uploading to a directory.
const COPY_CHUNK: u64 = super::transfer::READ_CHUNK as u64;

#[derive(Debug)]
pub struct LocalStore {
    root: PathBuf,
    limits: Limits,
}

impl LocalStore {
    /// A store rooted at `dir/prefix`; `dir` must exist.
    pub fn new(dir: &Path, prefix: &str, limits: Limits) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::local(
                dir,
                std::io::Error::new(std::io::ErrorKind::NotFound, "not a directory"),
            ));
        }
        let root = if prefix.is_empty() {
            dir.to_path_buf()
        } else {
            dir.join(prefix)
        };
        Ok(Self { root, limits })
    }

    fn path_of(&self, key: &ObjectKey) -> PathBuf {
        self.root.join(key.as_str())
    }

    /// Writes `data` to a synced temporary file beside `path`.
    async fn write_temp(&self, path: &Path, data: &[u8]) -> Result<PathBuf> {
        let dir = path.parent().unwrap_or(&self.root);
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| Error::local(dir, e))?;
        let temp = temp_path_for(path);
        let mut file = tokio::fs::File::create(&temp)
            .await
            .map_err(|e| Error::local(&temp, e))?;
        file.write_all(data)
            .await
            .map_err(|e| Error::local(&temp, e))?;
        file.sync_all().await.map_err(|e| Error::local(&temp, e))?;
        Ok(temp)
    }

    /// Makes a finished temporary file visible under `path`.
    async fn publish(
        &self,
        key: &ObjectKey,
        temp: &Path,
        path: &Path,
        mode: PutMode,
    ) -> Result<()> {
        let outcome = match mode {
            PutMode::Overwrite => tokio::fs::rename(temp, path).await,
            PutMode::Create => {
                let linked = tokio::fs::hard_link(temp, path).await;
                let _ = tokio::fs::remove_file(temp).await;
                linked
            }
        };
        match outcome {
            Ok(()) => sync_dir(path).await,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(Error::AlreadyExists {
                key: key.to_string(),
            }),
            Err(e) => {
                let _ = tokio::fs::remove_file(temp).await;
                Err(Error::local(path, e))
            }
        }
    }
}

/// Makes a rename durable: fsync the directory that holds `path`.
async fn sync_dir(path: &Path) -> Result<()> {
    let Some(dir) = path.parent() else {
        return Ok(());
    };
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::local(&dir, e))
    })
    .await
    .map_err(|e| Error::local(path, std::io::Error::other(e)))?
}

fn not_found_is_none<T>(result: std::io::Result<T>, path: &Path) -> Result<Option<T>> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::local(path, e)),
    }
}

#[async_trait]
impl Store for LocalStore {
    async fn put_file(&self, key: &ObjectKey, path: &Path) -> Result<Digest> {
        let dest = self.path_of(key);
        let dir = dest.parent().unwrap_or(&self.root).to_path_buf();
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| Error::local(&dir, e))?;
        let temp = temp_path_for(&dest);
        let copied = async {
            let source = SourceFile::open(path).await?;
            let mut out = tokio::fs::File::create(&temp)
                .await
                .map_err(|e| Error::local(&temp, e))?;
            let _slot = self.limits.slot().await;
            // Every byte written is hashed: the digest is of what was stored.
            let mut hasher = Hasher::new();
            let mut offset = 0;
            while offset < source.size() {
                let len = COPY_CHUNK.min(source.size() - offset);
                let range = PartRange {
                    index: 0,
                    offset,
                    len,
                };
                let chunk = source.read(range).await?;
                self.limits.bandwidth(len).await;
                hasher.update(&chunk);
                out.write_all(&chunk)
                    .await
                    .map_err(|e| Error::local(&temp, e))?;
                offset += len;
            }
            out.sync_all().await.map_err(|e| Error::local(&temp, e))?;
            source.check_size(offset).await?;
            Ok(hasher.finish())
        }
        .await;
        match copied {
            Ok(digest) => {
                self.publish(key, &temp, &dest, PutMode::Overwrite).await?;
                Ok(digest)
            }
            Err(err) => {
                let _ = tokio::fs::remove_file(&temp).await;
                Err(err)
            }
        }
    }

    async fn get_file(&self, key: &ObjectKey, dest: &Path, expected: &Digest) -> Result<()> {
        let source = self.path_of(key);
        let file = match not_found_is_none(tokio::fs::File::open(&source).await, &source)? {
            Some(file) => file,
            None => {
                return Err(Error::NotFound {
                    key: key.to_string(),
                });
            }
        };
        let _slot = self.limits.slot().await;
        let chunks = tokio_util::io::ReaderStream::with_capacity(file, COPY_CHUNK as usize)
            .map(|chunk| chunk.map_err(|e| Error::local(&source, e)));
        write_verified(key.as_str(), dest, expected, chunks, &self.limits).await
    }

    async fn put_bytes(&self, key: &ObjectKey, data: Bytes, mode: PutMode) -> Result<()> {
        let path = self.path_of(key);
        let temp = self.write_temp(&path, &data).await?;
        self.publish(key, &temp, &path, mode).await
    }

    async fn get_bytes(&self, key: &ObjectKey) -> Result<Bytes> {
        let path = self.path_of(key);
        if let Some(meta) = not_found_is_none(tokio::fs::metadata(&path).await, &path)?
            && meta.len() > super::MAX_SMALL_OBJECT
        {
            return Err(super::too_large(key.as_str(), meta.len()));
        }
        match not_found_is_none(tokio::fs::read(&path).await, &path)? {
            Some(data) => Ok(Bytes::from(data)),
            None => Err(Error::NotFound {
                key: key.to_string(),
            }),
        }
    }

    async fn head(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>> {
        let path = self.path_of(key);
        let meta = not_found_is_none(tokio::fs::metadata(&path).await, &path)?;
        Ok(meta.filter(|m| m.is_file()).map(|m| ObjectMeta {
            key: key.clone(),
            size: m.len(),
            last_modified: m.modified().ok(),
        }))
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxStream<'a, Result<ObjectMeta>> {
        // Walk only the directory the prefix names (or its parent when the
        // prefix ends mid-name), one directory's entries in memory at a time.
        let (dir_part, _) = prefix.rsplit_once('/').unwrap_or(("", prefix));
        let start = if dir_part.is_empty() {
            self.root.clone()
        } else {
            self.root.join(dir_part)
        };
        let walk = Walk {
            root: self.root.clone(),
            prefix: prefix.to_string(),
            pending: VecDeque::from([start]),
            ready: VecDeque::new(),
        };
        futures::stream::unfold(walk, |mut walk| async move {
            walk.next().await.map(|item| (item, walk))
        })
        .boxed()
    }

    async fn delete_many(&self, keys: &[ObjectKey]) -> Result<()> {
        for key in keys {
            let path = self.path_of(key);
            not_found_is_none(tokio::fs::remove_file(&path).await, &path)?;
        }
        Ok(())
    }

    /// Temporary files (named with [`TEMP_MARKER`]) under `prefix` not
    /// modified for `older_than`: what a process killed mid-write left.
    async fn stale_uploads(
        &self,
        prefix: &str,
        older_than: std::time::Duration,
    ) -> Result<Vec<PendingUpload>> {
        let cutoff = std::time::SystemTime::now()
            .checked_sub(older_than)
            .unwrap_or(std::time::SystemTime::UNIX_EPOCH);
        let (dir_part, _) = prefix.rsplit_once('/').unwrap_or(("", prefix));
        let mut pending = vec![self.root.join(dir_part)];
        let mut stale = Vec::new();
        while let Some(dir) = pending.pop() {
            let Some(mut entries) = not_found_is_none(tokio::fs::read_dir(&dir).await, &dir)?
            else {
                continue;
            };
            while let Some(entry) = entries
                .next_entry()
                .await
                .map_err(|e| Error::local(&dir, e))?
            {
                let Ok(meta) = entry.metadata().await else {
                    continue; // removed meanwhile
                };
                let path = entry.path();
                if meta.is_dir() {
                    pending.push(path);
                    continue;
                }
                let name = entry.file_name().to_string_lossy().into_owned();
                let rel = path
                    .strip_prefix(&self.root)
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let modified = meta.modified().ok();
                if name.contains(TEMP_MARKER)
                    && rel.starts_with(prefix)
                    && modified.is_some_and(|m| m < cutoff)
                {
                    stale.push(PendingUpload {
                        name: rel,
                        id: path.display().to_string(),
                        started: modified,
                    });
                }
            }
        }
        Ok(stale)
    }

    async fn abort_upload(&self, upload: &PendingUpload) -> Result<()> {
        let path = Path::new(&upload.id);
        if !path.starts_with(&self.root) || !upload.id.contains(TEMP_MARKER) {
            return Err(Error::local(
                path,
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "not a temporary file of this store",
                ),
            ));
        }
        not_found_is_none(tokio::fs::remove_file(path).await, path)?;
        Ok(())
    }
}

/// Depth-first walk: a directory's files, then its subdirectories.
struct Walk {
    root: PathBuf,
    prefix: String,
    pending: VecDeque<PathBuf>,
    ready: VecDeque<Result<ObjectMeta>>,
}

impl Walk {
    async fn next(&mut self) -> Option<Result<ObjectMeta>> {
        loop {
            if let Some(item) = self.ready.pop_front() {
                return Some(item);
            }
            let dir = self.pending.pop_front()?;
            if let Err(err) = self.read_dir(&dir).await {
                return Some(Err(err));
            }
        }
    }

    async fn read_dir(&mut self, dir: &Path) -> Result<()> {
        let mut entries = match not_found_is_none(tokio::fs::read_dir(dir).await, dir)? {
            Some(entries) => entries,
            None => return Ok(()),
        };
        let mut found = Vec::new();
        while let Some(entry) = entries
            .next_entry()
            .await
            .map_err(|e| Error::local(dir, e))?
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.contains(TEMP_MARKER) {
                continue;
            }
            // A file removed since the directory was read is simply gone.
            let meta = match entry.metadata().await {
                Ok(meta) => meta,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::local(entry.path(), e)),
            };
            found.push((name, entry.path(), meta));
        }
        // Sorted for a repeatable order (the contract promises none).
        found.sort_by(|a, b| a.0.cmp(&b.0));
        let mut subdirs = Vec::new();
        for (_, path, meta) in found {
            let Some(key) = self.key_of(&path) else {
                continue;
            };
            if meta.is_dir() {
                let as_prefix = format!("{key}/");
                if as_prefix.starts_with(&self.prefix) || self.prefix.starts_with(&as_prefix) {
                    subdirs.push(path);
                }
            } else if meta.is_file() && key.as_str().starts_with(&self.prefix) {
                self.ready.push_back(Ok(ObjectMeta {
                    key,
                    size: meta.len(),
                    last_modified: meta.modified().ok(),
                }));
            }
        }
        // Subdirectories are visited right after this directory's files,
        // before directories queued earlier: depth first.
        for sub in subdirs.into_iter().rev() {
            self.pending.push_front(sub);
        }
        Ok(())
    }

    fn key_of(&self, path: &Path) -> Option<ObjectKey> {
        let rel = path.strip_prefix(&self.root).ok()?;
        ObjectKey::new(rel.to_str()?.to_string()).ok()
    }
}
