//! `rayai deploy FILE`: sends a Ray Serve config (YAML as Ray writes it, TOML or JSON) to a
//! running server's `PUT /api/serve/applications/`, as Ray's `serve deploy` does. The file is
//! checked here first, so that its mistakes name the file, the line and the field.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use hyper::Method;
use rayai::project::load_serve_config;
use serde_json::Value;

use super::CliResult;
use super::http;

#[derive(Debug, Args)]
pub(crate) struct DeployArgs {
    /// The config file: YAML (as `serve build` writes it), or TOML or JSON by extension.
    config_file: PathBuf,
    /// The server's dashboard address.
    #[arg(
        long,
        short = 'a',
        value_name = "URL",
        default_value = "http://127.0.0.1:8265"
    )]
    address: String,
    /// The dashboard's bearer token, if it asks for one [default: $RAYAI_AUTH_TOKEN, else
    /// $RAYAI_DASHBOARD_TOKEN].
    #[arg(long)]
    token: Option<String>,
}

/// Deploys take as long as the replicas take to start: a generous bound.
const DEPLOY_TIMEOUT: Duration = Duration::from_secs(300);

pub(crate) fn deploy(args: &DeployArgs) -> CliResult {
    let config = load_serve_config(&args.config_file).map_err(|e| e.to_string())?;
    let body = serde_json::to_vec(&config).map_err(|e| format!("cannot encode the config: {e}"))?;
    let token = args
        .token
        .clone()
        .or_else(|| std::env::var("RAYAI_AUTH_TOKEN").ok())
        .or_else(|| std::env::var("RAYAI_DASHBOARD_TOKEN").ok())
        .filter(|t| !t.is_empty());
    let address = args.address.trim_end_matches('/');
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start tokio: {e}"))?;
    let (status, answer) = runtime.block_on(http::send(
        Method::PUT,
        address,
        "/api/serve/applications/",
        token.as_deref(),
        body,
        DEPLOY_TIMEOUT,
    ))?;
    let json: Value = serde_json::from_slice(&answer).unwrap_or(Value::Null);
    let detail = json["detail"].as_str().map_or_else(
        || String::from_utf8_lossy(&answer).trim().to_owned(),
        str::to_owned,
    );
    match status {
        200 => {
            let list = |key: &str| {
                json[key]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .filter(|s| !s.is_empty())
            };
            println!(
                "Sent deploy request to {address}: applied {}.",
                list("applied").unwrap_or_else(|| "no applications".to_owned())
            );
            if let Some(deleted) = list("deleted") {
                println!("Deleted: {deleted}.");
            }
            Ok(ExitCode::SUCCESS)
        }
        401 => Err(match token {
            None => format!("{address} asks for a token: pass --token or set RAYAI_AUTH_TOKEN"),
            Some(_) => format!("{address} does not accept this token (401)"),
        }),
        404 | 405 => Err(format!(
            "{address} has no deploy API (PUT /api/serve/applications/ answered {status}): is \
             it a rayai dashboard?"
        )),
        _ => Err(format!(
            "{} was not applied ({status}): {detail}",
            args.config_file.display()
        )),
    }
}
