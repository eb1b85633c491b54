//! Settings of `kassette pin-tokens`, and the source cluster and datacenter
//! (whose backups a disaster-recovery restore reads).

use std::path::PathBuf;

use super::agent::DEFAULT_DATA_DIR;
use super::coordinator::catalog_name;
use super::{ClusterConfig, ConfigError, StorageConfig, optional, parse, required, unused, vars};
use crate::cli::{ClusterArgs, PinTokensArgs, SourceArgs};

/// The catalog read: `KASSETTE_SOURCE_*`, each defaulting to the target's
/// own `KASSETTE_CLUSTER` / `KASSETTE_DATACENTER`.
pub fn source_cluster(
    source: &SourceArgs,
    target: &ClusterArgs,
) -> Result<ClusterConfig, ConfigError> {
    let pick = |var: &'static str, own: Option<&str>, fallback: Option<&str>, what: &str| match own
    {
        Some(raw) => required(var, Some(raw), what, catalog_name),
        // The value comes from the target's own variable: a bad one is
        // named as that variable.
        None if fallback.is_some() => required(fallback_var(var), fallback, what, catalog_name),
        None => required(var, fallback, what, catalog_name).map_err(|e| {
            ConfigError::new(var, format!("{} (or {})", e.problem, fallback_var(var)))
        }),
    };
    Ok(ClusterConfig {
        cluster: pick(
            vars::SOURCE_CLUSTER,
            source.source_cluster.as_deref(),
            target.cluster.as_deref(),
            "the cluster whose backups are read",
        )?,
        datacenter: pick(
            vars::SOURCE_DATACENTER,
            source.source_datacenter.as_deref(),
            target.datacenter.as_deref(),
            "the datacenter whose backups are read",
        )?,
    })
}

fn fallback_var(var: &str) -> &'static str {
    if var == vars::SOURCE_CLUSTER {
        vars::CLUSTER
    } else {
        vars::DATACENTER
    }
}

/// Where this node sits in the target datacenter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodePlace {
    /// A cass-operator pod: the rack is found in the name once the rack
    /// names are known; the ordinal is the name's last number.
    Pod {
        name: String,
        ordinal: u32,
    },
    Explicit {
        rack: String,
        ordinal: u32,
    },
}

/// What `pin-tokens` does with a node that has already bootstrapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfBootstrapped {
    Refuse,
    Skip,
    Force,
}

/// Everything `kassette pin-tokens` needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinConfig {
    pub backup: String,
    pub cassandra_yaml: PathBuf,
    pub place: NodePlace,
    /// The target datacenter's racks; `None`: the backup's rack names.
    pub racks: Option<Vec<String>>,
    pub data_dirs: Vec<PathBuf>,
    pub if_bootstrapped: IfBootstrapped,
    pub storage: StorageConfig,
    /// Whose backup is read.
    pub source: ClusterConfig,
}

impl PinConfig {
    pub fn from_args(args: &PinTokensArgs) -> Result<Self, ConfigError> {
        let backup = required(
            vars::BACKUP_NAME,
            args.backup_name.as_deref(),
            "the backup whose tokens are pinned, or `latest`",
            parse::backup_name,
        )?;
        let cassandra_yaml = required(
            vars::CASSANDRA_YAML,
            args.cassandra_yaml.as_deref(),
            "the cassandra.yaml to edit",
            parse::readable_file,
        )?;
        let data_dirs = match optional(vars::DATA_DIRS, args.data_dirs.as_deref(), parse::list)? {
            Some(dirs) => dirs.into_iter().map(PathBuf::from).collect(),
            None => vec![PathBuf::from(DEFAULT_DATA_DIR)],
        };
        Ok(Self {
            backup,
            cassandra_yaml,
            place: place(args)?,
            racks: optional(vars::RACKS, args.racks.as_deref(), parse::list)?,
            data_dirs,
            if_bootstrapped: optional(
                vars::PIN_IF_BOOTSTRAPPED,
                args.pin_if_bootstrapped.as_deref(),
                |raw| {
                    parse::one_of(
                        raw,
                        &[
                            ("refuse", IfBootstrapped::Refuse),
                            ("skip", IfBootstrapped::Skip),
                            ("force", IfBootstrapped::Force),
                        ],
                    )
                },
            )?
            .unwrap_or(IfBootstrapped::Refuse),
            storage: StorageConfig::from_args(&args.storage)?,
            source: source_cluster(&args.source, &args.cluster)?,
        })
    }
}

