//! `diagnose`: runbook 000's "pod not starting", automated. A one-line
//! verdict first, then per pod its phase, container waiting/terminated
//! reasons (ImagePullBackOff, CrashLoopBackOff, OOMKilled, Pending with the
//! scheduler's message), restarts, recent warning events, and the last log
//! lines of crashed containers (their previous instance), redacted.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, LogParams};

use super::workloads::{events, list_pods, EventRow, Subject};
use super::{call, OpsError};
use crate::kubectl::pod_status_reason;
use oncall_grammar::redact::redact_lines;

#[derive(Debug, Clone)]
pub struct PodFinding {
    pub name: String,
    pub phase: String,
    pub status: String,
    pub ready: bool,
    pub restarts: i32,
    /// Human lines: `backend: waiting ImagePullBackOff: Back-off pulling image …`
    pub details: Vec<String>,
    pub warnings: Vec<EventRow>,
    /// Last lines of crashed containers' previous instance.
    pub crash_logs: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Diagnosis {
    pub verdict: String,
    pub healthy: bool,
    pub pods: Vec<PodFinding>,
}

pub async fn diagnose(
    client: &kube::Client,
    subject: Subject<'_>,
    pod: Option<&str>,
    now: jiff::Timestamp,
) -> Result<Diagnosis, OpsError> {
    let ns = subject.namespace().to_string();
    let pods: Vec<Pod> = match pod {
        Some(name) => {
            let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
            vec![call(&format!("pod {name} in namespace {ns}"), api.get(name)).await?]
        }
        None => list_pods(client, subject).await?,
    };
    let all_events = events(
        client,
        Subject::Namespace(&ns),
        Duration::from_secs(3600),
        now,
    )
    .await?;
    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let mut findings = Vec::new();
    for p in &pods {
        let name = p.metadata.name.clone().unwrap_or_default();
        let status = p.status.clone().unwrap_or_default();
        let mut details = Vec::new();
        let mut crash_logs = Vec::new();
        for c in status.conditions.iter().flatten() {
            if c.type_ == "PodScheduled" && c.status == "False" {
                details.push(format!(
                    "not scheduled ({}): {}",
                    c.reason.clone().unwrap_or_default(),
                    c.message.clone().unwrap_or_default()
                ));
            }
        }
        let mut restarts = 0;
        for cs in status.container_statuses.iter().flatten() {
            restarts += cs.restart_count;
            let state = cs.state.clone().unwrap_or_default();
            if let Some(w) = &state.waiting {
                let reason = w.reason.clone().unwrap_or_default();
                if reason != "ContainerCreating" || !cs.ready {
                    details.push(format!(
                        "{}: waiting, {reason}{}",
                        cs.name,
                        w.message
                            .as_ref()
                            .map(|m| format!(": {m}"))
                            .unwrap_or_default()
                    ));
                }
            }
            if let Some(t) = &state.terminated {
                details.push(format!(
                    "{}: terminated, {} (exit code {})",
                    cs.name,
                    t.reason.clone().unwrap_or_default(),
                    t.exit_code
                ));
            }
            if let Some(t) = cs.last_state.as_ref().and_then(|l| l.terminated.as_ref()) {
                details.push(format!(
                    "{}: last run ended {} (exit code {}), {} restart(s)",
                    cs.name,
                    t.reason
                        .clone()
                        .unwrap_or_else(|| "without a reason".into()),
                    t.exit_code,
                    cs.restart_count
                ));
                let params = LogParams {
                    container: Some(cs.name.clone()),
                    previous: true,
                    tail_lines: Some(10),
                    ..Default::default()
                };
                if let Ok(text) = call("previous logs", api.logs(&name, &params)).await {
                    crash_logs.extend(
                        redact_lines(text.lines())
                            .into_iter()
                            .map(|l| format!("[{}] {l}", cs.name)),
                    );
                }
            }
        }
        let warnings: Vec<EventRow> = all_events
            .iter()
            .filter(|e| e.is_warning() && e.object == format!("pod/{name}"))
            .take(3)
            .cloned()
            .collect();
        let ready = status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        findings.push(PodFinding {
            name,
            phase: status.phase.clone().unwrap_or_else(|| "Unknown".into()),
            status: pod_status_reason(p),
            ready,
            restarts,
            details,
            warnings,
            crash_logs,
        });
    }
    let (verdict, healthy) = verdict(&findings);
    Ok(Diagnosis {
        verdict,
        healthy,
        pods: findings,
    })
}

/// The one-line summary, most serious cause first.
fn verdict(pods: &[PodFinding]) -> (String, bool) {
    if pods.is_empty() {
        return (
            "No pods: the deployment has 0 replicas or cannot create pods (see `events`)".into(),
            false,
        );
    }
    let total = pods.len();
    let count = |f: &dyn Fn(&PodFinding) -> bool| pods.iter().filter(|p| f(p)).count();
    let first_detail = |needle: &str| {
        pods.iter()
            .flat_map(|p| p.details.iter())
            .find(|d| d.contains(needle))
            .cloned()
            .unwrap_or_default()
    };
    for (needle, what) in [
        ("ImagePullBackOff", "can't pull their image"),
        ("ErrImagePull", "can't pull their image"),
        ("not scheduled", "can't be scheduled"),
        (
            "OOMKilled",
            "are being OOM-killed (memory limit too low or a leak)",
        ),
        ("CrashLoopBackOff", "are crash-looping"),
        (
            "CreateContainerConfigError",
            "have a bad container config (missing Secret or ConfigMap?)",
        ),
    ] {
        let n = count(&|p: &PodFinding| p.details.iter().any(|d| d.contains(needle)));
        if n > 0 {
            return (
                format!("{n} of {total} pods {what} — {}", first_detail(needle)),
                false,
            );
        }
    }
    let not_ready = count(&|p: &PodFinding| !p.ready);
    if not_ready > 0 {
        return (
            format!("{not_ready} of {total} pods are not ready yet"),
            false,
        );
    }
    let restarts: i32 = pods.iter().map(|p| p.restarts).sum();
    if restarts > 0 {
        return (format!("All {total} pods are running and ready, with {restarts} restart(s) in their history"), true);
    }
    (format!("All {total} pods are running and ready"), true)
}
