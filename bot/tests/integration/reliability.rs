//! The reliability harness: the real `oncall serve` binary under load and
//! abuse, against the simulated cluster and a fake Slack, with the history
//! file read back as an operator would.
//!
//! - kill -9 under load: every request answered with an outcome has its
//!   history row, nothing ran twice (the cluster's own generation counter
//!   agrees with the rows), the file passes `PRAGMA integrity_check`, and the
//!   restarted server serves at once and answers redeliveries from history;
//! - Slack retries and duplicate deliveries under load run once each;
//! - bad input at volume is refused, runs nothing, and leaves the server up
//!   with flat memory;
//! - a slow or failing Kubernetes API, Slack answering 429 and a locked
//!   database get clear answers, and every acknowledgement is inside Slack's
//!   3 seconds.
//!
//! Each test takes seconds; the whole module well under two minutes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::Api;
use serde_json::Value;

use crate::common::fake_slack::FakeSlack;
use crate::common::serve::{command_body, open_db, post_signed, Setup};

const SECRET: &str = "reliability-test-signing-secret";
const OPERATOR: &str = "[[policy.bindings]]\nprincipal = \"slack:UOPS1\"\nroles = [\"operator\"]\n";
/// Load from one person would trip the per-person rate limit (that has
/// tests of its own); here every request must reach the pipeline.
const NO_RATE_LIMIT: (&str, &str) = (
    "mutations_per_window = 20",
    "mutations_per_window = 1000000",
);
/// Slack's deadline for an acknowledgement.
const SLACK_ACK: Duration = Duration::from_secs(3);

struct Env {
    sim: kube_sim::RunningSim,
    client: kube::Client,
    slack: FakeSlack,
    setup: Setup,
}

async fn env() -> Env {
    let sim = crate::common::fast_sim().await;
    let client = kube::Client::try_from(kube::Config::new(sim.url().parse().unwrap())).unwrap();
    let slack = FakeSlack::start().await;
    let setup = Setup::new(&sim.url(), SECRET, &[NO_RATE_LIMIT], OPERATOR);
    Env {
        sim,
        client,
        slack,
        setup,
    }
}

impl Env {
    async fn deployment(&self, name: &str) -> Deployment {
        Api::<Deployment>::namespaced(self.client.clone(), "default")
            .get(name)
            .await
            .unwrap()
    }

    /// How many restarts of dev-utilities reached the cluster: the
    /// simulator's log of the writes it applied.
    fn restarts_applied(&self) -> i64 {
        self.sim.with_store(|s| {
            s.writes
                .iter()
                .filter(|w| {
                    *w == "PATCH /apis/apps/v1/namespaces/default/deployments/dev-utilities"
                })
                .count() as i64
        })
    }

