//! The paging verbs: `escalate [N]` (the next tier now), `page [N]
//! <target> <message…>` (an ad-hoc page through the same outbox), `who
//! [schedule]`, `schedule <name>` (the next handoffs) and `override
//! <schedule> <principal> <duration>`, plus the [`Target`] a page is sent to
//! (the same words in config and in chat).
//!
//! Schedules, providers and webhooks are configuration, so the grammar
//! checks only the shape of a target; the handler checks it names
//! something configured. `escalate` is `incident-manage` for the policy
//! (it acts on an incident), `page` its own verb, reading schedules
//! `schedule-read` and overriding them `schedule-manage`.

use std::time::Duration;

use oncall_permissions::Principal;
use serde::{Deserialize, Serialize};

use crate::incidents::NUMBER;
use crate::spec::{arg, ArgKind, ArgSpec, Values, VerbSpec, PUBLIC};
use crate::verbs::Verb;
use crate::verbs::{read, write};
use crate::ParseError;

/// What a tier pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A person, a Slack user group or a Discord role: mentioned.
    Principal(Principal),
    /// Whoever the schedule has on call when the tier fires.
    Schedule(String),
    /// A channel (`channel:slack:C0123`): posted to, nobody mentioned.
    Channel {
        platform: String,
        id: String,
    },
    PagerDuty(String),
    Opsgenie(String),
    Webhook(String),
}

impl Target {
    /// Parses a target as written in config or in `page <target>`.
    pub fn parse(s: &str) -> Result<Target, String> {
        let s = s.trim();
        let (kind, rest) = s
            .split_once(':')
            .ok_or_else(|| format!("`{s}` is not a target: expected <kind>:<name>"))?;
        let name = |what: &str| -> Result<String, String> {
            let ok = !rest.is_empty()
                && rest.len() <= 64
                && rest
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
            if ok {
                Ok(rest.to_string())
            } else {
                Err(format!(
                    "`{s}` is not a target: {what} names are letters, digits, `-_.`"
                ))
            }
        };
        match kind {
            "schedule" => Ok(Target::Schedule(name("schedule")?)),
            "pagerduty" => Ok(Target::PagerDuty(name("PagerDuty service")?)),
            "opsgenie" => Ok(Target::Opsgenie(name("Opsgenie team")?)),
            "webhook" => Ok(Target::Webhook(name("webhook")?)),
            "channel" => {
                let (platform, id) = rest
                    .split_once(':')
                    .ok_or_else(|| format!("`{s}` is not a target: expected channel:<platform>:<id>"))?;
                let ok_platform = matches!(platform, "slack" | "discord" | "cli");
                let ok_id = !id.is_empty()
                    && id.len() <= 80
                    && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b));
                if ok_platform && ok_id {
                    Ok(Target::Channel {
                        platform: platform.into(),
                        id: id.into(),
                    })
                } else {
                    Err(format!(
                        "`{s}` is not a target: expected channel:<slack|discord|cli>:<channel id>"
                    ))
                }
            }
            _ => s.parse::<Principal>().map(Target::Principal).map_err(|_| {
                format!(
                    "`{s}` is not a target: expected a principal (slack:U…, slack-group:S…, discord:…, discord-role:…, cli:…), schedule:, channel:, pagerduty:, opsgenie: or webhook:"
                )
            }),
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Principal(p) => write!(f, "{p}"),
            Target::Schedule(n) => write!(f, "schedule:{n}"),
            Target::Channel { platform, id } => write!(f, "channel:{platform}:{id}"),
            Target::PagerDuty(n) => write!(f, "pagerduty:{n}"),
            Target::Opsgenie(n) => write!(f, "opsgenie:{n}"),
            Target::Webhook(n) => write!(f, "webhook:{n}"),
        }
    }
}

const SCHEDULE: ArgSpec = arg(
    "schedule",
    ArgKind::Name("schedule"),
    "<schedule>",
    "a schedule name",
    "A schedule, as configured",
);

/// The longest override.
pub const MAX_OVERRIDE: Duration = Duration::from_secs(30 * 86400);

// ---------------------------------------------------------------- escalate

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Escalate {
    pub incident: Option<u32>,
}

pub static ESCALATE: VerbSpec = write(
    "escalate",
    "incident-manage",
    &[NUMBER],
    &[PUBLIC],
    "Page an incident's next escalation tier now, without waiting for its delay.",
    "escalate 12",
    |v| {
        Ok(Escalate {
            incident: v.opt_int("incident"),
        }
        .into())
    },
);

impl Verb for Escalate {
    fn values(&self) -> Values {
        Values::new(&ESCALATE).put_opt_int("incident", self.incident)
    }
}

