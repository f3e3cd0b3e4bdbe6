//! The alert verbs. `alerts`: what is firing now, since when, and its
//! incident (alerts come in from Alertmanager and Grafana; reading them is
//! the `alerts` policy verb). `alerts run <id>`: what an alert's
//! first-response button sends; the bot runs the button's command as the
//! presser, once. `silence <alert|fingerprint> <duration> [reason…]` and
//! `unsilence <alert|fingerprint|silence id>`: Alertmanager silences,
//! through its API (the `silence` policy verb).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::spec::{arg, ArgKind, ArgSpec, Values, VerbSpec, PUBLIC};
use crate::verbs::Verb;
use crate::verbs::{read, write};
use crate::ParseError;

/// The longest silence.
pub const MAX_SILENCE: Duration = Duration::from_secs(7 * 86400);

const ALERT: ArgSpec = arg(
    "alert",
    ArgKind::AlertTarget,
    "<alert|fingerprint>",
    "an alert name or fingerprint",
    "An alert's name (all its alerts) or one alert's fingerprint",
);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alerts {}

pub static ALERTS: VerbSpec = read(
    "alerts",
    "alerts",
    &[],
    &[PUBLIC],
    "What is firing now (from Alertmanager), since when, and its incident.",
    "alerts",
    |_| Ok(Alerts {}.into()),
);

impl Verb for Alerts {
    fn values(&self) -> Values {
        Values::new(&ALERTS)
    }
}

// ---------------------------------------------------------------- alerts run

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertsRun {
    pub action: u32,
}

pub static ALERTS_RUN: VerbSpec = read(
    "alerts run",
    "alerts",
    &[arg(
        "action",
        ArgKind::Number {
            min: 1,
            max: u32::MAX,
        },
        "<id>",
        "the button's number",
        "The first-response button (its number)",
    )],
    &[],
    "Run an alert's first-response command (what its button sends), as you, once.",
    "alerts run 7",
    |v| {
        Ok(AlertsRun {
            action: v.opt_int("action").ok_or(ParseError::MissingArgument {
                verb: &ALERTS_RUN,
                what: "the button's number",
            })?,
        }
        .into())
    },
);

impl Verb for AlertsRun {
    fn values(&self) -> Values {
        Values::new(&ALERTS_RUN).put_int("action", self.action)
    }
}

// ---------------------------------------------------------------- silence

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Silence {
    pub alert: String,
    pub duration: Duration,
    pub reason: Option<String>,
}

pub static SILENCE: VerbSpec = write(
    "silence",
    "silence",
    &[
        ALERT,
        arg(
            "duration",
            ArgKind::Duration {
                max: Some(MAX_SILENCE),
            },
            "<duration>",
            "how long (like 2h)",
            "From now, for how long (at most 7d)",
        ),
        ArgSpec {
            required: false,
            many: true,
            ..arg(
                "reason",
                ArgKind::Text,
                "[reason…]",
                "why",
                "Why (Alertmanager's comment)",
            )
        },
    ],
    &[PUBLIC],
    "Silence an alert in Alertmanager for a while (it goes on the incident's timeline).",
    "silence KafkaConsumerLag 2h scaling up, lag draining",
    |v| {
        let duration = v
            .opt_duration("duration")
            .ok_or(ParseError::MissingArgument {
                verb: &SILENCE,
                what: "how long (like 2h)",
            })?;
        let reason = v.all_text("reason");
        Ok(Silence {
            alert: v.text("alert")?,
            duration,
            reason: (!reason.is_empty()).then(|| reason.join(" ")),
        }
        .into())
    },
);

impl Verb for Silence {
    fn values(&self) -> Values {
        let reason: Vec<String> = self
            .reason
            .as_deref()
            .map(|r| r.split_whitespace().map(String::from).collect())
            .unwrap_or_default();
        Values::new(&SILENCE)
            .put_text("alert", &self.alert)
            .put_duration("duration", Some(self.duration))
            .put_all_text("reason", &reason)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unsilence {
    pub alert: String,
}

pub static UNSILENCE: VerbSpec = write(
    "unsilence",
    "silence",
    &[arg(
        "alert",
        ArgKind::AlertTarget,
        "<alert|fingerprint|silence id>",
        "an alert name, a fingerprint or a silence id",
        "What `silence` was given, or Alertmanager's silence id",
    )],
    &[PUBLIC],
    "End oncall's silences of an alert in Alertmanager.",
    "unsilence KafkaConsumerLag",
    |v| {
        Ok(Unsilence {
            alert: v.text("alert")?,
        }
        .into())
    },
);

impl Verb for Unsilence {
    fn values(&self) -> Values {
        Values::new(&UNSILENCE).put_text("alert", &self.alert)
    }
}
