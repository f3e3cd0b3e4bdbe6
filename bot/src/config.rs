//! Configuration: one TOML file with the server, the database, approvals, the
//! service catalog and the policy.
//!
//! Secrets never live here. Where a secret is needed (Slack signing secret,
//! bot tokens), the file names the environment variable that holds it, and
//! [`Config::load`] refuses a file whose keys look like they hold one.
//! Every error names the key at fault and says what was expected, so
//! `oncall check` can be used in CI on the config repository.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use oncall_grammar::{spec, Catalog, ServiceEntry};
use oncall_permissions::Policy;
use serde::Deserialize;

/// The example configuration, embedded so `oncall demo` runs anywhere.
pub const EXAMPLE: &str = include_str!("../../deploy/examples/oncall.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub election: ElectionSection,
    #[serde(default)]
    pub database: DatabaseConfig,
    #[serde(default)]
    pub approvals: ApprovalsConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub services: Vec<ServiceEntry>,
    #[serde(default)]
    pub policy: Policy,
    #[serde(default)]
    pub incidents: crate::incidents::IncidentsConfig,
    #[serde(default)]
    pub escalation: crate::escalation::config::EscalationConfig,
    #[serde(default)]
    pub alerts: crate::alerts::config::AlertsConfig,
    #[serde(default)]
    pub slack: crate::slack::SlackConfig,
    #[serde(default)]
    pub discord: crate::discord::DiscordConfig,
}

/// `[election]`: with several replicas, one leader (by a Kubernetes Lease)
/// runs the escalation engine, the pager and the courier; the others serve
/// requests only. Off by default (one process runs everything).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElectionSection {
    #[serde(default)]
    pub enabled: bool,
    /// The Lease's namespace (default: `POD_NAMESPACE`, else `oncall`).
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default = "default_lease_name")]
    pub lease: String,
    #[serde(default = "default_lease_duration", with = "humantime_serde_compat")]
    pub lease_duration: Duration,
    #[serde(default = "default_renew_deadline", with = "humantime_serde_compat")]
    pub renew_deadline: Duration,
    #[serde(default = "default_retry_period", with = "humantime_serde_compat")]
    pub retry_period: Duration,
}

impl Default for ElectionSection {
    fn default() -> Self {
        ElectionSection {
            enabled: false,
            namespace: None,
            lease: default_lease_name(),
            lease_duration: default_lease_duration(),
            renew_deadline: default_renew_deadline(),
            retry_period: default_retry_period(),
        }
    }
}

fn default_lease_name() -> String {
    "oncall-leader".into()
}
fn default_lease_duration() -> Duration {
    Duration::from_secs(15)
}
fn default_renew_deadline() -> Duration {
    Duration::from_secs(10)
}
fn default_retry_period() -> Duration {
    Duration::from_secs(2)
}

impl ElectionSection {
    /// The elector's settings, with this process's identity: the pod's
    /// name (`POD_NAME`, else `HOSTNAME`) and a random suffix, so a
    /// restarted pod is a new candidate.
    pub fn elector_config(&self) -> crate::election::ElectionConfig {
        let namespace = self
            .namespace
            .clone()
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .unwrap_or_else(|| "oncall".into());
        let host = std::env::var("POD_NAME")
            .or_else(|_| std::env::var("HOSTNAME"))
            .unwrap_or_else(|_| "oncall".into());
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let identity = format!("{host}-{}", &suffix[..8]);
        crate::election::ElectionConfig {
            lease_duration: self.lease_duration,
            renew_deadline: self.renew_deadline,
            retry_period: self.retry_period,
            ..crate::election::ElectionConfig::new(&namespace, &self.lease, &identity)
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Where `oncall serve` listens.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// How long `serve` lets in-flight commands finish after SIGTERM.
    #[serde(default = "default_shutdown_grace", with = "humantime_serde_compat")]
    pub shutdown_grace: Duration,
    /// Serve `/metrics` here instead of on `listen` (so it is not exposed
    /// with the Slack and Discord routes). `/healthz` and `/readyz` are
    /// served on both.
    #[serde(default)]
    pub metrics_listen: Option<String>,
    /// How long `/readyz` waits for the database write and for each
    /// cluster's API before it calls that part not ready.
    #[serde(default = "default_ready_timeout", with = "humantime_serde_compat")]
    pub ready_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: default_listen(),
            shutdown_grace: default_shutdown_grace(),
            metrics_listen: None,
            ready_timeout: default_ready_timeout(),
        }
    }
}

