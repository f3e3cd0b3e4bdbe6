//! Every verb, declared once: its typed command, its [`VerbSpec`] (arguments,
//! flags, policy verb, whether it mutates) and its build function.
//!
//! To add a verb: write its command type (with [`Verb::values`], the values
//! its canonical text is made of), its spec with a build function, add the
//! spec to [`VERBS`] and the type to the `commands!` list at the bottom.
//! The parser, `help`, the usage lines, the README reference, Slack's hint,
//! Discord's options, the command's scope and its canonical text all follow.
//! The bot then fails to compile until the type has a handler.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::parse::{bad, MAX_WAIT};
use crate::spec::{
    arg, switch, valued, ArgKind, ArgSpec, FlagSpec, Gate, Mutates, Value, Values, VerbSpec,
    CONTAINER, DRY_RUN, NAMESPACE, PUBLIC, SERVICE,
};
use crate::{opt_duration_secs, ParseError, DEFAULT_HISTORY_LIMIT, MAX_HISTORY_LIMIT};

/// A verb's typed command: the values its canonical text is made of.
pub trait Verb {
    fn values(&self) -> Values;
}

/// Every verb, in the order `help` lists them.
pub static VERBS: &[&VerbSpec] = &[
    &HELP,
    &SCALE,
    &RESTART,
    &STATUS,
    &ROLLOUT_STATUS,
    &ROLLOUT_HISTORY,
    &ROLLBACK,
    &SET_IMAGE,
    &LOGS,
    &PODS,
    &EVENTS,
    &HPA,
    &HEALTH,
    &DIAGNOSE,
    &JOB_RUN,
    &QUARANTINE,
    &UNQUARANTINE,
    &ENV_SET,
    &ENV_UNSET,
    &TOP,
    &HISTORY,
    &WHOAMI,
    &CAN,
    &APPROVE,
    &DENY,
    &crate::incidents::INCIDENT_DECLARE,
    &crate::incidents::INCIDENT_ACK,
    &crate::incidents::INCIDENT_STATUS,
    &crate::incidents::INCIDENT_UPDATE,
    &crate::incidents::INCIDENT_SEV,
    &crate::incidents::INCIDENT_ASSIGN,
    &crate::incidents::INCIDENT_NOTE,
    &crate::incidents::INCIDENT_RESOLVE,
    &crate::incidents::INCIDENT_REOPEN,
    &crate::incidents::INCIDENT_LIST,
    &crate::incidents::INCIDENT_SHOW,
    &crate::incidents::INCIDENT_TIMELINE,
    &crate::incidents::INCIDENT_POSTMORTEM,
    &crate::paging::ESCALATE,
    &crate::paging::PAGE,
    &crate::paging::WHO,
    &crate::paging::SCHEDULE_SHOW,
    &crate::paging::OVERRIDE,
    &crate::alerts::ALERTS,
    &crate::alerts::ALERTS_RUN,
    &crate::alerts::SILENCE,
    &crate::alerts::UNSILENCE,
];

pub(crate) const fn read(
    name: &'static str,
    policy_verb: &'static str,
    args: &'static [ArgSpec],
    flags: &'static [FlagSpec],
    summary: &'static str,
    example: &'static str,
    build: crate::spec::BuildFn,
) -> VerbSpec {
    VerbSpec {
        name,
        args,
        flags,
        summary,
        example,
        policy_verb,
        mutates: Mutates::Never,
        gate: Gate::Policy,
        build,
    }
}

pub(crate) const fn write(
    name: &'static str,
    policy_verb: &'static str,
    args: &'static [ArgSpec],
    flags: &'static [FlagSpec],
    summary: &'static str,
    example: &'static str,
    build: crate::spec::BuildFn,
) -> VerbSpec {
    VerbSpec {
        mutates: Mutates::Always,
        ..read(name, policy_verb, args, flags, summary, example, build)
    }
}

// ---------------------------------------------------------------- help

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Help {
    pub verb: Option<String>,
}

pub static HELP: VerbSpec = VerbSpec {
    gate: Gate::Handler,
    ..read(
        "help",
        "help",
        &[ArgSpec {
            required: false,
            many: true,
            ..arg(
                "verb",
                ArgKind::Verb,
                "[verb]",
                "a verb",
                "A command to explain",
            )
        }],
        &[PUBLIC],
        "List the commands, or show one command's usage and example.",
        "help scale",
        |v| {
            Ok(Help {
                verb: v.opt_text("verb"),
            }
            .into())
        },
    )
};

