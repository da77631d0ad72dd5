//! What the examples' own tests share: every example is a program of its own that takes
//! `--port`, `--host` and `--dashboard-port`, and serves where it is told. Each example's
//! `tests/flags.rs` hands its binary (cargo's `CARGO_BIN_EXE_<name>`, built and fresh for the
//! test) to [`serves_where_it_is_told`], which starts it as a real process on free ports and asks
//! for its health on the serving port and its dashboard on the dashboard port.

pub mod kubernetes_validate;
pub mod process;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long an example may take to print its address.
const START: Duration = Duration::from_secs(60);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The example, killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `GET path` with `Connection: close`; the status line's code and the body.
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connects");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("a read timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("sends");
    let mut reply = String::new();
    stream.read_to_string(&mut reply).expect("reads the reply");
    let code = reply
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("a status line: {reply:?}"));
    let body = reply
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (code, body)
}

/// Starts the example with the flags and waits until it prints that it serves.
fn start(name: &str, binary: &str, port: u16, dashboard_port: u16) -> Running {
    let mut child = Command::new(binary)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--dashboard-port", &dashboard_port.to_string()])
        .env("RUST_LOG", "warn")
        // Each example's agents fit the 2-CPU machine this is declared as.
        .env("RAYAI_NUM_CPUS", "2")
        .env("RAYAI_MEMORY", "24GB")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("`{name}` starts: {e}"));
    let stdout = child.stdout.take().expect("piped stdout");
    let running = Running(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let wanted = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + START;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(&wanted) => return running,
            Ok(_) => {}
            Err(_) => panic!("`{name}` did not print that it serves on {wanted} within {START:?}"),
        }
    }
}

/// Starts the example `name` (its binary at `binary`) on free ports with `--host`, `--port` and
/// `--dashboard-port`, and checks it serves health on the one and its dashboard on the other.
pub fn serves_where_it_is_told(name: &str, binary: &str) {
    let (port, dashboard_port) = (free_port(), free_port());
    let _example = start(name, binary, port, dashboard_port);
    let serving: SocketAddr = ([127, 0, 0, 1], port).into();
    assert_eq!(
        get(serving, "/-/healthz"),
        (200, "success".to_owned()),
        "{name}"
    );
    let dashboard: SocketAddr = ([127, 0, 0, 1], dashboard_port).into();
    let (code, page) = get(dashboard, "/");
    assert_eq!(
        code, 200,
        "{name}: the dashboard answers on --dashboard-port"
    );
    assert!(
        page.contains("<html") || page.contains("<!doctype"),
        "{name}: {page:.200}"
    );
}
