//! Kubernetes clients by kube context, so one bot can run many clusters.
//!
//! Standard config resolution: `KUBECONFIG` or `~/.kube/config` (a context per
//! cluster), or the in-cluster service account when there is no kubeconfig.
//! A catalog service that names a context uses that context's client; the
//! others use the default (current) one.

use std::collections::BTreeMap;

use kube::config::{KubeConfigOptions, Kubeconfig};

#[derive(Debug, thiserror::Error)]
pub enum ClustersError {
    #[error("kube context `{context}`: {message}")]
    Context { context: String, message: String },
    #[error("no Kubernetes configuration found (KUBECONFIG, ~/.kube/config or in-cluster): {0}")]
    NoConfig(String),
    #[error("service uses kube context `{0}`, which was not configured")]
    UnknownContext(String),
}

/// The clients oncall uses, by context name.
#[derive(Clone)]
pub struct Clusters {
    default: kube::Client,
    by_context: BTreeMap<String, kube::Client>,
}

impl Clusters {
    /// One client for everything (the demo, tests).
    pub fn single(client: kube::Client) -> Self {
        Clusters {
            default: client,
            by_context: BTreeMap::new(),
        }
    }

    /// The default client from standard resolution, plus one client per named
    /// context.
    pub async fn from_environment(contexts: &[String]) -> Result<Self, ClustersError> {
        let config = kube::Config::infer()
            .await
            .map_err(|e| ClustersError::NoConfig(e.to_string()))?;
        let default =
            kube::Client::try_from(config).map_err(|e| ClustersError::NoConfig(e.to_string()))?;
        let mut by_context = BTreeMap::new();
        if !contexts.is_empty() {
            let kubeconfig = Kubeconfig::read().map_err(|e| ClustersError::Context {
                context: contexts[0].clone(),
                message: e.to_string(),
            })?;
            for context in contexts {
                let options = KubeConfigOptions {
                    context: Some(context.clone()),
                    ..Default::default()
                };
                let config = kube::Config::from_custom_kubeconfig(kubeconfig.clone(), &options)
                    .await
                    .map_err(|e| ClustersError::Context {
                        context: context.clone(),
                        message: e.to_string(),
                    })?;
                let client =
                    kube::Client::try_from(config).map_err(|e| ClustersError::Context {
                        context: context.clone(),
                        message: e.to_string(),
                    })?;
                by_context.insert(context.clone(), client);
            }
        }
        Ok(Clusters {
            default,
            by_context,
        })
    }

    /// Every client: the default one (named `None`), then each context's.
    pub fn all(&self) -> Vec<(Option<&str>, &kube::Client)> {
        std::iter::once((None, &self.default))
            .chain(self.by_context.iter().map(|(c, k)| (Some(c.as_str()), k)))
            .collect()
    }

    /// The client for a context, or the default one.
    pub fn client(&self, context: Option<&str>) -> Result<&kube::Client, ClustersError> {
        match context {
            None => Ok(&self.default),
            Some(c) => self
                .by_context
                .get(c)
                .ok_or_else(|| ClustersError::UnknownContext(c.to_string())),
        }
    }
}

/// Whether a cluster's API server answers (`GET /version`) within
/// `timeout`: its version, or why not (never a credential: kube's errors
/// name the URL and the status, not the token).
pub async fn reachable(
    client: &kube::Client,
    timeout: std::time::Duration,
) -> Result<String, String> {
    match tokio::time::timeout(timeout, client.apiserver_version()).await {
        Ok(Ok(v)) => Ok(v.git_version),
        Ok(Err(e)) => {
            Err(crate::error::OpsError::from_kube("the API server version", e).to_string())
        }
        Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
    }
}
