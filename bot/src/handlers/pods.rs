//! `pods` and `events` for a service or a namespace.

use std::time::Duration;

use oncall_grammar::Scope;
use oncall_ops::kubectl::human_duration;
use oncall_ops::workloads::{self, Subject};

use crate::model::Handled;
use crate::reply::{clip_head, table, Outcome, Reply};
use super::{Context, Handle, Refusal};

impl Handle for oncall_grammar::Pods {
    async fn handle(&self, cx: &Context<'_>) -> Result<Handled, Refusal> {
        Ok(pods(cx, cx.scope, cx.now).await)
    }
}

impl Handle for oncall_grammar::Events {
    async fn handle(&self, cx: &Context<'_>) -> Result<Handled, Refusal> {
        Ok(events(cx, cx.scope, self.since, cx.now).await)
    }
}

fn subject<'a>(scope: &'a Scope<'_>) -> Option<(Subject<'a>, String)> {
    match scope {
        Scope::Services(entries) if entries.len() == 1 => {
            let e = entries[0];
            Some((
                Subject::Deployment {
                    namespace: &e.namespace,
                    name: e.deployment(),
                },
                e.name.clone(),
            ))
        }
        Scope::Namespace { namespace, .. } => Some((
            Subject::Namespace(namespace),
            format!("namespace {namespace}"),
        )),
        _ => None,
    }
}

fn client(cx: &Context<'_>, scope: &Scope<'_>) -> Result<kube::Client, Refusal> {
    match scope {
        Scope::Services(entries) if entries.len() == 1 => cx.client_for(entries[0]),
        Scope::Namespace { namespace, .. } => cx.client_for_namespace(namespace),
        _ => Err(Handled::failed("Cannot run this here", "expected a service or a namespace").into()),
    }
}

pub async fn pods(cx: &Context<'_>, scope: &Scope<'_>, now: jiff::Timestamp) -> Handled {
    let Some((subject, label)) = subject(scope) else {
        return Handled::failed("Cannot run this here", "expected a service or a namespace");
    };
    // A cluster that cannot be reached says so, not "cannot run this here".
    let c = match client(cx, scope) {
        Ok(c) => c,
        Err(refusal) => return refusal.into_handled(),
    };
    match workloads::pods(&c, subject, now).await {
        Ok(rows) if rows.is_empty() => {
            Handled::info(Reply::new(Outcome::Info, format!("{label}: no pods")))
        }
        Ok(rows) => {
            let not_running = rows
                .iter()
                .filter(|r| r.status != "Running" && r.status != "Completed")
                .count();
            let (body, note) = clip_head(&super::pod_table(&rows));
            let mut reply = Reply::new(
                Outcome::Info,
                format!(
                    "{label}: {} pods{}",
                    rows.len(),
                    if not_running > 0 {
                        format!(", {not_running} not running")
                    } else {
                        String::new()
                    }
                ),
            )
            .code(None, body);
            if let Some(n) = note {
                reply = reply.text(n);
            }
            Handled::info(reply)
        }
        Err(e) => Handled::failed(format!("Could not list the pods of {label}"), e),
    }
}

pub async fn events(
    cx: &Context<'_>,
    scope: &Scope<'_>,
    since: Option<Duration>,
    now: jiff::Timestamp,
) -> Handled {
    let Some((subject, label)) = subject(scope) else {
        return Handled::failed("Cannot run this here", "expected a service or a namespace");
    };
    // A cluster that cannot be reached says so, not "cannot run this here".
    let c = match client(cx, scope) {
        Ok(c) => c,
        Err(refusal) => return refusal.into_handled(),
    };
    let since = since.unwrap_or(Duration::from_secs(3600));
    match workloads::events(&c, subject, since, now).await {
        Ok(rows) if rows.is_empty() => Handled::info(Reply::new(
            Outcome::Info,
            format!(
                "{label}: no events in the last {}",
                humantime::format_duration(since)
            ),
        )),
        Ok(rows) => {
            let warnings = rows.iter().filter(|r| r.is_warning()).count();
            let cells: Vec<Vec<String>> = rows
                .iter()
                .map(|e| {
                    vec![
                        e.last_seen
                            .map(|t| human_duration(now.duration_since(t)))
                            .unwrap_or_else(|| "?".into()),
                        e.kind.clone(),
                        e.reason.clone(),
                        e.object.clone(),
                        if e.count > 1 {
                            format!("{} (x{})", e.message, e.count)
                        } else {
                            e.message.clone()
                        },
                    ]
                })
                .collect();
            let (body, note) = clip_head(&table(
                &["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"],
                &cells,
                100,
            ));
            let mut reply = Reply::new(
                Outcome::Info,
                format!(
                    "{label}: {} events, {warnings} warnings, last {}",
                    rows.len(),
                    humantime::format_duration(since)
                ),
            )
            .code(None, body);
            if let Some(n) = note {
                reply = reply.text(n);
            }
            Handled::info(reply)
        }
        Err(e) => Handled::failed(format!("Could not list the events of {label}"), e),
    }
}
