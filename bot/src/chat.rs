//! The outbound side: posting to chat when no one asked.
//!
//! A command's answer goes back the way the command came (HTTP response,
//! `response_url`, interaction edits). Incidents, reminders and pages need
//! more: post a message to a channel, update it later, message a person
//! directly, create a channel for an incident and invite its people. A
//! [`ChatSink`] does exactly that for one platform, from a platform-neutral
//! [`Reply`]; Slack, Discord and the console each implement it. Errors are
//! the platforms' own cases, typed, so callers can act on them:
//! `name_taken` is adopted when the channel is ours, `already_in_channel` is
//! success, and 429s are waited out by the HTTP layer.

use std::future::Future;
use std::sync::{Arc, Mutex};

use serde_json::json;

use crate::discord::api::{DiscordApi, DiscordApiError};
use crate::reply::Reply;
use crate::slack::api::{SlackApi, SlackApiError};

/// A message that was posted, so it can be updated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRef {
    pub channel: String,
    /// Slack's `ts`, Discord's message id.
    pub id: String,
}

/// A channel to create (an incident's `inc-42-checkout-down`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewChannel {
    /// Lower-case, digits and dashes, at most 80 characters.
    pub name: String,
    pub topic: Option<String>,
    /// Platform user ids to invite.
    pub invite: Vec<String>,
    /// On Discord, make it a thread of this channel instead of a channel.
    pub thread_of: Option<String>,
}

/// A file to share in a channel (a postmortem draft).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileUpload {
    pub filename: String,
    pub title: String,
    pub content: String,
    /// The message it comes with.
    pub comment: String,
}

/// A channel that exists now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    pub id: String,
    pub name: String,
    /// It existed already and is ours (created by this bot): adopted rather
    /// than created, as after a crash between creating and recording it.
    pub adopted: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error("a channel named {0} exists and is not oncall's")]
    NameTaken(String),
    #[error("{0} was not found")]
    NotFound(String),
    #[error("the platform refused: {0}")]
    Refused(String),
    #[error("still rate limited: {0}")]
    RateLimited(String),
    #[error("the platform could not be reached: {0}")]
    Unreachable(String),
    #[error("not configured: {0}")]
    NotConfigured(&'static str),
}

/// Posting to one chat platform.
pub trait ChatSink: Send + Sync {
    fn post(
        &self,
        channel: &str,
        reply: &Reply,
    ) -> impl Future<Output = Result<MessageRef, ChatError>> + Send;

    fn update(
        &self,
        message: &MessageRef,
        reply: &Reply,
    ) -> impl Future<Output = Result<(), ChatError>> + Send;

    fn direct_message(
        &self,
        user: &str,
        reply: &Reply,
    ) -> impl Future<Output = Result<MessageRef, ChatError>> + Send;

    /// Creates the channel (or adopts ours of that name) and invites people.
    fn create_channel(
        &self,
        channel: &NewChannel,
    ) -> impl Future<Output = Result<Channel, ChatError>> + Send;

    /// Shares a file in a channel.
    fn upload(
        &self,
        channel: &str,
        file: &FileUpload,
    ) -> impl Future<Output = Result<(), ChatError>> + Send;
}

/// Whether a channel name is one every platform accepts.
pub fn valid_channel_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 80
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

fn slack_error(e: SlackApiError) -> ChatError {
    match e {
        SlackApiError::Slack { error, method } => match error.as_str() {
            "channel_not_found" | "user_not_found" | "message_not_found" => {
                ChatError::NotFound(format!("{method}: {error}"))
            }
            _ => ChatError::Refused(format!("{method}: {error}")),
        },
        SlackApiError::RateLimited { method } => ChatError::RateLimited(method),
        SlackApiError::NoToken => ChatError::NotConfigured("SLACK_BOT_TOKEN"),
        other => ChatError::Unreachable(other.to_string()),
    }
}

/// Slack through the Web API.
pub struct SlackSink {
    api: SlackApi,
    /// The bot's own user id (`auth.test`), to recognise our channels.
    me: tokio::sync::OnceCell<String>,
}

impl SlackSink {
    pub fn new(api: SlackApi) -> Self {
        SlackSink {
            api,
            me: tokio::sync::OnceCell::new(),
        }
    }

    async fn me(&self) -> Result<&str, ChatError> {
        self.me
            .get_or_try_init(|| async {
                // A read method: form arguments (Slack takes JSON only for writes).
                let v = self
                    .api
                    .call_form("auth.test", &[])
                    .await
                    .map_err(slack_error)?;
                Ok::<_, ChatError>(v["user_id"].as_str().unwrap_or_default().to_string())
            })
            .await
            .map(String::as_str)
    }

