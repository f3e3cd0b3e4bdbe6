//! Escalation: who is on call, and paging tiers until someone acknowledges.
//!
//! - [`schedule`]: rotations and overrides in a time zone (pure).
//!
//! The engine's state lives in the store (one row per active escalation, a
//! page key per target and step), so a restart resumes where it stopped.

pub mod config;
pub mod engine;
pub mod inbound;
pub mod pager;
pub mod schedule;
