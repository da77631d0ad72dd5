//! Autoscaling: to zero and back, up to `max_replicas` under load and down to `min_replicas`
//! after it, and never past what the node holds.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use http::StatusCode;
use rayai::{AutoscalingConfig, Controller, DeploymentHandle, NodeResources};

use crate::common::{post, serve_on, start_post};
use crate::fixtures::autoscaled_slow;
use crate::{GIB, chat, handle, ms, node, status_of, until_status};

/// The highest target and running replica counts of a deployment, sampled every 2 ms in the
/// background until dropped.
struct Peaks {
    target: Arc<AtomicU32>,
    running: Arc<AtomicU32>,
    task: tokio::task::JoinHandle<()>,
}

impl Peaks {
    /// Starts sampling `deployment`.
    fn watch(deployment: DeploymentHandle) -> Peaks {
        let target = Arc::new(AtomicU32::new(0));
        let running = Arc::new(AtomicU32::new(0));
        let (t, r) = (target.clone(), running.clone());
        let task = tokio::spawn(async move {
            loop {
                let s = deployment.status();
                t.fetch_max(s.target_replicas, Ordering::SeqCst);
                r.fetch_max(s.running_replicas, Ordering::SeqCst);
                tokio::time::sleep(ms(2)).await;
            }
        });
        Peaks {
            target,
            running,
            task,
        }
    }

    /// The highest target replica count seen.
    fn target(&self) -> u32 {
        self.target.load(Ordering::SeqCst)
    }

    /// The highest running replica count seen.
    fn running(&self) -> u32 {
        self.running.load(Ordering::SeqCst)
    }
}

impl Drop for Peaks {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_deployment_scales_to_zero_and_back_on_the_first_request() {
    let config = AutoscalingConfig::new(0, 2, 1.0)
        .with_upscale_delay(Duration::ZERO)
        .with_downscale_delay(ms(300))
        .with_downscale_to_zero_delay(ms(300));
    let server = serve_on(node(), autoscaled_slow(config, 0.1)).await;
    let addr = server.local_addr();
    let s = status_of(&server, "slow");
    assert_eq!(
        (s.target_replicas, s.running_replicas, s.replicas_started),
        (0, 0, 0),
        "{s:#?}"
    );

    let r = post(addr, &chat("slow"), r#"{"data": {"ms": 0}}"#).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "the first request to zero replicas: {}",
        r.body
    );
    let s = status_of(&server, "slow");
    assert_eq!((s.running_replicas, s.replicas_started), (1, 1), "{s:#?}");

    until_status(
        &server,
        "slow",
        "0 replicas once the traffic stopped",
        |s| s.target_replicas == 0 && s.running_replicas == 0,
    )
    .await;

    let r = post(addr, &chat("slow"), r#"{"data": {"ms": 0}}"#).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "a request after scaling to zero: {}",
        r.body
    );
    assert_eq!(status_of(&server, "slow").replicas_started, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_scales_replicas_up_to_max_and_back_down_to_min() {
    let config = AutoscalingConfig::new(1, 3, 1.0)
        .with_upscale_delay(Duration::ZERO)
        .with_downscale_delay(ms(200));
    let server = serve_on(node(), autoscaled_slow(config, 0.1)).await;
    let addr = server.local_addr();
    let s = status_of(&server, "slow");
    assert_eq!((s.target_replicas, s.running_replicas), (1, 1), "{s:#?}");
    let peaks = Peaks::watch(handle(&server, "slow"));

    let requests: Vec<_> = (0..3)
        .map(|_| start_post(addr, &chat("slow"), r#"{"data": {"ms": 300}}"#))
        .collect();
    until_status(
        &server,
        "slow",
        "3 replicas for 3 concurrent requests",
        |s| s.target_replicas == 3 && s.running_replicas == 3,
    )
    .await;
    for r in requests {
        let r = r.reply().await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }

    until_status(&server, "slow", "back to 1 replica after the load", |s| {
        s.target_replicas == 1 && s.running_replicas == 1
    })
    .await;
    assert!(
        peaks.target() <= 3,
        "the target reached {}, above max_replicas",
        peaks.target()
    );
    assert!(
        peaks.running() <= 3,
        "{} replicas ran, above max_replicas",
        peaks.running()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autoscaling_stops_at_what_the_node_holds_and_says_so() {
    // One CPU holds two replicas of 0.5; four concurrent requests ask for four.
    let config = AutoscalingConfig::new(1, 4, 1.0)
        .with_upscale_delay(Duration::ZERO)
        .with_downscale_delay(ms(200));
    let controller = Controller::new(NodeResources::new(1.0, GIB));
    let server = serve_on(controller, autoscaled_slow(config, 0.5)).await;
    let addr = server.local_addr();
    let peaks = Peaks::watch(handle(&server, "slow"));

    let requests: Vec<_> = (0..4)
        .map(|_| start_post(addr, &chat("slow"), r#"{"data": {"ms": 600}}"#))
        .collect();
    let s = until_status(
        &server,
        "slow",
        "2 replicas, limited by node resources",
        |s| s.running_replicas == 2 && s.message.contains("node resources"),
    )
    .await;
    assert!(
        s.message
            .contains("limited to 2 replicas by node resources"),
        "{:?}",
        s.message
    );
    for r in requests {
        let r = r.reply().await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    assert!(
        peaks.running() <= 2,
        "{} replicas ran on a node that holds 2",
        peaks.running()
    );
    assert!(
        peaks.target() <= 2,
        "the target reached {} on a node that holds 2",
        peaks.target()
    );
}
