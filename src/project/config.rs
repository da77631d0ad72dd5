//! `rayai.toml`: per-agent overrides of what `#[agent(...)]` declared, and the HTTP options,
//! applied when a project starts (Ray Serve's config file, in TOML).
//!
//! ```toml
//! [http]
//! port = 8000
//! request_timeout_s = 30
//!
//! [agents.echo]
//! num_replicas = 2
//! num_cpus = 0.5
//! memory = "512MB"
//!
//! [agents.writer.autoscaling]
//! min_replicas = 1
//! max_replicas = 4
//!
//! [openai]
//! enabled = true          # /v1/models and /v1/chat/completions (the default)
//! model_suffix = false    # "model": "agent:model-id" names a multiplexed model
//! ```
//!
//! Or, in Ray Serve's config schema (the body of `PUT /api/serve/applications/`, see
//! [`crate::deploy`]), the applications to run with their deployments' overrides: when the file
//! has `[[applications]]`, they are what the project serves (declaratively, so a later
//! `rayai deploy` replaces them), instead of every agent at `/`.
//!
//! ```toml
//! [[applications]]
//! name = "echo-service"
//! import_path = "agents:echo"     # or agents:app for every agent of the project
//! route_prefix = "/"
//!
//! [[applications.deployments]]
//! name = "echo"
//! num_replicas = 2
//! user_config = { greeting = "hi" }
//! ray_actor_options = { num_cpus = 0.5 }
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use rayai_core::{App, AutoscalingConfig, DeploymentConfig};
use rayai_rules::{Bound, Field, autoscaling, deployment, parse_memory};
use serde::Deserialize;
use toml::Spanned;

use crate::HttpOptions;
use crate::deploy::{ApplicationConfig, DeployConfig, NumReplicas};

/// A parsed `rayai.toml`, with the positions of its keys kept for error messages.
#[derive(Debug, Clone)]
pub struct ProjectConfig {
    file: PathBuf,
    source: String,
    raw: RawFile,
}

