//! The catalog: what kassette stores besides the data, and where.
//!
//! This module owns the storage format — the key layout ([`Layout`]) and
//! the manifests, index and lock records as plain serde types
//! ([`manifest`]), the rule every stored name must follow ([`names`]) and
//! the self-checksum of the records that carry one ([`seal`]) — and
//! [`Catalog`], which reads and writes them through
//! a [`crate::storage::Store`] following the format's ordering rules. `docs/storage-format.md` is the
//! specification; these types are its executable form, and the two must
//! change together (bump [`FORMAT_VERSION`] for any incompatible change).

mod layout;
pub mod manifest;
pub mod names;
mod repo;
pub mod seal;

pub use layout::CATALOG_ROOT;
pub use layout::Layout;
pub use manifest::{
    BackupManifest, BackupStatus, FileEntry, Index, IndexEntry, LockRecord, NodeManifest,
    NodeSummary, StartedRecord,
};
pub use repo::{Catalog, CatalogError, DamagedBackup, FoundBackup, IndexReport};

/// Version of the storage format written by this build (backup manifest,
/// index, lease and start records: 2 adds their seal). Readers refuse
/// records of a newer version instead of misreading them. The key layout
/// does not follow it ([`CATALOG_ROOT`]).
pub const FORMAT_VERSION: u32 = 2;

/// Version of the node manifests this build writes: 2 adds a file entry's
/// `blob` (content stored under `files/`, not content-addressed). Version 1
/// node manifests stay readable: their entries name `blobs/<b3>`.
pub const NODE_MANIFEST_VERSION: u32 = 2;
