//! The `rayai` command, run as a user runs it: init -> create-agent -> plan -> serve -> a chat
//! request -> status -> SIGTERM, and every error path on the way.
//!
//! The generated project builds (dev profile, `--debug`) into this workspace's target directory,
//! so the dependencies it shares with the workspace compile once.

use example_support::kubernetes_validate;

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
        .env_remove("RAYAI_PORT")
        .env_remove("RAYAI_DASHBOARD_PORT")
        .env_remove("RAYAI_DASHBOARD_HOST")
        .env_remove("RAYAI_DASHBOARD_TOKEN")
        .env_remove("RAYAI_PROJECT")
        .env_remove("RAYAI_STRICT")
        .env_remove("RAYAI_NUM_CPUS")
        .env_remove("RUST_LOG")
        .env_remove("RAYAI_LOG_FORMAT");
    cmd
}

/// This workspace: the rayai checkout generated projects depend on by path, so they build offline.
const WORKSPACE: &str = env!("CARGO_MANIFEST_DIR");

/// Every file and directory under `dir`, relative and sorted (hidden ones too).
fn listing(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            out.push(path.strip_prefix(root).unwrap().display().to_string());
            if path.is_dir() {
                walk(root, &path, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// A refusal: a non-zero exit and one line, `error: ...`, with each of `needles`.
#[track_caller]
fn assert_refused(out: &Output, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{}", text(out));
    assert_eq!(stderr.lines().count(), 1, "not one line: {stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "{needle}: {stderr}");
    }
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

/// Kills the process when the test fails before it stops it, so no server outlives the test (nor
/// holds its output pipe open).
struct KillOnPanic(u32);

impl Drop for KillOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = Command::new("kill")
                .args(["-KILL", &self.0.to_string()])
                .status();
        }
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
        "--metrics-export-port",
        "--debug",
    ] {
        assert!(text(&out).contains(flag), "{flag}: {}", text(&out));
    }
    let out = run(&dir, &["init", "--help"]);
    for flag in [
        "--rayai-version",
        "--rayai-path",
        "--rayai-git",
        "--rayai-rev",
        "--rayai-branch",
    ] {
        assert!(text(&out).contains(flag), "{flag}: {}", text(&out));
    }
    let out = run(&dir, &["status", "--help"]);
    for flag in [
        "[PROJECT_PATH]",
        "--address",
        "--dashboard-port",
        "--token",
        "--any-project",
        "--json",
        "--name",
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
fn init_writes_the_rayai_dependency_asked_for() {
    let dir = scratch("deps");
    let version = env!("CARGO_PKG_VERSION");
    let out = run(&dir, &["init", "reg"]);
    assert!(out.status.success(), "{}", text(&out));
    let line = format!("rayai dependency: rayai = \"{version}\" (crates.io)");
    assert!(text(&out).contains(&line), "{}", text(&out));
    let manifest = std::fs::read_to_string(dir.join("reg/Cargo.toml")).unwrap();
    assert!(
        manifest.contains(&format!("\nrayai = \"{version}\"\n")),
        "{manifest}"
    );
    assert!(!dir.join("reg/Cargo.lock").exists());

    let out = run(&dir, &["init", "pinned", "--rayai-version", "0.1"]);
    assert!(out.status.success(), "{}", text(&out));
    let manifest = std::fs::read_to_string(dir.join("pinned/Cargo.toml")).unwrap();
    assert!(manifest.contains("\nrayai = \"0.1\"\n"), "{manifest}");

    let out = run(&dir, &["init", "local", "--rayai-path", WORKSPACE]);
    assert!(out.status.success(), "{}", text(&out));
    let checkout = Path::new(WORKSPACE).canonicalize().unwrap();
    let dep = format!("rayai = {{ path = {:?} }}", checkout.display().to_string());
    assert!(
        text(&out).contains(&format!("rayai dependency: {dep} (a local checkout)")),
        "{}",
        text(&out)
    );
    let manifest = std::fs::read_to_string(dir.join("local/Cargo.toml")).unwrap();
    assert!(manifest.contains(&dep), "{manifest}");
    assert!(dir.join("local/Cargo.lock").is_file());

    let url = "https://example.invalid/rayai.git";
    let out = run(
        &dir,
        &["init", "git", "--rayai-git", url, "--rayai-branch", "main"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let manifest = std::fs::read_to_string(dir.join("git/Cargo.toml")).unwrap();
    assert!(
        manifest.contains(&format!("rayai = {{ git = \"{url}\", branch = \"main\" }}")),
        "{manifest}"
    );

    // The flags exclude each other (clap's usage error, exit code 2).
    let out = run(
        &dir,
        &["init", "x", "--rayai-path", WORKSPACE, "--rayai-git", url],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("cannot be used with"), "{}", text(&out));
    assert!(!dir.join("x").exists());
}

#[test]
fn init_refuses_bad_input_and_leaves_nothing() {
    let dir = scratch("refuse-init");
    for bad in ["1-bad", "a.b", "fn", "self", "test", "rayai", "deps"] {
        let out = run(&dir, &["init", bad]);
        assert_refused(&out, &[&format!("`{bad}` is not a valid project name: ")]);
    }
    let out = run(&dir, &["init", "nested/app"]);
    assert_refused(&out, &["cannot create nested/app", "does not exist"]);
    let out = run(&dir, &["init", "."]);
    assert_refused(&out, &["does not name a new directory"]);

    // --rayai-path must be a checkout of rayai; nothing is written when it is not.
    let out = run(&dir, &["init", "app", "--rayai-path", "nowhere"]);
    assert_refused(&out, &["--rayai-path nowhere: no such directory"]);
    let out = run(&dir, &["init", "app", "--rayai-path", "."]);
    assert_refused(&out, &["it has no Cargo.toml"]);
    let core = format!("{WORKSPACE}/rayai-core");
    let out = run(&dir, &["init", "app", "--rayai-path", &core]);
    assert_refused(
        &out,
        &["the package `rayai-core`, not of the package `rayai`"],
    );
    assert_eq!(listing(&dir), Vec::<String>::new());

    // An existing directory or file.
    std::fs::create_dir(dir.join("taken")).unwrap();
    std::fs::write(dir.join("taken/notes.txt"), "mine").unwrap();
    std::fs::write(dir.join("file"), "mine").unwrap();
    let before = listing(&dir);
    let out = run(&dir, &["init", "taken"]);
    assert_refused(&out, &["`taken` already exists and is not empty"]);
    let out = run(&dir, &["init", "file"]);
    assert_refused(&out, &["`file` already exists and is not a directory"]);
    assert_eq!(listing(&dir), before);

    // An empty directory is filled.
    std::fs::create_dir(dir.join("empty")).unwrap();
    let out = run(&dir, &["init", "empty"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(dir.join("empty/agents/echo.rs").is_file());
    let out = run(&dir, &["init", "empty"]);
    assert_refused(&out, &["already exists"]);
    // No staging directory is left next to the projects.
    assert!(
        listing(&dir).iter().all(|p| !p.starts_with('.')),
        "{:?}",
        listing(&dir)
    );
}

#[test]
fn create_agent_refuses_bad_input_and_leaves_nothing() {
    let dir = scratch("refuse-agent");
    let out = run(&dir, &["init", "app"]);
    assert!(out.status.success(), "{}", text(&out));
    let app = dir.join("app");
    for file in [
        "Cargo.toml",
        "build.rs",
        "src/main.rs",
        "agents/echo.rs",
        "rayai.toml",
        ".env.example",
        "README.md",
        "Dockerfile",
        ".dockerignore",
    ] {
        assert!(app.join(file).is_file(), "{file} missing");
    }
    // The image builds the project's own binary, with the Kubernetes feature.
    let dockerfile = std::fs::read_to_string(app.join("Dockerfile")).unwrap();
    assert!(
        dockerfile.contains("ENTRYPOINT [\"/usr/local/bin/app\"]")
            && dockerfile.contains("--features rayai/kubernetes")
            && dockerfile.contains("USER 10001"),
        "{dockerfile}"
    );
    // Small reservations, so a handful of agents fit on a small machine.
    let echo = std::fs::read_to_string(app.join("agents/echo.rs")).unwrap();
    assert!(
        echo.contains("#[agent(num_cpus = 0.25, memory = \"256MB\")]"),
        "{echo}"
    );

    std::fs::write(app.join("agents/web-search.rs"), "").unwrap();
    let before = listing(&app);
    for bad in ["web-search", "1st", "fn", "a b", "main", "rayai"] {
        let out = run(&app, &["create-agent", bad]);
        assert_refused(&out, &[&format!("`{bad}` is not a valid agent name: ")]);
    }
    let out = run(&app, &["create-agent", "echo"]);
    assert_refused(&out, &["agent `echo` already exists", "agents/echo.rs"]);
    // Its module would be `web_search` too.
    let out = run(&app, &["create-agent", "web_search"]);
    assert_refused(
        &out,
        &["agent `web_search` already exists", "web-search.rs"],
    );
    assert_eq!(listing(&app), before);

    let out = run(&dir, &["create-agent", "x"]);
    assert_refused(&out, &["is not a project (no Cargo.toml)"]);
    std::fs::write(
        dir.join("Cargo.toml"),
        "[package]\nname = \"other\"\nversion = \"0.1.0\"\n",
    )
    .unwrap();
    let out = run(&dir, &["create-agent", "x"]);
    assert_refused(&out, &["is not a rayai project"]);
    assert!(!dir.join("agents").exists());

    let out = run(
        &dir,
        &["create-agent", "--project", "app", "writer", "--stream"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let writer = std::fs::read_to_string(app.join("agents/writer.rs")).unwrap();
    assert!(writer.contains("num_cpus = 0.25"), "{writer}");
    assert!(writer.contains("pub struct Writer;"), "{writer}");
    assert!(
        listing(&app.join("agents"))
            .iter()
            .all(|p| !p.starts_with('.')),
        "{:?}",
        listing(&app)
    );
}

#[test]
fn project_end_to_end() {
    let dir = scratch("e2e");
    let out = run(&dir, &["init", "demo", "--rayai-path", WORKSPACE]);
    assert!(out.status.success(), "{}", text(&out));
    let project = dir.join("demo");
    // Another project, never built: `status` refuses to show demo's server as its own.
    let out = run(&dir, &["init", "other", "--rayai-path", WORKSPACE]);
    assert!(out.status.success(), "{}", text(&out));
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

    // k8s render: builds with rayai's `kubernetes` feature, prints one Deployment and Service per
    // agent (stdout is only YAML), valid against Kubernetes' schemas.
    let out = rayai(
        &dir,
        &[
            "k8s",
            "render",
            "demo",
            "--debug",
            "--image",
            "example.org/demo:1",
            "--namespace",
            "agents",
        ],
    )
    .output()
    .unwrap();
    let yaml = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(yaml.starts_with("---\n"), "{yaml}");
    for name in ["demo-echo", "demo-writer"] {
        assert!(
            yaml.contains(&format!("  name: {name}\n")),
            "{name}: {yaml}"
        );
    }
    assert!(yaml.contains("image: example.org/demo:1"), "{yaml}");
    kubernetes_validate::validate(&yaml, &[]);
    // A fraction of a GPU cannot be rendered: the message names the agent and the ways to share.
    std::fs::write(
        &config,
        format!("{original}\n[agents.echo]\nnum_gpus = 0.5\n"),
    )
    .unwrap();
    let out = rayai(
        &dir,
        &[
            "k8s",
            "render",
            "demo",
            "--debug",
            "--image",
            "example.org/demo:1",
        ],
    )
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    for needle in [
        "deployment `echo` asks for num_gpus = 0.5",
        "time-slicing",
        "MIG",
    ] {
        assert!(stderr.contains(needle), "{needle}: {stderr}");
    }
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
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let _guard = KillOnPanic(child.id());
    // The server's log, read as it comes so that the pipe never fills.
    let mut stderr = child.stderr.take().unwrap();
    let logged = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
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
    let dashboard_url = format!("http://127.0.0.1:{dashboard}");
    let out = run(&dir, &["status", "--address", &dashboard_url]);
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    // Ray's `serve status`: the proxy, each agent's application and deployment, replicas by state.
    for line in [
        "proxies:",
        "applications:",
        "  echo-service:",
        "    status: RUNNING",
        "      echo-deployment:",
        "        status: HEALTHY",
        "        status_trigger: CONFIG_UPDATE_COMPLETED",
        "          RUNNING: 1",
        "target_capacity: null",
    ] {
        assert!(shown.lines().any(|l| l == line), "no `{line}` in:\n{shown}");
    }
    // And the status API's whole answer, Ray's ServeInstanceDetails.
    let json = run(&dir, &["status", "--address", &dashboard_url, "--json"]);
    assert!(json.status.success(), "{}", text(&json));
    let details: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    let replicas =
        &details["applications"]["echo-service"]["deployments"]["echo-deployment"]["replicas"];
    assert_eq!(replicas[0]["replica_id"], "echo#0", "{details}");
    assert_eq!(replicas[0]["pid"], child.id(), "{details}");
    // The server says which it is; `rayai serve` told it its project (and, on Unix, became it).
    let canonical = project.canonicalize().unwrap();
    let server_line = format!(
        "server: http://127.0.0.1:{port} (pid {}, project {})",
        child.id(),
        canonical.display()
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().next(),
        Some(server_line.as_str()),
        "{shown}"
    );
    // Run in the project (found from the current directory), by its dashboard port.
    let out = run(
        &project,
        &["status", "--dashboard-port", &dashboard.to_string()],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).starts_with(&server_line), "{}", text(&out));
    // Run for another project: refused, naming both.
    let out = run(&dir, &["status", "other", "--address", &dashboard_url]);
    let other = dir.join("other").canonicalize().unwrap();
    assert_refused(
        &out,
        &[&format!(
            "the server at {dashboard_url} serves project {}, not {}: ",
            canonical.display(),
            other.display()
        )],
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

    // The project logs each request at info with no code change of its own.
    let logged = logged.join().unwrap();
    assert!(
        logged
            .lines()
            .any(|l| l.contains("INFO") && l.contains("POST /agents/echo 200")),
        "no access-log line in:\n{logged}"
    );

    // Placement: on a machine of half a CPU, echo's two replicas and writer's one (a quarter
    // CPU each) do not all fit. By default what fits starts; --strict refuses, with the plan and
    // the ways out.
    std::fs::write(
        &config,
        format!("{original}\n[agents.echo]\nnum_replicas = 2\n"),
    )
    .unwrap();
    let strict = rayai(
        &dir,
        &[
            "serve",
            "demo",
            "--debug",
            "--strict",
            "--port",
            &free_port().to_string(),
            "--dashboard-port",
            "0",
        ],
    )
    .env("RAYAI_NUM_CPUS", "0.5")
    .output()
    .unwrap();
    assert!(!strict.status.success(), "{}", text(&strict));
    let refused = text(&strict);
    assert!(refused.contains("Resource Planning"), "{refused}");
    assert!(refused.contains("RAYAI_NUM_CPUS"), "{refused}");
    assert!(refused.contains("--strict"), "{refused}");
    std::fs::write(&config, &original).unwrap();

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

/// `GET path` on `port`, as JSON.
fn get_json(port: u16, path: &str) -> serde_json::Value {
    let (status, body) = http(port, "GET", path, "").unwrap();
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// The target replicas of the deployment of `app` whose name starts with `deployment`, in the
/// status API (whatever its field's name on this version).
fn target_replicas(status: &serde_json::Value, app: &str, deployment: &str) -> Option<u64> {
    let deployments = status["applications"][app]["deployments"].as_object()?;
    let (_, d) = deployments
        .iter()
        .find(|(name, _)| name.starts_with(deployment))?;
    d.get("target_num_replicas")
        .or_else(|| d.get("target_replicas"))?
        .as_u64()
}

#[test]
fn deploy_end_to_end() {
    let dir = scratch("deploy");
    let out = run(&dir, &["deploy", "--help"]);
    assert!(out.status.success(), "{}", text(&out));
    for flag in ["<CONFIG_FILE>", "--address", "--token"] {
        assert!(text(&out).contains(flag), "{flag}: {}", text(&out));
    }
    // A mistake in the file is found before anything is sent: the file, its line, the field.
    std::fs::write(
        dir.join("bad.yaml"),
        "applications:\n  - name: echo-service\n    import_path: agents:echo\n    deployments:\n      - name: echo\n        num_replicas: 0\n",
    )
    .unwrap();
    let out = run(
        &dir,
        &["deploy", "bad.yaml", "--address", "http://127.0.0.1:9"],
    );
    assert_refused(
        &out,
        &["bad.yaml:6:", "applications[0].deployments[0].num_replicas"],
    );

    let out = run(&dir, &["init", "decl", "--rayai-path", WORKSPACE]);
    assert!(out.status.success(), "{}", text(&out));
    let project = dir.join("decl");
    // rayai.toml in Ray's schema: read at start.
    let config = project.join("rayai.toml");
    let original = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!(
            "{original}\n[[applications]]\nname = \"echo-service\"\nimport_path = \"agents:echo\"\n\n\
             [[applications.deployments]]\nname = \"echo\"\nnum_replicas = 2\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let dashboard = free_port();
    let mut child = rayai(
        &dir,
        &[
            "serve",
            "decl",
            "--debug",
            "--port",
            &port.to_string(),
            "--dashboard-port",
            &dashboard.to_string(),
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let _guard = KillOnPanic(child.id());
    wait_until_serving(&mut child, port, Duration::from_secs(300));
    let status = get_json(dashboard, "/api/serve/applications");
    assert_eq!(
        target_replicas(&status, "echo-service", "echo"),
        Some(2),
        "{status}"
    );

    // `rayai deploy` with YAML as Ray writes it: replicas and user_config change.
    std::fs::write(
        dir.join("serve.yaml"),
        "# serve deploy serve.yaml\nproxy_location: EveryNode\napplications:\n  - name: echo-service\n    \
         route_prefix: /\n    import_path: agents:echo\n    runtime_env: {}\n    deployments:\n      \
         - name: echo-deployment\n        num_replicas: 3\n        user_config:\n          greeting: hi\n",
    )
    .unwrap();
    let address = format!("http://127.0.0.1:{dashboard}");
    let out = run(&dir, &["deploy", "serve.yaml", "--address", &address]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("applied echo-service"),
        "{}",
        text(&out)
    );
    let status = get_json(dashboard, "/api/serve/applications");
    assert_eq!(
        target_replicas(&status, "echo-service", "echo"),
        Some(3),
        "{status}"
    );
    let (code, body) = http(
        port,
        "POST",
        "/agents/echo/chat",
        r#"{"data": {"messages": [{"role": "user", "content": "Hello!"}]}}"#,
    )
    .unwrap();
    assert_eq!(code, 200, "{body}");

    // The same in TOML; an unknown import path is refused by the server, with the known ones.
    std::fs::write(
        dir.join("serve.toml"),
        "[[applications]]\nname = \"other\"\nimport_path = \"main:app\"\nroute_prefix = \"/other\"\n",
    )
    .unwrap();
    let out = run(&dir, &["deploy", "serve.toml", "--address", &address]);
    assert_refused(
        &out,
        &[
            "serve.toml was not applied (400)",
            "\"main:app\"",
            "agents:echo",
        ],
    );
    let out = run(
        &dir,
        &["deploy", "serve.yaml", "--address", "http://127.0.0.1:9"],
    );
    assert_refused(&out, &["nothing is running at http://127.0.0.1:9"]);

    let exit = terminate(&mut child, Duration::from_secs(30));
    assert!(exit.is_some_and(|s| s.success()), "SIGTERM: {exit:?}");
}
