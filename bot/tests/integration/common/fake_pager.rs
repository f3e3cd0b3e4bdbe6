//! Fake paging providers over real HTTP on loopback, checking what the real
//! APIs require and folding by their dedup keys as they do:
//!
//! - PagerDuty Events API v2: `POST /v2/enqueue` with `routing_key`,
//!   `event_action` trigger/acknowledge/resolve, `dedup_key`, and for a
//!   trigger `payload.summary` (≤ 1024), `payload.source`,
//!   `payload.severity` (critical/error/warning/info); 202 or 400.
//! - Opsgenie Alert API: `POST /v2/alerts` (message ≤ 130, alias ≤ 512,
//!   priority P1–P5, responders with a type and a name or id, details of
//!   strings), `POST /v2/alerts/{alias}/acknowledge|close?identifierType=alias`,
//!   all with `Authorization: GenieKey <key>`; 202, 401 or 422.
//! - A Standard Webhooks receiver at `/hook`: `webhook-id`,
//!   `webhook-timestamp` (within 5 minutes) and `webhook-signature`
//!   (`v1,<base64 HMAC-SHA256 of id.timestamp.body>`) must verify; 401 else.
//!
//! Upcoming answers can be scripted (`fail_next`) to test retries.

#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

pub const ROUTING_KEY: &str = "R0UT1NGKEY0123456789abcdef012345";
pub const GENIE_KEY: &str = "11111111-2222-3333-4444-555555555555";
/// A Standard Webhooks secret: `whsec_` + base64 of the key bytes.
pub const WEBHOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[derive(Debug, Clone)]
pub struct Call {
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: Value,
    pub status: u16,
}

#[derive(Default)]
pub struct State_ {
    pub calls: Mutex<Vec<Call>>,
    /// Statuses (and a Retry-After) to answer before behaving normally.
    pub script: Mutex<VecDeque<(u16, Option<u64>)>>,
    /// Alerts by dedup key / alias: their state (triggered, acknowledged,
    /// resolved), as the provider folds events into them.
    pub pagerduty: Mutex<HashMap<String, String>>,
    pub opsgenie: Mutex<HashMap<String, String>>,
    /// Webhook deliveries by `webhook-id`, as a receiver dedups them.
    pub webhooks: Mutex<HashMap<String, Vec<Value>>>,
}

pub struct FakePager {
    pub url: String,
    pub state: Arc<State_>,
}

fn headers_map(h: &HeaderMap) -> HashMap<String, String> {
    h.iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect()
}

fn record(s: &State_, path: &str, h: &HeaderMap, body: Value, status: u16) {
    s.calls.lock().unwrap().push(Call {
        path: path.into(),
        headers: headers_map(h),
        body,
        status,
    });
}

/// A scripted answer, if one is queued.
fn scripted(s: &State_) -> Option<Response> {
    let (status, retry_after) = s.script.lock().unwrap().pop_front()?;
    let mut r = (
        StatusCode::from_u16(status).unwrap(),
        axum::Json(json!({"message": "scripted"})),
    )
        .into_response();
    if let Some(secs) = retry_after {
        r.headers_mut()
            .insert("retry-after", secs.to_string().parse().unwrap());
    }
    Some(r)
}

fn invalid(errors: Vec<String>) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"status": "invalid event", "message": "Event object is invalid", "errors": errors})),
    )
        .into_response()
}

