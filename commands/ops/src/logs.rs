//! `logs`: recent lines across all pods of a service (by its selector) or of
//! one pod, merged in time order, each prefixed by its pod, with secrets
//! redacted before anything else looks at them (so `--grep` cannot be used to
//! probe a secret character by character), capped for chat.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, LogParams};

use super::status::label_selector;
use super::{call, DeploymentRef, OpsError};
use oncall_grammar::redact::redact_lines;

/// Lines per pod when `--tail` is not given.
pub const DEFAULT_TAIL: u32 = 100;
/// The most bytes read from one container's log (the API server stops there).
pub const LIMIT_BYTES: i64 = 256 * 1024;

#[derive(Debug, Clone, Default)]
pub struct LogsQuery<'a> {
    /// One pod instead of the whole service.
    pub pod: Option<&'a str>,
    pub container: Option<&'a str>,
    pub tail: Option<u32>,
    pub since: Option<Duration>,
    pub previous: bool,
    pub grep: Option<&'a str>,
}

#[derive(Debug, Clone, Default)]
pub struct LogsOutcome {
    /// `[pod] line`, oldest first, already redacted and filtered.
    pub lines: Vec<String>,
    pub pods: usize,
    pub container: String,
    /// Pods that had nothing to give, and why (no previous instance…).
    pub notes: Vec<String>,
    /// How many lines `--grep` dropped.
    pub filtered_out: usize,
}

/// The container to read when none is named: kubectl's default-container
/// annotation, else the one named like the deployment, else the first.
pub fn default_container(pod: &Pod, deployment: &str) -> Option<String> {
    if let Some(c) = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("kubectl.kubernetes.io/default-container"))
    {
        return Some(c.clone());
    }
    let containers = &pod.spec.as_ref()?.containers;
    containers
        .iter()
        .find(|c| c.name == deployment)
        .or_else(|| containers.first())
        .map(|c| c.name.clone())
}

pub async fn logs(
    client: &kube::Client,
    target: DeploymentRef<'_>,
    q: &LogsQuery<'_>,
) -> Result<LogsOutcome, OpsError> {
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), target.namespace);
    let pods: Vec<Pod> = match q.pod {
        Some(name) => vec![
            call(
                &format!("pod {name} in namespace {}", target.namespace),
                pods_api.get(name),
            )
            .await?,
        ],
        None => {
            let deployments: Api<Deployment> = Api::namespaced(client.clone(), target.namespace);
            let d = call(&target.to_string(), deployments.get(target.name)).await?;
            let mut pods = call(
                &format!("pods of {target}"),
                pods_api.list(&ListParams::default().labels(&label_selector(&d))),
            )
            .await?
            .items;
            pods.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
            pods
        }
    };
    let grep = match q.grep {
        Some(g) => Some(
            regex::RegexBuilder::new(g)
                .size_limit(1 << 16)
                .build()
                .map_err(|e| OpsError::Refused {
                    message: format!("invalid --grep: {e}"),
                })?,
        ),
        None => None,
    };
    let mut out = LogsOutcome {
        pods: pods.len(),
        ..Default::default()
    };
    let mut stamped: Vec<(String, String)> = Vec::new();
    for pod in &pods {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let container = match q.container {
            Some(c) => {
                let exists = pod
                    .spec
                    .as_ref()
                    .is_some_and(|s| s.containers.iter().any(|x| x.name == c));
                if !exists {
                    let names: Vec<String> = pod
                        .spec
                        .iter()
                        .flat_map(|s| s.containers.iter().map(|c| c.name.clone()))
                        .collect();
                    return Err(OpsError::Refused {
                        message: format!(
                            "pod {name} has no container `{c}` (containers: {})",
                            names.join(", ")
                        ),
                    });
                }
                c.to_string()
            }
            None => default_container(pod, target.name).unwrap_or_default(),
        };
        out.container = container.clone();
        let params = LogParams {
            container: Some(container.clone()),
            tail_lines: Some(i64::from(q.tail.unwrap_or(DEFAULT_TAIL))),
            since_seconds: q.since.map(|d| d.as_secs().max(1) as i64),
            previous: q.previous,
            timestamps: true,
            limit_bytes: Some(LIMIT_BYTES),
            ..Default::default()
        };
        let text = match call(
            &format!("logs of pod {name}"),
            pods_api.logs(&name, &params),
        )
        .await
        {
            Ok(t) => t,
            Err(OpsError::Invalid { message, .. }) => {
                out.notes.push(format!("{name}: {message}"));
                continue;
            }
            Err(e) => return Err(e),
        };
        let raw: Vec<(&str, &str)> = text
            .lines()
            .map(|l| l.split_once(' ').unwrap_or(("", l)))
            .collect();
        let redacted = redact_lines(raw.iter().map(|(_, l)| *l));
        // A multi-line key block collapses to one line: keep stamps aligned.
        let stamps: Vec<&str> = if redacted.len() == raw.len() {
            raw.iter().map(|(t, _)| *t).collect()
        } else {
            vec![raw.first().map(|(t, _)| *t).unwrap_or(""); redacted.len()]
        };
        for (stamp, line) in stamps.into_iter().zip(redacted) {
            if let Some(re) = &grep {
                if !re.is_match(&line) {
                    out.filtered_out += 1;
                    continue;
                }
            }
            stamped.push((stamp.to_string(), format!("[{name}] {line}")));
        }
    }
    // RFC 3339 stamps in UTC sort as text; the sort is stable per pod.
    stamped.sort_by(|a, b| a.0.cmp(&b.0));
    out.lines = stamped.into_iter().map(|(_, l)| l).collect();
    Ok(out)
}
