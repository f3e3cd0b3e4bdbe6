//! The parser proper: words → [`Parsed`], guided by the spec table.
//!
//! Nothing here knows a verb: the words are split into positional values
//! and flags by the verb's spec, each value is checked by its [`ArgKind`],
//! and the verb's build function makes the typed command.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use super::spec::{self, ArgKind, ArgSpec, Value, Values, VerbSpec, VERBS};
use super::tokenize::tokenize;
use super::{closest, ParseError, Parsed, MAX_REPLICAS, MAX_TEXT_LEN};

/// The longest `rollout status --wait`.
pub const MAX_WAIT: Duration = Duration::from_secs(30 * 60);
/// The longest duration any flag takes (`--since`): a year, so that time
/// arithmetic on it can never overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 86400);

/// Parses one command. Leading `/oncall` is optional; empty text is `help`.
pub fn parse(text: &str) -> Result<Parsed, ParseError> {
    let len = text.chars().count();
    if len > MAX_TEXT_LEN {
        return Err(ParseError::TooLong {
            len,
            max: MAX_TEXT_LEN,
        });
    }
    let mut words = tokenize(text)?;
    if words
        .first()
        .is_some_and(|w| w.eq_ignore_ascii_case("/oncall") || w.eq_ignore_ascii_case("oncall"))
    {
        words.remove(0);
    }
    let incident = take_incident_flag(&mut words)?;
    let mut parsed = parse_words(&words, true)?;
    parsed.incident = incident;
    Ok(parsed)
}

/// `--incident N` (or `--incident=N`, `#N`), which every verb takes: removed
/// from the words, checked, returned.
fn take_incident_flag(words: &mut Vec<String>) -> Result<Option<u32>, ParseError> {
    let Some(i) = words
        .iter()
        .position(|w| w == "--incident" || w.starts_with("--incident="))
    else {
        return Ok(None);
    };
    let word = words.remove(i);
    let value = match word.strip_prefix("--incident=") {
        Some(v) => v.to_string(),
        None if i < words.len() => words.remove(i),
        None => return Err(ParseError::BadIncidentFlag { value: None }),
    };
    if words
        .iter()
        .any(|w| w == "--incident" || w.starts_with("--incident="))
    {
        return Err(ParseError::BadIncidentFlag {
            value: Some("given twice".into()),
        });
    }
    match incident_number(&value) {
        Some(n) => Ok(Some(n)),
        None => Err(ParseError::BadIncidentFlag { value: Some(value) }),
    }
}

/// `12` or `#12`, from 1 to [`crate::MAX_INCIDENT`].
pub(crate) fn incident_number(word: &str) -> Option<u32> {
    let digits = word.strip_prefix('#').unwrap_or(word);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits
        .parse::<u32>()
        .ok()
        .filter(|n| (1..=crate::MAX_INCIDENT).contains(n))
}

fn parse_words(words: &[String], top_level: bool) -> Result<Parsed, ParseError> {
    if words.is_empty() {
        return Ok(Parsed {
            command: crate::Help { verb: None }.into(),
            public: false,
            incident: None,
        });
    }
    let Some((spec, used)) = spec::lookup(words) else {
        let verb = words[0].to_ascii_lowercase();
        return Err(ParseError::UnknownVerb {
            suggestion: closest(&verb, VERBS.iter().map(|v| v.name)),
            verb: words[0].clone(),
        });
    };
    let words = &words[used..];
    if spec.wraps_command() {
        if !top_level {
            return Err(ParseError::NestedCan);
        }
        return parse_wrapper(spec, words);
    }
    let args = Args::split(spec, words)?;
    let public = args.flags.contains_key(spec::PUBLIC.name);
    let mut values = args.check()?;
    let command = (spec.build)(&mut values)?;
    Ok(Parsed {
        command,
        public,
        incident: None,
    })
}

