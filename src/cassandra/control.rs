//! Driving the local Cassandra node: snapshot (which flushes first),
//! clear, import and repair, through one of three doors — the `nodetool`
//! command (a JVM per call: about 2 CPU-seconds each), Jolokia (HTTP to the
//! JMX bridge, one kept connection), or the Management API for Apache
//! Cassandra (the HTTP sidecar of cass-operator pods, one kept connection).
//! [`Control`] is the one type the agent holds; each method means the same
//! whatever the door, and the HTTP doors keep one `reqwest` client (its
//! connection pool) for the agent's lifetime.

use std::time::Duration;

use serde_json::json;
use url::Url;

/// How the agent drives its node.
#[derive(Debug, Clone)]
pub enum Control {
    Nodetool(Nodetool),
    Jolokia(Jolokia),
    ManagementApi(ManagementApi),
}

impl Control {
    /// Flushes and snapshots `keyspaces` (all when empty) under `tag`.
    /// Cassandra flushes each table right before linking its files, so the
    /// snapshot holds every write acknowledged before the call.
    pub async fn snapshot(&self, tag: &str, keyspaces: &[String]) -> Result<(), ControlError> {
        match self {
            Control::Nodetool(n) => n.snapshot(tag, keyspaces).await,
            Control::Jolokia(j) => j.snapshot(tag, keyspaces).await,
            Control::ManagementApi(m) => m.snapshot(tag, keyspaces).await,
        }
    }

    /// Removes snapshot `tag` from every keyspace.
    pub async fn clear_snapshot(&self, tag: &str) -> Result<(), ControlError> {
        match self {
            Control::Nodetool(n) => n.clear_snapshot(tag).await,
            Control::Jolokia(j) => j.clear_snapshot(tag).await,
            Control::ManagementApi(m) => m.clear_snapshot(tag).await,
        }
    }

    /// Removes snapshot `tag` of `keyspace` only (a tag such as Cassandra's
    /// `truncated-<millis>-<table>` can exist in several keyspaces).
    pub async fn clear_snapshot_in(&self, tag: &str, keyspace: &str) -> Result<(), ControlError> {
        match self {
            Control::Nodetool(n) => n.clear_snapshot_in(tag, keyspace).await,
            Control::Jolokia(j) => j.clear_snapshot_in(tag, keyspace).await,
            Control::ManagementApi(m) => m.clear_snapshot_in(tag, keyspace).await,
        }
    }

    /// Loads the SSTables in `dir` into the live table `keyspace.table`
    /// (Cassandra moves them into its data directories, verifying them and
    /// their tokens, and rebuilds the table's secondary indexes for them).
    /// The Management API can only refresh a table from its own directory,
    /// so the caller first places the files there (see
    /// [`Control::imports_from_table_directory`]).
    pub async fn import(
        &self,
        keyspace: &str,
        table: &str,
        dir: &std::path::Path,
    ) -> Result<(), ControlError> {
        match self {
            Control::Nodetool(n) => n.import(keyspace, table, dir).await,
            Control::Jolokia(j) => j.import(keyspace, table, dir).await,
            Control::ManagementApi(m) => m.refresh(keyspace, table).await,
        }
    }

    /// A full repair of the primary ranges of this node for `tables` of
    /// `keyspace`, waited for: after it every replica of those ranges has
    /// every row any of them had. (The Management API has no primary-range
    /// option: it repairs every range the node replicates, which is the
    /// same result with more work.)
    pub async fn repair(&self, keyspace: &str, tables: &[String]) -> Result<(), ControlError> {
        match self {
            Control::Nodetool(n) => n.repair(keyspace, tables).await,
            Control::Jolokia(j) => j.repair(keyspace, tables).await,
            Control::ManagementApi(m) => m.repair(keyspace, tables).await,
        }
    }

