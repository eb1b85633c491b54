//! The command line: subcommands, flags and the environment variable behind
//! each of them.
//!
//! Every option reads its environment variable (`KASSETTE_*`, named in
//! [`crate::config::vars`]) and a flag of the same meaning overrides it. Values
//! arrive here as raw text; [`crate::config`] turns them into typed settings
//! and reports a bad one by its variable's name. Keeping clap away from value
//! parsing is what lets every error name the variable, whether the value came
//! from the environment or from a flag.

use clap::{Args, Parser, Subcommand};

use crate::config::vars;

/// Backup and restore for Apache Cassandra on Kubernetes.
///
/// Each role runs one pass and exits: 0 when done, 1 when the operation
/// failed, 2 when the configuration or usage is wrong (named, before any side
/// effect). Every option can be given as an environment variable (shown in
/// brackets); a flag overrides its variable.
#[derive(Debug, Parser)]
#[command(name = "kassette", version, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub log: LogArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Coordinator: snapshot every node of the datacenter, upload, commit one
    /// complete backup, clear the snapshots, apply retention.
    Backup(BackupArgs),
    /// Coordinator: download a backup to every node, verify it, import it.
    Restore(RestoreArgs),
    /// Node agent (sidecar beside Cassandra): serves the coordinator's
    /// snapshot, upload, download and import requests for this node.
    Agent(AgentArgs),
    /// List the backups in storage with their status, size and times.
    List(ListArgs),
    /// Show one backup in detail.
    Status(NamedBackupArgs),
    /// Check that every object of a backup is present (and, with --deep,
    /// that its content matches the recorded checksum).
    Verify(VerifyArgs),
    /// Apply retention and delete data no remaining backup references
    /// (`--dry-run`: print the plan; takes no lease, changes nothing).
    Purge(PurgeArgs),
    /// Before a fresh node first starts: write the tokens of the backed-up
    /// node it replaces (`initial_token`, `num_tokens`, `auto_bootstrap:
    /// false`) into its cassandra.yaml, for a disaster-recovery restore.
    PinTokens(PinTokensArgs),
    /// Release the lease of a pass that died holding it, so the next pass
    /// need not wait for the lease to expire. Watches the lease for six of
    /// its holder's heartbeats (90 s by default) and refuses, exiting
    /// 1, if the holder renews it meanwhile: a live pass is never unlocked.
    Unlock(UnlockArgs),
}

/// Logging options, shared by every role.
#[derive(Debug, Args)]
pub struct LogArgs {
    /// Log filter, e.g. `info` or `kassette=debug` (falls back to RUST_LOG;
    /// default `info`).
    #[arg(long = "log", env = vars::LOG, global = true, value_name = "FILTER")]
    pub filter: Option<String>,
    /// Log format: `text` (default) or `json`.
    #[arg(long = "log-format", env = vars::LOG_FORMAT, global = true, value_name = "FORMAT")]
    pub format: Option<String>,
}

