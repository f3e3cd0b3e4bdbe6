//! Which Slack user groups a user belongs to, for `slack-group:S…` bindings.
//!
//! Only the groups the policy names are looked up (`usergroups.users.list`
//! per group), and each group's members are cached for a TTL. If Slack can't
//! be asked, the user is treated as not in the group: deny by default.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use oncall_permissions::{Policy, Principal, PrincipalKind};

use super::api::SlackApi;

pub struct GroupCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, (Instant, Vec<String>)>>,
}

impl GroupCache {
    pub fn new(ttl: Duration) -> Self {
        GroupCache {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The policy's Slack groups that `user` (a `U…` id) is a member of.
    pub async fn groups_of(&self, api: &SlackApi, policy: &Policy, user: &str) -> Vec<Principal> {
        let mut groups: Vec<&Principal> = policy
            .bindings
            .iter()
            .map(|b| &b.principal)
            .filter(|p| p.kind() == PrincipalKind::SlackGroup)
            .collect();
        groups.dedup();
        let mut out = Vec::new();
        for group in groups {
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

    async fn members(&self, api: &SlackApi, group: &str) -> Vec<String> {
        if let Some((at, members)) = self.entries.lock().expect("cache lock").get(group) {
            if at.elapsed() < self.ttl {
                return members.clone();
            }
        }
        match api.usergroup_members(group).await {
            Ok(members) => {
                self.entries
                    .lock()
                    .expect("cache lock")
                    .insert(group.to_string(), (Instant::now(), members.clone()));
                members
            }
            Err(e) => {
                tracing::warn!(group, "could not list Slack user group members: {e}");
                Vec::new()
            }
        }
    }
}
