//! `restart`: a rolling restart like `kubectl rollout restart`, of one
//! service, several (seed 001 restarts backend and recurring-task-service
//! together), or every deployment of a namespace.

use oncall_grammar::ServiceEntry;
use oncall_ops::{restart, DeploymentRef};

use crate::model::{Actor, Handled};
use crate::reply::{table, Outcome, Reply};
use super::{mismatch, Context, Handle, Refusal};
use oncall_grammar::Scope;

impl Handle for oncall_grammar::Restart {
    async fn handle(&self, cx: &Context<'_>) -> Result<Handled, Refusal> {
        let Scope::Services(entries) = cx.scope else {
            return Err(mismatch().into());
        };
        Ok(run_many(cx, entries, cx.now, self.dry_run, cx.actor).await)
    }
}

impl Handle for oncall_grammar::RestartAll {
    async fn handle(&self, cx: &Context<'_>) -> Result<Handled, Refusal> {
        Ok(run_all(cx, &self.namespace, cx.now, self.dry_run, cx.actor).await)
    }
}

/// One service, as before.
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
                        ("Follow".into(), format!("/oncall rollout status {name} --wait 5m")),
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

/// Several services: each is restarted; the reply lists every result.
pub async fn run_many(
    cx: &Context<'_>,
    entries: &[&ServiceEntry],
    now: jiff::Timestamp,
    dry_run: bool,
    actor: &Actor,
) -> Handled {
    if let [one] = entries {
        return match cx.client_for(one) {
            Ok(c) => run(&c, one, now, dry_run, actor).await,
            Err(refusal) => refusal.into_handled(),
        };
    }
    let mut results: Vec<(String, String, String, Result<(), String>)> = Vec::new();
    for entry in entries {
        let outcome = match cx.client_for(entry) {
            Ok(c) => restart::restart(
                &c,
                DeploymentRef {
                    namespace: &entry.namespace,
                    name: entry.deployment(),
                },
                now,
                dry_run,
            )
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
            Err(r) => Err(r.into_handled().error.unwrap_or_default()),
        };
        results.push((
            entry.name.clone(),
            entry.namespace.clone(),
            entry.deployment().to_string(),
            outcome,
        ));
    }
    summarize(results, dry_run, actor, "the named services")
}

/// Every deployment in a namespace (paused ones are skipped and said so).
pub async fn run_all(
    cx: &Context<'_>,
    namespace: &str,
    now: jiff::Timestamp,
    dry_run: bool,
    actor: &Actor,
) -> Handled {
    let client = match cx.client_for_namespace(namespace) {
        Ok(c) => c,
        Err(refusal) => return refusal.into_handled(),
    };
    let deployments = match oncall_ops::workloads::deployments_in(&client, namespace).await {
        Ok(list) => list,
        Err(e) => return Handled::failed(format!("Could not list deployments in {namespace}"), e),
    };
    // Only the catalog's deployments: the catalog is the boundary of what
    // oncall may touch, whatever else shares the namespace.
    let in_catalog: Vec<&str> = cx
        .catalog()
        .services()
        .iter()
        .filter(|s| s.namespace == namespace)
        .map(|s| s.deployment())
        .collect();
    let (deployments, outside): (Vec<_>, Vec<_>) = deployments.into_iter().partition(|d| {
        d.metadata
            .name
            .as_deref()
            .is_some_and(|n| in_catalog.contains(&n))
    });
    let mut results = Vec::new();
    for d in deployments {
        let name = d.metadata.name.clone().unwrap_or_default();
        let outcome = restart::restart(
            &client,
            DeploymentRef {
                namespace,
                name: &name,
            },
            now,
            dry_run,
        )
        .await
        .map(|_| ())
        .map_err(|e| e.to_string());
        results.push((name.clone(), namespace.to_string(), name, outcome));
    }
    if results.is_empty() {
        return Handled::info(Reply::new(
            Outcome::Info,
            format!("No deployments in namespace {namespace}"),
        ));
    }
    let mut handled = summarize(
        results,
        dry_run,
        actor,
        &format!("every deployment in namespace {namespace}"),
    );
    if !outside.is_empty() {
        handled.reply = handled.reply.text(format!(
            "Left alone: {} deployment(s) in {namespace} that are not in the catalog.",
            outside.len()
        ));
    }
    handled
}

fn summarize(
    results: Vec<(String, String, String, Result<(), String>)>,
    dry_run: bool,
    actor: &Actor,
    what: &str,
) -> Handled {
    let ok = results.iter().filter(|r| r.3.is_ok()).count();
    let total = results.len();
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|(name, ns, _, r)| {
            vec![
                name.clone(),
                ns.clone(),
                match r {
                    Ok(()) if dry_run => "would restart".into(),
                    Ok(()) => "restarting".into(),
                    Err(e) => format!("failed: {e}"),
                },
            ]
        })
        .collect();
    let verb = if dry_run {
        "Dry run: would restart"
    } else {
        "Restarting"
    };
    let outcome = if ok == total {
        Outcome::Done
    } else {
        Outcome::Failed
    };
    let mut reply = Reply::new(outcome, format!("{verb} {ok} of {total} services"))
        .text(format!(
            "{actor} {} {what}.",
            if dry_run {
                "would restart"
            } else {
                "restarted"
            }
        ))
        .code(None, table(&["SERVICE", "NAMESPACE", "RESULT"], &rows, 120));
    if dry_run {
        reply = reply.text("Nothing was changed (server-side dry run).");
    } else {
        reply = reply.text("Follow each with `/oncall rollout status <service> --wait 5m`. Nothing to undo: a restart changes no configuration.");
    }
    let names: Vec<&str> = results.iter().map(|r| r.0.as_str()).collect();
    let summary = format!(
        "{ok}/{total} restarted: {}{}",
        names.join(", "),
        if dry_run { " (dry run)" } else { "" }
    );
    let errors: Vec<String> = results
        .iter()
        .filter_map(|r| r.3.as_ref().err().map(|e| format!("{}: {e}", r.0)))
        .collect();
    Handled {
        reply,
        summary: Some(summary),
        error: (!errors.is_empty()).then(|| errors.join("; ")),
        decision: None,
    }
}
