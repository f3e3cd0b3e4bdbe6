//! The incident verbs: `incident declare`, the lifecycle (`ack`, `status`,
//! `update`, `sev`, `assign`, `note`, `resolve`, `reopen`) and the reads
//! (`list`, `show`, `timeline`, `postmortem`).
//!
//! Severities and roles are configuration, so the grammar checks only their
//! shape; the handler resolves them and answers an unknown one with the
//! configured list. Every verb but `declare` and `list` takes an optional
//! incident number first (`incident ack 4`); without it, the incident is
//! the one whose channel this is, or the only open one. Changing an
//! incident is `incident-manage` for the policy, declaring one
//! `incident-declare`, reading one `incident-read`. Each change is recorded
//! and its key claimed before it runs (`Mutates::Always`), so a redelivered
//! request never declares twice.

use serde::{Deserialize, Serialize};

use crate::spec::{arg, switch, valued, ArgKind, ArgSpec, Values, VerbSpec, PUBLIC};
use crate::verbs::Verb;
use crate::verbs::{read, write};
use crate::ParseError;

const DECLARE: &str = "incident-declare";
const MANAGE: &str = "incident-manage";
const READ: &str = "incident-read";

/// `[N]`: which incident, when it is not implied.
pub(crate) const NUMBER: ArgSpec = ArgSpec {
    required: false,
    ..arg(
        "incident",
        ArgKind::Incident,
        "[N]",
        "an incident number",
        "The incident number (default: this channel's incident, or the only open one)",
    )
};

const fn text(
    name: &'static str,
    usage: &'static str,
    missing: &'static str,
    help: &'static str,
) -> ArgSpec {
    ArgSpec {
        many: true,
        ..arg(name, ArgKind::Text, usage, missing, help)
    }
}

const fn optional_text(name: &'static str, usage: &'static str, help: &'static str) -> ArgSpec {
    ArgSpec {
        required: false,
        ..text(name, usage, "text", help)
    }
}

const SEVERITY: ArgSpec = arg(
    "severity",
    ArgKind::Severity,
    "<severity>",
    "a severity (like SEV-2 or P1)",
    "The severity, as configured (SEV-1..SEV-4, P0..P3, critical..low)",
);

/// Free words as one string, or the error naming what is missing.
fn words(v: &mut Values, name: &str, spec: &'static VerbSpec) -> Result<String, ParseError> {
    let words = v.all_text(name);
    if words.is_empty() {
        let what = spec.arg(name).map(|a| a.missing).unwrap_or("text");
        return Err(ParseError::MissingArgument { verb: spec, what });
    }
    Ok(words.join(" "))
}

fn opt_words(v: &mut Values, name: &str) -> Option<String> {
    let words = v.all_text(name);
    (!words.is_empty()).then(|| words.join(" "))
}

fn split(text: &str) -> Vec<String> {
    text.split_whitespace().map(String::from).collect()
}

fn split_opt(text: &Option<String>) -> Vec<String> {
    text.as_deref().map(split).unwrap_or_default()
}

// ---------------------------------------------------------------- declare

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentDeclare {
    pub severity: String,
    pub title: String,
    #[serde(default)]
    pub services: Vec<String>,
}

pub static INCIDENT_DECLARE: VerbSpec = write(
    "incident declare",
    DECLARE,
    &[
        SEVERITY,
        text(
            "title",
            "<title…>",
            "a title",
            "What is happening, in a few words",
        ),
    ],
    &[
        crate::FlagSpec {
            many: true,
            ..valued(
                "service",
                ArgKind::ServiceFilter,
                "SERVICE",
                "a service affected (repeatable)",
            )
        },
        PUBLIC,
    ],
    "Declare an incident: a number, a severity, a commander, a timeline from now on.",
    "incident declare SEV-2 checkout errors --service backend",
    |v| {
        Ok(IncidentDeclare {
            severity: v.text("severity")?,
            title: words(v, "title", &INCIDENT_DECLARE)?,
            services: v.all_text("service"),
        }
        .into())
    },
);

impl Verb for IncidentDeclare {
    fn values(&self) -> Values {
        Values::new(&INCIDENT_DECLARE)
            .put_text("severity", &self.severity)
            .put_all_text("title", &split(&self.title))
            .put_all_text("service", &self.services)
    }
}

