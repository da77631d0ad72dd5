//! Handles outside HTTP: by name for agents, typed for callables (the wrong type is
//! `WrongKind`), none for an unknown name, and the server's controller handing out handles to the
//! example's deployments.

use rayai::prelude::*;
use rayai::{Controller, DeploymentError, TypedHandle};

use crate::fixtures::{Greeter, Halve, Square};
use crate::{EXCHANGE_TIMEOUT, apps, composition, deploy_locally, handle, node, ongoing, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_handle_by_name_calls_an_agent() {
    let controller = deploy_locally(App::new().agent::<Greeter>()).await;
    let greeter = handle(&controller, "greeter");
    assert_eq!(greeter.name(), "greeter");
    let answer = within(
        EXCHANGE_TIMEOUT,
        "the greeter",
        greeter.call(json!({ "name": "ada" })),
    )
    .await
    .expect("the greeter answers");
    assert_eq!(answer, json!({ "greeting": "hello, ada" }));
    assert_eq!(greeter.replicas()[0].served, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_handle_calls_a_callable_with_rust_values() {
    let controller = deploy_locally(App::new().callable::<Square>()).await;
    let square = TypedHandle::<Square>::new(handle(&controller, "square"));
    for n in [-3_i64, 0, 7, 1 << 20] {
        let answer = within(EXCHANGE_TIMEOUT, "square", square.call(n))
            .await
            .expect("square answers");
        assert_eq!(answer, n * n);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_handle_of_the_wrong_type_is_wrong_kind() {
    let app = App::new()
        .agent::<Greeter>()
        .callable::<Square>()
        .callable::<Halve>();
    let controller = deploy_locally(app).await;

    // A typed handle on an agent.
    let on_agent = TypedHandle::<Square>::new(handle(&controller, "greeter"));
    let result = within(EXCHANGE_TIMEOUT, "the call", on_agent.call(2)).await;
    assert!(
        matches!(result, Err(DeploymentError::WrongKind { .. })),
        "{result:?}"
    );

    // A typed handle whose request type is not the callee's.
    let on_square = TypedHandle::<Halve>::new(handle(&controller, "square"));
    let result = within(EXCHANGE_TIMEOUT, "the call", on_square.call(2.0)).await;
    assert!(
        matches!(result, Err(DeploymentError::WrongKind { .. })),
        "{result:?}"
    );

    // Neither broke anything: the right types still work.
    let halve = TypedHandle::<Halve>::new(handle(&controller, "halve"));
    let half = within(EXCHANGE_TIMEOUT, "halve", halve.call(3.0)).await;
    assert_eq!(half.expect("halve answers"), 1.5);
    assert_eq!(ongoing(on_square.handle()), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_name_has_no_handle() {
    let controller = deploy_locally(App::new().agent::<Greeter>()).await;
    assert!(controller.handle("no_such_deployment").is_none());
    assert!(controller.handle("Greeter").is_none(), "names are exact");
    assert!(Controller::new(node()).handle("greeter").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_controller_hands_out_handles_to_the_example_deployments() {
    let server = composition().await;
    let controller = server.controller();

    let upper = handle(controller, "upper_model");
    let answer = within(
        EXCHANGE_TIMEOUT,
        "upper_model",
        upper.call(json!({ "text": "shout" })),
    )
    .await;
    assert_eq!(
        answer.expect("upper_model answers"),
        json!({ "text": "SHOUT" })
    );

    let words = TypedHandle::<apps::WordCount>::new(handle(controller, "word_count"));
    let count = within(
        EXCHANGE_TIMEOUT,
        "word_count",
        words.call("one two three four".to_owned()),
    )
    .await;
    assert_eq!(count.expect("word_count answers"), 4);

    let mut tokens = within(
        EXCHANGE_TIMEOUT,
        "the token stream to open",
        handle(controller, "tokens").stream(json!({ "n": 3 })),
    )
    .await
    .expect("the token stream opens");
    let mut got = Vec::new();
    while let Some(token) = within(EXCHANGE_TIMEOUT, "a token", tokens.next()).await {
        got.push(token.expect("a token"));
    }
    assert_eq!(got, ["token0", "token1", "token2"]);
}
