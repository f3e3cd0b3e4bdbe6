//! A [`Reply`] as a Discord message: one embed (title, description with the
//! text and code blocks, fields, colour by outcome, footer with who/when) and
//! button rows, within Discord's limits (2,000 characters of content, 4,096
//! of embed description, 25 fields of 256/1,024, 6,000 per embed in all,
//! 5 buttons per row, 5 rows), cut with a note where needed.

use serde_json::{json, Value};
use serenity::all::{
    ButtonStyle as DiscordButtonStyle, CreateActionRow, CreateButton, CreateEmbed,
    CreateEmbedFooter,
};

use crate::reply::{truncate as cut, Block, ButtonStyle, Outcome, Reply, Visibility};

pub const MAX_TITLE: usize = 256;
pub const MAX_DESCRIPTION: usize = 4096;
pub const MAX_FIELDS: usize = 25;
pub const MAX_FIELD_NAME: usize = 256;
pub const MAX_FIELD_VALUE: usize = 1024;
pub const MAX_FOOTER: usize = 2048;
pub const MAX_EMBED_TOTAL: usize = 6000;
pub const MAX_BUTTON_LABEL: usize = 80;
pub const MAX_ROWS: usize = 5;
pub const MAX_BUTTONS_PER_ROW: usize = 5;
/// The ephemeral message flag.
pub const EPHEMERAL: u64 = 64;

/// Text cut to fit an embed title.
pub fn truncate_title(s: &str) -> String {
    cut(s, MAX_TITLE - 4)
}

pub fn colour(outcome: Outcome) -> u32 {
    match outcome {
        Outcome::Done => 0x2e_a0_43,
        Outcome::Info => 0x35_84_e4,
        Outcome::Pending => 0xe5_a5_0a,
        Outcome::Denied => 0xc0_1c_28,
        Outcome::Invalid => 0x88_88_88,
        Outcome::Failed => 0xc0_1c_28,
    }
}

/// The message data (`embeds`, `components`, `flags`) of a reply.
pub fn message(reply: &Reply) -> Value {
    let mut description = String::new();
    let mut fields: Vec<(String, String)> = Vec::new();
    let mut buttons = Vec::new();
    let (mut users, mut roles, mut content) = (Vec::new(), Vec::new(), Vec::new());
    for block in &reply.blocks {
        match block {
            Block::Mention { principals, text } => {
                use oncall_permissions::PrincipalKind as K;
                for p in Block::mentions(principals) {
                    match p.kind() {
                        K::DiscordUser => {
                            content.push(format!("<@{}>", p.id()));
                            users.push(p.id().to_string());
                        }
                        K::DiscordRole => {
                            content.push(format!("<@&{}>", p.id()));
                            roles.push(p.id().to_string());
                        }
                        _ => description.push_str(&format!("{p} ")),
                    }
                }
                description.push_str(text);
                description.push_str("\n\n");
            }
            Block::Text { text } => {
                description.push_str(text);
                description.push_str("\n\n");
            }
            Block::Fields { fields: f } => fields.extend(f.iter().cloned()),
            Block::Code { title, body } => {
                if let Some(t) = title {
                    description.push_str(&format!("**{t}**\n"));
                }
                description.push_str(&format!("```\n{}\n```\n", body.replace("```", "ˋˋˋ")));
            }
            Block::Actions { buttons: b } => buttons.extend(b.iter().cloned()),
        }
    }
    if description.chars().count() > MAX_DESCRIPTION {
        // Keep the start; close an open code fence so the rest renders.
        let mut d = cut(&description, MAX_DESCRIPTION - 80);
        if d.matches("```").count() % 2 == 1 {
            d.push_str("\n```");
        }
        d.push_str("\n✂️ cut to fit Discord's 4,096-character limit");
        description = d;
    }
    let title = cut(
        &format!("{} {}", reply.outcome.emoji(), reply.title),
        MAX_TITLE,
    );
    let mut embed = CreateEmbed::new()
        .title(title.clone())
        .colour(colour(reply.outcome));
    let description = description.trim_end().to_string();
    if !description.is_empty() {
        embed = embed.description(description.clone());
    }
    let mut total = title.chars().count() + description.chars().count();
    let footer = reply.footer.as_deref().map(|f| cut(f, MAX_FOOTER));
    total += footer.as_ref().map(|f| f.chars().count()).unwrap_or(0);
    let mut dropped = 0;
    for (i, (name, value)) in fields.iter().enumerate() {
        let name = cut(name, MAX_FIELD_NAME);
        let value = cut(if value.is_empty() { "—" } else { value }, MAX_FIELD_VALUE);
        let size = name.chars().count() + value.chars().count();
        if i >= MAX_FIELDS - 1 && fields.len() > MAX_FIELDS || total + size > MAX_EMBED_TOTAL - 100
        {
            dropped = fields.len() - i;
            break;
        }
        total += size;
        embed = embed.field(name, value, value_is_short(&fields[i].1));
    }
    if dropped > 0 {
        embed = embed.field(
            "✂️",
            format!("{dropped} more fields were cut to fit Discord's limits"),
            false,
        );
    }
    if let Some(f) = footer {
        embed = embed.footer(CreateEmbedFooter::new(f));
    }
    let rows: Vec<CreateActionRow> = buttons
        .chunks(MAX_BUTTONS_PER_ROW)
        .take(MAX_ROWS)
        .map(|chunk| {
            CreateActionRow::Buttons(
                chunk
                    .iter()
                    .map(|b| {
                        CreateButton::new(cut(&format!("oncall:{}:{}", b.action_id, b.value), 100))
                            .label(cut(&b.label, MAX_BUTTON_LABEL))
                            .style(match b.style {
                                ButtonStyle::Primary => DiscordButtonStyle::Primary,
                                ButtonStyle::Danger => DiscordButtonStyle::Danger,
                                ButtonStyle::Default => DiscordButtonStyle::Secondary,
                            })
                    })
                    .collect(),
            )
        })
        .collect();
    let mut out = json!({
        "embeds": [serde_json::to_value(embed).expect("embeds serialize")],
        "components": serde_json::to_value(rows).expect("components serialize"),
        // Only the people and roles a page calls are notified.
        "allowed_mentions": { "parse": [], "users": users, "roles": roles },
    });
    if !content.is_empty() {
        out["content"] = json!(content.join(" "));
    }
    if reply.visibility == Visibility::Private {
        out["flags"] = json!(EPHEMERAL);
    }
    out
}

