//! The REST surface: Kubernetes paths parsed by hand into (resource,
//! namespace, name, subresource), then served from the [`Store`].
//!
//! `/api/v1/…` and `/apis/{group}/{version}/…` with list/get/create/replace/
//! patch/delete, the `scale` and `status` subresources of Deployments, pod
//! `log`, `dryRun=All`, label and field selectors, and metrics.k8s.io pod
//! metrics computed from the pods (switchable, to test "no metrics-server").

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::access;
use crate::errors::ApiError;
use crate::patch::{self, PatchKind};
use crate::resources::{self, ResourceType};
use crate::store::{self, Store};

pub type Shared = Arc<crate::SharedStore>;

/// What a path names.
#[derive(Debug)]
pub(crate) struct Target {
    pub rt: ResourceType,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub sub: Option<String>,
}

pub(crate) fn parse_path(path: &str) -> Result<Target, ApiError> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Err(ApiError::path_not_found(path)),
    };
    let lookup = |plural: &str| {
        resources::by_path(group, version, plural).ok_or_else(|| ApiError::path_not_found(path))
    };
    let t = match rest {
        [plural] => Target {
            rt: lookup(plural)?,
            namespace: None,
            name: None,
            sub: None,
        },
        ["namespaces", ns] => Target {
            rt: resources::NAMESPACES,
            namespace: None,
            name: Some(ns.to_string()),
            sub: None,
        },
        [plural, name] => Target {
            rt: lookup(plural)?,
            namespace: None,
            name: Some(name.to_string()),
            sub: None,
        },
        ["namespaces", ns, plural] => Target {
            rt: lookup(plural)?,
            namespace: Some(ns.to_string()),
            name: None,
            sub: None,
        },
        ["namespaces", ns, plural, name] => Target {
            rt: lookup(plural)?,
            namespace: Some(ns.to_string()),
            name: Some(name.to_string()),
            sub: None,
        },
        ["namespaces", ns, plural, name, sub] => Target {
            rt: lookup(plural)?,
            namespace: Some(ns.to_string()),
            name: Some(name.to_string()),
            sub: Some(sub.to_string()),
        },
        _ => return Err(ApiError::path_not_found(path)),
    };
    Ok(t)
}

pub async fn version() -> Json<Value> {
    Json(json!({
        "major": "1", "minor": "33", "gitVersion": "v1.33.0-oncall-sim",
        "platform": "linux/amd64", "goVersion": "sim"
    }))
}

