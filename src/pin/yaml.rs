//! Setting a few top-level keys of `cassandra.yaml` by editing lines.
//!
//! The file is never parsed and re-serialized: that would reorder keys,
//! drop comments and change quoting in a file an operator (or
//! cass-operator) owns. Only the lines of the keys being set change; every
//! other byte stays as it was.

/// The new text of a `cassandra.yaml` with `settings` (key, YAML value)
/// applied: each existing top-level `key:` line (not a comment, not
/// indented) is replaced by `key: value`, keeping its line ending; a key
/// that has no such line is appended at the end.
pub fn set_keys(text: &str, settings: &[(&str, String)]) -> String {
    let mut out = String::with_capacity(text.len() + 256);
    let mut found = vec![false; settings.len()];
    for line in text.split_inclusive('\n') {
        let (body, ending) = split_ending(line);
        match settings.iter().position(|(key, _)| is_key_line(body, key)) {
            Some(i) => {
                found[i] = true;
                let (key, value) = &settings[i];
                out.push_str(&format!("{key}: {value}{ending}"));
            }
            None => out.push_str(line),
        }
    }
    let missing: Vec<&(&str, String)> = settings
        .iter()
        .zip(&found)
        .filter(|(_, found)| !**found)
        .map(|(setting, _)| setting)
        .collect();
    if !missing.is_empty() {
        let ending = if text.contains("\r\n") { "\r\n" } else { "\n" };
        if !out.is_empty() && !out.ends_with('\n') {
            out.push_str(ending);
        }
        for (key, value) in missing {
            out.push_str(&format!("{key}: {value}{ending}"));
        }
    }
    out
}

/// The value of a top-level key, as written (trailing comment and blanks
/// removed), if the file sets it.
pub fn get_key<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .rev()
        .find(|line| is_key_line(line, key))
        .map(|line| {
            let value = &line[key.len() + 1..];
            let value = match value.find(" #") {
                Some(comment) => &value[..comment],
                None => value,
            };
            value.trim()
        })
}

/// `key:` at the very start of the line, followed by a blank or the end.
fn is_key_line(line: &str, key: &str) -> bool {
    line.strip_prefix(key)
        .and_then(|rest| rest.strip_prefix(':'))
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r']))
}

fn split_ending(line: &str) -> (&str, &str) {
    if let Some(body) = line.strip_suffix("\r\n") {
        (body, "\r\n")
    } else if let Some(body) = line.strip_suffix('\n') {
        (body, "\n")
    } else {
        (line, "")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = "# Cassandra storage config YAML\n\
cluster_name: 'Test Cluster'\n\
\n\
# num_tokens: 256 is the old default\n\
num_tokens: 16   # vnodes\n\
allocate_tokens_for_local_replication_factor: 3\n\
# initial_token:\n\
seed_provider:\n\
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider\n\
    parameters:\n\
      - seeds: \"127.0.0.1:7000\"\n\
      # num_tokens: 4 (indented: not a top-level key)\n\
num_tokens_extra: 1\n\
endpoint_snitch: GossipingPropertyFileSnitch";

    fn pin(text: &str) -> String {
        set_keys(
            text,
            &[
                ("initial_token", "'-10,20'".into()),
                ("num_tokens", "2".into()),
                ("auto_bootstrap", "false".into()),
            ],
        )
    }

    #[test]
    fn only_the_pinned_lines_change() {
        let out = pin(YAML);
        let before: Vec<&str> = YAML.lines().collect();
        let after: Vec<&str> = out.lines().collect();
        // The same lines, except num_tokens replaced and two appended.
        assert_eq!(after.len(), before.len() + 2);
        for (i, (b, a)) in before.iter().zip(&after).enumerate() {
            if b.starts_with("num_tokens:") {
                assert_eq!(*a, "num_tokens: 2", "line {i}");
            } else {
                assert_eq!(a, b, "line {i}");
            }
        }
        assert_eq!(
            &after[before.len()..],
            ["initial_token: '-10,20'", "auto_bootstrap: false"]
        );
        assert_eq!(get_key(&out, "initial_token"), Some("'-10,20'"));
        assert_eq!(get_key(YAML, "num_tokens"), Some("16"));
        assert_eq!(get_key(YAML, "initial_token"), None);
    }

    #[test]
    fn pinning_twice_changes_nothing() {
        let once = pin(YAML);
        assert_eq!(pin(&once), once);
    }

    #[test]
    fn crlf_files_keep_their_line_endings() {
        let crlf = "cluster_name: x\r\nnum_tokens: 16\r\n";
        assert_eq!(
            pin(crlf),
            "cluster_name: x\r\nnum_tokens: 2\r\ninitial_token: '-10,20'\r\nauto_bootstrap: false\r\n"
        );
    }
}
