//! A deployment's configuration: replicas, resources per replica, request bounds.

use std::time::Duration;

use rayai_rules::{Problem, check_name, deployment};

use crate::error::Error;
use crate::node::{PlanRow, Resources};
use crate::serving::autoscale::AutoscalingConfig;

/// What a deployment serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeploymentKind {
    /// An agent: the chat contract at `{prefix}/agents/{name}/chat`.
    Agent,
    /// A handler or ingress: any HTTP, at the application's route prefix.
    Handler,
    /// A typed deployment, reached only through handles.
    Callable,
}

impl DeploymentKind {
    /// The name a deployment of this kind called `name` is known by in `/-/routes`, the status
    /// API and the metrics: an agent's is `<name>-deployment`, as RayAI names the deployment it
    /// makes for each agent; the others keep their own.
    ///
    /// # Examples
    ///
    /// ```
    /// use rayai_core::DeploymentKind;
    ///
    /// assert_eq!(DeploymentKind::Agent.served_name("echo"), "echo-deployment");
    /// assert_eq!(DeploymentKind::Handler.served_name("api"), "api");
    /// ```
    pub fn served_name(self, name: &str) -> std::borrow::Cow<'_, str> {
        match self {
            DeploymentKind::Agent => format!("{name}-deployment").into(),
            _ => name.into(),
        }
    }

    /// The application RayAI serves an agent called `name` as: `<name>-service`.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(rayai_core::DeploymentKind::agent_app_name("echo"), "echo-service");
    /// ```
    pub fn agent_app_name(name: &str) -> String {
        format!("{name}-service")
    }
}

/// Where a deployment's replicas run their code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Isolation {
    /// Each replica has threads of its own (as many as its `num_cpus`, rounded up), and its
    /// calls run in place on the caller's thread while they are quick: no hop between threads.
    /// At most all but one of the server's workers run replica code at once (the others go to
    /// the replica's threads), and a replica whose code once runs over 1 ms without yielding
    /// (it blocks, or computes) sends its calls to its own threads from then on, as
    /// [`Isolation::Thread`] does. A watchdog wakes the runtime's other workers when a call
    /// holds one for over 10 ms, so they keep serving. Code that blocks never stalls the whole
    /// server.
    #[default]
    Auto,
    /// Each replica on threads of its own (as many as its `num_cpus`, rounded up), every call:
    /// code that blocks its thread stalls only that replica. Costs a hop between threads per
    /// request.
    Thread,
    /// On the server's runtime, with no hop: for agents whose code only awaits and never blocks
    /// a thread (a blocking call there would stall other requests).
    Shared,
}

/// How a deployment runs: its name, how many replicas, what each reserves, how many requests
/// each takes at once and how many may wait.
///
/// `#[agent(...)]` builds one from its arguments; handler deployments build one by hand.
///
/// # Examples
///
/// ```
/// use rayai_core::DeploymentConfig;
///
/// let config = DeploymentConfig::new("echo").with_num_replicas(4).with_num_cpus(0.5);
/// assert_eq!(config.name(), "echo");
/// assert_eq!(config.num_replicas(), 4);
/// assert_eq!(config.max_ongoing_requests(), 5);
/// assert_eq!(config.max_queued_requests(), None);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct DeploymentConfig {
    name: String,
    num_replicas: u32,
    autoscaling: Option<AutoscalingConfig>,
    resources: Resources,
    max_ongoing_requests: u32,
    max_queued_requests: Option<u32>,
    isolation: Isolation,
    health_check_period: Duration,
    health_check_timeout: Duration,
    graceful_shutdown_timeout: Duration,
    user_config: Option<serde_json::Value>,
    backpressure_retry_after_s: Option<u32>,
}

impl DeploymentConfig {
    /// The defaults (1 replica, 1 CPU, 2 GiB, 5 ongoing requests, unbounded queue) under a name.
    pub fn new(name: impl Into<String>) -> Self {
        DeploymentConfig {
            name: name.into(),
            num_replicas: 1,
            autoscaling: None,
            resources: Resources::default(),
            max_ongoing_requests: 5,
            max_queued_requests: None,
            isolation: Isolation::Auto,
            health_check_period: Duration::from_secs(10),
            health_check_timeout: Duration::from_secs(30),
            graceful_shutdown_timeout: Duration::from_secs(20),
            user_config: None,
            backpressure_retry_after_s: None,
        }
    }

    /// Sets the deployment's `user_config` (Ray Serve's): handed to each replica's `reconfigure`
    /// when it starts and whenever the config changes, without a restart.
    #[must_use]
    pub fn with_user_config(mut self, user_config: serde_json::Value) -> Self {
        self.user_config = Some(user_config);
        self
    }

    /// The deployment's `user_config`, if it has one.
    pub fn user_config(&self) -> Option<&serde_json::Value> {
        self.user_config.as_ref()
    }

