//! The `oncall` binary as users run it: the demo, `sim` + `exec`, `check`,
//! `serve`.

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_oncall");

/// Kills the child when the test ends, pass or fail.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for_file(path: &Path) {
    let start = Instant::now();
    while !path.exists()
        || std::fs::read_to_string(path)
            .map(|s| s.is_empty())
            .unwrap_or(true)
    {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `oncall demo` in `dir`, its standard streams piped.
fn demo(dir: &std::path::Path) -> std::process::Child {
    Command::new(BIN)
        .arg("demo")
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn the_demo_does_what_the_readme_promises() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = demo(dir.path());
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"/oncall scale backend 5\nstatus backend\n:as cli:viewer\n/oncall scale backend 3\nhistory\n:quit\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("✅ Scaled backend 2 → 5"), "{stdout}");
    assert!(
        stdout.contains("⛔ Not allowed: scale backend 3"),
        "{stdout}"
    );
    assert!(
        stdout.contains("cli:viewer (roles: viewer) may not `scale`"),
        "{stdout}"
    );
    assert!(
        stdout.contains("default deny: no grant matched"),
        "{stdout}"
    );
    assert!(
        stdout.contains("5 desired"),
        "status shows the rollout: {stdout}"
    );
    // Both attempts in the history.
    let history = stdout.split("History:").nth(1).expect("history output");
    assert!(
        history.contains("cli:operator")
            && history.contains("/oncall scale backend 5")
            && history.contains("done: backend 2 → 5"),
        "{history}"
    );
    assert!(
        history.contains("cli:viewer")
            && history.contains("/oncall scale backend 3")
            && history.contains("denied"),
        "{history}"
    );
    assert!(
        dir.path().join("oncall-demo.db").exists(),
        "the demo keeps a local SQLite file"
    );
}

#[test]
fn the_demo_fires_a_runbook_alert_offers_its_first_response_and_pages_until_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = demo(dir.path());
    let mut stdin = child.stdin.take().unwrap();
    // What the demo printed so far, read as it comes.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let mut stdout = child.stdout.take().unwrap();
    let reader = {
        let seen = seen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = std::io::Read::read(&mut stdout, &mut buf) {
                if n == 0 {
                    break;
                }
                seen.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
    };
    let wait_for = |want: &str| {
        let deadline = std::time::Instant::now() + crate::common::DEADLINE;
        while !seen.lock().unwrap().contains(want) {
            assert!(
                std::time::Instant::now() < deadline,
                "{want} never came: {}",
                seen.lock().unwrap()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    let mut say = |line: &str| stdin.write_all(format!("{line}\n").as_bytes()).unwrap();
    say(":alert KafkaConsumerLag");
    // The message with the enrichment and the offered scale.
    wait_for("[scale recurring-task-service 8] (/oncall alerts run 1)");
    // The demo's minutes are seconds: the lag pages after "5m", 5 s.
    wait_for("paged on-call engineer (tier 1 of 2)");
    say("alerts run 1");
    wait_for("`scale recurring-task-service 8`: done, run by cli:operator");
    say("incident ack 1");
    wait_for("Escalation  acknowledged by cli:operator");
    say(":quit");
    drop(stdin);
    let status = child.wait().unwrap();
    reader.join().unwrap();
    let stdout = seen.lock().unwrap().clone();
    assert!(status.success(), "{stdout}");
    for want in [
        "KafkaConsumerLag fires (route kafka-consumer-lag): incident 1 opened",
        "[#incidents] ❌ Firing: KafkaConsumerLag",
        "Diagnosis of recurring-task-service",
        "✅ Scaled recurring-task-service",
    ] {
        assert!(stdout.contains(want), "{want} in {stdout}");
    }
}

#[test]
fn exec_against_oncall_sim_with_documented_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let _sim = Guard(
        Command::new(BIN)
            .args(["sim", "--listen", "127.0.0.1:0", "--kubeconfig-out"])
            .arg(&kubeconfig)
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_file(&kubeconfig);
    let config = dir.path().join("oncall.toml");
    std::fs::write(&config, oncall::config::EXAMPLE).unwrap();
    let exec = |user: &str, args: &[&str]| {
        let out = Command::new(BIN)
            .arg("exec")
            .arg("--config")
            .arg(&config)
            .args(["--user", user])
            .args(args)
            .env("KUBECONFIG", &kubeconfig)
            .current_dir(dir.path())
            .output()
            .unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (code, out) = exec("cli:operator", &["scale backend 5"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Scaled backend 2 → 5"), "{out}");
    let (code, out) = exec("cli:viewer", &["scale", "backend", "3"]);
    assert_eq!(code, 3, "denied: {out}");
    let (code, out) = exec("cli:operator", &["scael backend 3"]);
    assert_eq!(code, 2, "invalid: {out}");
    let (code, out) = exec("cli:operator", &["restart backend"]);
    assert_eq!(code, 5, "held for approval: {out}");
    let (code, out) = exec("cli:operator", &["status backend"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("5 desired"), "{out}");
    // One idempotency key, two runs: the second prints the first reply.
    let (code, first) = exec(
        "cli:operator",
        &["--idempotency-key", "k-1", "restart dev-utilities"],
    );
    assert_eq!(code, 0, "{first}");
    let (_, second) = exec(
        "cli:operator",
        &["--idempotency-key", "k-1", "restart dev-utilities"],
    );
    assert_eq!(first, second);
    let (code, history) = exec("cli:viewer", &["history --service dev-utilities"]);
    assert_eq!(code, 0);
    assert_eq!(
        history.matches("restart dev-utilities").count(),
        1,
        "ran once: {history}"
    );
    assert!(
        dir.path().join("oncall.db").exists(),
        "relative database path resolves in the working directory"
    );
    // An incident run from the command line, exported as Markdown and JSON.
    let (code, out) = exec("cli:commander", &["incident declare SEV-2 checkout errors"]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = exec("cli:operator", &["scale backend 3 --incident 1"]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = exec("cli:commander", &["incident resolve 1 scaled back"]);
    assert_eq!(code, 0, "{out}");
    let export = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(["incident", "export"])
            .args(args)
            .arg("--config")
            .arg(&config)
            .current_dir(dir.path())
            .output()
            .unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (code, markdown) = export(&["1"]);
    assert_eq!(code, 0, "{markdown}");
    assert!(
        markdown.starts_with("# Incident 1: checkout errors"),
        "{markdown}"
    );
    assert!(
        markdown.contains("scale backend 3 → done: backend 5 → 3"),
        "{markdown}"
    );
    let (code, json) = export(&["1", "--format", "json"]);
    assert_eq!(code, 0, "{json}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["incident"]["state"], "resolved");
    assert_eq!(v["timeline"][0]["kind"], "declared");
    assert_eq!(v["roles"][0]["role"], "commander");
    let (code, out) = export(&["9"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("there is no incident 9"), "{out}");
    // Retention: nothing here is older than a day, so nothing goes.
    let prune = |age: &str| {
        let out = Command::new(BIN)
            .args(["history", "prune", "--config"])
            .arg(&config)
            .args(["--older-than", age])
            .current_dir(dir.path())
            .output()
            .unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (code, out) = prune("90d");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("deleted 0 history row(s)"), "{out}");
    let (code, out) = prune("1h");
    assert_ne!(code, 0, "below a day is refused: {out}");
    // A bad principal is a setup error.
    let (code, out) = exec("alice", &["status backend"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("expected <kind>:<id>"), "{out}");
}

#[test]
fn exec_reports_an_unreachable_cluster_as_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    // Nothing listens on this port.
    std::fs::write(&kubeconfig, kube_sim::kubeconfig_yaml("http://127.0.0.1:9")).unwrap();
    let config = dir.path().join("oncall.toml");
    std::fs::write(&config, oncall::config::EXAMPLE).unwrap();
    let out = Command::new(BIN)
        .args(["exec", "--config"])
        .arg(&config)
        .args(["--user", "cli:operator", "scale backend 4"])
        .env("KUBECONFIG", &kubeconfig)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(4), "{stdout}");
    assert!(
        stdout.contains("the Kubernetes API cannot be reached"),
        "{stdout}"
    );
}

#[test]
fn check_validates_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(&good, oncall::config::EXAMPLE).unwrap();
    let out = Command::new(BIN)
        .args(["check", "--offline", "--config"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK (9 services, 4 roles"));
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[approvals]\nttl = \"1s\"\n[[services]]\nname = \"x\"\nnamespace = \"Bad_NS\"\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("approvals.ttl: expected at least 10s"),
        "{err}"
    );
    assert!(
        err.contains("services[0].namespace: `Bad_NS` is not a DNS-1123 label"),
        "{err}"
    );
    let out = Command::new(BIN)
        .args(["check", "--config", "/nonexistent.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[tokio::test]
async fn serve_answers_healthz() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, kube_sim::kubeconfig_yaml("http://127.0.0.1:9")).unwrap();
    let config = dir.path().join("oncall.toml");
    std::fs::write(&config, oncall::config::EXAMPLE).unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let _serve = Guard(
        Command::new(BIN)
            .args(["serve", "--config"])
            .arg(&config)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("KUBECONFIG", &kubeconfig)
            .current_dir(dir.path())
            .spawn()
            .unwrap(),
    );
    let url = format!("http://127.0.0.1:{port}/healthz");
    let start = Instant::now();
    let response = loop {
        match reqwest::get(&url).await {
            Ok(r) => break r,
            Err(_) if start.elapsed() < Duration::from_secs(120) => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("serve never answered: {e}"),
        }
    };
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["database"], "ok");
}
