//! The incident courier: what happens to incidents when nobody types.
//!
//! One supervised loop, each pass doing what the store says is pending:
//!
//! 1. **Reminders.** An open incident whose update is overdue (no `incident
//!    update` for its severity's interval) gets a `reminder` event and its
//!    next due time, in one guarded write: a pass that finds the reminder
//!    already moved (another pass, a restarted process) fires nothing, and a
//!    pass that comes late fires once and schedules from now (no burst).
//! 2. **Channels.** An incident's channel name is stored when it is
//!    declared; the courier creates it (or adopts ours of that name after a
//!    crash) and invites the declarer and the commander. A name someone
//!    else holds is not taken: the intent is dropped and the timeline says so.
//! 3. **Announcements** in the configured incidents channel, once each.
//! 4. **Events.** Each timeline event not yet in the incident's channel is
//!    posted there as one line, in order, and marked as posted.
//!
//! Delivery is at least once: a crash between posting and marking repeats a
//! line, never loses one.

use std::sync::Arc;
use std::time::Duration;

use crate::chat::{ChatError, NewChannel, Sinks};
use crate::incidents::{commander, label, minutes, offset};
use crate::reply::{Outcome, Reply};
use crate::router::Router;
use crate::store::{Incident, NewEvent, StoreError};

/// How often the courier looks for work in `serve` and the demo.
pub const TICK: Duration = Duration::from_secs(2);

/// How many alert messages a pass enriches from the cluster (each read is
/// bounded by [`crate::alerts::card::ENRICH_TIMEOUT`]).
const ENRICHMENTS_PER_PASS: usize = 4;

/// The actor of events the courier writes.
const ME: &str = "oncall";

/// What one pass did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pass {
    pub reminders: usize,
    pub channels: usize,
    pub announced: usize,
    pub posted: usize,
    /// Alert groups' messages posted or updated.
    pub cards: usize,
    /// Incidents opened for alert groups held for business hours.
    pub opened: usize,
}

#[derive(Clone)]
pub struct Courier {
    router: Router,
    sinks: Arc<Sinks>,
}

impl Courier {
    pub fn new(router: Router, sinks: Arc<Sinks>) -> Self {
        Courier { router, sinks }
    }

    /// Runs passes every `every` under the router's supervisor until
    /// shutdown.
    pub fn spawn(self, every: Duration) {
        let until = self.router.supervisor().token();
        self.spawn_until(every, until);
    }

