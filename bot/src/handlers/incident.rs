//! The `incident` verbs: declare, the lifecycle, and the reads.
//!
//! Each change goes through the store's guarded [`IncidentChange`], which
//! applies it and appends its timeline event in one transaction only if the
//! incident is still in a state that allows it; when it is not, the answer
//! says what the incident is instead ("already resolved at 14:02 by …").
//! Severities and roles come from `[incidents]`; an unknown one is answered
//! with the configured list and the verb's usage.

use oncall_grammar::{
    IncidentAck, IncidentAssign, IncidentDeclare, IncidentList, IncidentNote, IncidentPostmortem,
    IncidentReopen, IncidentResolve, IncidentSev, IncidentShow, IncidentStatus, IncidentTimeline,
    IncidentUpdate, VerbSpec,
};

use super::{Context, Handle, Refusal};
use crate::incidents::{self, clock_time, label, SeverityConfig, Which};
use crate::chat::FileUpload;
use crate::model::Handled;
use crate::reply::{Outcome, Reply};
use crate::store::{Incident, IncidentChange, NewEvent, NewIncident, StoreError};

/// A bad value: one sentence and the verb's usage; nothing changed.
pub(super) fn invalid(spec: &'static VerbSpec, message: impl Into<String>) -> Refusal {
    let message = message.into();
    Handled {
        reply: Reply::new(Outcome::Invalid, message.clone())
            .code(None, format!("usage: /oncall {}", spec.usage())),
        summary: None,
        error: Some(message),
        decision: None,
    }
    .into()
}

/// The configured severity a word names, or the answer listing them.
fn severity<'a>(
    cx: &Context<'a>,
    spec: &'static VerbSpec,
    word: &str,
) -> Result<&'a SeverityConfig, Refusal> {
    let config = cx.incidents_config();
    config.severity(word).ok_or_else(|| {
        invalid(
            spec,
            format!(
                "`{word}` is not a severity here: one of {}.",
                config.severity_list()
            ),
        )
    })
}

pub(super) fn store_failed(e: StoreError) -> Refusal {
    Handled::failed("The incident store is unavailable; nothing changed", e).into()
}

fn now_ms(cx: &Context<'_>) -> i64 {
    cx.now.as_millisecond()
}

pub(super) fn event(cx: &Context<'_>, kind: &'static str, text: impl Into<String>) -> NewEvent {
    NewEvent {
        at_ms: now_ms(cx),
        actor: cx.actor.principal.to_string(),
        kind,
        text: text.into(),
        invocation_id: cx.invocation_id(),
    }
}

/// The incident a command means, or the answer saying which to name.
pub(super) async fn target(
    cx: &Context<'_>,
    spec: &'static VerbSpec,
    number: Option<u32>,
) -> Result<Incident, Refusal> {
    let found = incidents::which(
        cx.incident_store(),
        number,
        cx.inv.platform.as_str(),
        &cx.inv.channel,
    )
    .await
    .map_err(store_failed)?;
    match found {
        Which::Found(i) => Ok(*i),
        Which::Unknown(n) => Err(invalid(spec, format!("There is no incident {n}."))),
        Which::NoneOpen => Err(invalid(
            spec,
            "No incident is open; name one by number (`incident list` shows them).",
        )),
        Which::Ambiguous(open) => {
            let names: Vec<String> = open.iter().map(label).collect();
            Err(invalid(
                spec,
                format!(
                    "{} incidents are open ({}); say which, e.g. `{} {}`.",
                    open.len(),
                    names.join("; "),
                    spec.name,
                    open[0].id
                ),
            ))
        }
    }
}

/// Why a change did not apply: what the incident is now.
fn not_applied(spec: &'static VerbSpec, now: Option<Incident>, what: &str) -> Refusal {
    let Some(i) = now else {
        return invalid(spec, "That incident no longer exists.");
    };
    let message = match (&i.resolved_at_ms, &i.resolved_by) {
        (Some(at), Some(by)) if i.is_resolved() => format!(
            "Incident {} is already resolved (at {} by {by}); {what}",
            i.id,
            clock_time(*at)
        ),
        _ => match (&i.acknowledged_at_ms, &i.acknowledged_by) {
            (Some(at), Some(by)) => format!(
                "Incident {} was already acknowledged at {} by {by}.",
                i.id,
                clock_time(*at)
            ),
            _ => format!("Incident {} is not resolved; {what}", i.id),
        },
    };
    Handled::info(Reply::new(Outcome::Info, message)).into()
}

