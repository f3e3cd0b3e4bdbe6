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
    let Some(tier) = tiers.get(index) else {
        // A policy without tiers (config refuses one): nothing to page.
        return Step {
            escalation_id: e.id,
            incident_id: e.incident_id,
            tier: e.tier,
            round: e.round,
            pages: Vec::new(),
            next: Next::Exhausted,
            text: format!(
                "escalation {} has no tiers; nobody was paged",
                e.policy.name
            ),
        };
    };
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

/// How long until the next step is due, at most `cap` (and none when one
/// is due now).
pub async fn until_next(router: &Router, cap: std::time::Duration) -> std::time::Duration {
    let now = router.clock().now().as_millisecond();
    match router.store().next_escalation_due().await {
        Ok(Some(at)) if at <= now => std::time::Duration::ZERO,
        Ok(Some(at)) => std::time::Duration::from_millis((at - now) as u64).min(cap),
        _ => cap,
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
        let gate = router.escalation_gate().await;
        let outcomes = router
            .store()
            .advance_escalations(&steps, now_ms, rate_limit(config), router.fence())
            .await?;
        let applied = outcomes.iter().filter(|o| o.applied).count();
        if applied > 0 {
            // Under the gate: the pager can't have read these pages yet.
            super::pager::crash_point("after-tick-commit");
        }
        drop(gate);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::escalation::config::{PolicySnapshot, TierSnapshot};
    use crate::store::{Escalation, EscalationState};

    fn due(tiers: Vec<TierSnapshot>, tier: u32, round: u32, repeat: u32) -> DueEscalation {
        DueEscalation {
            escalation: Escalation {
                id: 7,
                incident_id: 3,
                policy: PolicySnapshot {
                    name: "p".into(),
                    repeat,
                    tiers,
                },
                tier,
                round,
                state: EscalationState::Active,
                next_at_ms: Some(1_000_000),
                started_at_ms: 0,
                ended_at_ms: None,
                ended_by: None,
            },
            title: "t".into(),
            severity: "SEV-1".into(),
        }
    }

    fn tier(targets: &[&str], delay_ms: Option<i64>) -> TierSnapshot {
        TierSnapshot {
            name: format!("to {}", targets.join(",")),
            targets: targets.iter().map(|t| t.to_string()).collect(),
            delay_ms,
        }
    }

    #[test]
    fn a_step_pages_its_tier_and_counts_the_next_from_its_due_time() {
        let config = EscalationConfig::default();
        let now = Timestamp::from_millisecond(1_500_000).unwrap();
        let tiers = vec![
            tier(&["cli:a", "pagerduty:x", "cli:a"], Some(60_000)),
            tier(&["webhook:w"], Some(30_000)),
        ];
        let table = [
            // (tier, round, repeat) → (kinds, next)
            (
                0,
                0,
                0,
                vec!["page.chat", "page.pagerduty"],
                Next::Tier {
                    tier: 1,
                    round: 0,
                    at_ms: 1_060_000,
                },
            ),
            (1, 0, 0, vec!["page.webhook"], Next::Exhausted),
            (
                1,
                0,
                2,
                vec!["page.webhook"],
                Next::Tier {
                    tier: 0,
                    round: 1,
                    at_ms: 1_030_000,
                },
            ),
            (1, 2, 2, vec!["page.webhook"], Next::Exhausted),
        ];
        for (t, round, repeat, kinds, next) in table {
            let step = plan(
                &config,
                &due(tiers.clone(), t, round, repeat),
                now,
                &HashMap::new(),
            );
            let got: Vec<&str> = step.pages.iter().map(|p| p.kind.as_str()).collect();
            assert_eq!(got, kinds, "tier {t} round {round}: the same target once");
            assert_eq!(step.next, next, "tier {t} round {round} repeat {repeat}");
            assert_eq!(
                (step.tier, step.round),
                (t, round),
                "the guard is what was read"
            );
        }
    }

    #[test]
    fn a_policy_without_tiers_pages_nobody_and_ends() {
        let step = plan(
            &EscalationConfig::default(),
            &due(Vec::new(), 0, 0, 0),
            Timestamp::from_millisecond(0).unwrap(),
            &HashMap::new(),
        );
        assert!(step.pages.is_empty());
        assert_eq!(step.next, Next::Exhausted);
    }
}
