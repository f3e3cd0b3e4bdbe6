//! The benchmark's load generator: correctly signed Slack slash commands,
//! each with its own trigger id, at a fixed concurrency (or a fixed rate),
//! for a fixed time; latencies in an HDR histogram.
//!
//! The same generator drives every server of `bench/run` (oncall, the bare
//! axum ceiling, @slack/bolt, slack-bolt for Python) in one run, so their
//! numbers compare. It prints one JSON line: requests, errors, req/s and
//! latency percentiles in milliseconds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Parser;
use hdrhistogram::Histogram;
use hmac::{Hmac, Mac};
use sha2::Sha256;

#[derive(Parser, Debug, Clone)]
#[command(about = "Signed Slack slash commands at a server, measured")]
struct Args {
    /// Where slash commands are POSTed (`http://127.0.0.1:8080/slack/commands`);
    /// repeated, the requests go round the servers in turn (replicas).
    #[arg(long, required = true)]
    url: Vec<String>,
    /// The Slack signing secret the server verifies with.
    #[arg(long, env = "SLACK_SIGNING_SECRET")]
    secret: String,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// A fixed rate (requests per second) instead of as fast as answered.
    #[arg(long)]
    rate: Option<u64>,
    /// How long to send.
    #[arg(long, default_value = "8s", value_parser = humantime_like)]
    duration: Duration,
    /// Sent first and not measured.
    #[arg(long, default_value = "1s", value_parser = humantime_like)]
    warmup: Duration,
    /// The command text; `{i}` is replaced by the request's number (so
    /// `scale backend {alt}` alternates 2 and 3 with `{alt}`).
    #[arg(long, default_value = "whoami")]
    text: String,
    #[arg(long, default_value = "UBENCH0001")]
    user: String,
    /// A reply must contain this to count as a success.
    #[arg(long)]
    expect: Option<String>,
    /// A label for the JSON line.
    #[arg(long, default_value = "server")]
    name: String,
}

fn humantime_like(s: &str) -> Result<Duration, String> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = n.parse().map_err(|_| format!("bad duration {s}"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" | "" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("bad duration {s}")),
    }
}

/// Slack's request signature: `v0=` HMAC-SHA256 of `v0:{ts}:{body}`.
fn sign(secret: &[u8], ts: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
    mac.update(b"v0:");
    mac.update(ts.as_bytes());
    mac.update(b":");
    mac.update(body);
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

struct Shared {
    args: Args,
    next: AtomicU64,
    run: u64,
}

impl Shared {
    fn body(&self, i: u64) -> String {
        let text = self
            .args
            .text
            .replace("{i}", &i.to_string())
            .replace("{alt}", if i.is_multiple_of(2) { "2" } else { "3" });
        serde_urlencoded::to_string([
            ("token", "unused-verification-token"),
            ("team_id", "T0BENCH01"),
            ("team_domain", "bench"),
            ("channel_id", "C0BENCH01"),
            ("channel_name", "bench"),
            ("user_id", self.args.user.as_str()),
            ("user_name", "bench"),
            ("command", "/oncall"),
            ("text", text.as_str()),
            ("api_app_id", "A0BENCH01"),
            (
                "response_url",
                "https://hooks.slack.com/commands/T0BENCH01/1/bench",
            ),
            ("trigger_id", &format!("{}.{i}.bench", self.run)),
        ])
        .expect("form encoding")
    }
}

/// Outcome counts of one phase.
#[derive(Default)]
struct Tally {
    ok: u64,
    unexpected: u64,
    failed: u64,
}

async fn one(client: &reqwest::Client, shared: &Shared) -> Result<bool, String> {
    let i = shared.next.fetch_add(1, Ordering::Relaxed);
    let body = shared.body(i);
    let ts = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
        .to_string();
    let signature = sign(shared.args.secret.as_bytes(), &ts, body.as_bytes());
    let resp = client
        .post(&shared.args.url[i as usize % shared.args.url.len()])
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-slack-request-timestamp", &ts)
        .header("x-slack-signature", signature)
        .body(body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status();
    let text = resp.text().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!(
            "HTTP {status}: {}",
            text.chars().take(200).collect::<String>()
        ));
    }
    Ok(shared
        .args
        .expect
        .as_deref()
        .is_none_or(|e| text.contains(e)))
}

