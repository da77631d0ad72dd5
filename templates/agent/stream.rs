//! The `{{name}}` agent: `POST /agents/{{name}}/chat`, streaming with `"stream": "text"`.

use rayai::prelude::*;

/// Built once per replica; keep clients and loaded models here.
// `num_cpus` and `memory` are reservations, not limits: `rayai serve` places each replica against
// this machine's CPUs and memory, and does not start what does not fit. These small values let a
// handful of agents share a laptop; raise them for an agent that computes (`num_cpus = 2`), here
// or without rebuilding in rayai.toml (`[agents.{{name}}]`). `rayai plan` shows the totals.
#[agent(num_cpus = 0.25, memory = "256MB")]
#[derive(Default)]
pub struct {{Struct}};

fn last_message(data: &Value) -> String {
    data["messages"]
        .as_array()
        .and_then(|m| m.last())
        .and_then(|m| m["content"].as_str())
        .unwrap_or("")
        .to_owned()
}

impl Agent for {{Struct}} {
    async fn run(&self, data: Value) -> Result<Value, AgentError> {
        Ok(json!({ "response": format!("You said: {}", last_message(&data)) }))
    }

    /// `"stream": "text"`: one Server-Sent Event per word.
    fn run_stream(&self, data: Value) -> Option<TextStream<'_>> {
        let words: Vec<String> = last_message(&data)
            .split(' ')
            .map(|w| format!("{w} "))
            .collect();
        Some(try_stream! { for w in words { yield w; } }.boxed())
    }
}