/// Where backups are stored.
#[derive(Debug, Default, Args)]
#[command(next_help_heading = "Storage")]
pub struct StorageArgs {
    /// Storage provider: `s3` (Amazon S3 and S3-compatible stores), `gcs`,
    /// `azure` (Azure Blob Storage) or `local` (a mounted directory).
    #[arg(long, env = vars::STORAGE_PROVIDER, value_name = "PROVIDER")]
    pub storage_provider: Option<String>,
    /// Bucket name (s3, gcs), or container name (azure).
    #[arg(long, env = vars::STORAGE_BUCKET, value_name = "BUCKET")]
    pub storage_bucket: Option<String>,
    /// Root directory (local).
    #[arg(long, env = vars::STORAGE_PATH, value_name = "DIR")]
    pub storage_path: Option<String>,
    /// Key prefix inside the bucket or directory, so several clusters can
    /// share one.
    #[arg(long, env = vars::STORAGE_PREFIX, value_name = "PREFIX")]
    pub storage_prefix: Option<String>,
    /// Endpoint URL of an S3-compatible store, of a GCS emulator, or of an
    /// Azure blob service (Azurite, sovereign clouds).
    #[arg(long, env = vars::STORAGE_ENDPOINT, value_name = "URL", hide_env_values = true)]
    pub storage_endpoint: Option<String>,
    /// S3 region (default: the AWS default chain, else us-east-1).
    #[arg(long, env = vars::STORAGE_REGION, value_name = "REGION")]
    pub storage_region: Option<String>,
    /// An AWS credentials INI file (s3), a service-account JSON key (gcs),
    /// for azure a `medusa_azure_credentials.json`, a connection string, a
    /// SAS token or an account key; or a directory holding one under
    /// K8ssandra's key names (`credentials`, else `medusa_s3_credentials` /
    /// `medusa_gcp_key.json` / `medusa_azure_credentials.json`: a mounted
    /// Secret); without it, the provider's default chain (IRSA, pod identity,
    /// workload identity, managed identity, environment, instance metadata).
    #[arg(long, env = vars::STORAGE_CREDENTIALS_FILE, value_name = "FILE")]
    pub storage_credentials_file: Option<String>,
    /// Allow a plain-HTTP endpoint (`true`/`false`; default false).
    #[arg(long, env = vars::STORAGE_ALLOW_HTTP, value_name = "BOOL")]
    pub storage_allow_http: Option<String>,
    /// PEM bundle of extra CA certificates trusted for the endpoint.
    #[arg(long, env = vars::STORAGE_CA_BUNDLE, value_name = "FILE")]
    pub storage_ca_bundle: Option<String>,
    /// S3 storage class of uploaded objects, e.g. `STANDARD_IA` (default:
    /// the bucket's).
    #[arg(long, env = vars::STORAGE_CLASS, value_name = "CLASS")]
    pub storage_class: Option<String>,
    /// Encrypt objects with SSE-KMS under this KMS key id or ARN (s3).
    #[arg(long, env = vars::STORAGE_SSE_KMS_KEY_ID, value_name = "KEY_ID")]
    pub storage_sse_kms_key_id: Option<String>,
    /// File holding a 256-bit SSE-C key, raw or base64 (s3; needs https).
    #[arg(long, env = vars::STORAGE_SSE_C_KEY_FILE, value_name = "FILE")]
    pub storage_sse_c_key_file: Option<String>,
    /// Azure storage account name (azure; default: the one the credentials
    /// file names).
    #[arg(long, env = vars::STORAGE_ACCOUNT, value_name = "ACCOUNT")]
    pub storage_account: Option<String>,
    /// Bandwidth limit shared by all transfers of this process, e.g.
    /// `200MiB/s` (default: unlimited).
    #[arg(long, env = vars::MAX_BANDWIDTH, value_name = "RATE")]
    pub max_bandwidth: Option<String>,
    /// Number of transfers in flight at once in this process (default 8).
    #[arg(long, env = vars::CONCURRENCY, value_name = "N")]
    pub concurrency: Option<String>,
}

/// Which Cassandra cluster and datacenter the catalog entries belong to.
#[derive(Debug, Default, Args)]
#[command(next_help_heading = "Cluster")]
pub struct ClusterArgs {
    /// Cassandra cluster name (recorded in the catalog; used for discovery).
    #[arg(long, env = vars::CLUSTER, value_name = "NAME")]
    pub cluster: Option<String>,
    /// Cassandra datacenter name (recorded in the catalog; used for discovery).
    #[arg(long, env = vars::DATACENTER, value_name = "NAME")]
    pub datacenter: Option<String>,
}

/// Whose backups are read, when they are another cluster's or datacenter's.
#[derive(Debug, Default, Args)]
#[command(next_help_heading = "Source")]
pub struct SourceArgs {
    /// Cluster whose backups are read (default: KASSETTE_CLUSTER, this
    /// cluster's own).
    #[arg(long, env = vars::SOURCE_CLUSTER, value_name = "NAME")]
    pub source_cluster: Option<String>,
    /// Datacenter whose backups are read (default: KASSETTE_DATACENTER). When
    /// it differs, the restored keyspaces' replication names this datacenter
    /// instead (see docs/restore.md).
    #[arg(long, env = vars::SOURCE_DATACENTER, value_name = "NAME")]
    pub source_datacenter: Option<String>,
}

