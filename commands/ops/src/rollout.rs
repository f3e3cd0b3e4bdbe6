//! Rollouts: follow one (`rollout status --wait`), list revisions
//! (`rollout history`), and go back (`rollback`, exactly kubectl's undo).
//!
//! Revisions are the deployment's ReplicaSets, matched by their controller
//! owner reference's uid (not by labels, which other objects may share), each
//! with its `deployment.kubernetes.io/revision` annotation.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use kube::api::{Api, ListParams, Patch};
use serde_json::json;

use super::{call, DeploymentRef, OpsError};
use crate::kubectl::{RolloutState, RolloutStatus};

pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const CHANGE_CAUSE: &str = "kubernetes.io/change-cause";
const HASH_LABEL: &str = "pod-template-hash";

/// Annotations a rollback keeps from the deployment instead of copying them
/// from the ReplicaSet (kubectl's `annotationsToSkip`).
pub const ANNOTATIONS_TO_SKIP: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    "deployment.kubernetes.io/revision-history",
    "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas",
    "deprecated.deployment.rollback.to",
];

/// How a followed rollout ended.
#[derive(Debug, Clone)]
pub struct WaitOutcome {
    pub last: RolloutStatus,
    /// Each distinct message seen, in order, with the seconds since the start.
    pub progress: Vec<(u64, String)>,
    pub timed_out: bool,
}

/// Follows a rollout until it completes, fails (ProgressDeadlineExceeded) or
/// `timeout` passes, calling `on_progress` with each new message.
pub async fn wait(
    client: &kube::Client,
    target: DeploymentRef<'_>,
    timeout: Duration,
    poll: Duration,
    mut on_progress: impl FnMut(&RolloutStatus),
) -> Result<WaitOutcome, OpsError> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), target.namespace);
    let started = std::time::Instant::now();
    let mut progress: Vec<(u64, String)> = Vec::new();
    loop {
        let d = call(&target.to_string(), api.get(target.name)).await?;
        let status = RolloutStatus::of(&d);
        if progress.last().map(|(_, m)| m) != Some(&status.message) {
            progress.push((started.elapsed().as_secs(), status.message.clone()));
            on_progress(&status);
        }
        let finished = matches!(status.state, RolloutState::Complete | RolloutState::Failed);
        if finished || started.elapsed() >= timeout {
            return Ok(WaitOutcome {
                timed_out: !finished,
                last: status,
                progress,
            });
        }
        tokio::time::sleep(
            poll.min(timeout.saturating_sub(started.elapsed()))
                .max(Duration::from_millis(10)),
        )
        .await;
    }
}

/// One revision of a deployment.
#[derive(Debug, Clone)]
pub struct Revision {
    pub revision: i64,
    pub change_cause: Option<String>,
    pub images: Vec<String>,
    pub created: Option<jiff::Timestamp>,
    /// Whether the deployment's current template is this revision's.
    pub current: bool,
    pub replicas: i32,
    pub replica_set: String,
}

/// The ReplicaSets a deployment controls, by owner uid.
pub async fn owned_replica_sets(
    client: &kube::Client,
    d: &Deployment,
) -> Result<Vec<ReplicaSet>, OpsError> {
    let ns = d.metadata.namespace.as_deref().unwrap_or("default");
    let api: Api<ReplicaSet> = Api::namespaced(client.clone(), ns);
    let uid = d.metadata.uid.clone();
    let all = call(
        &format!("replica sets in namespace {ns}"),
        api.list(&ListParams::default()),
    )
    .await?;
    Ok(all
        .items
        .into_iter()
        .filter(|rs| {
            rs.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.controller == Some(true) && Some(&o.uid) == uid.as_ref())
        })
        .collect())
}

fn revision_of(rs: &ReplicaSet) -> Option<i64> {
    rs.metadata
        .annotations
        .as_ref()?
        .get(REVISION)?
        .parse()
        .ok()
}

