//! The paging verbs: `escalate`, `page`, `who`, `schedule`, `override`.
//!
//! `escalate` only moves the escalation's next step to now and wakes the
//! engine: the step itself is the engine's, through the same guarded
//! transaction as a timed one, so it pages once whoever presses first.
//! `page` writes its pages to the outbox under keys of this request, so a
//! redelivered request pages once; the senders deliver them like any other.

use jiff::tz::TimeZone;
use jiff::Timestamp;
use oncall_grammar::{Escalate, Override, Page, ScheduleShow, Target, VerbSpec, Who};

use super::incident::{event, invalid, store_failed, target};
use super::{Context, Handle, Refusal};
use crate::escalation::config::EscalationConfig;
use crate::escalation::engine::{load_overrides, page_payload, rate_limit};
use crate::escalation::schedule::Schedule;
use crate::incidents::clock_time;
use crate::model::Handled;
use crate::reply::{Outcome, Reply};
use crate::store::{AdHoc, EscalationState, NewPage, StoredOverride};

/// `Mon 12-07 09:00 CET`, in the schedule's zone.
fn local(at: Timestamp, zone: &TimeZone) -> String {
    at.to_zoned(zone.clone()).strftime("%a %m-%d %H:%M %Z").to_string()
}

fn schedule<'a>(
    cx: &Context<'a>,
    spec: &'static VerbSpec,
    name: &str,
) -> Result<(Schedule, &'a EscalationConfig), Refusal> {
    let config = cx.escalation_config();
    match config.schedule(name) {
        Some(s) => Ok((s, config)),
        None => {
            let names = config.schedule_names();
            let known = match names.is_empty() {
                true => "none is configured ([[escalation.schedules]])".to_string(),
                false => format!("one of {}", names.join(", ")),
            };
            Err(invalid(spec, format!("There is no schedule `{name}`: {known}.")))
        }
    }
}

async fn on_call_now(
    cx: &Context<'_>,
    s: &Schedule,
) -> Result<(Vec<String>, Vec<crate::escalation::schedule::Override>), Refusal> {
    let overrides = load_overrides(cx.incident_store(), &s.name, cx.now.as_millisecond())
        .await
        .map_err(store_failed)?;
    let who: Vec<String> = s
        .on_call(cx.now, &overrides)
        .into_iter()
        .map(|p| p.to_string())
        .collect();
    Ok((who, overrides))
}

fn names(who: &[String]) -> String {
    match who.is_empty() {
        true => "nobody".into(),
        false => who.join(", "),
    }
}

impl Handle for Escalate {
    async fn handle(&self, cx: &Context<'_>) -> Result<Handled, Refusal> {
        let spec = &oncall_grammar::ESCALATE;
        let i = target(cx, spec, self.incident).await?;
        let store = cx.incident_store();
        let more = format!("`page {} <target> <message…>` pages someone directly.", i.id);
        let say = |text: String| Ok(Handled::info(Reply::new(Outcome::Info, text)));
        if i.is_resolved() {
            return say(format!("Incident {} is resolved; nothing to escalate.", i.id));
        }
        let Some(e) = store.escalation_of(i.id).await.map_err(store_failed)? else {
            return say(format!(
                "Incident {} has no escalation ({} names no escalation policy). {more}",
                i.id, i.severity
            ));
        };
        match e.state {
            EscalationState::Active => {}
            EscalationState::Acknowledged | EscalationState::Resolved => {
                let by = e.ended_by.as_deref().unwrap_or("someone");
                let at = e.ended_at_ms.map(clock_time).unwrap_or_default();
                return say(format!(
                    "Incident {}'s escalation stopped when {by} acknowledged it at {at}. {more}",
                    i.id
                ));
            }
            EscalationState::Exhausted => {
                return say(format!(
                    "Incident {}'s escalation has paged every tier already. {more}",
                    i.id
                ));
            }
        }
        let now = cx.now.as_millisecond();
        let Some(e) = store.escalate_now(i.id, now).await.map_err(store_failed)? else {
            return say(format!("Incident {}'s escalation just ended. {more}", i.id));
        };
        let tier = e
            .policy
            .tiers
            .get(e.tier as usize)
            .map(|t| t.name.clone())
            .unwrap_or_else(|| "the next tier".into());
        store
            .add_incident_event(i.id, &event(cx, "escalation", format!("escalated: {tier} paged now")))
            .await
            .map_err(store_failed)?;
        cx.wake_escalation();
        Ok(Handled::ok(
            Reply::new(Outcome::Done, format!("Incident {}: paging {tier} now", i.id)).text(
                format!("{} of {}, escalation {}.", e.tier + 1, e.policy.tiers.len(), e.policy.name),
            ),
            format!("incident {}: escalated to {tier}", i.id),
        ))
    }
}