/// How the coordinator finds and reaches the node agents and Cassandra.
#[derive(Debug, Default, Args)]
#[command(next_help_heading = "Nodes")]
pub struct NodesArgs {
    /// Static comma-separated agent addresses `host:port`; when set, no
    /// Kubernetes discovery.
    #[arg(long, env = vars::NODES, value_name = "HOST:PORT,...")]
    pub nodes: Option<String>,
    /// Kubernetes namespace of the Cassandra pods (default: this pod's own).
    #[arg(long, env = vars::NAMESPACE, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    /// Label selector of the Cassandra pods (default: cass-operator's cluster
    /// and datacenter labels).
    #[arg(long, env = vars::POD_SELECTOR, value_name = "SELECTOR")]
    pub pod_selector: Option<String>,
    /// Port of the agent on discovered pods (default 7300).
    #[arg(long, env = vars::AGENT_PORT, value_name = "PORT")]
    pub agent_port: Option<String>,
    /// File holding the bearer token shared with the agents (required).
    #[arg(long, env = vars::AGENT_TOKEN_FILE, value_name = "FILE")]
    pub agent_token_file: Option<String>,
    /// PEM CA bundle to verify agents served over TLS.
    #[arg(long, env = vars::AGENT_CA_FILE, value_name = "FILE")]
    pub agent_ca_file: Option<String>,
    /// DNS name the agents' certificate is verified against, instead of
    /// their address (needs the CA file). The coordinator still connects
    /// to each agent's IP; one certificate then serves every pod, whose IPs
    /// are unknown when it is issued (the kassette-agent chart's
    /// `kassette-agent`).
    #[arg(long, env = vars::AGENT_TLS_SERVER_NAME, value_name = "NAME")]
    pub agent_tls_server_name: Option<String>,
    /// CQL native port of the Cassandra nodes (default 9042).
    #[arg(long, env = vars::CQL_PORT, value_name = "PORT")]
    pub cql_port: Option<String>,
    /// CQL user, when Cassandra requires authentication.
    #[arg(long, env = vars::CQL_USERNAME, value_name = "USER")]
    pub cql_username: Option<String>,
    /// File holding the CQL password.
    #[arg(long, env = vars::CQL_PASSWORD_FILE, value_name = "FILE")]
    pub cql_password_file: Option<String>,
}

/// Keep-last / max-age retention.
#[derive(Debug, Default, Args)]
#[command(next_help_heading = "Retention")]
pub struct RetentionArgs {
    /// Keep at least this many newest complete backups.
    #[arg(long, env = vars::RETENTION_KEEP_LAST, value_name = "N")]
    pub retention_keep_last: Option<String>,
    /// Delete complete backups older than this, e.g. `30d` (the newest one is
    /// always kept).
    #[arg(long, env = vars::RETENTION_MAX_AGE, value_name = "DURATION")]
    pub retention_max_age: Option<String>,
}

