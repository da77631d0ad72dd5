//! Ray's status API on the dashboard port: `GET /api/serve/applications/` answers Ray's
//! `ServeInstanceDetails`, checked here against what Ray's pydantic models require (every
//! required field, of the right JSON type, enums within Ray's values, no field where Ray forbids
//! extra ones), for an app of agents, the composition example and a deployment with pending
//! replicas; its token; and the ports laid out as Ray's: the serving port leaves `/metrics` and
//! `/api/...` to the applications.

use std::net::SocketAddr;

use http::{Method, StatusCode, header};
use rayai::prelude::*;
use rayai::{App, Controller, HttpOptions, NodeResources, Server, Value};
use serde_json::Map;

use super::handlers::{Boom, PathEcho};
use crate::common::{EXCHANGE_TIMEOUT, Proto, Reply, eventually, full, get, request, send};

/// The status API's path, as Ray's clients call it.
const STATUS: &str = "/api/serve/applications/";

/// A server on free ports with its dashboard (and `options`' other settings), on a node of
/// `cpus` CPUs, with `app` deployed at `/`.
async fn serve_with_dashboard(app: App, cpus: f64, options: HttpOptions) -> Server {
    let options = HttpOptions {
        port: 0,
        dashboard_port: Some(0),
        ..options
    };
    let controller = Controller::new(NodeResources::new(cpus, 64 << 30));
    let server = Server::start_with(options, controller)
        .await
        .expect("the server starts");
    server.deploy(app, "/").await.expect("the app deploys");
    server
}

fn dashboard(server: &Server) -> SocketAddr {
    server.dashboard_addr().expect("the dashboard runs")
}

/// `GET path` with `Authorization: Bearer token`.
async fn get_with_token(addr: SocketAddr, path: &str, token: &str) -> Reply {
    let req = request(addr, Proto::H1, Method::GET, path)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(full(""))
        .expect("a valid request");
    send(addr, Proto::H1, req).await
}

/// The status API's answer, after checking that it is JSON.
async fn details(addr: SocketAddr) -> Value {
    let r = get(addr, STATUS).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.header("content-type"), "application/json");
    r.json()
}

/// Checks `details` against Ray's `ServeInstanceDetails` (python/ray/serve/schema.py): pydantic
/// would parse it. Panics naming the first field that it would refuse.
fn assert_rays_shape(details: &Value) {
    let top = Ray::at("ServeInstanceDetails", details);
    top.only(&[
        "controller_info",
        "proxy_location",
        "http_options",
        "grpc_options",
        "proxies",
        "deploy_mode",
        "applications",
        "target_capacity",
        "target_groups",
    ]);
    actor(&top.object("controller_info"));
    top.optional_one_of("proxy_location", &["Disabled", "HeadOnly", "EveryNode"]);
    top.optional_one_of("deploy_mode", &["UNSET", "SINGLE_APP", "MULTI_APP"]);
    if let Some(capacity) = top.optional_number("target_capacity") {
        assert!(
            (0.0..=100.0).contains(&capacity),
            "target_capacity {capacity}"
        );
    }
    let http = top.object("http_options");
    http.string("host");
    http.integer("port");
    http.string("root_path");
    http.optional_number("request_timeout_s");
    http.integer("keep_alive_timeout_s");
    let grpc = top.object("grpc_options");
    grpc.integer("port");
    for f in grpc.array("grpc_servicer_functions") {
        assert!(f.is_string(), "grpc_servicer_functions: {f}");
    }
    for (node, proxy) in top.map("proxies") {
        let proxy = Ray::at("ProxyDetails", proxy);
        actor(&proxy);
        proxy.one_of(
            "status",
            &["STARTING", "HEALTHY", "UNHEALTHY", "DRAINING", "DRAINED"],
        );
        assert!(!node.is_empty());
    }
    for group in top.optional_array("target_groups") {
        let group = Ray::at("TargetGroup", group);
        group.string("route_prefix");
        group.one_of("protocol", &["UNDEFINED", "HTTP", "GRPC"]);
        for target in group.array("targets") {
            let target = Ray::at("Target", target);
            target.string("ip");
            target.integer("port");
            target.string("instance_id");
            target.string("name");
        }
    }
    for (name, app) in top.map("applications") {
        let app = Ray::at("ApplicationDetails", app);
        app.only(&[
            "name",
            "route_prefix",
            "docs_path",
            "status",
            "message",
            "last_deployed_time_s",
            "deployed_app_config",
            "source",
            "deployments",
        ]);
        assert_eq!(app.string("name"), name);
        if let Some(prefix) = app.nullable_string("route_prefix") {
            assert!(prefix.starts_with('/'), "route_prefix {prefix}");
            assert!(
                prefix == "/" || !prefix.ends_with('/'),
                "route_prefix {prefix}"
            );
        }
        app.nullable_string("docs_path");
        app.one_of(
            "status",
            &[
                "NOT_STARTED",
                "DEPLOYING",
                "DEPLOY_FAILED",
                "RUNNING",
                "UNHEALTHY",
                "DELETING",
            ],
        );
        app.string("message");
        app.number("last_deployed_time_s");
        let config = &app.value["deployed_app_config"];
        assert!(
            config.is_null() || config.is_object(),
            "deployed_app_config {config}"
        );
        app.one_of("source", &["unknown", "imperative", "declarative"]);
        for (name, deployment) in app.map("deployments") {
            assert_deployment(name, deployment);
        }
    }
}