    /// Whether [`Control::import`] expects the files in the table's own
    /// data directory rather than in a staging directory.
    pub fn imports_from_table_directory(&self) -> bool {
        matches!(self, Control::ManagementApi(_))
    }
}

/// One HTTP client for the HTTP doors: generous timeouts, because a
/// snapshot of thousands of tables takes a while. One that cannot be built
/// is an error: a default client would wait forever on a hung node.
fn http_client(what: &str) -> Result<reqwest::Client, ControlError> {
    let builder = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(600));
    crate::http::build(what, builder).map_err(|e| ControlError::Refused {
        operation: what.to_string(),
        message: e.message,
    })
}

/// Jolokia's HTTP bridge to Cassandra's JMX MBeans (the operations
/// nodetool itself calls).
#[derive(Debug, Clone)]
pub struct Jolokia {
    url: Url,
    http: reqwest::Client,
}

const STORAGE_SERVICE: &str = "org.apache.cassandra.db:type=StorageService";
/// The largest Jolokia answer read (they are a few lines).
const MAX_ANSWER_BYTES: u64 = 16 << 20;

impl Jolokia {
    pub fn new(url: Url) -> Result<Self, ControlError> {
        Ok(Self {
            url,
            http: http_client("Jolokia")?,
        })
    }

    /// `StorageService.takeSnapshot(tag, options, entities...)`.
    pub async fn snapshot(&self, tag: &str, keyspaces: &[String]) -> Result<(), ControlError> {
        self.exec(
            "takeSnapshot(java.lang.String,java.util.Map,[Ljava.lang.String;)",
            json!([tag, {}, keyspaces]),
        )
        .await
        .map(|_| ())
    }

    /// `StorageService.clearSnapshot(options, tag, keyspaces...)`.
    pub async fn clear_snapshot(&self, tag: &str) -> Result<(), ControlError> {
        self.exec(
            "clearSnapshot(java.util.Map,java.lang.String,[Ljava.lang.String;)",
            json!([{}, tag, []]),
        )
        .await
        .map(|_| ())
    }

    /// `StorageService.clearSnapshot(options, tag, keyspace)`.
    pub async fn clear_snapshot_in(&self, tag: &str, keyspace: &str) -> Result<(), ControlError> {
        self.exec(
            "clearSnapshot(java.util.Map,java.lang.String,[Ljava.lang.String;)",
            json!([{}, tag, [keyspace]]),
        )
        .await
        .map(|_| ())
    }

    /// `ColumnFamilyStore.importNewSSTables(dirs, resetLevel, clearRepaired,
    /// verifySSTables, verifyTokens, invalidateCaches, extendedVerify,
    /// copyData)` with nodetool import's defaults; it answers the
    /// directories that failed.
    pub async fn import(
        &self,
        keyspace: &str,
        table: &str,
        dir: &std::path::Path,
    ) -> Result<(), ControlError> {
        let mbean =
            format!("org.apache.cassandra.db:type=Tables,keyspace={keyspace},table={table}");
        let operation = "importNewSSTables(java.util.Set,boolean,boolean,boolean,boolean,boolean,boolean,boolean)";
        let failed = self
            .exec_on(
                &mbean,
                operation,
                json!([
                    [dir.display().to_string()],
                    true,
                    true,
                    true,
                    true,
                    true,
                    false,
                    false
                ]),
            )
            .await?;
        match failed.as_array() {
            Some(dirs) if !dirs.is_empty() => Err(ControlError::Refused {
                operation: format!("Jolokia importNewSSTables {keyspace}.{table}"),
                message: format!("directories failed to import: {failed}"),
            }),
            _ => Ok(()),
        }
    }

    async fn exec(
        &self,
        operation: &str,
        arguments: serde_json::Value,
    ) -> Result<serde_json::Value, ControlError> {
        self.exec_on(STORAGE_SERVICE, operation, arguments).await
    }

