//! What a handler gets: the request, what it acts on, and the narrow set of
//! services it may use — the kube client for its target, the clock, the
//! HTTP client for probes, the store operations it needs, the policy for
//! explanations, and the supervisor's cancellation token.
//!
//! Handlers never see the router. The router is held privately here (this
//! module is not an ancestor of `handlers`, so they can't reach the field),
//! and every capability is a method, so what a handler can do is listed in
//! one place.

use oncall_grammar::{Catalog, Command, Scope, ServiceEntry};
use oncall_permissions::{Decision, Policy, Principal};
use tokio_util::sync::CancellationToken;

use crate::model::{Actor, Handled, Invocation, ProgressSink};
use crate::router::{Router, Timing};
use crate::store::{
    Approval, ApprovalState, HistoryQuery, InvocationRow, NewInvocation, StoreError,
};

/// The failure reply a handler returns early with (`?` turns a [`Handled`]
/// into one). Boxed: it travels in every handler's `Result`.
#[derive(Debug)]
pub struct Refusal(pub Box<Handled>);

impl Refusal {
    pub fn into_handled(self) -> Handled {
        *self.0
    }
}

impl From<Handled> for Refusal {
    fn from(handled: Handled) -> Self {
        Refusal(Box::new(handled))
    }
}

/// One command's view of the world while it runs.
pub struct Context<'a> {
    router: &'a Router,
    /// The request as it came in (for an approved command: the approver's).
    pub inv: &'a Invocation,
    /// What the command acts on, resolved through the catalog.
    pub scope: &'a Scope<'a>,
    /// Who it runs for (and who approved it).
    pub actor: &'a Actor,
    /// The time the command started, from the one clock.
    pub now: jiff::Timestamp,
    invocation_id: Option<i64>,
}

impl<'a> Context<'a> {
    pub(crate) fn new(
        router: &'a Router,
        inv: &'a Invocation,
        scope: &'a Scope<'a>,
        actor: &'a Actor,
    ) -> Self {
        Context {
            router,
            inv,
            scope,
            actor,
            now: router.clock().now(),
            invocation_id: None,
        }
    }

    /// The same, for a command recorded as invocation `id` before it ran.
    pub(crate) fn with_invocation(mut self, id: Option<i64>) -> Self {
        self.invocation_id = id;
        self
    }

    // ---- what the command acts on ----

