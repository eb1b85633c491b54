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

pub use layout::Layout;
pub use manifest::{
    BackupManifest, BackupStatus, FileEntry, Index, IndexEntry, LockRecord, NodeManifest,
    NodeSummary, StartedRecord,
};
pub use repo::{Catalog, CatalogError, DamagedBackup, FoundBackup, IndexReport};

/// Version of the storage format written by this build. Readers refuse
/// manifests of a newer version instead of misreading them.
pub const FORMAT_VERSION: u32 = 2;
