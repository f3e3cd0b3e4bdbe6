//! `can <principal> <command…>`: explains the policy decision for someone
//! else, here, without running anything.

use oncall_grammar::Command;
use oncall_permissions::{Decision, Principal};

use crate::model::{Handled, Invocation};
use crate::reply::{Outcome, Reply};
use super::{Context, Handle, Refusal};

impl Handle for oncall_grammar::Can {
    async fn handle(&self, cx: &Context<'_>) -> Result<Handled, Refusal> {
        Ok(run(cx, cx.inv, &self.principal, &self.command))
    }
}

pub fn run(cx: &Context<'_>, inv: &Invocation, principal: &str, command: &Command) -> Handled {
    let principal: Principal = match principal.parse() {
        Ok(p) => p,
        Err(e) => return Handled::failed("Not a principal", e),
    };
    let scope = match cx.catalog().scope(command) {
        Ok(scope) => scope,
        Err(name) => {
            return Handled::failed("Unknown target", format!("`{name}` is not in the catalog"))
        }
    };
    let channel = inv.channel_scope();
    let decision = cx.authorize(std::slice::from_ref(&principal), &channel, command, &scope);
    let (verdict, outcome_line) = match &decision {
        Decision::Allow { .. } => (
            "yes",
            format!("{principal} may run `{command}` in {channel}."),
        ),
        Decision::Deny { .. } => (
            "no",
            format!("{principal} may not run `{command}` in {channel}."),
        ),
        Decision::NeedsApproval { approvers, .. } => (
            "with approval",
            format!(
                "{principal} may run `{command}` in {channel} once someone with role {} approves.",
                approvers.join(" or ")
            ),
        ),
    };
    let roles = cx.policy().roles_of(std::slice::from_ref(&principal));
    let reply = Reply::new(Outcome::Info, format!("Can {principal} run `{command}`? {verdict}"))
        .text(outcome_line)
        .fields(vec![
            ("Decided by".into(), decision.reason().rule.clone()),
            ("Why".into(), decision.reason().explanation.clone()),
            ("Direct roles".into(), if roles.is_empty() { "none".into() } else { roles.join(", ") }),
        ])
        .text("Group and platform-role memberships are only known when that person runs a command; this checks direct bindings.");
    Handled::info(reply)
}
