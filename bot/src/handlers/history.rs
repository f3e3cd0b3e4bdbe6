//! `history`: recent invocations, newest first, with who, what and outcome.

use oncall_grammar::HistoryFilter;
use oncall_ops::kubectl::human_duration;

use crate::model::Handled;
use crate::reply::{table, Outcome, Reply};
use super::{Context, Handle, Refusal};
use crate::store::{HistoryQuery, InvocationRow};

impl Handle for HistoryFilter {
    async fn handle(&self, cx: &Context<'_>) -> Result<Handled, Refusal> {
        Ok(run(cx, self).await)
    }
}

pub async fn run(cx: &Context<'_>, filter: &HistoryFilter) -> Handled {
    let now = cx.now;
    let query = HistoryQuery {
        principal: filter.user.clone(),
        service: filter.service.clone(),
        since_ms: filter
            .since
            .map(|d| now.as_millisecond() - d.as_millis() as i64),
        // More than asked: rows the caller may not read are left out, and
        // this request's own row is still running.
        limit: (filter.limit * 4 + 1).min(1000),
    };
    let rows = match cx.history(&query).await {
        Ok(rows) => rows,
        Err(e) => return Handled::failed("Could not read the history", e),
    };
    // The `history` request itself is still running: leave it out.
    let rows: Vec<_> = rows
        .into_iter()
        .filter(|r| r.outcome != "running" || r.verb.is_some())
        .collect();
    // Only rows about services and channels the caller may read.
    let fetched = rows.len();
    let mut rows: Vec<_> = rows.into_iter().filter(|r| may_read(cx, r)).collect();
    let hidden = fetched - rows.len();
    rows.truncate(filter.limit as usize);
    let hidden_note = (hidden > 0).then(|| {
        format!(
            "{hidden} row(s) hidden: they are about services or channels your roles can't read here, or someone's direct messages."
        )
    });
    if rows.is_empty() {
        let mut reply = Reply::new(Outcome::Info, "No matching history").text(describe(filter));
        if let Some(note) = hidden_note {
            reply = reply.text(note);
        }
        return Handled::info(reply);
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let when = jiff::Timestamp::from_millisecond(r.received_at)
                .map(|t| format!("{} ago", human_duration(now.duration_since(t))))
                .unwrap_or_default();
            let outcome = match (r.outcome.as_str(), &r.rule, &r.summary, &r.error) {
                ("denied", Some(rule), _, _) => format!("denied ({rule})"),
                (o, _, Some(summary), _) => format!("{o}: {summary}"),
                (o, _, _, Some(err)) => format!("{o}: {err}"),
                (o, _, _, _) => o.to_string(),
            };
            let approval = r
                .approval_id
                .as_ref()
                .map(|a| format!(" [{a}]"))
                .unwrap_or_default();
            vec![
                format!("#{}", r.id),
                when,
                r.principal.clone(),
                r.text.clone(),
                format!("{outcome}{approval}"),
            ]
        })
        .collect();
    let reply = Reply::new(Outcome::Info, format!("History: {} command(s)", rows.len()))
        .text(describe(filter))
        .code(
            None,
            table(&["ID", "WHEN", "WHO", "COMMAND", "OUTCOME"], &cells, 60),
        );
    let reply = match hidden_note {
        Some(note) => reply.text(note),
        None => reply,
    };
    Handled::info(reply)
}

/// Whether the caller may read a history row: someone's direct messages
/// only by their author; anything else with `history` granted for the
/// row's channel and the service it was about.
fn may_read(cx: &Context<'_>, row: &InvocationRow) -> bool {
    let direct = match row.platform.as_str() {
        "slack" => row.channel.starts_with('D'),
        "discord" => row.workspace.is_none(),
        _ => false,
    };
    if direct && row.principal != cx.inv.principal.to_string() {
        return false;
    }
    let channel = format!("{}:{}", row.platform, row.channel);
    cx.may_in("history", &channel, row.service.as_deref())
}

fn describe(filter: &HistoryFilter) -> String {
    let mut parts = vec![format!("newest first, at most {}", filter.limit)];
    if let Some(u) = &filter.user {
        parts.push(format!("by {u}"));
    }
    if let Some(s) = &filter.service {
        parts.push(format!("on {s}"));
    }
    if let Some(d) = filter.since {
        parts.push(format!("in the last {}", humantime::format_duration(d)));
    }
    parts.join(", ")
}
