//! GPUs and the resource plan: GPUs are shared or given out whole, a deploy that does not fit is
//! refused with the plan and starts nothing, and a GPU comes back when its app goes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;

use rayai::prelude::*;
use rayai::{Controller, Deployment, NodeResources};

use crate::common::{get, post, serve_on, start_on, within};
use crate::fixtures::{
    CPU_HUNGRY_BUILT, CpuHungry, HalfGpu, WholeGpu, gpus_by_replica, gpus_of, one_gpu_app,
};
use crate::{GIB, POLL, chat, error_text, gpu_node, start_strict, status_of};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_half_gpu_replicas_share_gpu_0() {
    let server = serve_on(gpu_node(2), App::new().agent::<HalfGpu>()).await;
    let seen = gpus_by_replica(server.local_addr(), "half_gpu", 2).await;
    assert!(seen.values().all(|gpus| gpus == &[0]), "{seen:?}");

    let s = status_of(&server, "half_gpu");
    let in_status: BTreeMap<String, Vec<u32>> = s
        .replicas
        .iter()
        .map(|r| (r.replica_id.clone(), r.gpu_ids.clone()))
        .collect();
    assert_eq!(in_status, seen);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_whole_gpu_replicas_get_distinct_gpus() {
    let server = serve_on(gpu_node(2), App::new().agent::<WholeGpu>()).await;
    let seen = gpus_by_replica(server.local_addr(), "whole_gpu", 2).await;
    let ids: BTreeSet<Vec<u32>> = seen.values().cloned().collect();
    assert_eq!(ids, BTreeSet::from([vec![0], vec![1]]), "{seen:?}");

    let s = status_of(&server, "whole_gpu");
    let in_status: BTreeMap<String, Vec<u32>> = s
        .replicas
        .iter()
        .map(|r| (r.replica_id.clone(), r.gpu_ids.clone()))
        .collect();
    assert_eq!(in_status, seen);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_whole_gpu_replicas_than_gpus_is_refused_with_the_plan() {
    // Strict placement: every replica must fit (by default the two that fit start).
    let server = start_strict(gpu_node(2)).await;
    let three = Deployment::agent::<WholeGpu>().map_config(|c| c.with_num_replicas(3));
    let err = server
        .deploy(App::new().deployment(three), "/")
        .await
        .expect_err("3 whole GPUs do not fit on 2");
    let text = error_text(&err);
    assert!(text.contains("Resource Planning"), "{text}");
    assert!(text.contains("whole_gpu"), "{text}");
    assert!(text.contains("GPUs: need 3.0, node has 2"), "{text}");
    assert!(server.status().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infeasible_cpus_are_refused_with_the_plan_and_nothing_starts() {
    // Strict placement: every replica must fit (by default the two that fit start).
    let server = start_strict(Controller::new(NodeResources::new(1.0, GIB))).await;
    let app = App::new().agent::<CpuHungry>();

    let plan = server.controller().plan(&app);
    assert!(!plan.fits(), "{plan}");
    assert_eq!(plan.shortages(), ["CPUs: need 2.0, node has 1.0"], "{plan}");
    let table = plan.to_string();
    assert!(table.starts_with("Resource Planning\n"), "{table}");
    let row: Vec<&str> = table
        .lines()
        .find(|l| l.starts_with("cpu_hungry "))
        .unwrap_or_else(|| panic!("no cpu_hungry row in {table}"))
        .split_whitespace()
        .collect();
    assert_eq!(
        row,
        [
            "cpu_hungry",
            "4",
            "0.5",
            "0",
            "16.0MiB",
            "2.00",
            "0",
            "64.0MiB"
        ],
        "{table}"
    );

    let err = server
        .deploy(app, "/")
        .await
        .expect_err("2 CPUs do not fit on 1");
    let text = error_text(&err);
    assert!(text.contains(&table), "the error carries the plan:\n{text}");

    assert_eq!(
        CPU_HUNGRY_BUILT.load(Ordering::SeqCst),
        0,
        "no replica was built"
    );
    assert!(server.status().is_empty());
    assert!(server.controller().status().is_empty());
    assert_eq!(
        get(server.local_addr(), "/-/routes").await.json(),
        json!({})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redeploying_an_app_hands_its_gpu_to_the_new_replica() {
    let server = serve_on(gpu_node(1), one_gpu_app()).await;
    let addr = server.local_addr();
    assert_eq!(
        gpus_of(&post(addr, &chat("whole_gpu"), r#"{"data": {}}"#).await),
        [0]
    );

    // While it runs, the GPU is taken: another app that wants one is refused.
    let other = Deployment::agent::<WholeGpu>()
        .map_config(|c| c.with_name("other_gpu").with_num_replicas(1));
    let err = server
        .deploy(App::new().deployment(other), "/")
        .await
        .expect_err("the only GPU is taken");
    assert!(error_text(&err).contains("GPUs"), "{}", error_text(&err));

    // The same app again replaces the old one, whose GPU comes back for the new replica.
    if let Err(e) = server.deploy(one_gpu_app(), "/").await {
        panic!("the redeploy did not get the GPU back: {}", error_text(&e));
    }
    let s = status_of(&server, "whole_gpu");
    assert_eq!(s.running_replicas, 1, "{s:#?}");
    assert_eq!(s.replicas[0].gpu_ids, [0], "{s:#?}");
    assert_eq!(
        gpus_of(&post(addr, &chat("whole_gpu"), r#"{"data": {}}"#).await),
        [0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shut_down_server_gives_its_gpu_back_to_the_node() {
    let controller = gpu_node(1);
    let first = serve_on(controller.clone(), one_gpu_app()).await;
    within(POLL, "the first server to shut down", first.shutdown()).await;

    let second = start_on(controller).await;
    if let Err(e) = second.deploy(one_gpu_app(), "/").await {
        panic!(
            "the GPU of the shut-down app was not given back: {}",
            error_text(&e)
        );
    }
    let r = post(second.local_addr(), &chat("whole_gpu"), r#"{"data": {}}"#).await;
    assert_eq!(gpus_of(&r), [0]);
}
