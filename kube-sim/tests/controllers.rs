//! The controllers driven pass by pass, without a server: what a real
//! cluster does over time (history pruning, event counting and expiry,
//! garbage collection) and what it must not do (rewrite what did not change).

use std::time::Duration;

use kube_sim::controller::tick;
use kube_sim::resources::{DEPLOYMENTS, EVENTS, PODS, REPLICASETS};
use kube_sim::store::Store;
use kube_sim::{ControllerState, SimConfig, Simulator, Timing};
use serde_json::{json, Value};

/// Pods start at once, so a few passes converge any change.
fn instant() -> Timing {
    Timing {
        pod_start: Duration::ZERO,
        ..Timing::default()
    }
}

fn converge(store: &mut Store, state: &mut ControllerState, timing: &Timing) {
    for _ in 0..10 {
        let before = store.resource_version();
        tick(store, state, timing);
        if store.resource_version() == before {
            return;
        }
    }
    panic!("the cluster never settled");
}

fn deployment(store: &Store, ns: &str, name: &str) -> Value {
    store.get(DEPLOYMENTS, ns, name).unwrap().clone()
}

fn replicasets_of(store: &Store, d: &Value) -> Vec<Value> {
    store
        .owned_by(REPLICASETS, d["metadata"]["uid"].as_str().unwrap())
        .cloned()
        .collect()
}

fn set_template_annotation(store: &mut Store, value: &str) {
    let mut d = deployment(store, "default", "backend");
    d["spec"]["template"]["metadata"]["annotations"]["test/rev"] = json!(value);
    store
        .replace(DEPLOYMENTS, "default", "backend", d, false)
        .unwrap();
}

#[test]
fn a_settled_cluster_is_never_rewritten() {
    let mut sim = Simulator::new(SimConfig::default()).unwrap();
    let store = sim.store_mut();
    let mut state = ControllerState::default();
    let timing = Timing::default();
    converge(store, &mut state, &timing);
    let before = store.resource_version();
    for _ in 0..20 {
        tick(store, &mut state, &timing);
    }
    assert_eq!(
        store.resource_version(),
        before,
        "passes over an unchanged cluster wrote something"
    );
}

#[test]
fn a_pass_says_when_a_pending_pod_is_due_to_start() {
    let mut sim = Simulator::new(SimConfig::default()).unwrap();
    let store = sim.store_mut();
    let mut state = ControllerState::default();
    let timing = Timing {
        pod_start: Duration::from_secs(30),
        ..Timing::default()
    };
    converge(store, &mut state, &timing);
    assert_eq!(tick(store, &mut state, &timing), None, "nothing is due");
    let mut d = deployment(store, "default", "backend");
    d["spec"]["replicas"] = json!(3);
    store
        .replace(DEPLOYMENTS, "default", "backend", d, false)
        .unwrap();
    converge(store, &mut state, &timing);
    let due = tick(store, &mut state, &timing).expect("a pod is starting");
    let wait = due.duration_since(jiff::Timestamp::now());
    assert!(
        wait > jiff::SignedDuration::from_secs(25) && wait <= jiff::SignedDuration::from_secs(30),
        "due in {wait:?}"
    );
}

