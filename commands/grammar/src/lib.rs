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
//! - [`spec`]: the table every verb is declared in, once.
//! - [`catalog`]: the services people name, their bounds, and scope
//!   resolution (which service, namespace and environment a command touches).
//! - [`redact`]: secrets out of text before it is shown or stored.

pub mod catalog;
mod parse;
pub mod redact;
pub mod spec;
mod tokenize;

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use parse::{
    dns1123_label, dns1123_subdomain, looks_like_secret, parse, valid_image_reference,
};
pub use spec::{FlagSpec, VerbSpec, VERBS};

pub use catalog::{Catalog, Scope, ServiceEntry};

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
        #[serde(default)]
        force: bool,
    },
    Restart {
        services: Vec<String>,
        #[serde(default)]
        dry_run: bool,
    },
    RestartAll {
        namespace: String,
        #[serde(default)]
        dry_run: bool,
    },
    Status {
        service: String,
    },
    RolloutStatus {
        service: String,
        #[serde(with = "opt_duration_secs")]
        wait: Option<Duration>,
    },
    RolloutHistory {
        service: String,
    },
    Rollback {
        service: String,
        to_revision: Option<u32>,
        #[serde(default)]
        dry_run: bool,
    },
    SetImage {
        service: String,
        container: Option<String>,
        image: String,
        #[serde(default)]
        dry_run: bool,
    },
    Logs(LogsRequest),
    Pods {
        target: String,
    },
    Events {
        target: String,
        #[serde(with = "opt_duration_secs")]
        since: Option<Duration>,
    },
    Hpa {
        service: String,
        min: Option<u32>,
        max: Option<u32>,
        #[serde(default)]
        dry_run: bool,
    },
    Health {
        service: String,
    },
    Diagnose {
        target: String,
    },
    JobRun {
        cronjob: String,
        name: Option<String>,
        namespace: Option<String>,
        #[serde(default)]
        dry_run: bool,
    },
    Quarantine {
        pod: String,
        on: bool,
        #[serde(default)]
        dry_run: bool,
    },
    EnvSet {
        service: String,
        vars: Vec<(String, String)>,
        container: Option<String>,
        #[serde(default)]
        dry_run: bool,
    },
    EnvUnset {
        service: String,
        keys: Vec<String>,
        container: Option<String>,
        #[serde(default)]
        dry_run: bool,
    },
    Top {
        target: String,
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

/// `logs`' options.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogsRequest {
    /// A service or one of its pods.
    pub target: String,
    pub container: Option<String>,
    pub tail: Option<u32>,
    #[serde(with = "opt_duration_secs")]
    pub since: Option<Duration>,
    #[serde(default)]
    pub previous: bool,
    pub grep: Option<String>,
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
            Command::Restart { .. } | Command::RestartAll { .. } => "restart",
            Command::Status { .. } => "status",
            Command::RolloutStatus { .. } => "rollout status",
            Command::RolloutHistory { .. } => "rollout history",
            Command::Rollback { .. } => "rollback",
            Command::SetImage { .. } => "set image",
            Command::Logs(_) => "logs",
            Command::Pods { .. } => "pods",
            Command::Events { .. } => "events",
            Command::Hpa { .. } => "hpa",
            Command::Health { .. } => "health",
            Command::Diagnose { .. } => "diagnose",
            Command::JobRun { .. } => "job run",
            Command::Quarantine { on: true, .. } => "quarantine",
            Command::Quarantine { on: false, .. } => "unquarantine",
            Command::EnvSet { .. } => "env set",
            Command::EnvUnset { .. } => "env unset",
            Command::Top { .. } => "top",
            Command::History(_) => "history",
            Command::Whoami => "whoami",
            Command::Can { .. } => "can",
            Command::Approve { .. } => "approve",
            Command::Deny { .. } => "deny",
        };
        spec::find(name).expect("every command has a spec")
    }

    /// The verb the policy decides on. Reads are their own verbs; `hpa` with
    /// new bounds is `hpa-set`.
    pub fn policy_verb(&self) -> &'static str {
        match self {
            Command::Hpa { min, max, .. } if min.is_some() || max.is_some() => "hpa-set",
            other => other.spec().policy_verb,
        }
    }

    /// Whether it changes anything in a cluster (dry runs included: they are
    /// authorized like the real thing).
    pub fn is_mutating(&self) -> bool {
        match self {
            Command::Hpa { min, max, .. } => min.is_some() || max.is_some(),
            other => other.spec().mutating,
        }
    }

    pub fn is_dry_run(&self) -> bool {
        match self {
            Command::Scale { dry_run, .. }
            | Command::Restart { dry_run, .. }
            | Command::RestartAll { dry_run, .. }
            | Command::Rollback { dry_run, .. }
            | Command::SetImage { dry_run, .. }
            | Command::Hpa { dry_run, .. }
            | Command::JobRun { dry_run, .. }
            | Command::Quarantine { dry_run, .. }
            | Command::EnvSet { dry_run, .. }
            | Command::EnvUnset { dry_run, .. } => *dry_run,
            _ => false,
        }
    }

    /// The catalog service this command names directly, if any (for the
    /// history's service column). Pods and namespaces are resolved by
    /// [`crate::catalog::Catalog::scope`].
    pub fn service(&self) -> Option<&str> {
        match self {
            Command::Scale { service, .. }
            | Command::Status { service }
            | Command::RolloutStatus { service, .. }
            | Command::RolloutHistory { service }
            | Command::Rollback { service, .. }
            | Command::SetImage { service, .. }
            | Command::Hpa { service, .. }
            | Command::Health { service }
            | Command::EnvSet { service, .. }
            | Command::EnvUnset { service, .. } => Some(service),
            Command::Restart { services, .. } if services.len() == 1 => Some(&services[0]),
            Command::Logs(l) => Some(&l.target),
            Command::Pods { target }
            | Command::Events { target, .. }
            | Command::Diagnose { target }
            | Command::Top { target } => Some(target),
            Command::Quarantine { pod, .. } => Some(pod),
            _ => None,
        }
    }

    /// Facts approval rules can require.
    pub fn conditions(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if let Command::Scale { replicas: 0, .. } = self {
            out.push("scale-to-zero");
        }
        if let Command::Scale { force: true, .. } = self {
            out.push("force");
        }
        if let Command::RestartAll { .. } = self {
            out.push("all");
        }
        if self.is_dry_run() {
            out.push("dry-run");
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

fn duration_text(d: Duration) -> String {
    quoted(&humantime::format_duration(d).to_string())
}

impl fmt::Display for Command {
    /// The canonical text of the command: parsing it gives the same command.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dry = |d: &bool| if *d { " --dry-run" } else { "" };
        match self {
            Command::Help { verb: None } => write!(f, "help"),
            Command::Help { verb: Some(v) } => write!(f, "help {v}"),
            Command::Scale {
                service,
                replicas,
                dry_run,
                force,
            } => {
                write!(
                    f,
                    "scale {service} {replicas}{}{}",
                    dry(dry_run),
                    if *force { " --force" } else { "" }
                )
            }
            Command::Restart { services, dry_run } => {
                write!(f, "restart {}{}", services.join(" "), dry(dry_run))
            }
            Command::RestartAll { namespace, dry_run } => {
                write!(f, "restart --all -n {namespace}{}", dry(dry_run))
            }
            Command::Status { service } => write!(f, "status {service}"),
            Command::RolloutStatus { service, wait } => {
                write!(f, "rollout status {service}")?;
                if let Some(w) = wait {
                    write!(f, " --wait {}", duration_text(*w))?;
                }
                Ok(())
            }
            Command::RolloutHistory { service } => write!(f, "rollout history {service}"),
            Command::Rollback {
                service,
                to_revision,
                dry_run,
            } => {
                write!(f, "rollback {service}")?;
                if let Some(r) = to_revision {
                    write!(f, " --to-revision {r}")?;
                }
                write!(f, "{}", dry(dry_run))
            }
            Command::SetImage {
                service,
                container,
                image,
                dry_run,
            } => match container {
                Some(c) => write!(f, "set image {service} {c}={image}{}", dry(dry_run)),
                None => write!(f, "set image {service} {image}{}", dry(dry_run)),
            },
            Command::Logs(l) => {
                write!(f, "logs {}", l.target)?;
                if let Some(c) = &l.container {
                    write!(f, " --container {c}")?;
                }
                if let Some(t) = l.tail {
                    write!(f, " --tail {t}")?;
                }
                if let Some(s) = l.since {
                    write!(f, " --since {}", duration_text(s))?;
                }
                if l.previous {
                    write!(f, " --previous")?;
                }
                if let Some(g) = &l.grep {
                    write!(f, " --grep {}", quoted(g))?;
                }
                Ok(())
            }
            Command::Pods { target } => write!(f, "pods {target}"),
            Command::Events { target, since } => {
                write!(f, "events {target}")?;
                if let Some(s) = since {
                    write!(f, " --since {}", duration_text(*s))?;
                }
                Ok(())
            }
            Command::Hpa {
                service,
                min,
                max,
                dry_run,
            } => {
                write!(f, "hpa {service}")?;
                if let Some(m) = min {
                    write!(f, " --min {m}")?;
                }
                if let Some(m) = max {
                    write!(f, " --max {m}")?;
                }
                write!(f, "{}", dry(dry_run))
            }
            Command::Health { service } => write!(f, "health {service}"),
            Command::Diagnose { target } => write!(f, "diagnose {target}"),
            Command::JobRun {
                cronjob,
                name,
                namespace,
                dry_run,
            } => {
                write!(f, "job run {cronjob}")?;
                if let Some(n) = name {
                    write!(f, " --name {n}")?;
                }
                if let Some(n) = namespace {
                    write!(f, " -n {n}")?;
                }
                write!(f, "{}", dry(dry_run))
            }
            Command::Quarantine { pod, on, dry_run } => {
                write!(
                    f,
                    "{} {pod}{}",
                    if *on { "quarantine" } else { "unquarantine" },
                    dry(dry_run)
                )
            }
            Command::EnvSet {
                service,
                vars,
                container,
                dry_run,
            } => {
                write!(f, "env set {service}")?;
                for (k, v) in vars {
                    write!(f, " {}", quoted(&format!("{k}={v}")))?;
                }
                if let Some(c) = container {
                    write!(f, " --container {c}")?;
                }
                write!(f, "{}", dry(dry_run))
            }
            Command::EnvUnset {
                service,
                keys,
                container,
                dry_run,
            } => {
                write!(f, "env unset {service} {}", keys.join(" "))?;
                if let Some(c) = container {
                    write!(f, " --container {c}")?;
                }
                write!(f, "{}", dry(dry_run))
            }
            Command::Top { target } => write!(f, "top {target}"),
            Command::History(h) => {
                write!(f, "history")?;
                if let Some(u) = &h.user {
                    write!(f, " --user {u}")?;
                }
                if let Some(s) = &h.service {
                    write!(f, " --service {s}")?;
                }
                if let Some(d) = h.since {
                    write!(f, " --since {}", duration_text(d))?;
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
    #[error("{message}")]
    BadValue {
        verb: &'static VerbSpec,
        message: String,
    },
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
            | BadValue { verb, .. }
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

/// Checks a parsed command against the service catalog: every service, pod
/// or namespace it names is known, and replicas are within bounds. Pure.
pub fn validate(command: &Command, catalog: &Catalog) -> Result<(), ParseError> {
    let spec = command.spec();
    if let Command::Can { command, .. } = command {
        return validate(command, catalog);
    }
    if let Command::History(HistoryFilter {
        service: Some(s), ..
    }) = command
    {
        if catalog.get(s).is_none() {
            return Err(unknown(spec, s, catalog.names()));
        }
        return Ok(());
    }
    catalog.scope(command).map_err(|name| {
        let candidates: Vec<&str> = catalog.names().chain(catalog.namespaces()).collect();
        unknown(spec, &name, candidates)
    })?;
    if let Command::Scale {
        service, replicas, ..
    } = command
    {
        let entry = catalog.get(service).expect("scope resolved it");
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

fn unknown<'a>(
    spec: &'static VerbSpec,
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> ParseError {
    ParseError::UnknownService {
        verb: spec,
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
