//! One file per command: each turns a typed command (and, for operations, a
//! kube client and the catalog entry) into a [`Handled`] reply.
//! [`execute`] dispatches an authorized command to its handler.

pub mod approvals;
pub mod can;
pub mod diagnose;
pub mod env;
pub mod health;
pub mod help;
pub mod history;
pub mod hpa;
pub mod jobs;
pub mod logs;
pub mod pods;
pub mod quarantine;
pub mod restart;
pub mod rollback;
pub mod rollout;
pub mod scale;
pub mod set_image;
pub mod status;
pub mod top;
pub mod whoami;

use oncall_grammar::{Command, Scope, ServiceEntry};
use oncall_permissions::Reason;

use crate::model::{Actor, Handled, Invocation};
use crate::reply::{Outcome, Reply};
use crate::router::Router;

/// The reply to a policy denial: what was refused and which rule decided.
pub fn denied(command: &Command, reason: &Reason) -> Reply {
    Reply::new(Outcome::Denied, format!("Not allowed: {command}"))
        .text(reason.explanation.clone())
        .fields(vec![("Decided by".into(), reason.rule.clone())])
        .text("Ask an admin to grant it, or check with `/oncall whoami`.")
}

/// Runs an authorized command on its resolved scope.
pub async fn execute(
    router: &Router,
    command: &Command,
    scope: &Scope<'_>,
    actor: &Actor,
    inv: &Invocation,
) -> Handled {
    let now = router.clock().now();
    // Most commands act on one service (or one of its pods).
    let single: Option<&ServiceEntry> = match scope {
        Scope::Services(entries) if entries.len() == 1 => Some(entries[0]),
        Scope::Pod { service, .. } => Some(service),
        _ => None,
    };
    let pod = match scope {
        Scope::Pod { pod, .. } => Some(pod.as_str()),
        _ => None,
    };
    macro_rules! with_client {
        ($entry:expr, |$c:ident| $body:expr) => {{
            match router.client_for($entry) {
                Ok($c) => $body,
                Err(handled) => handled,
            }
        }};
    }
    match (command, single) {
        (
            Command::Scale {
                replicas,
                dry_run,
                force,
                ..
            },
            Some(e),
        ) => {
            with_client!(e, |c| scale::run(&c, e, *replicas, *dry_run, *force, actor)
                .await)
        }
        (Command::Restart { dry_run, .. }, _) => {
            let Scope::Services(entries) = scope else {
                return mismatch();
            };
            restart::run_many(router, entries, now, *dry_run, actor).await
        }
        (Command::RestartAll { namespace, dry_run }, _) => {
            restart::run_all(router, namespace, now, *dry_run, actor).await
        }
        (Command::Status { .. }, Some(e)) => with_client!(e, |c| status::run(&c, e, now).await),
        (Command::RolloutStatus { wait, .. }, Some(e)) => {
            with_client!(e, |c| rollout::status(
                &c,
                e,
                *wait,
                router.timing().rollout_poll,
                inv.progress.clone(),
                router.supervisor().token(),
            )
            .await)
        }
        (Command::RolloutHistory { .. }, Some(e)) => {
            with_client!(e, |c| rollout::history(&c, e, now).await)
        }
        (
            Command::Rollback {
                to_revision,
                dry_run,
                ..
            },
            Some(e),
        ) => {
            with_client!(e, |c| rollback::run(&c, e, *to_revision, *dry_run, actor)
                .await)
        }
        (
            Command::SetImage {
                container,
                image,
                dry_run,
                ..
            },
            Some(e),
        ) => {
            with_client!(e, |c| set_image::run(
                &c,
                e,
                container.as_deref(),
                image,
                *dry_run,
                actor
            )
            .await)
        }
        (Command::Logs(request), Some(e)) => {
            with_client!(e, |c| logs::run(&c, e, pod, request).await)
        }
        (Command::Pods { .. }, _) => pods::pods(router, scope, now).await,
        (Command::Events { since, .. }, _) => pods::events(router, scope, *since, now).await,
        (
            Command::Hpa {
                min, max, dry_run, ..
            },
            Some(e),
        ) => with_client!(e, |c| hpa::run(&c, e, *min, *max, *dry_run, actor).await),
        (Command::Health { .. }, Some(e)) => health::run(router.http(), e).await,
        (Command::Diagnose { .. }, Some(e)) => {
            with_client!(e, |c| diagnose::run(&c, e, pod, now).await)
        }
        (
            Command::JobRun {
                cronjob,
                name,
                dry_run,
                ..
            },
            _,
        ) => {
            let Scope::CronJob {
                namespace: Some(ns),
                ..
            } = scope
            else {
                return mismatch();
            };
            match router.client_for_namespace(ns) {
                Ok(c) => {
                    jobs::run(
                        &c,
                        ns,
                        cronjob,
                        name.as_deref(),
                        now,
                        *dry_run,
                        router.timing().job_watch,
                        actor,
                    )
                    .await
                }
                Err(handled) => handled,
            }
        }
        (Command::Quarantine { on, dry_run, .. }, Some(e)) => {
            let Some(pod) = pod else { return mismatch() };
            with_client!(e, |c| quarantine::run(&c, e, pod, *on, *dry_run, actor)
                .await)
        }
        (
            Command::EnvSet {
                vars,
                container,
                dry_run,
                ..
            },
            Some(e),
        ) => {
            let changes: Vec<(String, Option<String>)> = vars
                .iter()
                .map(|(k, v)| (k.clone(), Some(v.clone())))
                .collect();
            with_client!(e, |c| env::run(
                &c,
                e,
                container.as_deref(),
                &changes,
                *dry_run,
                actor
            )
            .await)
        }
        (
            Command::EnvUnset {
                keys,
                container,
                dry_run,
                ..
            },
            Some(e),
        ) => {
            let changes: Vec<(String, Option<String>)> =
                keys.iter().map(|k| (k.clone(), None)).collect();
            with_client!(e, |c| env::run(
                &c,
                e,
                container.as_deref(),
                &changes,
                *dry_run,
                actor
            )
            .await)
        }
        (Command::Top { .. }, _) => top::run(router, scope).await,
        (Command::History(filter), _) => history::run(router, filter).await,
        (Command::Can { principal, command }, _) => can::run(router, inv, principal, command),
        // help, whoami, approve and deny are answered by the router itself.
        _ => mismatch(),
    }
}

