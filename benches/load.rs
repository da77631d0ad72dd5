//! The load benchmark, measured from outside: rayai against a bare hyper server, each its own
//! process, driven by a load generator of its own process (`benches/outside`, package
//! `rayai-bench`; its README says how every number is computed).
//!
//! ```text
//! cargo bench --bench load                 # every section: throughput, the proxy hop, the counts, gRPC, multiplexing
//! cargo bench --bench load -- quick        # 1 round of 2 s per case
//! cargo bench --bench load -- throughput   # only the throughput
//! cargo bench --bench load -- counts       # only the per-request counts
//! cargo bench --bench load -- hop          # only the proxy hop (proxy + 1 replica process), and its floor
//! cargo bench --bench load -- grpc         # only gRPC (calls/s against bare tonic, per-call counts)
//! cargo bench --bench load -- grpc quick   # the same, 1 round of 2 s, shorter counted runs
//! cargo bench --bench load -- multiplex    # only model multiplexing: cache hit rates
//! cargo bench --bench load -- multiplex quick  # the same, 1 round per mode
//! ```
//!
//! It builds `loadgen`, `baseline`, `bench-server`, `grpc-loadgen`, `grpc-baseline` and
//! `multiplex-loadgen` in release, starts the baseline and rayai
//! servers on free ports, and for each case (the `echo` agent as the conformance example has it,
//! with the access log filtered out and on; `isolation = "shared"`; 4 replicas; a text stream of
//! 1000 chunks) and each concurrency (1, 16, 64) runs `loadgen` in alternating rounds against
//! the baseline and rayai (7 rounds of 2 s, each after 0.5 s of warmup), and prints the medians
//! and ratios. Then, when `valgrind` and `strace` are there (or can be installed), the user-space
//! instructions (callgrind) and system calls (strace -f) per request of the baseline and of
//! rayai's `echo` (access log filtered out, and on) and `echo_shared`, from two
//! counted runs of 1000 and 3000 sequential keep-alive requests: (count(3000) - count(1000)) /
//! 2000, so that starting and stopping cancel out.
//!
//! gRPC: `bench-server --grpc-port 0` (rayai's gRPC listener, the grpc example's `greeter`
//! application) against `grpc-baseline` (a bare tonic server with the same `Greeter` service),
//! `grpc-loadgen` making unary `SayHello` calls in alternating rounds at c = 1, 16, 64; then the
//! same per-call counts (callgrind, strace) from `grpc-loadgen -c 1 -n N` runs.
//!
//! Multiplexing: the openai example (built in release too, `cargo build --release -p openai`),
//! its agent `lora` (2 replicas, each holding at most 2 models, 50 ms a load), asked by
//! `multiplex-loadgen -c 16` for 4 models picked at random, the model id in the
//! `serve_multiplexed_model_id` header (the router sends the request to a replica that holds the
//! model) and, alternating, in the body (the router cannot see it); a fresh server per round
//! (cold caches), 2 s of warmup, then the cache hit rate over 5 s, 1 - loads / get_model
//! requests from the counters of its dashboard's `/metrics` (3 rounds per mode; `quick`: 1).
//!
//! Every child process is killed when the benchmark ends, also on a panic.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The chat request of every non-streaming case (as the in-process bench sent it).
const BODY: &str = r#"{"data":{"messages":[{"role":"user","content":"hello there"}],"n":3},"session_id":"default"}"#;
/// The request of the streaming case: 1000 chunks, then `done`.
const SSE_BODY: &str = r#"{"data":{"n":1000},"stream":"text"}"#;
/// The baseline's route (it answers every `/agents/<name>/chat` the same).
const BASELINE_PATH: &str = "/agents/echo/chat";
const CONCURRENCIES: [usize; 3] = [1, 16, 64];
/// The two counted runs: their difference is what one request costs, times `N2 - N1`.
const N1: u64 = 1000;
const N2: u64 = 3000;
/// How long a server may take to say it serves (valgrind is slow to start one).
const START_TIMEOUT: Duration = Duration::from_secs(180);
/// How long a server may take to exit after SIGTERM (callgrind writes its counts then).
const STOP_TIMEOUT: Duration = Duration::from_secs(120);

/// The binaries of `rayai-bench`.
struct Bins {
    loadgen: PathBuf,
    baseline: PathBuf,
    server: PathBuf,
    grpc_loadgen: PathBuf,
    grpc_baseline: PathBuf,
    multiplex_loadgen: PathBuf,
    hop_floor: PathBuf,
}

/// Builds `rayai-bench` in release with this cargo (and its target directory) and finds its
/// binaries in cargo's messages.
fn build() -> Bins {
    eprintln!("building rayai-bench in release...");
    let mut found = cargo_build(&["-p", "rayai-bench", "--bins"], "rayai-bench");
    let mut take = |name: &str| {
        found
            .remove(name)
            .unwrap_or_else(|| panic!("cargo built no `{name}`"))
    };
    Bins {
        loadgen: take("loadgen"),
        baseline: take("baseline"),
        server: take("bench-server"),
        grpc_loadgen: take("grpc-loadgen"),
        grpc_baseline: take("grpc-baseline"),
        multiplex_loadgen: take("multiplex-loadgen"),
        hop_floor: take("hop-floor"),
    }
}

/// `cargo build --release <args>` with this cargo (and its target directory): the executables
/// it built (or found fresh), by target name, from cargo's messages.
///
/// Without the variables `cargo bench` sets for the bench it runs (`CARGO_MANIFEST_DIR`,
/// `CARGO_PKG_*`, ...): build scripts that watch them (ring's watches `CARGO_MANIFEST_DIR`)
/// would see them change between this build and any other, and every build would compile ring
/// and all that depends on it again.
fn cargo_build(args: &[&str], what: &str) -> BTreeMap<String, PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from(env!("CARGO")));
    let mut cmd = Command::new(cargo);
    for (name, _) in std::env::vars_os() {
        let set_for_the_bench = name.to_str().is_some_and(|n| {
            n.starts_with("CARGO_PKG_")
                || n.starts_with("CARGO_MANIFEST_")
                || [
                    "CARGO_CRATE_NAME",
                    "CARGO_BIN_NAME",
                    "CARGO_PRIMARY_PACKAGE",
                    "CARGO_TARGET_TMPDIR",
                    "OUT_DIR",
                ]
                .contains(&n)
        });
        if set_for_the_bench {
            cmd.env_remove(name);
        }
    }
    let out = cmd
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["build", "--release"])
        .args(args)
        .arg("--message-format=json-render-diagnostics")
        .stderr(Stdio::inherit())
        .output()
        .expect("cargo runs");
    assert!(out.status.success(), "building {what} failed");
    let mut found = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if msg["reason"] == "compiler-artifact"
            && let (Some(name), Some(exe)) =
                (msg["target"]["name"].as_str(), msg["executable"].as_str())
        {
            found.insert(name.to_owned(), PathBuf::from(exe));
        }
    }
    found
}

