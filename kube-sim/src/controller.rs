//! The controllers: what turns a changed Deployment into ReplicaSets and Pods
//! and status, over time, the way kube-controller-manager and the kubelet do.
//!
//! Each [`tick`] is one reconcile pass over everything:
//! - Deployment → ReplicaSets: a new ReplicaSet per pod template (named
//!   `<deployment>-<hash>`, labelled `pod-template-hash`, annotated with
//!   `deployment.kubernetes.io/revision`, owned by the Deployment); going back
//!   to an older template reuses its ReplicaSet and gives it the next revision.
//!   Paused deployments do not roll out. Old ReplicaSets scale down as new pods
//!   become available, and those past `revisionHistoryLimit` (default 10) are
//!   deleted.
//! - ReplicaSet → Pods: pods are created Pending and become Running and Ready
//!   after `pod_start`; failures are injected by the pod template annotation
//!   `sim.oncall.dev/fail` (`ImagePullBackOff`, `CrashLoopBackOff`,
//!   `OOMKilled`, `Unschedulable`) or an image whose tag is `does-not-exist`.
//! - Status: observedGeneration, replicas, updated/ready/available, and the
//!   Available and Progressing conditions, including ProgressDeadlineExceeded.
//! - HorizontalPodAutoscalers keep their target within min..max; Jobs run a
//!   pod to completion. Events are recorded as the real components do:
//!   a repeat bumps the count of the existing event, and events expire.
//!
//! A pass is cheap when nothing changed: objects are found through the
//! store's indexes (by namespace, by owner), nothing is cloned unless it is
//! about to be rewritten, and an unchanged object is never written. A pass
//! returns when it next has time-based work (a pod due to start, a crash
//! loop's next restart, a progress deadline), so the loop in `lib.rs` runs
//! passes on change and at those moments, not on a fast fixed tick.

use std::collections::HashMap;
use std::time::Duration;

use jiff::Timestamp;
use serde_json::{json, Value};

use crate::resources::{DEPLOYMENTS, EVENTS, HPAS, JOBS, PODS, REPLICASETS};
use crate::store::{failure_of, is_job_pod, is_ready, random_suffix, PodLogs, Store};

pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const FAIL_ANNOTATION: &str = "sim.oncall.dev/fail";
const HASH_LABEL: &str = "pod-template-hash";
const CHANGE_CAUSE: &str = "kubernetes.io/change-cause";
/// The deployment controller's default `revisionHistoryLimit`.
const DEFAULT_REVISION_HISTORY: usize = 10;
/// Repeated events are bumped at most this often, as the kubelet's are.
const EVENT_BUMP_EVERY: Duration = Duration::from_secs(5);

/// Timing of the simulated cluster.
#[derive(Debug, Clone)]
pub struct Timing {
    /// How long a new pod takes to become Ready.
    pub pod_start: Duration,
    /// How long a crashing container runs before it dies again.
    pub crash_every: Duration,
    /// How long an event lives after its last occurrence (the API server's
    /// `--event-ttl`, 1 h by default).
    pub event_ttl: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            pod_start: Duration::from_secs(3),
            crash_every: Duration::from_secs(30),
            event_ttl: Duration::from_secs(3600),
        }
    }
}

/// State the controllers keep between passes (the real ones keep it in caches).
#[derive(Debug, Default)]
pub struct ControllerState {
    /// Per deployment: the last progress signature and when it changed.
    progress: HashMap<(String, String), (String, Timestamp)>,
    /// When expired events were last swept.
    last_event_sweep: Option<Timestamp>,
    /// Per deployment uid: the generation whose template was matched, and
    /// the uid of the ReplicaSet that has it. A ReplicaSet's template never
    /// changes and a deployment's template change moves its generation, so
    /// the deep comparison runs once per template, not three times a pass.
    current_rs: HashMap<String, (i64, String)>,
    /// Per deployment: the resourceVersion and inputs its status was last
    /// verified with. Unchanged, the status cannot have changed either.
    status_verified: HashMap<(String, String), (String, String)>,
}

/// The earliest moment a pass has time-based work to do.
struct Due {
    now: Timestamp,
    next: Option<Timestamp>,
}

impl Due {
    fn at(&mut self, t: Timestamp) {
        if t > self.now && self.next.is_none_or(|n| t < n) {
            self.next = Some(t);
        }
    }
}