fn mismatch() -> Handled {
    Handled::failed(
        "Cannot run this here",
        "the command's target did not resolve as expected",
    )
}

/// kubectl's pod table for a code block.
pub(crate) fn pod_table(pods: &[oncall_ops::kubectl::PodRow]) -> String {
    let rows: Vec<Vec<String>> = pods
        .iter()
        .map(|p| {
            vec![
                p.name.clone(),
                p.ready.clone(),
                p.status.clone(),
                p.restarts.clone(),
                p.age.clone(),
            ]
        })
        .collect();
    crate::reply::table(&["NAME", "READY", "STATUS", "RESTARTS", "AGE"], &rows, 63)
}

/// The end of a mutating reply: for a dry run, that nothing changed;
/// otherwise how to follow the change and how to undo it.
pub(crate) fn follow_and_undo(
    reply: Reply,
    dry_run: bool,
    follow: Option<String>,
    undo: Option<String>,
) -> Reply {
    if dry_run {
        return reply.text("Nothing was changed (server-side dry run).");
    }
    let mut fields = Vec::new();
    if let Some(f) = follow {
        fields.push(("Follow".to_string(), f));
    }
    if let Some(u) = undo {
        fields.push(("Undo".to_string(), u));
    }
    reply.fields(fields)
}

/// A `before → after` line for lists.
pub(crate) fn arrow(before: &str, after: &str) -> String {
    format!("{before} → {after}")
}
