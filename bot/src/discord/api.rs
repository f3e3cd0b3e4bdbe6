//! Discord's REST API: editing and following up interaction responses,
//! answering gateway interactions, and registering commands.
//!
//! The base URL is configurable (`DISCORD_API_URL`, default
//! `https://discord.com/api/v10`) so proxies and tests work. 429s are waited
//! out (`Retry-After`, or the body's `retry_after`) and retried a few times.
//! The bot token only ever goes in the Authorization header.

use serde_json::Value;

pub const DEFAULT_API_URL: &str = "https://discord.com/api/v10";

#[derive(Debug, thiserror::Error)]
pub enum DiscordApiError {
    #[error("Discord API {what}: HTTP {status}: {message}")]
    Http {
        what: String,
        status: u16,
        message: String,
    },
    #[error(
        "Discord API {what}: still rate limited after {} attempts",
        crate::http_retry::MAX_ATTEMPTS
    )]
    RateLimited { what: String },
    #[error("Discord API {what}: {message}")]
    Transport { what: String, message: String },
    #[error("{0} is not set")]
    Missing(&'static str),
    #[error("refused an interaction token or id that is not made of token characters")]
    BadToken,
}

/// Whether a value from a payload may go into a URL path: an interaction
/// token or id is letters, digits, `-`, `_` and `.` (never `/`, `..`, `?`
/// or `%`), and not absurdly long.
pub fn is_token(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 512
        && value != "."
        && !value.contains("..")
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

fn checked(value: &str) -> Result<&str, DiscordApiError> {
    if is_token(value) {
        Ok(value)
    } else {
        Err(DiscordApiError::BadToken)
    }
}

#[derive(Clone)]
pub struct DiscordApi {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
    pub application_id: Option<String>,
}

impl std::fmt::Debug for DiscordApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiscordApi")
            .field("base", &self.base)
            .field("token", &self.token.as_ref().map(|_| "[set]"))
            .finish()
    }
}

impl DiscordApi {
    pub fn new(
        http: reqwest::Client,
        base: impl Into<String>,
        token: Option<String>,
        application_id: Option<String>,
    ) -> Self {
        DiscordApi {
            http,
            base: base.into().trim_end_matches('/').to_string(),
            token,
            application_id,
        }
    }