/// `kill -<signal> <pid>` (no `unsafe` for `libc::kill`).
fn signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// A child process, killed when dropped (also on a panic). `pid` is the server's own process,
/// which is not the child when a tool (`strace`) runs it.
struct Proc {
    name: String,
    child: Child,
    pid: u32,
    addr: String,
    /// Where `bench-server --grpc-port` serves gRPC (its line `... gRPC on http://<addr>`);
    /// empty otherwise.
    grpc: String,
    done: bool,
}

impl Proc {
    /// Starts `cmd` and waits for its line `... on http://<addr> (pid <pid>)`.
    fn start(name: &str, cmd: Command) -> Proc {
        Proc::start_with(name, cmd, false)
    }

    /// Starts `cmd` and waits for its line `... on http://<addr> (pid <pid>)`, and with `grpc`
    /// for its line `... gRPC on http://<addr> (pid <pid>)` too.
    fn start_with(name: &str, mut cmd: Command, grpc: bool) -> Proc {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let mut proc = Proc {
            name: name.to_owned(),
            pid: child.id(),
            child,
            addr: String::new(),
            grpc: String::new(),
            done: false,
        };
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("{name} did not say where it serves"));
            if let Some((_, rest)) = line.split_once(" gRPC on http://") {
                proc.grpc = rest.split(' ').next().unwrap_or_default().to_owned();
            } else if let Some((_, rest)) = line.split_once(" on http://") {
                let (addr, rest) = rest.split_once(' ').unwrap_or((rest, ""));
                proc.addr = addr.to_owned();
                if let Some(pid) = rest
                    .strip_prefix("(pid ")
                    .and_then(|p| p.strip_suffix(')'))
                    .and_then(|p| p.parse().ok())
                {
                    proc.pid = pid;
                }
            }
            if !proc.addr.is_empty() && (!grpc || !proc.grpc.is_empty()) {
                return proc;
            }
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Where to make gRPC calls: the gRPC listener of `bench-server --grpc-port`, else the
    /// server's one address (`grpc-baseline`).
    fn grpc_url(&self) -> String {
        let addr = if self.grpc.is_empty() {
            &self.addr
        } else {
            &self.grpc
        };
        format!("http://{addr}")
    }

