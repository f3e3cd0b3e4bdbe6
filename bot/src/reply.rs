//! The platform-neutral reply every command produces.
//!
//! Handlers build a [`Reply`]: a title, an outcome (which decides colour,
//! emoji and the `exec` exit code), an ordered list of [`Block`]s (text,
//! fields, code blocks for tables, buttons with action ids), who can see it,
//! and a footer with who/where/when. Adapters render it: Block Kit for Slack,
//! embeds and components for Discord, plain text for the console
//! ([`Reply::to_console`]). Replies are serializable because a repeated
//! request (same idempotency key) is answered with the stored first reply.

use serde::{Deserialize, Serialize};

/// What happened, coarsely.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The command ran and changed what it was asked to (or would, for a dry run).
    Done,
    /// Read-only information (status, history, help).
    Info,
    /// Held for a second person.
    Pending,
    /// The policy said no.
    Denied,
    /// The input was not a valid command.
    Invalid,
    /// It was allowed and valid but failed (Kubernetes error, timeout…).
    Failed,
}

impl Outcome {
    pub fn emoji(self) -> &'static str {
        match self {
            Outcome::Done => "✅",
            Outcome::Info => "ℹ️",
            Outcome::Pending => "⏳",
            Outcome::Denied => "⛔",
            Outcome::Invalid => "❓",
            Outcome::Failed => "❌",
        }
    }

    /// `oncall exec`'s exit status (documented in the README).
    pub fn exit_code(self) -> i32 {
        match self {
            Outcome::Done | Outcome::Info => 0,
            Outcome::Invalid => 2,
            Outcome::Denied => 3,
            Outcome::Failed => 4,
            Outcome::Pending => 5,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Outcome::Done => "done",
            Outcome::Info => "info",
            Outcome::Pending => "pending_approval",
            Outcome::Denied => "denied",
            Outcome::Invalid => "invalid",
            Outcome::Failed => "failed",
        }
    }
}

/// Who sees the reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Visibility {
    /// Everyone in the channel (mutations: the team sees who did what).
    Public,
    /// Only the person who asked (help, reads, denials, errors).
    Private,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ButtonStyle {
    Default,
    Primary,
    Danger,
}

/// What a button does when clicked: a command the clicker runs, through the
/// same policy and history as typing it. Adapters encode it in the
/// platform's action id (`oncall_approve`, `oncall:approve:<value>`) and
/// decode it here, so a new action is one variant, not a string match per
/// adapter. (Incidents will add acknowledge and the like.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ButtonAction {
    Approve,
    Deny,
    /// A page's "Acknowledge": `incident ack <N>`.
    Ack,
    /// An alert's first-response button: `alerts run <id>`.
    Respond,
}

impl ButtonAction {
    pub const ALL: &[ButtonAction] = &[
        ButtonAction::Approve,
        ButtonAction::Deny,
        ButtonAction::Ack,
        ButtonAction::Respond,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ButtonAction::Approve => "approve",
            ButtonAction::Deny => "deny",
            ButtonAction::Ack => "ack",
            ButtonAction::Respond => "respond",
        }
    }

    pub fn parse(s: &str) -> Option<ButtonAction> {
        Self::ALL.iter().copied().find(|a| a.as_str() == s)
    }

    /// The command text a click runs, with the button's value.
    pub fn command(self, value: &str) -> String {
        match self {
            ButtonAction::Ack => format!("incident ack {value}"),
            ButtonAction::Respond => format!("alerts run {value}"),
            _ => format!("{} {value}", self.as_str()),
        }
    }
}

