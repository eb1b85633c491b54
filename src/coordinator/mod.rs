//! The coordinator: the passes that span a whole datacenter (backup,
//! restore, purge), each planned and then carried out against the agents
//! and the store. So far it holds the datacenter lease ([`lease`]); the
//! passes arrive with their issues.

pub mod lease;
