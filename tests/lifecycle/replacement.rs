//! Replicas that die are replaced: after a panic (even the only replica's), and after a failed
//! health check.

use http::StatusCode;
use rayai::prelude::*;
use rayai::{Deployment, DeploymentState};

use crate::common::{post, serve_on};
use crate::fixtures::{Flaky, Panicky, replica_of};
use crate::{chat, ms, node, status_of, until_status};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panicked_replica_is_replaced_and_no_later_request_fails() {
    let server = serve_on(node(), App::new().agent::<Panicky>()).await;
    let addr = server.local_addr();

    let r = post(addr, &chat("panicky"), r#"{"data": {"panic": true}}"#).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", r.body);
    let detail = r.json()["detail"].as_str().unwrap_or_default().to_owned();
    assert!(detail.contains("panicky was asked to panic"), "{detail:?}");

    for i in 0..30 {
        let r = post(addr, &chat("panicky"), r#"{"data": {}}"#).await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "request {i} after the panic: {}",
            r.body
        );
    }
    let s = until_status(
        &server,
        "panicky",
        "2 running replicas, one a replacement",
        |s| {
            s.running_replicas == 2
                && s.replicas_started >= 3
                && s.status == DeploymentState::Healthy
        },
    )
    .await;
    assert_eq!(s.target_replicas, 2, "{s:#?}");
    assert!(
        s.replicas
            .iter()
            .all(|r| r.state == rayai::ReplicaState::Running),
        "{s:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_after_the_only_replica_panicked_waits_for_its_replacement() {
    let lone = Deployment::agent::<Panicky>().map_config(|c| c.with_num_replicas(1));
    let server = serve_on(node(), App::new().deployment(lone)).await;
    let addr = server.local_addr();
    let first = replica_of(&post(addr, &chat("panicky"), r#"{"data": {}}"#).await);

    let r = post(addr, &chat("panicky"), r#"{"data": {"panic": true}}"#).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", r.body);
    let r = post(addr, &chat("panicky"), r#"{"data": {}}"#).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "the request right after the panic: {}",
        r.body
    );
    assert_ne!(
        replica_of(&r),
        first,
        "answered by the replica that panicked"
    );

    let s = status_of(&server, "panicky");
    assert_eq!(s.replicas_started, 2, "{s:#?}");
    assert_eq!(s.running_replicas, 1, "{s:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_that_fails_its_health_check_is_replaced() {
    let flaky = Deployment::agent::<Flaky>().map_config(|c| c.with_health_check_period(ms(100)));
    let server = serve_on(node(), App::new().deployment(flaky)).await;
    let addr = server.local_addr();
    let before = status_of(&server, "flaky");
    assert_eq!(before.replicas.len(), 1, "{before:#?}");
    let old = before.replicas[0].replica_id.clone();

    let r = post(addr, &chat("flaky"), r#"{"data": {"fail_health": true}}"#).await;
    assert_eq!(replica_of(&r), old);

    let after = until_status(
        &server,
        "flaky",
        "a new replica in place of the unhealthy one",
        |s| {
            s.replicas_started > before.replicas_started
                && s.running_replicas == 1
                && s.replicas.len() == 1
                && s.replicas[0].replica_id != old
        },
    )
    .await;
    let new = after.replicas[0].replica_id.clone();
    let r = post(addr, &chat("flaky"), r#"{"data": {}}"#).await;
    assert_eq!(replica_of(&r), new, "{after:#?}");
    until_status(&server, "flaky", "HEALTHY with the new replica", |s| {
        s.status == DeploymentState::Healthy && s.replicas[0].replica_id == new
    })
    .await;
}
