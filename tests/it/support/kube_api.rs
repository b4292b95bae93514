//! A small in-test Kubernetes API server on 127.0.0.1 for the kube code.
//!
//! **Why an HTTP server and not `tower-test`'s mock service.** A tower-test
//! mock replaces the HTTP stack: every test would script "expect request X,
//! answer Y" in order, and would then only prove that the code sends what
//! the test author expected it to send. Here the same `kube::Client` that
//! production builds (hyper, HTTP/1.1, kube's request builder, its error
//! decoding) runs over a real socket against a server that *keeps state and
//! follows the API's rules* for the subset snapward uses:
//!
//! - GET / LIST / POST / PUT / PATCH (merge) / DELETE of `secrets`, `pods`,
//!   `configmaps` (core `v1`), `leases` (`coordination.k8s.io/v1`) and
//!   `events` (`events.k8s.io/v1` — what `kube::runtime::events::Recorder`
//!   writes) in a namespace;
//! - failures as `Status` objects: 404 `NotFound`, 409 `AlreadyExists` on a
//!   POST of an existing name, 409 `Conflict` on a PUT with a stale
//!   `resourceVersion` or a DELETE whose uid precondition fails, 422
//!   `Invalid` (a name missing, a `resourceVersion` on create, changing an
//!   `immutable` Secret), 403 `Forbidden` when a test forbids a verb;
//! - a cluster-wide `resourceVersion` counter bumped by every write, uids,
//!   `creationTimestamp`, Secret `stringData` folded into `data`,
//!   `?dryRun=All` (validated, not stored), `labelSelector` on lists
//!   (`k=v`, `k==v`, `k!=v`, `k`, `!k`, `k in (..)`, `k notin (..)`);
//! - hooks for what other actors do: another writer changes an object
//!   right after the code read it (a stale `resourceVersion` race), a pod's
//!   readiness changes, and the StatefulSet controller recreates a deleted
//!   pod with a new uid (terminating → gone → Pending → Running → Ready,
//!   one step per GET).
//!
//! Every request is logged (method, path, query, JSON body, status) so
//! tests assert on what was sent — e.g. that no PUT or PATCH ever reached a
//! Secret — and on the resulting state, not on a script.
//!
//! Test-only code: panics (with context) instead of returning errors.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use base64::Engine;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// One request as the server saw it, with the status it answered.
#[derive(Debug, Clone)]
pub struct Logged {
    pub method: String,
    /// Path without the query.
    pub path: String,
    pub query: Vec<(String, String)>,
    pub body: Option<Value>,
    pub status: u16,
    /// `secrets`, `pods`, `configmaps`, `leases.coordination.k8s.io`,
    /// `events.events.k8s.io` (empty for unknown paths).
    pub resource: String,
}

impl Logged {
    pub fn query(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

type Key = (String, String, String);
type Hook = Box<dyn FnOnce(&mut Value) + Send>;

#[derive(Default)]
struct State {
    rv: u64,
    uid: u64,
    objects: BTreeMap<Key, Value>,
    log: Vec<Logged>,
    /// Pod states served one per GET (the last one stays).
    scripts: HashMap<Key, VecDeque<Option<Value>>>,
    /// Pods the "StatefulSet" recreates after a DELETE.
    recreate: HashMap<Key, ()>,
    after_get: Vec<(Key, Hook)>,
    /// Run once when the object is deleted (what else a deletion does:
    /// e.g. the test restarts the server process the pod stands for).
    on_delete: Vec<(Key, Box<dyn FnOnce() + Send>)>,
    forbidden: Vec<(String, String)>,
}

impl State {
    fn next_rv(&mut self) -> String {
        self.rv += 1;
        self.rv.to_string()
    }
    fn next_uid(&mut self) -> String {
        self.uid += 1;
        format!("00000000-0000-4000-8000-{:012x}", self.uid)
    }
}

/// The fake API server (see the module docs). Stops when dropped.
pub struct FakeKube {
    pub url: String,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn api_version(resource: &str) -> &'static str {
    match resource {
        "leases.coordination.k8s.io" => "coordination.k8s.io/v1",
        "events.events.k8s.io" => "events.k8s.io/v1",
        _ => "v1",
    }
}

fn kind(resource: &str) -> &'static str {
    match resource {
        "secrets" => "Secret",
        "pods" => "Pod",
        "configmaps" => "ConfigMap",
        "leases.coordination.k8s.io" => "Lease",
        "events.events.k8s.io" => "Event",
        _ => "Unknown",
    }
}

/// `plural` or `plural.group`, as RBAC and error messages name it.
fn short(resource: &str) -> &str {
    resource.split('.').next().unwrap_or(resource)
}

fn status(code: u16, reason: &str, message: String, details: Option<Value>) -> (u16, Value) {
    let mut s = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    });
    if let Some(d) = details {
        s["details"] = d;
    }
    (code, s)
}

