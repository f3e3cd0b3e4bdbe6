//! `top`: CPU and memory per pod, like `kubectl top pods`.

use oncall_grammar::Scope;
use oncall_ops::status::pod_selector;
use oncall_ops::top::top_pods;

use crate::model::Handled;
use crate::reply::{clip_head, table, Outcome, Reply};
use super::{Context, Handle, Refusal};

impl Handle for oncall_grammar::Top {
    async fn handle(&self, cx: &Context<'_>) -> Result<Handled, Refusal> {
        Ok(run(cx, cx.scope).await)
    }
}

pub async fn run(cx: &Context<'_>, scope: &Scope<'_>) -> Handled {
    let (client, namespace, selector, label) = match scope {
        Scope::Services(entries) if entries.len() == 1 => {
            let e = entries[0];
            let client = match cx.client_for(e) {
                Ok(c) => c,
                Err(r) => return r.into_handled(),
            };
            let target = oncall_ops::DeploymentRef {
                namespace: &e.namespace,
                name: e.deployment(),
            };
            let selector = match pod_selector(&client, target).await {
                Ok(s) => s,
                Err(err) => return Handled::failed(format!("Could not read {}", e.name), err),
            };
            (client, e.namespace.clone(), Some(selector), e.name.clone())
        }
        Scope::Namespace { namespace, .. } => match cx.client_for_namespace(namespace) {
            Ok(c) => (c, namespace.clone(), None, format!("namespace {namespace}")),
            Err(r) => return r.into_handled(),
        },
        _ => return Handled::failed("Cannot run this here", "expected a service or a namespace"),
    };
    match top_pods(&client, &namespace, selector.as_deref()).await {
        Ok(pods) if pods.is_empty() => Handled::info(Reply::new(
            Outcome::Info,
            format!("{label}: no running pods to measure"),
        )),
        Ok(pods) => {
            let rows: Vec<Vec<String>> = pods
                .iter()
                .map(|p| {
                    vec![
                        p.pod.clone(),
                        format!("{}m", p.cpu_millicores),
                        format!("{}Mi", p.memory_bytes / (1024 * 1024)),
                    ]
                })
                .collect();
            let cpu: u64 = pods.iter().map(|p| p.cpu_millicores).sum();
            let mem: u64 = pods.iter().map(|p| p.memory_bytes).sum::<u64>() / (1024 * 1024);
            let (body, note) =
                clip_head(&table(&["NAME", "CPU(cores)", "MEMORY(bytes)"], &rows, 63));
            let mut reply = Reply::new(
                Outcome::Info,
                format!(
                    "{label}: {} pods use {cpu}m CPU and {mem}Mi memory",
                    pods.len()
                ),
            )
            .code(None, body);
            if let Some(n) = note {
                reply = reply.text(n);
            }
            Handled::info(reply)
        }
        Err(e) => Handled::failed(format!("No usage for {label}"), e),
    }
}