/// One reconcile pass. Returns when the next time-based change is due, if
/// any (a pod to start, a crash loop to advance, a deadline to pass).
pub fn tick(store: &mut Store, state: &mut ControllerState, timing: &Timing) -> Option<Timestamp> {
    let now = Timestamp::now();
    let mut due = Due { now, next: None };
    for (ns, name) in store.names(HPAS) {
        reconcile_hpa(store, &ns, &name);
    }
    for (ns, name) in store.names(DEPLOYMENTS) {
        reconcile_deployment(store, state, &ns, &name);
    }
    for (ns, name) in store.names(JOBS) {
        reconcile_job(store, &ns, &name, now);
    }
    for (ns, name) in store.names(REPLICASETS) {
        reconcile_replicaset_pods(store, &ns, &name);
    }
    for (ns, name) in store.unsettled_pods() {
        advance_pod(store, &ns, &name, &mut due, timing);
    }
    for (ns, name) in store.names(REPLICASETS) {
        replicaset_status(store, &ns, &name);
    }
    let deployments = store.names(DEPLOYMENTS);
    if state.progress.len() > deployments.len() {
        let live: std::collections::HashSet<&(String, String)> = deployments.iter().collect();
        state.progress.retain(|k, _| live.contains(k));
        state.status_verified.retain(|k, _| live.contains(k));
        let uids: std::collections::HashSet<&str> =
            store.iter(DEPLOYMENTS, None).map(uid).collect();
        state.current_rs.retain(|k, _| uids.contains(k.as_str()));
    }
    for (ns, name) in &deployments {
        deployment_status(store, state, ns, name, &mut due);
        prune_history(store, state, ns, name);
    }
    for (ns, name) in store.names(HPAS) {
        hpa_status(store, &ns, &name);
    }
    let sweep_every = (timing.event_ttl / 60).max(Duration::from_millis(100));
    if state
        .last_event_sweep
        .is_none_or(|t| now.duration_since(t).unsigned_abs() >= sweep_every)
    {
        expire_events(store, now, timing.event_ttl);
        state.last_event_sweep = Some(now);
    }
    due.next
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

fn uid(obj: &Value) -> &str {
    obj["metadata"]["uid"].as_str().unwrap_or("")
}

fn name_of(obj: &Value) -> &str {
    obj["metadata"]["name"].as_str().unwrap_or("")
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

/// What an event is about: enough of the object to name it.
#[derive(Debug, Clone)]
struct Subject {
    api_version: Value,
    kind: Value,
    name: String,
    namespace: String,
    uid: Value,
}

impl Subject {
    fn of(obj: &Value) -> Subject {
        let (ns, name) = ns_name(obj);
        Subject {
            api_version: obj["apiVersion"].clone(),
            kind: obj["kind"].clone(),
            name,
            namespace: if ns.is_empty() { "default".into() } else { ns },
            uid: obj["metadata"]["uid"].clone(),
        }
    }
}

/// Whether a ReplicaSet's template is the deployment's: equal but for the
/// hash label the ReplicaSet adds. Compared in place, without copies.
/// Equal as the typed objects would be: a field that is absent, `null`,
/// `{}` or `[]` is the same (Go clients send `"resources": {}` and
/// `"creationTimestamp": null` for fields they never set).
fn semantic_eq(a: &Value, b: &Value) -> bool {
    fn empty(v: &Value) -> bool {
        match v {
            Value::Null => true,
            Value::Object(m) => m.values().all(empty),
            Value::Array(a) => a.is_empty(),
            _ => false,
        }
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            x.iter()
                .all(|(k, v)| semantic_eq(v, y.get(k).unwrap_or(&Value::Null)))
                && y.iter()
                    .filter(|(k, _)| !x.contains_key(*k))
                    .all(|(_, v)| empty(v))
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| semantic_eq(a, b))
        }
        (a, b) if empty(a) && empty(b) => true,
        (a, b) => a == b,
    }
}

fn template_matches(rs_template: &Value, d_template: &Value) -> bool {
    fn fields_eq(a: &Value, b: &Value, skip: &str) -> bool {
        let empty = serde_json::Map::new();
        let a = a.as_object().unwrap_or(&empty);
        let b = b.as_object().unwrap_or(&empty);
        a.iter()
            .filter(|(k, _)| *k != skip)
            .all(|(k, v)| semantic_eq(v, b.get(k).unwrap_or(&Value::Null)))
            && b.iter()
                .filter(|(k, _)| *k != skip && !a.contains_key(*k))
                .all(|(_, v)| semantic_eq(v, &Value::Null))
    }
    fields_eq(rs_template, d_template, "metadata")
        && fields_eq(&rs_template["metadata"], &d_template["metadata"], "labels")
        && fields_eq(
            &rs_template["metadata"]["labels"],
            &d_template["metadata"]["labels"],
            HASH_LABEL,
        )
        && d_template["metadata"]["labels"][HASH_LABEL].is_null()
}

fn template_hash(template: &Value) -> String {
    // FNV-1a over the JSON text.
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

fn ready_pods(store: &Store, owner_uid: &str) -> i64 {
    store.pod_counts(owner_uid).ready
}

/// What the deployment controller decided, computed with shared borrows and
/// applied afterwards.
enum RolloutPlan {
    /// No ReplicaSet has the template yet: create one.
    Create,
    /// ReplicaSet replica counts to set, and whether the current one needs
    /// the next revision (a rollback to its template).
    Scale {
        current: String,
        bump_revision: Option<i64>,
        replicas: Vec<(String, i64)>,
    },
    Nothing,
}

/// The ReplicaSet whose template is the deployment's, if there is one.
fn current_replicaset<'a>(
    state: &mut ControllerState,
    d: &Value,
    owned: &[&'a Value],
) -> Option<&'a Value> {
    let generation = d["metadata"]["generation"].as_i64().unwrap_or(0);
    if let Some((g, rs_uid)) = state.current_rs.get(uid(d)) {
        if *g == generation {
            if let Some(rs) = owned.iter().find(|rs| uid(rs) == rs_uid) {
                return Some(rs);
            }
        }
    }
    let template = &d["spec"]["template"];
    let found = owned
        .iter()
        .find(|rs| template_matches(&rs["spec"]["template"], template))
        .copied();
    if let Some(rs) = found {
        state
            .current_rs
            .insert(uid(d).to_string(), (generation, uid(rs).to_string()));
    }
    found
}

