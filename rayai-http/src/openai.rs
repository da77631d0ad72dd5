//! The OpenAI chat-completions API in front of an application's agents: `GET {prefix}/v1/models`
//! lists them, `POST {prefix}/v1/chat/completions` runs the one its `model` names and answers a
//! `chat.completion`, or with `"stream": true` streams `chat.completion.chunk` frames and
//! `data: [DONE]`. Errors are OpenAI's error object (`docs/contract.md`, "The OpenAI API").

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use futures::StreamExt;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use rayai_core::{Answer, DeploymentHandle, Error as CoreError, RequestContext, Snapshot};
use serde_json::{Map, Value, json};

use crate::body::Body;
use crate::chat::sse_response;
use crate::error;
use crate::sse::{Ends, Frame, Frames};

/// What an OpenAI path asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Op {
    /// `GET /v1/models`.
    Models,
    /// `GET /v1/models/{id}`.
    Model(String),
    /// `POST /v1/chat/completions`.
    ChatCompletions,
}

/// An agent behind the OpenAI API.
pub(crate) struct Model {
    name: String,
    handle: DeploymentHandle,
    /// Whether `model` may name a multiplexed model after a `:`.
    model_suffix: bool,
    /// When its application was deployed (unix seconds): the model's `created`.
    created: u64,
}

/// An OpenAI request's target: the operation, and the agents under the route prefix.
pub(crate) struct Mount {
    pub(crate) op: Op,
    /// The path the metrics count it under (`{prefix}/v1/chat/completions`, ...).
    pub(crate) route: String,
    /// The application the metrics count it under: the application of the agents under the
    /// prefix (an agent's is `{name}-service`), or `""` when they are of several.
    pub(crate) application: String,
    models: Vec<Model>,
}

/// The OpenAI operation `path` asks for and the agents that answer it, when `path` is one of the
/// OpenAI routes of a route prefix whose applications serve agents there.
pub(crate) fn mount(snapshot: &Snapshot, path: &str) -> Option<Mount> {
    let (prefix, op, route_tail) = if let Some(prefix) = path.strip_suffix("/v1/chat/completions") {
        (prefix, Op::ChatCompletions, "/v1/chat/completions")
    } else if let Some(prefix) = path.strip_suffix("/v1/models") {
        (prefix, Op::Models, "/v1/models")
    } else {
        // `{prefix}/v1/models/{id}`: the id is the last segment (no string search per request).
        let slash = path.rfind('/')?;
        let id = &path[slash + 1..];
        let prefix = path[..slash].strip_suffix("/v1/models")?;
        if id.is_empty() {
            return None;
        }
        (prefix, Op::Model(id.to_owned()), "/v1/models/{model}")
    };
    let prefix = if prefix.is_empty() { "/" } else { prefix };
    let mut application: Option<&str> = None;
    let mut one_application = true;
    let mut models: Vec<Model> = snapshot
        .routes()
        .iter()
        .filter_map(|route| {
            let openai = route.target().openai()?;
            if openai.prefix() != prefix {
                return None;
            }
            match application {
                None => application = Some(route.app()),
                Some(app) => one_application &= app == route.app(),
            }
            let handle = route.target().deployment().clone();
            let created = snapshot
                .application(route.app())
                .map(|app| app.deployed_at())
                .and_then(|at| at.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs());
            Some(Model {
                name: handle.name().to_owned(),
                handle,
                model_suffix: openai.model_suffix(),
                created,
            })
        })
        .collect();
    if models.is_empty() {
        return None;
    }
    models.sort_by(|a, b| a.name.cmp(&b.name));
    let application = match application {
        Some(app) if one_application => app.to_owned(),
        _ => String::new(),
    };
    Some(Mount {
        op,
        route: rayai_core::route::join_prefix(prefix, route_tail),
        application,
        models,
    })
}

/// OpenAI's error object with a status: `{"error": {"message", "type", "param", "code"}}`.
pub(crate) fn error_response(
    status: StatusCode,
    message: &str,
    param: Option<&str>,
    code: Option<&str>,
) -> Response<Body> {
    error::json_response(status, &error_object(status, message, param, code))
}

