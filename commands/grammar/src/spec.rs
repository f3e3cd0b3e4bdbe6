//! The shape of a verb's declaration, and everything generated from it.
//!
//! A verb is declared once, in [`crate::verbs`], as a [`VerbSpec`]: its
//! typed positional arguments ([`ArgSpec`]), its flags ([`FlagSpec`]), the
//! policy verb, whether it mutates, and the function that builds its typed
//! command from the checked [`Values`]. From that one entry come the parser
//! (every argument checked by its [`ArgKind`]), the canonical text of a
//! command, what it targets in the catalog, `help`, the usage line of every
//! error, the README's reference, Slack's usage hint and Discord's options.

use std::fmt;
use std::time::Duration;

use crate::{Command, ParseError};

/// What a value is, which decides how it is checked, shown and resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgKind {
    /// A catalog service the command acts on (a DNS-1123 label).
    Service,
    /// A catalog service named as a filter (`history --service`): checked
    /// against the catalog, but not a target.
    ServiceFilter,
    /// A catalog service or one of its pods.
    ServiceOrPod,
    /// A catalog service or a namespace holding catalog services.
    ServiceOrNamespace,
    /// A pod of a catalog service.
    Pod,
    /// A namespace holding catalog services.
    Namespace,
    /// A CronJob, in a catalog namespace.
    CronJob,
    /// Another Kubernetes object name (a DNS-1123 label): what it names.
    Name(&'static str),
    /// A replica count, 0 to [`crate::MAX_REPLICAS`].
    Replicas,
    /// An autoscaler bound (`hpa --min/--max`): 1 to [`crate::MAX_REPLICAS`],
    /// and within the service's catalog bounds like [`ArgKind::Replicas`].
    ReplicaBound,
    /// A whole number within bounds.
    Number { min: u32, max: u32 },
    /// A revision number; 0 means the previous one.
    Revision,
    /// A humantime duration, above zero and at most `max`.
    Duration { max: Option<Duration> },
    /// `[<container>=]<image>`.
    Image,
    /// An environment `KEY=VALUE` that is not a secret.
    EnvPair,
    /// An environment variable name.
    EnvKey,
    /// A regular expression.
    Regex,
    /// A principal (`slack:U…`, `discord-role:…`, `cli:name`).
    Principal,
    /// An alert's name (`KafkaConsumerLag`), its fingerprint, or a
    /// silence's id: letters, digits, `_`, `:`, `-`, at most 128.
    AlertTarget,
    /// An approval request id.
    RequestId,
    /// Where a page goes: a principal, `schedule:`, `channel:`,
    /// `pagerduty:`, `opsgenie:` or `webhook:` ([`crate::Target`]).
    PageTarget,
    /// An incident number (`12` or `#12`). Optional where it stands first:
    /// a leading word that is a number is taken as it, else it is absent.
    Incident,
    /// A severity as people type it (`SEV-1`, `P0`, `critical`); which
    /// ones exist is configuration, checked by the handler.
    Severity,
    /// An incident role name (`commander`); configuration, like severities.
    Role,
    /// An incident's state: investigating, identified, monitoring, resolved.
    IncidentState,
    /// Free words (a title, a note): all remaining words, joined.
    Text,
    /// The name of a verb (all remaining words).
    Verb,
    /// Another command (all remaining words, flags included).
    Command,
}

impl ArgKind {
    /// Whether the value names what the command acts on.
    pub fn is_target(self) -> bool {
        matches!(
            self,
            ArgKind::Service | ArgKind::ServiceOrPod | ArgKind::ServiceOrNamespace | ArgKind::Pod
        )
    }

    /// Whether people pick it from the catalog (Discord autocompletes it).
    pub fn from_catalog(self) -> bool {
        matches!(
            self,
            ArgKind::Service
                | ArgKind::ServiceFilter
                | ArgKind::ServiceOrPod
                | ArgKind::ServiceOrNamespace
                | ArgKind::CronJob
                | ArgKind::Verb
        )
    }

    /// Whether it is a whole number (Discord shows an integer option).
    pub fn is_integer(self) -> bool {
        matches!(
            self,
            ArgKind::Replicas
                | ArgKind::ReplicaBound
                | ArgKind::Number { .. }
                | ArgKind::Revision
                | ArgKind::Incident
        )
    }

    /// The bounds of an integer.
    pub fn bounds(self) -> Option<(u32, u32)> {
        match self {
            ArgKind::Replicas => Some((0, crate::MAX_REPLICAS)),
            ArgKind::ReplicaBound => Some((1, crate::MAX_REPLICAS)),
            ArgKind::Number { min, max } => Some((min, max)),
            ArgKind::Incident => Some((1, crate::MAX_INCIDENT)),
            _ => None,
        }
    }
}

