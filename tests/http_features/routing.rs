//! Route prefixes: `/-/routes`, the path below a prefix and the prefix as `RootPath`, whole
//! segment matching, a taken prefix, and `root_path` mounting the whole server.

use http::StatusCode;
use rayai::HttpOptions;
use rayai::prelude::*;

use crate::common;
use crate::handlers::PathEcho;
use crate::{example, options, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_lists_every_prefix_with_its_app() {
    let server = example().await;
    let reply = common::get(server.local_addr(), "/-/routes").await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(
        reply.json(),
        json!({ "/": "hello", "/api/v1": "api", "/slow": "slow", "/ws": "ws" })
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_sees_the_path_below_its_prefix_and_the_prefix_as_root_path() {
    let server = example().await;
    server
        .deploy(App::named("paths").handler::<PathEcho>(), "/echo-path")
        .await
        .expect("the paths app deploys");
    let addr = server.local_addr();
    let below = common::get(addr, "/echo-path/x/y").await;
    assert_eq!(below.status, StatusCode::OK, "{below:?}");
    assert_eq!(
        below.json(),
        json!({ "root_path": "/echo-path", "path": "/x/y" })
    );
    let at = common::get(addr, "/echo-path").await;
    assert_eq!(at.json(), json!({ "root_path": "/echo-path", "path": "/" }));
    let with_query = common::get(addr, "/echo-path/q?a=1").await;
    assert_eq!(
        with_query.json(),
        json!({ "root_path": "/echo-path", "path": "/q" })
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefix_matches_whole_segments_only() {
    let server = example().await;
    let addr = server.local_addr();
    for path in ["/api/v1x", "/api/v1x/items/1", "/api", "/slowly"] {
        let reply = common::get(addr, path).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {reply:?}");
        assert_eq!(reply.body, "hello", "{path} goes to the `/` app");
    }
    let reply = common::get(addr, "/api/v1/items/7").await;
    assert_eq!(
        reply.json(),
        json!({ "item_id": 7 }),
        "the longest prefix wins"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_app_at_a_taken_prefix_is_refused_and_the_same_name_replaces() {
    let server = example().await;
    let addr = server.local_addr();
    let err = server
        .deploy(App::named("other").handler::<PathEcho>(), "/api/v1")
        .await
        .expect_err("two apps on one prefix is an error");
    let message = err.to_string();
    assert!(
        message.contains("`api`") && message.contains("`other`"),
        "the error names both apps: {message}"
    );
    let still = common::get(addr, "/api/v1/items/3").await;
    assert_eq!(still.json(), json!({ "item_id": 3 }), "nothing changed");

    server
        .deploy(App::named("api").handler::<PathEcho>(), "/api/v1")
        .await
        .expect("the same name redeploys");
    let replaced = common::get(addr, "/api/v1/items/3").await;
    assert_eq!(replaced.status, StatusCode::OK, "{replaced:?}");
    assert_eq!(
        replaced.json(),
        json!({ "root_path": "/api/v1", "path": "/items/3" })
    );
    let routes = common::get(addr, "/-/routes").await;
    assert_eq!(
        routes.json(),
        json!({ "/": "hello", "/api/v1": "api", "/slow": "slow", "/ws": "ws" })
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_path_mounts_the_whole_server_below_it() {
    let server = start(HttpOptions {
        root_path: "/serve".to_owned(),
        ..options()
    })
    .await;
    server
        .deploy(App::named("paths").handler::<PathEcho>(), "/echo-path")
        .await
        .unwrap();
    let addr = server.local_addr();
    let hello = common::get(addr, "/serve").await;
    assert_eq!((hello.status.as_u16(), hello.body.as_str()), (200, "hello"));
    let item = common::get(addr, "/serve/api/v1/items/7").await;
    assert_eq!(item.body, r#"{"item_id":7}"#);
    let routes = common::get(addr, "/serve/-/routes").await;
    assert_eq!(routes.status, 200);
    // The handler sees the path below its prefix, and the mount plus the prefix as its root.
    let seen: Value =
        serde_json::from_str(&common::get(addr, "/serve/echo-path/x").await.body).unwrap();
    assert_eq!(
        seen,
        json!({ "root_path": "/serve/echo-path", "path": "/x" })
    );
    // Outside the mount: the proxy's 404, naming the path as sent.
    for outside in ["/", "/api/v1/items/7", "/served"] {
        let reply = common::get(addr, outside).await;
        assert_eq!(reply.status, 404, "{outside}");
        assert_eq!(
            reply.body,
            format!("Path '{outside}' not found. Ping http://.../-/routes for available routes."),
        );
        assert!(reply.headers.contains_key("x-request-id"));
    }
    server.shutdown().await;
}