    /// SIGTERM to the server, then waits for the child (a tool writes its counts as its server
    /// exits); SIGKILL after [`STOP_TIMEOUT`].
    fn stop(mut self) {
        signal(self.pid, "TERM");
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                self.done = true;
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("{} did not exit after SIGTERM", self.name);
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if self.pid != self.child.id() {
            signal(self.pid, "KILL");
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What `loadgen` prints.
#[derive(Debug, Clone, Copy)]
struct Report {
    requests: u64,
    errors: u64,
    non_2xx: u64,
    req_per_s: f64,
    p50_us: f64,
    p99_us: f64,
    frames_per_s: f64,
}

/// How `loadgen` runs.
#[derive(Clone, Copy)]
enum Load {
    /// `-c` workers for `-d` seconds after `--warmup` seconds.
    Timed { c: usize, seconds: f64, warmup: f64 },
    /// Exactly `-n` sequential requests on one connection.
    Counted(u64),
}

impl Load {
    /// `loadgen`'s (or `grpc-loadgen`'s) arguments for this load, and how long it runs at most.
    fn args(self, cmd: &mut Command) -> f64 {
        match self {
            Load::Timed { c, seconds, warmup } => {
                cmd.args(["-c", &c.to_string(), "-d", &seconds.to_string()]);
                cmd.args(["--warmup", &warmup.to_string()]);
                seconds + warmup
            }
            Load::Counted(n) => {
                cmd.args(["-c", "1", "-n", &n.to_string()]);
                120.0
            }
        }
    }
}

fn loadgen(bins: &Bins, url: &str, body: &str, sse: bool, load: Load) -> Report {
    let mut cmd = Command::new(&bins.loadgen);
    cmd.args(["--url", url, "--body", body]);
    if sse {
        cmd.arg("--sse");
    }
    let limit = load.args(&mut cmd);
    let (v, out) = run_load("loadgen", cmd, limit);
    let num = |k: &str| v[k].as_f64().unwrap_or_else(|| panic!("no {k} in {out}"));
    Report {
        requests: num("requests") as u64,
        errors: num("errors") as u64,
        non_2xx: num("non_2xx") as u64,
        req_per_s: num("req_per_s"),
        p50_us: num("p50_us"),
        p99_us: num("p99_us"),
        frames_per_s: num("frames_per_s"),
    }
}

/// `grpc-loadgen`'s unary `SayHello` calls to `url`, with the metadata `application: greeter`
/// (rayai routes by it; tonic ignores it): a [`Report`] whose `errors` are the calls that did
/// not end `OK` with the greeting (no `non_2xx` or frames in gRPC).
fn grpc_loadgen(bins: &Bins, url: &str, application: &str, load: Load) -> Report {
    let mut cmd = Command::new(&bins.grpc_loadgen);
    cmd.args(["--url", url, "--application", application]);
    let limit = load.args(&mut cmd);
    let (v, out) = run_load("grpc-loadgen", cmd, limit);
    let num = |k: &str| v[k].as_f64().unwrap_or_else(|| panic!("no {k} in {out}"));
    Report {
        requests: num("requests") as u64,
        errors: num("errors") as u64,
        non_2xx: 0,
        req_per_s: num("req_per_s"),
        p50_us: num("p50_us"),
        p99_us: num("p99_us"),
        frames_per_s: 0.0,
    }
}

/// Runs a load generator that bounds itself to `limit` seconds (plus 10 s for the requests
/// still running) and reads its JSON line (and the line itself, for messages).
fn run_load(name: &str, mut cmd: Command, limit: f64) -> (Value, String) {
    let mut child = Proc {
        name: name.to_owned(),
        child: cmd
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{name} starts: {e}")),
        pid: 0,
        addr: String::new(),
        grpc: String::new(),
        done: false,
    };
    child.pid = child.child.id();
    // The load generator bounds itself (its run, then 10 s for the requests still running);
    // this is the last resort.
    let deadline = Instant::now() + Duration::from_secs_f64(limit + 30.0);
    let status = loop {
        if let Some(status) = child
            .child
            .try_wait()
            .expect("waiting for the load generator")
        {
            break status;
        }
        assert!(Instant::now() < deadline, "{name} did not finish");
        std::thread::sleep(Duration::from_millis(10));
    };
    child.done = true;
    assert!(status.success(), "{name} failed: {status}");
    let mut out = String::new();
    std::io::Read::read_to_string(child.child.stdout.as_mut().expect("piped stdout"), &mut out)
        .unwrap_or_else(|e| panic!("{name}'s output: {e}"));
    let v: Value =
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{name} printed {out:?}: {e}"));
    (v, out)
}

/// The rayai server's log mode.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Logs {
    /// `RUST_LOG=warn`: the access log is filtered out.
    Quiet,
    /// `RUST_LOG=info`: one access log line per request, written to /dev/null.
    Access,
}

/// Which server, and how it runs.
#[derive(Clone, Copy)]
enum Server {
    Baseline,
    Rayai(Logs),
    /// `grpc-baseline`: the bare tonic server.
    GrpcBaseline,
    /// `bench-server --grpc-port 0` (`RUST_LOG=warn`): rayai's gRPC listener, the `greeter`
    /// application deployed.
    RayaiGrpc,
}

impl Server {
    fn label(self) -> &'static str {
        match self {
            Server::Baseline => "bare hyper",
            Server::Rayai(Logs::Quiet) => "rayai, access log filtered out (RUST_LOG=warn)",
            Server::Rayai(Logs::Access) => "rayai, access log on (RUST_LOG=info)",
            Server::GrpcBaseline => "bare tonic",
            Server::RayaiGrpc => "rayai gRPC (RUST_LOG=warn)",
        }
    }

    /// The program and its arguments, on a free port, with the environment it runs with.
    fn command(self, bins: &Bins, tool: Option<Vec<String>>) -> Command {
        let (program, args): (&Path, &[&str]) = match self {
            Server::Baseline => (&bins.baseline, &["--port", "0"]),
            Server::Rayai(_) => (&bins.server, &["--port", "0", "--dashboard-port", "0"]),
            Server::GrpcBaseline => (&bins.grpc_baseline, &["--port", "0"]),
            Server::RayaiGrpc => (
                &bins.server,
                &["--port", "0", "--dashboard-port", "0", "--grpc-port", "0"],
            ),
        };
        let mut cmd = match tool {
            Some(tool) => {
                let mut cmd = Command::new(&tool[0]);
                cmd.args(&tool[1..]).arg(program);
                cmd
            }
            None => Command::new(program),
        };
        cmd.args(args);
        // The server's own logs go nowhere: what costs is writing them, not where to.
        cmd.stderr(Stdio::null());
        match self {
            Server::Baseline | Server::GrpcBaseline => {}
            Server::Rayai(Logs::Quiet) | Server::RayaiGrpc => {
                cmd.env("RUST_LOG", "warn");
            }
            Server::Rayai(Logs::Access) => {
                cmd.env("RUST_LOG", "info");
            }
        }
        cmd.env_remove("RAYAI_LOG_FORMAT");
        cmd
    }

    /// Starts the server and waits until it serves (for [`Server::RayaiGrpc`], gRPC too).
    fn start(self, bins: &Bins) -> Proc {
        self.start_as(self.label(), self.command(bins, None))
    }

    /// Starts `cmd`, this server's command, as `name`.
    fn start_as(self, name: &str, cmd: Command) -> Proc {
        Proc::start_with(name, cmd, matches!(self, Server::RayaiGrpc))
    }

    /// Whether it is asked with `grpc-loadgen` (else `loadgen`).
    fn is_grpc(self) -> bool {
        matches!(self, Server::GrpcBaseline | Server::RayaiGrpc)
    }
}

/// The median (the upper one of an even count).
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One throughput case.
struct Case {
    name: &'static str,
    logs: Logs,
    path: &'static str,
    sse: bool,
}

const CASES: [Case; 5] = [
    Case {
        name: "default",
        logs: Logs::Quiet,
        path: "/agents/echo/chat",
        sse: false,
    },
    Case {
        name: "default, access log on",
        logs: Logs::Access,
        path: "/agents/echo/chat",
        sse: false,
    },
    Case {
        name: "isolation = \"shared\"",
        logs: Logs::Quiet,
        path: "/agents/echo_shared/chat",
        sse: false,
    },
    Case {
        name: "4 replicas",
        logs: Logs::Quiet,
        path: "/agents/echo4/chat",
        sse: false,
    },
    Case {
        name: "SSE, 1000 chunks",
        logs: Logs::Quiet,
        path: "/agents/echo/chat",
        sse: true,
    },
];

/// One row of the throughput tables: medians of the rounds.
struct Row {
    case: &'static str,
    c: usize,
    sse: bool,
    base_rate: f64,
    rayai_rate: f64,
    base_p99: f64,
    rayai_p99: f64,
    /// The median of the rounds' ratios rayai / baseline (each round's pair of runs is
    /// adjacent in time).
    ratio: f64,
    /// The lowest and highest ratio rayai / baseline of one round.
    round_ratios: (f64, f64),
    /// Errors and non-2xx answers over every round of both servers.
    failures: u64,
}

fn ms(us: f64) -> String {
    format!("{:.2} ms", us / 1000.0)
}

fn throughput(bins: &Bins, quick: bool) {
    // Many short rounds rather than a few long ones: the machine's slow moments last seconds,
    // and the median of the rounds' paired ratios is steadier the more pairs it has.
    let (rounds, seconds, warmup) = if quick { (1, 2.0, 0.5) } else { (7, 2.0, 0.5) };
    let baseline = Server::Baseline.start(bins);
    let quiet = Server::Rayai(Logs::Quiet).start(bins);
    let access = Server::Rayai(Logs::Access).start(bins);
    eprintln!(
        "baseline on {}, rayai on {} (access log filtered out) and {} (access log on)",
        baseline.addr, quiet.addr, access.addr
    );
    let mut rows = Vec::new();
    for case in &CASES {
        let rayai = match case.logs {
            Logs::Quiet => &quiet,
            Logs::Access => &access,
        };
        let body = if case.sse { SSE_BODY } else { BODY };
        for c in CONCURRENCIES {
            let load = Load::Timed { c, seconds, warmup };
            let (mut base, mut ours) = (Vec::new(), Vec::new());
            for round in 1..=rounds {
                let b = loadgen(bins, &baseline.url(BASELINE_PATH), body, case.sse, load);
                let r = loadgen(bins, &rayai.url(case.path), body, case.sse, load);
                let rate = |r: &Report| {
                    if case.sse {
                        r.frames_per_s
                    } else {
                        r.req_per_s
                    }
                };
                eprintln!(
                    "{} c={c} round {round}/{rounds}: bare hyper {:.0}/s p99 {}, rayai {:.0}/s \
                     p99 {} ({:.2}x)",
                    case.name,
                    rate(&b),
                    ms(b.p99_us),
                    rate(&r),
                    ms(r.p99_us),
                    rate(&r) / rate(&b)
                );
                base.push((rate(&b), b));
                ours.push((rate(&r), r));
            }
            let failures = base
                .iter()
                .chain(&ours)
                .map(|(_, r)| r.errors + r.non_2xx + u64::from(r.requests == 0))
                .sum();
            let ratios: Vec<f64> = base.iter().zip(&ours).map(|(b, r)| r.0 / b.0).collect();
            let round_ratios = (
                ratios.iter().copied().fold(f64::INFINITY, f64::min),
                ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            );
            let ratio = median(ratios);
            rows.push(Row {
                case: case.name,
                c,
                sse: case.sse,
                base_rate: median(base.iter().map(|(x, _)| *x).collect()),
                rayai_rate: median(ours.iter().map(|(x, _)| *x).collect()),
                base_p99: median(base.iter().map(|(_, r)| r.p99_us).collect()),
                rayai_p99: median(ours.iter().map(|(_, r)| r.p99_us).collect()),
                ratio,
                round_ratios,
                failures,
            });
        }
    }
    drop((baseline, quiet, access));
    println!();
    println!(
        "## Throughput from outside: {rounds} alternating round(s) of {seconds} s (after \
         {warmup} s of warmup each), medians; ratio = the median of the rounds' ratios; loadgen on \
         one thread, one keep-alive connection per worker"
    );
    println!();
    println!(
        "| case | c | bare hyper req/s | rayai req/s | ratio | rounds' ratios | bare hyper p99 | rayai p99 | p99 ratio |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for row in rows.iter().filter(|r| !r.sse) {
        print_row(row);
    }
    println!();
    println!(
        "| case | c | bare hyper frames/s | rayai frames/s | ratio | rounds' ratios | bare hyper p99 (whole stream) | rayai p99 (whole stream) | p99 ratio |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for row in rows.iter().filter(|r| r.sse) {
        print_row(row);
    }
    let failed: Vec<_> = rows.iter().filter(|r| r.failures > 0).collect();
    for row in &failed {
        println!(
            "WARNING: {} c={}: {} errors or non-2xx answers (or an empty run)",
            row.case, row.c, row.failures
        );
    }
}

/// gRPC: unary `greeter.v1.Greeter/SayHello` calls through rayai's gRPC listener (the
/// `greeter` application's `Greeter`, 2 replicas, `application: greeter` metadata) against a bare
/// tonic server with the same service, in alternating rounds at c = 1, 16, 64; then, when
/// valgrind and strace are there, instructions and system calls per call.
fn grpc(bins: &Bins, dir: &Path, quick: bool) {
    let (rounds, seconds, warmup) = if quick { (1, 2.0, 0.5) } else { (3, 3.0, 1.0) };
    let baseline = Server::GrpcBaseline.start(bins);
    let rayai = Server::RayaiGrpc.start(bins);
    eprintln!(
        "bare tonic on {}, rayai gRPC on {}",
        baseline.grpc_url(),
        rayai.grpc_url()
    );
    // All answer before anything is measured.
    for (server, app) in [
        (&baseline, "greeter"),
        (&rayai, "greeter"),
        (&rayai, "greeter_shared"),
    ] {
        let r = grpc_loadgen(bins, &server.grpc_url(), app, Load::Counted(1));
        assert_eq!(
            (r.requests, r.errors),
            (1, 0),
            "{} {app} answers",
            server.name
        );
    }
    let mut rows = Vec::new();
    for c in CONCURRENCIES {
        let load = Load::Timed { c, seconds, warmup };
        let (mut base, mut ours, mut shared) = (Vec::new(), Vec::new(), Vec::new());
        for round in 1..=rounds {
            let b = grpc_loadgen(bins, &baseline.grpc_url(), "greeter", load);
            let r = grpc_loadgen(bins, &rayai.grpc_url(), "greeter", load);
            let s = grpc_loadgen(bins, &rayai.grpc_url(), "greeter_shared", load);
            eprintln!(
                "gRPC c={c} round {round}/{rounds}: bare tonic {:.0}/s p99 {}, rayai {:.0}/s p99 \
                 {} ({:.2}x), shared {:.0}/s ({:.2}x)",
                b.req_per_s,
                ms(b.p99_us),
                r.req_per_s,
                ms(r.p99_us),
                r.req_per_s / b.req_per_s,
                s.req_per_s,
                s.req_per_s / b.req_per_s
            );
            base.push(b);
            ours.push(r);
            shared.push(s);
        }
        rows.push((c, base, ours, shared));
    }
    drop((baseline, rayai));
    println!();
    println!(
        "## gRPC from outside: unary SayHello, rayai's gRPC listener (`greeter` app, 2 replicas; \
         `shared`: the same service with `isolation = \"shared\"`, app `greeter_shared`) against \
         bare tonic, median of {rounds} alternating round(s) of {seconds} s (after \
         {warmup} s of warmup each), grpc-loadgen on one thread, one HTTP/2 connection per caller"
    );
    println!();
    println!(
        "| c | bare tonic calls/s | rayai calls/s | ratio | rounds' ratios | bare tonic p50 | rayai p50 | bare tonic p99 | rayai p99 | p99 ratio | shared calls/s | shared ratio |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let med = |v: &[Report], f: fn(&Report) -> f64| median(v.iter().map(f).collect());
    let mut failed = Vec::new();
    for (c, base, ours, shared) in &rows {
        let ratios: Vec<f64> = base
            .iter()
            .zip(ours)
            .map(|(b, r)| r.req_per_s / b.req_per_s)
            .collect();
        let (b99, r99) = (med(base, |r| r.p99_us), med(ours, |r| r.p99_us));
        let (brate, rrate) = (med(base, |r| r.req_per_s), med(ours, |r| r.req_per_s));
        println!(
            "| {c} | {brate:.0} | {rrate:.0} | {:.2} | {:.2}–{:.2} | {} | {} | {} | {} | {:.2} | {:.0} | {:.2} |",
            rrate / brate,
            ratios.iter().copied().fold(f64::INFINITY, f64::min),
            ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            ms(med(base, |r| r.p50_us)),
            ms(med(ours, |r| r.p50_us)),
            ms(b99),
            ms(r99),
            r99 / b99,
            med(shared, |r| r.req_per_s),
            med(shared, |r| r.req_per_s) / brate
        );
        let failures: u64 = base
            .iter()
            .chain(ours)
            .chain(shared)
            .map(|r| r.errors + u64::from(r.requests == 0))
            .sum();
        if failures > 0 {
            failed.push((c, failures));
        }
    }
    for (c, failures) in failed {
        println!("WARNING: gRPC c={c}: {failures} failed calls (or an empty run)");
    }
    if !tools_or_skip("gRPC per-call counts") {
        return;
    }
    // `quick` checks the counts with shorter runs: the same difference, less precise.
    let (n1, n2) = if quick { (N1 / 5, N2 / 5) } else { (N1, N2) };
    let results = measure(bins, dir, &GRPC_COUNTED, n1, n2);
    print_counts(
        &format!(
            "## gRPC, per call: user-space instructions (callgrind) and system calls (strace -f), \
             (count({n2}) - count({n1})) / {} sequential unary calls on one HTTP/2 connection",
            n2 - n1
        ),
        "call",
        "call",
        &results,
    );
}

/// The proxy hop: a proxy process (`RAYAI_ROLE=proxy`, static discovery) in front of one
/// replica process (`RAYAI_ROLE=replica`) against the single process, in alternating rounds;
/// and in the same rounds the floor of any proxy on this machine: `hop-floor` (the least
/// HTTP/1.1 proxy, written on bare hyper) in front of `baseline` against `baseline` alone.
fn proxy_hop(bins: &Bins, quick: bool) {
    let (rounds, seconds, warmup) = if quick { (1, 2.0, 0.5) } else { (3, 3.0, 1.0) };
    let single = Server::Rayai(Logs::Quiet).start(bins);
    let mut replica_cmd = Server::Rayai(Logs::Quiet).command(bins, None);
    replica_cmd
        .env("RAYAI_ROLE", "replica")
        .env("RAYAI_DEPLOYMENT", "echo,echo_shared,echo4");
    let replica = Proc::start("replica process", replica_cmd);
    let dir = std::env::temp_dir().join(format!("rayai-hop-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let file = dir.join("replicas.toml");
    let at = format!("[\"{}\"]", replica.addr);
    std::fs::write(
        &file,
        format!("[deployments]\necho = {at}\necho_shared = {at}\necho4 = {at}\n"),
    )
    .expect("the discovery file");
    let mut proxy_cmd = Server::Rayai(Logs::Quiet).command(bins, None);
    proxy_cmd
        .env("RAYAI_ROLE", "proxy")
        .env("RAYAI_DISCOVERY", format!("static:{}", file.display()));
    let proxy = Proc::start("proxy process", proxy_cmd);
    let bare = Server::Baseline.start(bins);
    let mut floor_cmd = Command::new(&bins.hop_floor);
    floor_cmd
        .args(["--port", "0", "--upstream", &bare.addr])
        .stderr(Stdio::null());
    let floor = Proc::start("hop-floor", floor_cmd);
    // The proxy probes the replica before it routes to it.
    let ready = Instant::now();
    while loadgen(
        bins,
        &proxy.url("/agents/echo/chat"),
        BODY,
        false,
        Load::Counted(1),
    )
    .non_2xx
        > 0
    {
        assert!(
            ready.elapsed() < START_TIMEOUT,
            "the proxy never reached its replica"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    println!();
    println!(
        "## The proxy hop: proxy + 1 replica process against the single process (`echo`: 1 \
         replica, `echo4`: 4 replicas; access log filtered out), and the floor: the least \
         proxy (`hop-floor`, bare hyper) in front of bare hyper against bare hyper alone; median \
         of {rounds} alternating round(s) of {seconds} s"
    );
    println!();
    println!(
        "| pair | c | one process req/s | through the proxy req/s | ratio | one process p50 | through the proxy p50 | added p50 | one process p99 | through the proxy p99 |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let cases = [
        ("rayai `echo`", "echo", 16, &single, &proxy),
        ("bare hyper (floor)", "echo", 16, &bare, &floor),
        ("rayai `echo`", "echo", 64, &single, &proxy),
        ("bare hyper (floor)", "echo", 64, &bare, &floor),
        ("rayai `echo4`", "echo4", 16, &single, &proxy),
        ("rayai `echo4`", "echo4", 64, &single, &proxy),
    ];
    for (label, agent, c, one_server, two_server) in cases {
        let path = format!("/agents/{agent}/chat");
        let load = Load::Timed { c, seconds, warmup };
        let (mut one, mut two) = (Vec::new(), Vec::new());
        for round in 1..=rounds {
            let a = loadgen(bins, &one_server.url(&path), BODY, false, load);
            let b = loadgen(bins, &two_server.url(&path), BODY, false, load);
            eprintln!(
                "hop {label} c={c} round {round}/{rounds}: one process {:.0}/s, through the proxy {:.0}/s ({:.2}x)",
                a.req_per_s,
                b.req_per_s,
                b.req_per_s / a.req_per_s
            );
            assert_eq!(b.errors + b.non_2xx, 0, "the proxy failed requests");
            one.push(a);
            two.push(b);
        }
        let med = |v: &[Report], f: fn(&Report) -> f64| median(v.iter().map(f).collect());
        let (r1, r2) = (med(&one, |r| r.req_per_s), med(&two, |r| r.req_per_s));
        let (p1, p2) = (med(&one, |r| r.p50_us), med(&two, |r| r.p50_us));
        println!(
            "| {label} | {c} | {r1:.0} | {r2:.0} | {:.2}x | {} | {} | {} | {} | {} |",
            r2 / r1,
            ms(p1),
            ms(p2),
            ms(p2 - p1),
            ms(med(&one, |r| r.p99_us)),
            ms(med(&two, |r| r.p99_us)),
        );
    }
    drop((single, replica, proxy, floor, bare));
    let _ = std::fs::remove_dir_all(&dir);
}

fn print_row(row: &Row) {
    println!(
        "| {} | {} | {:.0} | {:.0} | {:.2} | {:.2}–{:.2} | {} | {} | {:.2} |",
        row.case,
        row.c,
        row.base_rate,
        row.rayai_rate,
        row.ratio,
        row.round_ratios.0,
        row.round_ratios.1,
        ms(row.base_p99),
        ms(row.rayai_p99),
        row.rayai_p99 / row.base_p99
    );
}

/// Whether `tool --version` runs.
fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// valgrind and strace, installed with apt-get (as root, else with `sudo -n`) when missing.
fn tools() -> bool {
    if have("valgrind") && have("strace") {
        return true;
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    let apt = |args: &[&str]| {
        let mut cmd = if root {
            Command::new("apt-get")
        } else {
            let mut sudo = Command::new("sudo");
            sudo.args(["-n", "apt-get"]);
            sudo
        };
        cmd.args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    eprintln!("valgrind or strace is missing: installing them with apt-get");
    let installed = apt(&["install", "-y", "valgrind", "strace"])
        || (apt(&["update"]) && apt(&["install", "-y", "valgrind", "strace"]));
    installed && have("valgrind") && have("strace")
}

/// What runs a server and counts.
#[derive(Clone, Copy)]
enum Tool {
    Callgrind,
    Strace,
}

/// The counts of one run: instructions (callgrind) or system calls by name (strace).
#[derive(Default)]
struct Counts {
    total: f64,
    by_name: BTreeMap<String, f64>,
}

/// callgrind's `summary:` (or `totals:`) line: the instructions of every thread.
fn parse_callgrind(text: &str) -> Counts {
    let total = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("summary:")
                .or_else(|| l.strip_prefix("totals:"))
        })
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no summary line in the callgrind output"));
    Counts {
        total,
        by_name: BTreeMap::new(),
    }
}

/// `strace -c`'s table: `% time seconds usecs/call calls [errors] syscall`, then `total`.
fn parse_strace(text: &str) -> Counts {
    let mut counts = Counts::default();
    for line in text.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.len() < 5 || cols[0].parse::<f64>().is_err() {
            continue;
        }
        let Ok(calls) = cols[3].parse::<f64>() else {
            continue;
        };
        let name = cols[cols.len() - 1];
        if name == "total" {
            counts.total = calls;
        } else {
            counts.by_name.insert(name.to_owned(), calls);
        }
    }
    assert!(counts.total > 0.0, "no total line in the strace summary");
    counts
}

/// A server counted per request, and the route it is asked.
struct Counted {
    /// Its row in the table.
    label: &'static str,
    /// Its column in the table of system calls by name.
    short: &'static str,
    server: Server,
    path: &'static str,
    /// For the tools' output files.
    tag: &'static str,
}

const COUNTED: [Counted; 4] = [
    Counted {
        label: "bare hyper",
        short: "bare hyper",
        server: Server::Baseline,
        path: BASELINE_PATH,
        tag: "baseline",
    },
    Counted {
        label: "rayai `echo`, access log filtered out (RUST_LOG=warn)",
        short: "rayai",
        server: Server::Rayai(Logs::Quiet),
        path: "/agents/echo/chat",
        tag: "rayai-quiet",
    },
    Counted {
        label: "rayai `echo`, access log on (RUST_LOG=info)",
        short: "rayai + access log",
        server: Server::Rayai(Logs::Access),
        path: "/agents/echo/chat",
        tag: "rayai-access",
    },
    Counted {
        label: "rayai `echo_shared` (isolation = \"shared\"), RUST_LOG=warn",
        short: "rayai shared",
        server: Server::Rayai(Logs::Quiet),
        path: "/agents/echo_shared/chat",
        tag: "rayai-shared",
    },
];

/// The gRPC servers counted per call (`grpc-loadgen -c 1 -n N`, unary `SayHello`).
const GRPC_COUNTED: [Counted; 2] = [
    Counted {
        label: "bare tonic",
        short: "bare tonic",
        server: Server::GrpcBaseline,
        path: "",
        tag: "grpc-baseline",
    },
    Counted {
        label: "rayai gRPC, `greeter` app (RUST_LOG=warn)",
        short: "rayai gRPC",
        server: Server::RayaiGrpc,
        path: "",
        tag: "rayai-grpc",
    },
];

/// Runs the server under `tool` for `n` sequential requests and counts.
fn count(bins: &Bins, dir: &Path, counted: &Counted, tool: Tool, n: u64) -> Counts {
    let out = dir.join(format!(
        "{}-{}-{n}.out",
        counted.tag,
        match tool {
            Tool::Callgrind => "callgrind",
            Tool::Strace => "strace",
        }
    ));
    let prefix = match tool {
        Tool::Callgrind => vec![
            "valgrind".to_owned(),
            "--tool=callgrind".to_owned(),
            format!("--callgrind-out-file={}", out.display()),
            format!("--log-file={}.log", out.display()),
        ],
        Tool::Strace => vec![
            "strace".to_owned(),
            "-f".to_owned(),
            "-c".to_owned(),
            "-o".to_owned(),
            out.display().to_string(),
            "--".to_owned(),
        ],
    };
    let proc = counted
        .server
        .start_as(counted.label, counted.server.command(bins, Some(prefix)));
    let report = if counted.server.is_grpc() {
        grpc_loadgen(bins, &proc.grpc_url(), "greeter", Load::Counted(n))
    } else {
        loadgen(bins, &proc.url(counted.path), BODY, false, Load::Counted(n))
    };
    assert_eq!(
        (report.requests, report.errors, report.non_2xx),
        (n, 0, 0),
        "{}: every counted request answered 2xx (gRPC: OK)",
        counted.label
    );
    proc.stop();
    let text =
        std::fs::read_to_string(&out).unwrap_or_else(|e| panic!("reading {}: {e}", out.display()));
    match tool {
        Tool::Callgrind => parse_callgrind(&text),
        Tool::Strace => parse_strace(&text),
    }
}

/// Per request: the difference of the two counted runs over the difference of their requests
/// (`n2 - n1`).
fn per_request(a: &Counts, b: &Counts, n1: u64, n2: u64) -> Counts {
    let d = (n2 - n1) as f64;
    let mut by_name = BTreeMap::new();
    for name in a.by_name.keys().chain(b.by_name.keys()) {
        let x = a.by_name.get(name).copied().unwrap_or(0.0);
        let y = b.by_name.get(name).copied().unwrap_or(0.0);
        by_name.insert(name.clone(), (y - x) / d);
    }
    Counts {
        total: (b.total - a.total) / d,
        by_name,
    }
}

/// Each server's instructions and system calls per request: counted runs of `n1` and `n2`
/// requests under callgrind, then under strace.
fn measure<'a>(
    bins: &Bins,
    dir: &Path,
    servers: &'a [Counted],
    n1: u64,
    n2: u64,
) -> Vec<(&'a Counted, Counts, Counts)> {
    let mut results = Vec::new();
    for server in servers {
        let mut per = Vec::new();
        for tool in [Tool::Callgrind, Tool::Strace] {
            eprintln!(
                "counting {} under {}...",
                server.label,
                match tool {
                    Tool::Callgrind => "callgrind",
                    Tool::Strace => "strace -f",
                }
            );
            let a = count(bins, dir, server, tool, n1);
            let b = count(bins, dir, server, tool, n2);
            per.push(per_request(&a, &b, n1, n2));
        }
        let syscalls = per.pop().expect("strace counts");
        let instructions = per.pop().expect("callgrind counts");
        results.push((server, instructions, syscalls));
    }
    results
}

/// The tables of [`measure`]'s results under `title`: the totals per `unit` (`req`, `call`),
/// with the ratios to the first server (the baseline), then the system calls per `noun` by name.
fn print_counts(title: &str, unit: &str, noun: &str, results: &[(&Counted, Counts, Counts)]) {
    let (_, base_instr, base_sys) = &results[0];
    let (base_instr, base_sys) = (base_instr.total, base_sys.total);
    println!();
    println!("{title}");
    println!();
    println!("| server | instructions/{unit} | ratio | syscalls/{unit} | ratio |");
    println!("|---|---:|---:|---:|---:|");
    for (server, instr, sys) in results {
        println!(
            "| {} | {:.0} | {:.2} | {:.2} | {:.2} |",
            server.label,
            instr.total,
            instr.total / base_instr,
            sys.total,
            sys.total / base_sys
        );
    }
    // The system calls by name: every one that any server makes at least 0.01 times a request.
    let mut names: Vec<&String> = results
        .iter()
        .flat_map(|(_, _, s)| s.by_name.iter())
        .filter(|(_, v)| v.abs() >= 0.01)
        .map(|(k, _)| k)
        .collect();
    names.sort();
    names.dedup();
    let of = |i: usize, name: &str| results[i].2.by_name.get(name).copied().unwrap_or(0.0);
    names.sort_by(|a, b| of(1, b).total_cmp(&of(1, a)).then(a.cmp(b)));
    println!();
    println!("System calls per {noun}, by name:");
    println!();
    let mut header = String::from("| syscall |");
    let mut rule = String::from("|---|");
    for (server, _, _) in results {
        let _ = write!(header, " {} |", server.short);
        rule.push_str("---:|");
    }
    println!("{header}");
    println!("{rule}");
    for name in names {
        let mut line = format!("| {name} |");
        for i in 0..results.len() {
            let _ = write!(line, " {:.2} |", of(i, name));
        }
        println!("{line}");
    }
}

/// valgrind and strace are there (or were installed); else says the counts are skipped.
fn tools_or_skip(what: &str) -> bool {
    if tools() {
        return true;
    }
    println!();
    println!(
        "{what} skipped: valgrind and strace are not installed and could not be installed \
         (`apt-get install -y valgrind strace`)"
    );
    false
}

fn counts(bins: &Bins, dir: &Path) {
    if !tools_or_skip("per-request counts") {
        return;
    }
    let results = measure(bins, dir, &COUNTED, N1, N2);
    print_counts(
        &format!(
            "## Per request: user-space instructions (callgrind) and system calls (strace -f), \
             (count({N2}) - count({N1})) / {} sequential keep-alive requests at c=1",
            N2 - N1
        ),
        "req",
        "request",
        &results,
    );
}

/// The models `multiplex-loadgen` asks for (`adapter-1` to `adapter-4`): twice what one
/// replica of `lora` holds, as many as its two replicas hold together.
const MODELS: u32 = 4;
/// The concurrency of the multiplexing runs: `lora`'s 2 replicas times its
/// `max_ongoing_requests` (8).
const MULTIPLEX_C: usize = 16;

/// Where `multiplex-loadgen` names the model.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The `serve_multiplexed_model_id` header: the router sees it.
    Header,
    /// `"model_id"` in the body: only the agent sees it.
    Body,
}

impl Mode {
    fn arg(self) -> &'static str {
        match self {
            Mode::Header => "header",
            Mode::Body => "body",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Mode::Header => "model id in the `serve_multiplexed_model_id` header (router affinity)",
            Mode::Body => "model id in the body (the router cannot see it: no affinity)",
        }
    }
}

/// The openai example's binary, built in release as a user builds it
/// (`cargo build --release -p openai`).
fn build_openai() -> PathBuf {
    eprintln!("building the openai example in release...");
    cargo_build(&["-p", "openai", "--bin", "openai"], "the openai example")
        .remove("openai")
        .unwrap_or_else(|| panic!("cargo built no `openai`"))
}

/// A free port on 127.0.0.1, for the dashboard (`--dashboard-port 0` turns it off).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// `GET http://<addr>/metrics` (HTTP/1.0: the body ends with the connection), its body.
fn get_metrics(addr: &str) -> Result<String, String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(stream, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").map_err(|e| e.to_string())?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw).map_err(|e| e.to_string())?;
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no end of headers in {raw:?}"))?;
    if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
        return Err(head.lines().next().unwrap_or_default().to_owned());
    }
    Ok(body.to_owned())
}

/// The value of the label `name` in a metric line's `{...}`.
fn label<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let at = line.find(&format!("{name}=\""))? + name.len() + 2;
    line[at..].split('"').next()
}

