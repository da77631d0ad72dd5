//! A real Prometheus scrapes a server under traffic; the PromQL of every panel of Ray Serve's
//! two Grafana dashboards (`grafana_panels.txt`) must return series with the labels it groups
//! by.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Stdio;

use serde_json::Value;

use super::exposition::tool;
use super::*;

/// How long Prometheus may take to have data for every panel.
const PANELS_WAIT: Duration = Duration::from_secs(60);

/// One target of a panel.
#[derive(Debug)]
struct Target {
    dashboard: String,
    panel: String,
    need: String,
    expr: String,
}

fn targets() -> Vec<Target> {
    let text = include_str!("grafana_panels.txt");
    let mut out = Vec::new();
    let mut lines = text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'));
    while let Some(head) = lines.next() {
        let head = head.strip_prefix("@ ").expect("a target starts with `@ `");
        let fields: Vec<&str> = head.splitn(4, " | ").collect();
        let expr = lines.next().expect("a query after its header");
        out.push(Target {
            dashboard: fields[0].to_owned(),
            panel: format!("{} {}", fields[1], fields[2]),
            need: fields[3].to_owned(),
            expr: expr.to_owned(),
        });
    }
    out
}

/// The query as Grafana sends it with every variable on "All".
fn resolve(expr: &str) -> String {
    let mut q = expr.to_owned();
    for var in [
        "$Application",
        "$HTTP_Route",
        "$gRPC_Method",
        "$Deployment",
        "$Replica",
        "$Cluster",
        "$Route",
    ] {
        q = q.replace(var, ".*");
    }
    q.replace("$__rate_interval", "30s")
        .replace("$interval", "30s")
}

/// The labels the query's result must carry: those it groups by, but `le` (which
/// `histogram_quantile` consumes).
fn grouped_by(expr: &str) -> BTreeSet<String> {
    let mut labels = BTreeSet::new();
    let mut rest = expr;
    while let Some(at) = rest.find(" by (") {
        let after = &rest[at + 5..];
        let end = after.find(')').expect("a closing parenthesis");
        for label in after[..end].split(',').map(str::trim) {
            if label != "le" && !label.is_empty() {
                labels.insert(label.to_owned());
            }
        }
        rest = &after[end..];
    }
    labels
}

#[test]
fn the_fixture_holds_every_panel_of_both_dashboards() {
    let all = targets();
    let panels = |dashboard: &str| {
        all.iter()
            .filter(|t| t.dashboard == dashboard)
            .map(|t| {
                t.panel
                    .split(' ')
                    .next()
                    .unwrap_or("")
                    .parse::<u32>()
                    .unwrap()
            })
            .collect::<BTreeSet<_>>()
    };
    let serve: Vec<u32> = panels("serve").into_iter().collect();
    assert_eq!(
        serve,
        [
            2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 20, 21, 22, 23, 24, 25
        ]
    );
    let deployment: Vec<u32> = panels("serve_deployment").into_iter().collect();
    assert_eq!(deployment, (1..=15).collect::<Vec<_>>());
    assert_eq!(
        grouped_by("histogram_quantile(0.5, sum(rate(x[5m])) by (application, route, le))"),
        BTreeSet::from(["application".to_owned(), "route".to_owned()])
    );
    assert!(resolve(&all[0].expr).contains("ray_io_cluster=~\".*\""));
    for t in &all {
        assert!(
            t.need == "all" || t.need == "gpu" || t.need.starts_with("n/a: "),
            "{t:?}"
        );
    }
}

/// Prometheus's data directory and process, removed and stopped when dropped.
struct Prometheus {
    dir: PathBuf,
    child: tokio::process::Child,
    addr: SocketAddr,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A free port on loopback.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

async fn start_prometheus(binary: &str, target: SocketAddr) -> Prometheus {
    let dir = std::env::temp_dir().join(format!(
        "rayai-prometheus-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(dir.join("data")).expect("a temporary directory");
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: rayai\n    static_configs:\n      \
             - targets: ['{target}']\n"
        ),
    )
    .expect("the configuration");
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port())
        .parse()
        .expect("an address");
    let child = tokio::process::Command::new(binary)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={addr}"))
        .arg("--log.level=warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("prometheus starts");
    let prometheus = Prometheus { dir, child, addr };
    eventually(Duration::from_secs(30), "prometheus ready", || async {
        tokio::net::TcpStream::connect(addr).await.is_ok()
            && get(addr, "/-/ready").await.status == StatusCode::OK
    })
    .await;
    prometheus
}

/// Percent-encodes a query parameter.
fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The series `query` returns now; panics on an error from Prometheus.
async fn query(prometheus: SocketAddr, query: &str) -> Vec<Value> {
    let reply = get(
        prometheus,
        &format!("/api/v1/query?query={}", encode(query)),
    )
    .await;
    let body = reply.json();
    assert_eq!(body["status"], "success", "{query}: {body}");
    body["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_draws_every_panel_of_rays_serve_dashboards() {
    let Some(binary) = tool("/usr/bin/prometheus") else {
        return;
    };
    let server = start().await;
    let dash = server.dashboard_addr().expect("the dashboard runs");
    backpressure_and_a_client_that_leaves(&server).await;
    let _traffic = background_traffic(server.local_addr());
    let prometheus = start_prometheus(binary, dash).await;

    // Prometheus asks for OpenMetrics: a scrape it cannot parse would leave `up` at 0.
    eventually(PANELS_WAIT, "a successful scrape", || async {
        query(prometheus.addr, "up{job=\"rayai\"}")
            .await
            .iter()
            .any(|s| s["value"][1] == "1")
    })
    .await;
    let wanted: Vec<Target> = targets().into_iter().filter(|t| t.need == "all").collect();
    assert!(wanted.len() >= 40, "{} targets", wanted.len());
    let mut missing: Vec<String> = Vec::new();
    let deadline = tokio::time::Instant::now() + PANELS_WAIT;
    for target in &wanted {
        let q = resolve(&target.expr);
        let labels = grouped_by(&target.expr);
        let drawn = |series: &[Value]| {
            series.iter().any(|s| {
                labels.iter().all(|l| {
                    s["metric"][l.as_str()]
                        .as_str()
                        .is_some_and(|v| !v.is_empty())
                })
            })
        };
        let mut series = query(prometheus.addr, &q).await;
        while !drawn(&series) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(250)).await;
            series = query(prometheus.addr, &q).await;
        }
        if !drawn(&series) {
            missing.push(format!(
                "{} panel {}: {q}\n  wants labels {labels:?}, got {series:?}",
                target.dashboard, target.panel
            ));
        }
    }
    assert!(
        missing.is_empty(),
        "panels without data:\n{}",
        missing.join("\n")
    );
    drop(prometheus);
    server.shutdown().await;
}
