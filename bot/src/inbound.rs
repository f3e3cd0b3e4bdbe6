//! What every chat adapter does to an inbound request before anything else:
//! refuse a body over the size limit before reading it whole, check the
//! signature's timestamp is within five minutes either way, and refuse with
//! a generic answer that is counted in a metric (never echoing secrets or
//! signatures). Slack's HMAC and Discord's Ed25519 checks use these.

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::metrics::Metrics;

/// How far a request's timestamp may be from now, either way.
pub const MAX_SKEW_SECS: i64 = 5 * 60;

/// Why a request was refused. The reason is for metrics and logs; the
/// client only sees a generic 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("missing signature or timestamp header")]
    MissingHeader,
    #[error("timestamp is not a number")]
    BadTimestamp,
    #[error("timestamp is more than five minutes old")]
    Stale,
    #[error("timestamp is more than five minutes in the future")]
    Future,
    #[error("signature does not verify")]
    BadSignature,
}

impl VerifyError {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            VerifyError::MissingHeader => "missing_header",
            VerifyError::BadTimestamp => "bad_timestamp",
            VerifyError::Stale => "stale",
            VerifyError::Future => "future",
            VerifyError::BadSignature => "bad_signature",
        }
    }
}

/// How long a command asks to be followed (`--wait`), if it does: adapters
/// refuse waits longer than their platform lets a bot answer.
pub fn requested_wait(text: &str) -> Option<std::time::Duration> {
    match oncall_grammar::parse(text)
        .ok()?
        .command
        .values()
        .get("wait")
    {
        Some(oncall_grammar::Value::Duration(w)) => Some(*w),
        _ => None,
    }
}

/// Checks a Unix-seconds timestamp header against `now`, both directions.
pub fn check_age(timestamp: &str, now: i64) -> Result<(), VerifyError> {
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| VerifyError::BadTimestamp)?;
    // Checked: a hostile `ts` (i64::MIN) must not overflow.
    match now.checked_sub(ts) {
        Some(age) if age > MAX_SKEW_SECS => Err(VerifyError::Stale),
        Some(age) if age < -MAX_SKEW_SECS => Err(VerifyError::Future),
        Some(_) => Ok(()),
        None if ts < now => Err(VerifyError::Stale),
        None => Err(VerifyError::Future),
    }
}

/// Counts and answers a refused request.
pub fn refuse(metrics: &Metrics, platform: &str, reason: &str, status: StatusCode) -> Response {
    metrics.refused.with_label_values(&[platform, reason]).inc();
    tracing::warn!(platform, reason, "refused an inbound request");
    let body = if status == StatusCode::UNAUTHORIZED {
        "unauthorized"
    } else {
        "request refused"
    };
    (status, body).into_response()
}

/// Reads the body if it is within `limit` bytes: a declared length over the
/// limit is refused without reading, and reading stops at the limit.
pub async fn read_limited(
    metrics: &Metrics,
    platform: &str,
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Bytes, Response> {
    let declared = headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(refuse(
            metrics,
            platform,
            "too_large",
            StatusCode::PAYLOAD_TOO_LARGE,
        ));
    }
    axum::body::to_bytes(body, limit).await.map_err(|_| {
        refuse(
            metrics,
            platform,
            "too_large",
            StatusCode::PAYLOAD_TOO_LARGE,
        )
    })
}

/// A header as text, if present.
pub fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

#[cfg(test)]
mod tests {
    #[test]
    fn hostile_timestamps_are_refused_without_overflow() {
        let now = 1_700_000_000;
        assert_eq!(
            super::check_age(&i64::MIN.to_string(), now),
            Err(super::VerifyError::Stale)
        );
        assert_eq!(
            super::check_age(&i64::MAX.to_string(), now),
            Err(super::VerifyError::Future)
        );
        assert_eq!(
            super::check_age(&i64::MIN.to_string(), i64::MAX),
            Err(super::VerifyError::Stale)
        );
        assert_eq!(
            super::check_age(&i64::MAX.to_string(), i64::MIN),
            Err(super::VerifyError::Future)
        );
        assert_eq!(super::check_age(&now.to_string(), now), Ok(()));
    }

    use super::*;

    #[test]
    fn ages_are_checked_both_ways() {
        assert_eq!(check_age("1000", 1000 + MAX_SKEW_SECS), Ok(()));
        assert_eq!(check_age("1000", 1000 - MAX_SKEW_SECS), Ok(()));
        assert_eq!(
            check_age("1000", 1001 + MAX_SKEW_SECS),
            Err(VerifyError::Stale)
        );
        assert_eq!(
            check_age("1000", 999 - MAX_SKEW_SECS),
            Err(VerifyError::Future)
        );
        assert_eq!(check_age("ten", 1000), Err(VerifyError::BadTimestamp));
    }
}

/// How a request was answered within the platform's acknowledgement deadline.
#[derive(Debug)]
pub enum Answered {
    /// Done in time: answer with this reply directly.
    Now(crate::reply::Reply),
    /// Still running: acknowledge now; `later` delivers the reply.
    Deferred,
    /// The command's task failed (a bug): nothing more will happen.
    Crashed,
}

/// The one "answer within the ack deadline or defer and follow up" of every
/// adapter. Runs `work` as a supervised task; if it finishes within `ack`,
/// its reply is returned. If not, `later` is handed the still-running task,
/// as supervised work of its own (so shutdown waits for the follow-up too),
/// and the adapter acknowledges at once.
pub async fn answer_or_defer<W, L, Fut>(
    supervisor: &crate::supervisor::Supervisor,
    ack: std::time::Duration,
    name: &'static str,
    work: W,
    later: L,
) -> Answered
where
    W: std::future::Future<Output = crate::reply::Reply> + Send + 'static,
    L: FnOnce(tokio::task::JoinHandle<crate::reply::Reply>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut task = supervisor.spawn(name, work);
    match tokio::time::timeout(ack, &mut task).await {
        Ok(Ok(reply)) => Answered::Now(reply),
        Ok(Err(e)) => {
            tracing::error!("{name} failed: {e}");
            Answered::Crashed
        }
        Err(_) => {
            supervisor.spawn(name, later(task));
            Answered::Deferred
        }
    }
}