    async fn send(
        &self,
        what: &str,
        make: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Value, DiscordApiError> {
        let body_wait = |body: &str| {
            serde_json::from_str::<Value>(body)
                .ok()
                .and_then(|v| v["retry_after"].as_f64())
        };
        let answer = crate::http_retry::send(what, make, body_wait)
            .await
            .map_err(|e| match e {
                crate::http_retry::SendError::Transport(message) => DiscordApiError::Transport {
                    what: what.to_string(),
                    message: message.into(),
                },
                crate::http_retry::SendError::RateLimited => DiscordApiError::RateLimited {
                    what: what.to_string(),
                },
            })?;
        if !(200..300).contains(&answer.status) {
            let message: String = answer.body.chars().take(200).collect();
            return Err(DiscordApiError::Http {
                what: what.to_string(),
                status: answer.status,
                message,
            });
        }
        Ok(serde_json::from_str(&answer.body).unwrap_or(Value::Null))
    }

    fn app(&self) -> Result<&str, DiscordApiError> {
        self.application_id
            .as_deref()
            .ok_or(DiscordApiError::Missing("DISCORD_APPLICATION_ID"))
    }

    fn bot(&self) -> Result<String, DiscordApiError> {
        self.token
            .as_ref()
            .map(|t| format!("Bot {t}"))
            .ok_or(DiscordApiError::Missing("DISCORD_BOT_TOKEN"))
    }

    /// `PATCH /webhooks/{application_id}/{token}/messages/@original`
    pub async fn edit_original(&self, token: &str, body: &Value) -> Result<Value, DiscordApiError> {
        let token = checked(token)?;
        let url = format!(
            "{}/webhooks/{}/{token}/messages/@original",
            self.base,
            self.app()?
        );
        self.send("edit original response", || {
            self.http.patch(&url).json(body)
        })
        .await
    }

    /// `POST /webhooks/{application_id}/{token}`
    pub async fn followup(&self, token: &str, body: &Value) -> Result<Value, DiscordApiError> {
        let token = checked(token)?;
        let url = format!("{}/webhooks/{}/{token}", self.base, self.app()?);
        self.send("follow-up message", || self.http.post(&url).json(body))
            .await
    }

    /// `POST /interactions/{id}/{token}/callback` (gateway mode).
    pub async fn callback(
        &self,
        id: &str,
        token: &str,
        body: &Value,
    ) -> Result<Value, DiscordApiError> {
        let (id, token) = (checked(id)?, checked(token)?);
        let url = format!("{}/interactions/{id}/{token}/callback", self.base);
        self.send("interaction callback", || self.http.post(&url).json(body))
            .await
    }

    /// Bulk-overwrites the application's commands, globally or in a guild.
    pub async fn overwrite_commands(
        &self,
        guild: Option<&str>,
        commands: &Value,
    ) -> Result<Value, DiscordApiError> {
        let app = self.app()?;
        let auth = self.bot()?;
        let url = match guild {
            Some(g) => format!("{}/applications/{app}/guilds/{g}/commands", self.base),
            None => format!("{}/applications/{app}/commands", self.base),
        };
        self.send("register commands", || {
            self.http
                .put(&url)
                .header("authorization", &auth)
                .json(commands)
        })
        .await
    }

    /// A bot-authenticated REST call (channels, messages, DMs).
    async fn bot_call(
        &self,
        what: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, DiscordApiError> {
        let auth = self.bot()?;
        let url = format!("{}{path}", self.base);
        self.send(what, || {
            let req = self
                .http
                .request(method.clone(), &url)
                .header("authorization", &auth);
            match body {
                Some(b) => req.json(b),
                None => req,
            }
        })
        .await
    }

    /// `POST /channels/{channel}/messages`
    pub async fn create_message(
        &self,
        channel: &str,
        body: &Value,
    ) -> Result<Value, DiscordApiError> {
        self.bot_call(
            "create message",
            reqwest::Method::POST,
            &format!("/channels/{channel}/messages"),
            Some(body),
        )
        .await
    }

    /// `POST /channels/{channel}/messages` with one file attached
    /// (multipart: `payload_json` and `files[0]`).
    pub async fn create_message_with_file(
        &self,
        channel: &str,
        body: &Value,
        filename: &str,
        content: &[u8],
    ) -> Result<Value, DiscordApiError> {
        let auth = self.bot()?;
        let url = format!("{}/channels/{channel}/messages", self.base);
        let mut payload = body.clone();
        payload["attachments"] = serde_json::json!([{ "id": 0, "filename": filename }]);
        let payload = payload.to_string();
        self.send("create message", || {
            let file = reqwest::multipart::Part::bytes(content.to_vec())
                .file_name(filename.to_string())
                .mime_str("text/markdown")
                .expect("a valid MIME type");
            // Field names as Discord reads them (`files[0]`, not
            // percent-encoded brackets).
            let form = reqwest::multipart::Form::new()
                .percent_encode_noop()
                .text("payload_json", payload.clone())
                .part("files[0]", file);
            self.http
                .post(&url)
                .header("authorization", &auth)
                .multipart(form)
        })
        .await
    }

    /// `PATCH /channels/{channel}/messages/{message}`
    pub async fn edit_message(
        &self,
        channel: &str,
        message: &str,
        body: &Value,
    ) -> Result<Value, DiscordApiError> {
        self.bot_call(
            "edit message",
            reqwest::Method::PATCH,
            &format!("/channels/{channel}/messages/{message}"),
            Some(body),
        )
        .await
    }

    /// `POST /users/@me/channels`: the DM channel with a user.
    pub async fn open_dm(&self, user: &str) -> Result<Value, DiscordApiError> {
        self.bot_call(
            "open DM",
            reqwest::Method::POST,
            "/users/@me/channels",
            Some(&serde_json::json!({ "recipient_id": user })),
        )
        .await
    }

    /// `GET /guilds/{guild}/members/{user}`: the member's role ids now;
    /// `None` when they are no longer a member of the guild.
    pub async fn member_roles(
        &self,
        guild: &str,
        user: &str,
    ) -> Result<Option<Vec<String>>, DiscordApiError> {
        let snowflake =
            |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
        if !snowflake(guild) || !snowflake(user) {
            return Err(DiscordApiError::BadToken);
        }
        let member = self
            .bot_call(
                "get guild member",
                reqwest::Method::GET,
                &format!("/guilds/{guild}/members/{user}"),
                None,
            )
            .await;
        match member {
            Ok(m) => Ok(Some(
                m["roles"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|r| r.as_str().map(String::from))
                    .collect(),
            )),
            Err(DiscordApiError::Http { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `GET /guilds/{guild}/channels`
    pub async fn guild_channels(&self, guild: &str) -> Result<Value, DiscordApiError> {
        self.bot_call(
            "list guild channels",
            reqwest::Method::GET,
            &format!("/guilds/{guild}/channels"),
            None,
        )
        .await
    }

    /// `GET /guilds/{guild}/threads/active`
    pub async fn active_threads(&self, guild: &str) -> Result<Value, DiscordApiError> {
        self.bot_call(
            "list active threads",
            reqwest::Method::GET,
            &format!("/guilds/{guild}/threads/active"),
            None,
        )
        .await
    }

    /// `POST /channels/{channel}/threads`: a thread not started from a message.
    pub async fn start_thread(
        &self,
        channel: &str,
        body: &Value,
    ) -> Result<Value, DiscordApiError> {
        self.bot_call(
            "start thread",
            reqwest::Method::POST,
            &format!("/channels/{channel}/threads"),
            Some(body),
        )
        .await
    }

    /// `POST /guilds/{guild}/channels`
    pub async fn create_guild_channel(
        &self,
        guild: &str,
        body: &Value,
    ) -> Result<Value, DiscordApiError> {
        self.bot_call(
            "create channel",
            reqwest::Method::POST,
            &format!("/guilds/{guild}/channels"),
            Some(body),
        )
        .await
    }
}

#[cfg(test)]
mod token_tests {
    #[test]
    fn only_token_characters_reach_a_url_path() {
        assert!(super::is_token("aW50ZXJhY3Rpb246MTIz.abc-DEF_09"));
        assert!(super::is_token("1130000000000000001"));
        for bad in [
            "",
            ".",
            "../../channels/1/messages",
            "a/b",
            "a?b",
            "a%2Fb",
            "a b",
            "a#b",
        ] {
            assert!(!super::is_token(bad), "{bad}");
        }
        assert!(!super::is_token(&"a".repeat(513)));
    }
}
