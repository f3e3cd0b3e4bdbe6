//! oncall's command language: text → typed [`Command`], pure.
//!
//! `<verb> [args] [--flags]`, the same text from Slack (after `/oncall`),
//! Discord (options joined back into text) and the console (with or without a
//! leading `/oncall`). Parsing is pure and total: any input gives either a
//! command or a [`ParseError`] whose message is short and names the right
//! usage. Nothing here does IO or runs async code, and nothing depends on a
//! Kubernetes or HTTP client (the crate's dependency tree shows it), so the
//! grammar, the catalog and the redactor are tested by tables.
//!
//! - [`verbs`]: every verb, declared once (its command type, arguments,
//!   flags, policy facts and build function).
//! - [`spec`]: the shape of a declaration, and what is generated from it
//!   (usage, help, the README reference, Slack's hint).
//! - [`catalog`]: the services people name, their bounds, and scope
//!   resolution (which service, namespace and environment a command touches).
//! - [`redact`]: secrets out of text before it is shown or stored.

pub mod alerts;
pub mod catalog;
pub mod incidents;
pub mod paging;
mod parse;
pub mod redact;
pub mod spec;
mod tokenize;
pub mod verbs;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use alerts::*;
pub use incidents::*;
pub use paging::*;
pub use parse::{
    dns1123_label, dns1123_subdomain, looks_like_secret, parse, valid_image_reference,
};
pub use spec::{ArgKind, ArgSpec, FlagSpec, Gate, Mutates, Value, Values, VerbSpec, VERBS};
pub use verbs::*;

pub use catalog::{Catalog, Scope, ServiceEntry};

/// The most text a command may have.
pub const MAX_TEXT_LEN: usize = 1000;
/// The most replicas anyone may ask for, whatever the catalog says.
pub const MAX_REPLICAS: u32 = 1000;
/// The default and the largest `history --limit`.
pub const DEFAULT_HISTORY_LIMIT: u32 = 20;
pub const MAX_HISTORY_LIMIT: u32 = 100;
/// The largest incident number a command may name.
pub const MAX_INCIDENT: u32 = 999_999_999;
/// The incident states, in lifecycle order.
pub const INCIDENT_STATES: &[&str] = &["investigating", "identified", "monitoring", "resolved"];

/// A parsed command plus the options every verb shares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parsed {
    pub command: Command,
    /// `--public`: show the reply to the whole channel.
    #[serde(default)]
    pub public: bool,
    /// `--incident N`: the incident this command is part of (its timeline
    /// records it). Any verb takes it.
    #[serde(default)]
    pub incident: Option<u32>,
}

pub(crate) mod opt_duration_secs {
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

/// What is computed from a command's spec and values, the same for every
/// verb: nothing here names one.
impl Command {
    pub fn spec(&self) -> &'static VerbSpec {
        self.values().spec
    }

    /// The verb the policy decides on. Reads are their own verbs; a verb
    /// that mutates only with some flags (`hpa --min`) has its own then.
    pub fn policy_verb(&self) -> &'static str {
        let values = self.values();
        match values.spec.mutates {
            Mutates::WithFlags { flags, policy_verb } if flags.iter().any(|f| values.has(f)) => {
                policy_verb
            }
            _ => values.spec.policy_verb,
        }
    }

    /// Whether it changes anything in a cluster (dry runs included: they are
    /// authorized like the real thing).
    pub fn is_mutating(&self) -> bool {
        let values = self.values();
        match values.spec.mutates {
            Mutates::Never => false,
            Mutates::Always => true,
            Mutates::WithFlags { flags, .. } => flags.iter().any(|f| values.has(f)),
        }
    }

    pub fn is_dry_run(&self) -> bool {
        self.values().has(spec::DRY_RUN.name)
    }

    /// The one catalog service, pod or namespace this command names
    /// directly, if it names exactly one (for the history's service column).
    /// Pods and namespaces are resolved by [`crate::catalog::Catalog::scope`].
    pub fn service(&self) -> Option<String> {
        let values = self.values();
        let mut targets = values
            .positional()
            .filter(|(a, _)| a.kind.is_target())
            .filter_map(|(_, v)| match v {
                Value::Text(t) => Some(t.clone()),
                _ => None,
            });
        let first = targets.next()?;
        targets.next().is_none().then_some(first)
    }

    /// Facts approval rules can require.
    pub fn conditions(&self) -> Vec<&'static str> {
        let values = self.values();
        let mut out = Vec::new();
        if values
            .positional()
            .any(|(a, v)| a.kind == ArgKind::Replicas && *v == Value::Int(0))
        {
            out.push("scale-to-zero");
        }
        for (flag, condition) in [("force", "force"), ("all", "all"), ("dry-run", "dry-run")] {
            if values.has(flag) {
                out.push(condition);
            }
        }
        out
    }
}

