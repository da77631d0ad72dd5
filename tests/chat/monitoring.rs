//! Monitoring over real sockets: `/metrics` and Ray's status API on the dashboard's port (not on
//! the serving port), the status API's schema, the dashboard's listener and its token, the
//! metrics export port.

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

    // The serving port leaves /metrics to the applications: none is at `/` here.
    assert_eq!(get(addr, "/metrics").await.status, StatusCode::NOT_FOUND);
    let dash = server.dashboard_addr().expect("the dashboard runs");
    let m = get(dash, "/metrics").await;
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
    let req = request(dash, Proto::H1, Method::GET, "/metrics")
        .header(
            header::ACCEPT,
            "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3",
        )
        .body(full(""))
        .expect("a valid request");
    let om = send(dash, Proto::H1, req).await;
    assert_eq!(
        om.header("content-type"),
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(
        om.body
            .contains("# TYPE ray_serve_num_http_requests counter\n")
    );
    assert!(om.body.ends_with("# EOF\n"));
    server.shutdown().await;
}

/// The keys of the object `v`, in order.
fn keys(v: &Value) -> Vec<&str> {
    v.as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .map(String::as_str)
        .collect()
}

#[tokio::test]
async fn status_api_schema_is_pinned() {
    let server = serve_with_dashboard(None).await;
    let dash = server.dashboard_addr().expect("the dashboard runs");
    // Deployments report UPDATING until the controller's first reconciliation.
    eventually(EXCHANGE_TIMEOUT, "every application RUNNING", || async {
        let body = get(dash, "/api/serve/applications/").await.json();
        body["applications"]
            .as_object()
            .is_some_and(|apps| apps.values().all(|a| a["status"] == "RUNNING"))
    })
    .await;
    // Not on the serving port: its paths belong to the applications.
    let serving = server.local_addr();
    assert_eq!(
        get(serving, "/api/serve/applications/").await.status,
        StatusCode::NOT_FOUND
    );
    let r = get(dash, "/api/serve/applications/").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), "application/json");
    let body = r.json();
    assert_eq!(
        keys(&body),
        [
            "controller_info",
            "proxy_location",
            "http_options",
            "grpc_options",
            "proxies",
            "deploy_mode",
            "applications",
            "target_capacity",
            "target_groups"
        ]
    );
    let controller = &body["controller_info"];
    assert_eq!(
        keys(controller),
        [
            "node_id",
            "node_ip",
            "node_instance_id",
            "actor_id",
            "actor_name",
            "worker_id",
            "log_file_path",
            "project",
            "pid",
            "address",
            "started_at_s"
        ]
    );
    assert_eq!(controller["actor_name"], "SERVE_CONTROLLER_ACTOR");
    assert_eq!(controller["pid"], std::process::id(), "{controller}");
    assert_eq!(controller["address"], serving.to_string(), "{controller}");
    assert_eq!(body["proxy_location"], "EveryNode");
    assert_eq!(body["deploy_mode"], "MULTI_APP");
    assert_eq!(body["target_capacity"], Value::Null);
    assert_eq!(
        keys(&body["http_options"]),
        [
            "host",
            "port",
            "root_path",
            "request_timeout_s",
            "keep_alive_timeout_s",
            "ssl_keyfile",
            "ssl_certfile"
        ]
    );
    assert_eq!(body["http_options"]["keep_alive_timeout_s"], 90);
    assert_eq!(
        body["grpc_options"],
        serde_json::json!({"port": 9000, "grpc_servicer_functions": []})
    );
    let node_id = controller["node_id"].as_str().unwrap();
    assert_eq!(node_id.len(), 56, "{node_id}");
    let proxy = &body["proxies"][node_id];
    assert_eq!(proxy["status"], "HEALTHY", "{body}");
    assert_eq!(
        proxy["actor_name"],
        format!("SERVE_PROXY_ACTOR-{node_id}"),
        "{proxy}"
    );

    let apps = body["applications"].as_object().unwrap();
    let mut names: Vec<&str> = apps.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "blocking-service",
            "counter-service",
            "echo-service",
            "panicky-service",
            "plain-service",
            "slow-service"
        ]
    );
    let echo = &apps["echo-service"];
    assert_eq!(
        keys(echo),
        [
            "name",
            "route_prefix",
            "docs_path",
            "status",
            "message",
            "last_deployed_time_s",
            "deployed_app_config",
            "source",
            "deployments"
        ]
    );
    assert_eq!(echo["route_prefix"], "/agents/echo");
    assert_eq!(echo["status"], "RUNNING");
    assert_eq!(echo["message"], "");
    assert!(echo["last_deployed_time_s"].is_f64());

    let counter = &apps["counter-service"]["deployments"]["counter-deployment"];
    assert_eq!(
        keys(counter),
        [
            "name",
            "status",
            "status_trigger",
            "message",
            "deployment_config",
            "target_num_replicas",
            "required_resources",
            "replicas"
        ]
    );
    assert_eq!(counter["status"], "HEALTHY");
    assert_eq!(counter["target_num_replicas"], 2);
    assert_eq!(
        keys(&counter["deployment_config"]),
        [
            "name",
            "num_replicas",
            "max_ongoing_requests",
            "max_queued_requests",
            "user_config",
            "graceful_shutdown_timeout_s",
            "health_check_period_s",
            "health_check_timeout_s",
            "ray_actor_options"
        ]
    );
    assert_eq!(
        keys(&counter["deployment_config"]["ray_actor_options"]),
        ["num_cpus", "num_gpus", "memory"]
    );
    let replica = &counter["replicas"][0];
    assert_eq!(
        keys(replica),
        [
            "node_id",
            "node_ip",
            "node_instance_id",
            "actor_id",
            "actor_name",
            "worker_id",
            "log_file_path",
            "replica_id",
            "state",
            "pid",
            "start_time_s",
            "ongoing_requests",
            "served",
            "gpu_ids",
            "starts",
            "last_error"
        ]
    );
    assert!(replica["gpu_ids"].is_array());
    assert!(replica["start_time_s"].is_f64());
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
    // Beside the points, the node, the process and the queues the page shows.
    let series = get(dash, "/api/timeseries").await.json();
    let node = series["node"].as_object().unwrap();
    assert_eq!(node["num_cpus"], 64.0);
    assert!(node["reserved_cpus"].as_f64().unwrap() > 0.0);
    assert!(series["process"]["rss_bytes"].is_u64(), "{series}");
    assert_eq!(series["queued"]["slow-deployment"], 0, "{series}");
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
        "/api/serve/applications/",
        "/api/timeseries",
        "/api/logs",
        "/api/unknown",
        "/metrics",
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
async fn dashboard_can_be_turned_off_and_the_metrics_export_port_serves_metrics() {
    let server = serve(
        agents::app(),
        HttpOptions {
            dashboard_port: None,
            metrics_export_port: Some(0),
            dashboard_token: Some("s3cret".to_owned()),
            ..HttpOptions::default()
        },
    )
    .await;
    assert_eq!(server.dashboard_addr(), None);
    let addr = server.local_addr();
    assert_eq!(get(addr, "/metrics").await.status, StatusCode::NOT_FOUND);
    post(addr, "/agents/echo/chat", r#"{"data": {}}"#).await;
    // A port of its own, with the metrics alone, for scrapers (no token asked).
    let metrics = server.metrics_export_addr().expect("the metrics port runs");
    let m = get(metrics, "/metrics").await;
    assert_eq!(m.status, StatusCode::OK);
    assert!(m.body.contains("route=\"/agents/echo\""), "{}", m.body);
    for path in ["/", "/api/serve/applications/", "/-/healthz"] {
        assert_eq!(
            get(metrics, path).await.status,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    server.shutdown().await;
}
