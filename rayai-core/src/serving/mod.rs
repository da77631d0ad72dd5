//! Serving: the controller and everything it runs. A deployment runs as replicas (each on its
//! executor), reached through its router, which holds the queue and picks replicas.
//!
//! | module | job |
//! |---|---|
//! | `controller` | the one owner of state: applications, route prefixes, deploy/redeploy/delete |
//! | `snapshot` | the immutable routes and applications the controller publishes |
//! | `publish` | what deploying an application adds to the snapshot: its routes and applications |
//! | `running` | one running deployment: start, health, replacement, autoscaling, drain |
//! | `router` | picking a replica: power of two choices, rendezvous-hashed sessions, the queue |
//! | `slot` | a reserved place on a replica, the waiter woken when one frees |
//! | `replica` | one replica and its load |
//! | `executor` | where a replica's code runs: its own threads, or the server's runtime |
//! | `autoscale` | the autoscaling decision |
//! | `stats` | the counters and timers the metrics read |

pub(crate) mod autoscale;
mod controller;
pub(crate) mod executor;
pub(crate) mod models;
mod publish;
pub(crate) mod remote;
pub(crate) mod replica;
pub(crate) mod router;
mod running;
pub(crate) mod slot;
mod snapshot;
mod stats;

pub use autoscale::{AutoscalingConfig, Decision};
pub use controller::Controller;
pub use snapshot::{AppSource, Application, Endpoint, OpenAiRoutes, Snapshot, SnapshotRef};
pub use stats::{DeploymentStats, LATENCY_BUCKETS_MS, Latency, ModelStats, ReplicaStats};
