//! Kubernetes glue of the coordinator beyond finding the agents (which is
//! [`crate::coordinator::discovery`]): telling Kubernetes what a pass is
//! doing, as Events on the Job that runs it ([`events`]), so that
//! `kubectl describe job` shows a run's story without its logs.
//!
//! Everything here is best effort by design: a pass never fails, and never
//! waits long, because Kubernetes could not be told about it.

pub mod events;

pub use events::{Events, Reason};
