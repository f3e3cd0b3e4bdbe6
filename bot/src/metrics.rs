//! Prometheus metrics, served at `/metrics` by `oncall serve` (or on their
//! own address, `server.metrics_listen`, so they are not exposed with the
//! Slack and Discord routes).
//!
//! Counters and the duration histogram move as things happen; the gauges
//! (what is pending or open now) are read from the store at each scrape, so
//! they are right whichever replica or process wrote the rows.

use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

use crate::store::{Gauges, Store};

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Inbound requests refused before anything ran, by platform and reason.
    pub refused: IntCounterVec,
    /// Chat requests handled, by platform and outcome.
    pub handled: IntCounterVec,
    /// Commands through the pipeline, by verb, outcome and platform.
    pub commands: IntCounterVec,
    /// How long commands took, by verb.
    pub command_duration: HistogramVec,
    /// Pages (outbox messages) delivered or given up, by kind and outcome.
    pub pages_sent: IntCounterVec,
    /// 1 while this replica leads (runs the engine, pager and courier).
    pub leader: IntGauge,
    /// Terms this replica has begun.
    pub leader_transitions: prometheus::IntCounter,
    escalation_lag: Gauge,
    outbox_pending: IntGauge,
    incidents_open: IntGauge,
    approvals_pending: IntGauge,
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(c.clone()))
        .expect("registers once");
    c
}

fn int_gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric");
    registry
        .register(Box::new(g.clone()))
        .expect("registers once");
    g
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let refused = counter(
            &registry,
            "oncall_requests_refused_total",
            "Inbound requests refused before anything ran",
            &["platform", "reason"],
        );
        let handled = counter(
            &registry,
            "oncall_requests_handled_total",
            "Chat requests handled",
            &["platform", "outcome"],
        );
        let commands = counter(
            &registry,
            "oncall_commands_total",
            "Commands through the pipeline, by verb, outcome and platform",
            &["verb", "outcome", "platform"],
        );
        let command_duration = HistogramVec::new(
            HistogramOpts::new(
                "oncall_command_duration_seconds",
                "How long commands took from arrival to reply",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            &["verb"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(command_duration.clone()))
            .expect("registers once");
        let pages_sent = counter(
            &registry,
            "oncall_pages_sent_total",
            "Pages delivered or given up, by kind (pagerduty, opsgenie, webhook, chat) and outcome",
            &["kind", "outcome"],
        );
        let escalation_lag = Gauge::new(
            "oncall_escalation_lag_seconds",
            "How far behind its due time the oldest due escalation step is (0: none overdue)",
        )
        .expect("valid metric");
        registry
            .register(Box::new(escalation_lag.clone()))
            .expect("registers once");
        let outbox_pending = int_gauge(
            &registry,
            "oncall_outbox_pending",
            "Pages and messages waiting in the outbox",
        );
        let incidents_open =
            int_gauge(&registry, "oncall_incidents_open", "Incidents not resolved");
        let approvals_pending = int_gauge(
            &registry,
            "oncall_approvals_pending",
            "Approval requests waiting for a decision",
        );
        let leader = int_gauge(
            &registry,
            "oncall_leader",
            "1 while this replica holds the leader Lease (or runs alone), else 0",
        );
        let leader_transitions = prometheus::IntCounter::new(
            "oncall_leader_transitions_total",
            "Times this replica became the leader",
        )
        .expect("valid metric");
        registry
            .register(Box::new(leader_transitions.clone()))
            .expect("registers once");
        Metrics {
            registry,
            leader,
            leader_transitions,
            refused,
            handled,
            commands,
            command_duration,
            pages_sent,
            escalation_lag,
            outbox_pending,
            incidents_open,
            approvals_pending,
        }
    }

    /// One command through the pipeline.
    pub fn command(&self, verb: &str, outcome: &str, platform: &str, took: std::time::Duration) {
        self.commands
            .with_label_values(&[verb, outcome, platform])
            .inc();
        self.command_duration
            .with_label_values(&[verb])
            .observe(took.as_secs_f64());
    }

    fn set_gauges(&self, g: &Gauges) {
        self.escalation_lag.set(g.escalation_lag_ms as f64 / 1000.0);
        self.outbox_pending.set(g.outbox_pending);
        self.incidents_open.set(g.incidents_open);
        self.approvals_pending.set(g.approvals_pending);
    }

    /// The text exposition format, with the gauges read from `store` now.
    /// A store that can't be read leaves the gauges at their last values
    /// (and says so in the log); the counters are served either way.
    pub async fn scrape(&self, store: &Store, now_ms: i64) -> String {
        match store.gauges(now_ms).await {
            Ok(g) => self.set_gauges(&g),
            Err(e) => tracing::warn!("metrics: could not read the gauges: {e}"),
        }
        self.render()
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding never fails");
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
