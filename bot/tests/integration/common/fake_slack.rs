//! A fake Slack: the Web API methods oncall calls and `response_url`s, over
//! real HTTP on loopback. It checks what Slack checks (bot token, JSON body
//! with a channel, Block Kit limits) and records every call for assertions.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Json;
use serde_json::{json, Value};

pub const BOT_TOKEN: &str = "xoxb-test-token";
pub const APP_TOKEN: &str = "xapp-test-token";

#[derive(Debug, Clone)]
pub struct Call {
    pub path: String,
    pub body: Value,
    pub at: Instant,
    pub status: u16,
}

#[derive(Default)]
pub struct FakeState {
    pub calls: Mutex<Vec<Call>>,
    /// user group id → member user ids
    pub groups: Mutex<HashMap<String, Vec<String>>>,
    /// How many upcoming chat.postMessage calls answer 429.
    pub rate_limit_post: Mutex<u32>,
    /// How many upcoming `response_url` posts answer 429 (`Retry-After: 1`).
    pub rate_limit_responses: Mutex<u32>,
    /// How long usergroups.users.list takes to answer.
    pub group_delay: Mutex<Duration>,
    /// How many upcoming usergroups.users.list calls answer 429.
    pub rate_limit_groups: Mutex<u32>,
    /// Envelopes the Socket Mode websocket delivers after `hello`.
    pub socket_envelopes: Mutex<Vec<Value>>,
    /// What the client sent back on the websocket.
    pub socket_acks: Mutex<Vec<Value>>,
    /// The address the websocket is served on.
    pub socket_url: Mutex<String>,
    /// The workspace's channels.
    pub channels: Mutex<Vec<FakeChannel>>,
    /// Messages `conversations.history` serves: `{channel, ts, user, text}`.
    pub messages: Mutex<Vec<Value>>,
    /// Upload slots by file id.
    pub uploads: Mutex<HashMap<String, UploadSlot>>,
    /// Files shared in channels.
    pub files: Mutex<Vec<SharedFile>>,
}

/// An upload slot: the filename, the declared length, the bytes once sent.
pub type UploadSlot = (String, usize, Option<Vec<u8>>);

/// A file `files.completeUploadExternal` shared.
#[derive(Debug, Clone)]
pub struct SharedFile {
    pub channel: String,
    pub filename: String,
    pub title: String,
    pub content: String,
    pub comment: String,
}

/// The bot's own user id, as `auth.test` reports it.
pub const BOT_USER: &str = "UBOT0001";

#[derive(Debug, Clone)]
pub struct FakeChannel {
    pub id: String,
    pub name: String,
    pub creator: String,
    pub members: Vec<String>,
    pub topic: String,
}

pub struct FakeSlack {
    pub url: String,
    pub state: Arc<FakeState>,
}

impl FakeSlack {
    pub async fn start() -> FakeSlack {
        let state = Arc::new(FakeState::default());
        let app = axum::Router::new()
            .route("/api/{method}", post(api))
            .route("/response/{id}", post(response_url))
            .route("/upload/{id}", post(upload))
            .route("/socket", axum::routing::get(socket))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        *state.socket_url.lock().unwrap() =
            format!("ws://{}/socket", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeSlack { url, state }
    }

    pub fn api_url(&self) -> String {
        format!("{}/api", self.url)
    }

    pub fn response_url(&self, id: u32) -> String {
        format!("{}/response/{id}", self.url)
    }

    pub fn calls(&self, path: &str) -> Vec<Call> {
        self.state
            .calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.path == path)
            .cloned()
            .collect()
    }