fn reconcile_deployment(store: &mut Store, state: &mut ControllerState, ns: &str, name: &str) {
    let plan = {
        let Some(d) = store.get(DEPLOYMENTS, ns, name) else {
            return;
        };
        let owned: Vec<&Value> = store.owned_by(REPLICASETS, uid(d)).collect();
        let paused = d["spec"]["paused"] == true;
        let desired = replicas_of(d).max(0);
        let max_revision = owned.iter().map(|rs| revision(rs)).max().unwrap_or(0);
        let current = current_replicaset(state, d, &owned);
        match (current, paused) {
            (None, false) => RolloutPlan::Create,
            (Some(rs), false) => {
                let rs = &rs;
                let mut replicas = vec![(name_of(rs).to_string(), desired)];
                // Old ReplicaSets keep what is still needed while new pods
                // are not yet available, newest first.
                let mut budget = (desired - ready_pods(store, uid(rs))).max(0);
                let mut olds: Vec<&&Value> = owned.iter().filter(|o| uid(o) != uid(rs)).collect();
                olds.sort_by_key(|o| std::cmp::Reverse(revision(o)));
                for old in olds {
                    let keep = replicas_of(old)
                        .min(budget)
                        .min(ready_pods(store, uid(old)));
                    budget -= keep;
                    replicas.push((name_of(old).to_string(), keep));
                }
                RolloutPlan::Scale {
                    current: name_of(rs).to_string(),
                    bump_revision: (revision(rs) < max_revision).then_some(max_revision + 1),
                    replicas,
                }
            }
            (_, true) => match owned.iter().max_by_key(|rs| revision(rs)) {
                // Paused: scaling still applies, to the newest ReplicaSet.
                Some(newest) => {
                    let others: i64 = owned
                        .iter()
                        .filter(|rs| uid(rs) != uid(newest))
                        .map(|rs| replicas_of(rs))
                        .sum();
                    RolloutPlan::Scale {
                        current: name_of(newest).to_string(),
                        bump_revision: None,
                        replicas: vec![(name_of(newest).to_string(), (desired - others).max(0))],
                    }
                }
                None => RolloutPlan::Nothing,
            },
        }
    };
    match plan {
        RolloutPlan::Nothing => {}
        RolloutPlan::Create => create_replicaset(store, ns, name),
        RolloutPlan::Scale {
            current,
            bump_revision,
            replicas,
        } => {
            let subject = Subject::of(store.get(DEPLOYMENTS, ns, name).expect("present"));
            if let Some(rev) = bump_revision {
                // Rolling back to an old template makes its ReplicaSet the
                // newest revision, as the deployment controller does.
                let cause = store.get(DEPLOYMENTS, ns, name).and_then(|d| {
                    d["metadata"]["annotations"][CHANGE_CAUSE]
                        .as_str()
                        .map(String::from)
                });
                if let Some(mut rs) = store.get(REPLICASETS, ns, &current).cloned() {
                    rs["metadata"]["annotations"][REVISION] = json!(rev.to_string());
                    if let Some(cause) = cause {
                        rs["metadata"]["annotations"][CHANGE_CAUSE] = json!(cause);
                    }
                    store.put_internal(REPLICASETS, ns, &current, rs);
                }
            }
            for (rs_name, count) in replicas {
                set_rs_replicas(store, &subject, ns, &rs_name, count);
            }
        }
    }
}

