//! Simulated service health endpoints, for the demo's `health` command.
//!
//! `GET /sim/health/{namespace}/{deployment}/{path…}` answers like the
//! runbooks' services do: `200 {"status":"healthy"}` while the deployment has
//! available pods, `503 {"status":"unhealthy"}` when it has none, and on
//! `…/detailed` paths a `dependencies` object (seed 002's `database` and
//! `redis`). The annotation `sim.oncall.dev/unhealthy-dependency: redis` on a
//! deployment marks that dependency unhealthy.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use crate::api::Shared;
use crate::resources::DEPLOYMENTS;

pub const UNHEALTHY_DEPENDENCY: &str = "sim.oncall.dev/unhealthy-dependency";

pub async fn handle(
    State(store): State<Shared>,
    Path((ns, name, rest)): Path<(String, String, String)>,
) -> (StatusCode, Json<Value>) {
    let s = store.lock();
    let Some(d) = s.get(DEPLOYMENTS, &ns, &name) else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({ "status": "unknown", "error": "no such service" })),
        );
    };
    let available = d["status"]["availableReplicas"].as_i64().unwrap_or(0);
    let bad_dependency = d["metadata"]["annotations"][UNHEALTHY_DEPENDENCY]
        .as_str()
        .map(String::from);
    let up = available > 0;
    let mut body = json!({
        "status": if up { "healthy" } else { "unhealthy" },
        "timestamp": jiff::Timestamp::now().to_string(),
        "version": d["spec"]["template"]["spec"]["containers"][0]["image"].as_str().and_then(|i| i.rsplit(':').next()).unwrap_or("unknown"),
    });
    if rest.contains("detailed") {
        let mut deps = serde_json::Map::new();
        for dep in ["database", "redis"] {
            let healthy = up && bad_dependency.as_deref() != Some(dep);
            deps.insert(
                dep.into(),
                json!(if healthy { "healthy" } else { "unhealthy" }),
            );
        }
        if bad_dependency.is_some() && up {
            body["status"] = json!("degraded");
        }
        body["dependencies"] = Value::Object(deps);
    }
    let code = if up {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body))
}
