//! A fake Discord REST API over real HTTP on loopback: interaction callbacks,
//! webhook edits and follow-ups, and command registration. It checks what
//! Discord checks (bot token on registration, embed and component limits,
//! command definition rules) and records every call.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

pub const BOT_TOKEN: &str = "discord-test-bot-token";
pub const APP_ID: &str = "700000000000000001";

#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub path: String,
    pub body: Value,
    pub status: u16,
}

#[derive(Default)]
pub struct FakeState {
    pub calls: Mutex<Vec<Call>>,
    pub rate_limit_edits: Mutex<u32>,
    /// How many upcoming bot REST calls (channels, messages) answer 429.
    pub rate_limit_rest: Mutex<u32>,
    /// The guild's channels: (id, name, type).
    pub channels: Mutex<Vec<(String, String, u64)>>,
    /// The guild's members: user id → role ids (absent: not a member).
    pub members: Mutex<std::collections::HashMap<String, Vec<String>>>,
    /// Threads: (id, name, parent channel id).
    pub threads: Mutex<Vec<(String, String, String)>>,
    /// Files attached to messages: (channel, filename, content).
    pub attachments: Mutex<Vec<(String, String, String)>>,
}

/// One part of a multipart body: its field name, file name and bytes.
type Part = (String, Option<String>, Vec<u8>);

/// A `multipart/form-data` body's parts (what Discord reads for messages
/// with files: `payload_json` and `files[n]`).
fn multipart_parts(content_type: &str, body: &[u8]) -> Option<Vec<Part>> {
    let boundary = content_type
        .strip_prefix("multipart/form-data")?
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))?
        .trim_matches('"')
        .to_string();
    let text = body;
    let delimiter = format!("--{boundary}");
    let mut parts = Vec::new();
    let mut rest = text;
    loop {
        let start = find(rest, delimiter.as_bytes())? + delimiter.len();
        rest = &rest[start..];
        if rest.starts_with(b"--") {
            return Some(parts);
        }
        rest = rest.strip_prefix(b"\r\n")?;
        let head_end = find(rest, b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&rest[..head_end])
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("content-disposition:"))?
            .to_string();
        let content_start = head_end + 4;
        let end = find(
            &rest[content_start..],
            format!("\r\n{delimiter}").as_bytes(),
        )?;
        let content = rest[content_start..content_start + end].to_vec();
        let attr = |key: &str| {
            head.split(';').find_map(|p| {
                p.trim()
                    .strip_prefix(&format!("{key}=\""))
                    .map(|v| v.trim_end_matches('"').to_string())
            })
        };
        parts.push((attr("name")?, attr("filename"), content));
        rest = &rest[content_start + end + 2..];
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

pub const GUILD_ID: &str = "600000000000000001";

pub struct FakeDiscord {
    pub url: String,
    pub state: Arc<FakeState>,
}

impl FakeDiscord {
    pub async fn start() -> FakeDiscord {
        let state = Arc::new(FakeState::default());
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeDiscord { url, state }
    }

    pub fn api_url(&self) -> String {
        format!("{}/api/v10", self.url)
    }

    pub fn calls(&self) -> Vec<Call> {
        self.state.calls.lock().unwrap().clone()
    }