    /// Answers this deployment's backpressure with `429 Too Many Requests` and
    /// `Retry-After: secs` instead of the `503`, whatever the server's default is.
    #[must_use]
    pub fn with_backpressure_retry_after(mut self, secs: u32) -> Self {
        self.backpressure_retry_after_s = Some(secs);
        self
    }

    /// The `Retry-After` this deployment's backpressure answers with (a `429`), when it chose one.
    pub fn backpressure_retry_after_s(&self) -> Option<u32> {
        self.backpressure_retry_after_s
    }

    /// Scales between bounds on ongoing requests instead of a fixed number of replicas
    /// (`num_replicas = "auto"` is [`AutoscalingConfig::auto`]).
    #[must_use]
    pub fn with_autoscaling(mut self, autoscaling: AutoscalingConfig) -> Self {
        self.autoscaling = Some(autoscaling);
        self
    }

    /// A fixed number of replicas again ([`DeploymentConfig::num_replicas`]), no autoscaling: a
    /// config file's `num_replicas` over an attribute's `autoscaling`.
    #[must_use]
    pub fn without_autoscaling(mut self) -> Self {
        self.autoscaling = None;
        self
    }

    /// Sets where the replicas run their code.
    #[must_use]
    pub fn with_isolation(mut self, isolation: Isolation) -> Self {
        self.isolation = isolation;
        self
    }

    /// Where the replicas run their code.
    pub fn isolation(&self) -> Isolation {
        self.isolation
    }

    /// Sets how often each replica's `check_health` runs.
    #[must_use]
    pub fn with_health_check_period(mut self, period: Duration) -> Self {
        self.health_check_period = period;
        self
    }

    /// Sets how long a health check may take before it counts as failed.
    #[must_use]
    pub fn with_health_check_timeout(mut self, timeout: Duration) -> Self {
        self.health_check_timeout = timeout;
        self
    }

    /// Sets how long a stopping replica's ongoing requests get to finish.
    #[must_use]
    pub fn with_graceful_shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.graceful_shutdown_timeout = timeout;
        self
    }

    /// The autoscaling bounds, when the deployment autoscales.
    pub fn autoscaling(&self) -> Option<&AutoscalingConfig> {
        self.autoscaling.as_ref()
    }

    /// Replicas started with the deployment: `num_replicas`, or the autoscaling start.
    pub fn initial_replicas(&self) -> u32 {
        match &self.autoscaling {
            Some(a) => a.start_replicas(),
            None => self.num_replicas,
        }
    }

    /// The replicas that must run for the deployment to start: 1, or `min_replicas` under
    /// autoscaling (0 for scale-to-zero). Replicas beyond it that do not fit wait as pending.
    pub fn min_replicas(&self) -> u32 {
        match &self.autoscaling {
            Some(a) => a.min_replicas,
            None => self.num_replicas.min(1),
        }
    }

    /// How often each replica's health is checked.
    pub fn health_check_period(&self) -> Duration {
        self.health_check_period
    }

    /// How long a health check may take.
    pub fn health_check_timeout(&self) -> Duration {
        self.health_check_timeout
    }

    /// How long a stopping replica's ongoing requests get.
    pub fn graceful_shutdown_timeout(&self) -> Duration {
        self.graceful_shutdown_timeout
    }

    /// Sets the name.
    #[must_use]
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets the number of replicas.
    #[must_use]
    pub fn with_num_replicas(mut self, n: u32) -> Self {
        self.num_replicas = n;
        self
    }

    /// Sets the CPUs each replica reserves.
    #[must_use]
    pub fn with_num_cpus(mut self, cpus: f64) -> Self {
        self.resources.num_cpus = cpus;
        self
    }

    /// Sets the GPUs each replica reserves.
    #[must_use]
    pub fn with_num_gpus(mut self, gpus: f64) -> Self {
        self.resources.num_gpus = gpus;
        self
    }

    /// Sets the memory each replica reserves, in bytes.
    #[must_use]
    pub fn with_memory_bytes(mut self, bytes: u64) -> Self {
        self.resources.memory_bytes = bytes;
        self
    }

    /// Sets how many requests one replica serves at once.
    #[must_use]
    pub fn with_max_ongoing_requests(mut self, n: u32) -> Self {
        self.max_ongoing_requests = n;
        self
    }

    /// Sets how many requests may wait for a replica before new ones are refused.
    #[must_use]
    pub fn with_max_queued_requests(mut self, n: u32) -> Self {
        self.max_queued_requests = Some(n);
        self
    }

    /// No limit on the requests that wait for a replica (`max_queued_requests = -1`).
    #[must_use]
    pub fn without_max_queued_requests(mut self) -> Self {
        self.max_queued_requests = None;
        self
    }

    /// The deployment's name (the agent name in `/agents/{name}/chat`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The number of replicas.
    pub fn num_replicas(&self) -> u32 {
        self.num_replicas
    }

    /// What each replica reserves.
    pub fn resources(&self) -> Resources {
        self.resources
    }

    /// Requests one replica serves at once.
    pub fn max_ongoing_requests(&self) -> u32 {
        self.max_ongoing_requests
    }

    /// Requests that may wait for a free replica; `None` is unbounded.
    pub fn max_queued_requests(&self) -> Option<u32> {
        self.max_queued_requests
    }

    /// Threads the replica's executor gets: its CPUs rounded up, at least one.
    pub fn threads_per_replica(&self) -> usize {
        let cpus = self.resources.num_cpus;
        if cpus.is_finite() && cpus > 1.0 {
            cpus.ceil() as usize
        } else {
            1
        }
    }

    /// Checks the values the type system does not.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming the first bad value.
    pub fn validate(&self) -> Result<(), Error> {
        self.check().map_err(|problem| Error::InvalidConfig {
            deployment: self.name.clone(),
            field: problem.key(),
            reason: problem.to_string(),
        })
    }

    /// The rules of [`DeploymentConfig::validate`], in the order it reports them.
    fn check(&self) -> Result<(), Problem> {
        check_name(&self.name)?;
        deployment::NUM_REPLICAS.check_count(self.num_replicas)?;
        deployment::NUM_CPUS.check(self.resources.num_cpus)?;
        deployment::NUM_GPUS.check(self.resources.num_gpus)?;
        deployment::MAX_ONGOING_REQUESTS.check_count(self.max_ongoing_requests)?;
        if let Some(a) = &self.autoscaling {
            a.validate()?;
        }
        deployment::HEALTH_CHECK_PERIOD_S.check(self.health_check_period.as_secs_f64())?;
        deployment::HEALTH_CHECK_TIMEOUT_S.check(self.health_check_timeout.as_secs_f64())?;
        Ok(())
    }
}

