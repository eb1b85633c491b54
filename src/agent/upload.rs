//! A node's upload: decide, without reading any file, which snapshot files
//! this node's latest complete backup already holds ([`plan_upload`]),
//! stream every other file once to a key of its own (the store computes
//! its BLAKE3, CRC32C and size from the very bytes sent), and report every
//! file for the node manifest. Nothing here lists the catalog: the cost of
//! a pass depends on this node's files, not on the catalog's size.
//! Progress is kept in the shared [`Progress`] and logged at a steady
//! interval with rate and ETA.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};

use super::api::{PreviousManifest, Progress, UploadReport, UploadRequest};
use super::jobs::JobContext;
use super::{AgentError, AgentState, check_names};
use crate::cassandra::digest_cache::DigestCache;
use crate::cassandra::snapshot::{FileIdentity, SnapshotFile, inventory};
use crate::catalog::manifest::Record;
use crate::catalog::{FileEntry, Layout, NodeManifest, names};
use crate::storage::{Digest, digest_of};

/// How often progress is logged during an upload.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(10);

/// How often the digest cache is saved while files are sent, so that a
/// pass following a killed one finds what it sent.
const CACHE_SAVE_INTERVAL: Duration = Duration::from_secs(10);

/// Checks the request's keys before the job starts (a 400 otherwise).
pub(crate) fn check_request(request: &UploadRequest) -> Result<(), AgentError> {
    let prefix = request.files_prefix.as_deref().ok_or_else(|| {
        AgentError::BadRequest(
            "no files_prefix: the coordinator is older than this agent (node manifest version 2); upgrade it".into(),
        )
    })?;
    check_names(names::check_blob_key(&format!("{prefix}/x")))?;
    if let Some(previous) = &request.previous {
        let valid_key = previous.key.starts_with("backups/")
            && previous.key.ends_with(".json")
            && crate::storage::ObjectKey::new(previous.key.as_str()).is_ok();
        let valid_hash = previous.manifest_blake3.len() == 64
            && previous
                .manifest_blake3
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !valid_key || !valid_hash {
            return Err(AgentError::BadRequest(format!(
                "previous manifest {:?} / {:?} is not a node manifest key and a BLAKE3",
                previous.key, previous.manifest_blake3
            )));
        }
    }
    Ok(())
}

/// The upload job: runs until done, or until the job is stopped (then this
/// future is dropped, and the progress logger with it — it is not a task
/// of its own that could outlive the job).
pub(super) async fn run(
    state: &AgentState,
    request: &UploadRequest,
    context: &JobContext,
) -> Result<UploadReport, AgentError> {
    check_request(request)?;
    let layout = Layout::new(&request.cluster, &request.datacenter)
        .map_err(|e| AgentError::BadRequest(e.to_string()))?;
    let files_prefix = request.files_prefix.clone().unwrap_or_default();
    set_progress(state, |p| p.state = "planning".into());
    let previous = match &request.previous {
        Some(previous) => previous_contents(state, &layout, previous).await?,
        None => PreviousContents::new(),
    };
    let (files, cache) = open_snapshot(state, &request.tag, context).await?;
    let known: Vec<Known> = {
        let cache = lock(&cache);
        files
            .iter()
            .map(|file| Known {
                digest: cache.known(&file.identity),
                uploaded: cache
                    .uploaded(&file.identity)
                    .and_then(|key| layout.relative(key))
                    .map(str::to_string),
            })
            .collect()
    };
    let steps = plan_upload(&files, &known, &previous, &files_prefix)?;
    let total_bytes = files.iter().map(|f| f.identity.size).sum();
    set_progress(state, |p| {
        p.state = "uploading".into();
        p.files_total = files.len() as u64;
        p.bytes_total = total_bytes;
    });
    let carried = tokio::select! {
        result = carry_out(state, &layout, context, &files, steps, &cache) => result?,
        never = log_progress(state.clone()) => match never {},
    };
    save_cache(state, context, &cache, &files).await;
    let report = report(files, carried);
    tracing::info!(
        files = report.files.len(),
        bytes = report.bytes,
        reused_files = report.reused_files,
        uploaded_files = report.uploaded_files,
        uploaded_bytes = report.uploaded_bytes,
        read_bytes = report.hashed_bytes,
        "upload complete"
    );
    Ok(report)
}

/// The contents of the previous node manifest: for each (BLAKE3, size),
/// the object holding it (`None`: the content-addressed blob).
type PreviousContents = HashMap<([u8; 32], u64), Option<String>>;

