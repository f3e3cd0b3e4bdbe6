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
    /// A one-letter alias (`-n`), if any.
    pub short: Option<char>,
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
            if self.args.contains(&format!("--{}", flag.name))
                || (flag.short.is_some() && self.args.contains(" -n "))
            {
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

    pub fn short_flag(&self, c: char) -> Option<&'static FlagSpec> {
        self.flags.iter().find(|f| f.short == Some(c))
    }
}

/// `--public`: post the reply for the whole channel instead of privately.
pub const PUBLIC: FlagSpec = switch("public", "show the reply to the whole channel");
pub const DRY_RUN: FlagSpec = switch(
    "dry-run",
    "ask the API server to validate the change without making it",
);

const fn switch(name: &'static str, help: &'static str) -> FlagSpec {
    FlagSpec {
        name,
        value: None,
        help,
        short: None,
    }
}

const fn valued(name: &'static str, value: &'static str, help: &'static str) -> FlagSpec {
    FlagSpec {
        name,
        value: Some(value),
        help,
        short: None,
    }
}

const NAMESPACE: FlagSpec = FlagSpec {
    name: "namespace",
    value: Some("NAMESPACE"),
    help: "the namespace",
    short: Some('n'),
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
        flags: &[
            DRY_RUN,
            switch("force", "go above the autoscaler's maximum (needs the `force` permission)"),
            PUBLIC,
        ],
        summary: "Set a service's replica count (within the catalog's bounds and the autoscaler's maximum).",
        example: "scale backend 5",
        policy_verb: "scale",
        mutating: true,
    },
    VerbSpec {
        name: "restart",
        args: "<service>… | --all -n <namespace>",
        flags: &[
            switch("all", "every deployment in the namespace given with -n"),
            NAMESPACE,
            DRY_RUN,
            PUBLIC,
        ],
        summary: "Rolling restart of one or more services, like `kubectl rollout restart`.",
        example: "restart backend recurring-task-service",
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
        name: "rollout status",
        args: "<service>",
        flags: &[
            valued("wait", "DURATION", "follow the rollout until it completes, fails or this time passes (max 30m)"),
            PUBLIC,
        ],
        summary: "kubectl's rollout status; with --wait, follow it to the end.",
        example: "rollout status backend --wait 5m",
        policy_verb: "rollout-status",
        mutating: false,
    },
    VerbSpec {
        name: "rollout history",
        args: "<service>",
        flags: &[PUBLIC],
        summary: "Revisions of a service with change cause, images and age.",
        example: "rollout history oauth2-server",
        policy_verb: "rollout-history",
        mutating: false,
    },
    VerbSpec {
        name: "rollback",
        args: "<service>",
        flags: &[
            valued("to-revision", "N", "the revision to go back to (default: the previous one)"),
            DRY_RUN,
            PUBLIC,
        ],
        summary: "Roll a service back to a previous revision, exactly like `kubectl rollout undo`.",
        example: "rollback oauth2-server --to-revision 3",
        policy_verb: "rollback",
        mutating: true,
    },
    VerbSpec {
        name: "set image",
        args: "<service> [<container>=]<image>",
        flags: &[DRY_RUN, PUBLIC],
        summary: "Deploy another image (the container name may be omitted when there is one).",
        example: "set image dev-utilities ghcr.io/example/dev-utilities:2.4.0",
        policy_verb: "set-image",
        mutating: true,
    },
    VerbSpec {
        name: "logs",
        args: "<service|pod>",
        flags: &[
            valued("container", "NAME", "the container (default: the one named like the service)"),
            valued("tail", "N", "last N lines per pod (default 100, max 1000)"),
            valued("since", "DURATION", "only lines this recent"),
            switch("previous", "the previous, crashed instance"),
            valued("grep", "REGEX", "only lines matching (applied after secrets are redacted)"),
            PUBLIC,
        ],
        summary: "Recent logs across a service's pods, each line prefixed by its pod; secrets redacted.",
        example: "logs backend --since 10m --grep ERROR",
        policy_verb: "logs",
        mutating: false,
    },
    VerbSpec {
        name: "pods",
        args: "<service|namespace>",
        flags: &[PUBLIC],
        summary: "kubectl's pod table for a service or a whole namespace.",
        example: "pods vibe-ensemble",
        policy_verb: "pods",
        mutating: false,
    },
    VerbSpec {
        name: "events",
        args: "<service|namespace>",
        flags: &[valued("since", "DURATION", "how far back (default 1h)"), PUBLIC],
        summary: "Recent events, warnings first, newest first.",
        example: "events oauth2-server --since 30m",
        policy_verb: "events",
        mutating: false,
    },
    VerbSpec {
        name: "hpa",
        args: "<service>",
        flags: &[
            valued("min", "N", "set the autoscaler's minimum replicas"),
            valued("max", "N", "set the autoscaler's maximum replicas"),
            DRY_RUN,
            PUBLIC,
        ],
        summary: "Show a service's autoscaler, or change its bounds with --min/--max.",
        example: "hpa oauth2-server --min 3 --max 10",
        policy_verb: "hpa",
        mutating: false,
    },
    VerbSpec {
        name: "health",
        args: "<service>",
        flags: &[PUBLIC],
        summary: "Probe the service's health URLs: status, latency and dependencies.",
        example: "health brownie-metadata-api",
        policy_verb: "health",
        mutating: false,
    },
    VerbSpec {
        name: "diagnose",
        args: "<service|pod>",
        flags: &[PUBLIC],
        summary: "Why pods are not running: a verdict, container states, warnings, crash logs.",
        example: "diagnose oauth2-server",
        policy_verb: "diagnose",
        mutating: false,
    },
    VerbSpec {
        name: "job run",
        args: "<cronjob>",
        flags: &[
            valued("name", "NAME", "the Job's name (default: <cronjob>-manual-<time>)"),
            NAMESPACE,
            DRY_RUN,
            PUBLIC,
        ],
        summary: "Run a CronJob now, like `kubectl create job --from=cronjob/…`, and report progress.",
        example: "job run postgres-backup -n vibe-ensemble",
        policy_verb: "job-run",
        mutating: true,
    },
    VerbSpec {
        name: "quarantine",
        args: "<pod>",
        flags: &[DRY_RUN, PUBLIC],
        summary: "Label a pod quarantine=true so it leaves its Service's endpoints (kept for forensics).",
        example: "quarantine vibe-ensemble-server-7d4b9c-x2x9k",
        policy_verb: "quarantine",
        mutating: true,
    },
    VerbSpec {
        name: "unquarantine",
        args: "<pod>",
        flags: &[DRY_RUN, PUBLIC],
        summary: "Remove the quarantine label from a pod.",
        example: "unquarantine vibe-ensemble-server-7d4b9c-x2x9k",
        policy_verb: "quarantine",
        mutating: true,
    },
    VerbSpec {
        name: "env set",
        args: "<service> KEY=VALUE…",
        flags: &[valued("container", "NAME", "the container (default: the one named like the service)"), DRY_RUN, PUBLIC],
        summary: "Set environment variables (a rolling restart follows); secrets are refused.",
        example: "env set backend DB_POOL_SIZE=30 DB_MAX_OVERFLOW=20",
        policy_verb: "env",
        mutating: true,
    },
    VerbSpec {
        name: "env unset",
        args: "<service> KEY…",
        flags: &[valued("container", "NAME", "the container (default: the one named like the service)"), DRY_RUN, PUBLIC],
        summary: "Remove environment variables (a rolling restart follows).",
        example: "env unset backend DB_MAX_OVERFLOW",
        policy_verb: "env",
        mutating: true,
    },
    VerbSpec {
        name: "top",
        args: "<service|namespace>",
        flags: &[PUBLIC],
        summary: "CPU and memory per pod, from metrics-server.",
        example: "top oauth2-server",
        policy_verb: "top",
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
                short: None,
            },
            FlagSpec {
                name: "service",
                value: Some("SERVICE"),
                help: "only commands on this service",
                short: None,
            },
            FlagSpec {
                name: "since",
                value: Some("DURATION"),
                help: "only this recent (humantime: 2h, 1d 6h)",
                short: None,
            },
            FlagSpec {
                name: "limit",
                value: Some("N"),
                help: "at most N rows (1-100, default 20)",
                short: None,
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
/// past an autoscaler's maximum; `hpa-set` changes autoscaler bounds (`hpa`
/// alone only reads).
pub const EXTRA_POLICY_VERBS: &[&str] = &["force", "hpa-set"];

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
