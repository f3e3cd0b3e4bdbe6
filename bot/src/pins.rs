//! Adding a chat message to an incident's timeline from chat: a Slack
//! reaction (`[incidents] pin_reaction`, 📌 by default) or Discord's message
//! command "Add to timeline", on a message in the incident's own channel.
//!
//! Pinning changes an incident, so the person pinning needs
//! `incident-manage` there, checked with their groups as their platform
//! reports them now (a missing fact refuses). A message is added once
//! however often it is pinned or the event is redelivered (its platform
//! message id is the event's `source_ref`).

use oncall_grammar::Scope;
use oncall_permissions::Principal;

use crate::model::Platform;
use crate::router::Router;
use crate::store::NewEvent;

/// The most of a message the timeline keeps.
const MAX_PINNED_CHARS: usize = 500;

/// A message someone asked to pin.
#[derive(Debug, Clone)]
pub struct Pin {
    pub platform: Platform,
    pub workspace: Option<String>,
    pub channel: String,
    /// Who pinned it.
    pub by: Principal,
    /// The groups they were seen with (Discord's roles on the interaction).
    pub seen_groups: Vec<Principal>,
    /// The platform's message id (Slack's `ts`, Discord's message id).
    pub message: String,
    /// Who wrote it, as a principal, if known.
    pub author: Option<String>,
    pub text: String,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Pinned {
    Added {
        incident: i64,
    },
    Already {
        incident: i64,
    },
    /// The channel is no incident's own.
    NoIncident,
    NotAllowed(String),
    Failed(String),
}

impl Pinned {
    /// One sentence for the person who pinned (Discord answers them).
    pub fn message(&self) -> String {
        match self {
            Pinned::Added { incident } => format!("Added to incident {incident}'s timeline."),
            Pinned::Already { incident } => {
                format!("That message is already on incident {incident}'s timeline.")
            }
            Pinned::NoIncident => {
                "This channel is not an incident's channel; nothing was added.".into()
            }
            Pinned::NotAllowed(why) => format!("Not added: {why}"),
            Pinned::Failed(why) => format!("Not added: {why}"),
        }
    }
}

/// Adds the message to the timeline of the incident whose channel it is in.
pub async fn pin(router: &Router, pin: &Pin) -> Pinned {
    let store = router.store();
    let incident = match store
        .incident_of_channel(pin.platform.as_str(), &pin.channel)
        .await
    {
        Ok(Some(i)) => i,
        Ok(None) => return Pinned::NoIncident,
        Err(e) => return Pinned::Failed(format!("the incident store is unavailable ({e})")),
    };
    let groups = match router
        .current_groups(
            pin.platform.as_str(),
            &pin.by,
            pin.workspace.as_deref(),
            &pin.seen_groups,
        )
        .await
    {
        Ok(g) => g,
        Err(why) => return Pinned::NotAllowed(why),
    };
    let mut principals = vec![pin.by.clone()];
    principals.extend(groups);
    let channel = format!("{}:{}", pin.platform.as_str(), pin.channel);
    if !router.permits(&principals, &channel, "incident-manage", &Scope::Nothing) {
        return Pinned::NotAllowed(format!(
            "{} may not change incidents here (`incident-manage`)",
            pin.by
        ));
    }
    let mut text: String = crate::router::redact_for_history(pin.text.trim())
        .chars()
        .take(MAX_PINNED_CHARS)
        .collect();
    if pin.text.chars().count() > MAX_PINNED_CHARS {
        text.push('…');
    }
    let line = match &pin.author {
        Some(a) => format!("pinned {a}: {text}"),
        None => format!("pinned: {text}"),
    };
    let event = NewEvent {
        at_ms: router.clock().now().as_millisecond(),
        actor: pin.by.to_string(),
        kind: "pinned",
        text: line,
        invocation_id: None,
    };
    let source = format!("{}:{}:{}", pin.platform.as_str(), pin.channel, pin.message);
    match store
        .add_incident_event_once(incident.id, &source, &event)
        .await
    {
        Ok(true) => Pinned::Added {
            incident: incident.id,
        },
        Ok(false) => Pinned::Already {
            incident: incident.id,
        },
        Err(e) => Pinned::Failed(format!("the incident store is unavailable ({e})")),
    }
}
