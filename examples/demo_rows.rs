//! Sample data for `make demo`: rows whose content is derived from their
//! key, so any row can be checked without keeping a copy.
//!
//!     demo_rows load  <nodes> <keyspace> <from> <to>   create schema, write rows
//!     demo_rows check <nodes> <keyspace> <from> <to>   every row present and right
//!     demo_rows damage <nodes> <keyspace>              delete rows, drop a table
//!     demo_rows bulk  <nodes> <keyspace> <from> <to> <payload bytes>
//!                                                      incompressible rows, for benchmarks
//!     demo_rows drop  <nodes> <keyspace>               drop the keyspace
//!
//! `<nodes>` is a comma-separated list of CQL contact points (`host:port`).

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::statement::Consistency;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("demo_rows: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo_rows: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &[String]) -> Result<()> {
    let [command, nodes, keyspace, rest @ ..] = args else {
        bail!("usage: demo_rows load|check|damage <nodes> <keyspace> [from to]");
    };
    let session = connect(nodes).await?;
    let range = || -> Result<(i32, i32)> {
        match rest {
            [from, to] => Ok((from.parse()?, to.parse()?)),
            _ => bail!("{command} needs <from> <to>"),
        }
    };
    match command.as_str() {
        "load" => {
            let (from, to) = range()?;
            create_schema(&session, keyspace).await?;
            load(&session, keyspace, from, to).await
        }
        "check" => {
            let (from, to) = range()?;
            check(&session, keyspace, from, to).await
        }
        "damage" => damage(&session, keyspace).await,
        "drop" => {
            session
                .query_unpaged(format!("DROP KEYSPACE IF EXISTS {keyspace}"), ())
                .await?;
            println!("dropped {keyspace}");
            Ok(())
        }
        "bulk" => match rest {
            [from, to, payload] => {
                create_schema(&session, keyspace).await?;
                bulk(
                    &session,
                    keyspace,
                    from.parse()?,
                    to.parse()?,
                    payload.parse()?,
                )
                .await
            }
            _ => bail!("bulk needs <from> <to> <payload bytes>"),
        },
        other => bail!("unknown command {other:?}"),
    }
}

async fn connect(nodes: &str) -> Result<Session> {
    let mut builder = SessionBuilder::new();
    for node in nodes.split(',') {
        builder = builder.known_node(node);
    }
    builder.build().await.context("connecting to Cassandra")
}

async fn create_schema(session: &Session, ks: &str) -> Result<()> {
    for ddl in [
        format!(
            "CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = {{'class': 'NetworkTopologyStrategy', 'dc1': 3}}"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.customers (id int PRIMARY KEY, name text, email text)"
        ),
        format!("CREATE INDEX IF NOT EXISTS customers_by_email ON {ks}.customers (email)"),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.orders (customer int, seq int, total bigint, note text, PRIMARY KEY (customer, seq))"
        ),
    ] {
        session
            .query_unpaged(ddl, ())
            .await
            .context("creating the schema")?;
    }
    Ok(())
}

/// The content of row `id`: a function of the key alone.
fn customer(id: i32) -> (String, String) {
    (format!("customer {id}"), format!("c{id}@example.com"))
}

fn order(customer: i32, seq: i32) -> (i64, String) {
    (
        i64::from(customer) * 1000 + i64::from(seq),
        format!("order {seq} of {customer}"),
    )
}

async fn load(session: &Session, ks: &str, from: i32, to: i32) -> Result<()> {
    let mut customers = session
        .prepare(format!(
            "INSERT INTO {ks}.customers (id, name, email) VALUES (?, ?, ?)"
        ))
        .await?;
    customers.set_consistency(Consistency::All);
    let mut orders = session
        .prepare(format!(
            "INSERT INTO {ks}.orders (customer, seq, total, note) VALUES (?, ?, ?, ?)"
        ))
        .await?;
    orders.set_consistency(Consistency::All);
    for id in from..to {
        let (name, email) = customer(id);
        session
            .execute_unpaged(&customers, (id, name, email))
            .await?;
        for seq in 0..3 {
            let (total, note) = order(id, seq);
            session
                .execute_unpaged(&orders, (id, seq, total, note))
                .await?;
        }
    }
    println!("loaded customers {from}..{to} (and 3 orders each) into {ks}");
    Ok(())
}

async fn check(session: &Session, ks: &str, from: i32, to: i32) -> Result<()> {
    let mut customers = session
        .prepare(format!(
            "SELECT name, email FROM {ks}.customers WHERE id = ?"
        ))
        .await?;
    customers.set_consistency(Consistency::All);
    let mut orders = session
        .prepare(format!(
            "SELECT seq, total, note FROM {ks}.orders WHERE customer = ?"
        ))
        .await?;
    orders.set_consistency(Consistency::All);
    let mut wrong = 0u32;
    for id in from..to {
        let row = session
            .execute_unpaged(&customers, (id,))
            .await?
            .into_rows_result()?
            .maybe_first_row::<(String, String)>()?;
        if row != Some(customer(id)) {
            wrong += 1;
        }
        let rows: Vec<(i32, i64, String)> = session
            .execute_unpaged(&orders, (id,))
            .await?
            .into_rows_result()?
            .rows::<(i32, i64, String)>()?
            .collect::<Result<_, _>>()?;
        let expected: Vec<(i32, i64, String)> = (0..3)
            .map(|seq| {
                let (total, note) = order(id, seq);
                (seq, total, note)
            })
            .collect();
        if rows != expected {
            wrong += 1;
        }
    }
    if wrong > 0 {
        bail!(
            "{wrong} of {} customers (with their orders) are missing or wrong",
            to - from
        );
    }
    println!(
        "all {} customers and {} orders of {ks} are present and correct (read at consistency ALL)",
        to - from,
        3 * (to - from)
    );
    Ok(())
}

/// Rows of `payload` pseudo-random bytes (xorshift: SSTable compression
/// cannot shrink them), written 64 at a time.
async fn bulk(session: &Session, ks: &str, from: i32, to: i32, payload: usize) -> Result<()> {
    session
        .query_unpaged(
            format!("CREATE TABLE IF NOT EXISTS {ks}.blobs (id int PRIMARY KEY, data blob)"),
            (),
        )
        .await?;
    let insert = session
        .prepare(format!("INSERT INTO {ks}.blobs (id, data) VALUES (?, ?)"))
        .await?;
    let ids: Vec<i32> = (from..to).collect();
    for chunk in ids.chunks(64) {
        let writes = chunk.iter().map(|&id| {
            let mut x = (id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            let data: Vec<u8> = (0..payload)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            session.execute_unpaged(&insert, (id, data))
        });
        for result in futures::future::join_all(writes).await {
            result?;
        }
    }
    println!(
        "wrote {} rows of {payload} bytes into {ks}.blobs",
        to - from
    );
    Ok(())
}

async fn damage(session: &Session, ks: &str) -> Result<()> {
    let mut delete = session
        .prepare(format!("DELETE FROM {ks}.customers WHERE id = ?"))
        .await?;
    delete.set_consistency(Consistency::All);
    for id in (0..1000).step_by(7) {
        session.execute_unpaged(&delete, (id,)).await?;
    }
    session
        .query_unpaged(format!("DROP TABLE {ks}.orders"), ())
        .await?;
    println!("deleted every 7th customer and dropped {ks}.orders");
    Ok(())
}
