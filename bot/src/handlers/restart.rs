//! `restart <service>`: a rolling restart like `kubectl rollout restart`.

use oncall_commands::ops::{restart, DeploymentRef};
use oncall_commands::ServiceEntry;

use crate::reply::{Outcome, Reply};
use crate::router::{Actor, Handled};

pub async fn run(
    client: &kube::Client,
    entry: &ServiceEntry,
    now: jiff::Timestamp,
    dry_run: bool,
    actor: &Actor,
) -> Handled {
    let target = DeploymentRef {
        namespace: &entry.namespace,
        name: entry.deployment(),
    };
    match restart::restart(client, target, now, dry_run).await {
        Ok(out) => {
            let name = &entry.name;
            let reply = if out.dry_run {
                Reply::new(Outcome::Done, format!("Dry run: {name} would restart"))
                    .text(format!(
                        "{actor} would restart all {} pods of deployment/{} in namespace {} (restartedAt {}).",
                        out.replicas,
                        entry.deployment(),
                        entry.namespace,
                        out.restarted_at
                    ))
                    .text("Nothing was changed (server-side dry run).")
            } else {
                Reply::new(Outcome::Done, format!("Restarting {name}"))
                    .text(format!(
                        "{actor} started a rolling restart of deployment/{} in namespace {}: {} pods will be replaced one by one.",
                        entry.deployment(),
                        entry.namespace,
                        out.replicas
                    ))
                    .fields(vec![
                        ("restartedAt".into(), out.restarted_at.clone()),
                        ("Follow".into(), format!("/oncall status {name}")),
                        ("Undo".into(), "nothing to undo: a restart changes no configuration".into()),
                    ])
            };
            let summary = format!(
                "{name} restartedAt {}{}",
                out.restarted_at,
                if out.dry_run { " (dry run)" } else { "" }
            );
            Handled::ok(reply, summary)
        }
        Err(e) => Handled::failed(format!("Could not restart {}", entry.name), e),
    }
}
