//! The agent chat contract: `POST {prefix}/agents/{name}/chat`, validated as RayAI's FastAPI
//! endpoint validates it, answered with JSON or SSE.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderValue, Method, Response, StatusCode, header};
use rayai_core::{Answer, DeploymentHandle, RequestContext};
use serde_json::{Map, Value, json};

use crate::body::Body;
use crate::docs::DocsRequest;
use crate::error;
use crate::sse::Frames;

/// What `stream` asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamMode {
    Off,
    Text,
    Events,
}

/// Which of the two request shapes (RayAI 0.1.1's `/chat`, 0.1.3's `/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    Chat,
    Query,
}

/// What a path below `/agents/{name}` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AgentRoute<'a> {
    /// The chat endpoint, in one of its shapes.
    Chat(Shape),
    /// The OpenAPI document or the docs viewer.
    Docs(DocsRequest<'a>),
}

/// A validated request.
#[derive(Debug, PartialEq)]
pub(crate) struct ChatRequest {
    pub(crate) data: Value,
    pub(crate) session_id: Option<String>,
    pub(crate) stream: StreamMode,
}

/// Parses and validates a body as FastAPI + pydantic would, collecting every error.
///
/// On failure, the `detail` list of the 422.
pub(crate) fn parse(body: &[u8], shape: Shape) -> Result<ChatRequest, Value> {
    if shape == Shape::Chat
        && let Ok(Usual(request)) = serde_json::from_slice::<Usual>(body)
    {
        return Ok(request);
    }
    parse_any(body, shape)
}

/// The usual chat body, read straight into a [`ChatRequest`] without a map of its own (whose
/// keys would each be allocated and hashed): an object whose `data` is an object, with at most
/// a string `session_id` and a valid `stream`, other keys skipped, no key of these three twice.
/// Anything else fails, and [`parse_any`] reads the body again to say what pydantic would.
struct Usual(ChatRequest);

impl<'de> serde::Deserialize<'de> for Usual {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> serde::de::Visitor<'de> for Fields {
            type Value = Usual;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("the usual chat request")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Usual, A::Error> {
                use serde::de::Error as _;
                let unusual = || A::Error::custom("unusual");
                let (mut data, mut session_id, mut stream) = (None, None, None);
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    match &*key {
                        "data" if data.is_none() => match map.next_value()? {
                            value @ Value::Object(_) => data = Some(value),
                            _ => return Err(unusual()),
                        },
                        "session_id" if session_id.is_none() => match map.next_value()? {
                            Value::String(s) => session_id = Some(s),
                            _ => return Err(unusual()),
                        },
                        "stream" if stream.is_none() => {
                            let value: Value = map.next_value()?;
                            stream = Some(stream_mode(Some(&value)).ok_or_else(unusual)?);
                        }
                        "data" | "session_id" | "stream" => return Err(unusual()),
                        _ => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(Usual(ChatRequest {
                    data: data.ok_or_else(unusual)?,
                    session_id,
                    stream: stream.unwrap_or(StreamMode::Off),
                }))
            }
        }
        deserializer.deserialize_map(Fields)
    }
}

/// What `stream` asks for; `None` when pydantic would refuse it.
fn stream_mode(value: Option<&Value>) -> Option<StreamMode> {
    match value {
        None | Some(Value::Bool(false)) => Some(StreamMode::Off),
        // Any numeric zero (`0`, `-0`, `0.0`, `0e0`, `1e-400`), as pydantic reads them.
        Some(Value::Number(n)) if n.as_u64() == Some(0) || n.as_f64() == Some(0.0) => {
            Some(StreamMode::Off)
        }
        Some(Value::String(s)) if s == "text" => Some(StreamMode::Text),
        Some(Value::String(s)) if s == "events" => Some(StreamMode::Events),
        Some(_) => None,
    }
}

