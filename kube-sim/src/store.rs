//! The simulator's object store: every object as JSON, keyed by resource type,
//! namespace and name, with the bookkeeping the API server does on writes
//! (uid, resourceVersion, generation, creationTimestamp, optimistic
//! concurrency) and label/field selectors for lists.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::{json, Value};

use crate::errors::ApiError;
use crate::resources::{self, ResourceType};

/// Per-container log lines of one pod: current and previous instance.
#[derive(Debug, Clone, Default)]
pub struct PodLogs {
    pub current: BTreeMap<String, Vec<(jiff::Timestamp, String)>>,
    pub previous: BTreeMap<String, Vec<(jiff::Timestamp, String)>>,
}

/// Objects of one resource type: namespace → name → object. Nested so that a
/// lookup by `&str` allocates nothing and a namespace is one map.
type ByNamespace = BTreeMap<String, BTreeMap<String, Stored>>;

/// An object and what the controllers need to know of it at a glance,
/// worked out once when it is written rather than on every pass.
#[derive(Debug)]
struct Stored {
    value: Value,
    pod: Option<PodFacts>,
}

/// A pod at a glance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodFacts {
    pub ready: bool,
    /// Running and Ready with nothing injected and no Job to finish: no
    /// pass has anything to do to it.
    pub settled: bool,
    pub succeeded: bool,
    pub finished: bool,
}

impl PodFacts {
    pub fn of(pod: &Value) -> PodFacts {
        let phase = pod["status"]["phase"].as_str().unwrap_or("");
        let ready = is_ready(pod);
        PodFacts {
            ready,
            settled: phase == "Running" && ready && failure_of(pod).is_none() && !is_job_pod(pod),
            succeeded: phase == "Succeeded",
            finished: phase == "Succeeded" || phase == "Failed",
        }
    }
}

/// How many pods an owner has, and in which state; kept up to date on
/// every write so a pass reads it without visiting the pods.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PodCounts {
    pub total: i64,
    pub ready: i64,
    pub succeeded: i64,
    /// Neither succeeded nor failed.
    pub active: i64,
}

impl PodCounts {
    fn add(&mut self, f: &PodFacts, sign: i64) {
        self.total += sign;
        self.ready += sign * i64::from(f.ready);
        self.succeeded += sign * i64::from(f.succeeded);
        self.active += sign * i64::from(!f.finished);
    }
}

pub fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

/// The failure injected into a pod, if any: the template annotation
/// `sim.oncall.dev/fail`, or an image tagged `does-not-exist`.
pub fn failure_of(pod: &Value) -> Option<&str> {
    if let Some(f) = pod["metadata"]["annotations"][crate::controller::FAIL_ANNOTATION].as_str() {
        return Some(f);
    }
    let bad_image = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| {
            c["image"]
                .as_str()
                .is_some_and(|i| i.ends_with(":does-not-exist"))
        });
    bad_image.then_some("ImagePullBackOff")
}

pub fn is_job_pod(pod: &Value) -> bool {
    pod["metadata"]["ownerReferences"][0]["kind"] == "Job"
}