/// `name=image` for each container of a template.
pub fn images_of(t: &PodTemplateSpec) -> Vec<String> {
    t.spec
        .as_ref()
        .map(|s| {
            s.containers
                .iter()
                .map(|c| format!("{}={}", c.name, c.image.clone().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default()
}

/// kubectl's equalIgnoreHash: templates equal once the hash label is gone.
pub fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    strip_hash(a) == strip_hash(b)
}

fn strip_hash(t: &PodTemplateSpec) -> PodTemplateSpec {
    let mut t = t.clone();
    if let Some(meta) = t.metadata.as_mut() {
        if let Some(labels) = meta.labels.as_mut() {
            labels.remove(HASH_LABEL);
            if labels.is_empty() {
                meta.labels = None;
            }
        }
    }
    t
}

pub async fn history(
    client: &kube::Client,
    target: DeploymentRef<'_>,
) -> Result<Vec<Revision>, OpsError> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), target.namespace);
    let d = call(&target.to_string(), api.get(target.name)).await?;
    let template = d
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let mut out: Vec<Revision> = owned_replica_sets(client, &d)
        .await?
        .iter()
        .filter_map(|rs| {
            let revision = revision_of(rs)?;
            let spec = rs.spec.as_ref()?;
            let t = spec.template.clone().unwrap_or_default();
            Some(Revision {
                revision,
                change_cause: rs
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(CHANGE_CAUSE).cloned()),
                images: images_of(&t),
                created: rs.metadata.creation_timestamp.as_ref().map(|t| t.0),
                current: equal_ignore_hash(&t, &template),
                replicas: spec.replicas.unwrap_or(0),
                replica_set: rs.metadata.name.clone().unwrap_or_default(),
            })
        })
        .collect();
    out.sort_by_key(|r| r.revision);
    Ok(out)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollbackOutcome {
    /// The revision the deployment was at.
    pub from_revision: Option<i64>,
    /// The revision whose template was restored.
    pub to_revision: i64,
    pub images_before: Vec<String>,
    pub images_after: Vec<String>,
    /// Set when nothing was done because the template already matches.
    pub skipped: Option<String>,
    pub dry_run: bool,
}

/// kubectl's `rollout undo`, step for step: find the revision (0/absent is
/// the previous one), refuse a paused deployment, skip if the template
/// already matches, drop the hash label, keep the deployment's skip-listed
/// annotations and take the others from the ReplicaSet, and replace
/// `/spec/template` and `/metadata/annotations` with one JSON patch.
pub async fn rollback(
    client: &kube::Client,
    target: DeploymentRef<'_>,
    to_revision: Option<u32>,
    dry_run: bool,
) -> Result<RollbackOutcome, OpsError> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), target.namespace);
    let what = target.to_string();
    let d = call(&what, api.get(target.name)).await?;
    let replica_sets = owned_replica_sets(client, &d).await?;
    let to = to_revision.map(i64::from).unwrap_or(0);
    let rs = find_revision(&replica_sets, to).map_err(|message| OpsError::Refused {
        message: message.replace("{name}", target.name),
    })?;
    if d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false) {
        return Err(OpsError::Refused {
            message: format!(
                "you cannot rollback a paused deployment; resume it first with 'kubectl rollout resume deployment/{}' and try again",
                target.name
            ),
        });
    }
    let target_revision = revision_of(rs).unwrap_or(to);
    let current_template = d
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let rs_template = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.clone())
        .unwrap_or_default();
    let from_revision = d
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(REVISION))
        .and_then(|r| r.parse().ok());
    if equal_ignore_hash(&rs_template, &current_template) {
        return Ok(RollbackOutcome {
            from_revision,
            to_revision: target_revision,
            images_before: images_of(&current_template),
            images_after: images_of(&current_template),
            skipped: Some(format!(
                "skipped rollback (current template already matches revision {target_revision})"
            )),
            dry_run,
        });
    }
    let restored = strip_hash(&rs_template);
    let mut annotations: BTreeMap<String, String> = BTreeMap::new();
    let own = d.metadata.annotations.clone().unwrap_or_default();
    for key in ANNOTATIONS_TO_SKIP {
        if let Some(v) = own.get(*key) {
            annotations.insert((*key).to_string(), v.clone());
        }
    }
    for (k, v) in rs.metadata.annotations.clone().unwrap_or_default() {
        if !ANNOTATIONS_TO_SKIP.contains(&k.as_str()) {
            annotations.insert(k, v);
        }
    }
    let patch = json!([
        { "op": "replace", "path": "/spec/template", "value": restored },
        { "op": "replace", "path": "/metadata/annotations", "value": annotations },
    ]);
    let patch: json_patch::Patch =
        serde_json::from_value(patch).map_err(|e| OpsError::Invalid {
            what: what.clone(),
            message: e.to_string(),
        })?;
    let params = super::patch_params(dry_run);
    let after = call(
        &what,
        api.patch(target.name, &params, &Patch::<()>::Json(patch)),
    )
    .await?;
    Ok(RollbackOutcome {
        from_revision,
        to_revision: target_revision,
        images_before: images_of(&current_template),
        images_after: images_of(&after.spec.map(|s| s.template).unwrap_or_default()),
        skipped: None,
        dry_run,
    })
}