impl PlanRow {
    /// The row of a deployment's configuration: its replicas and what each reserves.
    pub fn from_config(config: &DeploymentConfig) -> Self {
        PlanRow::new(config.name(), config.num_replicas(), config.resources())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The field and message of `config`'s validation error.
    fn invalid(config: DeploymentConfig) -> (&'static str, String) {
        match config.validate() {
            Err(Error::InvalidConfig { field, reason, .. }) => (field, reason),
            other => panic!("expected InvalidConfig, got {other:?}"),
        }
    }

    #[test]
    fn validate_names_the_bad_field_with_the_rule_message() {
        let (field, reason) = invalid(DeploymentConfig::new("a").with_num_replicas(0));
        assert_eq!(
            (field, reason.as_str()),
            ("num_replicas", "num_replicas must be at least 1")
        );
        let (field, reason) = invalid(DeploymentConfig::new("a b"));
        assert_eq!(field, "name");
        assert!(reason.contains("it contains ' '"), "{reason}");
        let (field, _) = invalid(DeploymentConfig::new("a").with_num_cpus(f64::NAN));
        assert_eq!(field, "num_cpus");
        let (field, _) =
            invalid(DeploymentConfig::new("a").with_health_check_period(Duration::ZERO));
        assert_eq!(field, "health_check_period_s");
        assert!(DeploymentConfig::new("ok-name_1.v2").validate().is_ok());
    }

    #[test]
    fn validate_checks_the_autoscaling_settings() {
        let scaling = AutoscalingConfig::new(5, 2, 2.0);
        let (field, reason) = invalid(DeploymentConfig::new("a").with_autoscaling(scaling));
        assert_eq!(field, "autoscaling.max_replicas");
        assert_eq!(reason, "max_replicas must be at least min_replicas (5)");
        let scaling = AutoscalingConfig::new(1, 2, 0.0);
        let (field, _) = invalid(DeploymentConfig::new("a").with_autoscaling(scaling));
        assert_eq!(field, "autoscaling.target_ongoing_requests");
    }

    #[test]
    fn the_error_says_which_deployment_and_what_is_wrong() {
        let err = DeploymentConfig::new("echo")
            .with_num_cpus(0.0)
            .validate()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid configuration for deployment `echo`: num_cpus must be greater than 0"
        );
    }

    #[test]
    fn threads_follow_cpus() {
        assert_eq!(
            DeploymentConfig::new("a")
                .with_num_cpus(0.25)
                .threads_per_replica(),
            1
        );
        assert_eq!(
            DeploymentConfig::new("a")
                .with_num_cpus(2.5)
                .threads_per_replica(),
            3
        );
    }

    const GIB: u64 = 1 << 30;

    #[test]
    fn plan_row_from_config_copies_replicas_and_resources() {
        let config = DeploymentConfig::new("echo")
            .with_num_replicas(3)
            .with_num_gpus(0.5);
        let row = PlanRow::from_config(&config);
        assert_eq!(row, PlanRow::new("echo", 3, config.resources()));
        assert_eq!(row.total().num_gpus, 1.5);
        assert_eq!(row.total().memory_bytes, 6 * GIB);
    }
}