    /// Waits until at least `n` successful calls were made to `path`.
    pub async fn wait_for(&self, path: &str, n: usize) -> Vec<Call> {
        let deadline = std::time::Instant::now() + super::DEADLINE;
        while std::time::Instant::now() < deadline {
            let ok: Vec<Call> = self
                .calls(path)
                .into_iter()
                .filter(|c| c.status == 200)
                .collect();
            if ok.len() >= n {
                return ok;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!(
            "no {n} successful calls to {path}; got {:?}",
            self.calls(path)
        );
    }
}

fn record(state: &FakeState, path: String, body: Value, status: u16) {
    state.calls.lock().unwrap().push(Call {
        path,
        body,
        at: Instant::now(),
        status,
    });
}

/// Block Kit limits Slack enforces (invalid_blocks otherwise).
fn blocks_problem(body: &Value) -> Option<String> {
    let blocks = body["blocks"].as_array()?;
    if blocks.len() > 50 {
        return Some(format!("{} blocks", blocks.len()));
    }
    for b in blocks {
        if b["type"] == "header"
            && b["text"]["text"]
                .as_str()
                .is_none_or(|t| t.chars().count() > 150)
        {
            return Some("header text".into());
        }
        if let Some(t) = b["text"]["text"].as_str() {
            if t.chars().count() > 3000 {
                return Some("text over 3000".into());
            }
        }
        if let Some(f) = b["fields"].as_array() {
            if f.len() > 10 {
                return Some("more than 10 fields".into());
            }
        }
        for el in b["elements"].as_array().into_iter().flatten() {
            if el["type"] == "button"
                && el["text"]["text"]
                    .as_str()
                    .is_none_or(|t| t.chars().count() > 75)
            {
                return Some("button text".into());
            }
        }
    }
    None
}

async fn api(
    State(state): State<Arc<FakeState>>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let path = format!("/api/{method}");
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let parsed: Value = if content_type.starts_with("application/json") {
        serde_json::from_slice(&body).unwrap_or(Value::Null)
    } else {
        let form: HashMap<String, String> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
        json!(form)
    };
    let fail = |error: &str| {
        record(&state, path.clone(), parsed.clone(), 200);
        Json(json!({ "ok": false, "error": error })).into_response()
    };
    if auth.is_empty() {
        return fail("not_authed");
    }
    if method == "apps.connections.open" {
        // Socket Mode takes the app-level token, not the bot token.
        if auth != format!("Bearer {APP_TOKEN}") {
            return fail("invalid_auth");
        }
        let url = state.socket_url.lock().unwrap().clone();
        record(&state, path, parsed, 200);
        return Json(json!({ "ok": true, "url": url })).into_response();
    }
    if auth != format!("Bearer {BOT_TOKEN}") {
        return fail("invalid_auth");
    }
    // Read methods take form arguments; a JSON body's arguments are not read.
    let read_method = matches!(
        method.as_str(),
        "auth.test"
            | "conversations.list"
            | "conversations.history"
            | "usergroups.users.list"
            | "files.getUploadURLExternal"
    );
    if read_method && content_type.starts_with("application/json") {
        return fail("invalid_arguments");
    }
    match method.as_str() {
        "chat.postMessage" | "chat.update" => {
            if !content_type.starts_with("application/json") {
                return fail("invalid_form_data");
            }
            if method == "chat.postMessage" {
                let mut limited = state.rate_limit_post.lock().unwrap();
                if *limited > 0 {
                    *limited -= 1;
                    record(&state, path, parsed, 429);
                    return (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "1")], "")
                        .into_response();
                }
            }
            if parsed["channel"].as_str().is_none_or(str::is_empty) {
                return fail("channel_not_found");
            }
            if method == "chat.update" && parsed["ts"].as_str().is_none_or(str::is_empty) {
                return fail("message_not_found");
            }
            if parsed["text"].is_null() && parsed["blocks"].is_null() {
                return fail("no_text");
            }
            if blocks_problem(&parsed).is_some() {
                return fail("invalid_blocks");
            }
            record(&state, path, parsed.clone(), 200);
            Json(json!({ "ok": true, "channel": parsed["channel"], "ts": parsed["ts"].as_str().unwrap_or("1700000000.000100") })).into_response()
        }
        "auth.test" => {
            record(&state, path, parsed, 200);
            Json(json!({ "ok": true, "user_id": BOT_USER, "team_id": "T0001" })).into_response()
        }
        "conversations.create" => {
            // Slack's rules: lower case, digits, - and _; at most 80.
            let name = parsed["name"].as_str().unwrap_or("").to_string();
            if name.is_empty() {
                return fail("invalid_name_required");
            }
            if name.chars().count() > 80 {
                return fail("invalid_name_maxlength");
            }
            if !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
            {
                return fail("invalid_name_specials");
            }
            let mut channels = state.channels.lock().unwrap();
            if channels.iter().any(|c| c.name == name) {
                drop(channels);
                return fail("name_taken");
            }
            let id = format!("C{:08}", channels.len() + 100);
            channels.push(FakeChannel {
                id: id.clone(),
                name: name.clone(),
                creator: BOT_USER.into(),
                members: vec![BOT_USER.into()],
                topic: String::new(),
            });
            drop(channels);
            record(&state, path, parsed, 200);
            Json(json!({ "ok": true, "channel": { "id": id, "name": name, "creator": BOT_USER } }))
                .into_response()
        }
        "conversations.list" => {
            if parsed["types"]
                .as_str()
                .is_none_or(|t| !t.contains("public_channel"))
            {
                return fail("invalid_types");
            }
            let channels = state.channels.lock().unwrap().clone();
            record(&state, path, parsed, 200);
            let list: Vec<Value> = channels
                .iter()
                .map(|c| json!({ "id": c.id, "name": c.name, "creator": c.creator }))
                .collect();
            Json(
                json!({ "ok": true, "channels": list, "response_metadata": { "next_cursor": "" } }),
            )
            .into_response()
        }
        "files.getUploadURLExternal" => {
            let filename = parsed["filename"].as_str().unwrap_or("").to_string();
            let length = parsed["length"]
                .as_str()
                .and_then(|l| l.parse::<usize>().ok());
            let (false, Some(length)) = (filename.is_empty(), length) else {
                return fail("invalid_arguments");
            };
            let mut uploads = state.uploads.lock().unwrap();
            let id = format!("F{:08}", uploads.len() + 1);
            uploads.insert(id.clone(), (filename, length, None));
            drop(uploads);
            let url = format!(
                "{}/upload/{id}",
                state
                    .socket_url
                    .lock()
                    .unwrap()
                    .replace("ws://", "http://")
                    .trim_end_matches("/socket")
            );
            record(&state, path, parsed, 200);
            Json(json!({ "ok": true, "upload_url": url, "file_id": id })).into_response()
        }
        "files.completeUploadExternal" => {
            let Some(files) = parsed["files"].as_array().cloned() else {
                return fail("invalid_arguments");
            };
            let channel = parsed["channel_id"].as_str().unwrap_or("").to_string();
            if !state
                .channels
                .lock()
                .unwrap()
                .iter()
                .any(|c| c.id == channel)
            {
                return fail("channel_not_found");
            }
            let uploads = state.uploads.lock().unwrap().clone();
            for f in &files {
                let id = f["id"].as_str().unwrap_or("");
                let Some((filename, _, Some(bytes))) = uploads.get(id) else {
                    return fail("file_not_found");
                };
                state.files.lock().unwrap().push(SharedFile {
                    channel: channel.clone(),
                    filename: filename.clone(),
                    title: f["title"].as_str().unwrap_or(filename).to_string(),
                    content: String::from_utf8_lossy(bytes).into_owned(),
                    comment: parsed["initial_comment"].as_str().unwrap_or("").to_string(),
                });
            }
            record(&state, path, parsed, 200);
            Json(json!({ "ok": true, "files": files })).into_response()
        }
        "conversations.history" => {
            // Newest first, at or before `latest` when `inclusive`.
            let channel = parsed["channel"].as_str().unwrap_or("").to_string();
            let latest = parsed["latest"]
                .as_str()
                .unwrap_or("9999999999.999999")
                .to_string();
            let inclusive = parsed["inclusive"] == "true";
            if !state
                .channels
                .lock()
                .unwrap()
                .iter()
                .any(|c| c.id == channel)
            {
                return fail("channel_not_found");
            }
            let mut found: Vec<Value> = state
                .messages
                .lock()
                .unwrap()
                .iter()
                .filter(|m| m["channel"] == channel.as_str())
                .filter(|m| {
                    let ts = m["ts"].as_str().unwrap_or("");
                    ts < latest.as_str() || (inclusive && ts == latest)
                })
                .cloned()
                .collect();
            found.sort_by(|a, b| b["ts"].as_str().cmp(&a["ts"].as_str()));
            let limit = parsed["limit"]
                .as_str()
                .and_then(|l| l.parse().ok())
                .unwrap_or(100);
            found.truncate(limit);
            record(&state, path, parsed, 200);
            Json(json!({ "ok": true, "messages": found, "has_more": false })).into_response()
        }
        "conversations.setTopic" => {
            let id = parsed["channel"].as_str().unwrap_or("");
            let mut channels = state.channels.lock().unwrap();
            let Some(c) = channels.iter_mut().find(|c| c.id == id) else {
                drop(channels);
                return fail("channel_not_found");
            };
            c.topic = parsed["topic"].as_str().unwrap_or("").to_string();
            drop(channels);
            record(&state, path, parsed, 200);
            Json(json!({ "ok": true })).into_response()
        }
        "conversations.invite" => {
            let id = parsed["channel"].as_str().unwrap_or("").to_string();
            let users: Vec<String> = parsed["users"]
                .as_str()
                .unwrap_or("")
                .split(',')
                .filter(|u| !u.is_empty())
                .map(String::from)
                .collect();
            if users.is_empty() {
                return fail("no_user");
            }
            if users.iter().any(|u| u == BOT_USER) {
                return fail("cant_invite_self");
            }
            let mut channels = state.channels.lock().unwrap();
            let Some(c) = channels.iter_mut().find(|c| c.id == id) else {
                drop(channels);
                return fail("channel_not_found");
            };
            let new: Vec<String> = users
                .into_iter()
                .filter(|u| !c.members.contains(u))
                .collect();
            if new.is_empty() {
                drop(channels);
                return fail("already_in_channel");
            }
            c.members.extend(new);
            drop(channels);
            record(&state, path, parsed, 200);
            Json(json!({ "ok": true, "channel": { "id": id } })).into_response()
        }
        "conversations.open" => {
            let users = parsed["users"].as_str().unwrap_or("");
            if users.is_empty() {
                return fail("users_list_not_supplied");
            }
            if !users.starts_with('U') {
                return fail("user_not_found");
            }
            record(&state, path, parsed.clone(), 200);
            Json(json!({ "ok": true, "channel": { "id": format!("D{}", &users[1..]) } }))
                .into_response()
        }
        "usergroups.users.list" => {
            let delay = *state.group_delay.lock().unwrap();
            tokio::time::sleep(delay).await;
            {
                let mut limited = state.rate_limit_groups.lock().unwrap();
                if *limited > 0 {
                    *limited -= 1;
                    record(&state, path, parsed, 429);
                    return (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "0")], "")
                        .into_response();
                }
            }
            let group = parsed["usergroup"].as_str().unwrap_or("").to_string();
            let users = state.groups.lock().unwrap().get(&group).cloned();
            match users {
                Some(users) => {
                    record(&state, path, parsed, 200);
                    Json(json!({ "ok": true, "users": users })).into_response()
                }
                None => fail("no_such_subteam"),
            }
        }
        _ => fail("unknown_method"),
    }
}