    /// Our public channel with this name, if there is one.
    async fn find_ours(&self, name: &str) -> Result<Option<(String, bool)>, ChatError> {
        let me = self.me().await?.to_string();
        let mut cursor = String::new();
        // Bounded: a workspace with more channels than this is searched no further.
        for _ in 0..50 {
            // A read method: form arguments (Slack takes JSON only for writes).
            let v = self
                .api
                .call_form(
                    "conversations.list",
                    &[
                        ("types", "public_channel,private_channel"),
                        ("exclude_archived", "true"),
                        ("limit", "200"),
                        ("cursor", &cursor),
                    ],
                )
                .await
                .map_err(slack_error)?;
            for c in v["channels"].as_array().into_iter().flatten() {
                if c["name"] == name {
                    let ours = c["creator"] == me.as_str();
                    return Ok(Some((
                        c["id"].as_str().unwrap_or_default().to_string(),
                        ours,
                    )));
                }
            }
            cursor = v["response_metadata"]["next_cursor"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if cursor.is_empty() {
                break;
            }
        }
        Ok(None)
    }
}

impl ChatSink for SlackSink {
    async fn upload(&self, channel: &str, file: &FileUpload) -> Result<(), ChatError> {
        self.api
            .upload_file(
                channel,
                &file.filename,
                &file.title,
                file.content.as_bytes(),
                Some(&file.comment),
            )
            .await
            .map_err(slack_error)
    }

    async fn post(&self, channel: &str, reply: &Reply) -> Result<MessageRef, ChatError> {
        let v = self
            .api
            .post_message(channel, &crate::slack::render::message(reply))
            .await
            .map_err(slack_error)?;
        Ok(MessageRef {
            channel: v["channel"].as_str().unwrap_or(channel).to_string(),
            id: v["ts"].as_str().unwrap_or_default().to_string(),
        })
    }

    async fn update(&self, message: &MessageRef, reply: &Reply) -> Result<(), ChatError> {
        self.api
            .update_message(
                &message.channel,
                &message.id,
                &crate::slack::render::message(reply),
            )
            .await
            .map_err(slack_error)?;
        Ok(())
    }

    async fn direct_message(&self, user: &str, reply: &Reply) -> Result<MessageRef, ChatError> {
        let v = self
            .api
            .call_json("conversations.open", &json!({ "users": user }))
            .await
            .map_err(slack_error)?;
        let channel = v["channel"]["id"].as_str().unwrap_or_default().to_string();
        self.post(&channel, reply).await
    }

    async fn create_channel(&self, spec: &NewChannel) -> Result<Channel, ChatError> {
        if !valid_channel_name(&spec.name) {
            return Err(ChatError::Refused(format!(
                "invalid channel name {}",
                spec.name
            )));
        }
        let created = self
            .api
            .call_json("conversations.create", &json!({ "name": spec.name }))
            .await;
        let (id, adopted) = match created {
            Ok(v) => (
                v["channel"]["id"].as_str().unwrap_or_default().to_string(),
                false,
            ),
            Err(SlackApiError::Slack { error, .. }) if error == "name_taken" => {
                match self.find_ours(&spec.name).await? {
                    Some((id, true)) => (id, true),
                    _ => return Err(ChatError::NameTaken(spec.name.clone())),
                }
            }
            Err(e) => return Err(slack_error(e)),
        };
        if let Some(topic) = &spec.topic {
            self.api
                .call_json(
                    "conversations.setTopic",
                    &json!({ "channel": id, "topic": topic }),
                )
                .await
                .map_err(slack_error)?;
        }
        if !spec.invite.is_empty() {
            let invited = self
                .api
                .call_json(
                    "conversations.invite",
                    &json!({ "channel": id, "users": spec.invite.join(",") }),
                )
                .await;
            match invited {
                Ok(_) => {}
                // Everyone is there already (e.g. an adopted channel): done.
                Err(SlackApiError::Slack { error, .. }) if error == "already_in_channel" => {}
                Err(e) => return Err(slack_error(e)),
            }
        }
        Ok(Channel {
            id,
            name: spec.name.clone(),
            adopted,
        })
    }
}

fn discord_error(e: DiscordApiError) -> ChatError {
    match e {
        DiscordApiError::Http {
            status: 404, what, ..
        } => ChatError::NotFound(what),
        DiscordApiError::Http {
            what,
            status,
            message,
        } => ChatError::Refused(format!("{what}: HTTP {status}: {message}")),
        DiscordApiError::RateLimited { what } => ChatError::RateLimited(what),
        DiscordApiError::Missing(what) => ChatError::NotConfigured(what),
        other => ChatError::Unreachable(other.to_string()),
    }
}

/// Discord through its REST API, in one guild.
pub struct DiscordSink {
    api: DiscordApi,
    /// Where incident channels are created.
    guild: Option<String>,
}

impl DiscordSink {
    pub fn new(api: DiscordApi, guild: Option<String>) -> Self {
        DiscordSink { api, guild }
    }
}

impl DiscordSink {
    /// A public thread of `parent`, or ours of that name if it exists.
    async fn thread(
        &self,
        guild: &str,
        parent: &str,
        spec: &NewChannel,
    ) -> Result<Channel, ChatError> {
        let active = self
            .api
            .active_threads(guild)
            .await
            .map_err(discord_error)?;
        if let Some(t) = active["threads"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["parent_id"] == parent && t["name"] == spec.name.as_str())
        {
            return Ok(Channel {
                id: t["id"].as_str().unwrap_or_default().to_string(),
                name: spec.name.clone(),
                adopted: true,
            });
        }
        // 11: a public thread; archived after a week without messages.
        let body = json!({ "name": spec.name, "type": 11, "auto_archive_duration": 10080 });
        let v = self
            .api
            .start_thread(parent, &body)
            .await
            .map_err(discord_error)?;
        Ok(Channel {
            id: v["id"].as_str().unwrap_or_default().to_string(),
            name: spec.name.clone(),
            adopted: false,
        })
    }
}

impl ChatSink for DiscordSink {
    async fn upload(&self, channel: &str, file: &FileUpload) -> Result<(), ChatError> {
        self.api
            .create_message_with_file(
                channel,
                &json!({ "content": file.comment }),
                &file.filename,
                file.content.as_bytes(),
            )
            .await
            .map(|_| ())
            .map_err(discord_error)
    }

