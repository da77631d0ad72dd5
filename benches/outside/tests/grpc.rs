//! The gRPC benchmark's parts, as real processes: `grpc-loadgen` counts what it is asked to
//! against `grpc-baseline`, and `grpc-baseline` answers what `bench-server --grpc-port` (rayai's
//! gRPC listener, the grpc example's `greeter` application) answers, so that the benchmark
//! compares like with like. Every run is a few hundred calls at most.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use grpc::pb::greeter_client::GreeterClient;
use grpc::pb::{HelloReply, HelloRequest};
use serde_json::Value;

/// A server process, killed when dropped.
struct Server {
    child: Child,
    /// Where it serves HTTP (`bench-server`) or gRPC (`grpc-baseline`).
    addr: String,
    /// Where `bench-server --grpc-port` serves gRPC.
    grpc: String,
}

impl Server {
    /// The gRPC URL: the gRPC listener, else the one address.
    fn grpc_url(&self) -> String {
        let addr = if self.grpc.is_empty() {
            &self.addr
        } else {
            &self.grpc
        };
        format!("http://{addr}")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `binary` on a free port and waits for its `... on http://<addr> (pid <pid>)` line,
/// and with `grpc` for its `... gRPC on http://<addr> (pid <pid>)` line too.
fn start(binary: &str, args: &[&str], grpc: bool) -> Server {
    let mut child = Command::new(binary)
        .args(["--port", "0"])
        .args(args)
        .env("RUST_LOG", "warn")
        // The agents and the greeter's 2 replicas fit a 2-CPU machine, whatever this one has.
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
        grpc: String::new(),
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
        assert!(line.contains("(pid "), "{line}");
        if let Some((_, rest)) = line.split_once(" gRPC on http://") {
            server.grpc = rest.split(' ').next().unwrap_or_default().to_owned();
        } else if let Some((_, rest)) = line.split_once(" on http://") {
            server.addr = rest.split(' ').next().unwrap_or_default().to_owned();
        }
        if !server.addr.is_empty() && (!grpc || !server.grpc.is_empty()) {
            return server;
        }
    }
}

fn grpc_baseline() -> Server {
    start(env!("CARGO_BIN_EXE_grpc-baseline"), &[], false)
}

fn rayai() -> Server {
    start(
        env!("CARGO_BIN_EXE_bench-server"),
        &["--dashboard-port", "0", "--grpc-port", "0"],
        true,
    )
}

/// Runs `grpc-loadgen` with `args` and reads its JSON line.
fn grpc_loadgen(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_grpc-loadgen"))
        .args(args)
        .output()
        .expect("grpc-loadgen runs");
    assert!(
        out.status.success(),
        "grpc-loadgen {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    assert_eq!(text.lines().count(), 1, "one line: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// One `SayHello` call to `url` (with `application: greeter` when `app`).
fn say_hello(url: &str, name: &str, app: Option<&str>) -> Result<HelloReply, tonic::Status> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let mut client = GreeterClient::connect(url.to_owned())
            .await
            .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
        let mut req = tonic::Request::new(HelloRequest {
            name: name.to_owned(),
            count: 0,
            delay_ms: 0,
        });
        req.set_timeout(Duration::from_secs(10));
        if let Some(app) = app {
            req.metadata_mut()
                .insert("application", app.parse().expect("ASCII"));
        }
        client.say_hello(req).await.map(tonic::Response::into_inner)
    })
}

