//! `env set` / `env unset`: environment variables of one container of a
//! deployment (runbook 001 raises DB_POOL_SIZE in an emergency). A strategic
//! merge patch merges env by name, so other variables stay; the pod template
//! changes, so a rolling restart follows.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Container;
use kube::api::{Api, Patch};
use serde_json::json;

use super::{call, DeploymentRef, OpsError};

/// What happened to one variable. Values never leave this module: a reply,
/// the history and an undo hint say which keys changed, never to what (an
/// environment value may be a credential someone put there by hand).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvChangeKind {
    Added,
    Changed,
    Removed,
}

impl EnvChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EnvChangeKind::Added => "added",
            EnvChangeKind::Changed => "changed",
            EnvChangeKind::Removed => "removed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvChange {
    pub key: String,
    pub kind: EnvChangeKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvOutcome {
    pub container: String,
    pub changes: Vec<EnvChange>,
    pub dry_run: bool,
}

/// The container an env change applies to: the named one, else the one
/// named like the deployment, else the only one.
pub fn pick_container<'a>(
    containers: &'a [Container],
    wanted: Option<&str>,
    deployment: &str,
) -> Result<&'a Container, OpsError> {
    let names = || {
        containers
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match wanted {
        Some(w) => containers.iter().find(|c| c.name == w).ok_or_else(|| OpsError::Refused {
            message: format!("deployment/{deployment} has no container `{w}` (containers: {})", names()),
        }),
        None => containers
            .iter()
            .find(|c| c.name == deployment)
            .or(if containers.len() == 1 { containers.first() } else { None })
            .ok_or_else(|| OpsError::Refused {
                message: format!("deployment/{deployment} has several containers ({}); say which with --container", names()),
            }),
    }
}

fn current_value(c: &Container, key: &str) -> Option<String> {
    c.env
        .iter()
        .flatten()
        .find(|e| e.name == key)
        .map(|e| match (&e.value, &e.value_from) {
            (Some(v), _) => v.clone(),
            (None, Some(from)) => {
                if let Some(s) = &from.secret_key_ref {
                    format!("<from secret {}/{}>", s.name, s.key)
                } else if let Some(c) = &from.config_map_key_ref {
                    format!("<from configmap {}/{}>", c.name, c.key)
                } else {
                    "<from a reference>".into()
                }
            }
            (None, None) => String::new(),
        })
}

/// Sets (`Some`) or removes (`None`) variables.
pub async fn change_env(
    client: &kube::Client,
    target: DeploymentRef<'_>,
    container: Option<&str>,
    changes: &[(String, Option<String>)],
    dry_run: bool,
) -> Result<EnvOutcome, OpsError> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), target.namespace);
    let what = target.to_string();
    let d = call(&what, api.get(target.name)).await?;
    let containers = super::template_containers(&d);
    let c = pick_container(&containers, container, target.name)?;
    let mut report = Vec::new();
    let mut env_patch = Vec::new();
    let mut unchanged = 0;
    for (key, value) in changes {
        let before = current_value(c, key);
        if before.as_deref().is_some_and(|b| b.starts_with("<from ")) {
            return Err(OpsError::Refused {
                message: format!(
                    "{key} comes from a reference ({}); change the Secret or ConfigMap instead",
                    before.unwrap_or_default()
                ),
            });
        }
        if before.is_none() && value.is_none() {
            continue;
        }
        if before == *value {
            unchanged += 1;
            continue;
        }
        match value {
            Some(v) => env_patch.push(json!({ "name": key, "value": v })),
            None => env_patch.push(json!({ "name": key, "$patch": "delete" })),
        }
        let kind = match (&before, value) {
            (None, _) => EnvChangeKind::Added,
            (Some(_), Some(_)) => EnvChangeKind::Changed,
            (Some(_), None) => EnvChangeKind::Removed,
        };
        report.push(EnvChange {
            key: key.clone(),
            kind,
        });
    }
    if report.is_empty() && unchanged > 0 {
        return Err(OpsError::Refused {
            message: "the variables already have these values; nothing to change".into(),
        });
    }
    if report.is_empty() {
        return Err(OpsError::Refused {
            message: format!(
                "none of {} is set on container {}; nothing to change",
                changes
                    .iter()
                    .map(|(k, _)| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                c.name
            ),
        });
    }
    let patch = json!({ "spec": { "template": { "spec": { "containers": [ { "name": c.name, "env": env_patch } ] } } } });
    let params = super::patch_params(dry_run);
    call(
        &what,
        api.patch(target.name, &params, &Patch::Strategic(&patch)),
    )
    .await?;
    Ok(EnvOutcome {
        container: c.name.clone(),
        changes: report,
        dry_run,
    })
}
