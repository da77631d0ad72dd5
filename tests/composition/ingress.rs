//! An ingress that takes handles in its constructor: it starts after what it composes, a redeploy
//! wires the new ingress to the new deployments, and handles that do not resolve fail the deploy.

use http::StatusCode;
use rayai::prelude::*;
use rayai::{Controller, Deployment, DeploymentConfig, DeploymentError, TypedHandle};

use crate::common::{self, eventually, open_post, post, serve_on};
use crate::fixtures::Square;
use crate::{EXCHANGE_TIMEOUT, Events, apps, composition, handle, node, within};

/// An ingress answering `POST /square {"n": k}` through a typed handle it takes when built.
fn square_ingress() -> Deployment {
    use axum::Json;
    use axum::extract::State;
    use axum::routing::post;

    async fn square(
        State(square): State<TypedHandle<Square>>,
        Json(body): Json<Value>,
    ) -> Json<Value> {
        let n = body["n"].as_i64().unwrap_or(0);
        let result = square.call(n).await.map_err(|e| e.to_string());
        Json(match result {
            Ok(squared) => json!({ "squared": squared }),
            Err(e) => json!({ "error": e }),
        })
    }

    Deployment::ingress(
        DeploymentConfig::new("square_api")
            .with_num_cpus(0.1)
            .with_memory_bytes(16 << 20),
        |ctx| {
            let handle = ctx
                .typed_handle::<Square>()
                .expect("`square` runs before the ingress starts");
            axum::Router::new()
                .route("/square", post(square))
                .with_state(handle)
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingress_listed_first_still_starts_after_what_it_composes() {
    // The ingress comes first in the app; its constructor needs `square` to run already.
    let app = App::named("squares")
        .deployment(square_ingress())
        .callable::<Square>();
    let server = serve_on(Controller::new(node()), app).await;
    let reply = post(server.local_addr(), "/square", r#"{"n": 12}"#).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.json(), json!({ "squared": 144 }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redeploying_the_example_wires_the_new_ingress_to_the_new_deployments() {
    let server = composition().await;
    let addr = server.local_addr();
    let before = post(addr, "/pipeline", r#"{"text": "a b"}"#).await;
    assert_eq!(before.body, r#"{"result":"2 words: a b"}"#);

    within(
        EXCHANGE_TIMEOUT,
        "the redeploy",
        server.deploy(apps::app(), "/"),
    )
    .await
    .expect("the same app deploys again");

    // The old deployments go away; only one of each name is left on the node.
    eventually(EXCHANGE_TIMEOUT, "the old deployments to stop", || async {
        let mut names: Vec<String> = server
            .controller()
            .status()
            .into_iter()
            .map(|s| s.name)
            .collect();
        let all = names.len();
        names.sort();
        names.dedup();
        all == names.len() && all == apps::app().deployments().len()
    })
    .await;

    // The new ingress answers, through handles to the new deployments (the old ones refuse).
    let pipeline = post(addr, "/pipeline", r#"{"text": "  Hello Big World "}"#).await;
    pipeline.assert(
        StatusCode::OK,
        "application/json",
        r#"{"result":"3 words: hello big world"}"#,
    );

    let ensemble = post(addr, "/ensemble", r#"{"x": 3}"#).await;
    assert_eq!(ensemble.status, StatusCode::OK, "{ensemble:?}");
    assert_eq!(ensemble.json()["outputs"]["b"].as_f64(), Some(13.0));

    let route = post(addr, "/route", r#"{"kind": "b", "text": "again"}"#).await;
    assert_eq!(route.status, StatusCode::OK, "{route:?}");
    assert_eq!(route.json()["result"], json!({ "text": "AGAIN" }));

    let mut events = Events::new(open_post(addr, "/stream", r#"{"n": 2}"#).await);
    let mut got = Vec::new();
    while let Some(event) = events.next().await {
        got.push(event);
    }
    assert_eq!(
        got,
        [
            "data: token0\n\n",
            "data: token1\n\n",
            "data: {\"type\": \"done\"}\n\n"
        ]
    );

    // What the requests reached is what the controller now runs.
    let words = handle(server.controller(), "word_count");
    let served: u64 = words.replicas().iter().map(|r| r.served).sum();
    assert_eq!(served, 1, "the new word_count served the new pipeline call");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingress_whose_handles_do_not_resolve_fails_the_deploy_not_the_caller() {
    // As the example's ingress does, it `expect`s its handles; here one names nothing that runs.
    let ingress = Deployment::ingress(
        DeploymentConfig::new("orphan_api")
            .with_num_cpus(0.1)
            .with_memory_bytes(16 << 20),
        |ctx| {
            let missing = ctx
                .handle("not_deployed")
                .expect("the composed deployment runs before the ingress starts");
            axum::Router::new().with_state(missing)
        },
    );
    let app = App::named("orphan")
        .callable::<Square>()
        .deployment(ingress);
    let server = common::start_on(Controller::new(node())).await;
    let deploying = tokio::spawn({
        let server = server.clone();
        async move { server.deploy(app, "/").await }
    });
    let outcome = within(EXCHANGE_TIMEOUT, "the deploy", deploying).await;
    match outcome {
        Ok(Err(DeploymentError::ReplicaStart { deployment, .. })) => {
            assert_eq!(deployment, "orphan_api")
        }
        Ok(other) => panic!("expected the deploy to fail with ReplicaStart, got {other:?}"),
        Err(join) => panic!(
            "the ingress constructor's panic unwound into the caller of deploy: {:?}",
            join.into_panic()
                .downcast_ref::<String>()
                .cloned()
                .unwrap_or_default()
        ),
    }
    // Nothing of the failed app is left running.
    eventually(EXCHANGE_TIMEOUT, "the failed app to be gone", || async {
        server.controller().status().is_empty()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn composed_agents_are_not_routed_and_routes_list_only_the_ingress() {
    let server = composition().await;
    let addr = server.local_addr();
    let routes = common::get(addr, "/-/routes").await;
    assert_eq!(routes.json(), json!({ "/": "composition" }));
    // The inner models answer only through handles: over HTTP their chat path is the
    // ingress's, which has no such route.
    for model in ["reverse_model", "upper_model", "tokens"] {
        let reply = post(
            addr,
            &format!("/agents/{model}/chat"),
            r#"{"data": {"text": "hi"}}"#,
        )
        .await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{model}: {reply:?}");
    }
    // The application still composes them.
    let reply = post(addr, "/route", r#"{"kind": "a", "text": "abc"}"#).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exposed_agent_is_served_beside_the_ingress() {
    use crate::fixtures::Greeter;
    let app = App::named("squares")
        .deployment(square_ingress())
        .callable::<Square>()
        .agent::<Greeter>()
        .expose("greeter");
    let server = serve_on(Controller::new(node()), app).await;
    let addr = server.local_addr();
    let routes = common::get(addr, "/-/routes").await;
    assert_eq!(
        routes.json(),
        json!({ "/": "squares", "/agents/greeter": "greeter-service" })
    );
    let reply = post(addr, "/agents/greeter/chat", r#"{"data": {"name": "ada"}}"#).await;
    reply.assert(
        StatusCode::OK,
        "application/json",
        r#"{"result":{"greeting":"hello, ada"},"session_id":"default"}"#,
    );
    let reply = post(addr, "/square", r#"{"n": 3}"#).await;
    assert_eq!(reply.json(), json!({ "squared": 9 }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exposing_what_is_not_an_agent_of_the_app_is_refused() {
    let app = App::named("squares")
        .deployment(square_ingress())
        .callable::<Square>()
        .expose("square");
    let err = app.validate().expect_err("a callable cannot be exposed");
    assert!(err.to_string().contains("expose"), "{err}");
}
