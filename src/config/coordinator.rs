//! Coordinator settings: cluster identity, node discovery, CQL access, and the
//! backup / restore / retention choices.

use std::path::PathBuf;
use std::time::Duration;

use super::{ConfigError, StorageConfig, optional, parse, required, unused, vars};
use crate::cli::{
    BackupArgs, ClusterArgs, NodesArgs, PassArgs, PodArgs, PurgeArgs, RestoreArgs, RetentionArgs,
};

/// Agent port on discovered pods when `KASSETTE_AGENT_PORT` is unset.
pub const DEFAULT_AGENT_PORT: u16 = 7300;
/// CQL native port when `KASSETTE_CQL_PORT` is unset.
pub const DEFAULT_CQL_PORT: u16 = 9042;

/// The cluster and datacenter a catalog belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    pub cluster: String,
    pub datacenter: String,
}

impl ClusterConfig {
    pub fn from_args(args: &ClusterArgs) -> Result<Self, ConfigError> {
        Ok(Self {
            cluster: required(
                vars::CLUSTER,
                args.cluster.as_deref(),
                "the Cassandra cluster name",
                catalog_name,
            )?,
            datacenter: required(
                vars::DATACENTER,
                args.datacenter.as_deref(),
                "the Cassandra datacenter name",
                catalog_name,
            )?,
        })
    }
}

/// Cluster and datacenter names become storage key segments and label values.
pub(crate) fn catalog_name(raw: &str) -> Result<String, String> {
    let ok = !raw.is_empty()
        && raw.len() <= 63
        && raw
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && raw.starts_with(|c: char| c.is_ascii_alphanumeric());
    ok.then(|| raw.to_string())
        .ok_or_else(|| format!("{raw:?} is not a name (1-63 of letters, digits, '-', '_', '.')"))
}

/// How the coordinator finds the agents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Discovery {
    /// A fixed list of `host:port` agent addresses.
    Static(Vec<String>),
    /// Pods in Kubernetes, selected by labels.
    Kubernetes {
        /// `None`: the namespace this pod runs in.
        namespace: Option<String>,
        /// `None`: cass-operator's labels for the configured cluster and DC.
        selector: Option<String>,
        agent_port: u16,
    },
}

/// How to reach the agents and Cassandra's CQL port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodesConfig {
    pub discovery: Discovery,
    pub agent_token_file: PathBuf,
    pub agent_ca_file: Option<PathBuf>,
    /// The name agents' certificates are verified against instead of their
    /// address (only with `agent_ca_file`).
    pub agent_tls_server_name: Option<String>,
    pub cql: CqlConfig,
}

/// CQL access for schema and topology.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CqlConfig {
    pub port: u16,
    /// User and password file, when Cassandra requires authentication.
    pub credentials: Option<(String, PathBuf)>,
}

impl NodesConfig {
    pub fn from_args(args: &NodesArgs) -> Result<Self, ConfigError> {
        let discovery = match optional(vars::NODES, args.nodes.as_deref(), parse::host_ports)? {
            Some(nodes) => {
                let why = format!("when {} lists the nodes", vars::NODES);
                unused(vars::NAMESPACE, args.namespace.as_deref(), &why)?;
                unused(vars::POD_SELECTOR, args.pod_selector.as_deref(), &why)?;
                unused(vars::AGENT_PORT, args.agent_port.as_deref(), &why)?;
                Discovery::Static(nodes)
            }
            None => Discovery::Kubernetes {
                namespace: optional(vars::NAMESPACE, args.namespace.as_deref(), namespace_name)?,
                selector: optional(
                    vars::POD_SELECTOR,
                    args.pod_selector.as_deref(),
                    parse::label_selector,
                )?,
                agent_port: optional(vars::AGENT_PORT, args.agent_port.as_deref(), parse::port)?
                    .unwrap_or(DEFAULT_AGENT_PORT),
            },
        };
        let agent_token_file = required(
            vars::AGENT_TOKEN_FILE,
            args.agent_token_file.as_deref(),
            "a file holding the token shared with the agents",
            agent_token_file,
        )?;
        let agent_ca_file = optional(
            vars::AGENT_CA_FILE,
            args.agent_ca_file.as_deref(),
            parse::readable_file,
        )?;
        let agent_tls_server_name = optional(
            vars::AGENT_TLS_SERVER_NAME,
            args.agent_tls_server_name.as_deref(),
            parse::dns_name,
        )?;
        if agent_tls_server_name.is_some() && agent_ca_file.is_none() {
            // Without a CA the agents are reached over plain HTTP, where a
            // server name means nothing: refused rather than ignored.
            return Err(ConfigError::new(
                vars::AGENT_TLS_SERVER_NAME,
                format!(
                    "needs {} (it names the agents' TLS certificate)",
                    vars::AGENT_CA_FILE
                ),
            ));
        }
        Ok(Self {
            discovery,
            agent_token_file,
            agent_ca_file,
            agent_tls_server_name,
            cql: CqlConfig::from_args(args)?,
        })
    }
}