/// Applies a guarded change, or explains why it did not apply.
async fn change(
    cx: &Context<'_>,
    spec: &'static VerbSpec,
    incident: &Incident,
    change: IncidentChange,
    event: NewEvent,
    refused: &str,
) -> Result<Incident, Refusal> {
    let store = cx.incident_store();
    match store
        .change_incident(incident.id, &change, &event)
        .await
        .map_err(store_failed)?
    {
        Some(now) => Ok(now),
        None => {
            let now = store.incident(incident.id).await.map_err(store_failed)?;
            Err(not_applied(spec, now, refused))
        }
    }
}

fn done(i: &Incident, title: String, line: String) -> Handled {
    Handled::ok(
        Reply::new(Outcome::Done, title).text(line.clone()),
        format!("incident {}: {line}", i.id),
    )
}

impl Handle for IncidentDeclare {
    async fn handle(&self, cx: &Context<'_>) -> Result<Handled, Refusal> {
        let spec = &oncall_grammar::INCIDENT_DECLARE;
        let config = cx.incidents_config();
        let severity = severity(cx, spec, &self.severity)?;
        let at = now_ms(cx);
        let new = NewIncident {
            title: self.title.clone(),
            severity: severity.name.clone(),
            services: self.services.clone(),
            at_ms: at,
            by: cx.actor.principal.to_string(),
            platform: cx.inv.platform.as_str().to_string(),
            workspace: cx.inv.workspace.clone(),
            declared_in: cx.inv.channel.clone(),
            next_reminder_at_ms: config.next_reminder(&severity.name, at),
            commander: config
                .has_role("commander")
                .then(|| cx.actor.principal.to_string()),
            own_channel: config.own_channels,
            escalation: severity
                .escalation
                .as_deref()
                .and_then(|p| cx.escalation_config().snapshot(p)),
            escalation_at_ms: None,
        };
        let mut text = format!("declared {} {}", severity.name, self.title);
        if let Some(c) = &new.commander {
            text.push_str(&format!("; {c} is commander"));
        }
        let incident = cx
            .incident_store()
            .declare_incident(&new, &event(cx, "declared", text))
            .await
            .map_err(store_failed)?;
        let mut fields = vec![
            ("Severity".to_string(), format!("{} ({})", severity.name, severity.description)),
            ("Respond within".to_string(), severity.response.clone()),
            ("Declared by".to_string(), incident.declared_by.clone()),
        ];
        if let Some(c) = &new.commander {
            fields.push(("Commander".into(), c.clone()));
        }
        if !incident.services.is_empty() {
            fields.push(("Services".into(), incident.services.join(", ")));
        }
        if let Some(every) = severity.update_every {
            fields.push((
                "Status updates".into(),
                format!("every {}", humantime::format_duration(every)),
            ));
        }
        if let Some(p) = &new.escalation {
            let tiers: Vec<&str> = p.tiers.iter().map(|t| t.name.as_str()).collect();
            fields.push(("Escalation".into(), format!("{}: {}", p.name, tiers.join(" → "))));
            cx.wake_escalation();
        }
        let id = incident.id;
        Ok(Handled::ok(
            Reply::new(Outcome::Done, format!("Incident {id} declared: {}", incident.title))
                .fields(fields)
                .text(format!(
                    "Next: `incident ack {id}`. `incident assign {id} <principal> commander` hands over command. Add `--incident {id}` to ops commands to put them on its timeline."
                )),
            format!("incident {id} declared ({})", incident.severity),
        ))
    }
}

