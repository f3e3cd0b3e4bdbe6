//! API discovery, as `kubectl` reads it: `/api` (the core versions),
//! `/apis` (the groups), and a resource list per group version, with each
//! resource's kind, verbs, short names and subresources. Served in the
//! legacy (v1) form: kubectl asks for the aggregated form first and falls
//! back to this when the answer is plain JSON.

use serde_json::{json, Value};

use crate::resources::{self, ResourceType};

const READ_WRITE: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

fn short_names(rt: &ResourceType) -> &'static [&'static str] {
    match rt.plural {
        "namespaces" => &["ns"],
        "nodes" => &["no"],
        "pods" => &["po"],
        "events" => &["ev"],
        "services" => &["svc"],
        "deployments" => &["deploy"],
        "replicasets" => &["rs"],
        "horizontalpodautoscalers" => &["hpa"],
        "cronjobs" => &["cj"],
        _ => &[],
    }
}

fn singular(rt: &ResourceType) -> String {
    rt.kind.to_ascii_lowercase()
}

fn resource_json(rt: &ResourceType) -> Value {
    json!({
        "name": rt.plural,
        "singularName": singular(rt),
        "namespaced": rt.namespaced,
        "kind": rt.kind,
        "verbs": READ_WRITE,
        "shortNames": short_names(rt),
        "categories": if matches!(rt.plural, "pods" | "services" | "deployments" | "replicasets" | "horizontalpodautoscalers" | "jobs" | "cronjobs") { json!(["all"]) } else { json!([]) },
    })
}

fn subresources(rt: &ResourceType) -> Vec<Value> {
    let sub = |name: &str, group: &str, version: &str, kind: &str, verbs: &[&str]| {
        json!({
            "name": format!("{}/{name}", rt.plural),
            "singularName": "",
            "namespaced": rt.namespaced,
            "group": group,
            "version": version,
            "kind": kind,
            "verbs": verbs,
        })
    };
    match rt.plural {
        "deployments" => vec![
            sub(
                "scale",
                "autoscaling",
                "v1",
                "Scale",
                &["get", "patch", "update"],
            ),
            sub("status", "", "", "Deployment", &["get", "patch", "update"]),
        ],
        "pods" => vec![
            sub("log", "", "", "Pod", &["get"]),
            sub("status", "", "", "Pod", &["get", "patch", "update"]),
        ],
        _ => Vec::new(),
    }
}

/// `GET /api`.
pub fn core_versions(server: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{ "clientCIDR": "0.0.0.0/0", "serverAddress": server }],
    })
}

/// The groups and versions served (metrics.k8s.io only while the
/// metrics API is on).
fn group_versions(metrics: bool) -> Vec<(&'static str, &'static str)> {
    let mut gvs: Vec<(&str, &str)> = Vec::new();
    for rt in resources::ALL {
        if !rt.group.is_empty() && !gvs.contains(&(rt.group, rt.version)) {
            gvs.push((rt.group, rt.version));
        }
    }
    gvs.push(("authorization.k8s.io", "v1"));
    if metrics {
        gvs.push(("metrics.k8s.io", "v1beta1"));
    }
    gvs
}

/// `GET /apis`.
pub fn groups(metrics: bool) -> Value {
    let groups: Vec<Value> = group_versions(metrics)
        .into_iter()
        .map(|(g, v)| {
            let gv = json!({ "groupVersion": format!("{g}/{v}"), "version": v });
            json!({ "name": g, "versions": [gv.clone()], "preferredVersion": gv })
        })
        .collect();
    json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups })
}

/// `GET /api/v1` or `GET /apis/{group}/{version}`; `None` if not served.
pub fn resource_list(group: &str, version: &str, metrics: bool) -> Option<Value> {
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    let resources: Vec<Value> = match (group, version) {
        ("authorization.k8s.io", "v1") => vec![json!({
            "name": "selfsubjectaccessreviews", "singularName": "selfsubjectaccessreview",
            "namespaced": false, "kind": "SelfSubjectAccessReview", "verbs": ["create"],
        })],
        ("metrics.k8s.io", "v1beta1") if metrics => vec![json!({
            "name": "pods", "singularName": "", "namespaced": true,
            "kind": "PodMetrics", "verbs": ["get", "list"],
        })],
        _ => {
            let served: Vec<&ResourceType> = resources::ALL
                .iter()
                .filter(|rt| rt.group == group && rt.version == version)
                .collect();
            if served.is_empty() {
                return None;
            }
            served
                .into_iter()
                .flat_map(|rt| std::iter::once(resource_json(rt)).chain(subresources(rt)))
                .collect()
        }
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": gv,
        "resources": resources,
    }))
}
