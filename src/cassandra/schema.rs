//! The backed-up schema (`DESCRIBE KEYSPACE` output) read back: which
//! statement creates what, and the same statement made safe to run against
//! a live cluster (`IF NOT EXISTS`: it creates what is missing and never
//! changes what exists), and its replication rewritten for a datacenter of
//! another name.

use std::collections::{BTreeMap, BTreeSet};

/// What a `CREATE` statement creates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Object {
    Keyspace,
    Type,
    Table,
    /// A secondary index on `table`.
    Index {
        table: String,
    },
    /// A materialized view of `table` (not restored: see the restore docs).
    View {
        table: String,
    },
    Function,
    Aggregate,
}

/// One statement of the schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub object: Object,
    pub keyspace: String,
    /// The object's name (the keyspace's own name for a keyspace).
    pub name: String,
    pub cql: String,
}

impl Statement {
    /// The statement with `IF NOT EXISTS` after its `CREATE <kind>`.
    pub fn if_not_exists(&self) -> String {
        let words: &[&str] = match &self.object {
            Object::Keyspace => &["CREATE", "KEYSPACE"],
            Object::Type => &["CREATE", "TYPE"],
            Object::Table => &["CREATE", "TABLE"],
            Object::Index { .. }
                if starts_with_words(&self.cql, &["CREATE", "CUSTOM", "INDEX"]) =>
            {
                &["CREATE", "CUSTOM", "INDEX"]
            }
            Object::Index { .. } => &["CREATE", "INDEX"],
            Object::View { .. } => &["CREATE", "MATERIALIZED", "VIEW"],
            Object::Function => &["CREATE", "FUNCTION"],
            Object::Aggregate => &["CREATE", "AGGREGATE"],
        };
        let rest = skip_words(self.cql.trim_start(), words.len());
        if starts_with_words(rest, &["IF", "NOT", "EXISTS"]) {
            return self.cql.clone();
        }
        format!("{} IF NOT EXISTS {rest}", words.join(" "))
    }
}

/// Splits `DESCRIBE` output into statements and says what each creates.
/// Statements the restore does not know (e.g. `CREATE ROLE`) are skipped.
pub fn parse(schema: &str) -> Vec<Statement> {
    split(schema)
        .into_iter()
        .filter_map(|cql| classify(&cql))
        .collect()
}

/// Statements start with `CREATE` at the beginning of a paragraph; a blank
/// line inside a statement (e.g. in a comment string) keeps it whole.
fn split(schema: &str) -> Vec<String> {
    let mut statements: Vec<String> = Vec::new();
    for paragraph in schema.split("\n\n") {
        let trimmed = paragraph.trim();
        if trimmed.is_empty() {
            continue;
        }
        match statements.last_mut() {
            Some(last) if !trimmed.starts_with("CREATE ") || !last.trim_end().ends_with(';') => {
                last.push_str("\n\n");
                last.push_str(trimmed);
            }
            _ => statements.push(trimmed.to_string()),
        }
    }
    statements
}

fn classify(cql: &str) -> Option<Statement> {
    let text = cql.trim_start();
    let (object_words, object) = if starts_with_words(text, &["CREATE", "KEYSPACE"]) {
        (2, Object::Keyspace)
    } else if starts_with_words(text, &["CREATE", "TYPE"]) {
        (2, Object::Type)
    } else if starts_with_words(text, &["CREATE", "TABLE"]) {
        (2, Object::Table)
    } else if starts_with_words(text, &["CREATE", "INDEX"]) {
        (
            2,
            Object::Index {
                table: String::new(),
            },
        )
    } else if starts_with_words(text, &["CREATE", "CUSTOM", "INDEX"]) {
        (
            3,
            Object::Index {
                table: String::new(),
            },
        )
    } else if starts_with_words(text, &["CREATE", "MATERIALIZED", "VIEW"]) {
        (
            3,
            Object::View {
                table: String::new(),
            },
        )
    } else if starts_with_words(text, &["CREATE", "FUNCTION"]) {
        (2, Object::Function)
    } else if starts_with_words(text, &["CREATE", "AGGREGATE"]) {
        (2, Object::Aggregate)
    } else {
        return None;
    };
    let mut rest = skip_words(text, object_words);
    if starts_with_words(rest, &["IF", "NOT", "EXISTS"]) {
        rest = skip_words(rest, 3);
    }
    let (first, rest) = identifier(rest)?;
    let statement = |keyspace: String, name: String, object: Object| Statement {
        object,
        keyspace,
        name,
        cql: cql.trim().to_string(),
    };
    match object {
        Object::Keyspace => Some(statement(first.clone(), first, Object::Keyspace)),
        Object::Index { .. } => {
            // CREATE INDEX <name> ON <ks>.<table> (...)
            let rest = rest.trim_start();
            let rest = rest
                .strip_prefix("ON")
                .or_else(|| rest.strip_prefix("on"))?;
            let (keyspace, after) = identifier(rest)?;
            let (table, _) = identifier(after.strip_prefix('.')?)?;
            Some(statement(keyspace, first, Object::Index { table }))
        }
        Object::View { .. } => {
            let (name, _) = identifier(rest.strip_prefix('.')?)?;
            let upper = cql.to_ascii_uppercase();
            let from = upper.find(" FROM ")?;
            let (_, after) = identifier(&cql[from + 6..])?;
            let (table, _) = identifier(after.strip_prefix('.')?)?;
            Some(statement(first, name, Object::View { table }))
        }
        object => {
            let (name, _) = identifier(rest.strip_prefix('.')?)?;
            Some(statement(first, name, object))
        }
    }
}

