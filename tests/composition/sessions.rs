//! Sticky sessions through handles: one session's calls reach one replica, and a call made inside
//! a request carries its session to the callee.

use rayai::prelude::*;

use crate::fixtures::{Forwarder, WhoAmI};
use crate::{EXCHANGE_TIMEOUT, deploy_locally, handle, within};

/// The replica of `who_am_i` that answered.
fn replica_of(answer: &Value) -> String {
    answer["replica"]
        .as_str()
        .unwrap_or_else(|| panic!("an answer with a replica: {answer}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_with_one_session_reach_one_replica() {
    let controller = deploy_locally(App::new().agent::<WhoAmI>()).await;
    let who = handle(&controller, "who_am_i");
    assert_eq!(who.replicas().len(), 4);

    let mut seen = std::collections::BTreeSet::new();
    for i in 0..20 {
        let ctx = RequestContext::new(format!("r{i}"), "alice");
        let answer = within(EXCHANGE_TIMEOUT, "who_am_i", who.call_with(ctx, json!({})))
            .await
            .expect("who_am_i answers");
        seen.insert(replica_of(&answer));
    }
    assert_eq!(seen.len(), 1, "alice's calls reached {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_inside_a_request_carries_its_session_to_the_callee() {
    let app = App::new().agent::<WhoAmI>().agent::<Forwarder>();
    let controller = deploy_locally(app).await;
    let forwarder = handle(&controller, "forwarder");
    let who = handle(&controller, "who_am_i");

    // Where alice's calls land when made directly.
    let direct = within(
        EXCHANGE_TIMEOUT,
        "who_am_i",
        who.call_with(RequestContext::new("direct", "alice"), json!({})),
    )
    .await
    .expect("who_am_i answers");
    let alices = replica_of(&direct);

    for i in 0..20 {
        let ctx = RequestContext::new(format!("r{i}"), "alice");
        let answer = within(
            EXCHANGE_TIMEOUT,
            "the forwarder",
            forwarder.call_with(ctx, json!({})),
        )
        .await
        .expect("the forwarder answers");
        assert_eq!(replica_of(&answer), alices, "call {i} left alice's replica");
    }
}
