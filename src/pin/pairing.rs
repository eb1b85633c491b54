//! Which source node a target node stands in for, when a datacenter is
//! restored into fresh nodes of the same shape.
//!
//! Both sides are put in a canonical order — racks sorted by name; within a
//! rack, target nodes by ordinal and backed-up nodes by their lowest token —
//! and paired position by position. The shapes must be equal (same number of
//! racks, same number of nodes in each paired rack); otherwise the pairing is
//! refused with both sides listed, since restoring into another topology is
//! not supported.

use std::collections::BTreeMap;
use std::fmt;

use crate::catalog::NodeManifest;

/// One node of the target datacenter, by its place in it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TargetNode {
    pub rack: String,
    pub ordinal: u32,
}

impl fmt::Display for TargetNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.rack, self.ordinal)
    }
}

/// The shapes differ; both sides, as listed in the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the target datacenter does not have the backup's shape (same number of racks, same number of nodes per rack, racks paired in name order); backup: {source_side}; target: {target_side}. Restoring into another topology is not supported"
)]
pub struct ShapeMismatch {
    pub source_side: String,
    pub target_side: String,
}

/// Pairs every target node with the backed-up node it replaces, in
/// canonical order (see the module documentation).
pub fn pair<'a>(
    source: &'a [NodeManifest],
    target: &[TargetNode],
) -> Result<Vec<(TargetNode, &'a NodeManifest)>, ShapeMismatch> {
    let source_racks = source_racks(source);
    let target_racks = target_racks(target);
    let same_shape = source_racks.len() == target_racks.len()
        && source_racks
            .values()
            .zip(target_racks.values())
            .all(|(s, t)| s.len() == t.len());
    if !same_shape {
        return Err(ShapeMismatch {
            source_side: describe(source_racks.iter().map(|(rack, nodes)| {
                let names: Vec<&str> = nodes.iter().map(|n| n.address.as_str()).collect();
                (*rack, names.len(), names.join(" "))
            })),
            target_side: describe(target_racks.iter().map(|(rack, nodes)| {
                let names: Vec<String> = nodes.iter().map(|n| n.to_string()).collect();
                (*rack, names.len(), names.join(" "))
            })),
        });
    }
    Ok(target_racks
        .into_values()
        .zip(source_racks.into_values())
        .flat_map(|(targets, sources)| targets.into_iter().cloned().zip(sources))
        .collect())
}

/// Backed-up nodes by rack (sorted by name), each rack by lowest token.
fn source_racks(source: &[NodeManifest]) -> BTreeMap<&str, Vec<&NodeManifest>> {
    let mut racks: BTreeMap<&str, Vec<&NodeManifest>> = BTreeMap::new();
    for node in source {
        racks.entry(node.rack.as_str()).or_default().push(node);
    }
    for nodes in racks.values_mut() {
        nodes.sort_by_key(|n| lowest_token(&n.tokens));
    }
    racks
}

/// Target nodes by rack (sorted by name), each rack by ordinal.
fn target_racks(target: &[TargetNode]) -> BTreeMap<&str, Vec<&TargetNode>> {
    let mut racks: BTreeMap<&str, Vec<&TargetNode>> = BTreeMap::new();
    for node in target {
        racks.entry(node.rack.as_str()).or_default().push(node);
    }
    for nodes in racks.values_mut() {
        nodes.sort_by_key(|n| n.ordinal);
    }
    racks
}

/// A node's lowest token, numerically (Murmur3 tokens are signed 64-bit,
/// RandomPartitioner's up to 2^127: both fit an i128); a token that is not
/// a number (another partitioner) sorts after, by text.
pub fn lowest_token(tokens: &[String]) -> (i128, String) {
    tokens
        .iter()
        .map(|t| (t.trim().parse::<i128>().unwrap_or(i128::MAX), t.clone()))
        .min()
        .unwrap_or((i128::MAX, String::new()))
}