impl CqlConfig {
    fn from_args(args: &NodesArgs) -> Result<Self, ConfigError> {
        let port = optional(vars::CQL_PORT, args.cql_port.as_deref(), parse::port)?
            .unwrap_or(DEFAULT_CQL_PORT);
        let user = args
            .cql_username
            .as_deref()
            .map(str::trim)
            .map(String::from);
        let password_file = optional(
            vars::CQL_PASSWORD_FILE,
            args.cql_password_file.as_deref(),
            token_file,
        )?;
        let credentials = match (user, password_file) {
            (Some(user), Some(file)) if !user.is_empty() => Some((user, file)),
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError::new(
                    vars::CQL_PASSWORD_FILE,
                    format!("is required when {} is set", vars::CQL_USERNAME),
                ));
            }
            (_, Some(_)) => {
                return Err(ConfigError::new(
                    vars::CQL_USERNAME,
                    format!("is required when {} is set", vars::CQL_PASSWORD_FILE),
                ));
            }
        };
        Ok(Self { port, credentials })
    }
}

/// A Kubernetes namespace name (RFC 1123 label).
fn namespace_name(raw: &str) -> Result<String, String> {
    let ok = (1..=63).contains(&raw.len())
        && raw
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && raw.starts_with(|c: char| c.is_ascii_alphanumeric())
        && raw.ends_with(|c: char| c.is_ascii_alphanumeric());
    ok.then(|| raw.to_string())
        .ok_or_else(|| format!("{raw:?} is not a namespace name (a-z, 0-9, '-')"))
}

/// A file holding a secret: it must be readable and not empty. Its contents
/// are read later by whoever uses it, and never printed.
pub(crate) fn token_file(raw: &str) -> Result<PathBuf, String> {
    let path = parse::readable_file(raw)?;
    let bytes = parse::read_small_file(&path, parse::MAX_SECRET_FILE)?;
    if bytes.iter().any(|b| !b.is_ascii_whitespace()) {
        Ok(path)
    } else {
        Err(format!("{} is empty", path.display()))
    }
}

/// The agent token file: a secret file whose token the coordinator and the
/// agent read alike ([`crate::agent::auth::token_from_file`]).
pub(crate) fn agent_token_file(raw: &str) -> Result<PathBuf, String> {
    let path = token_file(raw)?;
    let bytes = parse::read_small_file(&path, parse::MAX_SECRET_FILE)?;
    crate::agent::auth::token_from_file(&bytes)
        .map(|_| path.clone())
        .map_err(|e| format!("{} {e}", path.display()))
}

/// The coordinator's own Pod (from the downward API): where its Events go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodIdentity {
    pub name: String,
    pub namespace: String,
}

impl PodIdentity {
    /// Both variables, or neither (outside Kubernetes: no Events).
    pub fn from_args(args: &PodArgs) -> Result<Option<Self>, ConfigError> {
        let name = optional(vars::POD_NAME, args.pod_name.as_deref(), pod_name)?;
        let namespace = optional(
            vars::POD_NAMESPACE,
            args.pod_namespace.as_deref(),
            namespace_name,
        )?;
        match (name, namespace) {
            (Some(name), Some(namespace)) => Ok(Some(Self { name, namespace })),
            (None, None) => Ok(None),
            (Some(_), None) => Err(ConfigError::new(
                vars::POD_NAMESPACE,
                format!("is required when {} is set", vars::POD_NAME),
            )),
            (None, Some(_)) => Err(ConfigError::new(
                vars::POD_NAME,
                format!("is required when {} is set", vars::POD_NAMESPACE),
            )),
        }
    }
}

