//! Kubernetes failures as one clear sentence each.
//!
//! Users in a chat channel should never see a raw API dump. A 404 says what
//! was not found, a 403 says that the bot's own service account lacks a
//! permission (not the user), a 409 that someone changed the object at the
//! same time, a 422 what Kubernetes rejected, and an unreachable API server
//! says so.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpsError {
    #[error("{what} was not found")]
    NotFound { what: String },
    #[error("oncall's Kubernetes account is not allowed to {what} ({message}); ask a cluster admin to extend its RBAC")]
    Forbidden { what: String, message: String },
    #[error(
        "{what} was changed by someone else at the same moment; nothing was applied, try again"
    )]
    Conflict { what: String },
    #[error("Kubernetes rejected the change to {what}: {message}")]
    Invalid { what: String, message: String },
    #[error("the Kubernetes API did not answer within {}s while reading or changing {what}", after.as_secs())]
    Timeout { what: String, after: Duration },
    #[error("the Kubernetes API cannot be reached ({message})")]
    Unreachable { message: String },
    #[error("{message}")]
    Refused { message: String },
    #[error("Kubernetes answered {code} for {what}: {message}")]
    Api {
        what: String,
        code: u16,
        message: String,
    },
}

impl OpsError {
    pub fn from_kube(what: &str, e: kube::Error) -> OpsError {
        let what = what.to_string();
        match e {
            kube::Error::Api(status) => {
                let message = first_sentence(&status.message);
                match status.code {
                    404 => OpsError::NotFound { what },
                    403 => OpsError::Forbidden { what, message },
                    409 if status.reason == "AlreadyExists" => OpsError::Invalid { what, message },
                    409 => OpsError::Conflict { what },
                    400 | 422 => OpsError::Invalid { what, message },
                    code => OpsError::Api {
                        what,
                        code,
                        message,
                    },
                }
            }
            kube::Error::HyperError(e) => OpsError::Unreachable {
                message: first_sentence(&e.to_string()),
            },
            kube::Error::Service(e) => OpsError::Unreachable {
                message: first_sentence(&e.to_string()),
            },
            other => OpsError::Api {
                what,
                code: 0,
                message: first_sentence(&other.to_string()),
            },
        }
    }

    /// A short machine label for the history.
    pub fn kind(&self) -> &'static str {
        match self {
            OpsError::NotFound { .. } => "not_found",
            OpsError::Forbidden { .. } => "forbidden",
            OpsError::Conflict { .. } => "conflict",
            OpsError::Invalid { .. } => "invalid",
            OpsError::Timeout { .. } => "timeout",
            OpsError::Unreachable { .. } => "unreachable",
            OpsError::Refused { .. } => "refused",
            OpsError::Api { .. } => "api",
        }
    }
}

/// Keeps error text to one line of reasonable length.
fn first_sentence(s: &str) -> String {
    let line = s.lines().next().unwrap_or("").trim();
    if line.chars().count() > 240 {
        let cut: String = line.chars().take(240).collect();
        format!("{cut}…")
    } else {
        line.to_string()
    }
}
