//! The one rule for names that come from stored objects or from requests:
//! keyspace, table and index names, snapshot file paths, backup names.
//!
//! Such names end up in file paths (staging and import directories), in a
//! JMX object name (Jolokia's import) and in command arguments (nodetool).
//! A manifest in storage or a request body is not trusted to hold what
//! Cassandra would have allowed, so every name is checked here — once, as a
//! Cassandra identifier — by the catalog when it parses a record and by the
//! agent when it parses a request, before it is used anywhere. A name that
//! passes cannot contain `/`, `..`, NUL or any other character that could
//! change the meaning of a path or an object name.

/// Cassandra's limit on keyspace names (`SchemaConstants.NAME_LENGTH`).
pub const MAX_KEYSPACE_LEN: usize = 48;
/// Cassandra's limit on table names (CASSANDRA-20389): the table's
/// directory `<table>-<32 hex id>` must fit a 255-byte file name.
pub const MAX_TABLE_LEN: usize = 222;
/// A file name on every filesystem Cassandra runs on.
pub const MAX_FILE_NAME_LEN: usize = 255;
/// Backup names (they become storage key segments and staging names).
pub const MAX_BACKUP_NAME_LEN: usize = 128;

/// A name that is not what it must be; says which name, what it was (quoted
/// and shortened, so a hostile value cannot flood a log line) and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {shown} is not {rule}")]
pub struct NameError {
    pub what: &'static str,
    pub shown: String,
    pub rule: &'static str,
}

impl NameError {
    fn new(what: &'static str, name: &str, rule: &'static str) -> Self {
        Self {
            what,
            shown: shown(name),
            rule,
        }
    }
}

/// `name` quoted with escapes, at most 64 characters of it.
fn shown(name: &str) -> String {
    let mut head: String = name.chars().take(64).collect();
    if head.len() < name.len() {
        head.push('…');
    }
    format!("{head:?}")
}

const IDENTIFIER_RULE: &str = "a Cassandra identifier (letters, digits, '_')";

