//! Ray Serve config files (`serve deploy`'s): YAML as Ray writes them, TOML or JSON, read into a
//! [`DeployConfig`] with the file, line and path of a mistake.

use std::ops::Range;
use std::path::Path;

use crate::deploy::DeployConfig;

use super::ConfigError;

/// The formats a config file may be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    /// YAML (`.yaml`, `.yml`, and any other extension: JSON is YAML too).
    Yaml,
    /// TOML (`.toml`).
    Toml,
    /// JSON (`.json`).
    Json,
}

impl Format {
    /// The format of `file`, by its extension.
    pub fn of(file: &Path) -> Format {
        match file.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("toml") => Format::Toml,
            Some(e) if e.eq_ignore_ascii_case("json") => Format::Json,
            _ => Format::Yaml,
        }
    }
}

/// Reads and parses the config file `file` in the format of its extension.
///
/// # Errors
///
/// [`ConfigError`] naming the file, the line and column where known, and the path of the bad
/// field (`applications[0].deployments[1].num_replicas`).
pub fn load_serve_config(file: &Path) -> Result<DeployConfig, ConfigError> {
    let source = std::fs::read_to_string(file).map_err(|e| ConfigError {
        file: file.to_owned(),
        line: 1,
        column: 1,
        key: None,
        message: format!("cannot read the file: {e}"),
    })?;
    parse_serve_config(file, &source, Format::of(file))
}

/// Parses `source`, the contents of `file` (only used in messages), as `format`.
///
/// # Errors
///
/// As [`load_serve_config`].
///
/// # Examples
///
/// ```
/// use rayai::project::{Format, parse_serve_config};
///
/// let yaml = "applications:\n  - name: app1\n    import_path: agents:app\n    deployments:\n      - name: echo\n        num_replicas: 0\n";
/// let e = parse_serve_config("serve.yaml".as_ref(), yaml, Format::Yaml).unwrap_err();
/// assert_eq!(e.line, 6);
/// assert_eq!(e.key.as_deref(), Some("applications[0].deployments[0].num_replicas"));
/// ```
pub fn parse_serve_config(
    file: &Path,
    source: &str,
    format: Format,
) -> Result<DeployConfig, ConfigError> {
    let error = |path: String, (line, column): (usize, usize), message: String| ConfigError {
        file: file.to_owned(),
        line,
        column,
        key: (!path.is_empty() && path != ".").then_some(path),
        message,
    };
    match format {
        Format::Yaml => {
            let de = serde_norway::Deserializer::from_str(source);
            serde_path_to_error::deserialize(de).map_err(|e| {
                let path = e.path().to_string();
                let inner = e.into_inner();
                let at = inner.location().map_or((1, 1), |l| (l.line(), l.column()));
                let message = yaml_message(&inner.to_string());
                error(path, at, message)
            })
        }
        Format::Toml => {
            let de = toml::Deserializer::parse(source).map_err(|e| {
                error(
                    String::new(),
                    line_of(source, e.span()),
                    e.message().to_owned(),
                )
            })?;
            serde_path_to_error::deserialize(de).map_err(|e| {
                let path = e.path().to_string();
                let inner = e.into_inner();
                error(
                    path,
                    line_of(source, inner.span()),
                    inner.message().trim_end().to_owned(),
                )
            })
        }
        Format::Json => {
            let mut de = serde_json::Deserializer::from_str(source);
            let config = serde_path_to_error::deserialize(&mut de).map_err(|e| {
                let path = e.path().to_string();
                let inner = e.into_inner();
                error(path, (inner.line(), inner.column()), json_message(&inner))
            })?;
            de.end()
                .map_err(|e| error(String::new(), (e.line(), e.column()), json_message(&e)))?;
            Ok(config)
        }
    }
}

/// serde_norway's message without the location it appends (the error carries it apart).
fn yaml_message(text: &str) -> String {
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_owned(),
        None => text.to_owned(),
    }
}

/// serde_json's message without the location it appends.
fn json_message(e: &serde_json::Error) -> String {
    yaml_message(&e.to_string())
}

/// The 1-based line and column where `span` starts in `source`.
fn line_of(source: &str, span: Option<Range<usize>>) -> (usize, usize) {
    let start = span.map_or(0, |s| s.start).min(source.len());
    let before = &source[..start];
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(start, |i| start - i - 1) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = "\
# written by `serve build`
proxy_location: EveryNode
http_options:
  host: 0.0.0.0
  port: 8000
applications:
  - name: app1
    route_prefix: /
    import_path: agents:app
    runtime_env: {}
    deployments:
      - name: echo
        num_replicas: 2
        user_config:
          greeting: hi
        ray_actor_options:
          num_cpus: 0.5
";

    #[test]
    fn reads_ray_s_yaml_and_the_same_in_toml_and_json() {
        let yaml = parse_serve_config(Path::new("serve.yaml"), YAML, Format::Yaml).unwrap();
        let d = &yaml.applications[0].deployments[0];
        assert_eq!(d.user_config, Some(serde_json::json!({"greeting": "hi"})));
        let toml = "proxy_location = \"EveryNode\"\n[http_options]\nhost = \"0.0.0.0\"\nport = 8000\n\n\
            [[applications]]\nname = \"app1\"\nroute_prefix = \"/\"\nimport_path = \"agents:app\"\nruntime_env = {}\n\n\
            [[applications.deployments]]\nname = \"echo\"\nnum_replicas = 2\nuser_config = { greeting = \"hi\" }\n\
            ray_actor_options = { num_cpus = 0.5 }\n";
        let toml = parse_serve_config(Path::new("serve.toml"), toml, Format::Toml).unwrap();
        assert_eq!(toml, yaml);
        let json = serde_json::to_string(&yaml).unwrap();
        let json = parse_serve_config(Path::new("serve.json"), &json, Format::Json).unwrap();
        assert_eq!(json, yaml);
    }

    #[test]
    fn a_mistake_names_file_line_and_field_in_every_format() {
        let bad = YAML.replace("num_replicas: 2", "num_replicas: many");
        let e = parse_serve_config(Path::new("serve.yaml"), &bad, Format::Yaml).unwrap_err();
        assert_eq!(e.line, 13, "{e}");
        assert_eq!(
            e.key.as_deref(),
            Some("applications[0].deployments[0].num_replicas")
        );
        assert!(e.to_string().starts_with("serve.yaml:13:"), "{e}");
        assert!(e.message.contains("\"many\""), "{e}");

        let toml = "[[applications]]\nimport_path = \"a:b\"\n\n[[applications.deployments]]\nname = \"x\"\nnum_cpu = 1\n";
        let e = parse_serve_config(Path::new("s.toml"), toml, Format::Toml).unwrap_err();
        assert_eq!(
            e.key.as_deref(),
            Some("applications[0].deployments[0].num_cpu"),
            "{e}"
        );
        assert_eq!(e.line, 6, "{e}");

        let e = parse_serve_config(
            Path::new("s.json"),
            "{\"applications\": [{}]}",
            Format::Json,
        )
        .unwrap_err();
        assert!(e.message.contains("import_path"), "{e}");
        let e =
            parse_serve_config(Path::new("s.yaml"), "applications: [", Format::Yaml).unwrap_err();
        assert!(e.to_string().starts_with("s.yaml:"), "{e}");
    }
}
