//! One file per command. Each implements [`Handle`] for its command type
//! from the grammar: given the typed command and a [`Context`] (the target,
//! its kube client, the clock, the store operations it needs), it produces a
//! [`Handled`] reply. [`execute`] dispatches through `dispatch!`, which
//! matches every command type, so a verb without a handler does not compile.
//! Files here are picked up by `automod`: a new handler is one new file.

automod::dir!(pub "src/handlers");

use oncall_grammar::Command;
use oncall_permissions::Reason;

pub use crate::context::{mismatch, Context, Refusal};
use crate::model::Handled;
use crate::reply::{Outcome, Reply};

/// A command type's handler. `Err` is a failure reply returned early (a
/// target that did not resolve, a cluster that can't be reached).
pub trait Handle {
    #[allow(async_fn_in_trait)]
    async fn handle(&self, cx: &Context<'_>) -> Result<Handled, Refusal>;
}

/// Runs an authorized command through its handler.
pub async fn execute(command: &Command, cx: &Context<'_>) -> Handled {
    oncall_grammar::dispatch!(command, c => c.handle(cx).await).unwrap_or_else(|refusal| *refusal.0)
}

/// The reply to a policy denial: what was refused and which rule decided.
pub fn denied(command: &Command, reason: &Reason) -> Reply {
    Reply::new(Outcome::Denied, format!("Not allowed: {command}"))
        .text(reason.explanation.clone())
        .fields(vec![("Decided by".into(), reason.rule.clone())])
        .text("Ask an admin to grant it, or check with `/oncall whoami`.")
}

/// kubectl's pod table for a code block.
pub(crate) fn pod_table(pods: &[oncall_ops::kubectl::PodRow]) -> String {
    let rows: Vec<Vec<String>> = pods
        .iter()
        .map(|p| {
            vec![
                p.name.clone(),
                p.ready.clone(),
                p.status.clone(),
                p.restarts.clone(),
                p.age.clone(),
            ]
        })
        .collect();
    crate::reply::table(&["NAME", "READY", "STATUS", "RESTARTS", "AGE"], &rows, 63)
}

/// The end of a mutating reply: for a dry run, that nothing changed;
/// otherwise how to follow the change and how to undo it.
pub(crate) fn follow_and_undo(
    reply: Reply,
    dry_run: bool,
    follow: Option<String>,
    undo: Option<String>,
) -> Reply {
    if dry_run {
        return reply.text("Nothing was changed (server-side dry run).");
    }
    let mut fields = Vec::new();
    if let Some(f) = follow {
        fields.push(("Follow".to_string(), f));
    }
    if let Some(u) = undo {
        fields.push(("Undo".to_string(), u));
    }
    reply.fields(fields)
}

/// A `before → after` line for lists.
pub(crate) fn arrow(before: &str, after: &str) -> String {
    format!("{before} → {after}")
}
