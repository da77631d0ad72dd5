//! The quickstart: three agents a RayAI user recognises, served on port 8000.
//!
//! ```text
//! cargo run --release -p quickstart            # --port 8000 --host 127.0.0.1
//! ```
//!
//! | agent | what it shows |
//! |---|---|
//! | `chat` | a chat agent answering from `data.messages`, keeping per-session history |
//! | `writer` | a streaming agent: `stream: "text"` yields words, `stream: "events"` yields token events |
//! | `summarizer` | 4 replicas sharing the load; each answer names the replica that served it |
//!
//! Declarative deploys (`rayai deploy FILE`, `PUT /api/serve/applications/` on the dashboard)
//! find the three agents by the import path `quickstart:app` (or `agents:app`), and each alone
//! as `agents:chat`, `agents:writer` or `agents:summarizer`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use clap::Parser;
use rayai::HttpOptions;
use rayai::prelude::*;
use rayai::serve::ServeArgs;

/// The text of the last user message in `data.messages` (RayAI's chat shape).
fn last_user_message(data: &Value) -> Option<&str> {
    data.get("messages")?
        .as_array()?
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))?
        .get("content")?
        .as_str()
}

/// A chat agent: answers the last user message and remembers how many turns each session had.
#[agent(num_cpus = 0.25, memory = "256MB")]
#[derive(Default)]
struct Chat {
    turns: Mutex<HashMap<String, u64>>,
}

impl Agent for Chat {
    async fn run(&self, data: Value) -> Result<Value, AgentError> {
        let question = last_user_message(&data)
            .ok_or_else(|| AgentError::new("data.messages must hold at least one user message"))?;
        let session = RequestContext::current()
            .map(|c| c.session_id().to_owned())
            .unwrap_or_default();
        let turn = {
            let mut turns = self
                .turns
                .lock()
                .map_err(|_| AgentError::new("state poisoned"))?;
            let n = turns.entry(session).or_default();
            *n += 1;
            *n
        };
        Ok(json!({
            "response": format!("You said: {question}"),
            "turn": turn,
        }))
    }
}

/// A streaming agent: writes its answer word by word.
#[agent(num_cpus = 0.25, memory = "256MB")]
#[derive(Default)]
struct Writer;

impl Writer {
    fn words(data: &Value) -> Vec<String> {
        let text =
            last_user_message(data).unwrap_or("Hello from rayai, streaming one word at a time.");
        text.split_whitespace().map(str::to_owned).collect()
    }
}

impl Agent for Writer {
    async fn run(&self, data: Value) -> Result<Value, AgentError> {
        Ok(json!({ "response": Writer::words(&data).join(" ") }))
    }

    fn run_stream(&self, data: Value) -> Option<TextStream<'_>> {
        let words = Writer::words(&data);
        Some(
            try_stream! {
                for word in words {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    yield format!("{word} ");
                }
            }
            .boxed(),
        )
    }

    fn run_stream_events(&self, data: Value) -> Option<EventStream<'_>> {
        let words = Writer::words(&data);
        Some(
            try_stream! {
                for (i, word) in words.into_iter().enumerate() {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    yield json!({ "type": "token", "index": i, "content": word });
                }
            }
            .boxed(),
        )
    }
}

/// A 4-replica agent: summarises text; requests spread over the replicas.
#[agent(num_cpus = 0.25, memory = "128MB", num_replicas = 4)]
struct Summarizer {
    replica: String,
}

impl Construct for Summarizer {
    async fn construct(ctx: ReplicaContext) -> Result<Self, AgentError> {
        Ok(Summarizer {
            replica: ctx.replica_id().to_owned(),
        })
    }
}

impl Agent for Summarizer {
    async fn run(&self, data: Value) -> Result<Value, AgentError> {
        let text = data
            .get("text")
            .and_then(Value::as_str)
            .or_else(|| last_user_message(&data))
            .unwrap_or_default();
        let words: Vec<&str> = text.split_whitespace().collect();
        let summary = words.iter().take(8).copied().collect::<Vec<_>>().join(" ");
        Ok(json!({ "summary": summary, "words": words.len(), "replica": self.replica }))
    }
}

// Memory from bursts of large bodies goes back to the system (see `rayai::alloc`).
#[global_allocator]
static ALLOCATOR: rayai::alloc::Allocator = rayai::alloc::Allocator;

/// The command line.
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    serve: ServeArgs,
}

#[tokio::main]
async fn main() -> rayai::Result<()> {
    // `serve::start` installs rayai's log subscriber: `RUST_LOG` (default `info`, one access log
    // line per request), `RAYAI_LOG_FORMAT=json`, and the dashboard's log view fed.
    let args = Args::parse();
    let server = rayai::serve::start(args.serve.apply(HttpOptions {
        // A fixture that test suites may start beside others: when the dashboard's port is
        // taken, serve without it (a warning) rather than refuse to start.
        dashboard_best_effort: true,
        // The other options from RAYAI_* variables (a pod sets its metrics port, its drain).
        ..HttpOptions::try_from_env()?
    }))
    .await?;
    server
        .deploy(
            App::new()
                .agent::<Chat>()
                .agent::<Writer>()
                .agent::<Summarizer>(),
            "/",
        )
        .await?;
    server.register_app("quickstart:app", || {
        App::new()
            .agent::<Chat>()
            .agent::<Writer>()
            .agent::<Summarizer>()
    });
    let base = format!("http://{}", server.local_addr());
    println!("rayai quickstart serving on {base}  (Ctrl-C to stop)\n");
    println!("  curl -X POST {base}/agents/chat/chat -H 'content-type: application/json' \\");
    println!(
        "       -d '{{\"data\": {{\"messages\": [{{\"role\": \"user\", \"content\": \"Hello!\"}}]}}, \"session_id\": \"me\"}}'"
    );
    println!("  curl -N -X POST {base}/agents/writer/chat -H 'content-type: application/json' \\");
    println!(
        "       -d '{{\"data\": {{\"messages\": [{{\"role\": \"user\", \"content\": \"stream these words to me\"}}]}}, \"stream\": \"text\"}}'"
    );
    println!("  curl -N -X POST {base}/agents/writer/chat -H 'content-type: application/json' \\");
    println!("       -d '{{\"data\": {{}}, \"stream\": \"events\"}}'");
    println!("  curl -X POST {base}/agents/summarizer/chat -H 'content-type: application/json' \\");
    println!(
        "       -d '{{\"data\": {{\"text\": \"rayai serves agents as HTTP endpoints with replicas and streaming\"}}}}'"
    );
    println!("  curl {base}/-/routes\n");
    if let Some(dash) = server.dashboard_addr() {
        println!("dashboard: http://{dash}");
        println!("  curl http://{dash}/metrics");
        println!("  curl http://{dash}/api/serve/applications/\n");
    }
    rayai::serve::shutdown_signal().await;
    println!("shutting down: draining in-flight requests");
    server.shutdown().await;
    Ok(())
}
