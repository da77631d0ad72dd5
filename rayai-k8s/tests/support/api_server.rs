//! A scripted Kubernetes API server for tests: the part of the API kube-rs's watcher uses for
//! the EndpointSlices of one namespace, over plain HTTP/1.1 on `127.0.0.1`.
//!
//! It answers
//!
//! - `GET /apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices?labelSelector=...`: the
//!   slices of the namespace the selector matches, with the current resource version;
//! - the same with `watch=true&resourceVersion=N`: a chunked stream of newline-separated watch
//!   events, first the changes after version `N` (so that a watch started again from the last
//!   version seen misses nothing), then each change as the test makes it. A watch from a version
//!   older than the last [`ApiServer::expire`] gets a `410` `ERROR` event and ends, as the real
//!   server does once the changes it asks for are compacted away.
//!
//! The test drives it: [`ApiServer::apply`] and [`ApiServer::delete`] change the slices (the
//! open watches get `ADDED`, `MODIFIED` or `DELETED`, as their selectors see the change),
//! [`ApiServer::end_watch`] finishes the open watch responses, [`ApiServer::expire`] sends them a
//! `410 Gone`, [`ApiServer::hold_lists`] and [`ApiServer::fail_lists`] delay or refuse lists, and
//! [`ApiServer::requests`] tells what was asked. It depends on nothing of rayai: another test
//! crate can include it with `#[path = "..."] mod api_server;`.

#![allow(dead_code)] // Each test crate uses a part of it.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt as _;
use futures::channel::mpsc;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::AbortHandle;

/// What the paths of the EndpointSlices of a namespace start with.
const PREFIX: &str = "/apis/discovery.k8s.io/v1/namespaces/";

/// What they end with.
const SUFFIX: &str = "/endpointslices";

/// The namespace [`ApiServer::start`] serves.
pub const NAMESPACE: &str = "default";

/// The body of every response.
type Body = BoxBody<Bytes, Infallible>;

/// A scripted Kubernetes API server serving the EndpointSlices of one namespace; stopped (every
/// connection closed) when dropped.
pub struct ApiServer {
    /// What the connections share with the test.
    shared: Arc<Shared>,
    /// The address it listens on.
    addr: SocketAddr,
    /// The task accepting connections.
    accept: AbortHandle,
}

/// What the connections share with the test.
struct Shared {
    /// The slices, the open watches, the requests received.
    state: Mutex<State>,
    /// Whether list requests wait (until it is `false` again).
    hold: watch::Sender<bool>,
}

/// The server's state.
struct State {
    /// The namespace of the slices.
    namespace: String,
    /// The resource version of the last change.
    version: u64,
    /// The slices, by name.
    slices: BTreeMap<String, Value>,
    /// The changes since the last [`ApiServer::expire`], oldest first.
    history: Vec<Change>,
    /// The oldest resource version a watch may start from (older: `410 Gone`).
    oldest: u64,
    /// The watches whose responses are open.
    watches: Vec<OpenWatch>,
    /// Every request received, in order.
    requests: Vec<Recorded>,
    /// The status lists are answered with, when they fail.
    list_failure: Option<u16>,
    /// The connections' tasks, aborted when the server is dropped.
    connections: Vec<AbortHandle>,
}

/// One change of the slices.
#[derive(Clone)]
struct Change {
    /// Its resource version.
    version: u64,
    /// The slice before (none: added).
    old: Option<Value>,
    /// The slice after (none: deleted).
    new: Option<Value>,
}

/// An open watch response.
struct OpenWatch {
    /// The namespace it watches.
    namespace: String,
    /// The slices it watches.
    selector: Selector,
    /// Where its events go (dropped: the response ends).
    tx: mpsc::UnboundedSender<Bytes>,
}

/// A request the server received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Its method.
    pub method: Method,
    /// Its path.
    pub path: String,
    /// Its query parameters, decoded, in order.
    pub query: Vec<(String, String)>,
}

