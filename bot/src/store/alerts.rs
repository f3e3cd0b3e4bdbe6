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
        }
    }

    /// Alerts firing now, oldest first.
    pub async fn firing_alerts(&self, limit: u32) -> Result<Vec<StoredAlert>, StoreError> {
        match &self.backend {
            super::Backend::Sqlite(s) => s.firing_alerts(limit).await,
        }
    }
}
