//! A deployment's configuration: replicas, resources per replica, request bounds.

use std::time::Duration;

use crate::autoscale::AutoscalingConfig;

/// Resources one replica reserves on the node.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Resources {
    /// CPUs (fractions allowed).
    pub num_cpus: f64,
    /// GPUs (fractions allowed: two replicas of 0.5 share a device).
    pub num_gpus: f64,
    /// Memory in bytes.
    pub memory_bytes: u64,
}

impl Default for Resources {
    /// RayAI's defaults: 1 CPU, no GPU, 2 GiB.
    fn default() -> Self {
        Resources {
            num_cpus: 1.0,
            num_gpus: 0.0,
            memory_bytes: 2 << 30,
        }
    }
}

/// Where a deployment's replicas run their code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Isolation {
    /// Each replica on threads of its own (as many as its `num_cpus`, rounded up): code that
    /// blocks its thread stalls only that replica. Costs a hop between threads per request.
    #[default]
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
            isolation: Isolation::Thread,
            health_check_period: Duration::from_secs(10),
            health_check_timeout: Duration::from_secs(30),
            graceful_shutdown_timeout: Duration::from_secs(20),
        }
    }

    /// Scales between bounds on ongoing requests instead of a fixed number of replicas
    /// (`num_replicas = "auto"` is [`AutoscalingConfig::auto`]).
    pub fn with_autoscaling(mut self, autoscaling: AutoscalingConfig) -> Self {
        self.autoscaling = Some(autoscaling);
        self
    }

    /// Sets where the replicas run their code.
    pub fn with_isolation(mut self, isolation: Isolation) -> Self {
        self.isolation = isolation;
        self
    }

    /// Where the replicas run their code.
    pub fn isolation(&self) -> Isolation {
        self.isolation
    }

    /// Sets how often each replica's `check_health` runs.
    pub fn with_health_check_period(mut self, period: Duration) -> Self {
        self.health_check_period = period;
        self
    }

    /// Sets how long a health check may take before it counts as failed.
    pub fn with_health_check_timeout(mut self, timeout: Duration) -> Self {
        self.health_check_timeout = timeout;
        self
    }

    /// Sets how long a stopping replica's ongoing requests get to finish.
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
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets the number of replicas.
    pub fn with_num_replicas(mut self, n: u32) -> Self {
        self.num_replicas = n;
        self
    }

    /// Sets the CPUs each replica reserves.
    pub fn with_num_cpus(mut self, cpus: f64) -> Self {
        self.resources.num_cpus = cpus;
        self
    }

    /// Sets the GPUs each replica reserves.
    pub fn with_num_gpus(mut self, gpus: f64) -> Self {
        self.resources.num_gpus = gpus;
        self
    }

    /// Sets the memory each replica reserves, in bytes.
    pub fn with_memory_bytes(mut self, bytes: u64) -> Self {
        self.resources.memory_bytes = bytes;
        self
    }

    /// Sets how many requests one replica serves at once.
    pub fn with_max_ongoing_requests(mut self, n: u32) -> Self {
        self.max_ongoing_requests = n;
        self
    }

    /// Sets how many requests may wait for a replica before new ones are refused.
    pub fn with_max_queued_requests(mut self, n: u32) -> Self {
        self.max_queued_requests = Some(n);
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
    /// [`crate::Error::InvalidConfig`] naming the first bad value.
    pub fn validate(&self) -> crate::Result<()> {
        let bad = |reason: &str| {
            Err(crate::Error::InvalidConfig {
                deployment: self.name.clone(),
                reason: reason.to_owned(),
            })
        };
        if !is_url_safe_name(&self.name) {
            return bad(
                "the name must be non-empty and use only ASCII letters, digits, '_', '-' and '.'",
            );
        }
        if self.num_replicas == 0 {
            return bad("num_replicas must be at least 1");
        }
        if !(self.resources.num_cpus.is_finite() && self.resources.num_cpus > 0.0) {
            return bad("num_cpus must be greater than 0");
        }
        if !(self.resources.num_gpus.is_finite() && self.resources.num_gpus >= 0.0) {
            return bad("num_gpus must be 0 or more");
        }
        if self.max_ongoing_requests == 0 {
            return bad("max_ongoing_requests must be at least 1");
        }
        if let Some(autoscaling) = &self.autoscaling
            && let Err(reason) = autoscaling.validate()
        {
            return bad(&reason);
        }
        if self.health_check_period.is_zero() {
            return bad("health_check_period must be more than 0");
        }
        Ok(())
    }
}

/// Whether a name can stand in a URL path segment as it is.
pub fn is_url_safe_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_names_the_bad_value() {
        let err = DeploymentConfig::new("a")
            .with_num_replicas(0)
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("num_replicas"), "{err}");
        let err = DeploymentConfig::new("a b").validate().unwrap_err();
        assert!(err.to_string().contains("name"), "{err}");
        assert!(DeploymentConfig::new("ok-name_1.v2").validate().is_ok());
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
}