impl Handle for Page {
    async fn handle(&self, cx: &Context<'_>) -> Result<Handled, Refusal> {
        let spec = &oncall_grammar::PAGE;
        let config = cx.escalation_config();
        let target_word = Target::parse(&self.target).map_err(|e| invalid(spec, e))?;
        config
            .check_target(&target_word)
            .map_err(|e| invalid(spec, format!("Can't page {}: {e}.", self.target)))?;
        let store = cx.incident_store();
        // The incident it is about: the one named, else this channel's.
        let incident = match self.incident {
            Some(_) => Some(target(cx, spec, self.incident).await?),
            None => store
                .incident_of_channel(cx.inv.platform.as_str(), &cx.inv.channel)
                .await
                .map_err(store_failed)?,
        };
        let targets: Vec<Target> = match &target_word {
            Target::Schedule(name) => {
                let (s, _) = schedule(cx, spec, name)?;
                let (who, _) = on_call_now(cx, &s).await?;
                if who.is_empty() {
                    return Err(invalid(spec, format!("Schedule {name} has nobody on call now.")));
                }
                who.iter().filter_map(|p| Target::parse(p).ok()).collect()
            }
            t => vec![t.clone()],
        };
        let request = cx
            .invocation_id()
            .map(|id| id.to_string())
            .unwrap_or_else(|| format!("{}-{}", cx.inv.principal, cx.now.as_millisecond()));
        // What a page says goes to providers and the store: redacted.
        let said = oncall_grammar::redact::redact_line(&self.message);
        let message = format!("{said} (from {})", cx.actor.principal);
        let (id, title, severity) = match &incident {
            Some(i) => (i.id, i.title.clone(), i.severity.clone()),
            None => (0, String::new(), String::new()),
        };
        let mut paged = Vec::new();
        let mut limited = Vec::new();
        for t in &targets {
            let kind = match t {
                Target::PagerDuty(_) => "page.pagerduty",
                Target::Opsgenie(_) => "page.opsgenie",
                Target::Webhook(_) => "page.webhook",
                _ => "page.chat",
            };
            let mut payload = page_payload(id, &title, &severity, None, &t.to_string(), Some(&message));
            if incident.is_none() {
                payload["text"] = message.clone().into();
            }
            let page = NewPage {
                kind: kind.into(),
                target: t.to_string(),
                payload,
            };
            let line = event(cx, "page", format!("paged {t}: {said}"));
            let key = format!("adhoc:{request}:{t}");
            let done = store
                .page_now(incident.as_ref().map(|i| i.id), &key, &page, Some(&line), rate_limit(config))
                .await
                .map_err(store_failed)?;
            match done {
                AdHoc::Enqueued | AdHoc::Duplicate => paged.push(t.to_string()),
                AdHoc::RateLimited => limited.push(t.to_string()),
            }
        }
        cx.wake_escalation();
        if paged.is_empty() {
            return Ok(Handled::info(Reply::new(
                Outcome::Info,
                format!(
                    "Not paged: {} had {} pages in the last {} (escalation.max_pages_per_target).",
                    limited.join(", "),
                    config.max_pages_per_target,
                    humantime::format_duration(config.rate_window)
                ),
            )));
        }
        let mut reply = Reply::new(Outcome::Done, format!("Paged {}", paged.join(", ")));
        if let Some(i) = &incident {
            reply = reply.text(format!("About incident {}: {}", i.id, i.title));
        }
        if !limited.is_empty() {
            reply = reply.text(format!("Not paged (over the rate limit): {}", limited.join(", ")));
        }
        Ok(Handled::ok(reply, format!("paged {}", paged.join(", "))))
    }
}

