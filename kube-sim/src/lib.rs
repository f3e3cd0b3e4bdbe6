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

pub mod access;
pub mod api;
pub mod controller;
pub mod discovery;
pub mod errors;
pub mod health;
pub mod patch;
pub mod resources;
pub mod store;
pub mod table;
pub mod watch;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::task::JoinHandle;

pub use controller::{ControllerState, Timing, FAIL_ANNOTATION, REVISION};
use store::Store;

/// The manifests of the runbooks' services: the default seed.
pub const RUNBOOK_SEED: &str = include_str!("../seed/runbooks.yaml");

/// How to build the simulated cluster.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Multi-document YAML of Namespaces, Deployments, HPAs, CronJobs, …
    pub seed: String,
    /// How often the controllers run a pass when nothing changed and nothing
    /// is due (a safety net: writes and time-based work wake them anyway).
    pub resync: Duration,
    /// How long a new pod takes to become Ready.
    pub pod_start: Duration,
    /// How long an event lives after its last occurrence.
    pub event_ttl: Duration,
    /// Whether metrics.k8s.io is served (metrics-server installed).
    pub metrics: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: RUNBOOK_SEED.to_string(),
            resync: Duration::from_secs(10),
            pod_start: Duration::from_secs(3),
            event_ttl: Duration::from_secs(3600),
            metrics: true,
        }
    }
}

impl SimConfig {
    /// Fast timing for tests: pods start in 300ms.
    pub fn fast() -> Self {
        SimConfig {
            resync: Duration::from_secs(1),
            pod_start: Duration::from_millis(300),
            ..SimConfig::default()
        }
    }

    fn timing(&self) -> Timing {
        Timing {
            pod_start: self.pod_start,
            crash_every: Duration::from_secs(10).max(self.pod_start * 4),
            event_ttl: self.event_ttl,
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

/// The store, shared by the API server and the controllers, with the signal
/// that wakes the controllers when something was written.
#[derive(Debug, Default)]
pub struct SharedStore {
    store: Mutex<Store>,
    changed: Condvar,
    stopped: AtomicBool,
}

impl SharedStore {
    fn new(store: Store) -> Self {
        SharedStore {
            store: Mutex::new(store),
            ..Default::default()
        }
    }

    /// The store, locked. Hold it briefly: the API and the controllers share it.
    pub fn lock(&self) -> MutexGuard<'_, Store> {
        // A panic while holding the lock leaves plain data behind; keep serving.
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes the controllers: something may have changed.
    pub fn notify(&self) {
        self.changed.notify_all();
    }

    fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.notify();
    }
}

/// Passes run back to back while they keep changing things (a write
/// cascades: Deployment → ReplicaSet → Pods → status), at most this many.
const MAX_PASSES: usize = 8;

/// Runs passes until the cluster stops changing (or the limit).
fn converge(store: &mut Store, state: &mut controller::ControllerState, timing: &Timing) {
    for _ in 0..MAX_PASSES {
        let before = store.resource_version();
        controller::tick(store, state, timing);
        if store.resource_version() == before {
            break;
        }
    }
}

/// The controllers' loop, on a thread of its own so that it can never
/// starve the runtime serving the API (or a test's current-thread runtime).
/// It runs a pass when something was written, when time-based work is due,
/// and every `resync`; a late pass is simply late, never followed by a burst
/// of catch-up passes.
fn run_controllers(shared: Arc<SharedStore>, timing: Timing, resync: Duration) {
    let mut state = controller::ControllerState::default();
    let mut seen: Option<u64> = None;
    let mut next_due: Option<Instant> = None;
    let mut last_pass = Instant::now();
    let mut guard = shared.lock();
    loop {
        if shared.stopped.load(Ordering::SeqCst) {
            return;
        }
        let now = Instant::now();
        let changed = seen != Some(guard.resource_version());
        let due = next_due.is_some_and(|d| d <= now) || now >= last_pass + resync;
        if changed || due {
            next_due = None;
            for pass in 0..MAX_PASSES {
                let before = guard.resource_version();
                if let Some(at) = controller::tick(&mut guard, &mut state, &timing) {
                    let wait = at.duration_since(jiff::Timestamp::now()).unsigned_abs();
                    // A millisecond late, so the work is surely due on waking.
                    next_due = Some(Instant::now() + wait + Duration::from_millis(1));
                }
                if guard.resource_version() == before || pass + 1 == MAX_PASSES {
                    break;
                }
                // Let API requests in between passes.
                drop(guard);
                std::thread::yield_now();
                guard = shared.lock();
            }
            seen = Some(guard.resource_version());
            last_pass = Instant::now();
            continue;
        }
        let wake = next_due.map_or(last_pass + resync, |d| d.min(last_pass + resync));
        let timeout = wake.saturating_duration_since(now);
        guard = shared
            .changed
            .wait_timeout(guard, timeout)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
}

/// A simulated cluster, not yet serving.
pub struct Simulator {
    store: Store,
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
            ..config.timing()
        };
        let mut state = controller::ControllerState::default();
        converge(&mut store, &mut state, &timing);
        Ok(Simulator { store, config })
    }

    /// The store as seeded, for benchmarks and tests of the controllers.
    pub fn store_mut(&mut self) -> &mut Store {
        &mut self.store
    }

    /// Starts the API server and the controllers; they stop when the returned
    /// [`RunningSim`] is dropped.
    pub async fn serve(self, addr: SocketAddr) -> Result<RunningSim, SimError> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| SimError::Listen { addr, source })?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(SharedStore::new(self.store));
        let app = router(shared.clone());
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!("simulated API server stopped: {e}");
            }
        });
        let timing = self.config.timing();
        let resync = self.config.resync;
        let for_thread = shared.clone();
        let controllers = std::thread::Builder::new()
            .name("kube-sim-controllers".into())
            .spawn(move || run_controllers(for_thread, timing, resync))?;
        Ok(RunningSim {
            addr,
            store: shared,
            server,
            controllers: Some(controllers),
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
    store: Arc<SharedStore>,
    server: JoinHandle<()>,
    controllers: Option<std::thread::JoinHandle<()>>,
}

impl RunningSim {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Direct access to the objects, for tests' assertions and failure
    /// injection. Hold it briefly: the controllers wait for it. The
    /// controllers are woken afterwards, as after an API write.
    pub fn with_store<T>(&self, f: impl FnOnce(&mut Store) -> T) -> T {
        let out = f(&mut self.store.lock());
        self.store.notify();
        out
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
        self.server.abort();
        self.store.stop();
        if let Some(t) = self.controllers.take() {
            let _ = t.join();
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
