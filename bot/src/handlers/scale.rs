//! `scale <service> <replicas>`: before → after, who, and how to undo.

use oncall_grammar::ServiceEntry;
use oncall_ops::{scale, DeploymentRef};

use crate::model::{Actor, Handled};
use crate::reply::{Outcome, Reply};
use super::{Context, Handle, Refusal};

impl Handle for oncall_grammar::Scale {
    async fn handle(&self, cx: &Context<'_>) -> Result<Handled, Refusal> {
        let (client, entry) = cx.service_client()?;
        Ok(run(&client, entry, self.replicas, self.dry_run, self.force, cx.actor).await)
    }
}

pub async fn run(
    client: &kube::Client,
    entry: &ServiceEntry,
    replicas: u32,
    dry_run: bool,
    force: bool,
    actor: &Actor,
) -> Handled {
    let target = DeploymentRef {
        namespace: &entry.namespace,
        name: entry.deployment(),
    };
    match scale::scale(client, target, replicas, dry_run, force).await {
        Ok(out) => {
            let name = &entry.name;
            let (title, verb) = if out.dry_run {
                (
                    format!("Dry run: {name} would scale {} → {}", out.before, out.after),
                    "would scale",
                )
            } else {
                (
                    format!("Scaled {name} {} → {}", out.before, out.after),
                    "scaled",
                )
            };
            let mut reply = Reply::new(Outcome::Done, title).text(format!(
                "{actor} {verb} deployment/{} in namespace {} from {} to {} replicas.",
                entry.deployment(),
                entry.namespace,
                out.before,
                out.after
            ));
            if let Some(hpa) = &out.hpa {
                reply = reply.text(format!(
                    "⚠️ HorizontalPodAutoscaler `{}` manages this deployment ({}–{} replicas) and will override a manual change.",
                    hpa.name, hpa.min, hpa.max
                ));
            }
            reply = super::follow_and_undo(
                reply,
                out.dry_run,
                Some(format!("/oncall status {name}")),
                Some(format!("/oncall scale {name} {}", out.before)),
            );
            let summary = format!(
                "{name} {} → {}{}",
                out.before,
                out.after,
                if out.dry_run { " (dry run)" } else { "" }
            );
            Handled::ok(reply, summary)
        }
        Err(e) => Handled::failed(format!("Could not scale {}", entry.name), e),
    }
}
