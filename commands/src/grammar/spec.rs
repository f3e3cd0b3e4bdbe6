//! The table every command is declared in, once.
//!
//! Parsing, `help`, usage lines in error messages, the README's command
//! reference and (later) Slack's usage hint and Discord's application commands
//! are all generated from [`VERBS`], so they cannot drift apart.

/// A flag a verb accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlagSpec {
    /// Without the leading `--`.
    pub name: &'static str,
    /// `None` for a switch, or the value's placeholder (`DURATION`, `N`).
    pub value: Option<&'static str>,
    pub help: &'static str,
}

/// One verb of the command language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerbSpec {
    /// What people type; two words for grouped verbs (`rollout status`).
    pub name: &'static str,
    /// Positional arguments, as shown in usage (`<service> <replicas>`).
    pub args: &'static str,
    pub flags: &'static [FlagSpec],
    pub summary: &'static str,
    pub example: &'static str,
    /// The verb the policy sees; the same as `name` with spaces as dashes.
    pub policy_verb: &'static str,
    /// Whether it changes anything in a cluster.
    pub mutating: bool,
}

impl VerbSpec {
    /// `scale <service> <replicas> [--dry-run]`
    pub fn usage(&self) -> String {
        let mut out = self.name.to_string();
        if !self.args.is_empty() {
            out.push(' ');
            out.push_str(self.args);
        }
        for flag in self.flags {
            if flag.name == PUBLIC.name {
                continue;
            }
            match flag.value {
                Some(v) => out.push_str(&format!(" [--{} {}]", flag.name, v)),
                None => out.push_str(&format!(" [--{}]", flag.name)),
            }
        }
        out
    }

    pub fn flag(&self, name: &str) -> Option<&'static FlagSpec> {
        self.flags.iter().find(|f| f.name == name)
    }
}

/// `--public`: post the reply for the whole channel instead of privately.
pub const PUBLIC: FlagSpec = FlagSpec {
    name: "public",
    value: None,
    help: "show the reply to the whole channel",
};
pub const DRY_RUN: FlagSpec = FlagSpec {
    name: "dry-run",
    value: None,
    help: "ask the API server to validate the change without making it",
};

/// Every verb, in the order `help` lists them.
pub const VERBS: &[VerbSpec] = &[
    VerbSpec {
        name: "help",
        args: "[verb]",
        flags: &[PUBLIC],
        summary: "List the commands, or show one command's usage and example.",
        example: "help scale",
        policy_verb: "help",
        mutating: false,
    },
    VerbSpec {
        name: "scale",
        args: "<service> <replicas>",
        flags: &[DRY_RUN, PUBLIC],
        summary: "Set a service's replica count (within the catalog's min and max).",
        example: "scale backend 5",
        policy_verb: "scale",
        mutating: true,
    },
    VerbSpec {
        name: "restart",
        args: "<service>",
        flags: &[DRY_RUN, PUBLIC],
        summary: "Rolling restart of a service, like `kubectl rollout restart`.",
        example: "restart notification-service",
        policy_verb: "restart",
        mutating: true,
    },
    VerbSpec {
        name: "status",
        args: "<service>",
        flags: &[PUBLIC],
        summary: "A service's deployment, rollout status and pods.",
        example: "status backend",
        policy_verb: "status",
        mutating: false,
    },
    VerbSpec {
        name: "history",
        args: "",
        flags: &[
            FlagSpec {
                name: "user",
                value: Some("PRINCIPAL"),
                help: "only this principal's commands",
            },
            FlagSpec {
                name: "service",
                value: Some("SERVICE"),
                help: "only commands on this service",
            },
            FlagSpec {
                name: "since",
                value: Some("DURATION"),
                help: "only this recent (humantime: 2h, 1d 6h)",
            },
            FlagSpec {
                name: "limit",
                value: Some("N"),
                help: "at most N rows (1-100, default 20)",
            },
            PUBLIC,
        ],
        summary: "Recent commands, newest first, with who ran them and the outcome.",
        example: "history --service backend --since 2h",
        policy_verb: "history",
        mutating: false,
    },
    VerbSpec {
        name: "whoami",
        args: "",
        flags: &[PUBLIC],
        summary: "Your principal, the groups you were seen with, and your roles.",
        example: "whoami",
        policy_verb: "whoami",
        mutating: false,
    },
    VerbSpec {
        name: "can",
        args: "<principal> <command…>",
        flags: &[],
        summary: "Explain whether a principal may run a command here, without running it.",
        example: "can cli:viewer scale backend 5",
        policy_verb: "can",
        mutating: false,
    },
    VerbSpec {
        name: "approve",
        args: "<id>",
        flags: &[PUBLIC],
        summary: "Approve someone else's pending request; it runs exactly as requested.",
        example: "approve k3f9qa",
        policy_verb: "approve",
        mutating: true,
    },
    VerbSpec {
        name: "deny",
        args: "<id>",
        flags: &[PUBLIC],
        summary: "Drop a pending request.",
        example: "deny k3f9qa",
        policy_verb: "deny",
        mutating: false,
    },
];

/// Looks a verb up by the words it starts with; returns it and how many words
/// its name used.
pub fn lookup(words: &[String]) -> Option<(&'static VerbSpec, usize)> {
    let first = words.first()?.to_ascii_lowercase();
    if let Some(second) = words.get(1) {
        let two = format!("{first} {}", second.to_ascii_lowercase());
        if let Some(spec) = VERBS.iter().find(|v| v.name == two) {
            return Some((spec, 2));
        }
    }
    VERBS.iter().find(|v| v.name == first).map(|s| (s, 1))
}

pub fn find(name: &str) -> Option<&'static VerbSpec> {
    VERBS.iter().find(|v| v.name == name)
}

/// The policy verbs, for validating a policy file.
pub fn policy_verbs() -> Vec<&'static str> {
    let mut verbs: Vec<&'static str> = VERBS.iter().map(|v| v.policy_verb).collect();
    verbs.extend(EXTRA_POLICY_VERBS);
    verbs.sort_unstable();
    verbs.dedup();
    verbs
}

/// Permissions that are not commands of their own: `force` lets a scale go
/// past an autoscaler's maximum.
pub const EXTRA_POLICY_VERBS: &[&str] = &["force"];

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
