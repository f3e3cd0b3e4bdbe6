//! The router: one [`Invocation`] in, one [`Reply`] out.
//!
//! Every adapter (console, Slack, Discord) builds an [`Invocation`] and calls
//! [`Router::handle`]. The steps, in order:
//! 1. an idempotency key already seen is answered with its first reply and
//!    runs nothing;
//! 2. a history row is written before anything runs (a command that changes
//!    nothing, and that no approval rule names, is instead written whole,
//!    once, after it ran and before step 6's reply);
//! 3. parse and check against the catalog (bad input changes nothing);
//! 4. authorize with the policy (deny by default, with the deciding rule);
//! 5. hold for approval, or execute through the handler of the command;
//! 6. complete the history row, then return the reply.
//!
//! So a mutating command never runs twice for one key, never runs
//! unauthorized, and is in the history before the user sees the reply.

use std::sync::Arc;
use std::time::Instant;

use tracing::Instrument;

use oncall_grammar::{self as grammar, Catalog, Command, Gate, Scope, ServiceEntry};
use oncall_ops::Clusters;
use oncall_permissions::{Decision, Principal, Request, Target};

use crate::config::Config;
use crate::context::Context;
use crate::handlers;
use crate::reply::{Outcome, Reply};
use crate::store::{Approval, CommandFacts, Completion, KeyClaim, NewInvocation, Start, Store};
use crate::supervisor::Supervisor;

pub use crate::model::{Actor, Clock, DecisionRecord, Handled, Invocation, Platform, ProgressSink};

/// How many 50ms steps a duplicate delivery waits for the first one's answer.
const DUPLICATE_WAIT_STEPS: u32 = 30;

/// What a history row says once its command was decided and run: the one
/// place a [`Completion`] is made, for requests and approved executions alike.
pub(crate) fn completion(
    command: Option<&Command>,
    decision: DecisionRecord,
    handled: &mut Handled,
    started: Instant,
) -> Completion {
    let facts = facts_of(command);
    Completion {
        verb: facts.verb,
        command: facts.command,
        service: facts.service,
        mutating: facts.mutating,
        dry_run: facts.dry_run,
        decision: decision.decision,
        rule: decision.rule,
        reason: decision.reason,
        outcome: handled.reply.outcome.label().to_string(),
        summary: handled.summary.take().map(|s| redact_for_history(&s)),
        error: handled.error.take().map(|e| redact_for_history(&e)),
        duration_ms: started.elapsed().as_millis() as i64,
        approval_id: decision.approval_id,
    }
}

/// What the row written before a command runs says about it.
pub(crate) fn facts_of(command: Option<&Command>) -> CommandFacts {
    CommandFacts {
        verb: command.map(|c| c.policy_verb().to_string()),
        // Canonical text keeps free words (a note, a page's message):
        // through the one redactor like the typed text.
        command: command.map(|c| redact_for_history(&c.to_string())),
        service: command.and_then(|c| c.service()),
        mutating: command.is_some_and(|c| c.is_mutating()),
        dry_run: command.is_some_and(|c| c.is_dry_run()),
    }
}

pub(crate) struct Inner {
    pub config: Config,
    pub catalog: Catalog,
    pub store: Store,
    pub clusters: Clusters,
    pub clock: Clock,
    /// For health probes.
    pub http: reqwest::Client,
    pub timing: Timing,
    /// Every task that outlives a request's own future.
    pub supervisor: Supervisor,
    /// `rollout status --wait` in progress, per principal.
    pub waits: std::sync::Mutex<std::collections::HashMap<String, usize>>,
    /// Changing commands per person, lately.
    pub mutations: crate::rate_limit::RateLimiter,
    /// Each connected platform's view of people's groups, by platform name.
    pub directories:
        std::sync::RwLock<std::collections::HashMap<String, Arc<dyn crate::directory::Directory>>>,
    /// The outbound chat sinks, once registered.
    pub sinks: std::sync::RwLock<Option<Arc<crate::chat::Sinks>>>,
    /// Wakes the escalation engine (a declare, an `escalate`, a `page`).
    pub escalation_wake: Arc<tokio::sync::Notify>,
    /// Wakes the pager (pages were written).
    pub pager_wake: Arc<tokio::sync::Notify>,
    /// Taken by the engine and the pager around their writes, so they
    /// queue here for each other instead of in SQLite's busy handler
    /// (which sleeps in steps of up to 100 ms).
    pub escalation_gate: tokio::sync::Mutex<()>,
    /// Prometheus counters, shared with the adapters and `/metrics`.
    pub metrics: crate::metrics::Metrics,
    /// The epoch of the term this process's engine and pager write under
    /// (0: none begun, writes unfenced: a router built by a test).
    pub fence: std::sync::atomic::AtomicI64,
    /// This replica's role in the election, when there is one.
    pub role: std::sync::RwLock<Option<tokio::sync::watch::Receiver<crate::election::Role>>>,
}

