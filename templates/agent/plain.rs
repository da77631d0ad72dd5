//! The `{{name}}` agent: `POST /agents/{{name}}/chat`.

use rayai::prelude::*;

/// Built once per replica; keep clients and loaded models here.
// `num_cpus` and `memory` are reservations, not limits: `rayai serve` places each replica against
// this machine's CPUs and memory, and does not start what does not fit. These small values let a
// handful of agents share a laptop; raise them for an agent that computes (`num_cpus = 2`), here
// or without rebuilding in rayai.toml (`[agents.{{name}}]`). `rayai plan` shows the totals.
#[agent(num_cpus = 0.25, memory = "256MB")]
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
