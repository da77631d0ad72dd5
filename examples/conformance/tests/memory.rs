//! After a burst of large request bodies, the conformance server's idle resident memory comes
//! back near where it was (within twice its idle size, within a minute): the binary uses
//! `rayai::alloc::Allocator`, whose background thread returns freed memory to the system.
//! Linux only (it reads `/proc`).

#![cfg(target_os = "linux")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The burst: this many clients at once, each with a body of this size.
const CLIENTS: usize = 8;
const BODY_BYTES: usize = 8 << 20;

/// The server, killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Resident memory of `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// POSTs `data` to the echo agent on a new connection; the status line.
fn echo(addr: SocketAddr, data: &str) -> String {
    let body = format!(r#"{{"data": {{"blob": "{data}"}}}}"#);
    let mut tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connects");
    tcp.set_read_timeout(Some(Duration::from_secs(120)))
        .expect("a read timeout");
    write!(
        tcp,
        "POST /agents/echo/chat HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .expect("the head");
    tcp.write_all(body.as_bytes()).expect("the body");
    let mut answer = Vec::new();
    tcp.read_to_end(&mut answer).expect("the answer");
    String::from_utf8_lossy(&answer[..answer.len().min(15)]).into_owned()
}

#[test]
fn idle_memory_returns_near_its_baseline_after_a_burst_of_large_bodies() {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_conformance"))
        .args(["--port", &port.to_string(), "--dashboard-port", "0"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the example starts");
    let stdout = child.stdout.take().expect("piped");
    let server = Running(child);
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("the example prints where it serves");
    assert!(line.contains("conformance server on"), "{line}");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let pid = server.0.id();

    // Warm: the runtime, the replicas and the metrics have done their first allocations.
    for _ in 0..50 {
        assert!(echo(addr, "warm").starts_with("HTTP/1.1 200"));
    }
    std::thread::sleep(Duration::from_secs(1));
    let baseline = rss_kib(pid);

    let peak = Arc::new(AtomicU64::new(baseline));
    let burst_done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), burst_done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let blob = Arc::new("x".repeat(BODY_BYTES));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let blob = blob.clone();
            std::thread::spawn(move || echo(addr, &blob))
        })
        .collect();
    for client in clients {
        let status = client.join().expect("the client");
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    }
    burst_done.store(true, Ordering::Relaxed);
    sampler.join().expect("the sampler");
    let peak = peak.load(Ordering::Relaxed);
    assert!(
        peak > 3 * baseline,
        "the burst should have grown the server: {baseline} KiB idle, {peak} KiB at the peak"
    );

    let started = Instant::now();
    let mut now = rss_kib(pid);
    while now > 2 * baseline {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "idle memory stayed at {now} KiB a minute after the burst \
             ({baseline} KiB before, {peak} KiB at the peak)"
        );
        std::thread::sleep(Duration::from_millis(500));
        now = rss_kib(pid);
    }
}
