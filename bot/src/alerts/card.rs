//! An alert group's one message in the channel: posted when the group first
//! fires, then updated in place as alerts fire and resolve, its incident
//! opens, is acknowledged and closes. Not a message per delivery.
//!
//! It carries what a responder needs first: the alerts' `summary`,
//! `description` and `runbook_url`, a link to the rule's graph
//! (`generatorURL`), and, for the catalog service the route resolved, the
//! enrichment: the `diagnose` verdict, the pod table and recent warning
//! events, read once when the message is first posted, bounded in time and
//! size, so a slow cluster never holds the alert (the 2xx was given long
//! before). Then the route's first-response buttons: each runs its command
//! as the person who presses it (`alerts run <id>`), once.

use std::time::Duration;

use oncall_ops::diagnose::diagnose;
use oncall_ops::workloads::{self, Subject};

use crate::incidents::clock_time;
use crate::reply::{table, Block, Button, ButtonAction, ButtonStyle, Outcome, Reply};
use crate::router::Router;
use crate::store::{AlertAction, AlertCard};

/// How long the enrichment may take before the message goes without it.
pub const ENRICH_TIMEOUT: Duration = Duration::from_secs(5);

/// At most this many pods and warning events are shown.
const MAX_ROWS: usize = 10;

/// The enrichment for `service`: blocks to show, empty when the cluster
/// could not say in time (the message says so).
pub async fn enrich(router: &Router, service: &str) -> Vec<Block> {
    let Some(entry) = router.catalog().get(service) else {
        return Vec::new();
    };
    let Ok(client) = router.client_for(entry) else {
        return vec![Block::Text {
            text: format!("{service}: its cluster is not reachable from here."),
        }];
    };
    let now = router.clock().now();
    let subject = || Subject::Deployment {
        namespace: &entry.namespace,
        name: entry.deployment(),
    };
    let read = async {
        let d = diagnose(&client, subject(), None, now).await;
        let ev = workloads::events(&client, subject(), Duration::from_secs(3600), now).await;
        (d, ev)
    };
    let Ok((d, ev)) = tokio::time::timeout(ENRICH_TIMEOUT, read).await else {
        return vec![Block::Text {
            text: format!(
                "{service}: the cluster did not answer within {}s; `diagnose {service}` asks again.",
                ENRICH_TIMEOUT.as_secs()
            ),
        }];
    };
    let mut blocks = Vec::new();
    match d {
        Ok(d) => {
            blocks.push(Block::Text {
                text: format!("Diagnosis of {service}: {}", d.verdict),
            });
            let rows: Vec<Vec<String>> = d
                .pods
                .iter()
                .take(MAX_ROWS)
                .map(|p| {
                    vec![
                        p.name.clone(),
                        p.status.clone(),
                        if p.ready { "yes" } else { "no" }.into(),
                        p.restarts.to_string(),
                    ]
                })
                .collect();
            if !rows.is_empty() {
                let mut body = table(&["POD", "STATUS", "READY", "RESTARTS"], &rows, 60);
                if d.pods.len() > MAX_ROWS {
                    body.push_str(&format!("\n… and {} more", d.pods.len() - MAX_ROWS));
                }
                blocks.push(Block::Code {
                    title: Some("Pods".into()),
                    body,
                });
            }
        }
        Err(e) => blocks.push(Block::Text {
            text: format!("Could not diagnose {service}: {e}"),
        }),
    }
    if let Ok(events) = ev {
        let rows: Vec<Vec<String>> = events
            .iter()
            .filter(|e| e.is_warning())
            .take(MAX_ROWS)
            .map(|e| {
                vec![
                    e.last_seen
                        .map(|t| oncall_ops::kubectl::human_duration(now.duration_since(t)))
                        .unwrap_or_else(|| "?".into()),
                    e.reason.clone(),
                    e.object.clone(),
                    crate::reply::truncate(&e.message, 120),
                ]
            })
            .collect();
        if !rows.is_empty() {
            blocks.push(Block::Code {
                title: Some("Recent warning events".into()),
                body: table(&["AGO", "REASON", "OBJECT", "MESSAGE"], &rows, 60),
            });
        }
    }
    blocks
}

