//! `status <service>`: rollout status by kubectl's algorithm and a pod table.

use oncall_grammar::ServiceEntry;
use oncall_ops::kubectl::RolloutState;
use oncall_ops::{status, DeploymentRef};

use crate::model::Handled;
use crate::reply::{Outcome, Reply};
use super::{Context, Handle, Refusal};

impl Handle for oncall_grammar::Status {
    async fn handle(&self, cx: &Context<'_>) -> Result<Handled, Refusal> {
        let (client, entry) = cx.service_client()?;
        Ok(run(&client, entry, cx.now).await)
    }
}

pub async fn run(client: &kube::Client, entry: &ServiceEntry, now: jiff::Timestamp) -> Handled {
    let target = DeploymentRef {
        namespace: &entry.namespace,
        name: entry.deployment(),
    };
    match status::status(client, target, now).await {
        Ok(report) => {
            let marker = match report.rollout.state {
                RolloutState::Complete => "✓",
                RolloutState::Failed => "✗",
                RolloutState::InProgress | RolloutState::NotObserved => "…",
            };
            let mut fields = vec![
                (
                    "Rollout".into(),
                    format!("{marker} {}", report.rollout.message),
                ),
                (
                    "Replicas".into(),
                    format!(
                        "{} desired · {} updated · {} ready · {} available",
                        report.desired, report.updated, report.ready, report.available
                    ),
                ),
                (
                    "Deployment".into(),
                    format!("{}/{}", entry.namespace, entry.deployment()),
                ),
                ("Images".into(), report.images.join(", ")),
            ];
            if report.rollout.paused {
                fields.push((
                    "Paused".into(),
                    "yes: template changes will not roll out".into(),
                ));
            }
            if let Some(hpa) = &report.hpa {
                fields.push((
                    "Autoscaler".into(),
                    format!("{} ({}–{} replicas)", hpa.name, hpa.min, hpa.max),
                ));
            }
            let pods = if report.pods.is_empty() {
                "No pods.".to_string()
            } else {
                super::pod_table(&report.pods)
            };
            let reply = Reply::new(
                Outcome::Info,
                format!("{}: {}", entry.name, report.rollout.message),
            )
            .fields(fields)
            .code(Some("Pods"), pods);
            Handled::info(reply)
        }
        Err(e) => Handled::failed(format!("Could not read {}", entry.name), e),
    }
}