#[test]
fn grpc_loadgen_counts_what_it_is_asked_to() {
    let server = grpc_baseline();
    let url = server.grpc_url();

    let counted = grpc_loadgen(&["--url", &url, "-c", "1", "-n", "50"]);
    assert_eq!(counted["requests"], 50, "{counted}");
    assert_eq!(counted["errors"], 0, "{counted}");
    assert!(counted["p99_us"].as_u64().unwrap() >= counted["p50_us"].as_u64().unwrap());
    assert!(counted["req_per_s"].as_f64().unwrap() > 0.0, "{counted}");

    // The `application` metadata changes nothing for tonic.
    let with_app = grpc_loadgen(&["--url", &url, "--application", "greeter", "-n", "7"]);
    assert_eq!(with_app["requests"], 7, "{with_app}");
    assert_eq!(with_app["errors"], 0, "{with_app}");

    let timed = grpc_loadgen(&["--url", &url, "-c", "4", "-d", "0.5"]);
    assert!(timed["requests"].as_u64().unwrap() > 0, "{timed}");
    assert_eq!(timed["errors"], 0, "{timed}");
    let seconds = timed["seconds"].as_f64().unwrap();
    assert!((0.4..5.0).contains(&seconds), "{timed}");

    // A status other than OK is an error: a name past 1000 bytes is INVALID_ARGUMENT.
    let long = "x".repeat(1001);
    let refused = grpc_loadgen(&["--url", &url, "--name", &long, "-n", "5"]);
    assert_eq!(refused["requests"], 0, "{refused}");
    assert_eq!(refused["errors"], 5, "{refused}");

    // Nobody listening: errors, not a hang, within the run's time.
    drop(server);
    let gone = grpc_loadgen(&["--url", &url, "-d", "0.3"]);
    assert_eq!(gone["requests"], 0, "{gone}");
    assert!(gone["errors"].as_u64().unwrap() > 0, "{gone}");
}

#[test]
fn the_grpc_baseline_answers_what_rayai_answers() {
    let (base, ours) = (grpc_baseline(), rayai());
    let (base_url, our_url) = (base.grpc_url(), ours.grpc_url());
    for name in ["hello there", ""] {
        let b = say_hello(&base_url, name, Some("greeter")).expect("the baseline answers");
        let r = say_hello(&our_url, name, Some("greeter")).expect("rayai answers");
        let shared = say_hello(&our_url, name, Some("greeter_shared")).expect("shared answers");
        assert_eq!(shared.message, r.message, "{name:?}");
        assert_eq!(b.message, r.message, "{name:?}");
        // The replica names have the same shape (rayai's are `greeter#0`, `greeter#1`).
        let shape = |s: &str| s.split_once('#').map(|(d, _)| d.to_owned());
        assert_eq!(shape(&b.replica), shape(&r.replica), "{b:?} {r:?}");
        assert_eq!(b.replica.len(), r.replica.len(), "{b:?} {r:?}");
    }
    // With two gRPC applications, a call without the metadata is refused, naming them.
    let r = say_hello(&our_url, "x", None).expect_err("no application named");
    assert_eq!(r.code(), tonic::Code::NotFound);
    assert!(
        r.message().contains("['greeter', 'greeter_shared']"),
        "{r:?}"
    );
    // Both refuse the same calls with the same code.
    let long = "x".repeat(1001);
    let b = say_hello(&base_url, &long, Some("greeter")).expect_err("too long");
    let r = say_hello(&our_url, &long, Some("greeter")).expect_err("too long");
    assert_eq!(b.code(), tonic::Code::InvalidArgument);
    assert_eq!(r.code(), b.code(), "{r:?}");
    assert_eq!(r.message(), b.message());

    // grpc-loadgen counts rayai's calls as it counts the baseline's.
    for args in [
        &["--application", "greeter_shared", "-c", "1", "-n", "40"][..],
        &["--application", "greeter", "-c", "1", "-n", "40"],
    ] {
        let counted = grpc_loadgen(&[&["--url", our_url.as_str()][..], args].concat());
        assert_eq!(counted["requests"], 40, "{args:?} {counted}");
        assert_eq!(counted["errors"], 0, "{args:?} {counted}");
    }
    // An application rayai does not serve: NOT_FOUND, counted as errors.
    let unknown = grpc_loadgen(&["--url", &our_url, "--application", "nope", "-n", "3"]);
    assert_eq!(unknown["requests"], 0, "{unknown}");
    assert_eq!(unknown["errors"], 3, "{unknown}");

    // rayai's HTTP side still serves the echo agents as without --grpc-port.
    let http = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args([
            "--url",
            &format!("http://{}/agents/echo/chat", ours.addr),
            "--body",
            r#"{"data":{}}"#,
            "-n",
            "3",
        ])
        .output()
        .expect("loadgen runs");
    let http: Value = serde_json::from_slice(&http.stdout).expect("loadgen's JSON line");
    assert_eq!(
        (&http["requests"], &http["non_2xx"]),
        (&Value::from(3), &Value::from(0)),
        "{http}"
    );
}
