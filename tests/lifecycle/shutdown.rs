//! Shutdown and isolation: shutdown lets a running stream finish and turns new connections away;
//! `/-/healthz` says 503 through the drain delay while the listener still serves, then new
//! connections are refused; one grace period covers the connections and the replicas, and what
//! still runs at its end is ended properly (an agent's stream with the error frame and a clean
//! end, a plain body aborted, an unanswered request a 503); an agent that blocks its thread
//! stalls neither other agents nor `/-/healthz`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use http::{Method, StatusCode};
use rayai::prelude::*;
use rayai::{HttpOptions, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::common::{
    EXCHANGE_TIMEOUT, Proto, Streaming, eventually, full, get, json_post, open, open_post, post,
    request, serve_on, start_post, within,
};
use crate::fixtures::{BLOCKER_STARTED, Blocker, Quick, TICKER_ENDED, Ticker};
use crate::{POLL, chat, ms, node};

/// Whether a new connection to `addr` is turned away: refused, or closed without a response.
/// Panics when it is served a `200`: `/-/healthz` says 503 from the moment shutdown begins.
async fn turned_away(addr: std::net::SocketAddr) -> bool {
    let Ok(mut tcp) = TcpStream::connect(addr).await else {
        return true;
    };
    let request = b"GET /-/healthz HTTP/1.1\r\nhost: rayai\r\nconnection: close\r\n\r\n";
    if tcp.write_all(request).await.is_err() {
        return true;
    }
    let mut answer = Vec::new();
    within(EXCHANGE_TIMEOUT, "the server to answer or close", async {
        // A reset counts as closing.
        let _ = tcp.read_to_end(&mut answer).await;
    })
    .await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        !answer.starts_with("HTTP/1.1 200"),
        "a connection made after shutdown began was served: {answer:?}"
    );
    answer.is_empty()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_a_running_stream_finish_and_turns_new_connections_away() {
    let server = serve_on(node(), App::new().agent::<Ticker>()).await;
    let addr = server.local_addr();
    let mut stream = open_post(addr, &chat("ticker"), r#"{"data": {}, "stream": "text"}"#).await;
    assert_eq!(stream.status, StatusCode::OK);
    let mut body = String::new();
    while !body.contains("tick 1") {
        let frame = stream
            .frame(EXCHANGE_TIMEOUT)
            .await
            .expect("the first chunk");
        body.push_str(&String::from_utf8_lossy(&frame));
    }

    let stopping = {
        let server = server.clone();
        let mut stopping = Box::pin(async move {
            server.shutdown().await;
            Instant::now()
        });
        // Shutdown begins on this first poll; the rest runs in the background.
        assert!(futures::poll!(&mut stopping).is_pending());
        tokio::spawn(stopping)
    };
    eventually(POLL, "new connections to be turned away", || {
        turned_away(addr)
    })
    .await;

    while let Some(frame) = stream.frame(EXCHANGE_TIMEOUT).await {
        body.push_str(&String::from_utf8_lossy(&frame));
    }
    assert_eq!(
        body,
        "data: tick 1\n\ndata: tick 2\n\ndata: tick 3\n\ndata: tick 4\n\ndata: tick 5\n\n\
         data: {\"type\": \"done\"}\n\n"
    );

    let returned = within(POLL, "shutdown to return", stopping)
        .await
        .expect("the shutdown task");
    let ended = TICKER_ENDED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .expect("the stream ran to its end");
    assert!(
        returned >= ended,
        "shutdown returned before the stream ended"
    );
    assert!(
        turned_away(addr).await,
        "a connection after shutdown was served"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_blocking_its_thread_stalls_neither_other_agents_nor_healthz() {
    let app = App::new().agent::<Blocker>().agent::<Quick>();
    let server = serve_on(node(), app).await;
    let addr = server.local_addr();

    let blocked = start_post(addr, &chat("blocker"), r#"{"data": {}}"#);
    eventually(POLL, "the blocking request to start", || async {
        BLOCKER_STARTED.load(Ordering::SeqCst)
    })
    .await;
    let started = Instant::now();

    let path = chat("quick");
    let quick = (0..20).map(|_| post(addr, &path, r#"{"data": {}}"#));
    let (replies, health) = tokio::join!(futures::future::join_all(quick), get(addr, "/-/healthz"));
    let elapsed = started.elapsed();
    if blocked.is_finished() {
        let r = blocked.reply().await;
        panic!(
            "the blocking request returned first ({elapsed:?}): {} {}",
            r.status, r.body
        );
    }
    for r in &replies {
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    assert_eq!(
        (health.status, health.body.as_str()),
        (StatusCode::OK, "success")
    );
    assert!(
        elapsed < Duration::from_secs(1),
        "20 requests took {elapsed:?}"
    );

    let r = blocked.reply().await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

/// The message of what shutdown ends at the end of the grace period.
const SHUTTING_DOWN: &str = "The server is shutting down.";

/// Set when [`Sleeper`]'s `run` starts.
static SLEEPER_STARTED: AtomicU32 = AtomicU32::new(0);

/// Sleeps a minute per request, its replica busy all along.
#[agent(name = "sleeper", num_cpus = 0.1, memory = "16MB")]
#[derive(Default)]
struct Sleeper;

impl Agent for Sleeper {
    async fn run(&self, _data: Value) -> Result<Value, AgentError> {
        SLEEPER_STARTED.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(60)).await;
        Ok(json!({}))
    }
}

/// Streams `tick <n>` every 50 ms, for ten minutes at most.
#[agent(name = "endless", num_cpus = 0.1, memory = "16MB")]
#[derive(Default)]
struct Endless;

impl Agent for Endless {
    async fn run(&self, _data: Value) -> Result<Value, AgentError> {
        Ok(json!({}))
    }

    fn run_stream(&self, _data: Value) -> Option<TextStream<'_>> {
        Some(
            try_stream! {
                for i in 0..12_000 {
                    yield format!("tick {i}");
                    tokio::time::sleep(ms(50)).await;
                }
            }
            .boxed(),
        )
    }
}

/// A plain body (not an event stream) that sends a chunk every 50 ms, for ten minutes at most.
#[deployment(num_cpus = 0.1, memory = "16MB", isolation = "shared")]
#[derive(Default)]
struct EndlessBody;

impl Handler for EndlessBody {
    async fn call(&self, _req: rayai::Request) -> rayai::Response {
        let chunks = rayai::stream::stream! {
            for i in 0..12_000 {
                yield Ok::<_, std::convert::Infallible>(bytes::Bytes::from(format!("chunk {i}\n")));
                tokio::time::sleep(ms(50)).await;
            }
        };
        rayai::Response::new(rayai::handler::stream_body(chunks))
    }
}

/// A server on a free port with this drain delay and grace period, on a node of its own, with
/// `app` at `/`.
async fn serve_with(app: App, drain_delay_s: f64, graceful_shutdown_timeout_s: f64) -> Server {
    let options = HttpOptions {
        host: "127.0.0.1".to_owned(),
        port: 0,
        dashboard_port: None,
        drain_delay_s,
        graceful_shutdown_timeout_s,
        ..HttpOptions::default()
    };
    let server = Server::start_with(options, node())
        .await
        .expect("the server starts");
    server.deploy(app, "/").await.expect("the app deploys");
    server
}

/// Opens a stream of `endless` over `proto` and waits for its first frame.
async fn open_endless(addr: std::net::SocketAddr, proto: Proto) -> Streaming {
    let req = json_post(
        addr,
        proto,
        &chat("endless"),
        &[],
        r#"{"data": {}, "stream": "text"}"#,
    );
    let mut stream = open(addr, proto, req).await;
    assert_eq!(stream.status, StatusCode::OK);
    let first = stream
        .frame(EXCHANGE_TIMEOUT)
        .await
        .expect("the first tick");
    assert!(first.starts_with(b"data: tick"), "{first:?}");
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_is_503_through_the_drain_delay_while_requests_are_served_then_refused() {
    let server = serve_with(App::new().agent::<Quick>(), 3.0, 1.0).await;
    let addr = server.local_addr();
    let health = get(addr, "/-/healthz").await;
    assert_eq!(
        (health.status, health.body.as_str()),
        (StatusCode::OK, "success")
    );

    let stopping = {
        let server = server.clone();
        tokio::spawn(async move { server.shutdown().await })
    };
    // A load balancer's probe, on a new connection each time, sees the server leave...
    eventually(POLL, "/-/healthz to answer 503", || async {
        get(addr, "/-/healthz").await.status == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    let health = get(addr, "/-/healthz").await;
    assert_eq!(
        (health.status, health.body.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "draining")
    );
    // ...while requests on new connections are still served...
    let reply = post(addr, &chat("quick"), r#"{"data": {}}"#).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    // ...until the drain delay is over and the listener closes.
    eventually(POLL, "new connections to be refused", || async {
        TcpStream::connect(addr).await.is_err()
    })
    .await;
    within(POLL, "shutdown to return", stopping)
        .await
        .expect("the shutdown task");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_grace_period_covers_connections_and_replicas_and_ends_what_still_runs() {
    let grace = Duration::from_secs(2);
    let app = App::new().agent::<Endless>().agent::<Sleeper>();
    let server = serve_with(app, 0.0, grace.as_secs_f64()).await;
    let plain_app = App::named("plain").handler::<EndlessBody>();
    server.deploy(plain_app, "/plain").await.expect("deploys");
    let addr = server.local_addr();

    // Running when shutdown begins: agent streams over HTTP/1.1 and HTTP/2, a plain streamed
    // body, a request still unanswered, and the replica busy with a call from a handle.
    let mut sse_h1 = open_endless(addr, Proto::H1).await;
    let mut sse_h2 = open_endless(addr, Proto::H2).await;
    let req = request(addr, Proto::H1, Method::GET, "/plain")
        .body(full(""))
        .expect("a valid request");
    let mut plain = open(addr, Proto::H1, req).await;
    assert_eq!(plain.status, StatusCode::OK);
    plain
        .frame(EXCHANGE_TIMEOUT)
        .await
        .expect("the first chunk");
    let unanswered = start_post(addr, &chat("sleeper"), r#"{"data": {}}"#);
    let sleeper = server.deployment("sleeper").expect("sleeper is deployed");
    let from_handle = tokio::spawn(async move { sleeper.call(json!({})).await });
    eventually(POLL, "both sleeper requests to run", || async {
        SLEEPER_STARTED.load(Ordering::SeqCst) == 2
    })
    .await;

    let started = Instant::now();
    within(
        grace * 2 + EXCHANGE_TIMEOUT,
        "shutdown to return",
        server.shutdown(),
    )
    .await;
    let elapsed = started.elapsed();
    assert!(
        elapsed < grace * 2,
        "shutdown took {elapsed:?}: the connections and the replicas each waited a grace period of {grace:?}"
    );

    let error_frame =
        format!("data: {{\"type\": \"error\", \"content\": \"{SHUTTING_DOWN}\"}}\n\n");
    for (proto, stream) in [("HTTP/1.1", &mut sse_h1), ("HTTP/2", &mut sse_h2)] {
        let (frames, end) = stream.rest_or_break(EXCHANGE_TIMEOUT).await;
        let body = String::from_utf8_lossy(&frames.concat()).into_owned();
        assert!(
            body.ends_with(&error_frame),
            "{proto}: the stream does not end with the error frame: {body:?}"
        );
        assert!(!body.contains("\"done\""), "{proto}: {body:?}");
        assert_eq!(end, Ok(()), "{proto}: the body does not end cleanly");
    }
    let (_, end) = plain.rest_or_break(EXCHANGE_TIMEOUT).await;
    assert!(end.is_err(), "a cut plain body ended as if it were whole");

    let reply = unanswered.reply().await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, SHUTTING_DOWN)
    );
    assert!(!reply.header("x-request-id").is_empty());
    // The call from the handle is left to the process's end (it holds its replica).
    from_handle.abort();
}
