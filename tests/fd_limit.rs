//! A server limited to 256 file descriptors (`ulimit -n 256`), held by 300 clients that stall
//! in their request bodies, still serves normal requests, and does not flood its log with
//! accept errors. The limit is the process's, so the server runs in a child process: this test
//! binary again, running [`child_server`] under `sh -c 'ulimit -n 256; exec ...'`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rayai::prelude::*;

/// How long the parent waits for any one thing before it fails.
const WAIT: Duration = Duration::from_secs(20);

/// The stalling clients: more than the child's file descriptors.
const STALLED: usize = 300;

/// The conformance example's echo agent.
#[agent(num_cpus = 0.1, memory = "16MB")]
#[derive(Default)]
struct Echo;

impl Agent for Echo {
    async fn run(&self, data: Value) -> Result<Value, AgentError> {
        Ok(json!({ "echo": data }))
    }
}

/// The child: the process's server with its defaults (the port from the environment). Ignored
/// in a normal run; the test below starts it in a process of its own.
#[test]
#[ignore = "the child process of the fd-limit test, which runs it"]
fn child_server() {
    assert!(
        std::env::var_os("RAYAI_TEST_FD_LIMIT_CHILD").is_some(),
        "run by the fd-limit test, in a process of its own"
    );
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(async {
        rayai::serve::run(App::new().agent::<Echo>(), "/")
            .await
            .expect("serves");
    });
}

/// The child process, killed when the test ends.
struct ChildServer(Child);

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn poll(wait: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(started.elapsed() < wait, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One echo request on a new connection: the status line and the body.
fn echo(addr: SocketAddr) -> std::io::Result<String> {
    let body = r#"{"data": {"n": 1}}"#;
    let request = format!(
        "POST /agents/echo/chat HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut tcp = TcpStream::connect_timeout(&addr, WAIT)?;
    tcp.set_read_timeout(Some(WAIT))?;
    tcp.write_all(request.as_bytes())?;
    let mut answer = String::new();
    tcp.read_to_string(&mut answer)?;
    Ok(answer)
}

#[test]
fn three_hundred_stalled_bodies_against_256_fds_leave_normal_requests_served() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let exe = std::env::current_exe().expect("this test binary");
    let mut child = ChildServer(
        Command::new("sh")
            .arg("-c")
            .arg("ulimit -n 256 && exec \"$0\" \"$@\"")
            .arg(exe)
            .args(["--exact", "child_server", "--ignored", "--nocapture"])
            .env("RAYAI_TEST_FD_LIMIT_CHILD", "1")
            .env("RAYAI_PORT", port.to_string())
            .env("RAYAI_DASHBOARD_PORT", "0")
            .env("RUST_LOG", "warn")
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
    poll(WAIT, "the child to serve", || {
        echo(addr).is_ok_and(|a| a.starts_with("HTTP/1.1 200"))
    });

    // Headers, then one byte of a declared 100-byte body, on 300 connections.
    let started = Instant::now();
    let mut stalled = Vec::with_capacity(STALLED);
    for _ in 0..STALLED {
        let mut tcp = TcpStream::connect_timeout(&addr, WAIT).expect("the backlog takes it");
        tcp.write_all(
            b"POST /agents/echo/chat HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
              content-length: 100\r\n\r\n{",
        )
        .expect("the head is written");
        stalled.push(tcp);
    }
    // Normal requests are served while they stall, each well within the body-read timeout.
    for i in 0..5 {
        let began = Instant::now();
        let answer = echo(addr).unwrap_or_else(|e| panic!("request {i} failed: {e}"));
        assert!(
            answer.starts_with("HTTP/1.1 200")
                && answer.ends_with(r#"{"result":{"echo":{"n":1}},"session_id":"default"}"#),
            "request {i}: {answer}"
        );
        assert!(
            began.elapsed() < Duration::from_secs(8),
            "request {i} took {:?}",
            began.elapsed()
        );
    }
    let seconds = started.elapsed().as_secs() + 2;
    assert!(
        child.0.try_wait().expect("the child's state").is_none(),
        "the child died"
    );
    drop(stalled);
    drop(child);
    let logged = logs.join().expect("the log reader");
    let accept_errors = logged.matches("accept failed").count() as u64;
    assert!(
        accept_errors <= seconds,
        "{accept_errors} accept-error lines in {seconds} s:\n{logged}"
    );
}
