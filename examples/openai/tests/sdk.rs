//! The OpenAI routes, black box, from Rust's async-openai client: the `openai` example's binary
//! over a real socket lists its models, completes a chat whole and streamed, answers an unknown
//! model with OpenAI's error, hands out tool calls, and picks a multiplexed model by header.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::traits::RequestOptionsBuilder;
use async_openai::types::chat::{
    ChatCompletionMessageToolCalls, ChatCompletionRequestAssistantMessageArgs,
    ChatCompletionRequestMessage, ChatCompletionRequestToolMessageArgs,
    ChatCompletionRequestUserMessage, CreateChatCompletionRequest, CreateChatCompletionRequestArgs,
    FinishReason, Role,
};
use example_support::process::{Killed, free_port};
use futures::StreamExt;

/// How long the example may take to print that it serves.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long any one call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts the example on free ports; waits until it prints that it serves (after deploying its
/// application). The port it serves on, and the process.
fn start() -> (u16, Killed) {
    let (port, dashboard) = (free_port(), free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_openai"))
        .args(["--port", &port.to_string()])
        .args(["--dashboard-port", &dashboard.to_string()])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the openai example starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let child = Killed(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = std::time::Instant::now() + STARTUP_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.starts_with("rayai OpenAI example serving on ") => {
                return (port, child);
            }
            Ok(_) => {}
            Err(e) => panic!("the example did not say it serves within {STARTUP_TIMEOUT:?}: {e}"),
        }
    }
}

/// `fut`, or a panic naming `what` after [`CALL_TIMEOUT`].
async fn bounded<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(CALL_TIMEOUT, fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {CALL_TIMEOUT:?}"))
}

fn user(text: &str) -> ChatCompletionRequestMessage {
    ChatCompletionRequestUserMessage::from(text).into()
}

