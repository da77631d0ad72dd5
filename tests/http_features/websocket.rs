//! WebSockets through the proxy: the example's `/ws/echo` (an axum ingress on a replica with
//! thread isolation) reached with a real WebSocket client, messages echoed, a clean close; the
//! `101` in the metrics; and an open WebSocket does not hold shutdown past the grace period.

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpStream};

use http::StatusCode;
use http_features::apps;
use rayai::{App, Deployment, DeploymentConfig, HttpOptions, Isolation, Server};
use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Error as WsError, Message, WebSocket};

use crate::common::{self, EXCHANGE_TIMEOUT, Proto, within};
use crate::{example, options, start};

/// A WebSocket client on a blocking socket whose reads give up after [`EXCHANGE_TIMEOUT`].
type Client = WebSocket<TcpStream>;

/// Opens `ws://addr{path}`: the handshake's answer must be a `101`.
fn connect(addr: SocketAddr, path: &str) -> Client {
    connect_with(addr, path, &[])
}

/// Opens `ws://addr{path}` with extra headers on the handshake.
fn connect_with(addr: SocketAddr, path: &str, headers: &[(&'static str, &'static str)]) -> Client {
    let tcp = TcpStream::connect(addr).expect("connect");
    tcp.set_read_timeout(Some(EXCHANGE_TIMEOUT))
        .expect("a read timeout");
    let mut request = format!("ws://{addr}{path}")
        .into_client_request()
        .expect("a handshake request");
    for (name, value) in headers {
        request
            .headers_mut()
            .insert(*name, http::HeaderValue::from_static(value));
    }
    let (socket, response) = tungstenite::client::client(request, tcp).expect("the handshake");
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert!(
        response.headers().contains_key("x-request-id"),
        "{response:?}"
    );
    socket
}

/// Sends `message` and reads the next message, which must be its echo.
fn echo(socket: &mut Client, message: Message) {
    socket.send(message.clone()).expect("send");
    let reply = socket.read().expect("the echo");
    assert_eq!(reply, message);
}

/// Runs blocking client code off the runtime, failing the test if it takes too long.
async fn blocking<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    within(EXCHANGE_TIMEOUT * 2, what, tokio::task::spawn_blocking(f))
        .await
        .expect("the client code")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_echo_goes_through_the_proxy_and_closes_cleanly() {
    let server = example().await;
    let ws = server.deployment("ws").expect("the ws deployment");
    // The default: the ingress is polled in place inside its replica's runtime, so the task it
    // spawns for the upgraded connection runs on the replica's own thread and crosses back.
    assert_eq!(ws.config().isolation(), Isolation::Auto);
    let addr = server.local_addr();
    let closed = blocking("the WebSocket exchange", move || {
        let mut socket = connect(addr, "/ws/echo");
        for i in 0..5 {
            echo(&mut socket, Message::text(format!("message {i}")));
        }
        echo(&mut socket, Message::binary(vec![0u8, 1, 2, 255]));
        echo(&mut socket, Message::text("x".repeat(64 * 1024)));
        socket
            .close(Some(CloseFrame {
                code: CloseCode::Normal,
                reason: "bye".into(),
            }))
            .expect("close");
        // The server answers the close, then the connection ends.
        let answer = socket.read().expect("the close answered");
        let after = socket.read();
        (answer, after)
    })
    .await;
    let (answer, after) = closed;
    match answer {
        Message::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Normal),
        other => panic!("not a close: {other:?}"),
    }
    assert!(matches!(after, Err(WsError::ConnectionClosed)), "{after:?}");
    // Other requests still flow.
    crate::assert_still_serving(addr).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_timeout_does_not_cut_an_open_websocket() {
    let server = example().await;
    let addr = server.local_addr();
    blocking("the WebSocket exchange", move || {
        // The request's timeout is for its answer, the `101`: the socket outlives it.
        let mut socket = connect_with(addr, "/ws/echo", &[("x-request-timeout-seconds", "0.05")]);
        echo(&mut socket, Message::text("before"));
        std::thread::sleep(std::time::Duration::from_millis(200));
        echo(&mut socket, Message::text("after the request timeout"));
        socket.close(None).expect("close");
        assert!(matches!(socket.read(), Ok(Message::Close(_))));
    })
    .await;
    server.shutdown().await;
}

