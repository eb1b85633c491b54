//! A node's upload: hash the snapshot's files (through the digest cache),
//! send the blobs the store lacks, and report every file for the node
//! manifest. Progress is kept in the shared [`Progress`] and logged at a
//! steady interval with rate and ETA.

use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};

use super::api::{Progress, UploadReport, UploadRequest};
use super::{AgentError, AgentState};
use crate::cassandra::digest_cache::DigestCache;
use crate::cassandra::snapshot::{SnapshotFile, inventory};
use crate::catalog::{FileEntry, Layout};
use crate::storage::Digest;

/// How often progress is logged during an upload.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(10);

pub(super) async fn run(
    state: &AgentState,
    request: &UploadRequest,
) -> Result<UploadReport, AgentError> {
    let layout = Layout::new(&request.cluster, &request.datacenter)
        .map_err(|e| AgentError::BadRequest(e.to_string()))?;
    set_progress(state, |p| {
        *p = Progress {
            state: "hashing".into(),
            ..Progress::default()
        }
    });
    let (files, hashed_bytes) = hash_snapshot(state, &request.tag).await?;
    let total_bytes = files.iter().map(|(_, d)| d.size).sum();
    set_progress(state, |p| {
        p.state = "uploading".into();
        p.files_total = files.len() as u64;
        p.bytes_total = total_bytes;
    });
    let logger = tokio::spawn(log_progress(state.clone()));
    let result = upload_missing(state, &layout, &files).await;
    logger.abort();
    match result {
        Ok(sent) => {
            set_progress(state, |p| p.state = "done".into());
            let report = report(files, hashed_bytes, sent);
            tracing::info!(
                files = report.files.len(),
                bytes = report.bytes,
                uploaded_files = report.uploaded_files,
                uploaded_bytes = report.uploaded_bytes,
                hashed_bytes,
                "upload complete"
            );
            Ok(report)
        }
        Err(err) => {
            set_progress(state, |p| {
                p.state = "failed".into();
                p.error = Some(err.to_string());
            });
            Err(err)
        }
    }
}

/// Inventory and digests of snapshot `tag`; returns the files with their
/// digests and how many data bytes had to be read to compute them.
async fn hash_snapshot(
    state: &AgentState,
    tag: &str,
) -> Result<(Vec<(SnapshotFile, Digest)>, u64), AgentError> {
    let (dirs, tag, cache_path) = (
        state.data_dirs.clone(),
        tag.to_string(),
        state.digest_cache.clone(),
    );
    tokio::task::spawn_blocking(move || {
        let files = inventory(&dirs, &tag).map_err(|e| AgentError::Failed(e.to_string()))?;
        if files.is_empty() {
            return Err(AgentError::BadRequest(format!("no snapshot {tag:?} on this node")));
        }
        let mut cache = DigestCache::open(&cache_path);
        let mut hashed = Vec::with_capacity(files.len());
        let mut data_read = 0;
        for file in files {
            let before = cache.bytes_read;
            let digest = cache
                .digest(&file.absolute, file.identity)
                .map_err(|e| AgentError::Failed(format!("hashing {}: {e}", file.absolute.display())))?;
            if !is_snapshot_metadata(&file.path) {
                data_read += cache.bytes_read - before;
            }
            hashed.push((file, digest));
        }
        let live: Vec<_> = hashed.iter().map(|(f, _)| f.identity).collect();
        if let Err(e) = cache.save(&live) {
            // Only costs a re-read next time.
            tracing::warn!(path = %cache_path.display(), error = %e, "could not save the digest cache");
        }
        Ok((hashed, data_read))
    })
    .await
    .map_err(|e| AgentError::Failed(e.to_string()))?
}

/// Cassandra writes `manifest.json` and `schema.cql` afresh into every
/// snapshot directory; they are small and new each time, so they are not
/// counted as data read (an unchanged node reads zero *data* bytes).
fn is_snapshot_metadata(path: &str) -> bool {
    matches!(path, "manifest.json" | "schema.cql")
}

/// Uploads every file whose blob is missing; returns, per file, whether it
/// was sent now.
async fn upload_missing(
    state: &AgentState,
    layout: &Layout,
    files: &[(SnapshotFile, Digest)],
) -> Result<Vec<bool>, AgentError> {
    let stored = std::sync::Arc::new(stored_blobs(state, layout, files.len()).await?);
    // Owned items: borrowed ones trip the compiler's higher-ranked lifetime
    // check inside the Send future axum requires.
    futures::stream::iter(files.to_vec())
        .map(|(file, digest)| {
            let (state, layout, stored) = (state.clone(), layout.clone(), stored.clone());
            async move { upload_one(&state, &layout, &file, &digest, stored.as_ref().as_ref()).await }
        })
        .buffered(state.concurrency)
        .try_collect()
        .await
}

