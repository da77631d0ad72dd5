//! The `rayai` command's subcommands. Each prints its own errors; `main` turns them into the exit
//! code.

mod build;
mod deploy;
mod http;
mod init;
mod k8s;
mod manifest;
mod status;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// Serve AI agents as HTTP endpoints.
#[derive(Debug, Parser)]
#[command(name = "rayai", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a new agent project: a cargo package with `agents/`, `rayai.toml` and `.env.example`.
    Init(init::InitArgs),
    /// Add an agent to a project: `agents/NAME.rs`, served at `/agents/NAME/chat`.
    CreateAgent(init::CreateAgentArgs),
    /// Build a project (cargo, release) and serve its agents.
    Serve(ServeArgs),
    /// Show the CPUs, GPUs and memory a project's agents reserve, against this machine.
    Plan(PlanArgs),
    /// Show a running server's applications, deployments and replicas as Ray's `serve status`
    /// does (--json: its status API's answer), and which project it serves.
    Status(status::StatusArgs),
    /// Apply a Ray Serve config file (YAML, TOML or JSON) to a running server, as `serve deploy`.
    Deploy(deploy::DeployArgs),
    /// Kubernetes: `rayai k8s render` prints a project's manifests.
    #[command(subcommand)]
    K8s(k8s::K8sCommand),
}

/// How to build the project.
#[derive(Debug, Args)]
pub(crate) struct BuildArgs {
    /// The project (a directory with Cargo.toml).
    #[arg(default_value = ".")]
    pub(crate) project_path: PathBuf,
    /// Build with the dev profile instead of release (faster to build, slower to run).
    #[arg(long)]
    pub(crate) debug: bool,
}

#[derive(Debug, Args)]
struct ServeArgs {
    #[command(flatten)]
    build: BuildArgs,
    /// Port to listen on [default: 8000, or rayai.toml's http.port].
    #[arg(long)]
    port: Option<u16>,
    /// Address to listen on [default: 127.0.0.1, or rayai.toml's http.host].
    #[arg(long)]
    host: Option<String>,
    /// Serve only these agents (comma-separated names).
    #[arg(long, value_delimiter = ',')]
    agents: Vec<String>,
    /// Port of the dashboard, the status API and /metrics [default: 8265]; 0 turns it off.
    #[arg(long)]
    dashboard_port: Option<u16>,
    /// Also serve /metrics alone on this port, for scrapers (Ray's metrics_export_port), with
    /// the dashboard on or off [default: none, or rayai.toml's http.metrics_export_port].
    #[arg(long, value_name = "PORT")]
    metrics_export_port: Option<u16>,
    /// Serve gRPC on this port too (Ray's grpc_options.port, 9000 in Ray): the agents'
    /// `rayai.v1.Agents` service and applications' gRPC services [default: none, or
    /// rayai.toml's http.grpc_port].
    #[arg(long, value_name = "PORT")]
    grpc_port: Option<u16>,
    /// Refuse to start unless every replica fits on this machine now (by default what fits
    /// starts and the rest waits as pending).
    #[arg(long)]
    strict: bool,
    /// The process's role: `all` (everything in this process), `proxy` (no replicas; requests
    /// go to replica processes found by --discovery) or `replica` (the replicas of
    /// --deployment, served to proxies) [default: all, or RAYAI_ROLE].
    #[arg(long, value_parser = ["all", "proxy", "replica"])]
    role: Option<String>,
    /// In the replica role, the deployments whose replicas run here (comma-separated).
    #[arg(long, value_delimiter = ',')]
    deployment: Vec<String>,
    /// Where the proxy finds replica processes: `static:<file>`, `dns` or `kubernetes`
    /// (EndpointSlices, with rayai's `kubernetes` feature) [default: RAYAI_DISCOVERY].
    #[arg(long)]
    discovery: Option<String>,
}

#[derive(Debug, Args)]
struct PlanArgs {
    #[command(flatten)]
    build: BuildArgs,
    /// Plan only these agents (comma-separated names).
    #[arg(long, value_delimiter = ',')]
    agents: Vec<String>,
}

/// Runs the command line.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Init(args) => init::init(&args),
        Command::CreateAgent(args) => init::create_agent(&args),
        Command::Serve(args) => serve(args),
        Command::Plan(args) => plan(args),
        Command::Status(args) => status::status(&args),
        Command::Deploy(args) => deploy::deploy(&args),
        Command::K8s(k8s::K8sCommand::Render(args)) => k8s::render(&args),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// What a subcommand returns: its exit code, or a message for `error: ...`.
type CliResult = Result<ExitCode, String>;

fn serve(args: ServeArgs) -> CliResult {
    let project = build::Project::open(&args.build.project_path)?;
    let exe = project.build(
        !args.build.debug,
        // gRPC is rayai's `grpc` feature: built in when asked for.
        if args.grpc_port.is_some() {
            &["rayai/grpc"]
        } else {
            &[]
        },
    )?;
    let mut env: Vec<(String, String)> = Vec::new();
    if let Some(host) = args.host {
        env.push(("RAYAI_HOST".into(), host));
    }
    if let Some(port) = args.port {
        env.push(("RAYAI_PORT".into(), port.to_string()));
    }
    if !args.agents.is_empty() {
        env.push(("RAYAI_AGENTS".into(), args.agents.join(",")));
    }
    if let Some(port) = args.dashboard_port {
        env.push(("RAYAI_DASHBOARD_PORT".into(), port.to_string()));
    }
    if let Some(port) = args.metrics_export_port {
        env.push(("RAYAI_METRICS_EXPORT_PORT".into(), port.to_string()));
    }
    if let Some(port) = args.grpc_port {
        env.push(("RAYAI_GRPC_PORT".into(), port.to_string()));
    }
    if args.strict {
        env.push(("RAYAI_STRICT".into(), "1".to_owned()));
    }
    if let Some(role) = args.role {
        env.push(("RAYAI_ROLE".into(), role));
    }
    if !args.deployment.is_empty() {
        env.push(("RAYAI_DEPLOYMENT".into(), args.deployment.join(",")));
    }
    if let Some(discovery) = args.discovery {
        env.push(("RAYAI_DISCOVERY".into(), discovery));
    }
    project.exec(&exe, env)
}

fn plan(args: PlanArgs) -> CliResult {
    let project = build::Project::open(&args.build.project_path)?;
    let exe = project.build(!args.build.debug, &[])?;
    let mut env = vec![("RAYAI_PLAN".to_owned(), "1".to_owned())];
    if !args.agents.is_empty() {
        env.push(("RAYAI_AGENTS".into(), args.agents.join(",")));
    }
    project.run(&exe, env)
}
