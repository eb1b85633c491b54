//! A node's share of a restore: stage the backup's files beside the data,
//! verified; import them into the live tables; remove the staging area.
//!
//! Staging lives in the agent's state directory (on the data volume):
//! `<state>/staging/<name>/<keyspace>/<table>/<file>` — the last two
//! directory names must be the keyspace and table, because Cassandra's
//! importer reads them from an SSTable's path (and finds nothing otherwise). Only SSTable
//! components are staged: Cassandra rebuilds a table's secondary indexes
//! for the SSTables it imports, and its per-snapshot `manifest.json` /
//! `schema.cql` are not data. A staged file's identity (device, inode, size,
//! mtime) and verified digest are remembered in `<name>/verified.json`, so a
//! re-run neither downloads nor re-reads what is already there.
//!
//! The import never consumes the staged files: each table's are
//! hard-linked (copied where links cannot be made) into
//! `<state>/importing/<keyspace>/<table>/`, and Cassandra takes those. So a
//! restore stopped after its point of no return (a truncate, an import) is
//! completed by a re-run with the same backup from the same staged files,
//! with nothing downloaded again; `<name>/import-started` records that an
//! import began, so the re-run can say it is completing one.
//!
//! Staging areas stay until the coordinator removes them: after a
//! successful restore, or when a restore of another backup starts.

use std::path::{Path, PathBuf};

use futures::{StreamExt, TryStreamExt};

use super::api::{DownloadReport, DownloadRequest, ImportReport, ImportRequest, TableRef};
use super::jobs::JobContext;
use super::{AgentError, AgentState};
use crate::cassandra::digest_cache::DigestCache;
use crate::cassandra::snapshot::FileIdentity;
use crate::catalog::{FileEntry, Layout, names};

/// Whether a snapshot file is an SSTable component to restore.
pub fn is_restored(file: &FileEntry) -> bool {
    !file.path.contains('/') && !matches!(file.path.as_str(), "manifest.json" | "schema.cql")
}

/// Written into a staging area when its import starts.
const IMPORT_MARKER: &str = "import-started";

fn staging_root(state: &AgentState) -> PathBuf {
    state.state_dir.join("staging")
}

fn staging_dir(state: &AgentState, name: &str) -> Result<PathBuf, AgentError> {
    super::check_tag(name)?;
    Ok(staging_root(state).join(name))
}

/// Where a table's staged files are linked for Cassandra to take them.
fn importing_root(state: &AgentState) -> PathBuf {
    state.state_dir.join("importing")
}

