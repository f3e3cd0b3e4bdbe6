//! The parser proper: words → [`Parsed`], guided by the spec table.

use std::collections::BTreeMap;
use std::time::Duration;

use super::spec::{self, VerbSpec, VERBS};
use super::tokenize::tokenize;
use super::{
    closest, Command, HistoryFilter, LogsRequest, ParseError, Parsed, DEFAULT_HISTORY_LIMIT,
    MAX_HISTORY_LIMIT, MAX_REPLICAS, MAX_TEXT_LEN,
};

/// The longest `rollout status --wait`.
pub const MAX_WAIT: Duration = Duration::from_secs(30 * 60);
/// The most log lines per pod.
pub const MAX_TAIL: u32 = 1000;

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
    parse_words(&words, true)
}

fn parse_words(words: &[String], top_level: bool) -> Result<Parsed, ParseError> {
    if words.is_empty() {
        return Ok(Parsed {
            command: Command::Help { verb: None },
            public: false,
        });
    }
    let Some((spec, used)) = spec::lookup(words) else {
        let verb = words[0].to_ascii_lowercase();
        return Err(ParseError::UnknownVerb {
            suggestion: closest(&verb, VERBS.iter().map(|v| v.name)),
            verb: words[0].clone(),
        });
    };
    if spec.name == "can" {
        if !top_level {
            return Err(ParseError::NestedCan);
        }
        return parse_can(spec, &words[used..]);
    }
    let args = Args::split(spec, &words[used..])?;
    let public = args.switch("public");
    let command = build(spec, args)?;
    Ok(Parsed { command, public })
}

/// Positional words and flags of one verb, flags checked against its spec.
struct Args {
    spec: &'static VerbSpec,
    positional: std::collections::VecDeque<String>,
    flags: BTreeMap<&'static str, Option<String>>,
}

impl Args {
    fn split(spec: &'static VerbSpec, words: &[String]) -> Result<Self, ParseError> {
        let mut positional = std::collections::VecDeque::new();
        let mut flags = BTreeMap::new();
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
                            placeholder: flag.value.unwrap_or("VALUE"),
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
            let value = match (flag.value, inline_value) {
                (None, None) => None,
                (None, Some(_)) => {
                    return Err(ParseError::UnexpectedFlagValue {
                        verb: spec,
                        flag: flag.name,
                    })
                }
                (Some(_), Some(v)) => Some(v),
                (Some(placeholder), None) => match iter.next() {
                    Some(v) if !v.starts_with("--") => Some(v.clone()),
                    _ => {
                        return Err(ParseError::MissingFlagValue {
                            verb: spec,
                            flag: flag.name,
                            placeholder,
                        })
                    }
                },
            };
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
        })
    }

    fn required(&mut self, what: &'static str) -> Result<String, ParseError> {
        self.positional
            .pop_front()
            .ok_or(ParseError::MissingArgument {
                verb: self.spec,
                what,
            })
    }

    fn optional(&mut self) -> Option<String> {
        self.positional.pop_front()
    }

    fn switch(&self, name: &str) -> bool {
        self.flags.contains_key(name)
    }

    fn value(&self, name: &str) -> Option<&str> {
        self.flags.get(name).and_then(|v| v.as_deref())
    }

    fn done(mut self) -> Result<(), ParseError> {
        match self.positional.pop_front() {
            Some(extra) => Err(ParseError::ExtraArgument {
                verb: self.spec,
                extra,
            }),
            None => Ok(()),
        }
    }
}