/// Reads this node's previous manifest (one GET) and checks it is the one
/// the backup manifest vouches for. A missing or damaged one only costs
/// sending every file again, so it is a warning.
async fn previous_contents(
    state: &AgentState,
    layout: &Layout,
    previous: &PreviousManifest,
) -> Result<PreviousContents, AgentError> {
    let key = layout
        .relative_key(&previous.key)
        .map_err(|e| AgentError::BadRequest(e.to_string()))?;
    let bytes = match state.store.get_bytes(&key).await {
        Ok(bytes) => bytes,
        Err(crate::storage::Error::NotFound { .. }) => {
            tracing::warn!(%key, "the previous node manifest is missing; sending every file");
            return Ok(PreviousContents::new());
        }
        Err(err) => return Err(AgentError::Failed(format!("reading {key}: {err}"))),
    };
    let actual = digest_of(&bytes).blake3_hex();
    if actual != previous.manifest_blake3 {
        tracing::warn!(%key, expected = %previous.manifest_blake3, %actual, "the previous node manifest is not the one its backup vouches for; sending every file");
        return Ok(PreviousContents::new());
    }
    let manifest = match NodeManifest::from_json(&bytes) {
        Ok(manifest) => manifest,
        Err(err) => {
            tracing::warn!(%key, error = %err, "the previous node manifest is unreadable; sending every file");
            return Ok(PreviousContents::new());
        }
    };
    Ok(manifest
        .files
        .into_iter()
        .map(|f| ((f.digest.blake3, f.digest.size), f.blob))
        .collect())
}

/// The snapshot's files, and the digest cache (opened, not read through).
async fn open_snapshot(
    state: &AgentState,
    tag: &str,
    context: &JobContext,
) -> Result<(Vec<SnapshotFile>, Arc<Mutex<DigestCache>>), AgentError> {
    let (dirs, tag, cache_path) = (
        state.data_dirs.clone(),
        tag.to_string(),
        state.digest_cache.clone(),
    );
    context
        .blocking(move || {
            let files = inventory(&dirs, &tag).map_err(|e| AgentError::Failed(e.to_string()))?;
            if files.is_empty() {
                return Err(AgentError::BadRequest(format!(
                    "no snapshot {tag:?} on this node"
                )));
            }
            let mut cache = DigestCache::open(&cache_path);
            // Cassandra's per-table manifest.json and schema.cql are new
            // files in every snapshot, small, and often the same content
            // as last time (schema.cql): hashed here, so the plan can
            // reuse them by content; not counted as data read.
            for file in files.iter().filter(|f| is_snapshot_metadata(&f.path)) {
                cache.digest(&file.absolute, file.identity).map_err(|e| {
                    AgentError::Failed(format!("hashing {}: {e}", file.absolute.display()))
                })?;
            }
            Ok((files, Arc::new(Mutex::new(cache))))
        })
        .await
}

fn lock(cache: &Mutex<DigestCache>) -> std::sync::MutexGuard<'_, DigestCache> {
    // A panic while holding it leaves a usable map (worst case: one entry
    // missing, which costs a re-send).
    cache
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Saves the digest cache (keeping the entries of this snapshot's files);
/// failing only costs work next time, so it warns.
async fn save_cache(
    state: &AgentState,
    context: &JobContext,
    cache: &Arc<Mutex<DigestCache>>,
    files: &[SnapshotFile],
) {
    let live: Vec<FileIdentity> = files.iter().map(|f| f.identity).collect();
    let cache = cache.clone();
    let saved = context
        .blocking(move || {
            lock(&cache)
                .save(&live)
                .map_err(|e| AgentError::Failed(e.to_string()))
        })
        .await;
    if let Err(err) = saved {
        tracing::warn!(path = %state.digest_cache.display(), error = %err, "could not save the digest cache");
    }
}

/// What is known of one snapshot file without reading it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Known {
    /// Its digest, from the digest cache (by file identity).
    digest: Option<Digest>,
    /// The catalog-relative key an earlier pass (perhaps a killed one)
    /// sent it to, from the digest cache.
    uploaded: Option<String>,
}

