//! `env set` / `env unset`: which keys were added, changed or removed (never
//! a value), and the undo: the rollback to the previous revision.

use oncall_grammar::ServiceEntry;
use oncall_ops::env::change_env;
use oncall_ops::DeploymentRef;

use crate::model::{Actor, Handled};
use crate::reply::{Outcome, Reply};
use super::{Context, Handle, Refusal};

impl Handle for oncall_grammar::EnvSet {
    async fn handle(&self, cx: &Context<'_>) -> Result<Handled, Refusal> {
        let (client, entry) = cx.service_client()?;
        let changes: Vec<(String, Option<String>)> = self
            .vars
            .iter()
            .map(|(k, v)| (k.clone(), Some(v.clone())))
            .collect();
        let container = self.container.as_deref();
        Ok(run(&client, entry, container, &changes, self.dry_run, cx.actor).await)
    }
}

impl Handle for oncall_grammar::EnvUnset {
    async fn handle(&self, cx: &Context<'_>) -> Result<Handled, Refusal> {
        let (client, entry) = cx.service_client()?;
        let changes: Vec<(String, Option<String>)> =
            self.keys.iter().map(|k| (k.clone(), None)).collect();
        let container = self.container.as_deref();
        Ok(run(&client, entry, container, &changes, self.dry_run, cx.actor).await)
    }
}

pub async fn run(
    client: &kube::Client,
    entry: &ServiceEntry,
    container: Option<&str>,
    changes: &[(String, Option<String>)],
    dry_run: bool,
    actor: &Actor,
) -> Handled {
    let target = DeploymentRef {
        namespace: &entry.namespace,
        name: entry.deployment(),
    };
    let name = &entry.name;
    match change_env(client, target, container, changes, dry_run).await {
        Ok(out) => {
            // Which keys changed, never their values (see EnvChangeKind).
            let lines: Vec<String> = out
                .changes
                .iter()
                .map(|c| format!("{}: {}", c.key, c.kind.as_str()))
                .collect();
            // The undo is the previous revision: building `env set` text
            // would need the old values, which are not shown anywhere.
            let undo = format!("/oncall rollback {name}");
            let title = format!(
                "{}{name}: {} environment variable(s) changed",
                if dry_run { "Dry run: " } else { "" },
                out.changes.len()
            );
            let mut reply = Reply::new(Outcome::Done, title)
                .text(format!(
                    "{actor} {} container {} of deployment/{} in namespace {}.",
                    if dry_run { "would change" } else { "changed" },
                    out.container,
                    entry.deployment(),
                    entry.namespace
                ))
                .code(None, lines.join("\n"));
            if dry_run {
                reply = reply.text("Nothing was changed (server-side dry run).");
            } else {
                reply = reply
                    .text("The pod template changed, so the pods are being replaced one by one.")
                    .fields(vec![
                        (
                            "Follow".into(),
                            format!("/oncall rollout status {name} --wait 5m"),
                        ),
                        ("Undo".into(), undo),
                    ]);
            }
            Handled::ok(
                reply,
                format!(
                    "{}{}",
                    lines.join("; "),
                    if dry_run { " (dry run)" } else { "" }
                ),
            )
        }
        Err(e) => Handled::failed(format!("Could not change the environment of {name}"), e),
    }
}