impl Verb for Help {
    fn values(&self) -> Values {
        Values::new(&HELP).put_opt_text("verb", self.verb.as_deref())
    }
}

// ---------------------------------------------------------------- scale

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scale {
    pub service: String,
    pub replicas: u32,
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default)]
    pub force: bool,
}

pub static SCALE: VerbSpec = write(
    "scale",
    "scale",
    &[
        arg(
            "service",
            ArgKind::Service,
            "<service>",
            "a service and a replica count",
            "The service, from the catalog",
        ),
        arg(
            "replicas",
            ArgKind::Replicas,
            "<replicas>",
            "a replica count",
            "How many replicas",
        ),
    ],
    &[
        DRY_RUN,
        switch(
            "force",
            "go above the autoscaler's maximum (needs the `force` permission)",
        ),
        PUBLIC,
    ],
    "Set a service's replica count (within the catalog's bounds and the autoscaler's maximum).",
    "scale backend 5",
    |v| {
        Ok(Scale {
            service: v.text("service")?,
            replicas: v.int("replicas")?,
            dry_run: v.switch("dry-run"),
            force: v.switch("force"),
        }
        .into())
    },
);

impl Verb for Scale {
    fn values(&self) -> Values {
        Values::new(&SCALE)
            .put_text("service", &self.service)
            .put_int("replicas", self.replicas)
            .put_switch("dry-run", self.dry_run)
            .put_switch("force", self.force)
    }
}

// ---------------------------------------------------------------- restart

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restart {
    pub services: Vec<String>,
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartAll {
    pub namespace: String,
    #[serde(default)]
    pub dry_run: bool,
}

/// The most services one `restart` names.
pub const MAX_RESTART_SERVICES: usize = 20;

pub static RESTART: VerbSpec = write(
    "restart",
    "restart",
    &[ArgSpec {
        required: false,
        many: true,
        ..arg(
            "services",
            ArgKind::Service,
            "<service>… | --all -n <namespace>",
            "a service (or --all -n <namespace>)",
            "One or more services, separated by spaces",
        )
    }],
    &[
        switch("all", "every deployment in the namespace given with -n"),
        NAMESPACE,
        DRY_RUN,
        PUBLIC,
    ],
    "Rolling restart of one or more services, like `kubectl rollout restart`.",
    "restart backend recurring-task-service",
    build_restart,
);

fn build_restart(v: &mut Values) -> Result<crate::Command, ParseError> {
    let spec = v.spec;
    let dry_run = v.switch("dry-run");
    let namespace = v.opt_text("namespace");
    let services = v.all_text("services");
    if v.switch("all") {
        let Some(namespace) = namespace else {
            return Err(bad(
                spec,
                "`restart --all` needs the namespace: `-n <namespace>`",
            ));
        };
        if let Some(extra) = services.first() {
            return Err(bad(
                spec,
                format!("name services or use --all, not both (`{extra}`)"),
            ));
        }
        return Ok(RestartAll { namespace, dry_run }.into());
    }
    if namespace.is_some() {
        return Err(bad(
            spec,
            "`-n` goes with `--all`; services are found through the catalog",
        ));
    }
    if services.is_empty() {
        return Err(ParseError::MissingArgument {
            verb: spec,
            what: RESTART.args[0].missing,
        });
    }
    for (i, s) in services.iter().enumerate() {
        if services[..i].contains(s) {
            return Err(bad(spec, format!("`{s}` is named twice")));
        }
    }
    if services.len() > MAX_RESTART_SERVICES {
        return Err(bad(
            spec,
            "at most 20 services at once; use --all -n <namespace> for a whole namespace",
        ));
    }
    Ok(Restart { services, dry_run }.into())
}

impl Verb for Restart {
    fn values(&self) -> Values {
        Values::new(&RESTART)
            .put_all_text("services", &self.services)
            .put_switch("dry-run", self.dry_run)
    }
}

impl Verb for RestartAll {
    fn values(&self) -> Values {
        Values::new(&RESTART)
            .put_switch("all", true)
            .put_text("namespace", &self.namespace)
            .put_switch("dry-run", self.dry_run)
    }
}

// ---------------------------------------------------------------- status

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub service: String,
}

