//! Leader election through a `coordination.k8s.io/v1` Lease, with
//! client-go's semantics, so that of several replicas exactly one runs the
//! work that must run once (the escalation engine, the pager, the courier).
//!
//! kube-rs has no elector, so this is a small one, step for step client-go's
//! `tryAcquireOrRenew`:
//! - a candidate reads the Lease every `retry_period`; it takes it when
//!   nobody holds it, when the holder released it, or when the record has
//!   not changed for `lease_duration` **by the candidate's own clock** (the
//!   time it last saw the record change, never the holder's `renewTime`, so
//!   clock skew between nodes can't shorten a lease);
//! - every write is a PUT carrying the resourceVersion that was read (or a
//!   create when there is no Lease), so two candidates can't both win: the
//!   second gets 409;
//! - the leader renews every `retry_period`; if no renewal succeeds within
//!   `renew_deadline` of the last one it stops leading at once: its term's
//!   token is cancelled, and the work started for the term stops;
//! - on shutdown the leader releases the Lease (empty holder), so another
//!   replica takes over within a retry period instead of a lease duration.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// Where the Lease is, who this replica is, and the timings.
#[derive(Debug, Clone)]
pub struct ElectionConfig {
    pub namespace: String,
    pub name: String,
    /// This replica's name in `holderIdentity` (the pod name, unique).
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl ElectionConfig {
    /// client-go's defaults: 15 s, 10 s, 2 s.
    pub fn new(namespace: &str, name: &str, identity: &str) -> Self {
        ElectionConfig {
            namespace: namespace.to_string(),
            name: name.to_string(),
            identity: identity.to_string(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }

    /// client-go's checks: the lease outlasts the renew deadline, which
    /// leaves room for more than one retry.
    pub fn validate(&self) -> Result<(), String> {
        if self.lease_duration <= self.renew_deadline {
            return Err("election.lease_duration must be longer than renew_deadline".into());
        }
        if self.renew_deadline.as_secs_f64() <= 1.2 * self.retry_period.as_secs_f64() {
            return Err("election.renew_deadline must be longer than 1.2 × retry_period".into());
        }
        if self.identity.is_empty() {
            return Err("election: the identity must not be empty".into());
        }
        Ok(())
    }
}

/// What this replica is, now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    Candidate,
    /// Leading since the instant; `term` is cancelled when the term ends.
    Leader,
    /// Someone else holds the Lease.
    Follower {
        leader: String,
    },
}

/// The outcome of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Attempt {
    /// We hold the Lease (acquired or renewed).
    Held,
    /// Someone else holds it, and it has not expired by our clock.
    HeldBy(String),
    /// The API could not be read or written.
    Failed(String),
}

/// One replica's elector.
pub struct Elector {
    api: Api<Lease>,
    config: ElectionConfig,
    metrics: Metrics,
    /// The record as last seen, and when (our clock) it last changed.
    observed: Option<(LeaseSpec, Instant)>,
    role: tokio::sync::watch::Sender<Role>,
}

impl Elector {
    pub fn new(client: kube::Client, config: ElectionConfig, metrics: Metrics) -> Self {
        let api = Api::namespaced(client, &config.namespace);
        Elector {
            api,
            config,
            metrics,
            observed: None,
            role: tokio::sync::watch::channel(Role::Candidate).0,
        }
    }

    /// Follows this replica's role.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<Role> {
        self.role.subscribe()
    }

    fn now() -> MicroTime {
        MicroTime(jiff::Timestamp::now())
    }

    fn observe(&mut self, spec: &LeaseSpec) {
        let changed = self.observed.as_ref().is_none_or(|(seen, _)| seen != spec);
        if changed {
            self.observed = Some((spec.clone(), Instant::now()));
        }
    }