/// Quotes a word for canonical text when it would not survive tokenizing.
fn quoted(s: &str) -> String {
    if !s.is_empty()
        && !s
            .chars()
            .any(|c| c.is_whitespace() || c == '\'' || c == '"' || c == '\\')
    {
        return s.to_string();
    }
    if !s.contains('\'') {
        return format!("'{s}'");
    }
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn value_text(kind: Option<ArgKind>, value: &Value) -> String {
    match value {
        // A verb name may be two words, and a command is its own text.
        Value::Text(t) if kind == Some(ArgKind::Verb) => t.clone(),
        Value::Text(t) => quoted(t),
        Value::Int(n) => n.to_string(),
        Value::Duration(d) => quoted(&humantime::format_duration(*d).to_string()),
        Value::Pair(k, v) => quoted(&format!("{k}={v}")),
        Value::Image {
            container: Some(c),
            image,
        } => quoted(&format!("{c}={image}")),
        Value::Image {
            container: None,
            image,
        } => quoted(image),
        Value::Command(c) => c.to_string(),
        Value::Switch => String::new(),
    }
}

impl fmt::Display for Command {
    /// The canonical text of the command: parsing it gives the same command.
    /// The verb, its positional values in order, then its flags in the
    /// spec's order.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let values = self.values();
        let spec = values.spec;
        f.write_str(spec.name)?;
        // Free text that starts with a number (where an optional incident
        // number could stand) or holds a word like a flag is marked literal
        // with `--`, the flags going first, or it would not read back.
        let first_is_optional_incident = spec
            .args
            .first()
            .is_some_and(|a| a.kind == ArgKind::Incident && !a.required);
        let mut first_positional = true;
        let mut literal_at = None;
        for (i, (name, value)) in values.entries().enumerate() {
            if spec.arg(name).is_none() {
                continue;
            }
            if let Value::Text(t) = value {
                let number_first = first_positional
                    && first_is_optional_incident
                    && parse::incident_number(t).is_some();
                if number_first || t.starts_with('-') {
                    literal_at = Some(i);
                    break;
                }
            }
            first_positional = false;
        }
        let write_flags = |f: &mut fmt::Formatter<'_>| -> fmt::Result {
            for flag in spec.flags {
                for (name, value) in values.entries() {
                    if name != flag.name {
                        continue;
                    }
                    match (value, flag.short) {
                        (Value::Switch, _) => write!(f, " --{}", flag.name)?,
                        (v, Some(c)) => write!(f, " -{c} {}", value_text(flag.kind, v))?,
                        (v, None) => write!(f, " --{} {}", flag.name, value_text(flag.kind, v))?,
                    }
                }
            }
            Ok(())
        };
        if literal_at.is_some() {
            write_flags(f)?;
        }
        let mut literal = false;
        for arg in spec.args {
            for (i, (name, value)) in values.entries().enumerate() {
                if name != arg.name {
                    continue;
                }
                if !literal && literal_at.is_some_and(|at| i >= at) {
                    f.write_str(" --")?;
                    literal = true;
                }
                write!(f, " {}", value_text(Some(arg.kind), value))?;
            }
        }
        if literal_at.is_none() {
            write_flags(f)?;
        }
        Ok(())
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
    #[error("`--incident` needs an incident number, like `--incident 12`{}", match value { Some(v) => format!(" (not `{v}`)"), None => String::new() })]
    BadIncidentFlag { value: Option<String> },
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
    #[error("{message}")]
    BadPrincipal {
        verb: &'static VerbSpec,
        message: String,
    },
    #[error("`can` explains commands, not another `can`")]
    NestedCan,
    #[error("{message}")]
    BadValue {
        verb: &'static VerbSpec,
        message: String,
    },
    /// A name the catalog doesn't know: a service (or pod, namespace), or
    /// a CronJob (`what` says which).
    #[error("unknown {what} `{service}`{}", did_you_mean(suggestion))]
    UnknownService {
        verb: &'static VerbSpec,
        what: &'static str,
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
            | BadPrincipal { verb, .. }
            | BadValue { verb, .. }
            | UnknownService { verb, .. }
            | AboveMaxReplicas { verb, .. }
            | BelowMinReplicas { verb, .. } => Some(verb),
            TooLong { .. }
            | UnclosedQuote { .. }
            | UnknownVerb { .. }
            | NestedCan
            | BadIncidentFlag { .. } => None,
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

/// Checks a parsed command against the service catalog: every service, pod
/// or namespace it names is known, and replicas are within the service's
/// bounds. Pure.
pub fn validate(command: &Command, catalog: &Catalog) -> Result<(), ParseError> {
    let values = command.values();
    let spec = values.spec;
    for (_, value) in values.entries() {
        if let Value::Command(inner) = value {
            return validate(inner, catalog);
        }
    }
    for (flag, value) in values.flags() {
        if let (Some(ArgKind::ServiceFilter), Value::Text(s)) = (flag.kind, value) {
            if catalog.get(s).is_none() {
                return Err(unknown(spec, s, catalog.names()));
            }
        }
    }
    // A CronJob must be one a catalog service declares (in the namespace
    // given, if any).
    let text_of = |kind: ArgKind| {
        values.entries().find_map(|(name, v)| match v {
            Value::Text(t) if spec.kind_of(name) == Some(kind) => Some(t.as_str()),
            _ => None,
        })
    };
    if let Some(cronjob) = text_of(ArgKind::CronJob) {
        let namespace = text_of(ArgKind::Namespace);
        if catalog.service_of_cronjob(cronjob, namespace).is_none() {
            let shown = match namespace {
                Some(ns) => format!("{cronjob}` in namespace `{ns}"),
                None => cronjob.to_string(),
            };
            return Err(ParseError::UnknownService {
                verb: spec,
                what: "cronjob",
                service: shown,
                suggestion: closest(cronjob, catalog.cronjobs()),
            });
        }
    }
    let scope = catalog.scope(command).map_err(|name| {
        let candidates: Vec<&str> = catalog.names().chain(catalog.namespaces()).collect();
        unknown(spec, &name, candidates)
    })?;
    // Replica counts and autoscaler bounds stay within the catalog's bounds.
    let counts: Vec<u32> = values
        .entries()
        .filter_map(|(name, v)| match (spec.kind_of(name), v) {
            (Some(ArgKind::Replicas | ArgKind::ReplicaBound), Value::Int(n)) => Some(*n),
            _ => None,
        })
        .collect();
    let Scope::Services(entries) = &scope else {
        return Ok(());
    };
    for replicas in counts {
        for entry in entries {
            if replicas > entry.max_replicas {
                return Err(ParseError::AboveMaxReplicas {
                    verb: spec,
                    service: entry.name.clone(),
                    max: entry.max_replicas,
                    reason: entry.max_replicas_reason.clone(),
                });
            }
            if replicas < entry.min_replicas {
                return Err(ParseError::BelowMinReplicas {
                    verb: spec,
                    service: entry.name.clone(),
                    min: entry.min_replicas,
                    reason: entry.min_replicas_reason.clone(),
                });
            }
        }
    }
    Ok(())
}

fn unknown<'a>(
    spec: &'static VerbSpec,
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> ParseError {
    ParseError::UnknownService {
        verb: spec,
        what: "service",
        service: name.to_string(),
        suggestion: closest(name, candidates),
    }
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
