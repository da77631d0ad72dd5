//! Logs by default: a program that calls `rayai::serve::run` and installs no subscriber of its
//! own logs each request at `info` (readable lines, or JSON with `RAYAI_LOG_FORMAT=json`), and
//! `RUST_LOG` chooses what is logged. The subscriber is process-wide, so each case runs the server
//! in a child process: this test binary again, running [`child_server`].

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rayai::prelude::*;

#[agent(num_cpus = 0.1, memory = "16MB")]
#[derive(Default)]
struct Echo;

impl Agent for Echo {
    async fn run(&self, data: Value) -> Result<Value, AgentError> {
        Ok(json!({ "echo": data }))
    }
}

/// The child: the README's minimal program, with no subscriber installed. Ignored in a normal
/// run; the tests below start it in a process of its own.
#[test]
#[ignore = "the child process of the logging tests, which run it"]
fn child_server() {
    assert!(
        std::env::var_os("RAYAI_TEST_LOG_CHILD").is_some(),
        "run by the logging tests, in a process of its own"
    );
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime
        .block_on(rayai::serve::run(App::new().agent::<Echo>(), "/"))
        .expect("serves");
}

/// Runs the child with `env`, sends one chat request, stops it and returns what it logged.
fn logs_of_one_request(env: &[(&str, &str)]) -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut command = Command::new(std::env::current_exe().expect("this test binary"));
    command
        .args(["--exact", "child_server", "--ignored", "--nocapture"])
        .env("RAYAI_TEST_LOG_CHILD", "1")
        .env("RAYAI_PORT", port.to_string())
        .env("RAYAI_DASHBOARD_PORT", "0")
        .env_remove("RUST_LOG")
        .env_remove("RAYAI_LOG_FORMAT")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().expect("the child starts");
    let answered = send_chat(port);
    let _ = child.kill();
    let mut logged = String::new();
    child
        .stderr
        .take()
        .expect("piped")
        .read_to_string(&mut logged)
        .expect("readable");
    let _ = child.wait();
    assert!(answered, "the child never answered; it logged:\n{logged}");
    logged
}

/// Posts one chat request to 127.0.0.1:`port`, retrying until the server listens (10 s).
fn send_chat(port: u16) -> bool {
    use std::io::Write;
    let deadline = Instant::now() + Duration::from_secs(10);
    let body = r#"{"data": {"hi": 1}}"#;
    while Instant::now() < deadline {
        if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let request = format!(
                "POST /agents/echo/chat HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: \
                 application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            if stream.write_all(request.as_bytes()).is_ok() {
                let mut reply = String::new();
                let _ = stream.read_to_string(&mut reply);
                if reply.starts_with("HTTP/1.1 200") {
                    // Give the access log line a moment to be written.
                    std::thread::sleep(Duration::from_millis(200));
                    return true;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn serve_run_logs_each_request_at_info_with_no_code_change() {
    let logged = logs_of_one_request(&[]);
    assert!(logged.contains("serving on http://127.0.0.1:"), "{logged}");
    let access = logged
        .lines()
        .find(|l| l.contains("POST /agents/echo 200"))
        .unwrap_or_else(|| panic!("no access log line in:\n{logged}"));
    assert!(access.contains("INFO"), "{access}");
    assert!(access.contains("rayai::access"), "{access}");
}

#[test]
fn rayai_log_format_json_writes_one_object_per_line() {
    let logged = logs_of_one_request(&[("RAYAI_LOG_FORMAT", "json")]);
    let lines: Vec<Value> = logged
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("running ") && !l.starts_with("test "))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: not JSON: {l}")))
        .collect();
    let access = lines
        .iter()
        .find(|l| l["target"] == "rayai::access")
        .unwrap_or_else(|| panic!("no access log object in:\n{logged}"));
    assert_eq!(access["level"], "INFO", "{access}");
    assert_eq!(access["method"], "POST", "{access}");
    assert_eq!(access["status"], 200, "{access}");
    assert_eq!(access["route"], "/agents/echo", "{access}");
}

#[test]
fn rust_log_chooses_what_is_logged() {
    let logged = logs_of_one_request(&[("RUST_LOG", "warn")]);
    assert!(!logged.contains("rayai::access"), "{logged}");
}
