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

    /// Problems with the catalog, each naming its key.
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        for (i, s) in self.services.iter().enumerate() {
            if let Err(why) = crate::grammar::dns1123_label(&s.name) {
                errors.push(format!(
                    "services[{i}].name: `{}` is not a DNS-1123 label: {why}",
                    s.name
                ));
            }
            if let Err(why) = crate::grammar::dns1123_label(&s.namespace) {
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
            if s.max_replicas > crate::grammar::MAX_REPLICAS {
                errors.push(format!(
                    "services[{i}].max_replicas: expected at most {}",
                    crate::grammar::MAX_REPLICAS
                ));
            }
            for (j, url) in s.health_urls.iter().enumerate() {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    errors.push(format!("services[{i}].health_urls[{j}]: expected an http:// or https:// URL, got `{url}`"));
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
