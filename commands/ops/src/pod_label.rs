//! `quarantine` / `unquarantine`: runbook 004's `kubectl label pod … quarantine=true`.
//! The pod keeps running (for logs and forensics) while Services that select
//! `quarantine notin (true)` stop sending it traffic.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch};
use serde_json::json;

use super::{call, OpsError};

pub const QUARANTINE_LABEL: &str = "quarantine";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelOutcome {
    pub pod: String,
    pub before: Option<String>,
    pub after: Option<String>,
    pub dry_run: bool,
}

pub async fn set_quarantine(
    client: &kube::Client,
    namespace: &str,
    pod: &str,
    on: bool,
    dry_run: bool,
) -> Result<LabelOutcome, OpsError> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let what = format!("pod {pod} in namespace {namespace}");
    let current = call(&what, api.get(pod)).await?;
    let before = current
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(QUARANTINE_LABEL))
        .cloned();
    let after = if on { Some("true".to_string()) } else { None };
    if before == after {
        return Err(OpsError::Refused {
            message: if on {
                format!("{pod} is already quarantined")
            } else {
                format!("{pod} is not quarantined")
            },
        });
    }
    let patch = json!({ "metadata": { "labels": { QUARANTINE_LABEL: after } } });
    let params = super::patch_params(dry_run);
    call(&what, api.patch(pod, &params, &Patch::Merge(&patch))).await?;
    Ok(LabelOutcome {
        pod: pod.to_string(),
        before,
        after,
        dry_run,
    })
}
