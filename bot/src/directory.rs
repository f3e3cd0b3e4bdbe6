//! Who is in which group now, asked of the platform itself.
//!
//! A request carries the groups its platform showed with it (Slack user
//! groups, Discord member roles). An approval can come minutes later, when
//! those may have changed: the requester may have been removed from the
//! on-call group precisely because of what they asked. So before an
//! approved request runs, the requester's groups are asked again through
//! the platform's [`Directory`], which each adapter registers with the
//! router at start. A platform with groups but no directory (its adapter is
//! not running) can't confirm them, and the approval waits: fail closed.

use futures::future::BoxFuture;
use oncall_permissions::{Policy, Principal};

/// A platform's view of one person's groups and roles.
pub trait Directory: Send + Sync {
    /// The groups the policy knows that `principal` belongs to now, in
    /// `workspace` (a Slack team, a Discord guild). `Err` says why that
    /// could not be learned.
    fn groups<'a>(
        &'a self,
        policy: &'a Policy,
        principal: &'a Principal,
        workspace: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<Principal>, String>>;
}
