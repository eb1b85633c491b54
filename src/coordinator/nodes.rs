//! The nodes of a pass: agents found by discovery, reached with the
//! shared token (and TLS when configured), checked to write to the same
//! store as the coordinator, matched to their Cassandra nodes over CQL —
//! and refused unless the datacenter is whole.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use futures::future::try_join_all;

use super::PassError;
use super::client::{AgentClient, ClientError};
use super::discovery::{AgentNode, discover};
use crate::agent::api::{NodeInfo, StoreIdentity};
use crate::cassandra::cql::{Cql, NodeTopology};
use crate::config::{ClusterConfig, NodesConfig, StorageConfig, vars};

/// Discovers the agents, reaches every one, checks each writes to
/// `storage` (see [`check_same_store`]), connects CQL through them and
/// checks the datacenter is whole (see [`check_nodes`]). Nothing has been
/// changed anywhere when it returns.
pub async fn whole_datacenter(
    nodes: &NodesConfig,
    cluster: &ClusterConfig,
    storage: &StorageConfig,
) -> Result<(Vec<Node>, Cql), PassError> {
    let connector = Connector::from_config(nodes)?;
    let found = discover(&nodes.discovery, cluster).await?;
    let agents = reach_agents(found, &connector).await?;
    let ours = StoreIdentity::of(storage);
    for (agent, _, info) in &agents {
        check_same_store(&agent.name, info.store.as_ref(), &ours)?;
    }
    let contacts: Vec<SocketAddr> = agents
        .iter()
        .map(|(agent, _, _)| SocketAddr::new(agent.ip, nodes.cql.port))
        .collect();
    let cql = Cql::connect(&contacts, &nodes.cql).await?;
    let checked = check_nodes(agents, &cql, nodes, cluster).await?;
    Ok((checked, cql))
}

/// One node of the pass: its agent and what Cassandra says about it.
pub struct Node {
    pub agent: AgentNode,
    pub client: AgentClient,
    pub data_dirs: Vec<String>,
    pub topology: NodeTopology,
}

impl Node {
    /// The node's CQL address.
    pub fn cql_address(&self, port: u16) -> SocketAddr {
        SocketAddr::new(self.agent.ip, port)
    }

    pub fn failed(&self) -> impl Fn(super::client::ClientError) -> PassError + '_ {
        |source| PassError::Node {
            node: self.agent.name.clone(),
            source,
        }
    }
}

/// Makes agent clients: the shared token, and HTTPS with a private CA when
/// `KASSETTE_AGENT_CA_FILE` is set.
pub struct Connector {
    token: String,
    ca_pem: Option<Vec<u8>>,
    /// `KASSETTE_AGENT_TLS_SERVER_NAME`: the name certificates are checked
    /// against instead of each agent's address.
    server_name: Option<String>,
}

impl Connector {
    pub fn from_config(nodes: &NodesConfig) -> Result<Self, PassError> {
        let read = |var: &str, path: &std::path::Path| {
            std::fs::read(path)
                .map_err(|e| PassError::Failed(format!("{var}: {}: {e}", path.display())))
        };
        let token = read(vars::AGENT_TOKEN_FILE, &nodes.agent_token_file)?;
        let ca_pem = match &nodes.agent_ca_file {
            Some(path) => Some(read(vars::AGENT_CA_FILE, path)?),
            None => None,
        };
        let token = crate::agent::auth::token_from_file(&token).map_err(|e| {
            PassError::Failed(format!(
                "{}: {} {e}",
                vars::AGENT_TOKEN_FILE,
                nodes.agent_token_file.display()
            ))
        })?;
        Ok(Self {
            token,
            ca_pem,
            server_name: nodes.agent_tls_server_name.clone(),
        })
    }

    pub fn client(&self, agent: &AgentNode) -> Result<AgentClient, PassError> {
        let failed = |source| PassError::Node {
            node: agent.name.clone(),
            source,
        };
        match (&self.ca_pem, &self.server_name) {
            (None, _) => AgentClient::new(&agent.agent, &self.token).map_err(failed),
            (Some(pem), None) => {
                AgentClient::with_tls(&agent.agent, &self.token, pem).map_err(failed)
            }
            (Some(pem), Some(name)) => {
                let socket = agent.socket_addr().ok_or_else(|| {
                    failed(ClientError::Unreachable {
                        agent: agent.agent.clone(),
                        message: "the address has no port".into(),
                    })
                })?;
                AgentClient::with_tls_server_name(socket, name, &self.token, pem).map_err(failed)
            }
        }
    }
}