/// The coordinator's own Pod, for Events on its Job.
#[derive(Debug, Default, Args)]
#[command(next_help_heading = "Kubernetes Events")]
pub struct PodArgs {
    /// This pod's name (the charts set it from `metadata.name`); with
    /// --pod-namespace, the pass posts Events on the Job that owns the pod.
    #[arg(long, env = vars::POD_NAME, value_name = "NAME")]
    pub pod_name: Option<String>,
    /// This pod's namespace (from `metadata.namespace`).
    #[arg(long, env = vars::POD_NAMESPACE, value_name = "NAMESPACE")]
    pub pod_namespace: Option<String>,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Name of the backup to create (default: the UTC start time,
    /// e.g. 2026-11-25T02-00-00Z). Re-running with the name of an unfinished
    /// backup resumes it.
    #[arg(long = "name", env = vars::BACKUP_NAME, value_name = "NAME")]
    pub backup_name: Option<String>,
    /// Only these keyspaces (comma-separated; default: all user keyspaces).
    #[arg(long, env = vars::KEYSPACES, value_name = "KS,...")]
    pub keyspaces: Option<String>,
    #[command(flatten)]
    pub storage: StorageArgs,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[command(flatten)]
    pub nodes: NodesArgs,
    #[command(flatten)]
    pub retention: RetentionArgs,
    #[command(flatten)]
    pub pass: PassArgs,
    /// Prometheus Pushgateway base URL; when set, the pass pushes its
    /// metrics (success, last success time, duration, bytes, files).
    #[arg(long, env = vars::PUSHGATEWAY_URL, value_name = "URL")]
    pub pushgateway_url: Option<String>,
    #[command(flatten)]
    pub pod: PodArgs,
}

/// How a coordinator pass behaves while it runs.
#[derive(Debug, Default, Args)]
#[command(next_help_heading = "Pass")]
pub struct PassArgs {
    /// How long the datacenter lease lasts without renewal (default 15m;
    /// renewed every third of it). A killed pass's lease can be taken over
    /// after this long.
    #[arg(long, env = vars::LOCK_TTL, value_name = "DURATION")]
    pub lock_ttl: Option<String>,
    /// How often progress is logged during long transfers (default 10s).
    #[arg(long, env = vars::PROGRESS_INTERVAL, value_name = "DURATION")]
    pub progress_interval: Option<String>,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Backup to restore: its name or `latest` (the newest complete one).
    #[arg(long = "name", env = vars::BACKUP_NAME, value_name = "NAME")]
    pub backup_name: Option<String>,
    /// Only these keyspaces (comma-separated).
    #[arg(long, env = vars::KEYSPACES, value_name = "KS,...")]
    pub keyspaces: Option<String>,
    /// Only these tables (comma-separated `keyspace.table`).
    #[arg(long, env = vars::TABLES, value_name = "KS.TABLE,...")]
    pub tables: Option<String>,
    /// `replace` (default: truncate the selected tables, then import) or
    /// `merge` (import beside the live data).
    #[arg(long, env = vars::RESTORE_MODE, value_name = "MODE")]
    pub restore_mode: Option<String>,
    /// In replace mode, also remove the snapshots Cassandra takes when a
    /// table is truncated (`auto_snapshot`), once the restore succeeded
    /// (`true`/`false`, default false: they are the pre-restore data).
    #[arg(long, env = vars::CLEAR_TRUNCATE_SNAPSHOTS, value_name = "BOOL")]
    pub clear_truncate_snapshots: Option<String>,
    /// After the import, repair the restored tables (primary ranges, node by
    /// node) so every replica has every row, before reporting success
    /// (`true`/`false`, default false).
    #[arg(long, env = vars::REPAIR_AFTER_RESTORE, value_name = "BOOL")]
    pub repair_after_restore: Option<String>,
    /// Print the plan (backup, node mapping, tables, schema to create,
    /// replication rewrites, bytes per node) and change nothing
    /// (`true`/`false`, default false).
    #[arg(long, env = vars::DRY_RUN, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub dry_run: Option<String>,
    #[command(flatten)]
    pub storage: StorageArgs,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub nodes: NodesArgs,
    #[command(flatten)]
    pub pass: PassArgs,
    #[command(flatten)]
    pub pod: PodArgs,
}

#[derive(Debug, Args)]
pub struct PinTokensArgs {
    /// Backup whose tokens are pinned: its name or `latest` (use a name: a
    /// later backup would pin other tokens on a node that restarts).
    #[arg(long = "name", env = vars::BACKUP_NAME, value_name = "NAME")]
    pub backup_name: Option<String>,
    /// The cassandra.yaml to edit (required; on cass-operator pods
    /// /config/cassandra.yaml in the server-config volume).
    #[arg(long, env = vars::CASSANDRA_YAML, value_name = "FILE")]
    pub cassandra_yaml: Option<String>,
    /// This pod's name, `<cluster>-<dc>-<rack>-sts-<n>` (cass-operator):
    /// gives the node's rack and ordinal. Or set KASSETTE_RACK and
    /// KASSETTE_NODE_ORDINAL.
    #[arg(long, env = vars::POD_NAME, value_name = "NAME")]
    pub pod_name: Option<String>,
    /// This node's rack in the target datacenter (with KASSETTE_NODE_ORDINAL).
    #[arg(long, env = vars::RACK, value_name = "RACK")]
    pub rack: Option<String>,
    /// This node's position in its rack, from 0 (with KASSETTE_RACK).
    #[arg(long, env = vars::NODE_ORDINAL, value_name = "N")]
    pub node_ordinal: Option<String>,
    /// Every rack of the target datacenter, comma-separated (default: the
    /// backup's rack names). Racks pair with the backup's in name order.
    #[arg(long, env = vars::RACKS, value_name = "RACK,...")]
    pub racks: Option<String>,
    /// Cassandra data directories, comma-separated (default
    /// /var/lib/cassandra/data): a `system` keyspace there means the node
    /// has bootstrapped.
    #[arg(long, env = vars::DATA_DIRS, value_name = "DIR,...")]
    pub data_dirs: Option<String>,
    /// What to do with a node that has bootstrapped: `refuse` (default,
    /// exit 1), `skip` (exit 0, file unchanged: for a pod restarting after
    /// the restore) or `force` (write anyway).
    #[arg(long, env = vars::PIN_IF_BOOTSTRAPPED, value_name = "POLICY")]
    pub pin_if_bootstrapped: Option<String>,
    #[command(flatten)]
    pub storage: StorageArgs,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[command(flatten)]
    pub source: SourceArgs,
}

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// Address the agent's HTTP API listens on (default 0.0.0.0:7300).
    #[arg(long = "listen", env = vars::AGENT_LISTEN, value_name = "ADDR")]
    pub listen: Option<String>,
    /// File holding the bearer token every request must carry (required).
    #[arg(long, env = vars::AGENT_TOKEN_FILE, value_name = "FILE")]
    pub agent_token_file: Option<String>,
    /// PEM certificate chain to serve the API over TLS (with the key).
    #[arg(long, env = vars::AGENT_TLS_CERT, value_name = "FILE")]
    pub tls_cert: Option<String>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = vars::AGENT_TLS_KEY, value_name = "FILE")]
    pub tls_key: Option<String>,
    /// Cassandra data directories, comma-separated (default
    /// /var/lib/cassandra/data).
    #[arg(long, env = vars::DATA_DIRS, value_name = "DIR,...")]
    pub data_dirs: Option<String>,
    /// Where the agent keeps its digest cache (default: `.kassette` beside
    /// the first data directory, on the same volume).
    #[arg(long, env = vars::AGENT_STATE_DIR, value_name = "DIR")]
    pub state_dir: Option<String>,
    /// How to control Cassandra: `nodetool` (default), `jolokia` or
    /// `management-api`.
    #[arg(long, env = vars::CASSANDRA_CONTROL, value_name = "METHOD")]
    pub cassandra_control: Option<String>,
    /// The nodetool command (default `nodetool` on PATH).
    #[arg(long, env = vars::NODETOOL, value_name = "COMMAND")]
    pub nodetool: Option<String>,
    /// Jolokia endpoint, e.g. http://127.0.0.1:8778/jolokia.
    #[arg(long, env = vars::JOLOKIA_URL, value_name = "URL")]
    pub jolokia_url: Option<String>,
    /// Management API for Apache Cassandra, e.g. http://127.0.0.1:8080.
    #[arg(long, env = vars::MANAGEMENT_API_URL, value_name = "URL")]
    pub management_api_url: Option<String>,
    #[command(flatten)]
    pub storage: StorageArgs,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub storage: StorageArgs,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

