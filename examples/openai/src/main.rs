//! Agents behind the OpenAI API, served on port 8000: point any OpenAI client at
//! `http://127.0.0.1:8000/v1`.
//!
//! ```text
//! cargo run --release -p openai            # --port 8000 --dashboard-port 8265
//! ```

use clap::Parser;
use rayai::HttpOptions;
use rayai::serve::ServeArgs;

/// The command line.
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    serve: ServeArgs,
}

#[tokio::main]
async fn main() -> rayai::Result<()> {
    let args = Args::parse();
    let server = rayai::serve::start(args.serve.apply(HttpOptions {
        dashboard_best_effort: true,
        ..HttpOptions::try_from_env()?
    }))
    .await?;
    server.deploy(openai::app(), "/").await?;
    server.register_app("openai:app", openai::app);
    let base = format!("http://{}", server.local_addr());
    println!("rayai OpenAI example serving on {base}/v1  (Ctrl-C to stop)\n");
    println!("  curl {base}/v1/models");
    println!("  curl {base}/v1/chat/completions -H 'content-type: application/json' \\");
    println!(
        "       -d '{{\"model\": \"assistant\", \"messages\": [{{\"role\": \"user\", \"content\": \"Hello!\"}}]}}'"
    );
    println!("  curl -N {base}/v1/chat/completions -H 'content-type: application/json' \\");
    println!(
        "       -d '{{\"model\": \"assistant\", \"stream\": true, \"messages\": [{{\"role\": \"user\", \"content\": \"stream this\"}}]}}'"
    );
    println!("  curl {base}/v1/chat/completions -H 'content-type: application/json' \\");
    println!(
        "       -d '{{\"model\": \"lora:adapter-1\", \"messages\": [{{\"role\": \"user\", \"content\": \"Hi\"}}]}}'"
    );
    if let Some(dash) = server.dashboard_addr() {
        println!("\ndashboard: http://{dash}");
        println!("  curl http://{dash}/metrics | grep multiplexed");
    }
    rayai::serve::shutdown_signal().await;
    server.shutdown().await;
    Ok(())
}