impl std::fmt::Display for ButtonAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for ButtonAction {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// A button: adapters send its action and `value` back when it is clicked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Button {
    pub label: String,
    pub action_id: ButtonAction,
    pub value: String,
    pub style: ButtonStyle,
    /// A confirmation question for dangerous actions.
    pub confirm: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Block {
    /// A paragraph; `code spans` allowed.
    Text { text: String },
    /// Name/value pairs shown side by side where the platform can.
    Fields { fields: Vec<(String, String)> },
    /// Preformatted text: tables, logs.
    Code { title: Option<String>, body: String },
    /// A row of buttons.
    Actions { buttons: Vec<Button> },
    /// People, groups or roles called by name (a page): each platform
    /// renders its own as a real mention, which notifies them; `text`
    /// follows. Principals are ids (`slack:U…`), never free text, so a
    /// mention can't be smuggled in through other blocks.
    Mention {
        principals: Vec<String>,
        text: String,
    },
}

impl Block {
    /// The principals of a mention that parse, with their platform form.
    pub fn mentions(principals: &[String]) -> Vec<oncall_permissions::Principal> {
        principals.iter().filter_map(|p| p.parse().ok()).collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    pub outcome: Outcome,
    pub title: String,
    pub blocks: Vec<Block>,
    pub visibility: Visibility,
    /// Who / where / when, set by the router.
    pub footer: Option<String>,
}

impl Reply {
    /// The reply with every text passed through the one redactor: what is
    /// kept of a reply (an idempotency key's stored answer) never holds a
    /// secret, whatever a handler put in it.
    pub fn redacted(&self) -> Reply {
        use oncall_grammar::redact::{redact_line, redact_lines};
        let block = |b: &Block| match b {
            Block::Text { text } => Block::Text {
                text: redact_line(text),
            },
            Block::Fields { fields } => Block::Fields {
                fields: fields
                    .iter()
                    .map(|(k, v)| (k.clone(), redact_line(v)))
                    .collect(),
            },
            Block::Code { title, body } => Block::Code {
                title: title.clone(),
                body: redact_lines(body.lines()).join("\n"),
            },
            Block::Actions { buttons } => Block::Actions {
                buttons: buttons.clone(),
            },
            Block::Mention { principals, text } => Block::Mention {
                principals: principals.clone(),
                text: redact_line(text),
            },
        };
        Reply {
            outcome: self.outcome,
            title: redact_line(&self.title),
            blocks: self.blocks.iter().map(block).collect(),
            visibility: self.visibility,
            footer: self.footer.clone(),
        }
    }

    pub fn new(outcome: Outcome, title: impl Into<String>) -> Self {
        let visibility = match outcome {
            Outcome::Done | Outcome::Pending => Visibility::Public,
            _ => Visibility::Private,
        };
        Reply {
            outcome,
            title: title.into(),
            blocks: Vec::new(),
            visibility,
            footer: None,
        }
    }

    pub fn text(mut self, text: impl Into<String>) -> Self {
        self.blocks.push(Block::Text { text: text.into() });
        self
    }

    pub fn fields(mut self, fields: Vec<(String, String)>) -> Self {
        if !fields.is_empty() {
            self.blocks.push(Block::Fields { fields });
        }
        self
    }

    pub fn code(mut self, title: Option<&str>, body: impl Into<String>) -> Self {
        self.blocks.push(Block::Code {
            title: title.map(String::from),
            body: body.into(),
        });
        self
    }

    /// Calls these principals by name, followed by `text`.
    pub fn mention(mut self, principals: Vec<String>, text: impl Into<String>) -> Self {
        self.blocks.push(Block::Mention {
            principals,
            text: text.into(),
        });
        self
    }

    pub fn buttons(mut self, buttons: Vec<Button>) -> Self {
        if !buttons.is_empty() {
            self.blocks.push(Block::Actions { buttons });
        }
        self
    }

    /// The console rendering: the title line, then each block.
    pub fn to_console(&self) -> String {
        let mut out = format!("{} {}\n", self.outcome.emoji(), self.title);
        for block in &self.blocks {
            match block {
                Block::Text { text } => {
                    for line in text.lines() {
                        out.push_str(&format!("  {line}\n"));
                    }
                }
                Block::Fields { fields } => {
                    let width = fields
                        .iter()
                        .map(|(k, _)| k.chars().count())
                        .max()
                        .unwrap_or(0);
                    for (k, v) in fields {
                        out.push_str(&format!("  {k:width$}  {v}\n"));
                    }
                }
                Block::Code { title, body } => {
                    if let Some(t) = title {
                        out.push_str(&format!("  {t}:\n"));
                    }
                    for line in body.lines() {
                        out.push_str(&format!("    {line}\n"));
                    }
                }
                Block::Actions { buttons } => {
                    let labels: Vec<String> = buttons
                        .iter()
                        .map(|b| {
                            format!("[{}] (/oncall {})", b.label, b.action_id.command(&b.value))
                        })
                        .collect();
                    out.push_str(&format!("  {}\n", labels.join("  ")));
                }
                Block::Mention { principals, text } => {
                    let names: Vec<String> = Block::mentions(principals)
                        .iter()
                        .map(|p| format!("@{}", p.id()))
                        .collect();
                    out.push_str(&format!("  {} {text}\n", names.join(" ")));
                }
            }
        }
        if let Some(f) = &self.footer {
            out.push_str(&format!("  — {f}\n"));
        }
        out
    }
}

/// Cuts text to at most `max` characters, ending with `…` when cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut c: String = s.chars().take(max.saturating_sub(1)).collect();
        c.push('…');
        c
    }
}

