//! Alerts in: Alertmanager's webhook opens (or joins) an incident for an
//! alert group that routes to paging, and starts its escalation.
//!
//! - [`config`]: `[alerts]`, the routes (pure).
//! - `POST /alerts/alertmanager` ([`routes`]): Alertmanager's webhook
//!   payload (version 4), authenticated by a bearer token from
//!   `ONCALL_ALERTMANAGER_TOKEN` (Alertmanager's `http_config.authorization`),
//!   compared in constant time. Without the variable the route is off (404),
//!   never open.
//!
//! Alertmanager retries only on 5xx and drops every other answer, so the
//! answer is 2xx only after the delivery is committed, 503 when the store
//! can't take it, and 401 / 400 / 413 for requests that must not be
//! retried; none of those store anything or page anybody.

pub mod config;

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::router::Router;
use crate::store::{AlertDelivery, IncomingAlert, NewIncident, OnResolved};

/// The variable holding the bearer token Alertmanager sends.
pub const TOKEN_ENV: &str = "ONCALL_ALERTMANAGER_TOKEN";

pub fn routes(router: Router) -> axum::Router {
    let limit = router.config().alerts.max_body_bytes;
    axum::Router::new()
        .route("/alerts/alertmanager", post(alertmanager))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(router)
}

/// Alertmanager's webhook body (version 4); unknown fields are ignored.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Webhook {
    #[serde(default)]
    pub version: String,
    pub group_key: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub receiver: String,
    #[serde(default)]
    pub group_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub common_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub common_annotations: BTreeMap<String, String>,
    #[serde(default, rename = "externalURL")]
    pub external_url: String,
    #[serde(default)]
    pub truncated_alerts: u64,
    #[serde(default)]
    pub alerts: Vec<Alert>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    pub status: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    pub starts_at: String,
    #[serde(default)]
    pub ends_at: String,
    #[serde(default, rename = "generatorURL")]
    pub generator_url: String,
    #[serde(default)]
    pub fingerprint: String,
}

fn refuse(status: StatusCode, message: &str) -> (StatusCode, Json<Value>) {
    (
        status,
        Json(json!({ "status": "refused", "message": message })),
    )
}

fn token_ok(headers: &HeaderMap, token: &str) -> bool {
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    subtle::ConstantTimeEq::ct_eq(given.as_bytes(), token.as_bytes()).into()
}