/// Names of the staging areas on this node.
pub(super) fn staging_areas(state: &AgentState) -> Result<Vec<String>, AgentError> {
    let root = staging_root(state);
    let entries = match std::fs::read_dir(&root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(failed(&root.display().to_string(), e)),
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    Ok(names)
}

fn table_dir(staging: &Path, keyspace: &str, table: &str) -> PathBuf {
    staging.join(keyspace).join(table)
}

fn failed(what: &str, err: impl std::fmt::Display) -> AgentError {
    AgentError::Failed(format!("{what}: {err}"))
}

pub(super) async fn download(
    state: &AgentState,
    request: &DownloadRequest,
    context: &JobContext,
) -> Result<DownloadReport, AgentError> {
    let layout = Layout::new(&request.cluster, &request.datacenter)
        .map_err(|e| AgentError::BadRequest(e.to_string()))?;
    let staging = staging_dir(state, &request.staging)?;
    for file in &request.files {
        super::check_names(names::check_file(&file.keyspace, &file.table, &file.path))?;
    }
    let files: Vec<FileEntry> = request
        .files
        .iter()
        .filter(|f| is_restored(f))
        .cloned()
        .collect();
    let cache_path = staging.join("verified.json");
    let cache = DigestCache::open(&cache_path);
    let (present, missing) = split_staged(&staging, &files, &cache);
    let ledger = Ledger::new(cache, present.iter().map(|(_, identity)| *identity));
    let total: u64 = files.iter().map(|f| f.digest.size).sum();
    let reused: u64 = present.iter().map(|(f, _)| f.digest.size).sum();
    state.set_progress(|p| {
        p.state = "downloading".into();
        p.files_total = files.len() as u64;
        p.files_done = present.len() as u64;
        p.bytes_total = total;
        p.bytes_done = reused;
    });
    let import_started_before = staging.join(IMPORT_MARKER).exists();
    // Saved when the job is stopped too: the ledger's guard writes it on
    // drop, so what was verified stays known for a re-run.
    let _save_on_exit = SaveOnDrop(ledger.clone());
    fetch_all(state, &layout, &staging, &missing, &ledger).await?;
    ledger.save(true);
    sync_files(&staging, &files, context).await?;
    let report = DownloadReport {
        files: files.len() as u64,
        bytes: total,
        downloaded_files: missing.len() as u64,
        downloaded_bytes: missing.iter().map(|f| f.digest.size).sum(),
        import_started_before,
    };
    tracing::info!(staging = %staging.display(), files = report.files, bytes = report.bytes, downloaded_files = report.downloaded_files, downloaded_bytes = report.downloaded_bytes, "staged and verified");
    Ok(report)
}

/// Files already staged and verified (with their identity), and the rest.
fn split_staged(
    staging: &Path,
    files: &[FileEntry],
    cache: &DigestCache,
) -> (Vec<(FileEntry, FileIdentity)>, Vec<FileEntry>) {
    let mut present = Vec::new();
    let mut missing = Vec::new();
    for file in files {
        let dest = table_dir(staging, &file.keyspace, &file.table).join(&file.path);
        let verified = std::fs::metadata(&dest)
            .ok()
            .map(|meta| FileIdentity::of(&meta))
            .filter(|identity| {
                cache
                    .known(identity)
                    .is_some_and(|d| d.same_content(&file.digest))
            });
        match verified {
            Some(identity) => present.push((file.clone(), identity)),
            None => missing.push(file.clone()),
        }
    }
    (present, missing)
}

/// Downloads `files` (each checked against its BLAKE3 by the store layer
/// before it appears under its name); returns their identities.
async fn fetch_all(
    state: &AgentState,
    layout: &Layout,
    staging: &Path,
    files: &[FileEntry],
    ledger: &Ledger,
) -> Result<(), AgentError> {
    futures::stream::iter(files.to_vec())
        .map(|file| {
            let (state, layout, staging) = (state.clone(), layout.clone(), staging.to_path_buf());
            let ledger = ledger.clone();
            async move {
                let dir = table_dir(&staging, &file.keyspace, &file.table);
                tokio::fs::create_dir_all(&dir)
                    .await
                    .map_err(|e| failed(&dir.display().to_string(), e))?;
                let dest = dir.join(&file.path);
                let key = layout.content(&file).map_err(|e| failed("blob key", e))?;
                state
                    .store
                    .get_file(&key, &dest, &file.digest)
                    .await
                    .map_err(|e| AgentError::Failed(e.to_string()))?;
                let meta = tokio::fs::metadata(&dest)
                    .await
                    .map_err(|e| failed(&dest.display().to_string(), e))?;
                ledger.verified(FileIdentity::of(&meta), file.digest);
                state.set_progress(|p| {
                    p.files_done += 1;
                    p.bytes_done += file.digest.size;
                    p.bytes_uploaded += file.digest.size;
                });
                Ok::<(), AgentError>(())
            }
        })
        .buffer_unordered(state.concurrency)
        .try_collect::<Vec<()>>()
        .await
        .map(|_| ())
}

/// The staged files known to be verified, written to `verified.json` as
/// downloads complete (at most once a second, and at the end), so that a
/// restore killed mid-download resumes where it stopped.
#[derive(Clone)]
struct Ledger {
    inner: std::sync::Arc<std::sync::Mutex<LedgerState>>,
}

struct LedgerState {
    cache: DigestCache,
    live: Vec<FileIdentity>,
    saved_at: std::time::Instant,
}

impl Ledger {
    fn new(cache: DigestCache, present: impl Iterator<Item = FileIdentity>) -> Self {
        Self {
            inner: std::sync::Arc::new(std::sync::Mutex::new(LedgerState {
                cache,
                live: present.collect(),
                saved_at: std::time::Instant::now(),
            })),
        }
    }

    fn verified(&self, identity: FileIdentity, digest: crate::storage::Digest) {
        if let Ok(mut state) = self.inner.lock() {
            state.cache.remember(identity, digest);
            state.live.push(identity);
        }
        self.save(false);
    }

    /// Writes the ledger if `force`d or a second has passed since the last
    /// write; a failed write only costs downloading again after a crash.
    fn save(&self, force: bool) {
        let Ok(mut state) = self.inner.lock() else {
            return;
        };
        if !force && state.saved_at.elapsed() < std::time::Duration::from_secs(1) {
            return;
        }
        let live = state.live.clone();
        if let Err(e) = state.cache.save(&live) {
            tracing::warn!(error = %e, "could not record the verified staged files");
        }
        state.saved_at = std::time::Instant::now();
    }
}

/// Writes the ledger when the download ends however it ends (a stopped
/// job drops the download future).
struct SaveOnDrop(Ledger);

impl Drop for SaveOnDrop {
    fn drop(&mut self) {
        self.0.save(true);
    }
}

/// Makes every staged file durable before anything imports it: downloads
/// are not synced one by one (that would serialise them on the disk), so
/// they are synced here, once, before the live data is touched.
async fn sync_files(
    staging: &Path,
    files: &[FileEntry],
    context: &JobContext,
) -> Result<(), AgentError> {
    let paths: Vec<PathBuf> = files
        .iter()
        .map(|f| table_dir(staging, &f.keyspace, &f.table).join(&f.path))
        .collect();
    let job = context.clone();
    context
        .blocking(move || {
            for path in paths {
                job.check()?;
                std::fs::File::open(&path)
                    .and_then(|f| f.sync_all())
                    .map_err(|e| failed(&path.display().to_string(), e))?;
            }
            Ok(())
        })
        .await
}

/// Imports the staged tables, one after the other. Records first that an
/// import began (the point of no return, as seen from this node); links
/// each table's staged files into a directory of their own for Cassandra
/// to take, so the staging area stays whole for a re-run.
pub(super) async fn import(
    state: &AgentState,
    request: &ImportRequest,
    context: &JobContext,
) -> Result<ImportReport, AgentError> {
    let staging = staging_dir(state, &request.staging)?;
    for TableRef { keyspace, table } in &request.tables {
        super::check_names(names::check_keyspace(keyspace))?;
        super::check_names(names::check_table(table))?;
    }
    if staging.is_dir() {
        let marker = staging.join(IMPORT_MARKER);
        std::fs::write(&marker, b"").map_err(|e| failed(&marker.display().to_string(), e))?;
    }
    // Left by an earlier job (one job runs at a time, so none is using it).
    let work_root = importing_root(state);
    remove_dir_if_present(&work_root)?;
    state.set_progress(|p| {
        p.state = "importing".into();
        p.files_total = request.tables.len() as u64;
    });
    let mut report = ImportReport::default();
    for TableRef { keyspace, table } in &request.tables {
        context.check()?;
        let dir = table_dir(&staging, keyspace, table);
        let staged = sstable_files(&dir)?;
        if !staged.is_empty() {
            report.tables += 1;
            report.files += staged.len() as u64;
            report.bytes += staged.iter().map(|(_, size)| size).sum::<u64>();
            import_table(state, keyspace, table, &staged, &work_root).await?;
            tracing::info!(%keyspace, %table, files = staged.len(), "imported");
        }
        state.set_progress(|p| p.files_done += 1);
    }
    remove_dir_if_present(&work_root)?;
    Ok(report)
}

/// Imports one table's staged files (linked, never moved) and checks
/// Cassandra took every SSTable.
async fn import_table(
    state: &AgentState,
    keyspace: &str,
    table: &str,
    staged: &[(PathBuf, u64)],
    work_root: &Path,
) -> Result<(), AgentError> {
    // What must be gone once Cassandra took the files: the import
    // directory's, or the names they were placed under in the table's.
    let (source, placed) = if state.control.imports_from_table_directory() {
        move_into_table_directory(state, keyspace, table, staged)?
    } else {
        let dir = table_dir(work_root, keyspace, table);
        std::fs::create_dir_all(&dir).map_err(|e| failed(&dir.display().to_string(), e))?;
        for (path, _) in staged {
            let name = path.file_name().unwrap_or_default();
            link_or_copy(path, &dir.join(name))?;
        }
        (dir, Vec::new())
    };
    state.control.import(keyspace, table, &source).await?;
    let left: Vec<String> = if placed.is_empty() {
        data_files(&source)?
    } else {
        placed
            .iter()
            .filter(|p| p.exists())
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .filter(|n| n.ends_with("-Data.db"))
            .collect()
    };
    if !left.is_empty() {
        return Err(AgentError::Failed(format!(
            "{} SSTable(s) of {keyspace}.{table} were not imported (see Cassandra's log): {}",
            left.len(),
            left.join(", ")
        )));
    }
    if placed.is_empty() {
        remove_dir_if_present(&source)?;
    }
    Ok(())
}

/// A hard link of `from` at `to` (same data, no copy), or a copy where a
/// link cannot be made (another filesystem).
fn link_or_copy(from: &Path, to: &Path) -> Result<(), AgentError> {
    match std::fs::hard_link(from, to) {
        Ok(()) => Ok(()),
        Err(link_error) => std::fs::copy(from, to).map(|_| ()).map_err(|e| {
            failed(
                &to.display().to_string(),
                format!("cannot link ({link_error}) or copy ({e})"),
            )
        }),
    }
}

fn remove_dir_if_present(dir: &Path) -> Result<(), AgentError> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(failed(&dir.display().to_string(), e)),
    }
}

