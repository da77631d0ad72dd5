//! `RAYAI_DISCOVERY=kubernetes` end to end: a proxy process watches EndpointSlices through a
//! scripted Kubernetes API server (a kubeconfig points at it) and sends `counter` requests to
//! two replica processes; an endpoint turning not-ready, coming back, and a slice deleted move
//! the traffic, and a `410 Gone` (a relist) loses nothing. The proxy's status API says which
//! process served each request (a remote replica's id is its address).
//!
//! Every process is this test binary again, running [`child_kubernetes`]: the conformance
//! example's program.

#[path = "../rayai-k8s/tests/support/api_server.rs"]
mod api_server;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// How long the parent waits for any one thing before it fails.
const WAIT: Duration = Duration::from_secs(60);

/// A child: the conformance example's program, in the role its environment says.
#[test]
#[ignore = "a child process of the kubernetes test, which runs it"]
fn child_kubernetes() {
    assert!(
        std::env::var_os("RAYAI_TEST_K8S_CHILD").is_some(),
        "run by the kubernetes test, in a process of its own"
    );
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(async {
        let server = rayai::serve::start(rayai::HttpOptions::try_from_env().expect("variables"))
            .await
            .expect("starts");
        server
            .deploy(conformance::agents::app(), "/")
            .await
            .expect("deploys");
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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn spawn(dir: &std::path::Path, name: &str, env: &[(&str, String)]) -> Proc {
    let log = dir.join(format!("{name}.log"));
    let file = std::fs::File::create(&log).expect("a log file");
    let mut cmd = Command::new(std::env::current_exe().expect("this test binary"));
    cmd.args(["--exact", "child_kubernetes", "--ignored", "--nocapture"])
        .env("RAYAI_TEST_K8S_CHILD", "1")
        .env("RAYAI_DASHBOARD_PORT", "0")
        .env("RAYAI_PROBE_PERIOD_S", "0.2")
        .env("RUST_LOG", "warn")
        .env_remove("KUBECONFIG")
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

async fn send(
    http: &Http,
    addr: SocketAddr,
    method: Method,
    path: &str,
) -> Result<(u16, String), String> {
    let req = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(b"{\"data\": {}}")))
        .expect("a request");
    let resp = tokio::time::timeout(Duration::from_secs(30), http.request(req))
        .await
        .map_err(|_| "no answer within 30 s".to_owned())?
        .map_err(|e| format!("{e:?}"))?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("{e:?}"))?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// `served` of each replica of `counter` in the proxy's status API, by address.
async fn served(http: &Http, dashboard: SocketAddr) -> BTreeMap<String, u64> {
    let Ok((200, body)) = send(http, dashboard, Method::GET, "/api/serve/applications/").await
    else {
        return BTreeMap::new();
    };
    let status: Value = serde_json::from_str(&body).unwrap_or_default();
    let mut out = BTreeMap::new();
    for app in status["applications"].as_object().into_iter().flatten() {
        let d = &app.1["deployments"]["counter-deployment"];
        for r in d["replicas"].as_array().into_iter().flatten() {
            out.insert(
                r["replica_id"].as_str().unwrap_or_default().to_owned(),
                r["served"].as_u64().unwrap_or(0),
            );
        }
    }
    out
}

/// Sends `n` counter requests through the proxy; whether each was answered `200`.
async fn try_traffic(http: &Http, proxy: SocketAddr, n: usize) -> bool {
    for _ in 0..n {
        match send(http, proxy, Method::POST, "/agents/counter/chat").await {
            Ok((200, _)) => {}
            _ => return false,
        }
    }
    true
}

/// Sends `n` counter requests through the proxy, each answered `200`.
async fn traffic(http: &Http, proxy: SocketAddr, n: usize) {
    for _ in 0..n {
        let (status, body) = send(http, proxy, Method::POST, "/agents/counter/chat")
            .await
            .expect("an answer");
        assert_eq!(status, 200, "{body}");
    }
}

/// Waits until `check` holds, showing the processes' logs if it never does.
async fn eventually<F, Fut>(what: &str, procs: &[&Proc], mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        if start.elapsed() > WAIT {
            let logs: Vec<String> = procs
                .iter()
                .map(|p| std::fs::read_to_string(&p.log).unwrap_or_default())
                .collect();
            panic!("waited {WAIT:?} for {what}\n{}", logs.join("\n----\n"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The requests each address served between two readings.
fn grew(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(a, n)| (a.clone(), n - before.get(a).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_routes_only_to_ready_endpoints_the_api_server_lists() {
    let dir = std::env::temp_dir().join(format!("rayai-k8s-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let api = api_server::ApiServer::start_in("agents").await;
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: scripted\nclusters:\n- name: scripted\n  \
             cluster:\n    server: {}\ncontexts:\n- name: scripted\n  context:\n    cluster: scripted\n    \
             user: nobody\n    namespace: agents\nusers:\n- name: nobody\n  user: {{}}\n",
            api.url()
        ),
    )
    .unwrap();

    let (port_a, port_b) = (free_port(), free_port());
    let replica = |port: u16| {
        vec![
            ("RAYAI_ROLE", "replica".to_owned()),
            ("RAYAI_DEPLOYMENT", "counter".to_owned()),
            ("RAYAI_NUM_REPLICAS", "1".to_owned()),
            ("RAYAI_PORT", port.to_string()),
        ]
    };
    let a = spawn(&dir, "replica-a", &replica(port_a));
    let b = spawn(&dir, "replica-b", &replica(port_b));
    let (proxy_port, dash_port) = (free_port(), free_port());
    let proxy = spawn(
        &dir,
        "proxy",
        &[
            ("RAYAI_ROLE", "proxy".to_owned()),
            ("RAYAI_DISCOVERY", "kubernetes".to_owned()),
            ("RAYAI_NAME", "conformance".to_owned()),
            ("KUBECONFIG", kubeconfig.display().to_string()),
            ("RAYAI_PORT", proxy_port.to_string()),
            ("RAYAI_DASHBOARD_PORT", dash_port.to_string()),
            ("RAYAI_REPLICA_WAIT_S", "20".to_owned()),
        ],
    );
    let procs = [&proxy, &a, &b];
    let (addr_a, addr_b) = (format!("127.0.0.1:{port_a}"), format!("127.0.0.1:{port_b}"));
    let slice = |name: &str, port: u16, ready: bool| {
        api_server::slice(
            "conformance",
            name,
            "conformance-counter",
            port,
            &[("127.0.0.1", ready)],
        )
    };
    // Another program's slice of a Service of the same name: the selector leaves it out.
    api.apply(api_server::slice(
        "other",
        "other-counter",
        "conformance-counter",
        free_port(),
        &[("127.0.0.1", true)],
    ));
    api.apply(slice("counter-a", port_a, true));
    api.apply(slice("counter-b", port_b, true));

    let http: Http = Client::builder(TokioExecutor::new()).build_http();
    let proxy_addr: SocketAddr = format!("127.0.0.1:{proxy_port}").parse().unwrap();
    let dashboard: SocketAddr = format!("127.0.0.1:{dash_port}").parse().unwrap();
    // Both endpoints appear, and both serve.
    eventually("both replica processes serving counter", &procs, || async {
        // Until the processes listen, requests may be refused.
        try_traffic(&http, proxy_addr, 4).await;
        let now = served(&http, dashboard).await;
        now.get(&addr_a).copied().unwrap_or(0) > 0 && now.get(&addr_b).copied().unwrap_or(0) > 0
    })
    .await;
    let mut expected = vec![addr_a.clone(), addr_b.clone()];
    expected.sort();
    assert_eq!(
        served(&http, dashboard)
            .await
            .into_keys()
            .collect::<Vec<_>>(),
        expected,
        "only this program's endpoints"
    );

    // B turns not-ready: once the proxy knows, every request goes to A.
    api.apply(slice("counter-b", port_b, false));
    eventually("B leaving the proxy's set", &procs, || async {
        !served(&http, dashboard).await.contains_key(&addr_b)
    })
    .await;
    let before = served(&http, dashboard).await;
    traffic(&http, proxy_addr, 30).await;
    let after = served(&http, dashboard).await;
    assert_eq!(
        grew(&before, &after),
        BTreeMap::from([(addr_a.clone(), 30)]),
        "a not-ready endpoint gets nothing"
    );

    // B is ready again: it serves again.
    api.apply(slice("counter-b", port_b, true));
    eventually("B serving again", &procs, || async {
        let before = served(&http, dashboard).await;
        traffic(&http, proxy_addr, 4).await;
        grew(&before, &served(&http, dashboard).await).contains_key(&addr_b)
    })
    .await;

    // The watch expires (410): the watcher lists again; A's slice was deleted meanwhile.
    let lists = api.lists().len();
    api.expire();
    api.delete("counter-a");
    eventually("a relist after the 410, and A gone", &procs, || async {
        api.lists().len() > lists && !served(&http, dashboard).await.contains_key(&addr_a)
    })
    .await;
    let before = served(&http, dashboard).await;
    traffic(&http, proxy_addr, 20).await;
    assert_eq!(
        grew(&before, &served(&http, dashboard).await),
        BTreeMap::from([(addr_b.clone(), 20)]),
        "a deleted slice's endpoint gets nothing"
    );
    drop((proxy, a, b));
    let _ = std::fs::remove_dir_all(&dir);
}