/// `lora`'s multiplexing counters, summed over its replicas.
#[derive(Default, Debug)]
struct ModelCounts {
    /// `ray_serve_multiplexed_get_model_requests_counter_total`.
    gets: f64,
    /// `ray_serve_multiplexed_models_load_counter_total`.
    loads: f64,
    /// The replicas that report them.
    replicas: usize,
    /// What each replica holds: `lora#0: adapter-1 adapter-3`.
    held: BTreeMap<String, Vec<String>>,
}

/// `lora`'s counters in the Prometheus text of `/metrics`.
fn parse_model_counts(text: &str) -> ModelCounts {
    let mut counts = ModelCounts::default();
    for line in text.lines() {
        let Some((name, rest)) = line.split_once('{') else {
            continue;
        };
        let Some(replica) = label(rest, "replica").filter(|r| r.starts_with("lora#")) else {
            continue;
        };
        let value = || {
            rest.rsplit(' ')
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or_else(|| panic!("no value in the metric line {line:?}"))
        };
        match name {
            "ray_serve_multiplexed_get_model_requests_counter_total" => {
                counts.gets += value();
                counts.replicas += 1;
            }
            "ray_serve_multiplexed_models_load_counter_total" => counts.loads += value(),
            "ray_serve_registered_multiplexed_model_id" if value() > 0.0 => {
                let model = label(rest, "model_id").unwrap_or_default().to_owned();
                counts
                    .held
                    .entry(replica.to_owned())
                    .or_default()
                    .push(model);
            }
            _ => {}
        }
    }
    counts
}