impl Recorded {
    /// The value of the query parameter `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether it is a watch (`watch=true`).
    pub fn is_watch(&self) -> bool {
        self.param("watch") == Some("true")
    }

    /// Whether it is a list of EndpointSlices (not a watch).
    pub fn is_list(&self) -> bool {
        self.method == Method::GET && namespace_of(&self.path).is_some() && !self.is_watch()
    }

    /// Its `labelSelector`.
    pub fn label_selector(&self) -> Option<&str> {
        self.param("labelSelector")
    }

    /// Its `resourceVersion`.
    pub fn resource_version(&self) -> Option<&str> {
        self.param("resourceVersion")
    }
}

impl ApiServer {
    /// Starts a server of the namespace [`NAMESPACE`] on a free port of `127.0.0.1`.
    pub async fn start() -> ApiServer {
        ApiServer::start_in(NAMESPACE).await
    }

    /// Starts a server of the namespace `namespace` on a free port of `127.0.0.1`: lists and
    /// watches of other namespaces find nothing.
    pub async fn start_in(namespace: &str) -> ApiServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("cannot listen on 127.0.0.1");
        let addr = listener.local_addr().expect("no local address");
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                namespace: namespace.to_owned(),
                version: 1,
                slices: BTreeMap::new(),
                history: Vec::new(),
                oldest: 0,
                watches: Vec::new(),
                requests: Vec::new(),
                list_failure: None,
                connections: Vec::new(),
            }),
            hold: watch::channel(false).0,
        });
        let accept = tokio::spawn(accept(listener, shared.clone())).abort_handle();
        ApiServer {
            shared,
            addr,
            accept,
        }
    }

    /// Its URL: `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The namespace it serves.
    pub fn namespace(&self) -> String {
        self.state().namespace.clone()
    }

    /// The resource version of the last change.
    pub fn version(&self) -> u64 {
        self.state().version
    }

    /// Adds the slice `slice` (JSON, with `metadata.name`), or replaces the one of the same
    /// name: the open watches get `ADDED` or `MODIFIED` (or `DELETED`, when their selector
    /// matched it and no longer does). Its namespace and resource version are set. Returns the
    /// new resource version.
    pub fn apply(&self, slice: Value) -> u64 {
        let mut state = self.state();
        let name = slice["metadata"]["name"]
            .as_str()
            .expect("a slice needs metadata.name")
            .to_owned();
        state.version += 1;
        let version = state.version;
        let mut new = slice;
        new["metadata"]["namespace"] = json!(state.namespace);
        new["metadata"]["resourceVersion"] = json!(version.to_string());
        let old = state.slices.insert(name, new.clone());
        state.record(Change {
            version,
            old,
            new: Some(new),
        });
        version
    }

    /// Deletes the slice named `name` (the open watches that saw it get `DELETED`). Returns
    /// whether there was one.
    pub fn delete(&self, name: &str) -> bool {
        let mut state = self.state();
        let Some(old) = state.slices.remove(name) else {
            return false;
        };
        state.version += 1;
        let version = state.version;
        state.record(Change {
            version,
            old: Some(old),
            new: None,
        });
        true
    }

    /// Finishes every open watch response, as the API server does when a watch's time is up.
    /// Returns how many there were.
    pub fn end_watch(&self) -> usize {
        let mut state = self.state();
        state.prune();
        let ended = state.watches.len();
        state.watches.clear();
        ended
    }

    /// Forgets the changes made so far, as etcd's compaction does: the open watches get an
    /// `ERROR` event with a `410 Gone` status and end, and so will any watch asking for a version
    /// older than now, until the client lists the slices again. Returns the new resource
    /// version, the oldest a watch may start from.
    pub fn expire(&self) -> u64 {
        let mut state = self.state();
        state.version += 1;
        state.oldest = state.version;
        state.history.clear();
        let gone = gone_event();
        for open in state.watches.drain(..) {
            let _ = open.tx.unbounded_send(gone.clone());
        }
        state.oldest
    }

    /// Sends every open watch a `BOOKMARK` event with the current resource version.
    pub fn bookmark(&self) {
        let mut state = self.state();
        state.prune();
        let line = event_line(
            "BOOKMARK",
            &json!({
                "kind": "EndpointSlice",
                "apiVersion": "discovery.k8s.io/v1",
                "metadata": {"resourceVersion": state.version.to_string()},
            }),
        );
        for open in &state.watches {
            let _ = open.tx.unbounded_send(line.clone());
        }
    }

    /// Makes list requests wait until [`ApiServer::release_lists`].
    pub fn hold_lists(&self) {
        self.shared.hold.send_replace(true);
    }

    /// Answers the list requests waiting, and the next ones at once.
    pub fn release_lists(&self) {
        self.shared.hold.send_replace(false);
    }

    /// Answers the next list requests with the error status `code` (none: answers them).
    pub fn fail_lists(&self, code: Option<u16>) {
        self.state().list_failure = code;
    }

    /// The requests received so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state().requests.clone()
    }

    /// The list requests received so far.
    pub fn lists(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(Recorded::is_list)
            .collect()
    }

    /// The watch requests received so far.
    pub fn watches(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(Recorded::is_watch)
            .collect()
    }

    /// How many watch responses are open.
    pub fn open_watches(&self) -> usize {
        let mut state = self.state();
        state.prune();
        state.watches.len()
    }

    /// Waits until a watch response is open; panics after 5 seconds.
    pub async fn wait_watching(&self) {
        self.wait_for("an open watch", || self.open_watches() > 0)
            .await;
    }

    /// Waits until `done` is true, looking every 10 ms; panics, naming `what`, after 5 seconds.
    pub async fn wait_for(&self, what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !done() {
            assert!(
                Instant::now() < deadline,
                "no {what} within 5 s; requests: {:#?}",
                self.requests()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The state, locked.
    fn state(&self) -> MutexGuard<'_, State> {
        self.shared.state()
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.accept.abort();
        let mut state = self.state();
        for connection in state.connections.drain(..) {
            connection.abort();
        }
        state.watches.clear();
    }
}

impl Shared {
    /// The state, locked.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl State {
    /// Sends `change` to the open watches that see it, and keeps it for the watches to come.
    fn record(&mut self, change: Change) {
        self.prune();
        for open in &self.watches {
            if let Some(line) = watch_event(open, &change) {
                let _ = open.tx.unbounded_send(line);
            }
        }
        self.history.push(change);
    }

    /// Forgets the watches whose response is gone (the client went away).
    fn prune(&mut self) {
        self.watches.retain(|open| !open.tx.is_closed());
    }

    /// Whether `slice` is in `namespace` and matched by `selector`.
    fn matches(namespace: &str, selector: &Selector, slice: &Value) -> bool {
        slice["metadata"]["namespace"].as_str() == Some(namespace) && selector.matches(slice)
    }
}

/// Accepts connections on `listener`, each served by a task of its own.
async fn accept(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let for_connection = shared.clone();
        let connection = tokio::spawn(async move {
            let service = service_fn(move |req| handle(for_connection.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
        let mut state = shared.state();
        state.connections.retain(|c| !c.is_finished());
        state.connections.push(connection.abort_handle());
    }
}

/// Answers one request (and records it).
async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let recorded = Recorded {
        method: req.method().clone(),
        path: req.uri().path().to_owned(),
        query: req.uri().query().map(parse_query).unwrap_or_default(),
    };
    shared.state().requests.push(recorded.clone());
    if recorded.method != Method::GET {
        return Ok(status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "only GET is scripted",
        ));
    }
    let Some(namespace) = namespace_of(&recorded.path) else {
        return Ok(status(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("{} is not scripted", recorded.path),
        ));
    };
    let selector = match Selector::parse(recorded.label_selector().unwrap_or_default()) {
        Ok(selector) => selector,
        Err(why) => return Ok(status(StatusCode::BAD_REQUEST, "BadRequest", &why)),
    };
    if recorded.is_watch() {
        Ok(watch(
            &shared,
            namespace,
            selector,
            recorded.resource_version(),
        ))
    } else {
        Ok(list(&shared, namespace, &selector).await)
    }
}

/// The list of the slices of `namespace` that `selector` matches.
async fn list(shared: &Shared, namespace: &str, selector: &Selector) -> Response<Body> {
    let mut held = shared.hold.subscribe();
    let _ = held.wait_for(|hold| !*hold).await;
    let state = shared.state();
    if let Some(code) = state.list_failure {
        let code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return status(code, "InternalError", "lists fail, as the test asked");
    }
    let items: Vec<&Value> = state
        .slices
        .values()
        .filter(|slice| State::matches(namespace, selector, slice))
        .collect();
    json_response(
        StatusCode::OK,
        &json!({
            "kind": "EndpointSliceList",
            "apiVersion": "discovery.k8s.io/v1",
            "metadata": {"resourceVersion": state.version.to_string()},
            "items": items,
        }),
    )
}

/// A watch of the slices of `namespace` that `selector` matches, from `from` (a resource
/// version; none or `0`: every slice now, as `ADDED` events).
fn watch(
    shared: &Shared,
    namespace: &str,
    selector: Selector,
    from: Option<&str>,
) -> Response<Body> {
    let (tx, rx) = mpsc::unbounded();
    let mut state = shared.state();
    let open = OpenWatch {
        namespace: namespace.to_owned(),
        selector,
        tx,
    };
    match from.and_then(|v| v.parse::<u64>().ok()).filter(|&v| v > 0) {
        Some(version) if version < state.oldest => {
            // Too old: a 410 and the end of the response.
            let _ = open.tx.unbounded_send(gone_event());
            drop(open);
        }
        Some(version) => {
            for change in state.history.iter().filter(|c| c.version > version) {
                if let Some(line) = watch_event(&open, change) {
                    let _ = open.tx.unbounded_send(line);
                }
            }
            state.watches.push(open);
        }
        None => {
            for slice in state.slices.values() {
                if State::matches(&open.namespace, &open.selector, slice) {
                    let _ = open.tx.unbounded_send(event_line("ADDED", slice));
                }
            }
            state.watches.push(open);
        }
    }
    drop(state);
    let body = StreamBody::new(rx.map(|line| Ok::<_, Infallible>(Frame::data(line))));
    Response::builder()
        .status(StatusCode::OK)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(http_body_util::BodyExt::boxed(body))
        .expect("a valid response")
}

/// The event `open` gets for `change`, if it sees it: `ADDED` when the slice starts to match
/// its selector, `MODIFIED` when it still does, `DELETED` when it is deleted or stops matching.
fn watch_event(open: &OpenWatch, change: &Change) -> Option<Bytes> {
    let sees = |slice: &Option<Value>| {
        slice
            .as_ref()
            .is_some_and(|s| State::matches(&open.namespace, &open.selector, s))
    };
    match (sees(&change.old), sees(&change.new), &change.new) {
        (false, true, Some(new)) => Some(event_line("ADDED", new)),
        (true, true, Some(new)) => Some(event_line("MODIFIED", new)),
        (true, false, _) => {
            // The last state seen, at the version of its deletion.
            let mut last = change.new.clone().or_else(|| change.old.clone())?;
            last["metadata"]["resourceVersion"] = json!(change.version.to_string());
            Some(event_line("DELETED", &last))
        }
        _ => None,
    }
}

/// One line of a watch response.
fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut line = json!({"type": kind, "object": object}).to_string();
    line.push('\n');
    Bytes::from(line)
}

/// The `ERROR` event of a watch whose version is too old.
fn gone_event() -> Bytes {
    event_line(
        "ERROR",
        &json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": "too old resource version",
            "reason": "Expired",
            "code": 410,
        }),
    )
}

