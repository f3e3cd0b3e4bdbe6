//! `rollback [--to-revision N]`: kubectl's undo, with what changes shown.

use oncall_grammar::ServiceEntry;
use oncall_ops::{rollout, DeploymentRef};

use super::arrow;
use crate::model::{Actor, Handled};
use crate::reply::{Outcome, Reply};
use super::{Context, Handle, Refusal};

impl Handle for oncall_grammar::Rollback {
    async fn handle(&self, cx: &Context<'_>) -> Result<Handled, Refusal> {
        let (client, entry) = cx.service_client()?;
        Ok(run(&client, entry, self.to_revision, self.dry_run, cx.actor).await)
    }
}

pub async fn run(
    client: &kube::Client,
    entry: &ServiceEntry,
    to_revision: Option<u32>,
    dry_run: bool,
    actor: &Actor,
) -> Handled {
    let target = DeploymentRef {
        namespace: &entry.namespace,
        name: entry.deployment(),
    };
    let name = &entry.name;
    match rollout::rollback(client, target, to_revision, dry_run).await {
        Ok(out) => {
            if let Some(skipped) = &out.skipped {
                return Handled::ok(
                    Reply::new(Outcome::Info, format!("{name}: nothing to roll back"))
                        .text(format!("{skipped}. Nothing was changed.")),
                    skipped.clone(),
                );
            }
            let changes: Vec<String> = out
                .images_before
                .iter()
                .zip(out.images_after.iter())
                .map(|(b, a)| {
                    if b == a {
                        format!("{b} (unchanged)")
                    } else {
                        arrow(b, a)
                    }
                })
                .collect();
            let from = out
                .from_revision
                .map(|r| r.to_string())
                .unwrap_or_else(|| "?".into());
            let mut reply = if dry_run {
                Reply::new(
                    Outcome::Done,
                    format!(
                        "Dry run: {name} would roll back to revision {}",
                        out.to_revision
                    ),
                )
            } else {
                Reply::new(
                    Outcome::Done,
                    format!("Rolled back {name} to revision {}", out.to_revision),
                )
            };
            reply = reply
                .text(format!(
                    "{actor} {} deployment/{} in namespace {} from revision {from} to the template of revision {}.",
                    if dry_run { "would roll back" } else { "rolled back" },
                    entry.deployment(),
                    entry.namespace,
                    out.to_revision
                ))
                .code(Some("Images"), changes.join("\n"));
            reply = super::follow_and_undo(
                reply,
                dry_run,
                Some(format!("/oncall rollout status {name} --wait 5m")),
                out.from_revision
                    .map(|r| format!("/oncall rollback {name} --to-revision {r}")),
            );
            let summary = format!(
                "{name} revision {from} → template of {}{}",
                out.to_revision,
                if dry_run { " (dry run)" } else { "" }
            );
            Handled::ok(reply, summary)
        }
        Err(e) => Handled::failed(format!("Could not roll back {name}"), e),
    }
}
