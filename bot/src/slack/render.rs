//! A [`Reply`] as a Slack Block Kit message, within Slack's limits: at most
//! 50 blocks, 3,000 characters per text object, 150 in a header, 10 fields
//! per section, 75 in a button label. Code blocks that are too long are split
//! across sections; whatever still does not fit is cut with a note.

use serde_json::{json, Value};
use slack_morphism::prelude::*;

use crate::reply::{truncate as cut, Block, ButtonStyle, Outcome, Reply, Visibility};

pub const MAX_BLOCKS: usize = 50;
pub const MAX_TEXT: usize = 3000;
pub const MAX_HEADER: usize = 150;
pub const MAX_FIELDS: usize = 10;
pub const MAX_FIELD_TEXT: usize = 2000;
pub const MAX_BUTTON_TEXT: usize = 75;
/// The top-level `text` (notification fallback).
pub const MAX_FALLBACK: usize = 4000;

/// Escapes the three characters Slack's mrkdwn reserves.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn mrkdwn(text: String) -> SlackBlockText {
    SlackBlockText::MarkDown(SlackBlockMarkDownText::new(text))
}

fn plain(text: &str, max: usize) -> SlackBlockPlainTextOnly {
    SlackBlockPlainText::new(cut(text, max)).into()
}

/// Splits preformatted text into chunks that fit one section as a code block.
fn code_chunks(body: &str) -> Vec<String> {
    let budget = MAX_TEXT - 8; // the ``` fences and newlines
    let mut chunks = Vec::new();
    let mut current = String::new();
    for line in escape(body).lines() {
        let line = cut(line, budget);
        if current.chars().count() + line.chars().count() + 1 > budget && !current.is_empty() {
            chunks.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push('\n');
        }
        current.push_str(&line);
    }
    if !current.is_empty() || chunks.is_empty() {
        chunks.push(current);
    }
    chunks
}

fn emoji(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Done => ":white_check_mark:",
        Outcome::Info => ":information_source:",
        Outcome::Pending => ":hourglass_flowing_sand:",
        Outcome::Denied => ":no_entry:",
        Outcome::Invalid => ":question:",
        Outcome::Failed => ":x:",
    }
}

/// Slack's mention syntax for its own principals (`<@U…>`, `<!subteam^S…>`);
/// others are named as text.
fn slack_mentions(principals: &[String]) -> String {
    use oncall_permissions::PrincipalKind as K;
    let parts: Vec<String> = Block::mentions(principals)
        .iter()
        .map(|p| match p.kind() {
            K::SlackUser => format!("<@{}>", p.id()),
            K::SlackGroup => format!("<!subteam^{}>", p.id()),
            _ => escape(&p.to_string()),
        })
        .collect();
    match parts.is_empty() {
        true => String::new(),
        false => format!("{} ", parts.join(" ")),
    }
}

