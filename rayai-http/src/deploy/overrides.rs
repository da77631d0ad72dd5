//! A config's deployment options applied on top of what an application declares in code.

use rayai_core::{App, AutoscalingConfig, Deployment, DeploymentConfig, Error as CoreError};
use rayai_rules::{Field, autoscaling, deployment};
use serde_json::Value;

use super::error::DeployError;
use super::schema::{ApplicationConfig, AutoscalingOverride, DeploymentOverride, NumReplicas};

/// `app` with the overrides of `config` (the `index`th application of its file), checked as the
/// code's own options are: the first problem is named by its path.
pub(crate) fn apply(
    app: App,
    config: &ApplicationConfig,
    index: usize,
) -> Result<App, DeployError> {
    let at = |field: &str| format!("applications[{index}].{field}");
    let mut configs = Vec::new();
    for (j, o) in config.deployments.iter().enumerate() {
        let path = |field: &str| at(&format!("deployments[{j}].{field}"));
        let Some(found) = app.deployments().iter().find(|d| {
            d.config().name() == o.name || d.kind().served_name(d.config().name()) == o.name
        }) else {
            return Err(DeployError::UnknownDeployment {
                path: at(&format!("deployments[{j}].name")),
                name: o.name.clone(),
                import_path: config.import_path.clone(),
                known: app
                    .deployments()
                    .iter()
                    .map(|d| d.config().name().to_owned())
                    .collect(),
            });
        };
        if configs
            .iter()
            .any(|(n, _): &(String, _)| n == found.config().name())
        {
            return Err(DeployError::invalid(
                path("name"),
                format!("deployment `{}` is configured twice", o.name),
            ));
        }
        let c = override_config(found.config().clone(), o, &path)?;
        c.validate().map_err(|e| match e {
            CoreError::InvalidConfig { field, reason, .. } => {
                DeployError::invalid(path(&config_key(field)), reason)
            }
            other => DeployError::invalid(path("name"), other.to_string()),
        })?;
        configs.push((found.config().name().to_owned(), c));
    }
    Ok(app
        .with_name(config.name.clone())
        .map_deployments(|d: Deployment| {
            match configs.iter().find(|(n, _)| n == d.config().name()) {
                Some((_, c)) => {
                    let c = c.clone();
                    d.map_config(|_| c)
                }
                None => d,
            }
        }))
}

/// The config file's key for a rule's key (`num_cpus` is `ray_actor_options.num_cpus` there).
fn config_key(rule_key: &str) -> String {
    match rule_key {
        "num_cpus" | "num_gpus" => format!("ray_actor_options.{rule_key}"),
        key => match key.strip_prefix("autoscaling.") {
            Some(rest) => format!("autoscaling_config.{rest}"),
            None => key.to_owned(),
        },
    }
}

