//! Alerts in: Alertmanager's webhook opens (or joins) an incident for an
//! alert group that routes to paging, and starts its escalation.
//!
//! - [`config`]: `[alerts]`, the routes (pure); [`hours`]: business hours
//!   (pure); [`card`]: a group's one message in the channel, its
//!   enrichment and first-response buttons (posted by the courier).
//! - `POST /alerts/alertmanager` ([`routes`]): Alertmanager's webhook
//!   payload (version 4), authenticated by a bearer token from
//!   `ONCALL_ALERTMANAGER_TOKEN` (Alertmanager's `http_config.authorization`),
//!   compared in constant time. Without the variable the route is off (404),
//!   never open.
//!
//! - `POST /alerts/grafana`: Grafana's webhook contact point (version 1,
//!   the same shape), signed: `X-Grafana-Alerting-Signature` is the hex
//!   HMAC-SHA256 of `<timestamp>:<body>` with the secret in
//!   `ONCALL_GRAFANA_WEBHOOK_SECRET`, and the contact point's timestamp
//!   header (`X-Grafana-Alerting-Signature-Timestamp`, Unix seconds) must be
//!   within 5 minutes, against replay. Off without the variable.
//!
//! Alertmanager retries only on 5xx and drops every other answer, so the
//! answer is 2xx only after the delivery is committed, 503 when the store
//! can't take it, and 401 / 400 / 413 for requests that must not be
//! retried; none of those store anything or page anybody.

pub mod card;
pub mod config;
pub mod hours;

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::router::Router;
use crate::store::{AlertDelivery, CardTarget, IncomingAlert, NewIncident, OnResolved};

/// The variable holding the bearer token Alertmanager sends.
pub const TOKEN_ENV: &str = "ONCALL_ALERTMANAGER_TOKEN";
/// The variable holding Grafana's HMAC secret.
pub const GRAFANA_SECRET_ENV: &str = "ONCALL_GRAFANA_WEBHOOK_SECRET";
/// The header Grafana's contact point is set to put its timestamp in.
pub const GRAFANA_TIMESTAMP_HEADER: &str = "x-grafana-alerting-signature-timestamp";
/// How far a signed timestamp may be from now.
const MAX_SKEW_SECS: i64 = 300;

pub fn routes(router: Router) -> axum::Router {
    let limit = router.config().alerts.max_body_bytes;
    axum::Router::new()
        .route("/alerts/alertmanager", post(alertmanager))
        .route("/alerts/grafana", post(grafana))
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
    source: &str,
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
    let title = crate::reply::truncate(
        &match summary {
            Some(s) => format!("{alertname}: {s}"),
            None => alertname,
        },
        200,
    );
    let incidents = &config.incidents;
    // Messages go to the first platform incidents are announced on: the
    // route's channel there, else its announce channel.
    let card = incidents.announce.iter().next().map(|(p, c)| CardTarget {
        platform: p.clone(),
        channel: routed
            .as_ref()
            .and_then(|r| r.channel)
            .unwrap_or(c)
            .to_string(),
    });
    let service = routed
        .as_ref()
        .and_then(|r| r.service.clone())
        .filter(|s| router.catalog().get(s).is_some());
    let at = now.as_millisecond();
    let open_at_ms = match routed.as_ref().map(|r| r.page) {
        Some(config::PageWhen::BusinessHours) => {
            let opens = config.alerts.hours().next_open(now).as_millisecond();
            (opens > at).then_some(opens)
        }
        _ => None,
    };
    let delivery = AlertDelivery {
        source: source.into(),
        group_key: hook.group_key.clone(),
        route: routed.as_ref().map(|r| r.route.to_string()),
        alerts,
        at_ms: at,
        title: title.clone(),
        service: service.clone(),
        card,
        open_at_ms,
    };
    let Some(routed) =
        routed.filter(|r| r.page.pages() || r.page == config::PageWhen::BusinessHours)
    else {
        return Ok((delivery, None));
    };
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
    let services: Vec<String> = service.into_iter().collect();
    let (platform, channel) = incidents
        .announce
        .iter()
        .next()
        .map(|(p, c)| (p.clone(), c.clone()))
        .unwrap_or_else(|| ("cli".into(), "console".into()));
    let escalation_at_ms = match routed.page {
        config::PageWhen::After(d) => Some(at + d.as_millis() as i64),
        _ => None,
    };
    let new = NewIncident {
        title,
        severity: severity.name.clone(),
        services,
        at_ms: at,
        by: source.into(),
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

/// Whether Grafana's signature of `<timestamp>:<body>` verifies and the
/// timestamp is recent.
pub fn grafana_signature_ok(secret: &str, headers: &HeaderMap, body: &[u8], now_secs: i64) -> bool {
    use hmac::Mac;
    let get = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).unwrap_or("");
    let ts = get(GRAFANA_TIMESTAMP_HEADER);
    let Ok(ts_n) = ts.parse::<i64>() else {
        return false;
    };
    if now_secs
        .checked_sub(ts_n)
        .is_none_or(|d| d.abs() > MAX_SKEW_SECS)
    {
        return false;
    }
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key");
    mac.update(ts.as_bytes());
    mac.update(b":");
    mac.update(body);
    let want = mac.finalize().into_bytes();
    hex::decode(get("x-grafana-alerting-signature").trim())
        .is_ok_and(|got| subtle::ConstantTimeEq::ct_eq(&got[..], &want[..]).into())
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
    receive(&router, "alertmanager", &body).await
}

async fn grafana(
    State(router): State<Router>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, Json<Value>) {
    let Some(secret) = std::env::var(GRAFANA_SECRET_ENV)
        .ok()
        .filter(|t| !t.is_empty())
    else {
        return refuse(
            StatusCode::NOT_FOUND,
            "Grafana intake is off: ONCALL_GRAFANA_WEBHOOK_SECRET is not set",
        );
    };
    // Replay is judged on the wall clock, whatever clock the router runs.
    if !grafana_signature_ok(&secret, &headers, &body, jiff::Timestamp::now().as_second()) {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "a valid, recent signature is required",
        );
    }
    receive(&router, "grafana", &body).await
}

