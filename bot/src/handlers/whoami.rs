//! `whoami`: the caller's principal, groups and roles, as the policy sees them.

use crate::model::{Handled, Invocation};
use crate::reply::{Outcome, Reply};
use super::{Context, Handle, Refusal};

impl Handle for oncall_grammar::Whoami {
    async fn handle(&self, cx: &Context<'_>) -> Result<Handled, Refusal> {
        Ok(run(cx, cx.inv))
    }
}

pub fn run(cx: &Context<'_>, inv: &Invocation) -> Handled {
    let principals = inv.principals();
    let roles = cx.policy().roles_of(&principals);
    let groups = if inv.groups.is_empty() {
        "none".to_string()
    } else {
        inv.groups
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let roles = if roles.is_empty() {
        "none (every command is denied)".to_string()
    } else {
        roles.join(", ")
    };
    Handled::info(
        Reply::new(Outcome::Info, format!("You are {}", inv.principal)).fields(vec![
            ("Principal".into(), inv.principal.to_string()),
            ("Groups".into(), groups),
            ("Roles".into(), roles),
            ("Channel".into(), inv.channel_scope()),
        ]),
    )
}
