//! The OpenAI routes and the multiplexed model id, over a real socket (`docs/contract.md`, "The
//! OpenAI API" and "Model multiplexing"): where the routes hang and when they are off, an agent
//! without `run_stream` streamed, errors mid-stream and from the agent, the model id from the
//! header (chat contract and ingress) and from `model` when the app opts in. The official
//! clients' view is `examples/openai`'s tests.

use http::StatusCode;
use rayai::handler::full;
use rayai::prelude::*;
use rayai::{HttpOptions, Request, Response};
use serde_json::Value;

use crate::common::{EXCHANGE_TIMEOUT, get, open, post, post_with, serve};

/// Answers the last message's content, and the request's model id and session.
#[agent(num_cpus = 0.1, memory = "32MB")]
#[derive(Default)]
struct Parrot;

impl Agent for Parrot {
    async fn run(&self, data: Value) -> Result<Value, AgentError> {
        let ctx = RequestContext::current().expect("inside a request");
        let response = if data["context"] == json!(true) {
            json!(format!(
                "model={} session={}",
                ctx.multiplexed_model_id(),
                ctx.session_id()
            ))
        } else {
            data["messages"][0]["content"].clone()
        };
        Ok(json!({
            "response": response,
            "model_id": ctx.multiplexed_model_id(),
            "session": ctx.session_id(),
            "temperature": data["temperature"],
        }))
    }

    fn run_stream(&self, data: Value) -> Option<TextStream<'_>> {
        Some(
            try_stream! {
                yield "one".to_owned();
                yield String::new();
                yield " two".to_owned();
                if data["fail"] == json!(true) {
                    Err(AgentError::new("the stream broke"))?;
                }
            }
            .boxed(),
        )
    }
}

/// A result with no text, no `run_stream`, and its own token counts.
#[agent(num_cpus = 0.1, memory = "32MB")]
#[derive(Default)]
struct Plain;

impl Agent for Plain {
    async fn run(&self, data: Value) -> Result<Value, AgentError> {
        if data["conflict"] == json!(true) {
            return Err(AgentError::conflict("already booked"));
        }
        Ok(json!({ "answer": 42, "usage": { "prompt_tokens": 5, "completion_tokens": 7 } }))
    }
}

/// An ingress that answers `ingress` on every path.
#[deployment(num_cpus = 0.1, memory = "32MB")]
#[derive(Default)]
struct Front;

impl Handler for Front {
    async fn call(&self, req: Request) -> Response {
        let model = RequestContext::current()
            .map(|ctx| ctx.multiplexed_model_id().to_owned())
            .unwrap_or_default();
        Response::new(full(format!("ingress {} {model}", req.uri().path())))
    }
}