/// The Block Kit blocks and the fallback text of a reply.
pub fn blocks(reply: &Reply) -> (Vec<SlackBlock>, String) {
    let mut out: Vec<SlackBlock> = Vec::new();
    out.push(SlackHeaderBlock::new(plain(&reply.title, MAX_HEADER)).into());
    for block in &reply.blocks {
        match block {
            Block::Text { text } => {
                out.push(
                    SlackSectionBlock::new()
                        .with_text(mrkdwn(cut(&escape(text), MAX_TEXT)))
                        .into(),
                );
            }
            Block::Fields { fields } => {
                for group in fields.chunks(MAX_FIELDS) {
                    let texts: Vec<SlackBlockText> = group
                        .iter()
                        .map(|(k, v)| {
                            mrkdwn(cut(
                                &format!("*{}*\n{}", escape(k), escape(v)),
                                MAX_FIELD_TEXT,
                            ))
                        })
                        .collect();
                    out.push(SlackSectionBlock::new().with_fields(texts).into());
                }
            }
            Block::Code { title, body } => {
                let chunks = code_chunks(body);
                for (i, chunk) in chunks.iter().enumerate() {
                    let label = match title {
                        Some(t) if i == 0 => format!("*{}*\n", escape(t)),
                        _ => String::new(),
                    };
                    let text = cut(&format!("{label}```{chunk}```"), MAX_TEXT);
                    out.push(SlackSectionBlock::new().with_text(mrkdwn(text)).into());
                }
            }
            Block::Mention { principals, text } => {
                let line = format!("{}{}", slack_mentions(principals), escape(text));
                out.push(
                    SlackSectionBlock::new()
                        .with_text(mrkdwn(cut(line.trim(), MAX_TEXT)))
                        .into(),
                );
            }
            Block::Actions { buttons } => {
                let elements: Vec<SlackActionBlockElement> = buttons
                    .iter()
                    .take(25)
                    .enumerate()
                    .map(|(i, b)| {
                        // Action ids are unique within a block: a second
                        // button of the same action gets `_<n>` (the
                        // adapter reads the action up to the `_`).
                        let repeated = buttons[..i].iter().any(|o| o.action_id == b.action_id);
                        let action_id = match repeated {
                            false => format!("oncall_{}", b.action_id),
                            true => format!("oncall_{}_{i}", b.action_id),
                        };
                        let mut el = SlackBlockButtonElement::new(plain(&b.label, MAX_BUTTON_TEXT))
                            .with_action_id(action_id.into())
                            .with_value(b.value.clone());
                        el = match b.style {
                            ButtonStyle::Primary => el.with_style(SlackBlockButtonStyle::Primary),
                            ButtonStyle::Danger => el.with_style(SlackBlockButtonStyle::Danger),
                            ButtonStyle::Default => el,
                        };
                        if let Some(question) = &b.confirm {
                            el = el.with_confirm(SlackBlockConfirmItem::new(
                                plain("Are you sure?", 100),
                                mrkdwn(cut(&escape(question), 300)),
                                plain(&b.label, 30),
                                plain("Cancel", 30),
                            ));
                        }
                        el.into()
                    })
                    .collect();
                out.push(SlackActionsBlock::new(elements).into());
            }
        }
    }
    if let Some(footer) = &reply.footer {
        let elements = vec![SlackContextBlockElement::MarkDown(
            SlackBlockMarkDownText::new(cut(&escape(footer), MAX_TEXT)),
        )];
        out.push(SlackContextBlock::new(elements).into());
    }
    if out.len() > MAX_BLOCKS {
        // Keep the first blocks and the footer, and say what was cut.
        let footer = if reply.footer.is_some() {
            out.pop()
        } else {
            None
        };
        let dropped = out.len() - (MAX_BLOCKS - 2);
        out.truncate(MAX_BLOCKS - 2);
        out.push(
            SlackSectionBlock::new()
                .with_text(mrkdwn(format!(
                    "✂️ {dropped} more blocks were cut to fit Slack's 50-block limit."
                )))
                .into(),
        );
        if let Some(f) = footer {
            out.push(f);
        }
    }
    // The notification text: a mention there is what notifies on phones.
    let called: Vec<String> = reply
        .blocks
        .iter()
        .filter_map(|b| match b {
            Block::Mention { principals, .. } => Some(slack_mentions(principals)),
            _ => None,
        })
        .collect();
    let fallback = cut(
        &format!(
            "{} {}{}",
            emoji(reply.outcome),
            called.concat(),
            reply.title
        ),
        MAX_FALLBACK,
    );
    (out, fallback)
}

/// A message body for `chat.postMessage`/`chat.update` (without channel).
pub fn message(reply: &Reply) -> Value {
    let (blocks, text) = blocks(reply);
    json!({ "text": text, "blocks": blocks })
}

/// A slash-command or `response_url` response.
pub fn response(reply: &Reply, replace_original: bool) -> Value {
    serde_json::to_value(response_body(reply, replace_original))
        .unwrap_or_else(|e| json!({ "text": format!("This reply could not be shown: {e}") }))
}

/// A slash-command or `response_url` response as its own type, which
/// serializes straight to the HTTP body (the slash-command path answers
/// with it, without building a [`Value`] first).
#[derive(Debug, serde::Serialize)]
pub struct ResponseBody {
    text: String,
    blocks: Vec<SlackBlock>,
    response_type: &'static str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    replace_original: bool,
}

