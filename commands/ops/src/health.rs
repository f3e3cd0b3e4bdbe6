//! `health`: GET each of a service's health URLs with a timeout; status code,
//! latency, and from a JSON body its `status` and each dependency's status
//! (`{"status":"healthy","dependencies":{"database":"healthy","redis":…}}`).

use std::time::{Duration, Instant};

use serde_json::Value;

/// How long one probe may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// The most of a health answer that is read; the rest is never downloaded.
pub const MAX_BODY: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub url: String,
    pub code: Option<u16>,
    pub latency_ms: u128,
    /// The body's `status`, if it had one.
    pub status: Option<String>,
    /// `(name, status)` for each dependency the body listed.
    pub dependencies: Vec<(String, String)>,
    /// Why it could not be probed at all.
    pub error: Option<String>,
}

const HEALTHY: &[&str] = &[
    "healthy", "ok", "up", "pass", "passing", "green", "ready", "true",
];

fn healthy_word(s: &str) -> bool {
    HEALTHY.contains(&s.to_ascii_lowercase().as_str())
}

impl Probe {
    pub fn unhealthy_dependencies(&self) -> Vec<&(String, String)> {
        self.dependencies
            .iter()
            .filter(|(_, s)| !healthy_word(s))
            .collect()
    }

    pub fn healthy(&self) -> bool {
        self.error.is_none()
            && self.code.is_some_and(|c| (200..300).contains(&c))
            && self.status.as_deref().is_none_or(healthy_word)
            && self.unhealthy_dependencies().is_empty()
    }
}

/// Probes every URL concurrently; unhealthy results first, then in the
/// catalog's order.
pub async fn probe_all(http: &reqwest::Client, urls: &[String]) -> Vec<Probe> {
    let mut probes = futures::future::join_all(urls.iter().map(|u| probe(http, u))).await;
    probes.sort_by_key(|p| p.healthy());
    probes
}

pub async fn probe(http: &reqwest::Client, url: &str) -> Probe {
    let started = Instant::now();
    let mut p = Probe {
        url: url.to_string(),
        code: None,
        latency_ms: 0,
        status: None,
        dependencies: Vec::new(),
        error: None,
    };
    match http.get(url).timeout(PROBE_TIMEOUT).send().await {
        Ok(mut resp) => {
            p.code = Some(resp.status().as_u16());
            // Read at most MAX_BODY, chunk by chunk, then drop the connection.
            let mut body: Vec<u8> = Vec::new();
            while body.len() < MAX_BODY {
                match resp.chunk().await {
                    Ok(Some(chunk)) => {
                        let room = MAX_BODY - body.len();
                        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                    }
                    Ok(None) | Err(_) => break,
                }
            }
            drop(resp);
            p.latency_ms = started.elapsed().as_millis();
            if let Ok(json) = serde_json::from_slice::<Value>(&body) {
                p.status = json.get("status").and_then(status_word);
                if let Some(deps) = json
                    .get("dependencies")
                    .or_else(|| json.get("checks"))
                    .and_then(Value::as_object)
                {
                    for (name, v) in deps {
                        let s = status_word(v).unwrap_or_else(|| "unknown".into());
                        p.dependencies.push((name.clone(), s));
                    }
                }
            }
        }
        Err(e) => {
            p.latency_ms = started.elapsed().as_millis();
            p.error = Some(if e.is_timeout() {
                format!("no answer within {}s", PROBE_TIMEOUT.as_secs())
            } else if e.is_connect() {
                "connection failed (refused or unresolvable)".to_string()
            } else {
                "request failed".to_string()
            });
        }
    }
    p
}

/// `"healthy"`, `true`, or `{"status": "healthy"}`.
fn status_word(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(if *b {
            "healthy".into()
        } else {
            "unhealthy".into()
        }),
        Value::Object(m) => m.get("status").and_then(status_word),
        _ => None,
    }
}
