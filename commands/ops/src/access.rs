//! The Kubernetes permissions the operations use: the one list that the
//! deploy manifests' RBAC grants (a test compares them, and compares this
//! list with what the commands really call on the simulated API server),
//! and that `oncall check` asks the API server about, one
//! `SelfSubjectAccessReview` per permission and catalog namespace.
//!
//! Everything is namespaced: no ClusterRole is needed, and none is granted.

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};

/// One permission, as an RBAC rule names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ApiAccess {
    /// API group; empty for core.
    pub group: &'static str,
    /// The plural, with `/subresource` when there is one.
    pub resource: &'static str,
    pub verb: &'static str,
    /// The commands that need it.
    pub used_by: &'static str,
}

const fn need(
    group: &'static str,
    resource: &'static str,
    verb: &'static str,
    used_by: &'static str,
) -> ApiAccess {
    ApiAccess {
        group,
        resource,
        verb,
        used_by,
    }
}

/// Every permission the operations use, in every catalog namespace.
pub const REQUIRED: &[ApiAccess] = &[
    need(
        "apps",
        "deployments",
        "get",
        "status, rollout, restart, env, pods, diagnose",
    ),
    need(
        "apps",
        "deployments",
        "list",
        "restart --all -n <namespace>",
    ),
    need(
        "apps",
        "deployments",
        "patch",
        "restart, rollout undo/pause/resume, env set",
    ),
    need("apps", "deployments/scale", "get", "scale"),
    need("apps", "deployments/scale", "patch", "scale"),
    need(
        "apps",
        "replicasets",
        "get",
        "quarantine (the pod's deployment)",
    ),
    need("apps", "replicasets", "list", "rollout history/undo, pods"),
    need("", "pods", "get", "logs, diagnose, quarantine"),
    need("", "pods", "list", "pods, status, diagnose, logs"),
    need("", "pods", "patch", "quarantine (a pod's label)"),
    need("", "pods/log", "get", "logs, diagnose"),
    need("", "events", "list", "events, diagnose"),
    need(
        "autoscaling",
        "horizontalpodautoscalers",
        "list",
        "hpa, scale",
    ),
    need(
        "autoscaling",
        "horizontalpodautoscalers",
        "patch",
        "hpa --min/--max",
    ),
    need("batch", "cronjobs", "get", "job run"),
    need("batch", "jobs", "create", "job run"),
    need("batch", "jobs", "get", "job run"),
    need("metrics.k8s.io", "pods", "list", "top"),
];

/// What leader election needs, in the Lease's own namespace (only with
/// `[election] enabled`): that one Lease read, created and renewed.
pub const ELECTION: &[ApiAccess] = &[
    need("coordination.k8s.io", "leases", "get", "leader election"),
    need("coordination.k8s.io", "leases", "create", "leader election"),
    need("coordination.k8s.io", "leases", "update", "leader election"),
];

/// A permission the bot's account lacks in a namespace, and what the API
/// server said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    pub access: ApiAccess,
    pub namespace: String,
    pub reason: String,
}

impl Missing {
    /// The Role rule that would grant it, in YAML, e.g.
    /// `- apiGroups: ["apps"] resources: ["deployments/scale"] verbs: ["patch"]`.
    pub fn rule(&self) -> String {
        format!(
            "- apiGroups: [\"{}\"]\n  resources: [\"{}\"]\n  verbs: [\"{}\"]",
            self.access.group, self.access.resource, self.access.verb
        )
    }
}

/// Asks the API server, for each of [`REQUIRED`] in `namespace`, whether the
/// bot's own account may; returns what it may not (or could not be asked:
/// a check that cannot be answered counts as missing).
pub async fn missing(client: &kube::Client, namespace: &str) -> Vec<Missing> {
    missing_of(client, namespace, REQUIRED).await
}

/// [`missing`] for any list of permissions (e.g. [`ELECTION`]).
pub async fn missing_of(
    client: &kube::Client,
    namespace: &str,
    needed: &[ApiAccess],
) -> Vec<Missing> {
    let api: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let asks = needed.iter().map(|access| {
        let api = api.clone();
        async move {
            let (resource, subresource) = match access.resource.split_once('/') {
                Some((r, s)) => (r, Some(s.to_string())),
                None => (access.resource, None),
            };
            let review = SelfSubjectAccessReview {
                spec: SelfSubjectAccessReviewSpec {
                    resource_attributes: Some(ResourceAttributes {
                        group: Some(access.group.to_string()),
                        resource: Some(resource.to_string()),
                        subresource,
                        verb: Some(access.verb.to_string()),
                        namespace: Some(namespace.to_string()),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                ..Default::default()
            };
            let answer = api.create(&PostParams::default(), &review).await;
            let reason = match answer {
                Ok(r) => match r.status {
                    Some(s) if s.allowed => return None,
                    Some(s) => s
                        .reason
                        .filter(|r| !r.is_empty())
                        .unwrap_or_else(|| "not allowed".into()),
                    None => "the API server gave no answer".into(),
                },
                Err(e) => format!(
                    "could not ask: {}",
                    crate::OpsError::from_kube("a SelfSubjectAccessReview", e)
                ),
            };
            Some(Missing {
                access: *access,
                namespace: namespace.to_string(),
                reason,
            })
        }
    });
    futures::future::join_all(asks)
        .await
        .into_iter()
        .flatten()
        .collect()
}