/// Reads `lora`'s counters from the dashboard at `addr`.
fn model_counts(addr: &str) -> ModelCounts {
    let text = get_metrics(addr).unwrap_or_else(|e| panic!("GET http://{addr}/metrics: {e}"));
    parse_model_counts(&text)
}

/// The openai example (`RUST_LOG=warn`, no drain delay) on a free port, its dashboard on
/// another; waits until `/metrics` reports both `lora` replicas. The example and the address of
/// its dashboard.
fn start_openai(exe: &Path) -> (Proc, String) {
    let dashboard = format!("127.0.0.1:{}", free_port());
    let mut cmd = Command::new(exe);
    cmd.args(["--port", "0", "--dashboard-port"])
        .arg(dashboard.rsplit(':').next().unwrap_or_default())
        .stderr(Stdio::null())
        .env("RUST_LOG", "warn")
        .env("RAYAI_DRAIN_DELAY_S", "0");
    for name in [
        "RAYAI_LOG_FORMAT",
        "RAYAI_DASHBOARD_TOKEN",
        "RAYAI_AUTH_TOKEN",
        "RAY_AUTH_TOKEN",
    ] {
        cmd.env_remove(name);
    }
    // Its line: `rayai OpenAI example serving on http://<addr>/v1  (Ctrl-C to stop)`.
    let mut proc = Proc::start("openai example", cmd);
    proc.addr = proc.addr.trim_end_matches("/v1").to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match get_metrics(&dashboard) {
            Ok(text) if parse_model_counts(&text).replicas == 2 => return (proc, dashboard),
            Ok(_) | Err(_) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Ok(_) => panic!("the dashboard on {dashboard} never reported 2 `lora` replicas"),
            Err(e) => panic!("the dashboard on {dashboard} never answered: {e}"),
        }
    }
}