/// One positional argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArgSpec {
    /// Its name (Discord's option name).
    pub name: &'static str,
    pub kind: ArgKind,
    /// How usage shows it (`<service>`, `[<container>=]<image>`).
    pub usage: &'static str,
    /// One line for Discord's option description.
    pub help: &'static str,
    /// What the error says is missing when this and what follows is absent.
    pub missing: &'static str,
    pub required: bool,
    /// It takes every remaining word (`restart a b c`).
    pub many: bool,
}

/// A flag a verb accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlagSpec {
    /// Without the leading `--`.
    pub name: &'static str,
    /// `None` for a switch, or what its value is.
    pub kind: Option<ArgKind>,
    /// The value's placeholder in usage (`DURATION`, `N`).
    pub placeholder: &'static str,
    pub help: &'static str,
    /// A one-letter alias (`-n`), if any.
    pub short: Option<char>,
    /// It may be given more than once (`--service a --service b`).
    pub many: bool,
}

/// Whether a verb changes anything in a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutates {
    Never,
    Always,
    /// Only when one of these flags is given, and then it is authorized as
    /// `policy_verb` (`hpa --min 3` is `hpa-set`).
    WithFlags {
        flags: &'static [&'static str],
        policy_verb: &'static str,
    },
}

/// Who decides whether a caller may run a verb.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// The policy, on the command's resolved scope, before it runs.
    Policy,
    /// The handler: anyone may ask (`help`, `whoami`), or the handler checks
    /// its own rules (`approve`, `deny` check the approval rule).
    Handler,
}

/// Builds a verb's typed command from its checked values.
pub type BuildFn = fn(&mut Values) -> Result<Command, ParseError>;

/// One verb of the command language.
#[derive(Clone, Copy)]
pub struct VerbSpec {
    /// What people type; two words for grouped verbs (`rollout status`).
    pub name: &'static str,
    pub args: &'static [ArgSpec],
    pub flags: &'static [FlagSpec],
    pub summary: &'static str,
    pub example: &'static str,
    /// The verb the policy sees; the same as `name` with spaces as dashes.
    pub policy_verb: &'static str,
    pub mutates: Mutates,
    pub gate: Gate,
    pub build: BuildFn,
}

impl fmt::Debug for VerbSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerbSpec({})", self.name)
    }
}

/// Verbs are identified by name: the table has each once.
impl PartialEq for VerbSpec {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for VerbSpec {}

impl fmt::Display for VerbSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

impl VerbSpec {
    /// `scale <service> <replicas> [--dry-run]`
    pub fn usage(&self) -> String {
        let mut out = self.name.to_string();
        let args: Vec<&str> = self.args.iter().map(|a| a.usage).collect();
        let args = args.join(" ");
        if !args.is_empty() {
            out.push(' ');
            out.push_str(&args);
        }
        for flag in self.flags {
            if flag.name == PUBLIC.name {
                continue;
            }
            let spelled = args.contains(&format!("--{}", flag.name))
                || flag.short.is_some_and(|c| args.contains(&format!("-{c} ")));
            if spelled {
                continue;
            }
            match flag.kind {
                Some(_) if flag.many => {
                    out.push_str(&format!(" [--{} {}]…", flag.name, flag.placeholder))
                }
                Some(_) => out.push_str(&format!(" [--{} {}]", flag.name, flag.placeholder)),
                None => out.push_str(&format!(" [--{}]", flag.name)),
            }
        }
        out
    }

    pub fn flag(&self, name: &str) -> Option<&'static FlagSpec> {
        self.flags.iter().find(|f| f.name == name)
    }

    pub fn short_flag(&self, c: char) -> Option<&'static FlagSpec> {
        self.flags.iter().find(|f| f.short == Some(c))
    }

    pub fn arg(&self, name: &str) -> Option<&'static ArgSpec> {
        self.args.iter().find(|a| a.name == name)
    }

    /// The kind of a named argument or flag value.
    pub fn kind_of(&self, name: &str) -> Option<ArgKind> {
        self.arg(name)
            .map(|a| a.kind)
            .or_else(|| self.flag(name).and_then(|f| f.kind))
    }

    /// Whether it takes another command as its last argument (`can`).
    pub fn wraps_command(&self) -> bool {
        self.args.last().is_some_and(|a| a.kind == ArgKind::Command)
    }
}

/// A checked value of an argument or flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Text(String),
    Int(u32),
    Duration(Duration),
    Pair(String, String),
    Image {
        container: Option<String>,
        image: String,
    },
    Command(Box<Command>),
    Switch,
}

