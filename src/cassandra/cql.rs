//! What the coordinator reads over CQL: each node's identity and tokens
//! (`system.local`, asked of that very node), the datacenter's members as
//! the ring sees them, and the schema (`DESCRIBE`, run by the server, so
//! the text is exactly what Cassandra itself would recreate).

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::policies::load_balancing::{NodeIdentifier, SingleTargetLoadBalancingPolicy};
use scylla::statement::unprepared::Statement;
use uuid::Uuid;

use crate::config::CqlConfig;

/// Keyspaces Cassandra manages itself; never restored by the online pass
/// and not listed as the backup's keyspaces.
pub const SYSTEM_KEYSPACES: &[&str] = &[
    "system",
    "system_auth",
    "system_distributed",
    "system_schema",
    "system_traces",
    "system_views",
    "system_virtual_schema",
];

#[derive(Debug, thiserror::Error)]
pub enum CqlError {
    #[error("CQL: cannot connect to {contact}: {message}")]
    Connect { contact: String, message: String },
    #[error("CQL on {node}: {message}")]
    Query { node: String, message: String },
    #[error("CQL: cannot read the password file {path}: {source}")]
    Password {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// One node as it describes itself in `system.local`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeTopology {
    pub host_id: Uuid,
    pub datacenter: String,
    pub rack: String,
    pub tokens: Vec<String>,
    pub release_version: String,
}

/// A datacenter member as the ring lists it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Member {
    pub host_id: Uuid,
    pub address: IpAddr,
}

/// A CQL session to the cluster.
pub struct Cql {
    session: Session,
}

impl Cql {
    /// Connects through `contacts` (the nodes' CQL addresses).
    pub async fn connect(contacts: &[SocketAddr], config: &CqlConfig) -> Result<Self, CqlError> {
        let mut builder = SessionBuilder::new()
            .known_nodes_addr(contacts.iter().copied())
            .connection_timeout(Duration::from_secs(10));
        if let Some((user, password_file)) = &config.credentials {
            let bytes = crate::config::parse::read_small_file(
                password_file,
                crate::config::parse::MAX_SECRET_FILE,
            )
            .map_err(|message| CqlError::Password {
                path: password_file.display().to_string(),
                source: std::io::Error::other(message),
            })?;
            let password = String::from_utf8_lossy(&bytes);
            builder = builder.user(user, password.trim_end_matches(['\r', '\n']));
        }
        let session = builder.build().await.map_err(|e| CqlError::Connect {
            contact: contacts
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
            message: crate::storage::error_chain(&e),
        })?;
        Ok(Self { session })
    }

    /// `node`'s own view of itself; fails when that node does not answer.
    pub async fn node(&self, node: SocketAddr) -> Result<NodeTopology, CqlError> {
        let query = "SELECT host_id, data_center, rack, tokens, release_version FROM system.local";
        type Row = (
            Option<Uuid>,
            Option<String>,
            Option<String>,
            Option<Vec<String>>,
            Option<String>,
        );
        let rows: Vec<Row> = self.rows_on(node, query).await?;
        let Some((Some(host_id), dc, rack, tokens, version)) = rows.into_iter().next() else {
            return Err(query_error(node, "system.local has no host id"));
        };
        Ok(NodeTopology {
            host_id,
            datacenter: dc.unwrap_or_default(),
            rack: rack.unwrap_or_default(),
            tokens: tokens.unwrap_or_default(),
            release_version: version.unwrap_or_default(),
        })
    }

    /// Every member of `datacenter` as `node` sees the ring (itself from
    /// `system.local`, the others from `system.peers_v2`), so a backup can
    /// refuse when a member has no agent.
    pub async fn datacenter_members(
        &self,
        node: SocketAddr,
        datacenter: &str,
    ) -> Result<BTreeSet<Member>, CqlError> {
        let mut members = BTreeSet::new();
        let local: Vec<(Option<Uuid>, Option<IpAddr>, Option<String>)> = self
            .rows_on(
                node,
                "SELECT host_id, rpc_address, data_center FROM system.local",
            )
            .await?;
        let peers: Vec<(Option<Uuid>, Option<IpAddr>, Option<String>)> = self
            .rows_on(
                node,
                "SELECT host_id, native_address, data_center FROM system.peers_v2",
            )
            .await?;
        for (host_id, address, dc) in local.into_iter().chain(peers) {
            if let (Some(host_id), Some(address), Some(dc)) = (host_id, address, dc)
                && dc == datacenter
            {
                members.insert(Member { host_id, address });
            }
        }
        Ok(members)
    }

    /// Every datacenter of the ring as `node` sees it.
    pub async fn datacenters(&self, node: SocketAddr) -> Result<BTreeSet<String>, CqlError> {
        let local: Vec<(Option<String>,)> = self
            .rows_on(node, "SELECT data_center FROM system.local")
            .await?;
        let peers: Vec<(Option<String>,)> = self
            .rows_on(node, "SELECT data_center FROM system.peers_v2")
            .await?;
        Ok(local
            .into_iter()
            .chain(peers)
            .filter_map(|(dc,)| dc)
            .collect())
    }

    /// The replication map of `keyspace`, if it exists.
    pub async fn replication(
        &self,
        node: SocketAddr,
        keyspace: &str,
    ) -> Result<Option<std::collections::BTreeMap<String, String>>, CqlError> {
        let query = format!(
            "SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = '{}'",
            keyspace.replace('\'', "''")
        );
        let rows: Vec<(Option<std::collections::BTreeMap<String, String>>,)> =
            self.rows_on(node, &query).await?;
        Ok(rows.into_iter().next().map(|(r,)| r.unwrap_or_default()))
    }

