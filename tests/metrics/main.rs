//! End to end: the metrics as Ray Serve's Grafana dashboards read them. A server with the
//! conformance agents (an app of agents) and the http_features `/api/v1` ingress (an axum
//! router with a path parameter) serves traffic, including an error, a backpressure `503` and
//! a client that hangs up (`499`); then its dashboard port's `/metrics` is read by hand, by
//! `promtool check metrics`, and by a real Prometheus that evaluates the PromQL of every panel
//! of both of Ray's Serve dashboards (`grafana_panels.txt`).
//!
//! `promtool` and `prometheus` come from Debian's `prometheus` package (`.ci/run` installs it).
//! Where they are missing the two tests that need them print `SKIPPED` and pass, except under
//! `CI`, where they fail.

#[path = "../common/mod.rs"]
mod common;

mod exposition;
mod prometheus;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use conformance::agents;
use http::{Method, StatusCode, header};
use rayai::{HttpOptions, Server};

use common::*;

/// One sample of the classic text format: its name, labels and value.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

impl Sample {
    fn label(&self, name: &str) -> Option<&str> {
        self.labels.get(name).map(String::as_str)
    }
}

/// The samples of a classic text exposition (comments skipped).
fn parse(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (head, value) = line.rsplit_once(' ').expect("a sample has a value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("a bad value in {line:?}")),
        };
        let (name, labels) = match head.split_once('{') {
            None => (head.to_owned(), BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').expect("labels end with }");
                (name.to_owned(), parse_labels(body))
            }
        };
        out.push(Sample {
            name,
            labels,
            value,
        });
    }
    out
}

fn parse_labels(mut body: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    while !body.is_empty() {
        let (name, rest) = body.split_once("=\"").expect("name=\"value\"");
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next().expect("a closing quote") {
                (_, '\\') => match chars.next().expect("an escaped character").1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (i, '"') => break i,
                (_, c) => value.push(c),
            }
        };
        labels.insert(name.to_owned(), value);
        body = rest[end + 1..].trim_start_matches(',');
    }
    labels
}

/// The conformance agents at `/` and the http_features ingress at `/api/v1`, with the
/// dashboard on a free port.
async fn start() -> Server {
    let server = serve(
        agents::app(),
        HttpOptions {
            dashboard_port: Some(0),
            ..HttpOptions::default()
        },
    )
    .await;
    let (api, prefix) = http_features::apps::apps("secret".to_owned())
        .into_iter()
        .find(|(_, prefix)| *prefix == "/api/v1")
        .expect("http_features serves /api/v1");
    server
        .deploy(api, prefix)
        .await
        .expect("the ingress deploys");
    server
}

/// The dashboard's `/metrics` in the classic text format.
async fn scrape(server: &Server) -> String {
    let dash = server.dashboard_addr().expect("the dashboard runs");
    let reply = get(dash, "/metrics").await;
    assert_eq!(reply.status, StatusCode::OK);
    reply.body
}

/// One round of ordinary traffic: agent chats (one failing, one invalid), the ingress's
/// pattern route (one bad id), an unknown path.
async fn ordinary_traffic(addr: SocketAddr) {
    let r = post(addr, "/agents/echo/chat", r#"{"data": {"hi": 1}}"#).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let r = post(addr, "/agents/echo/chat", r#"{"data": {"fail": "boom"}}"#).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{r:?}");
    let r = post(addr, "/agents/echo/chat", r#"{"data": 3}"#).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{r:?}");
    let r = post(addr, "/agents/counter/chat", r#"{"data": {}}"#).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let r = get(addr, "/api/v1/items/7").await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let r = get(addr, "/api/v1/items/seven").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{r:?}");
    let r = get(addr, "/no/such/route-4711").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{r:?}");
}

/// The value of `name` with exactly these labels, if it is exported.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && s.labels.len() == labels.len()
                && labels.iter().all(|(k, v)| s.label(k) == Some(v))
        })
        .map(|s| s.value)
}

