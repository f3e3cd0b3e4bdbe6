//! The HTTP server of `oncall serve`: `/healthz`, `/metrics`, and the chat
//! adapters' routes (`/slack/*` when `SLACK_SIGNING_SECRET` is set).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Json;
use serde_json::json;

use std::sync::Arc;

use crate::discord::DiscordState;
use crate::metrics::Metrics;
use crate::router::Router;
use crate::slack::SlackState;

/// The whole HTTP surface: health, metrics, and each enabled adapter.
pub fn app(
    router: Router,
    metrics: Metrics,
    slack: Option<Arc<SlackState>>,
    discord: Option<Arc<DiscordState>>,
) -> axum::Router {
    let mut app = axum::Router::new()
        .route("/healthz", get(healthz))
        .with_state(router.clone())
        .route("/metrics", get(move || async move { metrics.render() }))
        .merge(crate::escalation::inbound::routes(router.clone()))
        .merge(crate::alerts::routes(router));
    if let Some(slack) = slack {
        app = app.merge(crate::slack::routes(slack));
    }
    if let Some(discord) = discord {
        app = app.merge(crate::discord::routes(discord));
    }
    app
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