/// Discovery paths: `/api`, `/apis`, `/api/v1`, `/apis/{group}/{version}`.
fn discovery(store: &Shared, method: &Method, path: &str, headers: &HeaderMap) -> Option<Response> {
    if method != Method::GET {
        return None;
    }
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let metrics = store.lock().metrics_enabled;
    let body = match segs.as_slice() {
        ["api"] => {
            let host = headers
                .get(axum::http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("127.0.0.1");
            crate::discovery::core_versions(host)
        }
        ["apis"] => crate::discovery::groups(metrics),
        ["api", version] => crate::discovery::resource_list("", version, metrics)?,
        ["apis", group, version] => crate::discovery::resource_list(group, version, metrics)?,
        _ => return None,
    };
    Some(Json(body).into_response())
}

/// Every Kubernetes path goes through here.
pub async fn handle(
    State(store): State<Shared>,
    method: Method,
    uri: Uri,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let latency = store.lock().latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if let Some(message) = store.lock().internal_error.clone() {
        return ApiError::internal(message).into_response();
    }
    if let Some(found) = discovery(&store, &method, &path, &headers) {
        return found;
    }
    // Objects are JSON here; a protobuf body (Go's typed clients send one
    // for some requests) is refused as a real server refuses what it can't
    // decode, rather than misread.
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !body.is_empty() && content_type.contains("protobuf") {
        return ApiError::unsupported_media(content_type).into_response();
    }
    let watching = query.get("watch").is_some_and(|v| v == "true" || v == "1");
    if let Some(access) = access::access_of(&method, &path, watching) {
        let mut s = store.lock();
        if s.failing_resources.contains(&access.resource) {
            return ApiError::internal(format!(
                "etcdserver: request timed out ({} {})",
                access.verb, access.resource
            ))
            .into_response();
        }
        if s.access.is_denied(&access) {
            let scope = if access.namespace.is_empty() {
                "at the cluster scope".to_string()
            } else {
                format!("in the namespace \"{}\"", access.namespace)
            };
            return ApiError::forbidden(format!(
                "{} is forbidden: User \"system:serviceaccount:oncall:oncall\" cannot {} resource \"{}\" in API group \"{}\" {scope}",
                access.resource, access.verb, access.resource, access.group
            ))
            .into_response();
        }
        s.access.used.insert(access);
    }
    if method == Method::POST && path == "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews" {
        let review: Value = match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => {
                return ApiError::bad_request(format!("invalid JSON body: {e}")).into_response()
            }
        };
        let answer = access::review(&store.lock().access, &review);
        return (axum::http::StatusCode::CREATED, Json(answer)).into_response();
    }
    if watching && method == Method::GET {
        return match parse_path(&path) {
            Ok(t) if t.name.is_none() => {
                crate::watch::serve(store.clone(), t.rt, t.namespace, &query)
                    .unwrap_or_else(IntoResponse::into_response)
            }
            Ok(_) => ApiError::method_not_allowed().into_response(),
            Err(e) => e.into_response(),
        };
    }
    if path.starts_with("/apis/metrics.k8s.io/") {
        return metrics(&store, &path, &query).unwrap_or_else(IntoResponse::into_response);
    }
    let response = match route(&store, &method, &path, &query, &headers, &body) {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    };
    if method != Method::GET {
        let applied = response.status().is_success() && !query.contains_key("dryRun");
        if applied {
            store
                .lock()
                .writes
                .push(format!("{} {path}", method.as_str()));
        }
        store.notify();
    }
    response
}