/// A client WebSocket frame (masked, as clients must) of `opcode` carrying `payload`.
fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126, "a short frame");
    let mask = [0x12, 0x34, 0x56, 0x78];
    let mut frame = vec![0x80 | opcode, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// Reads one unmasked server frame of at most 125 bytes: its first byte and payload.
async fn server_frame(io: &mut (impl tokio::io::AsyncRead + Unpin)) -> (u8, Vec<u8>) {
    use tokio::io::AsyncReadExt;
    let mut head = [0u8; 2];
    within(EXCHANGE_TIMEOUT, "a frame", io.read_exact(&mut head))
        .await
        .expect("a frame head");
    assert_eq!(head[1] & 0x80, 0, "a server frame is not masked");
    let mut payload = vec![0u8; usize::from(head[1] & 0x7f)];
    within(EXCHANGE_TIMEOUT, "a payload", io.read_exact(&mut payload))
        .await
        .expect("a frame payload");
    (head[0], payload)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_over_http2_uses_extended_connect() {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use tokio::io::AsyncWriteExt;

    let server = example().await;
    let addr = server.local_addr();
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .expect("the HTTP/2 handshake");
    let conn = tokio::spawn(conn);
    // A first exchange: the server's settings (extended CONNECT enabled) are in by its answer.
    let healthz = common::request(addr, Proto::H2, http::Method::GET, "/-/healthz")
        .body(common::full(""))
        .expect("a request");
    send.ready().await.expect("ready");
    let first = within(EXCHANGE_TIMEOUT, "healthz", send.send_request(healthz))
        .await
        .expect("healthz over HTTP/2");
    assert_eq!(first.status(), StatusCode::OK);

    let mut connect = common::request(addr, Proto::H2, http::Method::CONNECT, "/ws/echo")
        .header("sec-websocket-version", "13")
        .body(common::full(""))
        .expect("a request");
    connect
        .extensions_mut()
        .insert(hyper::ext::Protocol::from_static("websocket"));
    send.ready().await.expect("ready");
    let response = within(EXCHANGE_TIMEOUT, "the CONNECT", send.send_request(connect))
        .await
        .expect("an answer to the CONNECT");
    assert_eq!(response.status(), StatusCode::OK, "{response:?}");
    let upgraded = within(
        EXCHANGE_TIMEOUT,
        "the upgrade",
        hyper::upgrade::on(response),
    )
    .await
    .expect("the stream, upgraded");
    let mut io = TokioIo::new(upgraded);
    for text in ["one", "two over h2"] {
        io.write_all(&client_frame(0x1, text.as_bytes()))
            .await
            .expect("a text frame");
        assert_eq!(
            server_frame(&mut io).await,
            (0x81, text.as_bytes().to_vec())
        );
    }
    // A close (1000) is answered with a close.
    io.write_all(&client_frame(0x8, &[0x03, 0xe8]))
        .await
        .expect("a close frame");
    let (head, payload) = server_frame(&mut io).await;
    assert_eq!(head, 0x88);
    assert_eq!(payload[..2], [0x03, 0xe8]);
    conn.abort();
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_upgrade_is_counted_as_a_101() {
    let server = start(HttpOptions {
        dashboard_port: Some(0),
        ..options()
    })
    .await;
    let addr = server.local_addr();
    blocking("the WebSocket exchange", move || {
        let mut socket = connect(addr, "/ws/echo");
        echo(&mut socket, Message::text("hi"));
        socket.close(None).expect("close");
        let _ = socket.read();
    })
    .await;
    let dashboard = server.dashboard_addr().expect("the dashboard");
    let metrics = common::get(dashboard, "/metrics").await;
    assert_eq!(metrics.status, StatusCode::OK, "{metrics:?}");
    // Labelled by the route pattern the ingress matched, joined to the app's prefix.
    let counted = r#"ray_serve_num_http_requests_total{application="ws",route="/ws/echo",method="GET",status_code="101"} 1"#;
    assert!(
        metrics.body.lines().any(|line| line == counted),
        "no request counted as a 101 at /ws/echo:\n{}",
        metrics.body
    );
    server.shutdown().await;
}

/// Opens a WebSocket at `path`, then shuts the server down: shutdown returns, and the client
/// sees its connection end (not its read time out).
async fn shutdown_with_a_websocket_open(server: Server, path: &'static str) {
    let addr = server.local_addr();
    let (opened_tx, opened_rx) = tokio::sync::oneshot::channel();
    let client = tokio::task::spawn_blocking(move || {
        let mut socket = connect(addr, path);
        echo(&mut socket, Message::text("still here"));
        let _ = opened_tx.send(());
        // Reads, never closing, until the server ends the connection (or the read times out,
        // which fails the test below).
        loop {
            if let Err(e) = socket.read() {
                return e;
            }
        }
    });
    within(EXCHANGE_TIMEOUT, "the WebSocket to open", opened_rx)
        .await
        .expect("the client opened its socket");
    within(
        EXCHANGE_TIMEOUT,
        "shutdown with a WebSocket open",
        server.shutdown(),
    )
    .await;
    let ended = within(EXCHANGE_TIMEOUT * 2, "the client to see the end", client)
        .await
        .expect("the client task");
    let timed_out = matches!(&ended, WsError::Io(e)
        if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut));
    assert!(!timed_out, "the connection was left open: {ended:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_websocket_does_not_keep_the_server_from_stopping() {
    // The example's options: a grace period of one second.
    shutdown_with_a_websocket_open(example().await, "/ws/echo").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_on_the_servers_runtime_is_cut_at_the_end_of_the_grace_period() {
    // With shared isolation the socket's task runs on the server's own runtime, which outlives
    // shutdown: only the end of the grace period closes it.
    let server = example().await;
    let shared = Deployment::ingress(
        DeploymentConfig::new("ws_shared")
            .with_num_cpus(0.1)
            .with_isolation(Isolation::Shared),
        |_ctx| apps::websockets(),
    );
    server
        .deploy(App::named("ws_shared").deployment(shared), "/shared")
        .await
        .expect("the app deploys");
    shutdown_with_a_websocket_open(server, "/shared/echo").await;
}