// ---------------------------------------------------------------- lifecycle

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentAck {
    pub incident: Option<u32>,
}

pub static INCIDENT_ACK: VerbSpec = write(
    "incident ack",
    MANAGE,
    &[NUMBER],
    &[PUBLIC],
    "Acknowledge an incident: you are on it (stops its paging).",
    "incident ack 12",
    |v| {
        Ok(IncidentAck {
            incident: v.opt_int("incident"),
        }
        .into())
    },
);

impl Verb for IncidentAck {
    fn values(&self) -> Values {
        Values::new(&INCIDENT_ACK).put_opt_int("incident", self.incident)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentStatus {
    pub incident: Option<u32>,
    pub state: String,
    pub note: Option<String>,
}

pub static INCIDENT_STATUS: VerbSpec = write(
    "incident status",
    MANAGE,
    &[
        NUMBER,
        arg(
            "state",
            ArgKind::IncidentState,
            "<investigating|identified|monitoring|resolved>",
            "a state (investigating, identified, monitoring or resolved)",
            "Where the response stands",
        ),
        optional_text("note", "[note…]", "What changed"),
    ],
    &[PUBLIC],
    "Move an incident to investigating, identified, monitoring or resolved.",
    "incident status 12 identified bad deploy of backend",
    |v| {
        Ok(IncidentStatus {
            incident: v.opt_int("incident"),
            state: v.text("state")?,
            note: opt_words(v, "note"),
        }
        .into())
    },
);

impl Verb for IncidentStatus {
    fn values(&self) -> Values {
        Values::new(&INCIDENT_STATUS)
            .put_opt_int("incident", self.incident)
            .put_text("state", &self.state)
            .put_all_text("note", &split_opt(&self.note))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentUpdate {
    pub incident: Option<u32>,
    pub text: String,
}

pub static INCIDENT_UPDATE: VerbSpec = write(
    "incident update",
    MANAGE,
    &[
        NUMBER,
        text("text", "<text…>", "the update", "The status update"),
    ],
    &[PUBLIC],
    "Post a status update (it resets the update reminder).",
    "incident update 12 error rate back under 1%",
    |v| {
        Ok(IncidentUpdate {
            incident: v.opt_int("incident"),
            text: words(v, "text", &INCIDENT_UPDATE)?,
        }
        .into())
    },
);

impl Verb for IncidentUpdate {
    fn values(&self) -> Values {
        Values::new(&INCIDENT_UPDATE)
            .put_opt_int("incident", self.incident)
            .put_all_text("text", &split(&self.text))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentSev {
    pub incident: Option<u32>,
    pub severity: String,
}

pub static INCIDENT_SEV: VerbSpec = write(
    "incident sev",
    MANAGE,
    &[NUMBER, SEVERITY],
    &[PUBLIC],
    "Change an incident's severity.",
    "incident sev 12 SEV-1",
    |v| {
        Ok(IncidentSev {
            incident: v.opt_int("incident"),
            severity: v.text("severity")?,
        }
        .into())
    },
);

impl Verb for IncidentSev {
    fn values(&self) -> Values {
        Values::new(&INCIDENT_SEV)
            .put_opt_int("incident", self.incident)
            .put_text("severity", &self.severity)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentAssign {
    pub incident: Option<u32>,
    pub principal: String,
    pub role: String,
}

pub static INCIDENT_ASSIGN: VerbSpec = write(
    "incident assign",
    MANAGE,
    &[
        NUMBER,
        arg(
            "principal",
            ArgKind::Principal,
            "<principal>",
            "a principal and a role",
            "Who takes the role (slack:U…, discord:<id>, cli:<name>)",
        ),
        arg(
            "role",
            ArgKind::Role,
            "<role>",
            "a role (like commander)",
            "The role, as configured (commander, scribe, comms…)",
        ),
    ],
    &[PUBLIC],
    "Give someone an incident role (commander, scribe, comms…).",
    "incident assign 12 slack:U0AB12CD commander",
    |v| {
        Ok(IncidentAssign {
            incident: v.opt_int("incident"),
            principal: v.text("principal")?,
            role: v.text("role")?,
        }
        .into())
    },
);

impl Verb for IncidentAssign {
    fn values(&self) -> Values {
        Values::new(&INCIDENT_ASSIGN)
            .put_opt_int("incident", self.incident)
            .put_text("principal", &self.principal)
            .put_text("role", &self.role)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentNote {
    pub incident: Option<u32>,
    pub text: String,
}

pub static INCIDENT_NOTE: VerbSpec = write(
    "incident note",
    MANAGE,
    &[
        NUMBER,
        text("text", "<text…>", "the note", "What to add to the timeline"),
    ],
    &[PUBLIC],
    "Add a note to an incident's timeline.",
    "incident note 12 rolled back to v41, errors falling",
    |v| {
        Ok(IncidentNote {
            incident: v.opt_int("incident"),
            text: words(v, "text", &INCIDENT_NOTE)?,
        }
        .into())
    },
);

impl Verb for IncidentNote {
    fn values(&self) -> Values {
        Values::new(&INCIDENT_NOTE)
            .put_opt_int("incident", self.incident)
            .put_all_text("text", &split(&self.text))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentResolve {
    pub incident: Option<u32>,
    pub summary: Option<String>,
}

pub static INCIDENT_RESOLVE: VerbSpec = write(
    "incident resolve",
    MANAGE,
    &[
        NUMBER,
        optional_text("summary", "[summary…]", "How it ended"),
    ],
    &[PUBLIC],
    "Resolve an incident (its postmortem is then ready).",
    "incident resolve 12 rollback fixed it",
    |v| {
        Ok(IncidentResolve {
            incident: v.opt_int("incident"),
            summary: opt_words(v, "summary"),
        }
        .into())
    },
);

impl Verb for IncidentResolve {
    fn values(&self) -> Values {
        Values::new(&INCIDENT_RESOLVE)
            .put_opt_int("incident", self.incident)
            .put_all_text("summary", &split_opt(&self.summary))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentReopen {
    pub incident: Option<u32>,
}

pub static INCIDENT_REOPEN: VerbSpec = write(
    "incident reopen",
    MANAGE,
    &[NUMBER],
    &[PUBLIC],
    "Reopen a resolved incident.",
    "incident reopen 12",
    |v| {
        Ok(IncidentReopen {
            incident: v.opt_int("incident"),
        }
        .into())
    },
);

impl Verb for IncidentReopen {
    fn values(&self) -> Values {
        Values::new(&INCIDENT_REOPEN).put_opt_int("incident", self.incident)
    }
}

// ---------------------------------------------------------------- reads

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentList {
    pub open: bool,
}

pub static INCIDENT_LIST: VerbSpec = read(
    "incident list",
    READ,
    &[],
    &[switch("open", "only incidents not yet resolved"), PUBLIC],
    "List recent incidents, or only the open ones.",
    "incident list --open",
    |v| {
        Ok(IncidentList {
            open: v.switch("open"),
        }
        .into())
    },
);

impl Verb for IncidentList {
    fn values(&self) -> Values {
        Values::new(&INCIDENT_LIST).put_switch("open", self.open)
    }
}

/// Which of an incident's read views.
macro_rules! incident_read {
    ($ty:ident, $spec:ident, $name:literal, $summary:literal, $example:literal) => {
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        pub struct $ty {
            pub incident: Option<u32>,
        }

        pub static $spec: VerbSpec =
            read($name, READ, &[NUMBER], &[PUBLIC], $summary, $example, |v| {
                Ok($ty {
                    incident: v.opt_int("incident"),
                }
                .into())
            });

        impl Verb for $ty {
            fn values(&self) -> Values {
                Values::new(&$spec).put_opt_int("incident", self.incident)
            }
        }
    };
}

incident_read!(
    IncidentShow,
    INCIDENT_SHOW,
    "incident show",
    "An incident's state, severity, roles, services and latest events.",
    "incident show 12"
);
incident_read!(
    IncidentTimeline,
    INCIDENT_TIMELINE,
    "incident timeline",
    "An incident's timeline: every event, ops command, page and update, in order.",
    "incident timeline 12"
);
incident_read!(
    IncidentPostmortem,
    INCIDENT_POSTMORTEM,
    "incident postmortem",
    "An incident's postmortem draft in Markdown, from its timeline.",
    "incident postmortem 12"
);
