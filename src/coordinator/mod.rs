//! The coordinator: the passes that span a whole datacenter (backup,
//! restore, purge), each planned and then carried out against the agents
//! and the store. So far: the datacenter lease ([`lease`]) and the typed
//! agent client ([`client`]); the passes arrive with their issues.

pub mod client;
pub mod lease;