/// A Pod name (RFC 1123 subdomain).
fn pod_name(raw: &str) -> Result<String, String> {
    let ok = (1..=253).contains(&raw.len())
        && raw
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.'))
        && raw.starts_with(|c: char| c.is_ascii_alphanumeric())
        && raw.ends_with(|c: char| c.is_ascii_alphanumeric());
    ok.then(|| raw.to_string())
        .ok_or_else(|| format!("{raw:?} is not a pod name (a-z, 0-9, '-', '.')"))
}

/// Keep-last / max-age retention; both unset means keep everything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    pub keep_last: Option<u32>,
    pub max_age: Option<Duration>,
}

impl Retention {
    pub fn from_args(args: &RetentionArgs) -> Result<Self, ConfigError> {
        Ok(Self {
            keep_last: optional(
                vars::RETENTION_KEEP_LAST,
                args.retention_keep_last.as_deref(),
                |raw| parse::positive(raw, 100_000).map(|n| n.get()),
            )?,
            max_age: optional(
                vars::RETENTION_MAX_AGE,
                args.retention_max_age.as_deref(),
                parse::duration,
            )?,
        })
    }
}

/// How a coordinator pass paces itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassConfig {
    /// Lease lifetime without renewal; renewed every third of it.
    pub lock_ttl: Duration,
    /// Interval between progress log lines.
    pub progress_interval: Duration,
}

/// Default lease lifetime: long enough to ride out a slow storage request,
/// short enough that a killed pass does not block the next night's run.
pub const DEFAULT_LOCK_TTL: Duration = Duration::from_secs(15 * 60);
/// Default interval between progress lines.
pub const DEFAULT_PROGRESS_INTERVAL: Duration = Duration::from_secs(10);
/// The longest lease: a day without renewal is already far past any pass
/// that is still alive.
pub const MAX_LOCK_TTL: Duration = Duration::from_secs(86_400);
/// The longest interval between progress lines.
pub const MAX_PROGRESS_INTERVAL: Duration = Duration::from_secs(86_400);

impl PassConfig {
    pub fn from_args(args: &PassArgs) -> Result<Self, ConfigError> {
        let lock_ttl = optional(vars::LOCK_TTL, args.lock_ttl.as_deref(), |raw| {
            let ttl = parse::duration_at_most(raw, MAX_LOCK_TTL)?;
            if ttl < Duration::from_secs(3) {
                return Err("must be at least 3s (it is renewed every third of it)".into());
            }
            Ok(ttl)
        })?;
        Ok(Self {
            lock_ttl: lock_ttl.unwrap_or(DEFAULT_LOCK_TTL),
            progress_interval: optional(
                vars::PROGRESS_INTERVAL,
                args.progress_interval.as_deref(),
                |raw| parse::duration_at_most(raw, MAX_PROGRESS_INTERVAL),
            )?
            .unwrap_or(DEFAULT_PROGRESS_INTERVAL),
        })
    }
}

/// Everything `kassette purge` needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurgeConfig {
    pub dry_run: bool,
    pub storage: StorageConfig,
    pub cluster: ClusterConfig,
    pub retention: Retention,
    pub pass: PassConfig,
}

impl PurgeConfig {
    pub fn from_args(args: &PurgeArgs) -> Result<Self, ConfigError> {
        Ok(Self {
            dry_run: args.dry_run,
            storage: StorageConfig::from_args(&args.storage)?,
            cluster: ClusterConfig::from_args(&args.cluster)?,
            retention: Retention::from_args(&args.retention)?,
            pass: PassConfig::from_args(&args.pass)?,
        })
    }
}

/// Everything `kassette backup` needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupConfig {
    /// `None`: named after the pass's UTC start time.
    pub name: Option<String>,
    /// `None`: every user keyspace.
    pub keyspaces: Option<Vec<String>>,
    pub storage: StorageConfig,
    pub cluster: ClusterConfig,
    pub nodes: NodesConfig,
    pub retention: Retention,
    pub pass: PassConfig,
    /// Where to push metrics, if anywhere.
    pub pushgateway: Option<url::Url>,
    /// This pod, when running in Kubernetes: Events go to its Job.
    pub pod: Option<PodIdentity>,
}

