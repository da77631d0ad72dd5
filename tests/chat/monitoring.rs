//! Monitoring over real sockets: `/metrics` on the serving port, the status API's schema, the
//! dashboard's listener and its token.

use http::{Method, StatusCode, header};
use rayai::{HttpOptions, Server, Value};

use crate::agents;
use crate::common::*;

/// The conformance app, with the dashboard on a free port.
async fn serve_with_dashboard(token: Option<&str>) -> Server {
    serve(
        agents::app(),
        HttpOptions {
            dashboard_port: Some(0),
            dashboard_token: token.map(str::to_owned),
            ..HttpOptions::default()
        },
    )
    .await
}

/// The value of the sample line that starts with `prefix` (labels included), if any.
fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn metrics_count_requests_by_route_pattern() {
    let server = serve_with_dashboard(None).await;
    let addr = server.local_addr();
    for _ in 0..3 {
        let r = post(addr, "/agents/echo/chat", r#"{"data": {"hi": 1}}"#).await;
        assert_eq!(r.status, StatusCode::OK);
    }
    let r = post(addr, "/agents/echo/chat", r#"{"data": {"fail": "boom"}}"#).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    let r = post(addr, "/agents/nope-12345/chat", "{}").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    let m = get(addr, "/metrics").await;
    assert_eq!(m.status, StatusCode::OK);
    // No `Accept` asking for OpenMetrics: the classic text format.
    assert_eq!(
        m.header("content-type"),
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = &m.body;
    let ok = r#"ray_serve_num_http_requests_total{application="echo-service",route="/agents/echo",method="POST",status_code="200"}"#;
    assert_eq!(sample(text, ok), Some(3.0), "{text}");
    let failed = r#"ray_serve_num_http_error_requests_total{application="echo-service",route="/agents/echo",method="POST",error_code="500"}"#;
    assert_eq!(sample(text, failed), Some(1.0), "{text}");
    let dep_err = r#"ray_serve_num_deployment_http_error_requests_total{application="echo-service",deployment="echo-deployment",route="/agents/echo",method="POST",error_code="500"}"#;
    assert_eq!(sample(text, dep_err), Some(1.0), "{text}");
    let unmatched = r#"ray_serve_num_http_requests_total{application="",route="",method="POST",status_code="404"}"#;
    assert_eq!(sample(text, unmatched), Some(1.0), "{text}");
    assert!(
        !text.contains("nope-12345"),
        "a raw path leaked into a label"
    );
    assert_eq!(
        sample(
            text,
            r#"ray_serve_http_request_latency_ms_count{application="echo-service",route="/agents/echo",method="POST",status_code="200"}"#
        ),
        Some(3.0)
    );
    // The replica counts what it processed: the four requests that reached it.
    assert_eq!(
        sample(
            text,
            r#"ray_serve_deployment_processing_latency_ms_count{application="echo-service",deployment="echo-deployment",replica="echo#0""#
        ),
        Some(4.0),
        "{text}"
    );
    assert_eq!(
        sample(
            text,
            r#"ray_serve_deployment_error_counter_total{application="echo-service",deployment="echo-deployment",replica="echo#0""#
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            text,
            r#"ray_serve_deployment_replica_healthy{application="counter-service",deployment="counter-deployment",replica="counter#0"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert!(text.contains(
        "ray_serve_replica_processing_queries{application=\"echo-service\",deployment=\"echo-deployment\""
    ));
    assert!(text.contains(
        "ray_serve_deployment_queued_queries{application=\"slow-service\",deployment=\"slow-deployment\"} 0"
    ));

    // Prometheus asks for OpenMetrics, and gets it.
    let req = request(addr, Proto::H1, Method::GET, "/metrics")
        .header(
            header::ACCEPT,
            "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3",
        )
        .body(full(""))
        .expect("a valid request");
    let om = send(addr, Proto::H1, req).await;
    assert_eq!(
        om.header("content-type"),
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(
        om.body
            .contains("# TYPE ray_serve_num_http_requests counter\n")
    );
    assert!(om.body.ends_with("# EOF\n"));

    // The dashboard's port serves the same metrics.
    let dash = server.dashboard_addr().expect("the dashboard runs");
    let m = get(dash, "/metrics").await;
    assert_eq!(sample(&m.body, ok), Some(3.0));
    server.shutdown().await;
}

/// Asserts that `v` (the value of `what`) is a number.
fn assert_number(v: &Value, what: &str) {
    assert!(v.is_number(), "{what} is not a number: {v}");
}

#[tokio::test]
async fn status_api_schema_is_pinned() {
    let server = serve_with_dashboard(None).await;
    let dash = server.dashboard_addr().expect("the dashboard runs");
    // Deployments report UPDATING until the controller's first reconciliation.
    eventually(EXCHANGE_TIMEOUT, "every application RUNNING", || async {
        let body = get(dash, "/api/serve/applications").await.json();
        body["applications"]
            .as_object()
            .is_some_and(|apps| apps.values().all(|a| a["status"] == "RUNNING"))
    })
    .await;
    let serving = server.local_addr();
    for addr in [dash, serving] {
        let r = get(addr, "/api/serve/applications").await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.header("content-type"), "application/json");
        let body = r.json();
        let top: Vec<&str> = body
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(top, ["applications", "node", "process", "server"]);
        let identity = &body["server"];
        assert_eq!(identity["pid"], std::process::id(), "{identity}");
        assert_eq!(identity["address"], serving.to_string(), "{identity}");

        let apps = body["applications"].as_object().unwrap();
        let mut names: Vec<&str> = apps.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            ["blocking", "counter", "echo", "panicky", "plain", "slow"]
        );
        let echo = &apps["echo"];
        let keys: Vec<&str> = echo
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["name", "route_prefix", "status", "deployments"]);
        assert_eq!(echo["name"], "echo");
        assert_eq!(echo["route_prefix"], "/agents/echo");
        assert_eq!(echo["status"], "RUNNING");

        let counter = &apps["counter"]["deployments"]["counter"];
        let keys: Vec<&str> = counter
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "name",
                "status",
                "message",
                "target_replicas",
                "running_replicas",
                "pending_replicas",
                "queued_requests",
                "replicas_started",
                "replicas"
            ]
        );
        assert_eq!(counter["status"], "HEALTHY");
        assert_eq!(counter["target_replicas"], 2);
        let replica = &counter["replicas"][0];
        for key in [
            "replica_id",
            "state",
            "ongoing_requests",
            "served",
            "gpu_ids",
            "starts",
            "last_error",
        ] {
            assert!(
                replica.get(key).is_some(),
                "replica has no `{key}`: {replica}"
            );
        }
        assert!(replica["gpu_ids"].is_array());

        let node = body["node"].as_object().unwrap();
        let keys: Vec<&str> = node.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "num_cpus",
                "memory_bytes",
                "num_gpus",
                "reserved_cpus",
                "reserved_gpus",
                "reserved_memory_bytes"
            ]
        );
        for (k, v) in node {
            assert_number(v, k);
        }
        assert_eq!(node["num_cpus"], 64.0);
        assert!(node["reserved_cpus"].as_f64().unwrap() > 0.0);

        let process = body["process"].as_object().unwrap();
        let keys: Vec<&str> = process.keys().map(String::as_str).collect();
        assert_eq!(keys, ["cpu_percent", "rss_bytes"]);
        assert!(process["cpu_percent"].is_f64());
        assert!(process["rss_bytes"].is_u64());
    }
    server.shutdown().await;
}

