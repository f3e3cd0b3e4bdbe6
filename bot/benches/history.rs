//! `history --service X --since 1h` against a history of 1,000,000 rows
//! (issue 11's target: ≤ 10 ms), through the store's own query, with its
//! `EXPLAIN QUERY PLAN`. Run by `bench/run` (or `cargo bench -p oncall
//! --bench history`); a benchmark, never a timed test.
//!
//! The rows are written straight into a real SQLite file (the store's own
//! schema, migrated by `Store::open`): a year of traffic over 10 services
//! and 50 people, the newest hour holding a few hundred rows.

use std::time::{Duration, Instant};

use oncall::store::{HistoryQuery, Store};

const ROWS: i64 = 1_000_000;
const RUNS: usize = 200;

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("oncall.db");
    let store = Store::open(&path).await.expect("the store opens");
    let now_ms: i64 = 1_800_000_000_000;
    let year_ms: i64 = 365 * 86_400_000;
    let fill = Instant::now();
    {
        let mut conn = rusqlite::Connection::open(&path).expect("open");
        let tx = conn.transaction().expect("a transaction");
        {
            let mut insert = tx
                .prepare(
                    "INSERT INTO invocations (received_at, platform, channel, principal, text, verb, service,
                                              decision, outcome, duration_ms)
                     VALUES (?1, 'slack', 'C0OPS', ?2, ?3, 'status', ?4, 'allow', 'info', 3)",
                )
                .expect("prepare");
            for i in 0..ROWS {
                // Evenly over the year, oldest first.
                let at = now_ms - year_ms + i * (year_ms / ROWS);
                let service = format!("service-{}", i % 10);
                insert
                    .execute(rusqlite::params![
                        at,
                        format!("slack:U{:04}", i % 50),
                        format!("status {service}"),
                        service
                    ])
                    .expect("insert");
            }
        }
        tx.commit().expect("commit");
    }
    println!(
        "filled {ROWS} rows in {:.1} s",
        fill.elapsed().as_secs_f64()
    );
    let query = HistoryQuery {
        principal: None,
        service: Some("service-3".into()),
        since_ms: Some(now_ms - 3_600_000),
        limit: 20,
    };
    println!(
        "plan: {}",
        store.history_plan(&query).await.expect("plan").join(" / ")
    );
    let mut times: Vec<Duration> = Vec::with_capacity(RUNS);
    let mut found = 0;
    for _ in 0..RUNS {
        let t = Instant::now();
        found = store.history(&query).await.expect("history").len();
        times.push(t.elapsed());
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "| history --service X --since 1h, {ROWS} rows ({found} shown) | median {:.2} ms | p99 {:.2} ms | max {:.2} ms | target ≤ 10 ms |",
        ms(times[RUNS / 2]),
        ms(times[RUNS * 99 / 100]),
        ms(times[RUNS - 1])
    );
}