/// A verb whose last argument is another command (`can <principal>
/// <command…>`): the words before it are its own positional values, the
/// rest is parsed as a command of its own (whose flags are its own).
fn parse_wrapper(spec: &'static VerbSpec, words: &[String]) -> Result<Parsed, ParseError> {
    let (own, last) = spec.args.split_at(spec.args.len() - 1);
    let mut values = Values::new(spec);
    for (i, arg) in own.iter().enumerate() {
        let word = words.get(i).ok_or(ParseError::MissingArgument {
            verb: spec,
            what: arg.missing,
        })?;
        values = values.put(arg.name, check(spec, arg.kind, word, None)?);
    }
    let rest = &words[own.len().min(words.len())..];
    if rest.is_empty() {
        return Err(ParseError::MissingArgument {
            verb: spec,
            what: last[0].missing,
        });
    }
    let inner = parse_words(rest, false)?;
    values = values.put(last[0].name, Value::Command(Box::new(inner.command)));
    let command = (spec.build)(&mut values)?;
    Ok(Parsed {
        command,
        public: inner.public,
        incident: None,
    })
}

/// Positional words and flags of one verb, flags checked against its spec.
struct Args {
    spec: &'static VerbSpec,
    positional: VecDeque<String>,
    flags: BTreeMap<&'static str, Option<String>>,
    /// The values of flags that may be repeated, in order.
    repeated: Vec<(&'static str, String)>,
    /// How many positional words came before `--` (after it, a word is
    /// never an optional incident number).
    literal_from: Option<usize>,
}

impl Args {
    fn split(spec: &'static VerbSpec, words: &[String]) -> Result<Self, ParseError> {
        let mut positional = VecDeque::new();
        let mut flags = BTreeMap::new();
        let mut repeated = Vec::new();
        let mut literal_from = None;
        let mut iter = words.iter().peekable();
        let mut only_positional = false;
        while let Some(word) = iter.next() {
            let short = word
                .strip_prefix('-')
                .filter(|rest| rest.len() == 1 && rest.chars().all(|c| c.is_ascii_alphabetic()));
            if let (false, Some(rest)) = (only_positional, short) {
                let c = rest.chars().next().unwrap_or('-');
                let Some(flag) = spec.short_flag(c) else {
                    return Err(bad(spec, format!("`{}` has no flag `-{c}`", spec.name)));
                };
                let value = match iter.next() {
                    Some(v) if !v.starts_with('-') => v.clone(),
                    _ => {
                        return Err(ParseError::MissingFlagValue {
                            verb: spec,
                            flag: flag.name,
                            placeholder: placeholder(flag),
                        })
                    }
                };
                if flags.insert(flag.name, Some(value)).is_some() {
                    return Err(ParseError::RepeatedFlag {
                        verb: spec,
                        flag: flag.name,
                    });
                }
                continue;
            }
            if only_positional || !word.starts_with("--") {
                positional.push_back(word.clone());
                continue;
            }
            if word == "--" {
                only_positional = true;
                literal_from = Some(positional.len());
                continue;
            }
            let body = &word[2..];
            let (name, inline_value) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (body, None),
            };
            let Some(flag) = spec.flag(name) else {
                return Err(ParseError::UnknownFlag {
                    verb: spec,
                    flag: name.to_string(),
                    suggestion: closest(name, spec.flags.iter().map(|f| f.name)),
                });
            };
            let value = match (flag.kind, inline_value) {
                (None, None) => None,
                (None, Some(_)) => {
                    return Err(ParseError::UnexpectedFlagValue {
                        verb: spec,
                        flag: flag.name,
                    })
                }
                (Some(_), Some(v)) => Some(v),
                (Some(_), None) => match iter.next() {
                    Some(v) if !v.starts_with("--") => Some(v.clone()),
                    _ => {
                        return Err(ParseError::MissingFlagValue {
                            verb: spec,
                            flag: flag.name,
                            placeholder: placeholder(flag),
                        })
                    }
                },
            };
            if let (true, Some(v)) = (flag.many, &value) {
                repeated.push((flag.name, v.clone()));
                continue;
            }
            if flags.insert(flag.name, value).is_some() {
                return Err(ParseError::RepeatedFlag {
                    verb: spec,
                    flag: flag.name,
                });
            }
        }
        Ok(Args {
            spec,
            positional,
            flags,
            repeated,
            literal_from,
        })
    }