impl Handle for Who {
    async fn handle(&self, cx: &Context<'_>) -> Result<Handled, Refusal> {
        let spec = &oncall_grammar::WHO;
        let config = cx.escalation_config();
        let wanted: Vec<String> = match &self.schedule {
            Some(name) => vec![schedule(cx, spec, name)?.0.name],
            None => config.schedule_names().into_iter().map(String::from).collect(),
        };
        if wanted.is_empty() {
            return Ok(Handled::info(Reply::new(
                Outcome::Info,
                "No schedules are configured ([[escalation.schedules]]).",
            )));
        }
        let mut fields = Vec::new();
        for name in wanted {
            let (s, _) = schedule(cx, spec, &name)?;
            let (who, _) = on_call_now(cx, &s).await?;
            let next = s
                .next_handoffs(cx.now, 1)
                .first()
                .map(|h| format!(" (until {})", local(h.at, &s.zone)))
                .unwrap_or_default();
            fields.push((name, format!("{}{next}", names(&who))));
        }
        Ok(Handled::info(
            Reply::new(Outcome::Info, "On call now").fields(fields),
        ))
    }
}

impl Handle for ScheduleShow {
    async fn handle(&self, cx: &Context<'_>) -> Result<Handled, Refusal> {
        let spec = &oncall_grammar::SCHEDULE_SHOW;
        let (s, config) = schedule(cx, spec, &self.schedule)?;
        let (who, overrides) = on_call_now(cx, &s).await?;
        let zone = config
            .schedule_config(&s.name)
            .map(|c| c.time_zone.clone())
            .unwrap_or_default();
        let mut fields = vec![
            ("On call now".to_string(), names(&who)),
            ("Time zone".to_string(), zone),
        ];
        for r in &s.rotations {
            let people: Vec<String> = r.participants.iter().map(|p| p.to_string()).collect();
            let every = match r.every {
                crate::escalation::schedule::ShiftLength::Days(1) => "daily".to_string(),
                crate::escalation::schedule::ShiftLength::Days(7) => "weekly".to_string(),
                crate::escalation::schedule::ShiftLength::Days(n) => format!("every {n} days"),
                crate::escalation::schedule::ShiftLength::Hours(n) => format!("every {n}h"),
            };
            fields.push((
                format!("Rotation {}", r.name),
                format!("{every} at {}, {}", r.handoff.strftime("%H:%M"), people.join(" → ")),
            ));
        }
        let mut lines: Vec<String> = s
            .next_handoffs(cx.now, 5)
            .iter()
            .map(|h| format!("{}  {} → {}  ({})", local(h.at, &s.zone), h.from, h.to, h.rotation))
            .collect();
        if lines.is_empty() {
            lines.push("no handoffs (one participant)".into());
        }
        let mut reply = Reply::new(Outcome::Info, format!("Schedule {}", s.name))
            .fields(fields)
            .code(Some("Next handoffs"), lines.join("\n"));
        if !overrides.is_empty() {
            let lines: Vec<String> = overrides
                .iter()
                .map(|o| format!("{} → {}  {}", local(o.start, &s.zone), local(o.end, &s.zone), o.principal))
                .collect();
            reply = reply.code(Some("Overrides"), lines.join("\n"));
        }
        Ok(Handled::info(reply))
    }
}

impl Handle for Override {
    async fn handle(&self, cx: &Context<'_>) -> Result<Handled, Refusal> {
        let spec = &oncall_grammar::OVERRIDE;
        let (s, _) = schedule(cx, spec, &self.schedule)?;
        let start = cx.now;
        let span = jiff::SignedDuration::try_from(self.duration)
            .map_err(|_| invalid(spec, "That duration is too long."))?;
        let end = start
            .checked_add(span)
            .map_err(|_| invalid(spec, "That duration is too long."))?;
        let o = StoredOverride {
            id: 0,
            schedule: s.name.clone(),
            principal: self.principal.clone(),
            start_ms: start.as_millisecond(),
            end_ms: end.as_millisecond(),
            created_by: cx.actor.principal.to_string(),
        };
        cx.incident_store()
            .add_override(&o, start.as_millisecond())
            .await
            .map_err(store_failed)?;
        let text = format!(
            "{} is on call for {} until {}",
            self.principal,
            s.name,
            local(end, &s.zone)
        );
        Ok(Handled::ok(
            Reply::new(Outcome::Done, text.clone())
                .text("The override wins over the rotation while it lasts; escalations page them."),
            text,
        ))
    }
}
