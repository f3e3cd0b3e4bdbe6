//! kubectl's rollout-status algorithm, and kubectl's pod columns, as pure
//! functions over the API types.
//!
//! `RolloutStatus::of` follows kubectl's `DeploymentStatusViewer` exactly:
//! a spec change not yet observed is "waiting for the update to be observed";
//! a Progressing condition with reason `ProgressDeadlineExceeded` is a failed
//! rollout; otherwise updated, old and available replicas decide, with
//! kubectl's messages.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;

/// Where a rollout stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RolloutState {
    /// The controller has not observed the latest spec yet.
    NotObserved,
    InProgress,
    Complete,
    /// ProgressDeadlineExceeded.
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutStatus {
    pub state: RolloutState,
    /// kubectl's message for this state.
    pub message: String,
    pub paused: bool,
}

impl RolloutStatus {
    pub fn of(d: &Deployment) -> RolloutStatus {
        let name = d.metadata.name.as_deref().unwrap_or("");
        let paused = d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
        let status = d.status.clone().unwrap_or_default();
        let generation = d.metadata.generation.unwrap_or(0);
        let observed = status.observed_generation.unwrap_or(0);
        let done = |state, message: String| RolloutStatus {
            state,
            message,
            paused,
        };
        if generation > observed {
            return done(
                RolloutState::NotObserved,
                "Waiting for deployment spec update to be observed...".to_string(),
            );
        }
        let timed_out = status.conditions.iter().flatten().any(|c| {
            c.type_ == "Progressing" && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
        });
        if timed_out {
            return done(
                RolloutState::Failed,
                format!("deployment \"{name}\" exceeded its progress deadline"),
            );
        }
        let updated = status.updated_replicas.unwrap_or(0);
        let replicas = status.replicas.unwrap_or(0);
        let available = status.available_replicas.unwrap_or(0);
        if let Some(desired) = d.spec.as_ref().and_then(|s| s.replicas) {
            if updated < desired {
                return done(
                    RolloutState::InProgress,
                    format!("Waiting for deployment \"{name}\" rollout to finish: {updated} out of {desired} new replicas have been updated..."),
                );
            }
        }
        if replicas > updated {
            return done(
                RolloutState::InProgress,
                format!(
                    "Waiting for deployment \"{name}\" rollout to finish: {} old replicas are pending termination...",
                    replicas - updated
                ),
            );
        }
        if available < updated {
            return done(
                RolloutState::InProgress,
                format!("Waiting for deployment \"{name}\" rollout to finish: {available} of {updated} updated replicas are available..."),
            );
        }
        done(
            RolloutState::Complete,
            format!("deployment \"{name}\" successfully rolled out"),
        )
    }
}

/// One row of kubectl's pod table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRow {
    pub name: String,
    /// `ready/total` containers.
    pub ready: String,
    pub status: String,
    /// Restart count, with kubectl's `(5m ago)` for the last one.
    pub restarts: String,
    pub age: String,
}

impl PodRow {
    pub fn of(pod: &Pod, now: jiff::Timestamp) -> PodRow {
        let status = pod.status.clone().unwrap_or_default();
        let containers = status.container_statuses.clone().unwrap_or_default();
        let total = pod.spec.as_ref().map(|s| s.containers.len()).unwrap_or(0);
        let ready = containers.iter().filter(|c| c.ready).count();
        let restarts: i32 = containers.iter().map(|c| c.restart_count).sum();
        let last_restart = containers
            .iter()
            .filter_map(|c| {
                c.last_state
                    .as_ref()?
                    .terminated
                    .as_ref()?
                    .finished_at
                    .as_ref()
            })
            .map(|t| t.0)
            .max();
        let restarts = match (restarts, last_restart) {
            (n, Some(at)) if n > 0 => {
                format!("{n} ({} ago)", human_duration(now.duration_since(at)))
            }
            (n, _) => n.to_string(),
        };
        let age = pod
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| human_duration(now.duration_since(t.0)))
            .unwrap_or_else(|| "<unknown>".into());
        PodRow {
            name: pod.metadata.name.clone().unwrap_or_default(),
            ready: format!("{ready}/{total}"),
            status: pod_status_reason(pod),
            restarts,
            age,
        }
    }
}

/// kubectl's STATUS column: the phase, overridden by container reasons.
pub fn pod_status_reason(pod: &Pod) -> String {
    let status = pod.status.clone().unwrap_or_default();
    let mut reason = status
        .reason
        .clone()
        .or(status.phase.clone())
        .unwrap_or_else(|| "Unknown".into());
    let mut has_running = false;
    for c in status.container_statuses.iter().flatten().rev() {
        let state = c.state.clone().unwrap_or_default();
        if let Some(w) = state.waiting.as_ref().and_then(|w| w.reason.clone()) {
            if !w.is_empty() {
                reason = w;
                continue;
            }
        }
        if let Some(t) = &state.terminated {
            reason = match (&t.reason, t.signal) {
                (Some(r), _) if !r.is_empty() => r.clone(),
                (_, Some(sig)) if sig != 0 => format!("Signal:{sig}"),
                _ => format!("ExitCode:{}", t.exit_code),
            };
        } else if c.ready && state.running.is_some() {
            has_running = true;
        }
    }
    if reason == "Completed" && has_running {
        reason = "Running".into();
    }
    if pod.metadata.deletion_timestamp.is_some() {
        reason = "Terminating".into();
    }
    reason
}

