//! 1,000 Alertmanager deliveries a second into `POST /alerts/alertmanager`
//! (issue 16's target: p99 answer ≤ 20 ms, nothing lost). A benchmark,
//! never a timed test: `cargo bench -p oncall --bench alerts`, or
//! `bench/run` (`SKIP_ALERTS=1` leaves it out).
//!
//! The receiver is `oncall::server::app` over loopback HTTP with a real
//! SQLite file (WAL, `synchronous=FULL`) and the example config; the engine
//! and the pager run too, as in `oncall serve`. The load is open-loop (a
//! request every millisecond whatever the answers do, so a slow answer can't
//! hide by slowing the load) for `SECONDS` (default 10) over 50 alert groups:
//! 30% a new alert joining its group (the group's first opens an incident
//! that pages), 50% a repeat of an alert already sent, 20% a resolve.

use std::sync::Arc;
use std::time::{Duration, Instant};

use oncall::config::{Config, EXAMPLE};
use oncall::router::{Clock, Router};
use oncall::store::Store;
use serde_json::json;

const GROUPS: usize = 50;
const RATE: u64 = 1000;

fn percentile(sorted: &[u64], p: f64) -> u64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn delivery(group: usize, fingerprint: u64, status: &str) -> String {
    let name = format!("BenchAlert{group}");
    json!({
        "version": "4",
        "groupKey": format!("{{}}:{{alertname=\"{name}\"}}"),
        "status": status,
        "receiver": "oncall",
        "groupLabels": {"alertname": name},
        "commonLabels": {"alertname": name, "severity": "critical"},
        "commonAnnotations": {"summary": "bench"},
        "externalURL": "http://alertmanager:9093",
        "truncatedAlerts": 0,
        "alerts": [{
            "status": status,
            "labels": {"alertname": name, "severity": "critical", "instance": format!("i-{fingerprint}")},
            "annotations": {"summary": "bench"},
            "startsAt": "2026-12-03T10:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus:9090/graph",
            "fingerprint": format!("{fingerprint:016x}"),
        }],
    })
    .to_string()
}

#[tokio::main]
async fn main() {
    let seconds: u64 = std::env::var("SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    std::env::set_var(oncall::alerts::TOKEN_ENV, "bench-token");
    let mut config = Config::parse(EXAMPLE, "bench").expect("config");
    let dir = tempfile::tempdir().unwrap();
    config.database.path = dir.path().join("oncall.db");
    let store = Store::open(&config.database.path).await.expect("store");
    let client =
        kube::Client::try_from(kube::Config::new("http://127.0.0.1:9".parse().unwrap())).unwrap();
    let router = Router::new(
        config,
        store,
        oncall_ops::Clusters::single(client),
        Clock::System,
    );
    let sinks = Arc::new(oncall::chat::Sinks {
        console: Some(oncall::chat::ConsoleSink::default()),
        ..Default::default()
    });
    oncall::escalation::pager::spawn(router.clone(), sinks);
    let app = oncall::server::app(router.clone(), true, None, None);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/alerts/alertmanager",
        listener.local_addr().unwrap()
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();

    let total = RATE * seconds;
    let mut sent: Vec<u64> = Vec::new(); // fingerprints sent, for repeats and resolves
    let mut tasks = Vec::with_capacity(total as usize);
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / RATE));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut rng: u64 = 0x9e37_79b9_7f4a_7c15;
    for n in 0..total {
        tick.tick().await;
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let roll = rng % 100;
        let body = if roll < 30 || sent.is_empty() {
            let fp = n;
            sent.push(fp);
            delivery((fp as usize) % GROUPS, fp, "firing")
        } else {
            let fp = sent[(rng / 100) as usize % sent.len()];
            let status = if roll < 80 { "firing" } else { "resolved" };
            delivery((fp as usize) % GROUPS, fp, status)
        };
        let http = http.clone();
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let ok = http
                .post(&url)
                .header("authorization", "Bearer bench-token")
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            (t.elapsed().as_micros() as u64, ok)
        }));
    }
    let mut latencies = Vec::with_capacity(tasks.len());
    let mut failed = 0;
    for t in tasks {
        let (us, ok) = t.await.unwrap();
        latencies.push(us);
        if !ok {
            failed += 1;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    let stored: i64 = {
        let conn = rusqlite::Connection::open(dir.path().join("oncall.db")).unwrap();
        conn.query_row("SELECT COUNT(*) FROM alerts", [], |r| r.get(0))
            .unwrap()
    };
    let new_alerts = sent.len();
    println!(
        "alerts: {} deliveries in {elapsed:.1} s ({:.0}/s), {failed} not answered 2xx; answer p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (target p99 ≤ 20 ms); {stored}/{new_alerts} distinct alerts stored",
        latencies.len(),
        latencies.len() as f64 / elapsed,
        percentile(&latencies, 0.50) as f64 / 1000.0,
        percentile(&latencies, 0.99) as f64 / 1000.0,
        *latencies.last().unwrap() as f64 / 1000.0,
    );
    router.supervisor().shutdown(Duration::from_secs(5)).await;
}