/// `details` as the API server writes them: `name` only for one object,
/// `group` only for non-core resources.
fn details(resource: &str, name: Option<&str>) -> Value {
    let (plural, group) = resource.split_once('.').unwrap_or((resource, ""));
    let mut d = json!({"kind": plural});
    if let Some(n) = name {
        d["name"] = json!(n);
    }
    if !group.is_empty() {
        d["group"] = json!(group);
    }
    d
}

fn not_found(resource: &str, name: &str) -> (u16, Value) {
    status(
        404,
        "NotFound",
        format!("{resource} \"{name}\" not found"),
        Some(details(resource, Some(name))),
    )
}

fn conflict(resource: &str, name: &str, why: &str) -> (u16, Value) {
    status(
        409,
        "Conflict",
        format!("Operation cannot be fulfilled on {resource} \"{name}\": {why}"),
        Some(details(resource, Some(name))),
    )
}

fn invalid(resource: &str, name: &str, why: &str) -> (u16, Value) {
    status(
        422,
        "Invalid",
        format!("{} \"{name}\" is invalid: {why}", kind(resource)),
        Some(json!({"name": name, "kind": kind(resource)})),
    )
}

impl FakeKube {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake API server");
        let port = listener.local_addr().expect("addr").port();
        let state: Arc<Mutex<State>> = Arc::default();
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                let st = st.clone();
                tokio::spawn(async move {
                    let _ = serve_connection(sock, st).await;
                });
            }
        });
        Self {
            url: format!("http://127.0.0.1:{port}"),
            state,
            task,
        }
    }

    /// A client as production builds it, pointed at this server (no auth).
    pub fn client(&self) -> kube::Client {
        let uri = self.url.parse().expect("server URI");
        let config = kube::Config::new(uri);
        kube::Client::try_from(config).expect("kube client")
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("fake API state")
    }

    /// Store `obj` as if someone else created it (uid, resourceVersion and
    /// creationTimestamp assigned). Not logged. Returns the stored object.
    pub fn insert(&self, resource: &str, namespace: &str, mut obj: Value) -> Value {
        let mut st = self.lock();
        let name = obj["metadata"]["name"]
            .as_str()
            .expect("fixture has metadata.name")
            .to_string();
        fill_new(&mut st, resource, namespace, &mut obj);
        st.objects
            .insert((resource.into(), namespace.into(), name), obj.clone());
        obj
    }

    /// The stored object.
    pub fn get(&self, resource: &str, namespace: &str, name: &str) -> Option<Value> {
        self.lock()
            .objects
            .get(&(resource.into(), namespace.into(), name.into()))
            .cloned()
    }

    /// Change a stored object as another writer would (bumps resourceVersion).
    pub fn modify(&self, resource: &str, namespace: &str, name: &str, f: impl FnOnce(&mut Value)) {
        let mut st = self.lock();
        let rv = st.next_rv();
        let obj = st
            .objects
            .get_mut(&(resource.into(), namespace.into(), name.into()))
            .expect("object to modify exists");
        f(obj);
        obj["metadata"]["resourceVersion"] = json!(rv);
    }

    /// Right after the next GET of this object is answered, another writer
    /// changes it (bumping its resourceVersion): the reader's copy is stale.
    pub fn after_next_get(
        &self,
        resource: &str,
        namespace: &str,
        name: &str,
        f: impl FnOnce(&mut Value) + Send + 'static,
    ) {
        self.lock().after_get.push((
            (resource.into(), namespace.into(), name.into()),
            Box::new(f),
        ));
    }

    /// Answer 403 to `method` (GET, POST, PUT, PATCH, DELETE) on `resource`.
    pub fn forbid(&self, method: &str, resource: &str) {
        self.lock()
            .forbidden
            .push((method.to_string(), resource.to_string()));
    }

    /// Like the StatefulSet controller: after a DELETE of this pod, GETs
    /// see it terminating (old uid, still Ready), then gone (404), then a
    /// new uid Pending, then Running but not Ready, then Running and Ready.
    pub fn recreate_on_delete(&self, namespace: &str, name: &str) {
        self.lock()
            .recreate
            .insert(("pods".into(), namespace.into(), name.into()), ());
    }

    /// Call `f` (once) when this object is deleted (not on a dry run).
    pub fn on_delete(
        &self,
        resource: &str,
        namespace: &str,
        name: &str,
        f: impl FnOnce() + Send + 'static,
    ) {
        self.lock().on_delete.push((
            (resource.into(), namespace.into(), name.into()),
            Box::new(f),
        ));
    }

    /// A client whose base URL has a wrong path prefix: every request
    /// misses the API and gets a plain-text 404 (like a misrouted proxy).
    pub fn misrouted_client(&self) -> kube::Client {
        let uri = format!("{}/not-the-api", self.url).parse().expect("URI");
        kube::Client::try_from(kube::Config::new(uri)).expect("kube client")
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Logged> {
        self.lock().log.clone()
    }

    /// The requests that addressed `resource`.
    pub fn requests_to(&self, resource: &str) -> Vec<Logged> {
        self.requests()
            .into_iter()
            .filter(|r| r.resource == resource)
            .collect()
    }
}