/// A mistake in `rayai.toml`: the file, line, column and key, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// The key (or table) the error is about, when known.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file.display(), self.line, self.column)?;
        if let Some(key) = &self.key {
            write!(f, "`{key}`: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    agents: BTreeMap<Spanned<String>, Spanned<AgentSection>>,
    #[serde(default)]
    http: Option<HttpSection>,
    #[serde(default)]
    applications: Vec<ApplicationConfig>,
    #[serde(default)]
    openai: Option<OpenAiSection>,
}

/// `[openai]`: the OpenAI routes of the project's agents (`App::openai`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OpenAiSection {
    enabled: Option<bool>,
    model_suffix: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentSection {
    num_replicas: Option<Spanned<NumReplicas>>,
    num_cpus: Option<Spanned<f64>>,
    num_gpus: Option<Spanned<f64>>,
    memory: Option<Spanned<String>>,
    max_ongoing_requests: Option<Spanned<u32>>,
    max_queued_requests: Option<Spanned<u32>>,
    health_check_period_s: Option<Spanned<f64>>,
    health_check_timeout_s: Option<Spanned<f64>>,
    graceful_shutdown_timeout_s: Option<Spanned<f64>>,
    autoscaling: Option<Spanned<AutoscalingSection>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AutoscalingSection {
    min_replicas: Option<u32>,
    max_replicas: Option<u32>,
    target_ongoing_requests: Option<f64>,
    upscale_delay_s: Option<f64>,
    downscale_delay_s: Option<f64>,
    downscale_to_zero_delay_s: Option<f64>,
    initial_replicas: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpSection {
    host: Option<String>,
    port: Option<u16>,
    max_body_bytes: Option<u64>,
    request_timeout_s: Option<Spanned<f64>>,
    backpressure_retry_after_s: Option<u32>,
    header_read_timeout_s: Option<Spanned<f64>>,
    graceful_shutdown_timeout_s: Option<Spanned<f64>>,
    keep_alive_timeout_s: Option<Spanned<f64>>,
    root_path: Option<String>,
    dashboard_port: Option<u16>,
    metrics_export_port: Option<u16>,
    grpc_port: Option<u16>,
    strict_placement: Option<bool>,
    drain_delay_s: Option<Spanned<f64>>,
    sse_keep_alive_s: Option<Spanned<f64>>,
    body_read_timeout_s: Option<Spanned<f64>>,
    max_connections: Option<Spanned<usize>>,
    max_body_bytes_in_flight: Option<u64>,
}

impl ProjectConfig {
    /// Parses `source` as the contents of `file` (which is only used in messages).
    ///
    /// # Errors
    ///
    /// Bad TOML, an unknown key, or a value of the wrong type, with its line and key.
    pub fn parse(file: impl Into<PathBuf>, source: &str) -> Result<Self, ConfigError> {
        let file = file.into();
        match toml::from_str::<RawFile>(source) {
            Ok(raw) => Ok(ProjectConfig {
                file,
                source: source.to_owned(),
                raw,
            }),
            Err(e) => {
                let span = e.span().unwrap_or(0..0);
                let key = key_at(source, &span);
                Err(error_at(&file, source, span, key, e.message().trim_end()))
            }
        }
    }

    /// Reads and parses `file`.
    ///
    /// # Errors
    ///
    /// As [`ProjectConfig::parse`], or the file cannot be read.
    pub fn load(file: &Path) -> Result<Self, ConfigError> {
        let source = std::fs::read_to_string(file).map_err(|e| ConfigError {
            file: file.to_owned(),
            line: 1,
            column: 1,
            key: None,
            message: format!("cannot read the file: {e}"),
        })?;
        Self::parse(file, &source)
    }

    /// The `[[applications]]` of the file (Ray Serve's schema), when it lists any: what the
    /// project serves instead of every agent at `/`.
    pub fn applications(&self) -> Option<DeployConfig> {
        (!self.raw.applications.is_empty())
            .then(|| DeployConfig::new(self.raw.applications.clone()))
    }

    /// The agents the file configures.
    pub fn agent_names(&self) -> impl Iterator<Item = &str> {
        self.raw.agents.keys().map(|k| k.get_ref().as_str())
    }

    /// Applies the `[agents.*]` overrides to `app`, whose deployments are every agent the
    /// project has (`known` lists them, for the message about an unknown agent).
    ///
    /// # Errors
    ///
    /// An agent the project does not have, or a value the deployment refuses.
    pub fn apply_agents(&self, app: App, known: &[String]) -> Result<App, ConfigError> {
        for name in self.raw.agents.keys() {
            if !known.iter().any(|k| k == name.get_ref()) {
                return Err(self.error(
                    name.span(),
                    Some(format!("agents.{}", name.get_ref())),
                    format!(
                        "no agent named `{}` in this project; its agents are: {}",
                        name.get_ref(),
                        known.join(", ")
                    ),
                ));
            }
        }
        let mut out = App::new();
        for deployment in app.into_deployments() {
            let name = deployment.config().name().to_owned();
            let Some((key, section)) = self.raw.agents.get_key_value(name.as_str()) else {
                out = out.deployment(deployment);
                continue;
            };
            let config = self.override_config(deployment.config().clone(), key, section)?;
            out = out.deployment(deployment.map_config(|_| config));
        }
        if let Some(openai) = &self.raw.openai {
            if let Some(enabled) = openai.enabled {
                out = out.openai(enabled);
            }
            if let Some(suffix) = openai.model_suffix {
                out = out.openai_model_suffix(suffix);
            }
        }
        Ok(out)
    }

    fn override_config(
        &self,
        mut c: DeploymentConfig,
        key: &Spanned<String>,
        section: &Spanned<AgentSection>,
    ) -> Result<DeploymentConfig, ConfigError> {
        let table = format!("agents.{}", key.get_ref());
        let s = section.get_ref();
        let at = |field: &str| format!("{table}.{field}");
        if let (Some(n), Some(a)) = (&s.num_replicas, &s.autoscaling) {
            let span = n.span().start.min(a.span().start)..n.span().end.max(a.span().end);
            return Err(self.error(
                span,
                Some(table.clone()),
                "set either `num_replicas` or `autoscaling`, not both".to_owned(),
            ));
        }
        if let Some(n) = &s.num_replicas {
            c = match *n.get_ref() {
                NumReplicas::Count(n) => c.without_autoscaling().with_num_replicas(n),
                NumReplicas::Auto => c.with_autoscaling(AutoscalingConfig::auto()),
            };
        }
        if let Some(v) = &s.num_cpus {
            c = c.with_num_cpus(*v.get_ref());
        }
        if let Some(v) = &s.num_gpus {
            c = c.with_num_gpus(*v.get_ref());
        }
        if let Some(v) = &s.memory {
            let bytes = parse_memory(v.get_ref()).map_err(|e| {
                self.error(
                    v.span(),
                    Some(at("memory")),
                    format!(
                        "{:?} is not a memory size: {} (e.g. \"512MB\", \"2GB\", \"1.5 GiB\")",
                        v.get_ref(),
                        e.message()
                    ),
                )
            })?;
            c = c.with_memory_bytes(bytes);
        }
        if let Some(v) = &s.max_ongoing_requests {
            c = c.with_max_ongoing_requests(*v.get_ref());
        }
        if let Some(v) = &s.max_queued_requests {
            c = c.with_max_queued_requests(*v.get_ref());
        }
        let secs = |v: &Spanned<f64>, field: Field| {
            field
                .check_seconds(*v.get_ref())
                .map_err(|problem| self.error(v.span(), Some(at(field.key())), problem.to_string()))
        };
        if let Some(v) = &s.health_check_period_s {
            c = c.with_health_check_period(secs(v, deployment::HEALTH_CHECK_PERIOD_S)?);
        }
        if let Some(v) = &s.health_check_timeout_s {
            c = c.with_health_check_timeout(secs(v, deployment::HEALTH_CHECK_TIMEOUT_S)?);
        }
        if let Some(v) = &s.graceful_shutdown_timeout_s {
            let timeout = secs(v, deployment::GRACEFUL_SHUTDOWN_TIMEOUT_S)?;
            c = c.with_graceful_shutdown_timeout(timeout);
        }
        if let Some(a) = &s.autoscaling {
            let raw = a.get_ref();
            let base = match (c.autoscaling(), raw.min_replicas, raw.max_replicas) {
                (Some(base), _, _) => base.clone(),
                (None, Some(min), Some(max)) => AutoscalingConfig::new(
                    min,
                    max,
                    AutoscalingConfig::DEFAULT_TARGET_ONGOING_REQUESTS,
                ),
                (None, _, _) => {
                    return Err(self.error(
                        a.span(),
                        Some(at("autoscaling")),
                        "needs `min_replicas` and `max_replicas`".to_owned(),
                    ));
                }
            };
            let mut cfg = base;
            if let Some(v) = raw.min_replicas {
                cfg.min_replicas = v;
            }
            if let Some(v) = raw.max_replicas {
                cfg.max_replicas = v;
            }
            if let Some(v) = raw.target_ongoing_requests {
                cfg.target_ongoing_requests = v;
            }
            let delay = |v: f64, field: Field| {
                field.check_seconds(v).map_err(|problem| {
                    self.error(a.span(), Some(at(field.key())), problem.to_string())
                })
            };
            if let Some(v) = raw.upscale_delay_s {
                cfg.upscale_delay = delay(v, autoscaling::UPSCALE_DELAY_S)?;
            }
            if let Some(v) = raw.downscale_delay_s {
                cfg.downscale_delay = delay(v, autoscaling::DOWNSCALE_DELAY_S)?;
                if raw.downscale_to_zero_delay_s.is_none() {
                    cfg.downscale_to_zero_delay = cfg.downscale_delay;
                }
            }
            if let Some(v) = raw.downscale_to_zero_delay_s {
                cfg.downscale_to_zero_delay = delay(v, autoscaling::DOWNSCALE_TO_ZERO_DELAY_S)?;
            }
            if raw.initial_replicas.is_some() {
                cfg.initial_replicas = raw.initial_replicas;
            }
            // The bounds and how they agree are checked with the rest, below.
            c = c.with_autoscaling(cfg);
        }
        match c.validate() {
            Ok(()) => Ok(c),
            // Point at the key at fault when this file sets it, else at the agent's table.
            Err(rayai_core::Error::InvalidConfig { field, reason, .. }) => {
                let (key, span) = match field_span(s, field) {
                    Some(span) => (at(field), span),
                    None => (table, key.span()),
                };
                Err(self.error(span, Some(key), reason))
            }
            Err(other) => Err(self.error(key.span(), Some(table), other.to_string())),
        }
    }

    /// `options` with the `[http]` table's values.
    ///
    /// # Errors
    ///
    /// A negative or non-finite number of seconds.
    pub fn apply_http(&self, mut options: HttpOptions) -> Result<HttpOptions, ConfigError> {
        let Some(h) = &self.raw.http else {
            return Ok(options);
        };
        let secs = |v: &Spanned<f64>, field: &'static str| {
            Field::new(field, Bound::NonNegative)
                .check_seconds(*v.get_ref())
                .map(|secs| secs.as_secs_f64())
                .map_err(|problem| {
                    self.error(v.span(), Some(format!("http.{field}")), problem.to_string())
                })
        };
        if let Some(v) = &h.host {
            options.host = v.clone();
        }
        if let Some(v) = h.port {
            options.port = v;
        }
        if let Some(v) = h.max_body_bytes {
            options.max_body_bytes = v;
        }
        if let Some(v) = &h.request_timeout_s {
            options.request_timeout_s = Some(secs(v, "request_timeout_s")?);
        }
        if let Some(v) = h.backpressure_retry_after_s {
            options.backpressure_retry_after_s = Some(v);
        }
        if let Some(v) = &h.header_read_timeout_s {
            options.header_read_timeout_s = secs(v, "header_read_timeout_s")?;
        }
        if let Some(v) = &h.graceful_shutdown_timeout_s {
            options.graceful_shutdown_timeout_s = secs(v, "graceful_shutdown_timeout_s")?;
        }
        if let Some(v) = &h.keep_alive_timeout_s {
            options.keep_alive_timeout_s = secs(v, "keep_alive_timeout_s")?;
        }
        if let Some(v) = &h.root_path {
            options.root_path = v.clone();
        }
        if let Some(v) = h.dashboard_port {
            options.dashboard_port = (v != 0).then_some(v);
        }
        if let Some(v) = h.metrics_export_port {
            options.metrics_export_port = (v != 0).then_some(v);
        }
        if let Some(v) = h.grpc_port {
            options.grpc_port = (v != 0).then_some(v);
        }
        if let Some(v) = h.strict_placement {
            options.strict_placement = v;
        }
        if let Some(v) = &h.drain_delay_s {
            options.drain_delay_s = secs(v, "drain_delay_s")?;
        }
        if let Some(v) = &h.sse_keep_alive_s {
            options.sse_keep_alive_s = secs(v, "sse_keep_alive_s")?;
        }
        if let Some(v) = &h.body_read_timeout_s {
            options.body_read_timeout_s = secs(v, "body_read_timeout_s")?;
        }
        if let Some(v) = &h.max_connections {
            if *v.get_ref() == 0 {
                return Err(self.error(
                    v.span(),
                    Some("http.max_connections".to_owned()),
                    "max_connections must be 1 or more".to_owned(),
                ));
            }
            options.max_connections = Some(*v.get_ref());
        }
        if let Some(v) = h.max_body_bytes_in_flight {
            options.max_body_bytes_in_flight = v;
        }
        Ok(options)
    }

    fn error(&self, span: Range<usize>, key: Option<String>, message: String) -> ConfigError {
        error_at(&self.file, &self.source, span, key, &message)
    }
}

/// Where `section` sets the value at `field` (a key as `rayai_rules::Problem::key` spells it),
/// when it does; a setting inside `autoscaling` is found at that table.
fn field_span(section: &AgentSection, field: &str) -> Option<Range<usize>> {
    let s = section;
    match field {
        "num_replicas" => s.num_replicas.as_ref().map(Spanned::span),
        "num_cpus" => s.num_cpus.as_ref().map(Spanned::span),
        "num_gpus" => s.num_gpus.as_ref().map(Spanned::span),
        "max_ongoing_requests" => s.max_ongoing_requests.as_ref().map(Spanned::span),
        "health_check_period_s" => s.health_check_period_s.as_ref().map(Spanned::span),
        "health_check_timeout_s" => s.health_check_timeout_s.as_ref().map(Spanned::span),
        f if f.starts_with("autoscaling.") => s.autoscaling.as_ref().map(Spanned::span),
        _ => None,
    }
}

fn error_at(
    file: &Path,
    source: &str,
    span: Range<usize>,
    key: Option<String>,
    message: &str,
) -> ConfigError {
    let start = span.start.min(source.len());
    let before = &source[..start];
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(start, |i| start - i - 1) + 1;
    ConfigError {
        file: file.to_owned(),
        line,
        column,
        key,
        message: message.to_owned(),
    }
}

/// The key written on the line of `span` (`key = value` or `[table]`), for serde's messages
/// that name only the type.
fn key_at(source: &str, span: &Range<usize>) -> Option<String> {
    let start = span.start.min(source.len());
    let line_start = source[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = source[start..]
        .find('\n')
        .map_or(source.len(), |i| start + i);
    let line = source[line_start..line_end].trim();
    let key = match line.split_once('=') {
        Some((k, _)) => k.trim(),
        None => line.trim_start_matches('[').trim_end_matches(']').trim(),
    };
    (!key.is_empty()).then(|| key.trim_matches('"').to_owned())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use rayai_core::{Agent, AgentError, Deployment};
    use serde_json::Value;

    struct Nop;
    impl Agent for Nop {
        async fn run(&self, data: Value) -> Result<Value, AgentError> {
            Ok(data)
        }
    }

    fn app() -> (App, Vec<String>) {
        let d =
            |name: &str| Deployment::from_fn(DeploymentConfig::new(name), |_| async { Ok(Nop) });
        let app = App::new().deployment(d("echo")).deployment(d("writer"));
        (app, vec!["echo".to_owned(), "writer".to_owned()])
    }

    fn apply(src: &str) -> Result<App, ConfigError> {
        let (app, known) = app();
        ProjectConfig::parse("rayai.toml", src)?.apply_agents(app, &known)
    }

    #[test]
    fn the_openai_section_turns_the_routes_off_or_the_model_suffix_on() {
        assert!(apply("").unwrap().serves_openai());
        let off = apply("[openai]\nenabled = false\n").unwrap();
        assert!(!off.serves_openai());
        let suffix = apply("[openai]\nmodel_suffix = true\n").unwrap();
        assert!(suffix.serves_openai() && suffix.uses_openai_model_suffix());
        assert!(apply("[openai]\nenable = false\n").is_err());
    }

    #[test]
    fn overrides_replicas_resources_and_bounds() {
        let app = apply(
            "[agents.echo]\nnum_replicas = 3\nnum_cpus = 0.5\nnum_gpus = 1\nmemory = \"512MB\"\n\
             max_ongoing_requests = 7\nmax_queued_requests = 10\n",
        )
        .unwrap();
        let c = app.deployments()[0].config();
        assert_eq!(c.num_replicas(), 3);
        assert_eq!(c.resources().num_cpus, 0.5);
        assert_eq!(c.resources().num_gpus, 1.0);
        assert_eq!(c.resources().memory_bytes, 512 << 20);
        assert_eq!(c.max_ongoing_requests(), 7);
        assert_eq!(c.max_queued_requests(), Some(10));
        assert_eq!(app.deployments()[1].config().num_replicas(), 1);
    }

    #[test]
    fn autoscaling_table_and_auto() {
        let app = apply(
            "[agents.echo.autoscaling]\nmin_replicas = 0\nmax_replicas = 4\n\
             target_ongoing_requests = 3\ndownscale_delay_s = 60\n\n[agents.writer]\nnum_replicas = \"auto\"\n",
        )
        .unwrap();
        let a = app.deployments()[0].config().autoscaling().unwrap().clone();
        assert_eq!((a.min_replicas, a.max_replicas), (0, 4));
        assert_eq!(a.target_ongoing_requests, 3.0);
        assert_eq!(a.downscale_delay, Duration::from_secs(60));
        assert_eq!(a.downscale_to_zero_delay, Duration::from_secs(60));
        let w = app.deployments()[1].config().autoscaling().unwrap();
        assert_eq!(w, &AutoscalingConfig::auto());
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let err = apply("[agents.echo]\nnum_replicas = 2\nnum_cpu = 1\n").unwrap_err();
        assert_eq!((err.line, err.column), (3, 1), "{err}");
        let text = err.to_string();
        assert!(text.starts_with("rayai.toml:3:1: "), "{text}");
        assert!(text.contains("num_cpu"), "{text}");
        assert!(text.contains("num_cpus"), "lists the valid keys: {text}");
    }

    #[test]
    fn unknown_agent_lists_the_agents() {
        let err = apply("\n[agents.nope]\nnum_replicas = 2\n").unwrap_err();
        assert_eq!(err.line, 2, "{err}");
        assert_eq!(err.key.as_deref(), Some("agents.nope"));
        assert!(err.to_string().contains("echo, writer"), "{err}");
    }

    #[test]
    fn bad_values_name_their_key() {
        let err = apply("[agents.echo]\nnum_replicas = \"many\"\n").unwrap_err();
        assert_eq!(err.line, 2, "{err}");
        assert!(err.to_string().contains("num_replicas"), "{err}");

        let err = apply("[agents.echo]\nnum_replicas = 0\n").unwrap_err();
        assert_eq!(err.line, 2, "{err}");

        let err = apply("[agents.echo]\n\nmemory = \"2 potatoes\"\n").unwrap_err();
        assert_eq!(err.line, 3, "{err}");
        assert_eq!(err.key.as_deref(), Some("agents.echo.memory"));

        let err = apply("[agents.echo]\nnum_cpus = 0\n").unwrap_err();
        assert_eq!(
            (err.line, err.key.as_deref()),
            (2, Some("agents.echo.num_cpus"))
        );

        let err = apply("[agents.echo]\nmax_ongoing_requests = -1\n").unwrap_err();
        assert_eq!(err.line, 2, "{err}");
        assert_eq!(err.key.as_deref(), Some("max_ongoing_requests"), "{err}");

        let err =
            apply("[agents.echo.autoscaling]\nmin_replicas = 5\nmax_replicas = 2\n").unwrap_err();
        assert!(err.to_string().contains("min_replicas (5)"), "{err}");
        assert_eq!(
            err.key.as_deref(),
            Some("agents.echo.autoscaling.max_replicas")
        );

        let err = apply("[agents.echo]\nnum_replicas = 2\nautoscaling = { min_replicas = 1, max_replicas = 2 }\n")
            .unwrap_err();
        assert!(err.to_string().contains("not both"), "{err}");
    }

    #[test]
    fn seconds_break_the_rules_in_the_words_of_the_attribute() {
        let err = apply("[agents.echo]\nhealth_check_period_s = 0\n").unwrap_err();
        assert_eq!(err.line, 2, "{err}");
        assert_eq!(
            err.key.as_deref(),
            Some("agents.echo.health_check_period_s")
        );
        assert_eq!(err.message, "health_check_period_s must be greater than 0");

        let err = apply("[agents.echo]\ngraceful_shutdown_timeout_s = 1e300\n").unwrap_err();
        assert_eq!(err.message, "`graceful_shutdown_timeout_s` is too large");

        let err = apply(
            "[agents.echo.autoscaling]\nmin_replicas = 0\nmax_replicas = 2\nupscale_delay_s = -1\n",
        )
        .unwrap_err();
        assert_eq!(
            err.key.as_deref(),
            Some("agents.echo.autoscaling.upscale_delay_s")
        );
        assert_eq!(err.message, "upscale_delay_s must be 0 or greater");

        let err = ProjectConfig::parse("rayai.toml", "[http]\nrequest_timeout_s = -1\n")
            .unwrap()
            .apply_http(HttpOptions::default())
            .unwrap_err();
        assert_eq!(err.key.as_deref(), Some("http.request_timeout_s"));
        assert_eq!(err.message, "request_timeout_s must be 0 or greater");
    }

    #[test]
    fn a_rule_the_runtime_checks_names_its_key() {
        let err = apply("[agents.echo]\nnum_gpus = -1\n").unwrap_err();
        assert_eq!(
            (err.line, err.key.as_deref()),
            (2, Some("agents.echo.num_gpus"))
        );
        assert_eq!(err.message, "num_gpus must be 0 or greater");

        let err =
            apply("[agents.echo.autoscaling]\nmin_replicas = 0\nmax_replicas = 0\n").unwrap_err();
        assert_eq!(err.line, 1, "{err}");
        assert_eq!(
            err.key.as_deref(),
            Some("agents.echo.autoscaling.max_replicas")
        );
        assert_eq!(err.message, "max_replicas must be at least 1");
    }

    #[test]
    fn applications_in_ray_s_schema() {
        let cfg = ProjectConfig::parse(
            "rayai.toml",
            "[agents.echo]\nnum_replicas = 2\n\n[[applications]]\nname = \"echo-service\"\n\
             import_path = \"agents:echo\"\n\n[[applications.deployments]]\nname = \"echo\"\n\
             num_replicas = 3\nuser_config = { greeting = \"hi\" }\n",
        )
        .unwrap();
        let config = cfg.applications().unwrap();
        let app = &config.applications[0];
        assert_eq!(
            (app.name.as_str(), app.import_path.as_str()),
            ("echo-service", "agents:echo")
        );
        assert_eq!(
            app.deployments[0].user_config,
            Some(serde_json::json!({"greeting": "hi"}))
        );
        assert!(
            ProjectConfig::parse("rayai.toml", "")
                .unwrap()
                .applications()
                .is_none()
        );

        let err = ProjectConfig::parse(
            "rayai.toml",
            "[[applications]]\nimport_path = \"agents:echo\"\n\n[[applications.deployments]]\n\
             name = \"echo\"\nnum_replica = 3\n",
        )
        .unwrap_err();
        assert_eq!(err.line, 6, "{err}");
        assert!(err.to_string().contains("num_replica"), "{err}");
    }

    #[test]
    fn http_table_sets_options() {
        let cfg = ProjectConfig::parse(
            "rayai.toml",
            "[http]\nhost = \"0.0.0.0\"\nport = 9000\nrequest_timeout_s = 30\nmax_body_bytes = 1024\n",
        )
        .unwrap();
        let o = cfg.apply_http(HttpOptions::default()).unwrap();
        assert_eq!((o.host.as_str(), o.port), ("0.0.0.0", 9000));
        assert_eq!(o.request_timeout_s, Some(30.0));
        assert_eq!(o.max_body_bytes, 1024);
        assert_eq!(o.metrics_export_port, None);
        let cfg =
            ProjectConfig::parse("rayai.toml", "[http]\nmetrics_export_port = 9100\n").unwrap();
        let o = cfg.apply_http(HttpOptions::default()).unwrap();
        assert_eq!(o.metrics_export_port, Some(9100));
        assert_eq!(o.grpc_port, None);
        let cfg = ProjectConfig::parse("rayai.toml", "[http]\ngrpc_port = 9000\n").unwrap();
        let o = cfg.apply_http(HttpOptions::default()).unwrap();
        assert_eq!(o.grpc_port, Some(9000));

        let cfg = ProjectConfig::parse(
            "rayai.toml",
            "[http]\nbody_read_timeout_s = 0\nmax_connections = 500\nmax_body_bytes_in_flight = 1048576\ndrain_delay_s = 1\nsse_keep_alive_s = 0\n",
        )
        .unwrap();
        let o = cfg.apply_http(HttpOptions::default()).unwrap();
        assert_eq!(o.body_read_timeout_s, 0.0);
        assert_eq!(o.max_connections, Some(500));
        assert_eq!(o.max_body_bytes_in_flight, 1 << 20);
        assert_eq!((o.drain_delay_s, o.sse_keep_alive_s), (1.0, 0.0));
        let cfg = ProjectConfig::parse("rayai.toml", "[http]\n\nmax_connections = 0\n").unwrap();
        let err = cfg.apply_http(HttpOptions::default()).unwrap_err();
        assert_eq!(err.line, 3, "{err}");
        assert!(err.to_string().contains("max_connections"), "{err}");
        let cfg = ProjectConfig::parse("rayai.toml", "[http]\nbody_read_timeout_s = -1\n").unwrap();
        assert!(cfg.apply_http(HttpOptions::default()).is_err());

        let err = ProjectConfig::parse("rayai.toml", "[http]\nport = 70000\n").unwrap_err();
        assert_eq!((err.line, err.key.as_deref()), (2, Some("port")), "{err}");
        let err = ProjectConfig::parse("rayai.toml", "[server]\n").unwrap_err();
        assert!(err.to_string().contains("server"), "{err}");
    }
}
