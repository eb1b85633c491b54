//! Driving the local Cassandra node: flush, snapshot, clear.

use std::time::Duration;

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

    /// Flushes memtables of `keyspaces` (all when empty) to SSTables, so the
    /// snapshot holds every acknowledged write. `nodetool flush` takes one
    /// keyspace (further words are its tables), hence one call each.
    pub async fn flush(&self, keyspaces: &[String]) -> Result<(), ControlError> {
        if keyspaces.is_empty() {
            return self.run(&["flush".to_string()]).await.map(|_| ());
        }
        for keyspace in keyspaces {
            self.run(&["flush".to_string(), keyspace.clone()]).await?;
        }
        Ok(())
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
        let child = tokio::process::Command::new(program)
            .args(base)
            .args(args)
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(self.timeout, child)
            .await
            .map_err(|_| ControlError::Timeout {
                command: display.clone(),
                timeout: self.timeout,
            })?
            .map_err(|source| ControlError::Spawn {
                command: display.clone(),
                source,
            })?;
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
