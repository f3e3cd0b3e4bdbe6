//! How long one controller pass takes on a large cluster: 100 deployments
//! of 10 pods each (1,000 pods), across 10 namespaces.
//!
//! `cargo bench -p kube-sim --bench reconcile` (release). Reports, in
//! milliseconds, the median and worst of:
//! - a pass over the settled cluster (what the resync costs),
//! - a pass right after one deployment was scaled (the usual change),
//! - the passes that converge a template change of every deployment.

use std::time::{Duration, Instant};

use kube_sim::controller::tick;
use kube_sim::resources::DEPLOYMENTS;
use kube_sim::{ControllerState, SimConfig, Simulator, Timing};
use serde_json::json;

const NAMESPACES: usize = 10;
const DEPLOYMENTS_PER_NAMESPACE: usize = 10;
const REPLICAS: usize = 10;

fn seed() -> String {
    let mut out = String::new();
    for n in 0..NAMESPACES {
        out.push_str(&format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ns-{n}\n---\n"
        ));
        for d in 0..DEPLOYMENTS_PER_NAMESPACE {
            out.push_str(&format!(
                "apiVersion: apps/v1
kind: Deployment
metadata:
  name: svc-{d}
  namespace: ns-{n}
  labels: {{app: svc-{d}}}
spec:
  replicas: {REPLICAS}
  selector: {{matchLabels: {{app: svc-{d}}}}}
  template:
    metadata:
      labels: {{app: svc-{d}}}
    spec:
      containers:
      - name: app
        image: ghcr.io/example/svc-{d}:1.0.0
        ports: [{{containerPort: 8080}}]
        env: [{{name: LOG_LEVEL, value: info}}]
---
"
            ));
        }
    }
    out
}

fn stats(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    (ms(samples[samples.len() / 2]), ms(*samples.last().unwrap()))
}

fn main() {
    let config = SimConfig {
        seed: seed(),
        ..SimConfig::default()
    };
    let started = Instant::now();
    let mut sim = Simulator::new(config).expect("seed");
    let seeded_in = started.elapsed();
    let store = sim.store_mut();
    let pods = store.count(kube_sim::resources::PODS);
    let deployments = store.count(DEPLOYMENTS);
    let timing = Timing {
        pod_start: Duration::ZERO,
        ..Timing::default()
    };
    let mut state = ControllerState::default();
    for _ in 0..10 {
        tick(store, &mut state, &timing);
    }

    let settled: Vec<Duration> = (0..200)
        .map(|_| {
            let t = Instant::now();
            tick(store, &mut state, &timing);
            t.elapsed()
        })
        .collect();

    let mut after_scale = Vec::new();
    for i in 0..100 {
        let ns = format!("ns-{}", i % NAMESPACES);
        let name = format!("svc-{}", (i / NAMESPACES) % DEPLOYMENTS_PER_NAMESPACE);
        let mut d = store.get(DEPLOYMENTS, &ns, &name).unwrap().clone();
        d["spec"]["replicas"] = json!(if i % 2 == 0 { REPLICAS + 2 } else { REPLICAS });
        store.replace(DEPLOYMENTS, &ns, &name, d, false).unwrap();
        let t = Instant::now();
        tick(store, &mut state, &timing);
        after_scale.push(t.elapsed());
        for _ in 0..4 {
            tick(store, &mut state, &timing);
        }
    }

    let mut rollout = Vec::new();
    for n in 0..NAMESPACES {
        for d in 0..DEPLOYMENTS_PER_NAMESPACE {
            let (ns, name) = (format!("ns-{n}"), format!("svc-{d}"));
            let mut obj = store.get(DEPLOYMENTS, &ns, &name).unwrap().clone();
            obj["spec"]["template"]["metadata"]["annotations"] =
                json!({"kubectl.kubernetes.io/restartedAt": "2026-12-01T00:00:00Z"});
            store.replace(DEPLOYMENTS, &ns, &name, obj, false).unwrap();
        }
    }
    let mut passes = 0;
    loop {
        let before = store.resource_version();
        let t = Instant::now();
        tick(store, &mut state, &timing);
        rollout.push(t.elapsed());
        passes += 1;
        if store.resource_version() == before || passes > 50 {
            break;
        }
    }

    let (s_med, s_max) = stats(settled);
    let (c_med, c_max) = stats(after_scale);
    let (r_med, r_max) = stats(rollout);
    println!(
        "cluster: {deployments} deployments, {pods} pods (seeded and converged in {seeded_in:.1?})"
    );
    println!("| pass | median ms | max ms |");
    println!("|---|---|---|");
    println!("| settled cluster | {s_med:.3} | {s_max:.3} |");
    println!("| after scaling one deployment | {c_med:.3} | {c_max:.3} |");
    println!("| rolling out all 100 ({passes} passes) | {r_med:.3} | {r_max:.3} |");
}
