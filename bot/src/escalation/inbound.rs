//! Acknowledgements from the paging providers: someone acknowledged the
//! page in PagerDuty or Opsgenie, so the incident is acknowledged here and
//! its escalation stops, as if they had pressed the button in chat.
//!
//! - `POST /webhooks/pagerduty`: a V3 webhook subscription. Its
//!   `X-PagerDuty-Signature` (`v1=<hex HMAC-SHA256 of the body>`, several
//!   comma-separated during a secret rotation) must verify against the
//!   secret in `escalation.pagerduty.webhook_secret_env`.
//!   `incident.acknowledged` and `incident.resolved` carry our page key as
//!   `data.incident_key` (it was the event's `dedup_key`).
//! - `POST /webhooks/opsgenie`: an outgoing webhook integration, which
//!   Opsgenie cannot sign; it sends the token of
//!   `escalation.opsgenie.webhook_token_env` in the `X-Oncall-Token` header
//!   (a custom header of the integration). `Acknowledge` and `Close` carry
//!   our page key as `alert.alias`.
//!
//! Fails closed: no secret configured, a bad signature or token, a key that
//! is not one of our pages: nothing changes. Provider users are not oncall
//! principals, so the acknowledgement is recorded as
//! `pagerduty:<who>` / `opsgenie:<who>`; being paged is the permission.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::router::Router;
use crate::store::{IncidentChange, NewEvent};

/// Larger bodies are refused before they are read.
const MAX_BODY: usize = 256 * 1024;

pub fn routes(router: Router) -> axum::Router {
    axum::Router::new()
        .route("/webhooks/pagerduty", post(pagerduty))
        .route("/webhooks/opsgenie", post(opsgenie))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(router)
}

fn secret(env: Option<&str>) -> Option<String> {
    std::env::var(env?).ok().filter(|s| !s.is_empty())
}

/// Whether one of the header's `v1=` signatures is the body's.
pub fn pagerduty_signature_ok(secret: &str, header: &str, body: &[u8]) -> bool {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    let want = mac.finalize().into_bytes();
    header.split(',').any(|sig| {
        sig.trim()
            .strip_prefix("v1=")
            .and_then(|h| hex::decode(h).ok())
            .is_some_and(|got| subtle::ConstantTimeEq::ct_eq(&got[..], &want[..]).into())
    })
}

/// The incident a page key is about (`page:<incident>:…`,
/// `adhoc:<request>:…` written for an incident).
async fn incident_of_key(router: &Router, key: &str) -> Option<i64> {
    if !(key.starts_with("page:") || key.starts_with("adhoc:")) {
        return None;
    }
    router.store().outbox_incident(key).await.ok().flatten()
}

/// Acknowledges the incident a page key belongs to; what happened.
async fn acknowledge(
    router: &Router,
    key: &str,
    who: &str,
    how: &str,
) -> (StatusCode, &'static str) {
    let Some(incident) = incident_of_key(router, key).await else {
        // Not ours (or long gone): accepted, so the provider stops retrying.
        return (StatusCode::ACCEPTED, "not an oncall page");
    };
    let event = NewEvent {
        at_ms: router.clock().now().as_millisecond(),
        actor: who.to_string(),
        kind: "acknowledged",
        text: format!("acknowledged ({how})"),
        invocation_id: None,
    };
    match router
        .store()
        .change_incident(incident, &IncidentChange::Acknowledge, &event)
        .await
    {
        Ok(Some(_)) => {
            tracing::info!(incident, %who, "acknowledged through {how}");
            router.wake_escalation();
            (StatusCode::OK, "acknowledged")
        }
        Ok(None) => (StatusCode::OK, "already acknowledged or resolved"),
        Err(e) => {
            tracing::error!("acknowledgement from {how}: {e}");
            (StatusCode::SERVICE_UNAVAILABLE, "the store is unavailable")
        }
    }
}