/// The delivery as the store takes it, and the incident to open if it
/// pages; `Err` names what is malformed.
pub fn plan(
    router: &Router,
    hook: &Webhook,
    now: jiff::Timestamp,
) -> Result<(AlertDelivery, Option<NewIncident>), String> {
    if hook.group_key.is_empty() {
        return Err("groupKey is empty".into());
    }
    let mut alerts = Vec::with_capacity(hook.alerts.len());
    for a in &hook.alerts {
        let firing = match a.status.as_str() {
            "firing" => true,
            "resolved" => false,
            other => return Err(format!("alert status {other:?}")),
        };
        if a.starts_at.parse::<jiff::Timestamp>().is_err() {
            return Err(format!("startsAt {:?} is not a time", a.starts_at));
        }
        let alertname = a
            .labels
            .get("alertname")
            .cloned()
            .unwrap_or_else(|| "alert".into());
        // Alertmanager always sends a fingerprint; without one, the labels
        // are the identity.
        let fingerprint = match a.fingerprint.is_empty() {
            false => a.fingerprint.clone(),
            true => serde_json::to_string(&a.labels).unwrap_or_default(),
        };
        alerts.push(IncomingAlert {
            fingerprint,
            starts_at: a.starts_at.clone(),
            alertname,
            firing,
            labels: a.labels.clone(),
            annotations: a.annotations.clone(),
            generator_url: (!a.generator_url.is_empty()).then(|| a.generator_url.clone()),
        });
    }
    let config = router.config();
    // The group is routed by its first alert's labels (with the common ones).
    let mut labels = hook.common_labels.clone();
    if let Some(first) = hook.alerts.first() {
        labels.extend(first.labels.clone());
    }
    let routed = config.alerts.route(&labels);
    let delivery = AlertDelivery {
        source: "alertmanager".into(),
        group_key: hook.group_key.clone(),
        route: routed.as_ref().map(|r| r.route.to_string()),
        alerts,
        at_ms: now.as_millisecond(),
    };
    let Some(routed) = routed.filter(|r| r.page.pages()) else {
        return Ok((delivery, None));
    };
    let incidents = &config.incidents;
    let severity = routed
        .severity
        .as_deref()
        .and_then(|s| incidents.severity(s))
        .or_else(|| incidents.severities.last())
        .ok_or("no severities are configured")?;
    let policy = routed
        .escalation
        .or(severity.escalation.as_deref())
        .and_then(|p| config.escalation.snapshot(p));
    let alertname = labels
        .get("alertname")
        .cloned()
        .unwrap_or_else(|| "alert".into());
    let summary = hook
        .common_annotations
        .get("summary")
        .or_else(|| {
            hook.alerts
                .first()
                .and_then(|a| a.annotations.get("summary"))
        })
        .cloned();
    let title = match summary {
        Some(s) => format!("{alertname}: {s}"),
        None => alertname,
    };
    let services: Vec<String> = routed
        .service
        .filter(|s| router.catalog().get(s).is_some())
        .into_iter()
        .collect();
    let (platform, channel) = incidents
        .announce
        .iter()
        .next()
        .map(|(p, c)| (p.clone(), c.clone()))
        .unwrap_or_else(|| ("cli".into(), "console".into()));
    let at = now.as_millisecond();
    let escalation_at_ms = match routed.page {
        config::PageWhen::After(d) => Some(at + d.as_millis() as i64),
        _ => None,
    };
    let new = NewIncident {
        title: crate::reply::truncate(&title, 200),
        severity: severity.name.clone(),
        services,
        at_ms: at,
        by: "alertmanager".into(),
        platform,
        workspace: None,
        declared_in: channel,
        next_reminder_at_ms: incidents.next_reminder(&severity.name, at),
        commander: None,
        own_channel: incidents.own_channels,
        escalation: policy,
        escalation_at_ms,
    };
    Ok((delivery, Some(new)))
}

async fn alertmanager(
    State(router): State<Router>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, Json<Value>) {
    let Some(token) = std::env::var(TOKEN_ENV).ok().filter(|t| !t.is_empty()) else {
        return refuse(
            StatusCode::NOT_FOUND,
            "alert intake is off: ONCALL_ALERTMANAGER_TOKEN is not set",
        );
    };
    if !token_ok(&headers, &token) {
        return refuse(StatusCode::UNAUTHORIZED, "a valid bearer token is required");
    }
    let hook: Webhook = match serde_json::from_slice(&body) {
        Ok(h) => h,
        Err(e) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                &format!("not an Alertmanager webhook: {e}"),
            )
        }
    };
    let (delivery, open) = match plan(&router, &hook, router.clock().now()) {
        Ok(p) => p,
        Err(e) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                &format!("not an Alertmanager webhook: {e}"),
            )
        }
    };
    let on_resolved = match router.config().alerts.on_resolved.as_str() {
        "resolve" => OnResolved::Resolve,
        _ => OnResolved::Mitigate,
    };
    match router
        .store()
        .receive_alerts(&delivery, open.as_ref(), on_resolved)
        .await
    {
        Ok(r) => {
            if r.opened || r.all_resolved || r.newly_firing > 0 {
                router.wake_escalation();
            }
            tracing::info!(
                group = %hook.group_key,
                alerts = hook.alerts.len(),
                incident = ?r.incident_id,
                opened = r.opened,
                "alertmanager delivery"
            );
            (
                StatusCode::OK,
                Json(json!({
                    "status": "ok",
                    "incident": r.incident_id,
                    "opened": r.opened,
                    "newly_firing": r.newly_firing,
                    "newly_resolved": r.newly_resolved,
                })),
            )
        }
        Err(e) => {
            // 503: Alertmanager retries it.
            tracing::error!("alertmanager delivery not stored: {e}");
            refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "the store is unavailable; retry",
            )
        }
    }
}
