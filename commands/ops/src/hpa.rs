//! `hpa`: a service's HorizontalPodAutoscaler, and changing its bounds.

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::api::{Api, ListParams, Patch};
use serde_json::json;

use super::{call, DeploymentRef, OpsError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HpaReport {
    pub name: String,
    pub min: i32,
    pub max: i32,
    pub current: i32,
    pub desired: i32,
    /// `cpu: 45% / 70%`
    pub metrics: Vec<String>,
    /// `ScalingLimited=True (TooManyReplicas): …`
    pub conditions: Vec<String>,
}

pub async fn find(
    client: &kube::Client,
    target: DeploymentRef<'_>,
) -> Result<Option<HorizontalPodAutoscaler>, OpsError> {
    let api: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), target.namespace);
    let list = call(
        &format!("autoscalers in namespace {}", target.namespace),
        api.list(&ListParams::default()),
    )
    .await?;
    Ok(list.items.into_iter().find(|h| {
        h.spec.as_ref().is_some_and(|s| {
            s.scale_target_ref.kind == "Deployment" && s.scale_target_ref.name == target.name
        })
    }))
}

fn not_found(target: DeploymentRef<'_>) -> OpsError {
    OpsError::Refused {
        message: format!(
            "no HorizontalPodAutoscaler targets {target}; its replicas are set by hand (`scale`)"
        ),
    }
}

pub fn report(h: &HorizontalPodAutoscaler) -> HpaReport {
    let spec = h.spec.clone().unwrap_or_default();
    let status = h.status.clone().unwrap_or_default();
    let mut metrics = Vec::new();
    for m in spec.metrics.iter().flatten() {
        if let Some(r) = &m.resource {
            let target = r
                .target
                .average_utilization
                .map(|u| format!("{u}%"))
                .or_else(|| r.target.average_value.as_ref().map(|q| q.0.clone()))
                .unwrap_or_else(|| "?".into());
            let current = status
                .current_metrics
                .iter()
                .flatten()
                .find_map(|c| c.resource.as_ref().filter(|cr| cr.name == r.name))
                .and_then(|cr| {
                    cr.current
                        .average_utilization
                        .map(|u| format!("{u}%"))
                        .or_else(|| cr.current.average_value.as_ref().map(|q| q.0.clone()))
                })
                .unwrap_or_else(|| "<unknown>".into());
            metrics.push(format!("{}: {current} / {target}", r.name));
        }
    }
    let conditions = status
        .conditions
        .iter()
        .flatten()
        .map(|c| {
            format!(
                "{}={} ({}){}",
                c.type_,
                c.status,
                c.reason.clone().unwrap_or_default(),
                c.message
                    .as_ref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            )
        })
        .collect();
    HpaReport {
        name: h.metadata.name.clone().unwrap_or_default(),
        min: spec.min_replicas.unwrap_or(1),
        max: spec.max_replicas,
        current: status.current_replicas.unwrap_or(0),
        desired: status.desired_replicas,
        metrics,
        conditions,
    }
}

pub async fn show(client: &kube::Client, target: DeploymentRef<'_>) -> Result<HpaReport, OpsError> {
    find(client, target)
        .await?
        .as_ref()
        .map(report)
        .ok_or_else(|| not_found(target))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HpaChange {
    pub name: String,
    pub before: (i32, i32),
    pub after: (i32, i32),
    pub dry_run: bool,
}

pub async fn set_bounds(
    client: &kube::Client,
    target: DeploymentRef<'_>,
    min: Option<u32>,
    max: Option<u32>,
    dry_run: bool,
    force: bool,
) -> Result<HpaChange, OpsError> {
    // Read, check, write with the resourceVersion read; on a conflict read
    // again and retry once.
    let mut attempt = 0;
    loop {
        attempt += 1;
        let h = find(client, target)
            .await?
            .ok_or_else(|| not_found(target))?;
        let name = h.metadata.name.clone().unwrap_or_default();
        let spec = h.spec.clone().unwrap_or_default();
        let before = (spec.min_replicas.unwrap_or(1), spec.max_replicas);
        let after = (
            min.map(|m| m as i32).unwrap_or(before.0),
            max.map(|m| m as i32).unwrap_or(before.1),
        );
        // The autoscaler's maximum is the ceiling `scale` enforces; raising
        // it is going past that ceiling, so it takes `force` as that does.
        if after.1 > before.1 && !force {
            return Err(OpsError::Refused {
                message: format!(
                    "raising the maximum of HorizontalPodAutoscaler {name} from {} to {} goes past the ceiling `scale` keeps to; add --force (needs the `force` permission)",
                    before.1, after.1
                ),
            });
        }
        if after.0 > after.1 {
            return Err(OpsError::Refused {
                message: format!(
                    "the minimum ({}) would be above the maximum ({}); set both: `--min N --max M`",
                    after.0, after.1
                ),
            });
        }
        let api: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), target.namespace);
        let patch = json!({
            "metadata": { "resourceVersion": h.metadata.resource_version },
            "spec": { "minReplicas": after.0, "maxReplicas": after.1 },
        });
        let params = super::patch_params(dry_run);
        match call(
            &format!("autoscaler {name}"),
            api.patch(&name, &params, &Patch::Merge(&patch)),
        )
        .await
        {
            Ok(_) => {
                return Ok(HpaChange {
                    name,
                    before,
                    after,
                    dry_run,
                })
            }
            Err(OpsError::Conflict { .. }) if attempt == 1 => continue,
            Err(e) => return Err(e),
        }
    }
}
