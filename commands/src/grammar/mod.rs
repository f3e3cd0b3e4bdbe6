//! The command language: text → typed [`Command`].
//!
//! `<verb> [args] [--flags]`, the same text from Slack (after `/oncall`),
//! Discord (options joined back into text) and the console (with or without a
//! leading `/oncall`). Parsing is pure and total: any input gives either a
//! command or a [`ParseError`] whose message is short and names the right
//! usage. Nothing here does IO; the catalog check ([`validate`]) is pure too.

mod parse;
pub mod spec;
mod tokenize;

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use parse::{dns1123_label, parse};
pub use spec::{FlagSpec, VerbSpec, VERBS};

use crate::catalog::Catalog;

/// The most text a command may have.
pub const MAX_TEXT_LEN: usize = 1000;
/// The most replicas anyone may ask for, whatever the catalog says.
pub const MAX_REPLICAS: u32 = 1000;
/// The default and the largest `history --limit`.
pub const DEFAULT_HISTORY_LIMIT: u32 = 20;
pub const MAX_HISTORY_LIMIT: u32 = 100;

/// A parsed command plus the options every verb shares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parsed {
    pub command: Command,
    /// `--public`: show the reply to the whole channel.
    #[serde(default)]
    pub public: bool,
}

/// A typed command. Serializable so a request held for approval runs exactly
/// as it was asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Command {
    Help {
        verb: Option<String>,
    },
    Scale {
        service: String,
        replicas: u32,
        #[serde(default)]
        dry_run: bool,
    },
    Restart {
        service: String,
        #[serde(default)]
        dry_run: bool,
    },
    Status {
        service: String,
    },
    History(HistoryFilter),
    Whoami,
    Can {
        principal: String,
        command: Box<Command>,
    },
    Approve {
        id: String,
    },
    Deny {
        id: String,
    },
}

/// `history`'s filters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryFilter {
    pub user: Option<String>,
    pub service: Option<String>,
    #[serde(with = "opt_duration_secs")]
    pub since: Option<Duration>,
    pub limit: u32,
}

mod opt_duration_secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&d.as_secs()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_secs))
    }
}

impl Command {
    pub fn spec(&self) -> &'static VerbSpec {
        let name = match self {
            Command::Help { .. } => "help",
            Command::Scale { .. } => "scale",
            Command::Restart { .. } => "restart",
            Command::Status { .. } => "status",
            Command::History(_) => "history",
            Command::Whoami => "whoami",
            Command::Can { .. } => "can",
            Command::Approve { .. } => "approve",
            Command::Deny { .. } => "deny",
        };
        spec::find(name).expect("every command has a spec")
    }

    /// The verb the policy decides on.
    pub fn policy_verb(&self) -> &'static str {
        self.spec().policy_verb
    }

    /// Whether it changes anything in a cluster (dry runs included: they are
    /// authorized like the real thing).
    pub fn is_mutating(&self) -> bool {
        self.spec().mutating
    }

    pub fn is_dry_run(&self) -> bool {
        matches!(
            self,
            Command::Scale { dry_run: true, .. } | Command::Restart { dry_run: true, .. }
        )
    }

    /// The catalog service this command acts on, if any.
    pub fn service(&self) -> Option<&str> {
        match self {
            Command::Scale { service, .. }
            | Command::Restart { service, .. }
            | Command::Status { service } => Some(service),
            _ => None,
        }
    }

    /// Facts approval rules can require.
    pub fn conditions(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if let Command::Scale { replicas: 0, .. } = self {
            out.push("scale-to-zero");
        }
        if self.is_dry_run() {
            out.push("dry-run");
        }
        out
    }

    /// Whether policy and history apply. `help` and `whoami` are answered for
    /// anyone, still recorded.
    pub fn needs_authorization(&self) -> bool {
        !matches!(self, Command::Help { .. } | Command::Whoami)
    }
}

impl fmt::Display for Command {
    /// The canonical text of the command: parsing it gives the same command.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Help { verb: None } => write!(f, "help"),
            Command::Help { verb: Some(v) } => write!(f, "help {v}"),
            Command::Scale {
                service,
                replicas,
                dry_run,
            } => {
                write!(f, "scale {service} {replicas}")?;
                if *dry_run {
                    write!(f, " --dry-run")?;
                }
                Ok(())
            }
            Command::Restart { service, dry_run } => {
                write!(f, "restart {service}")?;
                if *dry_run {
                    write!(f, " --dry-run")?;
                }
                Ok(())
            }
            Command::Status { service } => write!(f, "status {service}"),
            Command::History(h) => {
                write!(f, "history")?;
                if let Some(u) = &h.user {
                    write!(f, " --user {u}")?;
                }
                if let Some(s) = &h.service {
                    write!(f, " --service {s}")?;
                }
                if let Some(d) = h.since {
                    let d = humantime::format_duration(d).to_string();
                    if d.contains(' ') {
                        write!(f, " --since '{d}'")?;
                    } else {
                        write!(f, " --since {d}")?;
                    }
                }
                if h.limit != DEFAULT_HISTORY_LIMIT {
                    write!(f, " --limit {}", h.limit)?;
                }
                Ok(())
            }
            Command::Whoami => write!(f, "whoami"),
            Command::Can { principal, command } => write!(f, "can {principal} {command}"),
            Command::Approve { id } => write!(f, "approve {id}"),
            Command::Deny { id } => write!(f, "deny {id}"),
        }
    }
}

