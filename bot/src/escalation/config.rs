//! `[escalation]`: policies (tiers of targets with delays), schedules, and
//! the paging providers. Validated once at load, so the engine never meets
//! a target it cannot page: every `schedule:`, `pagerduty:`, `opsgenie:`
//! and `webhook:` name resolves, and every delay is known.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use oncall_permissions::Principal;
use serde::{Deserialize, Serialize};

pub use oncall_grammar::Target;

use super::schedule::{Rotation, Schedule, ShiftLength};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationConfig {
    /// How often due escalations and pages are looked for (at most 1s;
    /// 250ms by default, one indexed query each).
    #[serde(
        default = "default_tick",
        with = "crate::config::humantime_serde_compat"
    )]
    pub tick: Duration,
    #[serde(default)]
    pub policies: Vec<PolicyConfig>,
    #[serde(default)]
    pub schedules: Vec<ScheduleConfig>,
    #[serde(default)]
    pub pagerduty: PagerDutyConfig,
    #[serde(default)]
    pub opsgenie: OpsgenieConfig,
    #[serde(default)]
    pub webhooks: BTreeMap<String, WebhookConfig>,
    /// At most this many pages to one target per `rate_window`; more are
    /// suppressed and the timeline says so.
    #[serde(default = "default_max_pages")]
    pub max_pages_per_target: u32,
    #[serde(
        default = "default_rate_window",
        with = "crate::config::humantime_serde_compat"
    )]
    pub rate_window: Duration,
}

impl Default for EscalationConfig {
    fn default() -> Self {
        EscalationConfig {
            tick: default_tick(),
            policies: Vec::new(),
            schedules: Vec::new(),
            pagerduty: PagerDutyConfig::default(),
            opsgenie: OpsgenieConfig::default(),
            webhooks: BTreeMap::new(),
            max_pages_per_target: default_max_pages(),
            rate_window: default_rate_window(),
        }
    }
}

fn default_tick() -> Duration {
    Duration::from_millis(250)
}

fn default_max_pages() -> u32 {
    20
}

fn default_rate_window() -> Duration {
    Duration::from_secs(3600)
}

/// A policy: tiers paged in order until someone acknowledges.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    pub name: String,
    /// How many times the whole list is paged again after the last tier.
    #[serde(default)]
    pub repeat: u32,
    pub tiers: Vec<TierConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierConfig {
    #[serde(default)]
    pub name: Option<String>,
    pub targets: Vec<String>,
    /// How long after this tier the next one is paged. Required on every
    /// tier but the last (and on the last too when the policy repeats).
    #[serde(default, with = "opt_duration")]
    pub delay: Option<Duration>,
}

