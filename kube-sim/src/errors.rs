//! Kubernetes-shaped errors: `Status` objects with the codes and reasons the
//! real API server uses, so clients' error handling is exercised for real.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::resources::ResourceType;

#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    /// The object the error is about, when there is one.
    pub details: Option<Box<(String, ResourceType)>>,
}

impl ApiError {
    pub fn not_found(rt: ResourceType, name: &str) -> Self {
        ApiError {
            code: 404,
            reason: "NotFound",
            message: format!("{} \"{}\" not found", rt.qualified(), name),
            details: Some(Box::new((name.to_string(), rt))),
        }
    }

    pub fn path_not_found(path: &str) -> Self {
        ApiError {
            code: 404,
            reason: "NotFound",
            message: format!("the server could not find the requested resource ({path})"),
            details: None,
        }
    }

    pub fn already_exists(rt: ResourceType, name: &str) -> Self {
        ApiError {
            code: 409,
            reason: "AlreadyExists",
            message: format!("{} \"{}\" already exists", rt.qualified(), name),
            details: Some(Box::new((name.to_string(), rt))),
        }
    }

    pub fn conflict(rt: ResourceType, name: &str) -> Self {
        ApiError {
            code: 409,
            reason: "Conflict",
            message: format!(
                "Operation cannot be fulfilled on {} \"{}\": the object has been modified; please apply your changes to the latest version and try again",
                rt.qualified(),
                name
            ),
            details: Some(Box::new((name.to_string(), rt))),
        }
    }

    pub fn invalid(rt: ResourceType, name: &str, detail: impl Into<String>) -> Self {
        ApiError {
            code: 422,
            reason: "Invalid",
            message: format!("{} \"{}\" is invalid: {}", rt.kind, name, detail.into()),
            details: Some(Box::new((name.to_string(), rt))),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError {
            code: 400,
            reason: "BadRequest",
            message: message.into(),
            details: None,
        }
    }

    pub fn unsupported_media(content_type: &str) -> Self {
        ApiError {
            code: 415,
            reason: "UnsupportedMediaType",
            message: format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {content_type:?})"),
            details: None,
        }
    }

    pub fn method_not_allowed() -> Self {
        ApiError {
            code: 405,
            reason: "MethodNotAllowed",
            message: "the server does not allow this method on the requested resource".into(),
            details: None,
        }
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        ApiError {
            code: 403,
            reason: "Forbidden",
            message: message.into(),
            details: None,
        }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        ApiError {
            code: 500,
            reason: "InternalError",
            message: message.into(),
            details: None,
        }
    }

    pub fn service_unavailable(message: impl Into<String>) -> Self {
        ApiError {
            code: 503,
            reason: "ServiceUnavailable",
            message: message.into(),
            details: None,
        }
    }

    pub fn status_body(&self) -> serde_json::Value {
        let mut details = serde_json::Map::new();
        if let Some(d) = &self.details {
            let (name, rt) = d.as_ref();
            details.insert("name".into(), json!(name));
            details.insert("group".into(), json!(rt.group));
            details.insert("kind".into(), json!(rt.plural));
        }
        json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "details": details,
            "code": self.code,
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (code, axum::Json(self.status_body())).into_response()
    }
}