/// `multiplex-loadgen`'s requests for random models of `lora` (`-c` [`MULTIPLEX_C`] for
/// `seconds`, no warmup of its own).
fn multiplex_loadgen(bins: &Bins, url: &str, mode: Mode, seconds: f64, seed: u64) -> Report {
    let mut cmd = Command::new(&bins.multiplex_loadgen);
    cmd.args(["--url", url, "--mode", mode.arg()]).args([
        "--models",
        &MODELS.to_string(),
        "--seed",
        &seed.to_string(),
    ]);
    let limit = Load::Timed {
        c: MULTIPLEX_C,
        seconds,
        warmup: 0.0,
    }
    .args(&mut cmd);
    let (v, out) = run_load("multiplex-loadgen", cmd, limit);
    let num = |k: &str| v[k].as_f64().unwrap_or_else(|| panic!("no {k} in {out}"));
    Report {
        requests: num("requests") as u64,
        errors: num("errors") as u64,
        non_2xx: num("non_2xx") as u64,
        req_per_s: num("req_per_s"),
        p50_us: num("p50_us"),
        p99_us: num("p99_us"),
        frames_per_s: 0.0,
    }
}

/// One round of the multiplexing bench: a fresh server, its counters over the measured window.
struct MultiplexRound {
    report: Report,
    /// `get_model` requests over the measured window, summed over the replicas.
    gets: f64,
    /// Models loaded over the measured window.
    loads: f64,
    /// Models loaded during the warmup (from cold caches).
    warmup_loads: f64,
    /// Requests of the warmup that failed or did not answer 2xx.
    warmup_failures: u64,
}