/// One `rollout status --wait` slot; released when dropped (the command
/// ends, fails, or its future is dropped).
pub struct WaitSlot {
    router: Router,
    principal: String,
}

impl Drop for WaitSlot {
    fn drop(&mut self) {
        let mut waits = self
            .router
            .inner
            .waits
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = waits.get_mut(&self.principal) {
            *n -= 1;
            if *n == 0 {
                waits.remove(&self.principal);
            }
        }
    }
}

/// How long the router waits on things that take time.
#[derive(Debug, Clone)]
pub struct Timing {
    /// How often `rollout status --wait` polls.
    pub rollout_poll: std::time::Duration,
    /// How long `job run` follows the new Job before answering.
    pub job_watch: std::time::Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            rollout_poll: std::time::Duration::from_secs(1),
            job_watch: std::time::Duration::from_secs(10),
        }
    }
}

#[derive(Clone)]
pub struct Router {
    pub(crate) inner: Arc<Inner>,
}

impl Router {
    pub fn new(config: Config, store: Store, clusters: Clusters, clock: Clock) -> Self {
        Self::with_timing(config, store, clusters, clock, Timing::default())
    }

    pub fn with_timing(
        config: Config,
        store: Store,
        clusters: Clusters,
        clock: Clock,
        timing: Timing,
    ) -> Self {
        let catalog = config.catalog();
        let mutations = crate::rate_limit::RateLimiter::new(
            config.limits.mutations_per_window,
            config.limits.mutation_window,
        );
        let http = reqwest::Client::builder()
            .user_agent(concat!("oncall/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the HTTP client builds with default settings");
        Router {
            inner: Arc::new(Inner {
                config,
                catalog,
                store,
                clusters,
                clock,
                http,
                timing,
                supervisor: Supervisor::new(),
                mutations,
                directories: Default::default(),
                sinks: Default::default(),
                waits: Default::default(),
                escalation_wake: Default::default(),
                pager_wake: Default::default(),
                escalation_gate: Default::default(),
                metrics: crate::metrics::Metrics::new(),
                role: Default::default(),
                fence: Default::default(),
            }),
        }
    }

    /// The process's metrics (one registry, whatever serves it).
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.inner.metrics
    }

    /// Begins a term: the store's epoch is incremented and this process's
    /// engine and pager write under it from now on; once another process
    /// begins a term, their writes change nothing. Returns the epoch.
    pub async fn begin_term(&self, holder: &str) -> Result<i64, crate::store::StoreError> {
        let now = self.inner.clock.now().as_millisecond();
        let epoch = self.inner.store.begin_term(holder, now).await?;
        self.inner
            .fence
            .store(epoch, std::sync::atomic::Ordering::SeqCst);
        Ok(epoch)
    }

    /// The epoch the engine's and the pager's writes carry.
    pub fn fence(&self) -> Option<i64> {
        match self.inner.fence.load(std::sync::atomic::Ordering::SeqCst) {
            0 => None,
            epoch => Some(epoch),
        }
    }

    /// Follows this replica's election role (`/readyz` reports it).
    pub fn register_role(&self, role: tokio::sync::watch::Receiver<crate::election::Role>) {
        *self.inner.role.write().unwrap_or_else(|e| e.into_inner()) = Some(role);
    }