    async fn post(&self, channel: &str, reply: &Reply) -> Result<MessageRef, ChatError> {
        let v = self
            .api
            .create_message(channel, &crate::discord::render::message(reply))
            .await
            .map_err(discord_error)?;
        Ok(MessageRef {
            channel: channel.to_string(),
            id: v["id"].as_str().unwrap_or_default().to_string(),
        })
    }

    async fn update(&self, message: &MessageRef, reply: &Reply) -> Result<(), ChatError> {
        self.api
            .edit_message(
                &message.channel,
                &message.id,
                &crate::discord::render::message(reply),
            )
            .await
            .map_err(discord_error)?;
        Ok(())
    }

    async fn direct_message(&self, user: &str, reply: &Reply) -> Result<MessageRef, ChatError> {
        let dm = self.api.open_dm(user).await.map_err(discord_error)?;
        let channel = dm["id"].as_str().unwrap_or_default().to_string();
        self.post(&channel, reply).await
    }

    /// Discord allows two channels of one name, so ours is looked up first
    /// and adopted; a guild text channel is visible to the guild's members,
    /// so there is no one to invite.
    async fn create_channel(&self, spec: &NewChannel) -> Result<Channel, ChatError> {
        let guild = self
            .guild
            .as_deref()
            .ok_or(ChatError::NotConfigured("discord.guild"))?;
        if !valid_channel_name(&spec.name) {
            return Err(ChatError::Refused(format!(
                "invalid channel name {}",
                spec.name
            )));
        }
        if let Some(parent) = &spec.thread_of {
            return self.thread(guild, parent, spec).await;
        }
        let existing = self
            .api
            .guild_channels(guild)
            .await
            .map_err(discord_error)?;
        if let Some(c) = existing
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == 0 && c["name"] == spec.name.as_str())
        {
            return Ok(Channel {
                id: c["id"].as_str().unwrap_or_default().to_string(),
                name: spec.name.clone(),
                adopted: true,
            });
        }
        let mut body = json!({ "name": spec.name, "type": 0 });
        if let Some(topic) = &spec.topic {
            body["topic"] = json!(topic);
        }
        let v = self
            .api
            .create_guild_channel(guild, &body)
            .await
            .map_err(discord_error)?;
        Ok(Channel {
            id: v["id"].as_str().unwrap_or_default().to_string(),
            name: spec.name.clone(),
            adopted: false,
        })
    }
}

/// The console's sink: what would be posted is kept, and printed too when
/// made with [`ConsoleSink::printing`] (the demo).
#[derive(Clone, Default)]
pub struct ConsoleSink {
    posted: Arc<Mutex<Vec<(String, String)>>>,
    print: bool,
}

impl ConsoleSink {
    /// A sink that also prints each post (`[#channel] …`) to stdout.
    pub fn printing() -> Self {
        ConsoleSink {
            print: true,
            ..Default::default()
        }
    }

    /// (channel, console text) of everything posted so far.
    pub fn posted(&self) -> Vec<(String, String)> {
        self.posted.lock().expect("console sink lock").clone()
    }

