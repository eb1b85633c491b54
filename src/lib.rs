//! kassette: backup and restore for Apache Cassandra on Kubernetes.
//!
//! One binary plays several roles (see `docs/` and `kassette --help`): the
//! `backup` and `restore` coordinators run one pass over a whole datacenter and
//! exit; the `agent` runs beside each Cassandra node and does the node-local
//! work; `list`, `status`, `verify` and `purge` read and tend the catalog.
//!
//! # Layout
//!
//! - [`cli`] — subcommands and flags, each backed by a `KASSETTE_*` variable.
//! - [`config`] — turns raw settings into typed, validated configuration;
//!   every error names its variable and maps to exit code 2.
//! - [`error`] — the crate error and its exit codes.
//! - [`telemetry`] — `tracing` setup (text or JSON).
//! - [`storage`] — the `Store` interface and its S3, GCS and local backends;
//!   checksums, retries, transfer limits.
//! - [`catalog`] — the storage format: key layout, manifests, index, lock.
//! - [`cassandra`] — node-local knowledge: snapshot inventory across data
//!   directories, nodetool control, the digest cache.
//!
//! The agent and the coordinator passes arrive with their issues, each as a
//! module of its own.

pub mod agent;
pub mod cassandra;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod coordinator;
pub mod error;
pub mod storage;
pub mod telemetry;

pub use error::Error;

use cli::Command;
use config::{AgentConfig, BackupConfig, ClusterConfig, RestoreConfig, Retention, StorageConfig};

/// Validates the configuration of `command` and runs it.
///
/// Validation is complete before anything else happens, so a bad setting
/// never leaves a side effect behind.
pub fn run(command: Command) -> Result<(), Error> {
    match command {
        Command::Backup(args) => {
            let config = BackupConfig::from_args(&args)?;
            not_built_yet("backup", &config)
        }
        Command::Restore(args) => {
            let config = RestoreConfig::from_args(&args)?;
            not_built_yet("restore", &config)
        }
        Command::Agent(args) => {
            let config = AgentConfig::from_args(&args)?;
            runtime()?.block_on(agent::run(config))
        }
        Command::List(args) => {
            let config = (
                StorageConfig::from_args(&args.storage)?,
                ClusterConfig::from_args(&args.cluster)?,
            );
            not_built_yet("list", &config)
        }
        Command::Status(args) => {
            let config = catalog_config(&args)?;
            not_built_yet("status", &config)
        }
        Command::Verify(args) => {
            let config = catalog_config(&args.backup)?;
            not_built_yet("verify", &config)
        }
        Command::Purge(args) => {
            let config = (
                StorageConfig::from_args(&args.storage)?,
                ClusterConfig::from_args(&args.cluster)?,
                Retention::from_args(&args.retention)?,
            );
            not_built_yet("purge", &config)
        }
    }
}

/// The async runtime of the roles that do I/O.
fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Failed(format!("cannot start the async runtime: {e}")))
}

/// Settings of the commands that read one backup from the catalog.
fn catalog_config(
    args: &cli::NamedBackupArgs,
) -> Result<(String, StorageConfig, ClusterConfig), Error> {
    let name = config::required(
        config::vars::BACKUP_NAME,
        args.backup_name.as_deref(),
        "a backup name or `latest`",
        config::parse::backup_name,
    )?;
    Ok((
        name,
        StorageConfig::from_args(&args.storage)?,
        ClusterConfig::from_args(&args.cluster)?,
    ))
}

/// A role whose configuration is accepted but whose work is not built yet.
fn not_built_yet(role: &'static str, config: &impl std::fmt::Debug) -> Result<(), Error> {
    tracing::debug!(?config, "configuration is valid");
    Err(Error::NotImplemented(role))
}