/// A verb's checked values, by argument or flag name, in the order given:
/// what the parser hands a verb's build function, and what a command gives
/// back for its canonical text and its targets.
#[derive(Debug, Clone)]
pub struct Values {
    pub spec: &'static VerbSpec,
    entries: Vec<(&'static str, Value)>,
}

impl Values {
    pub fn new(spec: &'static VerbSpec) -> Self {
        Values {
            spec,
            entries: Vec::new(),
        }
    }

    /// Every value, in order.
    pub fn entries(&self) -> impl Iterator<Item = (&'static str, &Value)> {
        self.entries.iter().map(|(n, v)| (*n, v))
    }

    /// The values of positional arguments with their specs.
    pub fn positional(&self) -> impl Iterator<Item = (&'static ArgSpec, &Value)> {
        self.entries
            .iter()
            .filter_map(|(n, v)| self.spec.arg(n).map(|a| (a, v)))
    }

    /// The values of flags with their specs.
    pub fn flags(&self) -> impl Iterator<Item = (&'static FlagSpec, &Value)> {
        self.entries
            .iter()
            .filter_map(|(n, v)| self.spec.flag(n).map(|f| (f, v)))
    }

    pub fn has(&self, name: &str) -> bool {
        self.entries.iter().any(|(n, _)| *n == name)
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.entries
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
    }

    /// The text of a value, if it is text.
    pub fn text_of(&self, name: &str) -> Option<&str> {
        match self.get(name) {
            Some(Value::Text(t)) => Some(t),
            _ => None,
        }
    }

    // ---- taking values out, for build functions ----

    fn take(&mut self, name: &str) -> Option<Value> {
        let i = self.entries.iter().position(|(n, _)| *n == name)?;
        Some(self.entries.remove(i).1)
    }

    fn missing(&self, name: &str) -> ParseError {
        ParseError::MissingArgument {
            verb: self.spec,
            what: self
                .spec
                .arg(name)
                .map(|a| a.missing)
                .unwrap_or(name_static(self.spec, name)),
        }
    }

    /// A required text argument.
    pub fn text(&mut self, name: &str) -> Result<String, ParseError> {
        self.opt_text(name).ok_or_else(|| self.missing(name))
    }

    pub fn opt_text(&mut self, name: &str) -> Option<String> {
        match self.take(name) {
            Some(Value::Text(t)) => Some(t),
            _ => None,
        }
    }

    /// Every value of a repeated text argument.
    pub fn all_text(&mut self, name: &str) -> Vec<String> {
        std::iter::from_fn(|| self.opt_text(name)).collect()
    }

    pub fn int(&mut self, name: &str) -> Result<u32, ParseError> {
        self.opt_int(name).ok_or_else(|| self.missing(name))
    }

    pub fn opt_int(&mut self, name: &str) -> Option<u32> {
        match self.take(name) {
            Some(Value::Int(n)) => Some(n),
            _ => None,
        }
    }

    pub fn opt_duration(&mut self, name: &str) -> Option<Duration> {
        match self.take(name) {
            Some(Value::Duration(d)) => Some(d),
            _ => None,
        }
    }

    pub fn switch(&mut self, name: &str) -> bool {
        matches!(self.take(name), Some(Value::Switch))
    }

    /// Every `KEY=VALUE` of a repeated argument.
    pub fn pairs(&mut self, name: &str) -> Vec<(String, String)> {
        std::iter::from_fn(|| match self.take(name) {
            Some(Value::Pair(k, v)) => Some((k, v)),
            _ => None,
        })
        .collect()
    }

    /// An image argument: (container, image).
    pub fn image(&mut self, name: &str) -> Result<(Option<String>, String), ParseError> {
        match self.take(name) {
            Some(Value::Image { container, image }) => Ok((container, image)),
            _ => Err(self.missing(name)),
        }
    }

    pub fn command(&mut self, name: &str) -> Result<Command, ParseError> {
        match self.take(name) {
            Some(Value::Command(c)) => Ok(*c),
            _ => Err(self.missing(name)),
        }
    }

    // ---- putting values in, for a command's canonical values ----

    pub fn put(mut self, name: &'static str, value: Value) -> Self {
        self.entries.push((name, value));
        self
    }

    pub fn put_text(self, name: &'static str, text: &str) -> Self {
        self.put(name, Value::Text(text.to_string()))
    }

    pub fn put_opt_text(self, name: &'static str, text: Option<&str>) -> Self {
        match text {
            Some(t) => self.put_text(name, t),
            None => self,
        }
    }

    pub fn put_all_text(self, name: &'static str, texts: &[String]) -> Self {
        texts.iter().fold(self, |v, t| v.put_text(name, t))
    }