/// Sends until `until`; each worker records into its own histogram.
async fn phase(
    client: reqwest::Client,
    shared: Arc<Shared>,
    until: Instant,
) -> (Histogram<u64>, Tally, Option<String>) {
    let mut workers = Vec::new();
    let per_worker_gap = shared
        .args
        .rate
        .map(|r| Duration::from_secs_f64(shared.args.concurrency as f64 / r.max(1) as f64));
    for _ in 0..shared.args.concurrency {
        let client = client.clone();
        let shared = shared.clone();
        workers.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
            let mut tally = Tally::default();
            let mut last_error = None;
            let mut next_at = Instant::now();
            while Instant::now() < until {
                if let Some(gap) = per_worker_gap {
                    tokio::time::sleep_until(next_at.into()).await;
                    next_at += gap;
                }
                let start = Instant::now();
                match one(&client, &shared).await {
                    Ok(true) => tally.ok += 1,
                    Ok(false) => tally.unexpected += 1,
                    Err(e) => {
                        tally.failed += 1;
                        last_error = Some(e);
                    }
                }
                let micros = start.elapsed().as_micros().max(1) as u64;
                let _ = hist.record(micros.min(60_000_000));
            }
            (hist, tally, last_error)
        }));
    }
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
    let mut tally = Tally::default();
    let mut last_error = None;
    for w in workers {
        let (h, t, e) = w.await.expect("a worker panicked");
        hist.add(&h).expect("same bounds");
        tally.ok += t.ok;
        tally.unexpected += t.unexpected;
        tally.failed += t.failed;
        last_error = last_error.or(e);
    }
    (hist, tally, last_error)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .timeout(Duration::from_secs(30))
        .build()
        .context("the HTTP client")?;
    let run = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let shared = Arc::new(Shared {
        args: args.clone(),
        next: AtomicU64::new(0),
        run,
    });
    if !args.warmup.is_zero() {
        phase(client.clone(), shared.clone(), Instant::now() + args.warmup).await;
    }
    let started = Instant::now();
    let (hist, tally, last_error) = phase(client, shared, started + args.duration).await;
    let seconds = started.elapsed().as_secs_f64();
    let total = tally.ok + tally.unexpected + tally.failed;
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    let line = serde_json::json!({
        "name": args.name,
        "requests": total,
        "ok": tally.ok,
        "unexpected": tally.unexpected,
        "failed": tally.failed,
        "seconds": (seconds * 100.0).round() / 100.0,
        "rps": (total as f64 / seconds).round(),
        "p50_ms": ms(0.50),
        "p99_ms": ms(0.99),
        "max_ms": hist.max() as f64 / 1000.0,
        "last_error": last_error,
    });
    println!("{line}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The signature Slack's documentation shows for its example request.
    #[test]
    fn signs_like_slack() {
        let body = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        assert_eq!(
            sign(
                b"8f742231b10e8888abcd99yyyzzz85a5",
                "1531420618",
                body.as_bytes()
            ),
            "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
        );
    }

    #[test]
    fn durations_and_bodies() {
        assert_eq!(humantime_like("8s"), Ok(Duration::from_secs(8)));
        assert_eq!(humantime_like("250ms"), Ok(Duration::from_millis(250)));
        assert!(humantime_like("x").is_err());
        let shared = Shared {
            args: Args::parse_from([
                "loadgen",
                "--url",
                "http://x",
                "--secret",
                "s",
                "--text",
                "scale backend {alt}",
            ]),
            next: AtomicU64::new(0),
            run: 7,
        };
        let a: Vec<(String, String)> = serde_urlencoded::from_str(&shared.body(0)).unwrap();
        let b: Vec<(String, String)> = serde_urlencoded::from_str(&shared.body(1)).unwrap();
        let get =
            |v: &[(String, String)], k: &str| v.iter().find(|(n, _)| n == k).unwrap().1.clone();
        assert_eq!(get(&a, "text"), "scale backend 2");
        assert_eq!(get(&b, "text"), "scale backend 3");
        assert_ne!(get(&a, "trigger_id"), get(&b, "trigger_id"));
    }
}
