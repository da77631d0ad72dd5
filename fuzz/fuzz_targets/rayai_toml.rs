//! `rayai.toml` on any text: parsing, then applying `[http]` and `[agents.*]` to a project whose
//! agents are the ones the file names. Never a panic; every error points at a line and column
//! inside the file and says so in its message; every configuration applied is one the runtime
//! accepts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rayai::project::{ConfigError, ProjectConfig};
use rayai::{Agent, AgentError, App, Deployment, DeploymentConfig, HttpOptions};
use serde_json::Value;

struct Nop;

impl Agent for Nop {
    async fn run(&self, data: Value) -> Result<Value, AgentError> {
        Ok(data)
    }
}

fn check_location(e: &ConfigError, source: &str) {
    let lines: Vec<&str> = source.split('\n').collect();
    assert!(
        e.line >= 1 && e.line <= lines.len(),
        "{e}: line outside the file"
    );
    assert!(
        e.column >= 1 && e.column - 1 <= lines[e.line - 1].len(),
        "{e}: column outside its line"
    );
    assert!(!e.message.is_empty());
    let head = format!("rayai.toml:{}:{}: ", e.line, e.column);
    assert!(e.to_string().starts_with(&head), "{e}");
}

fuzz_target!(|source: &str| {
    let config = match ProjectConfig::parse("rayai.toml", source) {
        Ok(config) => config,
        Err(e) => return check_location(&e, source),
    };
    if let Err(e) = config.apply_http(HttpOptions::default()) {
        check_location(&e, source);
    }
    let mut known: Vec<String> = config
        .agent_names()
        .filter(|name| rayai_rules::check_name(name).is_ok())
        .map(str::to_owned)
        .collect();
    known.push("fuzz-default".to_owned());
    known.sort();
    known.dedup();
    let app = known.iter().fold(App::new(), |app, name| {
        app.deployment(Deployment::from_fn(
            DeploymentConfig::new(name),
            |_| async { Ok(Nop) },
        ))
    });
    match config.apply_agents(app, &known) {
        Err(e) => check_location(&e, source),
        Ok(app) => {
            for deployment in app.deployments() {
                let config = deployment.config();
                assert!(config.validate().is_ok(), "{:?}", config.validate());
            }
        }
    }
});
