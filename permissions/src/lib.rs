//! oncall's permission model: who may run which command, on what, where.
//!
//! Principals are immutable platform identities ([`Principal`]); a [`Policy`]
//! binds them to roles whose grants allow verbs on scopes in channels, and
//! approval rules ask for a second person. [`Policy::evaluate`] returns a
//! [`Decision`] that always names the rule that decided.
//!
//! This crate is pure on purpose: no IO and no async, so every rule is tested
//! by tables (see `tests/policy_table.rs`).

mod policy;
mod principal;

pub use policy::{
    ApprovalRule, Binding, Decision, Grant, Person, Policy, PolicyError, Reason, Request, Role,
    Selector, Target, ANY, RULE_SEPARATOR,
};
pub use principal::{Principal, PrincipalError, PrincipalKind};