    /// The one catalog service it acts on (a service named, or a pod's).
    pub fn service(&self) -> Result<&'a ServiceEntry, Refusal> {
        match self.scope {
            Scope::Services(entries) if entries.len() == 1 => Ok(entries[0]),
            Scope::Pod { service, .. } => Ok(service),
            _ => Err(mismatch().into()),
        }
    }

    /// The pod named, if the target is one.
    pub fn pod(&self) -> Option<&'a str> {
        match self.scope {
            Scope::Pod { pod, .. } => Some(pod.as_str()),
            _ => None,
        }
    }

    /// The one service it acts on and a client for its cluster.
    pub fn service_client(&self) -> Result<(kube::Client, &'a ServiceEntry), Refusal> {
        let entry = self.service()?;
        Ok((self.client_for(entry)?, entry))
    }

    /// The client for a catalog service's cluster.
    pub fn client_for(&self, entry: &ServiceEntry) -> Result<kube::Client, Refusal> {
        Ok(self.router.client_for(entry)?)
    }

    /// The client for the cluster of a catalog namespace.
    pub fn client_for_namespace(&self, namespace: &str) -> Result<kube::Client, Refusal> {
        Ok(self.router.client_for_namespace(namespace)?)
    }

    /// The catalog, for commands about names (`can`).
    pub fn catalog(&self) -> &'a Catalog {
        self.router.catalog()
    }

    // ---- time, cancellation, progress, probes ----

    pub fn timing(&self) -> &'a Timing {
        self.router.timing()
    }

    /// Cancelled when the server shuts down: long waits stop at it.
    pub fn shutdown(&self) -> CancellationToken {
        self.router.supervisor().token()
    }

    /// A slot to follow a rollout, within `[limits]`, held until dropped.
    pub fn wait_slot(&self) -> Result<crate::router::WaitSlot, Refusal> {
        self.router
            .wait_slot(&self.inv.principal.to_string())
            .map_err(|why| Handled::failed("Too many rollouts followed at once", why).into())
    }

    /// Where a long command reports progress, if the platform shows it.
    pub fn progress(&self) -> Option<ProgressSink> {
        self.inv.progress.clone()
    }

    /// The HTTP client for health probes.
    pub fn http(&self) -> &'a reqwest::Client {
        self.router.http()
    }

    // ---- the policy ----

    pub fn policy(&self) -> &'a Policy {
        &self.router.config().policy
    }

    /// Whether the caller may use `verb` on this command's scope here, with
    /// no approval needed (what a handler shows beyond its own verb, such
    /// as crash logs in `diagnose`). Anything short of an allow is a no.
    pub fn may(&self, verb: &str) -> bool {
        self.router.permits(
            &self.inv.principals(),
            &self.inv.channel_scope(),
            verb,
            self.scope,
        )
    }

    /// Whether the caller may use `verb` in another channel on what a name
    /// (a service, one of its pods, a namespace; none) stands for, with no
    /// approval needed. A name the catalog doesn't know is no service.
    pub fn may_in(&self, verb: &str, channel: &str, name: Option<&str>) -> bool {
        self.router
            .may_act_on(&self.inv.principals(), channel, verb, name, false)
    }

    /// The policy decision for a command on its scope, in a channel.
    pub fn authorize(
        &self,
        principals: &[Principal],
        channel: &str,
        command: &Command,
        scope: &Scope<'_>,
    ) -> Decision {
        self.router.authorize(principals, channel, command, scope)
    }

    // ---- incidents ----

    /// Severities, roles and cadence.
    pub fn incidents_config(&self) -> &'a crate::incidents::IncidentsConfig {
        &self.router.config().incidents
    }

    /// Policies, schedules and providers.
    pub fn escalation_config(&self) -> &'a crate::escalation::config::EscalationConfig {
        &self.router.config().escalation
    }

    /// Tells the escalation engine there is work now.
    pub fn wake_escalation(&self) {
        self.router.wake_escalation();
    }

    /// Runs `text` as this request would have (same person, groups,
    /// channel), through the whole pipeline, recorded under `key`.
    pub async fn run_in_place(&self, text: String, key: String) -> crate::reply::Reply {
        let mut inner = self.inv.clone();
        inner.text = text;
        inner.idempotency_key = Some(key);
        inner.progress = None;
        self.router.handle_boxed(inner).await
    }

    pub fn alerts_config(&self) -> &'a crate::alerts::config::AlertsConfig {
        &self.router.config().alerts
    }

    /// The store's incident API (incidents, roles, the timeline).
    pub fn incident_store(&self) -> &'a crate::store::Store {
        self.router.store()
    }

    /// Shares a file in the channel the command came from, if this process
    /// can post there; `None` when it can't (the reply then carries it).
    pub async fn upload_here(
        &self,
        file: &crate::chat::FileUpload,
    ) -> Option<Result<(), crate::chat::ChatError>> {
        let sinks = self.router.sinks()?;
        let result = sinks
            .upload(
                self.inv.platform.as_str(),
                self.inv.workspace.as_deref(),
                &self.inv.channel,
                file,
            )
            .await;
        match result {
            Err(crate::chat::ChatError::NotConfigured(_)) => None,
            other => Some(other),
        }
    }

    /// The invocation this command is recorded as, when it was recorded
    /// before it ran.
    pub fn invocation_id(&self) -> Option<i64> {
        self.invocation_id
    }

    // ---- the store operations handlers need ----

    pub async fn history(&self, query: &HistoryQuery) -> Result<Vec<InvocationRow>, StoreError> {
        self.router.store().history(query).await
    }

    /// How long a held request waits for approval.
    pub fn approval_ttl(&self) -> std::time::Duration {
        self.router.config().approvals.ttl
    }

    pub async fn insert_approval(&self, approval: &Approval) -> Result<bool, StoreError> {
        self.router.store().insert_approval(approval).await
    }

    pub async fn approval(&self, id: &str) -> Result<Option<Approval>, StoreError> {
        self.router.store().approval(id).await
    }

    /// Moves a pending request to `state`, once; `None` if it was not
    /// pending any more.
    pub async fn decide_approval(
        &self,
        id: &str,
        state: ApprovalState,
        by: &str,
        at_ms: i64,
    ) -> Result<Option<Approval>, StoreError> {
        self.router
            .store()
            .decide_approval(id, state, by, at_ms)
            .await
    }

    /// The requester's groups now, asked of their platform (see
    /// [`crate::directory`]).
    pub async fn current_groups(&self, approval: &Approval) -> Result<Vec<Principal>, String> {
        self.router
            .current_groups(
                &approval.platform,
                &approval.requester,
                approval.workspace.as_deref(),
                &approval.requester_groups,
            )
            .await
    }

    /// Resolves an approved command's scope (a pod's owner is read again).
    pub async fn resolve_scope(&self, command: &Command) -> Result<Scope<'a>, Handled> {
        self.router.resolve_scope(command).await
    }

    /// Approves a pending request and writes its execution row, as one unit
    /// (see [`crate::store::Store::consume_approval`]).
    pub async fn consume_approval(
        &self,
        id: &str,
        execution: &NewInvocation,
    ) -> Result<Option<i64>, StoreError> {
        let by = self.inv.principal.to_string();
        self.router
            .store()
            .consume_approval(id, &by, self.now.as_millisecond(), execution)
            .await
    }

    /// Runs an approved request through the pipeline's execution step, in
    /// its execution row (written by [`Context::consume_approval`]),
    /// recorded like every other row; returns what the handler produced.
    pub async fn run_approved(
        &self,
        approval: &Approval,
        execution_row: i64,
        scope: &Scope<'_>,
        actor: &Actor,
    ) -> Handled {
        self.router
            .run_approved(approval, execution_row, scope, actor, self.inv)
            .await
    }
}

/// The target did not resolve to what the command needs.
pub fn mismatch() -> Handled {
    Handled::failed(
        "Cannot run this here",
        "the command's target did not resolve as expected",
    )
}
