//! Constructors: one that fails once is retried; one that always fails fails the deploy, gives
//! back what was reserved, and leaves a running version serving.

use std::sync::atomic::Ordering;

use http::StatusCode;
use rayai::prelude::*;
use rayai::{Controller, Deployment, NodeResources};

use crate::common::{get, post, serve_on, start_on};
use crate::fixtures::{
    BROKEN_ATTEMPTS, BROKEN_MESSAGE, Broken, HalfBroken, Quick, SECOND_TIME_ATTEMPTS, SecondTime,
    replica_of,
};
use crate::{GIB, chat, error_text, node, status_of};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn constructor_that_fails_once_is_retried_and_the_deploy_succeeds() {
    let server = serve_on(node(), App::new().agent::<SecondTime>()).await;
    let s = status_of(&server, "second_time");
    assert_eq!(SECOND_TIME_ATTEMPTS.load(Ordering::SeqCst), 2);
    assert_eq!(s.replicas.len(), 1, "{s:#?}");
    assert_eq!(s.replicas[0].starts, 2, "{s:#?}");
    assert_eq!(
        s.replicas_started, 1,
        "a retry is not a new replica: {s:#?}"
    );

    let r = post(server.local_addr(), &chat("second_time"), r#"{"data": {}}"#).await;
    assert_eq!(replica_of(&r), s.replicas[0].replica_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn constructor_that_always_fails_fails_the_deploy_and_routes_nothing() {
    let server = start_on(node()).await;
    let addr = server.local_addr();

    let err = server
        .deploy(App::new().agent::<Broken>(), "/")
        .await
        .expect_err("a deploy whose constructor always fails");
    let text = error_text(&err);
    assert!(text.contains(BROKEN_MESSAGE), "{text}");
    assert!(
        text.contains("broken"),
        "the error names the deployment: {text}"
    );
    assert!(
        BROKEN_ATTEMPTS.load(Ordering::SeqCst) >= 2,
        "the constructor was retried"
    );

    let routes = get(addr, "/-/routes").await;
    assert_eq!(routes.status, StatusCode::OK);
    assert_eq!(routes.json(), json!({}), "nothing is routed");
    let r = post(addr, &chat("broken"), r#"{"data": {}}"#).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    assert!(
        r.body.starts_with("Path '/agents/broken/chat' not found"),
        "{}",
        r.body
    );
    assert!(server.status().is_empty());
    assert!(server.controller().status().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_deploy_gives_back_what_its_started_replicas_reserved() {
    // One CPU: `half_broken` reserves 2 x 0.5; replica #0 starts, replica #1 never does.
    let server = start_on(Controller::new(NodeResources::new(1.0, GIB))).await;
    let err = server
        .deploy(App::new().agent::<HalfBroken>(), "/")
        .await
        .expect_err("replica #1 cannot start");
    assert!(
        error_text(&err).contains("cannot load"),
        "{}",
        error_text(&err)
    );

    // Nothing runs, so the whole CPU is free again.
    let whole_cpu = Deployment::agent::<Quick>().map_config(|c| c.with_num_cpus(1.0));
    let deployed = server.deploy(App::new().deployment(whole_cpu), "/").await;
    if let Err(e) = &deployed {
        panic!("the node's CPU was not given back: {}", error_text(e));
    }
    let r = post(server.local_addr(), &chat("quick"), r#"{"data": {}}"#).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_redeploy_leaves_the_running_app_serving() {
    let server = serve_on(node(), App::new().agent::<Quick>()).await;
    let addr = server.local_addr();
    assert_eq!(
        post(addr, &chat("quick"), r#"{"data": {}}"#).await.status,
        StatusCode::OK
    );

    // A new version of `quick` whose constructor always fails.
    let broken_quick = Deployment::agent::<Broken>().map_config(|c| c.with_name("quick"));
    let err = server
        .deploy(App::new().deployment(broken_quick), "/")
        .await
        .expect_err("the new version cannot start");
    assert!(
        error_text(&err).contains(BROKEN_MESSAGE),
        "{}",
        error_text(&err)
    );

    // "Nothing changes on error": the old version still answers.
    let r = post(addr, &chat("quick"), r#"{"data": {}}"#).await;
    r.assert(
        StatusCode::OK,
        "application/json",
        r#"{"result":{"quick":true},"session_id":"default"}"#,
    );
}
