//! `status`: the deployment, its rollout status by kubectl's algorithm, its
//! images and autoscaler, and kubectl's pod table.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};

use super::scale::{find_hpa, HpaBounds};
use super::{call, DeploymentRef, OpsError};
use crate::kubectl::{PodRow, RolloutStatus};

#[derive(Debug, Clone)]
pub struct StatusReport {
    pub desired: i32,
    pub ready: i32,
    pub updated: i32,
    pub available: i32,
    pub images: Vec<String>,
    pub rollout: RolloutStatus,
    pub hpa: Option<HpaBounds>,
    pub pods: Vec<PodRow>,
    pub deployment: Deployment,
}

pub async fn status(
    client: &kube::Client,
    target: DeploymentRef<'_>,
    now: jiff::Timestamp,
) -> Result<StatusReport, OpsError> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), target.namespace);
    let d = call(&target.to_string(), api.get(target.name)).await?;
    let selector = label_selector(&d);
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), target.namespace);
    let mut pods = call(
        &format!("pods of {target}"),
        pods_api.list(&ListParams::default().labels(&selector)),
    )
    .await?
    .items;
    pods.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let hpa = find_hpa(client, target).await?;
    let spec = d.spec.clone().unwrap_or_default();
    let st = d.status.clone().unwrap_or_default();
    let images = spec
        .template
        .spec
        .as_ref()
        .map(|p| {
            p.containers
                .iter()
                .map(|c| format!("{}={}", c.name, c.image.clone().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    Ok(StatusReport {
        desired: spec.replicas.unwrap_or(1),
        ready: st.ready_replicas.unwrap_or(0),
        updated: st.updated_replicas.unwrap_or(0),
        available: st.available_replicas.unwrap_or(0),
        images,
        rollout: RolloutStatus::of(&d),
        hpa,
        pods: pods.iter().map(|p| PodRow::of(p, now)).collect(),
        deployment: d,
    })
}

/// The deployment's matchLabels as a label selector string.
pub fn label_selector(d: &Deployment) -> String {
    d.spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.as_ref())
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

/// The label selector of a deployment's pods, read from the deployment.
pub async fn pod_selector(
    client: &kube::Client,
    target: DeploymentRef<'_>,
) -> Result<String, OpsError> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), target.namespace);
    let d = call(&target.to_string(), api.get(target.name)).await?;
    Ok(label_selector(&d))
}
