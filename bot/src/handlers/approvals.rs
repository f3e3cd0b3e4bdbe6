//! Approvals: a request that needs a second person is held with a short id;
//! `approve <id>` by someone else with an approver role runs it exactly as
//! requested; `deny <id>` drops it. Requests expire. Each step is recorded.

use oncall_grammar::Command;
use oncall_permissions::{Decision, Principal, Reason};

use crate::model::{Actor, DecisionRecord, Handled};
use crate::reply::{Button, ButtonAction, ButtonStyle, Outcome, Reply};
use crate::store::{Approval, ApprovalState, NewInvocation};

use super::{Context, Handle, Refusal};

impl Handle for oncall_grammar::Approve {
    async fn handle(&self, cx: &Context<'_>) -> Result<Handled, Refusal> {
        let (mut handled, decision) = approve(cx, &self.id).await;
        handled.decision = Some(decision);
        Ok(handled)
    }
}

impl Handle for oncall_grammar::Deny {
    async fn handle(&self, cx: &Context<'_>) -> Result<Handled, Refusal> {
        let (mut handled, decision) = deny(cx, &self.id).await;
        handled.decision = Some(decision);
        Ok(handled)
    }
}

/// Holds a request for approval; returns the reply and the approval id.
pub async fn request(
    cx: &Context<'_>,
    command: &Command,
    rule: &str,
    approvers: &[String],
    reason: &Reason,
    invocation_id: Option<i64>,
) -> (Handled, Option<String>) {
    let inv = cx.inv;
    let now = cx.now;
    let ttl = cx.approval_ttl();
    let mut row = Approval {
        id: String::new(),
        created_at_ms: now.as_millisecond(),
        expires_at_ms: now.as_millisecond() + ttl.as_millis() as i64,
        requester: inv.principal.clone(),
        requester_groups: inv.groups.clone(),
        platform: inv.platform.as_str().to_string(),
        workspace: inv.workspace.clone(),
        channel: inv.channel.clone(),
        text: command.to_string(),
        command: command.clone(),
        rule: rule.to_string(),
        scope: Some(cx.catalog().fingerprint(cx.scope)),
        approvers: approvers.to_vec(),
        state: ApprovalState::Pending,
        decided_by: None,
        decided_at_ms: None,
        request_invocation_id: invocation_id,
        execution_invocation_id: None,
    };
    // Ids are short for typing; retry on the rare collision.
    let mut stored = Err("no free request id".to_string());
    for _ in 0..5 {
        row.id = new_id();
        match cx.insert_approval(&row).await {
            Ok(true) => {
                stored = Ok(());
                break;
            }
            Ok(false) => continue,
            Err(e) => {
                stored = Err(e.to_string());
                break;
            }
        }
    }
    if let Err(e) = stored {
        return (
            Handled::failed("Could not hold the request for approval", e),
            None,
        );
    }
    let id = row.id.clone();
    let ttl_text = humantime::format_duration(ttl).to_string();
    let reply = Reply::new(Outcome::Pending, format!("Approval needed: {command}"))
        .text(format!(
            "{} asked to run `{command}`. {}.",
            inv.principal, reason.explanation
        ))
        .fields(vec![
            ("Request".into(), id.clone()),
            ("Approvers".into(), approvers.join(" or ")),
            ("Expires in".into(), ttl_text),
            ("Approve".into(), format!("/oncall approve {id}")),
            ("Deny".into(), format!("/oncall deny {id}")),
        ])
        .buttons(vec![
            Button {
                label: "Approve".into(),
                action_id: ButtonAction::Approve,
                value: id.clone(),
                style: ButtonStyle::Primary,
                confirm: Some(format!(
                    "Run `{command}` as requested by {}?",
                    inv.principal
                )),
            },
            Button {
                label: "Deny".into(),
                action_id: ButtonAction::Deny,
                value: id.clone(),
                style: ButtonStyle::Danger,
                confirm: None,
            },
        ]);
    (
        Handled::ok(reply, format!("held for approval as {id}")),
        Some(id),
    )
}

fn new_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";
    let bytes = uuid::Uuid::new_v4().into_bytes();
    bytes[..6]
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

