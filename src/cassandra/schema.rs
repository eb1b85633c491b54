//! The backed-up schema (`DESCRIBE KEYSPACE` output) read back: which
//! statement creates what, and the same statement made safe to run against
//! a live cluster (`IF NOT EXISTS`: it creates what is missing and never
//! changes what exists).

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
}