fn place(args: &PinTokensArgs) -> Result<NodePlace, ConfigError> {
    let ordinal = optional(vars::NODE_ORDINAL, args.node_ordinal.as_deref(), |raw| {
        raw.trim()
            .parse::<u32>()
            .map_err(|_| format!("{raw:?} is not a node ordinal (0, 1, 2, ...)"))
    })?;
    let rack = optional(vars::RACK, args.rack.as_deref(), |raw| {
        let rack = raw.trim();
        if rack.is_empty() {
            Err("is empty".to_string())
        } else {
            Ok(rack.to_string())
        }
    })?;
    if let Some(pod) = args.pod_name.as_deref() {
        let why = format!("when {} gives the node's place", vars::POD_NAME);
        unused(vars::RACK, args.rack.as_deref(), &why)?;
        unused(vars::NODE_ORDINAL, args.node_ordinal.as_deref(), &why)?;
        let name = pod.trim().to_string();
        let ordinal = name
            .rsplit_once("-sts-")
            .and_then(|(_, n)| n.parse::<u32>().ok())
            .ok_or_else(|| {
                ConfigError::new(
                    vars::POD_NAME,
                    format!("{name:?} is not a cass-operator pod name (<cluster>-<dc>-<rack>-sts-<n>); set {} and {} instead", vars::RACK, vars::NODE_ORDINAL),
                )
            })?;
        return Ok(NodePlace::Pod { name, ordinal });
    }
    match (rack, ordinal) {
        (Some(rack), Some(ordinal)) => Ok(NodePlace::Explicit { rack, ordinal }),
        (None, _) => Err(ConfigError::new(
            vars::RACK,
            format!(
                "is required: this node's rack (or set {} to the pod's name)",
                vars::POD_NAME
            ),
        )),
        (Some(_), None) => Err(ConfigError::new(
            vars::NODE_ORDINAL,
            format!(
                "is required with {}: this node's position in its rack, from 0",
                vars::RACK
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_source_defaults_to_the_target() {
        let target = ClusterArgs {
            cluster: Some("prod".into()),
            datacenter: Some("dc1".into()),
        };
        let same = source_cluster(&SourceArgs::default(), &target).unwrap();
        assert_eq!(
            (same.cluster.as_str(), same.datacenter.as_str()),
            ("prod", "dc1")
        );
        let other = SourceArgs {
            source_cluster: Some("staging".into()),
            source_datacenter: None,
        };
        let other = source_cluster(&other, &target).unwrap();
        assert_eq!(
            (other.cluster.as_str(), other.datacenter.as_str()),
            ("staging", "dc1")
        );
        let err = source_cluster(&SourceArgs::default(), &ClusterArgs::default()).unwrap_err();
        assert_eq!(err.var, vars::SOURCE_CLUSTER);
        assert!(err.problem.contains(vars::CLUSTER), "{}", err.problem);
        let bad = SourceArgs {
            source_cluster: Some("a/b".into()),
            source_datacenter: None,
        };
        assert_eq!(
            source_cluster(&bad, &target).unwrap_err().var,
            vars::SOURCE_CLUSTER
        );
    }

    #[test]
    fn the_place_comes_from_the_pod_name_or_rack_and_ordinal() {
        let pod = PinTokensArgs {
            pod_name: Some("prod-dc1-r1-sts-2".into()),
            ..args()
        };
        assert_eq!(
            place(&pod).unwrap(),
            NodePlace::Pod {
                name: "prod-dc1-r1-sts-2".into(),
                ordinal: 2
            }
        );
        let bad = PinTokensArgs {
            pod_name: Some("cassandra-0".into()),
            ..args()
        };
        assert_eq!(place(&bad).unwrap_err().var, vars::POD_NAME);
        let both = PinTokensArgs {
            rack: Some("r1".into()),
            ..pod
        };
        assert_eq!(place(&both).unwrap_err().var, vars::RACK);
        let explicit = PinTokensArgs {
            rack: Some("r1".into()),
            node_ordinal: Some("0".into()),
            ..args()
        };
        assert_eq!(
            place(&explicit).unwrap(),
            NodePlace::Explicit {
                rack: "r1".into(),
                ordinal: 0
            }
        );
        assert_eq!(place(&args()).unwrap_err().var, vars::RACK);
        let no_ordinal = PinTokensArgs {
            rack: Some("r1".into()),
            ..args()
        };
        assert_eq!(place(&no_ordinal).unwrap_err().var, vars::NODE_ORDINAL);
    }

    fn args() -> PinTokensArgs {
        PinTokensArgs {
            backup_name: None,
            cassandra_yaml: None,
            pod_name: None,
            rack: None,
            node_ordinal: None,
            racks: None,
            data_dirs: None,
            pin_if_bootstrapped: None,
            storage: Default::default(),
            cluster: Default::default(),
            source: Default::default(),
        }
    }
}