/// Fills the `slow` agent (one request at a time, one queued), so the next request is refused
/// with `503`; and hangs up on a request it is serving, which counts as `499`.
async fn backpressure_and_a_client_that_leaves(server: &Server) {
    let addr = server.local_addr();
    // Long enough that the refused request arrives while both places are taken, even on a
    // loaded machine.
    let long = r#"{"data": {"ms": 4000}}"#;
    let running = start_post(addr, "/agents/slow/chat", long);
    eventually(EXCHANGE_TIMEOUT, "the slow agent busy", || async {
        let samples = parse(&scrape(server).await);
        samples.iter().any(|s| {
            s.name == "ray_serve_replica_processing_queries"
                && s.label("deployment") == Some("slow-deployment")
                && s.value == 1.0
        })
    })
    .await;
    let queued = start_post(addr, "/agents/slow/chat", long);
    eventually(EXCHANGE_TIMEOUT, "a request queued for slow", || async {
        let samples = parse(&scrape(server).await);
        value(
            &samples,
            "ray_serve_deployment_queued_queries",
            &[
                ("application", "slow-service"),
                ("deployment", "slow-deployment"),
            ],
        ) == Some(1.0)
    })
    .await;
    let refused = post(addr, "/agents/slow/chat", long).await;
    assert_eq!(
        refused.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{refused:?}"
    );
    // The queued client hangs up before its answer.
    drop(queued);
    assert_eq!(running.reply().await.status, StatusCode::OK);
    let closed = [
        ("application", "slow-service"),
        ("route", "/agents/slow"),
        ("method", "POST"),
        ("status_code", "499"),
    ];
    eventually(EXCHANGE_TIMEOUT, "the 499 counted", || async {
        value(
            &parse(&scrape(server).await),
            "ray_serve_num_http_requests_total",
            &closed,
        ) == Some(1.0)
    })
    .await;
}

/// Every metric Ray's dashboards (and the issue) name, with the labels Ray gives it.
const EXPECTED: &[(&str, &[&str])] = &[
    (
        "ray_serve_num_http_requests_total",
        &["application", "route", "method", "status_code"],
    ),
    (
        "ray_serve_num_http_error_requests_total",
        &["application", "route", "method", "error_code"],
    ),
    (
        "ray_serve_num_deployment_http_error_requests_total",
        &["application", "deployment", "route", "method", "error_code"],
    ),
    (
        "ray_serve_http_request_latency_ms_bucket",
        &["application", "route", "method", "status_code", "le"],
    ),
    ("ray_serve_num_ongoing_http_requests", &[]),
    (
        "ray_serve_deployment_request_counter_total",
        &["application", "deployment", "replica", "route"],
    ),
    (
        "ray_serve_deployment_error_counter_total",
        &["application", "deployment", "replica", "route"],
    ),
    (
        "ray_serve_deployment_processing_latency_ms_bucket",
        &["application", "deployment", "replica", "route", "le"],
    ),
    (
        "ray_serve_deployment_queued_queries",
        &["application", "deployment"],
    ),
    (
        "ray_serve_replica_processing_queries",
        &["application", "deployment", "replica"],
    ),
    (
        "ray_serve_deployment_replica_healthy",
        &["application", "deployment", "replica"],
    ),
    (
        "ray_serve_deployment_replica_starts_total",
        &["application", "deployment", "replica"],
    ),
    (
        "ray_serve_num_router_requests_total",
        &["application", "deployment"],
    ),
    (
        "ray_serve_handle_request_counter_total",
        &["application", "deployment"],
    ),
    (
        "ray_serve_num_scheduling_tasks",
        &["application", "deployment"],
    ),
    (
        "ray_serve_num_scheduling_tasks_in_backoff",
        &["application", "deployment"],
    ),
    (
        "ray_serve_controller_control_loop_duration_s",
        &["application", "deployment"],
    ),
    (
        "ray_serve_controller_num_control_loops",
        &["application", "deployment"],
    ),
    ("ray_node_cpu_utilization", &[]),
    ("ray_node_mem_used", &[]),
    ("ray_node_mem_total", &[]),
];

