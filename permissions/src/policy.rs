//! The policy model and its evaluation.
//!
//! A [`Policy`] is a set of roles, bindings of principals to roles, and
//! approval rules. Roles hold grants: "these verbs, on these services /
//! namespaces / clusters / environments, in these channels". Evaluation is deny
//! by default: a request is allowed only if some grant of some role bound to one
//! of the caller's principals matches it. An allowed request that an approval
//! rule matches needs a second person. Every [`Decision`] says which rule
//! decided, so a denial can be explained to the user and `can` can show it.
//!
//! Everything here is pure: no IO, no clocks, no async.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::principal::Principal;

/// A wildcard that matches any value in a selector list.
pub const ANY: &str = "*";

/// Which values a grant or rule applies to. An empty list or `"*"` matches
/// everything; otherwise a value must be listed (a trailing `*` is a prefix
/// match: `payments-*`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Selector(pub Vec<String>);

impl Selector {
    pub fn any() -> Self {
        Selector(vec![ANY.to_string()])
    }

    pub fn of<I: IntoIterator<Item = S>, S: Into<String>>(values: I) -> Self {
        Selector(values.into_iter().map(Into::into).collect())
    }

    /// Matches a value that may be absent (a command with no service, say).
    /// An absent value is only matched by a selector that matches everything.
    pub fn matches(&self, value: Option<&str>) -> bool {
        if self.is_any() {
            return true;
        }
        let Some(value) = value else { return false };
        self.0
            .iter()
            .any(|pattern| match pattern.strip_suffix('*') {
                Some(prefix) => value.starts_with(prefix),
                None => pattern == value,
            })
    }

    pub fn is_any(&self) -> bool {
        self.0.is_empty() || self.0.iter().any(|p| p == ANY)
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_any() {
            f.write_str("*")
        } else {
            f.write_str(&self.0.join(","))
        }
    }
}

/// One grant inside a role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    /// Policy verbs (`scale`, `restart`, `status`, …) or `*`.
    pub verbs: Selector,
    #[serde(default)]
    pub services: Selector,
    #[serde(default)]
    pub namespaces: Selector,
    #[serde(default)]
    pub clusters: Selector,
    #[serde(default)]
    pub environments: Selector,
    /// CronJobs (`job run`) by name; a grant naming some holds only for
    /// them, so it never matches a command on no CronJob.
    #[serde(default)]
    pub cronjobs: Selector,
    /// Channel ids as `<platform>:<id>` (`slack:C024BE91L`, `discord:1234`,
    /// `cli:console`) or `*` for anywhere. Never channel names.
    #[serde(default)]
    pub channels: Selector,
}

/// A named set of grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Role {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub grants: Vec<Grant>,
}

/// Binds one principal (a person, a group or a platform role) to roles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Binding {
    pub principal: Principal,
    pub roles: Vec<String>,
}

/// A rule that makes matching, otherwise allowed, requests wait for a second
/// person holding one of `approvers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalRule {
    pub name: String,
    pub verbs: Selector,
    #[serde(default)]
    pub services: Selector,
    #[serde(default)]
    pub namespaces: Selector,
    #[serde(default)]
    pub clusters: Selector,
    #[serde(default)]
    pub environments: Selector,
    #[serde(default)]
    pub cronjobs: Selector,
    /// Conditions the action must all have (e.g. `scale-to-zero`); empty means
    /// every matching action.
    #[serde(default)]
    pub when: Vec<String>,
    /// Roles whose holders may approve.
    pub approvers: Vec<String>,
}

/// The whole policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[serde(default)]
    pub roles: Vec<Role>,
    #[serde(default)]
    pub bindings: Vec<Binding>,
    #[serde(default)]
    pub approvals: Vec<ApprovalRule>,
    /// People known under several identities (`slack:U…` and `discord:…`):
    /// four-eyes compares people, so one can't request on one platform and
    /// approve on the other.
    #[serde(default)]
    pub people: Vec<Person>,
}

/// One person's identities on every platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Person {
    pub name: String,
    pub ids: Vec<Principal>,
}

/// What a request acts on. Fields are absent when the command has no such
/// scope (`history`, `whoami`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Target<'a> {
    pub service: Option<&'a str>,
    pub namespace: Option<&'a str>,
    pub cluster: Option<&'a str>,
    pub environment: Option<&'a str>,
    /// The CronJob a `job run` starts (the target's service owns it).
    pub cronjob: Option<&'a str>,
}

/// One request to decide.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// The caller first, then its groups and platform roles.
    pub principals: &'a [Principal],
    /// `<platform>:<channel id>`.
    pub channel: &'a str,
    /// The policy verb of the command.
    pub verb: &'a str,
    pub target: Target<'a>,
    /// Facts about the action that approval rules can require
    /// (`scale-to-zero`, `force`).
    pub conditions: &'a [&'a str],
}