    fn push(&self, channel: &str, reply: &Reply) -> MessageRef {
        let mut posted = self.posted.lock().expect("console sink lock");
        let text = reply.to_console();
        if self.print {
            println!("[#{channel}] {}", text.trim_end());
        }
        posted.push((channel.to_string(), text));
        MessageRef {
            channel: channel.to_string(),
            id: posted.len().to_string(),
        }
    }
}

impl ChatSink for ConsoleSink {
    async fn post(&self, channel: &str, reply: &Reply) -> Result<MessageRef, ChatError> {
        Ok(self.push(channel, reply))
    }

    async fn update(&self, message: &MessageRef, reply: &Reply) -> Result<(), ChatError> {
        self.push(&message.channel, reply);
        Ok(())
    }

    async fn direct_message(&self, user: &str, reply: &Reply) -> Result<MessageRef, ChatError> {
        Ok(self.push(&format!("@{user}"), reply))
    }

    async fn create_channel(&self, spec: &NewChannel) -> Result<Channel, ChatError> {
        if !valid_channel_name(&spec.name) {
            return Err(ChatError::Refused(format!(
                "invalid channel name {}",
                spec.name
            )));
        }
        Ok(Channel {
            id: spec.name.clone(),
            name: spec.name.clone(),
            adopted: false,
        })
    }

    async fn upload(&self, channel: &str, file: &FileUpload) -> Result<(), ChatError> {
        let reply = Reply::new(crate::reply::Outcome::Info, file.comment.clone()).text(format!(
            "📎 {} ({} bytes)",
            file.filename,
            file.content.len()
        ));
        self.push(channel, &reply);
        Ok(())
    }
}

/// The sinks this process has, one per platform it serves: what the
/// incident courier posts through, choosing by an incident's platform.
#[derive(Default)]
pub struct Sinks {
    pub slack: Option<SlackSink>,
    /// Discord's API: a sink is made per guild (channels are created in
    /// the incident's own guild).
    pub discord: Option<DiscordApi>,
    pub console: Option<ConsoleSink>,
}

/// The sink of one platform, borrowed from [`Sinks`].
enum Sink<'a> {
    Slack(&'a SlackSink),
    Discord(DiscordSink),
    Console(&'a ConsoleSink),
}

/// Calls the same [`ChatSink`] method on whichever sink it is.
macro_rules! on_sink {
    ($sink:expr, $s:ident => $call:expr) => {
        match $sink {
            Sink::Slack($s) => $call,
            Sink::Discord(ref $s) => $call,
            Sink::Console($s) => $call,
        }
    };
}

impl Sinks {
    /// The sink for `platform` (`slack`, `discord`, `cli`); `workspace` is
    /// the Discord guild (where channels are created).
    fn sink(&self, platform: &str, workspace: Option<&str>) -> Result<Sink<'_>, ChatError> {
        match platform {
            "slack" => self
                .slack
                .as_ref()
                .map(Sink::Slack)
                .ok_or(ChatError::NotConfigured("SLACK_BOT_TOKEN")),
            "discord" => {
                let api = self
                    .discord
                    .clone()
                    .ok_or(ChatError::NotConfigured("DISCORD_BOT_TOKEN"))?;
                Ok(Sink::Discord(DiscordSink::new(
                    api,
                    workspace.map(String::from),
                )))
            }
            _ => self
                .console
                .as_ref()
                .map(Sink::Console)
                .ok_or(ChatError::NotConfigured("a console")),
        }
    }

    pub async fn post(
        &self,
        platform: &str,
        workspace: Option<&str>,
        channel: &str,
        reply: &Reply,
    ) -> Result<MessageRef, ChatError> {
        on_sink!(self.sink(platform, workspace)?, s => s.post(channel, reply).await)
    }

    pub async fn update(
        &self,
        platform: &str,
        workspace: Option<&str>,
        message: &MessageRef,
        reply: &Reply,
    ) -> Result<(), ChatError> {
        on_sink!(self.sink(platform, workspace)?, s => s.update(message, reply).await)
    }

    pub async fn direct_message(
        &self,
        platform: &str,
        workspace: Option<&str>,
        user: &str,
        reply: &Reply,
    ) -> Result<MessageRef, ChatError> {
        on_sink!(self.sink(platform, workspace)?, s => s.direct_message(user, reply).await)
    }

    pub async fn upload(
        &self,
        platform: &str,
        workspace: Option<&str>,
        channel: &str,
        file: &FileUpload,
    ) -> Result<(), ChatError> {
        on_sink!(self.sink(platform, workspace)?, s => s.upload(channel, file).await)
    }

    pub async fn create_channel(
        &self,
        platform: &str,
        workspace: Option<&str>,
        spec: &NewChannel,
    ) -> Result<Channel, ChatError> {
        on_sink!(self.sink(platform, workspace)?, s => s.create_channel(spec).await)
    }
}
