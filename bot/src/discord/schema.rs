//! `/oncall` as a Discord application command, generated from the grammar.
//!
//! Each verb is a subcommand (two-word verbs such as `rollout status` are a
//! subcommand group and a subcommand). Positional arguments become typed
//! options (services autocomplete from the catalog, replicas are integers
//! with bounds); every flag of the verb's spec becomes an option too
//! (switches are booleans, `N` values integers, the rest strings). So the
//! registered commands can never drift from `help`.
//!
//! An invocation's options are turned back into command text
//! ([`options_to_text`]) and parsed by the same grammar as Slack and the
//! console, so both paths produce the same typed `Command`.

use oncall_grammar::spec::{ArgKind, ArgSpec, FlagSpec, VerbSpec, VERBS};
use serde_json::{json, Value};
use serenity::all::{CommandOptionType, CreateCommand, CreateCommandOption};

/// Whether an argument's value is several words inserted as they are
/// (`KEY=VALUE KEY2=VALUE2`, or a whole command for `can`).
fn multi_word(arg: &ArgSpec) -> bool {
    arg.many || arg.kind == ArgKind::Command
}

/// A typed option for a value of `kind`.
fn typed_option(kind: Option<ArgKind>, name: &str, description: &str) -> CreateCommandOption {
    let description = describe(description);
    match kind {
        None => CreateCommandOption::new(CommandOptionType::Boolean, name, description),
        Some(k) if k.is_integer() => {
            let o = CreateCommandOption::new(CommandOptionType::Integer, name, description);
            match k.bounds() {
                Some((min, max)) => o.min_int_value(min as u64).max_int_value(max as u64),
                None => o,
            }
        }
        Some(k) => CreateCommandOption::new(CommandOptionType::String, name, description)
            .set_autocomplete(k.from_catalog()),
    }
}

/// Discord allows at most 100 characters of description.
fn describe(s: &str) -> String {
    if s.chars().count() <= 100 {
        s.to_string()
    } else {
        let mut c: String = s.chars().take(99).collect();
        c.push('…');
        c
    }
}

/// The options of one verb's subcommand: required first, as Discord demands.
fn subcommand(verb: &VerbSpec, leaf_name: &str) -> CreateCommandOption {
    let mut sub = CreateCommandOption::new(
        CommandOptionType::SubCommand,
        leaf_name,
        describe(verb.summary),
    );
    let mut all: Vec<CreateCommandOption> = Vec::new();
    let mut optional: Vec<CreateCommandOption> = Vec::new();
    for arg in verb.args {
        let kind = if multi_word(arg) {
            ArgKind::Name("words")
        } else {
            arg.kind
        };
        let o = typed_option(Some(kind), arg.name, arg.help);
        let o = if arg.many && arg.kind.from_catalog() {
            o.set_autocomplete(true)
        } else {
            o
        };
        if arg.required {
            all.push(o.required(true));
        } else {
            optional.push(o.required(false));
        }
    }
    for flag in verb.flags {
        optional.push(typed_option(flag.kind, flag.name, flag.help).required(false));
    }
    all.extend(optional);
    for o in all {
        sub = sub.add_sub_option(o);
    }
    sub
}

/// One-word verbs Discord shows in a group, as (verb, group, subcommand):
/// Discord allows 25 options at the top of a command, so the paging verbs
/// share the `page` group there (`/oncall page who`) and `alerts` sits in
/// the `incident` group, while their text stays `who`, `escalate 12`,
/// `alerts`, … everywhere else.
const REGROUPED: &[(&str, &str, &str)] = &[
    ("escalate", "page", "escalate"),
    ("page", "page", "send"),
    ("who", "page", "who"),
    ("schedule", "page", "schedule"),
    ("override", "page", "override"),
    ("alerts", "incident", "alerts"),
    ("alerts run", "incident", "respond"),
    ("silence", "incident", "silence"),
    ("unsilence", "incident", "unsilence"),
];

/// Where a verb sits in the Discord command: (group, subcommand).
pub fn discord_path(verb: &str) -> (Option<&str>, &str) {
    if let Some((_, group, leaf)) = REGROUPED.iter().find(|(v, _, _)| *v == verb) {
        return (Some(group), leaf);
    }
    match verb.split_once(' ') {
        Some((group, leaf)) => (Some(group), leaf),
        None => (None, verb),
    }
}

/// The verb at a Discord group and subcommand.
fn verb_at(group: &str, leaf: &str) -> String {
    match REGROUPED.iter().find(|(_, g, l)| *g == group && *l == leaf) {
        Some((verb, _, _)) => verb.to_string(),
        None => format!("{group} {leaf}"),
    }
}

