//! The key layout: the one place that knows where each kind of object lives.

use crate::storage::{Digest, InvalidKey, ObjectKey};

/// Keys of one datacenter's catalog, relative to the store's root
/// (bucket + prefix):
///
/// ```text
/// kassette/v1/<cluster>/<datacenter>/
///   locks/<sequence>.json                  the datacenter lease
///   index.json                             summary of every complete backup
///   blobs/<b3[0..2]>/<b3>                  file contents, named by BLAKE3
///   backups/<name>/nodes/<host-id>.json    one node's manifest
///   backups/<name>/backup.json             the backup manifest (written last)
/// ```
/// The layout's version, the `v1` in every key. It is not the records'
/// [`super::FORMAT_VERSION`]: records of a newer version (sealed ones, from
/// 2) live at the same keys, so that readers find old and new records side
/// by side in one catalog.
pub const LAYOUT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    root: String,
}

impl Layout {
    /// The layout of `cluster`/`datacenter` (names validated by the
    /// configuration: letters, digits, `-_.`).
    pub fn new(cluster: &str, datacenter: &str) -> Result<Self, InvalidKey> {
        let root = format!("kassette/v{LAYOUT_VERSION}/{cluster}/{datacenter}");
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
    fn names_that_could_escape_are_refused() {
        let layout = Layout::new("prod", "dc1").unwrap();
        assert!(layout.backup_manifest("..").is_err());
        assert!(Layout::new("prod", "").is_err());
    }
}
