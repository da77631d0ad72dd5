//! Ray Serve's config file (`ServeDeploySchema`, the body of `PUT /api/serve/applications/` and of
//! `serve deploy`), as serde types. Unknown keys are refused where a typo would silently change
//! nothing (an application, a deployment, its `ray_actor_options` and `autoscaling_config`,
//! `logging_config`); the top level and `http_options` accept keys of newer Ray versions, as Ray
//! does for forward compatibility.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A whole config: the applications to run and the server options it expects.
///
/// # Examples
///
/// ```
/// use rayai_http::deploy::DeployConfig;
///
/// let config = DeployConfig::from_json(br#"{"applications": [{"name": "shop",
///     "import_path": "shop:app", "deployments": [{"name": "ranker", "num_replicas": 2}]}]}"#)
///     .unwrap();
/// assert_eq!(config.applications[0].route_prefix.as_deref(), Some("/"));
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[non_exhaustive]
pub struct DeployConfig {
    /// Where proxies run (`EveryNode`, `HeadOnly`, `Disabled`): one proxy per process here, so
    /// every value means the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_location: Option<ProxyLocation>,
    /// The HTTP options the config expects; they cannot change on a running server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_options: Option<HttpOptionsConfig>,
    /// Ray's gRPC options: accepted, not served (rayai has no gRPC proxy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc_options: Option<Value>,
    /// Ray's logging settings: accepted; rayai's logs follow `RUST_LOG`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging_config: Option<LoggingConfig>,
    /// Ray's target capacity (percent): accepted when null or 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_capacity: Option<f64>,
    /// The applications: every one listed runs, declarative ones not listed are deleted.
    pub applications: Vec<ApplicationConfig>,
}

/// Ray's `ProxyLocation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[non_exhaustive]
pub enum ProxyLocation {
    /// A proxy on every node.
    EveryNode,
    /// A proxy on the head node only.
    HeadOnly,
    /// No proxy.
    Disabled,
}

/// Ray's `HTTPOptionsSchema`: the server's listening options. A value given here that differs
/// from the running server's is refused (they cannot change at run time).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[non_exhaustive]
pub struct HttpOptionsConfig {
    /// Address the server listens on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Port the server listens on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Where the server is mounted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_path: Option<String>,
    /// The server's request timeout (null: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_timeout_s: Option<f64>,
    /// The server's keep-alive timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_alive_timeout_s: Option<f64>,
    /// The TLS key (a path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssl_keyfile: Option<String>,
    /// The TLS certificate (a path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssl_certfile: Option<String>,
}

/// Ray's `LoggingConfig` (accepted; rayai's logs follow `RUST_LOG` and `RAYAI_LOG_FORMAT`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct LoggingConfig {
    /// `TEXT` or `JSON`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    /// A level name or number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_level: Option<Value>,
    /// Where logs go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs_dir: Option<String>,
    /// Whether requests are logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_access_log: Option<bool>,
    /// Extra attributes of Python's log records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_log_standard_attrs: Option<Vec<String>>,
}

fn root_prefix() -> Option<String> {
    Some("/".to_owned())
}

fn default_name() -> String {
    "default".to_owned()
}

/// Ray's `ServeApplicationSchema`: one application, found by its import path, with overrides of
/// its deployments' options.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ApplicationConfig {
    /// The application's name (default `default`), unique in the config.
    #[serde(default = "default_name")]
    pub name: String,
    /// Where it is served (default `/`; an application of agents serves each at
    /// `{route_prefix}/agents/{name}`).
    #[serde(default = "root_prefix")]
    pub route_prefix: Option<String>,
    /// The application compiled into the server, by the name it was registered under.
    pub import_path: String,
    /// Ray's runtime environment: accepted when empty (a Rust binary has its code built in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_env: Option<Value>,
    /// Arguments for the application builder: accepted when empty (builders take none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Value>,
    /// Ray's per-application logging settings (accepted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging_config: Option<LoggingConfig>,
    /// Ray's application-level autoscaling policy: accepted when null.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling_policy: Option<Value>,
    /// Ray's external scaler flag: accepted when false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_scaler_enabled: Option<bool>,
    /// Refused: Ray sets the host in `http_options` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<Value>,
    /// Refused: Ray sets the port in `http_options` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<Value>,
    /// Overrides of the options its deployments declare in code.
    #[serde(default)]
    pub deployments: Vec<DeploymentOverride>,
}

