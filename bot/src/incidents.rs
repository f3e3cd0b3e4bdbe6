//! Incidents: their configuration (severities with aliases, response
//! targets and update cadence; roles), which incident a command means, and
//! how an incident and its timeline read in chat.
//!
//! The lifecycle itself lives in the `incident` handlers and the store's
//! guarded changes; this module is what they share, and what the router
//! uses to put ops commands on an incident's timeline.

use std::time::Duration;

use serde::Deserialize;

use crate::store::{Incident, IncidentEvent, RoleHolder, Store, StoreError};

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IncidentsConfig {
    #[serde(default = "default_severities")]
    pub severities: Vec<SeverityConfig>,
    #[serde(default = "default_roles")]
    pub roles: Vec<String>,
    /// Where declarations are announced: platform (`slack`, `discord`,
    /// `cli`) → channel id. A platform not named announces nothing.
    #[serde(default)]
    pub announce: std::collections::BTreeMap<String, String>,
    /// Whether each incident gets a channel of its own, `inc-<N>-<slug>`,
    /// with the declarer and the commander invited.
    #[serde(default)]
    pub own_channels: bool,
    /// On Discord, an incident's own channel is a thread of its platform's
    /// announce channel rather than a new text channel.
    #[serde(default)]
    pub discord_threads: bool,
    /// The Slack reaction that adds a message in an incident's channel to
    /// its timeline (Discord: the message command "Add to timeline").
    #[serde(default = "default_pin_reaction")]
    pub pin_reaction: String,
}

fn default_pin_reaction() -> String {
    "pushpin".into()
}

