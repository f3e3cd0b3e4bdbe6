//! The service catalog: the names people type, mapped to where they run.
//!
//! People say `backend`, not `deployment/backend -n default --context prod`.
//! Each [`ServiceEntry`] says which kube context (optional), namespace and
//! deployment a name means, its health URLs, and the replica bounds oncall
//! enforces (with the reason shown when it refuses, e.g. Kafka partitions).

use serde::{Deserialize, Serialize};

/// One service as the config declares it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceEntry {
    pub name: String,
    /// The kube context to use; the default context when absent.
    #[serde(default)]
    pub context: Option<String>,
    pub namespace: String,
    /// The deployment's name; the service's name when absent.
    #[serde(default)]
    pub deployment: Option<String>,
    /// `production`, `staging`, … for the policy's environment scopes.
    #[serde(default)]
    pub environment: Option<String>,
    #[serde(default)]
    pub health_urls: Vec<String>,
    #[serde(default)]
    pub min_replicas: u32,
    #[serde(default = "default_max_replicas")]
    pub max_replicas: u32,
    /// Shown when a scale above `max_replicas` is refused.
    #[serde(default)]
    pub max_replicas_reason: Option<String>,
    /// Shown when a scale below `min_replicas` is refused.
    #[serde(default)]
    pub min_replicas_reason: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// The CronJobs of this service that `job run` may start, by name, in
    /// its namespace (runbook 004's `postgres-backup`). No other CronJob is
    /// reachable. Names are unique across the catalog.
    #[serde(default)]
    pub cronjobs: Vec<String>,
}

fn default_max_replicas() -> u32 {
    50
}

impl ServiceEntry {
    pub fn deployment(&self) -> &str {
        self.deployment.as_deref().unwrap_or(&self.name)
    }

    /// The cluster label policies see: the context, or `default`.
    pub fn cluster(&self) -> &str {
        self.context.as_deref().unwrap_or("default")
    }
}

/// What a command acts on, resolved through the catalog (no IO), so the
/// policy can decide before anything is read from a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope<'a> {
    /// No cluster object (help, history, approvals…).
    Nothing,
    /// One or more catalog services.
    Services(Vec<&'a ServiceEntry>),
    /// One pod of a catalog service's deployment.
    Pod {
        pod: String,
        service: &'a ServiceEntry,
    },
    /// A namespace that holds catalog services.
    Namespace {
        namespace: String,
        /// The strictest environment of the namespace's services
        /// (`production` if any is).
        environment: Option<String>,
        /// The kube context of the namespace's services.
        context: Option<String>,
    },
    /// A CronJob the catalog declares on a service (in its namespace).
    CronJob {
        cronjob: String,
        service: &'a ServiceEntry,
    },
}

/// All services, looked up by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Catalog {
    services: Vec<ServiceEntry>,
}

impl Catalog {
    pub fn new(services: Vec<ServiceEntry>) -> Self {
        Catalog { services }
    }