    pub async fn wait_for(&self, method: &str, path_contains: &str) -> Call {
        let deadline = std::time::Instant::now() + super::DEADLINE;
        while std::time::Instant::now() < deadline {
            if let Some(c) = self
                .calls()
                .into_iter()
                .find(|c| c.method == method && c.path.contains(path_contains) && c.status < 300)
            {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("no {method} {path_contains}; got {:?}", self.calls());
    }
}

fn embed_problem(body: &Value) -> Option<&'static str> {
    if body["content"]
        .as_str()
        .is_some_and(|c| c.chars().count() > 2000)
    {
        return Some("content over 2000");
    }
    for e in body["embeds"].as_array().into_iter().flatten() {
        if e["title"].as_str().is_some_and(|t| t.chars().count() > 256) {
            return Some("title over 256");
        }
        if e["description"]
            .as_str()
            .is_some_and(|t| t.chars().count() > 4096)
        {
            return Some("description over 4096");
        }
        if e["fields"].as_array().is_some_and(|f| f.len() > 25) {
            return Some("more than 25 fields");
        }
    }
    let rows = body["components"].as_array().map(|r| r.len()).unwrap_or(0);
    if rows > 5 {
        return Some("more than 5 rows");
    }
    for row in body["components"].as_array().into_iter().flatten() {
        if row["components"].as_array().is_some_and(|b| b.len() > 5) {
            return Some("more than 5 buttons in a row");
        }
    }
    None
}

fn command_problem(cmd: &Value) -> Option<String> {
    // User and message commands (types 2, 3): a name of 1-32 characters
    // (spaces and capitals allowed), no description, no options.
    if matches!(cmd["type"].as_u64(), Some(2 | 3)) {
        let name = cmd["name"].as_str().unwrap_or("");
        let ok = (1..=32).contains(&name.chars().count())
            && cmd["options"].is_null()
            && cmd["description"].as_str().is_none_or(str::is_empty);
        return (!ok).then(|| format!("bad context-menu command {cmd}"));
    }
    let name_ok = |n: &str| {
        !n.is_empty()
            && n.len() <= 32
            && n.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    };
    fn walk(o: &Value, name_ok: &dyn Fn(&str) -> bool, depth: usize) -> Option<String> {
        let name = o["name"].as_str().unwrap_or("");
        if !name_ok(name) {
            return Some(format!("bad name {name:?}"));
        }
        let desc = o["description"].as_str().unwrap_or("");
        if desc.is_empty() || desc.chars().count() > 100 {
            return Some(format!("bad description for {name}"));
        }
        let options = o["options"].as_array().cloned().unwrap_or_default();
        if options.len() > 25 {
            return Some(format!("{name} has {} options", options.len()));
        }
        let mut seen_optional = false;
        for opt in &options {
            let required = opt["required"] == true;
            if required && seen_optional {
                return Some(format!("{name}: required option after an optional one"));
            }
            seen_optional |= !required && opt["type"].as_u64().is_some_and(|t| t > 2);
            if opt["choices"].as_array().is_some_and(|c| c.len() > 25) {
                return Some("more than 25 choices".into());
            }
            if depth > 3 {
                return Some("nested too deep".into());
            }
            if let Some(p) = walk(opt, name_ok, depth + 1) {
                return Some(p);
            }
        }
        None
    }
    walk(cmd, &name_ok, 0)
}

async fn handle(
    State(state): State<Arc<FakeState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let path = uri.path().to_string();
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let parts = multipart_parts(&content_type, &body);
    let parsed: Value = match &parts {
        Some(parts) => parts
            .iter()
            .find(|(name, _, _)| name == "payload_json")
            .and_then(|(_, _, json)| serde_json::from_slice(json).ok())
            .unwrap_or(Value::Null),
        None => serde_json::from_slice(&body).unwrap_or(Value::Null),
    };
    let record = |status: u16| {
        state.calls.lock().unwrap().push(Call {
            method: method.to_string(),
            path: path.clone(),
            body: parsed.clone(),
            status,
        });
    };
    if path.contains("/applications/") && method == Method::PUT {
        if headers.get("authorization").and_then(|v| v.to_str().ok())
            != Some(&format!("Bot {BOT_TOKEN}"))
        {
            record(401);
            return (
                StatusCode::UNAUTHORIZED,
                Json(json!({"message": "401: Unauthorized", "code": 0})),
            )
                .into_response();
        }
        for cmd in parsed.as_array().into_iter().flatten() {
            if let Some(p) = command_problem(cmd) {
                record(400);
                return (
                    StatusCode::BAD_REQUEST,
                    Json(json!({"message": "Invalid Form Body", "errors": p})),
                )
                    .into_response();
            }
        }
        record(200);
        let registered: Vec<Value> = parsed
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|mut c| {
                c["id"] = json!("800000000000000001");
                c
            })
            .collect();
        return Json(Value::Array(registered)).into_response();
    }
    // Bot REST calls: channels, messages, DMs.
    if path.starts_with("/api/v10/channels/")
        || path.starts_with("/api/v10/guilds/")
        || path.starts_with("/api/v10/users/")
    {
        if headers.get("authorization").and_then(|v| v.to_str().ok())
            != Some(&format!("Bot {BOT_TOKEN}"))
        {
            record(401);
            return (
                StatusCode::UNAUTHORIZED,
                Json(json!({"message": "401: Unauthorized", "code": 0})),
            )
                .into_response();
        }
        {
            let mut limited = state.rate_limit_rest.lock().unwrap();
            if *limited > 0 {
                *limited -= 1;
                drop(limited);
                record(429);
                return (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "0.3")], Json(json!({"message": "You are being rate limited.", "retry_after": 0.3, "global": false}))).into_response();
            }
        }
        let rest = &path["/api/v10".len()..];
        let segs: Vec<&str> = rest.trim_matches('/').split('/').collect();
        let known_channel = |id: &str| {
            id.starts_with("DM")
                || state.channels.lock().unwrap().iter().any(|c| c.0 == id)
                || state.threads.lock().unwrap().iter().any(|t| t.0 == id)
        };
        match (method.clone(), segs.as_slice()) {
            (Method::POST, ["users", "@me", "channels"]) => {
                let Some(user) = parsed["recipient_id"].as_str() else {
                    record(400);
                    return (
                        StatusCode::BAD_REQUEST,
                        Json(json!({"message": "Invalid Form Body"})),
                    )
                        .into_response();
                };
                record(200);
                return Json(json!({"id": format!("DM{user}"), "type": 1})).into_response();
            }
            (Method::GET, ["guilds", _, "members", user]) => {
                let roles = state.members.lock().unwrap().get(*user).cloned();
                return match roles {
                    Some(roles) => {
                        record(200);
                        Json(json!({"user": {"id": user}, "roles": roles, "joined_at": "2026-01-01T00:00:00Z", "deaf": false, "mute": false}))
                            .into_response()
                    }
                    None => {
                        record(404);
                        (
                            StatusCode::NOT_FOUND,
                            Json(json!({"message": "Unknown Member", "code": 10007})),
                        )
                            .into_response()
                    }
                };
            }
            (Method::GET, ["guilds", g, "threads", "active"]) if *g == GUILD_ID => {
                record(200);
                let threads: Vec<Value> = state.threads.lock().unwrap().iter()
                    .map(|(id, name, parent)| json!({"id": id, "name": name, "type": 11, "parent_id": parent, "guild_id": GUILD_ID}))
                    .collect();
                return Json(json!({"threads": threads, "members": []})).into_response();
            }
            (Method::POST, ["channels", parent, "threads"]) => {
                // Only a text channel holds threads; 1-100 characters; a
                // thread not started from a message must say its type.
                let text_channel = state
                    .channels
                    .lock()
                    .unwrap()
                    .iter()
                    .any(|c| c.0 == *parent && c.2 == 0);
                let name = parsed["name"].as_str().unwrap_or("");
                let ok = text_channel
                    && (1..=100).contains(&name.chars().count())
                    && matches!(parsed["type"].as_u64(), Some(11 | 12))
                    && parsed["auto_archive_duration"]
                        .as_u64()
                        .is_none_or(|d| [60, 1440, 4320, 10080].contains(&d));
                if !ok {
                    record(400);
                    return (
                        StatusCode::BAD_REQUEST,
                        Json(json!({"message": "Invalid Form Body"})),
                    )
                        .into_response();
                }
                let mut threads = state.threads.lock().unwrap();
                let id = format!("62{:016}", threads.len() + 1);
                threads.push((id.clone(), name.to_string(), parent.to_string()));
                drop(threads);
                record(201);
                return (
                    StatusCode::CREATED,
                    Json(json!({"id": id, "name": name, "type": 11, "parent_id": parent, "guild_id": GUILD_ID})),
                )
                    .into_response();
            }
            (Method::GET, ["guilds", g, "channels"]) if *g == GUILD_ID => {
                record(200);
                let list: Vec<Value> = state.channels.lock().unwrap().iter()
                    .map(|(id, name, t)| json!({"id": id, "name": name, "type": t, "guild_id": GUILD_ID}))
                    .collect();
                return Json(Value::Array(list)).into_response();
            }
            (Method::POST, ["guilds", g, "channels"]) if *g == GUILD_ID => {
                let name = parsed["name"].as_str().unwrap_or("");
                if name.is_empty() || name.chars().count() > 100 {
                    record(400);
                    return (
                        StatusCode::BAD_REQUEST,
                        Json(json!({"message": "Invalid Form Body"})),
                    )
                        .into_response();
                }
                let mut channels = state.channels.lock().unwrap();
                let id = format!("61{:016}", channels.len() + 1);
                channels.push((
                    id.clone(),
                    name.to_string(),
                    parsed["type"].as_u64().unwrap_or(0),
                ));
                drop(channels);
                record(201);
                return (
                    StatusCode::CREATED,
                    Json(json!({"id": id, "name": name, "type": 0, "guild_id": GUILD_ID})),
                )
                    .into_response();
            }
            (Method::POST, ["channels", c, "messages"])
            | (Method::PATCH, ["channels", c, "messages", _]) => {
                if !known_channel(c) {
                    record(404);
                    return (
                        StatusCode::NOT_FOUND,
                        Json(json!({"message": "Unknown Channel", "code": 10003})),
                    )
                        .into_response();
                }
                if let Some(p) = embed_problem(&parsed) {
                    record(400);
                    return (
                        StatusCode::BAD_REQUEST,
                        Json(json!({"message": "Invalid Form Body", "errors": p})),
                    )
                        .into_response();
                }
                // Files: each `files[n]` named in `attachments` with its
                // filename, at most 10 MiB in all.
                let files: Vec<&Part> = parts
                    .iter()
                    .flatten()
                    .filter(|(name, _, _)| name.starts_with("files["))
                    .collect();
                for (n, (name, filename, _)) in files.iter().enumerate() {
                    let declared = parsed["attachments"][n]["filename"].as_str();
                    if *name != format!("files[{n}]") || filename.as_deref() != declared {
                        record(400);
                        return (
                            StatusCode::BAD_REQUEST,
                            Json(json!({"message": "Invalid Form Body", "errors": "attachments do not match the files"})),
                        )
                            .into_response();
                    }
                }
                if files.iter().map(|(_, _, b)| b.len()).sum::<usize>() > 10 * 1024 * 1024 {
                    record(413);
                    return (
                        StatusCode::PAYLOAD_TOO_LARGE,
                        Json(json!({"message": "Request entity too large", "code": 40005})),
                    )
                        .into_response();
                }
                for (_, filename, bytes) in &files {
                    state.attachments.lock().unwrap().push((
                        c.to_string(),
                        filename.clone().unwrap_or_default(),
                        String::from_utf8_lossy(bytes).into_owned(),
                    ));
                }
                if parsed["content"].is_null()
                    && parsed["embeds"].as_array().is_none_or(|e| e.is_empty())
                    && files.is_empty()
                {
                    record(400);
                    return (
                        StatusCode::BAD_REQUEST,
                        Json(json!({"message": "Cannot send an empty message", "code": 50006})),
                    )
                        .into_response();
                }
                record(200);
                let id = segs
                    .get(3)
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "910000000000000001".into());
                return Json(json!({"id": id, "channel_id": c, "embeds": parsed["embeds"]}))
                    .into_response();
            }
            _ => {
                record(404);
                return (
                    StatusCode::NOT_FOUND,
                    Json(json!({"message": "404: Not Found", "code": 0})),
                )
                    .into_response();
            }
        }
    }
    let data = if path.contains("/callback") {
        &parsed["data"]
    } else {
        &parsed
    };
    if let Some(p) = embed_problem(data) {
        record(400);
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"message": "Invalid Form Body", "errors": p})),
        )
            .into_response();
    }
    if method == Method::PATCH {
        let mut limited = state.rate_limit_edits.lock().unwrap();
        if *limited > 0 {
            *limited -= 1;
            drop(limited);
            record(429);
            return (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "0.5")], Json(json!({"message": "You are being rate limited.", "retry_after": 0.5, "global": false}))).into_response();
        }
    }
    record(200);
    if path.contains("/callback") {
        return StatusCode::NO_CONTENT.into_response();
    }
    Json(json!({"id": "900000000000000009", "content": "", "embeds": parsed["embeds"]}))
        .into_response()
}