/// A CQL identifier at the start of `text` (after blanks): quoted (with
/// `""` escapes) or bare; returns it as Cassandra names it, and the rest.
fn identifier(text: &str) -> Option<(String, &str)> {
    let text = text.trim_start();
    if let Some(quoted) = text.strip_prefix('"') {
        let mut name = String::new();
        let mut chars = quoted.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            if c == '"' {
                if chars.peek().map(|(_, c)| *c) == Some('"') {
                    chars.next();
                    name.push('"');
                } else {
                    return Some((name, &quoted[i + 1..]));
                }
            } else {
                name.push(c);
            }
        }
        None
    } else {
        let end = text
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(text.len());
        (end > 0).then(|| (text[..end].to_ascii_lowercase(), &text[end..]))
    }
}

fn starts_with_words(text: &str, words: &[&str]) -> bool {
    let mut rest = text.trim_start();
    for word in words {
        let Some(head) = rest.get(..word.len()) else {
            return false;
        };
        if !head.eq_ignore_ascii_case(word) {
            return false;
        }
        rest = &rest[word.len()..];
        if !rest.starts_with(char::is_whitespace) {
            return false;
        }
        rest = rest.trim_start();
    }
    true
}

fn skip_words(text: &str, n: usize) -> &str {
    let mut rest = text.trim_start();
    for _ in 0..n {
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        rest = rest[end..].trim_start();
    }
    rest
}

/// A keyspace's replication map as CQL writes it (`'class'` and, for
/// `NetworkTopologyStrategy`, one replication factor per datacenter).
pub type Replication = BTreeMap<String, String>;

/// The replication map of a `CREATE KEYSPACE` statement, and where its
/// `{…}` sits in the text.
pub fn replication(cql: &str) -> Option<(std::ops::Range<usize>, Replication)> {
    let lower = cql.to_ascii_lowercase();
    let at = lower.find("replication")?;
    let open = at + cql[at..].find('{')?;
    let mut map = Replication::new();
    let mut rest = &cql[open + 1..];
    loop {
        rest = rest.trim_start().trim_start_matches(',').trim_start();
        if let Some(after) = rest.strip_prefix('}') {
            let close = cql.len() - after.len();
            return Some((open..close, map));
        }
        let (key, after) = quoted(rest)?;
        let after = after.trim_start().strip_prefix(':')?;
        let (value, after) = quoted(after.trim_start())?;
        map.insert(key, value);
        rest = after;
    }
}

/// A single-quoted CQL string at the start of `text` (`''` escapes a
/// quote), and the rest.
fn quoted(text: &str) -> Option<(String, &str)> {
    let inner = text.strip_prefix('\'')?;
    let mut value = String::new();
    let mut chars = inner.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == '\'' {
            if chars.peek().map(|(_, c)| *c) == Some('\'') {
                chars.next();
                value.push('\'');
            } else {
                return Some((value, &inner[i + 1..]));
            }
        } else {
            value.push(c);
        }
    }
    None
}