fn create_replicaset(store: &mut Store, ns: &str, name: &str) {
    let Some(d) = store.get(DEPLOYMENTS, ns, name) else {
        return;
    };
    let template = &d["spec"]["template"];
    let max_revision = store
        .owned_by(REPLICASETS, uid(d))
        .map(revision)
        .max()
        .unwrap_or(0);
    let hash = template_hash(template);
    let mut t = template.clone();
    t["metadata"]["labels"][HASH_LABEL] = json!(hash);
    let mut selector = d["spec"]["selector"].clone();
    selector["matchLabels"][HASH_LABEL] = json!(hash);
    let mut annotations = json!({ REVISION: (max_revision + 1).to_string() });
    if let Some(cause) = d["metadata"]["annotations"][CHANGE_CAUSE].as_str() {
        annotations[CHANGE_CAUSE] = json!(cause);
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
    if let Err(e) = store.create_by_controller(REPLICASETS, ns, rs) {
        tracing::warn!(
            "sim: could not create ReplicaSet for {ns}/{name}: {}",
            e.message
        );
    }
}

fn set_rs_replicas(store: &mut Store, d: &Subject, ns: &str, name: &str, replicas: i64) {
    let Some(current) = store.get(REPLICASETS, ns, name) else {
        return;
    };
    let before = replicas_of(current);
    if before == replicas {
        return;
    }
    let mut rs = current.clone();
    rs["spec"]["replicas"] = json!(replicas);
    store.put_internal(REPLICASETS, ns, name, rs);
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

/// Deletes old ReplicaSets past the deployment's `revisionHistoryLimit`,
/// oldest first, once they are scaled to zero and have no pods.
fn prune_history(store: &mut Store, state: &mut ControllerState, ns: &str, name: &str) {
    let doomed: Vec<String> = {
        let Some(d) = store.get(DEPLOYMENTS, ns, name) else {
            return;
        };
        let limit = d["spec"]["revisionHistoryLimit"]
            .as_u64()
            .map_or(DEFAULT_REVISION_HISTORY, |l| l as usize);
        let owned: Vec<&Value> = store.owned_by(REPLICASETS, uid(d)).collect();
        if owned.len() <= limit {
            return;
        }
        let current = current_replicaset(state, d, &owned)
            .map(uid)
            .map(String::from);
        let mut old: Vec<&Value> = owned
            .into_iter()
            .filter(|rs| current.as_deref() != Some(uid(rs)))
            .collect();
        if old.len() <= limit {
            return;
        }
        old.sort_by_key(|rs| revision(rs));
        let excess = old.len() - limit;
        old.into_iter()
            .filter(|rs| replicas_of(rs) == 0 && store.owned_by(PODS, uid(rs)).next().is_none())
            .take(excess)
            .map(|rs| name_of(rs).to_string())
            .collect()
    };
    for rs in doomed {
        let _ = store.delete(REPLICASETS, ns, &rs, false);
    }
}

fn reconcile_replicaset_pods(store: &mut Store, ns: &str, name: &str) {
    let (want, doomed) = {
        let Some(rs) = store.get(REPLICASETS, ns, name) else {
            return;
        };
        let want = replicas_of(rs).max(0) as usize;
        let have = store.pod_counts(uid(rs)).total as usize;
        if have == want {
            return;
        }
        let mut owned: Vec<&Value> = store.owned_by(PODS, uid(rs)).collect();
        let mut doomed = Vec::new();
        if owned.len() > want {
            // Not-ready pods go first, then the newest.
            owned.sort_by_key(|p| {
                (
                    is_ready(p),
                    std::cmp::Reverse(p["metadata"]["creationTimestamp"].as_str().unwrap_or("")),
                )
            });
            let excess = owned.len() - want;
            doomed = owned
                .iter()
                .take(excess)
                .map(|p| name_of(p).to_string())
                .collect();
        }
        (want.saturating_sub(owned.len()), doomed)
    };
    for pod in doomed {
        let _ = store.delete(PODS, ns, &pod, false);
    }
    for _ in 0..want {
        create_pod(store, REPLICASETS, ns, name);
    }
}

fn create_pod(store: &mut Store, owner_rt: crate::resources::ResourceType, ns: &str, owner: &str) {
    let suffix = random_suffix(store.resource_version());
    let rv = store.resource_version();
    let Some(owner) = store.get(owner_rt, ns, owner) else {
        return;
    };
    let template = &owner["spec"]["template"];
    let name = format!("{}-{suffix}", name_of(owner));
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
    let now = Timestamp::now();
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
            "podIP": format!("10.244.{}.{}", rv % 250, (rv / 250) % 250 + 2),
            "startTime": now.to_string(),
        }
    });
    match store.create_by_controller(PODS, ns, pod) {
        Ok(created) => {
            let created_at = created["metadata"]["creationTimestamp"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or(now);
            start_logs(store, ns, name_of(&created), &containers, created_at);
        }
        Err(e) => tracing::warn!("sim: could not create pod in {ns}: {}", e.message),
    }
}