    /// Checks every word by its kind: positional arguments in order, then
    /// flags in the spec's order; a word left over is an error.
    fn check(mut self) -> Result<Values, ParseError> {
        let spec = self.spec;
        let mut values = Values::new(spec);
        for arg in spec.args {
            values = self.positional_values(arg, values)?;
        }
        for flag in spec.flags {
            if flag.name == spec::PUBLIC.name {
                continue;
            }
            if let (true, Some(kind)) = (flag.many, flag.kind) {
                for (_, word) in self.repeated.iter().filter(|(n, _)| *n == flag.name) {
                    values = values.put(flag.name, check(spec, kind, word, Some(flag.name))?);
                }
                continue;
            }
            match (self.flags.get(flag.name), flag.kind) {
                (None, _) => {}
                (Some(_), None) => values = values.put(flag.name, Value::Switch),
                (Some(Some(word)), Some(kind)) => {
                    values = values.put(flag.name, check(spec, kind, word, Some(flag.name))?)
                }
                (Some(None), Some(_)) => {}
            }
        }
        match self.positional.pop_front() {
            Some(extra) => Err(ParseError::ExtraArgument { verb: spec, extra }),
            None => Ok(values),
        }
    }

    fn positional_values(
        &mut self,
        arg: &'static ArgSpec,
        mut values: Values,
    ) -> Result<Values, ParseError> {
        let spec = self.spec;
        if arg.kind == ArgKind::Verb {
            // `help rollout status` names a two-word verb.
            let words: Vec<String> = self.positional.drain(..).collect();
            if words.is_empty() {
                return Ok(values);
            }
            return match spec::lookup(&words) {
                Some((found, used)) if used == words.len() => {
                    Ok(values.put_text(arg.name, found.name))
                }
                _ => Err(ParseError::UnknownVerb {
                    suggestion: closest(&words[0], VERBS.iter().map(|v| v.name)),
                    verb: words.join(" "),
                }),
            };
        }
        if arg.kind == ArgKind::Incident && !arg.required {
            // Taken only if the word is a number: `incident ack 4`,
            // `incident ack` (the channel's incident, or the only open one).
            let number = match self.literal_from {
                Some(0) => None,
                _ => self.positional.front().and_then(|w| incident_number(w)),
            };
            if let Some(n) = number {
                self.positional.pop_front();
                values = values.put(arg.name, Value::Int(n));
            }
            return Ok(values);
        }
        if arg.many {
            while let Some(word) = self.positional.pop_front() {
                values = values.put(arg.name, check(spec, arg.kind, &word, None)?);
            }
            return Ok(values);
        }
        match self.positional.pop_front() {
            Some(word) => Ok(values.put(arg.name, check(spec, arg.kind, &word, None)?)),
            None if arg.required => Err(ParseError::MissingArgument {
                verb: spec,
                what: arg.missing,
            }),
            None => Ok(values),
        }
    }
}

fn placeholder(flag: &spec::FlagSpec) -> &'static str {
    if flag.placeholder.is_empty() {
        "VALUE"
    } else {
        flag.placeholder
    }
}

