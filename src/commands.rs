//! The edge of each subcommand: run the pass, print its result for a
//! human (or JSON with `--json`), and turn failures into [`Error`]s whose
//! message is the whole cause chain.

use std::time::Instant;

use bytesize::ByteSize;

use crate::Error;
use crate::catalog::{BackupManifest, Catalog};
use crate::config::{
    BackupConfig, ClusterConfig, PinConfig, PurgeConfig, RestoreConfig, StorageConfig,
};
use crate::coordinator::{self, PassError, backup, inspect, lease, metrics, purge, restore};
use crate::pin::{self, PinOutcome};
use crate::storage::error_chain;

fn failed(err: PassError) -> Error {
    Error::Failed(error_chain(&err))
}

async fn open_catalog(storage: &StorageConfig, cluster: &ClusterConfig) -> Result<Catalog, Error> {
    Catalog::open(storage, cluster)
        .await
        .map_err(|e| Error::Failed(format!("storage: {}", error_chain(&e))))
}

/// `kassette backup`: the pass, its summary line, and metrics when a
/// Pushgateway is configured.
pub async fn backup(config: BackupConfig) -> Result<(), Error> {
    let start = Instant::now();
    let result = backup::run(&config).await;
    if let Some(url) = &config.pushgateway {
        let now = jiff::Timestamp::now().as_millisecond() as f64 / 1000.0;
        let text = metrics::render(result.as_ref().map_err(|_| ()), start.elapsed(), now);
        metrics::push(url, &config.cluster, text).await;
    }
    let outcome = result.map_err(failed)?;
    let m = &outcome.manifest;
    tracing::info!(
        backup = %m.name,
        nodes = m.nodes.len(),
        files = m.files,
        bytes = m.bytes,
        uploaded_files = m.uploaded_files,
        uploaded_bytes = m.uploaded_bytes,
        read_bytes = outcome.read_bytes,
        snapshot_skew_ms = m.snapshot_skew_ms,
        duration_ms = outcome.duration.as_millis() as u64,
        "backup complete"
    );
    println!("{}", outcome.summary());
    Ok(())
}

/// `kassette restore`: the pass and its summary line.
pub async fn restore(config: RestoreConfig) -> Result<(), Error> {
    let outcome = restore::run(&config).await.map_err(failed)?;
    if outcome.dry_run {
        for line in &outcome.notes {
            println!("  {line}");
        }
        return Ok(());
    }
    tracing::info!(
        backup = %outcome.backup,
        tables = outcome.tables.len(),
        files = outcome.files,
        bytes = outcome.bytes,
        downloaded_bytes = outcome.downloaded_bytes,
        created = ?outcome.created,
        duration_ms = outcome.duration.as_millis() as u64,
        "restore complete"
    );
    println!("{}", outcome.summary());
    for line in outcome
        .rewrites
        .iter()
        .chain(&outcome.replication_kept)
        .chain(&outcome.notes)
    {
        println!("  {line}");
    }
    if outcome.completed_earlier_run {
        println!(
            "this run completed an earlier restore of {} that had stopped after its point of no return",
            outcome.backup
        );
    }
    if outcome.lease_lost_after_point_of_no_return {
        println!(
            "the lease could not be renewed after the point of no return; the import of the staged files was finished anyway"
        );
    }
    Ok(())
}