    /// [`Courier::spawn`] for a leader's term: it stops when `until` is
    /// cancelled.
    pub fn spawn_until(self, every: Duration, until: tokio_util::sync::CancellationToken) {
        let supervisor = self.router.supervisor().clone();
        supervisor.spawn_loop_until("incident courier", until, move |stop| async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.cancelled() => return,
                }
                if let Err(e) = self.pass().await {
                    tracing::warn!("incident courier: {e}");
                }
            }
        });
    }

    fn now_ms(&self) -> i64 {
        self.router.clock().now().as_millisecond()
    }

    /// One pass over everything pending.
    pub async fn pass(&self) -> Result<Pass, StoreError> {
        let mut pass = Pass {
            reminders: self.reminders().await?,
            ..Pass::default()
        };
        let store = self.router.store();
        let opened = store.open_deferred_alert_groups(self.now_ms()).await?;
        if !opened.is_empty() {
            pass.opened = opened.len();
            self.router.wake_escalation();
        }
        pass.cards = self.alert_cards().await?;
        for incident in store.incidents_to_deliver(50).await? {
            let incident = match self.channel(incident, &mut pass).await? {
                Some(i) => i,
                None => continue,
            };
            self.announce(&incident, &mut pass).await?;
            self.post_events(&incident, &mut pass).await?;
        }
        Ok(pass)
    }

    /// Posts each alert group's message, or updates it in place, while it
    /// is behind what the group now is.
    async fn alert_cards(&self) -> Result<usize, StoreError> {
        let store = self.router.store();
        let config = &self.router.config().alerts;
        let mut done = 0;
        // Reads of the cluster per pass, so a slow one never holds the
        // reminders and timelines for long; the rest wait for the next pass.
        let mut enrich_budget = ENRICHMENTS_PER_PASS;
        for card in store.alert_cards_due(50).await? {
            let now = self.now_ms();
            // The enrichment is read once, when the message is first posted.
            let (enrichment, fresh) = match (&card.enrichment, &card.service) {
                (Some(json), _) => (serde_json::from_str(json).unwrap_or_default(), false),
                (None, Some(_)) if enrich_budget == 0 => continue,
                (None, Some(s)) => {
                    enrich_budget -= 1;
                    (crate::alerts::card::enrich(&self.router, s).await, true)
                }
                (None, None) => (Vec::new(), true),
            };
            let commands = card
                .route
                .as_deref()
                .and_then(|r| config.routes.iter().find(|x| x.name == r))
                .map(|r| r.actions.clone())
                .unwrap_or_default();
            let actions = match (card.incident_id, commands.is_empty()) {
                (Some(id), false) => {
                    let ttl = config.actions_expire_after.as_millis() as i64;
                    store.alert_actions(id, &card, &commands, now, ttl).await?
                }
                _ => Vec::new(),
            };
            let reply = crate::alerts::card::render(&card, &enrichment, &actions, now);
            let posted = match &card.message_id {
                Some(id) => {
                    let message = crate::chat::MessageRef {
                        channel: card.channel.clone(),
                        id: id.clone(),
                    };
                    self.sinks
                        .update(&card.platform, None, &message, &reply)
                        .await
                        .map(|()| message)
                }
                None => {
                    self.sinks
                        .post(&card.platform, None, &card.channel, &reply)
                        .await
                }
            };
            match posted {
                Ok(m) => {
                    let kept = fresh
                        .then(|| serde_json::to_string(&enrichment).ok())
                        .flatten();
                    store
                        .alert_card_posted(&card, &m.id, kept.as_deref())
                        .await?;
                    done += 1;
                }
                Err(e @ ChatError::NotConfigured(_)) => {
                    // Nowhere to post it: recorded as posted, so it is not
                    // retried every pass.
                    tracing::warn!(group = %card.group_key, "alert message not posted: {e}");
                    store.alert_card_posted(&card, "", None).await?;
                }
                Err(e) => {
                    tracing::warn!(group = %card.group_key, "could not post an alert message yet: {e}");
                }
            }
        }
        Ok(done)
    }

    async fn reminders(&self) -> Result<usize, StoreError> {
        let store = self.router.store();
        let config = &self.router.config().incidents;
        let now = self.now_ms();
        let mut fired = 0;
        for i in store.reminders_due(now).await? {
            let Some(due) = i.next_reminder_at_ms else {
                continue;
            };
            let roles = store.incident_roles(i.id).await?;
            let who = commander(&roles).unwrap_or("the incident commander");
            let text = format!(
                "reminder: no status update for {}; {who}, post one with `incident update {} …`",
                minutes(now - i.last_update_at_ms),
                i.id
            );
            let event = NewEvent {
                at_ms: now,
                actor: ME.into(),
                kind: "reminder",
                text: text.clone(),
                invocation_id: None,
            };
            let next = config.next_reminder(&i.severity, now);
            if !store.fire_reminder(i.id, due, next, &event).await? {
                continue;
            }
            fired += 1;
            // With a channel of its own, the reminder goes out with the
            // other events; without, to where it was declared.
            if i.channel.is_none() && i.channel_name.is_none() {
                let reply = Reply::new(
                    Outcome::Pending,
                    format!("Incident {}: an update is due", i.id),
                )
                .text(mention_in(&text, who, &i.platform));
                if let Err(e) = self
                    .sinks
                    .post(&i.platform, i.workspace.as_deref(), &i.declared_in, &reply)
                    .await
                {
                    tracing::warn!(incident = i.id, "could not post a reminder: {e}");
                }
            }
        }
        Ok(fired)
    }

    /// Creates the incident's channel if it is meant to have one and has
    /// none yet; the incident as it now is, or `None` to try again later.
    async fn channel(
        &self,
        incident: Incident,
        pass: &mut Pass,
    ) -> Result<Option<Incident>, StoreError> {
        let (Some(name), None) = (&incident.channel_name, &incident.channel) else {
            return Ok(Some(incident));
        };
        let store = self.router.store();
        let roles = store.incident_roles(incident.id).await?;
        let mut invite: Vec<String> = Vec::new();
        for principal in std::iter::once(incident.declared_by.as_str()).chain(commander(&roles)) {
            if let Some(id) = platform_user(principal, &incident.platform) {
                if !invite.iter().any(|i| i == id) {
                    invite.push(id.to_string());
                }
            }
        }
        let config = &self.router.config().incidents;
        let thread_of = match (incident.platform.as_str(), config.discord_threads) {
            ("discord", true) => config.announce.get("discord").cloned(),
            _ => None,
        };
        let spec = NewChannel {
            name: name.clone(),
            topic: Some(format!("{} · {}", label(&incident), incident.state)),
            invite,
            thread_of,
        };
        let created = self
            .sinks
            .create_channel(&incident.platform, incident.workspace.as_deref(), &spec)
            .await;
        match created {
            Ok(channel) => {
                store.set_incident_channel(incident.id, &channel.id).await?;
                pass.channels += 1;
                // The summary opens the channel; the timeline follows.
                if !channel.adopted {
                    let reply = summary(&incident, commander(&roles), None);
                    if let Err(e) = self
                        .sinks
                        .post(
                            &incident.platform,
                            incident.workspace.as_deref(),
                            &channel.id,
                            &reply,
                        )
                        .await
                    {
                        tracing::warn!(incident = incident.id, "could not post the summary: {e}");
                    }
                }
                Ok(store.incident(incident.id).await?)
            }
            Err(
                e @ (ChatError::NameTaken(_) | ChatError::Refused(_) | ChatError::NotConfigured(_)),
            ) => {
                let event = NewEvent {
                    at_ms: self.now_ms(),
                    actor: ME.into(),
                    kind: "channel",
                    text: format!("no channel of its own: could not create #{name} ({e})"),
                    invocation_id: None,
                };
                store.drop_channel_intent(incident.id, &event).await?;
                Ok(store.incident(incident.id).await?)
            }
            Err(e) => {
                tracing::warn!(incident = incident.id, "could not create #{name} yet: {e}");
                Ok(None)
            }
        }
    }

    async fn announce(&self, i: &Incident, pass: &mut Pass) -> Result<(), StoreError> {
        if i.announced {
            return Ok(());
        }
        let store = self.router.store();
        let config = &self.router.config().incidents;
        let Some(channel) = config.announce.get(&i.platform) else {
            return store.mark_announced(i.id).await;
        };
        let roles = store.incident_roles(i.id).await?;
        let reply = summary(i, commander(&roles), i.channel.as_deref());
        match self
            .sinks
            .post(&i.platform, i.workspace.as_deref(), channel, &reply)
            .await
        {
            Ok(_) => {
                pass.announced += 1;
                store.mark_announced(i.id).await
            }
            Err(e @ ChatError::NotConfigured(_)) => {
                tracing::warn!(incident = i.id, "not announced: {e}");
                store.mark_announced(i.id).await
            }
            Err(e) => {
                tracing::warn!(incident = i.id, "could not announce yet: {e}");
                Ok(())
            }
        }
    }

    async fn post_events(&self, i: &Incident, pass: &mut Pass) -> Result<(), StoreError> {
        let Some(channel) = &i.channel else {
            return Ok(());
        };
        let store = self.router.store();
        let events = store.incident_events(i.id).await?;
        let roles = store.incident_roles(i.id).await?;
        for e in events.iter().filter(|e| e.id > i.posted_through) {
            let mut line = format!(
                "{}  {}  {}",
                offset(i.declared_at_ms, e.at_ms),
                e.actor,
                e.text
            );
            if e.kind == "reminder" {
                if let Some(c) = commander(&roles) {
                    line = mention_in(&line, c, &i.platform);
                }
            }
            let reply = Reply::new(Outcome::Info, line);
            match self
                .sinks
                .post(&i.platform, i.workspace.as_deref(), channel, &reply)
                .await
            {
                Ok(_) => {
                    store.mark_posted(i.id, e.id).await?;
                    pass.posted += 1;
                }
                Err(err) => {
                    tracing::warn!(incident = i.id, "could not post to #{channel} yet: {err}");
                    break;
                }
            }
        }
        Ok(())
    }
}