    async fn replicas(&self, name: &str) -> i32 {
        self.deployment(name).await.spec.unwrap().replicas.unwrap()
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// One delivery and what came of it (`None`: no HTTP answer at all).
#[derive(Debug, Clone)]
struct Sent {
    trigger: String,
    text: &'static str,
    response: u32,
    status: Option<u16>,
    body: String,
}

impl Sent {
    fn key(&self) -> String {
        format!("slack:T0001:{}", self.trigger)
    }

    /// Answered with the outcome itself (not "working on it").
    fn has_outcome(&self) -> bool {
        self.status == Some(200) && !self.body.contains("Working on")
    }
}

async fn deliver(
    http: &reqwest::Client,
    base: &str,
    slack: &FakeSlack,
    text: &'static str,
    trigger: String,
    response: u32,
    extra: &[(&str, &str)],
) -> Sent {
    let body = command_body("UOPS1", text, &trigger, &slack.response_url(response));
    let (status, body) = match post_signed(http, base, SECRET, body, extra).await {
        Ok(r) => {
            let status = r.status().as_u16();
            (Some(status), r.text().await.unwrap_or_default())
        }
        Err(_) => (None, String::new()),
    };
    Sent {
        trigger,
        text,
        response,
        status,
        body,
    }
}

/// `idempotency key → [(verb, outcome)]` for every row with a key.
fn rows_by_key(db: &rusqlite::Connection) -> HashMap<String, Vec<(String, String)>> {
    let mut stmt = db
        .prepare(
            "SELECT idempotency_key, COALESCE(verb, ''), outcome FROM invocations
             WHERE idempotency_key IS NOT NULL",
        )
        .unwrap();
    let mut out: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for row in stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
    {
        let (key, verb, outcome): (String, String, String) = row.unwrap();
        out.entry(key).or_default().push((verb, outcome));
    }
    out
}

fn integrity(db: &rusqlite::Connection) -> String {
    db.query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap()
}

/// Restarts of dev-utilities in the history with this outcome.
fn restarts(rows: &HashMap<String, Vec<(String, String)>>, outcome: &str) -> i64 {
    rows.values()
        .flatten()
        .filter(|(verb, o)| verb == "restart" && o == outcome)
        .count() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_no_answered_request_and_runs_nothing_twice() {
    let e = Arc::new(env().await);
    let mut served = e.setup.serve(&e.slack, "serve-1.log").await;
    let before = e.restarts_applied();

    // Sixteen clients send distinct commands, half of them restarts, as fast
    // as they are answered.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(Mutex::new(Vec::<Sent>::new()));
    let mut clients = Vec::new();
    for client in 0..16u32 {
        let (e, stop, sent, base) = (e.clone(), stop.clone(), sent.clone(), served.base.clone());
        clients.push(tokio::spawn(async move {
            let http = http();
            let mut i = 0u32;
            while !stop.load(Ordering::SeqCst) {
                i += 1;
                let text = if i.is_multiple_of(2) {
                    "restart dev-utilities"
                } else {
                    "whoami"
                };
                let response = client * 100_000 + i;
                let s = deliver(
                    &http,
                    &base,
                    &e.slack,
                    text,
                    format!("k9-{client}-{i}"),
                    response,
                    &[],
                )
                .await;
                sent.lock().unwrap().push(s);
            }
        }));
    }
    let started = Instant::now();
    loop {
        let answered = sent
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.has_outcome())
            .count();
        if answered >= 200 {
            break;
        }
        assert!(
            started.elapsed() < crate::common::DEADLINE,
            "only {answered} answers under load:\n{}",
            served.log()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    served.kill_9();
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.await.unwrap();
    }
    let sent = sent.lock().unwrap().clone();
    let answered: Vec<&Sent> = sent.iter().filter(|s| s.has_outcome()).collect();
    assert!(
        answered.iter().any(|s| s.text.starts_with("restart")),
        "no restart was answered before the kill"
    );

    // The file is whole, and every answered request is in it, finished.
    {
        let db = open_db(&e.setup.db_path());
        assert_eq!(integrity(&db), "ok");
        let rows = rows_by_key(&db);
        for s in &answered {
            let row = rows
                .get(&s.key())
                .unwrap_or_else(|| panic!("{} was answered but has no history row", s.key()));
            assert_eq!(row.len(), 1, "{}: {row:?}", s.key());
            let (_, outcome) = &row[0];
            assert!(
                outcome != "running" && outcome != "pending",
                "{} was answered ({}) while its row says {outcome}",
                s.key(),
                s.body
            );
            if s.body.contains("Restarting dev-utilities") {
                assert_eq!(outcome, "done", "{}: {}", s.key(), s.body);
            }
            if s.body.contains("You are") {
                assert_eq!(outcome, "info", "{}: {}", s.key(), s.body);
            }
        }
        // Nothing ran twice: the deployment changed once per finished
        // restart, plus at most the ones cut off mid-flight.
        let (done, cut_off) = (restarts(&rows, "done"), restarts(&rows, "running"));
        let changed = e.restarts_applied() - before;
        assert!(
            done <= changed && changed <= done + cut_off,
            "{changed} restarts reached the cluster; {done} done, {cut_off} cut off"
        );
    }

    // The restarted server serves at once, and answers every redelivery
    // (Slack retries what it saw no answer for) without running it again.
    let restarted = Instant::now();
    let served = e.setup.serve(&e.slack, "serve-2.log").await;
    let http = http();
    let first = deliver(
        &http,
        &served.base,
        &e.slack,
        "whoami",
        "after-restart".into(),
        1,
        &[],
    )
    .await;
    assert!(first.body.contains("You are"), "{first:?}");
    eprintln!(
        "restart: {} requests before the kill ({} answered); serving again after {:?}",
        sent.len(),
        answered.len(),
        restarted.elapsed()
    );
    let retry: Vec<(&'static str, String, u32, String)> = sent
        .iter()
        .map(|s| (s.text, s.trigger.clone(), s.response, s.body.clone()))
        .collect();
    let redelivered: Vec<(Sent, String)> = futures::stream::iter(retry)
        .map(|(text, trigger, response, first_body)| {
            let (http, e, base) = (http.clone(), e.clone(), served.base.clone());
            async move {
                let s = deliver(
                    &http,
                    &base,
                    &e.slack,
                    text,
                    trigger,
                    response,
                    &[
                        ("x-slack-retry-num", "1"),
                        ("x-slack-retry-reason", "http_timeout"),
                    ],
                )
                .await;
                (s, first_body)
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    for (s, first_body) in &redelivered {
        assert_eq!(s.status, Some(200), "{s:?}");
        let was_answered = answered.iter().any(|a| a.trigger == s.trigger);
        if was_answered {
            assert_eq!(
                serde_json::from_str::<Value>(&s.body).unwrap(),
                serde_json::from_str::<Value>(first_body).unwrap(),
                "a redelivery of {} gets the first answer",
                s.trigger
            );
        }
    }
    let db = open_db(&e.setup.db_path());
    let rows = rows_by_key(&db);
    for s in &sent {
        let row = rows.get(&s.key()).map(Vec::len).unwrap_or(0);
        assert_eq!(row, 1, "{} has {row} rows after redelivery", s.key());
    }
    let (done, cut_off) = (restarts(&rows, "done"), restarts(&rows, "interrupted"));
    let changed = e.restarts_applied() - before;
    assert!(
        done <= changed && changed <= done + cut_off,
        "{changed} restarts reached the cluster; {done} done, {cut_off} interrupted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_and_duplicate_deliveries_under_load_run_once() {
    let e = Arc::new(env().await);
    let served = e.setup.serve(&e.slack, "serve.log").await;
    let before = e.restarts_applied();
    const RESTARTS: u32 = 30;
    // Each restart delivered four times (first, then Slack's retries 1–3),
    // interleaved with reads, all at once.
    let mut deliveries: Vec<(&'static str, String, u32, Option<&'static str>)> = Vec::new();
    for n in 0..RESTARTS {
        for retry in [None, Some("1"), Some("2"), Some("3")] {
            deliveries.push(("restart dev-utilities", format!("dup-{n}"), n, retry));
        }
        for r in 0..4 {
            deliveries.push(("whoami", format!("read-{n}-{r}"), 1000 + n * 4 + r, None));
        }
    }
    let http = http();
    let results: Vec<Sent> = futures::stream::iter(deliveries)
        .map(|(text, trigger, response, retry)| {
            let (http, e, base) = (http.clone(), e.clone(), served.base.clone());
            async move {
                let extra: Vec<(&str, &str)> = match retry {
                    Some(n) => vec![
                        ("x-slack-retry-num", n),
                        ("x-slack-retry-reason", "http_timeout"),
                    ],
                    None => vec![],
                };
                deliver(&http, &base, &e.slack, text, trigger, response, &extra).await
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    for s in &results {
        assert_eq!(s.status, Some(200), "{s:?}");
    }
    let db = open_db(&e.setup.db_path());
    let rows = rows_by_key(&db);
    // Thirty restarts of one deployment at once: a few may meet another's
    // write twice and be told to try again (nothing applied). Each ran once.
    for n in 0..RESTARTS {
        let key = format!("slack:T0001:dup-{n}");
        let row = rows.get(&key).unwrap_or_else(|| panic!("{key} has no row"));
        assert_eq!(row.len(), 1, "{key}: {row:?}");
        assert_eq!(row[0].0, "restart", "{key}: {row:?}");
        assert!(
            ["done", "failed"].contains(&row[0].1.as_str()),
            "{key}: {row:?}"
        );
    }
    let done = restarts(&rows, "done");
    assert!(
        done >= (RESTARTS / 2) as i64,
        "only {done} of {RESTARTS} restarts ran"
    );
    assert_eq!(
        e.restarts_applied() - before,
        done,
        "each finished restart reached the cluster once, the others not at all"
    );
    assert_eq!(
        rows.values().map(Vec::len).sum::<usize>(),
        (RESTARTS * 5) as usize,
        "one row per distinct request"
    );
}

/// One kind of bad request, built fresh (with a current timestamp) for each
/// send.
type BadRequest = fn(&Target) -> reqwest::RequestBuilder;

/// Where bad requests go, and the (genuine) response_url they carry.
struct Target {
    url: String,
    response_url: String,
}

fn signed_at(url: &str, secret: &str, ts: i64, body: Vec<u8>) -> reqwest::RequestBuilder {
    let ts = ts.to_string();
    reqwest::Client::new()
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-slack-request-timestamp", &ts)
        .header(
            "x-slack-signature",
            oncall::slack::verify::sign(secret.as_bytes(), &ts, &body),
        )
        .body(body)
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

fn form(t: &Target, text: &str) -> Vec<u8> {
    let trigger = format!("bad-{}", uuid::Uuid::new_v4());
    command_body("UOPS1", text, &trigger, &t.response_url).into_bytes()
}

/// Texts a shell would act on; oncall never hands text to a shell, and its
/// grammar refuses every one of them.
const SHELL: &[&str] = &[
    "scale backend 3; rm -rf /",
    "scale backend $(reboot)",
    "restart `id`",
    "restart dev-utilities && kubectl delete ns default",
    "scale 'backend|sh' 3",
    "logs backend > /etc/passwd",
    "restart dev-utilities\nrestart backend",
    "scale ../../kube-system/coredns 0",
];

fn bad_requests() -> Vec<(&'static str, BadRequest, &'static [u16])> {
    vec![
        (
            "forged",
            |t| {
                signed_at(
                    &t.url,
                    "not-the-secret",
                    now(),
                    form(t, "restart dev-utilities"),
                )
            },
            &[401],
        ),
        (
            "stale",
            |t| {
                signed_at(
                    &t.url,
                    SECRET,
                    now() - 600,
                    form(t, "restart dev-utilities"),
                )
            },
            &[401],
        ),
        (
            "truncated",
            |t| {
                let body = form(t, "restart dev-utilities");
                let ts = now().to_string();
                let sig = oncall::slack::verify::sign(SECRET.as_bytes(), &ts, &body);
                reqwest::Client::new()
                    .post(&t.url)
                    .header("x-slack-request-timestamp", ts)
                    .header("x-slack-signature", sig)
                    .body(body[..body.len() / 2].to_vec())
            },
            &[401],
        ),
        (
            "1 MB",
            |t| {
                let mut body = form(t, "restart dev-utilities");
                body.extend(std::iter::repeat_n(b'x', 1024 * 1024));
                signed_at(&t.url, SECRET, now(), body)
            },
            &[413],
        ),
        (
            "invalid UTF-8",
            |t| {
                let mut body = form(t, "restart dev-utilities");
                body.extend_from_slice(b"&text=\xff\xfe\xc3");
                signed_at(&t.url, SECRET, now(), body)
            },
            &[200, 400],
        ),
        (
            "percent-encoded invalid UTF-8",
            |t| {
                let body = String::from_utf8(form(t, "x"))
                    .unwrap()
                    .replace("text=x", "text=restart%20%FF%FE");
                signed_at(&t.url, SECRET, now(), body.into_bytes())
            },
            &[200, 400],
        ),
        (
            "shell metacharacters",
            |t| {
                let text = SHELL[rand_index(SHELL.len())];
                signed_at(&t.url, SECRET, now(), form(t, text))
            },
            &[200],
        ),
        (
            "10 k characters",
            |t| {
                signed_at(
                    &t.url,
                    SECRET,
                    now(),
                    form(t, &format!("scale backend {}", "9".repeat(10_000))),
                )
            },
            &[200],
        ),
        (
            "10 k characters of words",
            |t| signed_at(&t.url, SECRET, now(), form(t, &"restart ".repeat(1_250))),
            &[200],
        ),
    ]
}

fn rand_index(n: usize) -> usize {
    (uuid::Uuid::new_v4().as_u128() % n as u128) as usize
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_at_volume_is_refused_changes_nothing_and_memory_stays_flat() {
    let e = env().await;
    let served = e.setup.serve(&e.slack, "serve.log").await;
    let target = Target {
        url: format!("{}/slack/commands", served.base),
        response_url: e.slack.response_url(1),
    };
    let (replicas, generation) = (e.replicas("backend").await, e.restarts_applied());
    let kinds = bad_requests();

    async fn round(
        url: &Target,
        kinds: &[(&'static str, BadRequest, &'static [u16])],
        each: usize,
    ) {
        let sends = kinds
            .iter()
            .flat_map(|k| std::iter::repeat_n(k, if k.0 == "1 MB" { each / 10 + 1 } else { each }));
        futures::stream::iter(sends)
            .map(|(name, build, expected)| async move {
                let r = match build(url).send().await {
                    Ok(r) => r,
                    // The server answers 413 from the headers and closes;
                    // a client still writing the megabyte can see the
                    // close before the answer. Refused either way.
                    Err(err) if *name == "1 MB" && err.is_request() => return,
                    Err(err) => panic!("{name}: no answer ({err})"),
                };
                let status = r.status().as_u16();
                let body = r.text().await.unwrap_or_default();
                assert!(expected.contains(&status), "{name}: {status} {body}");
                assert!(
                    !body.contains("Restarting") && !body.contains("Scaled"),
                    "{name}: {body}"
                );
                assert!(
                    body.len() < 8 * 1024,
                    "{name}: a {}-byte answer",
                    body.len()
                );
            })
            .buffer_unordered(32)
            .collect::<Vec<()>>()
            .await;
    }

    // Warm up (allocator pools, connection buffers), then measure.
    round(&target, &kinds, 20).await;
    let rss_before = served.rss_kib();
    for _ in 0..8 {
        round(&target, &kinds, 30).await;
    }
    let rss_after = served.rss_kib();
    eprintln!("bad input: RSS {rss_before} KiB → {rss_after} KiB after ~2,200 requests");
    assert!(
        rss_after < rss_before + 8 * 1024,
        "memory grew from {rss_before} KiB to {rss_after} KiB"
    );

    // Nothing ran; the server is up and serves good requests.
    assert_eq!(e.replicas("backend").await, replicas);
    assert_eq!(e.restarts_applied(), generation);
    let db = open_db(&e.setup.db_path());
    let ran: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM invocations WHERE mutating = 1 AND outcome NOT IN ('denied', 'invalid')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(ran, 0, "a bad request reached execution");
    let ok = deliver(
        &http(),
        &served.base,
        &e.slack,
        "whoami",
        "after-abuse".into(),
        1,
        &[],
    )
    .await;
    assert!(ok.body.contains("You are"), "{ok:?}");
    assert!(!served.log().contains(SECRET));
}

/// Sends `text` and returns the acknowledgement and how long it took.
async fn timed(
    e: &Env,
    base: &str,
    text: &'static str,
    trigger: &str,
    response: u32,
) -> (Sent, Duration) {
    let started = Instant::now();
    let s = deliver(&http(), base, &e.slack, text, trigger.into(), response, &[]).await;
    (s, started.elapsed())
}

fn answer_text(calls: &[crate::common::fake_slack::Call]) -> String {
    calls
        .iter()
        .map(|c| c.body.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_failing_dependencies_get_clear_answers_acked_inside_three_seconds() {
    let e = env().await;
    let served = e.setup.serve(&e.slack, "serve.log").await;
    let base = served.base.clone();

    // The Kubernetes API answering after 10 s: acknowledged in time, then
    // answered through response_url once the API is back.
    e.sim.with_store(|s| s.latency = Duration::from_secs(10));
    let (read, read_took) = timed(&e, &base, "status backend", "slow-read", 1).await;
    let (write, write_took) = timed(&e, &base, "scale backend 3", "slow-write", 2).await;
    e.sim.with_store(|s| s.latency = Duration::ZERO);
    for (s, took) in [(&read, read_took), (&write, write_took)] {
        assert_eq!(s.status, Some(200), "{s:?}");
        assert!(s.body.contains("Working on"), "{s:?}");
        assert!(took < SLACK_ACK, "{} acknowledged after {took:?}", s.text);
    }
    let answer = answer_text(&e.slack.wait_for("/response/2", 1).await);
    assert!(answer.contains("Scaled backend 2 → 3"), "{answer}");
    let answer = answer_text(&e.slack.wait_for("/response/1", 1).await);
    assert!(answer.contains("backend"), "{answer}");

    // The API answering 500: one clear sentence, no raw Status object, and
    // the history says it failed.
    e.sim
        .with_store(|s| s.internal_error = Some("etcdserver: request timed out".into()));
    let (failed, took) = timed(&e, &base, "scale backend 4", "api-500", 3).await;
    e.sim.with_store(|s| s.internal_error = None);
    assert!(took < SLACK_ACK, "acknowledged after {took:?}");
    let text = if failed.body.contains("Working on") {
        answer_text(&e.slack.wait_for("/response/3", 1).await)
    } else {
        failed.body.clone()
    };
    assert!(text.contains("Kubernetes answered 500"), "{text}");
    assert!(text.contains("etcdserver: request timed out"), "{text}");
    assert!(
        !text.contains("\\\"kind\\\"") && !text.contains("apiVersion"),
        "{text}"
    );
    assert_eq!(e.replicas("backend").await, 3, "nothing was applied");

    // Slack answering 429 to the deferred answer: it waits out Retry-After
    // and the answer still arrives.
    *e.slack.state.rate_limit_responses.lock().unwrap() = 2;
    e.sim
        .with_store(|s| s.latency = Duration::from_millis(2_500));
    let (slow, took) = timed(&e, &base, "scale backend 5", "slack-429", 4).await;
    e.sim.with_store(|s| s.latency = Duration::ZERO);
    assert!(slow.body.contains("Working on"), "{slow:?}");
    assert!(took < SLACK_ACK, "acknowledged after {took:?}");
    let calls = e.slack.wait_for("/response/4", 1).await;
    assert!(
        answer_text(&calls).contains("Scaled backend 3 → 5"),
        "{calls:?}"
    );
    let statuses: Vec<u16> = e
        .slack
        .calls("/response/4")
        .iter()
        .map(|c| c.status)
        .collect();
    assert_eq!(statuses, vec![429, 429, 200]);

    // A database another process holds locked (a stuck backup, a full
    // disk): nothing runs, the answer says why, the ack is still in time.
    let db_path = e.setup.db_path();
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let locker = std::thread::spawn(move || {
        let db = open_db(&db_path);
        db.execute_batch("BEGIN EXCLUSIVE").unwrap();
        locked_tx.send(()).unwrap();
        release_rx.recv().unwrap();
        db.execute_batch("ROLLBACK").unwrap();
    });
    locked_rx.recv().unwrap();
    let generation = e.restarts_applied();
    let (locked, took) = timed(&e, &base, "restart dev-utilities", "db-locked", 5).await;
    assert!(took < SLACK_ACK, "acknowledged after {took:?}");
    let text = if locked.body.contains("Working on") {
        answer_text(&e.slack.wait_for("/response/5", 1).await)
    } else {
        locked.body.clone()
    };
    release_tx.send(()).unwrap();
    locker.join().unwrap();
    assert!(
        text.contains("history is unavailable, so nothing was run"),
        "{text}"
    );
    assert_eq!(e.restarts_applied(), generation, "nothing ran");

    // Once the lock is gone the same server works again.
    let (ok, _) = timed(&e, &base, "restart dev-utilities", "db-back", 6).await;
    let text = if ok.body.contains("Working on") {
        answer_text(&e.slack.wait_for("/response/6", 1).await)
    } else {
        ok.body.clone()
    };
    assert!(text.contains("Restarting dev-utilities"), "{text}");
    assert_eq!(e.restarts_applied(), generation + 1);
}
