//! `quarantine` / `unquarantine` a pod (runbook 004).

use oncall_grammar::ServiceEntry;
use oncall_ops::pod_label::set_quarantine;

use crate::model::{Actor, Handled};
use crate::reply::{Outcome, Reply};
use super::{Context, Handle, Refusal};

impl Handle for oncall_grammar::Quarantine {
    async fn handle(&self, cx: &Context<'_>) -> Result<Handled, Refusal> {
        let (client, entry) = cx.service_client()?;
        let pod = cx.pod().ok_or_else(super::mismatch)?;
        Ok(run(&client, entry, pod, self.on, self.dry_run, cx.actor).await)
    }
}

pub async fn run(
    client: &kube::Client,
    entry: &ServiceEntry,
    pod: &str,
    on: bool,
    dry_run: bool,
    actor: &Actor,
) -> Handled {
    match set_quarantine(client, &entry.namespace, pod, on, dry_run).await {
        Ok(out) => {
            let show = |v: &Option<String>| {
                v.as_ref()
                    .map(|v| format!("quarantine={v}"))
                    .unwrap_or_else(|| "no quarantine label".into())
            };
            let (title, undo, why) = if on {
                (
                    format!("{}Quarantined {pod}", if dry_run { "Dry run: " } else { "" }),
                    format!("/oncall unquarantine {pod}"),
                    "Services that select `quarantine notin (true)` stop routing to it; it keeps running so you can still read `logs` and `diagnose` it.",
                )
            } else {
                (
                    format!(
                        "{}Released {pod} from quarantine",
                        if dry_run { "Dry run: " } else { "" }
                    ),
                    format!("/oncall quarantine {pod}"),
                    "It can receive traffic again.",
                )
            };
            let mut reply = Reply::new(Outcome::Done, title)
                .text(format!(
                    "{actor} {} pod {pod} ({} in namespace {}): {} → {}.",
                    if dry_run {
                        "would relabel"
                    } else {
                        "relabelled"
                    },
                    entry.name,
                    entry.namespace,
                    show(&out.before),
                    show(&out.after)
                ))
                .text(why);
            if dry_run {
                reply = reply.text("Nothing was changed (server-side dry run).");
            } else {
                reply = reply.fields(vec![("Undo".into(), undo)]);
            }
            Handled::ok(
                reply,
                format!("{pod}: {} → {}", show(&out.before), show(&out.after)),
            )
        }
        Err(e) => Handled::failed(format!("Could not relabel {pod}"), e),
    }
}
