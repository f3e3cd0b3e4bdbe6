//! `top`: CPU and memory per pod, like `kubectl top pods`.

use oncall_grammar::Scope;
use oncall_ops::status::label_selector;
use oncall_ops::top::top_pods;

use crate::reply::{clip_head, table, Outcome, Reply};
use crate::router::{Handled, Router};

pub async fn run(router: &Router, scope: &Scope<'_>) -> Handled {
    let (client, namespace, selector, label) = match scope {
        Scope::Services(entries) if entries.len() == 1 => {
            let e = entries[0];
            let client = match router.client_for(e) {
                Ok(c) => c,
                Err(h) => return h,
            };
            let api: kube::Api<k8s_openapi::api::apps::v1::Deployment> =
                kube::Api::namespaced(client.clone(), &e.namespace);
            let selector = match api.get(e.deployment()).await {
                Ok(d) => label_selector(&d),
                Err(err) => {
                    return Handled::failed(
                        format!("Could not read {}", e.name),
                        oncall_ops::OpsError::from_kube(
                            &format!("deployment/{} in namespace {}", e.deployment(), e.namespace),
                            err,
                        ),
                    )
                }
            };
            (client, e.namespace.clone(), Some(selector), e.name.clone())
        }
        Scope::Namespace { namespace, .. } => match router.client_for_namespace(namespace) {
            Ok(c) => (c, namespace.clone(), None, format!("namespace {namespace}")),
            Err(h) => return h,
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