/// Checks one word as a value of `kind`; `flag` names the flag it was given
/// to, for the message.
fn check(
    spec: &'static VerbSpec,
    kind: ArgKind,
    word: &str,
    flag: Option<&str>,
) -> Result<Value, ParseError> {
    let text = |r: Result<String, ParseError>| r.map(Value::Text);
    match kind {
        ArgKind::Service | ArgKind::ServiceFilter => text(service_name(spec, word.to_string())),
        ArgKind::ServiceOrPod | ArgKind::ServiceOrNamespace | ArgKind::Pod => {
            text(target_name(spec, word.to_string()))
        }
        ArgKind::Namespace => text(name_in(spec, "namespace", word.to_string())),
        ArgKind::CronJob => text(name_in(spec, "CronJob name", word.to_string())),
        ArgKind::Name(what) => text(name_in(spec, what, word.to_string())),
        ArgKind::Replicas => replicas(spec, word).map(Value::Int),
        ArgKind::ReplicaBound => check(
            spec,
            ArgKind::Number {
                min: 1,
                max: MAX_REPLICAS,
            },
            word,
            flag,
        ),
        ArgKind::Number { min, max } => match word.parse::<u32>() {
            Ok(n) if (min..=max).contains(&n) && !word.starts_with('+') => Ok(Value::Int(n)),
            _ => Err(bad(
                spec,
                format!(
                    "`--{}` must be a whole number from {min} to {max}, not `{word}`",
                    flag.unwrap_or("value")
                ),
            )),
        },
        ArgKind::Revision => match word.parse::<u32>() {
            Ok(n) => Ok(Value::Int(n)),
            Err(_) => Err(bad(
                spec,
                format!(
                    "`--{}` must be a revision number, not `{word}`",
                    flag.unwrap_or("revision")
                ),
            )),
        },
        ArgKind::Duration { max } => {
            let d = duration(spec, word)?;
            let max = max.unwrap_or(MAX_DURATION).min(MAX_DURATION);
            if d > max {
                let shown = if max.as_secs() % 86400 == 0 {
                    format!("{}d", max.as_secs() / 86400)
                } else {
                    humantime::format_duration(max).to_string()
                };
                return Err(bad(
                    spec,
                    format!("`--{}` is at most {shown}", flag.unwrap_or("duration")),
                ));
            }
            Ok(Value::Duration(d))
        }
        ArgKind::Image => {
            let (container, image) = match word.split_once('=') {
                Some((c, i)) => (
                    Some(name_in(spec, "container name", c.to_string())?),
                    i.to_string(),
                ),
                None => (None, word.to_string()),
            };
            if let Err(why) = valid_image_reference(&image) {
                return Err(bad(
                    spec,
                    format!("`{image}` is not a valid image reference: {why}"),
                ));
            }
            Ok(Value::Image { container, image })
        }
        ArgKind::EnvPair => {
            let Some((key, value)) = word.split_once('=') else {
                return Err(bad(spec, format!("`{word}` is not KEY=VALUE")));
            };
            env_key(spec, key)?;
            if let Some(why) = looks_like_secret(key, value) {
                return Err(bad(spec, format!("`{key}` {why}: secrets belong in a Kubernetes Secret (secretKeyRef), never in chat")));
            }
            Ok(Value::Pair(key.to_string(), value.to_string()))
        }
        ArgKind::EnvKey => {
            env_key(spec, word)?;
            // Secrets are managed in Secrets: not set, shown or removed here.
            if let Some(why) = looks_like_secret(word, "") {
                return Err(bad(spec, format!("`{word}` {why}: secrets belong in a Kubernetes Secret (secretKeyRef), never in chat")));
            }
            Ok(Value::Text(word.to_string()))
        }
        ArgKind::Regex => match regex::RegexBuilder::new(word).size_limit(1 << 16).build() {
            Ok(_) => Ok(Value::Text(word.to_string())),
            Err(e) => {
                let why = e.to_string();
                let why = why.lines().last().unwrap_or("invalid").trim().to_string();
                Err(bad(
                    spec,
                    format!(
                        "`--{} {word}` is not a valid regular expression ({why})",
                        flag.unwrap_or("grep")
                    ),
                ))
            }
        },
        ArgKind::Principal => principal(spec, word).map(Value::Text),
        ArgKind::AlertTarget => {
            let ok = (1..=128).contains(&word.len())
                && word
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_:-".contains(&b));
            match ok {
                true => Ok(Value::Text(word.to_string())),
                false => Err(bad(
                    spec,
                    format!("`{word}` is not an alert name, a fingerprint or a silence id"),
                )),
            }
        }
        ArgKind::PageTarget => match crate::Target::parse(word) {
            Ok(t) => Ok(Value::Text(t.to_string())),
            Err(e) => Err(bad(spec, e)),
        },
        ArgKind::RequestId => text(request_id(spec, word.to_string())),
        ArgKind::Incident => match incident_number(word) {
            Some(n) => Ok(Value::Int(n)),
            None => Err(bad(spec, format!("`{word}` is not an incident number"))),
        },
        ArgKind::Severity => {
            let ok = (1..=24).contains(&word.len())
                && word.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
            if ok {
                Ok(Value::Text(word.to_string()))
            } else {
                Err(bad(
                    spec,
                    format!("`{word}` is not a severity (like SEV-2 or P1)"),
                ))
            }
        }
        ArgKind::Role => {
            let role = word.to_ascii_lowercase();
            match dns1123_label(&role) {
                Ok(()) if role.len() <= 32 => Ok(Value::Text(role)),
                _ => Err(bad(
                    spec,
                    format!("`{word}` is not a role name (like commander)"),
                )),
            }
        }
        ArgKind::IncidentState => {
            let state = word.to_ascii_lowercase();
            if crate::INCIDENT_STATES.contains(&state.as_str()) {
                Ok(Value::Text(state))
            } else {
                Err(bad(
                    spec,
                    format!(
                        "`{word}` is not an incident state: one of {}",
                        crate::INCIDENT_STATES.join(", ")
                    ),
                ))
            }
        }
        ArgKind::Text => Ok(Value::Text(word.to_string())),
        // Handled by the caller: they take the remaining words.
        ArgKind::Verb | ArgKind::Command => Ok(Value::Text(word.to_string())),
    }
}