/// What to do with one snapshot file.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    /// The previous manifest holds this content: reference its object
    /// (`None`: the content-addressed blob). No read, no request.
    Reuse {
        digest: Digest,
        blob: Option<String>,
    },
    /// An earlier pass that did not commit (killed) sent it to `blob`:
    /// reference that object when a `head` finds it with the size, send
    /// the file to `otherwise` if not.
    Confirm {
        digest: Digest,
        blob: String,
        otherwise: String,
    },
    /// Stream the file once to `blob` (catalog-relative).
    Send { blob: String },
}

/// The upload plan: per file, reuse what the previous manifest of this
/// node holds (digest known to the cache and present there), confirm what
/// a killed pass sent, send the rest to `files_prefix/<data_dir>/<keyspace>/<table>-<id>/<path>`.
/// Pure.
fn plan_upload(
    files: &[SnapshotFile],
    known: &[Known],
    previous: &PreviousContents,
    files_prefix: &str,
) -> Result<Vec<Step>, AgentError> {
    files
        .iter()
        .zip(known)
        .map(|(file, known)| {
            let send_to = format!(
                "{files_prefix}/{}/{}/{}-{}/{}",
                file.data_dir, file.keyspace, file.table, file.table_id, file.path
            );
            check_names(names::check_blob_key(&send_to))?;
            if let Some(digest) = known.digest {
                if let Some(blob) = previous.get(&(digest.blake3, digest.size)) {
                    return Ok(Step::Reuse {
                        digest,
                        blob: blob.clone(),
                    });
                }
                if let Some(blob) = &known.uploaded
                    && names::check_blob_key(blob).is_ok()
                {
                    return Ok(Step::Confirm {
                        digest,
                        blob: blob.clone(),
                        otherwise: send_to,
                    });
                }
            }
            Ok(Step::Send { blob: send_to })
        })
        .collect()
}

/// How one file ended up in the backup.
#[derive(Debug, Clone)]
struct Carried {
    digest: Digest,
    blob: Option<String>,
    /// Sent now (read from disk once).
    sent: bool,
}

/// Carries the plan out: reused files at once, confirmed and sent ones at
/// the agent's concurrency. Results in the order of `files`.
async fn carry_out(
    state: &AgentState,
    layout: &Layout,
    context: &JobContext,
    files: &[SnapshotFile],
    steps: Vec<Step>,
    cache: &Arc<Mutex<DigestCache>>,
) -> Result<Vec<Carried>, AgentError> {
    let mut carried: Vec<Option<Carried>> = vec![None; files.len()];
    let mut work = Vec::new();
    let (mut reused_files, mut reused_bytes) = (0, 0);
    for (i, step) in steps.into_iter().enumerate() {
        match step {
            Step::Reuse { digest, blob } => {
                reused_files += 1;
                reused_bytes += digest.size;
                carried[i] = Some(Carried {
                    digest,
                    blob,
                    sent: false,
                });
            }
            other => work.push((i, files[i].clone(), other)),
        }
    }
    set_progress(state, |p| {
        p.files_done += reused_files;
        p.bytes_done += reused_bytes;
    });
    let live: Arc<Vec<FileIdentity>> = Arc::new(files.iter().map(|f| f.identity).collect());
    let last_save = Arc::new(Mutex::new(Instant::now()));
    let done: Vec<(usize, Carried)> = futures::stream::iter(work)
        .map(|(i, file, step)| {
            let (state, layout, cache) = (state.clone(), layout.clone(), cache.clone());
            let (live, last_save, context) = (live.clone(), last_save.clone(), context.clone());
            async move {
                context.check()?;
                let result = carry_one(&state, &layout, &file, step, &cache).await?;
                save_now_and_then(&state, &context, &cache, &live, &last_save).await;
                Ok::<_, AgentError>((i, result))
            }
        })
        .buffer_unordered(state.concurrency)
        .try_collect()
        .await?;
    for (i, result) in done {
        carried[i] = Some(result);
    }
    carried
        .into_iter()
        .map(|c| c.ok_or_else(|| AgentError::Failed("a file was left out of the upload".into())))
        .collect()
}

/// Saves the digest cache when [`CACHE_SAVE_INTERVAL`] has passed since
/// the last save.
async fn save_now_and_then(
    state: &AgentState,
    context: &JobContext,
    cache: &Arc<Mutex<DigestCache>>,
    live: &Arc<Vec<FileIdentity>>,
    last_save: &Mutex<Instant>,
) {
    {
        let mut last = last_save
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.elapsed() < CACHE_SAVE_INTERVAL {
            return;
        }
        *last = Instant::now();
    }
    let (cache, live) = (cache.clone(), live.clone());
    let saved = context
        .blocking(move || {
            lock(&cache)
                .save(&live)
                .map_err(|e| AgentError::Failed(e.to_string()))
        })
        .await;
    if let Err(err) = saved {
        tracing::warn!(path = %state.digest_cache.display(), error = %err, "could not save the digest cache");
    }
}