fn error_object(
    status: StatusCode,
    message: &str,
    param: Option<&str>,
    code: Option<&str>,
) -> Value {
    let kind = match status.as_u16() {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        408 => "timeout",
        409 => "conflict_error",
        422 => "unprocessable_entity_error",
        429 => "rate_limit_error",
        500..=599 => "server_error",
        _ => "invalid_request_error",
    };
    // An unknown model is OpenAI's `invalid_request_error` with its own code.
    let kind = if code == Some("model_not_found") {
        "invalid_request_error"
    } else {
        kind
    };
    json!({ "error": { "message": message, "type": kind, "param": param, "code": code } })
}

fn bad_request(message: &str, param: Option<&str>) -> Response<Body> {
    error_response(StatusCode::BAD_REQUEST, message, param, None)
}

/// A response of the server's own (a refused body, a 405) with its status and headers kept and
/// its body in OpenAI's shape.
fn reshaped(resp: Response<Body>, message: &str) -> Response<Body> {
    let (mut parts, _) = resp.into_parts();
    let fresh = error_response(parts.status, message, None, None);
    let (fresh_parts, body) = fresh.into_parts();
    parts.headers.insert(
        header::CONTENT_TYPE,
        fresh_parts.headers[header::CONTENT_TYPE].clone(),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, body)
}

/// The answer for an error raised serving the request: the status the chat contract gives it
/// (and its `Retry-After`), with OpenAI's error object.
fn from_error(e: &CoreError, retry_after_s: Option<u32>) -> Response<Body> {
    let resp = error::from_error(e, retry_after_s);
    let status = resp.status();
    let (code, message) = match e {
        CoreError::Backpressure { .. } => (Some("overloaded"), e.to_string()),
        CoreError::Agent(agent) => (None, agent.message().to_owned()),
        _ => (None, e.to_string()),
    };
    let (mut parts, _) = resp.into_parts();
    let (_, body) = error_response(status, &message, None, code).into_parts();
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, body)
}

/// What the HTTP exchange brings to a chat completion.
pub(crate) struct Exchange {
    pub(crate) request_id: Arc<str>,
    pub(crate) session_header: Option<Arc<str>>,
    pub(crate) model_header: Option<Arc<str>>,
    pub(crate) http11: bool,
    /// The request's deadline and its timeout in seconds.
    pub(crate) deadline: Option<(tokio::time::Instant, f64)>,
    pub(crate) retry_after_s: Option<u32>,
    pub(crate) sse_keep_alive: Option<std::time::Duration>,
}

impl Mount {
    /// Answers a model listing or lookup.
    pub(crate) fn models(&self, method: &Method) -> Response<Body> {
        if method != Method::GET && method != Method::HEAD {
            return method_not_allowed("GET");
        }
        let object = |m: &Model| json!({ "id": m.name, "object": "model", "created": m.created, "owned_by": "rayai" });
        match &self.op {
            Op::Model(id) => match self.models.iter().find(|m| &m.name == id) {
                Some(m) => error::json_response(StatusCode::OK, &object(m)),
                None => self.unknown_model(id),
            },
            _ => error::json_response(
                StatusCode::OK,
                &json!({ "object": "list", "data": self.models.iter().map(object).collect::<Vec<_>>() }),
            ),
        }
    }

    fn unknown_model(&self, model: &str) -> Response<Body> {
        let known: Vec<&str> = self.models.iter().map(|m| m.name.as_str()).collect();
        error_response(
            StatusCode::NOT_FOUND,
            &format!(
                "The model `{model}` does not exist. The models here are: {}.",
                known.join(", ")
            ),
            Some("model"),
            Some("model_not_found"),
        )
    }

