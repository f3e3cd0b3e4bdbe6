//! A simulated Kubernetes API server over real HTTP, for tests and the demo.
//!
//! No real cluster can be had where oncall is developed and tested, and a fake
//! at the Rust-trait level would leave the kube-rs client path untested. So
//! this crate speaks the Kubernetes REST API on loopback: the bot's real kube
//! client talks to it exactly as it would to an API server. Objects live in an
//! in-memory [`store::Store`]; [`controller`] converges them over time like the
//! real controllers; the cluster is seeded from YAML manifests (by default the
//! services of the operations runbooks, [`RUNBOOK_SEED`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), kube_sim::SimError> {
//! let sim = kube_sim::Simulator::new(kube_sim::SimConfig::default())?;
//! let running = sim.serve("127.0.0.1:0".parse().unwrap()).await?;
//! std::fs::write("kubeconfig", kube_sim::kubeconfig_yaml(&running.url()))?;
//! # Ok(()) }
//! ```

pub mod api;
pub mod controller;
pub mod errors;
pub mod health;
pub mod patch;
pub mod resources;
pub mod store;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::task::JoinHandle;

pub use controller::{Timing, FAIL_ANNOTATION, REVISION};
use store::Store;

/// The manifests of the runbooks' services: the default seed.
pub const RUNBOOK_SEED: &str = include_str!("../seed/runbooks.yaml");

/// How to build the simulated cluster.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Multi-document YAML of Namespaces, Deployments, HPAs, CronJobs, …
    pub seed: String,
    /// How often the controllers run.
    pub tick: Duration,
    /// How long a new pod takes to become Ready.
    pub pod_start: Duration,
    /// Whether metrics.k8s.io is served (metrics-server installed).
    pub metrics: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: RUNBOOK_SEED.to_string(),
            tick: Duration::from_millis(250),
            pod_start: Duration::from_secs(3),
            metrics: true,
        }
    }
}

impl SimConfig {
    /// Fast timing for tests: pods start in 300ms.
    pub fn fast() -> Self {
        SimConfig {
            tick: Duration::from_millis(25),
            pod_start: Duration::from_millis(300),
            ..SimConfig::default()
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("seed document {index}: {message}")]
    Seed { index: usize, message: String },
    #[error("could not listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// A simulated cluster, not yet serving.
pub struct Simulator {
    store: Arc<Mutex<Store>>,
    config: SimConfig,
}

impl Simulator {
    pub fn new(config: SimConfig) -> Result<Self, SimError> {
        let mut store = Store::default();
        store.metrics_enabled = config.metrics;
        load_seed(&mut store, &config.seed)?;
        // Seeded workloads start out converged, as a running cluster would be.
        let timing = Timing {
            pod_start: Duration::ZERO,
            crash_every: Duration::from_secs(30),
        };
        let mut state = controller::ControllerState::default();
        for _ in 0..4 {
            controller::tick(&mut store, &mut state, &timing);
        }
        Ok(Simulator {
            store: Arc::new(Mutex::new(store)),
            config,
        })
    }

    /// Starts the API server and the controllers; they stop when the returned
    /// [`RunningSim`] is dropped.
    pub async fn serve(self, addr: SocketAddr) -> Result<RunningSim, SimError> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| SimError::Listen { addr, source })?;
        let addr = listener.local_addr()?;
        let app = router(self.store.clone());
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!("simulated API server stopped: {e}");
            }
        });
        let store = self.store.clone();
        let timing = Timing {
            pod_start: self.config.pod_start,
            crash_every: Duration::from_secs(10).max(self.config.pod_start * 4),
        };
        let tick = self.config.tick;
        let controllers = tokio::spawn(async move {
            let mut state = controller::ControllerState::default();
            let mut interval = tokio::time::interval(tick);
            loop {
                interval.tick().await;
                let mut s = store.lock().expect("store lock");
                controller::tick(&mut s, &mut state, &timing);
            }
        });
        Ok(RunningSim {
            addr,
            store: self.store,
            tasks: vec![server, controllers],
        })
    }
}

/// The HTTP routes of the simulated API server.
pub fn router(store: api::Shared) -> axum::Router {
    axum::Router::new()
        .route("/version", axum::routing::get(api::version))
        .route(
            "/sim/health/{ns}/{name}/{*rest}",
            axum::routing::get(health::handle),
        )
        .fallback(api::handle)
        .with_state(store)
}

/// A serving simulator.
pub struct RunningSim {
    addr: SocketAddr,
    store: Arc<Mutex<Store>>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningSim {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Direct access to the objects, for tests' assertions and failure
    /// injection. Hold it briefly: the controllers wait for it.
    pub fn with_store<T>(&self, f: impl FnOnce(&mut Store) -> T) -> T {
        let mut s = self.store.lock().expect("store lock");
        f(&mut s)
    }

    /// A JSON object, by resource type, namespace and name.
    pub fn object(&self, rt: resources::ResourceType, ns: &str, name: &str) -> Option<Value> {
        self.with_store(|s| s.get(rt, ns, name).cloned())
    }

    /// Appends a line to a pod container's current log.
    pub fn append_log(&self, ns: &str, pod: &str, container: &str, line: &str) {
        self.with_store(|s| {
            s.logs
                .entry((ns.to_string(), pod.to_string()))
                .or_default()
                .current
                .entry(container.to_string())
                .or_default()
                .push((jiff::Timestamp::now(), line.to_string()));
        });
    }

    /// Turns the metrics API on or off (metrics-server installed or not).
    pub fn set_metrics(&self, enabled: bool) {
        self.with_store(|s| s.metrics_enabled = enabled);
    }
}

impl Drop for RunningSim {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn load_seed(store: &mut Store, seed: &str) -> Result<(), SimError> {
    use serde::Deserialize;
    for (index, doc) in serde_yaml::Deserializer::from_str(seed).enumerate() {
        let value = Value::deserialize(doc).map_err(|e| SimError::Seed {
            index,
            message: e.to_string(),
        })?;
        if value.is_null() {
            continue;
        }
        let api_version = value["apiVersion"].as_str().unwrap_or("");
        let kind = value["kind"].as_str().unwrap_or("");
        let rt = resources::by_kind(api_version, kind).ok_or_else(|| SimError::Seed {
            index,
            message: format!("unsupported kind {api_version}/{kind}"),
        })?;
        let ns = value["metadata"]["namespace"]
            .as_str()
            .unwrap_or(if rt.namespaced { "default" } else { "" })
            .to_string();
        store
            .create_internal(rt, &ns, value)
            .map_err(|e| SimError::Seed {
                index,
                message: e.message,
            })?;
    }
    Ok(())
}

/// A kubeconfig whose current context points at the simulator.
pub fn kubeconfig_yaml(url: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: oncall-sim
  cluster:
    server: {url}
contexts:
- name: oncall-sim
  context:
    cluster: oncall-sim
    user: oncall-sim
    namespace: default
current-context: oncall-sim
users:
- name: oncall-sim
  user: {{}}
"
    )
}