/// Why text is not a command. Messages are one short sentence; [`ParseError::usage`]
/// gives the usage line to show with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("the command is {len} characters long; the limit is {max}")]
    TooLong { len: usize, max: usize },
    #[error("a {quote} quote was opened but never closed")]
    UnclosedQuote { quote: char },
    #[error("unknown command `{verb}`{}", did_you_mean(suggestion))]
    UnknownVerb {
        verb: String,
        suggestion: Option<String>,
    },
    #[error("`{verb}` needs {what}")]
    MissingArgument {
        verb: &'static VerbSpec,
        what: &'static str,
    },
    #[error("`{verb}` takes no argument `{extra}`")]
    ExtraArgument {
        verb: &'static VerbSpec,
        extra: String,
    },
    #[error("`{verb}` has no flag `--{flag}`{}", did_you_mean(&suggestion.as_ref().map(|s| format!("--{s}"))))]
    UnknownFlag {
        verb: &'static VerbSpec,
        flag: String,
        suggestion: Option<String>,
    },
    #[error("`--{flag}` needs a value ({placeholder})")]
    MissingFlagValue {
        verb: &'static VerbSpec,
        flag: &'static str,
        placeholder: &'static str,
    },
    #[error("`--{flag}` takes no value")]
    UnexpectedFlagValue {
        verb: &'static VerbSpec,
        flag: &'static str,
    },
    #[error("`--{flag}` was given twice")]
    RepeatedFlag {
        verb: &'static VerbSpec,
        flag: &'static str,
    },
    #[error("replicas must be a whole number from 0 to {max}, not `{value}`")]
    BadReplicas {
        verb: &'static VerbSpec,
        value: String,
        max: u32,
    },
    #[error("`{value}` is not a valid {what}: {why}")]
    BadName {
        verb: &'static VerbSpec,
        what: &'static str,
        value: String,
        why: &'static str,
    },
    #[error("`{value}` is not a duration humantime can read (try 15m, 2h, 1d 6h)")]
    BadDuration {
        verb: &'static VerbSpec,
        value: String,
    },
    #[error("`--limit` must be a whole number from 1 to {max}, not `{value}`")]
    BadLimit {
        verb: &'static VerbSpec,
        value: String,
        max: u32,
    },
    #[error("{message}")]
    BadPrincipal {
        verb: &'static VerbSpec,
        message: String,
    },
    #[error("`can` explains commands, not another `can`")]
    NestedCan,
    #[error("unknown service `{service}`{}", did_you_mean(suggestion))]
    UnknownService {
        verb: &'static VerbSpec,
        service: String,
        suggestion: Option<String>,
    },
    #[error("{service} is capped at {max} replicas{}", reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default())]
    AboveMaxReplicas {
        verb: &'static VerbSpec,
        service: String,
        max: u32,
        reason: Option<String>,
    },
    #[error("{service} needs at least {min} replica{}{}", if *min == 1 { "" } else { "s" }, reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default())]
    BelowMinReplicas {
        verb: &'static VerbSpec,
        service: String,
        min: u32,
        reason: Option<String>,
    },
}

fn did_you_mean(s: &Option<String>) -> String {
    match s {
        Some(s) => format!(" — did you mean `{s}`?"),
        None => String::new(),
    }
}

impl ParseError {
    /// The verb whose usage to show, if the error is about one verb.
    pub fn verb(&self) -> Option<&'static VerbSpec> {
        use ParseError::*;
        match self {
            MissingArgument { verb, .. }
            | ExtraArgument { verb, .. }
            | UnknownFlag { verb, .. }
            | MissingFlagValue { verb, .. }
            | UnexpectedFlagValue { verb, .. }
            | RepeatedFlag { verb, .. }
            | BadReplicas { verb, .. }
            | BadName { verb, .. }
            | BadDuration { verb, .. }
            | BadLimit { verb, .. }
            | BadPrincipal { verb, .. }
            | UnknownService { verb, .. }
            | AboveMaxReplicas { verb, .. }
            | BelowMinReplicas { verb, .. } => Some(verb),
            TooLong { .. } | UnclosedQuote { .. } | UnknownVerb { .. } | NestedCan => None,
        }
    }

    /// The usage line to show under the message.
    pub fn usage(&self) -> String {
        match self.verb() {
            Some(verb) => format!("usage: /oncall {}", verb.usage()),
            None => "type `/oncall help` for the list of commands".to_string(),
        }
    }
}

impl fmt::Display for VerbSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

/// Checks a parsed command against the service catalog: the service exists,
/// and replicas are within its bounds. Pure.
pub fn validate(command: &Command, catalog: &Catalog) -> Result<(), ParseError> {
    let spec = command.spec();
    let service = match command {
        Command::Can { command, .. } => return validate(command, catalog),
        Command::History(HistoryFilter {
            service: Some(s), ..
        }) => s.as_str(),
        other => match other.service() {
            Some(s) => s,
            None => return Ok(()),
        },
    };
    let Some(entry) = catalog.get(service) else {
        return Err(ParseError::UnknownService {
            verb: spec,
            service: service.to_string(),
            suggestion: closest(service, catalog.names()),
        });
    };
    if let Command::Scale { replicas, .. } = command {
        if *replicas > entry.max_replicas {
            return Err(ParseError::AboveMaxReplicas {
                verb: spec,
                service: entry.name.clone(),
                max: entry.max_replicas,
                reason: entry.max_replicas_reason.clone(),
            });
        }
        if *replicas < entry.min_replicas {
            return Err(ParseError::BelowMinReplicas {
                verb: spec,
                service: entry.name.clone(),
                min: entry.min_replicas,
                reason: entry.min_replicas_reason.clone(),
            });
        }
    }
    Ok(())
}

/// The closest candidate to a mistyped word, if one is close enough to be
/// what was meant.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let word = word.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(&word, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 4) && *d < c.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c.to_string())
}
