//! What a restore into another cluster or datacenter, or into a rebuilt
//! one, adds to the restore pass: the backed-up schema made for the target
//! datacenter, what the pass leaves alone and reports (a keyspace that
//! exists with another replication, materialized views, roles), and the
//! consistency note about the backup's snapshot skew.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use super::PassError;
use crate::cassandra::cql::Cql;
use crate::cassandra::schema::{self, Object, ReplicationRewrite, Statement};
use crate::catalog::BackupManifest;

/// The backed-up schema as the target needs it: when the backup's
/// datacenter has another name than the target's, every keyspace
/// replicated by it is replicated by the target instead (see
/// [`schema::rename_datacenter`]).
pub async fn adapt_schema(
    statements: Vec<Statement>,
    backup: &BackupManifest,
    target_dc: &str,
    cql: &Cql,
    first: SocketAddr,
) -> Result<(Vec<Statement>, Vec<ReplicationRewrite>), PassError> {
    if backup.datacenter == target_dc {
        return Ok((statements, Vec::new()));
    }
    let target_dcs = cql.datacenters(first).await?;
    let (statements, rewrites) =
        schema::rename_datacenter(&statements, &backup.datacenter, target_dc, &target_dcs);
    for rewrite in &rewrites {
        tracing::info!(
            "datacenter {} restored as {target_dc}: {rewrite}",
            backup.datacenter
        );
    }
    Ok((statements, rewrites))
}

/// Restored keyspaces that exist already with another replication than the
/// (adapted) backup's: they are left as they are (a restore never alters
/// schema) and reported, one line each.
pub async fn replication_kept(
    statements: &[Statement],
    keyspaces: &BTreeSet<&String>,
    cql: &Cql,
    first: SocketAddr,
) -> Result<Vec<String>, PassError> {
    let mut kept = Vec::new();
    for statement in statements {
        if statement.object != Object::Keyspace || !keyspaces.contains(&statement.keyspace) {
            continue;
        }
        let Some((_, wanted)) = schema::replication(&statement.cql) else {
            continue;
        };
        let Some(live) = cql.replication(first, &statement.keyspace).await? else {
            continue;
        };
        if !schema::same_replication(&live, &wanted) {
            let line = format!(
                "keyspace {} exists with replication {:?}, not the backup's {:?}: left as it is",
                statement.keyspace, live, wanted
            );
            tracing::warn!("{line}");
            kept.push(line);
        }
    }
    Ok(kept)
}

/// Materialized views of the restored keyspaces: not recreated (see
/// docs/restore.md), named so the operator can recreate them.
pub fn skipped_views(statements: &[Statement], keyspaces: &BTreeSet<&String>) -> Vec<String> {
    statements
        .iter()
        .filter(|s| matches!(s.object, Object::View { .. }) && keyspaces.contains(&s.keyspace))
        .map(|s| format!("{}.{}", s.keyspace, s.name))
        .collect()
}

/// What the restore's report says about what it does not restore and
/// about consistency, one line each.
pub fn notes(backup: &BackupManifest, views: &[String], repaired: bool) -> Vec<String> {
    let mut notes = Vec::new();
    match &backup.roles {
        Some(roles) => notes.push(format!(
            "roles and permissions (system_auth) are not restored; the backup had these roles: {}",
            if roles.is_empty() {
                "none".to_string()
            } else {
                roles.join(", ")
            }
        )),
        None => notes.push(
            "roles and permissions (system_auth) are not restored; this backup did not record its role names".into(),
        ),
    }
    if !views.is_empty() {
        notes.push(format!(
            "materialized views skipped (recreate them with their CREATE MATERIALIZED VIEW from the backed-up schema; Cassandra then builds them from the restored base table): {}",
            views.join(", ")
        ));
    }
    if !repaired {
        notes.push(format!(
            "each node's snapshot is its own cut (skew {} ms in this backup): a write acknowledged inside that window may be back on fewer replicas than its replication factor; run with KASSETTE_REPAIR_AFTER_RESTORE=true, or repair the restored tables, if that matters",
            backup.snapshot_skew_ms
        ));
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_of_restored_keyspaces_are_named() {
        let statements = schema::parse(
            "CREATE TABLE shop.t (id int PRIMARY KEY, n int);\n\n\
CREATE MATERIALIZED VIEW shop.by_n AS\n    SELECT * FROM shop.t\n    WHERE n IS NOT NULL AND id IS NOT NULL\n    PRIMARY KEY (n, id);\n\n\
CREATE MATERIALIZED VIEW other.v AS\n    SELECT * FROM other.t\n    WHERE n IS NOT NULL AND id IS NOT NULL\n    PRIMARY KEY (n, id);\n\n",
        );
        let shop = "shop".to_string();
        let keyspaces: BTreeSet<&String> = [&shop].into();
        assert_eq!(skipped_views(&statements, &keyspaces), ["shop.by_n"]);
    }
}
