//! Prometheus metrics, served at `/metrics` by `oncall serve`.

use prometheus::{Encoder, IntCounterVec, Opts, Registry, TextEncoder};

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Inbound requests refused before anything ran, by platform and reason.
    pub refused: IntCounterVec,
    /// Chat requests handled, by platform and outcome.
    pub handled: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let refused = IntCounterVec::new(
            Opts::new(
                "oncall_requests_refused_total",
                "Inbound requests refused before anything ran",
            ),
            &["platform", "reason"],
        )
        .expect("valid metric");
        let handled = IntCounterVec::new(
            Opts::new("oncall_requests_handled_total", "Chat requests handled"),
            &["platform", "outcome"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(refused.clone()))
            .expect("registers once");
        registry
            .register(Box::new(handled.clone()))
            .expect("registers once");
        Metrics {
            registry,
            refused,
            handled,
        }
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