fn describe<'a>(racks: impl Iterator<Item = (&'a str, usize, String)>) -> String {
    let racks: Vec<String> = racks
        .map(|(rack, count, names)| format!("rack {rack} ({count} nodes: {names})"))
        .collect();
    if racks.is_empty() {
        "no nodes".into()
    } else {
        racks.join(", ")
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn manifest(address: &str, rack: &str, tokens: &[&str]) -> NodeManifest {
        NodeManifest {
            format_version: 1,
            backup: "b".into(),
            cluster: "c".into(),
            datacenter: "dc1".into(),
            rack: rack.into(),
            host_id: uuid::Uuid::new_v4(),
            address: address.into(),
            tokens: tokens.iter().map(|t| t.to_string()).collect(),
            cassandra_version: "5.0.9".into(),
            snapshot_tag: "t".into(),
            snapshot_at: jiff::Timestamp::UNIX_EPOCH,
            data_dirs: vec![],
            files: vec![],
        }
    }

    fn target(rack: &str, ordinal: u32) -> TargetNode {
        TargetNode {
            rack: rack.into(),
            ordinal,
        }
    }

    fn pairs(source: &[NodeManifest], target: &[TargetNode]) -> Vec<(String, String)> {
        pair(source, target)
            .unwrap()
            .into_iter()
            .map(|(t, s)| (t.to_string(), s.address.clone()))
            .collect()
    }

    #[test]
    fn racks_pair_by_name_and_nodes_by_ordinal_and_lowest_token() {
        let source = [
            manifest("10.0.0.3", "rack2", &["500"]),
            manifest("10.0.0.2", "rack1", &["100", "-9000"]),
            manifest("10.0.0.1", "rack1", &["-20", "7"]),
            manifest("10.0.0.4", "rack2", &["-100"]),
        ];
        // Other rack names, given out of order: paired by sorted name.
        let target = [
            target("b", 1),
            target("a", 0),
            target("b", 0),
            target("a", 1),
        ];
        assert_eq!(
            pairs(&source, &target),
            [
                // rack1 by lowest token: -9000 (10.0.0.2), then -20.
                ("a/0".to_string(), "10.0.0.2".to_string()),
                ("a/1".into(), "10.0.0.1".into()),
                // rack2: -100 (10.0.0.4), then 500.
                ("b/0".into(), "10.0.0.4".into()),
                ("b/1".into(), "10.0.0.3".into()),
            ]
        );
    }

    #[test]
    fn tokens_sort_numerically_not_as_text() {
        let source = [
            manifest("big", "r", &["1000"]),
            manifest("small", "r", &["999"]),
            manifest("negative", "r", &["-5"]),
        ];
        let target = [target("r", 0), target("r", 1), target("r", 2)];
        let order: Vec<String> = pairs(&source, &target).into_iter().map(|p| p.1).collect();
        assert_eq!(order, ["negative", "small", "big"]);
    }

    #[test]
    fn another_shape_is_refused_listing_both_sides() {
        let source = [
            manifest("10.0.0.1", "rack1", &["1"]),
            manifest("10.0.0.2", "rack1", &["2"]),
            manifest("10.0.0.3", "rack2", &["3"]),
        ];
        // One node fewer.
        let err = pair(&source, &[target("r1", 0), target("r2", 0)]).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(
                "backup: rack rack1 (2 nodes: 10.0.0.1 10.0.0.2), rack rack2 (1 nodes: 10.0.0.3)"
            ),
            "{text}"
        );
        assert!(
            text.contains("target: rack r1 (1 nodes: r1/0), rack r2 (1 nodes: r2/0)"),
            "{text}"
        );
        // Same count, another rack layout (one rack of three).
        let one_rack = [target("r", 0), target("r", 1), target("r", 2)];
        assert!(pair(&source, &one_rack).is_err());
        // Same racks, nodes spread the other way (1 + 2 instead of 2 + 1).
        let swapped = [target("r1", 0), target("r2", 0), target("r2", 1)];
        assert!(pair(&source, &swapped).is_err());
    }
}