pub fn response_body(reply: &Reply, replace_original: bool) -> ResponseBody {
    let (blocks, text) = blocks(reply);
    ResponseBody {
        text,
        blocks,
        response_type: match reply.visibility {
            Visibility::Public => "in_channel",
            Visibility::Private => "ephemeral",
        },
        replace_original,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::Button;

    #[test]
    fn a_reply_renders_within_slacks_limits() {
        let long_table: String = (0..4000)
            .map(|i| format!("row {i} <b> & {}", "x".repeat(40)))
            .collect::<Vec<_>>()
            .join("\n");
        let mut reply = Reply::new(Outcome::Pending, "T".repeat(300))
            .text("who did <what> & why")
            .fields(
                (0..12)
                    .map(|i| (format!("k{i}"), "v".repeat(3000)))
                    .collect(),
            )
            .code(Some("Pods"), long_table)
            .buttons(vec![Button {
                label: "Approve".repeat(20),
                action_id: crate::reply::ButtonAction::Approve,
                value: "abc123".into(),
                style: ButtonStyle::Primary,
                confirm: Some("Run it?".into()),
            }]);
        reply.footer = Some("cli:operator · slack:C1".into());
        let v = message(&reply);
        let blocks = v["blocks"].as_array().unwrap();
        assert!(blocks.len() <= MAX_BLOCKS);
        assert_eq!(blocks[0]["type"], "header");
        assert_eq!(blocks[0]["text"]["type"], "plain_text");
        assert!(blocks[0]["text"]["text"].as_str().unwrap().chars().count() <= MAX_HEADER);
        assert_eq!(blocks[1]["text"]["text"], "who did &lt;what&gt; &amp; why");
        for b in blocks {
            if let Some(t) = b["text"]["text"].as_str() {
                assert!(t.chars().count() <= MAX_TEXT, "{}", t.len());
            }
            if let Some(fields) = b["fields"].as_array() {
                assert!(fields.len() <= MAX_FIELDS);
                assert!(fields
                    .iter()
                    .all(|f| f["text"].as_str().unwrap().chars().count() <= MAX_FIELD_TEXT));
            }
        }
        let text = serde_json::to_string(&v).unwrap();
        assert!(text.contains("50-block limit"), "the cut is said");
        assert_eq!(
            blocks.last().unwrap()["type"],
            "context",
            "the footer survives the cut"
        );
        assert!(v["text"]
            .as_str()
            .unwrap()
            .starts_with(":hourglass_flowing_sand: TTT"));
    }

    #[test]
    fn a_mention_is_slacks_own_syntax_and_other_text_stays_escaped() {
        let reply = Reply::new(Outcome::Pending, "page").mention(
            vec![
                "slack:U024BE7LH".into(),
                "slack-group:S0614TZR7".into(),
                "cli:bob".into(),
            ],
            "you are paged <!channel>",
        );
        let m = message(&reply);
        let section = m["blocks"][1]["text"]["text"].as_str().unwrap();
        assert_eq!(
            section,
            "<@U024BE7LH> <!subteam^S0614TZR7> cli:bob you are paged &lt;!channel&gt;"
        );
        let fallback = m["text"].as_str().unwrap();
        assert!(
            fallback.contains("<@U024BE7LH> <!subteam^S0614TZR7>"),
            "{fallback}"
        );
    }

    #[test]
    fn buttons_carry_action_ids_values_and_confirm_dialogs() {
        let reply = Reply::new(Outcome::Pending, "Approval needed").buttons(vec![Button {
            label: "Deny".into(),
            action_id: crate::reply::ButtonAction::Deny,
            value: "k3f9qa".into(),
            style: ButtonStyle::Danger,
            confirm: Some("Drop it?".into()),
        }]);
        let v = response(&reply, false);
        assert_eq!(v["response_type"], "in_channel");
        let b = &v["blocks"][1]["elements"][0];
        assert_eq!(
            (
                b["type"].as_str(),
                b["action_id"].as_str(),
                b["value"].as_str(),
                b["style"].as_str()
            ),
            (
                Some("button"),
                Some("oncall_deny"),
                Some("k3f9qa"),
                Some("danger")
            )
        );
        assert_eq!(b["confirm"]["confirm"]["text"], "Deny");
        assert_eq!(
            response(&Reply::new(Outcome::Denied, "no"), true)["response_type"],
            "ephemeral"
        );
        assert_eq!(
            response(&Reply::new(Outcome::Denied, "no"), true)["replace_original"],
            true
        );
    }
}
