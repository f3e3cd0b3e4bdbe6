//! `restart`: a rolling restart exactly like `kubectl rollout restart`: the
//! pod template gets a `kubectl.kubernetes.io/restartedAt` annotation with the
//! current RFC 3339 time, so the deployment controller rolls every pod. A
//! paused deployment is refused, as kubectl refuses it.

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch};
use serde_json::json;

use super::{call, DeploymentRef, OpsError};

pub const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestartOutcome {
    pub restarted_at: String,
    /// The deployment's generation after the change (for following the rollout).
    pub generation: Option<i64>,
    pub replicas: i32,
    pub dry_run: bool,
}

pub async fn restart(
    client: &kube::Client,
    target: DeploymentRef<'_>,
    now: jiff::Timestamp,
    dry_run: bool,
) -> Result<RestartOutcome, OpsError> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), target.namespace);
    let what = target.to_string();
    let params = super::patch_params(dry_run);
    // RFC 3339 to the second, as kubectl writes it.
    let restarted_at = now.round(jiff::Unit::Second).unwrap_or(now).to_string();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let current = call(&what, api.get(target.name)).await?;
        if current
            .spec
            .as_ref()
            .and_then(|s| s.paused)
            .unwrap_or(false)
        {
            return Err(OpsError::Refused {
                message: format!(
                    "deployments.apps/{} is paused and can't be restarted; resume the rollout first",
                    target.name
                ),
            });
        }
        let patch = json!({
            "metadata": { "resourceVersion": current.metadata.resource_version },
            "spec": { "template": { "metadata": { "annotations": { RESTARTED_AT: restarted_at } } } },
        });
        match call(
            &what,
            api.patch(target.name, &params, &Patch::Strategic(&patch)),
        )
        .await
        {
            Ok(d) => {
                return Ok(RestartOutcome {
                    restarted_at,
                    generation: d.metadata.generation,
                    replicas: d.spec.and_then(|s| s.replicas).unwrap_or(1),
                    dry_run,
                })
            }
            Err(OpsError::Conflict { .. }) if attempt == 1 => continue,
            Err(e) => return Err(e),
        }
    }
}
