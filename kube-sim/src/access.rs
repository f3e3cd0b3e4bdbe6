//! Who may do what: every request's (API group, resource, verb) as RBAC
//! names them, recorded so a test can see exactly what a client used, and
//! answered with 403 when a test has denied it. `SelfSubjectAccessReview`
//! asks the same question without doing anything.

use std::collections::BTreeSet;

use axum::http::Method;
use serde::Serialize;
use serde_json::{json, Value};

/// One permission as an RBAC rule names it: `apps`, `deployments/scale`,
/// `patch`, in a namespace (empty for cluster-scoped requests).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Access {
    pub group: String,
    /// The plural, with `/subresource` when there is one.
    pub resource: String,
    pub verb: String,
    pub namespace: String,
}

impl Access {
    pub fn new(group: &str, resource: &str, verb: &str, namespace: &str) -> Access {
        Access {
            group: group.to_string(),
            resource: resource.to_string(),
            verb: verb.to_string(),
            namespace: namespace.to_string(),
        }
    }

    /// The same permission, whatever the namespace.
    pub fn rule(&self) -> (String, String, String) {
        (self.group.clone(), self.resource.clone(), self.verb.clone())
    }
}

/// The RBAC verb of a request: `get`/`list`/`watch` for GET (by whether a
/// name is given and `watch` is asked), `create`, `update`, `patch`,
/// `delete`/`deletecollection`.
pub fn verb_of(method: &Method, named: bool, watch: bool) -> &'static str {
    match *method {
        Method::GET if watch => "watch",
        Method::GET if named => "get",
        Method::GET => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if named => "delete",
        Method::DELETE => "deletecollection",
        _ => "unknown",
    }
}

/// What an API path asks for, for any group (served or not): `None` for
/// non-resource paths (`/version`, discovery).
pub fn access_of(method: &Method, path: &str, watch: bool) -> Option<Access> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match segs.as_slice() {
        ["api", _version, rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => return None,
    };
    let (ns, resource, named, sub) = match rest {
        [] => return None,
        ["namespaces", ns, plural, rest @ ..] => (*ns, *plural, !rest.is_empty(), rest.get(1)),
        // A namespace itself: `namespaces/<name>`.
        [plural, rest @ ..] => ("", *plural, !rest.is_empty(), rest.get(1)),
    };
    let resource = match sub {
        Some(sub) => format!("{resource}/{sub}"),
        None => resource.to_string(),
    };
    Some(Access::new(
        group,
        &resource,
        verb_of(method, named, watch),
        ns,
    ))
}

/// The set a simulator keeps: what was used, and what is denied.
#[derive(Debug, Default, Clone)]
pub struct AccessLog {
    pub used: BTreeSet<Access>,
    /// (group, resource, verb) answered 403 in every namespace.
    pub denied: BTreeSet<(String, String, String)>,
}

impl AccessLog {
    pub fn is_denied(&self, a: &Access) -> bool {
        self.denied.contains(&a.rule())
    }
}

/// The answer to a `SelfSubjectAccessReview`: allowed unless denied.
pub fn review(log: &AccessLog, body: &Value) -> Value {
    let attrs = &body["spec"]["resourceAttributes"];
    let s = |v: &Value| v.as_str().unwrap_or("").to_string();
    let mut resource = s(&attrs["resource"]);
    let sub = s(&attrs["subresource"]);
    if !sub.is_empty() {
        resource = format!("{resource}/{sub}");
    }
    let rule = (s(&attrs["group"]), resource, s(&attrs["verb"]));
    let allowed = !log.denied.contains(&rule);
    let mut status = json!({ "allowed": allowed });
    if !allowed {
        status["reason"] = json!("denied by the simulator's test settings");
    }
    json!({
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "metadata": { "creationTimestamp": null },
        "spec": body["spec"],
        "status": status,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_their_rbac_permission() {
        let table = [
            (
                Method::GET,
                "/api/v1/namespaces/default/pods",
                false,
                Some(("", "pods", "list", "default")),
            ),
            (
                Method::GET,
                "/api/v1/namespaces/default/pods",
                true,
                Some(("", "pods", "watch", "default")),
            ),
            (
                Method::GET,
                "/api/v1/namespaces/default/pods/p1/log",
                false,
                Some(("", "pods/log", "get", "default")),
            ),
            (
                Method::PATCH,
                "/apis/apps/v1/namespaces/x/deployments/d/scale",
                false,
                Some(("apps", "deployments/scale", "patch", "x")),
            ),
            (
                Method::POST,
                "/apis/batch/v1/namespaces/x/jobs",
                false,
                Some(("batch", "jobs", "create", "x")),
            ),
            (
                Method::GET,
                "/api/v1/namespaces/x",
                false,
                Some(("", "namespaces", "get", "")),
            ),
            (
                Method::GET,
                "/api/v1/nodes",
                false,
                Some(("", "nodes", "list", "")),
            ),
            (
                Method::DELETE,
                "/api/v1/namespaces/x/pods",
                false,
                Some(("", "pods", "deletecollection", "x")),
            ),
            (Method::GET, "/apis", false, None),
            (Method::GET, "/api/v1", false, None),
            (Method::GET, "/version", false, None),
        ];
        for (method, path, watch, want) in table {
            let got = access_of(&method, path, watch);
            let want = want.map(|(g, r, v, n)| Access::new(g, r, v, n));
            assert_eq!(got, want, "{method} {path}");
        }
    }

    #[test]
    fn a_review_answers_what_is_denied() {
        let mut log = AccessLog::default();
        log.denied
            .insert(("apps".into(), "deployments/scale".into(), "patch".into()));
        let ask = |verb: &str, sub: &str| {
            review(
                &log,
                &json!({ "spec": { "resourceAttributes": {
                    "group": "apps", "resource": "deployments", "subresource": sub,
                    "verb": verb, "namespace": "default" } } }),
            )["status"]["allowed"]
                .as_bool()
                .unwrap()
        };
        assert!(!ask("patch", "scale"));
        assert!(ask("get", "scale"));
        assert!(ask("patch", ""));
    }
}
