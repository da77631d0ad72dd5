//! SIGTERM, as Kubernetes sends it, to a program that calls `rayai::serve::run`: `/-/healthz`
//! answers 503 through the drain delay, then new connections are refused; a long SSE stream still
//! open at the end of the grace period ends with the contract's error frame and a proper chunked
//! end; and the process exits within grace + drain delay + 1 s. A signal is process-wide, so the
//! server runs in a child process: this test binary again, running [`child_server`].

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rayai::prelude::*;

/// The child's grace period and drain delay.
const GRACE_S: f64 = 2.0;
const DRAIN_DELAY_S: f64 = 1.0;

/// How long the parent waits for any one thing before it fails.
const WAIT: Duration = Duration::from_secs(15);

/// Streams `tick <n>` every 50 ms, for ten minutes at most: still running when the grace period
/// ends.
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
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            .boxed(),
        )
    }
}

/// The child: starts the process's server with a short grace period (the drain delay and the
/// port come from the environment), then `serve::run`, which returns once a signal has shut it
/// down. Ignored in a normal run; the test below starts it in a process of its own.
#[test]
#[ignore = "the child process of the signal test, which runs it"]
fn child_server() {
    assert!(
        std::env::var_os("RAYAI_TEST_SHUTDOWN_CHILD").is_some(),
        "run by the signal test, in a process of its own"
    );
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(async {
        let options = rayai::HttpOptions {
            graceful_shutdown_timeout_s: GRACE_S,
            ..rayai::HttpOptions::try_from_env().expect("valid variables")
        };
        rayai::serve::start(options).await.expect("starts");
        rayai::serve::run(App::new().agent::<Endless>(), "/")
            .await
            .expect("serves");
    });
}

/// The child process, killed when the test fails before it exits.
struct ChildServer(Child);

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn sigterm_drains_ends_the_stream_properly_and_exits_within_grace_and_drain_delay() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut child = ChildServer(
        Command::new(std::env::current_exe().expect("this test binary"))
            .args(["--exact", "child_server", "--ignored", "--nocapture"])
            .env("RAYAI_TEST_SHUTDOWN_CHILD", "1")
            .env("RAYAI_PORT", port.to_string())
            .env("RAYAI_DASHBOARD_PORT", "0")
            .env("RAYAI_DRAIN_DELAY_S", DRAIN_DELAY_S.to_string())
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the child starts"),
    );
    let mut stderr = child.0.stderr.take().expect("piped");
    let logs = std::thread::spawn(move || {
        let mut logged = String::new();
        let _ = stderr.read_to_string(&mut logged);
        logged
    });

    // The port listens once `serve::start` returns, the agent's route only once `serve::run`
    // has deployed it: a request in between is answered 404, as Ray Serve answers it.
    poll(WAIT, "the child to deploy `endless`", || {
        get(addr, "/-/routes").is_some_and(|answer| answer.contains("endless"))
    });

    // A long stream, running when the signal comes.
    let mut stream = open_stream(addr);
    let mut raw = Vec::new();
    read_until(&mut stream, &mut raw, b"data: tick 1\n\n");
    let reader = std::thread::spawn(move || {
        // The rest, until the server closes the connection.
        let _ = stream.read_to_end(&mut raw);
        raw
    });

    let status = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -TERM failed");
    let signalled = Instant::now();

    // The drain delay: probes on new connections see 503, then connections are refused.
    poll(WAIT, "/-/healthz to answer 503", || {
        get(addr, "/-/healthz").is_some_and(|head| head.starts_with("HTTP/1.1 503"))
    });
    poll(WAIT, "new connections to be refused", || {
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err()
    });

    let exit = poll_exit(&mut child.0, WAIT);
    let elapsed = signalled.elapsed();
    let raw = reader.join().expect("the reader");
    let logged = logs.join().expect("the log reader");
    assert!(
        exit.is_some_and(|s| s.success()),
        "the child did not exit cleanly: {exit:?}\n{logged}"
    );
    let bound = Duration::from_secs_f64(GRACE_S + DRAIN_DELAY_S + 1.0);
    assert!(
        elapsed < bound,
        "the child exited {elapsed:?} after SIGTERM, past {bound:?}\n{logged}"
    );

    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (body, terminated) = dechunk(&raw);
    let error_frame =
        "data: {\"type\": \"error\", \"content\": \"The server is shutting down.\"}\n\n";
    assert!(
        body.ends_with(error_frame),
        "the stream does not end with the error frame: {body:?}"
    );
    assert!(!body.contains("\"done\""), "{body:?}");
    assert!(
        terminated,
        "the stream has no chunked terminator: {raw:?}\n{logged}"
    );
}

/// Connects to `addr` (retrying while the child starts) and asks `endless` for a text stream.
fn open_stream(addr: SocketAddr) -> TcpStream {
    let body = r#"{"data": {}, "stream": "text"}"#;
    let request = format!(
        "POST /agents/endless/chat HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut stream = TcpStream::connect(addr).expect("connected");
    stream.set_read_timeout(Some(WAIT)).expect("a read timeout");
    stream.write_all(request.as_bytes()).expect("the request");
    stream
}

/// Reads from `stream` into `raw` until it holds `needle`.
fn read_until(stream: &mut TcpStream, raw: &mut Vec<u8>, needle: &[u8]) {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    while !raw.windows(needle.len()).any(|w| w == needle) {
        assert!(started.elapsed() < WAIT, "no {needle:?} in {raw:?}");
        let n = stream.read(&mut buf).unwrap_or_else(|e| {
            panic!(
                "no {:?} after {:?} ({e}): {:?}",
                String::from_utf8_lossy(needle),
                started.elapsed(),
                String::from_utf8_lossy(raw)
            )
        });
        assert!(
            n > 0,
            "the stream closed early: {:?}",
            String::from_utf8_lossy(raw)
        );
        raw.extend_from_slice(&buf[..n]);
    }
}

/// The whole answer to `GET path` on a new connection, `None` when it cannot be had.
fn get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    tcp.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    tcp.write_all(
        format!("GET {path} HTTP/1.1\r\nhost: rayai\r\nconnection: close\r\n\r\n").as_bytes(),
    )
    .ok()?;
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer);
    Some(String::from_utf8_lossy(&answer).into_owned())
}

/// Polls `condition` every 20 ms until it holds; fails after `wait`, naming `what`.
fn poll(wait: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(
            started.elapsed() < wait,
            "timed out after {wait:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The child's exit status, polled every 20 ms for at most `wait`.
fn poll_exit(child: &mut Child, wait: Duration) -> Option<std::process::ExitStatus> {
    let started = Instant::now();
    while started.elapsed() < wait {
        if let Some(status) = child.try_wait().expect("the child's status") {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// The body of a chunked HTTP/1.1 response, and whether it ended with the last chunk (`0`).
fn dechunk(raw: &str) -> (String, bool) {
    let Some((_head, mut rest)) = raw.split_once("\r\n\r\n") else {
        return (String::new(), false);
    };
    let mut body = String::new();
    loop {
        let Some((size, after)) = rest.split_once("\r\n") else {
            return (body, false);
        };
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            return (body, false);
        };
        if size == 0 {
            return (body, after == "\r\n");
        }
        if after.len() < size + 2 || &after[size..size + 2] != "\r\n" {
            return (body, false);
        }
        body.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
}