fn render(map: &Replication) -> String {
    let entries: Vec<String> = map
        .iter()
        .map(|(k, v)| format!("'{}': '{}'", k.replace('\'', "''"), v.replace('\'', "''")))
        .collect();
    format!("{{{}}}", entries.join(", "))
}

fn is_network_topology(map: &Replication) -> bool {
    map.get("class")
        .is_some_and(|c| c.ends_with("NetworkTopologyStrategy"))
}

/// Two replication maps mean the same thing (the class may be written with
/// or without its package).
pub fn same_replication(a: &Replication, b: &Replication) -> bool {
    let short = |m: &Replication| -> Replication {
        m.iter()
            .map(|(k, v)| {
                let v = if k == "class" {
                    v.rsplit('.').next().unwrap_or(v).to_string()
                } else {
                    v.clone()
                };
                (k.clone(), v)
            })
            .collect()
    };
    short(a) == short(b)
}

/// One keyspace whose backed-up replication names the source datacenter,
/// rewritten for the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationRewrite {
    pub keyspace: String,
    pub before: Replication,
    pub after: Replication,
}

impl std::fmt::Display for ReplicationRewrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "keyspace {}: replication {} becomes {}",
            self.keyspace,
            render(&self.before),
            render(&self.after)
        )
    }
}

