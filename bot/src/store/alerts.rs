//! The store's alert API: a delivery of an alert group is applied in one
//! transaction: its alerts upserted by identity (fingerprint, startsAt), the
//! group's incident opened or joined (with its escalation), what changed put
//! on the timeline, and, when every alert has resolved, the escalation
//! stopped and the incident marked. A repeat of the same delivery changes
//! nothing but the counts, so it pages nobody again.

use std::collections::BTreeMap;

use super::{NewIncident, Store, StoreError};

/// One alert as delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingAlert {
    pub fingerprint: String,
    /// As the sender wrote it (RFC 3339): part of the identity.
    pub starts_at: String,
    pub alertname: String,
    pub firing: bool,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub generator_url: Option<String>,
}

/// One delivery of a group.
#[derive(Debug, Clone)]
pub struct AlertDelivery {
    /// `alertmanager` or `grafana`.
    pub source: String,
    pub group_key: String,
    /// The route the group matched, if any.
    pub route: Option<String>,
    pub alerts: Vec<IncomingAlert>,
    pub at_ms: i64,
    /// What the group's message is headed with (`KafkaConsumerLag: …`).
    pub title: String,
    /// The catalog service the route resolved, if any.
    pub service: Option<String>,
    /// Where the group's message goes; `None`: nowhere.
    pub card: Option<CardTarget>,
    /// A `business-hours` group outside business hours: the incident is
    /// opened then, if the group still fires.
    pub open_at_ms: Option<i64>,
}

/// Where an alert group's message is posted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardTarget {
    pub platform: String,
    pub channel: String,
}

/// An alert group whose message is to be posted or updated: what it shows.
#[derive(Debug, Clone)]
pub struct AlertCard {
    pub source: String,
    pub group_key: String,
    pub route: Option<String>,
    pub title: String,
    pub service: Option<String>,
    pub platform: String,
    pub channel: String,
    /// Posted before: update this message.
    pub message_id: Option<String>,
    /// The version this card shows; posting it records this.
    pub version: i64,
    /// The enrichment taken when it was first posted (JSON blocks).
    pub enrichment: Option<String>,
    pub incident_id: Option<i64>,
    pub incident_state: Option<String>,
    pub severity: Option<String>,
    /// Who acknowledged the incident.
    pub acknowledged_by: Option<String>,
    /// The incident's latest escalation: its state and who ended it.
    pub escalation_state: Option<String>,
    pub escalation_ended_by: Option<String>,
    /// Held for business hours until then.
    pub open_at_ms: Option<i64>,
    pub firing: i64,
    pub resolved: i64,
    /// The group's alerts, the newest 20.
    pub alerts: Vec<StoredAlert>,
}

/// A first-response button, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertAction {
    pub id: i64,
    pub incident_id: i64,
    pub command: String,
    pub expires_at_ms: i64,
    pub claimed_by: Option<String>,
    pub outcome: Option<String>,
}

/// What pressing a first-response button found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionClaim {
    /// Yours to run: the command and its incident.
    Claimed {
        command: String,
        incident_id: i64,
    },
    /// Somebody ran it already.
    Used {
        by: String,
        at_ms: i64,
    },
    Expired,
    /// Its incident is resolved.
    Closed,
    NotFound,
}

/// A silence oncall created in Alertmanager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SilenceRecord {
    pub silence_id: String,
    pub target: String,
    pub comment: String,
    pub created_by: String,
    pub ends_at_ms: i64,
    pub incident_id: Option<i64>,
}

/// What to do when every alert of an incident's group has resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnResolved {
    Mitigate,
    Resolve,
}

/// What a delivery did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Received {
    pub incident_id: Option<i64>,
    pub opened: bool,
    pub newly_firing: usize,
    pub newly_resolved: usize,
    /// Every alert of the incident has resolved (as of this delivery).
    pub all_resolved: bool,
}

/// A stored alert.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StoredAlert {
    pub id: i64,
    pub source: String,
    pub alertname: String,
    pub fingerprint: String,
    pub status: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub incident_id: Option<i64>,
    pub first_seen_ms: i64,
    pub deliveries: i64,
    pub generator_url: Option<String>,
}

impl Store {
    /// Applies a delivery. `open` is the incident to open when the group
    /// pages and has none open (`None`: alerts routed not to page are
    /// only kept).
    pub async fn receive_alerts(
        &self,
        delivery: &AlertDelivery,
        open: Option<&NewIncident>,
        on_resolved: OnResolved,
    ) -> Result<Received, StoreError> {
        match &self.backend {
            super::Backend::Sqlite(s) => s.receive_alerts(delivery, open, on_resolved).await,
            super::Backend::Postgres(s) => s.receive_alerts(delivery, open, on_resolved).await,
        }
    }