fn body(model: &str, extra: &str) -> String {
    format!(r#"{{"model": "{model}", "messages": [{{"role": "user", "content": "hi"}}]{extra}}}"#)
}

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// The JSON of each `data:` frame of an SSE body, and whether it ended with `[DONE]`.
fn chunks(body: &str) -> (Vec<Value>, bool) {
    let mut out = Vec::new();
    let mut done = false;
    for event in body.split("\n\n").filter(|e| !e.is_empty()) {
        let data = event.strip_prefix("data: ").expect("a data frame");
        if data == "[DONE]" {
            done = true;
        } else {
            assert!(!done, "a frame after [DONE]: {body}");
            out.push(json_of(data));
        }
    }
    (out, done)
}

#[tokio::test]
async fn the_routes_hang_below_the_apps_prefix_and_can_be_turned_off() {
    let server = serve(
        App::named("off").agent::<Plain>().openai(false),
        HttpOptions::default(),
    )
    .await;
    server
        .deploy(App::named("api").agent::<Parrot>(), "/api")
        .await
        .expect("deploys");
    let addr = server.local_addr();

    let models = get(addr, "/api/v1/models").await;
    assert_eq!(models.status, StatusCode::OK);
    let list = json_of(&models.body);
    assert_eq!(list["object"], "list");
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["parrot"], "only the agents of the apps at /api");
    assert_eq!(list["data"][0]["owned_by"], "rayai");
    assert!(list["data"][0]["created"].as_u64().unwrap() > 1_700_000_000);
    let one = get(addr, "/api/v1/models/parrot").await;
    assert_eq!(json_of(&one.body)["id"], "parrot");
    let missing = get(addr, "/api/v1/models/plain").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(json_of(&missing.body)["error"]["code"], "model_not_found");

    // `plain`'s app at `/` turned them off: nothing answers there.
    let off = post(addr, "/v1/chat/completions", &body("plain", "")).await;
    assert_eq!(off.status, StatusCode::NOT_FOUND);
    assert!(
        off.body
            .starts_with("Path '/v1/chat/completions' not found"),
        "{}",
        off.body
    );
    // Its chat contract is unchanged.
    let chat = post(addr, "/agents/plain/chat", r#"{"data": {}}"#).await;
    assert_eq!(chat.status, StatusCode::OK);

    let done = post(
        addr,
        "/api/v1/chat/completions",
        &body("parrot", r#", "temperature": 0.5"#),
    )
    .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    let completion = json_of(&done.body);
    assert_eq!(completion["choices"][0]["message"]["content"], "hi");
    assert!(done.header("x-request-id").len() > 8);
    assert_eq!(
        completion["id"],
        format!("chatcmpl-{}", done.header("x-request-id"))
    );
    server.shutdown().await;
}

#[tokio::test]
async fn an_ingress_keeps_its_paths_unless_its_app_asks_for_the_openai_routes() {
    let server = serve(
        App::named("shop")
            .handler::<Front>()
            .agent::<Parrot>()
            .expose("parrot"),
        HttpOptions::default(),
    )
    .await;
    let addr = server.local_addr();
    let reply = post(addr, "/v1/chat/completions", &body("parrot", "")).await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (StatusCode::OK, "ingress /v1/chat/completions ")
    );
    // The header reaches the ingress's request context (and its router).
    let reply = post_with(addr, "/x", &[("serve_multiplexed_model_id", "m-7")], "{}").await;
    assert_eq!(reply.body, "ingress /x m-7");

    server
        .deploy(
            App::named("shop")
                .handler::<Front>()
                .agent::<Parrot>()
                .expose("parrot")
                .openai(true),
            "/",
        )
        .await
        .expect("redeploys");
    let reply = post(addr, "/v1/chat/completions", &body("parrot", "")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(json_of(&reply.body)["object"], "chat.completion");
    // Other paths still go to the ingress.
    assert_eq!(get(addr, "/v1/other").await.body, "ingress /v1/other ");
    server.shutdown().await;
}

#[tokio::test]
async fn a_result_without_text_and_an_agent_without_run_stream() {
    let server = serve(App::new().agent::<Plain>(), HttpOptions::default()).await;
    let addr = server.local_addr();
    let reply = post(addr, "/v1/chat/completions", &body("plain", "")).await;
    let completion = json_of(&reply.body);
    let result = json!({ "answer": 42, "usage": { "prompt_tokens": 5, "completion_tokens": 7 } });
    let text = completion["choices"][0]["message"]["content"]
        .as_str()
        .unwrap();
    assert_eq!(json_of(text), result, "the result as JSON text");
    assert_eq!(
        completion["usage"],
        json!({ "prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12 })
    );

    // Streamed anyway: the result as one delta.
    let streamed = post(
        addr,
        "/v1/chat/completions",
        &body(
            "plain",
            r#", "stream": true, "stream_options": {"include_usage": true}"#,
        ),
    )
    .await;
    assert_eq!(streamed.status, StatusCode::OK);
    assert_eq!(
        streamed.header("content-type"),
        "text/event-stream; charset=utf-8"
    );
    let (frames, done) = chunks(&streamed.body);
    assert!(done);
    assert_eq!(frames[0]["choices"][0]["delta"]["role"], "assistant");
    let text = frames[1]["choices"][0]["delta"]["content"]
        .as_str()
        .unwrap();
    assert_eq!(json_of(text), result);
    assert_eq!(frames[2]["choices"][0]["finish_reason"], "stop");
    assert_eq!(frames[3]["choices"], json!([]));
    assert_eq!(frames[3]["usage"]["total_tokens"], 12);

    // The agent's own error: its status, OpenAI's object.
    let conflict = post(
        addr,
        "/v1/chat/completions",
        &body("plain", r#", "conflict": true"#),
    )
    .await;
    assert_eq!(conflict.status, StatusCode::CONFLICT);
    assert_eq!(
        json_of(&conflict.body)["error"],
        json!({ "message": "already booked", "type": "conflict_error", "param": null, "code": null })
    );
    server.shutdown().await;
}

#[tokio::test]
async fn streams_skip_empty_chunks_and_end_with_an_error_object_when_the_agent_fails() {
    let server = serve(App::new().agent::<Parrot>(), HttpOptions::default()).await;
    let addr = server.local_addr();
    let ok = post(
        addr,
        "/v1/chat/completions",
        &body("parrot", r#", "stream": true"#),
    )
    .await;
    let (frames, done) = chunks(&ok.body);
    assert!(done);
    let text: String = frames
        .iter()
        .filter_map(|f| f["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "one two");
    assert_eq!(frames.len(), 4, "role, two deltas, stop: {}", ok.body);
    assert!(frames.iter().all(|f| f["id"] == frames[0]["id"]));

    let failed = post(
        addr,
        "/v1/chat/completions",
        &body("parrot", r#", "stream": true, "fail": true"#),
    )
    .await;
    assert_eq!(failed.status, StatusCode::OK);
    let (frames, done) = chunks(&failed.body);
    assert!(!done, "no [DONE] after an error: {}", failed.body);
    let last = frames.last().unwrap();
    assert_eq!(last["error"]["message"], "the stream broke");
    assert_eq!(last["error"]["type"], "server_error");
    server.shutdown().await;
}

#[tokio::test]
async fn bad_requests_get_openai_errors() {
    let server = serve(App::new().agent::<Parrot>(), HttpOptions::default()).await;
    let addr = server.local_addr();
    for (sent, param) in [
        ("not json", Value::Null),
        ("[1]", Value::Null),
        (r#"{"messages": []}"#, json!("model")),
        (r#"{"model": 3, "messages": []}"#, json!("model")),
        (r#"{"model": "parrot"}"#, json!("messages")),
        (r#"{"model": "parrot", "messages": {}}"#, json!("messages")),
        (
            r#"{"model": "parrot", "messages": [], "stream": "yes"}"#,
            json!("stream"),
        ),
    ] {
        let reply = post(addr, "/v1/chat/completions", sent).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{sent}: {}",
            reply.body
        );
        let error = &json_of(&reply.body)["error"];
        assert_eq!(error["type"], "invalid_request_error", "{sent}");
        assert_eq!(error["param"], param, "{sent}");
    }
    let wrong = get(addr, "/v1/chat/completions").await;
    assert_eq!(wrong.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(wrong.header("allow"), "POST");
    // No agent is named `parrot:x` and the app did not opt in to model suffixes.
    let unknown = post(addr, "/v1/chat/completions", &body("parrot:x", "")).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(json_of(&unknown.body)["error"]["code"], "model_not_found");
    server.shutdown().await;
}

#[tokio::test]
async fn the_model_id_comes_from_the_header_or_the_model_suffix_and_the_session_from_user() {
    let server = serve(
        App::new().agent::<Parrot>().openai_model_suffix(true),
        HttpOptions::default(),
    )
    .await;
    let addr = server.local_addr();
    let result = |reply: crate::common::Reply| {
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        json_of(&reply.body)
    };
    // The chat contract, with the header.
    let chat = result(
        post_with(
            addr,
            "/agents/parrot/chat",
            &[("serve_multiplexed_model_id", "adapter-3")],
            r#"{"data": {"messages": [{"content": "x"}]}}"#,
        )
        .await,
    );
    assert_eq!(chat["result"]["model_id"], "adapter-3");
    let chat = result(post(addr, "/agents/parrot/chat", r#"{"data": {}}"#).await);
    assert_eq!(chat["result"]["model_id"], "");
    let long = "m".repeat(600);
    let refused = post_with(
        addr,
        "/agents/parrot/chat",
        &[("serve_multiplexed_model_id", &long)],
        r#"{"data": {}}"#,
    )
    .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);

    // OpenAI: the suffix, the header, and `user` as the session.
    let context = |model: &str| body(model, r#", "user": "ada", "context": true"#);
    let text = |completion: &Value| {
        completion["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let suffixed = result(post(addr, "/v1/chat/completions", &context("parrot:adapter-1")).await);
    assert_eq!(suffixed["model"], "parrot:adapter-1");
    assert_eq!(text(&suffixed), "model=adapter-1 session=ada");
    let header = result(
        post_with(
            addr,
            "/v1/chat/completions",
            &[("serve_multiplexed_model_id", "adapter-2")],
            &context("parrot"),
        )
        .await,
    );
    assert_eq!(header["model"], "parrot");
    assert_eq!(text(&header), "model=adapter-2 session=ada");
    let none = result(post(addr, "/v1/chat/completions", &context("parrot")).await);
    assert_eq!(text(&none), "model= session=ada");
    server.shutdown().await;
}

#[tokio::test]
async fn a_stream_is_opened_before_its_first_chunk() {
    let server = serve(App::new().agent::<Parrot>(), HttpOptions::default()).await;
    let addr = server.local_addr();
    let req = crate::common::json_post(
        addr,
        crate::common::Proto::H2,
        "/v1/chat/completions",
        &[],
        &body("parrot", r#", "stream": true"#),
    );
    let mut stream = open(addr, crate::common::Proto::H2, req).await;
    assert_eq!(stream.status, StatusCode::OK);
    let first = stream.frame(EXCHANGE_TIMEOUT).await.expect("a first frame");
    assert!(String::from_utf8_lossy(&first).contains("\"role\":\"assistant\""));
    server.shutdown().await;
}

/// The requests of the OpenAI routes are counted under their route and the application of the
/// agent under the prefix (an agent is the application `{name}-service`, as in the chat
/// contract's series) in `/metrics`.
#[tokio::test]
async fn openai_requests_are_counted_under_their_application() {
    let server = serve(
        App::named("api").agent::<Parrot>(),
        HttpOptions {
            dashboard_port: Some(0),
            ..HttpOptions::default()
        },
    )
    .await;
    server
        .deploy(App::named("tools").agent::<Plain>(), "/tools")
        .await
        .expect("deploys");
    let addr = server.local_addr();
    for _ in 0..2 {
        let done = post(addr, "/v1/chat/completions", &body("parrot", "")).await;
        assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    }
    let tools = post(addr, "/tools/v1/chat/completions", &body("plain", "")).await;
    assert_eq!(tools.status, StatusCode::OK, "{}", tools.body);
    assert_eq!(get(addr, "/v1/models").await.status, StatusCode::OK);

    let dash = server.dashboard_addr().expect("the dashboard runs");
    let metrics = get(dash, "/metrics").await;
    assert_eq!(metrics.status, StatusCode::OK);
    let count = |line: &str| {
        metrics
            .body
            .lines()
            .find(|l| l.starts_with(line))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
    };
    for (line, n) in [
        (
            r#"ray_serve_num_http_requests_total{application="parrot-service",route="/v1/chat/completions",method="POST",status_code="200"}"#,
            2.0,
        ),
        (
            r#"ray_serve_num_http_requests_total{application="plain-service",route="/tools/v1/chat/completions",method="POST",status_code="200"}"#,
            1.0,
        ),
        (
            r#"ray_serve_num_http_requests_total{application="parrot-service",route="/v1/models",method="GET",status_code="200"}"#,
            1.0,
        ),
    ] {
        assert_eq!(count(line), Some(n), "{line} in\n{}", metrics.body);
    }
    server.shutdown().await;
}
