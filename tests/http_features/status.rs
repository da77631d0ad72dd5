//! The status API and the metrics read the controller's snapshot, where each route knows its
//! application and its deployment by identity, not by equal names.

use http::StatusCode;
use rayai::{App, Controller, NodeResources};

use super::handlers::{Boom, PathEcho};
use crate::common::{get, serve_on};

#[tokio::test]
async fn an_application_is_reported_with_its_own_deployments_whatever_their_names() {
    let controller = Controller::new(NodeResources::new(8.0, 8 << 30));
    // `App::new()` is named `default`; its ingress deployment is `path_echo`.
    let server = serve_on(controller, App::new().handler::<PathEcho>()).await;
    server
        .deploy(App::named("api").handler::<Boom>(), "/api")
        .await
        .expect("the second app deploys");
    let addr = server.local_addr();

    let body = get(addr, "/api/serve/applications").await.json();
    let default = &body["applications"]["default"];
    assert_eq!(default["name"], "default", "{body}");
    assert_eq!(default["route_prefix"], "/", "{body}");
    assert_eq!(
        default["deployments"]["path_echo"]["name"], "path_echo",
        "{body}"
    );
    let api = &body["applications"]["api"];
    assert_eq!(api["route_prefix"], "/api", "{body}");
    assert_eq!(api["deployments"]["boom"]["running_replicas"], 1, "{body}");
    assert_eq!(
        body["applications"].as_object().map(|a| a.len()),
        Some(2),
        "{body}"
    );

    // The metrics label a request with its route's deployment.
    assert_eq!(get(addr, "/api/alive").await.status, StatusCode::OK);
    let metrics = get(addr, "/metrics").await.body;
    assert!(
        metrics.contains(
            "ray_serve_deployment_processing_latency_ms_count{application=\"api\",deployment=\"boom\",replica=\"boom#0\",route=\"/api\"} 1"
        ),
        "{metrics}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_redeployed_application_is_reported_once_with_its_new_deployment() {
    let controller = Controller::new(NodeResources::new(8.0, 8 << 30));
    let server = serve_on(controller, App::named("site").handler::<PathEcho>()).await;
    server
        .deploy(App::named("site").handler::<Boom>(), "/")
        .await
        .expect("the new version deploys");
    let body = get(server.local_addr(), "/api/serve/applications")
        .await
        .json();
    let deployments = &body["applications"]["site"]["deployments"];
    assert_eq!(deployments.as_object().map(|d| d.len()), Some(1), "{body}");
    assert_eq!(deployments["boom"]["name"], "boom", "{body}");
    assert_eq!(get(server.local_addr(), "/x").await.body, "alive");
    server.shutdown().await;
}
