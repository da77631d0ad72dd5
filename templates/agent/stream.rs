//! The `{{name}}` agent: `POST /agents/{{name}}/chat`, streaming with `"stream": "text"`.

use rayai::prelude::*;

/// Built once per replica; keep clients and loaded models here.
#[agent(num_cpus = 1, memory = "512MB")]
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