/// Parses and validates any body, collecting every error (see [`parse`]).
fn parse_any(body: &[u8], shape: Shape) -> Result<ChatRequest, Value> {
    if body.is_empty() {
        return Err(
            json!([{"type": "missing", "loc": ["body"], "msg": "Field required", "input": null}]),
        );
    }
    let value: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            let offset = if e.is_eof() {
                body.len()
            } else {
                byte_offset(body, e.line(), e.column())
            };
            let message = e.to_string();
            let reason = message.split(" at line ").next().unwrap_or(&message);
            return Err(json!([{
                "type": "json_invalid",
                "loc": ["body", offset],
                "msg": "JSON decode error",
                "input": {},
                "ctx": {"error": reason},
            }]));
        }
    };
    let Value::Object(mut fields) = value else {
        return Err(json!([{
            "type": "model_attributes_type",
            "loc": ["body"],
            "msg": "Input should be a valid dictionary or object to extract fields from",
            "input": value,
        }]));
    };
    let mut errors = Vec::new();
    let data = match shape {
        Shape::Chat => match fields.get("data") {
            None => {
                errors.push(missing("data", &fields));
                Value::Null
            }
            Some(Value::Object(_)) => fields.remove("data").unwrap_or_default(),
            Some(other) => {
                errors.push(json!({"type": "dict_type", "loc": ["body", "data"], "msg": "Input should be a valid dictionary", "input": other}));
                Value::Null
            }
        },
        Shape::Query => match fields.get("query") {
            None => {
                errors.push(missing("query", &fields));
                Value::Null
            }
            Some(Value::String(q)) => json!({"messages": [{"role": "user", "content": q}]}),
            Some(other) => {
                errors.push(string_type("query", other));
                Value::Null
            }
        },
    };
    let session_id = match fields.get("session_id") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            errors.push(string_type("session_id", other));
            None
        }
    };
    let stream = match stream_mode(fields.get("stream")) {
        Some(mode) => mode,
        None => {
            let other = fields.get("stream");
            errors.push(json!({
                "type": "literal_error",
                "loc": ["body", "stream"],
                "msg": "Input should be False, 'text' or 'events'",
                "input": other,
                "ctx": {"expected": "False, 'text' or 'events'"},
            }));
            StreamMode::Off
        }
    };
    if errors.is_empty() {
        Ok(ChatRequest {
            data,
            session_id,
            stream,
        })
    } else {
        Err(Value::Array(errors))
    }
}

fn missing(field: &str, input: &Map<String, Value>) -> Value {
    json!({"type": "missing", "loc": ["body", field], "msg": "Field required", "input": input})
}

fn string_type(field: &str, input: &Value) -> Value {
    json!({"type": "string_type", "loc": ["body", field], "msg": "Input should be a valid string", "input": input})
}

/// The byte offset of serde_json's 1-based line and column (the column counts bytes).
fn byte_offset(body: &[u8], line: usize, column: usize) -> usize {
    let line_start: usize = body
        .split_inclusive(|&b| b == b'\n')
        .take(line.saturating_sub(1))
        .map(<[u8]>::len)
        .sum();
    (line_start + column.saturating_sub(1)).min(body.len())
}

/// What the HTTP exchange adds to a validated request.
pub(crate) struct Exchange {
    /// The request id (header or fresh).
    pub(crate) request_id: Arc<str>,
    /// `x-session-id`, a sticky-session key when the body has no session id.
    pub(crate) session_header: Option<Arc<str>>,
    /// `serve_multiplexed_model_id`: the multiplexed model the request asks for.
    pub(crate) model_id: Option<Arc<str>>,
    /// Whether the client speaks HTTP/1.1 (which gets `connection: keep-alive` on streams).
    pub(crate) http11: bool,
    /// When a stream is cut off, and the error frame it ends with.
    pub(crate) cut_off: Option<(tokio::time::Instant, String)>,
    /// `Retry-After` for overload, when 429s are configured.
    pub(crate) retry_after_s: Option<u32>,
    /// The silence after which a stream sends a keep-alive comment (`sse_keep_alive_s`).
    pub(crate) sse_keep_alive: Option<std::time::Duration>,
}

/// A deployment served with the agent contract.
pub(crate) struct AgentEndpoint<'a> {
    handle: &'a DeploymentHandle,
}

impl<'a> AgentEndpoint<'a> {
    pub(crate) fn new(handle: &'a DeploymentHandle) -> Self {
        AgentEndpoint { handle }
    }

    /// The `Retry-After` the agent's deployment chose for its backpressure `429`, if any.
    pub(crate) fn backpressure_retry_after_s(&self) -> Option<u32> {
        self.handle.config().backpressure_retry_after_s()
    }