fn default_shutdown_grace() -> Duration {
    Duration::from_secs(20)
}

fn default_ready_timeout() -> Duration {
    Duration::from_secs(2)
}

fn default_listen() -> String {
    "127.0.0.1:8080".to_string()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// The SQLite file; relative paths are relative to the working directory.
    #[serde(default = "default_db_path")]
    pub path: PathBuf,
    /// A PostgreSQL URL (`postgres://user@host/db`, without a password:
    /// that comes from `PGPASSWORD`) instead of the SQLite file; several
    /// replicas need it. `DATABASE_URL` in the environment overrides it
    /// and may carry the password.
    #[serde(default)]
    pub url: Option<String>,
    /// How long the reply of an idempotency key is kept for repeats
    /// (humantime); older ones are deleted by the sweeper.
    #[serde(default = "default_reply_retention", with = "humantime_serde_compat")]
    pub reply_retention: Duration,
}

fn default_reply_retention() -> Duration {
    Duration::from_secs(7 * 86400)
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            path: default_db_path(),
            url: None,
            reply_retention: default_reply_retention(),
        }
    }
}

impl DatabaseConfig {
    /// The PostgreSQL URL to use, if any: `DATABASE_URL`, else `url`.
    pub fn postgres_url(&self) -> Option<String> {
        std::env::var("DATABASE_URL")
            .ok()
            .filter(|u| !u.is_empty())
            .or_else(|| self.url.clone())
    }

    /// Where the database is, for messages: the file, or the URL without
    /// its password.
    pub fn describe(&self) -> String {
        match self.postgres_url() {
            Some(url) => crate::store::postgres::redacted_url(&url),
            None => self.path.display().to_string(),
        }
    }
}

fn default_db_path() -> PathBuf {
    PathBuf::from("oncall.db")
}

/// Bounds on what long-running commands may hold.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// How many `rollout status --wait` one principal may follow at once.
    #[serde(default = "default_waits_per_principal")]
    pub waits_per_principal: usize,
    /// How many may run at once in all.
    #[serde(default = "default_waits_total")]
    pub waits_total: usize,
    /// How many changing commands one person may run in any
    /// `mutation_window` (0: no limit). Dry runs don't count.
    #[serde(default = "default_mutations_per_window")]
    pub mutations_per_window: usize,
    #[serde(default = "default_mutation_window", with = "humantime_serde_compat")]
    pub mutation_window: Duration,
}

fn default_mutations_per_window() -> usize {
    20
}

fn default_mutation_window() -> Duration {
    Duration::from_secs(60)
}

fn default_waits_per_principal() -> usize {
    3
}

