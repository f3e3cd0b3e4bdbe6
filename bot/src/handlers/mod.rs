//! One file per command: each turns a typed command (and, for operations, a
//! kube client and the catalog entry) into a [`Handled`] reply.

pub mod approvals;
pub mod can;
pub mod help;
pub mod history;
pub mod restart;
pub mod scale;
pub mod status;
pub mod whoami;

use oncall_commands::Command;
use oncall_permissions::Reason;

use crate::reply::{Outcome, Reply};

/// The reply to a policy denial: what was refused and which rule decided.
pub fn denied(command: &Command, reason: &Reason) -> Reply {
    Reply::new(Outcome::Denied, format!("Not allowed: {command}"))
        .text(reason.explanation.clone())
        .fields(vec![("Decided by".into(), reason.rule.clone())])
        .text("Ask an admin to grant it, or check with `/oncall whoami`.")
}
