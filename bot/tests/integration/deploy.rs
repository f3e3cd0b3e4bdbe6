//! `deploy/` stays true to the code: the RBAC grants exactly the
//! permissions the operations use (derived by running every command against
//! the simulator, which records each request's group, resource and verb),
//! the kustomize overlays build (with the real kubectl, where present), the
//! Dockerfile keeps its promises, and the Prometheus rules and the Grafana
//! dashboard use only metrics oncall serves.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use oncall::config::{Config, EXAMPLE};
use oncall_ops::access::REQUIRED;
use serde_json::Value;

use crate::common::Harness;

type Rule = (String, String, String);

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn declared() -> BTreeSet<Rule> {
    REQUIRED
        .iter()
        .map(|a| {
            (
                a.group.to_string(),
                a.resource.to_string(),
                a.verb.to_string(),
            )
        })
        .collect()
}

fn yaml_docs(text: &str) -> Vec<serde_yaml::Value> {
    use serde::Deserialize;
    serde_yaml::Deserializer::from_str(text)
        .map(|d| serde_yaml::Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

fn s(v: &serde_yaml::Value) -> &str {
    v.as_str().unwrap_or("")
}

/// A Role's rules, expanded to (group, resource, verb).
fn granted(role: &serde_yaml::Value) -> BTreeSet<Rule> {
    let mut out = BTreeSet::new();
    for rule in role["rules"].as_sequence().unwrap() {
        for g in rule["apiGroups"].as_sequence().unwrap() {
            for r in rule["resources"].as_sequence().unwrap() {
                for v in rule["verbs"].as_sequence().unwrap() {
                    out.insert((s(g).to_string(), s(r).to_string(), s(v).to_string()));
                }
            }
        }
    }
    out
}

#[tokio::test]
async fn the_commands_use_exactly_the_declared_permissions() {
    let mut config = Config::parse(EXAMPLE, "example").unwrap();
    config.policy.approvals.clear();
    config.limits.mutations_per_window = 1000;
    let h = Harness::with_config(config).await;
    let pod = h.pods_of("vibe-ensemble", "vibe-ensemble-server").await[0].clone();
    let mut texts: Vec<String> = oncall_grammar::VERBS
        .iter()
        .map(|v| v.example.to_string())
        .collect();
    texts.extend(
        [
            "scale backend 3",
            "restart backend",
            "status backend",
            "restart --all -n vibe-ensemble",
            "rollout status backend",
            "set image backend ghcr.io/example/todo-backend:1.5.0",
            "rollout history backend",
            "rollback backend",
            "logs backend --since 10m",
            "logs backend --previous",
            "pods backend",
            "events backend",
            "hpa oauth2-server",
            "diagnose backend",
            "env set backend X=1",
            "env unset backend X",
            "top backend",
            "health backend",
        ]
        .map(String::from),
    );
    texts.push(format!("quarantine {pod}"));
    texts.push(format!("unquarantine {pod}"));
    for text in &texts {
        h.run("cli:admin", text).await;
    }
    let used = h.sim.with_store(|s| s.access.used.clone());
    let catalog: BTreeSet<String> = h
        .router
        .config()
        .services
        .iter()
        .map(|s| s.namespace.clone())
        .collect();
    for a in &used {
        assert!(
            catalog.contains(&a.namespace),
            "{a:?} is outside the catalog's namespaces {catalog:?}"
        );
    }
    let used: BTreeSet<Rule> = used.iter().map(|a| a.rule()).collect();
    let declared = declared();
    let undeclared: Vec<_> = used.difference(&declared).collect();
    let unused: Vec<_> = declared.difference(&used).collect();
    assert!(
        undeclared.is_empty() && unused.is_empty(),
        "oncall_ops::access::REQUIRED is out of date.\nused but not declared: {undeclared:?}\ndeclared but not used: {unused:?}"
    );
}

/// The base's RBAC: a Role per catalog namespace, each granting exactly
/// [`REQUIRED`], bound to the oncall ServiceAccount; nothing cluster-wide.
fn check_rbac(docs: &[serde_yaml::Value], namespaces: &BTreeSet<String>) {
    let declared = declared();
    let mut role_namespaces = BTreeSet::new();
    let mut binding_namespaces = BTreeSet::new();
    for doc in docs {
        let kind = s(&doc["kind"]);
        assert!(
            kind != "ClusterRole" && kind != "ClusterRoleBinding",
            "no verb needs cluster-wide access"
        );
        if s(&doc["metadata"]["name"]) == "oncall-leader-election" {
            continue; // The HA overlay's Lease Role: see check_lease_rbac.
        }
        match kind {
            "Role" => {
                let ns = s(&doc["metadata"]["namespace"]).to_string();
                let grants = granted(doc);
                for (g, r, v) in &grants {
                    assert!(g != "*" && r != "*" && v != "*", "a wildcard in {ns}");
                    assert!(r != "secrets" && r != "pods/exec", "{r} granted in {ns}");
                }
                assert_eq!(
                    grants, declared,
                    "the Role in {ns} grants other than REQUIRED"
                );
                role_namespaces.insert(ns);
            }
            "RoleBinding" => {
                let ns = s(&doc["metadata"]["namespace"]).to_string();
                assert_eq!(s(&doc["roleRef"]["kind"]), "Role", "{ns}");
                let subjects = doc["subjects"].as_sequence().unwrap();
                assert_eq!(subjects.len(), 1);
                assert_eq!(s(&subjects[0]["kind"]), "ServiceAccount");
                assert_eq!(s(&subjects[0]["name"]), "oncall");
                assert_eq!(s(&subjects[0]["namespace"]), "oncall");
                binding_namespaces.insert(ns);
            }
            _ => {}
        }
    }
    assert_eq!(
        &role_namespaces, namespaces,
        "a Role in each catalog namespace"
    );
    assert_eq!(&binding_namespaces, namespaces, "a RoleBinding in each");
}

fn example_namespaces(config: &Config) -> BTreeSet<String> {
    config
        .services
        .iter()
        .map(|s| s.namespace.clone())
        .collect()
}

#[test]
fn the_base_rbac_grants_exactly_the_declared_permissions() {
    let text = std::fs::read_to_string(root().join("deploy/kustomize/base/rbac.yaml")).unwrap();
    let config = Config::load(&root().join("deploy/kustomize/base/oncall.toml")).unwrap();
    check_rbac(&yaml_docs(&text), &example_namespaces(&config));
}

#[test]
fn the_deployed_config_is_the_example_catalog_and_policy_served_in_a_pod() {
    let deployed = Config::load(&root().join("deploy/kustomize/base/oncall.toml")).unwrap();
    let example = Config::parse(EXAMPLE, "example").unwrap();
    let names = |c: &Config| {
        c.services
            .iter()
            .map(|s| format!("{}/{}", s.namespace, s.name))
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&deployed), names(&example));
    assert_eq!(deployed.server.listen, "0.0.0.0:8080");
    assert_eq!(
        deployed.server.metrics_listen.as_deref(),
        Some("0.0.0.0:9090")
    );
    assert_eq!(
        deployed.database.path,
        Path::new("/var/lib/oncall/oncall.db")
    );
}

fn kubectl_present() -> bool {
    Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn each_overlay_builds_with_kustomize_and_keeps_the_promises() {
    if !kubectl_present() {
        eprintln!("SKIPPED each_overlay_builds_with_kustomize_and_keeps_the_promises: kubectl is not installed on this machine");
        return;
    }
    for overlay in ["staging", "production"] {
        let dir = root().join("deploy/kustomize/overlays").join(overlay);
        let out = Command::new("kubectl")
            .arg("kustomize")
            .arg(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "kubectl kustomize {overlay}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let docs = yaml_docs(&String::from_utf8(out.stdout).unwrap());
        let of = |kind: &'static str| docs.iter().filter(move |d| s(&d["kind"]) == kind);
        // The config the pod reads is valid, and the RBAC covers its catalog.
        let cm = of("ConfigMap")
            .next()
            .expect("a ConfigMap from the config file");
        let config = Config::parse(s(&cm["data"]["oncall.toml"]), "the ConfigMap").unwrap();
        check_rbac(&docs, &example_namespaces(&config));

        let deployments: Vec<_> = of("Deployment").collect();
        assert_eq!(deployments.len(), 1, "{overlay}");
        let d = deployments[0];
        assert_eq!(
            d["spec"]["replicas"].as_u64(),
            Some(1),
            "SQLite: one replica"
        );
        assert_eq!(
            s(&d["spec"]["strategy"]["type"]),
            "Recreate",
            "never two writers"
        );
        let pod = &d["spec"]["template"]["spec"];
        assert_eq!(s(&pod["serviceAccountName"]), "oncall");
        assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
        let c = &pod["containers"][0];
        assert_eq!(
            c["securityContext"]["readOnlyRootFilesystem"].as_bool(),
            Some(true)
        );
        assert_eq!(
            c["securityContext"]["allowPrivilegeEscalation"].as_bool(),
            Some(false)
        );
        assert_eq!(s(&c["livenessProbe"]["httpGet"]["path"]), "/healthz");
        assert_eq!(s(&c["readinessProbe"]["httpGet"]["path"]), "/readyz");
        assert!(c["resources"]["requests"]["memory"].is_string());
        assert!(c["resources"]["limits"]["memory"].is_string());
        let image = s(&c["image"]);
        assert!(
            image.contains(':') && !image.ends_with(":latest"),
            "a pinned image: {image}"
        );
        // Secrets come from a Secret, by reference, never inline.
        let env_from = c["envFrom"].as_sequence().unwrap();
        assert!(env_from
            .iter()
            .any(|e| s(&e["secretRef"]["name"]) == "oncall-secrets"));
        let mounts: Vec<&str> = c["volumeMounts"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|m| s(&m["mountPath"]))
            .collect();
        assert!(
            mounts.contains(&"/var/lib/oncall"),
            "the database on a volume: {mounts:?}"
        );
        for kind in [
            "Service",
            "PersistentVolumeClaim",
            "NetworkPolicy",
            "PodDisruptionBudget",
            "ServiceAccount",
        ] {
            assert_eq!(of(kind).count(), 1, "{overlay}: one {kind}");
        }
        assert!(
            of("Secret").next().is_none(),
            "{overlay}: no Secret in the manifests; tokens are created apart"
        );
    }
}

#[test]
fn the_dockerfile_builds_only_the_binary_into_a_non_root_image() {
    let text = std::fs::read_to_string(root().join("deploy/Dockerfile")).unwrap();
    let from: Vec<&str> = text.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert!(from.len() >= 2, "multi-stage: {from:?}");
    assert!(
        text.contains("cargo build --release --locked -p oncall"),
        "{text}"
    );
    let copies: Vec<&str> = text
        .lines()
        .skip_while(|l| *l != from[from.len() - 1])
        .filter(|l| l.starts_with("COPY"))
        .collect();
    assert_eq!(
        copies.len(),
        1,
        "the runtime image holds the binary only: {copies:?}"
    );
    assert!(
        copies[0].contains("--from=") && copies[0].contains("/oncall"),
        "{copies:?}"
    );
    let user = text.lines().rfind(|l| l.starts_with("USER ")).unwrap();
    assert!(!user.contains("root") && !user.ends_with(" 0"), "{user}");
    assert!(text.contains("VOLUME [\"/var/lib/oncall\"]"));
    // The builder's Rust is the workspace's rust-version (what kube needs).
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let msrv = manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .unwrap()
        .trim_matches('"');
    assert!(
        from[0].starts_with(&format!("FROM rust:{msrv}-")),
        "{} vs {msrv}",
        from[0]
    );
}

/// The metric names `/metrics` serves (every family, once each has moved).
async fn served_metric_names() -> BTreeSet<String> {
    let h = Harness::new().await;
    let base = h.serve_http().await;
    h.run("cli:operator", "status backend").await;
    h.router
        .metrics()
        .pages_sent
        .with_label_values(&["webhook", "delivered"])
        .inc();
    h.router
        .metrics()
        .refused
        .with_label_values(&["slack", "bad_signature"])
        .inc();
    h.router
        .metrics()
        .handled
        .with_label_values(&["slack", "done"])
        .inc();
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_string())
        .collect()
}

/// The `oncall_…` names an expression uses.
fn metric_names(expr: &str) -> Vec<String> {
    regex::Regex::new(r"\boncall_[a-z_]+")
        .unwrap()
        .find_iter(expr)
        .map(|m| m.as_str().to_string())
        .collect()
}

#[tokio::test]
async fn the_rules_and_the_dashboard_use_only_served_metrics() {
    let served = served_metric_names().await;
    for required in [
        "oncall_commands_total",
        "oncall_command_duration_seconds_bucket",
        "oncall_requests_refused_total",
        "oncall_pages_sent_total",
        "oncall_escalation_lag_seconds",
        "oncall_outbox_pending",
        "oncall_incidents_open",
        "oncall_approvals_pending",
    ] {
        assert!(
            served.contains(required),
            "{required} not served: {served:?}"
        );
    }
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("deploy/observability/grafana-dashboard.json"))
            .unwrap(),
    )
    .unwrap();
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() >= 6);
    let mut used = 0;
    for panel in panels {
        for target in panel["targets"].as_array().into_iter().flatten() {
            for name in metric_names(target["expr"].as_str().unwrap()) {
                assert!(
                    served.contains(&name),
                    "panel {:?} uses {name}, which is not served",
                    panel["title"]
                );
                used += 1;
            }
        }
    }
    assert!(used >= 8, "the dashboard queries oncall's metrics");
    let rules =
        std::fs::read_to_string(root().join("deploy/observability/oncall-rules.yml")).unwrap();
    let rules: serde_yaml::Value = serde_yaml::from_str(&rules).unwrap();
    for group in rules["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            for name in metric_names(s(&rule["expr"])) {
                assert!(
                    served.contains(&name),
                    "rule {:?} uses {name}, which is not served",
                    rule["alert"]
                );
            }
        }
    }
}

