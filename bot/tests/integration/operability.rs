//! Running oncall in production: `/readyz` (a committed write and each
//! cluster's API, naming what failed), the metrics per command and the
//! gauges, `/metrics` on its own listener, JSON log lines with the
//! invocation span's fields (and never a secret), and backup → restore.

use std::process::Command;
use std::time::Duration;

use oncall::config::{Config, EXAMPLE};
use oncall::router::{Clock, Router};
use oncall::store::Store;
use oncall_ops::Clusters;
use serde_json::Value;

use crate::common::fake_slack::{FakeSlack, BOT_TOKEN};
use crate::common::serve::{command_body, free_port, post_signed, Setup, BIN};
use crate::common::Harness;

const SECRET: &str = "operability-test-signing-secret";
const OPERATOR: &str = "[[policy.bindings]]\nprincipal = \"slack:UOPS1\"\nroles = [\"operator\"]\n";

async fn get(url: &str) -> (u16, String) {
    let r = reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// The value of one sample line of a Prometheus text exposition.
fn sample(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

fn quick_ready(mut config: Config) -> Config {
    config.server.ready_timeout = Duration::from_millis(300);
    config
}

#[tokio::test]
async fn readyz_fails_naming_a_database_that_takes_no_write() {
    let h = Harness::with_config(quick_ready(Config::parse(EXAMPLE, "example").unwrap())).await;
    let base = h.serve_http().await;
    let (status, body) = get(&format!("{base}/readyz")).await;
    assert_eq!(status, 200, "{body}");
    let report: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["database"], "ok");
    assert_eq!(report["store"], h.router.store().kind());
    assert_eq!(report["clusters"]["default"]["status"], "ok", "{body}");

    // Another writer holds SQLite's write lock: reads still work (so
    // /healthz stays up) but no write can commit.
    let db = h.dir.path().join("oncall.db");
    let blocker = rusqlite::Connection::open(&db).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let (status, body) = get(&format!("{base}/readyz")).await;
    assert_eq!(status, 503, "{body}");
    let report: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["failed"], serde_json::json!(["database"]), "{body}");
    assert!(
        report["database"]
            .as_str()
            .unwrap()
            .starts_with("not writable"),
        "{body}"
    );
    let (alive, _) = get(&format!("{base}/healthz")).await;
    assert_eq!(alive, 200, "alive while not ready");
    blocker.execute_batch("ROLLBACK").unwrap();
    let (status, body) = get(&format!("{base}/readyz")).await;
    assert_eq!(status, 200, "ready again once the lock is gone: {body}");
}

#[tokio::test]
async fn readyz_fails_naming_an_unreachable_cluster() {
    // A cluster whose API server is gone: a port nothing listens on.
    let port = free_port();
    let client = kube::Client::try_from(kube::Config::new(
        format!("http://127.0.0.1:{port}").parse().unwrap(),
    ))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = quick_ready(Config::parse(EXAMPLE, "example").unwrap());
    config.database.path = dir.path().join("oncall.db");
    let store = Store::open(&config.database.path).await.unwrap();
    let router = Router::new(config, store, Clusters::single(client), Clock::System);
    let app = oncall::server::app(router, true, None, None);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let (status, body) = get(&format!("{base}/readyz")).await;
    assert_eq!(status, 503, "{body}");
    let report: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        report["failed"],
        serde_json::json!(["cluster default"]),
        "{body}"
    );
    assert_eq!(report["database"], "ok");
    assert_eq!(report["clusters"]["default"]["status"], "unreachable");
    assert!(
        report["clusters"]["default"]["error"]
            .as_str()
            .unwrap()
            .contains("cannot be reached"),
        "{body}"
    );
}