    pub fn put_int(self, name: &'static str, n: u32) -> Self {
        self.put(name, Value::Int(n))
    }

    pub fn put_opt_int(self, name: &'static str, n: Option<u32>) -> Self {
        match n {
            Some(n) => self.put_int(name, n),
            None => self,
        }
    }

    pub fn put_duration(self, name: &'static str, d: Option<Duration>) -> Self {
        match d {
            Some(d) => self.put(name, Value::Duration(d)),
            None => self,
        }
    }

    pub fn put_switch(self, name: &'static str, on: bool) -> Self {
        if on {
            self.put(name, Value::Switch)
        } else {
            self
        }
    }
}

/// The name as a `'static` str, from the spec (for errors about flags).
fn name_static(spec: &'static VerbSpec, name: &str) -> &'static str {
    spec.flag(name).map(|f| f.name).unwrap_or("a value")
}

/// `--public`: post the reply for the whole channel instead of privately.
pub const PUBLIC: FlagSpec = switch("public", "show the reply to the whole channel");
pub const DRY_RUN: FlagSpec = switch(
    "dry-run",
    "ask the API server to validate the change without making it",
);
pub const NAMESPACE: FlagSpec = FlagSpec {
    name: "namespace",
    kind: Some(ArgKind::Namespace),
    placeholder: "NAMESPACE",
    help: "the namespace",
    short: Some('n'),
    many: false,
};
pub const CONTAINER: FlagSpec = valued(
    "container",
    ArgKind::Name("container name"),
    "NAME",
    "the container (default: the one named like the service)",
);

/// A flag without a value.
pub const fn switch(name: &'static str, help: &'static str) -> FlagSpec {
    FlagSpec {
        name,
        kind: None,
        placeholder: "",
        help,
        short: None,
        many: false,
    }
}

/// A flag with a value of `kind`.
pub const fn valued(
    name: &'static str,
    kind: ArgKind,
    placeholder: &'static str,
    help: &'static str,
) -> FlagSpec {
    FlagSpec {
        name,
        kind: Some(kind),
        placeholder,
        help,
        short: None,
        many: false,
    }
}

/// A required positional argument.
pub const fn arg(
    name: &'static str,
    kind: ArgKind,
    usage: &'static str,
    missing: &'static str,
    help: &'static str,
) -> ArgSpec {
    ArgSpec {
        name,
        kind,
        usage,
        help,
        missing,
        required: true,
        many: false,
    }
}

/// The catalog service a command acts on, as most verbs take it.
pub const SERVICE: ArgSpec = arg(
    "service",
    ArgKind::Service,
    "<service>",
    "a service",
    "The service, from the catalog",
);

pub use crate::verbs::VERBS;

/// Looks a verb up by the words it starts with; returns it and how many words
/// its name used.
pub fn lookup(words: &[String]) -> Option<(&'static VerbSpec, usize)> {
    let first = words.first()?.to_ascii_lowercase();
    if let Some(second) = words.get(1) {
        let two = format!("{first} {}", second.to_ascii_lowercase());
        if let Some(spec) = find(&two) {
            return Some((spec, 2));
        }
    }
    find(&first).map(|s| (s, 1))
}

pub fn find(name: &str) -> Option<&'static VerbSpec> {
    VERBS.iter().copied().find(|v| v.name == name)
}

/// The policy verbs, for validating a policy file.
pub fn policy_verbs() -> Vec<&'static str> {
    let mut verbs: Vec<&'static str> = Vec::new();
    for v in VERBS {
        verbs.push(v.policy_verb);
        if let Mutates::WithFlags { policy_verb, .. } = v.mutates {
            verbs.push(policy_verb);
        }
    }
    verbs.extend(EXTRA_POLICY_VERBS);
    verbs.sort_unstable();
    verbs.dedup();
    verbs
}

/// Permissions that are not commands of their own: `force` lets a scale go
/// past an autoscaler's maximum.
pub const EXTRA_POLICY_VERBS: &[&str] = &["force"];

/// The slash command's usage hint (Slack's app manifest): every verb.
pub fn usage_hint() -> String {
    let mut names: Vec<&str> = Vec::new();
    for v in VERBS {
        if !names.contains(&v.name) {
            names.push(v.name);
        }
    }
    format!("{} …", names.join(" | "))
}

/// The command reference in Markdown, as the README holds it.
pub fn reference_markdown() -> String {
    let mut out = String::from("| Command | What it does | Example |\n|---|---|---|\n");
    for verb in VERBS {
        out.push_str(&format!(
            "| `{}` | {} | `/oncall {}` |\n",
            verb.usage().replace('|', "\\|"),
            verb.summary,
            verb.example
        ));
    }
    out
}