    /// The agent `model` names, and the multiplexed model id after its `:` when the agent's
    /// application lets `model` name one.
    fn resolve<'a>(&'a self, model: &'a str) -> Option<(&'a Model, Option<&'a str>)> {
        if let Some(m) = self.models.iter().find(|m| m.name == model) {
            return Some((m, None));
        }
        let (agent, id) = model.split_once(':')?;
        let m = self
            .models
            .iter()
            .find(|m| m.name == agent && m.model_suffix)?;
        Some((m, Some(id).filter(|id| !id.is_empty())))
    }

    /// Answers `POST /v1/chat/completions`.
    pub(crate) async fn chat(
        &self,
        req: Request<Incoming>,
        options: &crate::HttpOptions,
        exchange: Exchange,
    ) -> Response<Body> {
        if req.method() != Method::POST {
            return method_not_allowed("POST");
        }
        let (body, held) = match crate::intake::read_whole(req, options).await {
            Ok(read) => read,
            Err(resp) => {
                let message = match resp.status() {
                    StatusCode::PAYLOAD_TOO_LARGE => format!(
                        "The request body is too large: the limit is {} bytes.",
                        options.max_body_bytes
                    ),
                    StatusCode::REQUEST_TIMEOUT => "The request body stalled.".to_owned(),
                    StatusCode::SERVICE_UNAVAILABLE => {
                        "The server holds too many request bodies now; retry later.".to_owned()
                    }
                    _ => "The request body could not be read.".to_owned(),
                };
                return reshaped(resp, &message);
            }
        };
        let parsed = serde_json::from_slice::<Value>(&body);
        drop((body, held));
        let mut fields = match parsed {
            Ok(Value::Object(fields)) => fields,
            Ok(_) => return bad_request("The request body must be a JSON object.", None),
            Err(e) => {
                return bad_request(&format!("The request body is not valid JSON: {e}."), None);
            }
        };
        let model = match fields.get("model") {
            Some(Value::String(model)) => model.clone(),
            Some(_) => return bad_request("`model` must be a string.", Some("model")),
            None => return bad_request("You must provide a model parameter.", Some("model")),
        };
        let Some((target, suffix_id)) = self.resolve(&model) else {
            return self.unknown_model(&model);
        };
        if suffix_id.is_some_and(|id| id.len() > 512) {
            return bad_request(
                "The model id after ':' is longer than 512 bytes.",
                Some("model"),
            );
        }
        match fields.get("messages") {
            Some(Value::Array(_)) => {}
            Some(_) => return bad_request("`messages` must be a list.", Some("messages")),
            None => {
                return bad_request("Missing required parameter: 'messages'.", Some("messages"));
            }
        }
        let streamed = match fields.remove("stream") {
            None | Some(Value::Null) | Some(Value::Bool(false)) => false,
            Some(Value::Bool(true)) => true,
            Some(_) => return bad_request("`stream` must be a boolean.", Some("stream")),
        };
        let include_usage = match fields.remove("stream_options") {
            None | Some(Value::Null) => false,
            Some(Value::Object(o)) => o.get("include_usage") == Some(&Value::Bool(true)),
            Some(_) => {
                return bad_request(
                    "`stream_options` must be an object.",
                    Some("stream_options"),
                );
            }
        };
        let session = match (fields.get("session_id"), fields.get("user")) {
            (Some(Value::String(s)), _) | (None, Some(Value::String(s))) => s.clone(),
            (Some(_), _) => {
                return bad_request("`session_id` must be a string.", Some("session_id"));
            }
            _ => "default".to_owned(),
        };
        let data = Value::Object(fields);
        if let Some(schema) = target.handle.schema()
            && let Err(errors) = schema.validate(&data)
        {
            return bad_request(
                &format!(
                    "The request does not fit the agent's input: {}",
                    Value::Array(errors)
                ),
                None,
            );
        }
        let mut ctx = RequestContext::new(exchange.request_id.clone(), session);
        if let Some(key) = &exchange.session_header {
            ctx = ctx.with_session_key(key.clone());
        }
        if let Some(id) = suffix_id
            .map(Arc::<str>::from)
            .or(exchange.model_header.clone())
        {
            ctx = ctx.with_multiplexed_model_id(id);
        }
        let head = Head::new(&exchange.request_id, &model);
        let retry_after_s = target
            .handle
            .config()
            .backpressure_retry_after_s()
            .or(exchange.retry_after_s);
        let work = async {
            if streamed {
                stream(
                    target,
                    ctx,
                    data,
                    head,
                    include_usage,
                    &exchange,
                    retry_after_s,
                )
                .await
            } else {
                match target.handle.call_answer(ctx, data).await {
                    Ok(answer) => completion(&head, &answer_value(answer)),
                    Err(e) => from_error(&e, retry_after_s),
                }
            }
        };
        match exchange.deadline {
            Some((at, secs)) => match tokio::time::timeout_at(at, work).await {
                Ok(resp) => resp,
                Err(_) => error_response(
                    StatusCode::REQUEST_TIMEOUT,
                    &error::timeout_message(&exchange.request_id, secs),
                    None,
                    Some("timeout"),
                ),
            },
            None => work.await,
        }
    }
}