impl Handle for IncidentAck {
    async fn handle(&self, cx: &Context<'_>) -> Result<Handled, Refusal> {
        let spec = &oncall_grammar::INCIDENT_ACK;
        let i = target(cx, spec, self.incident).await?;
        let i = change(
            cx,
            spec,
            &i,
            IncidentChange::Acknowledge,
            event(cx, "acknowledged", "acknowledged"),
            "a resolved incident can't be acknowledged.",
        )
        .await?;
        let after = i
            .acknowledged_at_ms
            .map(|at| incidents::minutes(at - i.declared_at_ms))
            .unwrap_or_default();
        Ok(done(
            &i,
            format!("Incident {} acknowledged", i.id),
            format!("{} acknowledged {} after it was declared", cx.actor.principal, after),
        ))
    }
}

impl Handle for IncidentStatus {
    async fn handle(&self, cx: &Context<'_>) -> Result<Handled, Refusal> {
        let spec = &oncall_grammar::INCIDENT_STATUS;
        if self.state == "resolved" {
            return IncidentResolve {
                incident: self.incident,
                summary: self.note.clone(),
            }
            .handle(cx)
            .await;
        }
        let i = target(cx, spec, self.incident).await?;
        let mut text = format!("status {} → {}", i.state, self.state);
        if let Some(note) = &self.note {
            text.push_str(&format!(": {note}"));
        }
        let next = cx.incidents_config().next_reminder(&i.severity, now_ms(cx));
        let i = change(
            cx,
            spec,
            &i,
            IncidentChange::State {
                state: self.state.clone(),
                next_reminder_at_ms: next,
            },
            event(cx, "status", text.clone()),
            "`incident reopen` it first.",
        )
        .await?;
        Ok(done(&i, format!("Incident {} is {}", i.id, i.state), text))
    }
}

impl Handle for IncidentUpdate {
    async fn handle(&self, cx: &Context<'_>) -> Result<Handled, Refusal> {
        let spec = &oncall_grammar::INCIDENT_UPDATE;
        let i = target(cx, spec, self.incident).await?;
        let next = cx.incidents_config().next_reminder(&i.severity, now_ms(cx));
        let i = change(
            cx,
            spec,
            &i,
            IncidentChange::Update {
                next_reminder_at_ms: next,
            },
            event(cx, "update", format!("update: {}", self.text)),
            "`incident note` adds to its timeline.",
        )
        .await?;
        let mut reply = Reply::new(Outcome::Done, format!("Update posted to incident {}", i.id))
            .text(self.text.clone());
        if let Some(next) = i.next_reminder_at_ms {
            reply = reply.text(format!("Next update due by {}.", clock_time(next)));
        }
        Ok(Handled::ok(reply, format!("incident {}: update", i.id)))
    }
}

impl Handle for IncidentSev {
    async fn handle(&self, cx: &Context<'_>) -> Result<Handled, Refusal> {
        let spec = &oncall_grammar::INCIDENT_SEV;
        let config = cx.incidents_config();
        let severity = severity(cx, spec, &self.severity)?;
        let i = target(cx, spec, self.incident).await?;
        if i.severity == severity.name {
            return Ok(Handled::info(Reply::new(
                Outcome::Info,
                format!("Incident {} is already {}", i.id, i.severity),
            )));
        }
        let text = format!("severity {} → {}", i.severity, severity.name);
        let i = change(
            cx,
            spec,
            &i,
            IncidentChange::Severity {
                severity: severity.name.clone(),
                next_reminder_at_ms: config.next_reminder(&severity.name, now_ms(cx)),
                escalation: severity
                    .escalation
                    .as_deref()
                    .and_then(|p| cx.escalation_config().snapshot(p)),
            },
            event(cx, "severity", text.clone()),
            "`incident reopen` it first.",
        )
        .await?;
        cx.wake_escalation();
        Ok(done(&i, format!("Incident {} is now {}", i.id, i.severity), text))
    }
}

impl Handle for IncidentAssign {
    async fn handle(&self, cx: &Context<'_>) -> Result<Handled, Refusal> {
        let spec = &oncall_grammar::INCIDENT_ASSIGN;
        let config = cx.incidents_config();
        if !config.has_role(&self.role) {
            return Err(invalid(
                spec,
                format!(
                    "`{}` is not an incident role here: one of {}.",
                    self.role,
                    config.roles.join(", ")
                ),
            ));
        }
        let i = target(cx, spec, self.incident).await?;
        let text = format!("{} is {}", self.principal, self.role);
        let i = change(
            cx,
            spec,
            &i,
            IncidentChange::Role {
                role: self.role.clone(),
                principal: self.principal.clone(),
            },
            event(cx, "role", text.clone()),
            "`incident reopen` it first.",
        )
        .await?;
        Ok(done(&i, format!("Incident {}: {text}", i.id), text))
    }
}