/// A `Status` response.
fn status(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
    json_response(
        code,
        &json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": reason,
            "code": code.as_u16(),
        }),
    )
}

/// A response with the JSON `body`.
fn json_response(code: StatusCode, body: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_string())).boxed())
        .expect("a valid response")
}

/// The namespace in `path`, when it is the EndpointSlices of a namespace.
fn namespace_of(path: &str) -> Option<&str> {
    let namespace = path.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    (!namespace.is_empty() && !namespace.contains('/')).then_some(namespace)
}

/// The decoded pairs of a query string (`application/x-www-form-urlencoded`).
fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// `text` with `+` as a space and `%XX` as the byte `XX`.
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = |b: u8| char::from(b).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(high), Some(low)) => {
                        out.extend(u8::try_from(high * 16 + low));
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A label selector: requirements all objects matched meet.
#[derive(Debug, Clone, Default)]
pub struct Selector(Vec<Requirement>);

/// One requirement of a label selector.
#[derive(Debug, Clone)]
enum Requirement {
    /// `key=value`, `key==value`.
    Equals(String, String),
    /// `key!=value`.
    NotEquals(String, String),
    /// `key`.
    Exists(String),
    /// `!key`.
    Missing(String),
}

impl Selector {
    /// Parses `key=value`, `key==value`, `key!=value`, `key` and `!key` requirements separated
    /// by commas (set-based ones, `in` and `notin`, are refused).
    pub fn parse(text: &str) -> Result<Selector, String> {
        let mut requirements = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let requirement = if let Some((k, v)) = part.split_once("!=") {
                Requirement::NotEquals(k.trim().to_owned(), v.trim().to_owned())
            } else if let Some((k, v)) = part.split_once("==") {
                Requirement::Equals(k.trim().to_owned(), v.trim().to_owned())
            } else if let Some((k, v)) = part.split_once('=') {
                Requirement::Equals(k.trim().to_owned(), v.trim().to_owned())
            } else if let Some(k) = part.strip_prefix('!') {
                Requirement::Missing(k.trim().to_owned())
            } else if part.contains(' ') || part.contains('(') {
                return Err(format!("the selector requirement {part:?} is not scripted"));
            } else {
                Requirement::Exists(part.to_owned())
            };
            requirements.push(requirement);
        }
        Ok(Selector(requirements))
    }

    /// Whether the labels of `object` meet every requirement.
    pub fn matches(&self, object: &Value) -> bool {
        let labels = &object["metadata"]["labels"];
        let label = |key: &str| labels.get(key).and_then(Value::as_str);
        self.0.iter().all(|requirement| match requirement {
            Requirement::Equals(k, v) => label(k) == Some(v.as_str()),
            Requirement::NotEquals(k, v) => label(k) != Some(v.as_str()),
            Requirement::Exists(k) => label(k).is_some(),
            Requirement::Missing(k) => label(k).is_none(),
        })
    }
}

/// An EndpointSlice of the Service `service` of the program `program` (its labels:
/// `kubernetes.io/service-name`, `app.kubernetes.io/name`, `app.kubernetes.io/component:
/// replica`), named `name`, with one port named `http` and one endpoint per `(ip, ready)`
/// (`IPv6` slices when an address has a `:`).
pub fn slice(
    program: &str,
    name: &str,
    service: &str,
    port: u16,
    endpoints: &[(&str, bool)],
) -> Value {
    let ipv6 = endpoints.iter().any(|(ip, _)| ip.contains(':'));
    let endpoints: Vec<Value> = endpoints
        .iter()
        .map(|(ip, ready)| {
            json!({
                "addresses": [ip],
                "conditions": {"ready": ready, "serving": ready, "terminating": false},
            })
        })
        .collect();
    json!({
        "kind": "EndpointSlice",
        "apiVersion": "discovery.k8s.io/v1",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/service-name": service,
                "app.kubernetes.io/name": program,
                "app.kubernetes.io/component": "replica",
                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
            },
        },
        "addressType": if ipv6 { "IPv6" } else { "IPv4" },
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
        "endpoints": endpoints,
    })
}