fn override_config(
    mut c: DeploymentConfig,
    o: &DeploymentOverride,
    path: &dyn Fn(&str) -> String,
) -> Result<DeploymentConfig, DeployError> {
    let secs = |v: f64, field: Field, key: &str| {
        field
            .check_seconds(v)
            .map_err(|p| DeployError::invalid(path(key), p.to_string()))
    };
    if o.num_replicas.is_some_and(|n| n != NumReplicas::Auto) && o.autoscaling_config.is_some() {
        return Err(DeployError::invalid(
            path("num_replicas"),
            "Manually setting num_replicas is not allowed when autoscaling_config is provided."
                .to_owned(),
        ));
    }
    match o.num_replicas {
        Some(NumReplicas::Count(n)) => {
            c = c.without_autoscaling().with_num_replicas(n);
        }
        Some(NumReplicas::Auto) if o.autoscaling_config.is_none() => {
            c = c.with_autoscaling(AutoscalingConfig::auto());
        }
        _ => {}
    }
    if let Some(a) = &o.autoscaling_config {
        let base = if o.num_replicas == Some(NumReplicas::Auto) {
            Some(AutoscalingConfig::auto())
        } else {
            c.autoscaling().cloned()
        };
        c = c.with_autoscaling(autoscaling_from(base, a, path)?);
    }
    if let Some(n) = o.max_ongoing_requests {
        c = c.with_max_ongoing_requests(n);
    }
    match o.max_queued_requests {
        None => {}
        Some(-1) => c = c.without_max_queued_requests(),
        Some(n) => match u32::try_from(n) {
            Ok(n) if n >= 1 => c = c.with_max_queued_requests(n),
            _ => {
                return Err(DeployError::invalid(
                    path("max_queued_requests"),
                    "max_queued_requests must be -1 (no limit) or a positive integer.".to_owned(),
                ));
            }
        },
    }
    if let Some(user_config) = &o.user_config {
        if !user_config.is_object() && !user_config.is_null() {
            return Err(DeployError::invalid(
                path("user_config"),
                "user_config must be an object (a dict)".to_owned(),
            ));
        }
        if !user_config.is_null() {
            c = c.with_user_config(user_config.clone());
        }
    }
    if let Some(r) = &o.ray_actor_options {
        if let Some(v) = r.num_cpus {
            c = c.with_num_cpus(v);
        }
        if let Some(v) = r.num_gpus {
            c = c.with_num_gpus(v);
        }
        if let Some(v) = r.memory {
            if !(v.is_finite() && v >= 0.0 && v <= u64::MAX as f64) {
                return Err(DeployError::invalid(
                    path("ray_actor_options.memory"),
                    format!("memory must be a number of bytes, 0 or greater (got {v})"),
                ));
            }
            c = c.with_memory_bytes(v as u64);
        }
        not_set(&r.runtime_env, &path("ray_actor_options.runtime_env"))?;
        not_set(&r.resources, &path("ray_actor_options.resources"))?;
        not_set(
            &r.accelerator_type,
            &path("ray_actor_options.accelerator_type"),
        )?;
    }
    if let Some(v) = o.graceful_shutdown_timeout_s {
        let key = "graceful_shutdown_timeout_s";
        c = c.with_graceful_shutdown_timeout(secs(
            v,
            deployment::GRACEFUL_SHUTDOWN_TIMEOUT_S,
            key,
        )?);
    }
    if let Some(v) = o.graceful_shutdown_wait_loop_s {
        secs(
            v,
            Field::new(
                "graceful_shutdown_wait_loop_s",
                rayai_rules::Bound::NonNegative,
            ),
            "graceful_shutdown_wait_loop_s",
        )?;
    }
    if let Some(v) = o.health_check_period_s {
        let key = "health_check_period_s";
        c = c.with_health_check_period(secs(v, deployment::HEALTH_CHECK_PERIOD_S, key)?);
    }
    if let Some(v) = o.health_check_timeout_s {
        let key = "health_check_timeout_s";
        c = c.with_health_check_timeout(secs(v, deployment::HEALTH_CHECK_TIMEOUT_S, key)?);
    }
    not_set(&o.placement_group_bundles, &path("placement_group_bundles"))?;
    not_set(
        &o.placement_group_strategy,
        &path("placement_group_strategy"),
    )?;
    not_set(&o.max_replicas_per_node, &path("max_replicas_per_node"))?;
    not_set(&o.request_router_config, &path("request_router_config"))?;
    Ok(c)
}

/// Refuses a Ray option rayai cannot honour on one node, unless it is null or empty.
pub(crate) fn not_set(value: &Option<Value>, path: &str) -> Result<(), DeployError> {
    let empty = match value {
        None | Some(Value::Null) => true,
        Some(Value::Object(m)) => m.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        Some(Value::String(s)) => s.is_empty(),
        Some(_) => false,
    };
    if empty {
        Ok(())
    } else {
        Err(DeployError::invalid(
            path.to_owned(),
            "rayai does not support this Ray option (one node, code compiled in); leave it out \
             or null"
                .to_owned(),
        ))
    }
}

