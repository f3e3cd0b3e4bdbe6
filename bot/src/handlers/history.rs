//! `history`: recent invocations, newest first, with who, what and outcome.

use oncall_grammar::HistoryFilter;
use oncall_ops::kubectl::human_duration;

use crate::model::Handled;
use crate::reply::{table, Outcome, Reply};
use super::{Context, Handle, Refusal};
use crate::store::HistoryQuery;

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
        // One more: this request's own row is still running and left out.
        limit: filter.limit + 1,
    };
    let rows = match cx.history(&query).await {
        Ok(rows) => rows,
        Err(e) => return Handled::failed("Could not read the history", e),
    };
    // The `history` request itself is still running: leave it out.
    let rows: Vec<_> = rows
        .into_iter()
        .filter(|r| r.outcome != "running" || r.verb.is_some())
        .take(filter.limit as usize)
        .collect();
    if rows.is_empty() {
        return Handled::info(
            Reply::new(Outcome::Info, "No matching history").text(describe(filter)),
        );
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
    Handled::info(reply)
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