/// A streamed completion: the agent's `run_stream` chunks as deltas; an agent without one
/// answers its `run` result as a single delta.
async fn stream(
    target: &Model,
    ctx: RequestContext,
    data: Value,
    head: Head,
    include_usage: bool,
    exchange: &Exchange,
    retry_after_s: Option<u32>,
) -> Response<Body> {
    let head = Arc::new(head);
    let opened = target.handle.stream_text(ctx.clone(), data.clone()).await;
    match opened {
        Ok(chunks) => {
            let mut start = BytesMut::new();
            head.chunk(
                &mut start,
                &json!({ "role": "assistant", "content": "" }),
                None,
            );
            let mut done = BytesMut::new();
            head.chunk(&mut done, &json!({}), Some("stop"));
            if include_usage {
                head.usage_chunk(&mut done, &usage_of(&Value::Null));
            }
            done.put_slice(DONE);
            let deltas = {
                let head = head.clone();
                chunks.map(move |item| item.map(|text| Delta(head.clone(), text)))
            };
            let frames = Frames::with_ends(
                deltas,
                exchange
                    .deadline
                    .map(|(at, secs)| (at, error::timeout_message(&exchange.request_id, secs))),
                exchange.sse_keep_alive,
                start.freeze(),
                Ends {
                    done: done.freeze(),
                    error: error_frame,
                },
            );
            sse_response(Body::stream(frames), exchange.http11)
        }
        Err(CoreError::TextStreamUnsupported) => match target.handle.call_answer(ctx, data).await {
            Ok(answer) => {
                let result = answer_value(answer);
                let reply = Reply::of(&result);
                let mut out = BytesMut::new();
                head.chunk(
                    &mut out,
                    &json!({ "role": "assistant", "content": "" }),
                    None,
                );
                let mut delta = Map::new();
                if let Some(text) = &reply.content {
                    delta.insert("content".into(), Value::String(text.clone()));
                }
                if let Some(calls) = &reply.tool_calls {
                    let indexed: Vec<Value> = calls
                        .iter()
                        .enumerate()
                        .map(|(i, call)| {
                            let mut call = call.clone();
                            call["index"] = json!(i);
                            call
                        })
                        .collect();
                    delta.insert("tool_calls".into(), Value::Array(indexed));
                }
                if !delta.is_empty() {
                    head.chunk(&mut out, &Value::Object(delta), None);
                }
                head.chunk(&mut out, &json!({}), Some(reply.finish_reason()));
                if include_usage {
                    head.usage_chunk(&mut out, &reply.usage);
                }
                out.put_slice(DONE);
                sse_response(Body::full(out.freeze()), exchange.http11)
            }
            Err(e) => from_error(&e, retry_after_s),
        },
        Err(e) => from_error(&e, retry_after_s),
    }
}

fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut resp = error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("Method not allowed: use {allow}."),
        None,
        None,
    );
    resp.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    resp
}

