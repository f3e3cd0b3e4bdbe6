//! Every runbook operation through the router against the simulated cluster:
//! success paths and the main failures (not found, forbidden, paused,
//! conflicts of bounds, bad input, dry runs).

use crate::common::{eventually, Harness};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, ListParams};
use oncall::reply::{Block, Outcome};
use serde_json::json;

fn approval_id(reply: &oncall::reply::Reply) -> String {
    reply
        .blocks
        .iter()
        .find_map(|b| match b {
            Block::Actions { buttons } => Some(buttons[0].value.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no buttons in {}", reply.to_console()))
}

#[tokio::test]
async fn set_image_twice_then_rollback_restores_the_exact_original_template() {
    let h = Harness::new().await;
    h.patch_deployment("default", "dev-utilities", json!({"metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"kind\":\"Deployment\"}"}}})).await;
    let original = h
        .deployment("default", "dev-utilities")
        .await
        .spec
        .unwrap()
        .template;

    let r = h
        .run(
            "cli:operator",
            "set image dev-utilities ghcr.io/example/dev-utilities:2.4.0",
        )
        .await;
    assert_eq!(r.outcome, Outcome::Done, "{}", r.to_console());
    assert!(
        r.to_console()
            .contains("ghcr.io/example/dev-utilities:2.3.0 → ghcr.io/example/dev-utilities:2.4.0"),
        "{}",
        r.to_console()
    );
    assert!(
        r.to_console()
            .contains("/oncall rollback dev-utilities --to-revision 1"),
        "undo: {}",
        r.to_console()
    );
    h.rolled_out("default", "dev-utilities").await;
    let r = h
        .run(
            "cli:operator",
            "set image dev-utilities dev-utilities=ghcr.io/example/dev-utilities:2.5.0",
        )
        .await;
    assert_eq!(r.outcome, Outcome::Done, "{}", r.to_console());
    h.rolled_out("default", "dev-utilities").await;

    let history = h
        .run("cli:viewer", "rollout history dev-utilities")
        .await
        .to_console();
    assert!(history.contains("3 revisions"), "{history}");
    assert!(history.contains("3 (current)"), "{history}");
    assert!(history.contains("oncall set image dev-utilities dev-utilities=ghcr.io/example/dev-utilities:2.5.0 by cli:operator"), "{history}");
    assert!(
        history.contains("dev-utilities=ghcr.io/example/dev-utilities:2.3.0"),
        "{history}"
    );

    let r = h
        .run("cli:operator", "rollback dev-utilities --to-revision 1")
        .await;
    assert_eq!(r.outcome, Outcome::Done, "{}", r.to_console());
    assert_eq!(r.title, "Rolled back dev-utilities to revision 1");
    assert!(r.to_console().contains("ghcr.io/example/dev-utilities:2.5.0 → dev-utilities=ghcr.io/example/dev-utilities:2.3.0"), "{}", r.to_console());
    assert!(
        r.to_console()
            .contains("/oncall rollback dev-utilities --to-revision 3"),
        "undo: {}",
        r.to_console()
    );
    let restored = h.deployment("default", "dev-utilities").await;
    assert_eq!(
        restored.spec.as_ref().unwrap().template,
        original,
        "the pod template is exactly revision 1's"
    );
    let annotations = restored.metadata.annotations.unwrap();
    assert_eq!(
        annotations["kubectl.kubernetes.io/last-applied-configuration"],
        "{\"kind\":\"Deployment\"}",
        "kept from the deployment"
    );
    assert!(
        annotations.contains_key("deployment.kubernetes.io/revision"),
        "kept from the deployment"
    );
    assert!(
        !annotations.contains_key("kubernetes.io/change-cause"),
        "change cause comes from revision 1, which had none"
    );
    h.rolled_out("default", "dev-utilities").await;

    // Revision 1 became revision 4; the previous one is now 3 (2.5.0).
    let r = h.run("cli:operator", "rollback dev-utilities").await;
    assert_eq!(
        r.title,
        "Rolled back dev-utilities to revision 3",
        "{}",
        r.to_console()
    );
    let image = h
        .deployment("default", "dev-utilities")
        .await
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .containers[0]
        .image
        .clone();
    assert_eq!(
        image.as_deref(),
        Some("ghcr.io/example/dev-utilities:2.5.0")
    );
    h.rolled_out("default", "dev-utilities").await;

    // Rolling back to what is already current changes nothing.
    let generation = h.generation("default", "dev-utilities").await;
    let r = h
        .run("cli:operator", "rollback dev-utilities --to-revision 5")
        .await;
    assert!(
        r.to_console()
            .contains("skipped rollback (current template already matches revision 5)"),
        "{}",
        r.to_console()
    );
    let r = h
        .run("cli:operator", "rollback dev-utilities --to-revision 99")
        .await;
    assert_eq!(r.outcome, Outcome::Failed);
    assert!(
        r.to_console()
            .contains("unable to find specified revision 99 in history"),
        "{}",
        r.to_console()
    );
    let r = h
        .run(
            "cli:operator",
            "rollback dev-utilities --to-revision 2 --dry-run",
        )
        .await;
    assert!(
        r.title
            .starts_with("Dry run: dev-utilities would roll back to revision 2"),
        "{}",
        r.title
    );
    assert_eq!(
        h.generation("default", "dev-utilities").await,
        generation,
        "skips and dry runs change nothing"
    );
}

#[tokio::test]
async fn rollback_refuses_a_paused_deployment_and_a_missing_history() {
    let h = Harness::new().await;
    let r = h.run("cli:operator", "rollback dev-utilities").await;
    assert_eq!(r.outcome, Outcome::Failed);
    assert!(
        r.to_console()
            .contains("no rollout history found for deployment \"dev-utilities\""),
        "{}",
        r.to_console()
    );
    h.run(
        "cli:operator",
        "set image dev-utilities ghcr.io/example/dev-utilities:2.4.0",
    )
    .await;
    h.rolled_out("default", "dev-utilities").await;
    h.patch_deployment(
        "default",
        "dev-utilities",
        json!({"spec": {"paused": true}}),
    )
    .await;
    let r = h.run("cli:operator", "rollback dev-utilities").await;
    assert_eq!(r.outcome, Outcome::Failed);
    assert!(
        r.to_console()
            .contains("you cannot rollback a paused deployment"),
        "{}",
        r.to_console()
    );
    let r = h.run("cli:operator", "restart dev-utilities").await;
    assert!(
        r.to_console().contains("is paused and can't be restarted"),
        "{}",
        r.to_console()
    );
}

#[tokio::test]
async fn set_image_needs_the_container_when_there_are_several() {
    let h = Harness::new().await;
    let r = h
        .run(
            "cli:admin",
            "set image backend ghcr.io/example/todo-backend:1.5.0",
        )
        .await;
    assert_eq!(r.outcome, Outcome::Failed, "{}", r.to_console());
    assert!(
        r.to_console()
            .contains("has 2 containers (backend, daprd); say which"),
        "{}",
        r.to_console()
    );
    let r = h
        .run(
            "cli:admin",
            "set image backend nope=ghcr.io/example/todo-backend:1.5.0",
        )
        .await;
    assert!(
        r.to_console().contains("has no container `nope`"),
        "{}",
        r.to_console()
    );
    let r = h
        .run("cli:admin", "set image backend backend=Bad:Image")
        .await;
    assert_eq!(r.outcome, Outcome::Invalid);
    let r = h
        .run(
            "cli:viewer",
            "set image dev-utilities ghcr.io/example/dev-utilities:9",
        )
        .await;
    assert_eq!(r.outcome, Outcome::Denied);
    let r = h
        .run(
            "cli:admin",
            "set image backend backend=ghcr.io/example/todo-backend:1.5.0 --dry-run",
        )
        .await;
    assert_eq!(r.outcome, Outcome::Done, "{}", r.to_console());
    assert_eq!(h.generation("default", "backend").await, 1);
}

#[tokio::test]
async fn rollout_status_follows_to_completion_and_to_a_missed_deadline() {
    let h = Harness::new().await;
    h.run("cli:operator", "restart dev-utilities").await;
    let r = h
        .run("cli:viewer", "rollout status dev-utilities --wait 1m")
        .await;
    assert_eq!(r.title, "dev-utilities: rolled out", "{}", r.to_console());
    assert!(r.to_console().contains("successfully rolled out"));
    assert!(
        r.to_console().contains("Progress"),
        "progress is reported: {}",
        r.to_console()
    );

    h.patch_deployment(
        "default",
        "dev-utilities",
        json!({"spec": {"progressDeadlineSeconds": 1}}),
    )
    .await;
    h.run(
        "cli:operator",
        "set image dev-utilities ghcr.io/example/dev-utilities:does-not-exist",
    )
    .await;
    let r = h
        .run("cli:viewer", "rollout status dev-utilities --wait 30s")
        .await;
    assert_eq!(r.outcome, Outcome::Failed, "{}", r.to_console());
    assert!(
        r.to_console()
            .contains("deployment \"dev-utilities\" exceeded its progress deadline"),
        "{}",
        r.to_console()
    );
    assert!(
        r.to_console().contains("/oncall rollback dev-utilities"),
        "{}",
        r.to_console()
    );

    let d = h
        .run("cli:viewer", "diagnose dev-utilities")
        .await
        .to_console();
    assert!(d.contains("pods can't pull their image"), "{d}");
    assert!(d.contains("ImagePullBackOff"), "{d}");
    let events = h
        .run("cli:viewer", "events dev-utilities")
        .await
        .to_console();
    let first_row = events
        .lines()
        .skip_while(|l| !l.contains("LAST SEEN"))
        .nth(1)
        .unwrap_or_default()
        .to_string();
    assert!(first_row.contains("Warning"), "warnings first: {events}");
    assert!(events.contains("Failed to pull image"), "{events}");
}

#[tokio::test]
async fn diagnose_explains_crash_loops_oom_kills_and_scheduling() {
    let h = Harness::new().await;
    let fail = |reason: &str| json!({"spec": {"template": {"metadata": {"annotations": {"sim.oncall.dev/fail": reason}}}}});
    h.patch_deployment("default", "notification-service", fail("CrashLoopBackOff"))
        .await;
    h.patch_deployment("default", "frontend", fail("OOMKilled"))
        .await;
    h.patch_deployment("default", "brownie-metadata-api", fail("Unschedulable"))
        .await;
    eventually("crash loop visible", async || {
        h.run("cli:viewer", "diagnose notification-service")
            .await
            .title
            .contains("crash-looping")
    })
    .await;
    let d = h.run("cli:viewer", "diagnose notification-service").await;
    assert_eq!(d.outcome, Outcome::Failed);
    // Crash logs are logs: a viewer (no `logs` grant) gets the verdict
    // without them; an operator sees them.
    let text = d.to_console();
    assert!(text.contains("crash logs hidden"), "{text}");
    assert!(!text.contains("failed to connect to database"), "{text}");
    let text = h
        .run("cli:operator", "diagnose notification-service")
        .await
        .to_console();
    assert!(text.contains("last lines before the crash"), "{text}");
    assert!(text.contains("failed to connect to database"), "{text}");
    eventually("oom visible", async || {
        h.run("cli:viewer", "diagnose frontend")
            .await
            .title
            .contains("OOM-killed")
    })
    .await;
    eventually("unschedulable visible", async || {
        h.run("cli:viewer", "diagnose brownie-metadata-api")
            .await
            .title
            .contains("can't be scheduled")
    })
    .await;
    let text = h
        .run("cli:viewer", "diagnose brownie-metadata-api")
        .await
        .to_console();
    assert!(
        text.contains("Insufficient cpu"),
        "the scheduler's message: {text}"
    );
    // A healthy service and a single pod.
    let ok = h.run("cli:viewer", "diagnose oauth2-server").await;
    assert_eq!(ok.title, "oauth2-server: All 3 pods are running and ready");
    let pod = h.pods_of("oauth2-server", "oauth2-server").await.remove(0);
    let one = h.run("cli:viewer", &format!("diagnose {pod}")).await;
    assert!(
        one.title.starts_with(&format!("{pod}: All 1 pods")),
        "{}",
        one.title
    );
}

#[tokio::test]
async fn logs_are_merged_prefixed_redacted_and_capped() {
    let h = Harness::new().await;
    let pods = h.pods_of("default", "backend").await;
    let secrets = [
        "auth header Authorization: Bearer abc123.def456",
        "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        "db url postgres://app:hunter2@db:5432/app",
        "config password=hunter3 secret=hunter4",
        "aws AKIAIOSFODNN7EXAMPLE",
        "-----BEGIN RSA PRIVATE KEY-----",
        "MIIEowIBAAKCAQEAhunter5",
        "-----END RSA PRIVATE KEY-----",
    ];
    for line in secrets {
        h.sim.append_log("default", &pods[0], "backend", line);
    }
    h.sim.append_log(
        "default",
        &pods[1],
        "backend",
        "ERROR second pod failed a request",
    );
    let r = h.run("cli:operator", "logs backend").await;
    assert_eq!(r.outcome, Outcome::Info, "{}", r.to_console());
    let text = r.to_console();
    for leaked in [
        "abc123",
        "eyJzdWIi",
        "hunter2",
        "hunter3",
        "hunter4",
        "AKIAIOSFODNN7EXAMPLE",
        "hunter5",
        "MIIEow",
    ] {
        assert!(!text.contains(leaked), "{leaked} leaked:\n{text}");
    }
    for masked in [
        "Bearer [REDACTED]",
        "[REDACTED JWT]",
        "app:[REDACTED]@db",
        "password=[REDACTED]",
        "[REDACTED AWS KEY]",
        "[REDACTED PRIVATE KEY]",
    ] {
        assert!(text.contains(masked), "{masked} missing:\n{text}");
    }
    assert!(
        text.contains(&format!("[{}] ERROR second pod", pods[1])),
        "lines carry their pod: {text}"
    );
    assert!(text.contains("from 2 pod(s), container backend"), "{text}");
    // --grep runs on redacted text: a secret can't be probed.
    let r = h.run("cli:operator", "logs backend --grep hunter").await;
    assert!(
        r.to_console().contains("No lines matched"),
        "{}",
        r.to_console()
    );
    let r = h
        .run("cli:operator", "logs backend --grep ERROR")
        .await
        .to_console();
    assert!(
        r.contains("ERROR second pod") && !r.contains("password="),
        "{r}"
    );
    // Another container, one pod, the previous instance.
    let r = h
        .run("cli:operator", "logs backend --container daprd --tail 10")
        .await
        .to_console();
    assert!(
        r.contains("container daprd") && r.contains("starting daprd"),
        "{r}"
    );
    let r = h
        .run("cli:operator", &format!("logs {} --previous", pods[0]))
        .await
        .to_console();
    assert!(r.contains("previous terminated container"), "{r}");
    // Too much for chat: the newest lines are kept, and the cut is said.
    for i in 0..150 {
        h.sim
            .append_log("default", &pods[1], "backend", &format!("line {i}"));
    }
    let r = h
        .run("cli:operator", "logs backend --tail 500")
        .await
        .to_console();
    assert!(r.contains("✂️ showing the last 60 of"), "{r}");
    assert!(r.contains("line 149"), "{r}");
    // Viewers don't get logs in the example policy.
    assert_eq!(
        h.run("cli:viewer", "logs backend").await.outcome,
        Outcome::Denied
    );
}

#[tokio::test]
async fn pods_events_and_top_for_services_and_namespaces() {
    let h = Harness::new().await;
    let r = h.run("cli:viewer", "pods vibe-ensemble").await;
    assert_eq!(
        r.title,
        "namespace vibe-ensemble: 4 pods",
        "{}",
        r.to_console()
    );
    let r = h.run("cli:viewer", "pods backend").await.to_console();
    assert!(
        r.contains("backend: 2 pods") && r.contains("2/2") && r.contains("Running"),
        "{r}"
    );
    h.run("cli:operator", "scale backend 3").await;
    eventually("the scaling event", async || {
        h.run("cli:viewer", "events backend --since 10m")
            .await
            .to_console()
            .contains("from 2 to 3")
    })
    .await;
    let r = h
        .run("cli:viewer", "events backend --since 10m")
        .await
        .to_console();
    assert!(
        r.contains("ScalingReplicaSet") && r.contains("deployment/backend"),
        "{r}"
    );
    let r = h.run("cli:viewer", "top oauth2-server").await;
    assert!(
        r.title.starts_with("oauth2-server: 3 pods use"),
        "{}",
        r.to_console()
    );
    assert!(r.to_console().contains("CPU(cores)"));
    let r = h.run("cli:viewer", "top vibe-ensemble").await;
    assert!(
        r.title.starts_with("namespace vibe-ensemble: 4 pods use"),
        "{}",
        r.title
    );
    h.sim.set_metrics(false);
    let r = h.run("cli:viewer", "top oauth2-server").await;
    assert_eq!(r.outcome, Outcome::Failed);
    assert!(
        r.to_console().contains("metrics-server isn't installed"),
        "{}",
        r.to_console()
    );
}

#[tokio::test]
async fn hpa_show_set_and_the_scale_guard() {
    let h = Harness::new().await;
    let r = h.run("cli:viewer", "hpa oauth2-server").await;
    assert_eq!(
        r.title,
        "oauth2-server: autoscaled 2–10 replicas",
        "{}",
        r.to_console()
    );
    assert!(r.to_console().contains("cpu:"), "{}", r.to_console());
    assert_eq!(
        h.run("cli:viewer", "hpa oauth2-server --max 5")
            .await
            .outcome,
        Outcome::Denied,
        "setting bounds is hpa-set"
    );
    let r = h
        .run("cli:operator", "hpa oauth2-server --min 3 --max 5")
        .await;
    assert_eq!(
        r.title,
        "oauth2-server autoscaler 2–10 → 3–5",
        "{}",
        r.to_console()
    );
    assert!(r
        .to_console()
        .contains("/oncall hpa oauth2-server --min 2 --max 10"));
    let api: Api<HorizontalPodAutoscaler> = Api::namespaced(h.client.clone(), "oauth2-server");
    let spec = api.get("oauth2-server").await.unwrap().spec.unwrap();
    assert_eq!((spec.min_replicas, spec.max_replicas), (Some(3), 5));
    let r = h.run("cli:operator", "hpa oauth2-server --max 2").await;
    assert!(
        r.to_console()
            .contains("the minimum (3) would be above the maximum (2)"),
        "{}",
        r.to_console()
    );
    let r = h.run("cli:operator", "hpa backend").await;
    assert!(
        r.to_console()
            .contains("no HorizontalPodAutoscaler targets"),
        "{}",
        r.to_console()
    );

    // Above the HPA's maximum: refused, unless --force by someone allowed to force.
    let r = h.run("cli:operator", "scale oauth2-server 8").await;
    assert_eq!(r.outcome, Outcome::Failed);
    assert!(
        r.to_console().contains("above its maximum") && r.to_console().contains("--force"),
        "{}",
        r.to_console()
    );
    assert_eq!(h.replicas("oauth2-server", "oauth2-server").await, 3);
    let r = h.run("cli:operator", "scale oauth2-server 8 --force").await;
    assert_eq!(r.outcome, Outcome::Denied, "force is a separate permission");
    let r = h
        .run("cli:commander", "scale oauth2-server 8 --force")
        .await;
    assert_eq!(r.outcome, Outcome::Done, "{}", r.to_console());
    assert!(r.to_console().contains("HorizontalPodAutoscaler `oauth2-server` manages this deployment (3–5 replicas) and will override"), "{}", r.to_console());
    // Within bounds, the warning still shows.
    let r = h.run("cli:operator", "scale oauth2-server 4").await;
    assert!(
        r.to_console().contains("will override a manual change"),
        "{}",
        r.to_console()
    );
    // Raising the maximum is going past the ceiling `scale` keeps to: it
    // takes --force, and --force takes the `force` permission.
    let r = h.run("cli:operator", "hpa oauth2-server --max 8").await;
    assert_eq!(r.outcome, Outcome::Failed, "{}", r.to_console());
    assert!(
        r.to_console().contains("from 5 to 8") && r.to_console().contains("add --force"),
        "{}",
        r.to_console()
    );
    let r = h
        .run("cli:operator", "hpa oauth2-server --max 8 --force")
        .await;
    assert_eq!(r.outcome, Outcome::Denied, "{}", r.to_console());
    assert!(r.to_console().contains("`force`"), "{}", r.to_console());
    let spec = api.get("oauth2-server").await.unwrap().spec.unwrap();
    assert_eq!((spec.min_replicas, spec.max_replicas), (Some(3), 5));
    let r = h
        .run("cli:commander", "hpa oauth2-server --max 8 --force")
        .await;
    assert_eq!(r.outcome, Outcome::Done, "{}", r.to_console());
    let spec = api.get("oauth2-server").await.unwrap().spec.unwrap();
    assert_eq!((spec.min_replicas, spec.max_replicas), (Some(3), 8));
}

#[tokio::test]
async fn restart_several_services_or_a_whole_namespace() {
    let h = Harness::new().await;
    let r = h
        .run("cli:operator", "restart --all -n default --dry-run")
        .await;
    assert_eq!(
        r.title,
        "Dry run: would restart 6 of 6 services",
        "{}",
        r.to_console()
    );
    for name in [
        "backend",
        "recurring-task-service",
        "notification-service",
        "frontend",
        "brownie-metadata-api",
        "dev-utilities",
    ] {
        assert!(r.to_console().contains(name), "{name}");
        assert_eq!(
            h.generation("default", name).await,
            1,
            "dry run changed {name}"
        );
    }
    // Production services together: one approval for both, then both restart.
    let held = h
        .run("cli:operator", "restart backend recurring-task-service")
        .await;
    assert_eq!(held.outcome, Outcome::Pending, "{}", held.to_console());
    let done = h
        .run("cli:admin", &format!("approve {}", approval_id(&held)))
        .await;
    assert_eq!(done.outcome, Outcome::Done, "{}", done.to_console());
    assert!(
        done.title.contains("Restarting 2 of 2 services"),
        "{}",
        done.title
    );
    assert_eq!(h.generation("default", "backend").await, 2);
    assert_eq!(h.generation("default", "recurring-task-service").await, 2);
    // The whole namespace is a production scope: approval again.
    assert_eq!(
        h.run("cli:operator", "restart --all -n vibe-ensemble")
            .await
            .outcome,
        Outcome::Pending
    );
    // Only catalog deployments: another one in the namespace is left alone.
    let mut intruder = h.deployment("default", "dev-utilities").await;
    intruder.metadata = kube::api::ObjectMeta {
        name: Some("intruder".into()),
        namespace: Some("default".into()),
        ..Default::default()
    };
    intruder.status = None;
    Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(h.client.clone(), "default")
        .create(&kube::api::PostParams::default(), &intruder)
        .await
        .unwrap();
    let r = h
        .run("cli:operator", "restart --all -n default --dry-run")
        .await;
    let text = r.to_console();
    assert!(!text.contains("intruder"), "{text}");
    assert!(text.contains("not in the catalog"), "{text}");
    // A denied service in the list denies the whole request.
    let r = h.run("cli:viewer", "restart dev-utilities frontend").await;
    assert_eq!(r.outcome, Outcome::Denied);
    assert_eq!(h.generation("default", "dev-utilities").await, 1);
}

#[tokio::test]
async fn job_run_creates_a_job_from_the_cronjob_and_reports_progress() {
    let h = Harness::new().await;
    let r = h
        .run("cli:operator", "job run postgres-backup --dry-run")
        .await;
    assert!(
        r.title.starts_with("Dry run: job/postgres-backup-manual-"),
        "{}",
        r.to_console()
    );
    let jobs: Api<Job> = Api::namespaced(h.client.clone(), "vibe-ensemble");
    assert!(jobs
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .is_empty());
    let r = h
        .run(
            "cli:operator",
            "job run postgres-backup --name manual-backup-20261122",
        )
        .await;
    assert_eq!(r.outcome, Outcome::Done, "{}", r.to_console());
    assert_eq!(
        r.title,
        "job/manual-backup-20261122 completed",
        "{}",
        r.to_console()
    );
    let job = jobs.get("manual-backup-20261122").await.unwrap();
    assert_eq!(
        job.metadata.annotations.unwrap()["cronjob.kubernetes.io/instantiate"],
        "manual"
    );
    let owner = &job.metadata.owner_references.unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.controller),
        ("CronJob", "postgres-backup", Some(true))
    );
    assert_eq!(job.metadata.labels.unwrap()["app"], "postgres-backup");
    let r = h
        .run(
            "cli:operator",
            "job run postgres-backup --name manual-backup-20261122",
        )
        .await;
    assert_eq!(
        r.outcome,
        Outcome::Failed,
        "the name is taken: {}",
        r.to_console()
    );
    let r = h.run("cli:operator", "job run nightly-report").await;
    assert!(
        r.to_console().contains("unknown cronjob `nightly-report`"),
        "{}",
        r.to_console()
    );
    assert_eq!(
        h.run("cli:viewer", "job run postgres-backup").await.outcome,
        Outcome::Denied
    );
}

