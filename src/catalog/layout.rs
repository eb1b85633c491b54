//! The key layout: the one place that knows where each kind of object lives.

use super::FileEntry;
use crate::storage::{Digest, InvalidKey, ObjectKey};

/// The first segments of every catalog's root. Fixed: it is where every
/// version of the format keeps its catalogs (record versions are in the
/// records), so a newer build finds the backups of an older one.
pub const CATALOG_ROOT: &str = "kassette/v1";

/// Keys of one datacenter's catalog, relative to the store's root
/// (bucket + prefix):
///
/// ```text
/// kassette/v1/<cluster>/<datacenter>/
///   locks/<sequence>.json                  the datacenter lease
///   index.json                             summary of every complete backup
///   blobs/<b3[0..2]>/<b3>                  file contents, named by BLAKE3 (v1)
///   files/<host-id>/<backup>/<pass>/<data_dir>/<keyspace>/<table>-<id>/<path>
///                                          file contents as first sent (v2)
///   backups/<name>/nodes/<host-id>.json    one node's manifest
///   backups/<name>/backup.json             the backup manifest (written last)
/// ```

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    root: String,
}

impl Layout {
    /// The layout of `cluster`/`datacenter` (names validated by the
    /// configuration: letters, digits, `-_.`).
    pub fn new(cluster: &str, datacenter: &str) -> Result<Self, InvalidKey> {
        let root = format!("{CATALOG_ROOT}/{cluster}/{datacenter}");
        ObjectKey::new(root.clone())?;
        Ok(Self { root })
    }

    fn key(&self, rest: &str) -> Result<ObjectKey, InvalidKey> {
        ObjectKey::new(format!("{}/{rest}", self.root))
    }

    /// Listing prefix of the whole catalog.
    pub fn root_prefix(&self) -> String {
        format!("{}/", self.root)
    }

    /// The lease with sequence number `sequence` (zero-padded, so keys sort
    /// like numbers). The highest present sequence is the current lease.
    pub fn lock(&self, sequence: u64) -> Result<ObjectKey, InvalidKey> {
        self.key(&format!("locks/{sequence:020}.json"))
    }

    /// Listing prefix of the leases.
    pub fn locks_prefix(&self) -> String {
        format!("{}/locks/", self.root)
    }

    /// The sequence number of a lease key, if `key` is one.
    pub fn lock_sequence(&self, key: &ObjectKey) -> Option<u64> {
        key.as_str()
            .strip_prefix(&self.locks_prefix())?
            .strip_suffix(".json")?
            .parse()
            .ok()
    }

    pub fn index(&self) -> Result<ObjectKey, InvalidKey> {
        self.key("index.json")
    }

    /// Where the content with this digest is stored. Content addressing
    /// makes deduplication a `head`: same BLAKE3, same bytes.
    pub fn blob(&self, digest: &Digest) -> Result<ObjectKey, InvalidKey> {
        let hex = digest.blake3_hex();
        self.key(&format!("blobs/{}/{hex}", &hex[..2]))
    }

    /// Listing prefix of every blob.
    pub fn blobs_prefix(&self) -> String {
        format!("{}/blobs/", self.root)
    }

    /// Listing prefix of every file stored under `files/` (version 2).
    pub fn files_prefix(&self) -> String {
        format!("{}/files/", self.root)
    }

    /// Where the object holding `file`'s content is: its `blob` (under
    /// `files/`), or for an entry without one the content-addressed blob.
    pub fn content(&self, file: &FileEntry) -> Result<ObjectKey, InvalidKey> {
        match &file.blob {
            Some(blob) => self.relative_key(blob),
            None => self.blob(&file.digest),
        }
    }

    /// The store key of the catalog-relative key `relative`.
    pub fn relative_key(&self, relative: &str) -> Result<ObjectKey, InvalidKey> {
        self.key(relative)
    }

