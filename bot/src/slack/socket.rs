//! Slack Socket Mode: for workspaces that can't expose an HTTP endpoint.
//!
//! `apps.connections.open` (with the app-level token, `SLACK_APP_TOKEN`)
//! gives a websocket URL; Slack then delivers envelopes over it. Each
//! envelope goes through the same code as the HTTP routes: a slash command's
//! immediate response ([`super::command_response`]) is sent back as the
//! acknowledgement's payload, a button click is acknowledged at once and
//! handled by [`super::start_interaction`]. No request signing is involved:
//! the connection itself is authenticated by the app token. When Slack asks
//! to reconnect (`disconnect`) or the connection drops, a new one is opened.

use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use slack_morphism::prelude::{SlackCommandEvent, SlackInteractionEvent};
use tokio_tungstenite::tungstenite::Message;

use super::SlackState;

/// Serves Socket Mode until the task is dropped, reconnecting as needed.
pub async fn run(state: Arc<SlackState>, app_token: String) {
    let mut backoff = Duration::from_secs(1);
    loop {
        match connect_once(&state, &app_token).await {
            Ok(()) => backoff = Duration::from_secs(1),
            Err(e) => {
                tracing::warn!(
                    "Slack Socket Mode connection ended: {e}; reconnecting in {}s",
                    backoff.as_secs()
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(60));
            }
        }
    }
}

/// One connection: returns when Slack asks to reconnect or the socket closes.
pub async fn connect_once(state: &Arc<SlackState>, app_token: &str) -> Result<(), String> {
    let url = state
        .api
        .open_socket(app_token)
        .await
        .map_err(|e| e.to_string())?;
    let (ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .map_err(|e| format!("websocket: {e}"))?;
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Message>(64);
    let writer = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            if sink.send(m).await.is_err() {
                break;
            }
        }
    });
    while let Some(frame) = stream.next().await {
        let frame = frame.map_err(|e| format!("websocket: {e}"))?;
        match frame {
            Message::Text(text) => {
                let Ok(envelope) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                if envelope["type"] == "disconnect" {
                    break;
                }
                let state = state.clone();
                let tx = tx.clone();
                let supervisor = state.router.supervisor().clone();
                supervisor.spawn("slack socket envelope", async move {
                    if let Some(ack) = handle_envelope(&state, &envelope).await {
                        let _ = tx.send(Message::Text(ack.to_string())).await;
                    }
                });
            }
            Message::Ping(p) => {
                let _ = tx.send(Message::Pong(p)).await;
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
    drop(tx);
    let _ = writer.await;
    Ok(())
}

/// The acknowledgement for one envelope (with a payload for slash commands).
pub async fn handle_envelope(state: &Arc<SlackState>, envelope: &Value) -> Option<Value> {
    let id = envelope["envelope_id"].as_str()?.to_string();
    let payload = envelope["payload"].clone();
    match envelope["type"].as_str()? {
        "slash_commands" => {
            let response = match serde_json::from_value::<SlackCommandEvent>(payload) {
                Ok(cmd) => super::command_response(state, cmd).await.ok(),
                Err(_) => None,
            };
            Some(match response {
                Some(p) => json!({ "envelope_id": id, "payload": p }),
                None => json!({ "envelope_id": id }),
            })
        }
        "interactive" => {
            if let Ok(event) = serde_json::from_value::<SlackInteractionEvent>(payload) {
                let _ = super::start_interaction(state, event).await;
            }
            Some(json!({ "envelope_id": id }))
        }
        _ => Some(json!({ "envelope_id": id })),
    }
}