/// Service names are DNS-1123 labels: what Kubernetes accepts as a name.
fn service_name(spec: &'static VerbSpec, value: String) -> Result<String, ParseError> {
    match dns1123_label(&value) {
        Ok(()) => Ok(value),
        Err(why) => Err(ParseError::BadName {
            verb: spec,
            what: "service name",
            value,
            why,
        }),
    }
}

pub(crate) fn bad(spec: &'static VerbSpec, message: impl Into<String>) -> ParseError {
    ParseError::BadValue {
        verb: spec,
        message: message.into(),
    }
}

/// A Kubernetes object name that must be a DNS-1123 label.
fn name_in(
    spec: &'static VerbSpec,
    what: &'static str,
    value: String,
) -> Result<String, ParseError> {
    match dns1123_label(&value) {
        Ok(()) => Ok(value),
        Err(why) => Err(ParseError::BadName {
            verb: spec,
            what,
            value,
            why,
        }),
    }
}

/// A service, pod or namespace name: a DNS-1123 subdomain.
fn target_name(spec: &'static VerbSpec, value: String) -> Result<String, ParseError> {
    match dns1123_subdomain(&value) {
        Ok(()) => Ok(value),
        Err(why) => Err(ParseError::BadName {
            verb: spec,
            what: "name",
            value,
            why,
        }),
    }
}

fn env_key(spec: &'static VerbSpec, key: &str) -> Result<(), ParseError> {
    let mut chars = key.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && key.len() <= 128;
    if ok {
        Ok(())
    } else {
        Err(bad(spec, format!("`{key}` is not a valid environment variable name (letters, digits and '_', not starting with a digit)")))
    }
}