/// An incident in a few fields: what the announcement and the first
/// message of its channel say.
fn summary(i: &Incident, commander: Option<&str>, channel: Option<&str>) -> Reply {
    let mut fields = vec![
        ("Severity".to_string(), i.severity.clone()),
        ("Declared by".to_string(), i.declared_by.clone()),
    ];
    if let Some(c) = commander {
        fields.push(("Commander".into(), c.to_string()));
    }
    if let Some(ch) = channel {
        fields.push(("Channel".into(), channel_link(ch, &i.platform)));
    }
    if !i.services.is_empty() {
        fields.push(("Services".into(), i.services.join(", ")));
    }
    Reply::new(
        Outcome::Pending,
        format!("Incident {} declared: {}", i.id, i.title),
    )
    .fields(fields)
}

/// The platform's user id of a principal on that platform (`slack:U1` on
/// Slack is `U1`).
fn platform_user<'p>(principal: &'p str, platform: &str) -> Option<&'p str> {
    let (kind, id) = principal.split_once(':')?;
    (kind == platform && platform != "cli").then_some(id)
}

/// The text with the principal named so the platform notifies them.
fn mention_in(text: &str, principal: &str, platform: &str) -> String {
    match platform_user(principal, platform) {
        Some(id) => text.replace(principal, &format!("<@{id}>")),
        None => text.to_string(),
    }
}

fn channel_link(id: &str, platform: &str) -> String {
    match platform {
        "slack" => format!("<#{id}>"),
        "discord" => format!("<#{id}>"),
        _ => format!("#{id}"),
    }
}
