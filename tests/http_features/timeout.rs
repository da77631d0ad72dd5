//! `request_timeout_s`: a 408 naming the request id, overridden per request by
//! `x-request-timeout-seconds`; a running stream is cut and its replica freed.

use http::{Method, StatusCode};
use rayai::prelude::*;

use crate::common::{self, Proto, within};
use crate::handlers::Ticker;
use crate::{RAW_WAIT, example, get_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_request_is_408_with_its_id_and_the_header_overrides_the_timeout() {
    let server = example().await;
    let addr = server.local_addr();

    let quick = common::get(addr, "/slow?ms=10").await;
    assert_eq!(quick.status, StatusCode::OK, "{quick:?}");
    assert_eq!(quick.body, "slept 10 ms");

    let late = common::get(addr, "/slow?ms=3000").await;
    assert_eq!(late.status, StatusCode::REQUEST_TIMEOUT, "{late:?}");
    assert!(
        late.header("content-type").starts_with("text/plain"),
        "{late:?}"
    );
    let id = late.header("x-request-id");
    assert_eq!(late.body, format!("Request {id} timed out after 1.0s."));

    let overridden = get_with(addr, "/slow?ms=1500", &[("x-request-timeout-seconds", "5")]).await;
    assert_eq!(overridden.status, StatusCode::OK, "{overridden:?}");
    assert_eq!(overridden.body, "slept 1500 ms");

    // As Ray Serve's proxy: 0 or less (or a number too large to matter) means no timeout...
    for none in ["-1", "0", "inf"] {
        let reply = get_with(
            addr,
            "/slow?ms=1500",
            &[("x-request-timeout-seconds", none)],
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK, "{none:?}: {reply:?}");
        assert!(reply.headers.contains_key("x-request-id"));
    }
    // ...and a malformed value is ignored: the server's timeout (1 s) applies.
    for malformed in ["soon", "NaN", ""] {
        let reply = get_with(
            addr,
            "/slow?ms=1500",
            &[("x-request-timeout-seconds", malformed)],
        )
        .await;
        assert_eq!(
            reply.status,
            StatusCode::REQUEST_TIMEOUT,
            "{malformed:?}: {reply:?}"
        );
        assert!(reply.headers.contains_key("x-request-id"));
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_timeout_aborts_a_running_stream_and_frees_the_replica() {
    let server = example().await;
    server
        .deploy(App::named("ticker").handler::<Ticker>(), "/ticker")
        .await
        .expect("the ticker deploys");
    let addr = server.local_addr();
    let ticker = server.deployment("ticker").expect("deployed");
    for proto in [Proto::H1, Proto::H2] {
        let req = common::request(addr, proto, Method::GET, "/ticker")
            .body(common::full(""))
            .expect("a valid request");
        let mut stream = common::open(addr, proto, req).await;
        assert_eq!(stream.status, StatusCode::OK, "the stream started in time");
        // The stream never ends on its own; the deadline aborts it (as Ray Serve's proxy
        // does), so the client sees a broken body, not a clean end it could take as complete.
        let (frames, end) = within(
            RAW_WAIT,
            "the deadline to cut the stream",
            stream.rest_or_break(RAW_WAIT),
        )
        .await;
        assert!(
            end.is_err(),
            "{proto:?}: the body ended cleanly at the deadline"
        );
        assert!(
            !frames.is_empty(),
            "{proto:?}: some ticks came before the cut"
        );
        assert!(
            frames
                .iter()
                .all(|f| f.iter().all(|b| b"tick\n".contains(b)))
        );
        drop(stream);
        common::eventually(RAW_WAIT, "the ticker's slot to be freed", || {
            let ticker = ticker.clone();
            async move { ticker.replicas().iter().all(|r| r.ongoing_requests == 0) }
        })
        .await;
    }
    server.shutdown().await;
}
