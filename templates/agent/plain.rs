//! The `{{name}}` agent: `POST /agents/{{name}}/chat`.

use rayai::prelude::*;

/// Built once per replica; keep clients and loaded models here.
#[agent(num_cpus = 1, memory = "512MB")]
#[derive(Default)]
pub struct {{Struct}} {
    calls: AtomicU64,
}

impl Agent for {{Struct}} {
    async fn run(&self, data: Value) -> Result<Value, AgentError> {
        let n = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
        let last = data["messages"]
            .as_array()
            .and_then(|m| m.last())
            .and_then(|m| m["content"].as_str())
            .unwrap_or("");
        Ok(json!({ "response": format!("You said: {last}"), "calls": n }))
    }
}
