//! `kassette pin-tokens`: before a fresh node first starts, give it the
//! tokens of the backed-up node it replaces, so that a restore can bring
//! that node's files back to the node that now owns the same ranges.
//!
//! The role runs where Cassandra has not started yet — an init container
//! after cass-operator's `server-config-init`, or on a VM before the
//! service starts. It reads the backup's node manifests, pairs this node
//! (its rack and ordinal) with a backed-up node ([`pairing`]), and writes
//! `initial_token` (all of that node's tokens), `num_tokens` and
//! `auto_bootstrap: false` into `cassandra.yaml`, changing no other line
//! ([`yaml`]). A node whose data directory already holds the `system`
//! keyspace has bootstrapped with tokens of its own: pinning it would not
//! change them, so it is refused (or skipped, or forced, as configured).

pub mod pairing;
pub mod yaml;

use std::path::{Path, PathBuf};

use crate::catalog::{Catalog, NodeManifest};
use crate::config::{IfBootstrapped, NodePlace, PinConfig, vars};
use crate::storage::error_chain;
use pairing::TargetNode;

/// Why pinning did not happen.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    #[error("{0}")]
    Refused(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("storage: {0}")]
    Catalog(String),
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinOutcome {
    /// The file now carries the tokens (it did not before).
    Pinned(Pinned),
    /// The file already carried exactly these settings: nothing written.
    AlreadyPinned(Pinned),
    /// The node had bootstrapped and the policy said to leave it.
    SkippedBootstrapped { system_dir: PathBuf },
}

/// Which backed-up node this node stands in for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pinned {
    pub backup: String,
    pub node: TargetNode,
    pub source_host_id: uuid::Uuid,
    pub source_address: String,
    pub tokens: usize,
}

pub async fn run(config: &PinConfig) -> Result<PinOutcome, PinError> {
    // Local checks first: they need no storage and change nothing.
    if let Some(system_dir) = bootstrapped(&config.data_dirs)? {
        match config.if_bootstrapped {
            IfBootstrapped::Refuse => {
                return Err(PinError::Refused(format!(
                    "this node has already bootstrapped ({} exists and is not empty): its tokens are saved in its system keyspace and initial_token would not change them. Wipe the node's data, commitlog and saved caches to rebuild it, or set {}=skip (leave it) or force (write anyway)",
                    system_dir.display(),
                    vars::PIN_IF_BOOTSTRAPPED
                )));
            }
            IfBootstrapped::Skip => {
                return Ok(PinOutcome::SkippedBootstrapped { system_dir });
            }
            IfBootstrapped::Force => {
                tracing::warn!(dir = %system_dir.display(), "the node has bootstrapped; pinning anyway as asked");
            }
        }
    }
    let text = read(&config.cassandra_yaml)?;
    let catalog = Catalog::open(&config.storage, &config.source)
        .await
        .map_err(|e| PinError::Catalog(error_chain(&e)))?;
    let backup = catalog
        .backup_manifest(&config.backup)
        .await
        .map_err(|e| PinError::Catalog(error_chain(&e)))?;
    let manifests = catalog
        .node_manifests(&backup)
        .await
        .map_err(|e| PinError::Catalog(error_chain(&e)))?;
    let (node, source) = counterpart(&manifests, config)?;
    let pinned = Pinned {
        backup: backup.name.clone(),
        node,
        source_host_id: source.host_id,
        source_address: source.address.clone(),
        tokens: source.tokens.len(),
    };
    let new_text = yaml::set_keys(&text, &settings(&source.tokens));
    if new_text == text {
        return Ok(PinOutcome::AlreadyPinned(pinned));
    }
    write(&config.cassandra_yaml, &new_text)?;
    Ok(PinOutcome::Pinned(pinned))
}

