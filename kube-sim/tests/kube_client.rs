//! The simulator driven by the real kube-rs client over HTTP.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, LogParams, Patch, PatchParams, PostParams};
use kube_sim::{resources, SimConfig, Simulator};
use serde_json::json;

async fn start() -> (kube_sim::RunningSim, kube::Client) {
    let sim = Simulator::new(SimConfig::fast())
        .unwrap()
        .serve("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let config = kube::Config::new(sim.url().parse().unwrap());
    let client = kube::Client::try_from(config).unwrap();
    (sim, client)
}

async fn wait_for(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while std::time::Instant::now() < deadline {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn seeded_cluster_is_converged_and_listable() {
    let (_sim, client) = start().await;
    let all: Api<Deployment> = Api::all(client.clone());
    let names: Vec<String> = all
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|d| d.metadata.name)
        .collect();
    for expected in [
        "backend",
        "recurring-task-service",
        "notification-service",
        "oauth2-server",
        "vibe-ensemble-server",
    ] {
        assert!(names.contains(&expected.to_string()), "{names:?}");
    }
    let backend = Api::<Deployment>::namespaced(client.clone(), "default")
        .get("backend")
        .await
        .unwrap();
    let status = backend.status.unwrap();
    assert_eq!(status.available_replicas, Some(2));
    assert_eq!(status.observed_generation, backend.metadata.generation);
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let list = pods
        .list(&ListParams::default().labels("app=backend"))
        .await
        .unwrap();
    assert_eq!(list.items.len(), 2);
}

#[tokio::test]
async fn scale_subresource_converges_pods_and_records_events() {
    let (sim, client) = start().await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let scale = deployments.get_scale("backend").await.unwrap();
    assert_eq!(scale.spec.unwrap().replicas, Some(2));
    deployments
        .patch_scale(
            "backend",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 5}})),
        )
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    wait_for("5 ready backend pods", async || {
        let d = deployments.get("backend").await.unwrap();
        d.status.and_then(|s| s.ready_replicas) == Some(5)
    })
    .await;
    assert_eq!(
        pods.list(&ListParams::default().labels("app=backend"))
            .await
            .unwrap()
            .items
            .len(),
        5
    );
    let events = sim.with_store(|s| s.list(resources::EVENTS, Some("default")));
    assert!(
        events.iter().any(|e| e["reason"] == "ScalingReplicaSet"
            && e["message"].as_str().unwrap().contains("from 2 to 5")),
        "{events:?}"
    );
}

#[tokio::test]
async fn template_change_creates_a_new_revision_and_rolls_out() {
    let (_sim, client) = start().await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let patch = json!({"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": "2026-11-22T00:00:00Z"}}}}});
    let d = deployments
        .patch("backend", &PatchParams::default(), &Patch::Strategic(patch))
        .await
        .unwrap();
    assert_eq!(d.metadata.generation, Some(2));
    // The rollout is first in progress, then complete.
    wait_for("rollout complete", async || {
        let d = deployments.get("backend").await.unwrap();
        let s = d.status.unwrap();
        s.observed_generation == Some(2)
            && s.updated_replicas == Some(2)
            && s.available_replicas == Some(2)
            && s.replicas == Some(2)
    })
    .await;
    let rs: Api<ReplicaSet> = Api::namespaced(client, "default");
    let mut revisions: Vec<(String, i32)> = rs
        .list(&ListParams::default().labels("app=backend"))
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|r| {
            let rev = r.metadata.annotations.as_ref().unwrap()["deployment.kubernetes.io/revision"]
                .clone();
            (rev, r.spec.unwrap().replicas.unwrap())
        })
        .collect();
    revisions.sort();
    assert_eq!(revisions, vec![("1".to_string(), 0), ("2".to_string(), 2)]);
}