#[derive(Debug, Args)]
pub struct NamedBackupArgs {
    /// Backup name, or `latest`.
    #[arg(env = vars::BACKUP_NAME, value_name = "NAME")]
    pub backup_name: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub storage: StorageArgs,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Also re-read every object and check its checksum.
    #[arg(long)]
    pub deep: bool,
    #[command(flatten)]
    pub backup: NamedBackupArgs,
}

#[derive(Debug, Args)]
pub struct UnlockArgs {
    #[command(flatten)]
    pub storage: StorageArgs,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

#[derive(Debug, Args)]
pub struct PurgeArgs {
    /// Print what would be deleted; delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub storage: StorageArgs,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[command(flatten)]
    pub retention: RetentionArgs,
    #[command(flatten)]
    pub pass: PassArgs,
}

/// The first setting whose value is not UTF-8, as a message naming its
/// variable (or the flag's variable, or its position on the command line).
/// Clap would only say that *some* argument is not UTF-8; this runs before
/// it, so the operator learns which.
pub fn non_utf8_setting(
    env: impl IntoIterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
    args: &[std::ffi::OsString],
) -> Option<String> {
    use std::os::unix::ffi::OsStrExt;
    for (name, value) in env {
        if let Some(var) = vars::ALL.iter().find(|v| name.as_bytes() == v.as_bytes())
            && value.to_str().is_none()
        {
            return Some(format!("{var}: is not valid UTF-8 text"));
        }
    }
    let command = <Cli as clap::CommandFactory>::command();
    for (position, arg) in args.iter().enumerate() {
        if arg.to_str().is_some() {
            continue;
        }
        let bytes = arg.as_bytes();
        let flag = match bytes.iter().position(|b| *b == b'=') {
            Some(eq) if bytes.starts_with(b"--") => Some(&bytes[2..eq]),
            _ => position
                .checked_sub(1)
                .and_then(|p| args.get(p))
                .and_then(|prev| prev.as_bytes().strip_prefix(b"--")),
        };
        let var = flag.and_then(|flag| variable_of_flag(&command, flag));
        return Some(match (flag, var) {
            (_, Some(var)) => format!("{var}: is not valid UTF-8 text"),
            (Some(flag), None) => format!(
                "--{}: is not valid UTF-8 text",
                String::from_utf8_lossy(flag)
            ),
            (None, None) => format!("argument {position}: is not valid UTF-8 text"),
        });
    }
    None
}

/// The environment variable behind long flag `--<flag>` in any subcommand.
fn variable_of_flag(command: &clap::Command, flag: &[u8]) -> Option<&'static str> {
    let mut commands = vec![command];
    while let Some(command) = commands.pop() {
        for arg in command.get_arguments() {
            if arg.get_long().is_some_and(|long| long.as_bytes() == flag)
                && let Some(env) = arg.get_env()
            {
                return vars::ALL
                    .iter()
                    .copied()
                    .find(|v| env == std::ffi::OsStr::new(v));
            }
        }
        commands.extend(command.get_subcommands());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStringExt;

    fn bad() -> OsString {
        OsString::from_vec(b"caf\xe9".to_vec())
    }

    #[test]
    fn non_utf8_values_are_named_by_their_variable() {
        let env = [
            (OsString::from("HOME"), bad()),
            (OsString::from(vars::PROGRESS_INTERVAL), bad()),
        ];
        assert_eq!(
            non_utf8_setting(env, &[]).unwrap(),
            "KASSETTE_PROGRESS_INTERVAL: is not valid UTF-8 text"
        );
        let args = |v: Vec<OsString>| non_utf8_setting([], &v);
        assert_eq!(
            args(vec![
                "kassette".into(),
                "backup".into(),
                "--lock-ttl".into(),
                bad()
            ])
            .unwrap(),
            "KASSETTE_LOCK_TTL: is not valid UTF-8 text"
        );
        let mut joined = b"--storage-prefix=".to_vec();
        joined.extend_from_slice(b"\xff");
        assert_eq!(
            args(vec![
                "kassette".into(),
                "list".into(),
                OsString::from_vec(joined)
            ])
            .unwrap(),
            "KASSETTE_STORAGE_PREFIX: is not valid UTF-8 text"
        );
        assert_eq!(
            args(vec!["kassette".into(), "status".into(), bad()]).unwrap(),
            "argument 2: is not valid UTF-8 text"
        );
        assert!(args(vec!["kassette".into(), "list".into()]).is_none());
    }

    #[test]
    fn command_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