#[tokio::test]
async fn every_metric_is_exported_with_rays_labels_after_traffic() {
    let server = start().await;
    let addr = server.local_addr();
    ordinary_traffic(addr).await;
    backpressure_and_a_client_that_leaves(&server).await;
    let text = scrape(&server).await;
    let samples = parse(&text);

    for (name, labels) in EXPECTED {
        let found: Vec<&Sample> = samples.iter().filter(|s| s.name == *name).collect();
        assert!(!found.is_empty(), "no {name} in\n{text}");
        for s in found {
            let keys: Vec<&str> = s.labels.keys().map(String::as_str).collect();
            let mut want = labels.to_vec();
            want.sort_unstable();
            assert_eq!(keys, want, "the labels of {s:?}");
        }
    }

    let http = "ray_serve_num_http_requests_total";
    let errors = "ray_serve_num_http_error_requests_total";
    // An ingress route is labelled by its pattern, joined to the prefix; never the raw path.
    let item = |code: &'static str, label: &'static str| {
        [
            ("application", "api"),
            ("route", "/api/v1/items/{item_id}"),
            ("method", "GET"),
            (label, code),
        ]
    };
    assert_eq!(
        value(&samples, http, &item("200", "status_code")),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(&samples, http, &item("422", "status_code")),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(&samples, errors, &item("422", "error_code")),
        Some(1.0),
        "{text}"
    );
    assert!(!text.contains("items/7") && !text.contains("seven") && !text.contains("4711"));
    // An agent is labelled by its prefix, in its application.
    let echo = |code: &'static str, label: &'static str| {
        [
            ("application", "echo-service"),
            ("route", "/agents/echo"),
            ("method", "POST"),
            (label, code),
        ]
    };
    assert_eq!(
        value(&samples, http, &echo("200", "status_code")),
        Some(1.0)
    );
    assert_eq!(
        value(&samples, errors, &echo("500", "error_code")),
        Some(1.0)
    );
    assert_eq!(
        value(&samples, errors, &echo("422", "error_code")),
        Some(1.0)
    );
    // No route: empty application and route.
    let none = [
        ("application", ""),
        ("route", ""),
        ("method", "GET"),
        ("status_code", "404"),
    ];
    assert_eq!(value(&samples, http, &none), Some(1.0), "{text}");
    // Backpressure.
    let slow = [
        ("application", "slow-service"),
        ("route", "/agents/slow"),
        ("method", "POST"),
        ("error_code", "503"),
    ];
    assert_eq!(value(&samples, errors, &slow), Some(1.0), "{text}");
    // The replica counted the failed run as an error; the router and the handles saw every
    // request that reached the deployment.
    let echo_errors: f64 = samples
        .iter()
        .filter(|s| {
            s.name == "ray_serve_deployment_error_counter_total"
                && s.label("deployment") == Some("echo-deployment")
        })
        .map(|s| s.value)
        .sum();
    assert_eq!(echo_errors, 1.0, "{text}");
    let of_echo = [
        ("application", "echo-service"),
        ("deployment", "echo-deployment"),
    ];
    assert_eq!(
        value(&samples, "ray_serve_num_router_requests_total", &of_echo),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        value(&samples, "ray_serve_handle_request_counter_total", &of_echo),
        Some(2.0),
        "{text}"
    );
    assert!(
        value(&samples, "ray_serve_controller_num_control_loops", &of_echo)
            .is_some_and(|n| n >= 1.0),
        "{text}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn prometheus_asks_for_openmetrics_and_gets_it() {
    let server = start().await;
    ordinary_traffic(server.local_addr()).await;
    let dash = server.dashboard_addr().expect("the dashboard runs");
    let req = request(dash, Proto::H1, Method::GET, "/metrics")
        .header(
            header::ACCEPT,
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
             version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
        )
        .body(full(""))
        .expect("a valid request");
    let reply = send(dash, Proto::H1, req).await;
    assert_eq!(
        reply.header("content-type"),
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let text = &reply.body;
    assert!(text.contains("# TYPE ray_serve_num_http_requests counter\n"));
    assert!(text.contains("\nray_serve_num_http_requests_total{"));
    assert!(text.ends_with("# EOF\n"));
    // The classic format declares counters under their `_total` name.
    let classic = scrape(&server).await;
    assert!(classic.contains("# TYPE ray_serve_num_http_requests_total counter\n"));
    assert!(classic.contains("# HELP ray_serve_num_http_requests_total "));
    assert!(!classic.contains("# EOF"));
    server.shutdown().await;
}

/// Keeps ordinary traffic going until dropped, so rates and quantiles have data.
fn background_traffic(addr: SocketAddr) -> AbortOnDropTask {
    AbortOnDropTask(tokio::spawn(async move {
        loop {
            ordinary_traffic(addr).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }))
}

/// Aborts the task when dropped.
struct AbortOnDropTask(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDropTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}
