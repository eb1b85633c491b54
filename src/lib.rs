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
//! - [`http`] — building HTTP clients (an unbuildable one is an error).
//! - [`telemetry`] — `tracing` setup (text or JSON).
//! - [`storage`] — the `Store` interface and its S3, GCS and local backends;
//!   checksums, retries, transfer limits.
//! - [`catalog`] — the storage format: key layout, manifests, index, lock.
//! - [`cassandra`] — node-local knowledge: snapshot inventory across data
//!   directories, nodetool control, the digest cache.
//!
//! - [`agent`] — the node agent's HTTP API (one per Cassandra node).
//! - [`coordinator`] — the datacenter-wide passes: backup, purge,
//!   list/status/verify; discovery, lease, agent client.
//! - [`k8s`] — Events on the coordinator's Job.
//! - [`pin`] — `pin-tokens`: a fresh node takes a backed-up node's tokens
//!   before it first starts (disaster recovery).
//! - `commands` — what each subcommand prints and how it exits.

pub mod agent;
pub mod cassandra;
pub mod catalog;
pub mod cli;
mod commands;
pub mod config;
pub mod coordinator;
pub mod error;
pub mod http;
pub mod k8s;
pub mod pin;
pub mod storage;
pub mod telemetry;

pub use error::Error;

use cli::Command;
use config::{
    AgentConfig, BackupConfig, ClusterConfig, PinConfig, PurgeConfig, RestoreConfig, StorageConfig,
};

/// A subcommand with its validated configuration, ready to run.
#[derive(Debug)]
pub enum Configured {
    Backup(BackupConfig),
    Restore(RestoreConfig),
    Agent(AgentConfig),
    List {
        storage: StorageConfig,
        cluster: ClusterConfig,
        json: bool,
    },
    Status {
        name: String,
        storage: StorageConfig,
        cluster: ClusterConfig,
        json: bool,
    },
    Verify {
        name: String,
        storage: StorageConfig,
        cluster: ClusterConfig,
        deep: bool,
        json: bool,
    },
    Purge(PurgeConfig),
    Unlock {
        storage: StorageConfig,
        cluster: ClusterConfig,
    },
    PinTokens(PinConfig),
}

/// Validates every setting of `command`, touching nothing but the files
/// the settings name (read, never written): the whole of what happens
/// before a bad setting exits 2.
pub fn configure(command: Command) -> Result<Configured, Error> {
    Ok(match command {
        Command::Backup(args) => Configured::Backup(BackupConfig::from_args(&args)?),
        Command::Restore(args) => Configured::Restore(RestoreConfig::from_args(&args)?),
        Command::Agent(args) => Configured::Agent(AgentConfig::from_args(&args)?),
        Command::List(args) => Configured::List {
            storage: StorageConfig::from_args(&args.storage)?,
            cluster: ClusterConfig::from_args(&args.cluster)?,
            json: args.json,
        },
        Command::Status(args) => {
            let (name, storage, cluster) = catalog_config(&args)?;
            Configured::Status {
                name,
                storage,
                cluster,
                json: args.json,
            }
        }
        Command::Verify(args) => {
            let (name, storage, cluster) = catalog_config(&args.backup)?;
            Configured::Verify {
                name,
                storage,
                cluster,
                deep: args.deep,
                json: args.backup.json,
            }
        }
        Command::Purge(args) => Configured::Purge(PurgeConfig::from_args(&args)?),
        Command::Unlock(args) => Configured::Unlock {
            storage: StorageConfig::from_args(&args.storage)?,
            cluster: ClusterConfig::from_args(&args.cluster)?,
        },
        Command::PinTokens(args) => Configured::PinTokens(PinConfig::from_args(&args)?),
    })
}

/// Keeps the process's heap small: call first thing in `main`.
///
/// glibc's malloc gives each thread that allocates its own arena (up to 8
/// per core), and memory freed into one arena is not reused by another nor
/// returned to the system while anything above it is live. With transfer
/// chunks allocated on the blocking pool's threads and freed on the
/// workers', an uploading agent held ~31 MiB of heap; two arenas held ~14
/// MiB for the same work at the same speed (docs/benchmarks.md, "memory").
/// An explicit `MALLOC_ARENA_MAX` in the environment still wins.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets a malloc parameter; it is called before
        // any thread is started.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

/// Validates the configuration of `command` and runs it.
///
/// Validation is complete before anything else happens, so a bad setting
/// never leaves a side effect behind.
pub fn run(command: Command) -> Result<(), Error> {
    match configure(command)? {
        Configured::Backup(config) => runtime()?.block_on(commands::backup(config)),
        Configured::Restore(config) => runtime()?.block_on(commands::restore(config)),
        Configured::Agent(config) => runtime()?.block_on(agent::run(config)),
        Configured::List {
            storage,
            cluster,
            json,
        } => runtime()?.block_on(commands::list(storage, cluster, json)),
        Configured::Status {
            name,
            storage,
            cluster,
            json,
        } => runtime()?.block_on(commands::status(storage, cluster, name, json)),
        Configured::Verify {
            name,
            storage,
            cluster,
            deep,
            json,
        } => runtime()?.block_on(commands::verify(storage, cluster, name, deep, json)),
        Configured::Purge(config) => runtime()?.block_on(commands::purge(config)),
        Configured::Unlock { storage, cluster } => {
            runtime()?.block_on(commands::unlock(storage, cluster))
        }
        Configured::PinTokens(config) => runtime()?.block_on(commands::pin_tokens(config)),
    }
}

/// Threads the runtime may start for blocking work (file reads, hashing,
/// file writes of downloads). Tokio's default, 512, lets a busy transfer
/// start a thread per queued read; each thread costs its stack and, under
/// glibc, a share of a malloc arena. 16 is twice the default transfer
/// concurrency: every part in flight can read while another hashes.
pub const MAX_BLOCKING_THREADS: usize = 16;

/// The async runtime of the roles that do I/O: one worker per core (the
/// pod's CPU limit, as the kernel reports it), at most
/// [`MAX_BLOCKING_THREADS`] blocking threads.
fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(MAX_BLOCKING_THREADS)
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
