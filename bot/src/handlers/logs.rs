//! `logs`: merged, redacted, capped for chat.

use oncall_grammar::{LogsRequest, ServiceEntry};
use oncall_ops::logs::{logs, LogsQuery};
use oncall_ops::DeploymentRef;

use crate::model::Handled;
use crate::reply::{clip_tail, Outcome, Reply};
use super::{Context, Handle, Refusal};

impl Handle for LogsRequest {
    async fn handle(&self, cx: &Context<'_>) -> Result<Handled, Refusal> {
        let (client, entry) = cx.service_client()?;
        Ok(run(&client, entry, cx.pod(), self).await)
    }
}

pub async fn run(
    client: &kube::Client,
    entry: &ServiceEntry,
    pod: Option<&str>,
    request: &LogsRequest,
) -> Handled {
    let target = DeploymentRef {
        namespace: &entry.namespace,
        name: entry.deployment(),
    };
    let query = LogsQuery {
        pod,
        container: request.container.as_deref(),
        tail: request.tail,
        since: request.since,
        previous: request.previous,
        grep: request.grep.as_deref(),
    };
    let subject = pod.map(String::from).unwrap_or_else(|| entry.name.clone());
    match logs(client, target, &query).await {
        Ok(out) => {
            let what = if request.previous {
                "previous-instance log"
            } else {
                "log"
            };
            let mut reply = Reply::new(
                Outcome::Info,
                format!(
                    "{subject}: {} {what} lines from {} pod(s), container {}",
                    out.lines.len(),
                    out.pods,
                    out.container
                ),
            );
            if out.lines.is_empty() {
                reply = reply.text("No lines matched.");
            } else {
                let (body, note) = clip_tail(&out.lines);
                reply = reply.code(None, body);
                if let Some(n) = note {
                    reply = reply.text(format!("{n}; narrow with --since, --tail or --grep"));
                }
            }
            if out.filtered_out > 0 {
                reply = reply.text(format!("--grep left out {} lines.", out.filtered_out));
            }
            for note in &out.notes {
                reply = reply.text(format!("ℹ️ {note}"));
            }
            reply = reply
                .text("Secrets (tokens, passwords, keys) are redacted before anything is shown.");
            Handled::info(reply)
        }
        Err(e) => Handled::failed(format!("Could not read the logs of {subject}"), e),
    }
}