/// The backed-up schema made for a datacenter of another name: in every
/// `CREATE KEYSPACE` with `NetworkTopologyStrategy`, the source
/// datacenter's replication factor is given to `target_dc`, and any other
/// datacenter of the map is kept only if it exists in the target cluster
/// (`target_dcs`). `SimpleStrategy` names no datacenter and is left as it
/// is, as is a keyspace the source datacenter did not replicate (it has no
/// data in the backup). Returns the statements and what was rewritten.
pub fn rename_datacenter(
    statements: &[Statement],
    source_dc: &str,
    target_dc: &str,
    target_dcs: &BTreeSet<String>,
) -> (Vec<Statement>, Vec<ReplicationRewrite>) {
    let mut rewrites = Vec::new();
    let out = statements
        .iter()
        .map(|statement| {
            if statement.object != Object::Keyspace || source_dc == target_dc {
                return statement.clone();
            }
            let Some((range, before)) = replication(&statement.cql) else {
                return statement.clone();
            };
            let Some(rf) = before
                .get(source_dc)
                .filter(|_| is_network_topology(&before))
            else {
                return statement.clone();
            };
            let mut after: Replication = before
                .iter()
                .filter(|(k, _)| {
                    *k == "class" || (k.as_str() != source_dc && target_dcs.contains(k.as_str()))
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            after.insert(target_dc.to_string(), rf.clone());
            let cql = format!(
                "{}{}{}",
                &statement.cql[..range.start],
                render(&after),
                &statement.cql[range.end..]
            );
            rewrites.push(ReplicationRewrite {
                keyspace: statement.keyspace.clone(),
                before,
                after,
            });
            Statement {
                cql,
                ..statement.clone()
            }
        })
        .collect();
    (out, rewrites)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMA: &str = "CREATE KEYSPACE shop WITH replication = {'class': 'NetworkTopologyStrategy', 'dc1': '3'}  AND durable_writes = true;\n\n\
CREATE TYPE shop.address (\n    street text\n);\n\n\
CREATE TABLE shop.\"Orders\" (\n    id int PRIMARY KEY,\n    note text\n) WITH comment = 'two\n\nparagraphs;'\n    AND gc_grace_seconds = 864000;\n\n\
CREATE INDEX orders_by_note ON shop.\"Orders\" (note);\n\n\
CREATE CUSTOM INDEX sai ON shop.\"Orders\" (note) USING 'StorageAttachedIndex';\n\n\
CREATE MATERIALIZED VIEW shop.by_note AS\n    SELECT * FROM shop.\"Orders\"\n    WHERE note IS NOT NULL AND id IS NOT NULL\n    PRIMARY KEY (note, id);\n\n";

    #[test]
    fn statements_are_found_and_classified() {
        let statements = parse(SCHEMA);
        let objects: Vec<(&Object, &str, &str)> = statements
            .iter()
            .map(|s| (&s.object, s.keyspace.as_str(), s.name.as_str()))
            .collect();
        let orders = "Orders".to_string();
        assert_eq!(
            objects,
            [
                (&Object::Keyspace, "shop", "shop"),
                (&Object::Type, "shop", "address"),
                (&Object::Table, "shop", "Orders"),
                (
                    &Object::Index {
                        table: orders.clone()
                    },
                    "shop",
                    "orders_by_note"
                ),
                (
                    &Object::Index {
                        table: orders.clone()
                    },
                    "shop",
                    "sai"
                ),
                (&Object::View { table: orders }, "shop", "by_note"),
            ]
        );
        // The blank line inside the comment did not split the table.
        assert!(statements[2].cql.ends_with("gc_grace_seconds = 864000;"));
    }

    #[test]
    fn statements_become_if_not_exists() {
        let statements = parse(SCHEMA);
        assert!(
            statements[0]
                .if_not_exists()
                .starts_with("CREATE KEYSPACE IF NOT EXISTS shop WITH")
        );
        assert!(
            statements[2]
                .if_not_exists()
                .starts_with("CREATE TABLE IF NOT EXISTS shop.\"Orders\" (")
        );
        assert!(
            statements[4]
                .if_not_exists()
                .starts_with("CREATE CUSTOM INDEX IF NOT EXISTS sai ON")
        );
        let again = Statement {
            cql: statements[0].if_not_exists(),
            ..statements[0].clone()
        };
        assert_eq!(again.if_not_exists(), again.cql);
    }

    #[test]
    fn replication_maps_are_read_with_their_place() {
        let cql = "CREATE KEYSPACE shop WITH replication = {'class': 'org.apache.cassandra.locator.NetworkTopologyStrategy', 'dc1': '3', 'dc2': '1'}  AND durable_writes = true;";
        let (range, map) = replication(cql).unwrap();
        assert!(cql[range].starts_with("{'class'"));
        assert_eq!(map.get("dc1").map(String::as_str), Some("3"));
        assert_eq!(map.len(), 3);
    }

    #[test]
    fn a_renamed_datacenter_gets_the_source_replication_factor() {
        let schema = "CREATE KEYSPACE shop WITH replication = {'class': 'org.apache.cassandra.locator.NetworkTopologyStrategy', 'dc1': '3', 'dc2': '1', 'analytics': '2'}  AND durable_writes = true;\n\n\
CREATE KEYSPACE simple WITH replication = {'class': 'org.apache.cassandra.locator.SimpleStrategy', 'replication_factor': '1'}  AND durable_writes = true;\n\n\
CREATE KEYSPACE elsewhere WITH replication = {'class': 'NetworkTopologyStrategy', 'dc2': '3'}  AND durable_writes = true;\n\n\
CREATE TABLE shop.t (id int PRIMARY KEY);\n\n";
        let statements = parse(schema);
        // The target cluster has datacenters `east` (restored into) and
        // `analytics`; dc2 does not exist there.
        let target_dcs: BTreeSet<String> = ["east".into(), "analytics".into()].into();
        let (out, rewrites) = rename_datacenter(&statements, "dc1", "east", &target_dcs);
        assert_eq!(rewrites.len(), 1, "{rewrites:?}");
        assert_eq!(rewrites[0].keyspace, "shop");
        assert_eq!(
            out[0].cql,
            "CREATE KEYSPACE shop WITH replication = {'analytics': '2', 'class': 'org.apache.cassandra.locator.NetworkTopologyStrategy', 'east': '3'}  AND durable_writes = true;"
        );
        assert!(
            rewrites[0]
                .to_string()
                .contains("becomes {'analytics': '2', 'class'")
        );
        // SimpleStrategy, a keyspace dc1 did not hold, and tables: unchanged.
        assert_eq!(out[1..], statements[1..]);
        // The same datacenter name: nothing to rewrite.
        let (same, none) = rename_datacenter(&statements, "dc1", "dc1", &target_dcs);
        assert_eq!(same, statements);
        assert!(none.is_empty());
    }

    #[test]
    fn replication_compares_without_the_class_package() {
        let a: Replication = [
            (
                "class".to_string(),
                "org.apache.cassandra.locator.NetworkTopologyStrategy".to_string(),
            ),
            ("dc1".to_string(), "3".to_string()),
        ]
        .into();
        let mut b: Replication = [
            ("class".to_string(), "NetworkTopologyStrategy".to_string()),
            ("dc1".to_string(), "3".to_string()),
        ]
        .into();
        assert!(same_replication(&a, &b));
        b.insert("dc1".into(), "1".into());
        assert!(!same_replication(&a, &b));
    }
}