/// One object's address: resource plural, namespace, name.
pub type ObjectRef = (&'static str, String, String);

/// What makes two events "the same": repeats bump a count instead.
type EventKey = (String, String, String, String, String);

#[derive(Debug, Default)]
pub struct Store {
    objects: HashMap<&'static str, ByNamespace>,
    /// Controller owner uid → the objects it controls (the garbage
    /// collector's graph, and the controllers' "owned by" lookups).
    dependents: HashMap<String, BTreeSet<ObjectRef>>,
    /// (namespace, involved kind, involved name, reason, message) → event name.
    events_by_subject: HashMap<EventKey, String>,
    /// Controller owner uid → its pods' counts.
    pod_counts: HashMap<String, PodCounts>,
    resource_version: u64,
    next_uid: u64,
    pub logs: HashMap<(String, String), PodLogs>,
    /// Whether the metrics.k8s.io API is served.
    pub metrics_enabled: bool,
    /// HTTP methods answered with 403, to test a bot whose RBAC is too narrow.
    pub forbidden_methods: Vec<String>,
    /// Every write a client made that the API applied (`PATCH /apis/…`),
    /// in order: what tests count to prove a command ran once.
    pub writes: Vec<String>,
    /// When set, every API request answers 500 InternalError with this
    /// message (a broken API server or an overloaded etcd).
    pub internal_error: Option<String>,
    /// How many of the next writes (PATCH/PUT) answer 409 Conflict, as if
    /// someone else had just changed the object.
    pub conflicts_to_inject: u32,
    /// How long every API request waits before it is served (a slow or
    /// distant API server).
    pub latency: std::time::Duration,
    /// What clients used (RBAC's group, resource, verb), and what a test
    /// denied them.
    pub access: crate::access::AccessLog,
    /// Resources (plural, `leases`) whose every request answers 500, as if
    /// their storage timed out: an API server this client can't write to.
    pub failing_resources: Vec<String>,
}

/// The uid of an object's controlling owner, if it has one.
pub fn controller_uid(obj: &Value) -> Option<&str> {
    obj["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|r| r["controller"] == true)
        .and_then(|r| r["uid"].as_str())
}

fn event_key(ns: &str, event: &Value) -> EventKey {
    let s = |v: &Value| v.as_str().unwrap_or("").to_string();
    (
        ns.to_string(),
        s(&event["involvedObject"]["kind"]),
        s(&event["involvedObject"]["name"]),
        s(&event["reason"]),
        s(&event["message"]),
    )
}

impl Store {
    pub fn get(&self, rt: ResourceType, ns: &str, name: &str) -> Option<&Value> {
        self.stored(rt, ns, name).map(|s| &s.value)
    }

    fn stored(&self, rt: ResourceType, ns: &str, name: &str) -> Option<&Stored> {
        self.objects.get(rt.plural)?.get(ns)?.get(name)
    }

    /// A pod at a glance, without reading its JSON.
    pub fn pod_facts(&self, ns: &str, name: &str) -> Option<PodFacts> {
        self.stored(resources::PODS, ns, name).and_then(|s| s.pod)
    }

    /// The counts of the pods an owner (ReplicaSet, Job) controls.
    pub fn pod_counts(&self, owner_uid: &str) -> PodCounts {
        self.pod_counts.get(owner_uid).copied().unwrap_or_default()
    }

    /// Every object of a type, in one namespace or all, by reference.
    pub fn iter(&self, rt: ResourceType, ns: Option<&str>) -> impl Iterator<Item = &Value> + '_ {
        let by_ns = self.objects.get(rt.plural);
        let namespaces: Box<dyn Iterator<Item = &BTreeMap<String, Stored>>> = match (by_ns, ns) {
            (None, _) => Box::new(std::iter::empty()),
            (Some(m), Some(ns)) => Box::new(m.get(ns).into_iter()),
            (Some(m), None) => Box::new(m.values()),
        };
        namespaces.flat_map(|m| m.values().map(|s| &s.value))
    }

    /// Copies of every object of a type (what a LIST answers).
    pub fn list(&self, rt: ResourceType, ns: Option<&str>) -> Vec<Value> {
        self.iter(rt, ns).cloned().collect()
    }

    /// The (namespace, name) of every object of a type.
    pub fn names(&self, rt: ResourceType) -> Vec<(String, String)> {
        let Some(by_ns) = self.objects.get(rt.plural) else {
            return Vec::new();
        };
        by_ns
            .iter()
            .flat_map(|(ns, m)| m.keys().map(move |n| (ns.clone(), n.clone())))
            .collect()
    }

    /// The pods a pass may have work for: those not settled or finished.
    pub fn unsettled_pods(&self) -> Vec<(String, String)> {
        let Some(by_ns) = self.objects.get(resources::PODS.plural) else {
            return Vec::new();
        };
        by_ns
            .iter()
            .flat_map(|(ns, m)| {
                m.iter()
                    .filter(|(_, s)| s.pod.is_none_or(|f| !f.settled && !f.finished))
                    .map(move |(n, _)| (ns.clone(), n.clone()))
            })
            .collect()
    }

    /// How many objects of a type there are.
    pub fn count(&self, rt: ResourceType) -> usize {
        self.objects
            .get(rt.plural)
            .map_or(0, |m| m.values().map(BTreeMap::len).sum())
    }

    /// The objects of type `rt` whose controlling owner has this uid.
    pub fn owned_by<'a>(
        &'a self,
        rt: ResourceType,
        owner_uid: &str,
    ) -> impl Iterator<Item = &'a Value> + 'a {
        self.dependents
            .get(owner_uid)
            .into_iter()
            .flatten()
            .filter(move |(plural, _, _)| *plural == rt.plural)
            .filter_map(move |(_, ns, name)| self.get(rt, ns, name))
    }

    /// The event about the same object, reason and message, if any.
    pub fn find_event(&self, ns: &str, probe: &Value) -> Option<&Value> {
        let name = self.events_by_subject.get(&event_key(ns, probe))?;
        self.get(resources::EVENTS, ns, name)
    }

    pub fn resource_version(&self) -> u64 {
        self.resource_version
    }

    fn bump(&mut self) -> String {
        self.resource_version += 1;
        self.resource_version.to_string()
    }

    pub fn new_uid(&mut self) -> String {
        self.next_uid += 1;
        format!("00000000-0000-4000-8000-{:012x}", self.next_uid)
    }

    /// Stores an object and keeps the indexes in step.
    fn insert(&mut self, rt: ResourceType, ns: &str, name: &str, obj: Value) {
        let pod = (rt == resources::PODS).then(|| PodFacts::of(&obj));
        let old = self
            .objects
            .entry(rt.plural)
            .or_default()
            .entry(ns.to_string())
            .or_default()
            .insert(name.to_string(), Stored { value: obj, pod });
        if let Some(old) = old {
            self.unindex(rt, ns, name, &old);
        }
        let stored = self.get(rt, ns, name).expect("just inserted");
        let owner = controller_uid(stored).map(String::from);
        let ekey = (rt == resources::EVENTS).then(|| event_key(ns, stored));
        if let Some(uid) = owner {
            if let Some(facts) = &pod {
                self.pod_counts
                    .entry(uid.clone())
                    .or_default()
                    .add(facts, 1);
            }
            self.dependents.entry(uid).or_default().insert((
                rt.plural,
                ns.to_string(),
                name.to_string(),
            ));
        }
        if let Some(k) = ekey {
            self.events_by_subject.insert(k, name.to_string());
        }
    }

    fn unindex(&mut self, rt: ResourceType, ns: &str, name: &str, old: &Stored) {
        if let (Some(uid), Some(facts)) = (controller_uid(&old.value), &old.pod) {
            if let Some(counts) = self.pod_counts.get_mut(uid) {
                counts.add(facts, -1);
                if counts.total == 0 {
                    self.pod_counts.remove(uid);
                }
            }
        }
        let old = &old.value;
        if let Some(uid) = controller_uid(old) {
            if let Some(set) = self.dependents.get_mut(uid) {
                set.remove(&(rt.plural, ns.to_string(), name.to_string()));
                if set.is_empty() {
                    self.dependents.remove(uid);
                }
            }
        }
        if rt == resources::EVENTS {
            let k = event_key(ns, old);
            if self.events_by_subject.get(&k).is_some_and(|n| n == name) {
                self.events_by_subject.remove(&k);
            }
        }
    }

    fn remove(&mut self, rt: ResourceType, ns: &str, name: &str) -> Option<Value> {
        let by_ns = self.objects.get_mut(rt.plural)?;
        let names = by_ns.get_mut(ns)?;
        let old = names.remove(name)?;
        if names.is_empty() {
            by_ns.remove(ns);
        }
        self.unindex(rt, ns, name, &old);
        if rt == resources::PODS {
            self.logs.remove(&(ns.to_string(), name.to_string()));
        }
        Some(old.value)
    }

    /// Creates an object the way a POST does. `dry_run` validates and returns
    /// the result without storing it.
    pub fn create(
        &mut self,
        rt: ResourceType,
        ns: &str,
        obj: Value,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        self.create_checked(rt, ns, obj, dry_run, true)
    }

    fn create_checked(
        &mut self,
        rt: ResourceType,
        ns: &str,
        mut obj: Value,
        dry_run: bool,
        typed: bool,
    ) -> Result<Value, ApiError> {
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        let name = match obj["metadata"]["name"].as_str() {
            Some(n) if !n.is_empty() => n.to_string(),
            _ => match obj["metadata"]["generateName"].as_str() {
                Some(prefix) => format!("{prefix}{}", random_suffix(self.next_uid + 1)),
                None => {
                    return Err(ApiError::invalid(
                        rt,
                        "",
                        "metadata.name: Required value: name or generateName is required",
                    ))
                }
            },
        };
        if let Err(why) = validate_name(&name) {
            return Err(ApiError::invalid(
                rt,
                &name,
                format!("metadata.name: Invalid value: \"{name}\": {why}"),
            ));
        }
        if rt.namespaced && ns != "default" && self.get(resources::NAMESPACES, "", ns).is_none() {
            return Err(ApiError::not_found(resources::NAMESPACES, ns));
        }
        if self.get(rt, ns, &name).is_some() {
            return Err(ApiError::already_exists(rt, &name));
        }
        let uid = self.new_uid();
        let now = jiff::Timestamp::now().to_string();
        {
            let meta = obj["metadata"].as_object_mut().map(|_| ()).is_some();
            if !meta {
                obj["metadata"] = json!({});
            }
            let m = &mut obj["metadata"];
            m["name"] = json!(name);
            if rt.namespaced {
                m["namespace"] = json!(ns);
            }
            m["uid"] = json!(uid);
            m["creationTimestamp"] = json!(now);
            m["generation"] = json!(1);
        }
        obj["apiVersion"] = json!(rt.api_version());
        obj["kind"] = json!(rt.kind);
        if typed {
            validate_typed(rt, &name, &obj)?;
        }
        if dry_run {
            obj["metadata"]["resourceVersion"] = json!(self.resource_version.to_string());
            return Ok(obj);
        }
        obj["metadata"]["resourceVersion"] = json!(self.bump());
        self.insert(rt, if rt.namespaced { ns } else { "" }, &name, obj.clone());
        Ok(obj)
    }

    /// Replaces an object (PUT or a patch's result) with the API server's
    /// checks: the name cannot change, a stale resourceVersion is a conflict,
    /// generation moves when the spec does.
    pub fn replace(
        &mut self,
        rt: ResourceType,
        ns: &str,
        name: &str,
        mut obj: Value,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let Some(current) = self.get(rt, ns, name) else {
            return Err(ApiError::not_found(rt, name));
        };
        if obj["metadata"]["name"].as_str().is_some_and(|n| n != name) {
            return Err(ApiError::invalid(
                rt,
                name,
                "metadata.name: Invalid value: field is immutable",
            ));
        }
        if let Some(rv) = obj["metadata"]["resourceVersion"].as_str() {
            if rv
                != current["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or("")
            {
                return Err(ApiError::conflict(rt, name));
            }
        }
        // The server owns these.
        for field in ["uid", "creationTimestamp", "namespace", "name"] {
            if !current["metadata"][field].is_null() {
                obj["metadata"][field] = current["metadata"][field].clone();
            }
        }
        obj["apiVersion"] = json!(rt.api_version());
        obj["kind"] = json!(rt.kind);
        let generation = current["metadata"]["generation"].as_i64().unwrap_or(1);
        let spec_changed = obj.get("spec") != current.get("spec");
        obj["metadata"]["generation"] = json!(if spec_changed {
            generation + 1
        } else {
            generation
        });
        if rt == resources::DEPLOYMENTS || rt == resources::REPLICASETS {
            if let Some(r) = obj["spec"]["replicas"].as_i64() {
                if r < 0 {
                    return Err(ApiError::invalid(
                        rt,
                        name,
                        format!(
                            "spec.replicas: Invalid value: {r}: must be greater than or equal to 0"
                        ),
                    ));
                }
            }
        }
        validate_typed(rt, name, &obj)?;
        if dry_run {
            return Ok(obj);
        }
        if obj == *current {
            return Ok(current.clone());
        }
        obj["metadata"]["resourceVersion"] = json!(self.bump());
        self.insert(rt, ns, name, obj.clone());
        Ok(obj)
    }

    /// Writes status or controller-owned fields without the user-facing checks.
    pub fn put_internal(&mut self, rt: ResourceType, ns: &str, name: &str, mut obj: Value) {
        if self.get(rt, ns, name) == Some(&obj) {
            return;
        }
        obj["metadata"]["resourceVersion"] = json!(self.bump());
        self.insert(rt, ns, name, obj);
    }

    /// Deletes an object and, as the garbage collector does in the
    /// background, everything it controls.
    pub fn delete(
        &mut self,
        rt: ResourceType,
        ns: &str,
        name: &str,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let Some(obj) = self.get(rt, ns, name) else {
            return Err(ApiError::not_found(rt, name));
        };
        if dry_run {
            return Ok(obj.clone());
        }
        let obj = self.remove(rt, ns, name).expect("present");
        self.bump();
        if let Some(uid) = obj["metadata"]["uid"].as_str() {
            self.collect_garbage(uid);
        }
        Ok(obj)
    }

    fn collect_garbage(&mut self, owner_uid: &str) {
        let Some(dependents) = self.dependents.remove(owner_uid) else {
            return;
        };
        for (plural, ns, name) in dependents {
            let Some(rt) = resources::ALL.iter().copied().find(|r| r.plural == plural) else {
                continue;
            };
            if let Some(obj) = self.remove(rt, &ns, &name) {
                self.bump();
                if let Some(uid) = obj["metadata"]["uid"].as_str() {
                    self.collect_garbage(uid);
                }
            }
        }
    }

    /// Creates an object the simulator itself made (the seed, tests):
    /// checked like a POST.
    pub fn create_internal(
        &mut self,
        rt: ResourceType,
        ns: &str,
        obj: Value,
    ) -> Result<Value, ApiError> {
        self.create(rt, ns, obj, false)
    }

    /// Creates an object a controller built from objects already checked
    /// (a ReplicaSet from a Deployment's template, a Pod from a ReplicaSet's,
    /// an Event): the schema check is skipped, as it cannot fail.
    pub fn create_by_controller(
        &mut self,
        rt: ResourceType,
        ns: &str,
        obj: Value,
    ) -> Result<Value, ApiError> {
        self.create_checked(rt, ns, obj, false, false)
    }
}

fn validate_name(name: &str) -> Result<(), &'static str> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character")
    }
}

