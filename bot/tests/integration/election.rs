//! The leader Lease against the simulated API server: one leader among
//! candidates; a leader that dies is replaced once the lease runs out by the
//! follower's own clock; one that shuts down hands over at once; one cut off
//! from the API stops leading within the renew deadline.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use oncall::election::{ElectionConfig, Elector, Role};
use oncall::metrics::Metrics;
use tokio_util::sync::CancellationToken;

const LEASE: Duration = Duration::from_millis(1500);
const RENEW: Duration = Duration::from_millis(1000);
const RETRY: Duration = Duration::from_millis(200);

struct Candidate {
    identity: String,
    role: tokio::sync::watch::Receiver<Role>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    terms: Arc<Mutex<Vec<CancellationToken>>>,
    metrics: Metrics,
}

fn client(sim: &kube_sim::RunningSim) -> kube::Client {
    kube::Client::try_from(kube::Config::new(sim.url().parse().unwrap())).unwrap()
}

fn campaign(sim: &kube_sim::RunningSim, identity: &str) -> Candidate {
    let config = ElectionConfig {
        lease_duration: LEASE,
        renew_deadline: RENEW,
        retry_period: RETRY,
        ..ElectionConfig::new("default", "oncall-leader", identity)
    };
    config.validate().unwrap();
    let metrics = Metrics::new();
    let elector = Elector::new(client(sim), config, metrics.clone());
    let role = elector.subscribe();
    let stop = CancellationToken::new();
    let terms = Arc::new(Mutex::new(Vec::new()));
    let seen = terms.clone();
    let task = tokio::spawn(elector.run(stop.clone(), move |term| seen.lock().unwrap().push(term)));
    Candidate {
        identity: identity.into(),
        role,
        stop,
        task,
        terms,
        metrics,
    }
}

impl Candidate {
    fn leads(&self) -> bool {
        *self.role.borrow() == Role::Leader
    }

    /// The current term's token (the last one begun).
    fn term(&self) -> CancellationToken {
        self.terms
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("a term began")
    }
}

async fn until(what: &str, within: Duration, f: impl Fn() -> bool) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    start.elapsed()
}