/// Why a KEY=VALUE pair looks like a secret, if it does.
pub fn looks_like_secret(key: &str, value: &str) -> Option<&'static str> {
    let upper = key.to_ascii_uppercase();
    const SECRET_WORDS: &[&str] = &[
        "PASSWORD",
        "PASSWD",
        "SECRET",
        "TOKEN",
        "API_KEY",
        "APIKEY",
        "PRIVATE_KEY",
        "CREDENTIAL",
        "ACCESS_KEY",
    ];
    if SECRET_WORDS.iter().any(|w| upper.contains(w)) {
        return Some("is named like a secret");
    }
    if crate::redact::redact_line(value) != value
        || crate::redact::redact_line(&format!("{key}={value}")) != format!("{key}={value}")
    {
        return Some("has a value that looks like a credential");
    }
    None
}

/// Checks an image reference: `[registry[:port]/]path[:tag][@digest]`.
pub fn valid_image_reference(image: &str) -> Result<(), &'static str> {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = RE.get_or_init(|| {
        regex::Regex::new(
            r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9.-]*[a-zA-Z0-9])?(?::[0-9]+)?/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$",
        )
        .expect("valid regex")
    });
    if image.is_empty() {
        return Err("it is empty");
    }
    if image.len() > 255 {
        return Err("it is longer than 255 characters");
    }
    if !re.is_match(image) {
        return Err("expected [registry/]name[:tag][@sha256:digest] with a lower-case name");
    }
    Ok(())
}

/// Checks a DNS-1123 subdomain (pod names): up to 253 characters of
/// lower-case letters, digits, '-' and '.', starting and ending alphanumeric.
pub fn dns1123_subdomain(value: &str) -> Result<(), &'static str> {
    if value.is_empty() {
        return Err("it is empty");
    }
    if value.len() > 253 {
        return Err("it is longer than 253 characters");
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    {
        return Err("use only lower-case letters, digits, '-' and '.'");
    }
    let first = value.as_bytes()[0];
    let last = value.as_bytes()[value.len() - 1];
    if !first.is_ascii_alphanumeric() || !last.is_ascii_alphanumeric() {
        return Err("it must start and end with a letter or digit");
    }
    Ok(())
}

/// Checks a DNS-1123 label: 1-63 lower-case letters, digits and '-', starting
/// and ending with a letter or digit.
pub fn dns1123_label(value: &str) -> Result<(), &'static str> {
    if value.is_empty() {
        return Err("it is empty");
    }
    if value.len() > 63 {
        return Err("it is longer than 63 characters");
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err("use only lower-case letters, digits and '-'");
    }
    if value.starts_with('-') || value.ends_with('-') {
        return Err("it must start and end with a letter or digit");
    }
    Ok(())
}

fn replicas(spec: &'static VerbSpec, value: &str) -> Result<u32, ParseError> {
    match value.parse::<u32>() {
        Ok(n) if n <= MAX_REPLICAS && !value.starts_with('+') => Ok(n),
        _ => Err(ParseError::BadReplicas {
            verb: spec,
            value: value.to_string(),
            max: MAX_REPLICAS,
        }),
    }
}

fn duration(spec: &'static VerbSpec, value: &str) -> Result<Duration, ParseError> {
    match humantime::parse_duration(value) {
        Ok(d) if !d.is_zero() => Ok(d),
        _ => Err(ParseError::BadDuration {
            verb: spec,
            value: value.to_string(),
        }),
    }
}

fn principal(spec: &'static VerbSpec, value: &str) -> Result<String, ParseError> {
    value
        .parse::<oncall_permissions::Principal>()
        .map(|p| p.to_string())
        .map_err(|e| ParseError::BadPrincipal {
            verb: spec,
            message: e.to_string(),
        })
}

/// Approval ids are short lower-case codes the bot hands out.
fn request_id(spec: &'static VerbSpec, value: String) -> Result<String, ParseError> {
    let ok = (4..=16).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if ok {
        Ok(value)
    } else {
        Err(ParseError::BadName {
            verb: spec,
            what: "request id",
            value,
            why: "ids are 4-16 lower-case letters and digits, as shown when the request was made",
        })
    }
}
