//! `hpa`: show a service's autoscaler, or change its bounds.

use oncall_grammar::ServiceEntry;
use oncall_ops::{hpa, DeploymentRef};

use crate::model::{Actor, Handled};
use crate::reply::{Outcome, Reply};
use super::{Context, Handle, Refusal};

impl Handle for oncall_grammar::Hpa {
    async fn handle(&self, cx: &Context<'_>) -> Result<Handled, Refusal> {
        let (client, entry) = cx.service_client()?;
        let bounds = Bounds {
            min: self.min,
            max: self.max,
            force: self.force,
        };
        Ok(run(&client, entry, bounds, self.dry_run, cx.actor).await)
    }
}

/// The bounds asked for (none: show the autoscaler).
pub struct Bounds {
    pub min: Option<u32>,
    pub max: Option<u32>,
    /// Raising the maximum is allowed.
    pub force: bool,
}

pub async fn run(
    client: &kube::Client,
    entry: &ServiceEntry,
    bounds: Bounds,
    dry_run: bool,
    actor: &Actor,
) -> Handled {
    let Bounds { min, max, force } = bounds;
    let target = DeploymentRef {
        namespace: &entry.namespace,
        name: entry.deployment(),
    };
    let name = &entry.name;
    if min.is_none() && max.is_none() {
        return match hpa::show(client, target).await {
            Ok(r) => {
                let mut fields = vec![
                    ("Autoscaler".into(), r.name.clone()),
                    (
                        "Replicas".into(),
                        format!(
                            "{} current · {} desired · {}–{} allowed",
                            r.current, r.desired, r.min, r.max
                        ),
                    ),
                ];
                if !r.metrics.is_empty() {
                    fields.push(("Metrics (current / target)".into(), r.metrics.join(", ")));
                }
                let mut reply = Reply::new(
                    Outcome::Info,
                    format!("{name}: autoscaled {}–{} replicas", r.min, r.max),
                )
                .fields(fields);
                if !r.conditions.is_empty() {
                    reply = reply.code(Some("Conditions"), r.conditions.join("\n"));
                }
                Handled::info(reply)
            }
            Err(e) => Handled::failed(format!("Could not read the autoscaler of {name}"), e),
        };
    }
    match hpa::set_bounds(client, target, min, max, dry_run, force).await {
        Ok(c) => {
            let (b, a) = (c.before, c.after);
            let title = if dry_run {
                format!("Dry run: {name} autoscaler would be {}–{}", a.0, a.1)
            } else {
                format!("{name} autoscaler {}–{} → {}–{}", b.0, b.1, a.0, a.1)
            };
            let mut reply = Reply::new(Outcome::Done, title).text(format!(
                "{actor} {} HorizontalPodAutoscaler {} from min {} / max {} to min {} / max {}.",
                if dry_run { "would change" } else { "changed" },
                c.name,
                b.0,
                b.1,
                a.0,
                a.1
            ));
            if dry_run {
                reply = reply.text("Nothing was changed (server-side dry run).");
            } else {
                reply = reply.fields(vec![(
                    "Undo".into(),
                    format!(
                        "/oncall hpa {name} --min {} --max {}{}",
                        b.0,
                        b.1,
                        if b.1 > a.1 { " --force" } else { "" }
                    ),
                )]);
            }
            Handled::ok(
                reply,
                format!(
                    "{} {}–{} → {}–{}{}",
                    c.name,
                    b.0,
                    b.1,
                    a.0,
                    a.1,
                    if dry_run { " (dry run)" } else { "" }
                ),
            )
        }
        Err(e) => Handled::failed(format!("Could not change the autoscaler of {name}"), e),
    }
}