    /// Alerts firing now, oldest first.
    pub async fn firing_alerts(&self, limit: u32) -> Result<Vec<StoredAlert>, StoreError> {
        match &self.backend {
            super::Backend::Sqlite(s) => s.firing_alerts(limit).await,
            super::Backend::Postgres(s) => s.firing_alerts(limit).await,
        }
    }

    /// Firing alerts whose name or fingerprint is `target`.
    pub async fn alerts_named(&self, target: &str) -> Result<Vec<StoredAlert>, StoreError> {
        match &self.backend {
            super::Backend::Sqlite(s) => s.alerts_named(target).await,
            super::Backend::Postgres(s) => s.alerts_named(target).await,
        }
    }

    /// Groups whose message is behind what it should show, oldest first.
    pub async fn alert_cards_due(&self, limit: u32) -> Result<Vec<AlertCard>, StoreError> {
        match &self.backend {
            super::Backend::Sqlite(s) => s.alert_cards_due(limit).await,
            super::Backend::Postgres(s) => s.alert_cards_due(limit).await,
        }
    }

    /// Records that `version` of a group's message is posted as
    /// `message_id` (with the enrichment it carries, kept from the first).
    pub async fn alert_card_posted(
        &self,
        card: &AlertCard,
        message_id: &str,
        enrichment: Option<&str>,
    ) -> Result<(), StoreError> {
        match &self.backend {
            super::Backend::Sqlite(s) => s.alert_card_posted(card, message_id, enrichment).await,
            super::Backend::Postgres(s) => s.alert_card_posted(card, message_id, enrichment).await,
        }
    }

    /// Opens the incidents of `business-hours` groups whose time has come
    /// and that still fire; their ids.
    pub async fn open_deferred_alert_groups(&self, now_ms: i64) -> Result<Vec<i64>, StoreError> {
        match &self.backend {
            super::Backend::Sqlite(s) => s.open_deferred_alert_groups(now_ms).await,
            super::Backend::Postgres(s) => s.open_deferred_alert_groups(now_ms).await,
        }
    }

    /// The first-response buttons of a group's incident, created on first
    /// ask (one per command, expiring `ttl_ms` after).
    pub async fn alert_actions(
        &self,
        incident_id: i64,
        card: &AlertCard,
        commands: &[String],
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<Vec<AlertAction>, StoreError> {
        match &self.backend {
            super::Backend::Sqlite(s) => {
                s.alert_actions(incident_id, card, commands, now_ms, ttl_ms)
                    .await
            }
            super::Backend::Postgres(s) => {
                s.alert_actions(incident_id, card, commands, now_ms, ttl_ms)
                    .await
            }
        }
    }

    /// Claims a button for `by`; a repeat of the same request (`key`)
    /// claims it again.
    pub async fn claim_alert_action(
        &self,
        id: i64,
        by: &str,
        key: &str,
        now_ms: i64,
    ) -> Result<ActionClaim, StoreError> {
        match &self.backend {
            super::Backend::Sqlite(s) => s.claim_alert_action(id, by, key, now_ms).await,
            super::Backend::Postgres(s) => s.claim_alert_action(id, by, key, now_ms).await,
        }
    }

    /// Ends a claim: `Some(outcome)` keeps it (the button is used), `None`
    /// releases it for someone else (policy refused the presser).
    pub async fn settle_alert_action(
        &self,
        id: i64,
        key: &str,
        outcome: Option<&str>,
    ) -> Result<(), StoreError> {
        match &self.backend {
            super::Backend::Sqlite(s) => s.settle_alert_action(id, key, outcome).await,
            super::Backend::Postgres(s) => s.settle_alert_action(id, key, outcome).await,
        }
    }

    pub async fn record_silence(
        &self,
        s: &SilenceRecord,
        matchers: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        match &self.backend {
            super::Backend::Sqlite(db) => db.record_silence(s, matchers, now_ms).await,
            super::Backend::Postgres(db) => db.record_silence(s, matchers, now_ms).await,
        }
    }

    /// Oncall's silences of `target` (an alert name, a fingerprint or a
    /// silence id) still in force.
    pub async fn active_silences(
        &self,
        target: &str,
        now_ms: i64,
    ) -> Result<Vec<SilenceRecord>, StoreError> {
        match &self.backend {
            super::Backend::Sqlite(db) => db.active_silences(target, now_ms).await,
            super::Backend::Postgres(db) => db.active_silences(target, now_ms).await,
        }
    }

    pub async fn expire_silence(
        &self,
        silence_id: &str,
        by: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        match &self.backend {
            super::Backend::Sqlite(db) => db.expire_silence(silence_id, by, now_ms).await,
            super::Backend::Postgres(db) => db.expire_silence(silence_id, by, now_ms).await,
        }
    }
}
