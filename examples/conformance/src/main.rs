//! A server whose agents pin RayAI's HTTP contract, for tests and for anyone checking a client
//! against rayai.
//!
//! ```text
//! cargo run -p conformance -- --port 8000
//! ```
//!
//! | agent | what it does |
//! |---|---|
//! | `echo` | `run` returns `{"echo": data}`, or fails with `data.fail`; `run_stream` yields `data.chunks`, `run_stream_events` yields `data.events` (then fail with `data.fail` if given), waiting `data.delay_ms` before each item |
//! | `plain` | `run` only: `{"ok": true}` |
//! | `counter` | 2 replicas: `{"replica": <replica id>, "count": <requests this replica served>}` |
//! | `slow` | 1 replica, 1 request at a time, 1 queued: sleeps `data.ms`, returns `{"slept_ms": ms}` |
//! | `panicky` | panics when `data.panic` is true, else `{"ok": true}` |
//! | `blocking` | blocks its thread for `data.ms`, returns `{"blocked_ms": ms}` |
//! | `greeter` | its own application (`agents::greeter_app`): `{"greeting": "<greeting>, <name>!"}` for `data.name`, the greeting from its `user_config` (default `"Hello"`), changed at run time by `reconfigure` |
//!
//! Declarative deploys (`rayai deploy FILE`, `PUT /api/serve/applications/` on the dashboard)
//! find every agent by the import path `conformance:app` (or `agents:app`), and each alone as
//! `agents:<name>` (e.g. `agents:echo`, served at `{route_prefix}/agents/echo`).

use clap::Parser;
use conformance::agents;
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
    // `serve::start` installs rayai's log subscriber: `RUST_LOG` (default `info`, one access log
    // line per request), `RAYAI_LOG_FORMAT=json`, and the dashboard's log view fed.
    let args = Args::parse();
    let app = agents::app();
    let server = rayai::serve::start(args.serve.apply(HttpOptions {
        // A fixture that test suites may start beside others: when the dashboard's port is
        // taken, serve without it (a warning) rather than refuse to start.
        dashboard_best_effort: true,
        // The other options from RAYAI_* variables (a pod sets its metrics port, its drain).
        ..HttpOptions::try_from_env()?
    }))
    .await?;
    server.deploy(app, "/").await?;
    server.register_app("conformance:app", agents::app);
    server.deploy(agents::greeter_app(), "/").await?;
    println!("conformance server on http://{}", server.local_addr());
    if let Some(dash) = server.dashboard_addr() {
        println!("dashboard on http://{dash}");
    }
    rayai::serve::shutdown_signal().await;
    server.shutdown().await;
    Ok(())
}
