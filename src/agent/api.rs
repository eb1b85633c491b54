//! The agent's HTTP+JSON API types, shared by the agent and the
//! coordinator's client. Every request carries `Authorization: Bearer
//! <token>`.
//!
//! | method | path | body → answer |
//! |---|---|---|
//! | GET | `/v1/node` | → [`NodeInfo`] |
//! | POST | `/v1/snapshots` | [`SnapshotRequest`] → [`SnapshotTaken`] |
//! | GET | `/v1/snapshots` | → tags of the snapshots on disk |
//! | POST | `/v1/uploads` | [`UploadRequest`] → [`UploadReport`] (when done) |
//! | GET | `/v1/progress` | → [`Progress`] |
//! | DELETE | `/v1/snapshots/{tag}` | → 204 |
//! | POST | `/v1/downloads` | [`DownloadRequest`] → [`DownloadReport`] (when done) |
//! | POST | `/v1/imports` | [`ImportRequest`] → [`ImportReport`] |
//! | DELETE | `/v1/staging/{name}` | → 204 |

use serde::{Deserialize, Serialize};

use crate::catalog::FileEntry;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub kassette_version: String,
    pub data_dirs: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRequest {
    pub tag: String,
    /// Empty: every keyspace.
    pub keyspaces: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotTaken {
    pub tag: String,
    /// When the snapshot command returned on this node.
    pub snapshot_at: jiff::Timestamp,
    pub files: u64,
    pub bytes: u64,
}

/// Upload the files of snapshot `tag` that the store does not hold yet, as
/// blobs of the catalog of `cluster`/`datacenter`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadRequest {
    pub tag: String,
    pub cluster: String,
    pub datacenter: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadReport {
    /// Every file of the snapshot, for the node manifest.
    pub files: Vec<FileEntry>,
    pub bytes: u64,
    /// Files and bytes sent now (the rest were already stored).
    pub uploaded_files: u64,
    pub uploaded_bytes: u64,
    /// Data bytes read from disk to hash (0 for an unchanged node; the
    /// snapshot's own `manifest.json` / `schema.cql` are not data).
    pub hashed_bytes: u64,
}

/// What the agent is doing, readable at any time.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// `idle`, `uploading`, `done` or `failed`.
    pub state: String,
    pub files_total: u64,
    pub files_done: u64,
    pub bytes_total: u64,
    pub bytes_done: u64,
    pub bytes_uploaded: u64,
    pub error: Option<String>,
}

/// The body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
}

/// Download `files` (one node's share of a backup, already filtered to the
/// tables being restored) into staging area `staging`, verifying each
/// against its BLAKE3; files already staged and verified are kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DownloadRequest {
    pub cluster: String,
    pub datacenter: String,
    /// Names the staging area; the same backup gives the same area, so an
    /// interrupted restore resumes.
    pub staging: String,
    pub files: Vec<FileEntry>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DownloadReport {
    pub files: u64,
    pub bytes: u64,
    /// Fetched now; the rest were staged and verified by an earlier run.
    pub downloaded_files: u64,
    pub downloaded_bytes: u64,
}

/// A live table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableRef {
    pub keyspace: String,
    pub table: String,
}

/// Import the staged SSTables of `tables` into the live tables.
/// `POST /v1/repairs`: a full repair of this node's primary ranges of
/// `tables` (all of the keyspace's when empty), answered when it is done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairRequest {
    pub keyspace: String,
    pub tables: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportRequest {
    pub staging: String,
    pub tables: Vec<TableRef>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportReport {
    /// Tables that had files on this node.
    pub tables: u64,
    pub files: u64,
    pub bytes: u64,
}