/// Refuses an agent that writes to another store than the coordinator's
/// (another provider, endpoint, bucket or prefix): its uploads would land
/// where the catalog does not look, and its downloads read another
/// catalog's blobs.
pub fn check_same_store(
    agent: &str,
    theirs: Option<&StoreIdentity>,
    ours: &StoreIdentity,
) -> Result<(), PassError> {
    match theirs {
        Some(theirs) if theirs == ours => Ok(()),
        Some(theirs) => Err(PassError::Refused(format!(
            "agent {agent} writes to {theirs}, this coordinator to {ours}: give both the same KASSETTE_STORAGE_* settings"
        ))),
        None => Err(PassError::Refused(format!(
            "agent {agent} does not say which store it writes to (an older kassette agent?); upgrade it to this version"
        ))),
    }
}

/// Asks every agent who it is; fails naming the first that does not answer.
async fn reach_agents(
    found: Vec<AgentNode>,
    connector: &Connector,
) -> Result<Vec<(AgentNode, AgentClient, NodeInfo)>, PassError> {
    try_join_all(found.into_iter().map(|agent| async move {
        let client = connector.client(&agent)?;
        match client.node_info().await {
            Ok(info) => Ok((agent, client, info)),
            Err(source) => Err(PassError::Node {
                node: agent.name.clone(),
                source,
            }),
        }
    }))
    .await
}

/// Asks every node who it is, and refuses a datacenter that is not whole:
/// a node that does not answer CQL, a node of another datacenter, two
/// agents on one node, or a ring member without an agent.
async fn check_nodes(
    agents: Vec<(AgentNode, AgentClient, NodeInfo)>,
    cql: &Cql,
    nodes: &NodesConfig,
    cluster: &ClusterConfig,
) -> Result<Vec<Node>, PassError> {
    let datacenter = &cluster.datacenter;
    let port = nodes.cql.port;
    let nodes = try_join_all(agents.into_iter().map(|(agent, client, info)| async move {
        let topology = cql
            .node(SocketAddr::new(agent.ip, port))
            .await
            .map_err(|e| {
                PassError::Refused(format!(
                    "node {}: Cassandra is not answering: {e}",
                    agent.name
                ))
            })?;
        if &topology.datacenter != datacenter {
            return Err(PassError::Refused(format!(
                "node {} is in datacenter {:?}, not {datacenter:?} ({})",
                agent.name,
                topology.datacenter,
                vars::DATACENTER
            )));
        }
        Ok(Node {
            agent,
            client,
            data_dirs: info.data_dirs,
            topology,
        })
    }))
    .await?;
    let mut seen = BTreeSet::new();
    for node in &nodes {
        if !seen.insert(node.topology.host_id) {
            return Err(PassError::Refused(format!(
                "two agents reach the same Cassandra node {} (host id {})",
                node.agent.ip, node.topology.host_id
            )));
        }
    }
    let members = cql
        .datacenter_members(SocketAddr::new(nodes[0].agent.ip, port), datacenter)
        .await?;
    let missing: Vec<String> = members
        .iter()
        .filter(|m| !seen.contains(&m.host_id))
        .map(|m| format!("{} (host id {})", m.address, m.host_id))
        .collect();
    if !missing.is_empty() {
        return Err(PassError::Refused(format!(
            "datacenter {datacenter} has nodes without an agent: {}; a backup must cover every node",
            missing.join(", ")
        )));
    }
    tracing::info!(
        nodes = nodes.len(),
        "every node of the datacenter is up and has an agent"
    );
    Ok(nodes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(bucket: &str, prefix: &str) -> StoreIdentity {
        StoreIdentity {
            provider: "s3".into(),
            endpoint: Some("http://minio:9000/".into()),
            location: bucket.into(),
            prefix: prefix.into(),
        }
    }

    #[test]
    fn agents_must_write_to_the_coordinators_store() {
        let ours = store("backups", "team");
        assert!(check_same_store("pod-0", Some(&ours), &ours).is_ok());
        for theirs in [
            store("other", "team"),
            store("backups", "elsewhere"),
            StoreIdentity {
                provider: "gcs".into(),
                ..ours.clone()
            },
            StoreIdentity {
                endpoint: None,
                ..ours.clone()
            },
        ] {
            let err = check_same_store("pod-0", Some(&theirs), &ours)
                .unwrap_err()
                .to_string();
            assert!(err.contains("agent pod-0 writes to"), "{err}");
        }
        let err = check_same_store("pod-1", None, &ours)
            .unwrap_err()
            .to_string();
        assert!(err.contains("agent pod-1 does not say"), "{err}");
    }
}
