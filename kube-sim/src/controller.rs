//! The controllers: what turns a changed Deployment into ReplicaSets and Pods
//! and status, over time, the way kube-controller-manager and the kubelet do.
//!
//! Each [`tick`] reconciles everything once:
//! - Deployment → ReplicaSets: a new ReplicaSet per pod template (named
//!   `<deployment>-<hash>`, labelled `pod-template-hash`, annotated with
//!   `deployment.kubernetes.io/revision`, owned by the Deployment); going back
//!   to an older template reuses its ReplicaSet and gives it the next revision.
//!   Paused deployments do not roll out. Old ReplicaSets scale down as new pods
//!   become available.
//! - ReplicaSet → Pods: pods are created Pending and become Running and Ready
//!   after `pod_start`; failures are injected by the pod template annotation
//!   `sim.oncall.dev/fail` (`ImagePullBackOff`, `CrashLoopBackOff`,
//!   `OOMKilled`, `Unschedulable`) or an image whose tag is `does-not-exist`.
//! - Status: observedGeneration, replicas, updated/ready/available, and the
//!   Available and Progressing conditions, including ProgressDeadlineExceeded.
//! - HorizontalPodAutoscalers keep their target within min..max; Jobs run a
//!   pod to completion. Events are recorded as the real components do.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{json, Value};

use crate::resources::{DEPLOYMENTS, EVENTS, HPAS, JOBS, PODS, REPLICASETS};
use crate::store::{random_suffix, PodLogs, Store};

pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const FAIL_ANNOTATION: &str = "sim.oncall.dev/fail";
const HASH_LABEL: &str = "pod-template-hash";

/// Timing of the simulated cluster.
#[derive(Debug, Clone)]
pub struct Timing {
    /// How long a new pod takes to become Ready.
    pub pod_start: Duration,
    /// How long a crashing container runs before it dies again.
    pub crash_every: Duration,
}

/// State the controllers keep between ticks (the real ones keep it in caches).
#[derive(Debug, Default)]
pub struct ControllerState {
    /// Per deployment: the last progress signature and when it changed.
    progress: HashMap<(String, String), (String, jiff::Timestamp)>,
}

pub fn tick(store: &mut Store, state: &mut ControllerState, timing: &Timing) {
    let now = jiff::Timestamp::now();
    for hpa in store.list(HPAS, None) {
        reconcile_hpa(store, &hpa);
    }
    for d in store.list(DEPLOYMENTS, None) {
        reconcile_deployment(store, &d);
    }
    for job in store.list(JOBS, None) {
        reconcile_job(store, &job, now);
    }
    for rs in store.list(REPLICASETS, None) {
        reconcile_replicaset_pods(store, &rs);
    }
    for pod in store.list(PODS, None) {
        advance_pod(store, pod, now, timing);
    }
    for rs in store.list(REPLICASETS, None) {
        replicaset_status(store, rs);
    }
    for d in store.list(DEPLOYMENTS, None) {
        deployment_status(store, state, d, now);
    }
    for hpa in store.list(HPAS, None) {
        hpa_status(store, hpa);
    }
}

fn ns_name(obj: &Value) -> (String, String) {
    (
        obj["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_string(),
        obj["metadata"]["name"].as_str().unwrap_or("").to_string(),
    )
}

fn owned_by<'a>(items: &'a [Value], owner: &Value) -> Vec<&'a Value> {
    let uid = &owner["metadata"]["uid"];
    items
        .iter()
        .filter(|o| {
            o["metadata"]["ownerReferences"]
                .as_array()
                .is_some_and(|refs| {
                    refs.iter()
                        .any(|r| &r["uid"] == uid && r["controller"] == true)
                })
        })
        .collect()
}

fn owner_ref(owner: &Value) -> Value {
    json!([{
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": true,
        "blockOwnerDeletion": true,
    }])
}

/// The template as the Deployment has it: without the hash label.
fn strip_hash(template: &Value) -> Value {
    let mut t = template.clone();
    if let Some(labels) = t["metadata"]["labels"].as_object_mut() {
        labels.remove(HASH_LABEL);
    }
    t
}