fn record(id: &str, decision: &str, reason: Option<String>) -> DecisionRecord {
    DecisionRecord {
        decision: decision.into(),
        rule: Some("approval".into()),
        reason,
        approval_id: Some(id.to_string()),
    }
}

fn refused(id: &str, title: String, why: String) -> (Handled, DecisionRecord) {
    (
        Handled::info(Reply::new(Outcome::Denied, title).text(why.clone())),
        record(id, "deny", Some(why)),
    )
}

/// Loads a pending approval and its requester, expiring it if its time is up.
async fn load_pending(
    cx: &Context<'_>,
    id: &str,
) -> Result<(Approval, Principal), (Handled, DecisionRecord)> {
    let now = cx.now.as_millisecond();
    let row = match cx.approval(id).await {
        Ok(Some(row)) => row,
        Ok(None) => return Err((
            Handled::info(
                Reply::new(Outcome::Invalid, format!("No request `{id}`")).text(
                    "Check the id in the approval message; ids are shown when a request is held.",
                ),
            ),
            record(id, "invalid", Some("unknown approval id".into())),
        )),
        Err(e) => {
            return Err((
                Handled::failed("Could not read the request", e),
                record(id, "none", None),
            ))
        }
    };
    if row.state == ApprovalState::Pending && row.expires_at_ms <= now {
        let _ = cx
            .decide_approval(id, ApprovalState::Expired, "oncall", now)
            .await;
        let at = jiff::Timestamp::from_millisecond(row.expires_at_ms)
            .map(|t| t.to_string())
            .unwrap_or_default();
        return Err(refused(
            id,
            format!("Request {id} has expired"),
            format!(
                "`{}` by {} expired at {at} without approval; ask again if it is still needed.",
                row.text, row.requester
            ),
        ));
    }
    if row.state != ApprovalState::Pending {
        let by = row.decided_by.clone().unwrap_or_else(|| "oncall".into());
        return Err(refused(
            id,
            format!("Request {id} was already {}", row.state),
            format!(
                "`{}` by {} was {} by {by}.",
                row.text, row.requester, row.state
            ),
        ));
    }
    let requester = row.requester.clone();
    Ok((row, requester))
}

/// Moves a pending request to `state` for this caller, exactly once: if
/// someone else decided it first, says so.
async fn decide(
    cx: &Context<'_>,
    id: &str,
    state: ApprovalState,
) -> Result<(), (Handled, DecisionRecord)> {
    let now = cx.now.as_millisecond();
    match cx
        .decide_approval(id, state, &cx.inv.principal.to_string(), now)
        .await
    {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(refused(
            id,
            format!("Request {id} was decided by someone else"),
            "It is no longer pending.".into(),
        )),
        Err(e) => Err((
            Handled::failed("Could not record the decision", e),
            record(id, "none", None),
        )),
    }
}