/// Deserializes into the k8s-openapi type, as the real server decodes into
/// its schema: a wrong shape is a 422, not a silent accept.
fn validate_typed(rt: ResourceType, name: &str, obj: &Value) -> Result<(), ApiError> {
    use k8s_openapi::api::{
        apps::v1 as apps, autoscaling::v2 as autoscaling, batch::v1 as batch, core::v1 as core,
    };
    fn check<T: serde::de::DeserializeOwned>(
        rt: ResourceType,
        name: &str,
        obj: &Value,
    ) -> Result<(), ApiError> {
        serde_json::from_value::<T>(obj.clone())
            .map(|_| ())
            .map_err(|e| ApiError::invalid(rt, name, e.to_string()))
    }
    match rt.kind {
        "Deployment" => check::<apps::Deployment>(rt, name, obj),
        "ReplicaSet" => check::<apps::ReplicaSet>(rt, name, obj),
        "Pod" => check::<core::Pod>(rt, name, obj),
        "Event" => check::<core::Event>(rt, name, obj),
        "Service" => check::<core::Service>(rt, name, obj),
        "HorizontalPodAutoscaler" => check::<autoscaling::HorizontalPodAutoscaler>(rt, name, obj),
        "Job" => check::<batch::Job>(rt, name, obj),
        "CronJob" => check::<batch::CronJob>(rt, name, obj),
        _ => Ok(()),
    }
}

