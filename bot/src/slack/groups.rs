//! Which Slack user groups a user belongs to, for `slack-group:S…` bindings.
//!
//! Only the groups the policy names are looked up (`usergroups.users.list`
//! per group), and each group's members are cached for a TTL. The lookup is
//! single-flight: when an entry expires under load, one request asks Slack
//! and the others wait for its answer instead of each asking (and each
//! meeting the same 429). When Slack can't answer, the last members Slack
//! gave are used while they are younger than `max_stale`, and Slack is not
//! asked again for a short backoff; with nothing that recent, the user is
//! treated as not in the group: deny by default.
//!
//! Callers look groups up inside the work that the ack timer bounds, so a
//! slow lookup turns into a deferred answer, never into a missed deadline.
//! An approval's re-check ([`SlackDirectory`]) asks Slack afresh instead,
//! and fails closed when Slack can't answer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use oncall_permissions::{Policy, Principal, PrincipalKind};

use super::api::SlackApi;
use crate::directory::Directory;

/// How long after a failed lookup Slack is left alone (at most the TTL).
const ERROR_BACKOFF: Duration = Duration::from_secs(30);

pub struct GroupCache {
    ttl: Duration,
    max_stale: Duration,
    /// One slot per group; its async lock is the single flight.
    groups: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Known>>>>,
}

/// What is known of one group's members.
#[derive(Default)]
struct Known {
    /// The members Slack last gave, and when.
    members: Option<(Instant, Vec<String>)>,
    /// When the last lookup failed (cleared by a success).
    failed_at: Option<Instant>,
}

impl Known {
    /// The last members, if young enough to stand in for Slack's answer.
    fn usable(&self, max_age: Duration) -> Option<&Vec<String>> {
        self.members
            .as_ref()
            .filter(|(at, _)| at.elapsed() < max_age)
            .map(|(_, members)| members)
    }
}

/// The Slack user groups the policy binds, each once.
fn policy_groups(policy: &Policy) -> Vec<&Principal> {
    let mut groups: Vec<&Principal> = policy
        .bindings
        .iter()
        .map(|b| &b.principal)
        .filter(|p| p.kind() == PrincipalKind::SlackGroup)
        .collect();
    groups.sort_by_key(|p| p.id().to_string());
    groups.dedup();
    groups
}

impl GroupCache {
    pub fn new(ttl: Duration, max_stale: Duration) -> Self {
        GroupCache {
            ttl,
            max_stale: max_stale.max(ttl),
            groups: Mutex::new(HashMap::new()),
        }
    }

    /// The policy's Slack groups that `user` (a `U…` id) is a member of.
    pub async fn groups_of(&self, api: &SlackApi, policy: &Policy, user: &str) -> Vec<Principal> {
        let mut out = Vec::new();
        for group in policy_groups(policy) {
            if self
                .members(api, group.id())
                .await
                .iter()
                .any(|m| m == user)
            {
                out.push(group.clone());
            }
        }
        out
    }

    /// The policy's Slack groups `user` is in, asked of Slack now (the
    /// cache is refreshed, never used): for re-checks that must not rest on
    /// an old answer. `Err` when Slack can't say.
    pub async fn groups_now(
        &self,
        api: &SlackApi,
        policy: &Policy,
        user: &str,
    ) -> Result<Vec<Principal>, String> {
        let mut out = Vec::new();
        for group in policy_groups(policy) {
            let slot = self.slot(group.id());
            let mut known = slot.lock().await;
            let members = api
                .usergroup_members(group.id())
                .await
                .map_err(|e| format!("Slack could not list user group {}: {e}", group.id()))?;
            let member = members.iter().any(|m| m == user);
            known.members = Some((Instant::now(), members));
            known.failed_at = None;
            if member {
                out.push(group.clone());
            }
        }
        Ok(out)
    }

    fn slot(&self, group: &str) -> Arc<tokio::sync::Mutex<Known>> {
        self.groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(group.to_string())
            .or_default()
            .clone()
    }

    async fn members(&self, api: &SlackApi, group: &str) -> Vec<String> {
        let slot = self.slot(group);
        // Whoever holds the lock asks Slack; the rest wait here and then
        // find the fresh answer (or the failure's backoff).
        let mut known = slot.lock().await;
        if let Some(members) = known.usable(self.ttl) {
            return members.clone();
        }
        let backoff = ERROR_BACKOFF.min(self.ttl);
        if known.failed_at.is_some_and(|at| at.elapsed() < backoff) {
            return known.usable(self.max_stale).cloned().unwrap_or_default();
        }
        match api.usergroup_members(group).await {
            Ok(members) => {
                known.members = Some((Instant::now(), members.clone()));
                known.failed_at = None;
                members
            }
            Err(e) => {
                known.failed_at = Some(Instant::now());
                match known.usable(self.max_stale) {
                    Some(members) => {
                        tracing::warn!(
                            group,
                            "could not list Slack user group members, using the last known ones: {e}"
                        );
                        members.clone()
                    }
                    None => {
                        tracing::warn!(
                            group,
                            "could not list Slack user group members; treating the user as not a member: {e}"
                        );
                        Vec::new()
                    }
                }
            }
        }
    }
}

/// Slack's answer to "which groups is this person in now", asked of Slack
/// at that moment (an approval must not rest on a cached answer).
pub struct SlackDirectory {
    pub api: SlackApi,
    pub cache: Arc<GroupCache>,
}

impl Directory for SlackDirectory {
    fn groups<'a>(
        &'a self,
        policy: &'a Policy,
        principal: &'a Principal,
        _workspace: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<Principal>, String>> {
        Box::pin(async move {
            if principal.kind() != PrincipalKind::SlackUser {
                return Ok(Vec::new());
            }
            self.cache
                .groups_now(&self.api, policy, principal.id())
                .await
        })
    }
}