impl Handle for IncidentNote {
    async fn handle(&self, cx: &Context<'_>) -> Result<Handled, Refusal> {
        let spec = &oncall_grammar::INCIDENT_NOTE;
        let i = target(cx, spec, self.incident).await?;
        let i = change(
            cx,
            spec,
            &i,
            IncidentChange::Note,
            event(cx, "note", format!("note: {}", self.text)),
            "",
        )
        .await?;
        Ok(done(
            &i,
            format!("Noted on incident {}", i.id),
            self.text.clone(),
        ))
    }
}

impl Handle for IncidentResolve {
    async fn handle(&self, cx: &Context<'_>) -> Result<Handled, Refusal> {
        let spec = &oncall_grammar::INCIDENT_RESOLVE;
        let i = target(cx, spec, self.incident).await?;
        let text = match &self.summary {
            Some(s) => format!("resolved: {s}"),
            None => "resolved".to_string(),
        };
        let i = change(
            cx,
            spec,
            &i,
            IncidentChange::Resolve {
                summary: self.summary.clone(),
            },
            event(cx, "resolved", text),
            "`incident reopen` reopens it.",
        )
        .await?;
        let lasted = incidents::minutes(i.resolved_at_ms.unwrap_or(i.declared_at_ms) - i.declared_at_ms);
        Ok(done(
            &i,
            format!("Incident {} resolved", i.id),
            format!(
                "resolved after {lasted}; `incident postmortem {}` drafts the review",
                i.id
            ),
        ))
    }
}

impl Handle for IncidentReopen {
    async fn handle(&self, cx: &Context<'_>) -> Result<Handled, Refusal> {
        let spec = &oncall_grammar::INCIDENT_REOPEN;
        let i = target(cx, spec, self.incident).await?;
        let next = cx.incidents_config().next_reminder(&i.severity, now_ms(cx));
        let i = change(
            cx,
            spec,
            &i,
            IncidentChange::Reopen {
                next_reminder_at_ms: next,
            },
            event(cx, "reopened", "reopened"),
            "there is nothing to reopen.",
        )
        .await?;
        Ok(done(&i, format!("Incident {} reopened", i.id), "reopened".into()))
    }
}

impl Handle for IncidentList {
    async fn handle(&self, cx: &Context<'_>) -> Result<Handled, Refusal> {
        let list = cx
            .incident_store()
            .incidents(self.open, 20)
            .await
            .map_err(store_failed)?;
        if list.is_empty() {
            let what = if self.open { "open incidents" } else { "incidents" };
            return Ok(Handled::info(Reply::new(Outcome::Info, format!("No {what}"))));
        }
        let rows: Vec<Vec<String>> = list
            .iter()
            .map(|i| {
                vec![
                    format!("#{}", i.id),
                    i.severity.clone(),
                    i.state.clone(),
                    incidents::date_time(i.declared_at_ms),
                    i.title.clone(),
                ]
            })
            .collect();
        let title = if self.open { "Open incidents" } else { "Recent incidents" };
        Ok(Handled::info(Reply::new(Outcome::Info, title).code(
            None,
            crate::reply::table(&["N", "SEVERITY", "STATE", "DECLARED", "TITLE"], &rows, 40),
        )))
    }
}