/// The end of an OpenAI stream.
const DONE: &[u8] = b"data: [DONE]\n\n";

/// The frame that ends a stream whose agent failed or that was cut off.
fn error_frame(message: &str) -> Bytes {
    let mut out = BytesMut::with_capacity(message.len() + 96);
    out.put_slice(b"data: ");
    let object = error_object(StatusCode::INTERNAL_SERVER_ERROR, message, None, None);
    let _ = serde_json::to_writer((&mut out).writer(), &object);
    out.put_slice(b"\n\n");
    out.freeze()
}

/// The fields every object of one completion shares.
struct Head {
    id: String,
    created: u64,
    model: String,
}

impl Head {
    fn new(request_id: &str, model: &str) -> Self {
        Head {
            id: format!("chatcmpl-{request_id}"),
            created: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            model: model.to_owned(),
        }
    }

    /// One `chat.completion.chunk` frame with `delta`.
    fn chunk(&self, out: &mut BytesMut, delta: &Value, finish_reason: Option<&str>) {
        let chunk = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason }],
        });
        frame(out, &chunk);
    }

    /// The usage chunk of `stream_options.include_usage`: no choices.
    fn usage_chunk(&self, out: &mut BytesMut, usage: &Value) {
        let chunk = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [],
            "usage": usage,
        });
        frame(out, &chunk);
    }
}

fn frame(out: &mut BytesMut, value: &Value) {
    out.put_slice(b"data: ");
    let _ = serde_json::to_writer(out.writer(), value);
    out.put_slice(b"\n\n");
}

/// A text chunk of the agent's stream, as a `chat.completion.chunk` frame.
struct Delta(Arc<Head>, String);

impl Frame for Delta {
    fn encode(&self, out: &mut BytesMut) -> bool {
        if self.1.is_empty() {
            return false;
        }
        self.0.chunk(out, &json!({ "content": self.1 }), None);
        true
    }
}

fn answer_value(answer: Answer) -> Value {
    match answer {
        Answer::Value(value) => value,
        Answer::Json(json) => serde_json::from_slice(&json).unwrap_or(Value::Null),
    }
}

/// What an agent's result says as a chat message.
struct Reply {
    content: Option<String>,
    tool_calls: Option<Vec<Value>>,
    usage: Value,
}

impl Reply {
    /// The text (`response` or `content` when a string, else the result as JSON text, none
    /// when the result only calls tools), the tool calls in OpenAI's shape, the usage.
    fn of(result: &Value) -> Self {
        let tool_calls = result
            .get("tool_calls")
            .and_then(Value::as_array)
            .filter(|calls| !calls.is_empty() && calls.iter().all(is_tool_call))
            .cloned();
        let text = ["response", "content"]
            .iter()
            .find_map(|key| result.get(*key).and_then(Value::as_str));
        let content = match text {
            Some(text) => Some(text.to_owned()),
            None if tool_calls.is_some() => None,
            None => Some(result.to_string()),
        };
        Reply {
            content,
            tool_calls,
            usage: usage_of(result),
        }
    }

    fn finish_reason(&self) -> &'static str {
        if self.tool_calls.is_some() {
            "tool_calls"
        } else {
            "stop"
        }
    }
}

/// Whether `call` is a tool call in OpenAI's shape: an id, `type: "function"`, and a function
/// with a name and its arguments as a JSON string.
fn is_tool_call(call: &Value) -> bool {
    call.get("id").is_some_and(Value::is_string)
        && call.get("type").and_then(Value::as_str) == Some("function")
        && call
            .get("function")
            .is_some_and(|f| f.get("name").is_some_and(Value::is_string))
        && call
            .get("function")
            .is_some_and(|f| f.get("arguments").is_some_and(Value::is_string))
}