#[test]
fn old_replicasets_past_the_history_limit_are_deleted() {
    let mut sim = Simulator::new(SimConfig::default()).unwrap();
    let store = sim.store_mut();
    let mut state = ControllerState::default();
    let timing = instant();
    // The default limit is 10 old ReplicaSets.
    for i in 0..13 {
        set_template_annotation(store, &format!("r{i}"));
        converge(store, &mut state, &timing);
    }
    let d = deployment(store, "default", "backend");
    let mut revisions: Vec<i64> = replicasets_of(store, &d)
        .iter()
        .map(|rs| {
            rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    revisions.sort();
    assert_eq!(revisions, (4..=14).collect::<Vec<_>>(), "the current + 10");

    // A deployment's own limit is honoured.
    let mut d = deployment(store, "default", "backend");
    d["spec"]["revisionHistoryLimit"] = json!(2);
    store
        .replace(DEPLOYMENTS, "default", "backend", d, false)
        .unwrap();
    converge(store, &mut state, &timing);
    let d = deployment(store, "default", "backend");
    assert_eq!(replicasets_of(store, &d).len(), 3);
    // The current ReplicaSet still runs the pods.
    let ready = d["status"]["readyReplicas"].as_i64();
    assert_eq!(ready, Some(2), "{}", d["status"]);
}

fn pull_failures(store: &Store) -> Vec<Value> {
    store
        .iter(EVENTS, Some("default"))
        .filter(|e| e["reason"] == "Failed" && e["involvedObject"]["kind"] == "Pod")
        .cloned()
        .collect()
}

#[test]
fn repeated_events_are_counted_and_old_ones_expire() {
    let mut sim = Simulator::new(SimConfig::default()).unwrap();
    let store = sim.store_mut();
    let mut state = ControllerState::default();
    let timing = instant();
    let mut d = deployment(store, "default", "backend");
    d["spec"]["template"]["spec"]["containers"][0]["image"] =
        json!("ghcr.io/example/todo-backend:does-not-exist");
    store
        .replace(DEPLOYMENTS, "default", "backend", d, false)
        .unwrap();
    converge(store, &mut state, &timing);
    let events = pull_failures(store);
    assert!(!events.is_empty());
    let pods = events.len();
    // Later passes repeat the failure: the same events count up, no new ones.
    for e in &events {
        let mut e = e.clone();
        e["lastTimestamp"] =
            json!((jiff::Timestamp::now() - jiff::SignedDuration::from_secs(6)).to_string());
        let name = e["metadata"]["name"].as_str().unwrap().to_string();
        store.put_internal(EVENTS, "default", &name, e);
    }
    tick(store, &mut state, &timing);
    let events = pull_failures(store);
    assert_eq!(events.len(), pods, "repeats made new events");
    assert!(events.iter().all(|e| e["count"] == 2), "{events:?}");

    // An event last seen more than the TTL ago is deleted.
    let old = (jiff::Timestamp::now() - jiff::SignedDuration::from_hours(2)).to_string();
    let stale = json!({
        "metadata": {"name": "backend.stale"},
        "involvedObject": {"kind": "Deployment", "name": "backend", "namespace": "default"},
        "reason": "Old", "message": "long ago", "type": "Normal", "count": 1,
        "firstTimestamp": old, "lastTimestamp": old,
    });
    store.create_internal(EVENTS, "default", stale).unwrap();
    let mut fresh_state = ControllerState::default();
    tick(store, &mut fresh_state, &timing);
    assert!(store.get(EVENTS, "default", "backend.stale").is_none());
    assert_eq!(pull_failures(store).len(), pods, "recent events stay");
}

#[test]
fn deleting_a_deployment_deletes_its_replicasets_and_pods() {
    let mut sim = Simulator::new(SimConfig::default()).unwrap();
    let store = sim.store_mut();
    let d = deployment(store, "default", "backend");
    let rs = replicasets_of(store, &d);
    assert!(!rs.is_empty());
    let rs_uid = rs[0]["metadata"]["uid"].as_str().unwrap().to_string();
    assert_eq!(store.owned_by(PODS, &rs_uid).count(), 2);
    store
        .delete(DEPLOYMENTS, "default", "backend", false)
        .unwrap();
    assert!(replicasets_of(store, &d).is_empty());
    assert_eq!(store.owned_by(PODS, &rs_uid).count(), 0);
    assert!(store
        .iter(PODS, Some("default"))
        .all(|p| p["metadata"]["labels"]["app"] != "backend"));
    // Other services are untouched.
    assert!(store
        .iter(PODS, Some("default"))
        .any(|p| p["metadata"]["labels"]["app"] == "recurring-task-service"));
}

#[test]
fn a_crash_loop_is_written_once_per_crash() {
    let mut sim = Simulator::new(SimConfig::default()).unwrap();
    let store = sim.store_mut();
    let mut state = ControllerState::default();
    let timing = Timing {
        pod_start: Duration::ZERO,
        crash_every: Duration::from_secs(3600),
        ..Timing::default()
    };
    let mut d = deployment(store, "default", "backend");
    d["spec"]["template"]["metadata"]["annotations"]["sim.oncall.dev/fail"] =
        json!("CrashLoopBackOff");
    store
        .replace(DEPLOYMENTS, "default", "backend", d, false)
        .unwrap();
    converge(store, &mut state, &timing);
    let crashing: Vec<Value> = store
        .iter(PODS, Some("default"))
        .filter(|p| p["status"]["containerStatuses"][0]["restartCount"] == 1)
        .cloned()
        .collect();
    assert!(!crashing.is_empty());
    let before = store.resource_version();
    let due = tick(store, &mut state, &timing);
    assert_eq!(store.resource_version(), before, "no crash is due yet");
    assert!(due.is_some(), "the next crash is scheduled");
}