/// Blobs already in the store, by key with their sizes — one listing of
/// `blobs/` (1,000 keys a request) instead of one HEAD per file, when
/// that is fewer requests: with many files to check (a node holds
/// thousands of SSTable components, most unchanged) it is. `None`: ask
/// per file.
async fn stored_blobs(
    state: &AgentState,
    layout: &Layout,
    files: usize,
) -> Result<Option<std::collections::HashMap<String, u64>>, AgentError> {
    const LIST_WHEN_FILES_AT_LEAST: usize = 64;
    if files < LIST_WHEN_FILES_AT_LEAST {
        return Ok(None);
    }
    let prefix = layout.blobs_prefix();
    let stored = state
        .store
        .list(&prefix)
        .map_ok(|o| (o.key.as_str().to_string(), o.size))
        .try_collect()
        .await
        .map_err(|e| AgentError::Failed(e.to_string()))?;
    Ok(Some(stored))
}

/// Sends one file unless its blob is present (same key = same BLAKE3, and
/// the same size) — in the listing `stored` when there is one, else by a
/// HEAD; returns whether it was sent. A blob another node uploaded after
/// the listing is sent again: harmless, the content is the same.
async fn upload_one(
    state: &AgentState,
    layout: &Layout,
    file: &SnapshotFile,
    digest: &Digest,
    stored: Option<&std::collections::HashMap<String, u64>>,
) -> Result<bool, AgentError> {
    let failed = |e: crate::storage::Error| AgentError::Failed(e.to_string());
    let key = layout
        .blob(digest)
        .map_err(|e| AgentError::Failed(e.to_string()))?;
    let present = match stored {
        Some(stored) => stored.get(key.as_str()) == Some(&digest.size),
        None => state
            .store
            .head(&key)
            .await
            .map_err(failed)?
            .is_some_and(|meta| meta.size == digest.size),
    };
    if !present {
        let sent = state
            .store
            .put_file(&key, &file.absolute)
            .await
            .map_err(failed)?;
        if !sent.same_content(digest) {
            return Err(AgentError::Failed(format!(
                "{} changed between hashing and upload (an SSTable never does)",
                file.absolute.display()
            )));
        }
    }
    set_progress(state, |p| {
        p.files_done += 1;
        p.bytes_done += digest.size;
        if !present {
            p.bytes_uploaded += digest.size;
        }
    });
    Ok(!present)
}

fn report(files: Vec<(SnapshotFile, Digest)>, hashed_bytes: u64, sent: Vec<bool>) -> UploadReport {
    let mut report = UploadReport {
        files: Vec::with_capacity(files.len()),
        bytes: 0,
        uploaded_files: 0,
        uploaded_bytes: 0,
        hashed_bytes,
    };
    for ((file, digest), was_sent) in files.into_iter().zip(sent) {
        report.bytes += digest.size;
        if was_sent {
            report.uploaded_files += 1;
            report.uploaded_bytes += digest.size;
        }
        report.files.push(FileEntry {
            keyspace: file.keyspace,
            table: file.table,
            table_id: file.table_id,
            path: file.path,
            data_dir: file.data_dir,
            digest,
        });
    }
    report
}

fn set_progress(state: &AgentState, change: impl FnOnce(&mut Progress)) {
    state.set_progress(change);
}

/// Logs files, bytes, rate and ETA every [`PROGRESS_INTERVAL`].
async fn log_progress(state: AgentState) {
    let start = Instant::now();
    let mut ticker = tokio::time::interval(PROGRESS_INTERVAL);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let p = state.progress();
        let elapsed = start.elapsed().as_secs_f64().max(0.001);
        let rate = p.bytes_done as f64 / elapsed;
        let eta = (rate > 0.0).then(|| {
            Duration::from_secs_f64(p.bytes_total.saturating_sub(p.bytes_done) as f64 / rate)
        });
        tracing::info!(
            files = format!("{}/{}", p.files_done, p.files_total),
            bytes = format!("{}/{}", bytesize::ByteSize(p.bytes_done), bytesize::ByteSize(p.bytes_total)),
            uploaded = %bytesize::ByteSize(p.bytes_uploaded),
            rate = format!("{}/s", bytesize::ByteSize(rate as u64)),
            eta = eta.map(|d| humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()),
            "upload progress"
        );
    }
}