/// Which rule decided, in words a user can act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    /// `role operator, grant 1` / `approval rule production-restart` /
    /// `no matching grant`.
    pub rule: String,
    pub explanation: String,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.explanation, self.rule)
    }
}

/// The outcome of evaluating a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow {
        reason: Reason,
    },
    Deny {
        reason: Reason,
    },
    NeedsApproval {
        reason: Reason,
        rule: String,
        approvers: Vec<String>,
    },
}

impl Decision {
    pub fn reason(&self) -> &Reason {
        match self {
            Decision::Allow { reason }
            | Decision::Deny { reason }
            | Decision::NeedsApproval { reason, .. } => reason,
        }
    }

    pub fn label(&self) -> &'static str {
        match self {
            Decision::Allow { .. } => "allow",
            Decision::Deny { .. } => "deny",
            Decision::NeedsApproval { .. } => "needs_approval",
        }
    }
}

/// Problems found by [`Policy::validate`], each naming the key at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("policy.people[{index}].ids: `{id}` already belongs to another person")]
    PersonTwice { index: usize, id: String },
    #[error("policy.roles[{index}].name: role `{name}` is defined twice")]
    DuplicateRole { index: usize, name: String },
    #[error("policy.roles[{index}].name: expected a non-empty role name")]
    EmptyRoleName { index: usize },
    #[error("policy.roles[{role}].grants[{grant}].verbs: expected at least one verb or \"*\"")]
    EmptyVerbs { role: usize, grant: usize },
    #[error("policy.roles[{role}].grants[{grant}].verbs: unknown verb `{verb}` (known: {known})")]
    UnknownVerb {
        role: usize,
        grant: usize,
        verb: String,
        known: String,
    },
    #[error("policy.bindings[{index}].roles: role `{role}` is not defined in policy.roles")]
    UnknownBoundRole { index: usize, role: String },
    #[error("policy.approvals[{index}].approvers: role `{role}` is not defined in policy.roles")]
    UnknownApproverRole { index: usize, role: String },
    #[error("policy.approvals[{index}].approvers: expected at least one approver role")]
    NoApprovers { index: usize },
    #[error("policy.approvals[{index}].verbs: unknown verb `{verb}` (known: {known})")]
    UnknownApprovalVerb {
        index: usize,
        verb: String,
        known: String,
    },
}

impl Policy {
    /// Whether two principals are the same person: the same id, or two ids
    /// of one `[[policy.people]]` entry.
    pub fn same_person(&self, a: &Principal, b: &Principal) -> bool {
        a == b
            || self
                .people
                .iter()
                .any(|p| p.ids.contains(a) && p.ids.contains(b))
    }

    /// The person an identity belongs to, if `[[policy.people]]` names it.
    pub fn person_of(&self, principal: &Principal) -> Option<&Person> {
        self.people.iter().find(|p| p.ids.contains(principal))
    }

    /// Checks internal consistency. `known_verbs` is the command language's
    /// list of policy verbs, so a typo in the config is caught at start.
    pub fn validate(&self, known_verbs: &[&str]) -> Vec<PolicyError> {
        let mut errors = Vec::new();
        for (index, person) in self.people.iter().enumerate() {
            for id in &person.ids {
                if self.people[..index].iter().any(|p| p.ids.contains(id)) {
                    errors.push(PolicyError::PersonTwice {
                        index,
                        id: id.to_string(),
                    });
                }
            }
        }
        let mut seen = BTreeSet::new();
        let known = known_verbs.join(", ");
        for (index, role) in self.roles.iter().enumerate() {
            if role.name.trim().is_empty() {
                errors.push(PolicyError::EmptyRoleName { index });
            } else if !seen.insert(role.name.as_str()) {
                errors.push(PolicyError::DuplicateRole {
                    index,
                    name: role.name.clone(),
                });
            }
            for (g, grant) in role.grants.iter().enumerate() {
                if grant.verbs.0.is_empty() {
                    errors.push(PolicyError::EmptyVerbs {
                        role: index,
                        grant: g,
                    });
                }
                for verb in &grant.verbs.0 {
                    if verb != ANY && !known_verbs.contains(&verb.as_str()) {
                        errors.push(PolicyError::UnknownVerb {
                            role: index,
                            grant: g,
                            verb: verb.clone(),
                            known: known.clone(),
                        });
                    }
                }
            }
        }
        for (index, binding) in self.bindings.iter().enumerate() {
            for role in &binding.roles {
                if !seen.contains(role.as_str()) {
                    errors.push(PolicyError::UnknownBoundRole {
                        index,
                        role: role.clone(),
                    });
                }
            }
        }
        for (index, rule) in self.approvals.iter().enumerate() {
            if rule.approvers.is_empty() {
                errors.push(PolicyError::NoApprovers { index });
            }
            for role in &rule.approvers {
                if !seen.contains(role.as_str()) {
                    errors.push(PolicyError::UnknownApproverRole {
                        index,
                        role: role.clone(),
                    });
                }
            }
            for verb in &rule.verbs.0 {
                if verb != ANY && !known_verbs.contains(&verb.as_str()) {
                    errors.push(PolicyError::UnknownApprovalVerb {
                        index,
                        verb: verb.clone(),
                        known: known.clone(),
                    });
                }
            }
        }
        errors
    }