/// `kassette list`: every backup with its status (complete, incomplete,
/// being written); writes nothing.
pub async fn list(storage: StorageConfig, cluster: ClusterConfig, json: bool) -> Result<(), Error> {
    let catalog = open_catalog(&storage, &cluster).await?;
    let backups = inspect::list(&catalog).await.map_err(failed)?;
    if json {
        print_json(&backups)?;
        return Ok(());
    }
    println!(
        "{:<32} {:<13} {:<25} {:<25} {:>5} {:>8} {:>10}",
        "NAME", "STATUS", "STARTED", "FINISHED", "NODES", "FILES", "SIZE"
    );
    let time = |t: Option<jiff::Timestamp>| {
        t.map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_else(|| "-".into())
    };
    let number = |n: Option<u64>| n.map(|n| n.to_string()).unwrap_or_else(|| "-".into());
    for b in &backups {
        println!(
            "{:<32} {:<13} {:<25} {:<25} {:>5} {:>8} {:>10}",
            b.name,
            b.status.label(),
            time(b.started_at),
            time(b.finished_at),
            number(b.nodes.map(u64::from)),
            number(b.files),
            b.bytes
                .map(|n| ByteSize(n).to_string())
                .unwrap_or_else(|| "-".into())
        );
    }
    for b in backups.iter().filter(|b| b.damage.is_some()) {
        println!(
            "{} is DAMAGED: {}",
            b.name,
            b.damage.as_deref().unwrap_or_default()
        );
    }
    Ok(())
}

/// `kassette status NAME`: the backup manifest of one backup; exits 1 when
/// the backup is incomplete or unknown.
pub async fn status(
    storage: StorageConfig,
    cluster: ClusterConfig,
    name: String,
    json: bool,
) -> Result<(), Error> {
    let catalog = open_catalog(&storage, &cluster).await?;
    let manifest = catalog
        .backup_manifest(&name)
        .await
        .map_err(|e| failed(PassError::from(e)))?;
    if json {
        return print_json(&manifest);
    }
    print_summary(&manifest);
    Ok(())
}

fn print_summary(m: &BackupManifest) {
    println!("backup:    {} (complete)", m.name);
    println!("cluster:   {} / {}", m.cluster, m.datacenter);
    println!("started:   {}", m.started_at);
    println!("finished:  {}", m.finished_at);
    println!("keyspaces: {}", m.keyspaces.join(", "));
    println!(
        "size:      {} in {} files ({} uploaded by this backup)",
        ByteSize(m.bytes),
        m.files,
        ByteSize(m.uploaded_bytes)
    );
    println!("skew:      {} ms", m.snapshot_skew_ms);
    for n in &m.nodes {
        println!(
            "node:      {} {} rack {} — {} files, {}",
            n.host_id,
            n.address,
            n.rack,
            n.files,
            ByteSize(n.bytes)
        );
    }
}

/// `kassette verify NAME [--deep]`: exits 1 naming every damaged object.
pub async fn verify(
    storage: StorageConfig,
    cluster: ClusterConfig,
    name: String,
    deep: bool,
    json: bool,
) -> Result<(), Error> {
    let concurrency = storage.limits.concurrency as usize;
    let catalog = open_catalog(&storage, &cluster).await?;
    let (manifest, report) = inspect::verify(&catalog, &name, deep, concurrency)
        .await
        .map_err(failed)?;
    if json {
        print_json(&serde_json::json!({
            "backup": manifest.name,
            "deep": deep,
            "files": report.files,
            "blobs": report.blobs,
            "bytes": report.bytes,
            "checked_bytes": report.checked_bytes,
            "problems": report.problems,
        }))?;
    }
    if !report.problems.is_empty() {
        return Err(failed(PassError::Damaged(format!(
            "backup {} is damaged: {} problem(s): {}",
            manifest.name,
            report.problems.len(),
            inspect::first_lines(&report.problems)
        ))));
    }
    if !json {
        println!(
            "backup {} verified{}: {} files, {} blobs, {}{}",
            manifest.name,
            if deep { " (deep)" } else { "" },
            report.files,
            report.blobs,
            ByteSize(report.bytes),
            if deep {
                format!(", {} re-read and hashed", ByteSize(report.checked_bytes))
            } else {
                String::new()
            }
        );
    }
    Ok(())
}