/// The message for a group as it is now.
pub fn render(
    card: &AlertCard,
    enrichment: &[Block],
    actions: &[AlertAction],
    now_ms: i64,
) -> Reply {
    let firing = card.firing > 0;
    let (outcome, mark) = match firing {
        true => (Outcome::Failed, "Firing"),
        false => (Outcome::Done, "Resolved"),
    };
    let mut reply = Reply::new(outcome, format!("{mark}: {}", card.title));
    reply.visibility = crate::reply::Visibility::Public;
    let mut fields = vec![(
        "Alerts".to_string(),
        format!("{} firing · {} resolved", card.firing, card.resolved),
    )];
    if let Some(sev) = &card.severity {
        fields.push(("Severity".into(), sev.clone()));
    }
    let incident = match (card.incident_id, &card.incident_state, card.open_at_ms) {
        (Some(id), Some(state), _) => format!("#{id} {state}"),
        (_, _, Some(at)) if firing => format!(
            "none yet: opened at {} (business hours) if still firing",
            clock_time(at)
        ),
        _ => "none: this route does not page".into(),
    };
    fields.push(("Incident".into(), incident));
    if let Some(by) = card
        .acknowledged_by
        .as_ref()
        .filter(|_| card.escalation_state.as_deref() != Some("acknowledged"))
    {
        fields.push(("Acknowledged by".into(), by.clone()));
    }
    if let Some(state) = &card.escalation_state {
        let by = card.escalation_ended_by.as_deref().unwrap_or("someone");
        let text = match state.as_str() {
            "active" => "paging".to_string(),
            "acknowledged" => format!("acknowledged by {by}"),
            "resolved" => "stopped: resolved".to_string(),
            "exhausted" => "every tier paged, nobody acknowledged".to_string(),
            other => other.to_string(),
        };
        fields.push(("Escalation".into(), text));
    }
    if let Some(s) = &card.service {
        fields.push(("Service".into(), s.clone()));
    }
    if let Some(r) = &card.route {
        fields.push(("Route".into(), r.clone()));
    }
    reply = reply.fields(fields);
    // The newest firing alert speaks for the group (else the newest).
    if let Some(a) = card
        .alerts
        .iter()
        .find(|a| a.status == "firing")
        .or(card.alerts.first())
    {
        for key in ["summary", "description"] {
            if let Some(v) = a.annotations.get(key).filter(|v| !v.is_empty()) {
                reply = reply.text(crate::reply::truncate(v, 500));
            }
        }
        if let Some(url) = a.annotations.get("runbook_url").filter(|u| link_ok(u)) {
            reply = reply.text(format!("Runbook: {url}"));
        }
        if let Some(url) = a.generator_url.as_deref().filter(|u| link_ok(u)) {
            reply = reply.text(format!("Graph: {url}"));
        }
    }
    if card.alerts.len() > 1 {
        let rows: Vec<Vec<String>> = card
            .alerts
            .iter()
            .take(MAX_ROWS)
            .map(|a| {
                let labels: Vec<String> = a
                    .labels
                    .iter()
                    .filter(|(k, _)| !matches!(k.as_str(), "alertname" | "severity"))
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                vec![a.alertname.clone(), a.status.clone(), labels.join(",")]
            })
            .collect();
        reply = reply.code(None, table(&["ALERT", "STATUS", "LABELS"], &rows, 60));
    }
    reply.blocks.extend(enrichment.iter().cloned());
    let open = card
        .incident_state
        .as_deref()
        .is_some_and(|s| s != "resolved");
    let mut buttons = Vec::new();
    for a in actions {
        match (&a.claimed_by, &a.outcome) {
            (Some(by), Some(outcome)) => {
                reply = reply.text(format!("`{}`: {outcome}, run by {by}", a.command));
            }
            (Some(by), None) => {
                reply = reply.text(format!("`{}`: being run by {by}", a.command));
            }
            (None, _) if open && a.expires_at_ms > now_ms => buttons.push(Button {
                label: crate::reply::truncate(&a.command, 70),
                action_id: ButtonAction::Respond,
                value: a.id.to_string(),
                style: ButtonStyle::Primary,
                confirm: None,
            }),
            (None, _) => {}
        }
    }
    if !buttons.is_empty() {
        reply = reply.text(format!(
            "First response (runs as whoever presses it, through policy; until {}):",
            clock_time(
                actions
                    .iter()
                    .map(|a| a.expires_at_ms)
                    .min()
                    .unwrap_or(now_ms)
            )
        ));
        reply = reply.buttons(buttons);
    }
    reply.redacted()
}

/// A link worth showing: http(s) and short enough for a message.
fn link_ok(u: &str) -> bool {
    (u.starts_with("http://") || u.starts_with("https://")) && u.len() <= 500 && !u.contains(' ')
}