/// Ray's `DeploymentDetails`, and its `DeploymentSchema` and `ReplicaDetails`.
fn assert_deployment(name: &str, deployment: &Value) {
    let d = Ray::at("DeploymentDetails", deployment);
    d.only(&[
        "name",
        "status",
        "status_trigger",
        "message",
        "deployment_config",
        "target_num_replicas",
        "required_resources",
        "replicas",
        "autoscaling_detail",
    ]);
    assert_eq!(d.string("name"), name);
    d.one_of(
        "status",
        &[
            "UPDATING",
            "HEALTHY",
            "UNHEALTHY",
            "DEPLOY_FAILED",
            "UPSCALING",
            "DOWNSCALING",
        ],
    );
    d.one_of(
        "status_trigger",
        &[
            "UNSPECIFIED",
            "CONFIG_UPDATE_STARTED",
            "CONFIG_UPDATE_COMPLETED",
            "UPSCALE_COMPLETED",
            "DOWNSCALE_COMPLETED",
            "AUTOSCALING",
            "REPLICA_STARTUP_FAILED",
            "HEALTH_CHECK_FAILED",
            "INTERNAL_ERROR",
            "DELETING",
        ],
    );
    d.string("message");
    assert!(d.integer("target_num_replicas") >= 0);
    for (resource, amount) in d.map("required_resources") {
        assert!(
            amount.is_number(),
            "required_resources.{resource}: {amount}"
        );
    }
    let config = d.object("deployment_config");
    assert_eq!(config.string("name"), name);
    match config.value.get("num_replicas") {
        None | Some(Value::Null) => {}
        Some(Value::String(auto)) => assert_eq!(auto, "auto"),
        Some(n) => {
            assert!(n.as_i64().is_some_and(|n| n > 0), "num_replicas {n}");
            let auto = config.value.get("autoscaling_config");
            assert!(
                auto.is_none_or(Value::is_null),
                "num_replicas beside autoscaling_config"
            );
        }
    }
    if let Some(auto) = config.value.get("autoscaling_config") {
        assert!(
            auto.is_null() || auto.is_object(),
            "autoscaling_config {auto}"
        );
    }
    if config.value.get("max_ongoing_requests").is_some() {
        assert!(config.integer("max_ongoing_requests") > 0);
    }
    if config.value.get("max_queued_requests").is_some() {
        let n = config.integer("max_queued_requests");
        assert!(n == -1 || n >= 1, "max_queued_requests {n}");
    }
    if let Some(user) = config.value.get("user_config") {
        assert!(user.is_null() || user.is_object(), "user_config {user}");
    }
    for (key, positive) in [
        ("graceful_shutdown_timeout_s", false),
        ("health_check_period_s", true),
        ("health_check_timeout_s", true),
    ] {
        if let Some(secs) = config.optional_number(key) {
            assert!(
                if positive { secs > 0.0 } else { secs >= 0.0 },
                "{key} {secs}"
            );
        }
    }
    if config.value.get("ray_actor_options").is_some() {
        let options = config.object("ray_actor_options");
        for key in ["num_cpus", "num_gpus", "memory"] {
            if let Some(n) = options.optional_number(key) {
                assert!(n >= 0.0, "{key} {n}");
            }
        }
    }
    for replica in d.array("replicas") {
        let r = Ray::at("ReplicaDetails", replica);
        actor(&r);
        r.string("replica_id");
        r.one_of(
            "state",
            &[
                "STARTING",
                "UPDATING",
                "RECOVERING",
                "RUNNING",
                "STOPPING",
                "PENDING_MIGRATION",
            ],
        );
        let pid = &r.value["pid"];
        assert!(pid.is_null() || pid.is_u64(), "pid {pid}");
        r.number("start_time_s");
    }
}

