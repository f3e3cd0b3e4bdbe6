//! `job run`: a Job from a CronJob (seed 004's manual backup), then progress.

use std::time::Duration;

use oncall_ops::jobs::{default_job_name, run_from_cronjob, JobState};

use crate::model::{Actor, Handled};
use crate::reply::{Outcome, Reply};
use super::{mismatch, Context, Handle, Refusal};
use oncall_grammar::Scope;

impl Handle for oncall_grammar::JobRun {
    async fn handle(&self, cx: &Context<'_>) -> Result<Handled, Refusal> {
        let Scope::CronJob { service, .. } = cx.scope else {
            return Err(mismatch().into());
        };
        let ns = &service.namespace;
        let client = cx.client_for(service)?;
        let name = self.name.as_deref();
        let watch = cx.timing().job_watch;
        Ok(run(&client, ns, &self.cronjob, name, cx.now, self.dry_run, watch, cx.actor).await)
    }
}

#[allow(clippy::too_many_arguments)]
pub async fn run(
    client: &kube::Client,
    namespace: &str,
    cronjob: &str,
    name: Option<&str>,
    now: jiff::Timestamp,
    dry_run: bool,
    watch: Duration,
    actor: &Actor,
) -> Handled {
    let job = name
        .map(String::from)
        .unwrap_or_else(|| default_job_name(cronjob, now));
    match run_from_cronjob(client, namespace, cronjob, &job, dry_run, watch).await {
        Ok(out) => {
            let (title, state) = match &out.state {
                JobState::DryRun => (
                    format!("Dry run: job/{job} would be created from cronjob/{cronjob}"),
                    "dry run".to_string(),
                ),
                JobState::Complete { seconds } => (
                    format!("job/{job} completed"),
                    seconds
                        .map(|s| format!("complete in {s}s"))
                        .unwrap_or_else(|| "complete".into()),
                ),
                JobState::Running { active } => (
                    format!("job/{job} started"),
                    format!("running ({active} active pod(s))"),
                ),
                JobState::Failed { reason } => {
                    (format!("job/{job} failed"), format!("failed: {reason}"))
                }
            };
            let outcome = if matches!(out.state, JobState::Failed { .. }) {
                Outcome::Failed
            } else {
                Outcome::Done
            };
            let mut reply = Reply::new(outcome, title)
                .text(format!(
                    "{actor} {} job/{job} in namespace {namespace} from cronjob/{cronjob}, like `kubectl create job --from=cronjob/{cronjob}`.",
                    if dry_run { "would create" } else { "created" }
                ))
                .fields(vec![("Status".into(), state.clone())]);
            if dry_run {
                reply = reply.text("Nothing was changed (server-side dry run).");
            } else if matches!(out.state, JobState::Running { .. }) {
                reply = reply.text(format!(
                    "It is still running; check with `/oncall events {namespace}`."
                ));
            }
            let mut handled = Handled::ok(reply, format!("job/{job}: {state}"));
            if let JobState::Failed { reason } = out.state {
                handled.error = Some(reason);
            }
            handled
        }
        Err(e) => Handled::failed(format!("Could not run cronjob/{cronjob}"), e),
    }
}