    /// The roles bound to any of these principals, in policy order, deduplicated.
    pub fn roles_of(&self, principals: &[Principal]) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for binding in &self.bindings {
            if principals.contains(&binding.principal) {
                for role in &binding.roles {
                    if !out.contains(&role.as_str()) {
                        out.push(role);
                    }
                }
            }
        }
        out
    }

    fn role(&self, name: &str) -> Option<&Role> {
        self.roles.iter().find(|r| r.name == name)
    }

    /// Decides one request: deny by default, allow on the first matching grant,
    /// and ask for approval when an approval rule also matches.
    pub fn evaluate(&self, request: &Request<'_>) -> Decision {
        let caller = request
            .principals
            .first()
            .map(ToString::to_string)
            .unwrap_or_else(|| "nobody".to_string());
        let roles = self.roles_of(request.principals);
        let mut granted: Option<Reason> = None;
        'roles: for role_name in &roles {
            let Some(role) = self.role(role_name) else {
                continue;
            };
            for (index, grant) in role.grants.iter().enumerate() {
                if grant_matches(grant, request) {
                    granted = Some(Reason {
                        rule: format!("role {}, grant {}", role.name, index + 1),
                        explanation: format!(
                            "role `{}` grants `{}` on {}",
                            role.name,
                            request.verb,
                            describe_target(&request.target)
                        ),
                    });
                    break 'roles;
                }
            }
        }
        let Some(reason) = granted else {
            let held = if roles.is_empty() {
                "no roles".to_string()
            } else {
                format!("roles: {}", roles.join(", "))
            };
            return Decision::Deny {
                reason: Reason {
                    rule: "default deny: no grant matched".to_string(),
                    explanation: format!(
                        "{caller} ({held}) may not `{}` on {} in {}",
                        request.verb,
                        describe_target(&request.target),
                        request.channel
                    ),
                },
            };
        };
        // Every matching rule holds (the strictest is all of them).
        let matching: Vec<&ApprovalRule> = self
            .approvals
            .iter()
            .filter(|rule| approval_matches(rule, request))
            .collect();
        if matching.is_empty() {
            return Decision::Allow { reason };
        }
        self.needs_approval(
            &reason.explanation,
            matching.iter().map(|r| r.name.as_str()),
        )
    }

    /// The decision holding a request for these approval rules, all of
    /// which an approver must satisfy. Several rules are one rule string,
    /// their names joined by [`RULE_SEPARATOR`].
    fn needs_approval<'r>(&self, why: &str, names: impl Iterator<Item = &'r str>) -> Decision {
        let mut rules: Vec<&ApprovalRule> = Vec::new();
        for name in names.flat_map(|n| n.split(RULE_SEPARATOR)) {
            if let Some(rule) = self.approvals.iter().find(|r| r.name == name) {
                if !rules.iter().any(|r| r.name == rule.name) {
                    rules.push(rule);
                }
            }
        }
        let roles = |r: &ApprovalRule| {
            r.approvers
                .iter()
                .map(|a| format!("`{a}`"))
                .collect::<Vec<_>>()
                .join(" or ")
        };
        let names: Vec<&str> = rules.iter().map(|r| r.name.as_str()).collect();
        let (explanation, approvers) = match rules.as_slice() {
            [one] => (
                format!(
                    "{why}; approval rule `{}` requires a second person with role {}",
                    one.name,
                    roles(one)
                ),
                one.approvers.clone(),
            ),
            many => {
                let each: Vec<String> = many
                    .iter()
                    .map(|r| format!("`{}` ({})", r.name, r.approvers.join(" or ")))
                    .collect();
                (
                    format!(
                        "{why}; approval rules {} all apply: one approver must satisfy each",
                        each.join(", ")
                    ),
                    vec![each.join(" and ")],
                )
            }
        };
        Decision::NeedsApproval {
            reason: Reason {
                rule: format!("approval rule {}", names.join(RULE_SEPARATOR)),
                explanation,
            },
            rule: names.join(RULE_SEPARATOR),
            approvers,
        }
    }

    /// One decision for a request that has several targets (several
    /// services, or a namespace's): the first denial decides; otherwise every
    /// approval rule matched on any target holds, all of them; otherwise it
    /// is allowed.
    pub fn combine(&self, decisions: Vec<Decision>) -> Decision {
        let mut allowed: Option<Reason> = None;
        let mut held: Vec<(String, String)> = Vec::new();
        for decision in decisions {
            match decision {
                d @ Decision::Deny { .. } => return d,
                Decision::NeedsApproval { rule, reason, .. } => {
                    held.push((rule, reason.explanation));
                }
                Decision::Allow { reason } => {
                    allowed.get_or_insert(reason);
                }
            }
        }
        if let Some((_, why)) = held.first() {
            let why = why
                .split("; approval rule")
                .next()
                .unwrap_or(why)
                .to_string();
            return self.needs_approval(&why, held.iter().map(|(r, _)| r.as_str()));
        }
        Decision::Allow {
            reason: allowed.unwrap_or_else(|| Reason {
                rule: "none".into(),
                explanation: "nothing to decide".into(),
            }),
        }
    }

    /// Whether `approver` may approve a request held for approval rule `rule`
    /// that `requester` made. The requester can never approve their own.
    pub fn may_approve(
        &self,
        rule: &str,
        approver: &[Principal],
        requester: &Principal,
    ) -> Result<Reason, Reason> {
        let Some(me) = approver.first() else {
            return Err(Reason {
                rule: "approval".into(),
                explanation: "no approver identity".into(),
            });
        };
        if self.same_person(me, requester) {
            return Err(Reason {
                rule: "four-eyes".into(),
                explanation: if me == requester {
                    format!("{me} made this request and cannot approve it")
                } else {
                    format!("{me} and {requester} are the same person, who cannot approve their own request")
                },
            });
        }
        // A request held for several rules needs an approver for each.
        let held = self.roles_of(approver);
        let mut because = Vec::new();
        for name in rule.split(RULE_SEPARATOR) {
            let Some(rule_def) = self.approvals.iter().find(|r| r.name == name) else {
                return Err(Reason {
                    rule: format!("approval rule {name}"),
                    explanation: format!("approval rule `{name}` no longer exists in the policy"),
                });
            };
            match rule_def
                .approvers
                .iter()
                .find(|role| held.contains(&role.as_str()))
            {
                Some(role) => because.push(format!("`{role}` for `{name}`")),
                None => {
                    return Err(Reason {
                        rule: format!("approval rule {name}"),
                        explanation: format!(
                            "{me} does not hold an approver role for `{name}` (needs {})",
                            rule_def.approvers.join(" or ")
                        ),
                    })
                }
            }
        }
        Ok(Reason {
            rule: format!("approval rule {rule}"),
            explanation: format!("{me} holds approver role {}", because.join(", ")),
        })
    }
}

