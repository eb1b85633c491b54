//! Digests of immutable files, remembered by file identity.
//!
//! SSTable components never change once written, so a file with the same
//! (device, inode, size, mtime) as last time has the same content. Hashing
//! goes through this cache: a differential backup of an unchanged node
//! reads zero data bytes. The cache is a JSON file on the node's volume,
//! written atomically; a lost or damaged cache only costs a re-read.
//!
//! It also remembers where a file was uploaded (the store key a backup pass
//! streamed it to), so a pass that follows a killed one can reference
//! what the killed pass already sent after one `head`, instead of sending
//! it again.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::snapshot::FileIdentity;
use crate::storage::{Digest, Hasher};

/// Read size when hashing.
const READ_CHUNK: usize = 1 << 20;

#[derive(Debug, Default)]
pub struct DigestCache {
    path: Option<PathBuf>,
    entries: HashMap<FileIdentity, Digest>,
    /// Store key each file was uploaded to, by identity.
    uploaded: HashMap<FileIdentity, String>,
    /// Data bytes read to compute digests since this cache was opened.
    pub bytes_read: u64,
}

/// The largest cache file read (about 200 bytes per file: millions of
/// files).
const MAX_CACHE_BYTES: u64 = 1 << 30;

#[derive(serde::Serialize, serde::Deserialize)]
struct Stored {
    entries: Vec<(FileIdentity, Digest)>,
    /// Absent in caches written before uploads were remembered.
    #[serde(default)]
    uploaded: Vec<(FileIdentity, String)>,
}

impl DigestCache {
    /// Opens the cache persisted at `path`; a missing, unreadable or
    /// oversized file gives an empty cache (it only costs hashing again).
    pub fn open(path: &Path) -> Self {
        let (entries, uploaded) = crate::config::parse::read_small_file(path, MAX_CACHE_BYTES)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Stored>(&bytes).ok())
            .map(|stored| {
                (
                    stored.entries.into_iter().collect(),
                    stored.uploaded.into_iter().collect(),
                )
            })
            .unwrap_or_default();
        Self {
            path: Some(path.to_path_buf()),
            entries,
            uploaded,
            bytes_read: 0,
        }
    }

    /// The digest of the file at `path` whose identity is `identity`,
    /// reading it only when it is not known yet.
    pub fn digest(&mut self, path: &Path, identity: FileIdentity) -> std::io::Result<Digest> {
        if let Some(digest) = self.entries.get(&identity) {
            return Ok(*digest);
        }
        let digest = hash_file(path)?;
        if digest.size != identity.size {
            return Err(std::io::Error::other(format!(
                "{} changed size while being hashed",
                path.display()
            )));
        }
        self.bytes_read += digest.size;
        self.entries.insert(identity, digest);
        Ok(digest)
    }

    /// The digest remembered for `identity`, if any (nothing is read).
    pub fn known(&self, identity: &FileIdentity) -> Option<Digest> {
        self.entries.get(identity).copied()
    }

    /// Remembers the digest of a file whose content was verified another
    /// way (e.g. hashed while it was downloaded).
    pub fn remember(&mut self, identity: FileIdentity, digest: Digest) {
        self.entries.insert(identity, digest);
    }

    /// Remembers that the file `identity`, with content `digest` (as
    /// computed while it was sent), was uploaded to store key `key`.
    pub fn remember_upload(&mut self, identity: FileIdentity, digest: Digest, key: String) {
        self.entries.insert(identity, digest);
        self.uploaded.insert(identity, key);
    }

    /// The store key the file `identity` was uploaded to, if remembered.
    pub fn uploaded(&self, identity: &FileIdentity) -> Option<&str> {
        self.uploaded.get(identity).map(String::as_str)
    }

    /// Keeps only the entries of `live` files (so the cache does not grow
    /// forever) and writes it back atomically.
    pub fn save(&mut self, live: &[FileIdentity]) -> std::io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let keep: std::collections::HashSet<&FileIdentity> = live.iter().collect();
        self.entries.retain(|identity, _| keep.contains(identity));
        self.uploaded.retain(|identity, _| keep.contains(identity));
        let stored = Stored {
            entries: self.entries.iter().map(|(i, d)| (*i, *d)).collect(),
            uploaded: self.uploaded.iter().map(|(i, k)| (*i, k.clone())).collect(),
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let mut temp = tempfile::NamedTempFile::new_in(dir)?;
        serde_json::to_writer(&mut temp, &stored)?;
        temp.as_file().sync_all()?;
        temp.persist(path).map_err(|e| e.error)?;
        Ok(())
    }
}

/// BLAKE3 and CRC32C of a whole file, read once.
pub fn hash_file(path: &Path) -> std::io::Result<Digest> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Hasher::new();
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(hasher.finish());
        }
        hasher.update(&buf[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unchanged_files_are_not_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("nb-1-big-Data.db");
        std::fs::write(&file, vec![1u8; 10_000]).unwrap();
        let identity = FileIdentity::of(&std::fs::metadata(&file).unwrap());
        let cache_path = dir.path().join("cache.json");

        let mut cache = DigestCache::open(&cache_path);
        let first = cache.digest(&file, identity).unwrap();
        assert_eq!(cache.bytes_read, 10_000);
        cache.save(&[identity]).unwrap();

        let mut reopened = DigestCache::open(&cache_path);
        assert_eq!(reopened.digest(&file, identity).unwrap(), first);
        assert_eq!(reopened.bytes_read, 0, "an unchanged file was read again");

        // A rewritten file has another identity and is read.
        std::fs::write(&file, vec![2u8; 10_001]).unwrap();
        let changed = FileIdentity::of(&std::fs::metadata(&file).unwrap());
        assert_ne!(reopened.digest(&file, changed).unwrap(), first);
        assert_eq!(reopened.bytes_read, 10_001);
    }

    #[test]
    fn uploads_are_remembered_for_live_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let cache_path = dir.path().join("cache.json");
        let identity = |inode| FileIdentity {
            device: 1,
            inode,
            size: 3,
            mtime_ns: 7,
        };
        let digest = crate::storage::digest_of(b"abc");
        let mut cache = DigestCache::open(&cache_path);
        cache.remember_upload(identity(1), digest, "k/one".into());
        cache.remember_upload(identity(2), digest, "k/two".into());
        cache.save(&[identity(1)]).unwrap();
        let reopened = DigestCache::open(&cache_path);
        assert_eq!(reopened.uploaded(&identity(1)), Some("k/one"));
        assert_eq!(reopened.known(&identity(1)), Some(digest));
        assert_eq!(reopened.uploaded(&identity(2)), None);
        assert_eq!(reopened.known(&identity(2)), None);
        // A cache written before uploads were remembered still opens.
        std::fs::write(&cache_path, br#"{"entries":[]}"#).unwrap();
        assert_eq!(DigestCache::open(&cache_path).uploaded(&identity(1)), None);
    }
}