#[test]
fn the_self_monitoring_rules_pass_promtool() {
    let dir = root().join("deploy/observability");
    for args in [
        vec!["check", "rules", "oncall-rules.yml"],
        vec!["test", "rules", "oncall-rules.test.yml"],
    ] {
        match Command::new("promtool")
            .args(&args)
            .current_dir(&dir)
            .output()
        {
            Ok(out) => assert!(
                out.status.success(),
                "promtool {args:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(_) => {
                println!("SKIPPED: promtool is not here (.ci/run installs it)");
                return;
            }
        }
    }
}

/// The HA overlay's Lease Role: exactly `oncall_ops::access::ELECTION`, the
/// reads and renewals limited to the one Lease, in oncall's own namespace.
fn check_lease_rbac(docs: &[serde_yaml::Value], lease: &str, namespace: &str) {
    let role = docs
        .iter()
        .find(|d| s(&d["kind"]) == "Role" && s(&d["metadata"]["name"]) == "oncall-leader-election")
        .expect("a Role for the Lease");
    assert_eq!(s(&role["metadata"]["namespace"]), namespace);
    let want: BTreeSet<Rule> = oncall_ops::access::ELECTION
        .iter()
        .map(|a| {
            (
                a.group.to_string(),
                a.resource.to_string(),
                a.verb.to_string(),
            )
        })
        .collect();
    assert_eq!(granted(role), want);
    for rule in role["rules"].as_sequence().unwrap() {
        let verbs: Vec<&str> = rule["verbs"].as_sequence().unwrap().iter().map(s).collect();
        if verbs.iter().any(|v| *v != "create") {
            let names: Vec<&str> = rule["resourceNames"]
                .as_sequence()
                .expect("get and update name the Lease")
                .iter()
                .map(s)
                .collect();
            assert_eq!(names, [lease]);
        }
    }
    assert!(docs.iter().any(|d| s(&d["kind"]) == "RoleBinding"
        && s(&d["metadata"]["name"]) == "oncall-leader-election"
        && s(&d["roleRef"]["name"]) == "oncall-leader-election"
        && s(&d["subjects"][0]["name"]) == "oncall"));
}

