//! `silence` and `unsilence`: Alertmanager silences through its API v2
//! (`POST /api/v2/silences`, `DELETE /api/v2/silence/{id}`), at the base
//! URL in `alerts.alertmanager_url`. An alert's name silences every alert
//! of that name; a fingerprint silences that one alert (all its labels).
//! Only what is firing here can be named, so a typo silences nothing. The
//! silence is kept in the store (for `unsilence <alert>`) and goes on the
//! alert's incident's timeline.
//!
//! `alerts run <id>`, what an alert's first-response button sends, runs the
//! button's command in its place, once (its own history row, then the
//! command's).

use std::collections::BTreeMap;

use oncall_grammar::{AlertsRun, Silence, Unsilence};
use serde_json::{json, Value};

use super::incident::store_failed;
use super::{Context, Handle, Refusal};
use crate::incidents::clock_time;
use crate::model::Handled;
use crate::reply::{Outcome, Reply};
use crate::store::{ActionClaim, NewEvent, SilenceRecord};

impl Handle for AlertsRun {
    /// Claims the button for this person (once; a repeat of this very
    /// request claims it again), then runs its command in this request's
    /// place, through the same parse, policy, approval and history as if
    /// typed, on the button's incident's timeline. A refusal by policy (or
    /// bad input) releases the button for someone who may.
    async fn handle(&self, cx: &Context<'_>) -> Result<Handled, Refusal> {
        let store = cx.incident_store();
        let inv = cx.inv;
        let action = i64::from(self.action);
        let key = inv.idempotency_key.clone().unwrap_or_else(|| {
            format!(
                "{}:{}:alerts-run-{action}",
                inv.principal,
                inv.received_at.as_nanosecond()
            )
        });
        let claim = store
            .claim_alert_action(action, &inv.principal.to_string(), &key, cx.now.as_millisecond())
            .await
            .map_err(store_failed)?;
        let (command, incident) = match claim {
            ActionClaim::Claimed {
                command,
                incident_id,
            } => (command, incident_id),
            ActionClaim::Used { by, at_ms } => {
                return Ok(Handled::info(
                    Reply::new(Outcome::Info, "This first response has already run").text(
                        format!(
                            "{by} pressed it at {}; each button runs once.",
                            clock_time(at_ms)
                        ),
                    ),
                ))
            }
            ActionClaim::Expired => {
                return Ok(Handled::failed(
                    "This button has expired",
                    "First-response buttons work for a while after the alert; type the command if it is still needed.",
                ))
            }
            ActionClaim::Closed => {
                return Ok(Handled::failed(
                    "Its incident is resolved",
                    "The button no longer runs; type the command if it is still needed.",
                ))
            }
            ActionClaim::NotFound => {
                return Ok(Handled::failed(
                    format!("No first-response button {action}"),
                    "Buttons come with an alert's message in the channel.",
                ))
            }
        };
        let reply = cx
            .run_in_place(format!("{command} --incident {incident}"), format!("{key}:run"))
            .await;
        let kept = match reply.outcome {
            Outcome::Denied | Outcome::Invalid => None,
            other => Some(other.label()),
        };
        if let Err(e) = store.settle_alert_action(action, &key, kept).await {
            tracing::error!(action, "could not settle a first-response button: {e}");
        }
        let summary = format!("button {action}: `{command}` → {}", reply.outcome.label());
        Ok(Handled {
            reply,
            summary: Some(summary),
            error: None,
            decision: None,
        })
    }
}

/// The base URL and the request's bearer token, or the reply saying why not.
fn alertmanager(cx: &Context<'_>) -> Result<(String, Option<String>), Refusal> {
    let config = cx.alerts_config();
    let Some(url) = config.alertmanager_url.as_deref() else {
        return Err(Handled::failed(
            "Silences are not set up",
            "set `alerts.alertmanager_url` to Alertmanager's address",
        )
        .into());
    };
    let token = config
        .alertmanager_token_env
        .as_deref()
        .and_then(|v| std::env::var(v).ok())
        .filter(|t| !t.is_empty());
    Ok((url.trim_end_matches('/').to_string(), token))
}

fn request(
    cx: &Context<'_>,
    method: reqwest::Method,
    url: String,
    token: &Option<String>,
) -> reqwest::RequestBuilder {
    let r = cx
        .http()
        .request(method, url)
        .timeout(std::time::Duration::from_secs(10));
    match token {
        Some(t) => r.bearer_auth(t),
        None => r,
    }
}

/// What Alertmanager answered, as a one-line error.
async fn failure(what: &str, r: Result<reqwest::Response, reqwest::Error>) -> Option<String> {
    match r {
        Ok(r) if r.status().is_success() => None,
        Ok(r) => {
            let status = r.status();
            let body = r.text().await.unwrap_or_default();
            Some(format!(
                "{what}: Alertmanager answered {status}: {}",
                crate::reply::truncate(body.trim(), 200)
            ))
        }
        Err(e) => Some(format!("{what}: Alertmanager could not be reached ({e})")),
    }
}

async fn on_timeline(cx: &Context<'_>, incident: Option<i64>, text: String) {
    let Some(id) = incident else { return };
    let event = NewEvent {
        at_ms: cx.now.as_millisecond(),
        actor: cx.inv.principal.to_string(),
        kind: "silence",
        text,
        invocation_id: cx.invocation_id(),
    };
    if let Err(e) = cx.incident_store().add_incident_event(id, &event).await {
        tracing::error!(incident = id, "could not add a silence to the timeline: {e}");
    }
}

