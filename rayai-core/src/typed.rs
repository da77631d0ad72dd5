//! Typed agents: serde types in and out instead of [`serde_json::Value`], as axum's `Json<T>`.
//! Every [`TypedAgent`] is an [`Agent`] (a blanket implementation), so `#[agent(...)]`,
//! [`crate::App::agent`] and handles take it as they take any agent.

use std::any::TypeId;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, LazyLock, PoisonError, RwLock};

use futures::StreamExt;
use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::agent::{Agent, EventStream, TextStream};
use crate::error::AgentError;
use crate::schema::{self, AgentSchema};

/// An agent whose request `data` and answer are Rust types: `data` is checked against the
/// `Input` type's JSON schema and deserialized before [`TypedAgent::run`] sees it, and the
/// `Output` is serialized as the `result`.
///
/// A `data` that does not fit `Input` is a `422` whose `detail` lists every field error in
/// FastAPI's shape (`{"type", "loc": ["body", "data", ...], "msg", "input"}`), as FastAPI answers
/// a pydantic body model; the agent is not called. `Output` must serialize to a JSON object
/// (a struct, a map), as any agent's result; anything else is a `500`.
///
/// The types derive `serde`'s traits and `schemars`' `JsonSchema` (re-exported as
/// [`crate::schemars`]), which also gives the agent's [`AgentSchema`] for its documentation.
/// Clients see no difference from an agent on `Value`.
///
/// # Examples
///
/// ```
/// use rayai_core::{AgentError, TypedAgent};
/// use schemars::JsonSchema;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Deserialize, JsonSchema)]
/// struct Question {
///     text: String,
///     max_words: Option<u32>,
/// }
///
/// #[derive(Serialize, JsonSchema)]
/// struct Answer {
///     words: Vec<String>,
/// }
///
/// struct Splitter;
///
/// impl TypedAgent for Splitter {
///     type Input = Question;
///     type Output = Answer;
///
///     async fn run(&self, q: Question) -> Result<Answer, AgentError> {
///         if q.text.is_empty() {
///             return Err(AgentError::bad_request("`text` is empty"));
///         }
///         let n = q.max_words.unwrap_or(u32::MAX) as usize;
///         Ok(Answer { words: q.text.split(' ').take(n).map(str::to_owned).collect() })
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use rayai_core::Agent;
/// use serde_json::json;
///
/// // As the chat endpoint calls it:
/// let answer = Agent::run(&Splitter, json!({"text": "a b c", "max_words": 2})).await.unwrap();
/// assert_eq!(answer, json!({"words": ["a", "b"]}));
///
/// let e = Agent::run(&Splitter, json!({"max_words": "two"})).await.unwrap_err();
/// assert_eq!(e.status().as_u16(), 422);
/// assert_eq!(
///     *e.detail(),
///     json!([
///         {"type": "missing", "loc": ["body", "data", "text"], "msg": "Field required",
///          "input": {"max_words": "two"}},
///         {"type": "int_parsing", "loc": ["body", "data", "max_words"],
///          "msg": "Input should be a valid integer, unable to parse string as an integer",
///          "input": "two"},
///     ]),
/// );
/// # }
/// ```
pub trait TypedAgent: Send + Sync + 'static {
    /// The request's `data`.
    type Input: DeserializeOwned + JsonSchema + Send + 'static;
    /// The answer's `result`; it must serialize to a JSON object.
    type Output: Serialize + JsonSchema + Send + 'static;

    /// Answers one request. An error answers with its status ([`AgentError::new`]: a `500`).
    fn run(
        &self,
        input: Self::Input,
    ) -> impl Future<Output = Result<Self::Output, AgentError>> + Send;

    /// Streams text chunks for `stream: "text"`; `None` (the default) means the agent does not
    /// stream text, and such requests get a 400. A `data` that does not fit `Input` ends the
    /// stream at once with an error frame (a stream has no status to fail with).
    fn run_stream(&self, input: Self::Input) -> Option<TextStream<'_>> {
        let _ = input;
        None
    }

    /// Streams JSON events for `stream: "events"`; `None` (the default) means the agent does not
    /// stream events, and such requests get a 400.
    fn run_stream_events(&self, input: Self::Input) -> Option<EventStream<'_>> {
        let _ = input;
        None
    }

    /// As [`Agent::check_health`]: always healthy unless overridden.
    fn check_health(&self) -> impl Future<Output = Result<(), AgentError>> + Send {
        async { Ok(()) }
    }

    /// As [`Agent::reconfigure`]: applies the deployment's `user_config` after the constructor
    /// and whenever it changes, without a restart. The default does nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// use rayai_core::{AgentError, TypedAgent};
    /// use schemars::JsonSchema;
    /// use serde::{Deserialize, Serialize};
    /// use serde_json::Value;
    ///
    /// #[derive(Deserialize, JsonSchema)]
    /// struct In { text: String }
    /// #[derive(Serialize, JsonSchema)]
    /// struct Out { words: Vec<String> }
    ///
    /// struct FirstWords { limit: AtomicU32 }
    ///
    /// impl TypedAgent for FirstWords {
    ///     type Input = In;
    ///     type Output = Out;
    ///     async fn run(&self, input: In) -> Result<Out, AgentError> {
    ///         let n = self.limit.load(Ordering::Relaxed) as usize;
    ///         Ok(Out { words: input.text.split(' ').take(n).map(str::to_owned).collect() })
    ///     }
    ///     async fn reconfigure(&self, user_config: &Value) -> Result<(), AgentError> {
    ///         let limit = user_config["limit"].as_u64().ok_or_else(|| AgentError::new("`limit` is required"))?;
    ///         self.limit.store(u32::try_from(limit).unwrap_or(u32::MAX), Ordering::Relaxed);
    ///         Ok(())
    ///     }
    /// }
    /// ```
    fn reconfigure(
        &self,
        user_config: &Value,
    ) -> impl Future<Output = Result<(), AgentError>> + Send {
        let _ = user_config;
        async { Ok(()) }
    }
}

