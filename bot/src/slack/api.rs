//! One client for Slack's Web API and for `response_url` posts.
//!
//! The base URL is configurable (`SLACK_API_URL`, default
//! `https://slack.com/api`) for GovSlack, proxies and tests. The bot token
//! goes in the Authorization header and nowhere else (never in logs or
//! errors). A 429 is retried after its `Retry-After`, a few times at most.

use serde_json::{json, Value};

pub const DEFAULT_API_URL: &str = "https://slack.com/api";

#[derive(Debug, thiserror::Error)]
pub enum SlackApiError {
    #[error("Slack API {method} answered ok=false: {error}")]
    Slack { method: String, error: String },
    #[error("Slack API {method}: HTTP {status}")]
    Http { method: String, status: u16 },
    #[error(
        "Slack API {method}: still rate limited after {} attempts",
        crate::http_retry::MAX_ATTEMPTS
    )]
    RateLimited { method: String },
    #[error("Slack API {method}: {message}")]
    Transport { method: String, message: String },
    #[error("no bot token: set SLACK_BOT_TOKEN")]
    NoToken,
    #[error("refused to post to a response_url that is not Slack's")]
    ForeignResponseUrl,
}

#[derive(Clone)]
pub struct SlackApi {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl std::fmt::Debug for SlackApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackApi")
            .field("base", &self.base)
            .field("token", &self.token.as_ref().map(|_| "[set]"))
            .finish()
    }
}

impl SlackApi {
    pub fn new(http: reqwest::Client, base: impl Into<String>, token: Option<String>) -> Self {
        SlackApi {
            http,
            base: base.into().trim_end_matches('/').to_string(),
            token,
        }
    }