impl MultiplexRound {
    /// The share of `get_model` requests that found their model loaded (or loading).
    fn hit_rate(&self) -> f64 {
        if self.gets > 0.0 {
            1.0 - self.loads / self.gets
        } else {
            0.0
        }
    }

    fn failures(&self) -> u64 {
        self.report.errors
            + self.report.non_2xx
            + u64::from(self.report.requests == 0)
            + self.warmup_failures
    }
}

/// Model multiplexing: the openai example's `lora` (2 replicas holding at most 2 models each,
/// 50 ms a load) asked for 4 models at random; the cache hit rate over a measured window once
/// warm, `1 - loads / get_model requests` from the dashboard's counters, with the model id in
/// the header (the router sends a request to a replica that holds its model) against in the
/// body (it cannot: about 50%). A fresh server each round (cold caches), header and body
/// rounds alternating.
fn multiplex(bins: &Bins, quick: bool) {
    let (rounds, seconds, warmup) = if quick { (1, 2.0, 1.0) } else { (3, 5.0, 2.0) };
    let openai = build_openai();
    let mut results: Vec<(Mode, Vec<MultiplexRound>)> =
        vec![(Mode::Header, Vec::new()), (Mode::Body, Vec::new())];
    for round in 1..=rounds {
        for (i, (mode, done)) in results.iter_mut().enumerate() {
            let (server, dashboard) = start_openai(&openai);
            let url = server.url("/v1/chat/completions");
            let seed = (round * 2 + i) as u64;
            let warm = multiplex_loadgen(bins, &url, *mode, warmup, seed);
            let before = model_counts(&dashboard);
            let report = multiplex_loadgen(bins, &url, *mode, seconds, seed + 100);
            let after = model_counts(&dashboard);
            server.stop();
            let r = MultiplexRound {
                report,
                gets: after.gets - before.gets,
                loads: after.loads - before.loads,
                warmup_loads: before.loads,
                warmup_failures: warm.errors + warm.non_2xx + u64::from(warm.requests == 0),
            };
            let held: Vec<String> = after
                .held
                .iter()
                .map(|(replica, models)| format!("{replica}: {}", models.join(" ")))
                .collect();
            eprintln!(
                "multiplex {} round {round}/{rounds}: hit rate {:.1}% ({} loads / {} get_model \
                 requests), {:.0} req/s, p99 {}; warmup loads {}; held at the end: {}",
                mode.arg(),
                r.hit_rate() * 100.0,
                r.loads,
                r.gets,
                r.report.req_per_s,
                ms(r.report.p99_us),
                r.warmup_loads,
                held.join(", ")
            );
            done.push(r);
        }
    }
    println!();
    println!(
        "## Model multiplexing: the openai example's `lora` (2 replicas, at most 2 models each, \
         50 ms a load, max_ongoing_requests 8), {MODELS} models picked uniformly at random, \
         c={MULTIPLEX_C}; cache hit rate = 1 - loads / get_model requests over {seconds} s, after \
         {warmup} s of warmup, a fresh server (cold caches) per round, {rounds} round(s) per mode, \
         alternating"
    );
    let pct = |x: f64| format!("{:.1}%", x * 100.0);
    let mut medians = Vec::new();
    for (mode, done) in &results {
        println!();
        println!("### {}", mode.label());
        println!();
        println!(
            "| round | hit rate | get_model requests | loads | loads in warmup | req/s | p50 | p99 | failures |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        for (n, r) in done.iter().enumerate() {
            println!(
                "| {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {} | {} | {} |",
                n + 1,
                pct(r.hit_rate()),
                r.gets,
                r.loads,
                r.warmup_loads,
                r.report.req_per_s,
                ms(r.report.p50_us),
                ms(r.report.p99_us),
                r.failures()
            );
        }
        let med = |f: fn(&MultiplexRound) -> f64| median(done.iter().map(f).collect());
        let hit = med(MultiplexRound::hit_rate);
        println!(
            "| median | {} | {:.0} | {:.0} | {:.0} | {:.0} | {} | {} | |",
            pct(hit),
            med(|r| r.gets),
            med(|r| r.loads),
            med(|r| r.warmup_loads),
            med(|r| r.report.req_per_s),
            ms(med(|r| r.report.p50_us)),
            ms(med(|r| r.report.p99_us)),
        );
        medians.push((mode.arg(), hit));
        for (n, r) in done.iter().enumerate() {
            if r.failures() > 0 {
                println!(
                    "WARNING: multiplex {} round {}: {} errors or non-2xx answers (or an empty run)",
                    mode.arg(),
                    n + 1,
                    r.failures()
                );
            }
        }
    }
    println!();
    println!(
        "Cache hit rate once warm (median): {}",
        medians
            .iter()
            .map(|(mode, hit)| format!("{mode} {}", pct(*hit)))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

/// The sections, each run alone when named (`quick` shortens them).
const SECTIONS: [&str; 5] = ["throughput", "counts", "hop", "grpc", "multiplex"];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let has = |word: &str| args.iter().any(|a| a == word);
    let quick = has("quick");
    // No section named: every section.
    let all = !SECTIONS.iter().any(|s| has(s));
    let run = |section: &str| all || has(section);
    let (run_throughput, run_counts, run_hop, run_grpc, run_multiplex) = (
        run("throughput"),
        run("counts"),
        run("hop"),
        run("grpc"),
        run("multiplex"),
    );
    let bins = build();
    let loadavg = || std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "rayai load benchmark from outside: {} CPUs, load average {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        loadavg()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    if run_throughput {
        throughput(&bins, quick);
    }
    if run_hop {
        proxy_hop(&bins, quick);
    }
    let dir = std::env::temp_dir().join(format!("rayai-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    if run_counts {
        counts(&bins, &dir);
    }
    if run_grpc {
        grpc(&bins, &dir, quick);
    }
    let _ = std::fs::remove_dir_all(&dir);
    if run_multiplex {
        multiplex(&bins, quick);
    }
    println!();
    println!(
        "load average at the end: {}",
        loadavg()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
}