fn default_waits_total() -> usize {
    50
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            waits_per_principal: default_waits_per_principal(),
            waits_total: default_waits_total(),
            mutations_per_window: default_mutations_per_window(),
            mutation_window: default_mutation_window(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalsConfig {
    /// How long a request waits for approval (humantime: `15m`).
    #[serde(default = "default_ttl", with = "humantime_serde_compat")]
    pub ttl: Duration,
}

impl Default for ApprovalsConfig {
    fn default() -> Self {
        ApprovalsConfig { ttl: default_ttl() }
    }
}

fn default_ttl() -> Duration {
    Duration::from_secs(15 * 60)
}

/// A humantime duration within `[min, max]` (`range` says it in words),
/// for the optional durations of the config.
pub(crate) fn bounded_duration(
    s: &str,
    min: Duration,
    max: Duration,
    range: &str,
) -> Result<Duration, String> {
    let parsed = humantime::parse_duration(s)
        .map_err(|e| format!("expected a duration like \"15m\", got {s:?} ({e})"))?;
    if parsed < min || parsed > max {
        return Err(format!("expected a duration from {range}, got {s:?}"));
    }
    Ok(parsed)
}

/// Durations in the config are humantime text (`15m`, `2s`, `1h 30m`).
pub(crate) mod humantime_serde_compat {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    /// The longest duration a setting takes (TTLs, grace periods).
    const MAX_CONFIG_DURATION: Duration = Duration::from_secs(30 * 86400);

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        let parsed = humantime::parse_duration(&s).map_err(|e| {
            serde::de::Error::custom(format!(
                "expected a duration like \"15m\" or \"1h 30m\", got {s:?} ({e})"
            ))
        })?;
        if parsed > MAX_CONFIG_DURATION {
            return Err(serde::de::Error::custom(format!(
                "expected a duration of at most 30 days, got {s:?}"
            )));
        }
        Ok(parsed)
    }
}

/// Everything wrong with a configuration file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Syntax { path: String, message: String },
    #[error("{path}: {} problem(s):\n{}", errors.len(), errors.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n"))]
    Invalid { path: String, errors: Vec<String> },
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text, &path.display().to_string())
    }

    /// Parses and validates; `origin` names the file in messages.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: origin.to_string(),
            message: e.to_string().trim().replace('\n', "\n  "),
        })?;
        let errors = config.validate(text);
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid {
                path: origin.to_string(),
                errors,
            })
        }
    }

    fn validate(&self, text: &str) -> Vec<String> {
        let mut errors = Vec::new();
        if self.server.listen.parse::<SocketAddr>().is_err() {
            errors.push(format!(
                "server.listen: expected an address like \"127.0.0.1:8080\", got {:?}",
                self.server.listen
            ));
        }
        if let Some(m) = &self.server.metrics_listen {
            match m.parse::<SocketAddr>() {
                Err(_) => errors.push(format!(
                    "server.metrics_listen: expected an address like \"0.0.0.0:9090\", got {m:?}"
                )),
                Ok(a) if Some(a) == self.server.listen.parse().ok() => errors.push(
                    "server.metrics_listen: must differ from server.listen (leave it out to serve /metrics on listen)"
                        .to_string(),
                ),
                Ok(_) => {}
            }
        }
        if self.election.enabled {
            if let Err(e) = self.election.elector_config().validate() {
                errors.push(e);
            }
        }
        if self.server.ready_timeout < Duration::from_millis(100)
            || self.server.ready_timeout > Duration::from_secs(30)
        {
            errors.push("server.ready_timeout: expected between 100ms and 30s".to_string());
        }
        if let Some(url) = &self.database.url {
            match url::Url::parse(url) {
                Ok(u) if !matches!(u.scheme(), "postgres" | "postgresql") => errors.push(
                    "database.url: expected a postgres:// URL".to_string(),
                ),
                Ok(u) if u.password().is_some() => errors.push(
                    "database.url: a password does not go in this file; set PGPASSWORD, or give the whole URL in DATABASE_URL".to_string(),
                ),
                Ok(_) => {}
                Err(_) => errors.push("database.url: expected a postgres:// URL".to_string()),
            }
        }
        if self.database.path.as_os_str().is_empty() {
            errors.push("database.path: expected a file path".to_string());
        }
        if self.approvals.ttl < Duration::from_secs(10) {
            errors.push("approvals.ttl: expected at least 10s".to_string());
        }
        errors.extend(self.catalog().validate());
        errors.extend(self.incidents.validate());
        errors.extend(self.escalation.validate());
        errors.extend(self.alerts.validate());
        for (i, r) in self.alerts.routes.iter().enumerate() {
            if let Some(s) = &r.severity {
                if self.incidents.severity(s).is_none() {
                    errors.push(format!(
                        "alerts.routes[{i}] ({}): severity `{s}` is not in [incidents]",
                        r.name
                    ));
                }
            }
            if let Some(p) = &r.escalation {
                if self.escalation.policy(p).is_none() {
                    errors.push(format!("alerts.routes[{i}] ({}): escalation policy `{p}` is not in [[escalation.policies]]", r.name));
                }
            }
        }
        for (i, s) in self.incidents.severities.iter().enumerate() {
            if let Some(p) = &s.escalation {
                if self.escalation.policy(p).is_none() {
                    errors.push(format!(
                        "incidents.severities[{i}] ({}): escalation policy `{p}` is not in [[escalation.policies]]",
                        s.name
                    ));
                }
            }
        }
        errors.extend(
            self.policy
                .validate(&spec::policy_verbs())
                .into_iter()
                .map(|e| e.to_string()),
        );
        errors.extend(secret_looking_keys(text));
        errors
    }

    pub fn catalog(&self) -> Catalog {
        Catalog::new(self.services.clone())
    }

    /// Where `/metrics` is served on its own, if configured.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.server
            .metrics_listen
            .as_ref()
            .map(|a| a.parse().expect("validated in Config::parse"))
    }

    pub fn listen_addr(&self) -> SocketAddr {
        self.server
            .listen
            .parse()
            .expect("validated in Config::parse")
    }

    /// The kube contexts the catalog names.
    pub fn contexts(&self) -> Vec<String> {
        let mut contexts: Vec<String> = self
            .services
            .iter()
            .filter_map(|s| s.context.clone())
            .collect();
        contexts.sort();
        contexts.dedup();
        contexts
    }
}

