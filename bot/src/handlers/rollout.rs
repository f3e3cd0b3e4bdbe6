//! `rollout status [--wait]` and `rollout history`.

use std::time::Duration;

use oncall_grammar::ServiceEntry;
use oncall_ops::kubectl::{human_duration, RolloutState};
use oncall_ops::{rollout, DeploymentRef};

use crate::model::Handled;
use crate::reply::{clip_head, table, Outcome, Reply};
use super::{Context, Handle, Refusal};

impl Handle for oncall_grammar::RolloutStatus {
    async fn handle(&self, cx: &Context<'_>) -> Result<Handled, Refusal> {
        let (client, entry) = cx.service_client()?;
        // Following a rollout holds a slot until it ends.
        let _slot = match self.wait {
            Some(_) => Some(cx.wait_slot()?),
            None => None,
        };
        let poll = cx.timing().rollout_poll;
        Ok(status(&client, entry, self.wait, poll, cx.progress(), cx.shutdown()).await)
    }
}

impl Handle for oncall_grammar::RolloutHistory {
    async fn handle(&self, cx: &Context<'_>) -> Result<Handled, Refusal> {
        let (client, entry) = cx.service_client()?;
        Ok(history(&client, entry, cx.now).await)
    }
}

pub async fn status(
    client: &kube::Client,
    entry: &ServiceEntry,
    wait: Option<Duration>,
    poll: Duration,
    progress: Option<crate::model::ProgressSink>,
    shutdown: tokio_util::sync::CancellationToken,
) -> Handled {
    let target = DeploymentRef {
        namespace: &entry.namespace,
        name: entry.deployment(),
    };
    let timeout = wait.unwrap_or(Duration::ZERO);
    let waited = rollout::wait(client, target, timeout, poll, |s| {
        if let Some(p) = &progress {
            let _ = p.send(s.message.clone());
        }
    });
    let result = tokio::select! {
        result = waited => result,
        // oncall is stopping: end the wait (the rollout itself goes on).
        _ = shutdown.cancelled(), if wait.is_some() => {
            let reply = Reply::new(
                Outcome::Info,
                format!("{}: stopped following the rollout", entry.name),
            )
            .text("oncall is restarting, so it stopped watching; the rollout itself is not affected.")
            .text(format!(
                "Follow it again with `/oncall rollout status {} --wait 5m`.",
                entry.name
            ));
            let mut handled = Handled::info(reply);
            handled.error = Some("interrupted: oncall shut down during the wait".into());
            return handled;
        }
    };
    match result {
        Ok(out) => {
            let (outcome, title) = match (&out.last.state, out.timed_out, wait.is_some()) {
                (RolloutState::Complete, _, _) => {
                    (Outcome::Info, format!("{}: rolled out", entry.name))
                }
                (RolloutState::Failed, _, _) => {
                    (Outcome::Failed, format!("{}: rollout failed", entry.name))
                }
                (_, true, true) => (
                    Outcome::Failed,
                    format!(
                        "{}: still rolling out after {}",
                        entry.name,
                        humantime::format_duration(timeout)
                    ),
                ),
                _ => (Outcome::Info, format!("{}: rolling out", entry.name)),
            };
            let mut reply = Reply::new(outcome, title).text(out.last.message.clone());
            if out.progress.len() > 1 {
                let lines: Vec<String> = out
                    .progress
                    .iter()
                    .map(|(s, m)| format!("+{s}s  {m}"))
                    .collect();
                reply = reply.code(Some("Progress"), lines.join("\n"));
            }
            match out.last.state {
                RolloutState::Failed => {
                    reply = reply.text(format!(
                    "Find out why with `/oncall diagnose {}`; go back with `/oncall rollback {}`.",
                    entry.name, entry.name
                ))
                }
                RolloutState::InProgress | RolloutState::NotObserved if wait.is_none() => {
                    reply = reply.text(format!(
                        "Follow it with `/oncall rollout status {} --wait 5m`.",
                        entry.name
                    ))
                }
                _ => {}
            }
            if out.last.paused {
                reply = reply.text("⚠️ The deployment is paused: template changes will not roll out until it is resumed.");
            }
            let mut handled = Handled::info(reply);
            if out.last.state == RolloutState::Failed || (out.timed_out && wait.is_some()) {
                handled.error = Some(out.last.message);
            }
            handled
        }
        Err(e) => Handled::failed(format!("Could not read {}", entry.name), e),
    }
}

pub async fn history(client: &kube::Client, entry: &ServiceEntry, now: jiff::Timestamp) -> Handled {
    let target = DeploymentRef {
        namespace: &entry.namespace,
        name: entry.deployment(),
    };
    match rollout::history(client, target).await {
        Ok(revisions) if revisions.is_empty() => Handled::info(Reply::new(
            Outcome::Info,
            format!("{}: no rollout history", entry.name),
        )),
        Ok(revisions) => {
            let rows: Vec<Vec<String>> = revisions
                .iter()
                .rev()
                .map(|r| {
                    vec![
                        format!(
                            "{}{}",
                            r.revision,
                            if r.current { " (current)" } else { "" }
                        ),
                        r.change_cause.clone().unwrap_or_else(|| "<none>".into()),
                        r.images.join(", "),
                        r.created
                            .map(|t| human_duration(now.duration_since(t)))
                            .unwrap_or_default(),
                    ]
                })
                .collect();
            let (body, note) = clip_head(&table(
                &["REVISION", "CHANGE-CAUSE", "IMAGES", "AGE"],
                &rows,
                120,
            ));
            let mut reply = Reply::new(
                Outcome::Info,
                format!("{}: {} revisions", entry.name, revisions.len()),
            )
            .code(None, body);
            if let Some(n) = note {
                reply = reply.text(n);
            }
            let previous = revisions.iter().rev().find(|r| !r.current);
            if let Some(p) = previous {
                reply = reply.text(format!(
                    "Go back with `/oncall rollback {} --to-revision {}`.",
                    entry.name, p.revision
                ));
            }
            Handled::info(reply)
        }
        Err(e) => Handled::failed(format!("Could not read {}", entry.name), e),
    }
}