    /// `StorageService.repairAsync(keyspace, options)` (full, primary
    /// range, these tables), then `getParentRepairStatus` until it is no
    /// longer in progress.
    pub async fn repair(&self, keyspace: &str, tables: &[String]) -> Result<(), ControlError> {
        let options = json!({
            "primaryRange": "true",
            "incremental": "false",
            "columnFamilies": tables.join(","),
        });
        let command = self
            .exec(
                "repairAsync(java.lang.String,java.util.Map)",
                json!([keyspace, options]),
            )
            .await?;
        let operation = format!("Jolokia repair of {keyspace}");
        let Some(id) = command.as_i64() else {
            return Err(ControlError::Refused {
                operation,
                message: format!("unexpected answer {command}"),
            });
        };
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let status = self.exec("getParentRepairStatus(int)", json!([id])).await?;
            let state = status
                .as_array()
                .and_then(|s| s.first())
                .and_then(|s| s.as_str())
                .unwrap_or("IN_PROGRESS");
            match state {
                "IN_PROGRESS" => continue,
                "COMPLETED" => return Ok(()),
                _ => {
                    return Err(ControlError::Refused {
                        operation,
                        message: status.to_string(),
                    });
                }
            }
        }
    }

    /// Runs one JMX operation; Jolokia answers HTTP 200 with its own
    /// `status` field, which is what counts.
    async fn exec_on(
        &self,
        mbean: &str,
        operation: &str,
        arguments: serde_json::Value,
    ) -> Result<serde_json::Value, ControlError> {
        let request = json!({
            "type": "exec",
            "mbean": mbean,
            "operation": operation,
            "arguments": arguments,
        });
        let what = format!("Jolokia {operation}");
        let response = self
            .http
            .post(self.url.clone())
            .json(&request)
            .send()
            .await
            .map_err(|e| http_error(&what, &e))?;
        let bytes = crate::http::read_capped(response, MAX_ANSWER_BYTES)
            .await
            .map_err(|message| ControlError::Refused {
                operation: what.clone(),
                message,
            })?;
        let body: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| ControlError::Refused {
                operation: what.clone(),
                message: format!("answer is not JSON: {e}"),
            })?;
        match body.get("status").and_then(serde_json::Value::as_u64) {
            Some(200) => Ok(body.get("value").cloned().unwrap_or_default()),
            status => Err(ControlError::Refused {
                operation: what,
                message: format!(
                    "status {}: {}",
                    status.map_or_else(|| "none".into(), |s| s.to_string()),
                    body.get("error")
                        .and_then(serde_json::Value::as_str)
                        .unwrap_or("no error message")
                ),
            }),
        }
    }
}

/// The Management API for Apache Cassandra (`/api/v0/ops/...`, as its
/// published openapi.json describes).
#[derive(Debug, Clone)]
pub struct ManagementApi {
    url: Url,
    http: reqwest::Client,
}

impl ManagementApi {
    pub fn new(url: Url) -> Result<Self, ControlError> {
        Ok(Self {
            url,
            http: http_client("Management API")?,
        })
    }

    fn endpoint(&self, path: &str) -> Result<Url, ControlError> {
        self.url.join(path).map_err(|e| ControlError::Refused {
            operation: format!("Management API {path}"),
            message: e.to_string(),
        })
    }

    /// `POST /api/v0/ops/node/snapshots` with a `TakeSnapshotRequest`.
    pub async fn snapshot(&self, tag: &str, keyspaces: &[String]) -> Result<(), ControlError> {
        let url = self.endpoint("/api/v0/ops/node/snapshots")?;
        let body = json!({"snapshot_name": tag, "keyspaces": keyspaces, "skip_flush": false});
        self.send(self.http.post(url).json(&body), "take snapshot")
            .await
    }

    /// `DELETE /api/v0/ops/node/snapshots?snapshotNames=<tag>`.
    pub async fn clear_snapshot(&self, tag: &str) -> Result<(), ControlError> {
        let mut url = self.endpoint("/api/v0/ops/node/snapshots")?;
        url.query_pairs_mut().append_pair("snapshotNames", tag);
        self.send(self.http.delete(url), "clear snapshot").await
    }