impl Handle for IncidentShow {
    async fn handle(&self, cx: &Context<'_>) -> Result<Handled, Refusal> {
        let spec = &oncall_grammar::INCIDENT_SHOW;
        let i = target(cx, spec, self.incident).await?;
        let store = cx.incident_store();
        let roles = store.incident_roles(i.id).await.map_err(store_failed)?;
        let events = store.incident_events(i.id).await.map_err(store_failed)?;
        let mut fields = vec![
            ("State".to_string(), i.state.clone()),
            ("Severity".to_string(), i.severity.clone()),
            (
                "Declared".to_string(),
                format!("{} by {}", incidents::date_time(i.declared_at_ms), i.declared_by),
            ),
        ];
        if let (Some(at), Some(by)) = (i.acknowledged_at_ms, &i.acknowledged_by) {
            fields.push(("Acknowledged".into(), format!("{} by {by}", clock_time(at))));
        }
        if let (Some(at), Some(by)) = (i.resolved_at_ms, &i.resolved_by) {
            fields.push(("Resolved".into(), format!("{} by {by}", clock_time(at))));
        }
        for r in &roles {
            fields.push((r.role.clone(), r.principal.clone()));
        }
        if !i.services.is_empty() {
            fields.push(("Services".into(), i.services.join(", ")));
        }
        let lines = incidents::timeline_lines(&i, &events);
        let recent = lines[lines.len().saturating_sub(8)..].join("\n");
        Ok(Handled::info(
            Reply::new(Outcome::Info, format!("Incident {}: {}", i.id, i.title))
                .fields(fields)
                .code(Some("Latest events"), recent),
        ))
    }
}

/// The most timeline text one reply shows (Slack's and Discord's limits,
/// with room for the rest of the reply).
const TIMELINE_CHARS: usize = 3_500;

impl Handle for IncidentTimeline {
    async fn handle(&self, cx: &Context<'_>) -> Result<Handled, Refusal> {
        let spec = &oncall_grammar::INCIDENT_TIMELINE;
        let i = target(cx, spec, self.incident).await?;
        let events = cx
            .incident_store()
            .incident_events(i.id)
            .await
            .map_err(store_failed)?;
        let lines = incidents::timeline_lines(&i, &events);
        // The latest events that fit; older ones are in the postmortem.
        let mut shown: Vec<&String> = Vec::new();
        let mut used = 0;
        for line in lines.iter().rev() {
            if used + line.len() + 1 > TIMELINE_CHARS {
                break;
            }
            used += line.len() + 1;
            shown.push(line);
        }
        shown.reverse();
        let mut reply = Reply::new(
            Outcome::Info,
            format!("Timeline of incident {}: {}", i.id, i.title),
        )
        .text(format!(
            "Declared {} · times are since then",
            incidents::date_time(i.declared_at_ms)
        ));
        for chunk in shown.chunks(25) {
            let text: Vec<&str> = chunk.iter().map(|s| s.as_str()).collect();
            reply = reply.code(None, text.join("\n"));
        }
        if shown.len() < lines.len() {
            reply = reply.text(format!(
                "{} earlier events are not shown: `incident postmortem {}` has them all.",
                lines.len() - shown.len(),
                i.id
            ));
        }
        Ok(Handled::info(reply))
    }
}

impl Handle for IncidentPostmortem {
    async fn handle(&self, cx: &Context<'_>) -> Result<Handled, Refusal> {
        let spec = &oncall_grammar::INCIDENT_POSTMORTEM;
        let i = target(cx, spec, self.incident).await?;
        let store = cx.incident_store();
        let roles = store.incident_roles(i.id).await.map_err(store_failed)?;
        let events = store.incident_events(i.id).await.map_err(store_failed)?;
        let markdown = incidents::postmortem_markdown(&i, &roles, &events, now_ms(cx));
        let title = format!("Postmortem draft: incident {}", i.id);
        let file = FileUpload {
            filename: format!("incident-{}-postmortem.md", i.id),
            title: title.clone(),
            content: markdown.clone(),
            comment: format!("{title}: {}", i.title),
        };
        // Shared as a file where the platform allows; else in the reply.
        match cx.upload_here(&file).await {
            Some(Ok(())) => Ok(Handled::info(Reply::new(Outcome::Info, title).text(format!(
                "Shared here as `{}`: {} timeline events, the operations run, and sections for root cause, impact, lessons and action items.",
                file.filename,
                events.len()
            )))),
            Some(Err(e)) => Ok(Handled::info(
                Reply::new(Outcome::Info, title)
                    .text(format!("It could not be shared as a file ({e}); here it is."))
                    .code(None, markdown),
            )),
            None => Ok(Handled::info(Reply::new(Outcome::Info, title).code(None, markdown))),
        }
    }
}
