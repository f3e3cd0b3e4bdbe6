//! Supervised background work.
//!
//! Everything oncall runs outside the future of an HTTP request goes through
//! here: a command that outlived its platform's acknowledgement deadline, the
//! deferred reply that follows it, the approval sweeper, the Slack Socket Mode
//! and Discord gateway connections (and, later, the escalation tick and the
//! outbox senders). One cancellation token tells the loops to stop; one task
//! tracker knows what is still running. That is what lets `serve` stop
//! cleanly on SIGTERM: stop accepting, cancel the loops, let in-flight
//! commands finish and record their outcome within a grace period, exit.

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

#[derive(Clone, Default)]
pub struct Supervisor {
    token: CancellationToken,
    tracker: TaskTracker,
}

impl Supervisor {
    pub fn new() -> Self {
        Self::default()
    }

    /// Work that must be allowed to finish (a command, its deferred reply):
    /// [`Supervisor::shutdown`] waits for it.
    pub fn spawn<F>(&self, name: &'static str, work: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tracker
            .spawn(work.instrument(tracing::debug_span!("task", name)))
    }

    /// A loop that runs until shutdown. It is handed the cancellation token
    /// and must return soon after it is cancelled.
    pub fn spawn_loop<F, Fut>(&self, name: &'static str, run: F)
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.spawn_loop_until(name, self.token.clone(), run)
    }

    /// A loop that runs until `until` is cancelled (a leader's term: a
    /// child of the shutdown token, so shutdown ends it too).
    pub fn spawn_loop_until<F, Fut>(&self, name: &'static str, until: CancellationToken, run: F)
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let work = run(until);
        self.tracker.spawn(
            async move {
                work.await;
                tracing::debug!("{name} stopped");
            }
            .instrument(tracing::debug_span!("loop", name)),
        );
    }

    /// Cancelled when shutdown begins: long waits (`rollout status --wait`)
    /// end early instead of holding the process.
    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    pub fn is_shutting_down(&self) -> bool {
        self.token.is_cancelled()
    }

    /// How many supervised tasks are running.
    pub fn running(&self) -> usize {
        self.tracker.len()
    }

    /// Cancels the loops and waits, at most `grace`, for every supervised
    /// task to end. Returns whether they all did.
    pub async fn shutdown(&self, grace: Duration) -> bool {
        self.token.cancel();
        self.tracker.close();
        tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_ok()
    }
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn termination_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT: shutting down"),
        _ = term => tracing::info!("SIGTERM: shutting down"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    #[tokio::test]
    async fn shutdown_waits_for_work_and_stops_loops() {
        let s = Supervisor::new();
        let finished = Arc::new(AtomicBool::new(false));
        let f = finished.clone();
        s.spawn("work", async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            f.store(true, Ordering::SeqCst);
        });
        let stopped = Arc::new(AtomicBool::new(false));
        let st = stopped.clone();
        s.spawn_loop("loop", |token| async move {
            token.cancelled().await;
            st.store(true, Ordering::SeqCst);
        });
        assert!(s.shutdown(Duration::from_secs(60)).await);
        assert!(finished.load(Ordering::SeqCst), "the work was cut short");
        assert!(stopped.load(Ordering::SeqCst), "the loop never stopped");
    }

    #[tokio::test]
    async fn shutdown_gives_up_after_the_grace_period() {
        let s = Supervisor::new();
        s.spawn("stuck", std::future::pending::<()>());
        assert!(!s.shutdown(Duration::from_millis(50)).await);
        assert_eq!(s.running(), 1);
    }
}