fn template_hash(template: &Value) -> String {
    // FNV-1a over the canonical JSON (serde_json maps are sorted).
    let mut h: u64 = 0xcbf29ce484222325;
    for b in template.to_string().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..10)
        .map(|i| ALPHABET[((h >> (i * 6)) % ALPHABET.len() as u64) as usize] as char)
        .collect()
}

fn revision(rs: &Value) -> i64 {
    rs["metadata"]["annotations"][REVISION]
        .as_str()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn replicas_of(obj: &Value) -> i64 {
    obj["spec"]["replicas"].as_i64().unwrap_or(1)
}

fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

fn reconcile_deployment(store: &mut Store, d: &Value) {
    let (ns, name) = ns_name(d);
    let all_rs = store.list(REPLICASETS, Some(&ns));
    let owned: Vec<Value> = owned_by(&all_rs, d).into_iter().cloned().collect();
    let template = &d["spec"]["template"];
    let paused = d["spec"]["paused"] == true;
    let desired = replicas_of(d).max(0);
    let max_revision = owned.iter().map(revision).max().unwrap_or(0);
    let current = owned
        .iter()
        .find(|rs| strip_hash(&rs["spec"]["template"]) == *template)
        .cloned();

    let new_rs = match (current, paused) {
        (Some(mut rs), false) => {
            // Rolling back to an old template makes its ReplicaSet the newest
            // revision, as the deployment controller does.
            if revision(&rs) < max_revision {
                rs["metadata"]["annotations"][REVISION] = json!((max_revision + 1).to_string());
                copy_change_cause(d, &mut rs);
                let (rns, rname) = ns_name(&rs);
                store.put_internal(REPLICASETS, &rns, &rname, rs.clone());
            }
            Some(rs)
        }
        (Some(rs), true) => Some(rs),
        (None, true) => None,
        (None, false) => {
            let hash = template_hash(template);
            let mut t = template.clone();
            t["metadata"]["labels"][HASH_LABEL] = json!(hash);
            let mut selector = d["spec"]["selector"].clone();
            selector["matchLabels"][HASH_LABEL] = json!(hash);
            let mut annotations = json!({ REVISION: (max_revision + 1).to_string() });
            if let Some(cause) = d["metadata"]["annotations"]["kubernetes.io/change-cause"].as_str()
            {
                annotations["kubernetes.io/change-cause"] = json!(cause);
            }
            let rs = json!({
                "metadata": {
                    "name": format!("{name}-{hash}"),
                    "labels": t["metadata"]["labels"],
                    "annotations": annotations,
                    "ownerReferences": owner_ref(d),
                },
                "spec": { "replicas": 0, "selector": selector, "template": t },
            });
            match store.create_internal(REPLICASETS, &ns, rs) {
                Ok(created) => Some(created),
                Err(e) => {
                    tracing::warn!(
                        "sim: could not create ReplicaSet for {ns}/{name}: {}",
                        e.message
                    );
                    None
                }
            }
        }
    };

    let pods = store.list(PODS, Some(&ns));
    let available_of = |rs: &Value| {
        owned_by(&pods, rs)
            .into_iter()
            .filter(|p| is_ready(p))
            .count() as i64
    };
    match &new_rs {
        Some(new_rs) if !paused => {
            set_rs_replicas(store, d, new_rs, desired);
            // Old ReplicaSets keep what is still needed while new pods are
            // not yet available, newest first.
            let mut budget = (desired - available_of(new_rs)).max(0);
            let mut olds: Vec<&Value> = owned
                .iter()
                .filter(|rs| rs["metadata"]["uid"] != new_rs["metadata"]["uid"])
                .collect();
            olds.sort_by_key(|rs| std::cmp::Reverse(revision(rs)));
            for old in olds {
                let keep = replicas_of(old).min(budget).min(available_of(old));
                budget -= keep;
                set_rs_replicas(store, d, old, keep);
            }
        }
        _ => {
            // Paused: scaling still applies, to the newest ReplicaSet.
            if let Some(newest) = owned.iter().max_by_key(|rs| revision(rs)) {
                let others: i64 = owned
                    .iter()
                    .filter(|rs| rs["metadata"]["uid"] != newest["metadata"]["uid"])
                    .map(replicas_of)
                    .sum();
                set_rs_replicas(store, d, newest, (desired - others).max(0));
            }
        }
    }
}

fn copy_change_cause(d: &Value, rs: &mut Value) {
    if let Some(cause) = d["metadata"]["annotations"]["kubernetes.io/change-cause"].as_str() {
        rs["metadata"]["annotations"]["kubernetes.io/change-cause"] = json!(cause);
    }
}

fn set_rs_replicas(store: &mut Store, d: &Value, rs: &Value, replicas: i64) {
    let (ns, name) = ns_name(rs);
    let Some(mut current) = store.get(REPLICASETS, &ns, &name).cloned() else {
        return;
    };
    let before = replicas_of(&current);
    if before == replicas {
        return;
    }
    current["spec"]["replicas"] = json!(replicas);
    store.put_internal(REPLICASETS, &ns, &name, current);
    let direction = if replicas > before { "up" } else { "down" };
    record_event(
        store,
        d,
        "Normal",
        "ScalingReplicaSet",
        &format!("Scaled {direction} replica set {name} from {before} to {replicas}"),
        "deployment-controller",
    );
}

fn reconcile_replicaset_pods(store: &mut Store, rs: &Value) {
    let (ns, _) = ns_name(rs);
    let pods = store.list(PODS, Some(&ns));
    let mut owned: Vec<Value> = owned_by(&pods, rs).into_iter().cloned().collect();
    let want = replicas_of(rs).max(0) as usize;
    if owned.len() < want {
        for _ in owned.len()..want {
            create_pod(store, rs, &ns);
        }
    } else if owned.len() > want {
        // Not-ready pods go first, then the newest.
        owned.sort_by_key(|p| {
            (
                is_ready(p),
                std::cmp::Reverse(
                    p["metadata"]["creationTimestamp"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                ),
            )
        });
        for pod in owned.iter().take(owned.len() - want) {
            let (pns, pname) = ns_name(pod);
            let _ = store.delete(PODS, &pns, &pname, false);
        }
    }
}

fn create_pod(store: &mut Store, owner: &Value, ns: &str) {
    let template = &owner["spec"]["template"];
    let base = owner["metadata"]["name"].as_str().unwrap_or("pod");
    let name = format!("{base}-{}", random_suffix(store.resource_version()));
    let containers: Vec<Value> = template["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let statuses: Vec<Value> = containers
        .iter()
        .map(|c| {
            json!({
                "name": c["name"], "image": c["image"], "imageID": "", "ready": false, "restartCount": 0,
                "started": false,
                "state": { "waiting": { "reason": "ContainerCreating" } },
            })
        })
        .collect();
    let mut spec = template["spec"].clone();
    spec["nodeName"] = json!("sim-node-1");
    let pod = json!({
        "metadata": {
            "name": name,
            "labels": template["metadata"]["labels"],
            "annotations": template["metadata"]["annotations"],
            "ownerReferences": owner_ref(owner),
        },
        "spec": spec,
        "status": {
            "phase": "Pending",
            "conditions": [
                { "type": "PodScheduled", "status": "True" },
                { "type": "Ready", "status": "False", "reason": "ContainersNotReady" },
            ],
            "containerStatuses": statuses,
            "hostIP": "10.0.0.11",
            "podIP": format!("10.244.{}.{}", store.resource_version() % 250, (store.resource_version() / 250) % 250 + 2),
            "startTime": jiff::Timestamp::now().to_string(),
        }
    });
    if let Err(e) = store.create_internal(PODS, ns, pod) {
        tracing::warn!("sim: could not create pod in {ns}: {}", e.message);
    }
}

/// What an injected failure, if any, does to this pod.
fn failure_of(pod: &Value) -> Option<String> {
    if let Some(f) = pod["metadata"]["annotations"][FAIL_ANNOTATION].as_str() {
        return Some(f.to_string());
    }
    let bad_image = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| {
            c["image"]
                .as_str()
                .is_some_and(|i| i.ends_with(":does-not-exist"))
        });
    bad_image.then(|| "ImagePullBackOff".to_string())
}

fn advance_pod(store: &mut Store, mut pod: Value, now: jiff::Timestamp, timing: &Timing) {
    let (ns, name) = ns_name(&pod);
    let phase = pod["status"]["phase"].as_str().unwrap_or("").to_string();
    if phase == "Succeeded" || phase == "Failed" {
        return;
    }
    let created: jiff::Timestamp = pod["metadata"]["creationTimestamp"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(now);
    let age = now.duration_since(created).unsigned_abs();
    let started = age >= timing.pod_start;
    let containers: Vec<Value> = pod["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let is_job = pod["metadata"]["ownerReferences"][0]["kind"] == "Job";
    let failure = failure_of(&pod);
    ensure_logs(store, &ns, &name, &containers, created);

    match (failure.as_deref(), started) {
        (_, false) => return,
        (Some("Unschedulable"), _) => {
            pod["spec"]["nodeName"] = Value::Null;
            pod["status"]["conditions"] = json!([{
                "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod.",
            }]);
            pod["status"]["containerStatuses"] = Value::Null;
            record_event(store, &pod, "Warning", "FailedScheduling",
                "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod.",
                "default-scheduler");
        }
        (Some("ImagePullBackOff"), _) => {
            let image = containers
                .first()
                .and_then(|c| c["image"].as_str())
                .unwrap_or("")
                .to_string();
            for cs in pod["status"]["containerStatuses"]
                .as_array_mut()
                .into_iter()
                .flatten()
            {
                cs["state"] = json!({ "waiting": { "reason": "ImagePullBackOff",
                    "message": format!("Back-off pulling image \"{image}\"") } });
            }
            record_event(store, &pod, "Warning", "Failed",
                &format!("Failed to pull image \"{image}\": rpc error: code = NotFound desc = failed to pull and unpack image \"{image}\": not found"),
                "kubelet");
        }
        (Some(reason @ ("CrashLoopBackOff" | "OOMKilled")), _) => {
            let restarts = (age.saturating_sub(timing.pod_start).as_millis()
                / timing.crash_every.as_millis().max(1)) as i64
                + 1;
            let terminated_reason = if reason == "OOMKilled" {
                "OOMKilled"
            } else {
                "Error"
            };
            let exit_code = if reason == "OOMKilled" { 137 } else { 1 };
            let mut grew = false;
            for cs in pod["status"]["containerStatuses"]
                .as_array_mut()
                .into_iter()
                .flatten()
            {
                grew |= cs["restartCount"].as_i64().unwrap_or(0) != restarts;
                cs["restartCount"] = json!(restarts);
                cs["ready"] = json!(false);
                cs["state"] = json!({ "waiting": { "reason": "CrashLoopBackOff",
                    "message": format!("back-off 40s restarting failed container={} pod={name}", cs["name"].as_str().unwrap_or("")) } });
                cs["lastState"] = json!({ "terminated": { "reason": terminated_reason, "exitCode": exit_code,
                    "startedAt": created.to_string(), "finishedAt": now.to_string() } });
            }
            pod["status"]["phase"] = json!("Running");
            if grew {
                crash_logs(store, &ns, &name, &containers, reason, now);
                record_event(
                    store,
                    &pod,
                    "Warning",
                    "BackOff",
                    "Back-off restarting failed container",
                    "kubelet",
                );
            }
        }
        _ => {
            let done = is_job && age >= timing.pod_start * 2;
            for cs in pod["status"]["containerStatuses"]
                .as_array_mut()
                .into_iter()
                .flatten()
            {
                if done {
                    cs["ready"] = json!(false);
                    cs["started"] = json!(false);
                    cs["state"] = json!({ "terminated": { "reason": "Completed", "exitCode": 0,
                        "startedAt": (created + timing.pod_start).to_string(), "finishedAt": now.to_string() } });
                } else if cs["state"]["running"].is_null() {
                    cs["ready"] = json!(true);
                    cs["started"] = json!(true);
                    cs["state"] = json!({ "running": { "startedAt": (created + timing.pod_start).to_string() } });
                }
            }
            pod["status"]["phase"] = json!(if done { "Succeeded" } else { "Running" });
            pod["status"]["conditions"] = json!([
                { "type": "PodScheduled", "status": "True" },
                { "type": "Initialized", "status": "True" },
                { "type": "ContainersReady", "status": if done { "False" } else { "True" } },
                { "type": "Ready", "status": if done { "False" } else { "True" },
                  "lastTransitionTime": (created + timing.pod_start).to_string() },
            ]);
        }
    }
    store.put_internal(PODS, &ns, &name, pod);
}

fn ensure_logs(
    store: &mut Store,
    ns: &str,
    pod: &str,
    containers: &[Value],
    created: jiff::Timestamp,
) {
    let key = (ns.to_string(), pod.to_string());
    if store.logs.contains_key(&key) {
        return;
    }
    let mut logs = PodLogs::default();
    for c in containers {
        let cname = c["name"].as_str().unwrap_or("app").to_string();
        let image = c["image"].as_str().unwrap_or("");
        let t = created;
        logs.current.insert(
            cname.clone(),
            vec![
                (
                    t,
                    format!("level=info msg=\"starting {cname}\" image={image}"),
                ),
                (
                    t,
                    "level=info msg=\"loaded configuration\" env=production".to_string(),
                ),
                (
                    t,
                    "level=info msg=\"connected to database\" pool_size=10".to_string(),
                ),
                (
                    t,
                    "level=info msg=\"listening\" addr=0.0.0.0:8080".to_string(),
                ),
                (
                    t,
                    "level=info msg=\"GET /health\" status=200 duration=0.4ms".to_string(),
                ),
            ],
        );
    }
    store.logs.insert(key, logs);
}

fn crash_logs(
    store: &mut Store,
    ns: &str,
    pod: &str,
    containers: &[Value],
    reason: &str,
    now: jiff::Timestamp,
) {
    let Some(logs) = store.logs.get_mut(&(ns.to_string(), pod.to_string())) else {
        return;
    };
    for c in containers {
        let cname = c["name"].as_str().unwrap_or("app").to_string();
        let last = if reason == "OOMKilled" {
            "level=warn msg=\"heap usage high\" rss=1023Mi limit=1024Mi".to_string()
        } else {
            "level=error msg=\"failed to connect to database\" error=\"connection refused\""
                .to_string()
        };
        let previous = vec![
            (now, format!("level=info msg=\"starting {cname}\"")),
            (now, last),
            (now, "panic: fatal error, exiting".to_string()),
        ];
        logs.previous.insert(cname.clone(), previous);
        logs.current.insert(
            cname.clone(),
            vec![(now, format!("level=info msg=\"starting {cname}\""))],
        );
    }
}

fn replicaset_status(store: &mut Store, mut rs: Value) {
    let (ns, name) = ns_name(&rs);
    let pods = store.list(PODS, Some(&ns));
    let owned = owned_by(&pods, &rs);
    let ready = owned.iter().filter(|p| is_ready(p)).count();
    rs["status"] = json!({
        "replicas": owned.len(),
        "fullyLabeledReplicas": owned.len(),
        "readyReplicas": ready,
        "availableReplicas": ready,
        "observedGeneration": rs["metadata"]["generation"],
    });
    store.put_internal(REPLICASETS, &ns, &name, rs);
}

fn deployment_status(
    store: &mut Store,
    state: &mut ControllerState,
    mut d: Value,
    now: jiff::Timestamp,
) {
    let (ns, name) = ns_name(&d);
    let all_rs = store.list(REPLICASETS, Some(&ns));
    let owned = owned_by(&all_rs, &d);
    let template = &d["spec"]["template"];
    let new_rs = owned
        .iter()
        .find(|rs| strip_hash(&rs["spec"]["template"]) == *template);
    let pods = store.list(PODS, Some(&ns));
    let mut total = 0;
    let mut ready = 0;
    for rs in &owned {
        for p in owned_by(&pods, rs) {
            total += 1;
            if is_ready(p) {
                ready += 1;
            }
        }
    }
    let updated = new_rs.map(|rs| owned_by(&pods, rs).len()).unwrap_or(0) as i64;
    let desired = replicas_of(&d);
    let max_unavailable = desired / 4;
    let complete = new_rs.is_some() && updated == desired && total == desired && ready == desired;
    let deadline = d["spec"]["progressDeadlineSeconds"].as_i64().unwrap_or(600);
    let rs_name = new_rs
        .and_then(|rs| rs["metadata"]["name"].as_str())
        .unwrap_or("")
        .to_string();
    // The deployment carries its newest ReplicaSet's revision, as the
    // deployment controller writes it.
    if let Some(rev) = new_rs.and_then(|rs| rs["metadata"]["annotations"][REVISION].as_str()) {
        if d["metadata"]["annotations"][REVISION].as_str() != Some(rev) {
            if !d["metadata"]["annotations"].is_object() {
                d["metadata"]["annotations"] = json!({});
            }
            d["metadata"]["annotations"][REVISION] = json!(rev);
            store.put_internal(DEPLOYMENTS, &ns, &name, d.clone());
        }
    }

    let signature = format!(
        "{}/{updated}/{ready}/{total}/{desired}",
        d["metadata"]["generation"]
    );
    let key = (ns.clone(), name.clone());
    let since = match state.progress.get(&key) {
        Some((sig, at)) if *sig == signature => *at,
        _ => {
            state.progress.insert(key, (signature, now));
            now
        }
    };
    let previous_progressing = d["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Progressing").cloned());
    let (p_status, p_reason, p_message) = if d["spec"]["paused"] == true {
        (
            "Unknown",
            "DeploymentPaused",
            "Deployment is paused".to_string(),
        )
    } else if complete {
        (
            "True",
            "NewReplicaSetAvailable",
            format!("ReplicaSet \"{rs_name}\" has successfully progressed."),
        )
    } else if now.duration_since(since).as_secs() > deadline
        || previous_progressing
            .as_ref()
            .is_some_and(|c| c["reason"] == "ProgressDeadlineExceeded" && !complete)
    {
        (
            "False",
            "ProgressDeadlineExceeded",
            format!("ReplicaSet \"{rs_name}\" has timed out progressing."),
        )
    } else {
        (
            "True",
            "ReplicaSetUpdated",
            format!("ReplicaSet \"{rs_name}\" is progressing."),
        )
    };
    let available_ok = ready >= desired - max_unavailable;
    let transition = |kind: &str, status: &str| {
        d["status"]["conditions"]
            .as_array()
            .and_then(|cs| {
                cs.iter()
                    .find(|c| c["type"] == kind && c["status"] == status)
            })
            .and_then(|c| c["lastTransitionTime"].as_str().map(String::from))
            .unwrap_or_else(|| now.to_string())
    };
    let conditions = json!([
        {
            "type": "Available",
            "status": if available_ok { "True" } else { "False" },
            "reason": if available_ok { "MinimumReplicasAvailable" } else { "MinimumReplicasUnavailable" },
            "message": if available_ok { "Deployment has minimum availability." } else { "Deployment does not have minimum availability." },
            "lastTransitionTime": transition("Available", if available_ok { "True" } else { "False" }),
            "lastUpdateTime": now.to_string(),
        },
        {
            "type": "Progressing",
            "status": p_status,
            "reason": p_reason,
            "message": p_message,
            "lastTransitionTime": transition("Progressing", p_status),
            "lastUpdateTime": since.to_string(),
        }
    ]);
    let mut status = json!({
        "observedGeneration": d["metadata"]["generation"],
        "replicas": total,
        "updatedReplicas": updated,
        "readyReplicas": ready,
        "availableReplicas": ready,
        "conditions": conditions,
    });
    let unavailable = (desired - ready).max(0);
    if unavailable > 0 {
        status["unavailableReplicas"] = json!(unavailable);
    }
    // Don't churn resourceVersion when only timestamps moved.
    let mut old = d["status"].clone();
    let mut cmp = status.clone();
    for s in [&mut old, &mut cmp] {
        for c in s["conditions"].as_array_mut().into_iter().flatten() {
            c["lastUpdateTime"] = Value::Null;
        }
    }
    if old == cmp {
        return;
    }
    d["status"] = status;
    store.put_internal(DEPLOYMENTS, &ns, &name, d);
}

fn hpa_target(store: &Store, hpa: &Value) -> Option<Value> {
    let (ns, _) = ns_name(hpa);
    let target = &hpa["spec"]["scaleTargetRef"];
    if target["kind"] != "Deployment" {
        return None;
    }
    store
        .get(DEPLOYMENTS, &ns, target["name"].as_str()?)
        .cloned()
}

/// Keeps the target within the autoscaler's bounds, as the HPA controller
/// would on its next sync.
fn reconcile_hpa(store: &mut Store, hpa: &Value) {
    let Some(mut d) = hpa_target(store, hpa) else {
        return;
    };
    let min = hpa["spec"]["minReplicas"].as_i64().unwrap_or(1);
    let max = hpa["spec"]["maxReplicas"].as_i64().unwrap_or(min);
    let current = replicas_of(&d);
    let clamped = current.clamp(min, max.max(min));
    if clamped == current || current == 0 {
        // Scaled to zero by hand: the HPA is disabled until scaled up again.
        return;
    }
    let (ns, name) = ns_name(&d);
    d["spec"]["replicas"] = json!(clamped);
    let generation = d["metadata"]["generation"].as_i64().unwrap_or(1);
    d["metadata"]["generation"] = json!(generation + 1);
    store.put_internal(DEPLOYMENTS, &ns, &name, d);
    let reason = if clamped > current {
        "below min replicas"
    } else {
        "above max replicas"
    };
    record_event(
        store,
        hpa,
        "Normal",
        "SuccessfulRescale",
        &format!("New size: {clamped}; reason: Current number of replicas {reason}"),
        "horizontal-pod-autoscaler",
    );
}

fn hpa_status(store: &mut Store, mut hpa: Value) {
    let Some(d) = hpa_target(store, &hpa) else {
        return;
    };
    let (ns, name) = ns_name(&hpa);
    let min = hpa["spec"]["minReplicas"].as_i64().unwrap_or(1);
    let max = hpa["spec"]["maxReplicas"].as_i64().unwrap_or(min);
    let desired = replicas_of(&d);
    let limited = desired <= min || desired >= max;
    let seed: i64 = name.bytes().map(i64::from).sum();
    let metrics: Vec<Value> = hpa["spec"]["metrics"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["type"] == "Resource")
        .map(|m| {
            json!({ "type": "Resource", "resource": { "name": m["resource"]["name"],
                "current": { "averageUtilization": 35 + seed % 40 } } })
        })
        .collect();
    hpa["status"] = json!({
        "currentReplicas": d["status"]["replicas"].as_i64().unwrap_or(0),
        "desiredReplicas": desired,
        "currentMetrics": metrics,
        "conditions": [
            { "type": "AbleToScale", "status": "True", "reason": "ReadyForNewScale", "message": "recommended size matches current size" },
            { "type": "ScalingActive", "status": "True", "reason": "ValidMetricFound", "message": "the HPA was able to successfully calculate a replica count from cpu resource utilization (percentage of request)" },
            { "type": "ScalingLimited", "status": if limited { "True" } else { "False" },
              "reason": if limited { "TooFewReplicas" } else { "DesiredWithinRange" },
              "message": if limited { "the desired replica count is at the edge of the allowed range" } else { "the desired count is within the acceptable range" } },
        ],
    });
    if desired >= max {
        hpa["status"]["conditions"][2]["reason"] = json!("TooManyReplicas");
    }
    store.put_internal(HPAS, &ns, &name, hpa);
}

fn reconcile_job(store: &mut Store, job: &Value, now: jiff::Timestamp) {
    let (ns, name) = ns_name(job);
    let pods = store.list(PODS, Some(&ns));
    let owned: Vec<Value> = owned_by(&pods, job).into_iter().cloned().collect();
    let mut job = job.clone();
    if owned.is_empty() && job["status"]["succeeded"].as_i64().unwrap_or(0) == 0 {
        create_pod(store, &job, &ns);
        job["status"] = json!({ "active": 1, "startTime": now.to_string() });
        store.put_internal(JOBS, &ns, &name, job.clone());
        record_event(
            store,
            &job,
            "Normal",
            "SuccessfulCreate",
            &format!("Created pod for job {name}"),
            "job-controller",
        );
        return;
    }
    let succeeded = owned
        .iter()
        .filter(|p| p["status"]["phase"] == "Succeeded")
        .count();
    let active = owned
        .iter()
        .filter(|p| p["status"]["phase"] != "Succeeded" && p["status"]["phase"] != "Failed")
        .count();
    if succeeded > 0 && job["status"]["completionTime"].is_null() {
        job["status"]["succeeded"] = json!(succeeded);
        job["status"]["active"] = Value::Null;
        job["status"]["completionTime"] = json!(now.to_string());
        job["status"]["conditions"] = json!([{ "type": "Complete", "status": "True", "lastTransitionTime": now.to_string() }]);
        store.put_internal(JOBS, &ns, &name, job.clone());
        record_event(
            store,
            &job,
            "Normal",
            "Completed",
            "Job completed",
            "job-controller",
        );
    } else if succeeded == 0 {
        job["status"]["active"] = json!(active);
        store.put_internal(JOBS, &ns, &name, job);
    }
}

/// Records (or bumps the count of) an event about `obj`.
pub fn record_event(
    store: &mut Store,
    obj: &Value,
    kind: &str,
    reason: &str,
    message: &str,
    component: &str,
) {
    let (ns, name) = ns_name(obj);
    let ns = if ns.is_empty() {
        "default".to_string()
    } else {
        ns
    };
    let now = jiff::Timestamp::now().to_string();
    let involved_kind = obj["kind"].clone();
    let existing = store.list(EVENTS, Some(&ns)).into_iter().find(|e| {
        e["involvedObject"]["name"] == name.as_str()
            && e["involvedObject"]["kind"] == involved_kind
            && e["reason"] == reason
            && e["message"] == message
    });
    if let Some(mut e) = existing {
        let count = e["count"].as_i64().unwrap_or(1);
        // Repeated kubelet events are bumped at most every few seconds.
        let last: Option<jiff::Timestamp> =
            e["lastTimestamp"].as_str().and_then(|s| s.parse().ok());
        if last.is_some_and(|l| jiff::Timestamp::now().duration_since(l).as_secs() < 5) {
            return;
        }
        e["count"] = json!(count + 1);
        e["lastTimestamp"] = json!(now);
        let (ens, ename) = ns_name(&e);
        store.put_internal(EVENTS, &ens, &ename, e);
        return;
    }
    let event = json!({
        "metadata": { "name": format!("{name}.{}", random_suffix(store.resource_version())) },
        "involvedObject": {
            "apiVersion": obj["apiVersion"], "kind": involved_kind, "name": name,
            "namespace": ns, "uid": obj["metadata"]["uid"],
        },
        "reason": reason,
        "message": message,
        "type": kind,
        "count": 1,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "source": { "component": component },
        "reportingComponent": component,
    });
    let _ = store.create_internal(EVENTS, &ns, event);
}