/// The three settings that make a fresh node take `tokens` and start
/// without streaming (its data comes from the restore).
pub fn settings(tokens: &[String]) -> [(&'static str, String); 3] {
    [
        ("initial_token", format!("'{}'", tokens.join(","))),
        ("num_tokens", tokens.len().to_string()),
        ("auto_bootstrap", "false".into()),
    ]
}

/// This node's place and the backed-up node paired with it.
fn counterpart<'a>(
    manifests: &'a [NodeManifest],
    config: &PinConfig,
) -> Result<(TargetNode, &'a NodeManifest), PinError> {
    let target = target_shape(manifests, config.racks.as_deref());
    let racks: Vec<String> = {
        let mut r: Vec<String> = target.iter().map(|n| n.rack.clone()).collect();
        r.dedup();
        r
    };
    let this = match &config.place {
        NodePlace::Explicit { rack, ordinal } => TargetNode {
            rack: rack.clone(),
            ordinal: *ordinal,
        },
        NodePlace::Pod { name, ordinal } => TargetNode {
            rack: rack_of_pod(name, &racks)?,
            ordinal: *ordinal,
        },
    };
    let pairs = pairing::pair(manifests, &target).map_err(|e| PinError::Refused(e.to_string()))?;
    pairs.into_iter().find(|(t, _)| *t == this).ok_or_else(|| {
        PinError::Refused(format!(
            "this node ({this}) has no place in the backup's shape: the target nodes are {}",
            target
                .iter()
                .map(|t| t.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })
}

/// The target datacenter as this node can know it: the given racks (else
/// the backup's rack names), each with as many nodes as the backup's rack
/// it pairs with. A different number of nodes per rack shows at restore
/// time, when the live nodes are compared with the backup.
fn target_shape(manifests: &[NodeManifest], racks: Option<&[String]>) -> Vec<TargetNode> {
    let mut source: std::collections::BTreeMap<&str, u32> = Default::default();
    for m in manifests {
        *source.entry(m.rack.as_str()).or_default() += 1;
    }
    let mut names: Vec<String> = match racks {
        Some(racks) => racks.to_vec(),
        None => source.keys().map(|r| r.to_string()).collect(),
    };
    names.sort();
    names.dedup();
    let mut counts: Vec<u32> = source.values().copied().collect();
    // A rack more than the backup has: one node, so the shapes differ.
    counts.resize(names.len().max(counts.len()), 1);
    names
        .into_iter()
        .zip(counts)
        .flat_map(|(rack, count)| {
            (0..count).map(move |ordinal| TargetNode {
                rack: rack.clone(),
                ordinal,
            })
        })
        .collect()
}

/// The rack in a cass-operator pod name `<cluster>-<dc>-<rack>-sts-<n>`
/// (the ordinal is parsed with the configuration): the longest of the
/// target's rack names that ends the part before `-sts-`.
pub fn rack_of_pod(pod: &str, racks: &[String]) -> Result<String, PinError> {
    let (prefix, _) = pod.rsplit_once("-sts-").ok_or_else(|| {
        PinError::Refused(format!(
            "{}: {pod:?} is not a cass-operator pod name (<cluster>-<dc>-<rack>-sts-<n>)",
            vars::POD_NAME
        ))
    })?;
    racks
        .iter()
        .filter(|rack| {
            prefix
                .strip_suffix(rack.to_ascii_lowercase().as_str())
                .is_some_and(|before| before.ends_with('-'))
        })
        .max_by_key(|rack| rack.len())
        .cloned()
        .ok_or_else(|| {
            PinError::Refused(format!(
                "{}: pod {pod:?} names none of the target racks ({}); set {} to the target datacenter's racks, or {} and {}",
                vars::POD_NAME,
                racks.join(", "),
                vars::RACKS,
                vars::RACK,
                vars::NODE_ORDINAL
            ))
        })
}

/// The first data directory holding a non-empty `system` keyspace.
fn bootstrapped(data_dirs: &[PathBuf]) -> Result<Option<PathBuf>, PinError> {
    for dir in data_dirs {
        let system = dir.join("system");
        match std::fs::read_dir(&system) {
            Ok(mut entries) => {
                if entries.next().is_some() {
                    return Ok(Some(system));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(PinError::Io {
                    path: system,
                    source,
                });
            }
        }
    }
    Ok(None)
}

fn read(path: &Path) -> Result<String, PinError> {
    std::fs::read_to_string(path).map_err(|source| PinError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Replaces the file whole (a new file renamed over it, with the old one's
/// permissions), so Cassandra never reads a half-written configuration.
fn write(path: &Path, text: &str) -> Result<(), PinError> {
    let io = |source| PinError::Io {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("yaml.kassette-tmp");
    let permissions = std::fs::metadata(path).map_err(io)?.permissions();
    std::fs::write(&tmp, text).map_err(io)?;
    std::fs::set_permissions(&tmp, permissions).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::pairing::tests::manifest;
    use super::*;

    #[test]
    fn pod_names_give_the_rack() {
        let racks = vec!["r1".to_string(), "rack-1".to_string(), "1".to_string()];
        assert_eq!(
            rack_of_pod("prod-dc1-rack-1-sts-2", &racks).unwrap(),
            "rack-1"
        );
        assert_eq!(rack_of_pod("prod-dc1-r1-sts-0", &racks).unwrap(), "r1");
        assert!(rack_of_pod("prod-dc1-r2-sts-0", &racks).is_err());
        assert!(rack_of_pod("cassandra-0", &racks).is_err());
    }

    #[test]
    fn the_target_shape_follows_the_backup_with_the_given_rack_names() {
        let manifests = [
            manifest("a", "rack1", &["1"]),
            manifest("b", "rack1", &["2"]),
            manifest("c", "rack2", &["3"]),
        ];
        let names = |t: Vec<TargetNode>| t.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        assert_eq!(
            names(target_shape(&manifests, None)),
            ["rack1/0", "rack1/1", "rack2/0"]
        );
        let renamed = ["z".to_string(), "y".to_string()];
        assert_eq!(
            names(target_shape(&manifests, Some(&renamed))),
            ["y/0", "y/1", "z/0"]
        );
        // A third rack cannot pair.
        let three = ["a".to_string(), "b".to_string(), "c".to_string()];
        assert!(pairing::pair(&manifests, &target_shape(&manifests, Some(&three))).is_err());
    }

    #[test]
    fn settings_carry_every_token() {
        let tokens = vec!["-3".to_string(), "7".to_string()];
        assert_eq!(
            settings(&tokens),
            [
                ("initial_token", "'-3,7'".to_string()),
                ("num_tokens", "2".to_string()),
                ("auto_bootstrap", "false".to_string()),
            ]
        );
    }

    #[test]
    fn a_bootstrapped_node_is_recognised() {
        let dir = tempfile::tempdir().unwrap();
        let data = vec![dir.path().to_path_buf()];
        assert_eq!(bootstrapped(&data).unwrap(), None);
        std::fs::create_dir(dir.path().join("system")).unwrap();
        assert_eq!(bootstrapped(&data).unwrap(), None, "empty: not yet");
        std::fs::create_dir(dir.path().join("system/local-7ad54392")).unwrap();
        assert_eq!(
            bootstrapped(&data).unwrap(),
            Some(dir.path().join("system"))
        );
    }
}