/// A CronJob in the cluster, even in a catalog namespace, is out of reach
/// unless a catalog service declares it; grants can name CronJobs.
#[tokio::test]
async fn job_run_reaches_only_cronjobs_the_catalog_declares() {
    use k8s_openapi::api::batch::v1::CronJob;
    let mut config = oncall::config::Config::parse(oncall::config::EXAMPLE, "example").unwrap();
    config.policy.roles.push(
        toml::from_str(
            r#"
name = "backup-runner"
grants = [{ verbs = ["job-run"], cronjobs = ["postgres-backup"] }]
"#,
        )
        .unwrap(),
    );
    config.policy.bindings.push(
        toml::from_str(
            r#"
principal = "cli:runner"
roles = ["backup-runner"]
"#,
        )
        .unwrap(),
    );
    let h = Harness::with_config(config).await;
    let cronjobs: Api<CronJob> = Api::namespaced(h.client.clone(), "vibe-ensemble");
    let mut rogue = cronjobs.get("postgres-backup").await.unwrap();
    rogue.metadata = kube::api::ObjectMeta {
        name: Some("drop-tables".into()),
        namespace: Some("vibe-ensemble".into()),
        ..Default::default()
    };
    cronjobs
        .create(&kube::api::PostParams::default(), &rogue)
        .await
        .unwrap();
    for text in [
        "job run drop-tables",
        "job run drop-tables -n vibe-ensemble",
        "job run postgres-backup -n default",
    ] {
        let r = h.run("cli:admin", text).await;
        assert_eq!(r.outcome, Outcome::Invalid, "{text}: {}", r.to_console());
        assert!(
            r.to_console().contains("unknown cronjob"),
            "{text}: {}",
            r.to_console()
        );
    }
    let jobs: Api<Job> = Api::namespaced(h.client.clone(), "vibe-ensemble");
    assert!(jobs
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .is_empty());
    // A grant naming the CronJob: that one runs, nothing else does.
    let r = h
        .run("cli:runner", "job run postgres-backup --name by-runner")
        .await;
    assert_eq!(r.outcome, Outcome::Done, "{}", r.to_console());
    let r = h.run("cli:runner", "scale postgres 1").await;
    assert_eq!(r.outcome, Outcome::Denied, "{}", r.to_console());
}

