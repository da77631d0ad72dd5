//! `rayai`: create, serve, plan and inspect agent projects (RayAI's command, for Rust).

#[path = "../cli/mod.rs"]
mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
