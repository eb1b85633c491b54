//! The catalog: what kassette stores besides the data, and where.
//!
//! This module owns the storage format — the key layout ([`Layout`]) and
//! the manifests, index and lock records as plain serde types
//! ([`manifest`]), and the rule every stored name must follow ([`names`]) — and [`Catalog`], which reads and writes them through
//! a [`crate::storage::Store`] following the format's ordering rules. `docs/storage-format.md` is the
//! specification; these types are its executable form, and the two must
//! change together (bump [`FORMAT_VERSION`] for any incompatible change).

mod layout;
pub mod manifest;
pub mod names;
mod repo;

pub use layout::CATALOG_ROOT;
pub use layout::Layout;
pub use manifest::{
    BackupManifest, BackupStatus, FileEntry, Index, IndexEntry, LockRecord, NodeManifest,
    NodeSummary, StartedRecord,
};
pub use repo::{Catalog, CatalogError, FoundBackup};

/// Version of the storage format written by this build. Readers refuse
/// manifests of a newer version instead of misreading them.
pub const FORMAT_VERSION: u32 = 1;

/// Version of the node manifests this build writes: 2 adds a file entry's
/// `blob` (content stored under `files/`, not content-addressed). Version 1
/// node manifests stay readable: their entries name `blobs/<b3>`.
pub const NODE_MANIFEST_VERSION: u32 = 2;
