//! `set image`: deploy another image, old → new, with the undo.

use oncall_grammar::ServiceEntry;
use oncall_ops::{rollout, DeploymentRef};

use crate::model::{Actor, Handled};
use crate::reply::{Outcome, Reply};
use super::{Context, Handle, Refusal};

impl Handle for oncall_grammar::SetImage {
    async fn handle(&self, cx: &Context<'_>) -> Result<Handled, Refusal> {
        let (client, entry) = cx.service_client()?;
        let container = self.container.as_deref();
        Ok(run(&client, entry, container, &self.image, self.dry_run, cx.actor).await)
    }
}

pub async fn run(
    client: &kube::Client,
    entry: &ServiceEntry,
    container: Option<&str>,
    image: &str,
    dry_run: bool,
    actor: &Actor,
) -> Handled {
    let target = DeploymentRef {
        namespace: &entry.namespace,
        name: entry.deployment(),
    };
    let name = &entry.name;
    let cause = format!(
        "oncall set image {name} {}{image} by {}",
        container.map(|c| format!("{c}=")).unwrap_or_default(),
        actor.principal
    );
    match rollout::set_image(client, target, container, image, &cause, dry_run).await {
        Ok(out) if out.before == out.after => Handled::ok(
            Reply::new(Outcome::Info, format!("{name} already runs {image}"))
                .text("Nothing was changed."),
            "unchanged",
        ),
        Ok(out) => {
            let title = if dry_run {
                format!("Dry run: {name} would run {}", out.after)
            } else {
                format!("Deploying {} to {name}", out.after)
            };
            let mut reply = Reply::new(Outcome::Done, title).text(format!(
                "{actor} {} container {} of deployment/{} in namespace {}: {} → {}.",
                if dry_run { "would change" } else { "changed" },
                out.container,
                entry.deployment(),
                entry.namespace,
                out.before,
                out.after
            ));
            reply = super::follow_and_undo(
                reply,
                dry_run,
                Some(format!("/oncall rollout status {name} --wait 5m")),
                out.revision_before
                    .map(|r| format!("/oncall rollback {name} --to-revision {r}")),
            );
            Handled::ok(
                reply,
                format!(
                    "{}: {} → {}{}",
                    out.container,
                    out.before,
                    out.after,
                    if dry_run { " (dry run)" } else { "" }
                ),
            )
        }
        Err(e) => Handled::failed(format!("Could not set the image of {name}"), e),
    }
}