/// Whether `name` is 1 to `max` ASCII letters, digits or `_`: what
/// Cassandra accepts as a keyspace, table or index name.
pub fn is_identifier(name: &str, max: usize) -> bool {
    !name.is_empty()
        && name.len() <= max
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A keyspace name.
pub fn check_keyspace(name: &str) -> Result<(), NameError> {
    if is_identifier(name, MAX_KEYSPACE_LEN) {
        Ok(())
    } else {
        Err(NameError::new(
            "keyspace",
            name,
            "a Cassandra keyspace name (1-48 letters, digits, '_')",
        ))
    }
}

/// A table name (also a materialized view's).
pub fn check_table(name: &str) -> Result<(), NameError> {
    if is_identifier(name, MAX_TABLE_LEN) {
        Ok(())
    } else {
        Err(NameError::new(
            "table",
            name,
            "a Cassandra table name (1-222 letters, digits, '_')",
        ))
    }
}

/// A secondary index name (its files live in `.<index>/`).
pub fn check_index(name: &str) -> Result<(), NameError> {
    if is_identifier(name, MAX_TABLE_LEN) {
        Ok(())
    } else {
        Err(NameError::new("index", name, IDENTIFIER_RULE))
    }
}

/// Whether `name` can be a key segment or a directory name as it is: 1 to
/// `max_len` of letters, digits, `.`, `_`, `-`, starting alphanumeric (so
/// never `.`, `..` or hidden).
pub fn is_safe_name(name: &str, max_len: usize) -> bool {
    name.len() <= max_len
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// A backup name as stored (in a manifest or the index).
pub fn check_backup_name(name: &str) -> Result<(), NameError> {
    if is_safe_name(name, MAX_BACKUP_NAME_LEN) {
        Ok(())
    } else {
        Err(NameError::new(
            "backup name",
            name,
            "1-128 of letters, digits, '.', '_', '-', starting with a letter or digit",
        ))
    }
}

/// A cluster, datacenter or snapshot tag as stored: a safe name of at most
/// `max` characters.
pub fn check_segment(what: &'static str, name: &str, max: usize) -> Result<(), NameError> {
    if is_safe_name(name, max) {
        Ok(())
    } else {
        Err(NameError::new(
            what,
            name,
            "letters, digits, '.', '_', '-', starting with a letter or digit",
        ))
    }
}

/// One file name inside a snapshot directory: a single path component, not
/// hidden, no control characters or backslashes, at most 255 bytes.
fn is_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_FILE_NAME_LEN
        && !name.starts_with('.')
        && !name
            .chars()
            .any(|c| c == '/' || c == '\\' || c.is_control())
}

/// A path inside a table's snapshot directory: `<file>`, or
/// `.<index>/<file>` for a secondary index's files.
pub fn check_snapshot_path(path: &str) -> Result<(), NameError> {
    let ok = match path.split_once('/') {
        None => is_file_name(path),
        Some((dir, file)) => {
            dir.strip_prefix('.')
                .is_some_and(|index| check_index(index).is_ok())
                && is_file_name(file)
        }
    };
    if ok {
        Ok(())
    } else {
        Err(NameError::new(
            "snapshot file",
            path,
            "a file of a table's snapshot (<file> or .<index>/<file>)",
        ))
    }
}

/// The names of one file of a backup: keyspace, table and path.
pub fn check_file(keyspace: &str, table: &str, path: &str) -> Result<(), NameError> {
    check_keyspace(keyspace)?;
    check_table(table)?;
    check_snapshot_path(path)
}

/// The longest catalog-relative blob key a file entry may name (a store
/// key is at most 1,024 bytes, and the catalog root takes up to 140).
pub const MAX_BLOB_KEY_LEN: usize = 880;

/// A file entry's `blob`: a catalog-relative key under `files/`, made of
/// non-empty segments other than `.` and `..`, without control characters
/// or backslashes — it names an object of the same catalog and nothing
/// else.
pub fn check_blob_key(key: &str) -> Result<(), NameError> {
    let rule = "a key under files/ (non-empty segments, no '.', '..', control characters or '\\')";
    let ok = key.len() <= MAX_BLOB_KEY_LEN
        && key.starts_with("files/")
        && !key.chars().any(|c| c.is_control() || c == '\\')
        && key
            .split('/')
            .all(|segment| !segment.is_empty() && segment != "." && segment != "..");
    if ok {
        Ok(())
    } else {
        Err(NameError::new("blob key", key, rule))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names a crafted manifest or request could carry.
    const HOSTILE: &[&str] = &[
        "",
        ".",
        "..",
        "../..",
        "../../etc",
        "/etc/passwd",
        "/",
        "a/b",
        "a\\b",
        "a\0b",
        "a b",
        "ks\n",
        "ks,table=x",
        "ks;DROP",
        "ké",
        "\u{202e}abc",
    ];

    #[test]
    fn identifiers_are_cassandras() {
        for good in ["shop", "Orders", "a_1", "_x", &"k".repeat(48)] {
            assert!(check_keyspace(good).is_ok(), "{good:?} refused");
            assert!(check_table(good).is_ok(), "{good:?} refused");
        }
        assert!(check_keyspace(&"k".repeat(49)).is_err());
        assert!(check_table(&"t".repeat(222)).is_ok());
        assert!(check_table(&"t".repeat(223)).is_err());
        for bad in HOSTILE {
            assert!(check_keyspace(bad).is_err(), "{bad:?} accepted");
            assert!(check_table(bad).is_err(), "{bad:?} accepted");
        }
        assert!(check_table(&"x".repeat(100_000)).is_err());
    }

    #[test]
    fn snapshot_paths_are_one_file_or_an_index_file() {
        for good in [
            "nb-1-big-Data.db",
            "manifest.json",
            "da-3-bti-SAI+aa+by_note+Meta.db",
            ".idx_by_email/nb-1-big-Data.db",
        ] {
            assert!(check_snapshot_path(good).is_ok(), "{good:?} refused");
        }
        for bad in [
            "",
            ".",
            "..",
            "../..",
            "/etc/passwd",
            "/",
            "a\\b",
            "a\0b",
            "nb\n",
            "../nb-1-big-Data.db",
            "./nb-1-big-Data.db",
            ".hidden",
            ".idx/../../x",
            ".idx/.x",
            ".idx/",
            "a/b/c",
            ".../x",
            "idx/nb-1-big-Data.db",
        ] {
            assert!(check_snapshot_path(bad).is_err(), "{bad:?} accepted");
        }
        assert!(check_snapshot_path(&"x".repeat(256)).is_err());
    }

    #[test]
    fn errors_quote_a_shortened_escaped_name() {
        let err = check_table(&format!("../{}\0", "x".repeat(1000))).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("table \"../xxx"), "{text}");
        assert!(text.len() < 200, "{text}");
        assert!(!text.contains('\0'), "{text}");
    }
}