fn set_ready(p: &mut Value, ready: bool) {
    let s = if ready { "True" } else { "False" };
    if let Some(conds) = p["status"]["conditions"].as_array_mut() {
        for c in conds {
            if c["type"] == "Ready" || c["type"] == "ContainersReady" {
                c["status"] = json!(s);
                if ready {
                    c.as_object_mut().map(|o| o.remove("reason"));
                } else {
                    c["reason"] = json!("ContainersNotReady");
                    c["message"] = json!("containers with unready status: [openbao]");
                }
            }
        }
    }
    if let Some(cs) = p["status"]["containerStatuses"].as_array_mut() {
        for c in cs {
            c["ready"] = json!(ready);
        }
    }
}

/// A StatefulSet pod `name` (ordinal `ordinal`) of `openbao`, Running with
/// `ip`; Ready or not (the readiness probe failing, e.g. sealed).
pub fn pod(name: &str, ordinal: u32, ip: &str, ready: bool) -> Value {
    let mut p = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": {
                "app.kubernetes.io/name": "openbao",
                "apps.kubernetes.io/pod-index": ordinal.to_string(),
                "statefulset.kubernetes.io/pod-name": name,
            },
            "ownerReferences": [{
                "apiVersion": "apps/v1",
                "kind": "StatefulSet",
                "name": "openbao",
                "uid": "5a7e0000-0000-4000-8000-000000000001",
                "controller": true,
            }],
        },
        "spec": {"containers": [{"name": "openbao", "image": "openbao/openbao:2.7.2"}]},
        "status": {
            "phase": "Running",
            "podIP": ip,
            "conditions": [
                {"type": "Ready", "status": "True"},
                {"type": "ContainersReady", "status": "True"},
            ],
            "containerStatuses": [{
                "name": "openbao",
                "image": "openbao/openbao:2.7.2",
                "imageID": "",
                "ready": true,
                "restartCount": 0,
                "started": true,
                "state": {"running": {"startedAt": now()}},
            }],
        },
    });
    set_ready(&mut p, ready);
    p
}