/// A short pseudo-random lower-case suffix, like the API server's
/// generateName and ReplicaSet pod names.
pub fn random_suffix(seed: u64) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(jiff::Timestamp::now().as_nanosecond() as u64)
        | 1;
    (0..5)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ALPHABET[(x % ALPHABET.len() as u64) as usize] as char
        })
        .collect()
}

/// A parsed label selector (`app=web,tier!=db,env in (a,b),!legacy`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

pub fn parse_label_selector(s: &str) -> Result<Vec<Requirement>, ApiError> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    let mut parts = Vec::new();
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    for part in parts.into_iter().map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || ApiError::bad_request(format!("unable to parse requirement: {part:?}"));
        if let Some((k, v)) = part.split_once("!=") {
            out.push(Requirement::NotEq(k.trim().into(), v.trim().into()));
        } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
            out.push(Requirement::Eq(k.trim().into(), v.trim().into()));
        } else if let Some(rest) = part.strip_prefix('!') {
            out.push(Requirement::NotExists(rest.trim().into()));
        } else if let Some((k, set)) = part.split_once(" notin ") {
            out.push(Requirement::NotIn(
                k.trim().into(),
                parse_set(set).ok_or_else(bad)?,
            ));
        } else if let Some((k, set)) = part.split_once(" in ") {
            out.push(Requirement::In(
                k.trim().into(),
                parse_set(set).ok_or_else(bad)?,
            ));
        } else if part.contains(' ') || part.contains('(') {
            return Err(bad());
        } else {
            out.push(Requirement::Exists(part.into()));
        }
    }
    Ok(out)
}

