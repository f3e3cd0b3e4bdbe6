//! `?watch=true` on a list: a stream of `{"type": …, "object": …}` lines,
//! as `kubectl rollout status` and informers read them.
//!
//! The simulator keeps no event history, so a watch compares snapshots:
//! every 100 ms it lists what matches (namespace, label and field
//! selectors) and sends ADDED, MODIFIED or DELETED for what changed since.
//! From `resourceVersion` R it first sends what changed after R (all of it,
//! as ADDED, when R is absent or "0"). It ends after `timeoutSeconds`
//! (default 5 minutes, at most 30), as a real API server ends watches.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::api::Shared;
use crate::errors::ApiError;
use crate::resources::ResourceType;
use crate::store;

const POLL: Duration = Duration::from_millis(100);

struct Watch {
    store: Shared,
    rt: ResourceType,
    namespace: Option<String>,
    selector: Vec<store::Requirement>,
    fields: Option<String>,
    /// (namespace, name) → (resourceVersion, last object sent).
    seen: HashMap<(String, String), (u64, Value)>,
    since: u64,
    first: bool,
    deadline: tokio::time::Instant,
}

fn rv_of(obj: &Value) -> u64 {
    obj["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn key_of(obj: &Value) -> (String, String) {
    let s = |v: &Value| v.as_str().unwrap_or("").to_string();
    (
        s(&obj["metadata"]["namespace"]),
        s(&obj["metadata"]["name"]),
    )
}

impl Watch {
    fn snapshot(&self) -> Result<Vec<Value>, ApiError> {
        let s = self.store.lock();
        let mut out = Vec::new();
        for obj in s.list(self.rt, self.namespace.as_deref()) {
            if !store::labels_match(&self.selector, &obj["metadata"]["labels"]) {
                continue;
            }
            if let Some(fs) = &self.fields {
                if !store::field_selector_matches(fs, &obj)? {
                    continue;
                }
            }
            out.push(obj);
        }
        Ok(out)
    }

    /// The events since the last look.
    fn changes(&mut self) -> Vec<Value> {
        let Ok(now) = self.snapshot() else {
            return Vec::new();
        };
        let mut events = Vec::new();
        let mut present = HashMap::new();
        for obj in now {
            let key = key_of(&obj);
            let rv = rv_of(&obj);
            match self.seen.get(&key) {
                None if self.first && self.since > 0 && rv <= self.since => {}
                None if self.first && self.since > 0 => events.push(("MODIFIED", obj.clone())),
                None => events.push(("ADDED", obj.clone())),
                Some((old, _)) if *old != rv => events.push(("MODIFIED", obj.clone())),
                Some(_) => {}
            }
            present.insert(key, (rv, obj));
        }
        for (key, (_, obj)) in &self.seen {
            if !present.contains_key(key) {
                events.push(("DELETED", obj.clone()));
            }
        }
        self.seen = present;
        self.first = false;
        events
            .into_iter()
            .map(|(kind, object)| json!({ "type": kind, "object": object }))
            .collect()
    }
}

/// The streaming answer to a watch of `rt` in `namespace`.
pub fn serve(
    store: Shared,
    rt: ResourceType,
    namespace: Option<String>,
    query: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let selector = match query.get("labelSelector") {
        Some(sel) => store::parse_label_selector(sel)?,
        None => Vec::new(),
    };
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(300)
        .min(1800);
    let since = query
        .get("resourceVersion")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let watch = Watch {
        store,
        rt,
        namespace,
        selector,
        fields: query.get("fieldSelector").cloned(),
        seen: HashMap::new(),
        since,
        first: true,
        deadline: tokio::time::Instant::now() + Duration::from_secs(timeout),
    };
    // Validate the field selector before answering 200.
    watch.snapshot()?;
    let stream = futures::stream::unfold(watch, |mut w| async move {
        loop {
            if w.store.stopped.load(Ordering::SeqCst) || tokio::time::Instant::now() >= w.deadline {
                return None;
            }
            let events = w.changes();
            if !events.is_empty() {
                let mut chunk = String::new();
                for e in events {
                    chunk.push_str(&e.to_string());
                    chunk.push('\n');
                }
                return Some((Ok::<Bytes, std::convert::Infallible>(Bytes::from(chunk)), w));
            }
            tokio::time::sleep(POLL).await;
        }
    });
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        Body::from_stream(stream),
    )
        .into_response())
}