    /// The names of the roles in `system_auth.roles` (names only: nothing
    /// about their passwords or permissions is read).
    pub async fn role_names(&self, node: SocketAddr) -> Result<Vec<String>, CqlError> {
        let rows: Vec<(String,)> = self
            .rows_on(node, "SELECT role FROM system_auth.roles")
            .await?;
        let mut names: Vec<String> = rows.into_iter().map(|(r,)| r).collect();
        names.sort();
        Ok(names)
    }

    /// Names of the keyspaces that are not Cassandra's own.
    pub async fn user_keyspaces(&self, node: SocketAddr) -> Result<Vec<String>, CqlError> {
        let rows: Vec<(String,)> = self
            .rows_on(node, "SELECT keyspace_name FROM system_schema.keyspaces")
            .await?;
        let mut names: Vec<String> = rows
            .into_iter()
            .map(|(name,)| name)
            .filter(|name| !SYSTEM_KEYSPACES.contains(&name.as_str()))
            .collect();
        names.sort();
        Ok(names)
    }

    /// The CQL that recreates `keyspaces` (types, tables, indexes, views),
    /// as the server's `DESCRIBE KEYSPACE` prints it.
    pub async fn describe(
        &self,
        node: SocketAddr,
        keyspaces: &[String],
    ) -> Result<String, CqlError> {
        let mut schema = String::new();
        for keyspace in keyspaces {
            let query = format!("DESCRIBE KEYSPACE {}", quote(keyspace));
            let rows: Vec<(String, String, String, String)> = self.rows_on(node, &query).await?;
            for (_, _, _, statement) in rows {
                schema.push_str(statement.trim_end());
                schema.push_str("\n\n");
            }
        }
        Ok(schema)
    }

    /// Runs a schema statement (the driver waits for schema agreement
    /// across the cluster before returning).
    pub async fn ddl(&self, statement: &str) -> Result<(), CqlError> {
        let result = self.session.query_unpaged(statement, ()).await;
        result
            .map(|_| ())
            .map_err(|e| cluster_error(first_line(statement), &e))
    }

    /// Empties `keyspace.table` on every node (Cassandra requires every
    /// replica up for TRUNCATE).
    pub async fn truncate(&self, keyspace: &str, table: &str) -> Result<(), CqlError> {
        let statement = format!("TRUNCATE TABLE {}.{}", quote(keyspace), quote(table));
        let mut truncate = Statement::new(statement.clone());
        truncate.set_request_timeout(Some(Duration::from_secs(120)));
        let result = self.session.query_unpaged(truncate, ()).await;
        result
            .map(|_| ())
            .map_err(|e| cluster_error(&statement, &e))
    }

    /// Tables of `keyspace` that exist now.
    pub async fn tables(&self, node: SocketAddr, keyspace: &str) -> Result<Vec<String>, CqlError> {
        let query = format!(
            "SELECT table_name FROM system_schema.tables WHERE keyspace_name = '{}'",
            keyspace.replace('\'', "''")
        );
        let rows: Vec<(String,)> = self.rows_on(node, &query).await?;
        Ok(rows.into_iter().map(|(t,)| t).collect())
    }

    /// Runs `query` on exactly `node` (node-local system tables differ from
    /// node to node) and deserialises every row.
    async fn rows_on<R>(&self, node: SocketAddr, query: &str) -> Result<Vec<R>, CqlError>
    where
        R: for<'f, 'm> scylla::deserialize::row::DeserializeRow<'f, 'm>,
    {
        let mut statement = Statement::new(query);
        statement.set_load_balancing_policy(Some(SingleTargetLoadBalancingPolicy::new(
            NodeIdentifier::NodeAddress(node),
            None,
        )));
        statement.set_page_size(5000);
        let mut rows = Vec::new();
        let mut paging = scylla::response::PagingState::start();
        loop {
            let (result, next) = self
                .session
                .query_single_page(statement.clone(), (), paging)
                .await
                .map_err(|e| query_error(node, &crate::storage::error_chain(&e)))?;
            let result = result
                .into_rows_result()
                .map_err(|e| query_error(node, &e.to_string()))?;
            for row in result
                .rows::<R>()
                .map_err(|e| query_error(node, &e.to_string()))?
            {
                rows.push(row.map_err(|e| query_error(node, &e.to_string()))?);
            }
            match next.into_paging_control_flow() {
                std::ops::ControlFlow::Continue(state) => paging = state,
                std::ops::ControlFlow::Break(()) => return Ok(rows),
            }
        }
    }
}

/// A CQL identifier as it must be written: bare when it is lowercase
/// letters, digits and `_`, quoted otherwise.
pub fn quote(name: &str) -> String {
    let bare = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if bare {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// A cluster-wide statement that failed, named by its text.
fn cluster_error(statement: &str, err: &dyn std::error::Error) -> CqlError {
    CqlError::Query {
        node: "cluster".into(),
        message: format!("{statement}: {}", crate::storage::error_chain(err)),
    }
}

fn first_line(statement: &str) -> &str {
    statement.lines().next().unwrap_or(statement)
}

fn query_error(node: SocketAddr, message: &str) -> CqlError {
    CqlError::Query {
        node: node.to_string(),
        message: message.to_string(),
    }
}
