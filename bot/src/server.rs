//! The HTTP server of `oncall serve`: `/healthz` now; the Slack and Discord
//! adapters add their routes here.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Json;
use serde_json::json;

use crate::router::Router;

pub fn app(router: Router) -> axum::Router {
    axum::Router::new()
        .route("/healthz", get(healthz))
        .with_state(router)
}

/// Healthy when the database answers.
async fn healthz(State(router): State<Router>) -> (StatusCode, Json<serde_json::Value>) {
    match router.store().ping().await {
        Ok(()) => (
            StatusCode::OK,
            Json(json!({ "status": "ok", "database": "ok" })),
        ),
        Err(e) => {
            tracing::error!("health check: {e}");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "status": "unavailable", "database": "unreachable" })),
            )
        }
    }
}