/// A provider's user as an actor: `pagerduty:Jane Doe` → safe characters.
fn actor(provider: &str, who: &str) -> String {
    let who: String = who
        .chars()
        .filter(|c| c.is_alphanumeric() || " .-_@".contains(*c))
        .take(64)
        .collect();
    match who.trim() {
        "" => provider.to_string(),
        w => format!("{provider}:{w}"),
    }
}

async fn pagerduty(
    State(router): State<Router>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    let config = &router.config().escalation.pagerduty;
    let Some(secret) = secret(config.webhook_secret_env.as_deref()) else {
        return (
            StatusCode::NOT_FOUND,
            "PagerDuty webhooks are not configured",
        );
    };
    let signature = headers
        .get("x-pagerduty-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !pagerduty_signature_ok(&secret, signature, &body) {
        return (StatusCode::UNAUTHORIZED, "bad signature");
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "not JSON");
    };
    let event = &v["event"];
    let kind = event["event_type"].as_str().unwrap_or("");
    if !matches!(kind, "incident.acknowledged" | "incident.resolved") {
        return (StatusCode::ACCEPTED, "ignored");
    }
    let Some(key) = event["data"]["incident_key"].as_str() else {
        return (StatusCode::ACCEPTED, "no incident_key");
    };
    let who = actor(
        "pagerduty",
        event["agent"]["summary"].as_str().unwrap_or(""),
    );
    let how = if kind == "incident.acknowledged" {
        "in PagerDuty"
    } else {
        "resolved in PagerDuty"
    };
    acknowledge(&router, key, &who, how).await
}

async fn opsgenie(
    State(router): State<Router>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    let config = &router.config().escalation.opsgenie;
    let Some(token) = secret(config.webhook_token_env.as_deref()) else {
        return (
            StatusCode::NOT_FOUND,
            "Opsgenie webhooks are not configured",
        );
    };
    let given = headers
        .get("x-oncall-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !bool::from(subtle::ConstantTimeEq::ct_eq(
        given.as_bytes(),
        token.as_bytes(),
    )) {
        return (StatusCode::UNAUTHORIZED, "bad token");
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "not JSON");
    };
    let action = v["action"].as_str().unwrap_or("");
    if !matches!(action, "Acknowledge" | "Close") {
        return (StatusCode::ACCEPTED, "ignored");
    }
    let Some(key) = v["alert"]["alias"].as_str() else {
        return (StatusCode::ACCEPTED, "no alias");
    };
    let who = actor("opsgenie", v["alert"]["username"].as_str().unwrap_or(""));
    let how = if action == "Acknowledge" {
        "in Opsgenie"
    } else {
        "closed in Opsgenie"
    };
    acknowledge(&router, key, &who, how).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pagerduty_signatures_verify_any_of_several_and_nothing_else() {
        let body = br#"{"event":{"id":"01"}}"#;
        let mut mac = Hmac::<Sha256>::new_from_slice(b"s3cret").unwrap();
        mac.update(body);
        let good = format!("v1={}", hex::encode(mac.finalize().into_bytes()));
        assert!(pagerduty_signature_ok("s3cret", &good, body));
        assert!(pagerduty_signature_ok(
            "s3cret",
            &format!("v1=00ff,{good}"),
            body
        ));
        assert!(!pagerduty_signature_ok("other", &good, body));
        assert!(!pagerduty_signature_ok("s3cret", &good, b"{}"));
        assert!(!pagerduty_signature_ok("s3cret", "", body));
        assert!(!pagerduty_signature_ok(
            "s3cret",
            &good.replace("v1=", "v0="),
            body
        ));
    }

    #[test]
    fn provider_users_become_safe_actors() {
        assert_eq!(actor("pagerduty", "Jane Doe"), "pagerduty:Jane Doe");
        assert_eq!(actor("opsgenie", "<@U1> `x`\n"), "opsgenie:@U1 x");
        assert_eq!(actor("opsgenie", ""), "opsgenie");
    }
}
