//! `health`: probe the catalog's health URLs; unhealthy first.

use oncall_grammar::ServiceEntry;
use oncall_ops::health::probe_all;

use crate::model::Handled;
use crate::reply::{table, Outcome, Reply};
use super::{Context, Handle, Refusal};

impl Handle for oncall_grammar::Health {
    async fn handle(&self, cx: &Context<'_>) -> Result<Handled, Refusal> {
        Ok(run(cx.http(), cx.service()?).await)
    }
}

pub async fn run(http: &reqwest::Client, entry: &ServiceEntry) -> Handled {
    let name = &entry.name;
    if entry.health_urls.is_empty() {
        return Handled::info(
            Reply::new(Outcome::Info, format!("{name} has no health URLs"))
                .text("Add `health_urls` to its catalog entry; meanwhile `/oncall status` shows pod readiness."),
        );
    }
    let probes = probe_all(http, &entry.health_urls).await;
    let unhealthy = probes.iter().filter(|p| !p.healthy()).count();
    let rows: Vec<Vec<String>> = probes
        .iter()
        .map(|p| {
            vec![
                if p.healthy() {
                    "✓".into()
                } else {
                    "✗".into()
                },
                p.url.clone(),
                p.code.map(|c| c.to_string()).unwrap_or_else(|| "—".into()),
                format!("{}ms", p.latency_ms),
                p.error.clone().or(p.status.clone()).unwrap_or_default(),
            ]
        })
        .collect();
    let mut dependencies = Vec::new();
    for p in &probes {
        for (dep, status) in &p.dependencies {
            let mark = if p.unhealthy_dependencies().iter().any(|(d, _)| d == dep) {
                "✗"
            } else {
                "✓"
            };
            dependencies.push((mark, dep.clone(), status.clone()));
        }
    }
    dependencies.sort_by_key(|(mark, dep, _)| (*mark == "✓", dep.clone()));
    let (outcome, title) = if unhealthy == 0 {
        (
            Outcome::Info,
            format!("{name}: healthy ({} checks)", probes.len()),
        )
    } else {
        let first_bad = probes
            .iter()
            .find(|p| !p.healthy())
            .map(|p| {
                let deps: Vec<String> = p
                    .unhealthy_dependencies()
                    .iter()
                    .map(|(d, s)| format!("{d} {s}"))
                    .collect();
                if !deps.is_empty() {
                    deps.join(", ")
                } else {
                    p.error
                        .clone()
                        .or(p.status.clone())
                        .or(p.code.map(|c| format!("HTTP {c}")))
                        .unwrap_or_default()
                }
            })
            .unwrap_or_default();
        (
            Outcome::Failed,
            format!(
                "{name}: {unhealthy} of {} checks unhealthy — {first_bad}",
                probes.len()
            ),
        )
    };
    let mut reply = Reply::new(outcome, title).code(
        None,
        table(&["", "URL", "CODE", "LATENCY", "STATUS"], &rows, 80),
    );
    if !dependencies.is_empty() {
        let lines: Vec<String> = dependencies
            .iter()
            .map(|(m, d, s)| format!("{m} {d}: {s}"))
            .collect();
        reply = reply.code(Some("Dependencies"), lines.join("\n"));
    }
    let mut handled = Handled::info(reply);
    if unhealthy > 0 {
        handled.error = Some(handled.reply.title.clone());
    }
    handled
}