async fn response_url(
    State(state): State<Arc<FakeState>>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    {
        let mut limited = state.rate_limit_responses.lock().unwrap();
        if *limited > 0 {
            *limited -= 1;
            record(&state, format!("/response/{id}"), parsed, 429);
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", "1")],
                "rate_limited",
            )
                .into_response();
        }
    }
    let ok = parsed.is_object() && blocks_problem(&parsed).is_none();
    record(
        &state,
        format!("/response/{id}"),
        parsed,
        if ok { 200 } else { 400 },
    );
    if ok {
        (StatusCode::OK, "ok").into_response()
    } else {
        (StatusCode::BAD_REQUEST, "invalid_blocks").into_response()
    }
}

/// The upload URL `files.getUploadURLExternal` gave: the bytes, exactly
/// as long as declared.
async fn upload(
    State(state): State<Arc<FakeState>>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let mut uploads = state.uploads.lock().unwrap();
    let Some(slot) = uploads.get_mut(&id) else {
        return (StatusCode::NOT_FOUND, "no such upload").into_response();
    };
    if slot.1 != body.len() {
        return (StatusCode::BAD_REQUEST, "length mismatch").into_response();
    }
    slot.2 = Some(body.to_vec());
    drop(uploads);
    record(
        &state,
        format!("/upload/{id}"),
        json!({"bytes": body.len()}),
        200,
    );
    (StatusCode::OK, "OK - uploaded").into_response()
}

async fn socket(
    State(state): State<Arc<FakeState>>,
    ws: axum::extract::ws::WebSocketUpgrade,
) -> Response {
    use axum::extract::ws::Message;
    ws.on_upgrade(move |mut socket| async move {
        let hello =
            json!({"type": "hello", "num_connections": 1, "connection_info": {"app_id": "A0001"}});
        if socket
            .send(Message::Text(hello.to_string().into()))
            .await
            .is_err()
        {
            return;
        }
        let envelopes = state.socket_envelopes.lock().unwrap().clone();
        for e in envelopes {
            if socket
                .send(Message::Text(e.to_string().into()))
                .await
                .is_err()
            {
                return;
            }
        }
        while let Some(Ok(msg)) = socket.recv().await {
            if let Message::Text(t) = msg {
                if let Ok(v) = serde_json::from_str::<Value>(&t) {
                    state.socket_acks.lock().unwrap().push(v);
                }
            }
        }
    })
}
