//! `alerts`: the alerts firing now, oldest first, with their incidents.

use oncall_grammar::Alerts;

use super::incident::store_failed;
use super::{Context, Handle, Refusal};
use crate::incidents::clock_time;
use crate::model::Handled;
use crate::reply::{table, Outcome, Reply};

/// Shown at most.
const LIMIT: u32 = 50;

impl Handle for Alerts {
    async fn handle(&self, cx: &Context<'_>) -> Result<Handled, Refusal> {
        let firing = cx
            .incident_store()
            .firing_alerts(LIMIT + 1)
            .await
            .map_err(store_failed)?;
        if firing.is_empty() {
            return Ok(Handled::info(Reply::new(Outcome::Info, "Nothing is firing.")));
        }
        let shown = firing.len().min(LIMIT as usize);
        let mut rows = Vec::new();
        for a in firing.iter().take(shown) {
            let labels: Vec<String> = a
                .labels
                .iter()
                .filter(|(k, _)| *k != "alertname")
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            rows.push(vec![
                a.alertname.clone(),
                clock_time(a.first_seen_ms),
                labels.join(","),
                a.incident_id.map(|i| i.to_string()).unwrap_or_else(|| "—".into()),
            ]);
        }
        let mut reply = Reply::new(Outcome::Info, format!("{shown} alert(s) firing"))
            .code(None, table(&["ALERT", "SINCE", "LABELS", "INCIDENT"], &rows, 60));
        if firing.len() > shown {
            reply = reply.text(format!("Only the oldest {LIMIT} are shown."));
        }
        Ok(Handled::info(reply))
    }
}