impl Handle for Silence {
    async fn handle(&self, cx: &Context<'_>) -> Result<Handled, Refusal> {
        let (base, token) = alertmanager(cx)?;
        let store = cx.incident_store();
        let firing = store.alerts_named(&self.alert).await.map_err(store_failed)?;
        let Some(first) = firing.first() else {
            let names: Vec<String> = store
                .firing_alerts(20)
                .await
                .map_err(store_failed)?
                .into_iter()
                .map(|a| a.alertname)
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            let hint = match names.is_empty() {
                true => "Nothing is firing now.".to_string(),
                false => format!("Firing now: {}.", names.join(", ")),
            };
            return Ok(Handled::failed(
                format!("Nothing firing is called {}", self.alert),
                format!("{hint} Name an alert (or a fingerprint) from `alerts`."),
            ));
        };
        // A fingerprint names one alert: all its labels; a name, all of them.
        let by_fingerprint = first.fingerprint == self.alert;
        let labels: BTreeMap<String, String> = match by_fingerprint {
            true => first.labels.clone(),
            false => BTreeMap::from([("alertname".to_string(), self.alert.clone())]),
        };
        let matchers: Vec<Value> = labels
            .iter()
            .map(|(k, v)| json!({"name": k, "value": v, "isRegex": false, "isEqual": true}))
            .collect();
        let ends = cx
            .now
            .checked_add(jiff::SignedDuration::try_from(self.duration).unwrap_or_default())
            .unwrap_or(cx.now);
        let comment = oncall_grammar::redact::redact_line(
            self.reason.as_deref().unwrap_or("silenced from chat with oncall"),
        );
        let body = json!({
            "matchers": matchers,
            "startsAt": cx.now.to_string(),
            "endsAt": ends.to_string(),
            "createdBy": cx.inv.principal.to_string(),
            "comment": comment,
        });
        let sent = request(cx, reqwest::Method::POST, format!("{base}/api/v2/silences"), &token)
            .json(&body)
            .send()
            .await;
        let answer = match sent {
            Ok(r) if r.status().is_success() => r.json::<Value>().await.ok(),
            other => {
                let why = failure("silence", other).await.unwrap_or_default();
                return Ok(Handled::failed(format!("Could not silence {}", self.alert), why));
            }
        };
        let Some(id) = answer
            .as_ref()
            .and_then(|v| v["silenceID"].as_str())
            .map(String::from)
        else {
            return Ok(Handled::failed(
                format!("Could not silence {}", self.alert),
                "Alertmanager's answer had no silenceID",
            ));
        };
        let incident = firing.iter().find_map(|a| a.incident_id);
        let record = SilenceRecord {
            silence_id: id.clone(),
            target: self.alert.clone(),
            comment: comment.clone(),
            created_by: cx.inv.principal.to_string(),
            ends_at_ms: ends.as_millisecond(),
            incident_id: incident,
        };
        let matcher_text = serde_json::to_string(&matchers).unwrap_or_default();
        if let Err(e) = store
            .record_silence(&record, &matcher_text, cx.now.as_millisecond())
            .await
        {
            // It exists in Alertmanager; say so rather than hide it.
            tracing::error!("a silence was created but not recorded: {e}");
        }
        let what = match by_fingerprint {
            true => format!("alert {} ({})", first.alertname, self.alert),
            false => format!("{} ({} firing)", self.alert, firing.len()),
        };
        let until = clock_time(ends.as_millisecond());
        on_timeline(
            cx,
            incident,
            format!("silenced {what} until {until}: {comment} (silence {id})"),
        )
        .await;
        let reply = Reply::new(Outcome::Done, format!("Silenced {what} until {until}"))
            .fields(vec![
                ("Silence".into(), id.clone()),
                ("Reason".into(), comment),
            ])
            .text(format!("Undo: `unsilence {}`", self.alert));
        Ok(Handled::ok(
            reply,
            format!("silenced {} until {until} ({id})", self.alert),
        ))
    }
}

impl Handle for Unsilence {
    async fn handle(&self, cx: &Context<'_>) -> Result<Handled, Refusal> {
        let (base, token) = alertmanager(cx)?;
        let store = cx.incident_store();
        let now = cx.now.as_millisecond();
        let silences = store
            .active_silences(&self.alert, now)
            .await
            .map_err(store_failed)?;
        if silences.is_empty() {
            return Ok(Handled::failed(
                format!("No silence of {} is in force", self.alert),
                "Only silences made with `silence` can be ended here; name what it was given or its id.",
            ));
        }
        let mut ended = Vec::new();
        let mut errors = Vec::new();
        for s in &silences {
            let url = format!("{base}/api/v2/silence/{}", s.silence_id);
            let r = request(cx, reqwest::Method::DELETE, url, &token).send().await;
            match failure("unsilence", r).await {
                None => {
                    store
                        .expire_silence(&s.silence_id, &cx.inv.principal.to_string(), now)
                        .await
                        .map_err(store_failed)?;
                    on_timeline(
                        cx,
                        s.incident_id,
                        format!("ended the silence of {} (silence {})", s.target, s.silence_id),
                    )
                    .await;
                    ended.push(s.silence_id.clone());
                }
                Some(e) => errors.push(e),
            }
        }
        if ended.is_empty() {
            return Ok(Handled::failed(
                format!("Could not end the silence of {}", self.alert),
                errors.join("; "),
            ));
        }
        let mut reply = Reply::new(
            Outcome::Done,
            format!("Ended {} silence(s) of {}", ended.len(), self.alert),
        )
        .text(format!("Silences: {}", ended.join(", ")));
        if !errors.is_empty() {
            reply = reply.text(format!("Not ended: {}", errors.join("; ")));
        }
        Ok(Handled::ok(
            reply,
            format!("unsilenced {} ({})", self.alert, ended.join(", ")),
        ))
    }
}