/// The `/oncall` command definition, as Discord's bulk-overwrite takes it.
pub fn oncall_command() -> CreateCommand {
    let mut cmd = CreateCommand::new("oncall")
        .description("Operate services safely: scale, restart, roll back, logs, health, approvals");
    // Two-word verbs become a group of subcommands, in the spec's order.
    let mut groups: Vec<(&str, Vec<CreateCommandOption>)> = Vec::new();
    for verb in VERBS {
        match discord_path(verb.name) {
            (None, leaf) => cmd = cmd.add_option(subcommand(verb, leaf)),
            (Some(group), leaf) => match groups.iter_mut().find(|(g, _)| *g == group) {
                Some((_, leaves)) => leaves.push(subcommand(verb, leaf)),
                None => groups.push((group, vec![subcommand(verb, leaf)])),
            },
        }
    }
    for (group, leaves) in groups {
        let mut g = CreateCommandOption::new(
            CommandOptionType::SubCommandGroup,
            group,
            describe(&format!("{group} commands")),
        );
        for leaf in leaves {
            g = g.add_sub_option(leaf);
        }
        cmd = cmd.add_option(g);
    }
    cmd
}

/// The JSON of the definition.
pub fn oncall_command_json() -> Value {
    serde_json::to_value(oncall_command()).expect("command definitions serialize")
}

/// The message command that adds a message to its incident's timeline.
pub const ADD_TO_TIMELINE: &str = "Add to timeline";

/// Every command oncall registers: `/oncall` and the message command.
pub fn all_commands_json() -> Value {
    json!([oncall_command_json(), { "name": ADD_TO_TIMELINE, "type": 3 }])
}

/// Finds the invoked verb and its options in an interaction's `data`.
/// Returns (verb name, options of the leaf subcommand).
pub fn invoked(data: &Value) -> Option<(String, Vec<Value>)> {
    let first = data["options"].as_array()?.first()?.clone();
    match first["type"].as_u64()? {
        1 => Some((
            first["name"].as_str()?.to_string(),
            first["options"].as_array().cloned().unwrap_or_default(),
        )),
        2 => {
            let leaf = first["options"].as_array()?.first()?.clone();
            Some((
                verb_at(first["name"].as_str()?, leaf["name"].as_str()?),
                leaf["options"].as_array().cloned().unwrap_or_default(),
            ))
        }
        _ => None,
    }
}

fn quote(s: &str) -> String {
    if !s.is_empty()
        && !s
            .chars()
            .any(|c| c.is_whitespace() || c == '\'' || c == '"')
    {
        s.to_string()
    } else if !s.contains('\'') {
        format!("'{s}'")
    } else {
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => other.to_string(),
    }
}

/// What an option of a verb is: a positional argument or a flag.
pub enum OptionOf {
    Arg(&'static ArgSpec),
    Flag(&'static FlagSpec),
}

/// Looks an option of a verb up by name.
pub fn option_of(verb: &str, name: &str) -> Option<OptionOf> {
    let spec = VERBS.iter().find(|v| v.name == verb)?;
    spec.arg(name)
        .map(OptionOf::Arg)
        .or_else(|| spec.flag(name).map(OptionOf::Flag))
}

/// The command text an invocation means: the verb, the positional values in
/// order, then the flags.
pub fn options_to_text(verb: &str, options: &[Value]) -> Option<String> {
    let spec = VERBS.iter().find(|v| v.name == verb)?;
    let get = |name: &str| {
        options
            .iter()
            .find(|o| o["name"] == name)
            .map(|o| &o["value"])
    };
    let mut parts = vec![verb.to_string()];
    for arg in spec.args {
        if let Some(v) = get(arg.name) {
            let text = value_text(v);
            parts.push(if multi_word(arg) { text } else { quote(&text) });
        }
    }
    for flag in spec.flags {
        match (flag.kind, get(flag.name)) {
            (None, Some(Value::Bool(true))) => parts.push(format!("--{}", flag.name)),
            (Some(_), Some(v)) => parts.push(format!("--{} {}", flag.name, quote(&value_text(v)))),
            _ => {}
        }
    }
    Some(parts.join(" "))
}

/// The focused option of an autocomplete interaction: (option name, typed text).
pub fn focused(options: &[Value]) -> Option<(String, String)> {
    options.iter().find(|o| o["focused"] == true).map(|o| {
        (
            o["name"].as_str().unwrap_or("").to_string(),
            value_text(&o["value"]),
        )
    })
}

/// Up to 25 autocomplete choices: names starting with the typed text first,
/// then names containing it.
pub fn choices(candidates: &[String], typed: &str) -> Value {
    let typed = typed.to_lowercase();
    let mut starts: Vec<&String> = candidates
        .iter()
        .filter(|c| c.starts_with(&typed))
        .collect();
    let contains: Vec<&String> = candidates
        .iter()
        .filter(|c| !c.starts_with(&typed) && c.contains(&typed))
        .collect();
    starts.extend(contains);
    let list: Vec<Value> = starts
        .into_iter()
        .take(25)
        .map(|c| json!({ "name": c, "value": c }))
        .collect();
    json!({ "type": 8, "data": { "choices": list } })
}