    pub fn get(&self, name: &str) -> Option<&ServiceEntry> {
        self.services.iter().find(|s| s.name == name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.services.iter().map(|s| s.name.as_str())
    }

    pub fn services(&self) -> &[ServiceEntry] {
        &self.services
    }

    /// The service that declares a CronJob, in a namespace if one is given.
    pub fn service_of_cronjob(
        &self,
        cronjob: &str,
        namespace: Option<&str>,
    ) -> Option<&ServiceEntry> {
        self.services.iter().find(|s| {
            s.cronjobs.iter().any(|c| c == cronjob) && namespace.is_none_or(|ns| ns == s.namespace)
        })
    }

    /// Every CronJob the catalog declares.
    pub fn cronjobs(&self) -> impl Iterator<Item = &str> {
        self.services
            .iter()
            .flat_map(|s| s.cronjobs.iter().map(String::as_str))
    }

    /// The namespaces the catalog's services live in, deduplicated.
    pub fn namespaces(&self) -> impl Iterator<Item = &str> {
        let mut seen: Vec<&str> = Vec::new();
        for s in &self.services {
            if !seen.contains(&s.namespace.as_str()) {
                seen.push(&s.namespace);
            }
        }
        seen.into_iter()
    }

    /// The service whose deployment owns a pod, by Kubernetes' naming:
    /// `<deployment>-<pod-template-hash>-<suffix>`.
    pub fn service_of_pod(&self, pod: &str) -> Option<&ServiceEntry> {
        self.services
            .iter()
            .filter(|s| {
                pod.strip_prefix(s.deployment())
                    .and_then(|rest| rest.strip_prefix('-'))
                    .is_some_and(|rest| {
                        let parts: Vec<&str> = rest.split('-').collect();
                        parts.len() == 2 && parts.iter().all(|p| !p.is_empty())
                    })
            })
            .max_by_key(|s| s.deployment().len())
    }

    /// What a bare name stands for: a service, one of its pods (by name;
    /// ownership is checked where the cluster can be read), a namespace
    /// of the catalog's or a CronJob it declares; nothing for a name the catalog doesn't know.
    pub fn scope_of_name(&self, name: &str) -> Scope<'_> {
        if let Some(entry) = self.get(name) {
            return Scope::Services(vec![entry]);
        }
        if let Some(service) = self.service_of_pod(name) {
            return Scope::Pod {
                pod: name.to_string(),
                service,
            };
        }
        if let Some(scope) = self.namespace_scope(name) {
            return scope;
        }
        match self.service_of_cronjob(name, None) {
            Some(service) => Scope::CronJob {
                cronjob: name.to_string(),
                service,
            },
            None => Scope::Nothing,
        }
    }

