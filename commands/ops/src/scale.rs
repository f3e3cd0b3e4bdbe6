//! `scale`: set a deployment's replicas through the scale subresource, as
//! `kubectl scale` does, reporting before → after and any autoscaler that
//! will override a manual change.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::api::{Api, ListParams, Patch};
use serde_json::json;

use super::{call, DeploymentRef, OpsError};

/// An autoscaler that manages the deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HpaBounds {
    pub name: String,
    pub min: i32,
    pub max: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleOutcome {
    pub before: i32,
    pub after: i32,
    pub dry_run: bool,
    pub hpa: Option<HpaBounds>,
}

/// Scales the deployment. The write names the resourceVersion it read, so
/// `before` is exact; on a conflict it reads again and retries once. Above an
/// autoscaler's maximum it refuses unless `force`.
pub async fn scale(
    client: &kube::Client,
    target: DeploymentRef<'_>,
    replicas: u32,
    dry_run: bool,
    force: bool,
) -> Result<ScaleOutcome, OpsError> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), target.namespace);
    let what = target.to_string();
    let hpa = find_hpa(client, target).await?;
    if let Some(h) = &hpa {
        if replicas as i32 > h.max && !force {
            return Err(OpsError::Refused {
                message: format!(
                    "{what} is managed by HorizontalPodAutoscaler {} ({}–{} replicas); {replicas} is above its maximum and it would scale back down. Raise the maximum with `hpa {} --max {replicas}`, or add --force",
                    h.name, h.min, h.max, target.name
                ),
            });
        }
    }
    let params = super::patch_params(dry_run);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let current = call(&what, api.get_scale(target.name)).await?;
        let before = current.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        let patch = json!({
            "metadata": { "resourceVersion": current.metadata.resource_version },
            "spec": { "replicas": replicas },
        });
        match call(
            &what,
            api.patch_scale(target.name, &params, &Patch::Merge(&patch)),
        )
        .await
        {
            Ok(applied) => {
                return Ok(ScaleOutcome {
                    before,
                    after: applied
                        .spec
                        .and_then(|s| s.replicas)
                        .unwrap_or(replicas as i32),
                    dry_run,
                    hpa,
                })
            }
            Err(OpsError::Conflict { .. }) if attempt == 1 => continue,
            Err(e) => return Err(e),
        }
    }
}

/// The autoscaler whose target is this deployment, if any.
pub async fn find_hpa(
    client: &kube::Client,
    target: DeploymentRef<'_>,
) -> Result<Option<HpaBounds>, OpsError> {
    let api: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), target.namespace);
    let list = call(
        &format!("autoscalers in namespace {}", target.namespace),
        api.list(&ListParams::default()),
    )
    .await?;
    Ok(list.items.into_iter().find_map(|h| {
        let spec = h.spec?;
        let r = &spec.scale_target_ref;
        (r.kind == "Deployment" && r.name == target.name).then(|| HpaBounds {
            name: h.metadata.name.unwrap_or_default(),
            min: spec.min_replicas.unwrap_or(1),
            max: spec.max_replicas,
        })
    }))
}
