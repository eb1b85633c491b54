//! Node-local knowledge of Cassandra: how its data directories are laid
//! out, what a snapshot contains, and how to drive the node (flush,
//! snapshot, clear). The agent uses this module; nothing here talks to
//! storage; only [`cql`] (the coordinator's) talks to other nodes.
//!
//! - [`snapshot`] — the inventory of a snapshot's files across every data
//!   directory (JBOD), secondary-index subfolders included.
//! - [`control`] — flush / snapshot / clear through `nodetool` (Jolokia and
//!   the Management API arrive with the agent).
//! - [`digest_cache`] — BLAKE3/CRC32C of files keyed by (device, inode,
//!   size, mtime): SSTables are immutable, so an unchanged node is hashed
//!   once and a differential backup of it reads zero data bytes.
//! - [`cql`] — the coordinator's CQL view: each node's host id, tokens and
//!   rack, the datacenter's members, and the schema.
//! - [`schema`] — the backed-up schema read back, statement by statement.

pub mod control;
pub mod cql;
pub mod digest_cache;
pub mod schema;
pub mod snapshot;