fn route(
    store: &Shared,
    method: &Method,
    path: &str,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let t = parse_path(path)?;
    let dry_run = query.get("dryRun").is_some_and(|v| v == "All");
    let ns = t.namespace.clone().unwrap_or_default();
    let mut s = store.lock();
    if s.forbidden_methods
        .iter()
        .any(|m| m.eq_ignore_ascii_case(method.as_str()))
    {
        return Err(ApiError::forbidden(format!(
            "{} is forbidden: User \"system:serviceaccount:oncall:oncall\" cannot {} resource \"{}\" in API group \"{}\" in the namespace \"{ns}\"",
            t.rt.qualified(),
            method.as_str().to_lowercase(),
            t.rt.plural,
            t.rt.group
        )));
    }
    if (method == Method::PATCH || method == Method::PUT) && s.conflicts_to_inject > 0 {
        s.conflicts_to_inject -= 1;
        return Err(ApiError::conflict(t.rt, t.name.as_deref().unwrap_or("")));
    }
    match (method.clone(), &t.name, t.sub.as_deref()) {
        (Method::GET, None, None) => list(&s, &t, query, headers),
        (Method::POST, None, None) => {
            let obj: Value = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
            if t.rt.namespaced && t.namespace.is_none() {
                return Err(ApiError::method_not_allowed());
            }
            if let Some(body_ns) = obj["metadata"]["namespace"].as_str() {
                if t.rt.namespaced && body_ns != ns {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
            }
            let created = s.create(t.rt, &ns, obj, dry_run)?;
            Ok((axum::http::StatusCode::CREATED, Json(created)).into_response())
        }
        (Method::GET, Some(name), None) => {
            let obj = s
                .get(t.rt, &ns, name)
                .ok_or_else(|| ApiError::not_found(t.rt, name))?;
            if wants_table(headers) {
                let rv = s.resource_version().to_string();
                return Ok(
                    Json(crate::table::table(t.rt, std::slice::from_ref(obj), &rv)).into_response(),
                );
            }
            Ok(Json(obj.clone()).into_response())
        }
        (Method::GET, Some(name), Some("status")) => {
            let obj = s
                .get(t.rt, &ns, name)
                .ok_or_else(|| ApiError::not_found(t.rt, name))?;
            Ok(Json(obj.clone()).into_response())
        }
        (Method::PUT, Some(name), None) if t.rt == resources::LEASES => {
            let obj: Value = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
            lease_put(&mut s, &ns, name, obj, dry_run)
        }
        (Method::PUT, Some(name), None) => {
            let obj: Value = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
            let out = s.replace(t.rt, &ns, name, obj, dry_run)?;
            Ok(Json(out).into_response())
        }
        (Method::PATCH, Some(name), None) => {
            let kind = patch_kind(headers)?;
            let mut obj = s
                .get(t.rt, &ns, name)
                .cloned()
                .ok_or_else(|| ApiError::not_found(t.rt, name))?;
            let rv_before = obj["metadata"]["resourceVersion"].clone();
            obj["metadata"]["resourceVersion"] = Value::Null;
            patch::apply(kind, &mut obj, body).map_err(|e| ApiError::invalid(t.rt, name, e))?;
            // A patch only conflicts if it names a resourceVersion itself.
            if obj["metadata"]["resourceVersion"].is_null() {
                obj["metadata"]["resourceVersion"] = rv_before;
            }
            let out = s.replace(t.rt, &ns, name, obj, dry_run)?;
            Ok(Json(out).into_response())
        }
        (Method::DELETE, Some(name), None) => {
            let out = s.delete(t.rt, &ns, name, dry_run)?;
            Ok(Json(out).into_response())
        }
        (Method::GET, Some(name), Some("scale")) if t.rt == resources::DEPLOYMENTS => {
            let d = s
                .get(t.rt, &ns, name)
                .ok_or_else(|| ApiError::not_found(t.rt, name))?;
            Ok(Json(scale_of(d)).into_response())
        }
        (Method::PATCH | Method::PUT, Some(name), Some("scale"))
            if t.rt == resources::DEPLOYMENTS =>
        {
            let d = s
                .get(t.rt, &ns, name)
                .cloned()
                .ok_or_else(|| ApiError::not_found(t.rt, name))?;
            let mut scale = scale_of(&d);
            let rv_before = scale["metadata"]["resourceVersion"].clone();
            if method == Method::PUT {
                scale = serde_json::from_slice(body)
                    .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
            } else {
                scale["metadata"]["resourceVersion"] = Value::Null;
                let kind = patch_kind(headers)?;
                patch::apply(kind, &mut scale, body)
                    .map_err(|e| ApiError::invalid(t.rt, name, e))?;
                if scale["metadata"]["resourceVersion"].is_null() {
                    scale["metadata"]["resourceVersion"] = rv_before;
                }
            }
            let replicas = scale["spec"]["replicas"].as_i64().unwrap_or(0);
            if replicas < 0 {
                return Err(ApiError::invalid(
                    t.rt,
                    name,
                    format!("spec.replicas: Invalid value: {replicas}: must be greater than or equal to 0"),
                ));
            }
            let mut updated = d.clone();
            updated["spec"]["replicas"] = json!(replicas);
            updated["metadata"]["resourceVersion"] = scale["metadata"]["resourceVersion"].clone();
            let out = s.replace(t.rt, &ns, name, updated, dry_run)?;
            Ok(Json(scale_of(&out)).into_response())
        }
        (Method::GET, Some(name), Some("log")) if t.rt == resources::PODS => {
            let pod = s
                .get(t.rt, &ns, name)
                .ok_or_else(|| ApiError::not_found(t.rt, name))?;
            logs(&s, pod, &ns, name, query)
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

/// A Lease PUT, as the API server answers leader electors: a Lease that
/// does not exist is created; an update must carry the resourceVersion it
/// read (422 without one) and fails with 409 if that is stale.
fn lease_put(
    s: &mut Store,
    ns: &str,
    name: &str,
    mut obj: Value,
    dry_run: bool,
) -> Result<Response, ApiError> {
    let rt = resources::LEASES;
    if obj["metadata"]["name"].as_str().is_some_and(|n| n != name) {
        return Err(ApiError::bad_request(
            "the name of the object does not match the name on the URL",
        ));
    }
    if s.get(rt, ns, name).is_none() {
        obj["metadata"]["name"] = json!(name);
        let created = s.create(rt, ns, obj, dry_run)?;
        return Ok((axum::http::StatusCode::CREATED, Json(created)).into_response());
    }
    if obj["metadata"]["resourceVersion"]
        .as_str()
        .is_none_or(str::is_empty)
    {
        return Err(ApiError::invalid(
            rt,
            name,
            "metadata.resourceVersion: Invalid value: 0x0: must be specified for an update",
        ));
    }
    Ok(Json(s.replace(rt, ns, name, obj, dry_run)?).into_response())
}

fn patch_kind(headers: &HeaderMap) -> Result<PatchKind, ApiError> {
    let ct = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    PatchKind::from_content_type(ct).ok_or_else(|| ApiError::unsupported_media(ct))
}

fn wants_table(headers: &HeaderMap) -> bool {
    headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(crate::table::wanted)
}

fn list(
    s: &Store,
    t: &Target,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let selector = match query.get("labelSelector") {
        Some(sel) => store::parse_label_selector(sel)?,
        None => Vec::new(),
    };
    let mut items = Vec::new();
    for obj in s.list(t.rt, t.namespace.as_deref()) {
        if !store::labels_match(&selector, &obj["metadata"]["labels"]) {
            continue;
        }
        if let Some(fs) = query.get("fieldSelector") {
            if !store::field_selector_matches(fs, &obj)? {
                continue;
            }
        }
        items.push(obj);
    }
    if wants_table(headers) {
        let rv = s.resource_version().to_string();
        return Ok(Json(crate::table::table(t.rt, &items, &rv)).into_response());
    }
    Ok(Json(json!({
        "apiVersion": t.rt.api_version(),
        "kind": format!("{}List", t.rt.kind),
        "metadata": { "resourceVersion": s.resource_version().to_string() },
        "items": items,
    }))
    .into_response())
}

/// The autoscaling/v1 Scale view of a Deployment.
fn scale_of(d: &Value) -> Value {
    let labels = d["spec"]["selector"]["matchLabels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    json!({
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {
            "name": d["metadata"]["name"],
            "namespace": d["metadata"]["namespace"],
            "uid": d["metadata"]["uid"],
            "resourceVersion": d["metadata"]["resourceVersion"],
            "creationTimestamp": d["metadata"]["creationTimestamp"],
        },
        "spec": { "replicas": d["spec"]["replicas"].as_i64().unwrap_or(1) },
        "status": { "replicas": d["status"]["replicas"].as_i64().unwrap_or(0), "selector": labels },
    })
}

fn logs(
    s: &Store,
    pod: &Value,
    ns: &str,
    name: &str,
    query: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let containers: Vec<String> = pod["spec"]["containers"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c["name"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let container = match query.get("container") {
        Some(c) => {
            if !containers.contains(c) {
                return Err(ApiError::bad_request(format!(
                    "container {c} is not valid for pod {name}"
                )));
            }
            c.clone()
        }
        None if containers.len() == 1 => containers[0].clone(),
        None => {
            return Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                containers.join(" ")
            )))
        }
    };
    let previous = query.get("previous").is_some_and(|v| v == "true");
    let empty = Default::default();
    let all = s.logs.get(&(ns.to_string(), name.to_string()));
    let lines: &Vec<(jiff::Timestamp, String)> = all
        .and_then(|l| {
            if previous {
                l.previous.get(&container)
            } else {
                l.current.get(&container)
            }
        })
        .unwrap_or(&empty);
    if previous && lines.is_empty() {
        return Err(ApiError::bad_request(format!(
            "previous terminated container \"{container}\" in pod \"{name}\" not found"
        )));
    }
    let now = jiff::Timestamp::now();
    let since = query
        .get("sinceSeconds")
        .and_then(|v| v.parse::<i64>().ok());
    let timestamps = query.get("timestamps").is_some_and(|v| v == "true");
    let mut selected: Vec<String> = lines
        .iter()
        .filter(|(t, _)| since.is_none_or(|secs| now.as_second() - t.as_second() <= secs))
        .map(|(t, l)| {
            if timestamps {
                format!("{t} {l}")
            } else {
                l.clone()
            }
        })
        .collect();
    if let Some(tail) = query.get("tailLines").and_then(|v| v.parse::<usize>().ok()) {
        let skip = selected.len().saturating_sub(tail);
        selected.drain(..skip);
    }
    let mut text = selected.join("\n");
    if !text.is_empty() {
        text.push('\n');
    }
    if let Some(limit) = query
        .get("limitBytes")
        .and_then(|v| v.parse::<usize>().ok())
    {
        text.truncate(limit);
    }
    Ok(([(axum::http::header::CONTENT_TYPE, "text/plain")], text).into_response())
}

/// metrics.k8s.io/v1beta1 PodMetrics, derived from running pods.
fn metrics(
    store: &Shared,
    path: &str,
    query: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let s = store.lock();
    if !s.metrics_enabled {
        return Err(ApiError::path_not_found(path));
    }
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (ns, name) = match segs.as_slice() {
        ["apis", "metrics.k8s.io", "v1beta1", "pods"] => (None, None),
        ["apis", "metrics.k8s.io", "v1beta1", "namespaces", ns, "pods"] => (Some(*ns), None),
        ["apis", "metrics.k8s.io", "v1beta1", "namespaces", ns, "pods", name] => {
            (Some(*ns), Some(*name))
        }
        _ => return Err(ApiError::path_not_found(path)),
    };
    let selector = match query.get("labelSelector") {
        Some(sel) => store::parse_label_selector(sel)?,
        None => Vec::new(),
    };
    let now = jiff::Timestamp::now().to_string();
    let items: Vec<Value> = s
        .list(resources::PODS, ns)
        .into_iter()
        .filter(|p| p["status"]["phase"] == "Running")
        .filter(|p| name.is_none_or(|n| p["metadata"]["name"] == n))
        .filter(|p| store::labels_match(&selector, &p["metadata"]["labels"]))
        .map(|p| {
            let seed: u64 = p["metadata"]["name"].as_str().unwrap_or("").bytes().map(u64::from).sum();
            let containers: Vec<Value> = p["spec"]["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
                .map(|(i, c)| {
                    json!({
                        "name": c["name"],
                        "usage": {
                            "cpu": format!("{}m", 20 + (seed + i as u64 * 7) % 180),
                            "memory": format!("{}Mi", 64 + (seed * 3 + i as u64) % 400),
                        }
                    })
                })
                .collect();
            json!({
                "metadata": { "name": p["metadata"]["name"], "namespace": p["metadata"]["namespace"], "labels": p["metadata"]["labels"] },
                "timestamp": now,
                "window": "30s",
                "containers": containers,
            })
        })
        .collect();
    if name.is_some() {
        return match items.into_iter().next() {
            Some(item) => Ok(Json(item).into_response()),
            None => Err(ApiError::path_not_found(path)),
        };
    }
    Ok(Json(json!({
        "apiVersion": "metrics.k8s.io/v1beta1",
        "kind": "PodMetricsList",
        "metadata": {},
        "items": items,
    }))
    .into_response())
}
