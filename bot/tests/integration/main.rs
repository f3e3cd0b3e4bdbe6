//! oncall's integration tests, in one test binary so the shared harness
//! (`common`: the simulated cluster, real SQLite files, fake Slack and
//! Discord servers) is compiled once. Each module drives one surface:
//!
//! - `router`, `approvals`, `operations`: the pipeline and every runbook
//!   operation, through the router, against the simulator;
//! - `slack`, `discord`: the adapters over real HTTP against fake platforms;
//! - `cli`, `shutdown`: the `oncall` binary as users run it;
//! - `reliability`: the binary under load and abuse (kill -9, retries,
//!   bad input at volume, slow and failing dependencies);
//! - `readme`: the README, the Slack manifest and CI stay true to the code.

mod common;

mod alert_cards;
mod alerts;
mod approvals;
mod chat_sink;
mod cli;
mod courier;
mod deploy;
mod discord;
mod election;
mod escalation;
mod incidents;
mod kubectl;
mod operability;
mod operations;
mod paging_crash;
mod paging_providers;
mod postgres;
mod readme;
mod reliability;
mod router;
mod shutdown;
mod slack;
