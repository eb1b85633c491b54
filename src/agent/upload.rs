//! A node's upload: hash the snapshot's files (through the digest cache),
//! send the blobs the store lacks, and report every file for the node
//! manifest. Progress is kept in the shared [`Progress`] and logged at a
//! steady interval with rate and ETA.

use std::time::{Duration, Instant};

use std::collections::HashMap;

use futures::{StreamExt, TryStreamExt};

use super::api::{Progress, UploadReport, UploadRequest};
use super::jobs::JobContext;
use super::{AgentError, AgentState};
use crate::cassandra::digest_cache::DigestCache;
use crate::cassandra::snapshot::{SnapshotFile, inventory};
use crate::catalog::{FileEntry, Layout};
use crate::storage::Digest;

/// How often progress is logged during an upload.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(10);

/// The upload job: runs until done, or until the job is stopped (then this
/// future is dropped, and the progress logger with it — it is not a task
/// of its own that could outlive the job).
pub(super) async fn run(
    state: &AgentState,
    request: &UploadRequest,
    context: &JobContext,
) -> Result<UploadReport, AgentError> {
    let layout = Layout::new(&request.cluster, &request.datacenter)
        .map_err(|e| AgentError::BadRequest(e.to_string()))?;
    set_progress(state, |p| p.state = "hashing".into());
    let (files, hashed_bytes) = hash_snapshot(state, &request.tag, context).await?;
    let total_bytes = files.iter().map(|(_, d)| d.size).sum();
    set_progress(state, |p| {
        p.state = "uploading".into();
        p.files_total = files.len() as u64;
        p.bytes_total = total_bytes;
    });
    let sent = tokio::select! {
        result = upload_missing(state, &layout, &files) => result?,
        never = log_progress(state.clone()) => match never {},
    };
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

/// Inventory and digests of snapshot `tag`; returns the files with their
/// digests and how many data bytes had to be read to compute them.
/// Stops between files once the job is stopped.
async fn hash_snapshot(
    state: &AgentState,
    tag: &str,
    context: &JobContext,
) -> Result<(Vec<(SnapshotFile, Digest)>, u64), AgentError> {
    let (dirs, tag, cache_path) = (
        state.data_dirs.clone(),
        tag.to_string(),
        state.digest_cache.clone(),
    );
    let job = context.clone();
    context.blocking(move || {
        let files = inventory(&dirs, &tag).map_err(|e| AgentError::Failed(e.to_string()))?;
        if files.is_empty() {
            return Err(AgentError::BadRequest(format!("no snapshot {tag:?} on this node")));
        }
        let mut cache = DigestCache::open(&cache_path);
        let mut hashed = Vec::with_capacity(files.len());
        let mut data_read = 0;
        for file in files {
            job.check()?;
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
}

/// Cassandra writes `manifest.json` and `schema.cql` afresh into every
/// snapshot directory; they are small and new each time, so they are not
/// counted as data read (an unchanged node reads zero *data* bytes).
fn is_snapshot_metadata(path: &str) -> bool {
    matches!(path, "manifest.json" | "schema.cql")
}

/// Uploads every file whose blob is missing; returns, per file, whether it
/// was sent now. What is stored is found first, then [`plan_upload`]
/// decides, then the plan is carried out.
async fn upload_missing(
    state: &AgentState,
    layout: &Layout,
    files: &[(SnapshotFile, Digest)],
) -> Result<Vec<bool>, AgentError> {
    let digests: Vec<Digest> = files.iter().map(|(_, d)| *d).collect();
    let stored = stored_blobs(state, layout, &digests).await?;
    let send = plan_upload(layout, &digests, &stored)?;
    let (present_files, present_bytes) = digests
        .iter()
        .zip(&send)
        .filter(|(_, send)| !**send)
        .fold((0, 0), |(n, b), (d, _)| (n + 1, b + d.size));
    set_progress(state, |p| {
        p.files_done += present_files;
        p.bytes_done += present_bytes;
    });
    // Owned items: borrowed ones trip the compiler's higher-ranked lifetime
    // check inside the Send future the job's task requires.
    let to_send: Vec<(SnapshotFile, Digest)> = files
        .iter()
        .zip(&send)
        .filter(|(_, send)| **send)
        .map(|(file, _)| file.clone())
        .collect();
    futures::stream::iter(to_send)
        .map(|(file, digest)| {
            let (state, layout) = (state.clone(), layout.clone());
            async move { upload_one(&state, &layout, &file, &digest).await }
        })
        .buffer_unordered(state.concurrency)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(send)
}

/// The upload set: per file, whether to send it — when the store lacks
/// its blob (same key = same BLAKE3, and the same size), and only for the
/// first file with that content. Pure.
fn plan_upload(
    layout: &Layout,
    digests: &[Digest],
    stored: &HashMap<String, u64>,
) -> Result<Vec<bool>, AgentError> {
    let mut planned = std::collections::HashSet::new();
    digests
        .iter()
        .map(|digest| {
            let key = layout
                .blob(digest)
                .map_err(|e| AgentError::Failed(e.to_string()))?;
            let present = stored.get(key.as_str()) == Some(&digest.size);
            Ok(!present && planned.insert(key.as_str().to_string()))
        })
        .collect()
}

/// Blobs of `digests` already in the store, by key with their sizes: one
/// listing of `blobs/` (1,000 keys a request) when that is fewer requests
/// than a HEAD per distinct blob — with many files to check (a node holds
/// thousands of SSTable components, most unchanged) it is. A blob another
/// node uploads after this is sent again: harmless, the content is the
/// same.
async fn stored_blobs(
    state: &AgentState,
    layout: &Layout,
    digests: &[Digest],
) -> Result<HashMap<String, u64>, AgentError> {
    const LIST_WHEN_FILES_AT_LEAST: usize = 64;
    let failed = |e: crate::storage::Error| AgentError::Failed(e.to_string());
    if digests.len() >= LIST_WHEN_FILES_AT_LEAST {
        let prefix = layout.blobs_prefix();
        return state
            .store
            .list(&prefix)
            .map_ok(|o| (o.key.as_str().to_string(), o.size))
            .try_collect()
            .await
            .map_err(failed);
    }
    let mut keys = Vec::with_capacity(digests.len());
    for digest in digests {
        let key = layout
            .blob(digest)
            .map_err(|e| AgentError::Failed(e.to_string()))?;
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    let found: Vec<Option<(String, u64)>> = futures::stream::iter(keys)
        .map(|key| {
            let store = state.store.clone();
            async move {
                let meta = store.head(&key).await?;
                Ok::<_, crate::storage::Error>(meta.map(|m| (key.as_str().to_string(), m.size)))
            }
        })
        .buffer_unordered(state.concurrency)
        .try_collect()
        .await
        .map_err(failed)?;
    Ok(found.into_iter().flatten().collect())
}

/// Sends one file's blob and checks it is the content that was hashed.
async fn upload_one(
    state: &AgentState,
    layout: &Layout,
    file: &SnapshotFile,
    digest: &Digest,
) -> Result<(), AgentError> {
    let failed = |e: crate::storage::Error| AgentError::Failed(e.to_string());
    let key = layout
        .blob(digest)
        .map_err(|e| AgentError::Failed(e.to_string()))?;
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
    set_progress(state, |p| {
        p.files_done += 1;
        p.bytes_done += digest.size;
        p.bytes_uploaded += digest.size;
    });
    Ok(())
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
async fn log_progress(state: AgentState) -> std::convert::Infallible {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(byte: u8, size: u64) -> Digest {
        Digest {
            size,
            blake3: [byte; 32],
            crc32c: 0,
        }
    }

    #[test]
    fn the_upload_set_is_what_the_store_lacks_once_per_content() {
        let layout = Layout::new("c", "dc1").unwrap();
        let stored_one = digest(1, 10);
        let resized = digest(2, 20);
        let missing = digest(3, 30);
        let mut stored = HashMap::new();
        stored.insert(layout.blob(&stored_one).unwrap().as_str().to_string(), 10);
        // A blob stored with another size is not the same blob.
        stored.insert(layout.blob(&resized).unwrap().as_str().to_string(), 19);
        let plan = plan_upload(&layout, &[stored_one, resized, missing, missing], &stored).unwrap();
        assert_eq!(plan, [false, true, true, false]);
        assert_eq!(
            plan_upload(&layout, &[], &stored).unwrap(),
            Vec::<bool>::new()
        );
    }
}