    /// This replica's election role now; `None` without an election.
    pub fn role(&self) -> Option<crate::election::Role> {
        self.inner
            .role
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|r| r.borrow().clone())
    }

    /// Every cluster client, by context (`None`: the default one).
    pub fn clusters(&self) -> &Clusters {
        &self.inner.clusters
    }

    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }

    pub(crate) fn timing(&self) -> &Timing {
        &self.inner.timing
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    pub fn catalog(&self) -> &Catalog {
        &self.inner.catalog
    }

    pub fn clock(&self) -> &Clock {
        &self.inner.clock
    }

    /// Tells the escalation engine there is work now (it also looks every
    /// `escalation.tick`).
    pub fn wake_escalation(&self) {
        self.inner.escalation_wake.notify_one();
        self.inner.pager_wake.notify_one();
    }

    pub(crate) fn escalation_wake(&self) -> Arc<tokio::sync::Notify> {
        self.inner.escalation_wake.clone()
    }

    /// Tells the pager pages are waiting.
    pub fn wake_pager(&self) {
        self.inner.pager_wake.notify_one();
    }

    /// See [`Inner::escalation_gate`].
    pub(crate) async fn escalation_gate(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.inner.escalation_gate.lock().await
    }

    pub(crate) fn pager_wake(&self) -> Arc<tokio::sync::Notify> {
        self.inner.pager_wake.clone()
    }

    /// Takes a `--wait` slot for a principal, within `[limits]`; `Err` says
    /// which limit is reached.
    pub(crate) fn wait_slot(&self, principal: &str) -> Result<WaitSlot, String> {
        let limits = &self.inner.config.limits;
        let mut waits = self.inner.waits.lock().unwrap_or_else(|e| e.into_inner());
        let total: usize = waits.values().sum();
        let mine = waits.get(principal).copied().unwrap_or(0);
        if mine >= limits.waits_per_principal {
            return Err(format!(
                "you are already following {mine} rollout(s); the limit is {} at once (limits.waits_per_principal)",
                limits.waits_per_principal
            ));
        }
        if total >= limits.waits_total {
            return Err(format!(
                "{total} rollouts are being followed; the limit is {} at once (limits.waits_total)",
                limits.waits_total
            ));
        }
        *waits.entry(principal.to_string()).or_insert(0) += 1;
        Ok(WaitSlot {
            router: self.clone(),
            principal: principal.to_string(),
        })
    }

    /// Where background work runs, and how shutdown reaches it.
    /// Registers a platform's directory (its adapter does, at start), so
    /// approvals can ask for a requester's groups now.
    /// What this process can post through (set by `serve` and the demo):
    /// the courier's sinks, which handlers use to share files.
    pub fn register_sinks(&self, sinks: Arc<crate::chat::Sinks>) {
        *self.inner.sinks.write().unwrap_or_else(|e| e.into_inner()) = Some(sinks);
    }

    pub(crate) fn sinks(&self) -> Option<Arc<crate::chat::Sinks>> {
        self.inner
            .sinks
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn register_directory(
        &self,
        platform: Platform,
        directory: Arc<dyn crate::directory::Directory>,
    ) {
        self.inner
            .directories
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(platform.as_str().to_string(), directory);
    }

    /// A requester's groups now, asked of their platform. Without a
    /// directory for it, only a requester seen with no groups is known:
    /// groups that can't be confirmed are a missing fact (fail closed).
    pub(crate) async fn current_groups(
        &self,
        platform: &str,
        principal: &Principal,
        workspace: Option<&str>,
        seen: &[Principal],
    ) -> Result<Vec<Principal>, String> {
        let directory = self
            .inner
            .directories
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(platform)
            .cloned();
        match directory {
            Some(d) => d.groups(&self.inner.config.policy, principal, workspace).await,
            None if seen.is_empty() => Ok(Vec::new()),
            None => Err(format!(
                "oncall is not connected to {platform} now, so {principal}'s groups can't be confirmed"
            )),
        }
    }

    pub fn supervisor(&self) -> &Supervisor {
        &self.inner.supervisor
    }

    /// Handles one invocation end to end. Never panics on user input; every
    /// path returns a reply. Everything logged on the way carries one
    /// `invocation` span (id, platform, principal, verb, decision, outcome),
    /// so the lines of one request can be followed; the text is not in it.
    pub async fn handle(&self, inv: Invocation) -> Reply {
        use tracing::field::Empty;
        let span = tracing::info_span!(
            "invocation",
            id = Empty,
            platform = inv.platform.as_str(),
            principal = %inv.principal,
            verb = Empty,
            decision = Empty,
            outcome = Empty,
        );
        let started = Instant::now();
        let platform = inv.platform.as_str();
        let mut verb = "invalid";
        let reply = self.handle_in_span(inv, &mut verb).instrument(span).await;
        self.inner
            .metrics
            .command(verb, reply.outcome.label(), platform, started.elapsed());
        reply
    }

    async fn handle_in_span(&self, inv: Invocation, verb: &mut &'static str) -> Reply {
        let store = &self.inner.store;
        let now_ms = self.inner.clock.now().as_millisecond();
        let started = Instant::now();
        // Parsed once, here: it decides how the request is recorded, then
        // what runs.
        let parsed = grammar::parse(&inv.text);
        if let Ok(p) = &parsed {
            *verb = p.command.spec().name;
        }
        let record = NewInvocation {
            received_at_ms: inv.received_at.as_millisecond(),
            platform: inv.platform.as_str().to_string(),
            workspace: inv.workspace.clone(),
            channel: inv.channel.clone(),
            principal: inv.principal.to_string(),
            groups: inv.groups.iter().map(ToString::to_string).collect(),
            text: redact_for_history(&inv.text),
            idempotency_key: inv.idempotency_key.clone(),
            facts: facts_of(parsed.as_ref().ok().map(|p| &p.command)),
        };
        if self.recorded_once(&parsed) {
            return self
                .handle_recorded_once(&inv, parsed, &record, started, now_ms)
                .await;
        }
        // One commit: the key is claimed and the row written together.
        let id = match store.start_invocation(&record, now_ms).await {
            Ok(Start::Begun(id)) => id,
            Ok(Start::Repeat(KeyClaim::Done(json))) => return stored_reply(&json),
            Ok(Start::Repeat(_)) => {
                // The first delivery is still running: wait a little for its
                // answer rather than running anything.
                let key = inv.idempotency_key.as_deref().unwrap_or_default();
                for _ in 0..DUPLICATE_WAIT_STEPS {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    if let Ok(Some(json)) = store.key_reply(key).await {
                        return stored_reply(&json);
                    }
                }
                return Reply::new(Outcome::Info, "This request is already being handled")
                    .text("The same request arrived twice; it runs once and answers when done.");
            }
            Err(e) => return store_unavailable(e),
        };
        let span = tracing::Span::current();
        span.record("id", id);
        let incident = parsed.as_ref().ok().and_then(|p| p.incident);
        let (handled, command, decision) = self.run(&inv, parsed, Some(id)).await;
        let on_timeline = command.clone();
        let (mut reply, completion) = self.conclude(&inv, handled, command, decision, started);
        self.put_on_timeline(
            (inv.platform.as_str(), &inv.channel, &inv.principal),
            incident,
            on_timeline.as_ref(),
            &completion,
            Some(id),
        )
        .await;
        // One commit: the row is completed and the reply kept for repeats,
        // before the reply is returned.
        let json = key_json(&inv, &reply);
        let key_reply = inv.idempotency_key.as_deref().zip(json.as_deref());
        let duration_ms = completion.duration_ms;
        if let Err(e) = store.finish_invocation(id, &completion, key_reply).await {
            tracing::error!(invocation = id, "could not complete the history row: {e}");
            reply = reply.text(format!(
                "⚠️ The history could not record the outcome of this request (#{id}): {e}"
            ));
        }
        tracing::info!(duration_ms, "handled");
        reply
    }

    /// [`Router::handle`] as a boxed future, for a command that runs
    /// another in its place (an alert's first-response button).
    pub(crate) fn handle_boxed(
        &self,
        inv: Invocation,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Reply> + Send + '_>> {
        Box::pin(self.handle(inv))
    }

    /// Whether a request is recorded in one write, after it ran and before
    /// its reply: a command that changes nothing (or no command at all) and
    /// that no approval rule can hold. Running such a request twice is
    /// harmless, so nothing needs claiming before it runs; everything else
    /// is recorded, and its key claimed, before it runs.
    fn recorded_once(&self, parsed: &Result<grammar::Parsed, grammar::ParseError>) -> bool {
        let Ok(parsed) = parsed else {
            return true;
        };
        let command = &parsed.command;
        let verb = command.policy_verb();
        !command.is_mutating()
            && !self
                .inner
                .config
                .policy
                .approvals
                .iter()
                .any(|rule| rule.verbs.matches(Some(verb)))
    }

    /// Runs a request that changes nothing, then records it whole, in one
    /// commit, before the reply is returned. A repeat of a key that already
    /// answered gets that answer.
    async fn handle_recorded_once(
        &self,
        inv: &Invocation,
        parsed: Result<grammar::Parsed, grammar::ParseError>,
        record: &NewInvocation,
        started: Instant,
        now_ms: i64,
    ) -> Reply {
        let incident = parsed.as_ref().ok().and_then(|p| p.incident);
        let (handled, command, decision) = self.run(inv, parsed, None).await;
        let on_timeline = command.clone();
        let (reply, completion) = self.conclude(inv, handled, command, decision, started);
        let json = key_json(inv, &reply);
        let duration_ms = completion.duration_ms;
        match self
            .inner
            .store
            .record_invocation(record, &completion, json.as_deref(), now_ms)
            .await
        {
            Ok(Start::Begun(id)) => {
                tracing::Span::current().record("id", id);
                self.put_on_timeline(
                    (inv.platform.as_str(), &inv.channel, &inv.principal),
                    incident,
                    on_timeline.as_ref(),
                    &completion,
                    Some(id),
                )
                .await;
            }
            Ok(Start::Repeat(KeyClaim::Done(json))) => return stored_reply(&json),
            // The first delivery is still running: this answer is as good.
            Ok(Start::Repeat(_)) => {}
            // Not in the history: not shown.
            Err(e) => return store_unavailable(e),
        }
        tracing::info!(duration_ms, "handled");
        reply
    }

    /// Puts an ops command on an incident's timeline: the one `--incident N`
    /// names, or the one whose channel it ran in. Incident verbs write their
    /// own events; help and identity questions are not part of a response.
    async fn put_on_timeline(
        &self,
        (platform, channel, actor): (&str, &str, &Principal),
        flag: Option<u32>,
        command: Option<&Command>,
        completion: &Completion,
        invocation_id: Option<i64>,
    ) {
        let Some(command) = command else { return };
        if !on_timeline(command) {
            return;
        }
        let store = &self.inner.store;
        let incident = match flag {
            Some(n) => store.incident(i64::from(n)).await,
            None => store.incident_of_channel(platform, channel).await,
        };
        let incident = match incident {
            Ok(Some(i)) => i,
            Ok(None) => return,
            Err(e) => {
                tracing::error!("could not look up the incident of a command: {e}");
                return;
            }
        };
        let mut text = format!("{command} → {}", completion.outcome);
        if let Some(summary) = &completion.summary {
            text.push_str(&format!(": {summary}"));
        }
        if let Some(error) = &completion.error {
            text.push_str(&format!(": {error}"));
        }
        match (&completion.approval_id, completion.decision.as_str()) {
            (Some(id), "approved") => text.push_str(&format!(
                " (request {id}, {})",
                completion.reason.as_deref().unwrap_or("approved")
            )),
            (Some(id), _) => text.push_str(&format!(" (held for approval, request {id})")),
            (None, _) => {}
        }
        let event = crate::store::NewEvent {
            at_ms: self.inner.clock.now().as_millisecond(),
            actor: actor.to_string(),
            kind: "command",
            text: redact_for_history(&text),
            invocation_id,
        };
        if let Err(e) = store.add_incident_event(incident.id, &event).await {
            tracing::error!(incident = incident.id, "could not add to the timeline: {e}");
        }
    }

    /// The reply to show (with its footer) and the history's completion of
    /// a request that ran.
    fn conclude(
        &self,
        inv: &Invocation,
        mut handled: Handled,
        command: Option<Command>,
        decision: DecisionRecord,
        started: Instant,
    ) -> (Reply, Completion) {
        let span = tracing::Span::current();
        if let Some(c) = &command {
            span.record("verb", c.policy_verb());
        }
        span.record("decision", decision.decision.as_str());
        span.record("outcome", handled.reply.outcome.label());
        let completion = completion(command.as_ref(), decision, &mut handled, started);
        let mut reply = handled.reply;
        let now = self.inner.clock.now();
        reply.footer = Some(format!(
            "{} · {} · {}",
            inv.principal,
            inv.channel_scope(),
            now.round(jiff::Unit::Second).unwrap_or(now)
        ));
        (reply, completion)
    }

    /// Parse → validate → authorize → approve-or-execute.
    async fn run(
        &self,
        inv: &Invocation,
        parsed: Result<grammar::Parsed, grammar::ParseError>,
        invocation_id: Option<i64>,
    ) -> (Handled, Option<Command>, DecisionRecord) {
        let parsed = match parsed
            .and_then(|p| grammar::validate(&p.command, &self.inner.catalog).map(|()| p))
        {
            Ok(p) => p,
            Err(mut e) => {
                // "Did you mean" names only what the caller may act on.
                if let grammar::ParseError::UnknownService {
                    verb, suggestion, ..
                } = &mut e
                {
                    let allowed = suggestion.as_deref().is_some_and(|s| {
                        self.may_act_on(
                            &inv.principals(),
                            &inv.channel_scope(),
                            verb.policy_verb,
                            Some(s),
                            true,
                        )
                    });
                    if !allowed {
                        *suggestion = None;
                    }
                }
                let reply = Reply::new(Outcome::Invalid, e.to_string()).code(None, e.usage());
                let decision = DecisionRecord {
                    decision: "invalid".into(),
                    reason: Some(e.to_string()),
                    ..Default::default()
                };
                return (
                    Handled {
                        reply,
                        summary: None,
                        error: Some(e.to_string()),
                        decision: None,
                    },
                    None,
                    decision,
                );
            }
        };
        let command = parsed.command.clone();
        if let Some(n) = parsed.incident {
            // A command meant for an incident that does not exist runs
            // nowhere: the caller meant something else.
            if let Ok(None) = self.inner.store.incident(i64::from(n)).await {
                let message =
                    format!("There is no incident {n} (from `--incident {n}`); nothing ran.");
                let decision = DecisionRecord {
                    decision: "invalid".into(),
                    reason: Some(message.clone()),
                    ..Default::default()
                };
                return (
                    Handled {
                        reply: Reply::new(Outcome::Invalid, message.clone())
                            .text("`incident list` shows the incidents."),
                        summary: None,
                        error: Some(message),
                        decision: None,
                    },
                    Some(command),
                    decision,
                );
            }
        }
        let (mut handled, decision) = self.dispatch(inv, &command, invocation_id).await;
        if parsed.public {
            handled.reply.visibility = crate::reply::Visibility::Public;
        }
        (handled, Some(command), decision)
    }

    async fn dispatch(
        &self,
        inv: &Invocation,
        command: &Command,
        invocation_id: Option<i64>,
    ) -> (Handled, DecisionRecord) {
        let none = || DecisionRecord {
            decision: "none".into(),
            ..Default::default()
        };
        let actor = Actor {
            principal: inv.principal.clone(),
            approved_by: None,
        };
        if command.spec().gate == Gate::Handler {
            // Anyone may ask (help, whoami), or the handler checks its own
            // rules (approve, deny) and says what it decided.
            let cx = Context::new(self, inv, &Scope::Nothing, &actor);
            let mut handled = handlers::execute(command, &cx).await;
            let decision = handled.decision.take().unwrap_or_else(none);
            return (handled, decision);
        }
        let scope = match self.resolve_scope(command).await {
            Ok(scope) => scope,
            Err(handled) => return (handled, none()),
        };
        let decision = self.authorize(&inv.principals(), &inv.channel_scope(), command, &scope);
        let record = DecisionRecord {
            decision: decision.label().to_string(),
            rule: Some(decision.reason().rule.clone()),
            reason: Some(decision.reason().explanation.clone()),
            approval_id: None,
        };
        let cx = Context::new(self, inv, &scope, &actor).with_invocation(invocation_id);
        if let Decision::Deny { reason } = &decision {
            return (Handled::info(handlers::denied(command, reason)), record);
        }
        // A changing command (asked for approval or run now) counts against
        // its person's limit; past it, nothing runs.
        if command.is_mutating() && !command.is_dry_run() {
            let policy = &self.inner.config.policy;
            let person = policy
                .person_of(&inv.principal)
                .map(|p| format!("person:{}", p.name))
                .unwrap_or_else(|| inv.principal.to_string());
            if let Err(limited) = self.inner.mutations.check(&person, cx.now) {
                return rate_limited(&inv.principal, &limited);
            }
        }
        match decision {
            Decision::Deny { reason } => {
                (Handled::info(handlers::denied(command, &reason)), record)
            }
            Decision::NeedsApproval {
                rule,
                approvers,
                reason,
            } if !command.is_dry_run() => {
                let (handled, approval_id) = handlers::approvals::request(
                    &cx,
                    command,
                    &rule,
                    &approvers,
                    &reason,
                    invocation_id,
                )
                .await;
                (
                    handled,
                    DecisionRecord {
                        approval_id,
                        ..record
                    },
                )
            }
            Decision::NeedsApproval { .. } | Decision::Allow { .. } => {
                (handlers::execute(command, &cx).await, record)
            }
        }
    }

    /// What a command acts on: pure catalog resolution, then, for a pod,
    /// a read of its owner (before any decision to change anything).
    // The error is the reply to the user, made once per request.
    #[allow(clippy::result_large_err)]
    pub(crate) async fn resolve_scope(&self, command: &Command) -> Result<Scope<'_>, Handled> {
        let scope = self.inner.catalog.scope(command).map_err(|name| {
            Handled::failed("Unknown target", format!("`{name}` is not in the catalog"))
        })?;
        // A pod counts as a service's only if that service's deployment owns
        // it (its name alone proves nothing: `backend-postgres-0`).
        if let Scope::Pod { pod, service } = &scope {
            let client = self.client_for(service)?;
            match oncall_ops::workloads::deployment_of_pod(&client, &service.namespace, pod).await
            {
                Ok(Some(owner)) if owner == service.deployment() => {}
                Ok(_) => {
                    return Err(Handled::failed(
                        "Unknown target",
                        format!(
                            "pod `{pod}` is not a pod of a catalog service (deployment/{} in namespace {} does not own it)",
                            service.deployment(),
                            service.namespace
                        ),
                    ))
                }
                Err(e) => return Err(Handled::failed(format!("Could not look up pod {pod}"), e)),
            }
        }
        Ok(scope)
    }

    /// The kube context of the catalog services in a namespace.
    pub(crate) fn context_of_namespace(&self, namespace: &str) -> Option<String> {
        self.inner
            .catalog
            .services()
            .iter()
            .find(|s| s.namespace == namespace)
            .and_then(|s| s.context.clone())
    }

    /// Whether `verb` is allowed outright (no approval) on every target of a
    /// scope, for these principals in this channel.
    pub fn permits(
        &self,
        principals: &[Principal],
        channel: &str,
        verb: &str,
        scope: &Scope<'_>,
    ) -> bool {
        self.decisions(principals, channel, verb, scope, &[])
            .iter()
            .all(|d| matches!(d, Decision::Allow { .. }))
    }

    /// The policy's decision for `verb` on each target of a scope.
    fn decisions(
        &self,
        principals: &[Principal],
        channel: &str,
        verb: &str,
        scope: &Scope<'_>,
        conditions: &[&str],
    ) -> Vec<Decision> {
        self.targets(scope)
            .into_iter()
            .map(|target| {
                self.inner.config.policy.evaluate(&Request {
                    principals,
                    channel,
                    verb,
                    target,
                    conditions,
                })
            })
            .collect()
    }

    /// Whether these principals may use `verb` here on what a name (a
    /// service, one of its pods, a namespace; none) stands for: outright,
    /// or also with an approval when `held_ok` (what is worth suggesting).
    /// A name the catalog doesn't know is no service.
    pub fn may_act_on(
        &self,
        principals: &[Principal],
        channel: &str,
        verb: &str,
        name: Option<&str>,
        held_ok: bool,
    ) -> bool {
        let scope = name.map_or(Scope::Nothing, |n| self.inner.catalog.scope_of_name(n));
        if !held_ok {
            return self.permits(principals, channel, verb, &scope);
        }
        self.decisions(principals, channel, verb, &scope, &[])
            .iter()
            .all(|d| !matches!(d, Decision::Deny { .. }))
    }

    /// The policy targets of a scope: one per catalog service it touches (a
    /// namespace is every catalog service in it, so rules naming a service
    /// hold for namespace-wide commands too).
    fn targets<'s>(&'s self, scope: &'s Scope<'_>) -> Vec<Target<'s>> {
        let namespace_target = |ns: &str| -> Target<'s> {
            let members: Vec<&ServiceEntry> = self
                .inner
                .catalog
                .services()
                .iter()
                .filter(|s| s.namespace == ns)
                .collect();
            let environment = members
                .iter()
                .filter_map(|s| s.environment.as_deref())
                .max_by_key(|e| (*e == "production", *e));
            Target {
                service: None,
                namespace: members.first().map(|s| s.namespace.as_str()),
                cluster: Some(members.first().map(|s| s.cluster()).unwrap_or("default")),
                environment,
                cronjob: None,
            }
        };
        match scope {
            Scope::Nothing => vec![Target::default()],
            Scope::Services(entries) => entries.iter().map(|e| target_of(e)).collect(),
            Scope::Pod { service, .. } => vec![target_of(service)],
            Scope::Namespace { namespace, .. } => {
                let members: Vec<Target<'s>> = self
                    .inner
                    .catalog
                    .services()
                    .iter()
                    .filter(|s| &s.namespace == namespace)
                    .map(target_of)
                    .collect();
                if members.is_empty() {
                    vec![namespace_target(namespace)]
                } else {
                    members
                }
            }
            Scope::CronJob { cronjob, service } => vec![Target {
                cronjob: Some(cronjob),
                ..target_of(service)
            }],
        }
    }

    /// The policy decision for a command on its scope, in a channel. Every
    /// target must be allowed (the first denial decides); if any needs
    /// approval the whole request does. `--force` also needs the `force` verb.
    pub fn authorize(
        &self,
        principals: &[Principal],
        channel: &str,
        command: &Command,
        scope: &Scope<'_>,
    ) -> Decision {
        let conditions = command.conditions();
        let mut verbs = vec![command.policy_verb()];
        if conditions.contains(&"force") {
            verbs.push("force");
        }
        let mut decisions = Vec::new();
        for verb in &verbs {
            decisions.extend(self.decisions(principals, channel, verb, scope, &conditions));
        }
        // Every target is decided; every approval rule any of them matched
        // holds (a multi-target request can't slip past a rule on its
        // second target).
        self.inner.config.policy.combine(decisions)
    }

    /// Runs an approved request in its own history row, in the requester's
    /// name (written, with the approval's consumption, before it runs) and
    /// completes it through the same [`completion`] as every request's.
    pub(crate) async fn run_approved(
        &self,
        approval: &Approval,
        exec_id: i64,
        scope: &Scope<'_>,
        actor: &Actor,
        inv: &Invocation,
    ) -> Handled {
        let command = &approval.command;
        let started = Instant::now();
        let cx = Context::new(self, inv, scope, actor);
        // Boxed: an approval's handler runs handlers, itself among them.
        let handled = Box::pin(handlers::execute(command, &cx)).await;
        // The execution's row keeps the handler's summary and error; the
        // approver's reply gets its own summary.
        let mut for_row = handled.clone();
        let decision = DecisionRecord {
            decision: "approved".into(),
            rule: Some(format!("approval rule {}", approval.rule)),
            reason: Some(format!("approved by {}", inv.principal)),
            approval_id: Some(approval.id.clone()),
        };
        let completion = completion(Some(command), decision, &mut for_row, started);
        if let Err(e) = self
            .inner
            .store
            .finish_invocation(exec_id, &completion, None)
            .await
        {
            tracing::error!("could not complete the execution row: {e}");
        }
        // Held in an incident's channel: its execution is on the timeline,
        // in the requester's name, with the approver.
        self.put_on_timeline(
            (&approval.platform, &approval.channel, &approval.requester),
            None,
            Some(command),
            &completion,
            Some(exec_id),
        )
        .await;
        handled
    }

    /// The client for a catalog service.
    // The error is the reply to the user, made once per request.
    #[allow(clippy::result_large_err)]
    pub(crate) fn client_for(&self, entry: &ServiceEntry) -> Result<kube::Client, Handled> {
        self.inner
            .clusters
            .client(entry.context.as_deref())
            .cloned()
            .map_err(|e| Handled::failed(format!("Cannot reach the cluster of {}", entry.name), e))
    }

    /// The client for a namespace of the catalog.
    // The error is the reply to the user, made once per request.
    #[allow(clippy::result_large_err)]
    pub(crate) fn client_for_namespace(&self, namespace: &str) -> Result<kube::Client, Handled> {
        let context = self.context_of_namespace(namespace);
        self.inner
            .clusters
            .client(context.as_deref())
            .cloned()
            .map_err(|e| {
                Handled::failed(
                    format!("Cannot reach the cluster of namespace {namespace}"),
                    e,
                )
            })
    }
}