    /// `DELETE /api/v0/ops/node/snapshots?snapshotNames=<tag>&keyspaces=<ks>`
    /// (the parameter is `keyspaces`: a server ignores any other name and
    /// would clear the tag in every keyspace).
    pub async fn clear_snapshot_in(&self, tag: &str, keyspace: &str) -> Result<(), ControlError> {
        let mut url = self.endpoint("/api/v0/ops/node/snapshots")?;
        url.query_pairs_mut()
            .append_pair("snapshotNames", tag)
            .append_pair("keyspaces", keyspace);
        self.send(self.http.delete(url), "clear snapshot").await
    }

    /// `POST /api/v1/ops/node/repair` (a full repair of `tables`, answered
    /// 202 with a job id), then `GET /api/v0/ops/executor/job?job_id=<id>`
    /// until the job is `COMPLETED` (or `ERROR`).
    pub async fn repair(&self, keyspace: &str, tables: &[String]) -> Result<(), ControlError> {
        let operation = format!("Management API repair of {keyspace}");
        let refused = |message: String| ControlError::Refused {
            operation: operation.clone(),
            message,
        };
        let url = self.endpoint("/api/v1/ops/node/repair")?;
        let body = json!({"keyspace": keyspace, "tables": tables, "full_repair": true});
        let response = self
            .http
            .post(url)
            .json(&body)
            .send()
            .await
            .map_err(|e| http_error(&operation, &e))?;
        let status = response.status();
        let answer = crate::http::read_capped(response, 64 << 10)
            .await
            .map_err(&refused)?;
        let answer = String::from_utf8_lossy(&answer).trim().to_string();
        if !status.is_success() {
            return Err(refused(format!("{status}: {answer}")));
        }
        // The job id is the plain-text body (a JSON string from some
        // versions: the quotes are not part of it).
        let job = answer.trim_matches('"').to_string();
        if job.is_empty() {
            return Err(refused(format!("{status} without a job id")));
        }
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let mut url = self.endpoint("/api/v0/ops/executor/job")?;
            url.query_pairs_mut().append_pair("job_id", &job);
            let response = self
                .http
                .get(url)
                .send()
                .await
                .map_err(|e| http_error(&operation, &e))?;
            let status = response.status();
            let bytes = crate::http::read_capped(response, MAX_ANSWER_BYTES)
                .await
                .map_err(&refused)?;
            if !status.is_success() {
                return Err(refused(format!(
                    "job {job}: {status}: {}",
                    String::from_utf8_lossy(&bytes).trim()
                )));
            }
            let state: serde_json::Value = serde_json::from_slice(&bytes)
                .map_err(|e| refused(format!("job {job}: answer is not JSON: {e}")))?;
            match state.get("status").and_then(serde_json::Value::as_str) {
                Some("COMPLETED") => return Ok(()),
                Some("ERROR") => {
                    return Err(refused(format!(
                        "job {job} failed: {}",
                        state
                            .get("error")
                            .and_then(serde_json::Value::as_str)
                            .unwrap_or("no error message")
                    )));
                }
                _ => continue,
            }
        }
    }

    /// `POST /api/v0/ops/keyspace/refresh?keyspaceName=<ks>&table=<t>`:
    /// loads SSTables placed in the table's own data directory.
    pub async fn refresh(&self, keyspace: &str, table: &str) -> Result<(), ControlError> {
        let mut url = self.endpoint("/api/v0/ops/keyspace/refresh")?;
        url.query_pairs_mut()
            .append_pair("keyspaceName", keyspace)
            .append_pair("table", table);
        self.send(self.http.post(url), "refresh").await
    }

    async fn send(&self, request: reqwest::RequestBuilder, what: &str) -> Result<(), ControlError> {
        let what = format!("Management API {what}");
        let response = request.send().await.map_err(|e| http_error(&what, &e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        // The error message is a line or two; more is not read.
        let message = crate::http::read_capped(response, 64 << 10)
            .await
            .unwrap_or_default();
        Err(ControlError::Refused {
            operation: what,
            message: format!("{status}: {}", String::from_utf8_lossy(&message).trim()),
        })
    }
}

fn http_error(operation: &str, err: &reqwest::Error) -> ControlError {
    ControlError::Refused {
        operation: operation.to_string(),
        message: crate::storage::error_chain(err),
    }
}

/// Why a control operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("cannot run {command:?}: {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("`{command}` did not finish within {timeout:?}")]
    Timeout { command: String, timeout: Duration },
    #[error("{operation}: {message}")]
    Refused { operation: String, message: String },
}

