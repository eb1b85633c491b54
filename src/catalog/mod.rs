//! The catalog: what kassette stores besides the data, and where.
//!
//! This module owns the storage format — the key layout ([`Layout`]) and
//! the manifests, index and lock records as plain serde types
//! ([`manifest`]). It does no I/O: the passes read and write these values
//! through [`crate::storage::Store`]. `docs/storage-format.md` is the
//! specification; these types are its executable form, and the two must
//! change together (bump [`FORMAT_VERSION`] for any incompatible change).

mod layout;
pub mod manifest;

pub use layout::Layout;
pub use manifest::{
    BackupManifest, BackupStatus, FileEntry, Index, IndexEntry, LockRecord, NodeManifest,
    NodeSummary,
};

/// Version of the storage format written by this build. Readers refuse
/// manifests of a newer version instead of misreading them.
pub const FORMAT_VERSION: u32 = 1;