/// `pod(...)` as the kubelet reports it before its container started.
pub fn pending_pod(name: &str, ordinal: u32) -> Value {
    let mut p = pod(name, ordinal, "", false);
    p["status"] = json!({
        "phase": "Pending",
        "conditions": [{"type": "Ready", "status": "False", "reason": "ContainersNotReady"}],
        "containerStatuses": [{
            "name": "openbao",
            "image": "openbao/openbao:2.7.2",
            "imageID": "",
            "ready": false,
            "restartCount": 0,
            "started": false,
            "state": {"waiting": {"reason": "ContainerCreating"}},
        }],
    });
    p
}

/// New object: uid, resourceVersion, creationTimestamp, namespace,
/// apiVersion/kind; Secret `stringData` folded into `data`.
fn fill_new(st: &mut State, resource: &str, namespace: &str, obj: &mut Value) {
    let uid = st.next_uid();
    let rv = st.next_rv();
    let m = &mut obj["metadata"];
    m["namespace"] = json!(namespace);
    m["uid"] = json!(uid);
    m["resourceVersion"] = json!(rv);
    m["creationTimestamp"] = json!(now());
    obj["apiVersion"] = json!(api_version(resource));
    obj["kind"] = json!(kind(resource));
    if resource == "secrets" {
        fold_string_data(obj);
    }
}

fn fold_string_data(obj: &mut Value) {
    let Some(sd) = obj.as_object_mut().and_then(|o| o.remove("stringData")) else {
        return;
    };
    if let Some(map) = sd.as_object() {
        for (k, v) in map {
            let b64 = base64::engine::general_purpose::STANDARD.encode(v.as_str().unwrap_or(""));
            obj["data"][k] = json!(b64);
        }
    }
}

/// `(resource, namespace, name)` of an API path, if it is one we serve.
fn route(path: &str) -> Option<(String, String, Option<String>)> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match segs.as_slice() {
        ["api", "v1", rest @ ..] => ("", rest),
        ["apis", g, _v, rest @ ..] => (*g, rest),
        _ => return None,
    };
    let (ns, res, name) = match rest {
        ["namespaces", ns, res] => (*ns, *res, None),
        ["namespaces", ns, res, name] => (*ns, *res, Some(name.to_string())),
        _ => return None,
    };
    let resource = if group.is_empty() {
        res.to_string()
    } else {
        format!("{res}.{group}")
    };
    let known = [
        "secrets",
        "pods",
        "configmaps",
        "leases.coordination.k8s.io",
        "events.events.k8s.io",
    ];
    known
        .contains(&resource.as_str())
        .then(|| (resource, ns.to_string(), name))
}