/// Keys whose names say they hold a secret must hold the name of an
/// environment variable instead (`signing_secret_env = "SLACK_SIGNING_SECRET"`).
fn secret_looking_keys(text: &str) -> Vec<String> {
    let mut errors = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let Some((key, _)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim().to_ascii_lowercase();
        let secretish = ["secret", "token", "password", "api_key", "private_key"]
            .iter()
            .any(|w| key.contains(w));
        if secretish && !key.ends_with("_env") {
            errors.push(format!(
                "line {}: `{key}` looks like a secret; secrets come only from environment variables (use `{key}_env = \"VARIABLE_NAME\"`)",
                n + 1
            ));
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_is_valid_and_covers_the_runbooks() {
        let config = Config::parse(EXAMPLE, "deploy/examples/oncall.toml").unwrap();
        let catalog = config.catalog();
        for service in [
            "backend",
            "recurring-task-service",
            "notification-service",
            "frontend",
            "oauth2-server",
            "brownie-metadata-api",
            "dev-utilities",
            "vibe-ensemble-server",
            "postgres",
        ] {
            assert!(catalog.get(service).is_some(), "{service} missing");
        }
        assert_eq!(
            catalog.get("recurring-task-service").unwrap().max_replicas,
            12
        );
        assert_eq!(config.approvals.ttl, Duration::from_secs(900));
        // Runbook 003's severities with 004's names and cadence; a config
        // without [incidents] gets the same (but no escalation: that
        // needs [escalation] policies).
        let without_escalation: Vec<_> = config
            .incidents
            .severities
            .iter()
            .cloned()
            .map(|s| crate::incidents::SeverityConfig {
                escalation: None,
                ..s
            })
            .collect();
        assert_eq!(
            without_escalation,
            crate::incidents::IncidentsConfig::default().severities
        );
        // Runbook 002's four tiers for SEV-1, runbook 004's "high" for SEV-2.
        let sev1_policy = config.incidents.severities[0]
            .escalation
            .as_deref()
            .unwrap();
        let tiers = &config.escalation.policy(sev1_policy).unwrap().tiers;
        let delays: Vec<_> = tiers
            .iter()
            .map(|t| t.delay.map(|d| d.as_secs() / 60))
            .collect();
        assert_eq!(delays, [Some(15), Some(15), Some(30), None]);
        assert_eq!(
            config.incidents.severities[1].escalation.as_deref(),
            Some("high")
        );
        assert!(config.incidents.own_channels);
        let sev1 = config.incidents.severity("p0").unwrap();
        assert_eq!(sev1.name, "SEV-1");
        assert_eq!(sev1.update_every, Some(Duration::from_secs(15 * 60)));
        assert_eq!(
            config.incidents.severity("high").unwrap().update_every,
            Some(Duration::from_secs(30 * 60))
        );
        assert_eq!(
            config.incidents.severity("SEV-4").unwrap().response,
            "next business day"
        );
        let roles: Vec<&str> = config
            .policy
            .roles
            .iter()
            .map(|r| r.name.as_str())
            .collect();
        for role in ["viewer", "operator", "admin", "incident-commander"] {
            assert!(roles.contains(&role), "{role}");
        }
    }

    #[test]
    fn errors_name_the_key_and_what_is_expected() {
        let table = [
            ("[server]\nlisten = \"everywhere\"\n", "server.listen: expected an address"),
            (
                "[server]\nmetrics_listen = \"nowhere\"\n",
                "server.metrics_listen: expected an address",
            ),
            (
                "[server]\nlisten = \"127.0.0.1:8080\"\nmetrics_listen = \"127.0.0.1:8080\"\n",
                "server.metrics_listen: must differ",
            ),
            ("[server]\nready_timeout = \"1h\"\n", "server.ready_timeout: expected between"),
            (
                "[database]\nurl = \"postgres://oncall:hunter2@db/oncall\"\n",
                "database.url: a password does not go in this file",
            ),
            ("[database]\nurl = \"mysql://db/oncall\"\n", "database.url: expected a postgres:// URL"),
            (
                "[election]\nenabled = true\nlease_duration = \"5s\"\nrenew_deadline = \"10s\"\n",
                "election.lease_duration must be longer than renew_deadline",
            ),
            ("[approvals]\nttl = \"soon\"\n", "expected a duration like \"15m\""),
            ("[approvals]\nttl = \"1s\"\n", "approvals.ttl: expected at least 10s"),
            ("[approvals]\nttl = \"20000y\"\n", "expected a duration of at most 30 days"),
            ("[[services]]\nname = \"Backend\"\nnamespace = \"default\"\n", "services[0].name: `Backend` is not a DNS-1123 label"),
            ("[[services]]\nname = \"b\"\nnamespace = \"default\"\nmin_replicas = 5\nmax_replicas = 2\n", "services[0].min_replicas: 5 is above max_replicas 2"),
            ("[[services]]\nname = \"b\"\nnamespace = \"default\"\nhealth_urls = [\"localhost/health\"]\n", "services[0].health_urls[0]: expected an http:// or https:// URL"),
            ("[[services]]\nname = \"b\"\nnamespce = \"default\"\n", "unknown field `namespce`"),
            ("[[policy.roles]]\nname = \"ops\"\ngrants = [{ verbs = [\"scael\"] }]\n", "policy.roles[0].grants[0].verbs: unknown verb `scael`"),
            ("[[policy.bindings]]\nprincipal = \"bob\"\nroles = []\n", "expected <kind>:<id>"),
            ("[slack]\nsigning_secret = \"abc\"\n", "unknown field `signing_secret`"),
            ("[incidents]\ndiscord_threads = true\n", "incidents.discord_threads: threads need a channel"),
            ("[incidents]\nannounce = { teams = \"C1\" }\n", "incidents.announce: `teams` is not a platform"),
            ("[incidents]\nroles = [\"Chief!\"]\n", "incidents.roles[0]: `Chief!` is not a role name"),
            ("[[incidents.severities]]\nname = \"SEV-1\"\naliases = [\"sev-1\"]\nresponse = \"15m\"\n", "`sev-1` names two severities"),
            ("[[incidents.severities]]\nname = \"SEV-1\"\nresponse = \"15m\"\nupdate_every = \"5s\"\n", "expected a duration from 1m to 7d"),
            ("[database]\npassword = \"hunter2\"\n", "unknown field `password`"),
        ];
        for (text, expected) in table {
            let err = Config::parse(text, "test.toml").unwrap_err().to_string();
            assert!(err.contains(expected), "{text}\n=> {err}");
        }
        let err =
            secret_looking_keys("bot_token = \"xoxb-1\"\nbot_token_env = \"SLACK_BOT_TOKEN\"\n");
        assert_eq!(err.len(), 1);
        assert!(err[0].contains("line 1: `bot_token` looks like a secret"));
    }
}
