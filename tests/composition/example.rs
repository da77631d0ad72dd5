//! The composition example over HTTP: the pipeline, the ensemble, the router and the streaming
//! pipeline, each refusing what it cannot take with a 422.

use http::StatusCode;
use rayai::prelude::*;

use crate::common::{eventually, open_post, post};
use crate::{EXCHANGE_TIMEOUT, Events, assert_unprocessable, composition, ongoing};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_preprocesses_counts_and_formats() {
    let server = composition().await;
    let reply = post(
        server.local_addr(),
        "/pipeline",
        r#"{"text": "  Hello Big World "}"#,
    )
    .await;
    reply.assert(
        StatusCode::OK,
        "application/json",
        r#"{"result":"3 words: hello big world"}"#,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_without_string_text_is_422_json() {
    let server = composition().await;
    let addr = server.local_addr();
    for body in [
        r#"{}"#,
        r#"{"text": 5}"#,
        r#"{"text": null}"#,
        r#"{"text": ["a"]}"#,
    ] {
        let reply = post(addr, "/pipeline", body).await;
        assert_unprocessable(&reply);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ensemble_answers_each_model_and_their_mean() {
    let server = composition().await;
    let reply = post(server.local_addr(), "/ensemble", r#"{"x": 3}"#).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    let body = reply.json();
    let output = |name: &str| {
        body["outputs"][name]
            .as_f64()
            .unwrap_or_else(|| panic!("output `{name}` is a number: {body}"))
    };
    let (a, b, c) = (output("a"), output("b"), output("c"));
    assert_eq!((a, b, c), (6.0, 13.0, 9.0), "{body}");
    let combined = body["combined"].as_f64().expect("combined is a number");
    assert!((combined - (a + b + c) / 3.0).abs() < 1e-9, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ensemble_without_a_number_is_422_json() {
    let server = composition().await;
    let addr = server.local_addr();
    for body in [r#"{}"#, r#"{"x": "3"}"#, r#"{"x": null}"#] {
        let reply = post(addr, "/ensemble", body).await;
        assert_unprocessable(&reply);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_picks_the_model_by_kind() {
    let server = composition().await;
    let addr = server.local_addr();

    let a = post(addr, "/route", r#"{"kind": "a", "text": "Hello"}"#).await;
    assert_eq!(a.status, StatusCode::OK, "{a:?}");
    assert_eq!(
        a.json(),
        json!({ "model": "reverse_model", "result": { "text": "olleH" } })
    );

    let b = post(addr, "/route", r#"{"kind": "b", "text": "Hello"}"#).await;
    assert_eq!(b.status, StatusCode::OK, "{b:?}");
    assert_eq!(
        b.json(),
        json!({ "model": "upper_model", "result": { "text": "HELLO" } })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_with_another_kind_is_422_json() {
    let server = composition().await;
    let addr = server.local_addr();
    for body in [
        r#"{"kind": "c", "text": "Hello"}"#,
        r#"{"kind": "A", "text": "Hello"}"#,
        r#"{"text": "Hello"}"#,
        r#"{"kind": 1, "text": "Hello"}"#,
    ] {
        let reply = post(addr, "/route", body).await;
        assert_unprocessable(&reply);
    }
    // Nothing reached either model.
    for name in ["reverse_model", "upper_model"] {
        let model = server.deployment(name).expect("the model runs");
        let served: u64 = model.replicas().iter().map(|r| r.served).sum();
        assert_eq!(served, 0, "`{name}` served a refused request");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_sends_each_token_as_produced_then_done() {
    let server = composition().await;
    let tokens = server.deployment("tokens").expect("the token model runs");
    let response = open_post(server.local_addr(), "/stream", r#"{"n": 5}"#).await;
    assert_eq!(response.status, StatusCode::OK);
    assert!(
        response
            .header("content-type")
            .starts_with("text/event-stream"),
        "{:?}",
        response.headers
    );
    let mut events = Events::new(response);

    let first = events.next().await;
    assert_eq!(first.as_deref(), Some("data: token0\n\n"));
    // The first token is in while the model still produces the rest: nothing more has arrived
    // with it, and the model's stream still holds its replica.
    assert!(
        events.buffer.is_empty(),
        "more arrived with the first token: {:?}",
        events.buffer
    );
    assert_eq!(
        ongoing(&tokens),
        1,
        "the token model had already finished when the first token arrived"
    );

    let mut rest = Vec::new();
    while let Some(event) = events.next().await {
        rest.push(event);
    }
    let expected: Vec<String> = (1..5)
        .map(|i| format!("data: token{i}\n\n"))
        .chain(["data: {\"type\": \"done\"}\n\n".to_owned()])
        .collect();
    assert_eq!(rest, expected);
    eventually(EXCHANGE_TIMEOUT, "the token model to be idle", || async {
        ongoing(&tokens) == 0
    })
    .await;
}