fn request(
    model: &str,
    messages: Vec<ChatCompletionRequestMessage>,
) -> CreateChatCompletionRequest {
    CreateChatCompletionRequestArgs::default()
        .model(model)
        .messages(messages)
        .build()
        .expect("a request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_openai_client_sees_the_openai_routes_behave() {
    let (port, _server) = start();
    let client = Client::with_config(
        OpenAIConfig::new()
            .with_api_base(format!("http://127.0.0.1:{port}/v1"))
            .with_api_key("unused"),
    );

    // The models: the agents, sorted.
    let models = bounded("models.list", client.models().list())
        .await
        .expect("the models");
    let ids: Vec<&str> = models.data.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["assistant", "lora", "sleepy", "weather"]);
    assert!(
        models
            .data
            .iter()
            .all(|m| m.object == "model" && m.owned_by == "rayai"),
        "{models:?}"
    );
    let assistant = bounded("models.retrieve", client.models().retrieve("assistant"))
        .await
        .expect("the assistant model");
    assert_eq!(assistant.id, "assistant");

    // A completion.
    let reply = bounded(
        "chat.create",
        client
            .chat()
            .create(request("assistant", vec![user("Hello there")])),
    )
    .await
    .expect("a completion");
    assert!(reply.id.starts_with("chatcmpl-"), "id: {}", reply.id);
    assert_eq!(reply.object, "chat.completion");
    assert_eq!(reply.model, "assistant");
    assert_eq!(reply.choices.len(), 1, "{reply:?}");
    let choice = &reply.choices[0];
    assert_eq!(choice.message.role, Role::Assistant);
    assert_eq!(
        choice.message.content.as_deref(),
        Some("You said: Hello there")
    );
    assert_eq!(choice.finish_reason, Some(FinishReason::Stop));
    let usage = reply.usage.as_ref().expect("usage");
    assert_eq!(
        (
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.total_tokens
        ),
        (2, 4, 6)
    );

    // The same, streamed.
    let mut stream = bounded(
        "chat.create_stream",
        client
            .chat()
            .create_stream(request("assistant", vec![user("stream this please")])),
    )
    .await
    .expect("a stream");
    let mut chunks = Vec::new();
    while let Some(chunk) = bounded("a chunk", stream.next()).await {
        chunks.push(chunk.expect("a chunk"));
    }
    assert!(!chunks.is_empty(), "no chunk");
    assert!(
        chunks.iter().all(|c| c.id == chunks[0].id
            && c.id.starts_with("chatcmpl-")
            && c.object == "chat.completion.chunk"),
        "one id, chunk objects: {chunks:?}"
    );
    assert_eq!(chunks[0].choices[0].delta.role, Some(Role::Assistant));
    let text: String = chunks
        .iter()
        .flat_map(|c| &c.choices)
        .filter_map(|choice| choice.delta.content.as_deref())
        .collect();
    assert_eq!(text, "You said: stream this please");
    let last = chunks.last().unwrap();
    assert_eq!(
        last.choices.first().and_then(|c| c.finish_reason),
        Some(FinishReason::Stop),
        "{last:?}"
    );

    // An unknown model: OpenAI's 404.
    let err = bounded(
        "chat.create nobody",
        client.chat().create(request("nobody", vec![user("hi")])),
    )
    .await
    .expect_err("an unknown model fails");
    match &err {
        OpenAIError::ApiError(e) => {
            assert_eq!(e.status_code.as_u16(), 404, "{err}");
            assert_eq!(
                e.api_error.code.as_deref(),
                Some("model_not_found"),
                "{err}"
            );
            assert_eq!(e.api_error.param.as_deref(), Some("model"), "{err}");
            assert_eq!(
                e.api_error.r#type.as_deref(),
                Some("invalid_request_error"),
                "{err}"
            );
        }
        other => panic!("an API error expected: {other:?}"),
    }

    // Tool calls, then the answer once the tool's result is in the conversation.
    let question = user("What is the weather in Lyon?");
    let reply = bounded(
        "chat.create weather",
        client
            .chat()
            .create(request("weather", vec![question.clone()])),
    )
    .await
    .expect("a tool call");
    let choice = &reply.choices[0];
    assert_eq!(choice.finish_reason, Some(FinishReason::ToolCalls));
    let calls = choice.message.tool_calls.clone().expect("tool_calls");
    let [ChatCompletionMessageToolCalls::Function(call)] = calls.as_slice() else {
        panic!("one function call: {calls:?}");
    };
    assert_eq!(call.function.name, "get_weather");
    let args: serde_json::Value =
        serde_json::from_str(&call.function.arguments).expect("JSON arguments");
    assert_eq!(args, serde_json::json!({ "city": "Lyon" }));
    let conversation = vec![
        question,
        ChatCompletionRequestAssistantMessageArgs::default()
            .tool_calls(calls.clone())
            .build()
            .unwrap()
            .into(),
        ChatCompletionRequestToolMessageArgs::default()
            .tool_call_id(call.id.clone())
            .content("sunny")
            .build()
            .unwrap()
            .into(),
    ];
    let reply = bounded(
        "chat.create weather with the tool's result",
        client.chat().create(request("weather", conversation)),
    )
    .await
    .expect("the forecast");
    assert_eq!(
        reply.choices[0].message.content.as_deref(),
        Some("The forecast: sunny")
    );
    assert_eq!(reply.choices[0].finish_reason, Some(FinishReason::Stop));

    // A multiplexed model, picked by the header.
    let reply = bounded(
        "chat.create lora with the header",
        client
            .chat()
            .header("serve_multiplexed_model_id", "adapter-2")
            .expect("a valid header")
            .create(request("lora", vec![user("hi")])),
    )
    .await
    .expect("a multiplexed answer");
    assert_eq!(
        reply.choices[0].message.content.as_deref(),
        Some("[adapter-2] hi")
    );
    assert_eq!(reply.model, "lora");
}
