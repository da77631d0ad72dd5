//! Sticky sessions: a session's requests stay on one replica; the default session spreads.

use std::collections::BTreeSet;

use rayai::prelude::*;

use crate::common::{post, post_with, serve_on};
use crate::fixtures::{Sticky, replica_of};
use crate::{chat, node};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_stays_on_one_replica_and_the_default_session_spreads() {
    let server = serve_on(node(), App::new().agent::<Sticky>()).await;
    let addr = server.local_addr();

    let mut alice = BTreeSet::new();
    for _ in 0..10 {
        let r = post(
            addr,
            &chat("sticky"),
            r#"{"data": {}, "session_id": "alice"}"#,
        )
        .await;
        assert_eq!(r.json()["session_id"], "alice");
        alice.insert(replica_of(&r));
    }
    assert_eq!(alice.len(), 1, "alice's requests went to {alice:?}");

    let mut bob = BTreeSet::new();
    for _ in 0..10 {
        let r = post_with(
            addr,
            &chat("sticky"),
            &[("x-session-id", "bob")],
            r#"{"data": {}}"#,
        )
        .await;
        assert_eq!(
            r.json()["session_id"],
            "default",
            "the header does not change the body"
        );
        bob.insert(replica_of(&r));
    }
    assert_eq!(
        bob.len(),
        1,
        "bob's requests (x-session-id) went to {bob:?}"
    );

    let mut anyone = BTreeSet::new();
    for _ in 0..40 {
        anyone.insert(replica_of(
            &post(addr, &chat("sticky"), r#"{"data": {}}"#).await,
        ));
    }
    assert!(
        anyone.len() >= 2,
        "40 default-session requests all went to {anyone:?}"
    );
}