fn value_is_short(v: &str) -> bool {
    v.chars().count() <= 40 && !v.contains('\n')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::Button;

    #[test]
    fn a_mention_notifies_exactly_the_people_and_roles_it_calls() {
        let reply = Reply::new(Outcome::Pending, "page").mention(
            vec![
                "discord:170531778354741248".into(),
                "discord-role:41771983423143936".into(),
                "slack:U024BE7LH".into(),
                "<@everyone>".into(),
            ],
            "you are paged <@999> @everyone",
        );
        let m = message(&reply);
        assert_eq!(m["content"], "<@170531778354741248> <@&41771983423143936>");
        assert_eq!(
            m["allowed_mentions"]["users"],
            json!(["170531778354741248"])
        );
        assert_eq!(m["allowed_mentions"]["roles"], json!(["41771983423143936"]));
        assert_eq!(
            m["allowed_mentions"]["parse"],
            json!([]),
            "no @everyone, no text mentions"
        );
        let text = m["embeds"][0]["description"].as_str().unwrap();
        assert!(text.starts_with("slack:U024BE7LH you are paged"), "{text}");
    }

    #[test]
    fn replies_fit_discords_limits() {
        let mut reply = Reply::new(Outcome::Pending, "T".repeat(400))
            .text("x".repeat(5000))
            .fields(
                (0..40)
                    .map(|i| (format!("k{i}"), "v".repeat(2000)))
                    .collect(),
            )
            .code(Some("Pods"), "a\nb")
            .buttons(
                (0..7)
                    .map(|i| Button {
                        label: "L".repeat(100),
                        action_id: crate::reply::ButtonAction::Approve,
                        value: format!("id{i}"),
                        style: ButtonStyle::Primary,
                        confirm: None,
                    })
                    .collect(),
            );
        reply.footer = Some("who · where · when".into());
        let m = message(&reply);
        let e = &m["embeds"][0];
        assert!(e["title"].as_str().unwrap().chars().count() <= MAX_TITLE);
        assert!(e["description"].as_str().unwrap().chars().count() <= MAX_DESCRIPTION);
        assert!(e["description"].as_str().unwrap().contains("✂️ cut"));
        let fields = e["fields"].as_array().unwrap();
        assert!(fields.len() <= MAX_FIELDS);
        let total: usize = e["title"].as_str().unwrap().len()
            + e["description"].as_str().unwrap().chars().count()
            + fields
                .iter()
                .map(|f| {
                    f["name"].as_str().unwrap().chars().count()
                        + f["value"].as_str().unwrap().chars().count()
                })
                .sum::<usize>()
            + e["footer"]["text"].as_str().unwrap().len();
        assert!(total <= MAX_EMBED_TOTAL, "{total}");
        assert!(fields.last().unwrap()["value"]
            .as_str()
            .unwrap()
            .contains("more fields were cut"));
        let rows = m["components"].as_array().unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["components"].as_array().unwrap().len(), 5);
        let b = &rows[0]["components"][0];
        assert_eq!(
            (
                b["type"].as_u64(),
                b["style"].as_u64(),
                b["custom_id"].as_str()
            ),
            (Some(2), Some(1), Some("oncall:approve:id0"))
        );
        assert!(b["label"].as_str().unwrap().chars().count() <= MAX_BUTTON_LABEL);
        assert_eq!(
            e["color"].as_u64(),
            Some(u64::from(colour(Outcome::Pending)))
        );
        assert!(m.get("flags").is_none(), "pending approvals are public");
        assert_eq!(
            message(&Reply::new(Outcome::Denied, "no"))["flags"],
            EPHEMERAL
        );
    }
}
