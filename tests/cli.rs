//! The `rayai` command, run as a user runs it: init -> create-agent -> plan -> serve -> a chat
//! request -> status -> SIGTERM, and every error path on the way.
//!
//! The generated project builds (dev profile, `--debug`) into this workspace's target directory,
//! so the dependencies it shares with the workspace compile once.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const RAYAI: &str = env!("CARGO_BIN_EXE_rayai");

/// The workspace's target directory (the parent of cargo's per-test temp dir).
fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target/tmp has a parent")
        .to_owned()
}

/// A fresh, empty directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("cli-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn rayai(cwd: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(RAYAI);
    cmd.args(args)
        .current_dir(cwd)
        .env("CARGO_TARGET_DIR", target_dir())
        .env_remove("RAYAI_CONFIG")
        .env_remove("RAYAI_AGENTS")
        .env_remove("RAYAI_HOST")
        .env_remove("RAYAI_PORT");
    cmd
}

fn run(cwd: &Path, args: &[&str]) -> Output {
    rayai(cwd, args).output().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A whole HTTP/1.1 exchange on a new connection: the status code and the body.
fn http(port: u16, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let status = raw
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = raw.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    Ok((status, body))
}

/// Polls until `/-/healthz` answers, or the child exits, or the deadline passes.
fn wait_until_serving(child: &mut Child, port: u16, deadline: Duration) {
    let start = Instant::now();
    loop {
        if let Ok((200, _)) = http(port, "GET", "/-/healthz", "") {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("rayai serve exited early: {status}");
        }
        assert!(start.elapsed() < deadline, "not serving after {deadline:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Sends SIGTERM and waits for the exit status, killing the child after `grace`.
fn terminate(child: &mut Child, grace: Duration) -> Option<std::process::ExitStatus> {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let start = Instant::now();
    while start.elapsed() < grace {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

#[test]
fn help_on_every_subcommand_and_version() {
    let dir = scratch("help");
    let out = run(&dir, &["--version"]);
    assert!(out.status.success());
    assert!(
        text(&out).contains(env!("CARGO_PKG_VERSION")),
        "{}",
        text(&out)
    );
    for sub in ["init", "create-agent", "serve", "plan", "status"] {
        let out = run(&dir, &[sub, "--help"]);
        assert!(out.status.success(), "{sub}: {}", text(&out));
        assert!(text(&out).contains("Usage: rayai"), "{sub}: {}", text(&out));
    }
    let out = run(&dir, &["serve", "--help"]);
    for flag in [
        "--port",
        "--host",
        "--agents",
        "--dashboard-port",
        "--debug",
    ] {
        assert!(text(&out).contains(flag), "{flag}: {}", text(&out));
    }
}

#[test]
fn status_with_nothing_running_says_so() {
    let dir = scratch("status");
    let port = free_port();
    let out = run(
        &dir,
        &["status", "--address", &format!("http://127.0.0.1:{port}")],
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("nothing is running at"),
        "{}",
        text(&out)
    );
}

#[test]
fn init_and_create_agent_refuse_bad_input() {
    let dir = scratch("refuse");
    let out = run(&dir, &["init", "1-bad"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("not a valid project name"),
        "{}",
        text(&out)
    );

    assert!(run(&dir, &["init", "app"]).status.success());
    let app = dir.join("app");
    for file in [
        "Cargo.toml",
        "build.rs",
        "src/main.rs",
        "agents/echo.rs",
        "rayai.toml",
        ".env.example",
        "README.md",
    ] {
        assert!(app.join(file).is_file(), "{file} missing");
    }
    let out = run(&dir, &["init", "app"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("already exists"), "{}", text(&out));

    for bad in ["web-search", "1st", "fn", "a b"] {
        let out = run(&app, &["create-agent", bad]);
        assert!(!out.status.success(), "{bad}");
        assert!(
            text(&out).contains("not a valid agent name"),
            "{bad}: {}",
            text(&out)
        );
    }
    let out = run(&app, &["create-agent", "echo"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("already exists"), "{}", text(&out));
    let out = run(&dir, &["create-agent", "x"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("not a project"), "{}", text(&out));
}

#[test]
fn project_end_to_end() {
    let dir = scratch("e2e");
    let out = run(&dir, &["init", "demo"]);
    assert!(out.status.success(), "{}", text(&out));
    let project = dir.join("demo");
    let out = run(&project, &["create-agent", "writer", "--stream"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(project.join("agents/writer.rs").is_file());

    // plan: builds, then prints the table with both agents, found from agents/ alone.
    let out = run(&dir, &["plan", "demo", "--debug"]);
    let plan = text(&out);
    assert!(out.status.success(), "{plan}");
    assert!(plan.contains("Resource Planning"), "{plan}");
    assert!(plan.lines().any(|l| l.starts_with("echo")), "{plan}");
    assert!(plan.lines().any(|l| l.starts_with("writer")), "{plan}");

    // rayai.toml applies without a rebuild; its mistakes name file, line and key.
    let config = project.join("rayai.toml");
    let original = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("{original}\n[agents.echo]\nnum_replicas = 2\n"),
    )
    .unwrap();
    let out = run(&project, &["plan", "--debug", "--agents", "echo"]);
    assert!(out.status.success(), "{}", text(&out));
    let row = text(&out)
        .lines()
        .find(|l| l.starts_with("echo"))
        .map(str::to_owned)
        .unwrap();
    assert_eq!(row.split_whitespace().nth(1), Some("2"), "{row}");
    let lines = original.lines().count() + 4;
    std::fs::write(
        &config,
        format!("{original}\n[agents.echo]\nnum_replicas = 2\nnum_cpu = 1\n"),
    )
    .unwrap();
    let out = run(&project, &["plan", "--debug"]);
    assert!(!out.status.success());
    let want = format!("rayai.toml:{lines}:1: `num_cpu`");
    assert!(text(&out).contains(&want), "{want}: {}", text(&out));
    std::fs::write(
        &config,
        format!("{original}\n[agents.nope]\nnum_cpus = 1\n"),
    )
    .unwrap();
    let out = run(&project, &["plan", "--debug"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("no agent named `nope`"),
        "{}",
        text(&out)
    );
    std::fs::write(&config, &original).unwrap();

    // --agents with an unknown name: non-zero, and the names that exist.
    let out = run(&project, &["serve", "--debug", "--agents", "echo,nope"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("unknown agent nope; this project has: echo, writer"),
        "{}",
        text(&out)
    );

    // serve on free ports; the chat endpoint answers; status reads the dashboard.
    let port = free_port();
    let dashboard = free_port();
    let mut child = rayai(
        &dir,
        &[
            "serve",
            "demo",
            "--debug",
            "--port",
            &port.to_string(),
            "--dashboard-port",
            &dashboard.to_string(),
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit())
    .spawn()
    .unwrap();
    wait_until_serving(&mut child, port, Duration::from_secs(300));
    let (status, body) = http(
        port,
        "POST",
        "/agents/echo/chat",
        r#"{"data": {"messages": [{"role": "user", "content": "Hello!"}]}}"#,
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("You said: Hello!"), "{body}");
    let out = run(
        &dir,
        &[
            "status",
            "--address",
            &format!("http://127.0.0.1:{dashboard}"),
        ],
    );
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(shown.contains("DEPLOYMENT"), "{shown}");
    assert!(
        shown
            .lines()
            .any(|l| l.contains("echo#0") && l.contains("RUNNING")),
        "{shown}"
    );
    let exit = terminate(&mut child, Duration::from_secs(30));
    let mut printed = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut printed)
        .unwrap();
    assert!(
        exit.is_some_and(|s| s.success()),
        "SIGTERM: {exit:?}\n{printed}"
    );
    assert!(
        printed.contains(&format!(
            "curl -X POST http://127.0.0.1:{port}/agents/echo/chat"
        )),
        "{printed}"
    );

    // A build error: cargo's message, and a non-zero exit.
    std::fs::write(project.join("agents/broken.rs"), "fn broken( {\n").unwrap();
    let out = run(&project, &["plan", "--debug"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("unclosed delimiter"), "{}", text(&out));
    assert!(
        text(&out).contains("could not compile `demo`"),
        "{}",
        text(&out)
    );
}