mod opt_duration {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        let s = String::deserialize(d)?;
        crate::config::bounded_duration(
            &s,
            Duration::from_secs(1),
            Duration::from_secs(7 * 86400),
            "1s to 7d",
        )
        .map(Some)
        .map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    pub name: String,
    /// An IANA time zone (`Europe/Berlin`); handoffs are its wall clock.
    pub time_zone: String,
    pub rotations: Vec<RotationConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotationConfig {
    #[serde(default = "default_rotation_name")]
    pub name: String,
    /// The first shift's start on the local clock, `2026-11-30T09:00`.
    pub handoff: String,
    /// Shift length: `1d` daily, `7d` weekly, `12h`, …
    #[serde(with = "crate::config::humantime_serde_compat")]
    pub every: Duration,
    pub participants: Vec<String>,
}

fn default_rotation_name() -> String {
    "main".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PagerDutyConfig {
    /// The Events API base: `https://events.pagerduty.com`, or
    /// `https://events.eu.pagerduty.com`.
    #[serde(default = "default_pagerduty_url")]
    pub url: String,
    /// `pagerduty:<name>` targets: a service's integration routing key,
    /// read from the named environment variable when a page is sent.
    #[serde(default)]
    pub services: BTreeMap<String, PagerDutyService>,
    /// The V3 webhook subscription's signing secret, for acknowledgements
    /// made in PagerDuty (`POST /webhooks/pagerduty`).
    #[serde(default)]
    pub webhook_secret_env: Option<String>,
}

impl Default for PagerDutyConfig {
    fn default() -> Self {
        PagerDutyConfig {
            url: default_pagerduty_url(),
            services: BTreeMap::new(),
            webhook_secret_env: None,
        }
    }
}

fn default_pagerduty_url() -> String {
    "https://events.pagerduty.com".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PagerDutyService {
    pub routing_key_env: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpsgenieConfig {
    /// `https://api.opsgenie.com` or `https://api.eu.opsgenie.com`.
    #[serde(default = "default_opsgenie_url")]
    pub url: String,
    /// The environment variable holding the API integration key.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// `opsgenie:<name>` targets: the Opsgenie team paged.
    #[serde(default)]
    pub teams: BTreeMap<String, OpsgenieTeam>,
    /// The token Opsgenie's outgoing webhook sends in `X-Oncall-Token`, for
    /// acknowledgements made there (`POST /webhooks/opsgenie`).
    #[serde(default)]
    pub webhook_token_env: Option<String>,
}

impl Default for OpsgenieConfig {
    fn default() -> Self {
        OpsgenieConfig {
            url: default_opsgenie_url(),
            api_key_env: None,
            teams: BTreeMap::new(),
            webhook_token_env: None,
        }
    }
}

fn default_opsgenie_url() -> String {
    "https://api.opsgenie.com".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpsgenieTeam {
    /// The team's name in Opsgenie.
    pub team: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub url: String,
    /// The environment variable holding the signing secret (`whsec_…`).
    pub secret_env: String,
}

/// A policy as taken when an escalation starts: later config changes do
/// not change an escalation under way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicySnapshot {
    pub name: String,
    pub repeat: u32,
    pub tiers: Vec<TierSnapshot>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierSnapshot {
    pub name: String,
    pub targets: Vec<String>,
    /// Until the next tier (or the next loop, after the last).
    pub delay_ms: Option<i64>,
}

impl EscalationConfig {
    pub fn policy(&self, name: &str) -> Option<&PolicyConfig> {
        self.policies.iter().find(|p| p.name == name)
    }

    pub fn snapshot(&self, name: &str) -> Option<PolicySnapshot> {
        let p = self.policy(name)?;
        Some(PolicySnapshot {
            name: p.name.clone(),
            repeat: p.repeat,
            tiers: p
                .tiers
                .iter()
                .enumerate()
                .map(|(i, t)| TierSnapshot {
                    name: t.name.clone().unwrap_or_else(|| format!("tier {}", i + 1)),
                    targets: t.targets.clone(),
                    delay_ms: t.delay.map(|d| d.as_millis() as i64),
                })
                .collect(),
        })
    }

    /// The demo's time: every delay of a minute or more becomes as many
    /// seconds (15m → 15s), so a whole escalation plays out in a minute.
    pub fn minutes_as_seconds(&mut self) {
        for p in &mut self.policies {
            for t in &mut p.tiers {
                if let Some(d) = t.delay {
                    if d >= Duration::from_secs(60) {
                        t.delay = Some(Duration::from_secs(d.as_secs() / 60));
                    }
                }
            }
        }
    }

    pub fn schedule_config(&self, name: &str) -> Option<&ScheduleConfig> {
        self.schedules.iter().find(|s| s.name == name)
    }

    /// The schedule named, built (validated at load, so it builds).
    pub fn schedule(&self, name: &str) -> Option<Schedule> {
        self.schedule_config(name).and_then(|s| s.build().ok())
    }

    pub fn schedule_names(&self) -> Vec<&str> {
        self.schedules.iter().map(|s| s.name.as_str()).collect()
    }

    /// Whether a target names things that exist in this config.
    pub fn check_target(&self, target: &Target) -> Result<(), String> {
        let missing = |what: &str, name: &str| Err(format!("{what} `{name}` is not configured"));
        match target {
            Target::Schedule(n) if self.schedule_config(n).is_none() => missing("schedule", n),
            Target::PagerDuty(n) if !self.pagerduty.services.contains_key(n) => {
                missing("PagerDuty service", n)
            }
            Target::Opsgenie(n) if !self.opsgenie.teams.contains_key(n) => {
                missing("Opsgenie team", n)
            }
            Target::Opsgenie(_) if self.opsgenie.api_key_env.is_none() => {
                Err("opsgenie.api_key_env is not configured".into())
            }
            Target::Webhook(n) if !self.webhooks.contains_key(n) => missing("webhook", n),
            _ => Ok(()),
        }
    }

    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if self.tick > Duration::from_secs(1) || self.tick < Duration::from_millis(10) {
            errors.push("escalation.tick: expected from 10ms to 1s".into());
        }
        if self.max_pages_per_target == 0 {
            errors.push("escalation.max_pages_per_target: expected at least 1".into());
        }
        for (i, s) in self.schedules.iter().enumerate() {
            if self.schedules[..i].iter().any(|o| o.name == s.name) {
                errors.push(format!(
                    "escalation.schedules[{i}]: `{}` is named twice",
                    s.name
                ));
            }
            if let Err(e) = s.build() {
                errors.push(format!("escalation.schedules[{i}] ({}): {e}", s.name));
            }
        }
        for (i, p) in self.policies.iter().enumerate() {
            let at = format!("escalation.policies[{i}] ({})", p.name);
            if self.policies[..i].iter().any(|o| o.name == p.name) {
                errors.push(format!("{at}: named twice"));
            }
            if p.tiers.is_empty() {
                errors.push(format!("{at}: expected at least one tier"));
            }
            for (t, tier) in p.tiers.iter().enumerate() {
                let last = t + 1 == p.tiers.len();
                if tier.targets.is_empty() {
                    errors.push(format!("{at}.tiers[{t}]: expected at least one target"));
                }
                if tier.delay.is_none() && (!last || p.repeat > 0) {
                    errors.push(format!(
                        "{at}.tiers[{t}]: expected a delay (how long until the next tier), e.g. delay = \"15m\""
                    ));
                }
                for target in &tier.targets {
                    match Target::parse(target).and_then(|t| self.check_target(&t)) {
                        Ok(()) => {}
                        Err(e) => errors.push(format!("{at}.tiers[{t}]: {e}")),
                    }
                }
            }
        }
        for (name, s) in &self.pagerduty.services {
            if !is_env_name(&s.routing_key_env) {
                errors.push(format!(
                    "escalation.pagerduty.services.{name}.routing_key_env: expected an environment variable name"
                ));
            }
        }
        if let Some(env) = &self.opsgenie.api_key_env {
            if !is_env_name(env) {
                errors.push(
                    "escalation.opsgenie.api_key_env: expected an environment variable name".into(),
                );
            }
        }
        for (name, w) in &self.webhooks {
            if !(w.url.starts_with("https://") || w.url.starts_with("http://")) {
                errors.push(format!(
                    "escalation.webhooks.{name}.url: expected an http(s) URL"
                ));
            }
            if !is_env_name(&w.secret_env) {
                errors.push(format!(
                    "escalation.webhooks.{name}.secret_env: expected an environment variable name"
                ));
            }
        }
        for (what, url) in [
            ("pagerduty", &self.pagerduty.url),
            ("opsgenie", &self.opsgenie.url),
        ] {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                errors.push(format!("escalation.{what}.url: expected an http(s) URL"));
            }
        }
        errors
    }
}

fn is_env_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        && !s.as_bytes()[0].is_ascii_digit()
}

impl ScheduleConfig {
    pub fn build(&self) -> Result<Schedule, String> {
        let zone = TimeZone::get(&self.time_zone)
            .map_err(|_| format!("time_zone `{}` is not an IANA time zone", self.time_zone))?;
        if self.rotations.is_empty() {
            return Err("expected at least one rotation".into());
        }
        let mut rotations = Vec::new();
        for r in &self.rotations {
            let handoff: DateTime = r.handoff.parse().map_err(|_| {
                format!(
                    "rotation {}: handoff `{}` is not a local date and time like 2026-11-30T09:00",
                    r.name, r.handoff
                )
            })?;
            let every = ShiftLength::from_duration(r.every)
                .map_err(|e| format!("rotation {}: every: {e}", r.name))?;
            if r.participants.is_empty() {
                return Err(format!(
                    "rotation {}: expected at least one participant",
                    r.name
                ));
            }
            let participants = r
                .participants
                .iter()
                .map(|p| {
                    p.parse::<Principal>()
                        .map_err(|e| format!("rotation {}: {e}", r.name))
                })
                .collect::<Result<Vec<_>, _>>()?;
            rotations.push(Rotation {
                name: r.name.clone(),
                handoff,
                every,
                participants,
            });
        }
        Ok(Schedule {
            name: self.name.clone(),
            zone,
            rotations,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<EscalationConfig, String> {
        toml::from_str::<EscalationConfig>(text).map_err(|e| e.to_string())
    }

    #[test]
    fn every_reference_and_delay_is_checked() {
        let c = parse(
            r#"
            [[policies]]
            name = "p"
            tiers = [
              { targets = ["schedule:nope", "pagerduty:x", "webhook:y"] },
              { targets = ["cli:a"] },
            ]
            [[schedules]]
            name = "s"
            time_zone = "Mars/Olympus"
            rotations = [{ handoff = "2026-11-30T09:00", every = "90m", participants = ["cli:a"] }]
            "#,
        )
        .unwrap();
        let errors = c.validate().join("\n");
        for want in [
            "schedule `nope` is not configured",
            "PagerDuty service `x` is not configured",
            "webhook `y` is not configured",
            "tiers[0]: expected a delay",
            "`Mars/Olympus` is not an IANA time zone",
        ] {
            assert!(errors.contains(want), "{want} in {errors}");
        }
        assert!(
            !errors.contains("tiers[1]"),
            "the last tier needs no delay: {errors}"
        );
    }

    #[test]
    fn a_repeating_policy_needs_a_delay_on_its_last_tier() {
        let c = parse(
            r#"
            [[policies]]
            name = "p"
            repeat = 2
            tiers = [{ targets = ["cli:a"], delay = "5m" }, { targets = ["cli:b"] }]
            "#,
        )
        .unwrap();
        assert!(c
            .validate()
            .join("\n")
            .contains("tiers[1]: expected a delay"));
    }

    #[test]
    fn snapshots_name_unnamed_tiers_and_keep_delays() {
        let c = parse(
            r#"
            [[policies]]
            name = "p"
            tiers = [{ targets = ["cli:a"], delay = "15s" }, { name = "boss", targets = ["cli:b"] }]
            "#,
        )
        .unwrap();
        assert!(c.validate().is_empty(), "{:?}", c.validate());
        let s = c.snapshot("p").unwrap();
        assert_eq!(s.tiers[0].name, "tier 1");
        assert_eq!(s.tiers[0].delay_ms, Some(15_000));
        assert_eq!(s.tiers[1].name, "boss");
        assert_eq!(s.tiers[1].delay_ms, None);
    }
}