async fn pagerduty(State(s): State<Arc<State_>>, h: HeaderMap, body: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if let Some(r) = scripted(&s) {
        record(&s, "/v2/enqueue", &h, body, r.status().as_u16());
        return r;
    }
    let mut errors = Vec::new();
    let str_of = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(String::from);
    if str_of(&body, "routing_key").as_deref() != Some(ROUTING_KEY) {
        errors.push("routing_key is wrong".into());
    }
    let action = str_of(&body, "event_action").unwrap_or_default();
    if !["trigger", "acknowledge", "resolve"].contains(&action.as_str()) {
        errors.push(format!("event_action {action:?}"));
    }
    let key = str_of(&body, "dedup_key").unwrap_or_default();
    if key.is_empty() || key.len() > 255 {
        errors.push("dedup_key is required for this test, at most 255".into());
    }
    if action == "trigger" {
        let p = &body["payload"];
        match str_of(p, "summary") {
            Some(s) if !s.is_empty() && s.chars().count() <= 1024 => {}
            _ => errors.push("payload.summary: required, at most 1024".into()),
        }
        if str_of(p, "source").is_none_or(|s| s.is_empty()) {
            errors.push("payload.source is required".into());
        }
        if !["critical", "error", "warning", "info"]
            .contains(&str_of(p, "severity").unwrap_or_default().as_str())
        {
            errors.push("payload.severity".into());
        }
    } else if !s.pagerduty.lock().unwrap().contains_key(&key) {
        // PagerDuty accepts these, but a follow-up of nothing is our bug.
        errors.push(format!("{action} of unknown dedup_key {key}"));
    }
    if !errors.is_empty() {
        record(&s, "/v2/enqueue", &h, body, 400);
        return invalid(errors);
    }
    {
        let mut alerts = s.pagerduty.lock().unwrap();
        let state = match action.as_str() {
            "trigger" => alerts.get(&key).cloned().unwrap_or("triggered".into()),
            "acknowledge" => "acknowledged".into(),
            _ => "resolved".into(),
        };
        alerts.insert(key.clone(), state);
    }
    record(&s, "/v2/enqueue", &h, body, 202);
    (
        StatusCode::ACCEPTED,
        axum::Json(json!({"status": "success", "message": "Event processed", "dedup_key": key})),
    )
        .into_response()
}

fn genie_ok(h: &HeaderMap) -> bool {
    h.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("GenieKey {GENIE_KEY}"))
}

fn accepted() -> Response {
    (
        StatusCode::ACCEPTED,
        axum::Json(json!({"result": "Request will be processed", "took": 0.01, "requestId": "00000000-0000-0000-0000-000000000001"})),
    )
        .into_response()
}

fn unprocessable(message: String) -> Response {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        axum::Json(json!({"message": message, "took": 0.0})),
    )
        .into_response()
}

async fn opsgenie_create(State(s): State<Arc<State_>>, h: HeaderMap, body: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if let Some(r) = scripted(&s) {
        record(&s, "/v2/alerts", &h, body, r.status().as_u16());
        return r;
    }
    if !genie_ok(&h) {
        record(&s, "/v2/alerts", &h, body, 401);
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"message": "Key format is not valid!"})),
        )
            .into_response();
    }
    let message = body["message"].as_str().unwrap_or("");
    let alias = body["alias"].as_str().unwrap_or("").to_string();
    let priority = body["priority"].as_str().unwrap_or("P3");
    let mut problems = Vec::new();
    if message.is_empty() || message.chars().count() > 130 {
        problems.push("message: required, at most 130 characters");
    }
    if alias.is_empty() || alias.len() > 512 {
        problems.push("alias: at most 512 characters (required by this test)");
    }
    if !["P1", "P2", "P3", "P4", "P5"].contains(&priority) {
        problems.push("priority must be P1..P5");
    }
    let responders_ok = body["responders"].as_array().is_some_and(|rs| {
        rs.iter().all(|r| {
            ["team", "user", "escalation", "schedule"].contains(&r["type"].as_str().unwrap_or(""))
                && (r.get("name").is_some() || r.get("id").is_some() || r.get("username").is_some())
        })
    });
    if !responders_ok {
        problems.push("responders: each needs a type and a name, id or username");
    }
    if let Some(details) = body.get("details") {
        if !details
            .as_object()
            .is_some_and(|d| d.values().all(Value::is_string))
        {
            problems.push("details: a map of strings");
        }
    }
    if !problems.is_empty() {
        record(&s, "/v2/alerts", &h, body, 422);
        return unprocessable(problems.join("; "));
    }
    s.opsgenie
        .lock()
        .unwrap()
        .entry(alias)
        .or_insert_with(|| "open".into());
    record(&s, "/v2/alerts", &h, body, 202);
    accepted()
}