fn build(spec: &'static VerbSpec, mut args: Args) -> Result<Command, ParseError> {
    let command = match spec.name {
        "help" => {
            let verb = match args.optional() {
                None => None,
                Some(first) => {
                    // `help rollout status` names a two-word verb.
                    let mut words = vec![first];
                    words.extend(args.positional.drain(..));
                    match spec::lookup(&words) {
                        Some((found, used)) if used == words.len() => Some(found.name.to_string()),
                        _ => {
                            return Err(ParseError::UnknownVerb {
                                suggestion: closest(&words[0], VERBS.iter().map(|v| v.name)),
                                verb: words.join(" "),
                            })
                        }
                    }
                }
            };
            Command::Help { verb }
        }
        "scale" => {
            let service = service_name(spec, args.required("a service and a replica count")?)?;
            let replicas = replicas(spec, &args.required("a replica count")?)?;
            Command::Scale {
                service,
                replicas,
                dry_run: args.switch("dry-run"),
                force: args.switch("force"),
            }
        }
        "restart" => {
            let dry_run = args.switch("dry-run");
            if args.switch("all") {
                let Some(ns) = args.value("namespace").map(String::from) else {
                    return Err(bad(
                        spec,
                        "`restart --all` needs the namespace: `-n <namespace>`",
                    ));
                };
                if let Some(extra) = args.positional.front() {
                    return Err(bad(
                        spec,
                        format!("name services or use --all, not both (`{extra}`)"),
                    ));
                }
                Command::RestartAll {
                    namespace: name_in(spec, "namespace", ns)?,
                    dry_run,
                }
            } else {
                if args.value("namespace").is_some() {
                    return Err(bad(
                        spec,
                        "`-n` goes with `--all`; services are found through the catalog",
                    ));
                }
                let mut services = vec![service_name(
                    spec,
                    args.required("a service (or --all -n <namespace>)")?,
                )?];
                while let Some(next) = args.optional() {
                    let next = service_name(spec, next)?;
                    if services.contains(&next) {
                        return Err(bad(spec, format!("`{next}` is named twice")));
                    }
                    services.push(next);
                }
                if services.len() > 20 {
                    return Err(bad(spec, "at most 20 services at once; use --all -n <namespace> for a whole namespace"));
                }
                Command::Restart { services, dry_run }
            }
        }
        "rollout status" => {
            let service = service_name(spec, args.required("a service")?)?;
            let wait = match args.value("wait") {
                Some(w) => {
                    let d = duration(spec, w)?;
                    if d > MAX_WAIT {
                        return Err(bad(
                            spec,
                            format!(
                                "`--wait` is at most {}",
                                humantime::format_duration(MAX_WAIT)
                            ),
                        ));
                    }
                    Some(d)
                }
                None => None,
            };
            Command::RolloutStatus { service, wait }
        }
        "rollout history" => Command::RolloutHistory {
            service: service_name(spec, args.required("a service")?)?,
        },
        "rollback" => {
            let service = service_name(spec, args.required("a service")?)?;
            let to_revision = match args.value("to-revision") {
                Some(r) => match r.parse::<u32>() {
                    Ok(n) => Some(n),
                    Err(_) => {
                        return Err(bad(
                            spec,
                            format!("`--to-revision` must be a revision number, not `{r}`"),
                        ))
                    }
                },
                None => None,
            };
            Command::Rollback {
                service,
                to_revision: to_revision.filter(|r| *r != 0),
                dry_run: args.switch("dry-run"),
            }
        }
        "set image" => {
            let service = service_name(spec, args.required("a service and an image")?)?;
            let reference = args.required("an image, optionally as <container>=<image>")?;
            let (container, image) = match reference.split_once('=') {
                Some((c, i)) => (
                    Some(name_in(spec, "container name", c.to_string())?),
                    i.to_string(),
                ),
                None => (None, reference),
            };
            if let Err(why) = valid_image_reference(&image) {
                return Err(bad(
                    spec,
                    format!("`{image}` is not a valid image reference: {why}"),
                ));
            }
            Command::SetImage {
                service,
                container,
                image,
                dry_run: args.switch("dry-run"),
            }
        }
        "logs" => {
            let target = target_name(spec, args.required("a service or pod")?)?;
            let tail = match args.value("tail") {
                Some(t) => match t.parse::<u32>() {
                    Ok(n) if (1..=MAX_TAIL).contains(&n) => Some(n),
                    _ => {
                        return Err(bad(
                            spec,
                            format!(
                                "`--tail` must be a whole number from 1 to {MAX_TAIL}, not `{t}`"
                            ),
                        ))
                    }
                },
                None => None,
            };
            let since = match args.value("since") {
                Some(d) => Some(duration(spec, d)?),
                None => None,
            };
            let grep = match args.value("grep") {
                Some(g) => {
                    if let Err(e) = regex::RegexBuilder::new(g).size_limit(1 << 16).build() {
                        let why = e.to_string();
                        let why = why.lines().last().unwrap_or("invalid").trim().to_string();
                        return Err(bad(
                            spec,
                            format!("`--grep {g}` is not a valid regular expression ({why})"),
                        ));
                    }
                    Some(g.to_string())
                }
                None => None,
            };
            let container = match args.value("container") {
                Some(c) => Some(name_in(spec, "container name", c.to_string())?),
                None => None,
            };
            Command::Logs(LogsRequest {
                target,
                container,
                tail,
                since,
                previous: args.switch("previous"),
                grep,
            })
        }
        "pods" => Command::Pods {
            target: target_name(spec, args.required("a service or namespace")?)?,
        },
        "events" => {
            let target = target_name(spec, args.required("a service or namespace")?)?;
            let since = match args.value("since") {
                Some(d) => Some(duration(spec, d)?),
                None => None,
            };
            Command::Events { target, since }
        }
        "hpa" => {
            let service = service_name(spec, args.required("a service")?)?;
            let bound = |name: &str, v: Option<&str>| -> Result<Option<u32>, ParseError> {
                match v {
                    None => Ok(None),
                    Some(v) => match v.parse::<u32>() {
                        Ok(n) if (1..=MAX_REPLICAS).contains(&n) => Ok(Some(n)),
                        _ => Err(bad(spec, format!("`--{name}` must be a whole number from 1 to {MAX_REPLICAS}, not `{v}`"))),
                    },
                }
            };
            let min = bound("min", args.value("min"))?;
            let max = bound("max", args.value("max"))?;
            if let (Some(lo), Some(hi)) = (min, max) {
                if lo > hi {
                    return Err(bad(spec, format!("`--min {lo}` is above `--max {hi}`")));
                }
            }
            let dry_run = args.switch("dry-run");
            if dry_run && min.is_none() && max.is_none() {
                return Err(bad(spec, "`--dry-run` goes with `--min`/`--max`"));
            }
            Command::Hpa {
                service,
                min,
                max,
                dry_run,
            }
        }
        "health" => Command::Health {
            service: service_name(spec, args.required("a service")?)?,
        },
        "diagnose" => Command::Diagnose {
            target: target_name(spec, args.required("a service or pod")?)?,
        },
        "job run" => {
            let cronjob = name_in(spec, "CronJob name", args.required("a CronJob")?)?;
            let name = match args.value("name") {
                Some(n) => Some(name_in(spec, "Job name", n.to_string())?),
                None => None,
            };
            let namespace = match args.value("namespace") {
                Some(n) => Some(name_in(spec, "namespace", n.to_string())?),
                None => None,
            };
            Command::JobRun {
                cronjob,
                name,
                namespace,
                dry_run: args.switch("dry-run"),
            }
        }
        "quarantine" | "unquarantine" => Command::Quarantine {
            pod: target_name(spec, args.required("a pod")?)?,
            on: spec.name == "quarantine",
            dry_run: args.switch("dry-run"),
        },
        "env set" => {
            let service = service_name(spec, args.required("a service and KEY=VALUE pairs")?)?;
            let mut vars: Vec<(String, String)> = Vec::new();
            while let Some(pair) = args.optional() {
                let Some((key, value)) = pair.split_once('=') else {
                    return Err(bad(spec, format!("`{pair}` is not KEY=VALUE")));
                };
                env_key(spec, key)?;
                if vars.iter().any(|(k, _)| k == key) {
                    return Err(bad(spec, format!("`{key}` is set twice")));
                }
                if let Some(why) = looks_like_secret(key, value) {
                    return Err(bad(spec, format!("`{key}` {why}: secrets belong in a Kubernetes Secret (secretKeyRef), never in chat")));
                }
                vars.push((key.to_string(), value.to_string()));
            }
            if vars.is_empty() {
                return Err(ParseError::MissingArgument {
                    verb: spec,
                    what: "at least one KEY=VALUE",
                });
            }
            Command::EnvSet {
                service,
                vars,
                container: match args.value("container") {
                    Some(c) => Some(name_in(spec, "container name", c.to_string())?),
                    None => None,
                },
                dry_run: args.switch("dry-run"),
            }
        }
        "env unset" => {
            let service = service_name(spec, args.required("a service and KEYs")?)?;
            let mut keys: Vec<String> = Vec::new();
            while let Some(key) = args.optional() {
                env_key(spec, &key)?;
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
            if keys.is_empty() {
                return Err(ParseError::MissingArgument {
                    verb: spec,
                    what: "at least one KEY",
                });
            }
            Command::EnvUnset {
                service,
                keys,
                container: match args.value("container") {
                    Some(c) => Some(name_in(spec, "container name", c.to_string())?),
                    None => None,
                },
                dry_run: args.switch("dry-run"),
            }
        }
        "top" => Command::Top {
            target: target_name(spec, args.required("a service or namespace")?)?,
        },
        "status" => Command::Status {
            service: service_name(spec, args.required("a service")?)?,
        },
        "history" => {
            let user = match args.value("user") {
                Some(u) => Some(principal(spec, u)?),
                None => None,
            };
            let service = match args.value("service") {
                Some(s) => Some(service_name(spec, s.to_string())?),
                None => None,
            };
            let since = match args.value("since") {
                Some(s) => Some(duration(spec, s)?),
                None => None,
            };
            let limit = match args.value("limit") {
                Some(l) => match l.parse::<u32>() {
                    Ok(n) if (1..=MAX_HISTORY_LIMIT).contains(&n) => n,
                    _ => {
                        return Err(ParseError::BadLimit {
                            verb: spec,
                            value: l.to_string(),
                            max: MAX_HISTORY_LIMIT,
                        })
                    }
                },
                None => DEFAULT_HISTORY_LIMIT,
            };
            Command::History(HistoryFilter {
                user,
                service,
                since,
                limit,
            })
        }
        "whoami" => Command::Whoami,
        "approve" => Command::Approve {
            id: request_id(spec, args.required("a request id")?)?,
        },
        "deny" => Command::Deny {
            id: request_id(spec, args.required("a request id")?)?,
        },
        other => unreachable!("verb `{other}` is in the spec table but has no builder"),
    };
    args.done()?;
    Ok(command)
}

fn parse_can(spec: &'static VerbSpec, words: &[String]) -> Result<Parsed, ParseError> {
    let Some(who) = words.first() else {
        return Err(ParseError::MissingArgument {
            verb: spec,
            what: "a principal and a command",
        });
    };
    let principal = principal(spec, who)?;
    if words.len() < 2 {
        return Err(ParseError::MissingArgument {
            verb: spec,
            what: "a command to explain",
        });
    }
    let inner = parse_words(&words[1..], false)?;
    Ok(Parsed {
        command: Command::Can {
            principal,
            command: Box::new(inner.command),
        },
        public: inner.public,
    })
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

fn bad(spec: &'static VerbSpec, message: impl Into<String>) -> ParseError {
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
