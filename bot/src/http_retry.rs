//! Sending to a chat platform's API with rate limits respected: a 429 is
//! waited out (its `Retry-After`, in seconds, possibly fractional, or a wait
//! the platform puts in the body) and retried, a few times at most.

use std::time::Duration;

pub const MAX_ATTEMPTS: u32 = 4;
const MAX_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// No answer: the connection failed or timed out.
    Transport(&'static str),
    /// Still 429 after every attempt.
    RateLimited,
}

/// A non-429 answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

/// Sends the request `make` builds, retrying after 429s. `body_wait` reads
/// a wait from a 429's body when the header has none (Discord's
/// `retry_after`).
pub async fn send(
    what: &str,
    make: impl Fn() -> reqwest::RequestBuilder,
    body_wait: impl Fn(&str) -> Option<f64>,
) -> Result<Answer, SendError> {
    for _ in 0..MAX_ATTEMPTS {
        let resp = make()
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| {
                SendError::Transport(if e.is_timeout() {
                    "timed out"
                } else {
                    "request failed"
                })
            })?;
        let status = resp.status().as_u16();
        let header_wait = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok());
        let body = resp.text().await.unwrap_or_default();
        if status == 429 {
            let secs = header_wait.or_else(|| body_wait(&body)).unwrap_or(1.0);
            let wait = Duration::from_secs_f64(secs.clamp(0.0, MAX_WAIT.as_secs_f64()));
            tracing::warn!(
                what,
                wait_ms = wait.as_millis() as u64,
                "rate limited; retrying"
            );
            tokio::time::sleep(wait).await;
            continue;
        }
        return Ok(Answer { status, body });
    }
    Err(SendError::RateLimited)
}