#[tokio::test]
async fn metrics_count_each_command_and_read_the_gauges_from_the_store() {
    let h = Harness::new().await;
    let base = h.serve_http().await;
    let done = h.run("cli:operator", "status backend").await;
    let again = h.run("cli:operator", "status backend").await;
    assert_eq!(done.outcome, again.outcome);
    let denied = h.run("cli:viewer", "scale backend 3").await;
    assert_eq!(denied.outcome.label(), "denied");
    let invalid = h.run("cli:operator", "scael backend 3").await;
    assert_eq!(invalid.outcome.label(), "invalid");
    // Held for a second person: one approval pending.
    let held = h.run("cli:operator", "scale backend 0").await;
    assert_eq!(held.outcome.label(), "pending_approval", "{held:?}");
    let declared = h
        .run("cli:commander", "incident declare sev2 checkout is slow")
        .await;
    assert_eq!(declared.outcome.label(), "done", "{declared:?}");

    let (status, text) = get(&format!("{base}/metrics")).await;
    assert_eq!(status, 200);
    let status_done = format!(
        "oncall_commands_total{{outcome=\"{}\",platform=\"cli\",verb=\"status\"}}",
        done.outcome.label()
    );
    assert_eq!(sample(&text, &status_done), Some(2.0), "{text}");
    assert_eq!(
        sample(
            &text,
            "oncall_commands_total{outcome=\"denied\",platform=\"cli\",verb=\"scale\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "oncall_commands_total{outcome=\"invalid\",platform=\"cli\",verb=\"invalid\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "oncall_command_duration_seconds_count{verb=\"status\"}"
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "oncall_approvals_pending"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(sample(&text, "oncall_incidents_open"), Some(1.0), "{text}");
    assert!(sample(&text, "oncall_outbox_pending").is_some(), "{text}");
    assert_eq!(
        sample(&text, "oncall_escalation_lag_seconds"),
        Some(0.0),
        "{text}"
    );

    // Nobody runs the engine here: once its first step is due and a minute
    // passes, the lag shows it.
    h.clock.advance(Duration::from_secs(3600));
    let (_, text) = get(&format!("{base}/metrics")).await;
    let lag = sample(&text, "oncall_escalation_lag_seconds").unwrap();
    assert!(lag >= 60.0, "the escalation is overdue: {text}");
    h.run("cli:commander", "incident resolve 1 fixed").await;
    let (_, text) = get(&format!("{base}/metrics")).await;
    assert_eq!(sample(&text, "oncall_incidents_open"), Some(0.0), "{text}");
}

#[tokio::test]
async fn serve_puts_metrics_on_their_own_listener_and_logs_json_with_span_fields() {
    let sim = crate::common::fast_sim().await;
    let slack = FakeSlack::start().await;
    let metrics_port = free_port();
    let listen = format!("[server]\nmetrics_listen = \"127.0.0.1:{metrics_port}\"\n");
    let setup = Setup::new(&sim.url(), SECRET, &[("[server]\n", &listen)], OPERATOR);
    let served = setup
        .serve_env(&slack, "serve.log", &[("ONCALL_LOG_FORMAT", "json")])
        .await;
    let http = reqwest::Client::new();
    let response = post_signed(
        &http,
        &served.base,
        SECRET,
        command_body(
            "UOPS1",
            "status backend",
            "trig-ops-1",
            &slack.response_url(1),
        ),
        &[],
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    let metrics_base = format!("http://127.0.0.1:{metrics_port}");
    let mut text = String::new();
    for _ in 0..100 {
        text = get(&format!("{metrics_base}/metrics")).await.1;
        if text.contains("verb=\"status\"") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        text.lines().any(|l| l.starts_with("oncall_commands_total{")
            && l.contains("platform=\"slack\"")
            && l.contains("verb=\"status\"")),
        "{text}"
    );
    let (status, _) = get(&format!("{}/metrics", served.base)).await;
    assert_eq!(status, 404, "/metrics is not on the public listener");
    assert_eq!(get(&format!("{metrics_base}/readyz")).await.0, 200);
    assert_eq!(get(&format!("{}/readyz", served.base)).await.0, 200);

    let log = served.log();
    let lines: Vec<Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(!lines.is_empty());
    let handled = lines
        .iter()
        .find(|l| l["message"] == "handled" && l["span"]["verb"] == "status")
        .unwrap_or_else(|| panic!("no `handled` line for the command:\n{log}"));
    assert_eq!(handled["span"]["name"], "invocation");
    assert_eq!(handled["span"]["platform"], "slack");
    assert_eq!(handled["span"]["principal"], "slack:UOPS1");
    assert!(handled["span"]["id"].as_i64().is_some(), "{handled}");
    assert!(handled["span"]["outcome"].is_string(), "{handled}");
    assert!(handled["level"].is_string() && handled["timestamp"].is_string());
    assert!(!log.contains(SECRET), "the signing secret reached the log");
    assert!(!log.contains(BOT_TOKEN), "the bot token reached the log");
}

/// `oncall <args> --config <setup's>` in the setup's directory: its exit
/// status and everything it printed.
fn run_oncall(setup: &Setup, kubeconfig: &std::path::Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(&setup.config)
        .env("KUBECONFIG", kubeconfig)
        .current_dir(setup.dir.path())
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

fn rows(db: &std::path::Path) -> Vec<Vec<String>> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut out = Vec::new();
    for table in ["invocations", "incidents", "incident_events"] {
        let mut stmt = conn
            .prepare(&format!("SELECT * FROM {table} ORDER BY id"))
            .unwrap();
        let n = stmt.column_count();
        let mut q = stmt.query([]).unwrap();
        while let Some(row) = q.next().unwrap() {
            let mut r = vec![table.to_string()];
            for i in 0..n {
                let v: rusqlite::types::Value = row.get(i).unwrap();
                r.push(format!("{v:?}"));
            }
            out.push(r);
        }
    }
    out
}

// Multi-threaded: the test runs the binary synchronously while the
// in-process simulator answers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_then_restore_gives_the_same_history() {
    let sim = crate::common::fast_sim().await;
    let setup = Setup::new(&sim.url(), SECRET, &[], "");
    let oncall = |args: &[&str]| run_oncall(&setup, &setup.kubeconfig, args);
    let exec = |user: &str, text: &str| {
        let (code, out) = oncall(&["exec", "--user", user, text]);
        assert!(code == 0, "{text}: {out}");
    };
    exec("cli:operator", "scale backend 4");
    exec("cli:operator", "status backend");
    exec("cli:commander", "incident declare sev3 slow queries");
    exec("cli:commander", "incident note 1 looking at the database");
    let db = setup.db_path();
    let backup = setup.dir.path().join("backup.db");
    let (code, out) = oncall(&["backup", backup.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("backed up"), "{out}");
    let at_backup = rows(&db);
    assert!(at_backup.len() >= 6, "{at_backup:?}");
    assert_eq!(
        rows(&backup),
        at_backup,
        "the backup holds what was committed"
    );
    // A second backup to the same file is refused, not overwritten.
    let (code, out) = oncall(&["backup", backup.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("exists already"), "{out}");

    // Life goes on after the backup…
    exec("cli:operator", "scale backend 2");
    exec("cli:commander", "incident resolve 1 fixed");
    assert_ne!(rows(&db), at_backup);

    // …a restore while another process has the database open is refused…
    let holder = rusqlite::Connection::open(&db).unwrap();
    holder
        .query_row("SELECT COUNT(*) FROM invocations", [], |r| {
            r.get::<_, i64>(0)
        })
        .unwrap();
    let (code, out) = oncall(&["restore", backup.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("in use by another process"), "{out}");
    drop(holder);

    // …and once it is closed, the history is exactly the backup's.
    let (code, out) = oncall(&["restore", backup.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("restored"), "{out}");
    assert_eq!(rows(&db), at_backup);
    let kept: Vec<_> = std::fs::read_dir(setup.dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("oncall.db.before-restore-")
        })
        .collect();
    assert_eq!(kept.len(), 1, "the replaced database is kept");
    // The restored database serves: the bot reads and extends it.
    exec("cli:operator", "status backend");
    assert_eq!(rows(&db).len(), at_backup.len() + 1);

    // Not a database, or not oncall's: refused, nothing replaced.
    let junk = setup.dir.path().join("junk.db");
    std::fs::write(&junk, b"not a database").unwrap();
    let (code, out) = oncall(&["restore", junk.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(rows(&db).len(), at_backup.len() + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_each_cluster_and_the_rbac_the_account_lacks() {
    let sim = crate::common::fast_sim().await;
    let setup = Setup::new(&sim.url(), SECRET, &[], "");
    let check = |kubeconfig: &std::path::Path| run_oncall(&setup, kubeconfig, &["check"]);
    let needed = oncall_ops::access::REQUIRED.len();
    let (code, out) = check(&setup.kubeconfig);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("cluster default: reachable (v1.33.0-oncall-sim)"),
        "{out}"
    );
    for ns in ["default", "oauth2-server", "vibe-ensemble"] {
        assert!(
            out.contains(&format!("namespace {ns}: all {needed} permissions granted")),
            "{out}"
        );
    }

    // The account may not patch the scale subresource.
    sim.with_store(|s| {
        s.access
            .denied
            .insert(("apps".into(), "deployments/scale".into(), "patch".into()))
    });
    let (code, out) = check(&setup.kubeconfig);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "namespace default: MISSING 1 of {needed} permissions"
        )),
        "{out}"
    );
    assert!(
        out.contains("patch apps/deployments/scale (for scale)"),
        "{out}"
    );
    assert!(
        out.contains("- apiGroups: [\"apps\"]\n      resources: [\"deployments/scale\"]\n      verbs: [\"patch\"]"),
        "the rule to add, spelled out: {out}"
    );

    // With an election, the Lease's permissions are checked too.
    let elected = Setup::new(
        &sim.url(),
        SECRET,
        &[],
        "[election]\nenabled = true\nnamespace = \"oncall\"\n",
    );
    sim.with_store(|s| {
        s.access.denied.clear();
        s.access.denied.insert((
            "coordination.k8s.io".into(),
            "leases".into(),
            "update".into(),
        ))
    });
    let (code, out) = run_oncall(&elected, &elected.kubeconfig, &["check"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("election: MISSING in namespace oncall (Lease oncall-leader)"),
        "{out}"
    );
    assert!(out.contains("update coordination.k8s.io/leases"), "{out}");
    sim.with_store(|s| s.access.denied.clear());
    let (code, out) = run_oncall(&elected, &elected.kubeconfig, &["check"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("election: may get, create and update leases in namespace oncall"),
        "{out}"
    );

    // An API server that is gone.
    let gone = setup.dir.path().join("gone.kubeconfig");
    std::fs::write(
        &gone,
        kube_sim::kubeconfig_yaml(&format!("http://127.0.0.1:{}", free_port())),
    )
    .unwrap();
    let (code, out) = check(&gone);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("cluster default: UNREACHABLE"), "{out}");
}