#[tokio::test]
async fn quarantine_and_release_a_pod() {
    let h = Harness::new().await;
    let pod = h
        .pods_of("vibe-ensemble", "vibe-ensemble-server")
        .await
        .remove(0);
    let r = h.run("cli:operator", &format!("quarantine {pod}")).await;
    assert_eq!(r.outcome, Outcome::Done, "{}", r.to_console());
    assert!(
        r.to_console()
            .contains("no quarantine label → quarantine=true"),
        "{}",
        r.to_console()
    );
    assert!(r
        .to_console()
        .contains(&format!("/oncall unquarantine {pod}")));
    let labels = || async {
        Api::<k8s_openapi::api::core::v1::Pod>::namespaced(h.client.clone(), "vibe-ensemble")
            .get(&pod)
            .await
            .unwrap()
            .metadata
            .labels
            .unwrap()
    };
    assert_eq!(
        labels().await.get("quarantine").map(String::as_str),
        Some("true")
    );
    let again = h.run("cli:operator", &format!("quarantine {pod}")).await;
    assert!(
        again.to_console().contains("already quarantined"),
        "{}",
        again.to_console()
    );
    let r = h.run("cli:operator", &format!("unquarantine {pod}")).await;
    assert_eq!(r.outcome, Outcome::Done);
    assert!(!labels().await.contains_key("quarantine"));
    let r = h
        .run(
            "cli:operator",
            "quarantine vibe-ensemble-server-aaaaaaaaaa-zzzzz",
        )
        .await;
    assert_eq!(r.outcome, Outcome::Failed);
    assert!(
        r.to_console().contains("was not found"),
        "{}",
        r.to_console()
    );
}