/// Parses, plans and stores one delivery; the answer the sender gets.
async fn receive(router: &Router, source: &str, body: &[u8]) -> (StatusCode, Json<Value>) {
    let hook: Webhook = match serde_json::from_slice(body) {
        Ok(h) => h,
        Err(e) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                &format!("not an alert webhook: {e}"),
            )
        }
    };
    let (delivery, open) = match plan(router, source, &hook, router.clock().now()) {
        Ok(p) => p,
        Err(e) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                &format!("not an alert webhook: {e}"),
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
                "{source} delivery"
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
            tracing::error!("{source} delivery not stored: {e}");
            refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "the store is unavailable; retry",
            )
        }
    }
}

/// The runbooks' alert rules (`deploy/prometheus/runbook-rules.yml`),
/// embedded so the demo can fire them anywhere.
pub const RUNBOOK_RULES: &str = include_str!("../../../deploy/prometheus/runbook-rules.yml");

/// The demo's `:alert NAME [resolve]`: a runbook rule fires (or resolves)
/// as Alertmanager would deliver it, through the same plan and store.
/// `starts_at` is the firing's start, so its resolve is the same alert.
pub async fn demo_alert(
    router: &Router,
    name: &str,
    resolved: bool,
    starts_at: &str,
) -> Result<String, String> {
    let rules: serde_yaml::Value =
        serde_yaml::from_str(RUNBOOK_RULES).map_err(|e| format!("the embedded rules: {e}"))?;
    let rule = rules["groups"]
        .as_sequence()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_sequence().into_iter().flatten())
        .find(|r| {
            r["alert"]
                .as_str()
                .is_some_and(|a| a.eq_ignore_ascii_case(name))
        });
    let Some(rule) = rule else {
        let mut names: Vec<String> = rules["groups"]
            .as_sequence()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_sequence().into_iter().flatten())
            .filter_map(|r| r["alert"].as_str().map(String::from))
            .collect();
        names.sort();
        names.dedup();
        return Err(format!(
            "no runbook rule `{name}`; one of {}",
            names.join(", ")
        ));
    };
    let alertname = rule["alert"].as_str().unwrap_or(name).to_string();
    let mut labels: BTreeMap<String, String> =
        serde_yaml::from_value(rule["labels"].clone()).unwrap_or_default();
    labels.insert("alertname".into(), alertname.clone());
    let annotations: BTreeMap<String, String> =
        serde_yaml::from_value(rule["annotations"].clone()).unwrap_or_default();
    let group_key = format!("{{}}:{{alertname=\"{alertname}\"}}");
    let hook = Webhook {
        version: "4".into(),
        group_key: group_key.clone(),
        status: if resolved { "resolved" } else { "firing" }.into(),
        receiver: "oncall".into(),
        group_labels: BTreeMap::from([("alertname".to_string(), alertname.clone())]),
        common_labels: labels.clone(),
        common_annotations: annotations.clone(),
        external_url: String::new(),
        truncated_alerts: 0,
        alerts: vec![Alert {
            status: if resolved { "resolved" } else { "firing" }.into(),
            labels,
            annotations,
            starts_at: starts_at.to_string(),
            ends_at: String::new(),
            generator_url: String::new(),
            fingerprint: format!("demo-{}", alertname.to_ascii_lowercase()),
        }],
    };
    let (delivery, open) = plan(router, "alertmanager", &hook, router.clock().now())?;
    let on_resolved = match router.config().alerts.on_resolved.as_str() {
        "resolve" => OnResolved::Resolve,
        _ => OnResolved::Mitigate,
    };
    let r = router
        .store()
        .receive_alerts(&delivery, open.as_ref(), on_resolved)
        .await
        .map_err(|e| e.to_string())?;
    router.wake_escalation();
    let route = delivery.route.unwrap_or_else(|| "no route".into());
    Ok(match (resolved, r.incident_id, r.opened) {
        (false, Some(id), true) => format!(
            "{alertname} fires (route {route}): incident {id} opened; its escalation starts.\n"
        ),
        (false, Some(id), false) => {
            format!("{alertname} fires (route {route}): it joins incident {id}.\n")
        }
        (false, None, _) => {
            format!("{alertname} fires (route {route}): kept, nobody paged (`alerts` lists it).\n")
        }
        (true, Some(id), _) if r.all_resolved => {
            format!("{alertname} resolved: incident {id}'s escalation stopped; it is mitigated.\n")
        }
        (true, _, _) => format!("{alertname} resolved.\n"),
    })
}
