//! `diagnose`: a verdict first, then the evidence per pod.

use oncall_grammar::ServiceEntry;
use oncall_ops::diagnose::diagnose;
use oncall_ops::workloads::Subject;

use crate::model::Handled;
use crate::reply::{clip_tail, Outcome, Reply};
use super::{Context, Handle, Refusal};

impl Handle for oncall_grammar::Diagnose {
    async fn handle(&self, cx: &Context<'_>) -> Result<Handled, Refusal> {
        let (client, entry) = cx.service_client()?;
        // Crash logs are logs: shown only to those who may read them here.
        let show_logs = cx.may("logs");
        Ok(run(&client, entry, cx.pod(), cx.now, show_logs).await)
    }
}

pub async fn run(
    client: &kube::Client,
    entry: &ServiceEntry,
    pod: Option<&str>,
    now: jiff::Timestamp,
    show_logs: bool,
) -> Handled {
    let subject = Subject::Deployment {
        namespace: &entry.namespace,
        name: entry.deployment(),
    };
    let label = pod.unwrap_or(&entry.name).to_string();
    match diagnose(client, subject, pod, now).await {
        Ok(d) => {
            let outcome = if d.healthy {
                Outcome::Info
            } else {
                Outcome::Failed
            };
            let mut reply = Reply::new(outcome, format!("{label}: {}", d.verdict));
            let mut lines: Vec<String> = Vec::new();
            for p in &d.pods {
                lines.push(format!(
                    "{}  {}  {}  ready={}  restarts={}",
                    p.name,
                    p.phase,
                    p.status,
                    if p.ready { "yes" } else { "no" },
                    p.restarts
                ));
                for detail in &p.details {
                    lines.push(format!("  • {detail}"));
                }
                for w in &p.warnings {
                    lines.push(format!(
                        "  ⚠ {}: {}{}",
                        w.reason,
                        w.message,
                        if w.count > 1 {
                            format!(" (x{})", w.count)
                        } else {
                            String::new()
                        }
                    ));
                }
                if !p.crash_logs.is_empty() && !show_logs {
                    lines.push(
                        "  (crash logs hidden: reading them needs the `logs` permission here)"
                            .into(),
                    );
                } else if !p.crash_logs.is_empty() {
                    lines.push("  last lines before the crash:".into());
                    lines.extend(p.crash_logs.iter().map(|l| format!("    {l}")));
                }
            }
            if !lines.is_empty() {
                let (body, note) = clip_tail(&lines);
                reply = reply.code(Some("Pods"), body);
                if let Some(n) = note {
                    reply = reply.text(n);
                }
            }
            if !d.healthy {
                reply = reply.text(format!(
                    "Next: `/oncall events {}` for the full timeline, `/oncall rollback {}` if a recent change caused it.",
                    entry.name, entry.name
                ));
            }
            let mut handled = Handled::info(reply);
            if !d.healthy {
                handled.error = Some(d.verdict);
            }
            handled
        }
        Err(e) => Handled::failed(format!("Could not diagnose {label}"), e),
    }
}