/// `num_replicas`: a count, or `"auto"` (autoscaling with Ray's defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumReplicas {
    /// A fixed number of replicas.
    Count(u32),
    /// `"auto"`.
    Auto,
}

impl Serialize for NumReplicas {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            NumReplicas::Count(n) => s.serialize_u32(*n),
            NumReplicas::Auto => s.serialize_str("auto"),
        }
    }
}

impl<'de> Deserialize<'de> for NumReplicas {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = NumReplicas;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer >= 1 or \"auto\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<NumReplicas, E> {
                match u32::try_from(v) {
                    Ok(n) if n >= 1 => Ok(NumReplicas::Count(n)),
                    _ => Err(E::custom(format!(
                        "num_replicas must be an integer >= 1 or \"auto\" (got {v})"
                    ))),
                }
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<NumReplicas, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(-1))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<NumReplicas, E> {
                Err(E::custom(format!(
                    "num_replicas must be an integer >= 1 or \"auto\" (got {v})"
                )))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<NumReplicas, E> {
                if v == "auto" {
                    Ok(NumReplicas::Auto)
                } else {
                    Err(E::custom(format!(
                        "num_replicas must be an integer >= 1 or \"auto\" (got {v:?})"
                    )))
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// Ray's `DeploymentSchema`: the options of one deployment that the config overrides. Options
/// left out keep the value the code declares.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct DeploymentOverride {
    /// The deployment: its name in code, or the name it is shown by (`<agent>-deployment`).
    pub name: String,
    /// A fixed number of replicas, or `"auto"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_replicas: Option<NumReplicas>,
    /// Autoscaling bounds (instead of `num_replicas`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling_config: Option<AutoscalingOverride>,
    /// Requests one replica serves at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ongoing_requests: Option<u32>,
    /// Requests that may wait for a replica; -1 is no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_queued_requests: Option<i64>,
    /// What each replica's `reconfigure` gets (a JSON object).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_config: Option<Value>,
    /// What each replica reserves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ray_actor_options: Option<ActorOptions>,
    /// Time a stopping replica's requests get to finish.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graceful_shutdown_timeout_s: Option<f64>,
    /// Ray's wait loop before shutting down (accepted; replicas stop when idle or at the timeout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graceful_shutdown_wait_loop_s: Option<f64>,
    /// How often each replica's health is checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_period_s: Option<f64>,
    /// How long a health check may take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_timeout_s: Option<f64>,
    /// Ray's per-replica logging settings (accepted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging_config: Option<LoggingConfig>,
    /// Ray's placement groups: accepted when null (one node here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement_group_bundles: Option<Value>,
    /// Ray's placement group strategy: accepted when null.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement_group_strategy: Option<Value>,
    /// Ray's replicas per node: accepted when null.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_replicas_per_node: Option<Value>,
    /// Ray's request router: accepted when null (rayai's is power of two choices).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_router_config: Option<Value>,
}

/// Ray's `ray_actor_options`: what each replica reserves.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ActorOptions {
    /// CPUs per replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_cpus: Option<f64>,
    /// GPUs per replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_gpus: Option<f64>,
    /// Memory per replica, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<f64>,
    /// Ray's runtime environment: accepted when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_env: Option<Value>,
    /// Ray's custom resources: accepted when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Value>,
    /// Ray's accelerator type: accepted when null.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accelerator_type: Option<Value>,
}

/// Ray's `autoscaling_config`. Options Ray's policy has and rayai's does not (smoothing factors,
/// look-back period) are accepted and have no effect.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct AutoscalingOverride {
    /// Fewest replicas (0 scales to zero).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_replicas: Option<u32>,
    /// Replicas at start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_replicas: Option<u32>,
    /// Most replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_replicas: Option<u32>,
    /// Ongoing requests per replica the autoscaler aims for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_ongoing_requests: Option<f64>,
    /// Time the load must stay high before scaling up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upscale_delay_s: Option<f64>,
    /// Time the load must stay low before scaling down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downscale_delay_s: Option<f64>,
    /// Time without requests before scaling from one replica to zero.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downscale_to_zero_delay_s: Option<f64>,
    /// Ray's metrics interval (no effect).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_interval_s: Option<f64>,
    /// Ray's look-back period (no effect).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub look_back_period_s: Option<f64>,
    /// Ray's smoothing factor (no effect).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smoothing_factor: Option<f64>,
    /// Ray's upscale smoothing factor (no effect).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upscale_smoothing_factor: Option<f64>,
    /// Ray's downscale smoothing factor (no effect).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downscale_smoothing_factor: Option<f64>,
    /// Ray's upscaling factor (no effect).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upscaling_factor: Option<f64>,
    /// Ray's downscaling factor (no effect).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downscaling_factor: Option<f64>,
    /// Ray's aggregation function (no effect).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregation_function: Option<Value>,
    /// Ray's custom policy: accepted when null.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<Value>,
}

