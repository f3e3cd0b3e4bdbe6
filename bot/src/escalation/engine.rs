//! The engine's tick: take the escalations that are due, work out each one's
//! step (who its tier pages now, where it goes next), and hand every step
//! to the store at once, which applies them in one transaction.
//!
//! The store guards each step by the row's state, tier and round, so an
//! acknowledgement that lands between reading and writing wins, and two
//! ticks (two processes, a restarted one) apply a step once. Next due times
//! are counted from when the step was due, not from when it ran: after a
//! restart, overdue steps fire in order, none skipped, none doubled.

use std::collections::HashMap;

use jiff::Timestamp;

use super::config::{EscalationConfig, Target};
use super::schedule::Override;
use crate::router::Router;
use crate::store::{DueEscalation, NewPage, Next, RateLimit, Step, StoreError};

/// How many due escalations one read takes.
const BATCH: u32 = 500;

/// What a tick did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tick {
    /// Steps applied.
    pub steps: usize,
    /// Pages written to the outbox.
    pub pages: usize,
}

/// Which sender delivers a page to this target.
fn kind(target: &Target) -> &'static str {
    match target {
        Target::PagerDuty(_) => "page.pagerduty",
        Target::Opsgenie(_) => "page.opsgenie",
        Target::Webhook(_) => "page.webhook",
        _ => "page.chat",
    }
}

/// The concrete targets a tier's target means at `at` (a schedule: who is
/// on call then).
fn expand(
    config: &EscalationConfig,
    target: &str,
    at: Timestamp,
    overrides: &HashMap<String, Vec<Override>>,
    empty: &mut Vec<String>,
) -> Vec<Target> {
    match Target::parse(target) {
        Ok(Target::Schedule(name)) => {
            let who = config
                .schedule(&name)
                .map(|s| s.on_call(at, overrides.get(&name).map_or(&[][..], |o| &o[..])))
                .unwrap_or_default();
            if who.is_empty() {
                empty.push(name);
            }
            who.into_iter().map(Target::Principal).collect()
        }
        Ok(t) => vec![t],
        Err(_) => Vec::new(),
    }
}

/// The page payload: what every sender says of the incident.
pub fn page_payload(
    incident: i64,
    title: &str,
    severity: &str,
    tier: Option<(&str, u32, u32)>,
    target: &str,
    message: Option<&str>,
) -> serde_json::Value {
    let mut text = format!("Incident {incident} ({severity}): {title}");
    if let Some(m) = message {
        text = format!("{m} (incident {incident}, {severity}: {title})");
    }
    let mut v = serde_json::json!({
        "incident": incident,
        "title": title,
        "severity": severity,
        "target": target,
        "text": text,
    });
    if let Some((name, index, round)) = tier {
        v["tier"] = (index + 1).into();
        v["tier_name"] = name.into();
        v["round"] = round.into();
    }
    v
}