pub static STATUS: VerbSpec = read(
    "status",
    "status",
    &[SERVICE],
    &[PUBLIC],
    "A service's deployment, rollout status and pods.",
    "status backend",
    |v| {
        Ok(Status {
            service: v.text("service")?,
        }
        .into())
    },
);

impl Verb for Status {
    fn values(&self) -> Values {
        Values::new(&STATUS).put_text("service", &self.service)
    }
}

// ---------------------------------------------------------------- rollout

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutStatus {
    pub service: String,
    #[serde(with = "opt_duration_secs")]
    pub wait: Option<Duration>,
}

pub static ROLLOUT_STATUS: VerbSpec = read(
    "rollout status",
    "rollout-status",
    &[SERVICE],
    &[
        valued(
            "wait",
            ArgKind::Duration {
                max: Some(MAX_WAIT),
            },
            "DURATION",
            "follow the rollout until it completes, fails or this time passes (max 30m)",
        ),
        PUBLIC,
    ],
    "kubectl's rollout status; with --wait, follow it to the end.",
    "rollout status backend --wait 5m",
    |v| {
        Ok(RolloutStatus {
            service: v.text("service")?,
            wait: v.opt_duration("wait"),
        }
        .into())
    },
);

impl Verb for RolloutStatus {
    fn values(&self) -> Values {
        Values::new(&ROLLOUT_STATUS)
            .put_text("service", &self.service)
            .put_duration("wait", self.wait)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutHistory {
    pub service: String,
}

pub static ROLLOUT_HISTORY: VerbSpec = read(
    "rollout history",
    "rollout-history",
    &[SERVICE],
    &[PUBLIC],
    "Revisions of a service with change cause, images and age.",
    "rollout history oauth2-server",
    |v| {
        Ok(RolloutHistory {
            service: v.text("service")?,
        }
        .into())
    },
);

impl Verb for RolloutHistory {
    fn values(&self) -> Values {
        Values::new(&ROLLOUT_HISTORY).put_text("service", &self.service)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollback {
    pub service: String,
    pub to_revision: Option<u32>,
    #[serde(default)]
    pub dry_run: bool,
}

pub static ROLLBACK: VerbSpec = write(
    "rollback",
    "rollback",
    &[SERVICE],
    &[
        valued(
            "to-revision",
            ArgKind::Revision,
            "N",
            "the revision to go back to (default: the previous one)",
        ),
        DRY_RUN,
        PUBLIC,
    ],
    "Roll a service back to a previous revision, exactly like `kubectl rollout undo`.",
    "rollback oauth2-server --to-revision 3",
    |v| {
        Ok(Rollback {
            service: v.text("service")?,
            to_revision: v.opt_int("to-revision").filter(|r| *r != 0),
            dry_run: v.switch("dry-run"),
        }
        .into())
    },
);

impl Verb for Rollback {
    fn values(&self) -> Values {
        Values::new(&ROLLBACK)
            .put_text("service", &self.service)
            .put_opt_int("to-revision", self.to_revision)
            .put_switch("dry-run", self.dry_run)
    }
}

// ---------------------------------------------------------------- set image

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetImage {
    pub service: String,
    pub container: Option<String>,
    pub image: String,
    #[serde(default)]
    pub dry_run: bool,
}

pub static SET_IMAGE: VerbSpec = write(
    "set image",
    "set-image",
    &[
        arg(
            "service",
            ArgKind::Service,
            "<service>",
            "a service and an image",
            "The service, from the catalog",
        ),
        arg(
            "image",
            ArgKind::Image,
            "[<container>=]<image>",
            "an image, optionally as <container>=<image>",
            "The image, or container=image",
        ),
    ],
    &[DRY_RUN, PUBLIC],
    "Deploy another image (the container name may be omitted when there is one).",
    "set image dev-utilities ghcr.io/example/dev-utilities:2.4.0",
    |v| {
        let service = v.text("service")?;
        let (container, image) = v.image("image")?;
        Ok(SetImage {
            service,
            container,
            image,
            dry_run: v.switch("dry-run"),
        }
        .into())
    },
);

impl Verb for SetImage {
    fn values(&self) -> Values {
        Values::new(&SET_IMAGE)
            .put_text("service", &self.service)
            .put(
                "image",
                Value::Image {
                    container: self.container.clone(),
                    image: self.image.clone(),
                },
            )
            .put_switch("dry-run", self.dry_run)
    }
}

// ---------------------------------------------------------------- logs

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

/// The most log lines per pod.
pub const MAX_TAIL: u32 = 1000;

const SERVICE_OR_POD: ArgSpec = arg(
    "target",
    ArgKind::ServiceOrPod,
    "<service|pod>",
    "a service or pod",
    "A service or one of its pods",
);

const SERVICE_OR_NAMESPACE: ArgSpec = arg(
    "target",
    ArgKind::ServiceOrNamespace,
    "<service|namespace>",
    "a service or namespace",
    "A service or a namespace",
);

pub static LOGS: VerbSpec = read(
    "logs",
    "logs",
    &[SERVICE_OR_POD],
    &[
        CONTAINER,
        valued(
            "tail",
            ArgKind::Number {
                min: 1,
                max: MAX_TAIL,
            },
            "N",
            "last N lines per pod (default 100, max 1000)",
        ),
        valued(
            "since",
            ArgKind::Duration { max: None },
            "DURATION",
            "only lines this recent",
        ),
        switch("previous", "the previous, crashed instance"),
        valued(
            "grep",
            ArgKind::Regex,
            "REGEX",
            "only lines matching (applied after secrets are redacted)",
        ),
        PUBLIC,
    ],
    "Recent logs across a service's pods, each line prefixed by its pod; secrets redacted.",
    "logs backend --since 10m --grep ERROR",
    |v| {
        Ok(LogsRequest {
            target: v.text("target")?,
            container: v.opt_text("container"),
            tail: v.opt_int("tail"),
            since: v.opt_duration("since"),
            previous: v.switch("previous"),
            grep: v.opt_text("grep"),
        }
        .into())
    },
);

impl Verb for LogsRequest {
    fn values(&self) -> Values {
        Values::new(&LOGS)
            .put_text("target", &self.target)
            .put_opt_text("container", self.container.as_deref())
            .put_opt_int("tail", self.tail)
            .put_duration("since", self.since)
            .put_switch("previous", self.previous)
            .put_opt_text("grep", self.grep.as_deref())
    }
}

// ---------------------------------------------------------------- pods, events

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pods {
    pub target: String,
}

pub static PODS: VerbSpec = read(
    "pods",
    "pods",
    &[SERVICE_OR_NAMESPACE],
    &[PUBLIC],
    "kubectl's pod table for a service or a whole namespace.",
    "pods vibe-ensemble",
    |v| {
        Ok(Pods {
            target: v.text("target")?,
        }
        .into())
    },
);

impl Verb for Pods {
    fn values(&self) -> Values {
        Values::new(&PODS).put_text("target", &self.target)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Events {
    pub target: String,
    #[serde(with = "opt_duration_secs")]
    pub since: Option<Duration>,
}

pub static EVENTS: VerbSpec = read(
    "events",
    "events",
    &[SERVICE_OR_NAMESPACE],
    &[
        valued(
            "since",
            ArgKind::Duration { max: None },
            "DURATION",
            "how far back (default 1h)",
        ),
        PUBLIC,
    ],
    "Recent events, warnings first, newest first.",
    "events oauth2-server --since 30m",
    |v| {
        Ok(Events {
            target: v.text("target")?,
            since: v.opt_duration("since"),
        }
        .into())
    },
);

impl Verb for Events {
    fn values(&self) -> Values {
        Values::new(&EVENTS)
            .put_text("target", &self.target)
            .put_duration("since", self.since)
    }
}

// ---------------------------------------------------------------- hpa

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hpa {
    pub service: String,
    pub min: Option<u32>,
    pub max: Option<u32>,
    #[serde(default)]
    pub dry_run: bool,
    /// Raise the maximum above its current value: what `scale --force`
    /// does for one scale, so it needs the same `force` permission.
    #[serde(default)]
    pub force: bool,
}

const HPA_BOUND: ArgKind = ArgKind::ReplicaBound;

pub static HPA: VerbSpec = VerbSpec {
    mutates: Mutates::WithFlags {
        flags: &["min", "max"],
        policy_verb: "hpa-set",
    },
    ..read(
        "hpa",
        "hpa",
        &[SERVICE],
        &[
            valued(
                "min",
                HPA_BOUND,
                "N",
                "set the autoscaler's minimum replicas",
            ),
            valued(
                "max",
                HPA_BOUND,
                "N",
                "set the autoscaler's maximum replicas",
            ),
            switch(
                "force",
                "raise the maximum above its current value (needs the `force` permission)",
            ),
            DRY_RUN,
            PUBLIC,
        ],
        "Show a service's autoscaler, or change its bounds with --min/--max.",
        "hpa oauth2-server --min 3 --max 10",
        build_hpa,
    )
};

fn build_hpa(v: &mut Values) -> Result<crate::Command, ParseError> {
    let spec = v.spec;
    let service = v.text("service")?;
    let min = v.opt_int("min");
    let max = v.opt_int("max");
    if let (Some(lo), Some(hi)) = (min, max) {
        if lo > hi {
            return Err(bad(spec, format!("`--min {lo}` is above `--max {hi}`")));
        }
    }
    let dry_run = v.switch("dry-run");
    if dry_run && min.is_none() && max.is_none() {
        return Err(bad(spec, "`--dry-run` goes with `--min`/`--max`"));
    }
    let force = v.switch("force");
    if force && max.is_none() {
        return Err(bad(spec, "`--force` goes with `--max`"));
    }
    Ok(Hpa {
        service,
        min,
        max,
        dry_run,
        force,
    }
    .into())
}

impl Verb for Hpa {
    fn values(&self) -> Values {
        Values::new(&HPA)
            .put_text("service", &self.service)
            .put_opt_int("min", self.min)
            .put_opt_int("max", self.max)
            .put_switch("force", self.force)
            .put_switch("dry-run", self.dry_run)
    }
}

// ---------------------------------------------------------------- health, diagnose

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub service: String,
}

pub static HEALTH: VerbSpec = read(
    "health",
    "health",
    &[SERVICE],
    &[PUBLIC],
    "Probe the service's health URLs: status, latency and dependencies.",
    "health brownie-metadata-api",
    |v| {
        Ok(Health {
            service: v.text("service")?,
        }
        .into())
    },
);

impl Verb for Health {
    fn values(&self) -> Values {
        Values::new(&HEALTH).put_text("service", &self.service)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnose {
    pub target: String,
}

pub static DIAGNOSE: VerbSpec = read(
    "diagnose",
    "diagnose",
    &[SERVICE_OR_POD],
    &[PUBLIC],
    "Why pods are not running: a verdict, container states, warnings, crash logs.",
    "diagnose oauth2-server",
    |v| {
        Ok(Diagnose {
            target: v.text("target")?,
        }
        .into())
    },
);

impl Verb for Diagnose {
    fn values(&self) -> Values {
        Values::new(&DIAGNOSE).put_text("target", &self.target)
    }
}

// ---------------------------------------------------------------- job run

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRun {
    pub cronjob: String,
    pub name: Option<String>,
    pub namespace: Option<String>,
    #[serde(default)]
    pub dry_run: bool,
}

pub static JOB_RUN: VerbSpec = write(
    "job run",
    "job-run",
    &[arg(
        "cronjob",
        ArgKind::CronJob,
        "<cronjob>",
        "a CronJob",
        "The CronJob to run now",
    )],
    &[
        valued(
            "name",
            ArgKind::Name("Job name"),
            "NAME",
            "the Job's name (default: <cronjob>-manual-<time>)",
        ),
        NAMESPACE,
        DRY_RUN,
        PUBLIC,
    ],
    "Run a CronJob now, like `kubectl create job --from=cronjob/…`, and report progress.",
    "job run postgres-backup -n vibe-ensemble",
    |v| {
        Ok(JobRun {
            cronjob: v.text("cronjob")?,
            name: v.opt_text("name"),
            namespace: v.opt_text("namespace"),
            dry_run: v.switch("dry-run"),
        }
        .into())
    },
);

impl Verb for JobRun {
    fn values(&self) -> Values {
        Values::new(&JOB_RUN)
            .put_text("cronjob", &self.cronjob)
            .put_opt_text("name", self.name.as_deref())
            .put_opt_text("namespace", self.namespace.as_deref())
            .put_switch("dry-run", self.dry_run)
    }
}

// ---------------------------------------------------------------- quarantine

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quarantine {
    pub pod: String,
    /// `quarantine` (true) or `unquarantine` (false).
    pub on: bool,
    #[serde(default)]
    pub dry_run: bool,
}

const POD: ArgSpec = arg("pod", ArgKind::Pod, "<pod>", "a pod", "The pod");

pub static QUARANTINE: VerbSpec = write(
    "quarantine",
    "quarantine",
    &[POD],
    &[DRY_RUN, PUBLIC],
    "Label a pod quarantine=true so it leaves its Service's endpoints (kept for forensics).",
    "quarantine vibe-ensemble-server-7d4b9c-x2x9k",
    |v| build_quarantine(v, true),
);

pub static UNQUARANTINE: VerbSpec = write(
    "unquarantine",
    "quarantine",
    &[POD],
    &[DRY_RUN, PUBLIC],
    "Remove the quarantine label from a pod.",
    "unquarantine vibe-ensemble-server-7d4b9c-x2x9k",
    |v| build_quarantine(v, false),
);

fn build_quarantine(v: &mut Values, on: bool) -> Result<crate::Command, ParseError> {
    Ok(Quarantine {
        pod: v.text("pod")?,
        on,
        dry_run: v.switch("dry-run"),
    }
    .into())
}

impl Verb for Quarantine {
    fn values(&self) -> Values {
        Values::new(if self.on { &QUARANTINE } else { &UNQUARANTINE })
            .put_text("pod", &self.pod)
            .put_switch("dry-run", self.dry_run)
    }
}

// ---------------------------------------------------------------- env

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvSet {
    pub service: String,
    pub vars: Vec<(String, String)>,
    pub container: Option<String>,
    #[serde(default)]
    pub dry_run: bool,
}

pub static ENV_SET: VerbSpec = write(
    "env set",
    "env",
    &[
        arg(
            "service",
            ArgKind::Service,
            "<service>",
            "a service and KEY=VALUE pairs",
            "The service, from the catalog",
        ),
        ArgSpec {
            required: false,
            many: true,
            ..arg(
                "vars",
                ArgKind::EnvPair,
                "KEY=VALUE…",
                "at least one KEY=VALUE",
                "KEY=VALUE pairs, separated by spaces",
            )
        },
    ],
    &[CONTAINER, DRY_RUN, PUBLIC],
    "Set environment variables (a rolling restart follows); secrets are refused.",
    "env set backend DB_POOL_SIZE=30 DB_MAX_OVERFLOW=20",
    |v| {
        let spec = v.spec;
        let service = v.text("service")?;
        let vars = v.pairs("vars");
        for (i, (key, _)) in vars.iter().enumerate() {
            if vars[..i].iter().any(|(k, _)| k == key) {
                return Err(bad(spec, format!("`{key}` is set twice")));
            }
        }
        if vars.is_empty() {
            return Err(ParseError::MissingArgument {
                verb: spec,
                what: "at least one KEY=VALUE",
            });
        }
        Ok(EnvSet {
            service,
            vars,
            container: v.opt_text("container"),
            dry_run: v.switch("dry-run"),
        }
        .into())
    },
);

impl Verb for EnvSet {
    fn values(&self) -> Values {
        let mut values = Values::new(&ENV_SET).put_text("service", &self.service);
        for (k, val) in &self.vars {
            values = values.put("vars", Value::Pair(k.clone(), val.clone()));
        }
        values
            .put_opt_text("container", self.container.as_deref())
            .put_switch("dry-run", self.dry_run)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvUnset {
    pub service: String,
    pub keys: Vec<String>,
    pub container: Option<String>,
    #[serde(default)]
    pub dry_run: bool,
}

pub static ENV_UNSET: VerbSpec = write(
    "env unset",
    "env",
    &[
        arg(
            "service",
            ArgKind::Service,
            "<service>",
            "a service and KEYs",
            "The service, from the catalog",
        ),
        ArgSpec {
            required: false,
            many: true,
            ..arg(
                "keys",
                ArgKind::EnvKey,
                "KEY…",
                "at least one KEY",
                "Variable names, separated by spaces",
            )
        },
    ],
    &[CONTAINER, DRY_RUN, PUBLIC],
    "Remove environment variables (a rolling restart follows).",
    "env unset backend DB_MAX_OVERFLOW",
    |v| {
        let spec = v.spec;
        let service = v.text("service")?;
        let mut keys: Vec<String> = Vec::new();
        for key in v.all_text("keys") {
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
        Ok(EnvUnset {
            service,
            keys,
            container: v.opt_text("container"),
            dry_run: v.switch("dry-run"),
        }
        .into())
    },
);

impl Verb for EnvUnset {
    fn values(&self) -> Values {
        Values::new(&ENV_UNSET)
            .put_text("service", &self.service)
            .put_all_text("keys", &self.keys)
            .put_opt_text("container", self.container.as_deref())
            .put_switch("dry-run", self.dry_run)
    }
}

// ---------------------------------------------------------------- top

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Top {
    pub target: String,
}

pub static TOP: VerbSpec = read(
    "top",
    "top",
    &[SERVICE_OR_NAMESPACE],
    &[PUBLIC],
    "CPU and memory per pod, from metrics-server.",
    "top oauth2-server",
    |v| {
        Ok(Top {
            target: v.text("target")?,
        }
        .into())
    },
);

impl Verb for Top {
    fn values(&self) -> Values {
        Values::new(&TOP).put_text("target", &self.target)
    }
}

// ---------------------------------------------------------------- history

/// `history`'s filters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryFilter {
    pub user: Option<String>,
    pub service: Option<String>,
    #[serde(with = "opt_duration_secs")]
    pub since: Option<Duration>,
    pub limit: u32,
}

pub static HISTORY: VerbSpec = read(
    "history",
    "history",
    &[],
    &[
        valued(
            "user",
            ArgKind::Principal,
            "PRINCIPAL",
            "only this principal's commands",
        ),
        valued(
            "service",
            ArgKind::ServiceFilter,
            "SERVICE",
            "only commands on this service",
        ),
        valued(
            "since",
            ArgKind::Duration { max: None },
            "DURATION",
            "only this recent (humantime: 2h, 1d 6h)",
        ),
        valued(
            "limit",
            ArgKind::Number {
                min: 1,
                max: MAX_HISTORY_LIMIT,
            },
            "N",
            "at most N rows (1-100, default 20)",
        ),
        PUBLIC,
    ],
    "Recent commands, newest first, with who ran them and the outcome.",
    "history --service backend --since 2h",
    |v| {
        Ok(HistoryFilter {
            user: v.opt_text("user"),
            service: v.opt_text("service"),
            since: v.opt_duration("since"),
            limit: v.opt_int("limit").unwrap_or(DEFAULT_HISTORY_LIMIT),
        }
        .into())
    },
);

impl Verb for HistoryFilter {
    fn values(&self) -> Values {
        Values::new(&HISTORY)
            .put_opt_text("user", self.user.as_deref())
            .put_opt_text("service", self.service.as_deref())
            .put_duration("since", self.since)
            .put_opt_int(
                "limit",
                Some(self.limit).filter(|l| *l != DEFAULT_HISTORY_LIMIT),
            )
    }
}

// ---------------------------------------------------------------- whoami, can

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Whoami;

pub static WHOAMI: VerbSpec = VerbSpec {
    gate: Gate::Handler,
    ..read(
        "whoami",
        "whoami",
        &[],
        &[PUBLIC],
        "Your principal, the groups you were seen with, and your roles.",
        "whoami",
        |_| Ok(Whoami.into()),
    )
};

impl Verb for Whoami {
    fn values(&self) -> Values {
        Values::new(&WHOAMI)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Can {
    pub principal: String,
    pub command: Box<crate::Command>,
}

pub static CAN: VerbSpec = read(
    "can",
    "can",
    &[
        arg(
            "principal",
            ArgKind::Principal,
            "<principal>",
            "a principal and a command",
            "Whose permission to check (slack:U…, discord:<id>, cli:<name>)",
        ),
        arg(
            "command",
            ArgKind::Command,
            "<command…>",
            "a command to explain",
            "The command to check, e.g. scale backend 5",
        ),
    ],
    &[],
    "Explain whether a principal may run a command here, without running it.",
    "can cli:viewer scale backend 5",
    |v| {
        Ok(Can {
            principal: v.text("principal")?,
            command: Box::new(v.command("command")?),
        }
        .into())
    },
);

impl Verb for Can {
    fn values(&self) -> Values {
        Values::new(&CAN)
            .put_text("principal", &self.principal)
            .put("command", Value::Command(self.command.clone()))
    }
}

// ---------------------------------------------------------------- approvals

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approve {
    pub id: String,
}

const REQUEST_ID: ArgSpec = arg(
    "id",
    ArgKind::RequestId,
    "<id>",
    "a request id",
    "The request id shown with the approval request",
);

pub static APPROVE: VerbSpec = VerbSpec {
    gate: Gate::Handler,
    ..write(
        "approve",
        "approve",
        &[REQUEST_ID],
        &[PUBLIC],
        "Approve someone else's pending request; it runs exactly as requested.",
        "approve k3f9qa",
        |v| Ok(Approve { id: v.text("id")? }.into()),
    )
};

impl Verb for Approve {
    fn values(&self) -> Values {
        Values::new(&APPROVE).put_text("id", &self.id)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deny {
    pub id: String,
}

pub static DENY: VerbSpec = VerbSpec {
    gate: Gate::Handler,
    // It changes a request's state: recorded before it runs, run once.
    ..write(
        "deny",
        "deny",
        &[REQUEST_ID],
        &[PUBLIC],
        "Drop a pending request.",
        "deny k3f9qa",
        |v| Ok(Deny { id: v.text("id")? }.into()),
    )
};

impl Verb for Deny {
    fn values(&self) -> Values {
        Values::new(&DENY).put_text("id", &self.id)
    }
}

// ---------------------------------------------------------------- the enum

/// Declares [`crate::Command`] with one variant per command type, its
/// `values`, the `From` conversions, and the `dispatch!` macro that matches
/// every variant (so a command type without a handler does not compile).
macro_rules! commands {
    ($d:tt $($variant:ident($ty:ty)),* $(,)?) => {
        /// A typed command. Serializable so a request held for approval runs
        /// exactly as it was asked.
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(tag = "op", rename_all = "kebab-case")]
        pub enum Command {
            $($variant($ty)),*
        }

        impl Command {
            /// Its verb and checked values: what its canonical text, its
            /// targets and its policy facts are computed from.
            pub fn values(&self) -> Values {
                match self {
                    $(Command::$variant(c) => c.values()),*
                }
            }
        }

        $(impl From<$ty> for Command {
            fn from(c: $ty) -> Self {
                Command::$variant(c)
            }
        })*

        /// `dispatch!(command, c => body)`: evaluates `body` with `c` bound
        /// to the typed command inside `command`, for every variant, so
        /// `body` can call a trait method each command type implements.
        #[macro_export]
        macro_rules! dispatch {
            ($d cmd:expr, $d c:ident => $d body:expr) => {
                match $d cmd {
                    $($crate::Command::$variant($d c) => $d body),*
                }
            };
        }
    };
}

commands! { $
    Help(Help),
    Scale(Scale),
    Restart(Restart),
    RestartAll(RestartAll),
    Status(Status),
    RolloutStatus(RolloutStatus),
    RolloutHistory(RolloutHistory),
    Rollback(Rollback),
    SetImage(SetImage),
    Logs(LogsRequest),
    Pods(Pods),
    Events(Events),
    Hpa(Hpa),
    Health(Health),
    Diagnose(Diagnose),
    JobRun(JobRun),
    Quarantine(Quarantine),
    EnvSet(EnvSet),
    EnvUnset(EnvUnset),
    Top(Top),
    History(HistoryFilter),
    Whoami(Whoami),
    Can(Can),
    Approve(Approve),
    Deny(Deny),
    IncidentDeclare(crate::incidents::IncidentDeclare),
    IncidentAck(crate::incidents::IncidentAck),
    IncidentStatus(crate::incidents::IncidentStatus),
    IncidentUpdate(crate::incidents::IncidentUpdate),
    IncidentSev(crate::incidents::IncidentSev),
    IncidentAssign(crate::incidents::IncidentAssign),
    IncidentNote(crate::incidents::IncidentNote),
    IncidentResolve(crate::incidents::IncidentResolve),
    IncidentReopen(crate::incidents::IncidentReopen),
    IncidentList(crate::incidents::IncidentList),
    IncidentShow(crate::incidents::IncidentShow),
    IncidentTimeline(crate::incidents::IncidentTimeline),
    IncidentPostmortem(crate::incidents::IncidentPostmortem),
    Escalate(crate::paging::Escalate),
    Page(crate::paging::Page),
    Who(crate::paging::Who),
    ScheduleShow(crate::paging::ScheduleShow),
    Override(crate::paging::Override),
    Alerts(crate::alerts::Alerts),
    AlertsRun(crate::alerts::AlertsRun),
    Silence(crate::alerts::Silence),
    Unsilence(crate::alerts::Unsilence),
}
