//! The agent's HTTP+JSON API types, shared by the agent and the
//! coordinator's client. Every request carries `Authorization: Bearer
//! <token>`.
//!
//! | method | path | body → answer |
//! |---|---|---|
//! | GET | `/v1/node` | → [`NodeInfo`] |
//! | POST | `/v1/snapshots` | [`SnapshotRequest`] → [`SnapshotTaken`] |
//! | GET | `/v1/snapshots` | → tags of the snapshots on disk |
//! | GET | `/v1/table-snapshots` | → [`TableSnapshot`]s on disk |
//! | DELETE | `/v1/snapshots/{tag}[?keyspace=ks]` | → 204 |
//! | POST | `/v1/jobs` | [`StartJob`] → 202 [`JobStatus`] |
//! | GET | `/v1/jobs/{id}` | → [`JobStatus`] (and a heartbeat) |
//! | DELETE | `/v1/passes/{pass}` | → 204 once the pass's job has ended |
//! | GET | `/v1/progress` | → [`Progress`] |
//! | GET | `/v1/staging` | → names of the staging areas |
//! | DELETE | `/v1/staging/{name}` | → 204 |
//!
//! Long work — upload, download, import — is a **job**: `POST /v1/jobs`
//! starts it in a task the agent owns and answers at once; the coordinator
//! polls `GET /v1/jobs/{id}`, and every poll is a heartbeat. A job whose
//! coordinator stops polling for [`StartJob::heartbeat_timeout_ms`] is
//! cancelled (`abandoned`); a job of another pass still running when a new
//! one starts is cancelled first (`taken over`: under the catalog's lease
//! only one pass is alive, so the other is a dead one's). A cancelled job
//! stops its transfers, its progress logging and its child processes
//! before its state says so.

use serde::{Deserialize, Serialize};

use crate::catalog::FileEntry;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub kassette_version: String,
    pub data_dirs: Vec<String>,
    /// The store the agent writes to; `None` from an agent that does not
    /// say (an older version), which a coordinator refuses.
    #[serde(default)]
    pub store: Option<StoreIdentity>,
}

/// Which catalog storage a process uses: provider, endpoint, bucket (or
/// directory) and prefix — no credentials. The coordinator refuses agents
/// whose identity differs from its own before any snapshot: they would
/// upload where the catalog does not look.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreIdentity {
    pub provider: String,
    /// The endpoint URL, when one is configured.
    pub endpoint: Option<String>,
    /// Bucket, or the directory of the local backend.
    pub location: String,
    pub prefix: String,
}

impl StoreIdentity {
    pub fn of(storage: &crate::config::StorageConfig) -> Self {
        use crate::config::Backend;
        let (provider, endpoint, location) = match &storage.backend {
            Backend::S3 {
                bucket, endpoint, ..
            } => ("s3", endpoint.as_ref(), bucket.clone()),
            Backend::Gcs {
                bucket, endpoint, ..
            } => ("gcs", endpoint.as_ref(), bucket.clone()),
            // The endpoint is always resolved for Azure: it names the account.
            Backend::Azure(azure) => ("azure", Some(&azure.endpoint), azure.container.clone()),
            Backend::Local { root } => ("local", None, root.display().to_string()),
        };
        Self {
            provider: provider.to_string(),
            endpoint: endpoint.map(|u| u.as_str().to_string()),
            location,
            prefix: storage.prefix.clone(),
        }
    }
}

impl std::fmt::Display for StoreIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {:?} prefix {:?}",
            self.provider, self.location, self.prefix
        )?;
        if let Some(endpoint) = &self.endpoint {
            write!(f, " at {endpoint}")?;
        }
        Ok(())
    }
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

/// Upload the files of snapshot `tag` into the catalog of
/// `cluster`/`datacenter`: a file this node's latest complete backup
/// already holds (its digest cache knows the file, and `previous` lists
/// that digest) is referenced without being read or sent; every other file
/// is streamed once to `files_prefix/<data_dir>/<keyspace>/<table>-<id>/<path>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadRequest {
    pub tag: String,
    pub cluster: String,
    pub datacenter: String,
    /// Catalog-relative prefix for the files sent now,
    /// `files/<host-id>/<backup>/<pass>` (unique to the pass). Absent
    /// from an older coordinator, which the agent refuses: it would not
    /// know where the files went.
    #[serde(default)]
    pub files_prefix: Option<String>,
    /// This node's manifest in the latest complete backup, matched by host
    /// id; absent for a first backup or a new node.
    #[serde(default)]
    pub previous: Option<PreviousManifest>,
}

