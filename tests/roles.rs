//! The conformance example as four processes on loopback, with static discovery: one proxy
//! (`RAYAI_ROLE=proxy`) in front of three replica processes (`RAYAI_ROLE=replica`): two run
//! `echo` and `counter`, the third every other deployment. A fifth process runs the same program
//! as one (`RAYAI_ROLE=all`), and the proxy must answer exactly what it answers. Then, under load,
//! one replica process is killed with SIGKILL: every request gets an answer, none it had not
//! started is lost, the sessions on the survivor stay put, and the killed process rejoins when it
//! is started again.
//!
//! Every process is this test binary again, running [`child_conformance`]: what the conformance
//! example's `main` runs.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

/// How long the parent waits for any one thing before it fails.
const WAIT: Duration = Duration::from_secs(60);

/// A child: the conformance example's program (or, with `RAYAI_TEST_APP=composition` or
/// `openai`, that example's), in the role its environment says.
#[test]
#[ignore = "a child process of the roles test, which runs it"]
fn child_conformance() {
    assert!(
        std::env::var_os("RAYAI_TEST_ROLES_CHILD").is_some(),
        "run by the roles test, in a process of its own"
    );
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(async {
        let server = rayai::serve::start(rayai::HttpOptions {
            dashboard_best_effort: true,
            ..rayai::HttpOptions::try_from_env().expect("valid variables")
        })
        .await
        .expect("starts");
        let app = std::env::var("RAYAI_TEST_APP");
        if app.as_deref() == Ok("composition") {
            server
                .deploy(composition::apps::app(), "/")
                .await
                .expect("deploys");
        } else if app.as_deref() == Ok("openai") {
            server.deploy(openai::app(), "/").await.expect("deploys");
        } else {
            server
                .deploy(conformance::agents::app(), "/")
                .await
                .expect("deploys");
            server
                .deploy(conformance::agents::greeter_app(), "/")
                .await
                .expect("deploys the greeter");
        }
        rayai::serve::shutdown_signal().await;
        server.shutdown().await;
    });
}

/// A child process, killed when dropped.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn spawn(dir: &std::path::Path, name: &str, port: u16, env: &[(&str, String)]) -> Proc {
    let log = dir.join(format!("{name}.log"));
    let file = std::fs::File::create(&log).expect("a log file");
    let mut cmd = Command::new(std::env::current_exe().expect("this test binary"));
    cmd.args(["--exact", "child_conformance", "--ignored", "--nocapture"])
        .env("RAYAI_TEST_ROLES_CHILD", "1")
        .env("RAYAI_PORT", port.to_string())
        .env("RAYAI_DASHBOARD_PORT", "0")
        .env("RAYAI_PROBE_PERIOD_S", "0.2")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(file);
    for (k, v) in env {
        cmd.env(k, v);
    }
    Proc {
        child: cmd.spawn().expect("the child starts"),
        log,
    }
}

type Http = Client<HttpConnector, Full<Bytes>>;

fn client() -> Http {
    Client::builder(TokioExecutor::new()).build_http()
}

/// One answer: status, the headers that make the contract, and the body.
#[derive(Debug, PartialEq)]
struct Answer {
    status: u16,
    content_type: Option<String>,
    retry_after: Option<String>,
    body: String,
}