impl BackupConfig {
    pub fn from_args(args: &BackupArgs) -> Result<Self, ConfigError> {
        let name = optional(vars::BACKUP_NAME, args.backup_name.as_deref(), |raw| {
            if raw.trim() == "latest" {
                return Err("\"latest\" is reserved for restores; choose another name".into());
            }
            parse::backup_name(raw)
        })?;
        Ok(Self {
            name,
            keyspaces: optional(vars::KEYSPACES, args.keyspaces.as_deref(), parse::keyspaces)?,
            storage: StorageConfig::from_args(&args.storage)?,
            cluster: ClusterConfig::from_args(&args.cluster)?,
            nodes: NodesConfig::from_args(&args.nodes)?,
            retention: Retention::from_args(&args.retention)?,
            pass: PassConfig::from_args(&args.pass)?,
            pushgateway: optional(
                vars::PUSHGATEWAY_URL,
                args.pushgateway_url.as_deref(),
                parse::http_url,
            )?,
            pod: PodIdentity::from_args(&args.pod)?,
        })
    }
}

/// Replace (truncate, then import) or merge (import beside live data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreMode {
    Replace,
    Merge,
}

/// Everything `kassette restore` needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreConfig {
    /// A backup name, or `latest`.
    pub backup: String,
    pub keyspaces: Option<Vec<String>>,
    pub tables: Option<Vec<(String, String)>>,
    pub mode: RestoreMode,
    /// Remove Cassandra's truncate snapshots after a successful replace.
    pub clear_truncate_snapshots: bool,
    pub storage: StorageConfig,
    /// The target: the live cluster and datacenter restored into.
    pub cluster: ClusterConfig,
    /// Whose backups are read (by default the target's own catalog).
    pub source: ClusterConfig,
    pub nodes: NodesConfig,
    pub pass: PassConfig,
    /// This pod, when running in Kubernetes: Events go to its Job.
    pub pod: Option<PodIdentity>,
    /// Repair the restored tables before reporting success.
    pub repair_after_restore: bool,
    /// Print the plan and change nothing.
    pub dry_run: bool,
}

impl RestoreConfig {
    pub fn from_args(args: &RestoreArgs) -> Result<Self, ConfigError> {
        // A restore overwrites live tables, so the backup is never implied.
        let backup = required(
            vars::BACKUP_NAME,
            args.backup_name.as_deref(),
            "the backup to restore, or `latest`",
            parse::backup_name,
        )?;
        Ok(Self {
            backup,
            keyspaces: optional(vars::KEYSPACES, args.keyspaces.as_deref(), parse::keyspaces)?,
            tables: optional(vars::TABLES, args.tables.as_deref(), parse::tables)?,
            mode: optional(vars::RESTORE_MODE, args.restore_mode.as_deref(), |raw| {
                parse::one_of(
                    raw,
                    &[
                        ("replace", RestoreMode::Replace),
                        ("merge", RestoreMode::Merge),
                    ],
                )
            })?
            .unwrap_or(RestoreMode::Replace),
            clear_truncate_snapshots: optional(
                vars::CLEAR_TRUNCATE_SNAPSHOTS,
                args.clear_truncate_snapshots.as_deref(),
                parse::boolean,
            )?
            .unwrap_or(false),
            storage: StorageConfig::from_args(&args.storage)?,
            cluster: ClusterConfig::from_args(&args.cluster)?,
            source: super::source_cluster(&args.source, &args.cluster)?,
            nodes: NodesConfig::from_args(&args.nodes)?,
            pass: PassConfig::from_args(&args.pass)?,
            pod: PodIdentity::from_args(&args.pod)?,
            repair_after_restore: optional(
                vars::REPAIR_AFTER_RESTORE,
                args.repair_after_restore.as_deref(),
                parse::boolean,
            )?
            .unwrap_or(false),
            dry_run: optional(vars::DRY_RUN, args.dry_run.as_deref(), parse::boolean)?
                .unwrap_or(false),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(dir: &tempfile::TempDir) -> String {
        let path = dir.path().join("token");
        std::fs::write(&path, "secret-token\n").unwrap();
        path.to_string_lossy().into_owned()
    }

    #[test]
    fn static_nodes_exclude_kubernetes_settings() {
        let dir = tempfile::tempdir().unwrap();
        let mut args = NodesArgs {
            nodes: Some("127.0.0.1:7300,127.0.0.2:7300".into()),
            agent_token_file: Some(token(&dir)),
            ..Default::default()
        };
        let config = NodesConfig::from_args(&args).unwrap();
        assert!(matches!(config.discovery, Discovery::Static(ref n) if n.len() == 2));
        args.namespace = Some("cassandra".into());
        assert_eq!(
            NodesConfig::from_args(&args).unwrap_err().var,
            vars::NAMESPACE
        );
    }

    #[test]
    fn kubernetes_discovery_is_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let args = NodesArgs {
            agent_token_file: Some(token(&dir)),
            ..Default::default()
        };
        let config = NodesConfig::from_args(&args).unwrap();
        assert_eq!(
            config.discovery,
            Discovery::Kubernetes {
                namespace: None,
                selector: None,
                agent_port: DEFAULT_AGENT_PORT
            }
        );
        assert_eq!(config.cql.port, DEFAULT_CQL_PORT);
    }

    #[test]
    fn token_file_must_exist_and_not_be_empty() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, " \n").unwrap();
        let args = NodesArgs {
            agent_token_file: Some(empty.to_string_lossy().into_owned()),
            ..Default::default()
        };
        assert_eq!(
            NodesConfig::from_args(&args).unwrap_err().var,
            vars::AGENT_TOKEN_FILE
        );
        let missing = NodesArgs::default();
        let err = NodesConfig::from_args(&missing).unwrap_err();
        assert_eq!(err.var, vars::AGENT_TOKEN_FILE);
        assert!(err.problem.starts_with("is required"));
    }