    /// Sends one request, retrying after 429s; returns the response body.
    async fn send(
        &self,
        method: &str,
        make: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Value, SlackApiError> {
        let answer = crate::http_retry::send(method, make, |_| None)
            .await
            .map_err(|e| match e {
                crate::http_retry::SendError::Transport(message) => SlackApiError::Transport {
                    method: method.to_string(),
                    message: message.into(),
                },
                crate::http_retry::SendError::RateLimited => SlackApiError::RateLimited {
                    method: method.to_string(),
                },
            })?;
        if !(200..300).contains(&answer.status) {
            return Err(SlackApiError::Http {
                method: method.to_string(),
                status: answer.status,
            });
        }
        // response_url answers plain "ok"; the Web API answers JSON.
        Ok(serde_json::from_str(&answer.body)
            .unwrap_or_else(|_| json!({ "ok": true, "raw": answer.body })))
    }

    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    fn token(&self) -> Result<&str, SlackApiError> {
        self.token.as_deref().ok_or(SlackApiError::NoToken)
    }

    fn checked(method: &str, v: Value) -> Result<Value, SlackApiError> {
        if v["ok"] == true {
            Ok(v)
        } else {
            Err(SlackApiError::Slack {
                method: method.to_string(),
                error: v["error"].as_str().unwrap_or("unknown_error").to_string(),
            })
        }
    }

    /// Uploads a file into a channel, as Slack's upload flow has it:
    /// `files.getUploadURLExternal`, the bytes to the URL it gives, then
    /// `files.completeUploadExternal` to share it with a comment.
    pub async fn upload_file(
        &self,
        channel: &str,
        filename: &str,
        title: &str,
        content: &[u8],
        comment: Option<&str>,
    ) -> Result<(), SlackApiError> {
        let length = content.len().to_string();
        let slot = self
            .call_form(
                "files.getUploadURLExternal",
                &[("filename", filename), ("length", length.as_str())],
            )
            .await?;
        let (Some(url), Some(file_id)) = (slot["upload_url"].as_str(), slot["file_id"].as_str())
        else {
            return Err(SlackApiError::Slack {
                method: "files.getUploadURLExternal".into(),
                error: "no upload_url".into(),
            });
        };
        self.send("file upload", || {
            self.http
                .post(url)
                .header("content-type", "application/octet-stream")
                .body(content.to_vec())
        })
        .await?;
        let mut complete = json!({
            "files": [{ "id": file_id, "title": title }],
            "channel_id": channel,
        });
        if let Some(c) = comment {
            complete["initial_comment"] = json!(c);
        }
        self.call_json("files.completeUploadExternal", &complete)
            .await
            .map(|_| ())
    }

    /// A Web API method with a JSON body.
    pub async fn call_json(&self, method: &str, body: &Value) -> Result<Value, SlackApiError> {
        let token = self.token()?.to_string();
        let url = format!("{}/{method}", self.base);
        let v = self
            .send(method, || {
                self.http
                    .post(&url)
                    .bearer_auth(&token)
                    .header("content-type", "application/json; charset=utf-8")
                    .json(body)
            })
            .await?;
        Self::checked(method, v)
    }

    /// A Web API read method with form parameters.
    pub async fn call_form(
        &self,
        method: &str,
        params: &[(&str, &str)],
    ) -> Result<Value, SlackApiError> {
        let token = self.token()?.to_string();
        let url = format!("{}/{method}", self.base);
        let v = self
            .send(method, || {
                self.http.post(&url).bearer_auth(&token).form(params)
            })
            .await?;
        Self::checked(method, v)
    }

    pub async fn post_message(
        &self,
        channel: &str,
        content: &Value,
    ) -> Result<Value, SlackApiError> {
        let mut body = content.clone();
        body["channel"] = json!(channel);
        self.call_json("chat.postMessage", &body).await
    }

    pub async fn update_message(
        &self,
        channel: &str,
        ts: &str,
        content: &Value,
    ) -> Result<Value, SlackApiError> {
        let mut body = content.clone();
        body["channel"] = json!(channel);
        body["ts"] = json!(ts);
        self.call_json("chat.update", &body).await
    }

    /// The user ids in a user group.
    pub async fn usergroup_members(&self, group: &str) -> Result<Vec<String>, SlackApiError> {
        let v = self
            .call_form("usergroups.users.list", &[("usergroup", group)])
            .await?;
        Ok(v["users"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|u| u.as_str().map(String::from))
            .collect())
    }

    /// `apps.connections.open` with the app-level token: a Socket Mode URL.
    pub async fn open_socket(&self, app_token: &str) -> Result<String, SlackApiError> {
        let url = format!("{}/apps.connections.open", self.base);
        let v = self
            .send("apps.connections.open", || {
                self.http.post(&url).bearer_auth(app_token)
            })
            .await?;
        let v = Self::checked("apps.connections.open", v)?;
        v["url"]
            .as_str()
            .map(String::from)
            .ok_or(SlackApiError::Slack {
                method: "apps.connections.open".into(),
                error: "no url".into(),
            })
    }

    /// Whether a `response_url` from a payload is Slack's: under
    /// `https://hooks.slack.com/`, or, when the API base is configured (a
    /// proxy, GovSlack, tests), `https://hooks.<that host>/` or that base's
    /// own origin. Anything else is never posted to.
    pub fn is_slack_response_url(&self, url: &str) -> bool {
        let Ok(url) = reqwest::Url::parse(url) else {
            return false;
        };
        if url.username() != "" || url.password().is_some() {
            return false;
        }
        let host = url.host_str().unwrap_or_default();
        if url.scheme() == "https" && host == "hooks.slack.com" && url.port().is_none() {
            return true;
        }
        let Ok(base) = reqwest::Url::parse(&self.base) else {
            return false;
        };
        if self.base == DEFAULT_API_URL {
            return false;
        }
        let base_host = base.host_str().unwrap_or_default();
        let same_origin = url.scheme() == base.scheme()
            && host == base_host
            && url.port_or_known_default() == base.port_or_known_default();
        let hooks = url.scheme() == "https" && host == format!("hooks.{base_host}");
        same_origin || hooks
    }

    /// Posts to a `response_url` Slack sent (no token: the URL is the credential).
    pub async fn respond(&self, response_url: &str, body: &Value) -> Result<(), SlackApiError> {
        if !self.is_slack_response_url(response_url) {
            return Err(SlackApiError::ForeignResponseUrl);
        }
        self.send("response_url", || self.http.post(response_url).json(body))
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_slacks_response_urls_are_posted_to() {
        let slack = SlackApi::new(reqwest::Client::new(), DEFAULT_API_URL, None);
        assert!(slack.is_slack_response_url("https://hooks.slack.com/commands/T1/123/abc"));
        for bad in [
            "http://hooks.slack.com/commands/T1/123/abc",
            "https://hooks.slack.com.evil.example/commands/x",
            "https://evil.example/?https://hooks.slack.com/",
            "https://user:pw@hooks.slack.com/commands/x",
            "https://hooks.slack.com:8443/commands/x",
            "http://169.254.169.254/latest/meta-data/",
            "not a url",
        ] {
            assert!(!slack.is_slack_response_url(bad), "{bad}");
        }
        // A configured base (tests, GovSlack) allows its own origin and hooks host.
        let gov = SlackApi::new(reqwest::Client::new(), "https://slack-gov.com/api", None);
        assert!(gov.is_slack_response_url("https://hooks.slack-gov.com/commands/x"));
        assert!(!gov.is_slack_response_url("https://hooks.evil.example/commands/x"));
        let local = SlackApi::new(reqwest::Client::new(), "http://127.0.0.1:4000/api", None);
        assert!(local.is_slack_response_url("http://127.0.0.1:4000/response/1"));
        assert!(!local.is_slack_response_url("http://127.0.0.1:4001/response/1"));
    }
}
