//! `env set` / `env unset`: before → after per variable, and the undo.

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
            let show = |v: &Option<String>| {
                v.clone()
                    .map(|v| format!("{v:?}"))
                    .unwrap_or_else(|| "(unset)".into())
            };
            let lines: Vec<String> = out
                .changes
                .iter()
                .map(|c| format!("{}: {} → {}", c.key, show(&c.before), show(&c.after)))
                .collect();
            // The undo puts back what was there and removes what was new.
            let restore: Vec<String> = out
                .changes
                .iter()
                .filter_map(|c| c.before.as_ref().map(|b| format!("{}={b}", c.key)))
                .collect();
            let remove: Vec<&str> = out
                .changes
                .iter()
                .filter(|c| c.before.is_none())
                .map(|c| c.key.as_str())
                .collect();
            let mut undo = Vec::new();
            if !restore.is_empty() {
                undo.push(format!("/oncall env set {name} {}", restore.join(" ")));
            }
            if !remove.is_empty() {
                undo.push(format!("/oncall env unset {name} {}", remove.join(" ")));
            }
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
                        ("Undo".into(), undo.join(" then ")),
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