/// `nodetool`, run as a command. `command` may carry arguments of its own
/// (e.g. `nodetool -h 127.0.0.1 -p 7199`); it is split on whitespace.
#[derive(Debug, Clone)]
pub struct Nodetool {
    command: Vec<String>,
    timeout: Duration,
}

impl Nodetool {
    pub fn new(command: &str) -> Self {
        Self {
            command: command.split_whitespace().map(String::from).collect(),
            // Flushing a large memtable or snapshotting thousands of tables
            // takes a while; a hung JMX connection must not hang the pass.
            timeout: Duration::from_secs(600),
        }
    }

    /// Takes snapshot `tag` of `keyspaces` (all when empty).
    pub async fn snapshot(&self, tag: &str, keyspaces: &[String]) -> Result<(), ControlError> {
        let mut args = vec!["snapshot".to_string(), "-t".to_string(), tag.to_string()];
        if !keyspaces.is_empty() {
            args.push("--".to_string());
            args.extend(keyspaces.iter().cloned());
        }
        self.run(&args).await.map(|_| ())
    }

    /// Removes snapshot `tag` from every keyspace.
    pub async fn clear_snapshot(&self, tag: &str) -> Result<(), ControlError> {
        let args = ["clearsnapshot", "-t", tag].map(String::from);
        self.run(&args).await.map(|_| ())
    }

    /// `nodetool clearsnapshot -t <tag> -- <keyspace>`.
    pub async fn clear_snapshot_in(&self, tag: &str, keyspace: &str) -> Result<(), ControlError> {
        let args = ["clearsnapshot", "-t", tag, "--", keyspace].map(String::from);
        self.run(&args).await.map(|_| ())
    }

    /// `nodetool import <keyspace> <table> <dir>`: it exits non-zero when a
    /// directory failed to import.
    pub async fn import(
        &self,
        keyspace: &str,
        table: &str,
        dir: &std::path::Path,
    ) -> Result<(), ControlError> {
        let args = [
            "import".to_string(),
            keyspace.to_string(),
            table.to_string(),
            dir.display().to_string(),
        ];
        let out = self.run(&args).await?;
        if out.contains("failed to import") {
            return Err(ControlError::Refused {
                operation: format!("nodetool import {keyspace} {table}"),
                message: out.trim().to_string(),
            });
        }
        Ok(())
    }

    /// `nodetool repair -full -pr <keyspace> <tables…>`, waited for (a
    /// repair may take far longer than other commands: no 10-minute limit).
    pub async fn repair(&self, keyspace: &str, tables: &[String]) -> Result<(), ControlError> {
        let mut args = vec![
            "repair".to_string(),
            "-full".to_string(),
            "-pr".to_string(),
            keyspace.to_string(),
        ];
        args.extend(tables.iter().cloned());
        let patient = Nodetool {
            timeout: Duration::from_secs(7 * 24 * 3600),
            ..self.clone()
        };
        patient.run(&args).await.map(|_| ())
    }

    /// Tags of the snapshots present on the node.
    pub async fn snapshot_tags(&self) -> Result<Vec<String>, ControlError> {
        let out = self.run(&["listsnapshots".to_string()]).await?;
        Ok(parse_snapshot_tags(&out))
    }