/// kubectl's human-readable durations (`45s`, `5m3s`, `3h12m`, `4d2h`).
pub fn human_duration(span: jiff::SignedDuration) -> String {
    let secs = span.as_secs();
    if secs < -1 {
        return "<invalid>".into();
    }
    if secs < 0 {
        return "0s".into();
    }
    if secs < 120 {
        return format!("{secs}s");
    }
    let minutes = secs / 60;
    if minutes < 10 {
        let s = secs % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    let years = hours / 24 / 365;
    if hours < 24 * 365 * 8 {
        let d = (hours / 24) % 365;
        return if d == 0 {
            format!("{years}y")
        } else {
            format!("{years}y{d}d")
        };
    }
    format!("{years}y")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(generation: i64, status: serde_json::Value, replicas: i32) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "backend", "generation": generation},
            "spec": {"replicas": replicas, "selector": {}, "template": {}},
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn kubectl_rollout_status_table() {
        let table = [
            (
                deployment(2, json!({"observedGeneration": 1}), 3),
                RolloutState::NotObserved,
                "Waiting for deployment spec update to be observed...",
            ),
            (
                deployment(
                    2,
                    json!({"observedGeneration": 2, "updatedReplicas": 1, "replicas": 3, "availableReplicas": 2}),
                    3,
                ),
                RolloutState::InProgress,
                "1 out of 3 new replicas have been updated...",
            ),
            (
                deployment(
                    2,
                    json!({"observedGeneration": 2, "updatedReplicas": 3, "replicas": 4, "availableReplicas": 3}),
                    3,
                ),
                RolloutState::InProgress,
                "1 old replicas are pending termination...",
            ),
            (
                deployment(
                    2,
                    json!({"observedGeneration": 2, "updatedReplicas": 3, "replicas": 3, "availableReplicas": 1}),
                    3,
                ),
                RolloutState::InProgress,
                "1 of 3 updated replicas are available...",
            ),
            (
                deployment(
                    2,
                    json!({"observedGeneration": 2, "updatedReplicas": 3, "replicas": 3, "availableReplicas": 3}),
                    3,
                ),
                RolloutState::Complete,
                "deployment \"backend\" successfully rolled out",
            ),
            (
                deployment(
                    2,
                    json!({"observedGeneration": 2, "updatedReplicas": 1, "replicas": 3, "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]}),
                    3,
                ),
                RolloutState::Failed,
                "deployment \"backend\" exceeded its progress deadline",
            ),
        ];
        for (d, state, message) in table {
            let s = RolloutStatus::of(&d);
            assert_eq!(s.state, state, "{message}");
            assert!(s.message.contains(message), "{} vs {message}", s.message);
        }
    }

    #[test]
    fn kubectl_durations() {
        let table = [
            (5, "5s"),
            (119, "119s"),
            (125, "2m5s"),
            (600, "10m"),
            (3 * 3600 + 60, "3h1m"),
            (30 * 3600, "30h"),
            (3 * 86400 + 3600, "3d1h"),
            (40 * 86400, "40d"),
            (800 * 86400, "2y70d"),
        ];
        for (secs, want) in table {
            assert_eq!(human_duration(jiff::SignedDuration::from_secs(secs)), want);
        }
    }

    #[test]
    fn pod_status_column() {
        let pod = |status: serde_json::Value| -> Pod {
            serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}]}, "status": status})).unwrap()
        };
        assert_eq!(
            pod_status_reason(&pod(
                json!({"phase": "Pending", "containerStatuses": [{"name": "a", "image": "", "imageID": "", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "ImagePullBackOff"}}}]})
            )),
            "ImagePullBackOff"
        );
        assert_eq!(
            pod_status_reason(&pod(
                json!({"phase": "Running", "containerStatuses": [{"name": "a", "image": "", "imageID": "", "ready": true, "restartCount": 0, "state": {"running": {}}}]})
            )),
            "Running"
        );
        assert_eq!(
            pod_status_reason(&pod(
                json!({"phase": "Running", "containerStatuses": [{"name": "a", "image": "", "imageID": "", "ready": false, "restartCount": 3, "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]})
            )),
            "OOMKilled"
        );
        assert_eq!(
            pod_status_reason(&pod(
                json!({"phase": "Running", "containerStatuses": [{"name": "a", "image": "", "imageID": "", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 2}}}]})
            )),
            "ExitCode:2"
        );
    }
}