/// Confirms or sends one file.
async fn carry_one(
    state: &AgentState,
    layout: &Layout,
    file: &SnapshotFile,
    step: Step,
    cache: &Mutex<DigestCache>,
) -> Result<Carried, AgentError> {
    let failed = |e: crate::storage::Error| AgentError::Failed(e.to_string());
    let key_of = |blob: &str| {
        layout
            .relative_key(blob)
            .map_err(|e| AgentError::Failed(e.to_string()))
    };
    let blob = match step {
        Step::Reuse { digest, blob } => {
            return Ok(Carried {
                digest,
                blob,
                sent: false,
            });
        }
        Step::Confirm {
            digest,
            blob,
            otherwise,
        } => {
            let meta = state.store.head(&key_of(&blob)?).await.map_err(failed)?;
            if meta.map(|m| m.size) == Some(digest.size) {
                set_progress(state, |p| {
                    p.files_done += 1;
                    p.bytes_done += digest.size;
                });
                return Ok(Carried {
                    digest,
                    blob: Some(blob),
                    sent: false,
                });
            }
            // Gone (a purge collected the killed pass's leftovers): send.
            otherwise
        }
        Step::Send { blob } => blob,
    };
    let key = key_of(&blob)?;
    let digest = state
        .store
        .put_file(&key, &file.absolute)
        .await
        .map_err(failed)?;
    if digest.size != file.identity.size {
        return Err(AgentError::Failed(format!(
            "{} changed while it was sent ({} bytes at the snapshot, {} sent; an SSTable never does)",
            file.absolute.display(),
            file.identity.size,
            digest.size
        )));
    }
    lock(cache).remember_upload(file.identity, digest, key.as_str().to_string());
    set_progress(state, |p| {
        p.files_done += 1;
        p.bytes_done += digest.size;
        p.bytes_uploaded += digest.size;
    });
    Ok(Carried {
        digest,
        blob: Some(blob),
        sent: true,
    })
}

/// Cassandra writes `manifest.json` and `schema.cql` afresh into every
/// snapshot directory; they are small and new each time, so they are not
/// counted as data read (an unchanged node reads zero *data* bytes).
fn is_snapshot_metadata(path: &str) -> bool {
    matches!(path, "manifest.json" | "schema.cql")
}