/// Where a node manifest is, and the BLAKE3 the backup manifest vouches
/// for it with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviousManifest {
    /// Catalog-relative key, `backups/<name>/nodes/<host-id>.json`.
    pub key: String,
    pub manifest_blake3: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadReport {
    /// Every file of the snapshot, for the node manifest.
    pub files: Vec<FileEntry>,
    pub bytes: u64,
    /// Files and bytes sent now (the rest were already stored).
    pub uploaded_files: u64,
    pub uploaded_bytes: u64,
    /// Data bytes read from disk (0 for an unchanged node; each new file is
    /// read once, while it is sent; the snapshot's own `manifest.json` /
    /// `schema.cql` are not data).
    pub hashed_bytes: u64,
    /// Files referenced from the previous manifest without being read.
    #[serde(default)]
    pub reused_files: u64,
}

/// What the agent is doing, readable at any time.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// `idle`, `hashing`, `uploading`, `downloading`, `importing`, then
    /// how the job ended: `done`, `failed`, `abandoned`, `taken over` or
    /// `cancelled` (see [`JobState`]).
    pub state: String,
    /// The pass and job the counters belong to.
    #[serde(default)]
    pub pass: Option<String>,
    #[serde(default)]
    pub job: Option<String>,
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
    /// An earlier restore of the same staging area got as far as importing
    /// (past its point of no return) and did not finish.
    #[serde(default)]
    pub import_started_before: bool,
}

/// A live table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableRef {
    pub keyspace: String,
    pub table: String,
}

/// `POST /v1/repairs`: a full repair of this node's primary ranges of
/// `tables` (all of the keyspace's when empty), answered when it is done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairRequest {
    pub keyspace: String,
    pub tables: Vec<String>,
}

/// Import the staged SSTables of `tables` into the live tables.
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

/// A live table's snapshot on this node's disks.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TableSnapshot {
    pub tag: String,
    pub keyspace: String,
    pub table: String,
}

/// The work of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Work {
    Upload(UploadRequest),
    Download(DownloadRequest),
    Import(ImportRequest),
}

impl Work {
    pub fn kind(&self) -> &'static str {
        match self {
            Work::Upload(_) => "upload",
            Work::Download(_) => "download",
            Work::Import(_) => "import",
        }
    }
}

/// Starts a job for pass `pass`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartJob {
    /// The coordinator's pass: letters, digits, `-`; one job at a time per
    /// agent, and a job of another pass is taken over.
    pub pass: String,
    /// The job is cancelled when no poll arrives for this long.
    pub heartbeat_timeout_ms: u64,
    pub work: Work,
}

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Running,
    Done,
    Failed,
    /// Its coordinator stopped polling (killed, or cut off).
    Abandoned,
    /// A job of another pass started; this one was stopped first.
    TakenOver,
    /// Its pass ended it (`DELETE /v1/passes/{pass}`).
    Cancelled,
}

impl JobState {
    /// The word [`Progress::state`] shows.
    pub fn word(self) -> &'static str {
        match self {
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Failed => "failed",
            JobState::Abandoned => "abandoned",
            JobState::TakenOver => "taken over",
            JobState::Cancelled => "cancelled",
        }
    }
}

/// A job's state, its progress, and once it ended its report or error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobStatus {
    pub id: String,
    pub pass: String,
    pub kind: String,
    pub state: JobState,
    pub progress: Progress,
    /// The [`UploadReport`], [`DownloadReport`] or [`ImportReport`] of a
    /// `done` job.
    pub report: Option<serde_json::Value>,
    /// Why it did not finish, and the HTTP status that error would have had.
    pub error: Option<String>,
    pub error_status: Option<u16>,
}