fn target_of(e: &ServiceEntry) -> Target<'_> {
    Target {
        service: Some(e.name.as_str()),
        namespace: Some(e.namespace.as_str()),
        cluster: Some(e.cluster()),
        environment: e.environment.as_deref(),
        cronjob: None,
    }
}

/// The answer to a changing command past its person's limit.
fn rate_limited(
    who: &Principal,
    limited: &crate::rate_limit::Limited,
) -> (Handled, DecisionRecord) {
    let window = humantime::format_duration(limited.window);
    let retry = humantime::format_duration(limited.retry_after);
    let why = format!(
        "{who} has run {} changing commands in the last {window} (limits.mutations_per_window); nothing was run",
        limited.per_window
    );
    let reply = Reply::new(Outcome::Denied, "Too many changes at once")
        .text(format!("{why}. Try again in {retry}."));
    let handled = Handled {
        reply,
        summary: None,
        error: Some(why.clone()),
        decision: None,
    };
    let record = DecisionRecord {
        decision: "rate_limited".into(),
        rule: Some("limits.mutations_per_window".into()),
        reason: Some(why),
        approval_id: None,
    };
    (handled, record)
}

/// The reply as kept for the request's idempotency key (redacted), if it
/// has one.
fn key_json(inv: &Invocation, reply: &Reply) -> Option<String> {
    inv.idempotency_key.as_ref()?;
    match serde_json::to_string(&reply.redacted()) {
        Ok(json) => Some(json),
        Err(e) => {
            tracing::error!("could not serialize a reply: {e}");
            None
        }
    }
}

