//! Typed agents: `data` checked against the agent's input type, every field error listed in a
//! 422 as FastAPI lists a pydantic model's; a good request answered as by any agent.

use http::StatusCode;
use rayai::prelude::*;
use rayai::{HttpOptions, Server};

use crate::common::{post, serve};
use crate::{DONE, agents};

/// A server with the `typed_echo` agent.
async fn typed_echo() -> Server {
    serve(
        App::new().agent::<agents::TypedEcho>(),
        HttpOptions::default(),
    )
    .await
}

/// The `detail` list of a 422 answer.
fn detail_list(r: &crate::common::Reply) -> Vec<Value> {
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{r:?}");
    assert_eq!(r.header("content-type"), "application/json");
    match r.json() {
        Value::Object(mut body) => match body.remove("detail") {
            Some(Value::Array(list)) => list,
            other => panic!("detail is not a list: {other:?}"),
        },
        other => panic!("not an object: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_request_is_answered_with_the_typed_output() {
    let server = typed_echo().await;
    let r = post(
        server.local_addr(),
        "/agents/typed_echo/chat",
        r#"{"data": {"text": "hi", "times": 2, "author": {"name": "Ada", "age": 36}, "tags": ["a", "b"], "extra": 1}}"#,
    )
    .await;
    r.assert(
        StatusCode::OK,
        "application/json",
        r#"{"result":{"echo":"hi hi","author":{"name":"Ada","age":36},"tags":["a","b"]},"session_id":"default"}"#,
    );
    // The optional field may be absent or null.
    let r = post(
        server.local_addr(),
        "/agents/typed_echo/chat",
        r#"{"data": {"text": "yo", "times": null, "author": {"name": "Bo", "age": 0}, "tags": []}, "session_id": "s1"}"#,
    )
    .await;
    r.assert(
        StatusCode::OK,
        "application/json",
        r#"{"result":{"echo":"yo","author":{"name":"Bo","age":0},"tags":[]},"session_id":"s1"}"#,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_field_error_is_listed_in_one_422() {
    let server = typed_echo().await;
    let r = post(
        server.local_addr(),
        "/agents/typed_echo/chat",
        r#"{"data": {"times": "abc", "author": {"name": 5, "age": -1}, "tags": ["a", 7]}}"#,
    )
    .await;
    let input = json!({"times": "abc", "author": {"name": 5, "age": -1}, "tags": ["a", 7]});
    assert_eq!(
        Value::Array(detail_list(&r)),
        json!([
            {"type": "missing", "loc": ["body", "data", "text"], "msg": "Field required",
             "input": input},
            {"type": "int_parsing", "loc": ["body", "data", "times"],
             "msg": "Input should be a valid integer, unable to parse string as an integer",
             "input": "abc"},
            {"type": "string_type", "loc": ["body", "data", "author", "name"],
             "msg": "Input should be a valid string", "input": 5},
            {"type": "greater_than_equal", "loc": ["body", "data", "author", "age"],
             "msg": "Input should be greater than or equal to 0", "input": -1,
             "ctx": {"ge": 0}},
            {"type": "string_type", "loc": ["body", "data", "tags", 1],
             "msg": "Input should be a valid string", "input": 7},
        ])
    );
    // Compact, in FastAPI's key order, byte for byte.
    assert!(
        r.body.starts_with(
            r#"{"detail":[{"type":"missing","loc":["body","data","text"],"msg":"Field required","input":{"times":"abc","#
        ),
        "{}",
        r.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_types_name_the_expected_type() {
    let server = typed_echo().await;
    let r = post(
        server.local_addr(),
        "/agents/typed_echo/chat",
        r#"{"data": {"text": ["x"], "times": 1.5, "author": "Ada", "tags": "a"}}"#,
    )
    .await;
    let errors = detail_list(&r);
    let summary: Vec<(&str, &Value)> = errors
        .iter()
        .map(|e| (e["type"].as_str().unwrap(), &e["loc"][2]))
        .collect();
    assert_eq!(
        summary,
        [
            ("string_type", &json!("text")),
            ("int_from_float", &json!("times")),
            ("model_attributes_type", &json!("author")),
            ("list_type", &json!("tags")),
        ]
    );
    assert_eq!(errors[3]["msg"], "Input should be a valid list");
    assert_eq!(errors[3]["input"], "a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_that_is_no_object_stays_the_envelopes_dict_type() {
    let server = typed_echo().await;
    let r = post(
        server.local_addr(),
        "/agents/typed_echo/chat",
        r#"{"data": [1]}"#,
    )
    .await;
    r.assert(
        StatusCode::UNPROCESSABLE_ENTITY,
        "application/json",
        r#"{"detail":[{"type":"dict_type","loc":["body","data"],"msg":"Input should be a valid dictionary","input":[1]}]}"#,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typed_agent_streams_and_a_bad_input_is_a_422_before_any_stream() {
    let server = typed_echo().await;
    let addr = server.local_addr();
    let r = post(
        addr,
        "/agents/typed_echo/chat",
        r#"{"data": {"text": "hi", "times": 2, "author": {"name": "A", "age": 1}, "tags": []}, "stream": "text"}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, format!("data: hi\n\ndata: hi\n\n{DONE}"));

    let r = post(
        addr,
        "/agents/typed_echo/chat",
        r#"{"data": {"text": "hi", "tags": []}, "stream": "text"}"#,
    )
    .await;
    r.assert(
        StatusCode::UNPROCESSABLE_ENTITY,
        "application/json",
        r#"{"detail":[{"type":"missing","loc":["body","data","author"],"msg":"Field required","input":{"text":"hi","tags":[]}}]}"#,
    );
    // No event stream: the same 400 as for any agent without one.
    let r = post(
        addr,
        "/agents/typed_echo/chat",
        r#"{"data": {"text": "hi", "author": {"name": "A", "age": 1}, "tags": []}, "stream": "events"}"#,
    )
    .await;
    r.assert(
        StatusCode::BAD_REQUEST,
        "application/json",
        r#"{"detail":"Agent does not support event streaming. Implement run_stream_events() method."}"#,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schema_comes_from_the_types() {
    let schema = <agents::TypedEcho as Agent>::schema();
    assert_eq!(schema.input["title"], "TypedEchoInput");
    assert_eq!(schema.input["required"], json!(["text", "author", "tags"]));
    assert_eq!(schema.output["required"], json!(["echo", "author", "tags"]));
    let echo = <agents::Echo as Agent>::schema();
    assert_eq!(echo, rayai::AgentSchema::any());
}