    /// The scope of a namespace that holds catalog services.
    pub fn namespace_scope(&self, namespace: &str) -> Option<Scope<'_>> {
        let members: Vec<&ServiceEntry> = self
            .services
            .iter()
            .filter(|s| s.namespace == namespace)
            .collect();
        if members.is_empty() {
            return None;
        }
        let environment = members
            .iter()
            .filter_map(|s| s.environment.clone())
            .max_by_key(|e| (e == "production", e.clone()));
        Some(Scope::Namespace {
            namespace: namespace.to_string(),
            environment,
            context: members[0].context.clone(),
        })
    }

    /// Resolves what a command acts on, from the kinds of its values:
    /// a wrapped command is resolved itself (`can`); a CronJob must be one
    /// a service declares (in the namespace given, if any); positional
    /// targets are services, pods or namespaces as their kind says; a
    /// namespace flag alone (`restart --all -n`) is the namespace; anything
    /// else acts on no cluster object. `Err(name)` names what is unknown.
    pub fn scope(&self, command: &crate::Command) -> Result<Scope<'_>, String> {
        use crate::spec::{ArgKind as K, Value};
        let values = command.values();
        let text = |kind: K| {
            values.entries().find_map(|(name, v)| match v {
                Value::Text(t) if values.spec.kind_of(name) == Some(kind) => Some(t.clone()),
                _ => None,
            })
        };
        for (_, value) in values.entries() {
            if let Value::Command(inner) = value {
                return self.scope(inner);
            }
        }
        let namespace = text(K::Namespace);
        if let Some(cronjob) = text(K::CronJob) {
            return match self.service_of_cronjob(&cronjob, namespace.as_deref()) {
                Some(service) => Ok(Scope::CronJob { cronjob, service }),
                None => Err(format!("cronjob/{cronjob}")),
            };
        }
        let mut services: Vec<&ServiceEntry> = Vec::new();
        for (arg, value) in values.positional() {
            let Value::Text(name) = value else { continue };
            let service = self.get(name);
            match arg.kind {
                K::Service => services.push(service.ok_or_else(|| name.clone())?),
                K::ServiceOrPod | K::Pod => {
                    if let (Some(s), K::ServiceOrPod) = (service, arg.kind) {
                        return Ok(Scope::Services(vec![s]));
                    }
                    return match self.service_of_pod(name) {
                        Some(s) => Ok(Scope::Pod {
                            pod: name.clone(),
                            service: s,
                        }),
                        None => Err(name.clone()),
                    };
                }
                K::ServiceOrNamespace => {
                    return match service {
                        Some(s) => Ok(Scope::Services(vec![s])),
                        None => self.namespace_scope(name).ok_or_else(|| name.clone()),
                    };
                }
                _ => {}
            }
        }
        if !services.is_empty() {
            return Ok(Scope::Services(services));
        }
        match namespace {
            Some(ns) => self.namespace_scope(&ns).ok_or(ns),
            None => Ok(Scope::Nothing),
        }
    }

    /// The exact cluster objects a scope stands for, in words: every
    /// deployment with its namespace and kube context (a namespace scope
    /// lists the catalog services it means). Two resolutions of one command
    /// act on the same objects exactly when these are equal, so a held
    /// request runs only on what was asked for, even if the catalog changed.
    pub fn fingerprint(&self, scope: &Scope<'_>) -> String {
        let at = |s: &ServiceEntry| {
            format!(
                "{} (deployment/{} in {}@{})",
                s.name,
                s.deployment(),
                s.namespace,
                s.cluster()
            )
        };
        match scope {
            Scope::Nothing => "nothing".to_string(),
            Scope::Services(entries) => format!(
                "services {}",
                entries.iter().map(|e| at(e)).collect::<Vec<_>>().join(", ")
            ),
            Scope::Pod { pod, service } => format!("pod {pod} of {}", at(service)),
            Scope::Namespace { namespace, .. } => {
                let members: Vec<String> = self
                    .services
                    .iter()
                    .filter(|s| &s.namespace == namespace)
                    .map(at)
                    .collect();
                format!("namespace {namespace}: {}", members.join(", "))
            }
            Scope::CronJob { cronjob, service } => {
                format!("cronjob/{cronjob} of {}", at(service))
            }
        }
    }

    /// Problems with the catalog, each naming its key.
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        for (i, s) in self.services.iter().enumerate() {
            if let Err(why) = crate::dns1123_label(&s.name) {
                errors.push(format!(
                    "services[{i}].name: `{}` is not a DNS-1123 label: {why}",
                    s.name
                ));
            }
            if let Err(why) = crate::dns1123_label(&s.namespace) {
                errors.push(format!(
                    "services[{i}].namespace: `{}` is not a DNS-1123 label: {why}",
                    s.namespace
                ));
            }
            if s.min_replicas > s.max_replicas {
                errors.push(format!(
                    "services[{i}].min_replicas: {} is above max_replicas {}",
                    s.min_replicas, s.max_replicas
                ));
            }
            if s.max_replicas > crate::MAX_REPLICAS {
                errors.push(format!(
                    "services[{i}].max_replicas: expected at most {}",
                    crate::MAX_REPLICAS
                ));
            }
            for (j, url) in s.health_urls.iter().enumerate() {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    errors.push(format!("services[{i}].health_urls[{j}]: expected an http:// or https:// URL, got `{url}`"));
                }
            }
            for (j, cronjob) in s.cronjobs.iter().enumerate() {
                if let Err(why) = crate::dns1123_label(cronjob) {
                    errors.push(format!(
                        "services[{i}].cronjobs[{j}]: `{cronjob}` is not a DNS-1123 label: {why}"
                    ));
                }
                let earlier = self.services[..i]
                    .iter()
                    .flat_map(|o| o.cronjobs.iter())
                    .chain(s.cronjobs[..j].iter());
                if earlier.into_iter().any(|c| c == cronjob) {
                    errors.push(format!(
                        "services[{i}].cronjobs[{j}]: cronjob `{cronjob}` is declared twice"
                    ));
                }
            }
            if self.services[..i].iter().any(|o| o.name == s.name) {
                errors.push(format!(
                    "services[{i}].name: service `{}` is defined twice",
                    s.name
                ));
            }
        }
        errors
    }
}