    async fn run(&self, args: &[String]) -> Result<String, ControlError> {
        let display = format!("{} {}", self.command.join(" "), args.join(" "));
        let (program, base) = self
            .command
            .split_first()
            .ok_or_else(|| ControlError::Spawn {
                command: display.clone(),
                source: std::io::Error::other("empty nodetool command"),
            })?;
        // Its own process group, killed whole when this future is dropped
        // (a cancelled job): `nodetool` is a script that starts a JVM, and
        // killing the script alone would leave the JVM running.
        let mut child = tokio::process::Command::new(program)
            .args(base)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| ControlError::Spawn {
                command: display.clone(),
                source,
            })?;
        let group = ProcessGroup(child.id());
        let (mut stdout, mut stderr) = (child.stdout.take(), child.stderr.take());
        let finished = async {
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let read_out = async {
                if let Some(s) = stdout.as_mut() {
                    tokio::io::AsyncReadExt::read_to_end(s, &mut out).await?;
                }
                Ok::<_, std::io::Error>(())
            };
            let read_err = async {
                if let Some(s) = stderr.as_mut() {
                    tokio::io::AsyncReadExt::read_to_end(s, &mut err).await?;
                }
                Ok::<_, std::io::Error>(())
            };
            let (status, r1, r2) = tokio::join!(child.wait(), read_out, read_err);
            r1?;
            r2?;
            Ok::<_, std::io::Error>(std::process::Output {
                status: status?,
                stdout: out,
                stderr: err,
            })
        };
        let output = tokio::time::timeout(self.timeout, finished)
            .await
            .map_err(|_| ControlError::Timeout {
                command: display.clone(),
                timeout: self.timeout,
            })?
            .map_err(|source| ControlError::Spawn {
                command: display.clone(),
                source,
            })?;
        group.disarm();
        if !output.status.success() {
            return Err(ControlError::Failed {
                command: display,
                status: output.status.to_string(),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

/// A child's process group, killed (SIGKILL) when dropped unless the
/// child finished: whatever it started dies with it.
struct ProcessGroup(Option<u32>);

impl ProcessGroup {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        let Some(pid) = self.0.and_then(|p| libc::pid_t::try_from(p).ok()) else {
            return;
        };
        // SAFETY: killpg only sends a signal. The group's leader is our
        // child, not yet reaped (its `Child` is dropped after this guard),
        // so the group id cannot have been reused by another process.
        unsafe {
            libc::killpg(pid, libc::SIGKILL);
        }
    }
}

/// The tags in `nodetool listsnapshots` output: the first column of the
/// rows after the header, deduplicated.
fn parse_snapshot_tags(output: &str) -> Vec<String> {
    let mut tags: Vec<String> = output
        .lines()
        .skip_while(|line| !line.starts_with("Snapshot name"))
        .skip(1)
        .filter_map(|line| line.split_whitespace().next())
        .filter(|word| !word.is_empty() && *word != "Total")
        .map(String::from)
        .collect();
    tags.sort();
    tags.dedup();
    tags
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_listsnapshots_output() {
        let output = "Snapshot Details: \n\
Snapshot name Keyspace name Column family name True size Size on disk Creation time            Expiration time\n\
kassette-a    shop          orders             0 bytes   5.03 KiB     2026-11-25T02:00:00.000Z\n\
kassette-a    shop          users              0 bytes   4.10 KiB     2026-11-25T02:00:00.000Z\n\
other         shop          orders             0 bytes   5.03 KiB     2026-11-24T02:00:00.000Z\n\
\n\
Total TrueDiskSpaceUsed: 0 bytes\n";
        assert_eq!(parse_snapshot_tags(output), ["kassette-a", "other"]);
        assert!(parse_snapshot_tags("There are no snapshots\n").is_empty());
    }
}