fn parse_set(s: &str) -> Option<Vec<String>> {
    let inner = s.trim().strip_prefix('(')?.strip_suffix(')')?;
    Some(inner.split(',').map(|v| v.trim().to_string()).collect())
}

pub fn labels_match(requirements: &[Requirement], labels: &Value) -> bool {
    let get = |k: &str| labels.get(k).and_then(Value::as_str);
    requirements.iter().all(|r| match r {
        Requirement::Eq(k, v) => get(k) == Some(v.as_str()),
        Requirement::NotEq(k, v) => get(k) != Some(v.as_str()),
        Requirement::In(k, set) => get(k).is_some_and(|x| set.iter().any(|s| s == x)),
        Requirement::NotIn(k, set) => get(k).is_none_or(|x| !set.iter().any(|s| s == x)),
        Requirement::Exists(k) => get(k).is_some(),
        Requirement::NotExists(k) => get(k).is_none(),
    })
}

/// `metadata.name=x,involvedObject.kind=Pod,type!=Normal`
pub fn field_selector_matches(selector: &str, obj: &Value) -> Result<bool, ApiError> {
    for part in selector.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (path, want, negate) = if let Some((k, v)) = part.split_once("!=") {
            (k, v, true)
        } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
            (k, v, false)
        } else {
            return Err(ApiError::bad_request(format!(
                "invalid field selector: {part:?}"
            )));
        };
        let mut node = obj;
        for seg in path.trim().split('.') {
            node = &node[seg];
        }
        let have = match node {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        };
        if (have == want.trim()) == negate {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_selectors() {
        let labels = json!({"app": "web", "tier": "front"});
        let table = [
            ("app=web", true),
            ("app==web,tier=front", true),
            ("app=db", false),
            ("app!=db", true),
            ("tier in (front, back)", true),
            ("tier notin (front)", false),
            ("app", true),
            ("!quarantine", true),
            ("!app", false),
            ("", true),
        ];
        for (sel, want) in table {
            assert_eq!(
                labels_match(&parse_label_selector(sel).unwrap(), &labels),
                want,
                "{sel}"
            );
        }
        assert!(parse_label_selector("app in web").is_err());
    }

    #[test]
    fn field_selectors() {
        let ev = json!({"involvedObject": {"kind": "Pod", "name": "p1"}, "type": "Warning"});
        assert!(field_selector_matches("involvedObject.name=p1,type!=Normal", &ev).unwrap());
        assert!(!field_selector_matches("involvedObject.kind=Deployment", &ev).unwrap());
    }
}