/// Regular files in `dir` with their sizes (none if it does not exist).
fn sstable_files(dir: &Path) -> Result<Vec<(PathBuf, u64)>, AgentError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(failed(&dir.display().to_string(), e)),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| failed(&dir.display().to_string(), e))?;
        let meta = entry
            .metadata()
            .map_err(|e| failed(&dir.display().to_string(), e))?;
        if meta.is_file() {
            files.push((entry.path(), meta.len()));
        }
    }
    Ok(files)
}

/// Names of the `*-Data.db` files still in `dir`.
fn data_files(dir: &Path) -> Result<Vec<String>, AgentError> {
    Ok(sstable_files(dir)?
        .into_iter()
        .filter_map(|(path, _)| path.file_name().map(|n| n.to_string_lossy().into_owned()))
        .filter(|name| name.ends_with("-Data.db"))
        .collect())
}

/// For the Management API's refresh, which loads what lies in the table's
/// own directory: links (or copies) the staged SSTables there under
/// generation numbers no file there uses. Returns the directory and the files placed in it.
fn move_into_table_directory(
    state: &AgentState,
    keyspace: &str,
    table: &str,
    staged: &[(PathBuf, u64)],
) -> Result<(PathBuf, Vec<PathBuf>), AgentError> {
    let live = live_table_dir(state, keyspace, table)?;
    let taken = generations(&live)?;
    let mut next = taken.iter().copied().max().unwrap_or(0) + 1_000;
    let mut renamed: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    let mut placed = Vec::new();
    for (path, _) in staged {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let Some((version, generation, rest)) = split_sstable_name(&name) else {
            return Err(AgentError::Failed(format!(
                "{name} is not an SSTable component"
            )));
        };
        let new = *renamed.entry(generation.to_string()).or_insert_with(|| {
            next += 1;
            next
        });
        let target = live.join(format!("{version}-{new}-{rest}"));
        link_or_copy(path, &target)?;
        placed.push(target);
    }
    Ok((live, placed))
}