#[tokio::test]
async fn env_values_never_reach_a_reply_the_history_or_a_stored_answer() {
    let h = Harness::new().await;
    // A value someone put on the deployment by hand, outside oncall.
    let d = h.deployment("default", "dev-utilities").await;
    let container = d.spec.unwrap().template.spec.unwrap().containers[0]
        .name
        .clone();
    h.patch_deployment(
        "default",
        "dev-utilities",
        serde_json::json!({"spec": {"template": {"spec": {"containers": [
            {"name": container, "env": [{"name": "LEGACY_DSN", "value": "hand-set-marker-7781"}]}
        ]}}}}),
    )
    .await;
    for text in [
        "env unset dev-utilities LEGACY_DSN --dry-run",
        "env set dev-utilities LEGACY_DSN=other --dry-run",
    ] {
        let r = h
            .run_keyed("cli:operator", text, &format!("k-{text}"))
            .await;
        assert_eq!(r.outcome, Outcome::Done, "{}", r.to_console());
        let shown = r.to_console();
        assert!(shown.contains("LEGACY_DSN: "), "{shown}");
        assert!(!shown.contains("hand-set-marker-7781"), "{shown}");
        let row = &h.history().await[0];
        assert!(
            !format!("{row:?}").contains("hand-set-marker-7781"),
            "{row:?}"
        );
        let stored = h.stored_reply(&format!("k-{text}")).await.unwrap();
        assert!(!stored.contains("hand-set-marker-7781"), "{stored}");
    }
    // Keys named like secrets are refused for unset too.
    let r = h
        .run("cli:operator", "env unset dev-utilities DB_PASSWORD")
        .await;
    assert_eq!(r.outcome, Outcome::Invalid, "{}", r.to_console());
    assert!(
        r.to_console().contains("Kubernetes Secret"),
        "{}",
        r.to_console()
    );
}