/// kubectl's deploymentRevision: 0 means the second-highest revision.
fn find_revision(replica_sets: &[ReplicaSet], to: i64) -> Result<&ReplicaSet, String> {
    if to > 0 {
        return replica_sets
            .iter()
            .find(|rs| revision_of(rs) == Some(to))
            .ok_or_else(|| format!("unable to find specified revision {to} in history"));
    }
    let mut revisions: Vec<(i64, &ReplicaSet)> = replica_sets
        .iter()
        .filter_map(|rs| Some((revision_of(rs)?, rs)))
        .collect();
    revisions.sort_by_key(|(r, _)| *r);
    match revisions.len() {
        0 | 1 => Err("no rollout history found for deployment \"{name}\"".to_string()),
        n => Ok(revisions[n - 2].1),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetImageOutcome {
    pub container: String,
    pub before: String,
    pub after: String,
    /// The revision before the change, for the undo hint.
    pub revision_before: Option<i64>,
    pub dry_run: bool,
}

/// `set image`: replaces one container's image with a strategic merge patch
/// (containers merge by name), recording the change cause.
pub async fn set_image(
    client: &kube::Client,
    target: DeploymentRef<'_>,
    container: Option<&str>,
    image: &str,
    cause: &str,
    dry_run: bool,
) -> Result<SetImageOutcome, OpsError> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), target.namespace);
    let what = target.to_string();
    let d = call(&what, api.get(target.name)).await?;
    let containers = super::template_containers(&d);
    let names: Vec<String> = containers.iter().map(|c| c.name.clone()).collect();
    let chosen = match container {
        Some(c) => containers
            .iter()
            .find(|x| x.name == c)
            .ok_or_else(|| OpsError::Refused {
                message: format!(
                    "{what} has no container `{c}` (containers: {})",
                    names.join(", ")
                ),
            })?,
        None if containers.len() == 1 => &containers[0],
        None => {
            return Err(OpsError::Refused {
                message: format!(
                    "{what} has {} containers ({}); say which: `set image {} <container>={image}`",
                    containers.len(),
                    names.join(", "),
                    target.name
                ),
            })
        }
    };
    let before = chosen.image.clone().unwrap_or_default();
    let revision_before = d
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(REVISION))
        .and_then(|r| r.parse().ok());
    let patch = json!({
        "metadata": { "annotations": { CHANGE_CAUSE: cause } },
        "spec": { "template": { "spec": { "containers": [ { "name": chosen.name, "image": image } ] } } },
    });
    let params = super::patch_params(dry_run);
    call(
        &what,
        api.patch(target.name, &params, &Patch::Strategic(&patch)),
    )
    .await?;
    Ok(SetImageOutcome {
        container: chosen.name.clone(),
        before,
        after: image.to_string(),
        revision_before,
        dry_run,
    })
}