// ---------------------------------------------------------------- page

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page {
    pub incident: Option<u32>,
    pub target: String,
    pub message: String,
}

pub static PAGE: VerbSpec = write(
    "page",
    "page",
    &[
        NUMBER,
        arg(
            "target",
            ArgKind::PageTarget,
            "<target>",
            "who to page and a message",
            "A principal, schedule:NAME, channel:PLATFORM:ID, pagerduty:NAME, opsgenie:NAME or webhook:NAME",
        ),
        ArgSpec {
            many: true,
            ..arg("message", ArgKind::Text, "<message…>", "a message", "What the page says")
        },
    ],
    &[PUBLIC],
    "Page someone now (a person, whoever a schedule has on call, a provider).",
    "page 12 schedule:primary database failover needs a second pair of eyes",
    |v| {
        let words = v.all_text("message");
        if words.is_empty() {
            return Err(ParseError::MissingArgument {
                verb: &PAGE,
                what: "a message",
            });
        }
        Ok(Page {
            incident: v.opt_int("incident"),
            target: v.text("target")?,
            message: words.join(" "),
        }
        .into())
    },
);

impl Verb for Page {
    fn values(&self) -> Values {
        let words: Vec<String> = self.message.split_whitespace().map(String::from).collect();
        Values::new(&PAGE)
            .put_opt_int("incident", self.incident)
            .put_text("target", &self.target)
            .put_all_text("message", &words)
    }
}

// ---------------------------------------------------------------- schedules

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Who {
    pub schedule: Option<String>,
}

pub static WHO: VerbSpec = read(
    "who",
    "schedule-read",
    &[ArgSpec {
        required: false,
        usage: "[schedule]",
        ..SCHEDULE
    }],
    &[PUBLIC],
    "Who is on call now: every schedule, or one.",
    "who primary",
    |v| {
        Ok(Who {
            schedule: v.opt_text("schedule"),
        }
        .into())
    },
);

impl Verb for Who {
    fn values(&self) -> Values {
        Values::new(&WHO).put_opt_text("schedule", self.schedule.as_deref())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleShow {
    pub schedule: String,
}

pub static SCHEDULE_SHOW: VerbSpec = read(
    "schedule",
    "schedule-read",
    &[SCHEDULE],
    &[PUBLIC],
    "A schedule's rotations, who is on call, overrides and the next handoffs.",
    "schedule primary",
    |v| {
        Ok(ScheduleShow {
            schedule: v.text("schedule")?,
        }
        .into())
    },
);

impl Verb for ScheduleShow {
    fn values(&self) -> Values {
        Values::new(&SCHEDULE_SHOW).put_text("schedule", &self.schedule)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Override {
    pub schedule: String,
    pub principal: String,
    pub duration: Duration,
}

pub static OVERRIDE: VerbSpec = write(
    "override",
    "schedule-manage",
    &[
        SCHEDULE,
        arg(
            "principal",
            ArgKind::Principal,
            "<principal>",
            "who takes over and for how long",
            "Who is on call instead (slack:U…, discord:<id>, cli:<name>)",
        ),
        arg(
            "duration",
            ArgKind::Duration {
                max: Some(MAX_OVERRIDE),
            },
            "<duration>",
            "how long (like 4h)",
            "From now, for how long (humantime: 4h, 2d)",
        ),
    ],
    &[PUBLIC],
    "Put someone on call for a schedule from now, for a while (they win over the rotation).",
    "override primary slack:U0AB12CD 4h",
    |v| {
        let duration = v
            .opt_duration("duration")
            .ok_or(ParseError::MissingArgument {
                verb: &OVERRIDE,
                what: "how long (like 4h)",
            })?;
        Ok(Override {
            schedule: v.text("schedule")?,
            principal: v.text("principal")?,
            duration,
        }
        .into())
    },
);

impl Verb for Override {
    fn values(&self) -> Values {
        Values::new(&OVERRIDE)
            .put_text("schedule", &self.schedule)
            .put_text("principal", &self.principal)
            .put_duration("duration", Some(self.duration))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_and_print_back() {
        for t in [
            "slack:U024BE7LH",
            "slack-group:S0614TZR7",
            "discord:170531778354741248",
            "discord-role:41771983423143936",
            "cli:alice",
            "schedule:primary",
            "channel:slack:C0INCIDENTS",
            "pagerduty:payments",
            "opsgenie:sre",
            "webhook:statuspage",
        ] {
            assert_eq!(Target::parse(t).unwrap().to_string(), t);
        }
        for bad in [
            "",
            "alice",
            "schedule:",
            "channel:irc:x",
            "pagerduty:a b",
            "nope:x",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }
}
