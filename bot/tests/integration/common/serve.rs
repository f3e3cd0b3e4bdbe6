//! `oncall serve` as users run it: the real binary in a temp dir, against a
//! simulated cluster and a fake Slack, with signed slash commands sent over
//! real HTTP. Killed when dropped.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::fake_slack::{FakeSlack, BOT_TOKEN};

pub const BIN: &str = env!("CARGO_BIN_EXE_oncall");

/// A temp dir holding a kubeconfig for the simulator and an `oncall.toml`.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
    pub config: PathBuf,
    pub secret: &'static str,
}

impl Setup {
    /// The example config with `config_tail` appended (bindings and the
    /// like) and each `(from, to)` of `replace` applied to it first.
    pub fn new(
        sim_url: &str,
        secret: &'static str,
        replace: &[(&str, &str)],
        config_tail: &str,
    ) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(&kubeconfig, kube_sim::kubeconfig_yaml(sim_url)).unwrap();
        let mut text = oncall::config::EXAMPLE.to_string();
        for (from, to) in replace {
            assert!(text.contains(from), "the example config has no {from:?}");
            text = text.replace(from, to);
        }
        text.push('\n');
        text.push_str(config_tail);
        let config = dir.path().join("oncall.toml");
        std::fs::write(&config, text).unwrap();
        Setup {
            dir,
            kubeconfig,
            config,
            secret,
        }
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("oncall.db")
    }

    /// Starts `oncall serve` on a free port and waits until it answers
    /// `/healthz`; its log goes to `log_name` in the temp dir.
    pub async fn serve(&self, slack: &FakeSlack, log_name: &str) -> Served {
        self.serve_env(slack, log_name, &[]).await
    }

    /// [`Setup::serve`] with more environment variables.
    pub async fn serve_env(
        &self,
        slack: &FakeSlack,
        log_name: &str,
        env: &[(&str, &str)],
    ) -> Served {
        let log_path = self.dir.path().join(log_name);
        let log = std::fs::File::create(&log_path).unwrap();
        let port = free_port();
        let base = format!("http://127.0.0.1:{port}");
        let mut command = Command::new(BIN);
        for (k, v) in env {
            if v.is_empty() {
                command.env_remove(k);
            }
        }
        let set: Vec<(&str, &str)> = env.iter().copied().filter(|(_, v)| !v.is_empty()).collect();
        let child = command
            .args(["serve", "--config"])
            .arg(&self.config)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("KUBECONFIG", &self.kubeconfig)
            .env("SLACK_SIGNING_SECRET", self.secret)
            .env("SLACK_BOT_TOKEN", BOT_TOKEN)
            .env("SLACK_API_URL", slack.api_url())
            .env("ONCALL_LOG", "info")
            .envs(set)
            .current_dir(self.dir.path())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let served = Served {
            child,
            base,
            log_path,
            started: Instant::now(),
        };
        served.wait_healthy().await;
        served
    }
}

/// A running `oncall serve`.
pub struct Served {
    pub child: Child,
    pub base: String,
    pub log_path: PathBuf,
    pub started: Instant,
}

impl Served {
    async fn wait_healthy(&self) {
        let http = reqwest::Client::new();
        while http
            .get(format!("{}/healthz", self.base))
            .send()
            .await
            .is_err()
        {
            assert!(
                self.started.elapsed() < super::DEADLINE,
                "serve never answered:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// SIGKILL: no shutdown code runs, as when the node dies.
    pub fn kill_9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Resident memory, from `/proc`.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/<pid>/status")
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A slash command's form body, as Slack sends it.
pub fn command_body(user: &str, text: &str, trigger: &str, response_url: &str) -> String {
    serde_urlencoded::to_string([
        ("team_id", "T0001"),
        ("channel_id", "C0OPS"),
        ("user_id", user),
        ("command", "/oncall"),
        ("text", text),
        ("response_url", response_url),
        ("trigger_id", trigger),
    ])
    .unwrap()
}

/// Posts `body` to `/slack/commands` signed with `secret` at the current
/// time, with `extra` headers (Slack's retry headers, say).
pub async fn post_signed(
    http: &reqwest::Client,
    base: &str,
    secret: &str,
    body: impl Into<Vec<u8>>,
    extra: &[(&str, &str)],
) -> reqwest::Result<reqwest::Response> {
    post_signed_to(http, base, "/slack/commands", secret, body, extra).await
}

/// [`post_signed`] to any of the Slack routes (`/slack/interactions`).
pub async fn post_signed_to(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    secret: &str,
    body: impl Into<Vec<u8>>,
    extra: &[(&str, &str)],
) -> reqwest::Result<reqwest::Response> {
    let body = body.into();
    let ts = jiff::Timestamp::now().as_second().to_string();
    let mut req = http
        .post(format!("{base}{path}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-slack-request-timestamp", &ts)
        .header(
            "x-slack-signature",
            oncall::slack::verify::sign(secret.as_bytes(), &ts, &body),
        );
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    req.body(body).send().await
}

/// The history file, opened as an operator would after a crash (SQLite
/// replays the WAL).
pub fn open_db(path: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).unwrap()
}