    /// What `rest` (the path below `/agents/{name}`) and `method` ask for: a chat request of one
    /// of the two shapes, or one of the docs paths (`/openapi.json`, `/docs...`, which check
    /// their method themselves); else the 404 or 405.
    #[allow(clippy::result_large_err)]
    pub(crate) fn route<'r>(
        rest: &'r str,
        method: &Method,
    ) -> Result<AgentRoute<'r>, Response<Body>> {
        let shape = match rest {
            "/chat" => Shape::Chat,
            "/" => Shape::Query,
            _ => {
                return DocsRequest::of(rest)
                    .map(AgentRoute::Docs)
                    .ok_or_else(error::not_found);
            }
        };
        if method == Method::POST {
            Ok(AgentRoute::Chat(shape))
        } else {
            Err(error::method_not_allowed("POST"))
        }
    }

    /// Answers a docs request: `mount` is where the agent's routes hang, `root_path` included.
    pub(crate) fn docs(
        &self,
        request: DocsRequest<'_>,
        method: &Method,
        mount: &str,
        query: Option<&str>,
    ) -> Response<Body> {
        crate::docs::agent_docs(self.handle, request, method, mount, query)
    }

    /// Answers a validated request.
    pub(crate) async fn answer(
        &self,
        request: ChatRequest,
        shape: Shape,
        exchange: Exchange,
    ) -> Response<Body> {
        let Exchange {
            request_id,
            session_header,
            model_id,
            http11,
            cut_off,
            retry_after_s,
            sse_keep_alive,
        } = exchange;
        // A typed agent's `data` is checked here, before it queues, for every mode: a stream
        // request with a bad input is a 422 too, not a 200 whose stream fails.
        if let Some(schema) = self.handle.schema()
            && let Err(errors) = schema.validate(&request.data)
        {
            return error::json_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                &serde_json::json!({ "detail": errors }),
            );
        }
        let session = request.session_id.unwrap_or_else(|| "default".to_owned());
        let mut ctx = RequestContext::new(request_id, session.as_str());
        if let Some(key) = session_header {
            ctx = ctx.with_session_key(key);
        }
        if let Some(model_id) = model_id {
            ctx = ctx.with_multiplexed_model_id(model_id);
        }
        let result = match request.stream {
            StreamMode::Off => match self.handle.call_answer(ctx, request.data).await {
                Ok(answer) => return success(shape, answer, &session),
                Err(e) => Err(e),
            },
            StreamMode::Text => self
                .handle
                .stream_text(ctx, request.data)
                .await
                .map(|s| sse(Frames::new(s, cut_off, sse_keep_alive), http11)),
            StreamMode::Events => self
                .handle
                .stream_events(ctx, request.data)
                .await
                .map(|s| sse(Frames::new(s, cut_off, sse_keep_alive), http11)),
        };
        result.unwrap_or_else(|e| error::from_error(&e, retry_after_s))
    }
}