#[tokio::test]
async fn errors_are_kubernetes_status_objects() {
    let (_sim, client) = start().await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    match deployments.get("nope").await.unwrap_err() {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 404);
            assert_eq!(s.reason, "NotFound");
            assert_eq!(s.message, "deployments.apps \"nope\" not found");
        }
        other => panic!("{other:?}"),
    }
    // A stale resourceVersion is a 409 conflict.
    let stale = json!({"metadata": {"resourceVersion": "1"}, "spec": {"replicas": 3}});
    match deployments
        .patch("backend", &PatchParams::default(), &Patch::Merge(stale))
        .await
        .unwrap_err()
    {
        kube::Error::Api(s) => assert_eq!((s.code, s.reason.as_str()), (409, "Conflict")),
        other => panic!("{other:?}"),
    }
    // Negative replicas are a 422.
    match deployments
        .patch_scale(
            "backend",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": -1}})),
        )
        .await
        .unwrap_err()
    {
        kube::Error::Api(s) => assert_eq!((s.code, s.reason.as_str()), (422, "Invalid")),
        other => panic!("{other:?}"),
    }
    // Creating something that exists is AlreadyExists.
    let existing = deployments.get("backend").await.unwrap();
    let mut copy = existing.clone();
    copy.metadata.resource_version = None;
    copy.metadata.uid = None;
    match deployments
        .create(&PostParams::default(), &copy)
        .await
        .unwrap_err()
    {
        kube::Error::Api(s) => assert_eq!((s.code, s.reason.as_str()), (409, "AlreadyExists")),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn dry_run_changes_nothing() {
    let (_sim, client) = start().await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let before = deployments.get("backend").await.unwrap();
    let out = deployments
        .patch_scale(
            "backend",
            &PatchParams::default().dry_run(),
            &Patch::Merge(json!({"spec": {"replicas": 7}})),
        )
        .await
        .unwrap();
    assert_eq!(out.spec.unwrap().replicas, Some(7));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let after = deployments.get("backend").await.unwrap();
    assert_eq!(after.spec.unwrap().replicas, before.spec.unwrap().replicas);
}

#[tokio::test]
async fn pod_logs_need_a_container_when_there_are_several() {
    let (sim, client) = start().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod = pods
        .list(&ListParams::default().labels("app=backend"))
        .await
        .unwrap()
        .items
        .remove(0);
    let name = pod.metadata.name.unwrap();
    sim.append_log("default", &name, "backend", "hello from the test");
    let err = pods.logs(&name, &LogParams::default()).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("a container name must be specified"),
        "{err}"
    );
    let text = pods
        .logs(
            &name,
            &LogParams {
                container: Some("backend".into()),
                tail_lines: Some(1),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(text, "hello from the test\n");
}

#[tokio::test]
async fn hpa_keeps_its_target_within_bounds() {
    let (_sim, client) = start().await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "oauth2-server");
    deployments
        .patch_scale(
            "oauth2-server",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 15}})),
        )
        .await
        .unwrap();
    wait_for("hpa clamps to 10", async || {
        deployments
            .get("oauth2-server")
            .await
            .unwrap()
            .spec
            .unwrap()
            .replicas
            == Some(10)
    })
    .await;
}

#[tokio::test]
async fn leases_answer_as_the_api_server_does_for_electors() {
    use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
    let (sim, client) = start().await;
    let _ = &sim;
    let api: Api<Lease> = Api::namespaced(client, "default");
    let lease = |holder: &str, rv: Option<String>| Lease {
        metadata: kube::api::ObjectMeta {
            name: Some("leader".into()),
            resource_version: rv,
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            ..Default::default()
        }),
    };
    let pp = PostParams::default();
    // A PUT of a Lease that does not exist creates it.
    let created = api.replace("leader", &pp, &lease("a", None)).await.unwrap();
    let rv1 = created.metadata.resource_version.clone().unwrap();
    // A second create is 409 AlreadyExists.
    let dup = api.create(&pp, &lease("b", None)).await.unwrap_err();
    assert!(
        matches!(&dup, kube::Error::Api(s) if s.code == 409 && s.reason == "AlreadyExists"),
        "{dup:?}"
    );
    // An update without a resourceVersion is 422.
    let blind = api
        .replace("leader", &pp, &lease("b", None))
        .await
        .unwrap_err();
    assert!(
        matches!(&blind, kube::Error::Api(s) if s.code == 422),
        "{blind:?}"
    );
    // With the current one it applies (a renewal changes the record);
    // with a stale one it is 409.
    let mut renewal = lease("a", Some(rv1.clone()));
    renewal.spec.as_mut().unwrap().lease_transitions = Some(1);
    let renewed = api.replace("leader", &pp, &renewal).await.unwrap();
    assert_ne!(
        renewed.metadata.resource_version.as_deref(),
        Some(rv1.as_str())
    );
    let stale = api
        .replace("leader", &pp, &lease("b", Some(rv1)))
        .await
        .unwrap_err();
    assert!(
        matches!(&stale, kube::Error::Api(s) if s.code == 409),
        "{stale:?}"
    );
    assert_eq!(
        api.get("leader")
            .await
            .unwrap()
            .spec
            .unwrap()
            .holder_identity
            .as_deref(),
        Some("a")
    );
}
