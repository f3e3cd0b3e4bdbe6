//! Shared test harness: a simulated cluster, a real SQLite file in a temp
//! dir, the example config, and a router wired to them.

pub mod fake_discord;
pub mod fake_pager;
pub mod fake_slack;
pub mod postgres;
pub mod serve;

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::Api;
use oncall::config::{Config, EXAMPLE};
use oncall::reply::Reply;
use oncall::router::{Clock, Invocation, Platform, Router};
use oncall::store::Store;
use oncall_ops::Clusters;

pub struct Harness {
    pub router: Router,
    pub sim: kube_sim::RunningSim,
    pub client: kube::Client,
    pub clock: Clock,
    pub dir: tempfile::TempDir,
}

impl Harness {
    pub async fn new() -> Harness {
        Self::with_config(Config::parse(EXAMPLE, "example").unwrap()).await
    }

    pub async fn with_config(config: Config) -> Harness {
        Self::with_sim(config, kube_sim::SimConfig::fast()).await
    }

    /// The simulated cluster for tests of deferral: pods take 3 s to start,
    /// far longer than those tests' short ack deadline, so a command that
    /// follows a rollout is surely still running when the deadline fires,
    /// however fast or slow the machine.
    pub fn slow_pods() -> kube_sim::SimConfig {
        kube_sim::SimConfig {
            pod_start: Duration::from_secs(3),
            ..kube_sim::SimConfig::fast()
        }
    }

    /// The harness for an adapter test with this acknowledgement deadline:
    /// a short deadline (a test of deferral) gets [`Harness::slow_pods`].
    pub async fn for_ack(config: Config, ack: Duration) -> Harness {
        let sim = if ack < Duration::from_secs(1) {
            Self::slow_pods()
        } else {
            kube_sim::SimConfig::fast()
        };
        Self::with_sim(config, sim).await
    }

    pub async fn with_sim(mut config: Config, sim: kube_sim::SimConfig) -> Harness {
        let sim = kube_sim::Simulator::new(sim)
            .unwrap()
            .serve("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let client = kube::Client::try_from(kube::Config::new(sim.url().parse().unwrap())).unwrap();
        let dir = tempfile::tempdir().unwrap();
        config.database.path = dir.path().join("oncall.db");
        let store = test_store(&config.database.path).await;
        let clock = Clock::manual(jiff::Timestamp::now());
        let router = Router::new(
            config,
            store,
            Clusters::single(client.clone()),
            clock.clone(),
        );
        Harness {
            router,
            sim,
            client,
            clock,
            dir,
        }
    }

    pub fn invocation(&self, who: &str, text: &str) -> Invocation {
        Invocation {
            platform: Platform::Cli,
            workspace: None,
            channel: "console".into(),
            principal: who.parse().unwrap(),
            groups: vec![],
            text: text.into(),
            idempotency_key: None,
            progress: None,
            received_at: self.clock.now(),
        }
    }

    pub async fn run(&self, who: &str, text: &str) -> Reply {
        self.router.handle(self.invocation(who, text)).await
    }

    /// Runs a command with an idempotency key (as Slack and Discord send).
    pub async fn run_keyed(&self, who: &str, text: &str, key: &str) -> Reply {
        let mut inv = self.invocation(who, text);
        inv.idempotency_key = Some(key.into());
        self.router.handle(inv).await
    }

    /// `oncall serve`'s HTTP app for this router on a loopback port (the
    /// provider webhooks and alert intake, no chat adapters); its base URL.
    pub async fn serve_http(&self) -> String {
        let app = oncall::server::app(self.router.clone(), true, None, None);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        base
    }

    /// Where incident `id`'s latest escalation is.
    pub async fn escalation_state(&self, id: i64) -> oncall::store::EscalationState {
        self.router
            .store()
            .escalation_of(id)
            .await
            .unwrap()
            .expect("the incident has an escalation")
            .state
    }

    /// The reply stored for an idempotency key, as JSON.
    pub async fn stored_reply(&self, key: &str) -> Option<String> {
        self.router.store().key_reply(key).await.unwrap()
    }

    pub async fn deployment(&self, ns: &str, name: &str) -> Deployment {
        Api::<Deployment>::namespaced(self.client.clone(), ns)
            .get(name)
            .await
            .unwrap()
    }

    pub async fn replicas(&self, ns: &str, name: &str) -> i32 {
        self.deployment(ns, name)
            .await
            .spec
            .unwrap()
            .replicas
            .unwrap()
    }

    pub async fn generation(&self, ns: &str, name: &str) -> i64 {
        self.deployment(ns, name).await.metadata.generation.unwrap()
    }

    /// Names of a service's pods (by its `app` label), sorted.
    pub async fn pods_of(&self, ns: &str, app: &str) -> Vec<String> {
        let api: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(self.client.clone(), ns);
        let mut names: Vec<String> = api
            .list(&kube::api::ListParams::default().labels(&format!("app={app}")))
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|p| p.metadata.name)
            .collect();
        names.sort();
        names
    }

    /// Patches a deployment directly (failure injection, test setup).
    pub async fn patch_deployment(&self, ns: &str, name: &str, patch: serde_json::Value) {
        Api::<Deployment>::namespaced(self.client.clone(), ns)
            .patch(
                name,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Strategic(patch),
            )
            .await
            .unwrap();
    }

    /// Waits until a deployment's rollout is complete.
    pub async fn rolled_out(&self, ns: &str, name: &str) {
        eventually(&format!("{name} rolled out"), async || {
            let d = self.deployment(ns, name).await;
            oncall_ops::kubectl::RolloutStatus::of(&d).state
                == oncall_ops::kubectl::RolloutState::Complete
        })
        .await;
    }

    pub async fn history(&self) -> Vec<oncall::store::InvocationRow> {
        self.router
            .store()
            .history(&oncall::store::HistoryQuery {
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap()
    }
}

/// How long a test waits for something that must happen. Generous: a
/// deadline for a busy machine, never a race a slow one loses.
pub const DEADLINE: Duration = Duration::from_secs(120);

/// Polls until `f` holds, or fails the test after [`DEADLINE`].
/// The store a harness runs on: a SQLite file at `path`, or, with
/// `ONCALL_TEST_STORE=postgres`, a fresh database on the tests' PostgreSQL
/// server (the same tests, the other store).
pub async fn test_store(path: &std::path::Path) -> Store {
    match std::env::var("ONCALL_TEST_STORE").as_deref() {
        Ok("postgres") => {
            let server = postgres::server().expect("ONCALL_TEST_STORE=postgres needs PostgreSQL");
            Store::open_postgres(&server.fresh_database().await)
                .await
                .unwrap()
        }
        _ => Store::open(path).await.unwrap(),
    }
}

/// A simulated cluster with test timing, serving on a loopback port.
pub async fn fast_sim() -> kube_sim::RunningSim {
    kube_sim::Simulator::new(kube_sim::SimConfig::fast())
        .unwrap()
        .serve("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

pub async fn eventually<F: AsyncFnMut() -> bool>(what: &str, mut f: F) {
    let deadline = std::time::Instant::now() + DEADLINE;
    while std::time::Instant::now() < deadline {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}