#[tokio::test]
async fn dashboard_serves_the_page_series_and_logs() {
    let server = serve_with_dashboard(None).await;
    let dash = server.dashboard_addr().expect("the dashboard runs");
    assert_ne!(dash.port(), 8265, "port 0 picks a free port");
    let page = get(dash, "/").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.header("content-type").starts_with("text/html"));
    assert!(page.body.contains("rayai dashboard"));

    post(server.local_addr(), "/agents/echo/chat", r#"{"data": {}}"#).await;
    eventually(
        EXCHANGE_TIMEOUT,
        "a time-series point with echo's traffic",
        || async {
            let series = get(dash, "/api/timeseries").await.json();
            series["points"]
                .as_array()
                .is_some_and(|p| p.iter().any(|p| p["deployments"].get("echo").is_some()))
        },
    )
    .await;
    let logs = get(dash, "/api/logs?since=0").await.json();
    assert!(logs["last_seq"].is_u64());
    assert!(logs["lines"].is_array());
    assert_eq!(get(dash, "/nope").await.status, StatusCode::NOT_FOUND);
    server.shutdown().await;
}

#[tokio::test]
async fn dashboard_token_is_enforced_when_set() {
    let server = serve_with_dashboard(Some("s3cret")).await;
    let dash = server.dashboard_addr().expect("the dashboard runs");
    for path in [
        "/",
        "/api/serve/applications",
        "/api/timeseries",
        "/api/logs",
    ] {
        let r = get(dash, path).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(r.header("www-authenticate"), "Bearer");
    }
    let with = |value: &str| {
        request(dash, Proto::H1, Method::GET, "/api/serve/applications")
            .header(header::AUTHORIZATION, value)
            .body(full(""))
            .unwrap()
    };
    assert_eq!(
        send(dash, Proto::H1, with("Bearer wrong")).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(dash, Proto::H1, with("Bearer s3cret")).await.status,
        StatusCode::OK
    );
    assert_eq!(get(dash, "/?token=s3cret").await.status, StatusCode::OK);
    server.shutdown().await;
}

#[tokio::test]
async fn dashboard_can_be_turned_off() {
    let server = serve(
        agents::app(),
        HttpOptions {
            dashboard_port: None,
            ..HttpOptions::default()
        },
    )
    .await;
    assert_eq!(server.dashboard_addr(), None);
    // The serving port still answers /metrics.
    assert_eq!(
        get(server.local_addr(), "/metrics").await.status,
        StatusCode::OK
    );
    server.shutdown().await;
}
