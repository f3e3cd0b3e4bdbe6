//! The real `kubectl` against `oncall sim`: discovery, `get` (server-side
//! tables), `describe`, `rollout history|status|undo`, `scale` and `logs`,
//! so the demo cluster can be inspected and changed with kubectl as well as
//! with oncall. Skipped, with the reason printed, where kubectl is absent.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_oncall");

struct Sim {
    child: Child,
    kubeconfig: PathBuf,
    cache: PathBuf,
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn kubectl_present() -> bool {
    Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn start_sim(dir: &Path) -> Sim {
    let kubeconfig = dir.join("kubeconfig");
    let child = Command::new(BIN)
        .args(["sim", "--listen", "127.0.0.1:0", "--kubeconfig-out"])
        .arg(&kubeconfig)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&kubeconfig).is_ok_and(|k| k.contains("current-context")) {
        assert!(
            Instant::now() < deadline,
            "the simulator wrote no kubeconfig"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Sim {
        child,
        kubeconfig,
        cache: dir.join("kube-cache"),
    }
}

impl Sim {
    /// The revision numbers `kubectl rollout history` lists, and its output.
    fn revisions(&self, deployment: &str) -> (Vec<String>, String) {
        let history = self.kubectl(&["rollout", "history", &format!("deployment/{deployment}")]);
        let revisions = history
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|w| w.parse::<u32>().is_ok())
            .map(String::from)
            .collect();
        (revisions, history)
    }

    /// Runs kubectl; its stdout, or a panic with what it printed.
    fn kubectl(&self, args: &[&str]) -> String {
        let out = Command::new("kubectl")
            .env("KUBECONFIG", &self.kubeconfig)
            .arg("--cache-dir")
            .arg(&self.cache)
            .arg("--request-timeout=20s")
            .args(args)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(
            out.status.success(),
            "kubectl {args:?} failed:\n{stdout}\n{stderr}"
        );
        assert!(
            !stderr.contains("Unhandled Error"),
            "kubectl {args:?} complained:\n{stderr}"
        );
        stdout
    }
}

#[test]
fn kubectl_inspects_and_changes_the_simulated_cluster() {
    if !kubectl_present() {
        eprintln!("SKIPPED kubectl_inspects_and_changes_the_simulated_cluster: kubectl is not installed on this machine");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sim = start_sim(dir.path());

    // get: server-side tables with kubectl's usual columns.
    let pods = sim.kubectl(&["get", "pods", "-l", "app=backend"]);
    let header = pods.lines().next().unwrap();
    for column in ["NAME", "READY", "STATUS", "RESTARTS", "AGE"] {
        assert!(header.contains(column), "{pods}");
    }
    let running: Vec<&str> = pods.lines().filter(|l| l.starts_with("backend-")).collect();
    assert_eq!(running.len(), 2, "{pods}");
    assert!(
        running
            .iter()
            .all(|l| l.contains("2/2") && l.contains("Running")),
        "{pods}"
    );
    let all = sim.kubectl(&["get", "deployments", "--all-namespaces"]);
    assert!(
        all.lines()
            .any(|l| l.starts_with("oauth2-server") && l.contains("3/3")),
        "{all}"
    );
    // Short names and other groups resolve through discovery.
    let hpa = sim.kubectl(&["get", "hpa", "-n", "oauth2-server", "-o", "name"]);
    assert_eq!(
        hpa.trim(),
        "horizontalpodautoscaler.autoscaling/oauth2-server"
    );

    // describe.
    let described = sim.kubectl(&["describe", "deployment", "backend"]);
    assert!(
        described.contains("Replicas:") && described.contains("2 desired"),
        "{described}"
    );
    assert!(
        described.contains("ghcr.io/example/todo-backend:1.4.2"),
        "{described}"
    );

    // scale, then rollout status follows the watch to the end.
    assert!(sim
        .kubectl(&["scale", "deployment/backend", "--replicas=4"])
        .contains("scaled"));
    let status = sim.kubectl(&["rollout", "status", "deployment/backend", "--timeout=60s"]);
    assert!(status.contains("successfully rolled out"), "{status}");
    let replicas = sim.kubectl(&[
        "get",
        "deployment",
        "backend",
        "-o",
        "jsonpath={.status.readyReplicas}",
    ]);
    assert_eq!(replicas.trim(), "4");

    // A new revision, its history, and undo back to the first template
    // (which reuses the first ReplicaSet, as the real controller does).
    sim.kubectl(&[
        "set",
        "image",
        "deployment/backend",
        "backend=ghcr.io/example/todo-backend:1.5.0",
    ]);
    sim.kubectl(&["rollout", "status", "deployment/backend", "--timeout=60s"]);
    let (revisions, history) = sim.revisions("backend");
    assert_eq!(revisions, ["1", "2"], "{history}");
    assert!(sim
        .kubectl(&["rollout", "undo", "deployment/backend"])
        .contains("rolled back"));
    sim.kubectl(&["rollout", "status", "deployment/backend", "--timeout=60s"]);
    let image = sim.kubectl(&[
        "get",
        "deployment",
        "backend",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ]);
    assert_eq!(image.trim(), "ghcr.io/example/todo-backend:1.4.2");
    let (revisions, history) = sim.revisions("backend");
    assert_eq!(revisions, ["2", "3"], "{history}");

    // logs, through the deployment's pods.
    let logs = sim.kubectl(&["logs", "deployment/backend", "-c", "backend", "--tail=2"]);
    assert_eq!(logs.lines().count(), 2, "{logs}");
}