/// Aligns rows into columns for a code block, like kubectl's tables.
/// Cells longer than `max_cell` are cut with `…`.
pub fn table(header: &[&str], rows: &[Vec<String>], max_cell: usize) -> String {
    let cut = |s: &str| truncate(s, max_cell);
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| cut(c)).collect())
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| -> String {
        let last = cells.len().saturating_sub(1);
        cells
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                if i == last {
                    c
                } else {
                    let pad = widths[i] - c.chars().count();
                    format!("{c}{}", " ".repeat(pad + 3))
                }
            })
            .collect::<String>()
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        out.push('\n');
        out.push_str(&line(row));
    }
    out
}

/// The most lines and characters a code block carries into chat; the
/// adapters apply their platform's own limits on top.
pub const MAX_BLOCK_LINES: usize = 60;
pub const MAX_BLOCK_CHARS: usize = 3500;

/// Keeps the last lines that fit (newest log lines matter most) and says
/// what was cut.
pub fn clip_tail(lines: &[String]) -> (String, Option<String>) {
    let mut kept: Vec<&String> = Vec::new();
    let mut chars = 0;
    for line in lines.iter().rev() {
        if kept.len() == MAX_BLOCK_LINES || chars + line.chars().count() + 1 > MAX_BLOCK_CHARS {
            break;
        }
        chars += line.chars().count() + 1;
        kept.push(line);
    }
    kept.reverse();
    let body = kept
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    let cut = lines.len() - kept.len();
    let note = (cut > 0).then(|| {
        format!(
            "✂️ showing the last {} of {} lines ({cut} older lines cut to fit chat)",
            kept.len(),
            lines.len()
        )
    });
    (body, note)
}

/// Keeps the first rows of a table that fit and says what was cut.
pub fn clip_head(table_text: &str) -> (String, Option<String>) {
    let lines: Vec<&str> = table_text.lines().collect();
    let mut kept = Vec::new();
    let mut chars = 0;
    for line in &lines {
        if kept.len() == MAX_BLOCK_LINES || chars + line.chars().count() + 1 > MAX_BLOCK_CHARS {
            break;
        }
        chars += line.chars().count() + 1;
        kept.push(*line);
    }
    let cut = lines.len() - kept.len();
    let note = (cut > 0).then(|| {
        format!(
            "✂️ {cut} more rows not shown (of {})",
            lines.len().saturating_sub(1)
        )
    });
    (kept.join("\n"), note)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clipping_keeps_what_fits_and_says_what_was_cut() {
        let lines: Vec<String> = (0..100).map(|i| format!("line {i}")).collect();
        let (body, note) = clip_tail(&lines);
        assert_eq!(body.lines().count(), MAX_BLOCK_LINES);
        assert!(body.ends_with("line 99"));
        assert_eq!(
            note.unwrap(),
            "✂️ showing the last 60 of 100 lines (40 older lines cut to fit chat)"
        );
        let (body, note) = clip_tail(&lines[..3]);
        assert_eq!((body.as_str(), note), ("line 0\nline 1\nline 2", None));
        let long: Vec<String> = (0..10).map(|_| "x".repeat(1000)).collect();
        let (body, _) = clip_tail(&long);
        assert!(body.chars().count() <= MAX_BLOCK_CHARS);
        let table: String = (0..80)
            .map(|i| format!("row {i}"))
            .collect::<Vec<_>>()
            .join("\n");
        let (body, note) = clip_head(&table);
        assert!(body.starts_with("row 0"));
        assert_eq!(note.unwrap(), "✂️ 20 more rows not shown (of 79)");
    }

    #[test]
    fn tables_align_and_cut() {
        let t = table(
            &["NAME", "READY", "STATUS"],
            &[
                vec!["backend-abc".into(), "2/2".into(), "Running".into()],
                vec!["b".into(), "0/2".into(), "ImagePullBackOffAndMore".into()],
            ],
            12,
        );
        assert_eq!(
            t,
            "NAME          READY   STATUS\nbackend-abc   2/2     Running\nb             0/2     ImagePullBa…"
        );
    }

    #[test]
    fn outcomes_map_to_exit_codes_and_visibility() {
        assert_eq!(
            Reply::new(Outcome::Done, "x").visibility,
            Visibility::Public
        );
        assert_eq!(
            Reply::new(Outcome::Denied, "x").visibility,
            Visibility::Private
        );
        let codes: Vec<i32> = [
            Outcome::Done,
            Outcome::Info,
            Outcome::Invalid,
            Outcome::Denied,
            Outcome::Failed,
            Outcome::Pending,
        ]
        .iter()
        .map(|o| o.exit_code())
        .collect();
        assert_eq!(codes, vec![0, 0, 2, 3, 4, 5]);
    }
}