pub async fn approve(cx: &Context<'_>, id: &str) -> (Handled, DecisionRecord) {
    let inv = cx.inv;
    let (row, requester) = match load_pending(cx, id).await {
        Ok(found) => found,
        Err(out) => return out,
    };
    let policy = cx.policy();
    if let Err(reason) = policy.may_approve(&row.rule, &inv.principals(), &requester) {
        return refused(
            id,
            format!("You can't approve {id}"),
            format!("{} ({})", reason.explanation, reason.rule),
        );
    }
    let command: Command = row.command.clone();
    // The decision is made again on today's facts: the requester's groups
    // as their platform reports them now, the same objects as were asked
    // for, and the same approval rule the approver is approving.
    let groups: Vec<Principal> = match cx.current_groups(&row).await {
        Ok(groups) => groups,
        Err(why) => {
            return (
                Handled::failed(
                    format!("Could not re-check {id}; it is still pending and nothing ran"),
                    why,
                ),
                record(id, "none", None),
            )
        }
    };
    let mut requester_principals = vec![requester.clone()];
    requester_principals.extend(groups.iter().cloned());
    let scope = match cx.resolve_scope(&command).await {
        Ok(scope) => scope,
        Err(handled) => return (handled, record(id, "none", None)),
    };
    let now_acts_on = cx.catalog().fingerprint(&scope);
    if row.scope.as_deref() != Some(now_acts_on.as_str()) {
        let then = row
            .scope
            .clone()
            .unwrap_or_else(|| "(not recorded)".into());
        return refused(
            id,
            format!("Request {id} can no longer run as asked"),
            format!(
                "`{command}` was asked for on {then}; it would now act on {now_acts_on}. Nothing ran; ask again."
            ),
        );
    }
    let channel_scope = format!("{}:{}", row.platform, row.channel);
    match cx.authorize(&requester_principals, &channel_scope, &command, &scope) {
        Decision::Deny { reason } => {
            return refused(
                id,
                format!("Request {id} can no longer run"),
                format!("{requester} is no longer allowed to run `{command}`: {reason}"),
            );
        }
        Decision::NeedsApproval { rule, .. } if rule == row.rule => {}
        Decision::NeedsApproval { rule, .. } => {
            return refused(
                id,
                format!("Request {id} is now held for other rules"),
                format!(
                    "The policy changed: `{command}` is now held for approval rule {rule}, not {}. Nothing ran; ask again so the right approvers see it.",
                    row.rule
                ),
            );
        }
        Decision::Allow { .. } => {
            return refused(
                id,
                format!("Request {id} no longer needs approval"),
                format!(
                    "The policy changed: `{command}` is no longer held by approval rule {}. Nothing ran; {requester} can run it directly.",
                    row.rule
                ),
            );
        }
    }
    // The execution is its own history row, in the requester's name.
    let exec_row = NewInvocation {
        received_at_ms: cx.now.as_millisecond(),
        platform: row.platform.clone(),
        workspace: row.workspace.clone(),
        channel: row.channel.clone(),
        principal: row.requester.to_string(),
        groups: groups.iter().map(ToString::to_string).collect(),
        text: row.text.clone(),
        idempotency_key: None,
        facts: crate::router::facts_of(Some(&command)),
    };
    let actor = Actor {
        principal: requester.clone(),
        approved_by: Some(inv.principal.clone()),
    };
    // Consumed and started as one unit: if the row can't be written, the
    // request stays pending and nothing ran.
    let exec_id = match cx.consume_approval(id, &exec_row).await {
        Ok(Some(exec_id)) => exec_id,
        Ok(None) => {
            return refused(
                id,
                format!("Request {id} was decided by someone else"),
                "It is no longer pending.".into(),
            )
        }
        Err(e) => {
            return (
                Handled::failed(
                    format!("Could not start {id}; it is still pending and nothing ran"),
                    e,
                ),
                record(id, "none", None),
            )
        }
    };
    let mut handled = cx.run_approved(&row, exec_id, &scope, &actor).await;
    handled.reply.title = format!("Approved {id}: {}", handled.reply.title);
    handled.reply = handled.reply.text(format!(
        "Requested by {requester}, approved by {}.",
        inv.principal
    ));
    handled.summary = Some(format!("approved {id}"));
    (
        handled,
        record(
            id,
            "allow",
            Some(format!(
                "{} may approve for rule {}",
                inv.principal, row.rule
            )),
        ),
    )
}

pub async fn deny(cx: &Context<'_>, id: &str) -> (Handled, DecisionRecord) {
    let inv = cx.inv;
    let (row, requester) = match load_pending(cx, id).await {
        Ok(found) => found,
        Err(out) => return out,
    };
    // The requester may withdraw their own request; otherwise an approver decides.
    let withdrawing = cx.policy().same_person(&inv.principal, &requester);
    if !withdrawing {
        if let Err(reason) = cx.policy().may_approve(&row.rule, &inv.principals(), &requester)
        {
            return refused(
                id,
                format!("You can't deny {id}"),
                format!("{} ({})", reason.explanation, reason.rule),
            );
        }
    }
    if let Err(out) = decide(cx, id, ApprovalState::Denied).await {
        return out;
    }
    let what = if withdrawing { "withdrawn" } else { "denied" };
    let reply = Reply::new(Outcome::Done, format!("Request {id} {what}")).text(format!(
        "`{}` requested by {} was {what} by {}. Nothing was run.",
        row.text, row.requester, inv.principal
    ));
    (
        Handled::ok(reply, format!("{what} {id}")),
        record(id, "allow", None),
    )
}
