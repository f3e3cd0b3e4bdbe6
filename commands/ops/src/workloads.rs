//! `pods` and `events`: kubectl's tables for a service or a namespace.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Event, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, ListParams};

use super::status::label_selector;
use super::{call, OpsError};
use crate::kubectl::PodRow;

/// What to list: one service's pods, or a namespace.
#[derive(Debug, Clone, Copy)]
pub enum Subject<'a> {
    Deployment { namespace: &'a str, name: &'a str },
    Namespace(&'a str),
}

impl Subject<'_> {
    pub fn namespace(&self) -> &str {
        match self {
            Subject::Deployment { namespace, .. } | Subject::Namespace(namespace) => namespace,
        }
    }
}

pub async fn list_pods(client: &kube::Client, subject: Subject<'_>) -> Result<Vec<Pod>, OpsError> {
    let api: Api<Pod> = Api::namespaced(client.clone(), subject.namespace());
    let params = match subject {
        Subject::Deployment { namespace, name } => {
            let d: Api<Deployment> = Api::namespaced(client.clone(), namespace);
            let d = call(
                &format!("deployment/{name} in namespace {namespace}"),
                d.get(name),
            )
            .await?;
            ListParams::default().labels(&label_selector(&d))
        }
        Subject::Namespace(_) => ListParams::default(),
    };
    let mut pods = call(
        &format!("pods in namespace {}", subject.namespace()),
        api.list(&params),
    )
    .await?
    .items;
    pods.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    Ok(pods)
}

pub async fn pods(
    client: &kube::Client,
    subject: Subject<'_>,
    now: jiff::Timestamp,
) -> Result<Vec<PodRow>, OpsError> {
    Ok(list_pods(client, subject)
        .await?
        .iter()
        .map(|p| PodRow::of(p, now))
        .collect())
}

/// One event row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRow {
    pub last_seen: Option<jiff::Timestamp>,
    pub kind: String,
    pub reason: String,
    pub object: String,
    pub message: String,
    pub count: i32,
}

impl EventRow {
    pub fn is_warning(&self) -> bool {
        self.kind == "Warning"
    }
}

/// The time an event was last seen: lastTimestamp, else eventTime, else
/// firstTimestamp, else its creation (kubectl's order).
pub fn last_seen(e: &Event) -> Option<jiff::Timestamp> {
    e.last_timestamp
        .as_ref()
        .map(|t| t.0)
        .or_else(|| e.event_time.as_ref().map(|t| t.0))
        .or_else(|| e.first_timestamp.as_ref().map(|t| t.0))
        .or_else(|| e.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// Events about a deployment (itself, its ReplicaSets and pods: names that
/// start with `<deployment>-`) or a whole namespace, since a cutoff; warnings
/// first, then newest first.
pub async fn events(
    client: &kube::Client,
    subject: Subject<'_>,
    since: Duration,
    now: jiff::Timestamp,
) -> Result<Vec<EventRow>, OpsError> {
    let ns = subject.namespace();
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    let items = call(
        &format!("events in namespace {ns}"),
        api.list(&ListParams::default()),
    )
    .await?
    .items;
    let cutoff = now - jiff::SignedDuration::from_secs(since.as_secs() as i64);
    let mut rows: Vec<EventRow> = items
        .iter()
        .filter(|e| match subject {
            Subject::Deployment { name, .. } => e
                .involved_object
                .name
                .as_deref()
                .is_some_and(|n| n == name || n.starts_with(&format!("{name}-"))),
            Subject::Namespace(_) => true,
        })
        .filter(|e| last_seen(e).is_none_or(|t| t >= cutoff))
        .map(|e| EventRow {
            last_seen: last_seen(e),
            kind: e.type_.clone().unwrap_or_else(|| "Normal".into()),
            reason: e.reason.clone().unwrap_or_default(),
            object: format!(
                "{}/{}",
                e.involved_object
                    .kind
                    .clone()
                    .unwrap_or_default()
                    .to_lowercase(),
                e.involved_object.name.clone().unwrap_or_default()
            ),
            message: e.message.clone().unwrap_or_default().trim().to_string(),
            count: e.count.unwrap_or(1),
        })
        .collect();
    rows.sort_by(|a, b| {
        b.is_warning()
            .cmp(&a.is_warning())
            .then(b.last_seen.cmp(&a.last_seen))
    });
    Ok(rows)
}

/// The deployments of a namespace.
pub async fn deployments_in(
    client: &kube::Client,
    namespace: &str,
) -> Result<Vec<Deployment>, OpsError> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let list = call(
        &format!("deployments in namespace {namespace}"),
        api.list(&ListParams::default()),
    )
    .await?;
    Ok(list.items)
}

/// The controlling owner of an object, if it is of `kind`.
fn controller<'a>(owners: Option<&'a Vec<OwnerReference>>, kind: &str) -> Option<&'a str> {
    owners?
        .iter()
        .find(|o| o.controller == Some(true) && o.kind == kind)
        .map(|o| o.name.as_str())
}

/// The deployment that owns a pod, by ownership as the controllers record
/// it: Pod → (controller) ReplicaSet → (controller) Deployment. `None` for a
/// pod nobody's deployment owns (a StatefulSet's, a Job's, a bare pod); an
/// error for a pod that does not exist.
pub async fn deployment_of_pod(
    client: &kube::Client,
    namespace: &str,
    pod: &str,
) -> Result<Option<String>, OpsError> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let p = call(
        &format!("pod/{pod} in namespace {namespace}"),
        pods.get(pod),
    )
    .await?;
    let Some(rs_name) = controller(p.metadata.owner_references.as_ref(), "ReplicaSet") else {
        return Ok(None);
    };
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), namespace);
    let Some(rs) = call(
        &format!("replicaset/{rs_name} in namespace {namespace}"),
        sets.get_opt(rs_name),
    )
    .await?
    else {
        return Ok(None);
    };
    Ok(controller(rs.metadata.owner_references.as_ref(), "Deployment").map(String::from))
}
