//! The HTTP server of `oncall serve`: `/healthz` (alive), `/readyz` (ready
//! for traffic), `/metrics`, and the chat adapters' and webhooks' routes.
//!
//! `/metrics` can be moved to its own listener (`server.metrics_listen`) so
//! a NetworkPolicy can expose the chat routes to the world and the metrics
//! only to Prometheus; then [`metrics_app`] serves it, with the probes.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Json;
use serde_json::{json, Value};

use std::sync::Arc;

use crate::discord::DiscordState;
use crate::router::Router;
use crate::slack::SlackState;

/// The whole HTTP surface: probes, metrics (unless they have their own
/// listener), and each enabled adapter.
pub fn app(
    router: Router,
    with_metrics: bool,
    slack: Option<Arc<SlackState>>,
    discord: Option<Arc<DiscordState>>,
) -> axum::Router {
    let mut app = probes(router.clone())
        .merge(crate::escalation::inbound::routes(router.clone()))
        .merge(crate::alerts::routes(router.clone()));
    if with_metrics {
        app = app.merge(metrics_routes(router));
    }
    if let Some(slack) = slack {
        app = app.merge(crate::slack::routes(slack));
    }
    if let Some(discord) = discord {
        app = app.merge(crate::discord::routes(discord));
    }
    app
}

/// What the separate metrics listener serves: `/metrics` and the probes.
pub fn metrics_app(router: Router) -> axum::Router {
    probes(router.clone()).merge(metrics_routes(router))
}

fn probes(router: Router) -> axum::Router {
    axum::Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(router)
}

fn metrics_routes(router: Router) -> axum::Router {
    axum::Router::new()
        .route("/metrics", get(metrics))
        .with_state(router)
}

async fn metrics(
    State(router): State<Router>,
) -> ([(axum::http::HeaderName, &'static str); 1], String) {
    let now_ms = router.clock().now().as_millisecond();
    let text = router.metrics().scrape(router.store(), now_ms).await;
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
}

/// Alive: the process answers and its database answers a read. (A liveness
/// probe that also failed on an unreachable cluster would restart a healthy
/// bot in a loop while the API server is down.)
async fn healthz(State(router): State<Router>) -> (StatusCode, Json<Value>) {
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

/// Ready: the database takes a write and every configured cluster's API
/// server answers, each within `server.ready_timeout`. A 503 names which
/// part failed and why, in `failed` and per part.
pub async fn readyz(State(router): State<Router>) -> (StatusCode, Json<Value>) {
    let (status, body) = readiness(&router).await;
    if status != StatusCode::OK {
        tracing::warn!(report = %body, "not ready");
    }
    (status, Json(body))
}

/// The readiness report, also used by `oncall check`.
pub async fn readiness(router: &Router) -> (StatusCode, Value) {
    let timeout = router.config().server.ready_timeout;
    let now_ms = router.clock().now().as_millisecond();
    let database = async {
        match tokio::time::timeout(timeout, router.store().check_writable(now_ms)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("not writable: {e}")),
            Err(_) => Err(format!(
                "not writable: no write committed within {} ms (locked or stuck)",
                timeout.as_millis()
            )),
        }
    };
    let clusters = futures::future::join_all(router.clusters().all().into_iter().map(
        |(context, client)| async move {
            let name = context.unwrap_or("default").to_string();
            (name, oncall_ops::reachable(client, timeout).await)
        },
    ));
    let (database, clusters) = tokio::join!(database, clusters);
    let mut failed = Vec::new();
    let database_json = match &database {
        Ok(()) => json!("ok"),
        Err(e) => {
            failed.push("database".to_string());
            json!(e)
        }
    };
    let mut clusters_json = serde_json::Map::new();
    for (name, result) in clusters {
        let v = match result {
            Ok(version) => json!({ "status": "ok", "version": version }),
            Err(e) => {
                failed.push(format!("cluster {name}"));
                json!({ "status": "unreachable", "error": e })
            }
        };
        clusters_json.insert(name, v);
    }
    let status = if failed.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    // Followers are ready too: they serve requests; only the leader runs
    // the engine. The role is reported, not judged.
    let election = match router.role() {
        None => json!({ "role": "single" }),
        Some(crate::election::Role::Leader) => json!({ "role": "leader" }),
        Some(crate::election::Role::Follower { leader }) => {
            json!({ "role": "follower", "leader": leader })
        }
        Some(crate::election::Role::Candidate) => json!({ "role": "candidate" }),
    };
    let body = json!({
        "status": if failed.is_empty() { "ready" } else { "not ready" },
        "failed": failed,
        "database": database_json,
        "store": router.store().kind(),
        "clusters": clusters_json,
        "election": election,
    });
    (status, body)
}