    /// client-go's `tryAcquireOrRenew`.
    async fn try_acquire_or_renew(&mut self) -> Attempt {
        let me = self.config.identity.clone();
        let duration = self.config.lease_duration.as_secs().max(1) as i32;
        let current = match self.api.get_opt(&self.config.name).await {
            Ok(found) => found,
            Err(e) => return Attempt::Failed(e.to_string()),
        };
        let Some(mut lease) = current else {
            let spec = LeaseSpec {
                holder_identity: Some(me),
                lease_duration_seconds: Some(duration),
                acquire_time: Some(Self::now()),
                renew_time: Some(Self::now()),
                lease_transitions: Some(0),
                ..Default::default()
            };
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.name.clone()),
                    namespace: Some(self.config.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(spec.clone()),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => {
                    self.observe(&spec);
                    Attempt::Held
                }
                Err(e) => Attempt::Failed(e.to_string()),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        self.observe(&spec);
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let observed_at = self.observed.as_ref().map(|(_, at)| *at);
        let expired = observed_at.is_none_or(|at| at.elapsed() >= self.config.lease_duration);
        if !holder.is_empty() && holder != me && !expired {
            return Attempt::HeldBy(holder);
        }
        let (acquire_time, transitions) = if holder == me {
            (
                spec.acquire_time.clone(),
                spec.lease_transitions.unwrap_or(0),
            )
        } else {
            (Some(Self::now()), spec.lease_transitions.unwrap_or(0) + 1)
        };
        let new_spec = LeaseSpec {
            holder_identity: Some(me),
            lease_duration_seconds: Some(duration),
            acquire_time,
            renew_time: Some(Self::now()),
            lease_transitions: Some(transitions),
            ..spec
        };
        lease.spec = Some(new_spec.clone());
        // The resourceVersion read above stays in the metadata: a PUT that
        // lost a race answers 409 and this attempt fails.
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => {
                self.observe(&new_spec);
                Attempt::Held
            }
            Err(e) => Attempt::Failed(e.to_string()),
        }
    }

    /// Gives the Lease up (shutdown): an empty holder and a one-second
    /// duration, as client-go's `ReleaseOnCancel`, so another replica takes
    /// over at its next retry.
    async fn release(&mut self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.config.name).await else {
            return;
        };
        let Some(spec) = lease.spec.as_mut() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(Self::now());
        if let Err(e) = self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            tracing::warn!("election: could not release the lease: {e}");
        }
    }

    fn jittered(&self) -> Duration {
        // client-go waits retry_period × (1 + up to 1.2) between attempts
        // of a candidate; a random fraction keeps replicas apart.
        let frac = f64::from(uuid::Uuid::new_v4().as_bytes()[0]) / 255.0;
        self.config.retry_period.mul_f64(1.0 + 1.2 * frac)
    }

    fn set_role(&self, role: Role) {
        self.role.send_if_modified(|r| {
            if *r == role {
                false
            } else {
                *r = role;
                true
            }
        });
    }

    /// Campaigns until `stop`, calling `lead` with a fresh token at the
    /// start of each term; the token is cancelled when the term ends
    /// (renewal failed past the deadline, or `stop`).
    pub async fn run<F>(mut self, stop: CancellationToken, mut lead: F)
    where
        F: FnMut(CancellationToken) + Send,
    {
        let name = format!("{}/{}", self.config.namespace, self.config.name);
        loop {
            // Candidate (or follower): until the Lease is ours.
            loop {
                match self.try_acquire_or_renew().await {
                    Attempt::Held => break,
                    Attempt::HeldBy(leader) => self.set_role(Role::Follower { leader }),
                    Attempt::Failed(e) => {
                        tracing::debug!(lease = %name, "election: could not acquire: {e}");
                        self.set_role(Role::Candidate);
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(self.jittered()) => {}
                    _ = stop.cancelled() => {
                        self.set_role(Role::Candidate);
                        return;
                    }
                }
            }
            let term = stop.child_token();
            tracing::info!(lease = %name, identity = %self.config.identity, "election: leading");
            self.metrics.leader.set(1);
            self.metrics.leader_transitions.inc();
            self.set_role(Role::Leader);
            lead(term.clone());
            // Leader: renew every retry period; past the deadline, stop.
            let mut last_renewed = Instant::now();
            let lost = loop {
                tokio::select! {
                    _ = tokio::time::sleep(self.config.retry_period) => {}
                    _ = stop.cancelled() => break false,
                }
                let deadline = last_renewed + self.config.renew_deadline;
                let left = deadline.saturating_duration_since(Instant::now());
                let attempt = tokio::time::timeout(left, self.try_acquire_or_renew()).await;
                match attempt {
                    Ok(Attempt::Held) => last_renewed = Instant::now(),
                    Ok(Attempt::HeldBy(other)) => {
                        tracing::warn!(lease = %name, %other, "election: the lease was taken over");
                        break true;
                    }
                    Ok(Attempt::Failed(e)) => {
                        tracing::warn!(lease = %name, "election: renewal failed: {e}");
                    }
                    Err(_) => {}
                }
                if last_renewed + self.config.renew_deadline <= Instant::now() {
                    tracing::error!(
                        lease = %name,
                        deadline = ?self.config.renew_deadline,
                        "election: could not renew within the deadline; stopping leading"
                    );
                    break true;
                }
            };
            term.cancel();
            self.metrics.leader.set(0);
            self.set_role(Role::Candidate);
            if !lost {
                self.release().await;
                return;
            }
            // A deposed leader judges the record anew, like any candidate.
            self.observed = None;
        }
    }
}
