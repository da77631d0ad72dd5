//! The benchmark's own parts, as real processes: `loadgen` counts what it is asked to against
//! `baseline`, and `baseline` answers the bytes `bench-server` (rayai) answers, so that the
//! benchmark compares like with like. Every run is a few hundred requests at most.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

const BODY: &str = r#"{"data":{"messages":[{"role":"user","content":"hello there"}],"n":3},"session_id":"default"}"#;
const SSE_BODY: &str = r#"{"data":{"n":1000},"stream":"text"}"#;

/// A server process, killed when dropped.
struct Server {
    child: Child,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `binary` on a free port and waits for its `... on http://<addr> (pid <pid>)` line.
fn start(binary: &str, args: &[&str]) -> Server {
    let mut child = Command::new(binary)
        .args(["--port", "0"])
        .args(args)
        .env("RUST_LOG", "warn")
        // The three agents fit a 2-CPU machine, whatever this one has.
        .env("RAYAI_NUM_CPUS", "2")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{binary} starts: {e}"));
    let stdout = child.stdout.take().expect("piped stdout");
    let mut server = Server {
        child,
        addr: String::new(),
    };
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("{binary} did not say where it serves"));
        if let Some((_, rest)) = line.split_once(" on http://") {
            assert!(rest.contains("(pid "), "{line}");
            server.addr = rest.split(' ').next().unwrap_or_default().to_owned();
            return server;
        }
    }
}

fn baseline() -> Server {
    start(env!("CARGO_BIN_EXE_baseline"), &[])
}

fn rayai() -> Server {
    start(
        env!("CARGO_BIN_EXE_bench-server"),
        &["--dashboard-port", "0"],
    )
}

