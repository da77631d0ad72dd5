//! Properties of the parsers that read configuration a user or a client sends: `rayai.toml`, and
//! Ray's deploy schema as `PUT /api/serve/applications/` and `rayai deploy` read it (JSON, YAML,
//! TOML). Whatever the input, each gives a value or an error, never a panic. Bounded (256 cases
//! each by default); `PROPTEST_CASES=100000 cargo test --test properties` runs them longer.

use std::path::Path;

use proptest::prelude::*;
use rayai::deploy::DeployConfig;
use rayai::project::{Format, ProjectConfig, parse_serve_config};
use serde_json::{Map, Value};

/// Keys the schemas know, so that generated documents reach deep into them.
const KEYS: [&str; 24] = [
    "applications",
    "name",
    "route_prefix",
    "import_path",
    "deployments",
    "num_replicas",
    "autoscaling_config",
    "min_replicas",
    "max_replicas",
    "initial_replicas",
    "target_ongoing_requests",
    "max_ongoing_requests",
    "max_queued_requests",
    "user_config",
    "ray_actor_options",
    "num_cpus",
    "num_gpus",
    "memory",
    "graceful_shutdown_timeout_s",
    "health_check_period_s",
    "http_options",
    "host",
    "port",
    "agents",
];

/// Any JSON value, with objects keyed mostly by the schemas' own keys.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop_oneof![
            Just("auto".to_owned()),
            Just("2GB".to_owned()),
            any::<String>()
        ]
        .prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec(
                (
                    prop_oneof![4 => (0..KEYS.len()).prop_map(|i| KEYS[i].to_owned()), 1 => any::<String>()],
                    inner
                ),
                0..6
            )
            .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

proptest! {
    #[test]
    fn the_deploy_schema_never_panics_on_any_json(value in json()) {
        let bytes = serde_json::to_vec(&value).expect("a JSON value serializes");
        let _ = DeployConfig::from_json(&bytes);
    }

    #[test]
    fn the_deploy_schema_never_panics_on_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = DeployConfig::from_json(&bytes);
    }

    #[test]
    fn a_deploy_file_never_panics_in_any_format(value in json(), format in 0..3usize) {
        let (format, text) = match format {
            0 => (Format::Json, serde_json::to_string(&value).expect("serializes")),
            1 => (Format::Yaml, serde_json::to_string_pretty(&value).expect("serializes")),
            _ => (Format::Toml, toml_text(&value)),
        };
        let _ = parse_serve_config(Path::new("serve.yaml"), &text, format);
    }

    #[test]
    fn rayai_toml_never_panics(value in json()) {
        let _ = ProjectConfig::parse("rayai.toml", &toml_text(&value));
    }

    #[test]
    fn rayai_toml_never_panics_on_any_text(text in "[\\[\\]a-z_.=\"0-9 \\n{}\\-,]{0,200}") {
        let _ = ProjectConfig::parse("rayai.toml", &text);
    }
}

/// `value` as TOML when TOML can say it (a table at the top), else as its JSON text, which is not
/// TOML: either way something for the parser to read.
fn toml_text(value: &Value) -> String {
    toml::to_string(value).unwrap_or_else(|_| value.to_string())
}
