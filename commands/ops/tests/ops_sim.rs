//! The ops against the simulated API server, through the real kube client.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams};
use oncall_ops::kubectl::RolloutState;
use oncall_ops::{restart::restart, scale::scale, status::status, DeploymentRef, OpsError};
use serde_json::json;

async fn start() -> (kube_sim::RunningSim, kube::Client) {
    start_with(kube_sim::SimConfig::fast()).await
}

async fn start_with(config: kube_sim::SimConfig) -> (kube_sim::RunningSim, kube::Client) {
    let sim = kube_sim::Simulator::new(config)
        .unwrap()
        .serve("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let client = kube::Client::try_from(kube::Config::new(sim.url().parse().unwrap())).unwrap();
    (sim, client)
}

const BACKEND: DeploymentRef<'static> = DeploymentRef {
    namespace: "default",
    name: "backend",
};

#[tokio::test]
async fn scale_reports_before_and_after_and_the_hpa() {
    let (_sim, client) = start().await;
    let out = scale(&client, BACKEND, 5, false, false).await.unwrap();
    assert_eq!((out.before, out.after, out.dry_run), (2, 5, false));
    assert!(out.hpa.is_none());
    let out = scale(
        &client,
        DeploymentRef {
            namespace: "oauth2-server",
            name: "oauth2-server",
        },
        4,
        false,
        false,
    )
    .await
    .unwrap();
    let hpa = out.hpa.unwrap();
    assert_eq!(
        (hpa.name.as_str(), hpa.min, hpa.max),
        ("oauth2-server", 2, 10)
    );
    // A dry run says what would happen and changes nothing.
    let out = scale(&client, BACKEND, 9, true, false).await.unwrap();
    assert_eq!((out.before, out.after, out.dry_run), (5, 9, true));
    let d: Api<Deployment> = Api::namespaced(client.clone(), "default");
    assert_eq!(
        d.get("backend").await.unwrap().spec.unwrap().replicas,
        Some(5)
    );
}

#[tokio::test]
async fn restart_rolls_pods_and_status_follows_the_rollout() {
    // Pods take 2 s to start, so the first poll sees the rollout in progress
    // however busy the machine is.
    let (_sim, client) = start_with(kube_sim::SimConfig {
        pod_start: Duration::from_secs(2),
        ..kube_sim::SimConfig::fast()
    })
    .await;
    let now = jiff::Timestamp::now();
    let out = restart(&client, BACKEND, now, false).await.unwrap();
    assert_eq!(out.generation, Some(2));
    let d: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let template = d.get("backend").await.unwrap().spec.unwrap().template;
    let annotations = template.metadata.unwrap().annotations.unwrap();
    assert_eq!(
        annotations["kubectl.kubernetes.io/restartedAt"],
        out.restarted_at
    );
    assert!(
        out.restarted_at.ends_with('Z') && !out.restarted_at.contains('.'),
        "{}",
        out.restarted_at
    );
    let mut seen_in_progress = false;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while std::time::Instant::now() < deadline {
        let report = status(&client, BACKEND, jiff::Timestamp::now())
            .await
            .unwrap();
        match report.rollout.state {
            RolloutState::Complete => {
                assert!(seen_in_progress, "the rollout was never seen in progress");
                assert_eq!(report.pods.len(), 2);
                assert!(
                    report
                        .pods
                        .iter()
                        .all(|p| p.status == "Running" && p.ready == "2/2"),
                    "{:?}",
                    report.pods
                );
                return;
            }
            RolloutState::InProgress | RolloutState::NotObserved => seen_in_progress = true,
            RolloutState::Failed => panic!("rollout failed: {}", report.rollout.message),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("rollout never completed");
}

#[tokio::test]
async fn restart_refuses_a_paused_deployment() {
    let (_sim, client) = start().await;
    let d: Api<Deployment> = Api::namespaced(client.clone(), "default");
    d.patch(
        "backend",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"paused": true}})),
    )
    .await
    .unwrap();
    let err = restart(&client, BACKEND, jiff::Timestamp::now(), false)
        .await
        .unwrap_err();
    assert!(matches!(err, OpsError::Refused { .. }));
    assert!(err.to_string().contains("is paused"), "{err}");
    assert_eq!(
        d.get("backend").await.unwrap().metadata.generation,
        Some(2),
        "only the pause changed it"
    );
}

#[tokio::test]
async fn failures_are_one_sentence() {
    let (sim, client) = start().await;
    let err = scale(
        &client,
        DeploymentRef {
            namespace: "default",
            name: "nope",
        },
        1,
        false,
        false,
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "deployment/nope in namespace default was not found"
    );
    drop(sim);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let err = status(&client, BACKEND, jiff::Timestamp::now())
        .await
        .unwrap_err();
    assert!(matches!(err, OpsError::Unreachable { .. }), "{err:?}");
    assert!(!err.to_string().contains('\n'));
}

/// A health endpoint that answers an endless body: the probe reads at most
/// 64 KiB and hangs up, instead of downloading until its timeout.
#[tokio::test]
async fn health_probes_read_a_bounded_body() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let sent = Arc::new(AtomicUsize::new(0));
    let counter = sent.clone();
    tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 1024];
        let _ = sock.read(&mut buf).await;
        let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n{\"status\": \"";
        if sock.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        let chunk = vec![b'a'; 16 * 1024];
        // Up to 64 MiB, unless the client hangs up first.
        for _ in 0..4096 {
            if sock.write_all(&chunk).await.is_err() {
                return;
            }
            counter.fetch_add(chunk.len(), Ordering::SeqCst);
        }
    });
    let http = reqwest::Client::new();
    let probe = oncall_ops::health::probe(&http, &format!("http://{addr}/healthz")).await;
    assert_eq!(probe.code, Some(200));
    // Socket buffers hold some more than was read, never the whole body.
    let total = sent.load(Ordering::SeqCst);
    assert!(
        total < 16 * 1024 * 1024,
        "{total} bytes were sent before the probe hung up"
    );
}
