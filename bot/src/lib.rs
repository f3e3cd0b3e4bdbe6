//! oncall, the bot: configuration, the router, the store, the handlers, and
//! the adapters that bring requests in (console, Slack, Discord).
//!
//! Map of the crate:
//! - [`config`]: the TOML configuration and its validation.
//! - [`router`]: invocation → parse → authorize → approve/execute → record → reply.
//! - [`handlers`]: one file per command.
//! - [`reply`]: the platform-neutral reply and its console rendering.
//! - [`store`]: SQLite history, idempotency keys and approvals.
//! - [`console`]: the interactive console of `oncall demo`.
//! - [`server`]: the HTTP server of `oncall serve`.
//! - [`slack`]: the Slack adapter (slash commands, buttons, events).
//! - [`discord`]: the Discord adapter (interactions endpoint and gateway).
//! - [`inbound`]: size limits, timestamp checks and refusals shared by adapters.
//! - [`election`]: the leader Lease (one replica runs the engine).
//! - [`metrics`]: Prometheus counters and gauges at `/metrics`.
//! - [`logging`]: text or JSON log lines (`ONCALL_LOG_FORMAT`).
//! - [`app`]: wiring for the CLI's subcommands.
//! - [`backup`]: `oncall backup` / `oncall restore` of the SQLite file.

pub mod alerts;
pub mod app;
pub mod backup;
pub mod chat;
pub mod config;
pub mod console;
pub mod context;
pub mod courier;
pub mod directory;
pub mod discord;
pub mod election;
pub mod escalation;
pub mod handlers;
pub mod http_retry;
pub mod inbound;
pub mod incidents;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod pins;
#[cfg(test)]
mod properties;
pub mod rate_limit;
pub mod reply;
pub mod router;
pub mod server;
pub mod slack;
pub mod store;
pub mod supervisor;