/// The agent's token counts from its result's `usage`, zero where it gives none.
fn usage_of(result: &Value) -> Value {
    let count = |key: &str| {
        result
            .get("usage")
            .and_then(|u| u.get(key))
            .and_then(Value::as_u64)
    };
    let prompt = count("prompt_tokens").unwrap_or(0);
    let completion = count("completion_tokens").unwrap_or(0);
    let total = count("total_tokens").unwrap_or(prompt + completion);
    json!({ "prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total })
}

/// A whole `chat.completion`.
fn completion(head: &Head, result: &Value) -> Response<Body> {
    let reply = Reply::of(result);
    let mut message = json!({ "role": "assistant", "content": reply.content });
    if let Some(calls) = &reply.tool_calls {
        message["tool_calls"] = Value::Array(calls.clone());
    }
    error::json_response(
        StatusCode::OK,
        &json!({
            "id": head.id,
            "object": "chat.completion",
            "created": head.created,
            "model": head.model,
            "choices": [{
                "index": 0,
                "message": message,
                "logprobs": null,
                "finish_reason": reply.finish_reason(),
            }],
            "usage": reply.usage,
            "system_fingerprint": null,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_is_the_text_or_the_tool_calls_or_the_result_as_json() {
        let r = Reply::of(
            &json!({ "response": "hi", "usage": { "prompt_tokens": 3, "completion_tokens": 1 } }),
        );
        assert_eq!(r.content.as_deref(), Some("hi"));
        assert_eq!(
            r.usage,
            json!({ "prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4 })
        );
        assert_eq!(r.finish_reason(), "stop");
        let r = Reply::of(&json!({ "content": "c" }));
        assert_eq!(r.content.as_deref(), Some("c"));
        let r = Reply::of(&json!({ "answer": 42 }));
        assert_eq!(r.content.as_deref(), Some(r#"{"answer":42}"#));
        assert_eq!(
            r.usage,
            json!({ "prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0 })
        );
        let call = json!({ "id": "c1", "type": "function", "function": { "name": "f", "arguments": "{}" } });
        let r = Reply::of(&json!({ "tool_calls": [call] }));
        assert_eq!(r.content, None);
        assert_eq!(r.finish_reason(), "tool_calls");
        // Not OpenAI's shape (arguments not a string): no tool calls, the result as text.
        let r = Reply::of(
            &json!({ "tool_calls": [{ "id": "c1", "type": "function", "function": { "name": "f", "arguments": {} } }] }),
        );
        assert!(r.tool_calls.is_none());
        assert!(r.content.unwrap().starts_with("{\"tool_calls\""));
    }

    #[test]
    fn error_objects_carry_openai_types() {
        let e = error_object(
            StatusCode::NOT_FOUND,
            "m",
            Some("model"),
            Some("model_not_found"),
        );
        assert_eq!(e["error"]["type"], "invalid_request_error");
        assert_eq!(e["error"]["param"], "model");
        assert_eq!(
            error_object(StatusCode::TOO_MANY_REQUESTS, "m", None, None)["error"]["type"],
            "rate_limit_error"
        );
        assert_eq!(
            error_object(StatusCode::SERVICE_UNAVAILABLE, "m", None, None)["error"]["type"],
            "server_error"
        );
        assert_eq!(
            error_object(StatusCode::BAD_REQUEST, "m", None, None)["error"]["code"],
            Value::Null
        );
        let frame = error_frame("boom");
        assert!(frame.starts_with(b"data: {\"error\":"));
        assert!(frame.ends_with(b"\n\n"));
    }

    #[test]
    fn deltas_skip_empty_chunks() {
        let head = Arc::new(Head::new("r1", "assistant"));
        let mut out = BytesMut::new();
        assert!(!Delta(head.clone(), String::new()).encode(&mut out));
        assert!(out.is_empty());
        assert!(Delta(head, "a\nb".to_owned()).encode(&mut out));
        let text = std::str::from_utf8(&out).unwrap();
        let chunk: Value =
            serde_json::from_str(text.strip_prefix("data: ").unwrap().trim()).unwrap();
        assert_eq!(chunk["id"], "chatcmpl-r1");
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(chunk["choices"][0]["delta"]["content"], "a\nb");
    }
}