async fn send(
    http: &Http,
    addr: SocketAddr,
    method: Method,
    path: &str,
    body: &str,
) -> Result<Answer, String> {
    let req = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_owned())))
        .expect("a request");
    let resp = tokio::time::timeout(Duration::from_secs(30), http.request(req))
        .await
        .map_err(|_| "no answer within 30 s".to_owned())?
        .map_err(|e| format!("{e:?}"))?;
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (status, content_type, retry_after) = (
        resp.status().as_u16(),
        header("content-type"),
        header("retry-after"),
    );
    let body = tokio::time::timeout(Duration::from_secs(30), resp.into_body().collect())
        .await
        .map_err(|_| "the body did not end within 30 s".to_owned())?
        .map_err(|e| format!("{e:?}"))?
        .to_bytes();
    Ok(Answer {
        status,
        content_type,
        retry_after,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

async fn post(http: &Http, addr: SocketAddr, path: &str, body: &str) -> Answer {
    send(http, addr, Method::POST, path, body)
        .await
        .unwrap_or_else(|e| panic!("POST {path} to {addr}: {e}"))
}

async fn eventually<F, Fut>(what: &str, procs: &[&Proc], mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        if start.elapsed() > WAIT {
            let logs: Vec<String> = procs.iter().map(|p| p.logs()).collect();
            panic!("waited {WAIT:?} for {what}\n{}", logs.join("\n----\n"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `served` of each replica of `deployment` in the proxy's status API, by replica id
/// (a remote replica's id is its address), and its state.
async fn replicas(
    http: &Http,
    dashboard: SocketAddr,
    deployment: &str,
) -> BTreeMap<String, (String, u64)> {
    let Ok(answer) = send(http, dashboard, Method::GET, "/api/serve/applications/", "").await
    else {
        return BTreeMap::new();
    };
    let Ok(status) = serde_json::from_str::<Value>(&answer.body) else {
        return BTreeMap::new();
    };
    let mut out = BTreeMap::new();
    for app in status["applications"].as_object().into_iter().flatten() {
        for (name, d) in app.1["deployments"].as_object().into_iter().flatten() {
            if name != &format!("{deployment}-deployment") {
                continue;
            }
            for r in d["replicas"].as_array().into_iter().flatten() {
                out.insert(
                    r["replica_id"].as_str().unwrap_or_default().to_owned(),
                    (
                        r["state"].as_str().unwrap_or_default().to_owned(),
                        r["served"].as_u64().unwrap_or(0),
                    ),
                );
            }
        }
    }
    out
}

/// The replica process a session's `counter` requests reach: the address whose `served` grew.
async fn process_of(
    http: &Http,
    proxy: SocketAddr,
    dashboard: SocketAddr,
    session: &str,
) -> String {
    let before = replicas(http, dashboard, "counter").await;
    let answer = post(
        http,
        proxy,
        "/agents/counter/chat",
        &json!({ "data": {}, "session_id": session }).to_string(),
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let after = replicas(http, dashboard, "counter").await;
    let grew: Vec<&String> = after
        .iter()
        .filter(|(id, (_, served))| before.get(*id).map_or(0, |b| b.1) < *served)
        .map(|(id, _)| id)
        .collect();
    assert_eq!(
        grew.len(),
        1,
        "one process served {session}: {before:?} -> {after:?}"
    );
    grew[0].clone()
}

/// Four clients POST `echo` through the proxy in a loop; `midway` runs after 500 ms, the load
/// stops a second later. Returns how many answers had each status (or error).
async fn under_load(
    http: &Http,
    proxy: SocketAddr,
    midway: impl FnOnce(),
) -> BTreeMap<String, usize> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..4 {
        let (http, stop) = (http.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let mut answers: Vec<Result<u16, String>> = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) && i < 5000 {
                let body = json!({ "data": { "w": w, "i": i } }).to_string();
                let answer = send(&http, proxy, Method::POST, "/agents/echo/chat", &body).await;
                answers.push(answer.map(|a| {
                    if a.status == 200 {
                        assert_eq!(
                            serde_json::from_str::<Value>(&a.body).expect("JSON")["result"]["echo"],
                            json!({ "w": w, "i": i })
                        );
                    }
                    a.status
                }));
                i += 1;
            }
            answers
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    midway();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::SeqCst);
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for w in workers {
        for answer in w.await.expect("a worker") {
            let key = match answer {
                Ok(status) => status.to_string(),
                Err(e) => format!("error: {e}"),
            };
            *counts.entry(key).or_default() += 1;
        }
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_and_three_replica_processes_serve_the_single_process_contract() {
    scenario("h1").await;
}

/// The same over pooled HTTP/2 between the proxy and the replica processes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_over_http2() {
    scenario("h2").await;
}

async fn scenario(wire: &str) {
    let dir = std::env::temp_dir().join(format!("rayai-roles-{wire}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    let ports: Vec<u16> = (0..6).map(|_| free_port()).collect();
    let (proxy_port, r1, r2, r3, single_port, dash_port) =
        (ports[0], ports[1], ports[2], ports[3], ports[4], ports[5]);
    let discovery = dir.join("replicas.toml");
    let rest = format!("[\"127.0.0.1:{r3}\"]");
    let pair = format!("[\"127.0.0.1:{r1}\", \"127.0.0.1:{r2}\"]");
    std::fs::write(
        &discovery,
        format!(
            "[deployments]\necho = {pair}\ncounter = {pair}\nplain = {rest}\nslow = {rest}\n\
             panicky = {rest}\nblocking = {rest}\ngreeter = {rest}\n"
        ),
    )
    .expect("the discovery file");
    let static_file = format!("static:{}", discovery.display());
    let replica = |deployments: &str| {
        vec![
            ("RAYAI_ROLE", "replica".to_owned()),
            ("RAYAI_DEPLOYMENT", deployments.to_owned()),
            ("RAYAI_DISCOVERY", static_file.clone()),
            ("RAYAI_WIRE", wire.to_owned()),
        ]
    };
    let p1 = spawn(&dir, "replica-1", r1, &replica("echo,counter"));
    let mut p2 = spawn(&dir, "replica-2", r2, &replica("echo,counter"));
    let p3 = spawn(
        &dir,
        "replica-3",
        r3,
        &replica("plain,slow,panicky,blocking,greeter"),
    );
    let proxy = spawn(
        &dir,
        "proxy",
        proxy_port,
        &[
            ("RAYAI_ROLE", "proxy".to_owned()),
            ("RAYAI_DISCOVERY", static_file.clone()),
            ("RAYAI_WIRE", wire.to_owned()),
            ("RAYAI_DASHBOARD_PORT", dash_port.to_string()),
        ],
    );
    let single = spawn(&dir, "single", single_port, &[]);
    let (proxy_addr, single_addr, dashboard) = (
        SocketAddr::from(([127, 0, 0, 1], proxy_port)),
        SocketAddr::from(([127, 0, 0, 1], single_port)),
        SocketAddr::from(([127, 0, 0, 1], dash_port)),
    );
    let http = client();
    let all = [&p1, &p2, &p3, &proxy, &single];
    eventually(
        "every replica process to be live in the proxy",
        &all,
        || async {
            let echo = replicas(&http, dashboard, "echo").await;
            let plain = replicas(&http, dashboard, "plain").await;
            echo.len() == 2
                && echo.values().all(|(state, _)| state == "RUNNING")
                && plain.values().any(|(state, _)| state == "RUNNING")
        },
    )
    .await;
    eventually("the single process to answer", &all, || async {
        send(&http, single_addr, Method::GET, "/-/healthz", "")
            .await
            .is_ok_and(|a| a.status == 200)
    })
    .await;

    // The contract, byte for byte against the single process.
    let cases: &[(&str, &str)] = &[
        ("/agents/echo/chat", r#"{"data": {"x": 1}}"#),
        (
            "/agents/echo/chat",
            r#"{"data": {"x": 1}, "session_id": "abc"}"#,
        ),
        (
            "/agents/echo/chat",
            r#"{"data": {"chunks": ["a", "b", "c"]}, "stream": "text"}"#,
        ),
        (
            "/agents/echo/chat",
            r#"{"data": {"events": [{"n": 1}, {"n": 2}]}, "stream": "events"}"#,
        ),
        (
            "/agents/echo/chat",
            r#"{"data": {"events": [{"n": 1}], "fail": "late"}, "stream": "events"}"#,
        ),
        ("/agents/echo/chat", r#"{"data": {"fail": "nope"}}"#),
        ("/agents/echo/chat", r#"{"data": 5}"#),
        ("/agents/echo/chat", r#"{"stream": true}"#),
        ("/agents/echo/chat", "not json"),
        ("/agents/plain/chat", r#"{"data": {}, "stream": "text"}"#),
        ("/agents/plain/chat", r#"{"data": {}, "stream": "events"}"#),
        ("/agents/plain/chat", r#"{"data": {}}"#),
        ("/agents/panicky/chat", r#"{"data": {"panic": true}}"#),
        ("/agents/panicky/chat", r#"{"data": {}}"#),
        ("/agents/greeter/chat", r#"{"data": {"name": "Ada"}}"#),
        ("/agents/nope/chat", r#"{"data": {}}"#),
        ("/nowhere", "{}"),
    ];
    for (path, body) in cases {
        let via_proxy = post(&http, proxy_addr, path, body).await;
        let alone = post(&http, single_addr, path, body).await;
        assert_eq!(via_proxy, alone, "POST {path} {body}");
    }
    let get = send(&http, proxy_addr, Method::GET, "/agents/echo/chat", "")
        .await
        .expect("an answer");
    let alone = send(&http, single_addr, Method::GET, "/agents/echo/chat", "")
        .await
        .expect("an answer");
    assert_eq!(get, alone);

    // Backpressure: `slow` takes one request and queues one; the rest get the same 503.
    let mut burst = Vec::new();
    for _ in 0..5 {
        let http = http.clone();
        burst.push(tokio::spawn(async move {
            post(
                &http,
                proxy_addr,
                "/agents/slow/chat",
                r#"{"data": {"ms": 600}}"#,
            )
            .await
        }));
    }
    let mut statuses = Vec::new();
    for b in burst {
        let answer = b.await.expect("the request task");
        if answer.status == 503 {
            assert!(
                answer.body.contains("Request dropped due to backpressure"),
                "{answer:?}"
            );
        }
        statuses.push(answer.status);
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 200, 503, 503, 503], "{statuses:?}");

    // A client that leaves cancels the work on the replica: the slot frees, and the next
    // request is served at once.
    let leaving = {
        let http = http.clone();
        tokio::spawn(async move {
            let _ = send(
                &http,
                proxy_addr,
                Method::POST,
                "/agents/slow/chat",
                r#"{"data": {"ms": 30000}}"#,
            )
            .await;
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    leaving.abort();
    let _ = leaving.await;
    let started = Instant::now();
    eventually(
        "the slow agent to be free after the client left",
        &all,
        || async {
            post(
                &http,
                proxy_addr,
                "/agents/slow/chat",
                r#"{"data": {"ms": 1}}"#,
            )
            .await
            .status
                == 200
        },
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the abandoned 30 s request kept its slot"
    );

    // Sticky sessions: each session stays on one replica process.
    let sessions: Vec<String> = (0..12).map(|i| format!("user-{i}")).collect();
    let mut home = BTreeMap::new();
    for s in &sessions {
        let first = process_of(&http, proxy_addr, dashboard, s).await;
        for _ in 0..2 {
            assert_eq!(
                process_of(&http, proxy_addr, dashboard, s).await,
                first,
                "{s} moved"
            );
        }
        home.insert(s.clone(), first);
    }
    let killed = format!("127.0.0.1:{r2}");
    let survivor = format!("127.0.0.1:{r1}");
    assert!(
        home.values().any(|h| h == &killed) && home.values().any(|h| h == &survivor),
        "the sessions spread over both processes: {home:?}"
    );

    // Load, and SIGKILL of one replica process in the middle of it.
    let counts = under_load(&http, proxy_addr, || {
        p2.child.kill().expect("SIGKILL");
        let _ = p2.child.wait();
    })
    .await;
    let ok = counts.get("200").copied().unwrap_or(0);
    let lost = counts.get("502").copied().unwrap_or(0);
    assert!(ok > 100, "the load ran: {counts:?}");
    // Only the requests the killed process had started may fail (a 502 that says so); each of
    // the four clients had at most one in flight.
    assert!(lost <= 4, "{counts:?}");
    assert_eq!(
        ok + lost,
        counts.values().sum::<usize>(),
        "every request answered: {counts:?}"
    );

    // The sessions on the survivor did not move; those of the killed one went to the survivor.
    for (s, was) in &home {
        let now = process_of(&http, proxy_addr, dashboard, s).await;
        assert_eq!(now, survivor, "{s} (was on {was})");
    }
    let states = replicas(&http, dashboard, "echo").await;
    assert_eq!(states[&killed].0, "UNREACHABLE", "{states:?}");

    // Started again, it rejoins, and its sessions come back to it.
    let p2 = spawn(&dir, "replica-2-again", r2, &replica("echo,counter"));
    let all = [&p1, &p2, &p3, &proxy, &single];
    eventually("the restarted replica process to rejoin", &all, || async {
        replicas(&http, dashboard, "echo")
            .await
            .get(&killed)
            .is_some_and(|(state, _)| state == "RUNNING")
            && replicas(&http, dashboard, "counter")
                .await
                .get(&killed)
                .is_some_and(|(state, _)| state == "RUNNING")
    })
    .await;
    for (s, was) in &home {
        assert_eq!(
            &process_of(&http, proxy_addr, dashboard, s).await,
            was,
            "{s}"
        );
    }
    let _ = all;
    let _ = std::fs::remove_dir_all(&dir);
}

/// The composition example across processes: the proxy, its ingress in one replica process, and
/// every stage it composes (typed `Callable`s crossing as JSON, agents, a stream) in another,
/// answering what the single process answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn composition_across_processes_answers_as_one_process() {
    let dir = std::env::temp_dir().join(format!("rayai-roles-composition-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    let (proxy_port, ingress_port, stages_port, single_port) =
        (free_port(), free_port(), free_port(), free_port());
    let stages =
        "preprocess,word_count,postprocess,doubler,adder,squarer,reverse_model,upper_model,tokens";
    let mut file = format!("[deployments]\ncomposition = [\"127.0.0.1:{ingress_port}\"]\n");
    for name in stages.split(',') {
        file.push_str(&format!("{name} = [\"127.0.0.1:{stages_port}\"]\n"));
    }
    let discovery = dir.join("replicas.toml");
    std::fs::write(&discovery, file).expect("the discovery file");
    let static_file = format!("static:{}", discovery.display());
    let app = ("RAYAI_TEST_APP", "composition".to_owned());
    let role = |role: &str, deployments: &str| {
        vec![
            app.clone(),
            ("RAYAI_ROLE", role.to_owned()),
            ("RAYAI_DEPLOYMENT", deployments.to_owned()),
            ("RAYAI_DISCOVERY", static_file.clone()),
        ]
    };
    let ingress = spawn(
        &dir,
        "ingress",
        ingress_port,
        &role("replica", "composition"),
    );
    let stage_proc = spawn(&dir, "stages", stages_port, &role("replica", stages));
    let proxy = spawn(
        &dir,
        "proxy",
        proxy_port,
        &[
            app.clone(),
            ("RAYAI_ROLE", "proxy".to_owned()),
            ("RAYAI_DISCOVERY", static_file.clone()),
        ],
    );
    let single = spawn(&dir, "single", single_port, std::slice::from_ref(&app));
    let (proxy_addr, single_addr) = (
        SocketAddr::from(([127, 0, 0, 1], proxy_port)),
        SocketAddr::from(([127, 0, 0, 1], single_port)),
    );
    let http = client();
    let all = [&ingress, &stage_proc, &proxy, &single];
    for addr in [proxy_addr, single_addr] {
        eventually("the pipeline to answer", &all, || async {
            send(
                &http,
                addr,
                Method::POST,
                "/pipeline",
                r#"{"text": "  Hello Big World "}"#,
            )
            .await
            .is_ok_and(|a| a.status == 200)
        })
        .await;
    }
    let cases: &[(&str, &str)] = &[
        ("/pipeline", r#"{"text": "  Hello Big World "}"#),
        ("/pipeline", r#"{"text": 5}"#),
        ("/ensemble", r#"{"x": 3}"#),
        ("/ensemble", r#"{"x": "three"}"#),
        ("/route", r#"{"kind": "a", "text": "abc"}"#),
        ("/route", r#"{"kind": "b", "text": "abc"}"#),
        ("/route", r#"{"kind": "c"}"#),
        ("/stream", r#"{"n": 3}"#),
        ("/nowhere", "{}"),
    ];
    for (path, body) in cases {
        let via_proxy = post(&http, proxy_addr, path, body).await;
        let alone = post(&http, single_addr, path, body).await;
        assert_eq!(via_proxy, alone, "POST {path} {body}");
    }
    let pipeline = post(
        &http,
        proxy_addr,
        "/pipeline",
        r#"{"text": "  Hello Big World "}"#,
    )
    .await;
    assert_eq!(pipeline.body, r#"{"result":"3 words: hello big world"}"#);
    let _ = all;
    let _ = std::fs::remove_dir_all(&dir);
}

/// The OpenAI routes and a multiplexed model through a proxy: the proxy resolves `model`, the
/// model id (from the `model` suffix or the header) crosses to the replica process, whose
/// `ModelCache` loads that model.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multiplexed_model_id_crosses_to_the_replica_process() {
    let dir = std::env::temp_dir().join(format!("rayai-roles-openai-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    let (proxy_port, lora_port) = (free_port(), free_port());
    let discovery = dir.join("replicas.toml");
    std::fs::write(
        &discovery,
        format!("[deployments]\nlora = [\"127.0.0.1:{lora_port}\"]\n"),
    )
    .expect("the discovery file");
    let env = |role: &str| {
        vec![
            ("RAYAI_TEST_APP", "openai".to_owned()),
            ("RAYAI_ROLE", role.to_owned()),
            ("RAYAI_DEPLOYMENT", "lora".to_owned()),
            ("RAYAI_DISCOVERY", format!("static:{}", discovery.display())),
        ]
    };
    let lora = spawn(&dir, "lora", lora_port, &env("replica"));
    let proxy = spawn(&dir, "proxy", proxy_port, &env("proxy"));
    let proxy_addr = SocketAddr::from(([127, 0, 0, 1], proxy_port));
    let http = client();
    let body = |model: &str| {
        format!(r#"{{"model": "{model}", "messages": [{{"role": "user", "content": "hi"}}]}}"#)
    };
    let content = |answer: &Answer| -> String {
        let completion: Value = serde_json::from_str(&answer.body).expect("JSON");
        completion["choices"][0]["message"]["content"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    eventually("the proxy to reach lora", &[&lora, &proxy], || async {
        send(
            &http,
            proxy_addr,
            Method::POST,
            "/v1/chat/completions",
            &body("lora:adapter-1"),
        )
        .await
        .is_ok_and(|a| a.status == 200)
    })
    .await;
    let suffixed = post(
        &http,
        proxy_addr,
        "/v1/chat/completions",
        &body("lora:adapter-1"),
    )
    .await;
    assert_eq!(content(&suffixed), "[adapter-1] hi", "{suffixed:?}");
    let req = Request::builder()
        .method(Method::POST)
        .uri(format!("http://{proxy_addr}/v1/chat/completions"))
        .header("content-type", "application/json")
        .header("serve_multiplexed_model_id", "adapter-2")
        .body(Full::new(Bytes::from(body("lora"))))
        .expect("a request");
    let resp = tokio::time::timeout(WAIT, http.request(req))
        .await
        .expect("in time")
        .expect("an answer");
    let bytes = resp.into_body().collect().await.expect("a body").to_bytes();
    let completion: Value = serde_json::from_slice(&bytes).expect("JSON");
    assert_eq!(
        completion["choices"][0]["message"]["content"],
        "[adapter-2] hi"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A bad role, or a replica role naming a deployment the program does not have, stops the
/// program with one error naming the valid choices.
#[test]
fn bad_role_settings_are_one_clear_error() {
    let dir = std::env::temp_dir().join(format!("rayai-roles-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    let run = |name: &str, env: &[(&str, String)]| {
        let mut proc = spawn(&dir, name, free_port(), env);
        let start = Instant::now();
        let status = loop {
            if let Some(status) = proc.child.try_wait().expect("waits") {
                break status;
            }
            assert!(
                start.elapsed() < WAIT,
                "{name} kept running\n{}",
                proc.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        (status, proc.logs())
    };
    let (status, logs) = run("bogus", &[("RAYAI_ROLE", "bogus".to_owned())]);
    assert!(!status.success());
    assert!(
        logs.contains("RAYAI_ROLE=\"bogus\" is not one of all, proxy, replica"),
        "{logs}"
    );
    let (status, logs) = run(
        "unknown",
        &[
            ("RAYAI_ROLE", "replica".to_owned()),
            ("RAYAI_DEPLOYMENT", "echo,nope".to_owned()),
        ],
    );
    assert_eq!(status.code(), Some(2), "{logs}");
    assert!(
        logs.contains(
            "RAYAI_DEPLOYMENT names `nope` that this program does not deploy; valid names:"
        ) && logs.contains("echo")
            && logs.contains("greeter"),
        "{logs}"
    );
    let (status, logs) = run("proxy-alone", &[("RAYAI_ROLE", "proxy".to_owned())]);
    assert!(!status.success());
    assert!(
        logs.contains("RAYAI_ROLE=proxy needs RAYAI_DISCOVERY"),
        "{logs}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The static discovery file is read again when it changes: a replica process added to it
/// takes requests, one removed from it gets none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewritten_discovery_file_adds_and_removes_replica_processes() {
    let dir = std::env::temp_dir().join(format!("rayai-roles-file-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    let (proxy_port, r1, r2, dash_port) = (free_port(), free_port(), free_port(), free_port());
    let discovery = dir.join("replicas.toml");
    let write = |ports: &[u16]| {
        let list: Vec<String> = ports.iter().map(|p| format!("\"127.0.0.1:{p}\"")).collect();
        std::fs::write(
            &discovery,
            format!(
                "# rewritten\n[deployments]\ncounter = [{}]\n",
                list.join(", ")
            ),
        )
        .expect("the discovery file");
    };
    write(&[r1]);
    let static_file = format!("static:{}", discovery.display());
    let replica = || {
        vec![
            ("RAYAI_ROLE", "replica".to_owned()),
            ("RAYAI_DEPLOYMENT", "counter".to_owned()),
        ]
    };
    let p1 = spawn(&dir, "replica-1", r1, &replica());
    let p2 = spawn(&dir, "replica-2", r2, &replica());
    let proxy = spawn(
        &dir,
        "proxy",
        proxy_port,
        &[
            ("RAYAI_ROLE", "proxy".to_owned()),
            ("RAYAI_DISCOVERY", static_file.clone()),
            ("RAYAI_DASHBOARD_PORT", dash_port.to_string()),
        ],
    );
    let (proxy_addr, dashboard) = (
        SocketAddr::from(([127, 0, 0, 1], proxy_port)),
        SocketAddr::from(([127, 0, 0, 1], dash_port)),
    );
    let http = client();
    let all = [&p1, &p2, &proxy];
    let (first, second) = (format!("127.0.0.1:{r1}"), format!("127.0.0.1:{r2}"));
    eventually("the first replica process to be live", &all, || async {
        replicas(&http, dashboard, "counter")
            .await
            .get(&first)
            .is_some_and(|(state, _)| state == "RUNNING")
    })
    .await;
    assert!(
        !replicas(&http, dashboard, "counter")
            .await
            .contains_key(&second)
    );

    write(&[r1, r2]);
    eventually(
        "the added replica process to take requests",
        &all,
        || async {
            let answer = post(&http, proxy_addr, "/agents/counter/chat", r#"{"data": {}}"#).await;
            assert_eq!(answer.status, 200, "{answer:?}");
            replicas(&http, dashboard, "counter")
                .await
                .get(&second)
                .is_some_and(|(state, served)| state == "RUNNING" && *served > 0)
        },
    )
    .await;

    write(&[r2]);
    eventually(
        "the removed replica process to leave the set",
        &all,
        || async {
            !replicas(&http, dashboard, "counter")
                .await
                .contains_key(&first)
        },
    )
    .await;
    let before = replicas(&http, dashboard, "counter").await[&second].1;
    for _ in 0..10 {
        let answer = post(&http, proxy_addr, "/agents/counter/chat", r#"{"data": {}}"#).await;
        assert_eq!(answer.status, 200, "{answer:?}");
    }
    assert_eq!(
        replicas(&http, dashboard, "counter").await[&second].1,
        before + 10
    );
    let _ = all;
    let _ = std::fs::remove_dir_all(&dir);
}
