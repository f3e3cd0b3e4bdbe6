//! 10,000 escalations due in the same second (issue 13's target: every page
//! handed to the provider within 1 s of its due time at p99). A benchmark,
//! never a timed test: run by `bench/run` or `cargo bench -p oncall --bench
//! escalation`.
//!
//! The escalations are written straight into a real SQLite file (the
//! store's own schema): 10,000 incidents, each with an active escalation
//! whose first step, a PagerDuty page, is due at the same instant a few
//! seconds ahead. The engine and the pager then run as in `oncall serve`
//! (their two supervised loops, the default tick) against a fake PagerDuty
//! Events API on loopback that answers 202 and records when each dedup key
//! first arrived. Latency = arrival − due time. With `PHASES=1` the tick
//! and the drain run one after the other by hand instead, each timed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use oncall::config::{Config, EXAMPLE};
use oncall::router::{Clock, Router};
use oncall::store::Store;

const ESCALATIONS: i64 = 10_000;

type Arrivals = Arc<Mutex<HashMap<String, i64>>>;

async fn enqueue(State(arrivals): State<Arrivals>, body: Bytes) -> StatusCode {
    let at = jiff::Timestamp::now().as_millisecond();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    if let Some(key) = v["dedup_key"].as_str() {
        arrivals
            .lock()
            .unwrap()
            .entry(key.to_string())
            .or_insert(at);
    }
    StatusCode::ACCEPTED
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() {
    let arrivals: Arrivals = Default::default();
    let app = axum::Router::new()
        .route("/v2/enqueue", axum::routing::post(enqueue))
        .with_state(arrivals.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    std::env::set_var("BENCH_PD_KEY", "R0UT1NGKEY0123456789abcdef012345");

    let tail = format!(
        r#"
[escalation.pagerduty]
url = "{url}"
services.bench = {{ routing_key_env = "BENCH_PD_KEY" }}

[[escalation.policies]]
name = "bench"
tiers = [{{ name = "on call", targets = ["pagerduty:bench"] }}]
"#
    );
    let mut config = Config::parse(&format!("{EXAMPLE}\n{tail}"), "bench").expect("config");
    let dir = tempfile::tempdir().unwrap();
    config.database.path = dir.path().join("oncall.db");
    let store = Store::open(&config.database.path).await.expect("store");
    let snapshot = serde_json::to_string(&config.escalation.snapshot("bench").unwrap()).unwrap();
    let due_ms = jiff::Timestamp::now().as_millisecond() + 3_000;
    let fill = Instant::now();
    {
        let mut conn = rusqlite::Connection::open(&config.database.path).unwrap();
        let tx = conn.transaction().unwrap();
        {
            let mut incident = tx
                .prepare(
                    "INSERT INTO incidents (id, title, severity, state, declared_at, declared_by,
                                            platform, declared_in, last_update_at)
                     VALUES (?1, ?2, 'SEV-1', 'investigating', ?3, 'cli:bench', 'cli', 'console', ?3)",
                )
                .unwrap();
            let mut escalation = tx
                .prepare(
                    "INSERT INTO escalations (incident_id, policy, snapshot, state, next_at, started_at)
                     VALUES (?1, 'bench', ?2, 'active', ?3, ?3)",
                )
                .unwrap();
            for id in 1..=ESCALATIONS {
                incident
                    .execute(rusqlite::params![id, format!("incident {id}"), due_ms])
                    .unwrap();
                escalation
                    .execute(rusqlite::params![id, snapshot, due_ms])
                    .unwrap();
            }
        }
        tx.commit().unwrap();
    }
    println!(
        "escalation: {ESCALATIONS} escalations due at one instant (written in {:.1} s); tick {:?}",
        fill.elapsed().as_secs_f64(),
        config.escalation.tick
    );
    // The pager needs no cluster; a client that is never called.
    let client =
        kube::Client::try_from(kube::Config::new("http://127.0.0.1:9".parse().unwrap())).unwrap();
    let router = Router::new(
        config,
        store,
        oncall_ops::Clusters::single(client),
        Clock::System,
    );
    if std::env::var("PHASES").is_ok() {
        while jiff::Timestamp::now().as_millisecond() < due_ms {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let t = Instant::now();
        let done = oncall::escalation::engine::tick(&router).await.unwrap();
        println!("tick: {:?} for {done:?}", t.elapsed());
        let p = oncall::escalation::pager::Pager::new(
            router.clone(),
            Arc::new(oncall::chat::Sinks::default()),
        );
        let t = Instant::now();
        let d = p.drain().await.unwrap();
        println!("drain: {:?} for {d:?}", t.elapsed());
    }
    oncall::escalation::pager::spawn(router.clone(), Arc::new(oncall::chat::Sinks::default()));

    let deadline = Instant::now() + Duration::from_secs(120);
    while arrivals.lock().unwrap().len() < ESCALATIONS as usize && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut latencies: Vec<i64> = arrivals
        .lock()
        .unwrap()
        .values()
        .map(|at| at - due_ms)
        .collect();
    latencies.sort();
    let got = latencies.len();
    println!(
        "escalation: {got}/{ESCALATIONS} pages at the provider; after their due time: p50 {} ms, p99 {} ms, max {} ms (target p99 ≤ 1000 ms)",
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or(-1),
    );
    router.supervisor().shutdown(Duration::from_secs(5)).await;
}
