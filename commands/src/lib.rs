//! oncall's command language and the operations it runs.
//!
//! - [`grammar`]: text → typed [`Command`]; pure, no IO, no async. The same
//!   table drives parsing, `help` and the README's command reference.
//! - [`catalog`]: the services people name, and their bounds. Pure data.
//! - [`rollout`]: kubectl's rollout-status algorithm over a Deployment. Pure.
//! - [`ops`]: the actions themselves, through kube-rs. This is the only
//!   module here that does IO.

pub mod catalog;
pub mod grammar;
pub mod ops;
pub mod redact;
pub mod rollout;

pub use catalog::Scope;
pub use catalog::{Catalog, ServiceEntry};
pub use grammar::{parse, validate, Command, HistoryFilter, LogsRequest, ParseError, Parsed};