/// `<data_dir>/<keyspace>/<table>-<id>` of the live table: the most
/// recently created one when a dropped table left an older directory.
fn live_table_dir(state: &AgentState, keyspace: &str, table: &str) -> Result<PathBuf, AgentError> {
    let keyspace_dir = state
        .data_dirs
        .first()
        .ok_or_else(|| AgentError::Failed("no data directory".into()))?
        .join(keyspace);
    let prefix = format!("{table}-");
    let mut candidates: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(&keyspace_dir)
        .map_err(|e| failed(&keyspace_dir.display().to_string(), e))?
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .strip_prefix(&prefix)
                .is_some_and(|id| id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit()))
        })
        .filter_map(|e| Some((e.metadata().ok()?.created().ok()?, e.path())))
        .collect();
    candidates.sort();
    candidates.pop().map(|(_, path)| path).ok_or_else(|| {
        AgentError::Failed(format!(
            "no data directory for {keyspace}.{table} on this node"
        ))
    })
}

/// Integer generations of the SSTables in `dir`.
fn generations(dir: &Path) -> Result<Vec<u64>, AgentError> {
    Ok(sstable_files(dir)?
        .into_iter()
        .filter_map(|(path, _)| {
            let name = path.file_name()?.to_string_lossy().into_owned();
            split_sstable_name(&name)?.1.parse().ok()
        })
        .collect())
}

/// `nb-3-big-Data.db` → (`nb`, `3`, `big-Data.db`).
fn split_sstable_name(name: &str) -> Option<(&str, &str, &str)> {
    let mut parts = name.splitn(3, '-');
    Some((parts.next()?, parts.next()?, parts.next()?))
}

pub(super) async fn remove_staging(state: &AgentState, name: &str) -> Result<(), AgentError> {
    let dir = staging_dir(state, name)?;
    match tokio::fs::remove_dir_all(&dir).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(failed(&dir.display().to_string(), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sstable_names_split_into_version_generation_rest() {
        assert_eq!(
            split_sstable_name("nb-3-big-Data.db"),
            Some(("nb", "3", "big-Data.db"))
        );
        assert_eq!(
            split_sstable_name("da-12-bti-Partitions.db"),
            Some(("da", "12", "bti-Partitions.db"))
        );
        assert_eq!(split_sstable_name("manifest.json"), None);
    }
}