impl<T: TypedAgent> Agent for T {
    async fn run(&self, data: Value) -> Result<Value, AgentError> {
        let input = input::<T>(&data)?;
        let output = TypedAgent::run(self, input).await?;
        Ok(serde_json::to_value(output)?)
    }

    fn run_stream(&self, data: Value) -> Option<TextStream<'_>> {
        match input::<T>(&data) {
            Ok(input) => TypedAgent::run_stream(self, input),
            Err(e) => Some(futures::stream::once(async { Err(e) }).boxed()),
        }
    }

    fn run_stream_events(&self, data: Value) -> Option<EventStream<'_>> {
        match input::<T>(&data) {
            Ok(input) => TypedAgent::run_stream_events(self, input),
            Err(e) => Some(futures::stream::once(async { Err(e) }).boxed()),
        }
    }

    fn check_health(&self) -> impl Future<Output = Result<(), AgentError>> + Send {
        TypedAgent::check_health(self)
    }

    fn reconfigure(
        &self,
        user_config: &Value,
    ) -> impl Future<Output = Result<(), AgentError>> + Send {
        TypedAgent::reconfigure(self, user_config)
    }

    fn schema() -> AgentSchema {
        AgentSchema::clone(&schema_of::<T>())
    }
}

/// The schemas of `T`'s types, generated once per type.
fn schema_of<T: TypedAgent>() -> Arc<AgentSchema> {
    static SCHEMAS: LazyLock<RwLock<HashMap<TypeId, Arc<AgentSchema>>>> =
        LazyLock::new(RwLock::default);
    let id = TypeId::of::<T>();
    if let Some(found) = SCHEMAS
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&id)
    {
        return found.clone();
    }
    let made = Arc::new(AgentSchema::new(
        schemars::schema_for!(T::Input).to_value(),
        schemars::schema_for!(T::Output).to_value(),
    ));
    SCHEMAS
        .write()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(id)
        .or_insert(made)
        .clone()
}

/// `data` checked against `T::Input`'s schema (every error), then deserialized; either failure
/// is a 422 in FastAPI's shape.
fn input<T: TypedAgent>(data: &Value) -> Result<T::Input, AgentError> {
    if let Err(errors) = schema_of::<T>().validate(data) {
        return Err(invalid(errors));
    }
    serde_path_to_error::deserialize(data).map_err(|e| invalid(vec![serde_error(data, &e)]))
}

/// The 422 for these errors.
fn invalid(errors: Vec<Value>) -> AgentError {
    AgentError::new(schema::summary(&errors))
        .with_status(http::StatusCode::UNPROCESSABLE_ENTITY)
        .with_detail(Value::Array(errors))
}