/// Whether a command belongs on an incident's timeline when run for one.
fn on_timeline(command: &Command) -> bool {
    // Paging verbs write their own events (a page, an escalation).
    !matches!(
        command,
        Command::Help(_)
            | Command::Whoami(_)
            | Command::Can(_)
            | Command::History(_)
            | Command::Escalate(_)
            | Command::Page(_)
            | Command::Who(_)
            | Command::ScheduleShow(_)
            | Command::Override(_)
            | Command::Alerts(_)
            | Command::Silence(_)
            | Command::Unsilence(_)
    ) && !command.spec().name.starts_with("incident ")
}

/// A repeat's answer: the first delivery's stored reply.
fn stored_reply(json: &str) -> Reply {
    match serde_json::from_str::<Reply>(json) {
        Ok(reply) => reply,
        Err(e) => Reply::new(Outcome::Failed, "This request was already handled").text(format!(
            "Its stored answer is unreadable ({e}); it was not run again."
        )),
    }
}

fn store_unavailable(e: crate::store::StoreError) -> Reply {
    tracing::error!("history store unavailable: {e}");
    Reply::new(
        Outcome::Failed,
        "oncall's history is unavailable, so nothing was run",
    )
    .text("Every command is recorded before it runs; try again in a moment.")
}

/// Masks secrets before raw text goes to the history: the one redactor
/// ([`oncall_grammar::redact`]) that log lines and crash output go through.
pub fn redact_for_history(text: &str) -> String {
    oncall_grammar::redact::redact_line(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_text_uses_the_one_redactor() {
        // Refused by the parser, but its raw text is still recorded.
        assert_eq!(
            redact_for_history("env set backend DATABASE_URL=postgres://app:s3cr3t@db/app"),
            "env set backend DATABASE_URL=postgres://app:[REDACTED]@db/app"
        );
        assert!(!redact_for_history("logs x --grep 'Bearer abc.def'").contains("abc.def"));
    }

    #[test]
    fn history_text_redacts_secret_assignments() {
        assert_eq!(
            redact_for_history("env set backend DB_PASSWORD=hunter2 DB_POOL_SIZE=30 api_key=abc"),
            "env set backend DB_PASSWORD=[REDACTED] DB_POOL_SIZE=30 api_key=[REDACTED]"
        );
    }
}