/// `kassette purge [--dry-run]`. A dry run prints the plan a purge would
/// carry out now; it takes no lease and writes nothing.
pub async fn purge(config: PurgeConfig) -> Result<(), Error> {
    if config.dry_run {
        let plan = purge::dry_run(&config).await.map_err(failed)?;
        println!("purge plan (dry run: nothing deleted)\n{plan}");
        print_purge_summary(&plan.report(), "would delete");
        let catalog = open_catalog(&config.storage, &config.cluster).await?;
        match lease::current_holder(catalog.store(), catalog.layout()).await {
            Ok(Some(holder)) if holder.is_live(jiff::Timestamp::now()) => println!(
                "note: {} holds the lease ({}); a purge now would be refused, and a backup being written shows as incomplete here",
                holder.owner, holder.operation
            ),
            Err(err @ lease::LeaseError::Damaged { .. }) => {
                println!("note: a purge now would be refused: {err}")
            }
            _ => {}
        }
        return Ok(());
    }
    let report = purge::run(&config).await.map_err(failed)?;
    print_purge_summary(&report, "deleted");
    Ok(())
}

fn print_purge_summary(report: &purge::PurgeReport, verb: &str) {
    println!(
        "purge {verb} {} expired backup(s) [{}], {} incomplete [{}], {} blobs ({}), {} stale upload(s); {} backup(s) kept",
        report.expired.len(),
        report.expired.join(", "),
        report.incomplete.len(),
        report.incomplete.join(", "),
        report.blobs,
        ByteSize(report.blob_bytes),
        report.stale_uploads,
        report.kept
    );
}

/// `kassette unlock`: releases the lease of a dead holder (see
/// [`lease::unlock`]); exits 1 while the holder still renews it.
pub async fn unlock(storage: StorageConfig, cluster: ClusterConfig) -> Result<(), Error> {
    let catalog = open_catalog(&storage, &cluster).await?;
    let outcome = lease::unlock(
        catalog.store().clone(),
        catalog.layout(),
        &coordinator::lease_owner(),
    )
    .await
    .map_err(|e| failed(PassError::from(e)))?;
    match outcome {
        lease::Unlocked::NotHeld { previous: None } => {
            println!("no lease was ever taken in this catalog; nothing to unlock")
        }
        lease::Unlocked::NotHeld { previous: Some(p) } => println!(
            "the lease is free already (last held by {} for {}, {}); nothing to unlock",
            p.owner,
            p.operation,
            if p.released { "released" } else { "expired" }
        ),
        lease::Unlocked::ReleasedDamaged { key, sequence } => println!(
            "released the damaged lease {key} (lease {sequence}): nobody rewrote it while unlock watched it. The next pass can start now"
        ),
        lease::Unlocked::Released { holder, sequence } => println!(
            "released the lease of {} ({} since {}; lease {sequence}): it had stopped renewing. The next pass can start now",
            holder.owner, holder.operation, holder.acquired_at
        ),
    }
    Ok(())
}

fn print_json(value: &impl serde::Serialize) -> Result<(), Error> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Error::Failed(format!("cannot print JSON: {e}")))?;
    println!("{text}");
    Ok(())
}

/// `kassette pin-tokens`: one line saying what the node now carries.
pub async fn pin_tokens(config: PinConfig) -> Result<(), Error> {
    let outcome = pin::run(&config)
        .await
        .map_err(|e| Error::Failed(error_chain(&e)))?;
    let path = config.cassandra_yaml.display();
    let line = |p: &pin::Pinned, what: &str| {
        format!(
            "{path}: node {} {what} the {} tokens of backed-up node {} ({}) of backup {}",
            p.node, p.tokens, p.source_host_id, p.source_address, p.backup
        )
    };
    match outcome {
        PinOutcome::Pinned(p) => println!("{}", line(&p, "pinned to")),
        PinOutcome::AlreadyPinned(p) => {
            println!("{} (already: file unchanged)", line(&p, "carries"))
        }
        PinOutcome::SkippedBootstrapped { system_dir } => println!(
            "{path} left as it is: the node has already bootstrapped ({} is not empty)",
            system_dir.display()
        ),
    }
    Ok(())
}
