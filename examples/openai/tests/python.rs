//! The OpenAI routes, black box, from the official Python SDK (`tests/client.py`): the
//! `openai` example's binary is called over a real socket: models, chat completions whole and
//! streamed, tool calls, errors, backpressure, timeouts and multiplexing (seen in `/metrics`).
//!
//! The client runs in the virtual environment `.ci/run` makes at `target/openai-python` (the
//! `openai` package); `RAYAI_OPENAI_PYTHON` names another interpreter. Without one the test
//! fails when `CI` is set and is skipped, saying why, otherwise.

use std::fs::File;

use example_support::process::{Killed, TempDir, free_port, read, venv_python, wait_timeout};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long the server may take to serve its application.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the client script may run (it takes a few seconds).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);

/// The commands that make the virtual environment (as `.ci/run` runs them).
const INSTALL: &str =
    "python3 -m venv target/openai-python && target/openai-python/bin/pip install openai==3.57.0";

/// The Python interpreter of the virtual environment, if there is one.
fn python() -> Option<PathBuf> {
    venv_python(
        "RAYAI_OPENAI_PYTHON",
        "openai-python",
        env!("CARGO_MANIFEST_DIR"),
    )
}

#[test]
fn openai_python_sdk_sees_the_openai_routes_behave() {
    let Some(python) = python() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "the OpenAI Python SDK is missing: .ci/run installs it into target/openai-python \
             ({INSTALL})"
        );
        eprintln!(
            "skipping the OpenAI Python SDK test: target/openai-python is not installed \
             ({INSTALL})"
        );
        return;
    };
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = TempDir::new("rayai-openai-python");

    // The server, on ports of its own.
    let (http, dashboard) = (free_port(), free_port());
    let log_path = tmp.path().join("server.log");
    let log = File::create(&log_path).unwrap();
    let server = Command::new(env!("CARGO_BIN_EXE_openai"))
        .args(["--port", &http.to_string()])
        .args(["--dashboard-port", &dashboard.to_string()])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("the openai example starts");
    let mut server = Killed(server);
    // Ready: the port accepts connections, and the application is deployed (`main` prints
    // `rayai OpenAI example serving on ...` after deploying it).
    let addr = SocketAddr::from(([127, 0, 0, 1], http));
    let until = Instant::now() + STARTUP_TIMEOUT;
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err()
        || !read(&log_path)
            .lines()
            .any(|l| l.starts_with("rayai OpenAI example serving on "))
    {
        if let Some(status) = server.0.try_wait().unwrap() {
            panic!(
                "the server exited ({status}) before serving:\n{}",
                read(&log_path)
            );
        }
        assert!(
            Instant::now() < until,
            "the server was not serving within {STARTUP_TIMEOUT:?}:\n{}",
            read(&log_path)
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // The client.
    let output_path = tmp.path().join("client.out");
    let output = File::create(&output_path).unwrap();
    let mut client = Command::new(&python)
        .arg(manifest.join("tests/client.py"))
        .arg(http.to_string())
        .arg(dashboard.to_string())
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        // The SDK reads these: none of the caller's may redirect it.
        .env_remove("OPENAI_BASE_URL")
        .env_remove("OPENAI_API_KEY")
        .env("NO_PROXY", "127.0.0.1")
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
