//! The numeric fields of a deployment's configuration, with their bounds: the arguments of
//! `#[agent(...)]`, the keys of an `[agents.<name>]` table in `rayai.toml`, the values
//! `DeploymentConfig::validate` checks.
//!
//! The name is checked by [`crate::name::check_name`], the memory size parsed by
//! [`crate::memory::parse_memory`], and the settings of `autoscaling(...)` are in
//! [`crate::autoscaling`].

use crate::{Bound, Field};

/// CPUs each replica reserves: greater than 0 (`0.5` is half a CPU).
pub const NUM_CPUS: Field = Field::new("num_cpus", Bound::Positive);

/// GPUs each replica reserves: 0 or more.
pub const NUM_GPUS: Field = Field::new("num_gpus", Bound::NonNegative);

/// A fixed number of replicas: 1 or more.
pub const NUM_REPLICAS: Field = Field::new("num_replicas", Bound::AtLeast(1));

/// Requests one replica handles at once: 1 or more.
pub const MAX_ONGOING_REQUESTS: Field = Field::new("max_ongoing_requests", Bound::AtLeast(1));

/// Requests that may wait for a replica: 0 or more, or `-1` for no limit.
pub const MAX_QUEUED_REQUESTS: Field =
    Field::new("max_queued_requests", Bound::NonNegativeOrNoLimit);

/// The `Retry-After` (seconds) of a deployment's `429` under backpressure: 0 or more.
pub const BACKPRESSURE_RETRY_AFTER_S: Field =
    Field::new("backpressure_retry_after_s", Bound::AtLeast(0));

/// Seconds between health checks of a replica: greater than 0.
pub const HEALTH_CHECK_PERIOD_S: Field = Field::new("health_check_period_s", Bound::Positive);

/// Seconds a health check may take: greater than 0.
pub const HEALTH_CHECK_TIMEOUT_S: Field = Field::new("health_check_timeout_s", Bound::Positive);

/// Seconds a stopping replica gets to finish its requests: 0 or more.
pub const GRACEFUL_SHUTDOWN_TIMEOUT_S: Field =
    Field::new("graceful_shutdown_timeout_s", Bound::NonNegative);
