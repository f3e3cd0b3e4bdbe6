//! The resource types the simulator serves, and how REST paths name them.

/// One served resource type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceType {
    /// API group; empty for core.
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
}

impl ResourceType {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `deployments.apps`, `pods`: the name Kubernetes uses in messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

pub const NAMESPACES: ResourceType = rt("", "v1", "namespaces", "Namespace", false);
pub const NODES: ResourceType = rt("", "v1", "nodes", "Node", false);
pub const PODS: ResourceType = rt("", "v1", "pods", "Pod", true);
pub const EVENTS: ResourceType = rt("", "v1", "events", "Event", true);
pub const SERVICES: ResourceType = rt("", "v1", "services", "Service", true);
pub const DEPLOYMENTS: ResourceType = rt("apps", "v1", "deployments", "Deployment", true);
pub const REPLICASETS: ResourceType = rt("apps", "v1", "replicasets", "ReplicaSet", true);
pub const HPAS: ResourceType = rt(
    "autoscaling",
    "v2",
    "horizontalpodautoscalers",
    "HorizontalPodAutoscaler",
    true,
);
pub const JOBS: ResourceType = rt("batch", "v1", "jobs", "Job", true);
pub const CRONJOBS: ResourceType = rt("batch", "v1", "cronjobs", "CronJob", true);
pub const LEASES: ResourceType = rt("coordination.k8s.io", "v1", "leases", "Lease", true);

/// Stored resource types. (Pod metrics are computed, see `api.rs`.)
pub const ALL: &[ResourceType] = &[
    NAMESPACES,
    NODES,
    PODS,
    EVENTS,
    SERVICES,
    DEPLOYMENTS,
    REPLICASETS,
    HPAS,
    JOBS,
    CRONJOBS,
    LEASES,
];

const fn rt(
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
) -> ResourceType {
    ResourceType {
        group,
        version,
        plural,
        kind,
        namespaced,
    }
}

pub fn by_path(group: &str, version: &str, plural: &str) -> Option<ResourceType> {
    ALL.iter()
        .copied()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

pub fn by_kind(api_version: &str, kind: &str) -> Option<ResourceType> {
    ALL.iter()
        .copied()
        .find(|r| r.api_version() == api_version && r.kind == kind)
}