#[tokio::test]
async fn env_set_and_unset_with_secrets_refused_and_production_held() {
    let h = Harness::new().await;
    let r = h
        .run(
            "cli:operator",
            "env set dev-utilities LOG_LEVEL=debug FEATURE_X=1",
        )
        .await;
    assert_eq!(r.outcome, Outcome::Done, "{}", r.to_console());
    let text = r.to_console();
    // Which keys changed, never a value (before or after), and the undo is
    // the previous revision, not text rebuilt from old values.
    assert!(text.contains("LOG_LEVEL: changed"), "{text}");
    assert!(text.contains("FEATURE_X: added"), "{text}");
    assert!(text.contains("/oncall rollback dev-utilities"), "{text}");
    assert!(
        !text.contains("/oncall env"),
        "no undo built from values: {text}"
    );
    for value in ["\"info\"", "=info", "debug"] {
        assert!(!text.contains(value), "{value} shown: {text}");
    }
    let row = &h.history().await[0];
    assert_eq!(
        row.summary.as_deref(),
        Some("LOG_LEVEL: changed; FEATURE_X: added")
    );
    let env = || async {
        h.deployment("default", "dev-utilities")
            .await
            .spec
            .unwrap()
            .template
            .spec
            .unwrap()
            .containers[0]
            .env
            .clone()
            .unwrap()
            .into_iter()
            .map(|e| (e.name, e.value.unwrap_or_default()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        env().await,
        vec![
            ("LOG_LEVEL".into(), "debug".into()),
            ("FEATURE_X".into(), "1".into())
        ]
    );
    let r = h
        .run("cli:operator", "env unset dev-utilities FEATURE_X")
        .await;
    assert_eq!(r.outcome, Outcome::Done, "{}", r.to_console());
    assert_eq!(env().await, vec![("LOG_LEVEL".into(), "debug".into())]);
    let r = h
        .run("cli:operator", "env unset dev-utilities FEATURE_X")
        .await;
    assert!(
        r.to_console().contains("none of FEATURE_X is set"),
        "{}",
        r.to_console()
    );
    // Secrets never go through chat.
    let r = h
        .run("cli:operator", "env set dev-utilities API_TOKEN=abc")
        .await;
    assert_eq!(r.outcome, Outcome::Invalid);
    assert!(
        !h.history().await[0].text.contains("abc"),
        "the history masks it too"
    );
    // Runbook 001's emergency pool bump in production waits for approval.
    let held = h
        .run(
            "cli:operator",
            "env set backend DB_POOL_SIZE=30 DB_MAX_OVERFLOW=20",
        )
        .await;
    assert_eq!(held.outcome, Outcome::Pending, "{}", held.to_console());
    let done = h
        .run("cli:commander", &format!("approve {}", approval_id(&held)))
        .await;
    assert_eq!(done.outcome, Outcome::Done, "{}", done.to_console());
    let backend = h
        .deployment("default", "backend")
        .await
        .spec
        .unwrap()
        .template
        .spec
        .unwrap();
    let env: Vec<String> = backend.containers[0]
        .env
        .clone()
        .unwrap()
        .into_iter()
        .map(|e| format!("{}={}", e.name, e.value.unwrap_or_default()))
        .collect();
    assert!(
        env.contains(&"DB_POOL_SIZE=30".to_string())
            && env.contains(&"DB_MAX_OVERFLOW=20".to_string()),
        "{env:?}"
    );
    assert!(
        backend.containers[1].env.is_none(),
        "the sidecar is untouched"
    );
}

#[tokio::test]
async fn kubernetes_forbidden_is_explained_as_the_bots_rbac() {
    let h = Harness::new().await;
    h.sim
        .with_store(|s| s.forbidden_methods.push("PATCH".into()));
    let r = h.run("cli:operator", "scale backend 3").await;
    assert_eq!(r.outcome, Outcome::Failed);
    let text = r.to_console();
    assert!(
        text.contains("oncall's Kubernetes account is not allowed to"),
        "{text}"
    );
    assert!(
        text.contains("ask a cluster admin to extend its RBAC"),
        "{text}"
    );
    assert_eq!(h.replicas("default", "backend").await, 2);
}

#[tokio::test]
async fn health_probes_report_status_latency_and_dependencies() {
    use axum::routing::get;
    let app = axum::Router::new()
        .route("/health", get(|| async { axum::Json(json!({"status": "healthy"})) }))
        .route(
            "/health/detailed",
            get(|| async { axum::Json(json!({"status": "degraded", "dependencies": {"database": "healthy", "redis": {"status": "unhealthy"}}})) }),
        )
        .route("/broken", get(|| async { (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "boom") }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut config = oncall::config::Config::parse(oncall::config::EXAMPLE, "example").unwrap();
    for s in config.services.iter_mut() {
        if s.name == "brownie-metadata-api" {
            s.health_urls = vec![
                format!("http://{addr}/health"),
                format!("http://{addr}/health/detailed"),
                format!("http://{addr}/broken"),
                format!("http://{closed}/health"),
            ];
        }
        if s.name == "dev-utilities" {
            s.health_urls = vec![format!("http://{addr}/health")];
        }
    }
    let h = Harness::with_config(config).await;
    let r = h.run("cli:viewer", "health brownie-metadata-api").await;
    assert_eq!(r.outcome, Outcome::Failed);
    assert_eq!(
        r.title,
        "brownie-metadata-api: 3 of 4 checks unhealthy — redis unhealthy",
        "{}",
        r.to_console()
    );
    let text = r.to_console();
    assert!(
        text.contains("✗ redis: unhealthy") && text.contains("✓ database: healthy"),
        "{text}"
    );
    assert!(
        text.find("✗ redis").unwrap() < text.find("✓ database").unwrap(),
        "unhealthy first: {text}"
    );
    assert!(
        text.contains("500") && text.contains("connection failed"),
        "{text}"
    );
    let healthy_row = text
        .lines()
        .find(|l| {
            l.contains(&format!("http://{addr}/health "))
                || l.ends_with(&format!("http://{addr}/health"))
        })
        .unwrap_or_default();
    assert!(
        text.rfind("✓").unwrap() > text.find("✗").unwrap(),
        "healthy rows come after: {text} {healthy_row}"
    );
    let r = h.run("cli:viewer", "health dev-utilities").await;
    assert_eq!(
        r.title,
        "dev-utilities: healthy (1 checks)",
        "{}",
        r.to_console()
    );
    assert!(r.to_console().contains("200"), "{}", r.to_console());
    let r = h.run("cli:viewer", "health frontend").await;
    assert!(r.title.contains("has no health URLs"), "{}", r.title);
}

#[tokio::test]
async fn reads_are_their_own_verbs() {
    let h = Harness::new().await;
    for cmd in [
        "status backend",
        "rollout status backend",
        "rollout history backend",
        "pods backend",
        "events backend",
        "hpa oauth2-server",
        "diagnose backend",
        "top backend",
    ] {
        let r = h.run("cli:viewer", cmd).await;
        assert_ne!(r.outcome, Outcome::Denied, "{cmd}: {}", r.to_console());
    }
    for cmd in [
        "logs backend",
        "scale backend 3",
        "rollback backend",
        "job run postgres-backup",
        "env unset dev-utilities X",
    ] {
        let r = h.run("cli:viewer", cmd).await;
        assert_eq!(r.outcome, Outcome::Denied, "{cmd}: {}", r.to_console());
    }
}

#[tokio::test]
async fn the_demo_health_endpoints_follow_the_simulated_cluster() {
    let mut config = oncall::config::Config::parse(oncall::config::EXAMPLE, "example").unwrap();
    // The harness starts its own simulator; point the URLs at it after start.
    let h = Harness::with_config(config.clone()).await;
    oncall::app::point_health_urls_at(&mut config, &h.sim.url());
    let entry = config
        .services
        .iter()
        .find(|s| s.name == "brownie-metadata-api")
        .unwrap()
        .clone();
    assert!(
        entry.health_urls[1].ends_with("/sim/health/default/brownie-metadata-api/health/detailed"),
        "{:?}",
        entry.health_urls
    );
    let http = reqwest::Client::new();
    let healthy = oncall_ops::health::probe_all(&http, &entry.health_urls).await;
    assert!(healthy.iter().all(|p| p.healthy()), "{healthy:?}");
    assert!(healthy.iter().any(|p| p.dependencies.len() == 2));
    h.patch_deployment(
        "default",
        "brownie-metadata-api",
        json!({"metadata": {"annotations": {"sim.oncall.dev/unhealthy-dependency": "redis"}}}),
    )
    .await;
    let degraded = oncall_ops::health::probe_all(&http, &entry.health_urls).await;
    assert!(!degraded[0].healthy());
    assert_eq!(degraded[0].unhealthy_dependencies()[0].0, "redis");
    h.patch_deployment(
        "default",
        "brownie-metadata-api",
        json!({"spec": {"replicas": 0}}),
    )
    .await;
    eventually("no available pods", async || {
        !oncall_ops::health::probe_all(&http, &entry.health_urls[..1]).await[0].healthy()
    })
    .await;
    let down = oncall_ops::health::probe_all(&http, &entry.health_urls[..1]).await;
    assert_eq!(down[0].code, Some(503));
}

#[tokio::test]
async fn a_conflict_is_retried_once_with_a_fresh_read() {
    let h = Harness::new().await;
    // One conflicting write: the retry succeeds.
    h.sim.with_store(|s| s.conflicts_to_inject = 1);
    let r = h.run("cli:operator", "scale backend 4").await;
    assert_eq!(r.outcome, Outcome::Done, "{}", r.to_console());
    assert_eq!(h.replicas("default", "backend").await, 4);
    h.sim.with_store(|s| s.conflicts_to_inject = 1);
    let r = h.run("cli:operator", "hpa oauth2-server --max 9").await;
    assert_eq!(r.outcome, Outcome::Done, "{}", r.to_console());
    // Two in a row: it gives up after one retry, with one clear sentence.
    h.sim.with_store(|s| s.conflicts_to_inject = 2);
    let r = h.run("cli:operator", "scale backend 6").await;
    assert_eq!(r.outcome, Outcome::Failed);
    assert!(
        r.to_console().contains(
            "was changed by someone else at the same moment; nothing was applied, try again"
        ),
        "{}",
        r.to_console()
    );
    assert_eq!(h.replicas("default", "backend").await, 4);
    assert_eq!(
        h.sim.with_store(|s| s.conflicts_to_inject),
        0,
        "exactly two writes were attempted"
    );
}

#[tokio::test]
async fn a_cluster_that_cannot_be_reached_is_named_not_hidden() {
    let mut config = oncall::config::Config::parse(oncall::config::EXAMPLE, "example").unwrap();
    for s in config.services.iter_mut() {
        if s.name == "backend" {
            s.context = Some("elsewhere".into());
        }
    }
    let h = Harness::with_config(config).await;
    for text in ["pods backend", "events backend", "top backend"] {
        let r = h.run("cli:operator", text).await;
        assert_eq!(r.outcome, Outcome::Failed, "{text}: {}", r.to_console());
        assert_eq!(
            r.title,
            "Cannot reach the cluster of backend",
            "{text}: {}",
            r.to_console()
        );
    }
}

#[tokio::test]
async fn a_pod_is_a_services_only_if_its_deployment_owns_it() {
    let h = Harness::new().await;
    // Named like a backend pod, owned by nothing of the catalog's.
    let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "backend-postgres-0", "namespace": "default", "labels": {"app": "postgres"}},
        "spec": {"containers": [{"name": "postgres", "image": "postgres:16"}]}
    }))
    .unwrap();
    Api::<k8s_openapi::api::core::v1::Pod>::namespaced(h.client.clone(), "default")
        .create(&kube::api::PostParams::default(), &pod)
        .await
        .unwrap();
    for text in [
        "logs backend-postgres-0",
        "diagnose backend-postgres-0",
        "quarantine backend-postgres-0 --dry-run",
    ] {
        let r = h.run("cli:operator", text).await;
        assert_eq!(r.outcome, Outcome::Failed, "{text}: {}", r.to_console());
        assert!(
            r.to_console().contains("not a pod of a catalog service"),
            "{text}: {}",
            r.to_console()
        );
    }
    // A pod the deployment does own still works.
    let real = h.pods_of("default", "backend").await.remove(0);
    let r = h
        .run("cli:operator", &format!("quarantine {real} --dry-run"))
        .await;
    assert_eq!(r.outcome, Outcome::Done, "{}", r.to_console());
}
