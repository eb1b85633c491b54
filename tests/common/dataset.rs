//! A known dataset for end-to-end tests: every row's content is derived
//! from its key, so any table can be checked against what it must hold
//! without keeping a copy.

use std::collections::BTreeMap;

use scylla::client::session::Session;
use scylla::statement::Consistency;

use super::create_keyspace;
use super::dc::nodetool_everywhere;

/// Keyspaces of one test: a users table with a secondary index and
/// payloads, an events table with clustering rows, and a second keyspace.
pub struct Dataset {
    pub main: String,
    pub other: String,
}

impl Dataset {
    pub async fn create(session: &Session) -> Self {
        let main = create_keyspace(session, "bk_").await;
        let other = create_keyspace(session, "bk2_").await;
        for ddl in [
            format!("CREATE TABLE {main}.users (id int PRIMARY KEY, email text, payload blob)"),
            format!("CREATE INDEX users_by_email ON {main}.users (email)"),
            format!(
                "CREATE TABLE {main}.events (day int, seq int, body text, PRIMARY KEY (day, seq))"
            ),
            format!("CREATE TABLE {other}.items (id int PRIMARY KEY, v text)"),
        ] {
            session.query_unpaged(ddl, ()).await.expect("create schema");
        }
        Self { main, other }
    }

    pub fn keyspaces(&self) -> [&str; 2] {
        [&self.main, &self.other]
    }

    /// Writes rows `from..to` into every table; `payload` bytes each.
    pub async fn write(&self, session: &Session, from: i32, to: i32, payload: usize) {
        let users = session
            .prepare(format!(
                "INSERT INTO {}.users (id, email, payload) VALUES (?, ?, ?)",
                self.main
            ))
            .await
            .unwrap();
        let events = session
            .prepare(format!(
                "INSERT INTO {}.events (day, seq, body) VALUES (?, ?, ?)",
                self.main
            ))
            .await
            .unwrap();
        let items = session
            .prepare(format!(
                "INSERT INTO {}.items (id, v) VALUES (?, ?)",
                self.other
            ))
            .await
            .unwrap();
        for id in from..to {
            let blob = incompressible(id as u64, payload);
            let email = format!("user{id}@example.com");
            session
                .execute_unpaged(&users, (id, email, blob))
                .await
                .unwrap();
            session
                .execute_unpaged(&events, (id % 7, id, format!("event {id}")))
                .await
                .unwrap();
            session
                .execute_unpaged(&items, (id, format!("item {id}")))
                .await
                .unwrap();
        }
    }

    pub fn flush(&self) {
        for keyspace in self.keyspaces() {
            nodetool_everywhere(&["flush", keyspace]);
        }
    }
}

/// Bytes that SSTable compression cannot shrink (xorshift from `seed`),
/// so the data on disk is as large as the test means it to be.
pub fn incompressible(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// What a table holds, read at consistency ALL.
pub type Rows<V> = BTreeMap<i32, V>;

impl Dataset {
    /// The users row `id` as written with `payload` bytes.
    pub fn user(id: i32, payload: usize) -> (String, Vec<u8>) {
        (
            format!("user{id}@example.com"),
            incompressible(id as u64, payload),
        )
    }

    /// Every users row, at consistency ALL.
    pub async fn users(&self, session: &Session) -> Rows<(String, Vec<u8>)> {
        let mut query = scylla::statement::unprepared::Statement::new(format!(
            "SELECT id, email, payload FROM {}.users",
            self.main
        ));
        query.set_consistency(Consistency::All);
        query.set_page_size(500);
        // Rows written without a payload read back with an empty one.
        let rows: Vec<(i32, String, Option<Vec<u8>>)> = collect(session, query).await;
        rows.into_iter()
            .map(|(id, e, p)| (id, (e, p.unwrap_or_default())))
            .collect()
    }

    /// Every items row, at consistency ALL.
    pub async fn items(&self, session: &Session) -> Rows<String> {
        let mut query = scylla::statement::unprepared::Statement::new(format!(
            "SELECT id, v FROM {}.items",
            self.other
        ));
        query.set_consistency(Consistency::All);
        let rows: Vec<(i32, String)> = collect(session, query).await;
        rows.into_iter().collect()
    }

    /// Every events row as (day, seq) → body, at consistency ALL.
    pub async fn events(&self, session: &Session) -> BTreeMap<(i32, i32), String> {
        let mut query = scylla::statement::unprepared::Statement::new(format!(
            "SELECT day, seq, body FROM {}.events",
            self.main
        ));
        query.set_consistency(Consistency::All);
        let rows: Vec<(i32, i32, String)> = collect(session, query).await;
        rows.into_iter().map(|(d, s, b)| ((d, s), b)).collect()
    }

    /// What `write(from, to, payload)` put in users.
    pub fn expected_users(from: i32, to: i32, payload: usize) -> Rows<(String, Vec<u8>)> {
        (from..to).map(|id| (id, Self::user(id, payload))).collect()
    }

    pub fn expected_items(from: i32, to: i32) -> Rows<String> {
        (from..to).map(|id| (id, format!("item {id}"))).collect()
    }

    pub fn expected_events(from: i32, to: i32) -> BTreeMap<(i32, i32), String> {
        (from..to)
            .map(|id| ((id % 7, id), format!("event {id}")))
            .collect()
    }
}

async fn collect<R>(session: &Session, query: scylla::statement::unprepared::Statement) -> Vec<R>
where
    R: for<'f, 'm> scylla::deserialize::row::DeserializeRow<'f, 'm>,
{
    use futures::TryStreamExt;
    session
        .query_iter(query, ())
        .await
        .expect("query")
        .rows_stream::<R>()
        .expect("row types")
        .try_collect()
        .await
        .expect("read rows")
}