fn report(files: Vec<SnapshotFile>, carried: Vec<Carried>) -> UploadReport {
    let mut report = UploadReport {
        files: Vec::with_capacity(files.len()),
        bytes: 0,
        uploaded_files: 0,
        uploaded_bytes: 0,
        hashed_bytes: 0,
        reused_files: 0,
    };
    for (file, carried) in files.into_iter().zip(carried) {
        report.bytes += carried.digest.size;
        if carried.sent {
            report.uploaded_files += 1;
            report.uploaded_bytes += carried.digest.size;
            if !is_snapshot_metadata(&file.path) {
                report.hashed_bytes += carried.digest.size;
            }
        } else {
            report.reused_files += 1;
        }
        report.files.push(FileEntry {
            keyspace: file.keyspace,
            table: file.table,
            table_id: file.table_id,
            path: file.path,
            data_dir: file.data_dir,
            digest: carried.digest,
            blob: carried.blob,
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
    use std::path::PathBuf;

    fn digest(byte: u8, size: u64) -> Digest {
        Digest {
            size,
            blake3: [byte; 32],
            crc32c: 0,
        }
    }

    fn file(inode: u64, path: &str, size: u64) -> SnapshotFile {
        SnapshotFile {
            data_dir: 0,
            keyspace: "shop".into(),
            table: "orders".into(),
            table_id: "5a1c".into(),
            path: path.into(),
            absolute: PathBuf::from(format!("/data/shop/orders-5a1c/snapshots/t/{path}")),
            identity: FileIdentity {
                device: 1,
                inode,
                size,
                mtime_ns: 0,
            },
        }
    }

    const PREFIX: &str = "files/h/nightly/backup-01";

    #[test]
    fn known_content_of_the_previous_manifest_is_reused_without_a_read() {
        let files = [
            file(1, "nb-1-big-Data.db", 10),
            file(2, "nb-2-big-Data.db", 20),
            file(3, "nb-3-big-Data.db", 30),
            file(4, ".idx/nb-1-big-Data.db", 40),
        ];
        let mut previous = PreviousContents::new();
        // A version 1 entry (content-addressed) and a version 2 one.
        previous.insert((digest(1, 10).blake3, 10), None);
        previous.insert(
            (digest(2, 20).blake3, 20),
            Some("files/h/old/p/0/shop/orders-5a1c/nb-2-big-Data.db".into()),
        );
        // Same BLAKE3 with another size is not the same content.
        previous.insert((digest(3, 30).blake3, 31), None);
        let known = [
            Known {
                digest: Some(digest(1, 10)),
                uploaded: None,
            },
            Known {
                digest: Some(digest(2, 20)),
                uploaded: None,
            },
            Known {
                digest: Some(digest(3, 30)),
                uploaded: None,
            },
            // Not in the cache: present in the previous manifest or not,
            // it is sent (reading it is how its digest is learnt).
            Known::default(),
        ];
        let plan = plan_upload(&files, &known, &previous, PREFIX).unwrap();
        assert_eq!(
            plan,
            [
                Step::Reuse {
                    digest: digest(1, 10),
                    blob: None
                },
                Step::Reuse {
                    digest: digest(2, 20),
                    blob: Some("files/h/old/p/0/shop/orders-5a1c/nb-2-big-Data.db".into())
                },
                Step::Send {
                    blob: format!("{PREFIX}/0/shop/orders-5a1c/nb-3-big-Data.db")
                },
                Step::Send {
                    blob: format!("{PREFIX}/0/shop/orders-5a1c/.idx/nb-1-big-Data.db")
                },
            ]
        );
        assert_eq!(plan_upload(&[], &[], &previous, PREFIX).unwrap(), []);
    }

    #[test]
    fn what_a_killed_pass_sent_is_confirmed_not_sent_again() {
        let files = [
            file(1, "nb-1-big-Data.db", 10),
            file(2, "nb-2-big-Data.db", 20),
        ];
        let killed = "files/h/nightly/backup-00/0/shop/orders-5a1c/nb-1-big-Data.db";
        let known = [
            Known {
                digest: Some(digest(1, 10)),
                uploaded: Some(killed.into()),
            },
            // An upload key that is not a key under files/ is ignored.
            Known {
                digest: Some(digest(2, 20)),
                uploaded: Some("../x".into()),
            },
        ];
        let plan = plan_upload(&files, &known, &PreviousContents::new(), PREFIX).unwrap();
        assert_eq!(
            plan,
            [
                Step::Confirm {
                    digest: digest(1, 10),
                    blob: killed.into(),
                    otherwise: format!("{PREFIX}/0/shop/orders-5a1c/nb-1-big-Data.db"),
                },
                Step::Send {
                    blob: format!("{PREFIX}/0/shop/orders-5a1c/nb-2-big-Data.db")
                },
            ]
        );
        // The previous manifest wins over a killed pass's copy: no request.
        let mut previous = PreviousContents::new();
        previous.insert((digest(1, 10).blake3, 10), None);
        let plan = plan_upload(&files[..1], &known[..1], &previous, PREFIX).unwrap();
        assert_eq!(
            plan,
            [Step::Reuse {
                digest: digest(1, 10),
                blob: None
            }]
        );
    }

    #[test]
    fn upload_requests_name_keys_under_files() {
        let request = |prefix: Option<&str>| UploadRequest {
            tag: "kassette-x".into(),
            cluster: "c".into(),
            datacenter: "dc1".into(),
            files_prefix: prefix.map(str::to_string),
            previous: None,
        };
        assert!(check_request(&request(Some(PREFIX))).is_ok());
        for bad in [
            None,
            Some("blobs/x"),
            Some("files/../x"),
            Some("files//x"),
            Some("/files/x"),
        ] {
            assert!(check_request(&request(bad)).is_err(), "{bad:?}");
        }
        let mut with_previous = request(Some(PREFIX));
        with_previous.previous = Some(PreviousManifest {
            key: "backups/b/nodes/h.json".into(),
            manifest_blake3: "0".repeat(64),
        });
        assert!(check_request(&with_previous).is_ok());
        with_previous.previous = Some(PreviousManifest {
            key: "locks/x.json".into(),
            manifest_blake3: "0".repeat(64),
        });
        assert!(check_request(&with_previous).is_err());
    }
}