/// Runs `loadgen` with `args` and reads its JSON line.
fn loadgen(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .output()
        .expect("loadgen runs");
    assert!(
        out.status.success(),
        "loadgen {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    assert_eq!(text.lines().count(), 1, "one line: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// One `POST` with `Connection: close`: the head's lines (status line first) and the body,
/// unchunked.
fn post(addr: &str, path: &str, body: &str) -> (Vec<String>, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).expect("connects");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("a read timeout");
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("sends");
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).expect("reads the reply");
    let split = reply
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head");
    let head: Vec<String> = String::from_utf8_lossy(&reply[..split])
        .lines()
        .map(str::to_owned)
        .collect();
    let mut rest = &reply[split + 4..];
    let chunked = head
        .iter()
        .any(|h| h.eq_ignore_ascii_case("transfer-encoding: chunked"));
    if !chunked {
        return (head, rest.to_vec());
    }
    let mut body = Vec::new();
    loop {
        let eol = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("a chunk size line");
        let size = usize::from_str_radix(std::str::from_utf8(&rest[..eol]).expect("hex"), 16)
            .expect("a chunk size");
        rest = &rest[eol + 2..];
        if size == 0 {
            return (head, body);
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

/// The head's header names, lowercased and sorted, and the value of each but those that differ
/// from one answer to the next (`date`, `x-request-id`).
fn header_shape(head: &[String]) -> Vec<String> {
    let mut shape: Vec<String> = head[1..]
        .iter()
        .map(|h| {
            let (name, value) = h.split_once(':').expect("a header line");
            let name = name.trim().to_ascii_lowercase();
            match name.as_str() {
                "date" | "x-request-id" => name,
                _ => format!("{name}: {}", value.trim()),
            }
        })
        .collect();
    shape.sort();
    shape
}

#[test]
fn loadgen_counts_what_it_is_asked_to() {
    let server = baseline();
    let url = format!("http://{}/agents/echo/chat", server.addr);

    let counted = loadgen(&["--url", &url, "--body", BODY, "-c", "1", "-n", "50"]);
    assert_eq!(counted["requests"], 50, "{counted}");
    assert_eq!(counted["errors"], 0, "{counted}");
    assert_eq!(counted["non_2xx"], 0, "{counted}");
    assert_eq!(counted["frames"], 0, "{counted}");
    assert!(counted["p99_us"].as_u64().unwrap() >= counted["p50_us"].as_u64().unwrap());
    assert!(counted["req_per_s"].as_f64().unwrap() > 0.0, "{counted}");

    let timed = loadgen(&["--url", &url, "--body", BODY, "-c", "4", "-d", "0.5"]);
    assert!(timed["requests"].as_u64().unwrap() > 0, "{timed}");
    assert_eq!(timed["errors"], 0, "{timed}");
    assert_eq!(timed["non_2xx"], 0, "{timed}");
    let seconds = timed["seconds"].as_f64().unwrap();
    assert!((0.4..5.0).contains(&seconds), "{timed}");

    let streams = loadgen(&["--url", &url, "--body", SSE_BODY, "--sse", "-n", "3"]);
    assert_eq!(streams["requests"], 3, "{streams}");
    assert_eq!(streams["errors"], 0, "{streams}");
    assert_eq!(
        streams["frames"], 3000,
        "every chunk, not the done frame: {streams}"
    );

    // Without a body it GETs, which the baseline answers 404.
    let missing = loadgen(&["--url", &url, "-n", "5"]);
    assert_eq!(missing["requests"], 5, "{missing}");
    assert_eq!(missing["non_2xx"], 5, "{missing}");

    // Nobody listening: errors, not a hang, within the run's time.
    drop(server);
    let refused = loadgen(&["--url", &url, "--body", BODY, "-d", "0.3"]);
    assert_eq!(refused["requests"], 0, "{refused}");
    assert!(refused["errors"].as_u64().unwrap() > 0, "{refused}");
}

#[test]
fn the_baseline_answers_the_bytes_rayai_answers() {
    let (base, ours) = (baseline(), rayai());
    for (path, body) in [
        ("/agents/echo/chat", BODY),
        ("/agents/echo/chat", SSE_BODY),
        ("/agents/echo_shared/chat", BODY),
        ("/agents/echo4/chat", SSE_BODY),
    ] {
        let (b_head, b_body) = post(&base.addr, "/agents/echo/chat", body);
        let (r_head, r_body) = post(&ours.addr, path, body);
        assert_eq!(b_head[0], "HTTP/1.1 200 OK");
        assert_eq!(r_head[0], "HTTP/1.1 200 OK", "{path} {body}");
        assert_eq!(
            String::from_utf8_lossy(&b_body),
            String::from_utf8_lossy(&r_body),
            "{path} {body}"
        );
        assert_eq!(
            header_shape(&b_head),
            header_shape(&r_head),
            "{path} {body}"
        );
    }
    let (_, streamed) = post(&base.addr, "/agents/echo/chat", SSE_BODY);
    let streamed = String::from_utf8(streamed).expect("UTF-8");
    assert_eq!(streamed.matches("data: tok\n\n").count(), 1000);
    assert!(streamed.ends_with("data: {\"type\": \"done\"}\n\n"));

    // loadgen counts rayai's streams as it counts the baseline's.
    let url = format!("http://{}/agents/echo/chat", ours.addr);
    let streams = loadgen(&["--url", &url, "--body", SSE_BODY, "--sse", "-n", "2"]);
    assert_eq!(streams["frames"], 2000, "{streams}");
    assert_eq!(streams["errors"], 0, "{streams}");
}

#[test]
fn hop_floor_forwards_what_the_baseline_answers() {
    let base = baseline();
    let floor = start(env!("CARGO_BIN_EXE_hop-floor"), &["--upstream", &base.addr]);
    for body in [BODY, SSE_BODY] {
        let (b_head, b_body) = post(&base.addr, "/agents/echo/chat", body);
        let (f_head, f_body) = post(&floor.addr, "/agents/echo/chat", body);
        assert_eq!(f_head[0], "HTTP/1.1 200 OK", "{body}");
        assert_eq!(b_body, f_body, "{body}");
        assert_eq!(header_shape(&b_head), header_shape(&f_head), "{body}");
    }
    // Many requests on each of a few kept-alive connections, all forwarded.
    let url = format!("http://{}/agents/echo/chat", floor.addr);
    let run = loadgen(&["--url", &url, "--body", BODY, "-c", "4", "-n", "400"]);
    assert_eq!(run["requests"], 400, "{run}");
    assert_eq!(run["errors"], 0, "{run}");
    assert_eq!(run["non_2xx"], 0, "{run}");
    // An upstream that is gone: the proxy answers 502, it does not hang.
    drop(base);
    let (head, _) = post(&floor.addr, "/agents/echo/chat", BODY);
    assert_eq!(head[0], "HTTP/1.1 502 Bad Gateway");
}