    /// `key` relative to this catalog's root, when it is inside it.
    pub fn relative<'k>(&self, key: &'k str) -> Option<&'k str> {
        key.strip_prefix(&self.root)?.strip_prefix('/')
    }

    /// The catalog-relative prefix under which backup pass `pass` stores
    /// the new files of node `host_id` for backup `backup`:
    /// `files/<host-id>/<backup>/<pass>`. The pass id is unique, so a key
    /// under it is written by one pass only and never receives other
    /// content — even when a backup name is used again after a purge.
    pub fn new_files(
        &self,
        host_id: &uuid::Uuid,
        backup: &str,
        pass: &str,
    ) -> Result<String, InvalidKey> {
        let prefix = format!("files/{host_id}/{backup}/{pass}");
        self.key(&prefix)?;
        Ok(prefix)
    }

    /// The listing group of a catalog-relative content key: the pass
    /// prefix `files/<host-id>/<backup>/<pass>/` for keys under `files/`,
    /// `blobs/` for content-addressed blobs. One listing of a group shows
    /// every object of it and nothing of other nodes or passes.
    pub fn listing_group(relative: &str) -> Option<String> {
        if relative.starts_with("blobs/") {
            return Some("blobs/".into());
        }
        let rest = relative.strip_prefix("files/")?;
        let mut segments = rest.splitn(4, '/');
        let (host, backup, pass) = (segments.next()?, segments.next()?, segments.next()?);
        segments.next()?;
        Some(format!("files/{host}/{backup}/{pass}/"))
    }

    pub fn node_manifest(
        &self,
        backup: &str,
        host_id: &uuid::Uuid,
    ) -> Result<ObjectKey, InvalidKey> {
        self.key(&format!("backups/{backup}/nodes/{host_id}.json"))
    }

    /// Written when a pass starts backup `name`, so a pass that dies before
    /// its commit leaves a visibly incomplete backup (not an unknown one).
    pub fn backup_started(&self, backup: &str) -> Result<ObjectKey, InvalidKey> {
        self.key(&format!("backups/{backup}/started.json"))
    }

    /// The object whose presence makes backup `name` complete.
    pub fn backup_manifest(&self, backup: &str) -> Result<ObjectKey, InvalidKey> {
        self.key(&format!("backups/{backup}/backup.json"))
    }

    /// Listing prefix of everything that belongs to backup `name`.
    pub fn backup_prefix(&self, backup: &str) -> String {
        format!("{}/backups/{backup}/", self.root)
    }

    /// Listing prefix of every backup.
    pub fn backups_prefix(&self) -> String {
        format!("{}/backups/", self.root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::digest_of;

    #[test]
    fn keys_follow_the_documented_layout() {
        let layout = Layout::new("prod", "dc1").unwrap();
        let lock = layout.lock(7).unwrap();
        assert_eq!(
            lock.as_str(),
            "kassette/v1/prod/dc1/locks/00000000000000000007.json"
        );
        assert_eq!(layout.lock_sequence(&lock), Some(7));
        assert_eq!(
            layout.index().unwrap().as_str(),
            "kassette/v1/prod/dc1/index.json"
        );
        let digest = digest_of(b"");
        assert_eq!(
            layout.blob(&digest).unwrap().as_str(),
            "kassette/v1/prod/dc1/blobs/af/af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
        let host = uuid::Uuid::nil();
        assert_eq!(
            layout.node_manifest("nightly", &host).unwrap().as_str(),
            "kassette/v1/prod/dc1/backups/nightly/nodes/00000000-0000-0000-0000-000000000000.json"
        );
        assert_eq!(
            layout.backup_manifest("nightly").unwrap().as_str(),
            "kassette/v1/prod/dc1/backups/nightly/backup.json"
        );
        assert!(
            layout
                .backup_manifest("nightly")
                .unwrap()
                .as_str()
                .starts_with(&layout.backup_prefix("nightly"))
        );
    }

    #[test]
    fn file_entries_name_their_object() {
        let layout = Layout::new("prod", "dc1").unwrap();
        let mut entry = FileEntry {
            keyspace: "shop".into(),
            table: "orders".into(),
            table_id: "5a1c395e0b1d11eeb7a6f9e9b4d5c1a2".into(),
            path: "nb-1-big-Data.db".into(),
            data_dir: 0,
            digest: digest_of(b""),
            blob: None,
        };
        assert_eq!(
            layout.content(&entry).unwrap(),
            layout.blob(&entry.digest).unwrap()
        );
        let host = uuid::Uuid::nil();
        let prefix = layout.new_files(&host, "nightly", "backup-00ff").unwrap();
        assert_eq!(
            prefix,
            "files/00000000-0000-0000-0000-000000000000/nightly/backup-00ff"
        );
        let relative = format!("{prefix}/0/shop/orders-5a1c/nb-1-big-Data.db");
        entry.blob = Some(relative.clone());
        let key = layout.content(&entry).unwrap();
        assert_eq!(key.as_str(), format!("kassette/v1/prod/dc1/{relative}"));
        assert!(key.as_str().starts_with(&layout.files_prefix()));
        assert_eq!(layout.relative(key.as_str()), Some(relative.as_str()));
        assert_eq!(layout.relative("kassette/v1/prod/dc10/files/x"), None);
        assert_eq!(
            Layout::listing_group(&relative).as_deref(),
            Some("files/00000000-0000-0000-0000-000000000000/nightly/backup-00ff/")
        );
        assert_eq!(
            Layout::listing_group("blobs/af/af13").as_deref(),
            Some("blobs/")
        );
        assert_eq!(Layout::listing_group("files/h/b/p"), None);
        assert_eq!(Layout::listing_group("backups/x/backup.json"), None);
    }

    #[test]
    fn names_that_could_escape_are_refused() {
        let layout = Layout::new("prod", "dc1").unwrap();
        assert!(layout.backup_manifest("..").is_err());
        assert!(Layout::new("prod", "").is_err());
    }
}
