//! Finding the datacenter's agents: a static list (`KASSETTE_NODES`) or the
//! Kubernetes API (the datacenter's pods, selected by cass-operator's
//! labels or `KASSETTE_POD_SELECTOR`, agent at pod IP + agent port).
//!
//! The sidecar shares its pod's network namespace, so an agent's host is
//! also its Cassandra node's CQL address; the pass relies on that to match
//! agents to nodes.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, Client};

use crate::config::{ClusterConfig, Discovery};

/// cass-operator's labels on every Cassandra pod.
pub const CLUSTER_LABEL: &str = "cassandra.datastax.com/cluster";
pub const DATACENTER_LABEL: &str = "cassandra.datastax.com/datacenter";

#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("node {node}: cannot resolve {address}: {message}")]
    Resolve {
        node: String,
        address: String,
        message: String,
    },
    #[error("Kubernetes: {0}")]
    Kubernetes(String),
    #[error("no pods match {selector} in namespace {namespace}")]
    NoPods { namespace: String, selector: String },
    #[error("pod {pod} is not ready ({why}); refusing to back up a datacenter with a node down")]
    NotReady { pod: String, why: String },
}

/// One agent to drive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentNode {
    /// How logs and errors name the node: the pod name, or the address.
    pub name: String,
    /// The agent's `host:port`.
    pub agent: String,
    /// The agent's IP, also its Cassandra node's address.
    pub ip: IpAddr,
}

impl AgentNode {
    /// The agent's IP and port (the port of `agent`).
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        let (_, port) = self.agent.rsplit_once(':')?;
        Some(SocketAddr::new(self.ip, port.parse().ok()?))
    }
}

/// The agents of the configured datacenter.
pub async fn discover(
    discovery: &Discovery,
    cluster: &ClusterConfig,
) -> Result<Vec<AgentNode>, DiscoveryError> {
    match discovery {
        Discovery::Static(addresses) => addresses.iter().map(|a| static_node(a)).collect(),
        Discovery::Kubernetes {
            namespace,
            selector,
            agent_port,
        } => {
            let selector = selector
                .clone()
                .unwrap_or_else(|| default_selector(cluster));
            kubernetes_nodes(namespace.as_deref(), &selector, *agent_port).await
        }
    }
}

/// cass-operator's labels for this cluster and datacenter.
pub fn default_selector(cluster: &ClusterConfig) -> String {
    format!(
        "{CLUSTER_LABEL}={},{DATACENTER_LABEL}={}",
        cluster.cluster, cluster.datacenter
    )
}

fn static_node(address: &str) -> Result<AgentNode, DiscoveryError> {
    let resolved: SocketAddr = address
        .to_socket_addrs()
        .map_err(|e| resolve_error(address, &e.to_string()))?
        .next()
        .ok_or_else(|| resolve_error(address, "no address"))?;
    Ok(AgentNode {
        name: address.to_string(),
        agent: address.to_string(),
        ip: resolved.ip(),
    })
}

fn resolve_error(address: &str, message: &str) -> DiscoveryError {
    DiscoveryError::Resolve {
        node: address.to_string(),
        address: address.to_string(),
        message: message.to_string(),
    }
}

async fn kubernetes_nodes(
    namespace: Option<&str>,
    selector: &str,
    agent_port: u16,
) -> Result<Vec<AgentNode>, DiscoveryError> {
    let client = Client::try_default()
        .await
        .map_err(|e| DiscoveryError::Kubernetes(crate::storage::error_chain(&e)))?;
    let namespace = namespace
        .map(String::from)
        .unwrap_or_else(|| client.default_namespace().to_string());
    let pods = Api::<Pod>::namespaced(client, &namespace)
        .list(&ListParams::default().labels(selector))
        .await
        .map_err(|e| DiscoveryError::Kubernetes(crate::storage::error_chain(&e)))?;
    let mut nodes = pods
        .items
        .iter()
        .map(|pod| ready_node(pod, agent_port))
        .collect::<Result<Vec<_>, _>>()?;
    if nodes.is_empty() {
        return Err(DiscoveryError::NoPods {
            namespace,
            selector: selector.to_string(),
        });
    }
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    tracing::info!(%namespace, selector, pods = nodes.len(), "discovered the datacenter's pods");
    Ok(nodes)
}

/// The agent of `pod`, which must be Running, Ready and have an IP.
fn ready_node(pod: &Pod, agent_port: u16) -> Result<AgentNode, DiscoveryError> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let not_ready = |why: &str| DiscoveryError::NotReady {
        pod: name.clone(),
        why: why.to_string(),
    };
    let status = pod.status.as_ref().ok_or_else(|| not_ready("no status"))?;
    if pod.metadata.deletion_timestamp.is_some() {
        return Err(not_ready("being deleted"));
    }
    let phase = status.phase.as_deref().unwrap_or("Unknown");
    if phase != "Running" {
        return Err(not_ready(&format!("phase {phase}")));
    }
    let ready = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    if !ready {
        return Err(not_ready("condition Ready is not True"));
    }
    let ip: IpAddr = status
        .pod_ip
        .as_deref()
        .ok_or_else(|| not_ready("no pod IP"))?
        .parse()
        .map_err(|_| not_ready("pod IP is not an IP address"))?;
    Ok(AgentNode {
        agent: SocketAddr::new(ip, agent_port).to_string(),
        name,
        ip,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_addresses_keep_their_host_as_the_node_ip() {
        let node = static_node("127.0.0.2:7300").unwrap();
        assert_eq!(node.ip.to_string(), "127.0.0.2");
        assert_eq!(node.agent, "127.0.0.2:7300");
        assert_eq!(node.socket_addr(), Some("127.0.0.2:7300".parse().unwrap()));
    }

    #[test]
    fn the_default_selector_uses_cass_operator_labels() {
        let cluster = ClusterConfig {
            cluster: "prod".into(),
            datacenter: "dc1".into(),
        };
        assert_eq!(
            default_selector(&cluster),
            "cassandra.datastax.com/cluster=prod,cassandra.datastax.com/datacenter=dc1"
        );
    }
}