async fn opsgenie_action(
    State(s): State<Arc<State_>>,
    Path((alias, action)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let path = format!("/v2/alerts/{alias}/{action}");
    if let Some(r) = scripted(&s) {
        record(&s, &path, &h, body, r.status().as_u16());
        return r;
    }
    if !genie_ok(&h) {
        record(&s, &path, &h, body, 401);
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"message": "unauthorized"})),
        )
            .into_response();
    }
    if q.get("identifierType").map(String::as_str) != Some("alias") {
        record(&s, &path, &h, body, 422);
        return unprocessable("identifierType=alias expected by this test".into());
    }
    let mut alerts = s.opsgenie.lock().unwrap();
    let Some(state) = alerts.get_mut(&alias) else {
        drop(alerts);
        record(&s, &path, &h, body, 404);
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"message": "Alert not found"})),
        )
            .into_response();
    };
    *state = match action.as_str() {
        "acknowledge" => "acknowledged".into(),
        "close" => "closed".into(),
        _ => state.clone(),
    };
    drop(alerts);
    record(&s, &path, &h, body, 202);
    accepted()
}

/// Verifies a Standard Webhooks delivery as a receiver would.
pub fn verify_webhook(h: &HeaderMap, body: &[u8]) -> Result<String, String> {
    let get = |k: &str| {
        h.get(k)
            .and_then(|v| v.to_str().ok())
            .map(String::from)
            .ok_or(format!("{k} missing"))
    };
    let id = get("webhook-id")?;
    let ts = get("webhook-timestamp")?;
    let sigs = get("webhook-signature")?;
    let ts_n: i64 = ts.parse().map_err(|_| "timestamp not a number")?;
    if (jiff::Timestamp::now().as_second() - ts_n).abs() > 300 {
        return Err("timestamp too far off".into());
    }
    let key = base64::engine::general_purpose::STANDARD
        .decode(WEBHOOK_SECRET.trim_start_matches("whsec_"))
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(body);
    let want = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    if sigs
        .split(' ')
        .any(|s| s.strip_prefix("v1,") == Some(want.as_str()))
    {
        Ok(id)
    } else {
        Err("signature does not verify".into())
    }
}

async fn webhook(State(s): State<Arc<State_>>, h: HeaderMap, body: Bytes) -> Response {
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if let Some(r) = scripted(&s) {
        record(&s, "/hook", &h, parsed, r.status().as_u16());
        return r;
    }
    match verify_webhook(&h, &body) {
        Ok(id) => {
            s.webhooks
                .lock()
                .unwrap()
                .entry(id)
                .or_default()
                .push(parsed.clone());
            record(&s, "/hook", &h, parsed, 204);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => {
            record(&s, "/hook", &h, parsed, 401);
            (StatusCode::UNAUTHORIZED, e).into_response()
        }
    }
}

impl FakePager {
    pub async fn start() -> FakePager {
        let state = Arc::new(State_::default());
        let app = axum::Router::new()
            .route("/v2/enqueue", post(pagerduty))
            .route("/v2/alerts", post(opsgenie_create))
            .route("/v2/alerts/{alias}/{action}", post(opsgenie_action))
            .route("/hook", post(webhook))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakePager { url, state }
    }

    pub fn calls(&self, path_prefix: &str) -> Vec<Call> {
        self.state
            .calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.path.starts_with(path_prefix))
            .cloned()
            .collect()
    }

    /// The next answers to any request, before behaving normally.
    pub fn fail_next(&self, answers: &[(u16, Option<u64>)]) {
        self.state
            .script
            .lock()
            .unwrap()
            .extend(answers.iter().copied());
    }

    pub fn pagerduty_alerts(&self) -> HashMap<String, String> {
        self.state.pagerduty.lock().unwrap().clone()
    }

    pub fn opsgenie_alerts(&self) -> HashMap<String, String> {
        self.state.opsgenie.lock().unwrap().clone()
    }

    pub fn webhook_deliveries(&self) -> HashMap<String, Vec<Value>> {
        self.state.webhooks.lock().unwrap().clone()
    }
}