/// `{"result":{...},"session_id":"..."}`, compact, in that order (or 0.1.3's `response`).
fn success(shape: Shape, answer: Answer, session: &str) -> Response<Body> {
    let mut out = BytesMut::with_capacity(128);
    match (shape, answer) {
        (Shape::Chat, Answer::Json(json)) => {
            // A replica process's compact JSON: what serializing its value here would write.
            out.put_slice(b"{\"result\":");
            out.put_slice(&json);
        }
        (Shape::Chat, Answer::Value(result)) => {
            out.put_slice(b"{\"result\":");
            let _ = serde_json::to_writer((&mut out).writer(), &result);
        }
        (Shape::Query, answer) => {
            let result = match answer {
                Answer::Json(json) => serde_json::from_slice(&json).unwrap_or(Value::Null),
                Answer::Value(value) => value,
            };
            out.put_slice(b"{\"response\":");
            let text = match result.get("response").or_else(|| result.get("content")) {
                Some(Value::String(s)) => s.clone(),
                _ => result.to_string(),
            };
            let _ = serde_json::to_writer((&mut out).writer(), &text);
        }
    }
    out.put_slice(b",\"session_id\":");
    let _ = serde_json::to_writer((&mut out).writer(), session);
    out.put_u8(b'}');
    let mut resp = Response::new(Body::full(out.freeze()));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn sse(
    frames: impl futures::Stream<Item = Bytes> + Send + 'static,
    http11: bool,
) -> Response<Body> {
    sse_response(Body::stream(frames), http11)
}

/// A `200` Server-Sent Events response with `body`: the contract's headers.
pub(crate) fn sse_response(body: Body, http11: bool) -> Response<Body> {
    let mut resp = Response::new(body);
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if http11 {
        headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
    }
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp.status_mut().clone_from(&StatusCode::OK);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_usual_body_is_read_as_the_full_parse_reads_it() {
        let bodies: &[&str] = &[
            r#"{"data":{"messages":[{"role":"user","content":"hi"}]},"session_id":"s1"}"#,
            r#"{"data":{},"stream":"text"}"#,
            r#"{"data":{},"stream":"events","extra":[1,{"a":2}],"session_id":"x"}"#,
            r#"{"data":{},"stream":false}"#,
            r#"{"data":{},"stream":0}"#,
            r#"{"data":{},"stream":-0.0}"#,
            r#"{"data":{},"stream":1e-400}"#,
            r#" {"s\u0065ssion_id":"e","d\u0061ta":{"k":"v"}} "#,
            r#"{"data":{"nested":{"data":1}},"session_id":"\u00e9t\u00e9"}"#,
        ];
        for body in bodies {
            let fast = serde_json::from_slice::<Usual>(body.as_bytes())
                .unwrap_or_else(|e| panic!("{body}: {e}"))
                .0;
            assert_eq!(Ok(fast), parse_any(body.as_bytes(), Shape::Chat), "{body}");
        }
    }

    #[test]
    fn anything_unusual_goes_to_the_full_parse() {
        let bodies: &[&str] = &[
            "",
            "[]",
            "{}",
            r#"{"data":[]}"#,
            r#"{"data":null}"#,
            r#"{"data":{},"session_id":1}"#,
            r#"{"data":{},"stream":true}"#,
            r#"{"data":{},"stream":"TEXT"}"#,
            r#"{"data":{"a":1},"data":{"b":2}}"#,
            r#"{"data":{},"session_id":"a","session_id":"b"}"#,
            r#"{"data":{},"stream":"text","stream":false}"#,
            r#"{"data":{}} trailing"#,
            r#"{"data":{}"#,
        ];
        for body in bodies {
            assert!(
                serde_json::from_slice::<Usual>(body.as_bytes()).is_err(),
                "{body} was read as usual"
            );
        }
        // Duplicates: the full parse keeps the last, as pydantic does.
        let last = parse(br#"{"data":{"a":1},"data":{"b":2}}"#, Shape::Chat).unwrap();
        assert_eq!(last.data, json!({"b": 2}));
    }

    fn errors(body: &str) -> Value {
        parse(body.as_bytes(), Shape::Chat).unwrap_err()
    }

    #[test]
    fn accepts_the_contract_fields() {
        let r = parse(
            br#"{"data":{"a":1},"session_id":"s","stream":"text","extra":1}"#,
            Shape::Chat,
        )
        .unwrap();
        assert_eq!(
            r,
            ChatRequest {
                data: json!({"a":1}),
                session_id: Some("s".into()),
                stream: StreamMode::Text
            }
        );
        assert_eq!(
            parse(br#"{"data":{},"stream":0}"#, Shape::Chat)
                .unwrap()
                .stream,
            StreamMode::Off
        );
        assert_eq!(
            parse(br#"{"data":{},"stream":false}"#, Shape::Chat)
                .unwrap()
                .stream,
            StreamMode::Off
        );
        assert_eq!(
            parse(br#"{"data":{},"stream":"events"}"#, Shape::Chat)
                .unwrap()
                .stream,
            StreamMode::Events
        );
    }

    #[test]
    fn malformed_json_reports_the_byte_offset() {
        assert_eq!(errors("{bad")[0]["loc"], json!(["body", 1]));
        assert_eq!(errors("{\"a\": }")[0]["loc"], json!(["body", 6]));
        assert_eq!(errors("{\"a\": 1")[0]["loc"], json!(["body", 7]));
        assert_eq!(errors("{}\n x")[0]["loc"], json!(["body", 4]));
        assert_eq!(errors("{bad")[0]["type"], "json_invalid");
        assert_eq!(errors("{bad")[0]["msg"], "JSON decode error");
    }

    #[test]
    fn every_field_error_is_reported_together() {
        let e = errors(r#"{"data": [1], "session_id": 5, "stream": true}"#);
        let types: Vec<_> = e
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["type"].as_str().unwrap())
            .collect();
        assert_eq!(types, ["dict_type", "string_type", "literal_error"]);
        assert_eq!(e[2]["msg"], "Input should be False, 'text' or 'events'");
        assert_eq!(e[2]["loc"], json!(["body", "stream"]));
    }

    #[test]
    fn missing_and_empty_bodies_are_field_required() {
        assert_eq!(
            errors("")[0],
            json!({"type":"missing","loc":["body"],"msg":"Field required","input":null})
        );
        assert_eq!(errors("{}")[0]["loc"], json!(["body", "data"]));
        assert_eq!(errors("[]")[0]["type"], "model_attributes_type");
        for bad in [
            r#"{"data":{},"stream":null}"#,
            r#"{"data":{},"stream":"TEXT"}"#,
            r#"{"data":{},"stream":1}"#,
        ] {
            assert_eq!(errors(bad)[0]["type"], "literal_error", "{bad}");
        }
    }

    #[test]
    fn query_shape_wraps_the_query_as_messages() {
        let r = parse(br#"{"query":"hi"}"#, Shape::Query).unwrap();
        assert_eq!(r.data, json!({"messages":[{"role":"user","content":"hi"}]}));
        assert_eq!(
            parse(b"{}", Shape::Query).unwrap_err()[0]["loc"],
            json!(["body", "query"])
        );
    }
}