/// The step an escalation takes now.
pub fn plan(
    config: &EscalationConfig,
    due: &DueEscalation,
    now: Timestamp,
    overrides: &HashMap<String, Vec<Override>>,
) -> Step {
    let e = &due.escalation;
    let tiers = &e.policy.tiers;
    let index = (e.tier as usize).min(tiers.len().saturating_sub(1));
    let tier = &tiers[index];
    let mut empty = Vec::new();
    let mut targets: Vec<Target> = Vec::new();
    for t in &tier.targets {
        for c in expand(config, t, now, overrides, &mut empty) {
            if !targets.contains(&c) {
                targets.push(c);
            }
        }
    }
    let pages: Vec<NewPage> = targets
        .iter()
        .map(|t| NewPage {
            kind: kind(t).to_string(),
            target: t.to_string(),
            payload: page_payload(
                e.incident_id,
                &due.title,
                &due.severity,
                Some((&tier.name, index as u32, e.round)),
                &t.to_string(),
                None,
            ),
        })
        .collect();
    let due_at = e.next_at_ms.unwrap_or_else(|| now.as_millisecond());
    let delay = tier.delay_ms.unwrap_or(0);
    let next = if index + 1 < tiers.len() {
        Next::Tier {
            tier: index as u32 + 1,
            round: e.round,
            at_ms: due_at + delay,
        }
    } else if e.round < e.policy.repeat {
        Next::Tier {
            tier: 0,
            round: e.round + 1,
            at_ms: due_at + delay,
        }
    } else {
        Next::Exhausted
    };
    let mut text = format!("paged {} (tier {} of {}", tier.name, index + 1, tiers.len());
    if e.round > 0 {
        text.push_str(&format!(", repeat {}", e.round));
    }
    text.push_str("): ");
    let names: Vec<String> = targets.iter().map(|t| t.to_string()).collect();
    text.push_str(&if names.is_empty() {
        "nobody".to_string()
    } else {
        names.join(", ")
    });
    for s in &empty {
        text.push_str(&format!("; schedule {s} has nobody on call"));
    }
    if let Next::Tier { tier, at_ms, .. } = next {
        let after = std::time::Duration::from_millis((at_ms - due_at).max(0) as u64);
        text.push_str(&format!(
            "; next: {} in {}",
            tiers[tier as usize].name,
            humantime::format_duration(after)
        ));
    }
    Step {
        escalation_id: e.id,
        incident_id: e.incident_id,
        tier: e.tier,
        round: e.round,
        pages,
        next,
        text,
    }
}

/// The overrides of every schedule a policy names, as schedules see them.
async fn overrides_for(
    router: &Router,
    due: &[DueEscalation],
    now_ms: i64,
) -> Result<HashMap<String, Vec<Override>>, StoreError> {
    let mut names: Vec<String> = Vec::new();
    for d in due {
        for t in d.escalation.policy.tiers.iter().flat_map(|t| &t.targets) {
            if let Ok(Target::Schedule(n)) = Target::parse(t) {
                if !names.contains(&n) {
                    names.push(n);
                }
            }
        }
    }
    let mut out = HashMap::new();
    for n in names {
        out.insert(n.clone(), load_overrides(router.store(), &n, now_ms).await?);
    }
    Ok(out)
}

/// A schedule's overrides that have not ended by `from_ms`.
pub async fn load_overrides(
    store: &crate::store::Store,
    schedule: &str,
    from_ms: i64,
) -> Result<Vec<Override>, StoreError> {
    Ok(store
        .overrides(schedule, from_ms)
        .await?
        .into_iter()
        .filter_map(|o| {
            Some(Override {
                principal: o.principal.parse().ok()?,
                start: Timestamp::from_millisecond(o.start_ms).ok()?,
                end: Timestamp::from_millisecond(o.end_ms).ok()?,
            })
        })
        .collect())
}

/// The configured per-target page limit.
pub fn rate_limit(config: &EscalationConfig) -> RateLimit {
    RateLimit {
        max: config.max_pages_per_target,
        window_ms: config.rate_window.as_millis() as i64,
    }
}

/// One tick: every due step, the most overdue first, until none is due.
pub async fn tick(router: &Router) -> Result<Tick, StoreError> {
    let config = &router.config().escalation;
    let mut done = Tick::default();
    // Bounded, so a step that keeps failing to apply can't spin here.
    for _ in 0..64 {
        let now = router.clock().now();
        let now_ms = now.as_millisecond();
        let due = router.store().due_escalations(now_ms, BATCH).await?;
        if due.is_empty() {
            break;
        }
        let overrides = overrides_for(router, &due, now_ms).await?;
        let steps: Vec<Step> = due
            .iter()
            .map(|d| plan(config, d, now, &overrides))
            .collect();
        let outcomes = router
            .store()
            .advance_escalations(&steps, now_ms, rate_limit(config))
            .await?;
        let applied = outcomes.iter().filter(|o| o.applied).count();
        // Committed: the pager can send these while the next batch is read.
        router.wake_pager();
        done.steps += applied;
        done.pages += outcomes.iter().map(|o| o.enqueued).sum::<usize>();
        if applied == 0 {
            break;
        }
    }
    Ok(done)
}