#[test]
fn the_ha_overlay_runs_three_replicas_on_postgres_with_a_lease() {
    if !kubectl_present() {
        eprintln!("SKIPPED the_ha_overlay_runs_three_replicas_on_postgres_with_a_lease: kubectl is not installed on this machine");
        return;
    }
    let dir = root().join("deploy/kustomize/overlays/ha");
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let docs = yaml_docs(&String::from_utf8(out.stdout).unwrap());
    let of = |kind: &'static str| docs.iter().filter(move |d| s(&d["kind"]) == kind);
    let cm = of("ConfigMap").next().unwrap();
    let config = Config::parse(s(&cm["data"]["oncall.toml"]), "the HA ConfigMap").unwrap();
    assert!(config.election.enabled, "a leader runs the engine");
    assert!(
        config.database.url.is_none(),
        "the URL comes from the Secret, not the file"
    );
    let example = Config::parse(EXAMPLE, "example").unwrap();
    assert_eq!(example_namespaces(&config), example_namespaces(&example));
    check_rbac(&docs, &example_namespaces(&config));
    let lease = config.election.elector_config();
    check_lease_rbac(&docs, &lease.name, &lease.namespace);
    let d = of("Deployment").next().unwrap();
    assert_eq!(d["spec"]["replicas"].as_u64(), Some(3));
    assert_eq!(s(&d["spec"]["strategy"]["type"]), "RollingUpdate");
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    let env = c["env"].as_sequence().unwrap();
    let url = env
        .iter()
        .find(|e| s(&e["name"]) == "DATABASE_URL")
        .expect("DATABASE_URL");
    assert_eq!(
        s(&url["valueFrom"]["secretKeyRef"]["name"]),
        "oncall-database"
    );
    assert!(url.get("value").is_none(), "never inline");
    assert!(
        env.iter().any(|e| s(&e["name"]) == "POD_NAME"),
        "the elector's identity"
    );
    assert_eq!(
        of("PersistentVolumeClaim").count(),
        0,
        "no volume: the state is in PostgreSQL"
    );
    let pdb = of("PodDisruptionBudget").next().unwrap();
    assert_eq!(pdb["spec"]["minAvailable"].as_u64(), Some(2));
}