    #[test]
    fn tls_server_name_needs_the_ca_and_a_dns_name() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.crt");
        std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\n").unwrap();
        let mut args = NodesArgs {
            agent_token_file: Some(token(&dir)),
            agent_tls_server_name: Some("kassette-agent".into()),
            ..Default::default()
        };
        let err = NodesConfig::from_args(&args).unwrap_err();
        assert_eq!(err.var, vars::AGENT_TLS_SERVER_NAME);
        assert!(err.problem.contains(vars::AGENT_CA_FILE), "{err}");

        args.agent_ca_file = Some(ca.to_string_lossy().into_owned());
        let config = NodesConfig::from_args(&args).unwrap();
        assert_eq!(
            config.agent_tls_server_name.as_deref(),
            Some("kassette-agent")
        );

        args.agent_tls_server_name = Some("kassette agent".into());
        assert_eq!(
            NodesConfig::from_args(&args).unwrap_err().var,
            vars::AGENT_TLS_SERVER_NAME
        );
    }

    #[test]
    fn cql_user_and_password_come_together() {
        let dir = tempfile::tempdir().unwrap();
        let args = NodesArgs {
            agent_token_file: Some(token(&dir)),
            cql_username: Some("cassandra".into()),
            ..Default::default()
        };
        assert_eq!(
            NodesConfig::from_args(&args).unwrap_err().var,
            vars::CQL_PASSWORD_FILE
        );
    }

    #[test]
    fn pod_name_and_namespace_come_together() {
        let both = PodArgs {
            pod_name: Some("nightly-29012345-x7k2p".into()),
            pod_namespace: Some("cassandra".into()),
        };
        assert_eq!(
            PodIdentity::from_args(&both).unwrap(),
            Some(PodIdentity {
                name: "nightly-29012345-x7k2p".into(),
                namespace: "cassandra".into()
            })
        );
        assert_eq!(PodIdentity::from_args(&PodArgs::default()).unwrap(), None);
        let name_only = PodArgs {
            pod_name: Some("p".into()),
            pod_namespace: None,
        };
        assert_eq!(
            PodIdentity::from_args(&name_only).unwrap_err().var,
            vars::POD_NAMESPACE
        );
        let bad = PodArgs {
            pod_name: Some("Not_A_Pod".into()),
            pod_namespace: Some("ns".into()),
        };
        assert_eq!(
            PodIdentity::from_args(&bad).unwrap_err().var,
            vars::POD_NAME
        );
    }

    #[test]
    fn retention_values() {
        let args = RetentionArgs {
            retention_keep_last: Some("7".into()),
            retention_max_age: Some("30d".into()),
        };
        let r = Retention::from_args(&args).unwrap();
        assert_eq!(r.keep_last, Some(7));
        assert_eq!(r.max_age, Some(Duration::from_secs(30 * 86_400)));
        let bad = RetentionArgs {
            retention_keep_last: Some("0".into()),
            retention_max_age: None,
        };
        assert_eq!(
            Retention::from_args(&bad).unwrap_err().var,
            vars::RETENTION_KEEP_LAST
        );
    }
}
