//! The parser proper: words → [`Parsed`], guided by the spec table.

use std::collections::BTreeMap;
use std::time::Duration;

use super::spec::{self, VerbSpec, VERBS};
use super::tokenize::tokenize;
use super::{
    closest, Command, HistoryFilter, ParseError, Parsed, DEFAULT_HISTORY_LIMIT, MAX_HISTORY_LIMIT,
    MAX_REPLICAS, MAX_TEXT_LEN,
};

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
            }
        }
        "restart" => Command::Restart {
            service: service_name(spec, args.required("a service")?)?,
            dry_run: args.switch("dry-run"),
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
