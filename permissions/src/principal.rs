//! Principals: who is asking, as an immutable platform identifier.
//!
//! Display names and channel names can be changed by anyone with a profile, so
//! the policy never sees them. A principal is always `<kind>:<id>` where the id
//! is the platform's own stable identifier (Slack `U…`/`S…`, Discord snowflakes)
//! or, for the local console, a name chosen by whoever runs it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The kinds of principal the policy understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PrincipalKind {
    /// A Slack user (`slack:U024BE7LH`).
    SlackUser,
    /// A Slack user group (`slack-group:S0614TZR7`).
    SlackGroup,
    /// A Discord user (`discord:170531778354741248`).
    DiscordUser,
    /// A Discord guild role (`discord-role:41771983423143936`).
    DiscordRole,
    /// A local console or script user (`cli:operator`).
    Cli,
}

impl PrincipalKind {
    pub fn prefix(self) -> &'static str {
        match self {
            PrincipalKind::SlackUser => "slack",
            PrincipalKind::SlackGroup => "slack-group",
            PrincipalKind::DiscordUser => "discord",
            PrincipalKind::DiscordRole => "discord-role",
            PrincipalKind::Cli => "cli",
        }
    }

    /// Whether this kind names a person (as opposed to a group or role).
    pub fn is_person(self) -> bool {
        matches!(
            self,
            PrincipalKind::SlackUser | PrincipalKind::DiscordUser | PrincipalKind::Cli
        )
    }

    fn from_prefix(prefix: &str) -> Option<Self> {
        Some(match prefix {
            "slack" => PrincipalKind::SlackUser,
            "slack-group" => PrincipalKind::SlackGroup,
            "discord" => PrincipalKind::DiscordUser,
            "discord-role" => PrincipalKind::DiscordRole,
            "cli" => PrincipalKind::Cli,
            _ => return None,
        })
    }
}

/// An immutable identity: `slack:U…`, `slack-group:S…`, `discord:<id>`,
/// `discord-role:<id>` or `cli:<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Principal {
    kind: PrincipalKind,
    id: String,
}

/// Why a string is not a principal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrincipalError {
    #[error("`{0}` is not a principal: expected <kind>:<id> with kind slack, slack-group, discord, discord-role or cli")]
    Shape(String),
    #[error("`{0}` is not a principal: `{1}` is not a known kind (slack, slack-group, discord, discord-role, cli)")]
    UnknownKind(String, String),
    #[error("`{0}` is not a principal: {1}")]
    BadId(String, &'static str),
}

impl Principal {
    pub fn new(kind: PrincipalKind, id: impl Into<String>) -> Result<Self, PrincipalError> {
        let id = id.into();
        let whole = format!("{}:{}", kind.prefix(), id);
        validate_id(kind, &id).map_err(|why| PrincipalError::BadId(whole, why))?;
        Ok(Principal { kind, id })
    }

    pub fn kind(&self) -> PrincipalKind {
        self.kind
    }

    pub fn id(&self) -> &str {
        &self.id
    }
}

fn validate_id(kind: PrincipalKind, id: &str) -> Result<(), &'static str> {
    if id.is_empty() {
        return Err("the id is empty");
    }
    if id.len() > 64 {
        return Err("the id is longer than 64 characters");
    }
    match kind {
        PrincipalKind::SlackUser | PrincipalKind::SlackGroup => {
            if !id
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
            {
                return Err("Slack ids are upper-case letters and digits (U024BE7LH, S0614TZR7)");
            }
        }
        PrincipalKind::DiscordUser | PrincipalKind::DiscordRole => {
            if !id.chars().all(|c| c.is_ascii_digit()) {
                return Err("Discord ids are numeric snowflakes");
            }
        }
        PrincipalKind::Cli => {
            if !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
            {
                return Err("console names are letters, digits, '-', '_' and '.'");
            }
        }
    }
    Ok(())
}

impl FromStr for Principal {
    type Err = PrincipalError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (prefix, id) = s
            .split_once(':')
            .ok_or_else(|| PrincipalError::Shape(s.to_string()))?;
        let kind = PrincipalKind::from_prefix(prefix)
            .ok_or_else(|| PrincipalError::UnknownKind(s.to_string(), prefix.to_string()))?;
        validate_id(kind, id).map_err(|why| PrincipalError::BadId(s.to_string(), why))?;
        Ok(Principal {
            kind,
            id: id.to_string(),
        })
    }
}

impl TryFrom<String> for Principal {
    type Error = PrincipalError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Principal> for String {
    fn from(p: Principal) -> String {
        p.to_string()
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind.prefix(), self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_kind_and_round_trips() {
        for s in [
            "slack:U024BE7LH",
            "slack-group:S0614TZR7",
            "discord:170531778354741248",
            "discord-role:41771983423143936",
            "cli:operator",
        ] {
            let p: Principal = s.parse().unwrap();
            assert_eq!(p.to_string(), s);
        }
    }

    #[test]
    fn rejects_malformed_principals() {
        let table = [
            ("U024BE7LH", "expected <kind>:<id>"),
            ("email:bob@example.com", "not a known kind"),
            ("slack:", "the id is empty"),
            ("slack:bob", "upper-case letters"),
            ("discord:abc", "numeric snowflakes"),
            ("cli:bob smith", "console names"),
        ];
        for (input, expected) in table {
            let err = input.parse::<Principal>().unwrap_err().to_string();
            assert!(err.contains(expected), "{input}: {err}");
        }
    }
}