fn holder(sim: &kube_sim::RunningSim) -> Option<String> {
    sim.object(kube_sim::resources::LEASES, "default", "oncall-leader")
        .and_then(|l| l["spec"]["holderIdentity"].as_str().map(String::from))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leads_and_a_dead_leader_is_replaced_when_its_lease_runs_out() {
    let sim = crate::common::fast_sim().await;
    let a = campaign(&sim, "replica-a");
    until("a leads", Duration::from_secs(10), || a.leads()).await;
    let b = campaign(&sim, "replica-b");
    until("b follows a", Duration::from_secs(10), || {
        *b.role.borrow()
            == Role::Follower {
                leader: "replica-a".into(),
            }
    })
    .await;
    // Over several renewals, never two leaders, and the Lease stays a's.
    for _ in 0..40 {
        assert!(!(a.leads() && b.leads()), "two leaders");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(a.leads() && !b.leads());
    assert_eq!(holder(&sim).as_deref(), Some("replica-a"));
    assert_eq!(a.metrics.leader.get(), 1);
    assert_eq!(b.metrics.leader.get(), 0);

    // a dies: no release, no more renewals.
    a.task.abort();
    let died = Instant::now();
    until("b takes over", LEASE * 4, || b.leads()).await;
    let took = died.elapsed();
    // Not before the lease could have run out by b's clock (a renewed at
    // most a retry period before it died)…
    assert!(
        took >= LEASE - RETRY * 2,
        "took over after {took:?}, before the lease ran out"
    );
    assert_eq!(holder(&sim).as_deref(), Some("replica-b"));
    assert_eq!(b.metrics.leader_transitions.get(), 1);
    let lease = sim
        .object(kube_sim::resources::LEASES, "default", "oncall-leader")
        .unwrap();
    assert_eq!(lease["spec"]["leaseTransitions"], 1, "{lease}");
    b.stop.cancel();
    let _ = (a.identity, b.identity);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_shuts_down_releases_the_lease_and_its_term_ends() {
    let sim = crate::common::fast_sim().await;
    let a = campaign(&sim, "replica-a");
    until("a leads", Duration::from_secs(10), || a.leads()).await;
    let b = campaign(&sim, "replica-b");
    until("b follows", Duration::from_secs(10), || {
        matches!(*b.role.borrow(), Role::Follower { .. })
    })
    .await;
    let term = a.term();
    a.stop.cancel();
    a.task.await.unwrap();
    assert!(term.is_cancelled(), "the term's work is told to stop");
    assert_eq!(a.metrics.leader.get(), 0);
    // Released: b needs no lease duration to take over.
    let took = until("b takes over", LEASE * 4, || b.leads()).await;
    assert!(
        took < LEASE,
        "a released lease is taken within retries, took {took:?}"
    );
    b.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_the_api_stops_leading_within_the_renew_deadline() {
    let sim = crate::common::fast_sim().await;
    let a = campaign(&sim, "replica-a");
    until("a leads", Duration::from_secs(10), || a.leads()).await;
    let b = campaign(&sim, "replica-b");
    until("b follows", Duration::from_secs(10), || {
        matches!(*b.role.borrow(), Role::Follower { .. })
    })
    .await;
    let term = a.term();
    // The API server answers 500 to every Lease request from now on. The
    // leader checks its deadline after each retry, so it stops by the
    // deadline plus one retry period (and scheduling).
    sim.with_store(|s| s.failing_resources.push("leases".into()));
    let cut = Instant::now();
    until("a's term ends", RENEW * 4, || term.is_cancelled()).await;
    let stopped = cut.elapsed();
    assert!(
        stopped <= RENEW + RETRY * 3,
        "stopped leading {stopped:?} after the cut; the deadline is {RENEW:?}"
    );
    assert!(!a.leads());
    assert_eq!(a.metrics.leader.get(), 0);
    // Nobody can win a Lease nobody can write.
    tokio::time::sleep(LEASE).await;
    assert!(!a.leads() && !b.leads());
    // The API comes back: exactly one leads again.
    sim.with_store(|s| s.failing_resources.clear());
    until("someone leads", LEASE * 4, || a.leads() || b.leads()).await;
    assert!(!(a.leads() && b.leads()));
    a.stop.cancel();
    b.stop.cancel();
}

async fn role_of(base: &str) -> String {
    let r = reqwest::get(format!("{base}/readyz")).await.unwrap();
    let v: serde_json::Value = r.json().await.unwrap();
    v["election"]["role"].as_str().unwrap_or("").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_serve_processes_elect_one_leader_and_the_survivor_takes_over() {
    use crate::common::fake_slack::FakeSlack;
    use crate::common::serve::Setup;
    let sim = crate::common::fast_sim().await;
    let slack = FakeSlack::start().await;
    let election = "[election]\nenabled = true\nnamespace = \"default\"\nlease_duration = \"1500ms\"\nrenew_deadline = \"1s\"\nretry_period = \"200ms\"\n";
    let one = Setup::new(&sim.url(), "election-secret", &[], election);
    let two = Setup::new(&sim.url(), "election-secret", &[], election);
    let mut first = one.serve(&slack, "one.log").await;
    let mut second = two.serve(&slack, "two.log").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let (mut a, mut b);
    loop {
        a = role_of(&first.base).await;
        b = role_of(&second.base).await;
        if (a == "leader") ^ (b == "leader") && (a == "follower" || b == "follower") {
            break;
        }
        assert!(Instant::now() < deadline, "no single leader: {a} / {b}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let metrics = |base: String| async move {
        reqwest::get(format!("{base}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let (leader, survivor) = if a == "leader" {
        (&mut first, &second)
    } else {
        (&mut second, &first)
    };
    assert!(metrics(leader.base.clone())
        .await
        .contains("oncall_leader 1"));
    assert!(metrics(survivor.base.clone())
        .await
        .contains("oncall_leader 0"));
    // SIGKILL the leader: the survivor leads once the lease runs out.
    leader.kill_9();
    let deadline = Instant::now() + Duration::from_secs(30);
    while role_of(&survivor.base).await != "leader" {
        assert!(
            Instant::now() < deadline,
            "the survivor never took over:\n{}",
            survivor.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let text = metrics(survivor.base.clone()).await;
    assert!(text.contains("oncall_leader 1"), "{text}");
    assert!(text.contains("oncall_leader_transitions_total 1"), "{text}");
}