/// A config that does not parse: the path of the bad field (`applications[0].deployments[1].
/// num_replicas`) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaError {
    /// Where, as a path from the top of the config (empty: the whole document).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for SchemaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() || self.path == "." {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for SchemaError {}

impl DeployConfig {
    /// A config of these applications, with no server options.
    pub fn new(applications: Vec<ApplicationConfig>) -> Self {
        DeployConfig {
            proxy_location: None,
            http_options: None,
            grpc_options: None,
            logging_config: None,
            target_capacity: None,
            applications,
        }
    }

    /// Parses a JSON document (the body Ray's CLI sends).
    ///
    /// # Errors
    ///
    /// [`SchemaError`] with the path of the field at fault.
    pub fn from_json(bytes: &[u8]) -> Result<Self, SchemaError> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let config = Self::deserialize_from(&mut de)?;
        de.end().map_err(|e| SchemaError {
            path: String::new(),
            message: e.to_string(),
        })?;
        Ok(config)
    }

    /// Parses from any serde deserializer (YAML, TOML), keeping the path of a bad field.
    ///
    /// # Errors
    ///
    /// [`SchemaError`] with the path of the field at fault and the format's own message.
    pub fn deserialize_from<'de, D>(de: D) -> Result<Self, SchemaError>
    where
        D: Deserializer<'de>,
        D::Error: fmt::Display,
    {
        serde_path_to_error::deserialize(de).map_err(|e| SchemaError {
            path: e.path().to_string(),
            message: e.inner().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_field_is_named_by_its_path() {
        let e = DeployConfig::from_json(
            br#"{"applications": [{"import_path": "a:b", "deployments": [{"name": "x", "num_replicas": 0}]}]}"#,
        )
        .unwrap_err();
        assert_eq!(e.path, "applications[0].deployments[0].num_replicas");
        assert!(e.message.contains(">= 1"), "{e}");
        let e = DeployConfig::from_json(
            br#"{"applications": [{"import_path": "a:b", "deployments": [{"name": "x", "num_replica": 2}]}]}"#,
        )
        .unwrap_err();
        assert_eq!(e.path, "applications[0].deployments[0].num_replica");
        assert!(e.message.contains("num_replica"), "{e}");
        let e = DeployConfig::from_json(br#"{"applications": [{"name": "a"}]}"#).unwrap_err();
        assert!(e.to_string().contains("import_path"), "{e}");
        let e = DeployConfig::from_json(b"{}").unwrap_err();
        assert!(e.message.contains("applications"), "{e}");
    }

    #[test]
    fn newer_top_level_keys_are_accepted_and_defaults_are_ray_s() {
        let c = DeployConfig::from_json(
            br#"{"proxy_location": "EveryNode", "http_options": {"host": "0.0.0.0", "port": 8000, "future": 1},
                "grpc_options": {"port": 9000, "grpc_servicer_functions": []}, "future_key": true,
                "applications": [{"import_path": "a:b", "deployments": [{"name": "x", "num_replicas": "auto",
                "ray_actor_options": {"num_cpus": 0.5, "memory": 1073741824}}]}]}"#,
        )
        .unwrap();
        let app = &c.applications[0];
        assert_eq!(app.name, "default");
        assert_eq!(app.route_prefix.as_deref(), Some("/"));
        assert_eq!(app.deployments[0].num_replicas, Some(NumReplicas::Auto));
        assert_eq!(c.http_options.unwrap().port, Some(8000));
    }
}
