//! Model composition: deployments calling deployments through handles, with no HTTP in between.
//!
//! ```text
//! cargo run -p composition -- --port 8000
//! ```
//!
//! | route | what it composes |
//! |---|---|
//! | `POST /pipeline {"text": s}` | preprocess (trim, lowercase) -> model (word count) -> postprocess (format): `{"result": "N words: text"}` |
//! | `POST /ensemble {"x": n}` | three models at once (2x, x+10, x²): `{"outputs": {"a","b","c"}, "combined": mean}` |
//! | `POST /route {"kind": "a"\|"b", "text": s}` | model a (reverse) or b (upper case), picked by input |
//! | `POST /stream {"n": k}` | k tokens from the token model's stream, as SSE, each as produced |
//!
//! The pipeline and ensemble stages are typed (`Callable`): Rust values pass between them, no
//! JSON. The router's and the stream's models are JSON agents, reached with `handle.call(data)`
//! and `handle.stream(data)`.
//!
//! Declarative deploys (`rayai deploy FILE`, `PUT /api/serve/applications/` on the dashboard)
//! find the application by the import path `composition:app` (or `composition`, its name as
//! deployed here), with the deployments `preprocess`, `word_count`, `postprocess`, `doubler`,
//! `adder`, `squarer`, `reverse_model`, `upper_model`, `tokens` and `composition` (the ingress).

use clap::Parser;
use composition::apps;
use rayai::HttpOptions;
use rayai::serve::ServeArgs;

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
    let args = Args::parse();
    let options = args.serve.apply(HttpOptions {
        // A fixture that test suites may start beside others: when the dashboard's port is
        // taken, serve without it (a warning) rather than refuse to start.
        dashboard_best_effort: true,
        // The other options from RAYAI_* variables (a pod sets its metrics port, its drain).
        ..HttpOptions::try_from_env()?
    });
    let server = rayai::serve::start(options).await?;
    server.deploy(apps::app(), "/").await?;
    server.register_app("composition:app", apps::app);
    println!("composition serving on http://{}", server.local_addr());
    rayai::serve::shutdown_signal().await;
    server.shutdown().await;
    Ok(())
}
