//! The operations: what commands do to a cluster, through kube-rs.
//!
//! [`kubectl`] holds kubectl's own algorithms over the API types (rollout
//! status, the pod table's columns), pure and table-tested.
//!
//! Each action is a function over a [`kube::Client`] returning a typed outcome
//! (before and after, for the reply and the history) or an [`OpsError`] that
//! is already one clear sentence. No shell and no kubectl binary: every call is
//! a Kubernetes API request. The command language itself is the
//! `oncall-grammar` crate, which has no IO at all.

pub mod access;
mod clusters;
pub mod diagnose;
pub mod env;
mod error;
pub mod health;
pub mod hpa;
pub mod jobs;
pub mod kubectl;
pub mod logs;
pub mod pod_label;
pub mod restart;
pub mod rollout;
pub mod scale;
pub mod status;
pub mod top;
pub mod workloads;

use std::time::Duration;

pub use clusters::{reachable, Clusters, ClustersError};
pub use error::OpsError;

/// Which deployment an action is about.
#[derive(Debug, Clone, Copy)]
pub struct DeploymentRef<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
}

impl std::fmt::Display for DeploymentRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "deployment/{} in namespace {}",
            self.name, self.namespace
        )
    }
}

/// The containers of a deployment's pod template.
pub(crate) fn template_containers(
    d: &k8s_openapi::api::apps::v1::Deployment,
) -> Vec<k8s_openapi::api::core::v1::Container> {
    d.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .map(|s| s.containers.clone())
        .unwrap_or_default()
}

/// Patch parameters: a server-side dry run (`dryRun=All`) or the real thing.
pub(crate) fn patch_params(dry_run: bool) -> kube::api::PatchParams {
    if dry_run {
        kube::api::PatchParams::default().dry_run()
    } else {
        kube::api::PatchParams::default()
    }
}

/// How long one Kubernetes API call may take before it is reported as a timeout.
pub const API_TIMEOUT: Duration = Duration::from_secs(15);

/// Runs one API call with the timeout and error mapping every action uses.
pub(crate) async fn call<T>(
    what: &str,
    fut: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> Result<T, OpsError> {
    match tokio::time::timeout(API_TIMEOUT, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(OpsError::from_kube(what, e)),
        Err(_) => Err(OpsError::Timeout {
            what: what.to_string(),
            after: API_TIMEOUT,
        }),
    }
}