fn autoscaling_from(
    base: Option<AutoscalingConfig>,
    a: &AutoscalingOverride,
    path: &dyn Fn(&str) -> String,
) -> Result<AutoscalingConfig, DeployError> {
    let key = |k: &str| path(&format!("autoscaling_config.{k}"));
    let mut cfg = base.unwrap_or_else(|| {
        AutoscalingConfig::new(1, 1, AutoscalingConfig::DEFAULT_TARGET_ONGOING_REQUESTS)
    });
    if let Some(v) = a.min_replicas {
        cfg.min_replicas = v;
    }
    if let Some(v) = a.max_replicas {
        cfg.max_replicas = v;
    }
    if let Some(v) = a.target_ongoing_requests {
        cfg.target_ongoing_requests = v;
    }
    if a.initial_replicas.is_some() {
        cfg.initial_replicas = a.initial_replicas;
    }
    let delay = |v: f64, field: Field, name: &str| {
        field
            .check_seconds(v)
            .map_err(|p| DeployError::invalid(key(name), p.to_string()))
    };
    if let Some(v) = a.upscale_delay_s {
        cfg.upscale_delay = delay(v, autoscaling::UPSCALE_DELAY_S, "upscale_delay_s")?;
    }
    if let Some(v) = a.downscale_delay_s {
        cfg.downscale_delay = delay(v, autoscaling::DOWNSCALE_DELAY_S, "downscale_delay_s")?;
        if a.downscale_to_zero_delay_s.is_none() {
            cfg.downscale_to_zero_delay = cfg.downscale_delay;
        }
    }
    if let Some(v) = a.downscale_to_zero_delay_s {
        let field = autoscaling::DOWNSCALE_TO_ZERO_DELAY_S;
        cfg.downscale_to_zero_delay = delay(v, field, "downscale_to_zero_delay_s")?;
    }
    not_set(&a.policy, &key("policy"))?;
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rayai_core::{Agent, AgentError};

    struct Nop;
    impl Agent for Nop {
        async fn run(&self, data: Value) -> Result<Value, AgentError> {
            Ok(data)
        }
    }

    /// An app whose one agent `echo` autoscales, queues at most 4 and has a user_config.
    fn app() -> App {
        let config = DeploymentConfig::new("echo")
            .with_autoscaling(AutoscalingConfig::new(1, 3, 2.0))
            .with_max_queued_requests(4)
            .with_user_config(serde_json::json!({"a": 1}));
        App::named("code").deployment(Deployment::from_fn(config, |_| async { Ok(Nop) }))
    }

    fn applied(deployments: Value) -> Result<DeploymentConfig, DeployError> {
        let config: ApplicationConfig = serde_json::from_value(serde_json::json!({
            "name": "declared", "import_path": "x:y", "deployments": deployments,
        }))
        .unwrap();
        let app = apply(app(), &config, 0)?;
        assert_eq!(app.name(), "declared");
        Ok(app.deployments()[0].config().clone())
    }

    #[test]
    fn a_fixed_count_turns_autoscaling_off_and_keeps_the_rest() {
        let c =
            applied(serde_json::json!([{"name": "echo-deployment", "num_replicas": 2}])).unwrap();
        assert_eq!((c.num_replicas(), c.autoscaling()), (2, None));
        assert_eq!(c.max_queued_requests(), Some(4));
        assert_eq!(c.user_config(), Some(&serde_json::json!({"a": 1})));
    }

    #[test]
    fn auto_autoscaling_and_an_unbounded_queue() {
        let c = applied(serde_json::json!([{"name": "echo", "num_replicas": "auto",
            "autoscaling_config": {"max_replicas": 7}, "max_queued_requests": -1}]))
        .unwrap();
        let a = c.autoscaling().unwrap();
        assert_eq!(a.max_replicas, 7);
        assert_eq!(a.min_replicas, AutoscalingConfig::auto().min_replicas);
        assert_eq!(c.max_queued_requests(), None);
        let c = applied(serde_json::json!([{"name": "echo",
            "autoscaling_config": {"min_replicas": 0, "downscale_delay_s": 5}}]))
        .unwrap();
        let a = c.autoscaling().unwrap();
        assert_eq!((a.min_replicas, a.max_replicas), (0, 3));
        assert_eq!(a.downscale_to_zero_delay, std::time::Duration::from_secs(5));
    }

    #[test]
    fn refusals_name_the_config_key() {
        let path = |deployments| match applied(deployments) {
            Err(DeployError::Schema(e)) => e.path,
            other => panic!("{other:?}"),
        };
        let cases = [
            (
                serde_json::json!([{"name": "echo", "max_queued_requests": 0}]),
                "max_queued_requests",
            ),
            (
                serde_json::json!([{"name": "echo", "ray_actor_options": {"num_gpus": -1}}]),
                "ray_actor_options.num_gpus",
            ),
            (
                serde_json::json!([{"name": "echo", "ray_actor_options": {"memory": -1}}]),
                "ray_actor_options.memory",
            ),
            (
                serde_json::json!([{"name": "echo", "ray_actor_options": {"resources": {"TPU": 1}}}]),
                "ray_actor_options.resources",
            ),
            (
                serde_json::json!([{"name": "echo", "health_check_period_s": 0}]),
                "health_check_period_s",
            ),
            (
                serde_json::json!([{"name": "echo"}, {"name": "echo-deployment"}]),
                "name",
            ),
        ];
        for (deployments, key) in cases {
            let got = path(deployments.clone());
            assert!(got.ends_with(key), "{deployments}: {got}");
            assert!(got.starts_with("applications[0].deployments["), "{got}");
        }
    }
}