/// Ray's `ServeActorDetails`: every field optional, a string when set.
fn actor(details: &Ray<'_>) {
    for key in [
        "node_id",
        "node_ip",
        "node_instance_id",
        "actor_id",
        "actor_name",
        "worker_id",
        "log_file_path",
    ] {
        details.nullable_string(key);
    }
}

/// One object of the answer, named by Ray's model, with pydantic's checks of its fields.
struct Ray<'a> {
    model: &'static str,
    value: &'a Value,
}

impl<'a> Ray<'a> {
    fn at(model: &'static str, value: &'a Value) -> Self {
        assert!(value.is_object(), "{model} is not an object: {value}");
        Ray { model, value }
    }

    fn field(&self, key: &str) -> &'a Value {
        let model = self.model;
        self.value
            .get(key)
            .unwrap_or_else(|| panic!("{model} has no `{key}`: {}", self.value))
    }

    /// Ray forbids extra fields here.
    fn only(&self, allowed: &[&str]) {
        for key in self.value.as_object().into_iter().flat_map(Map::keys) {
            assert!(
                allowed.contains(&key.as_str()),
                "{} forbids extra fields, has `{key}`",
                self.model
            );
        }
    }

    fn string(&self, key: &str) -> &'a str {
        let v = self.field(key);
        v.as_str()
            .unwrap_or_else(|| panic!("{}.{key} is not a string: {v}", self.model))
    }

    /// A field that must be there, string or null; or, for an optional one, may be absent.
    fn nullable_string(&self, key: &str) -> Option<&'a str> {
        match self.value.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            Some(v) => panic!("{}.{key} is not a string: {v}", self.model),
        }
    }

    fn integer(&self, key: &str) -> i64 {
        let v = self.field(key);
        v.as_i64()
            .unwrap_or_else(|| panic!("{}.{key} is not an integer: {v}", self.model))
    }

    fn number(&self, key: &str) -> f64 {
        let v = self.field(key);
        v.as_f64()
            .unwrap_or_else(|| panic!("{}.{key} is not a number: {v}", self.model))
    }

    fn optional_number(&self, key: &str) -> Option<f64> {
        match self.value.get(key) {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_f64()
                    .unwrap_or_else(|| panic!("{}.{key} is not a number: {v}", self.model)),
            ),
        }
    }

    fn one_of(&self, key: &str, values: &[&str]) {
        let v = self.string(key);
        assert!(
            values.contains(&v),
            "{}.{key} `{v}` is not one of {values:?}",
            self.model
        );
    }

    fn optional_one_of(&self, key: &str, values: &[&str]) {
        if !self.value.get(key).is_none_or(Value::is_null) {
            self.one_of(key, values);
        }
    }

    fn object(&self, key: &str) -> Ray<'a> {
        Ray::at(self.model, self.field(key))
    }

    fn map(&self, key: &str) -> &'a Map<String, Value> {
        let v = self.field(key);
        v.as_object()
            .unwrap_or_else(|| panic!("{}.{key} is not an object: {v}", self.model))
    }

    fn array(&self, key: &str) -> &'a [Value] {
        let v = self.field(key);
        v.as_array()
            .unwrap_or_else(|| panic!("{}.{key} is not a list: {v}", self.model))
    }

    fn optional_array(&self, key: &str) -> &'a [Value] {
        match self.value.get(key) {
            None => &[],
            Some(_) => self.array(key),
        }
    }
}

