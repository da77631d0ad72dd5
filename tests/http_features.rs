//! End-to-end tests of Ray Serve's HTTP features over real sockets, on the apps of the
//! `http_features` example: `Hello` at `/`, the axum ingress at `/api/v1` (typed routes,
//! validation, streaming, bearer auth, OpenAPI, CORS) and `Slow` at `/slow`, with
//! `request_timeout_s = 1`. Test-local handlers pin what the example does not show: the root
//! path, a panic, a stream gated by the test, a stream that never ends.

mod common;

#[path = "../examples/http_features/apps.rs"]
mod apps;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::LazyLock;
use std::time::Duration;

use bytes::Bytes;
use common::{Proto, Reply, within};
use http::{Method, StatusCode};
use rayai::handler::{full, stream_body};
use rayai::prelude::*;
use rayai::{Controller, HttpOptions, NodeResources, Request, Response, RootPath, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

/// The bearer token the `/api/v1/secret` route asks for.
const TOKEN: &str = "secret";

/// The longest any raw exchange may take before the test fails instead of hanging.
const RAW_WAIT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------------
// Test-local handlers
// ---------------------------------------------------------------------------------------------

/// Answers with what it saw: its `RootPath` extension and the path of `req.uri()`.
#[deployment(num_cpus = 0.1, memory = "16MB", isolation = "shared")]
#[derive(Default)]
struct PathEcho;

impl Handler for PathEcho {
    async fn call(&self, req: Request) -> Response {
        let root_path = req.extensions().get::<RootPath>().map(|r| r.0.clone());
        let body = json!({ "root_path": root_path, "path": req.uri().path() });
        Response::new(full(body.to_string()))
    }
}

/// Panics on `/panic`, answers `alive` otherwise.
#[deployment(num_cpus = 0.1, memory = "16MB")]
#[derive(Default)]
struct Boom;

impl Handler for Boom {
    async fn call(&self, req: Request) -> Response {
        if req.uri().path() == "/panic" {
            panic!("boom on purpose");
        }
        Response::new(full("alive"))
    }
}

/// Opened by the test when the gated stream may produce its last chunk.
static GATE: LazyLock<Notify> = LazyLock::new(Notify::new);

/// Streams `first\n`, then waits for [`GATE`] before it produces `last\n`.
#[deployment(num_cpus = 0.1, memory = "16MB", isolation = "shared")]
#[derive(Default)]
struct Gated;

impl Handler for Gated {
    async fn call(&self, _req: Request) -> Response {
        let chunks = rayai::stream::stream! {
            yield Ok::<_, Infallible>(Bytes::from_static(b"first\n"));
            GATE.notified().await;
            yield Ok(Bytes::from_static(b"last\n"));
        };
        Response::new(stream_body(chunks))
    }
}

/// Streams `tick\n` every 50 ms, forever: only the request timeout ends it.
#[deployment(num_cpus = 0.1, memory = "16MB", isolation = "shared")]
#[derive(Default)]
struct Ticker;

impl Handler for Ticker {
    async fn call(&self, _req: Request) -> Response {
        let ticks = rayai::stream::stream! {
            loop {
                yield Ok::<_, Infallible>(Bytes::from_static(b"tick\n"));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        Response::new(stream_body(ticks))
    }
}

// ---------------------------------------------------------------------------------------------
// Support
// ---------------------------------------------------------------------------------------------

/// The example's options: a free port, `request_timeout_s = 1`, no dashboard, a short drain.
fn options() -> HttpOptions {
    HttpOptions {
        host: "127.0.0.1".to_owned(),
        port: 0,
        request_timeout_s: Some(1.0),
        dashboard_port: None,
        graceful_shutdown_timeout_s: 1.0,
        ..HttpOptions::default()
    }
}

/// A server with `options` on a node of its own, with every app of the example deployed.
async fn start(options: HttpOptions) -> Server {
    let node = Controller::new(NodeResources::new(64.0, 64 << 30));
    let server = Server::start_with(options, node)
        .await
        .expect("the server starts");
    for (app, prefix) in apps::apps(TOKEN.to_owned()) {
        server
            .deploy(app, prefix)
            .await
            .unwrap_or_else(|e| panic!("the app at {prefix} deploys: {e}"));
    }
    server
}

/// The example's server with its own options.
async fn example() -> Server {
    start(options()).await
}

/// `method path` over `proto` with extra headers and an empty body.
async fn call(
    addr: SocketAddr,
    proto: Proto,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
) -> Reply {
    let mut builder = common::request(addr, proto, method, path);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let req = builder.body(common::full("")).expect("a valid request");
    common::send(addr, proto, req).await
}

/// `GET path` over HTTP/1.1 with extra headers.
async fn get_with(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Reply {
    call(addr, Proto::H1, Method::GET, path, headers).await
}

/// Writes `bytes` on a new connection and reads until the server closes it. The server may hang
/// up before everything is written, or reset the connection: both end the exchange. Fails the
/// test when the whole exchange takes longer than `wait`.
async fn raw_exchange(addr: SocketAddr, bytes: &[u8], wait: Duration) -> Vec<u8> {
    within(wait, "the server to answer and close", async {
        let mut tcp = TcpStream::connect(addr).await.expect("connect");
        // An error here is the server closing early: what it sent is still read below.
        let _ = tcp.write_all(bytes).await;
        let mut out = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
        out
    })
    .await
}

/// The status code of a raw HTTP/1.1 response, `None` when the server sent nothing.
fn raw_status(response: &[u8]) -> Option<u16> {
    if response.is_empty() {
        return None;
    }
    let text = String::from_utf8_lossy(response);
    let code = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .unwrap_or_else(|| panic!("not an HTTP/1.1 response: {text:?}"));
    Some(code.parse().expect("a numeric status"))
}

/// The body of a raw HTTP/1.1 response with a `content-length` (everything after the head).
fn raw_body(response: &[u8]) -> String {
    let text = String::from_utf8_lossy(response);
    text.split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default()
}

/// `GET path` as raw bytes, with `Connection: close`.
fn raw_get(path: &[u8]) -> Vec<u8> {
    let mut bytes = b"GET ".to_vec();
    bytes.extend_from_slice(path);
    bytes.extend_from_slice(b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    bytes
}

/// The example still answers `GET /` with `hello`.
async fn assert_still_serving(addr: SocketAddr) {
    let reply = common::get(addr, "/").await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.body, "hello");
}

/// Whether `value` looks like a hyphenated UUID.
fn is_uuid(value: &str) -> bool {
    let groups: Vec<&str> = value.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && groups
            .iter()
            .all(|g| g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A 4xx JSON error with a `detail`.
fn assert_json_detail(reply: &Reply, status: StatusCode) {
    assert_eq!(reply.status, status, "{reply:?}");
    assert!(
        reply.header("content-type").starts_with("application/json"),
        "{reply:?}"
    );
    let detail = &reply.json()["detail"];
    assert!(
        detail.is_string() || detail.is_array(),
        "no detail in {:?}",
        reply.body
    );
}

// ---------------------------------------------------------------------------------------------
// 1. Default handler
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_root_is_hello_with_a_fresh_request_id() {
    let server = example().await;
    let reply = common::get(server.local_addr(), "/").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "hello");
    let id = reply.header("x-request-id");
    assert!(is_uuid(id), "x-request-id is a UUID: {id:?}");
    server.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 2, 3. Typed routes and validation
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_item_id_parses_and_a_bad_id_is_422_json_not_500() {
    let server = example().await;
    let addr = server.local_addr();
    let reply = common::get(addr, "/api/v1/items/42").await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.json(), json!({ "item_id": 42 }));
    for bad in ["abc", "99999999999", "-1", "4.2"] {
        let reply = common::get(addr, &format!("/api/v1/items/{bad}")).await;
        assert_json_detail(&reply, StatusCode::UNPROCESSABLE_ENTITY);
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_item_echoes_the_json_and_malformed_json_is_422() {
    let server = example().await;
    let addr = server.local_addr();
    let reply = common::post(addr, "/api/v1/items/", r#"{"a":1}"#).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.json(), json!({ "created": { "a": 1 } }));
    for malformed in [r#"{"a":"#, "not json", ""] {
        let reply = common::post(addr, "/api/v1/items/", malformed).await;
        assert_json_detail(&reply, StatusCode::UNPROCESSABLE_ENTITY);
    }
    server.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 4. Streaming
// ---------------------------------------------------------------------------------------------

/// Reads the example's stream frame by frame: ten chunks, the first on its own.
async fn assert_example_stream(addr: SocketAddr, proto: Proto) {
    let req = common::request(addr, proto, Method::GET, "/api/v1/stream")
        .body(common::full(""))
        .expect("a valid request");
    let mut stream = common::open(addr, proto, req).await;
    assert_eq!(stream.status, StatusCode::OK);
    let first = stream.frame(RAW_WAIT).await.expect("a first chunk");
    assert_eq!(first, "chunk 0\n", "the first chunk comes alone");
    let rest = stream.rest(RAW_WAIT).await;
    let mut body = String::from_utf8(first.to_vec()).expect("UTF-8");
    for frame in &rest {
        body.push_str(std::str::from_utf8(frame).expect("UTF-8"));
    }
    let expected: String = (0..10).map(|i| format!("chunk {i}\n")).collect();
    assert_eq!(body, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingress_stream_sends_ten_chunks_frame_by_frame() {
    let server = example().await;
    assert_example_stream(server.local_addr(), Proto::H1).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_chunk_is_readable_before_the_last_is_produced() {
    let server = example().await;
    server
        .deploy(App::named("gated").handler::<Gated>(), "/gated")
        .await
        .expect("the gated app deploys");
    let addr = server.local_addr();
    let mut stream = common::open(
        addr,
        Proto::H1,
        common::request(addr, Proto::H1, Method::GET, "/gated")
            .body(common::full(""))
            .expect("a valid request"),
    )
    .await;
    assert_eq!(stream.status, StatusCode::OK);
    // The last chunk cannot exist yet: the gate is shut until the first has been read.
    let first = stream.frame(RAW_WAIT).await.expect("the first chunk");
    assert_eq!(first, "first\n");
    GATE.notify_one();
    let last = stream.frame(RAW_WAIT).await.expect("the last chunk");
    assert_eq!(last, "last\n");
    assert_eq!(stream.frame(RAW_WAIT).await, None, "then the body ends");
    drop(stream);
    server.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 5. Bearer auth
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_needs_the_exact_bearer_token() {
    let server = example().await;
    let addr = server.local_addr();
    let missing = common::get(addr, "/api/v1/secret").await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED, "{missing:?}");
    assert_eq!(missing.header("www-authenticate"), "Bearer");
    for wrong in [
        "Bearer secre",
        "Bearer secrets",
        "Basic secret",
        "secret",
        "Bearer ",
    ] {
        let reply = get_with(addr, "/api/v1/secret", &[("authorization", wrong)]).await;
        assert_eq!(
            reply.status,
            StatusCode::UNAUTHORIZED,
            "{wrong:?}: {reply:?}"
        );
        assert_eq!(reply.header("www-authenticate"), "Bearer");
    }
    let ok = get_with(
        addr,
        "/api/v1/secret",
        &[("authorization", "Bearer secret")],
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK, "{ok:?}");
    assert_eq!(ok.body, r#"{"ok":true}"#);
    server.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 6. OpenAPI
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_lists_the_typed_routes() {
    let server = example().await;
    let reply = common::get(server.local_addr(), "/api/v1/openapi.json").await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    let doc = reply.json();
    let paths = doc["paths"].as_object().expect("a `paths` object");
    for path in ["/items/{item_id}", "/items/", "/stream", "/secret"] {
        assert!(paths.contains_key(path), "{path} in {paths:?}");
    }
    server.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 7. CORS
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_preflight_is_answered_and_simple_requests_carry_allow_origin() {
    let server = example().await;
    let addr = server.local_addr();
    let preflight = call(
        addr,
        Proto::H1,
        Method::OPTIONS,
        "/api/v1/items/1",
        &[
            ("origin", "http://example.com"),
            ("access-control-request-method", "GET"),
        ],
    )
    .await;
    assert!(preflight.status.is_success(), "{preflight:?}");
    assert_eq!(preflight.header("access-control-allow-origin"), "*");
    assert!(
        preflight
            .headers
            .contains_key("access-control-allow-methods"),
        "{preflight:?}"
    );
    let plain = get_with(addr, "/api/v1/items/1", &[("origin", "http://example.com")]).await;
    assert_eq!(plain.status, StatusCode::OK, "{plain:?}");
    assert_eq!(plain.header("access-control-allow-origin"), "*");
    assert_eq!(plain.json(), json!({ "item_id": 1 }));
    server.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 8. Request timeout
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_request_is_408_with_its_id_and_the_header_overrides_the_timeout() {
    let server = example().await;
    let addr = server.local_addr();

    let quick = common::get(addr, "/slow?ms=10").await;
    assert_eq!(quick.status, StatusCode::OK, "{quick:?}");
    assert_eq!(quick.body, "slept 10 ms");

    let late = common::get(addr, "/slow?ms=3000").await;
    assert_eq!(late.status, StatusCode::REQUEST_TIMEOUT, "{late:?}");
    assert!(
        late.header("content-type").starts_with("text/plain"),
        "{late:?}"
    );
    let id = late.header("x-request-id");
    assert_eq!(late.body, format!("Request {id} timed out after 1.0s."));

    let overridden = get_with(addr, "/slow?ms=1500", &[("x-request-timeout-seconds", "5")]).await;
    assert_eq!(overridden.status, StatusCode::OK, "{overridden:?}");
    assert_eq!(overridden.body, "slept 1500 ms");

    for bad in ["soon", "-1", "0", "NaN", "inf"] {
        let reply = get_with(addr, "/slow?ms=10", &[("x-request-timeout-seconds", bad)]).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{bad:?}: {reply:?}");
        assert!(reply.headers.contains_key("x-request-id"));
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_timeout_cuts_a_running_stream_and_frees_the_replica() {
    let server = example().await;
    server
        .deploy(App::named("ticker").handler::<Ticker>(), "/ticker")
        .await
        .expect("the ticker deploys");
    let addr = server.local_addr();
    let req = common::request(addr, Proto::H1, Method::GET, "/ticker")
        .body(common::full(""))
        .expect("a valid request");
    let mut stream = common::open(addr, Proto::H1, req).await;
    assert_eq!(stream.status, StatusCode::OK, "the stream started in time");
    // The stream never ends on its own: the body ends only because the deadline cut it.
    let frames = within(
        RAW_WAIT,
        "the deadline to cut the stream",
        stream.rest(RAW_WAIT),
    )
    .await;
    assert!(!frames.is_empty(), "some ticks came before the cut");
    assert!(
        frames
            .iter()
            .all(|f| f.iter().all(|b| b"tick\n".contains(b)))
    );
    drop(stream);
    let ticker = server.deployment("ticker").await.expect("deployed");
    common::eventually(RAW_WAIT, "the ticker's slot to be freed", || {
        let ticker = ticker.clone();
        async move { ticker.replicas().iter().all(|r| r.ongoing_requests == 0) }
    })
    .await;
    server.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 9. Proxy endpoints
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_lists_every_prefix_with_its_app() {
    let server = example().await;
    let reply = common::get(server.local_addr(), "/-/routes").await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(
        reply.json(),
        json!({ "/": "hello", "/api/v1": "api", "/slow": "slow" })
    );
    server.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 10, 11. Root path and prefix matching
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_sees_the_path_below_its_prefix_and_the_prefix_as_root_path() {
    let server = example().await;
    server
        .deploy(App::named("paths").handler::<PathEcho>(), "/echo-path")
        .await
        .expect("the paths app deploys");
    let addr = server.local_addr();
    let below = common::get(addr, "/echo-path/x/y").await;
    assert_eq!(below.status, StatusCode::OK, "{below:?}");
    assert_eq!(
        below.json(),
        json!({ "root_path": "/echo-path", "path": "/x/y" })
    );
    let at = common::get(addr, "/echo-path").await;
    assert_eq!(at.json(), json!({ "root_path": "/echo-path", "path": "/" }));
    let with_query = common::get(addr, "/echo-path/q?a=1").await;
    assert_eq!(
        with_query.json(),
        json!({ "root_path": "/echo-path", "path": "/q" })
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefix_matches_whole_segments_only() {
    let server = example().await;
    let addr = server.local_addr();
    for path in ["/api/v1x", "/api/v1x/items/1", "/api", "/slowly"] {
        let reply = common::get(addr, path).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {reply:?}");
        assert_eq!(reply.body, "hello", "{path} goes to the `/` app");
    }
    let reply = common::get(addr, "/api/v1/items/7").await;
    assert_eq!(
        reply.json(),
        json!({ "item_id": 7 }),
        "the longest prefix wins"
    );
    server.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 12. Deploying at a taken prefix
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_app_at_a_taken_prefix_is_refused_and_the_same_name_replaces() {
    let server = example().await;
    let addr = server.local_addr();
    let err = server
        .deploy(App::named("other").handler::<PathEcho>(), "/api/v1")
        .await
        .expect_err("two apps on one prefix is an error");
    let message = err.to_string();
    assert!(
        message.contains("`api`") && message.contains("`other`"),
        "the error names both apps: {message}"
    );
    let still = common::get(addr, "/api/v1/items/3").await;
    assert_eq!(still.json(), json!({ "item_id": 3 }), "nothing changed");

    server
        .deploy(App::named("api").handler::<PathEcho>(), "/api/v1")
        .await
        .expect("the same name redeploys");
    let replaced = common::get(addr, "/api/v1/items/3").await;
    assert_eq!(replaced.status, StatusCode::OK, "{replaced:?}");
    assert_eq!(
        replaced.json(),
        json!({ "root_path": "/api/v1", "path": "/items/3" })
    );
    let routes = common::get(addr, "/-/routes").await;
    assert_eq!(
        routes.json(),
        json!({ "/": "hello", "/api/v1": "api", "/slow": "slow" })
    );
    server.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 13-15. Bad input
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_segments_and_encoded_slashes_are_400_and_never_escape_a_prefix() {
    let server = example().await;
    let addr = server.local_addr();
    for path in [
        "/api/v1/../slow",
        "/api/v1/%2e%2e/slow",
        "/api/v1/%2E%2E/slow",
        "/api/v1/.%2e/slow",
        "/api%2fv1/secret",
        "/api%2Fv1/secret",
        "/api/v1/..%2fslow",
        "/./",
        "/api/v1/./secret",
    ] {
        let response = raw_exchange(addr, &raw_get(path.as_bytes()), RAW_WAIT).await;
        assert_eq!(
            raw_status(&response),
            Some(400),
            "{path}: {}",
            String::from_utf8_lossy(&response)
        );
        let body = raw_body(&response);
        assert!(
            !body.contains("slept") && !body.contains("hello") && !body.contains("\"ok\""),
            "{path} reached an app: {body:?}"
        );
        let detail: Value = serde_json::from_str(&body).expect("a JSON error");
        assert!(
            detail["detail"]
                .as_str()
                .is_some_and(|d| d.starts_with("Invalid path")),
            "{path}: {body}"
        );
    }
    assert_still_serving(addr).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_in_the_path_is_refused_and_the_server_keeps_serving() {
    let server = example().await;
    let addr = server.local_addr();
    for path in [
        &b"/\xff\xfe"[..],
        b"/api/v1/items/\xc3\x28",
        b"/slow\x80?ms=1",
    ] {
        let response = raw_exchange(addr, &raw_get(path), RAW_WAIT).await;
        let status = raw_status(&response);
        assert!(
            matches!(status, None | Some(400)),
            "{}: {}",
            String::from_utf8_lossy(path),
            String::from_utf8_lossy(&response)
        );
    }
    assert_still_serving(addr).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_mebibyte_header_is_refused_without_a_hang() {
    let server = example().await;
    let addr = server.local_addr();
    let mut request = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    request.extend(std::iter::repeat_n(b'a', 1 << 20));
    request.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
    let response = raw_exchange(addr, &request, RAW_WAIT).await;
    let status = raw_status(&response);
    assert!(
        matches!(status, None | Some(400) | Some(431)),
        "{}",
        String::from_utf8_lossy(&response)
    );
    assert_still_serving(addr).await;
    server.shutdown().await;
}

/// A server whose body limit is 1 KiB.
async fn small_body_limit() -> Server {
    start(HttpOptions {
        max_body_bytes: 1024,
        ..options()
    })
    .await
}

/// A JSON body of about `len` bytes.
fn json_of_len(len: usize) -> String {
    format!(r#"{{"pad":"{}"}}"#, "x".repeat(len))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_limit_is_413() {
    let server = small_body_limit().await;
    let addr = server.local_addr();
    let fits = common::post(addr, "/api/v1/items/", &json_of_len(100)).await;
    assert_eq!(fits.status, StatusCode::OK, "{fits:?}");
    let reply = common::post(addr, "/api/v1/items/", &json_of_len(2048)).await;
    assert_json_detail(&reply, StatusCode::PAYLOAD_TOO_LARGE);
    assert_still_serving(addr).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_over_the_limit_is_413() {
    let server = small_body_limit().await;
    let addr = server.local_addr();
    let body = json_of_len(4096);
    let chunks: Vec<Bytes> = body
        .as_bytes()
        .chunks(512)
        .map(Bytes::copy_from_slice)
        .collect();
    let req = common::request(addr, Proto::H1, Method::POST, "/api/v1/items/")
        .header("content-type", "application/json")
        .body(common::chunked(chunks))
        .expect("a valid request");
    let reply = common::send(addr, Proto::H1, req).await;
    assert_json_detail(&reply, StatusCode::PAYLOAD_TOO_LARGE);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_headers_are_cut_off_by_the_header_read_timeout() {
    let server = start(HttpOptions {
        header_read_timeout_s: 0.5,
        ..options()
    })
    .await;
    let addr = server.local_addr();
    // The request line and one header, then nothing: the server must hang up on its own.
    let began = std::time::Instant::now();
    let response = raw_exchange(addr, b"GET / HTTP/1.1\r\nHost: x\r\n", RAW_WAIT).await;
    assert!(
        began.elapsed() >= Duration::from_millis(400),
        "closed by the header timeout, not at once: {:?}",
        began.elapsed()
    );
    assert!(
        matches!(raw_status(&response), None | Some(408) | Some(400)),
        "{}",
        String::from_utf8_lossy(&response)
    );
    assert_still_serving(addr).await;
    server.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 16. HTTP/2
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_prior_knowledge_serves_hello_and_the_stream() {
    let server = example().await;
    let addr = server.local_addr();
    let hello = call(addr, Proto::H2, Method::GET, "/", &[]).await;
    assert_eq!(hello.status, StatusCode::OK, "{hello:?}");
    assert_eq!(hello.body, "hello");
    assert!(hello.headers.contains_key("x-request-id"));
    let item = call(addr, Proto::H2, Method::GET, "/api/v1/items/5", &[]).await;
    assert_eq!(item.json(), json!({ "item_id": 5 }));
    assert_example_stream(addr, Proto::H2).await;
    server.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 17. Panics
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_is_500_and_its_replica_is_replaced() {
    let server = example().await;
    server
        .deploy(App::named("boom").handler::<Boom>(), "/boom")
        .await
        .expect("the boom app deploys");
    let addr = server.local_addr();
    let panicked = common::get(addr, "/boom/panic").await;
    assert_json_detail(&panicked, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(panicked.headers.contains_key("x-request-id"));
    let next = common::get(addr, "/boom/").await;
    assert_eq!(next.status, StatusCode::OK, "{next:?}");
    assert_eq!(next.body, "alive");
    let boom = server.deployment("boom").await.expect("deployed");
    common::eventually(RAW_WAIT, "a replacement replica", || {
        let boom = boom.clone();
        async move { boom.status().replicas_started >= 2 && boom.status().running_replicas == 1 }
    })
    .await;
    assert_still_serving(addr).await;
    server.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 18. Request ids
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_request_id_is_echoed_on_handler_auth_and_proxy_responses() {
    let server = example().await;
    let addr = server.local_addr();
    let id = [("x-request-id", "client-id-123")];
    for (path, status) in [
        ("/", StatusCode::OK),
        ("/api/v1/items/1", StatusCode::OK),
        ("/api/v1/items/abc", StatusCode::UNPROCESSABLE_ENTITY),
        ("/api/v1/secret", StatusCode::UNAUTHORIZED),
        ("/slow?ms=1", StatusCode::OK),
        ("/api/v1/../slow", StatusCode::BAD_REQUEST),
        ("/-/routes", StatusCode::OK),
    ] {
        let reply = get_with(addr, path, &id).await;
        assert_eq!(reply.status, status, "{path}: {reply:?}");
        assert_eq!(reply.header("x-request-id"), "client-id-123", "{path}");
    }
    let h2 = call(addr, Proto::H2, Method::GET, "/api/v1/secret", &id).await;
    assert_eq!(h2.status, StatusCode::UNAUTHORIZED);
    assert_eq!(h2.header("x-request-id"), "client-id-123");
    let timed_out = get_with(addr, "/slow?ms=3000", &id).await;
    assert_eq!(timed_out.status, StatusCode::REQUEST_TIMEOUT);
    assert_eq!(timed_out.header("x-request-id"), "client-id-123");
    assert_eq!(
        timed_out.body,
        "Request client-id-123 timed out after 1.0s."
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_path_mounts_the_whole_server_below_it() {
    let server = start(HttpOptions {
        root_path: "/serve".to_owned(),
        ..options()
    })
    .await;
    server
        .deploy(App::named("paths").handler::<PathEcho>(), "/echo-path")
        .await
        .unwrap();
    let addr = server.local_addr();
    let hello = common::get(addr, "/serve").await;
    assert_eq!((hello.status.as_u16(), hello.body.as_str()), (200, "hello"));
    let item = common::get(addr, "/serve/api/v1/items/7").await;
    assert_eq!(item.body, r#"{"item_id":7}"#);
    let routes = common::get(addr, "/serve/-/routes").await;
    assert_eq!(routes.status, 200);
    // The handler sees the path below its prefix, and the mount plus the prefix as its root.
    let seen: Value =
        serde_json::from_str(&common::get(addr, "/serve/echo-path/x").await.body).unwrap();
    assert_eq!(
        seen,
        json!({ "root_path": "/serve/echo-path", "path": "/x" })
    );
    // Outside the mount: the proxy's 404, naming the path as sent.
    for outside in ["/", "/api/v1/items/7", "/served"] {
        let reply = common::get(addr, outside).await;
        assert_eq!(reply.status, 404, "{outside}");
        assert_eq!(
            reply.body,
            format!("Path '{outside}' not found. Ping http://.../-/routes for available routes."),
        );
        assert!(reply.headers.contains_key("x-request-id"));
    }
    server.shutdown().await;
}