impl Default for IncidentsConfig {
    fn default() -> Self {
        IncidentsConfig {
            severities: default_severities(),
            roles: default_roles(),
            announce: Default::default(),
            own_channels: false,
            discord_threads: false,
            pin_reaction: default_pin_reaction(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SeverityConfig {
    pub name: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub description: String,
    /// The response target, as people say it (`15m`, `next business day`).
    pub response: String,
    /// How often the commander is reminded to post an update.
    #[serde(default, with = "opt_duration")]
    pub update_every: Option<Duration>,
    /// The escalation policy `declare` starts (`[[escalation.policies]]`).
    #[serde(default)]
    pub escalation: Option<String>,
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
            Duration::from_secs(60),
            Duration::from_secs(7 * 86400),
            "1m to 7d",
        )
        .map(Some)
        .map_err(serde::de::Error::custom)
    }
}

fn severity(
    name: &str,
    aliases: &[&str],
    description: &str,
    response: &str,
    update_every: Option<u64>,
) -> SeverityConfig {
    SeverityConfig {
        name: name.into(),
        aliases: aliases.iter().map(|a| a.to_string()).collect(),
        description: description.into(),
        response: response.into(),
        update_every: update_every.map(|m| Duration::from_secs(m * 60)),
        escalation: None,
    }
}

/// Runbook 003's levels with runbook 004's names as aliases.
fn default_severities() -> Vec<SeverityConfig> {
    vec![
        severity(
            "SEV-1",
            &["P0", "critical", "sev1"],
            "service completely down, data loss or corruption, security breach",
            "15m",
            Some(15),
        ),
        severity(
            "SEV-2",
            &["P1", "high", "sev2"],
            "significant degradation or partial outage",
            "1h",
            Some(30),
        ),
        severity(
            "SEV-3",
            &["P2", "medium", "sev3"],
            "minor performance issues, non-critical feature failures",
            "4h",
            None,
        ),
        severity(
            "SEV-4",
            &["P3", "low", "sev4"],
            "cosmetic issues",
            "next business day",
            None,
        ),
    ]
}

fn default_roles() -> Vec<String> {
    ["commander", "scribe", "comms", "ops"]
        .map(String::from)
        .to_vec()
}

impl IncidentsConfig {
    /// The severity a word names (its name or an alias, any case).
    pub fn severity(&self, word: &str) -> Option<&SeverityConfig> {
        self.severities.iter().find(|s| {
            s.name.eq_ignore_ascii_case(word)
                || s.aliases.iter().any(|a| a.eq_ignore_ascii_case(word))
        })
    }

    /// `SEV-1 (P0, critical, sev1), SEV-2 …` for an error message.
    pub fn severity_list(&self) -> String {
        self.severities
            .iter()
            .map(|s| match s.aliases.is_empty() {
                true => s.name.clone(),
                false => format!("{} ({})", s.name, s.aliases.join(", ")),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// When the commander is next reminded, for a severity, from `now_ms`.
    pub fn next_reminder(&self, severity: &str, now_ms: i64) -> Option<i64> {
        let every = self.severity(severity)?.update_every?;
        Some(now_ms + every.as_millis() as i64)
    }

    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if self.severities.is_empty() {
            errors.push("incidents.severities: expected at least one severity".to_string());
        }
        let mut seen: Vec<String> = Vec::new();
        for (i, s) in self.severities.iter().enumerate() {
            for word in std::iter::once(&s.name).chain(s.aliases.iter()) {
                let ok = !word.is_empty()
                    && word.len() <= 24
                    && word.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
                if !ok {
                    errors.push(format!(
                        "incidents.severities[{i}]: `{word}` is not a severity word (letters, digits and dashes, at most 24)"
                    ));
                }
                let lower = word.to_ascii_lowercase();
                if seen.contains(&lower) {
                    errors.push(format!(
                        "incidents.severities[{i}]: `{word}` names two severities"
                    ));
                }
                seen.push(lower);
            }
        }
        if self.discord_threads && !self.announce.contains_key("discord") {
            errors.push(
                "incidents.discord_threads: threads need a channel to hang from: set announce.discord"
                    .to_string(),
            );
        }
        for platform in self.announce.keys() {
            if !["slack", "discord", "cli"].contains(&platform.as_str()) {
                errors.push(format!(
                    "incidents.announce: `{platform}` is not a platform (slack, discord or cli)"
                ));
            }
        }
        for (i, r) in self.roles.iter().enumerate() {
            if oncall_grammar::dns1123_label(r).is_err() || r.len() > 32 {
                errors.push(format!(
                    "incidents.roles[{i}]: `{r}` is not a role name (lower-case letters, digits, dashes)"
                ));
            }
        }
        errors
    }
}

/// Which incident a command means, or why none.
#[derive(Debug)]
pub enum Which {
    Found(Box<Incident>),
    /// No incident with that number.
    Unknown(u32),
    /// None given, none implied, and none open.
    NoneOpen,
    /// None given or implied, and several open.
    Ambiguous(Vec<Incident>),
}

/// The incident `number` names, or the one whose channel this is, or the
/// only open one.
pub async fn which(
    store: &Store,
    number: Option<u32>,
    platform: &str,
    channel: &str,
) -> Result<Which, StoreError> {
    if let Some(n) = number {
        return Ok(match store.incident(i64::from(n)).await? {
            Some(i) => Which::Found(Box::new(i)),
            None => Which::Unknown(n),
        });
    }
    if let Some(i) = store.incident_of_channel(platform, channel).await? {
        return Ok(Which::Found(Box::new(i)));
    }
    let mut open = store.incidents(true, 10).await?;
    Ok(match open.len() {
        0 => Which::NoneOpen,
        1 => Which::Found(Box::new(open.remove(0))),
        _ => Which::Ambiguous(open),
    })
}

/// `14:02 UTC`.
pub fn clock_time(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%H:%M UTC").to_string())
        .unwrap_or_else(|_| ms.to_string())
}

/// `2026-12-02 14:02 UTC`.
pub fn date_time(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|_| ms.to_string())
}

/// `+01:03` (hours:minutes since `start`), or `+1d 02:03` past a day.
pub fn offset(start_ms: i64, at_ms: i64) -> String {
    let minutes = (at_ms - start_ms).max(0) / 60_000;
    let (days, h, m) = (minutes / 1440, (minutes % 1440) / 60, minutes % 60);
    if days > 0 {
        format!("+{days}d {h:02}:{m:02}")
    } else {
        format!("+{h:02}:{m:02}")
    }
}

/// `3m`, `1h 12m`: a duration in minutes for reading.
pub fn minutes(ms: i64) -> String {
    let m = ms.max(0) / 60_000;
    match (m / 60, m % 60) {
        (0, m) => format!("{m}m"),
        (h, 0) => format!("{h}h"),
        (h, m) => format!("{h}h {m}m"),
    }
}

/// `#12 SEV-2 checkout errors`.
pub fn label(i: &Incident) -> String {
    format!("#{} {} {}", i.id, i.severity, i.title)
}

/// The timeline as time-aligned lines (`+00:03  slack:U1  scaled …`).
pub fn timeline_lines(i: &Incident, events: &[IncidentEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            format!(
                "{}  {}  {}",
                offset(i.declared_at_ms, e.at_ms),
                e.actor,
                e.text
            )
        })
        .collect()
}

/// The commander, if one is assigned.
pub fn commander(roles: &[RoleHolder]) -> Option<&str> {
    roles
        .iter()
        .find(|r| r.role == "commander")
        .map(|r| r.principal.as_str())
}

/// The postmortem draft in Markdown: the facts from the record, then the
/// sections people write (runbook 003's post-incident steps).
pub fn postmortem_markdown(
    i: &Incident,
    roles: &[RoleHolder],
    events: &[IncidentEvent],
    now_ms: i64,
) -> String {
    let since = |at: Option<i64>| match at {
        Some(at) => minutes(at - i.declared_at_ms),
        None => "—".to_string(),
    };
    let end = i.resolved_at_ms.unwrap_or(now_ms);
    let mut out = format!("# Incident {}: {}\n\n", i.id, i.title);
    out.push_str("## Summary\n\n");
    out.push_str(&format!(
        "{}\n\n",
        i.summary
            .as_deref()
            .unwrap_or("(one paragraph: what happened, to whom, for how long)")
    ));
    out.push_str(&format!("- Severity: {}\n", i.severity));
    out.push_str(&format!("- State: {}\n", i.state));
    out.push_str(&format!(
        "- Declared: {} by {}\n",
        date_time(i.declared_at_ms),
        i.declared_by
    ));
    if let (Some(at), Some(by)) = (i.resolved_at_ms, &i.resolved_by) {
        out.push_str(&format!("- Resolved: {} by {by}\n", date_time(at)));
    }
    out.push_str(&format!(
        "- Duration: {}\n",
        minutes(end - i.declared_at_ms)
    ));
    out.push_str(&format!(
        "- Time to acknowledge: {}\n",
        since(i.acknowledged_at_ms)
    ));
    out.push_str(&format!(
        "- Time to mitigate: {}\n",
        since(i.mitigated_at_ms)
    ));
    out.push_str(&format!(
        "- Time to resolve: {}\n\n",
        since(i.resolved_at_ms)
    ));

    out.push_str("## Participants and roles\n\n");
    let mut participants: Vec<&str> = events.iter().map(|e| e.actor.as_str()).collect();
    participants.sort_unstable();
    participants.dedup();
    for r in roles {
        out.push_str(&format!("- {}: {}\n", r.role, r.principal));
    }
    out.push_str(&format!("- Participants: {}\n\n", participants.join(", ")));

    let actions: Vec<&IncidentEvent> = events.iter().filter(|e| e.kind == "command").collect();
    out.push_str("## Services touched\n\n");
    if i.services.is_empty() {
        out.push_str("- (none named)\n\n");
    } else {
        for s in &i.services {
            out.push_str(&format!("- {s}\n"));
        }
        out.push('\n');
    }
    out.push_str("## Operations run\n\n");
    if actions.is_empty() {
        out.push_str("- (none recorded)\n");
    }
    for e in &actions {
        out.push_str(&format!(
            "- {} {} — {}\n",
            offset(i.declared_at_ms, e.at_ms),
            e.actor,
            e.text
        ));
    }
    out.push_str("\n## Timeline\n\n");
    for line in timeline_lines(i, events) {
        out.push_str(&format!("    {line}\n"));
    }
    for section in ["Root cause", "Impact", "Lessons learned", "Action items"] {
        out.push_str(&format!("\n## {section}\n\n(to be written)\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_764_684_000_000; // 2025-12-02 14:00 UTC

    fn at(minutes: i64) -> i64 {
        T0 + minutes * 60_000
    }

    fn event(id: i64, minutes: i64, actor: &str, kind: &str, text: &str) -> IncidentEvent {
        IncidentEvent {
            id,
            incident_id: 7,
            at_ms: at(minutes),
            actor: actor.into(),
            kind: kind.into(),
            text: text.into(),
            invocation_id: None,
        }
    }

    /// The whole draft, byte for byte: what a reviewer gets.
    #[test]
    fn postmortem_snapshot() {
        let incident = Incident {
            id: 7,
            title: "checkout errors".into(),
            severity: "SEV-2".into(),
            state: "resolved".into(),
            services: vec!["backend".into()],
            declared_at_ms: at(0),
            declared_by: "slack:U1".into(),
            platform: "slack".into(),
            workspace: Some("T1".into()),
            declared_in: "C1".into(),
            channel_name: Some("inc-7-checkout-errors".into()),
            channel: Some("C7".into()),
            announced: true,
            posted_through: 5,
            acknowledged_at_ms: Some(at(3)),
            acknowledged_by: Some("slack:U2".into()),
            mitigated_at_ms: Some(at(12)),
            resolved_at_ms: Some(at(64)),
            resolved_by: Some("slack:U1".into()),
            summary: Some("A bad deploy; scaled out, then rolled back.".into()),
            last_update_at_ms: at(64),
            next_reminder_at_ms: None,
        };
        let roles = vec![RoleHolder {
            role: "commander".into(),
            principal: "slack:U2".into(),
            assigned_at_ms: at(4),
            assigned_by: "slack:U1".into(),
        }];
        let events = vec![
            event(
                1,
                0,
                "slack:U1",
                "declared",
                "declared SEV-2 checkout errors; slack:U1 is commander",
            ),
            event(2, 3, "slack:U2", "acknowledged", "acknowledged"),
            event(3, 4, "slack:U1", "role", "slack:U2 is commander"),
            event(
                4,
                5,
                "slack:U2",
                "command",
                "scale backend 5 → done: backend 2 → 5",
            ),
            event(
                5,
                12,
                "slack:U2",
                "status",
                "status investigating → monitoring",
            ),
            event(
                6,
                64,
                "slack:U1",
                "resolved",
                "resolved: A bad deploy; scaled out, then rolled back.",
            ),
        ];
        let expected = "\
# Incident 7: checkout errors

## Summary

A bad deploy; scaled out, then rolled back.

- Severity: SEV-2
- State: resolved
- Declared: 2025-12-02 14:00 UTC by slack:U1
- Resolved: 2025-12-02 15:04 UTC by slack:U1
- Duration: 1h 4m
- Time to acknowledge: 3m
- Time to mitigate: 12m
- Time to resolve: 1h 4m

## Participants and roles

- commander: slack:U2
- Participants: slack:U1, slack:U2

## Services touched

- backend

## Operations run

- +00:05 slack:U2 — scale backend 5 → done: backend 2 → 5

## Timeline

    +00:00  slack:U1  declared SEV-2 checkout errors; slack:U1 is commander
    +00:03  slack:U2  acknowledged
    +00:04  slack:U1  slack:U2 is commander
    +00:05  slack:U2  scale backend 5 → done: backend 2 → 5
    +00:12  slack:U2  status investigating → monitoring
    +01:04  slack:U1  resolved: A bad deploy; scaled out, then rolled back.

## Root cause

(to be written)

## Impact

(to be written)

## Lessons learned

(to be written)

## Action items

(to be written)
";
        assert_eq!(
            postmortem_markdown(&incident, &roles, &events, at(90)),
            expected
        );
    }

    #[test]
    fn offsets_and_durations_read_as_people_say_them() {
        assert_eq!(offset(T0, at(3)), "+00:03");
        assert_eq!(offset(T0, at(125)), "+02:05");
        assert_eq!(offset(T0, at(1440 + 61)), "+1d 01:01");
        assert_eq!(
            offset(T0, T0 - 5_000),
            "+00:00",
            "clock skew is not negative"
        );
        assert_eq!(minutes(59 * 60_000), "59m");
        assert_eq!(minutes(120 * 60_000), "2h");
    }
}