/// The names of an application's deployments.
fn deployment_names(app: &Value) -> Vec<&str> {
    app["deployments"]
        .as_object()
        .map(|d| d.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn an_app_of_agents_is_reported_in_rays_shape() {
    let server =
        serve_with_dashboard(conformance::agents::app(), 64.0, HttpOptions::default()).await;
    let dash = dashboard(&server);
    eventually(EXCHANGE_TIMEOUT, "every application RUNNING", || async {
        let body = details(dash).await;
        body["applications"]
            .as_object()
            .is_some_and(|apps| apps.values().all(|a| a["status"] == "RUNNING"))
    })
    .await;
    let body = details(dash).await;
    assert_rays_shape(&body);

    // Each agent is an application of its own, as RayAI serves it.
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
    let counter = &apps["counter-service"];
    assert_eq!(counter["route_prefix"], "/agents/counter", "{counter}");
    assert_eq!(counter["source"], "imperative");
    assert_eq!(counter["deployed_app_config"], Value::Null);
    assert_eq!(deployment_names(counter), ["counter-deployment"]);
    let d = &counter["deployments"]["counter-deployment"];
    assert_eq!(d["status"], "HEALTHY", "{d}");
    assert_eq!(d["status_trigger"], "CONFIG_UPDATE_COMPLETED", "{d}");
    assert_eq!(d["target_num_replicas"], 2, "{d}");
    assert_eq!(d["deployment_config"]["num_replicas"], 2, "{d}");
    assert!(
        d["required_resources"]["CPU"]
            .as_f64()
            .is_some_and(|c| c > 0.0),
        "{d}"
    );

    // The replicas run in this process, on this node, since they started.
    let replicas = d["replicas"].as_array().unwrap();
    assert_eq!(replicas.len(), 2, "{d}");
    let node_id = body["controller_info"]["node_id"].as_str().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    for r in replicas {
        assert_eq!(r["state"], "RUNNING", "{r}");
        assert_eq!(r["pid"], std::process::id(), "{r}");
        assert_eq!(r["node_id"], node_id, "{r}");
        assert_eq!(r["node_ip"], "127.0.0.1", "{r}");
        let started = r["start_time_s"].as_f64().unwrap();
        assert!(started > now - 600.0 && started <= now, "{r}");
        assert!(
            r["actor_name"].as_str().is_some_and(
                |n| n.starts_with("SERVE_REPLICA::counter-service#counter-deployment#")
            ),
            "{r}"
        );
    }
    // One proxy: this server, where it listens.
    let proxies = body["proxies"].as_object().unwrap();
    assert_eq!(proxies.keys().collect::<Vec<_>>(), [node_id]);
    assert_eq!(proxies[node_id]["status"], "HEALTHY");
    assert_eq!(body["http_options"]["port"], server.local_addr().port());
    assert_eq!(body["controller_info"]["pid"], std::process::id());
    assert_eq!(
        body["controller_info"]["address"],
        server.local_addr().to_string()
    );
    let target = &body["target_groups"][0]["targets"][0];
    assert_eq!(target["port"], server.local_addr().port(), "{body}");
    server.shutdown().await;
}

#[tokio::test]
async fn the_composition_example_lists_every_deployment_it_composes() {
    let server = serve_with_dashboard(composition::apps::app(), 64.0, HttpOptions::default()).await;
    let body = details(dashboard(&server)).await;
    assert_rays_shape(&body);
    let apps = body["applications"].as_object().unwrap();
    assert_eq!(apps.keys().collect::<Vec<_>>(), ["composition"], "{body}");
    let app = &apps["composition"];
    assert_eq!(app["route_prefix"], "/", "{app}");
    let names = deployment_names(app);
    for name in [
        "composition",
        "reverse_model-deployment",
        "upper_model-deployment",
        "tokens-deployment",
    ] {
        assert!(names.contains(&name), "{name} is not among {names:?}");
    }
    // The ingress, six typed callables and three agents.
    assert_eq!(names.len(), 10, "{names:?}");

    // An application that no route serves (typed callables only) has no route prefix.
    server
        .deploy(
            App::named("library").callable::<composition::apps::Preprocess>(),
            "/lib",
        )
        .await
        .expect("the library deploys");
    let body = details(dashboard(&server)).await;
    assert_rays_shape(&body);
    let library = &body["applications"]["library"];
    assert_eq!(library["route_prefix"], Value::Null, "{library}");
    assert_eq!(deployment_names(library), ["preprocess"], "{library}");
    server.shutdown().await;
}

/// An agent of four 1-CPU replicas, two of which wait on a 2-CPU node.
#[agent(name = "seed", num_cpus = 1, memory = "16MB", num_replicas = 4)]
#[derive(Default)]
struct Seed;

impl Agent for Seed {
    async fn run(&self, data: Value) -> Result<Value, AgentError> {
        Ok(data)
    }
}

#[tokio::test]
async fn a_deployment_with_pending_replicas_is_updating() {
    let server =
        serve_with_dashboard(App::new().agent::<Seed>(), 2.0, HttpOptions::default()).await;
    let body = details(dashboard(&server)).await;
    assert_rays_shape(&body);
    let app = &body["applications"]["seed-service"];
    assert_eq!(app["status"], "DEPLOYING", "{app}");
    let d = &app["deployments"]["seed-deployment"];
    assert_eq!(d["status"], "UPDATING", "{d}");
    assert_eq!(d["status_trigger"], "CONFIG_UPDATE_STARTED", "{d}");
    assert_eq!(d["target_num_replicas"], 4, "{d}");
    assert_eq!(d["replicas"].as_array().map(Vec::len), Some(2), "{d}");
    assert!(
        d["message"]
            .as_str()
            .unwrap()
            .contains("2 of 4 replicas pending"),
        "{d}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn both_forms_of_the_path_answer_and_a_token_guards_them() {
    let options = HttpOptions {
        dashboard_token: Some("s3cret".to_owned()),
        ..HttpOptions::default()
    };
    let server = serve_with_dashboard(App::named("api").handler::<Boom>(), 8.0, options).await;
    let dash = dashboard(&server);
    for path in ["/api/serve/applications/", "/api/serve/applications"] {
        let r = get(dash, path).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(r.header("www-authenticate"), "Bearer");
        let r = get_with_token(dash, path, "s3cre").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path}");
        let r = get_with_token(dash, path, "s3cret").await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        let body = r.json();
        assert_rays_shape(&body);
        assert_eq!(body["applications"]["api"]["route_prefix"], "/", "{body}");
    }
    // Every other path of the dashboard too.
    for path in ["/metrics", "/api/timeseries", "/api/logs", "/"] {
        assert_eq!(
            get(dash, path).await.status,
            StatusCode::UNAUTHORIZED,
            "{path}"
        );
    }
    server.shutdown().await;
}

#[tokio::test]
async fn an_app_at_the_root_owns_metrics_and_api_paths_of_the_serving_port() {
    let options = HttpOptions {
        metrics_export_port: Some(0),
        ..HttpOptions::default()
    };
    let server = serve_with_dashboard(App::named("site").handler::<PathEcho>(), 8.0, options).await;
    let addr = server.local_addr();
    for path in ["/metrics", "/api/x", "/api/serve/applications/"] {
        let r = get(addr, path).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert_eq!(r.json()["path"], path, "{path}: {}", r.body);
    }
    // The proxy keeps its own two paths.
    assert_eq!(get(addr, "/-/healthz").await.body, "success");
    assert_eq!(get(addr, "/-/routes").await.json()["/"], "site");
    // /metrics is on the dashboard and on the metrics export port.
    let dash = dashboard(&server);
    for at in [
        dash,
        server.metrics_export_addr().expect("the metrics port runs"),
    ] {
        let r = get(at, "/metrics").await;
        assert_eq!(r.status, StatusCode::OK, "{at}");
        assert!(r.body.contains("serve_"), "{}", r.body);
    }
    server.shutdown().await;
}

#[tokio::test]
async fn with_no_app_at_the_root_metrics_is_a_404_on_the_serving_port() {
    let options = HttpOptions {
        dashboard_port: None,
        metrics_export_port: Some(0),
        ..HttpOptions::default()
    };
    let controller = Controller::new(NodeResources::new(8.0, 8 << 30));
    let server = Server::start_with(HttpOptions { port: 0, ..options }, controller)
        .await
        .expect("the server starts");
    server
        .deploy(App::named("api").handler::<Boom>(), "/api")
        .await
        .expect("the app deploys");
    let addr = server.local_addr();
    for path in ["/metrics", "/api/serve/applications/"] {
        let r = get(addr, path).await;
        if path == "/metrics" {
            r.assert(
                StatusCode::NOT_FOUND,
                "text/plain; charset=utf-8",
                "Path '/metrics' not found. Ping http://.../-/routes for available routes.",
            );
        } else {
            // Under /api: the app's own answer.
            assert_eq!(r.body, "alive", "{path}");
        }
    }
    // With the dashboard off, the metrics export port still serves the metrics, and only them.
    assert_eq!(server.dashboard_addr(), None);
    let metrics = server.metrics_export_addr().expect("the metrics port runs");
    assert_ne!(metrics.port(), addr.port());
    assert_eq!(get(addr, "/api/alive").await.status, StatusCode::OK);
    let r = get(metrics, "/metrics").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.header("content-type").contains("text"),
        "{}",
        r.header("content-type")
    );
    // The metrics label a request with its route's deployment (both requests above reached it).
    assert!(
        r.body.contains(
            "ray_serve_deployment_processing_latency_ms_count{application=\"api\",deployment=\"boom\",replica=\"boom#0\",route=\"/api\"} 2"
        ),
        "{}",
        r.body
    );
    assert_eq!(get(metrics, STATUS).await.status, StatusCode::NOT_FOUND);
    assert_eq!(get(metrics, "/").await.status, StatusCode::NOT_FOUND);
    server.shutdown().await;
}

#[tokio::test]
async fn a_redeployed_application_is_reported_once_with_its_new_deployment() {
    let server = serve_with_dashboard(
        App::named("site").handler::<PathEcho>(),
        8.0,
        HttpOptions::default(),
    )
    .await;
    server
        .deploy(App::named("site").handler::<Boom>(), "/")
        .await
        .expect("the new version deploys");
    let body = details(dashboard(&server)).await;
    assert_rays_shape(&body);
    assert_eq!(
        deployment_names(&body["applications"]["site"]),
        ["boom"],
        "{body}"
    );
    assert_eq!(get(server.local_addr(), "/x").await.body, "alive");
    server.shutdown().await;
}