/// What serde refused and the schema let through (a custom `Deserialize`, a string `format`),
/// as pydantic writes a validator's error: `value_error` at the path serde was at.
fn serde_error(data: &Value, e: &serde_path_to_error::Error<serde_json::Error>) -> Value {
    use serde_path_to_error::Segment;
    let mut loc = vec![json!("body"), json!("data")];
    let mut input = Some(data);
    for segment in e.path().iter() {
        match segment {
            Segment::Seq { index } => {
                loc.push(json!(index));
                input = input.and_then(|v| v.get(index));
            }
            Segment::Map { key } => {
                loc.push(json!(key));
                input = input.and_then(|v| v.get(key));
            }
            Segment::Enum { variant } => {
                loc.push(json!(variant));
                input = input.and_then(|v| v.get(variant));
            }
            Segment::Unknown => break,
        }
    }
    let message = e.inner().to_string();
    json!({
        "type": "value_error",
        "loc": loc,
        "msg": format!("Value error, {message}"),
        "input": input.unwrap_or(data),
        "ctx": {"error": message},
    })
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;
    use schemars::JsonSchema;
    use serde::{Deserialize, Serialize};
    use serde_json::json;

    use super::*;

    #[derive(Deserialize, JsonSchema)]
    struct In {
        text: String,
        times: Option<u32>,
        ip: Option<std::net::Ipv4Addr>,
    }

    #[derive(Serialize, JsonSchema)]
    struct Out {
        said: String,
    }

    struct Repeat;

    impl TypedAgent for Repeat {
        type Input = In;
        type Output = Out;

        async fn run(&self, input: In) -> Result<Out, AgentError> {
            if input.text == "conflict" {
                return Err(AgentError::conflict("busy"));
            }
            let mut said = input.text.repeat(input.times.unwrap_or(1) as usize);
            if let Some(ip) = input.ip {
                said.push_str(&ip.to_string());
            }
            Ok(Out { said })
        }

        fn run_stream(&self, input: In) -> Option<TextStream<'_>> {
            Some(futures::stream::iter([Ok(input.text)]).boxed())
        }
    }

    #[tokio::test]
    async fn runs_on_the_typed_input_and_answers_the_output_as_json() {
        let out = Agent::run(&Repeat, json!({"text": "ab", "times": 2})).await;
        assert_eq!(out.unwrap(), json!({"said": "abab"}));
        let e = Agent::run(&Repeat, json!({"text": "conflict"}))
            .await
            .unwrap_err();
        assert_eq!(e.status(), http::StatusCode::CONFLICT);
    }

    #[tokio::test]
    async fn a_data_that_does_not_fit_is_a_422_listing_every_error() {
        let e = Agent::run(&Repeat, json!({"times": -1})).await.unwrap_err();
        assert_eq!(e.status(), http::StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            *e.detail(),
            json!([
                {"type": "missing", "loc": ["body", "data", "text"], "msg": "Field required",
                 "input": {"times": -1}},
                {"type": "greater_than_equal", "loc": ["body", "data", "times"],
                 "msg": "Input should be greater than or equal to 0", "input": -1,
                 "ctx": {"ge": 0}},
            ])
        );
        assert_eq!(
            e.message(),
            "2 validation errors for data: text: Field required; times: Input should be greater \
             than or equal to 0"
        );
    }

    #[tokio::test]
    async fn what_only_serde_refuses_is_a_value_error_at_its_path() {
        let e = Agent::run(&Repeat, json!({"text": "a", "ip": "nope"}))
            .await
            .unwrap_err();
        assert_eq!(e.status(), http::StatusCode::UNPROCESSABLE_ENTITY);
        let detail = e.detail();
        assert_eq!(detail.as_array().map(Vec::len), Some(1), "{detail}");
        assert_eq!(detail[0]["type"], "value_error");
        assert_eq!(detail[0]["loc"], json!(["body", "data", "ip"]));
        assert_eq!(detail[0]["input"], "nope");
        let msg = detail[0]["msg"].as_str().unwrap();
        assert!(msg.starts_with("Value error, "), "{msg}");
    }

    #[tokio::test]
    async fn streams_take_the_typed_input_and_a_bad_one_ends_them_with_the_422() {
        let stream = Agent::run_stream(&Repeat, json!({"text": "hi"})).unwrap();
        let items: Vec<_> = stream.collect().await;
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].as_deref().ok(), Some("hi"));

        let mut stream = Agent::run_stream(&Repeat, json!({})).unwrap();
        let e = stream.next().await.unwrap().unwrap_err();
        assert_eq!(e.status(), http::StatusCode::UNPROCESSABLE_ENTITY);
        assert!(stream.next().await.is_none());
        // No event stream: the same answer as an untyped agent's.
        assert!(Agent::run_stream_events(&Repeat, json!({"text": "hi"})).is_none());
    }

    #[test]
    fn the_schema_comes_from_the_types() {
        let schema = <Repeat as Agent>::schema();
        assert_eq!(schema.input["title"], "In");
        assert_eq!(schema.input["required"], json!(["text"]));
        assert_eq!(schema.output["properties"]["said"]["type"], "string");
        // Cached: the same schema again.
        assert_eq!(<Repeat as Agent>::schema(), schema);
    }
}
