//! The gRPC listener, black box, from another language: Python's grpcio (`tests/client.py`)
//! calls the `grpc` example's binary over a real socket: unary and streaming calls (server, client
//! and bidirectional), deadlines, cancellation (seen in `/metrics`), backpressure, routing errors,
//! the agents, health and reflection.
//!
//! The client runs in the virtual environment `.ci/run` makes at `target/grpc-python` (grpcio,
//! grpcio-tools, grpcio-health-checking, grpcio-reflection); `RAYAI_GRPC_PYTHON` names another
//! interpreter. Without one the test fails when `CI` is set and is skipped, saying why,
//! otherwise.

use std::fs::File;

use example_support::process::{Killed, TempDir, free_port, read, venv_python, wait_timeout};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long the server may take to accept connections on its gRPC port.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the client script may run (it takes a few seconds).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);

/// The commands that make the virtual environment (as `.ci/run` runs them).
const INSTALL: &str = "python3 -m venv target/grpc-python && \
     target/grpc-python/bin/pip install grpcio==1.85.3 grpcio-tools==1.85.1 \
     grpcio-health-checking==1.85.1 grpcio-reflection==1.85.1 protobuf==7.36.2";

/// The Python interpreter of the virtual environment, if there is one.
fn python() -> Option<PathBuf> {
    venv_python(
        "RAYAI_GRPC_PYTHON",
        "grpc-python",
        env!("CARGO_MANIFEST_DIR"),
    )
}

#[test]
fn grpcio_client_sees_the_grpc_listener_behave() {
    let Some(python) = python() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "the Python gRPC client is missing: .ci/run installs it into target/grpc-python \
             ({INSTALL})"
        );
        eprintln!(
            "skipping the grpcio client test: target/grpc-python is not installed ({INSTALL})"
        );
        return;
    };
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = TempDir::new("rayai-grpc-python");

    // The client's stubs, from the same protos the server is built from.
    let stubs = tmp.path().join("stubs");
    std::fs::create_dir_all(&stubs).unwrap();
    let greeter_proto = manifest.join("proto");
    let agents_proto = manifest.join("../../rayai-http/proto");
    let out = Command::new(&python)
        .args(["-m", "grpc_tools.protoc"])
        .arg("-I")
        .arg(&greeter_proto)
        .arg("-I")
        .arg(&agents_proto)
        .arg(format!("--python_out={}", stubs.display()))
        .arg(format!("--grpc_python_out={}", stubs.display()))
        .args(["greeter.proto", "rayai/v1/agents.proto"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    assert!(
        out.status.success(),
        "grpc_tools.protoc failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // The server, on ports of its own.
    let (http, grpc, dashboard) = (free_port(), free_port(), free_port());
    let log_path = tmp.path().join("server.log");
    let log = File::create(&log_path).unwrap();
    let server = Command::new(env!("CARGO_BIN_EXE_grpc"))
        .args(["--port", &http.to_string()])
        .args(["--grpc-port", &grpc.to_string()])
        .args(["--dashboard-port", &dashboard.to_string()])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("the grpc example starts");
    let mut server = Killed(server);
    // Ready: the gRPC port accepts connections, and the applications are deployed (the port
    // opens a few milliseconds before `main` deploys them, then prints `gRPC on ...`).
    let grpc_addr = SocketAddr::from(([127, 0, 0, 1], grpc));
    let until = Instant::now() + STARTUP_TIMEOUT;
    while TcpStream::connect_timeout(&grpc_addr, Duration::from_millis(200)).is_err()
        || !read(&log_path).lines().any(|l| l.starts_with("gRPC on "))
    {
        if let Some(status) = server.0.try_wait().unwrap() {
            panic!(
                "the server exited ({status}) before serving gRPC:\n{}",
                read(&log_path)
            );
        }
        assert!(
            Instant::now() < until,
            "the server was not serving gRPC within {STARTUP_TIMEOUT:?}:\n{}",
            read(&log_path)
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // The client.
    let output_path = tmp.path().join("client.out");
    let output = File::create(&output_path).unwrap();
    let mut client = Command::new(&python)
        .arg(manifest.join("tests/client.py"))
        .arg(format!("127.0.0.1:{grpc}"))
        .arg(format!("127.0.0.1:{dashboard}"))
        .arg(&stubs)
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .stdout(output.try_clone().unwrap())
        .stderr(output)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    let started = Instant::now();
    let status = wait_timeout(&mut client, CLIENT_TIMEOUT);
    let report = read(&output_path);
    match status {
        Some(status) if status.success() => {
            println!("{report}client.py took {:?}", started.elapsed());
        }
        Some(status) => panic!(
            "client.py failed ({status}):\n{report}\n--- server log ---\n{}",
            read(&log_path)
        ),
        None => panic!(
            "client.py did not finish within {CLIENT_TIMEOUT:?} (killed):\n{report}\n\
             --- server log ---\n{}",
            read(&log_path)
        ),
    }
    drop(server);
}