fn container_statuses(pod: &Value) -> impl Iterator<Item = &Value> {
    pod["status"]["containerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
}

const UNSCHEDULABLE: &str = "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod.";

/// Moves one pod along its life: Pending → Running/Ready (or Succeeded for
/// a Job's pod), or into its injected failure. Reads first and clones the
/// pod only when it is about to change.
fn advance_pod(store: &mut Store, ns: &str, name: &str, due: &mut Due, timing: &Timing) {
    let now = due.now;
    // Most pods of a settled cluster: nothing to do, known without reading them.
    if store
        .pod_facts(ns, name)
        .is_none_or(|f| f.settled || f.finished)
    {
        return;
    }
    let Some(pod) = store.get(PODS, ns, name) else {
        return;
    };
    let phase = pod["status"]["phase"].as_str().unwrap_or("");
    if phase == "Succeeded" || phase == "Failed" {
        return;
    }
    let created: Timestamp = pod["metadata"]["creationTimestamp"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(now);
    let age = now.duration_since(created).unsigned_abs();
    let started_at = created + timing.pod_start;
    if age < timing.pod_start {
        if phase == "Pending" {
            due.at(started_at);
        }
        return;
    }
    let is_job = is_job_pod(pod);
    let subject = Subject::of(pod);
    match failure_of(pod) {
        Some("Unschedulable") => {
            let done = pod["status"]["conditions"][0]["reason"] == "Unschedulable";
            if !done {
                let mut pod = pod.clone();
                pod["spec"]["nodeName"] = Value::Null;
                pod["status"]["conditions"] = json!([{
                    "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                    "message": UNSCHEDULABLE,
                }]);
                pod["status"]["containerStatuses"] = Value::Null;
                store.put_internal(PODS, ns, name, pod);
            }
            record_event(
                store,
                &subject,
                "Warning",
                "FailedScheduling",
                UNSCHEDULABLE,
                "default-scheduler",
            );
        }
        Some("ImagePullBackOff") => {
            let image = pod["spec"]["containers"][0]["image"]
                .as_str()
                .unwrap_or("")
                .to_string();
            let done = container_statuses(pod)
                .all(|cs| cs["state"]["waiting"]["reason"] == "ImagePullBackOff");
            if !done {
                let mut pod = pod.clone();
                for cs in pod["status"]["containerStatuses"]
                    .as_array_mut()
                    .into_iter()
                    .flatten()
                {
                    cs["state"] = json!({ "waiting": { "reason": "ImagePullBackOff",
                        "message": format!("Back-off pulling image \"{image}\"") } });
                }
                store.put_internal(PODS, ns, name, pod);
            }
            record_event(store, &subject, "Warning", "Failed",
                &format!("Failed to pull image \"{image}\": rpc error: code = NotFound desc = failed to pull and unpack image \"{image}\": not found"),
                "kubelet");
        }
        Some(reason @ ("CrashLoopBackOff" | "OOMKilled")) => {
            let crash_every = timing.crash_every.max(Duration::from_millis(1));
            let crashes =
                (age.saturating_sub(timing.pod_start).as_millis() / crash_every.as_millis()) as i64;
            let restarts = crashes + 1;
            let last_crash = started_at + crash_every * crashes as u32;
            due.at(last_crash + crash_every);
            let current = phase == "Running"
                && container_statuses(pod).all(|cs| cs["restartCount"] == restarts);
            if current {
                return;
            }
            let reason = reason.to_string();
            let containers: Vec<Value> = pod["spec"]["containers"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let terminated_reason = if reason == "OOMKilled" {
                "OOMKilled"
            } else {
                "Error"
            };
            let exit_code = if reason == "OOMKilled" { 137 } else { 1 };
            let mut pod = pod.clone();
            for cs in pod["status"]["containerStatuses"]
                .as_array_mut()
                .into_iter()
                .flatten()
            {
                cs["restartCount"] = json!(restarts);
                cs["ready"] = json!(false);
                cs["state"] = json!({ "waiting": { "reason": "CrashLoopBackOff",
                    "message": format!("back-off 40s restarting failed container={} pod={name}", cs["name"].as_str().unwrap_or("")) } });
                cs["lastState"] = json!({ "terminated": { "reason": terminated_reason, "exitCode": exit_code,
                    "startedAt": created.to_string(), "finishedAt": last_crash.to_string() } });
            }
            pod["status"]["phase"] = json!("Running");
            store.put_internal(PODS, ns, name, pod);
            crash_logs(store, ns, name, &containers, &reason, last_crash);
            record_event(
                store,
                &subject,
                "Warning",
                "BackOff",
                "Back-off restarting failed container",
                "kubelet",
            );
        }
        _ => {
            let finished_at = created + timing.pod_start * 2;
            let done = is_job && age >= timing.pod_start * 2;
            if is_job && !done {
                due.at(finished_at);
            }
            let running = phase == "Running"
                && is_ready(pod)
                && container_statuses(pod).all(|cs| !cs["state"]["running"].is_null());
            if running && !done {
                return;
            }
            let mut pod = pod.clone();
            for cs in pod["status"]["containerStatuses"]
                .as_array_mut()
                .into_iter()
                .flatten()
            {
                if done {
                    cs["ready"] = json!(false);
                    cs["started"] = json!(false);
                    cs["state"] = json!({ "terminated": { "reason": "Completed", "exitCode": 0,
                        "startedAt": started_at.to_string(), "finishedAt": finished_at.to_string() } });
                } else if cs["state"]["running"].is_null() {
                    cs["ready"] = json!(true);
                    cs["started"] = json!(true);
                    cs["state"] = json!({ "running": { "startedAt": started_at.to_string() } });
                }
            }
            pod["status"]["phase"] = json!(if done { "Succeeded" } else { "Running" });
            pod["status"]["conditions"] = json!([
                { "type": "PodScheduled", "status": "True" },
                { "type": "Initialized", "status": "True" },
                { "type": "ContainersReady", "status": if done { "False" } else { "True" } },
                { "type": "Ready", "status": if done { "False" } else { "True" },
                  "lastTransitionTime": started_at.to_string() },
            ]);
            store.put_internal(PODS, ns, name, pod);
        }
    }
}

/// A new pod's first log lines.
fn start_logs(store: &mut Store, ns: &str, pod: &str, containers: &[Value], created: Timestamp) {
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
    store.logs.insert((ns.to_string(), pod.to_string()), logs);
}

/// A crashed container's logs: the previous instance's last words, and a
/// fresh current instance. Replaced at each crash, so they never grow.
fn crash_logs(
    store: &mut Store,
    ns: &str,
    pod: &str,
    containers: &[Value],
    reason: &str,
    at: Timestamp,
) {
    let logs = store
        .logs
        .entry((ns.to_string(), pod.to_string()))
        .or_default();
    for c in containers {
        let cname = c["name"].as_str().unwrap_or("app").to_string();
        let last = if reason == "OOMKilled" {
            "level=warn msg=\"heap usage high\" rss=1023Mi limit=1024Mi".to_string()
        } else {
            "level=error msg=\"failed to connect to database\" error=\"connection refused\""
                .to_string()
        };
        let previous = vec![
            (at, format!("level=info msg=\"starting {cname}\"")),
            (at, last),
            (at, "panic: fatal error, exiting".to_string()),
        ];
        logs.previous.insert(cname.clone(), previous);
        logs.current.insert(
            cname.clone(),
            vec![(at, format!("level=info msg=\"starting {cname}\""))],
        );
    }
}

fn replicaset_status(store: &mut Store, ns: &str, name: &str) {
    let Some(rs) = store.get(REPLICASETS, ns, name) else {
        return;
    };
    let counts = store.pod_counts(uid(rs));
    let (total, ready) = (counts.total, counts.ready);
    let st = &rs["status"];
    if st["replicas"] == total
        && st["readyReplicas"] == ready
        && st["availableReplicas"] == ready
        && st["fullyLabeledReplicas"] == total
        && st["observedGeneration"] == rs["metadata"]["generation"]
        && st.as_object().is_some_and(|o| o.len() == 5)
    {
        return;
    }
    let status = json!({
        "replicas": total,
        "fullyLabeledReplicas": total,
        "readyReplicas": ready,
        "availableReplicas": ready,
        "observedGeneration": rs["metadata"]["generation"],
    });
    if rs["status"] == status {
        return;
    }
    let mut rs = rs.clone();
    rs["status"] = status;
    store.put_internal(REPLICASETS, ns, name, rs);
}

/// Conditions equal but for `lastUpdateTime`, which moves on every pass.
fn same_status(old: &Value, new: &Value) -> bool {
    let (Some(a), Some(b)) = (old.as_object(), new.as_object()) else {
        return old == new;
    };
    if a.len() != b.len() {
        return false;
    }
    a.iter().all(|(k, v)| {
        let Some(w) = b.get(k) else { return false };
        if k != "conditions" {
            return v == w;
        }
        match (v.as_array(), w.as_array()) {
            (Some(x), Some(y)) => {
                x.len() == y.len()
                    && x.iter().zip(y).all(|(c, d)| {
                        let (Some(c), Some(d)) = (c.as_object(), d.as_object()) else {
                            return c == d;
                        };
                        c.len() == d.len()
                            && c.iter().all(|(ck, cv)| {
                                ck == "lastUpdateTime" || d.get(ck).is_some_and(|dv| dv == cv)
                            })
                    })
            }
            _ => v == w,
        }
    })
}

fn deployment_status(
    store: &mut Store,
    state: &mut ControllerState,
    ns: &str,
    name: &str,
    due: &mut Due,
) {
    let now = due.now;
    let status = {
        let Some(d) = store.get(DEPLOYMENTS, ns, name) else {
            return;
        };
        let owned: Vec<&Value> = store.owned_by(REPLICASETS, uid(d)).collect();
        let new_rs = current_replicaset(state, d, &owned);
        let new_rs = new_rs.as_ref();
        let (mut total, mut ready) = (0, 0);
        for rs in &owned {
            let counts = store.pod_counts(uid(rs));
            total += counts.total;
            ready += counts.ready;
        }
        let updated = new_rs.map_or(0, |rs| store.pod_counts(uid(rs)).total);
        let desired = replicas_of(d);
        let max_unavailable = desired / 4;
        let complete =
            new_rs.is_some() && updated == desired && total == desired && ready == desired;
        let deadline = d["spec"]["progressDeadlineSeconds"].as_i64().unwrap_or(600);
        let rs_name = new_rs.map_or("", |rs| name_of(rs));
        // The deployment carries its newest ReplicaSet's revision, as the
        // deployment controller writes it.
        let revision_annotation = new_rs
            .and_then(|rs| rs["metadata"]["annotations"][REVISION].as_str())
            .filter(|rev| d["metadata"]["annotations"][REVISION].as_str() != Some(*rev))
            .map(String::from);

        let signature = format!(
            "{}/{updated}/{ready}/{total}/{desired}",
            d["metadata"]["generation"]
        );
        let key = (ns.to_string(), name.to_string());
        let since = match state.progress.get(&key) {
            Some((sig, at)) if *sig == signature => *at,
            _ => {
                state.progress.insert(key, (signature, now));
                now
            }
        };
        let previous_progressing = d["status"]["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == "Progressing"));
        let paused = d["spec"]["paused"] == true;
        let past_deadline = now.duration_since(since).as_secs() > deadline;
        if !paused && !complete && !past_deadline {
            due.at(since + Duration::from_secs(deadline.max(0) as u64 + 1));
        }
        // Nothing the status depends on moved since it was last verified.
        let inputs = format!(
            "{signature_}/{paused}/{complete}/{past_deadline}",
            signature_ = state
                .progress
                .get(&(ns.to_string(), name.to_string()))
                .map_or("", |(s, _)| s.as_str())
        );
        let rv = d["metadata"]["resourceVersion"].as_str().unwrap_or("");
        let key = (ns.to_string(), name.to_string());
        if state
            .status_verified
            .get(&key)
            .is_some_and(|(v, i)| v == rv && *i == inputs)
        {
            return;
        }
        let (p_status, p_reason, p_message) = if paused {
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
        } else if past_deadline
            || previous_progressing.is_some_and(|c| c["reason"] == "ProgressDeadlineExceeded")
        {
            (
                "False",
                "ProgressDeadlineExceeded",
                format!("ReplicaSet \"{rs_name}\" has timed out progressing."),
            )
        } else {
            due.at(since + Duration::from_secs(deadline.max(0) as u64 + 1));
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
        let status = (!same_status(&d["status"], &status)).then_some(status);
        (status, revision_annotation, key, inputs)
    };
    let (status, revision_annotation, key, inputs) = status;
    if status.is_none() && revision_annotation.is_none() {
        let rv = store.get(DEPLOYMENTS, ns, name).map_or(String::new(), |d| {
            d["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or("")
                .to_string()
        });
        state.status_verified.insert(key, (rv, inputs));
        return;
    }
    let mut d = store
        .get(DEPLOYMENTS, ns, name)
        .expect("read above")
        .clone();
    if let Some(rev) = revision_annotation {
        if !d["metadata"]["annotations"].is_object() {
            d["metadata"]["annotations"] = json!({});
        }
        d["metadata"]["annotations"][REVISION] = json!(rev);
    }
    if let Some(status) = status {
        d["status"] = status;
    }
    store.put_internal(DEPLOYMENTS, ns, name, d);
    if let Some(d) = store.get(DEPLOYMENTS, ns, name) {
        let rv = d["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or("")
            .to_string();
        state.status_verified.insert(key, (rv, inputs));
    }
}

fn hpa_target<'a>(store: &'a Store, hpa: &Value) -> Option<&'a Value> {
    let target = &hpa["spec"]["scaleTargetRef"];
    if target["kind"] != "Deployment" {
        return None;
    }
    store.get(
        DEPLOYMENTS,
        hpa["metadata"]["namespace"].as_str()?,
        target["name"].as_str()?,
    )
}

fn hpa_bounds(hpa: &Value) -> (i64, i64) {
    let min = hpa["spec"]["minReplicas"].as_i64().unwrap_or(1);
    let max = hpa["spec"]["maxReplicas"].as_i64().unwrap_or(min);
    (min, max)
}

/// Keeps the target within the autoscaler's bounds, as the HPA controller
/// would on its next sync.
fn reconcile_hpa(store: &mut Store, ns: &str, name: &str) {
    let (target, current, clamped, subject) = {
        let Some(hpa) = store.get(HPAS, ns, name) else {
            return;
        };
        let Some(d) = hpa_target(store, hpa) else {
            return;
        };
        let (min, max) = hpa_bounds(hpa);
        let current = replicas_of(d);
        let clamped = current.clamp(min, max.max(min));
        if clamped == current || current == 0 {
            // Scaled to zero by hand: the HPA is disabled until scaled up again.
            return;
        }
        (name_of(d).to_string(), current, clamped, Subject::of(hpa))
    };
    let mut d = store
        .get(DEPLOYMENTS, ns, &target)
        .expect("read above")
        .clone();
    d["spec"]["replicas"] = json!(clamped);
    let generation = d["metadata"]["generation"].as_i64().unwrap_or(1);
    d["metadata"]["generation"] = json!(generation + 1);
    store.put_internal(DEPLOYMENTS, ns, &target, d);
    let reason = if clamped > current {
        "below min replicas"
    } else {
        "above max replicas"
    };
    record_event(
        store,
        &subject,
        "Normal",
        "SuccessfulRescale",
        &format!("New size: {clamped}; reason: Current number of replicas {reason}"),
        "horizontal-pod-autoscaler",
    );
}

fn hpa_status(store: &mut Store, ns: &str, name: &str) {
    let Some(hpa) = store.get(HPAS, ns, name) else {
        return;
    };
    let Some(d) = hpa_target(store, hpa) else {
        return;
    };
    let (min, max) = hpa_bounds(hpa);
    let desired = replicas_of(d);
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
    let mut status = json!({
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
        status["conditions"][2]["reason"] = json!("TooManyReplicas");
    }
    if hpa["status"] == status {
        return;
    }
    let mut hpa = hpa.clone();
    hpa["status"] = status;
    store.put_internal(HPAS, ns, name, hpa);
}

fn reconcile_job(store: &mut Store, ns: &str, name: &str, now: Timestamp) {
    let Some(job) = store.get(JOBS, ns, name) else {
        return;
    };
    let counts = store.pod_counts(uid(job));
    let (pods, succeeded, active) = (counts.total, counts.succeeded, counts.active);
    let already_succeeded = job["status"]["succeeded"].as_i64().unwrap_or(0) > 0;
    let completed = !job["status"]["completionTime"].is_null();
    let subject = Subject::of(job);
    if pods == 0 && !already_succeeded {
        create_pod(store, JOBS, ns, name);
        let mut job = store.get(JOBS, ns, name).expect("present").clone();
        job["status"] = json!({ "active": 1, "startTime": now.to_string() });
        store.put_internal(JOBS, ns, name, job);
        record_event(
            store,
            &subject,
            "Normal",
            "SuccessfulCreate",
            &format!("Created pod for job {name}"),
            "job-controller",
        );
        return;
    }
    if succeeded > 0 && !completed {
        let mut job = job.clone();
        job["status"]["succeeded"] = json!(succeeded);
        job["status"]["active"] = Value::Null;
        job["status"]["completionTime"] = json!(now.to_string());
        job["status"]["conditions"] = json!([{ "type": "Complete", "status": "True", "lastTransitionTime": now.to_string() }]);
        store.put_internal(JOBS, ns, name, job);
        record_event(
            store,
            &subject,
            "Normal",
            "Completed",
            "Job completed",
            "job-controller",
        );
    } else if succeeded == 0 && job["status"]["active"] != active {
        let mut job = job.clone();
        job["status"]["active"] = json!(active);
        store.put_internal(JOBS, ns, name, job);
    }
}

/// Records an event about `subject`, or bumps the count of the same event
/// (same object, reason and message) if it was recorded before.
fn record_event(
    store: &mut Store,
    subject: &Subject,
    kind: &str,
    reason: &str,
    message: &str,
    component: &str,
) {
    let ns = subject.namespace.as_str();
    let now = Timestamp::now();
    let probe = json!({
        "involvedObject": { "kind": subject.kind, "name": subject.name },
        "reason": reason,
        "message": message,
    });
    if let Some(existing) = store.find_event(ns, &probe) {
        let last: Option<Timestamp> = existing["lastTimestamp"]
            .as_str()
            .and_then(|s| s.parse().ok());
        if last.is_some_and(|l| now.duration_since(l).unsigned_abs() < EVENT_BUMP_EVERY) {
            return;
        }
        let mut e = existing.clone();
        let count = e["count"].as_i64().unwrap_or(1);
        e["count"] = json!(count + 1);
        e["lastTimestamp"] = json!(now.to_string());
        let ename = name_of(&e).to_string();
        store.put_internal(EVENTS, ns, &ename, e);
        return;
    }
    let now = now.to_string();
    let event = json!({
        "metadata": { "name": format!("{}.{}", subject.name, random_suffix(store.resource_version())) },
        "involvedObject": {
            "apiVersion": subject.api_version, "kind": subject.kind, "name": subject.name,
            "namespace": ns, "uid": subject.uid,
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
    let _ = store.create_by_controller(EVENTS, ns, event);
}

/// Deletes events whose last occurrence is older than the TTL.
fn expire_events(store: &mut Store, now: Timestamp, ttl: Duration) {
    let expired: Vec<(String, String)> = store
        .iter(EVENTS, None)
        .filter(|e| {
            e["lastTimestamp"]
                .as_str()
                .and_then(|s| s.parse::<Timestamp>().ok())
                .is_some_and(|t| now.duration_since(t).unsigned_abs() > ttl)
        })
        .map(ns_name)
        .collect();
    for (ns, name) in expired {
        let _ = store.delete(EVENTS, &ns, &name, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_template_matches_its_replicaset_but_for_the_hash_label() {
        let d = json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "a"}]}});
        let mut rs = d.clone();
        rs["metadata"]["labels"][HASH_LABEL] = json!("abc");
        assert!(template_matches(&rs, &d));
        let mut other = rs.clone();
        other["spec"]["containers"][0]["name"] = json!("b");
        assert!(!template_matches(&other, &d));
        let mut annotated = rs.clone();
        annotated["metadata"]["annotations"] = json!({"x": "y"});
        assert!(!template_matches(&annotated, &d));
        // What a Go client (kubectl rollout undo) sends back: empty fields
        // it never set are the same template.
        let mut from_go = d.clone();
        from_go["metadata"]["creationTimestamp"] = Value::Null;
        from_go["spec"]["containers"][0]["resources"] = json!({});
        assert!(template_matches(&rs, &from_go));
        assert!(template_matches(&from_go_rs(&from_go), &d));
        let mut emptied = rs.clone();
        emptied["spec"]["containers"][0]["env"] = json!([{"name": "X", "value": "1"}]);
        assert!(!template_matches(&emptied, &from_go));
    }

    fn from_go_rs(t: &Value) -> Value {
        let mut rs = t.clone();
        rs["metadata"]["labels"][HASH_LABEL] = json!("abc");
        rs
    }

    #[test]
    fn status_comparison_ignores_only_last_update_time() {
        let a =
            json!({"replicas": 2, "conditions": [{"type": "Available", "lastUpdateTime": "1"}]});
        let b =
            json!({"replicas": 2, "conditions": [{"type": "Available", "lastUpdateTime": "2"}]});
        let c =
            json!({"replicas": 3, "conditions": [{"type": "Available", "lastUpdateTime": "2"}]});
        assert!(same_status(&a, &b));
        assert!(!same_status(&a, &c));
    }
}