/// Joins the names of several approval rules that all hold for one request.
pub const RULE_SEPARATOR: &str = " + ";

fn grant_matches(grant: &Grant, request: &Request<'_>) -> bool {
    let t = &request.target;
    grant.verbs.matches(Some(request.verb))
        && grant.services.matches(t.service)
        && grant.namespaces.matches(t.namespace)
        && grant.clusters.matches(t.cluster)
        && grant.environments.matches(t.environment)
        && grant.cronjobs.matches(t.cronjob)
        && grant.channels.matches(Some(request.channel))
}

fn approval_matches(rule: &ApprovalRule, request: &Request<'_>) -> bool {
    let t = &request.target;
    rule.verbs.matches(Some(request.verb))
        && rule.services.matches(t.service)
        && rule.namespaces.matches(t.namespace)
        && rule.clusters.matches(t.cluster)
        && rule.environments.matches(t.environment)
        && rule.cronjobs.matches(t.cronjob)
        && rule
            .when
            .iter()
            .all(|c| request.conditions.contains(&c.as_str()))
}

fn describe_target(t: &Target<'_>) -> String {
    let mut parts = Vec::new();
    if let Some(j) = t.cronjob {
        parts.push(format!("cronjob {j}"));
    }
    if let Some(s) = t.service {
        parts.push(format!("service {s}"));
    }
    if let Some(n) = t.namespace {
        parts.push(format!("namespace {n}"));
    }
    if let Some(c) = t.cluster {
        parts.push(format!("cluster {c}"));
    }
    if parts.is_empty() {
        "this workspace".to_string()
    } else {
        parts.join(", ")
    }
}