fn handle(
    st: &mut State,
    method: &str,
    path: &str,
    query: &[(String, String)],
    body: Option<&Value>,
) -> (u16, Value) {
    if !(path.starts_with("/api/") || path.starts_with("/apis/")) {
        // What kube-apiserver (or a proxy) says off the API: not a Status.
        return (404, Value::String("404 page not found".into()));
    }
    let Some((resource, ns, name)) = route(path) else {
        return status(
            404,
            "NotFound",
            "the server could not find the requested resource".into(),
            None,
        );
    };
    let q = |k: &str| query.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str());
    if st
        .forbidden
        .iter()
        .any(|(m, r)| m == method && *r == resource)
    {
        let verb = match (method, &name) {
            ("GET", None) => "list",
            ("GET", Some(_)) => "get",
            ("POST", _) => "create",
            ("PUT", _) => "update",
            ("PATCH", _) => "patch",
            ("DELETE", _) => "delete",
            _ => "unknown",
        };
        let (plural, group) = resource.split_once('.').unwrap_or((&resource, ""));
        return status(
            403,
            "Forbidden",
            format!(
                "{plural}{} is forbidden: User \"system:serviceaccount:{ns}:snapward\" cannot {verb} resource \"{plural}\" in API group \"{group}\" in the namespace \"{ns}\"",
                name.as_deref()
                    .map(|n| format!(" \"{n}\""))
                    .unwrap_or_default()
            ),
            Some(details(&resource, name.as_deref())),
        );
    }
    let dry_run = q("dryRun") == Some("All");
    match (method, name) {
        ("GET", Some(name)) => {
            let key = (resource.clone(), ns.clone(), name.clone());
            if let Some(script) = st.scripts.get_mut(&key) {
                let step = if script.len() > 1 {
                    script.pop_front().flatten()
                } else {
                    script.front().cloned().flatten()
                };
                match step {
                    Some(mut v) => {
                        let stored = st.objects.get(&key);
                        let rv = match stored {
                            Some(o) if same_but_rv(o, &v) => {
                                o["metadata"]["resourceVersion"].clone()
                            }
                            _ => json!(st.next_rv()),
                        };
                        v["metadata"]["resourceVersion"] = rv;
                        st.objects.insert(key.clone(), v);
                    }
                    None => {
                        st.objects.remove(&key);
                    }
                }
            }
            let answer = match st.objects.get(&key) {
                Some(o) => (200, o.clone()),
                None => not_found(&resource, &name),
            };
            if let Some(i) = st.after_get.iter().position(|(k, _)| *k == key) {
                let (_, hook) = st.after_get.remove(i);
                let rv = st.next_rv();
                if let Some(o) = st.objects.get_mut(&key) {
                    hook(o);
                    o["metadata"]["resourceVersion"] = json!(rv);
                }
            }
            answer
        }
        ("GET", None) => {
            let selector = q("labelSelector").unwrap_or("");
            let items: Vec<Value> = st
                .objects
                .iter()
                .filter(|((r, n, _), _)| *r == resource && *n == ns)
                .map(|(_, v)| v)
                .filter(|v| matches_selector(&v["metadata"]["labels"], selector))
                .cloned()
                .collect();
            (
                200,
                json!({
                    "apiVersion": api_version(&resource),
                    "kind": format!("{}List", kind(&resource)),
                    "metadata": {"resourceVersion": st.rv.to_string()},
                    "items": items,
                }),
            )
        }
        ("POST", None) => {
            let Some(mut obj) = body.cloned() else {
                return status(400, "BadRequest", "no body".into(), None);
            };
            let Some(name) = obj["metadata"]["name"].as_str().map(String::from) else {
                return invalid(
                    &resource,
                    "",
                    "metadata.name: Required value: name or generateName is required",
                );
            };
            if let Some(bns) = obj["metadata"]["namespace"].as_str()
                && bns != ns
            {
                return status(
                    400,
                    "BadRequest",
                    "the namespace of the provided object does not match the namespace sent on the request".into(),
                    None,
                );
            }
            if obj["metadata"]["resourceVersion"].is_string() {
                return invalid(
                    &resource,
                    &name,
                    "metadata.resourceVersion: Invalid value: must be empty on create",
                );
            }
            let key = (resource.clone(), ns.clone(), name.clone());
            if st.objects.contains_key(&key) {
                return status(
                    409,
                    "AlreadyExists",
                    format!("{} \"{name}\" already exists", short(&resource)),
                    Some(details(&resource, Some(&name))),
                );
            }
            fill_new(st, &resource, &ns, &mut obj);
            if !dry_run {
                st.objects.insert(key, obj.clone());
            }
            (201, obj)
        }
        ("PUT", Some(name)) => {
            let Some(mut obj) = body.cloned() else {
                return status(400, "BadRequest", "no body".into(), None);
            };
            if obj["metadata"]["name"].as_str() != Some(name.as_str()) {
                return status(
                    400,
                    "BadRequest",
                    "the name of the object does not match the name on the URL".into(),
                    None,
                );
            }
            let key = (resource.clone(), ns.clone(), name.clone());
            let Some(stored) = st.objects.get(&key).cloned() else {
                return not_found(&resource, &name);
            };
            if let Some(rv) = obj["metadata"]["resourceVersion"].as_str()
                && Some(rv) != stored["metadata"]["resourceVersion"].as_str()
            {
                return conflict(
                    &resource,
                    &name,
                    "the object has been modified; please apply your changes to the latest version and try again",
                );
            }
            if resource == "secrets" {
                fold_string_data(&mut obj);
                if stored["immutable"] == json!(true) && obj["data"] != stored["data"] {
                    return invalid(
                        &resource,
                        &name,
                        "data: Forbidden: field is immutable when `immutable` is set",
                    );
                }
            }
            for f in ["uid", "creationTimestamp"] {
                obj["metadata"][f] = stored["metadata"][f].clone();
            }
            obj["metadata"]["namespace"] = json!(ns);
            obj["apiVersion"] = json!(api_version(&resource));
            obj["kind"] = json!(kind(&resource));
            obj["metadata"]["resourceVersion"] = json!(st.next_rv());
            if !dry_run {
                st.objects.insert(key, obj.clone());
            }
            (200, obj)
        }
        ("PATCH", Some(name)) => {
            let key = (resource.clone(), ns.clone(), name.clone());
            let Some(mut obj) = st.objects.get(&key).cloned() else {
                return not_found(&resource, &name);
            };
            if let Some(p) = body {
                merge_patch(&mut obj, p);
            }
            if resource == "secrets" {
                let stored = &st.objects[&key];
                if stored["immutable"] == json!(true) && obj["data"] != stored["data"] {
                    return invalid(
                        &resource,
                        &name,
                        "data: Forbidden: field is immutable when `immutable` is set",
                    );
                }
            }
            obj["metadata"]["resourceVersion"] = json!(st.next_rv());
            if !dry_run {
                st.objects.insert(key, obj.clone());
            }
            (200, obj)
        }
        ("DELETE", Some(name)) => {
            let key = (resource.clone(), ns.clone(), name.clone());
            let Some(stored) = st.objects.get(&key).cloned() else {
                return not_found(&resource, &name);
            };
            if let Some(pre) = body.map(|b| &b["preconditions"]) {
                if let Some(uid) = pre["uid"].as_str()
                    && Some(uid) != stored["metadata"]["uid"].as_str()
                {
                    return conflict(
                        &resource,
                        &name,
                        &format!(
                            "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                            stored["metadata"]["uid"].as_str().unwrap_or("")
                        ),
                    );
                }
                if let Some(rv) = pre["resourceVersion"].as_str()
                    && Some(rv) != stored["metadata"]["resourceVersion"].as_str()
                {
                    return conflict(&resource, &name, "Precondition failed: resourceVersion");
                }
            }
            if dry_run {
                return (200, stored);
            }
            let (hooks, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut st.on_delete)
                .into_iter()
                .partition(|(k, _)| *k == key);
            st.on_delete = rest;
            for (_, f) in hooks {
                f();
            }
            if st.recreate.contains_key(&key) {
                let mut terminating = stored.clone();
                terminating["metadata"]["deletionTimestamp"] = json!(now());
                terminating["metadata"]["resourceVersion"] = json!(st.next_rv());
                let ordinal = stored["metadata"]["labels"]["apps.kubernetes.io/pod-index"]
                    .as_str()
                    .and_then(|o| o.parse().ok())
                    .unwrap_or(0);
                let ip = stored["status"]["podIP"]
                    .as_str()
                    .unwrap_or("10.0.0.1")
                    .to_string();
                let new_uid = st.next_uid();
                let mut stages = VecDeque::new();
                stages.push_back(Some(terminating.clone()));
                stages.push_back(None);
                for mut p in [
                    pending_pod(&name, ordinal),
                    pod(&name, ordinal, &ip, false),
                    pod(&name, ordinal, &ip, true),
                ] {
                    p["metadata"]["namespace"] = json!(ns);
                    p["metadata"]["uid"] = json!(new_uid);
                    p["metadata"]["creationTimestamp"] = json!(now());
                    stages.push_back(Some(p));
                }
                st.scripts.insert(key.clone(), stages);
                st.objects.insert(key, terminating.clone());
                return (200, terminating);
            }
            st.objects.remove(&key);
            (200, stored)
        }
        _ => status(
            405,
            "MethodNotAllowed",
            format!("{method} is not supported here"),
            None,
        ),
    }
}

