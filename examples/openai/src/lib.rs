//! Agents behind the OpenAI chat-completions API (`/v1/models`, `/v1/chat/completions`), and a
//! multiplexed deployment that serves many models from two replicas.
//!
//! | agent (`model`) | what it shows |
//! |---|---|
//! | `assistant` | answers the last user message; streams it word by word; reports token counts |
//! | `weather` | answers with OpenAI `tool_calls` (a `get_weather` call) until a tool result comes back |
//! | `sleepy` | one request at a time, one queued: sleeps the seconds of the last message (`"0.5"`); backpressure and timeouts |
//! | `lora` | multiplexed: 2 replicas, each holding at most 2 models (`adapter-1`, ...) loaded on demand; the model id comes from the `serve_multiplexed_model_id` header or from the `model` after a `:` (`lora:adapter-1`) |

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rayai::prelude::*;

/// The text of the last user message in `data.messages`.
pub fn last_user_message(data: &Value) -> Option<&str> {
    data.get("messages")?
        .as_array()?
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))?
        .get("content")?
        .as_str()
}

/// Words in every message's text content: the example's "tokens".
fn prompt_tokens(data: &Value) -> usize {
    data.get("messages")
        .and_then(Value::as_array)
        .map(|messages| {
            messages
                .iter()
                .filter_map(|m| m.get("content").and_then(Value::as_str))
                .map(|text| text.split_whitespace().count())
                .sum()
        })
        .unwrap_or(0)
}

/// Answers the last user message, whole (`run`) or word by word (`run_stream`), with token counts.
#[agent(num_cpus = 0.25, memory = "64MB")]
#[derive(Default)]
pub struct Assistant;

impl Assistant {
    fn reply(data: &Value) -> Result<String, AgentError> {
        let question = last_user_message(data)
            .ok_or_else(|| AgentError::bad_request("messages must hold a user message"))?;
        Ok(format!("You said: {question}"))
    }
}

impl Agent for Assistant {
    async fn run(&self, data: Value) -> Result<Value, AgentError> {
        let reply = Assistant::reply(&data)?;
        let prompt = prompt_tokens(&data);
        let completion = reply.split_whitespace().count();
        Ok(json!({
            "response": reply,
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            },
        }))
    }

    fn run_stream(&self, data: Value) -> Option<TextStream<'_>> {
        Some(
            try_stream! {
                let reply = Assistant::reply(&data)?;
                for (i, word) in reply.split(' ').enumerate() {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    yield if i == 0 { word.to_owned() } else { format!(" {word}") };
                }
            }
            .boxed(),
        )
    }
}

/// Asks for a tool: answers a `get_weather` call in OpenAI's shape for the city in the last user
/// message, and the forecast once the conversation holds the tool's result.
#[agent(num_cpus = 0.1, memory = "32MB")]
#[derive(Default)]
pub struct Weather;

impl Agent for Weather {
    async fn run(&self, data: Value) -> Result<Value, AgentError> {
        let messages = data
            .get("messages")
            .and_then(Value::as_array)
            .ok_or_else(|| AgentError::bad_request("messages must be a list"))?;
        if let Some(result) = messages
            .iter()
            .rev()
            .find(|m| m.get("role").and_then(Value::as_str) == Some("tool"))
        {
            let forecast = result.get("content").and_then(Value::as_str).unwrap_or("");
            return Ok(json!({ "content": format!("The forecast: {forecast}") }));
        }
        let city = last_user_message(&data)
            .and_then(|text| text.rsplit(' ').next())
            .map(|city| city.trim_matches(|c: char| !c.is_alphanumeric()))
            .filter(|city| !city.is_empty())
            .unwrap_or("Paris");
        Ok(json!({
            "content": null,
            "tool_calls": [{
                "id": "call_weather_1",
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "arguments": json!({ "city": city }).to_string(),
                },
            }],
        }))
    }
}

/// One request at a time and one queued: sleeps the seconds the last user message says.
#[agent(
    num_cpus = 0.1,
    memory = "32MB",
    max_ongoing_requests = 1,
    max_queued_requests = 1
)]
#[derive(Default)]
pub struct Sleepy;

impl Agent for Sleepy {
    async fn run(&self, data: Value) -> Result<Value, AgentError> {
        let secs = last_user_message(&data)
            .and_then(|text| text.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && (0.0..=60.0).contains(s))
            .ok_or_else(|| AgentError::bad_request("say how many seconds to sleep (0 to 60)"))?;
        tokio::time::sleep(Duration::from_secs_f64(secs)).await;
        Ok(json!({ "response": format!("slept {secs}s") }))
    }
}

/// A model a [`Lora`] replica loaded: its id, and when it was loaded (the replica's n-th load).
#[derive(Debug)]
pub struct Adapter {
    id: String,
    generation: u64,
}

/// How long loading one adapter takes (a real one would read weights).
pub const LOAD_TIME: Duration = Duration::from_millis(50);

/// Multiplexed: each replica keeps at most two adapters loaded, the least recently used unloaded
/// first; the router sends a request to a replica that holds its model when one can take it.
#[agent(
    num_cpus = 0.25,
    memory = "64MB",
    num_replicas = 2,
    max_ongoing_requests = 8
)]
pub struct Lora {
    replica: String,
    models: ModelCache<Adapter>,
}

impl Construct for Lora {
    async fn construct(ctx: ReplicaContext) -> Result<Self, AgentError> {
        let loads = Arc::new(AtomicU64::new(0));
        let models = ModelCache::new(&ctx, 2, move |model_id: String| {
            let loads = loads.clone();
            async move {
                if model_id.len() > 64 || !model_id.starts_with("adapter-") {
                    return Err(AgentError::not_found(format!(
                        "no adapter `{model_id}`: adapters are named adapter-<n>"
                    )));
                }
                tokio::time::sleep(LOAD_TIME).await;
                let generation = loads.fetch_add(1, Ordering::SeqCst) + 1;
                Ok(Adapter {
                    id: model_id,
                    generation,
                })
            }
        });
        Ok(Lora {
            replica: ctx.replica_id().to_owned(),
            models,
        })
    }
}

impl Agent for Lora {
    async fn run(&self, data: Value) -> Result<Value, AgentError> {
        // The model id of the request (header, handle option or `model` suffix); for clients
        // that cannot set either, `data.model_id` (then the router cannot see it).
        let from_data = data.get("model_id").and_then(Value::as_str);
        let adapter = match from_data {
            Some(id) => self.models.get(id).await?,
            None => self.models.current().await?,
        };
        let question = last_user_message(&data).unwrap_or("");
        Ok(json!({
            "response": format!("[{}] {question}", adapter.id),
            "model_id": adapter.id,
            "replica": self.replica,
            "generation": adapter.generation,
        }))
    }
}

/// The example's application: every agent, with `lora:<model id>` picking a multiplexed model.
pub fn app() -> App {
    App::new()
        .agent::<Assistant>()
        .agent::<Weather>()
        .agent::<Sleepy>()
        .agent::<Lora>()
        .openai_model_suffix(true)
}