fn same_but_rv(a: &Value, b: &Value) -> bool {
    let (mut a, mut b) = (a.clone(), b.clone());
    a["metadata"]["resourceVersion"] = Value::Null;
    b["metadata"]["resourceVersion"] = Value::Null;
    a == b
}

/// RFC 7386 JSON merge patch.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Some(p) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    for (k, v) in p {
        if v.is_null() {
            target.as_object_mut().map(|o| o.remove(k));
        } else {
            merge_patch(&mut target[k], v);
        }
    }
}

/// Kubernetes label selector semantics for the forms snapward uses.
pub fn matches_selector(labels: &Value, selector: &str) -> bool {
    let label = |k: &str| labels.get(k).and_then(|v| v.as_str());
    // Split on commas outside parentheses.
    let mut terms = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in selector.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                terms.push(&selector[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&selector[start..]);
    terms
        .into_iter()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .all(|t| {
            let set = |rest: &str| -> Vec<String> {
                rest.trim()
                    .trim_start_matches('(')
                    .trim_end_matches(')')
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .collect()
            };
            if let Some((k, rest)) = t.split_once(" notin ") {
                return !label(k.trim()).is_some_and(|v| set(rest).iter().any(|s| s == v));
            }
            if let Some((k, rest)) = t.split_once(" in ") {
                return label(k.trim()).is_some_and(|v| set(rest).iter().any(|s| s == v));
            }
            if let Some((k, v)) = t.split_once("!=") {
                return label(k.trim()) != Some(v.trim());
            }
            if let Some((k, v)) = t.split_once("==").or_else(|| t.split_once('=')) {
                return label(k.trim()) == Some(v.trim());
            }
            if let Some(k) = t.strip_prefix('!') {
                return label(k.trim()).is_none();
            }
            label(t).is_some()
        })
}

async fn serve_connection(
    sock: tokio::net::TcpStream,
    state: Arc<Mutex<State>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(sock);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_string();
        let target = parts.next().unwrap_or_default().to_string();
        let mut len = 0usize;
        let mut chunked = false;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).await? == 0 || h == "\r\n" || h == "\n" {
                break;
            }
            if let Some((k, v)) = h.trim_end().split_once(':') {
                let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
                if k == "content-length" {
                    len = v.parse().unwrap_or(0);
                } else if k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked") {
                    chunked = true;
                }
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                let mut size = String::new();
                reader.read_line(&mut size).await?;
                let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
                let mut chunk = vec![0; n + 2];
                reader.read_exact(&mut chunk).await?;
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
        } else {
            body.resize(len, 0);
            reader.read_exact(&mut body).await?;
        }
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p.to_string(), q.to_string()),
            None => (target.clone(), String::new()),
        };
        let query: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let json_body: Option<Value> = if body.is_empty() {
            None
        } else {
            serde_json::from_slice(&body).ok()
        };
        let (code, answer) = {
            let mut st = state.lock().expect("fake API state");
            let (code, answer) = handle(&mut st, &method, &path, &query, json_body.as_ref());
            st.log.push(Logged {
                method: method.clone(),
                resource: route(&path).map(|(r, _, _)| r).unwrap_or_default(),
                path,
                query,
                body: json_body,
                status: code,
            });
            (code, answer)
        };
        let (text, content_type) = match answer {
            Value::String(t) => (t, "text/plain; charset=utf-8"),
            v => (v.to_string(), "application/json"),
        };
        let reason = match code {
            200 => "OK",
            201 => "Created",
            400 => "Bad Request",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            409 => "Conflict",
            422 => "Unprocessable Entity",
            _ => "Whatever",
        };
        let head = format!(
            "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
            text.len()
        );
        let sock = reader.get_mut();
        sock.write_all(head.as_bytes()).await?;
        sock.write_all(text.as_bytes()).await?;
        sock.flush().await?;
    }
}
