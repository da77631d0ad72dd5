//! The status the controller publishes: what `/-/routes`, the dashboard, `rayai status` and the
//! metrics read.

use serde::Serialize;

/// A deployment's state, with Ray Serve's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum DeploymentState {
    /// Replicas are starting or being replaced.
    Updating,
    /// Every target replica runs.
    Healthy,
    /// Replicas failed and could not all be replaced yet.
    Unhealthy,
    /// The deployment's replicas could not be started.
    DeployFailed,
}

/// A replica's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum ReplicaState {
    /// Serving requests.
    Running,
    /// Finishing its requests before it stops.
    Stopping,
    /// A replica in another process that refused a connection, reset one or failed its health
    /// probe: out of the set until a probe finds it healthy.
    Unreachable,
}

/// A snapshot of one replica.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplicaStatus {
    /// The replica's id (`echo#0`).
    pub replica_id: String,
    /// Its state.
    pub state: ReplicaState,
    /// Requests it serves now.
    pub ongoing_requests: u32,
    /// Requests it has been given since it started.
    pub served: u64,
    /// Its GPU ids.
    pub gpu_ids: Vec<u32>,
    /// Constructor attempts it took to start.
    pub starts: u32,
    /// Why it stopped, if it died.
    pub last_error: Option<String>,
    /// When it started (its constructor finished); Ray's `start_time_s`. For a replica in
    /// another process, when this process first found it.
    pub start_time: std::time::SystemTime,
    /// Where it runs, for a replica in another process (`host:port`); `None` in this process.
    pub address: Option<String>,
}

/// A snapshot of one deployment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeploymentStatus {
    /// The deployment's name.
    pub name: String,
    /// The name it is shown by (`<name>-deployment` for an agent, as RayAI names it).
    pub served_name: String,
    /// Its state.
    pub status: DeploymentState,
    /// Why it is in that state, when it is not plainly healthy.
    pub message: String,
    /// Replicas it should have.
    pub target_replicas: u32,
    /// Replicas serving now.
    pub running_replicas: u32,
    /// Replicas waiting for resources the node does not have free now (they start when it does).
    pub pending_replicas: u32,
    /// Requests waiting for a replica.
    pub queued_requests: u32,
    /// Replicas started since the deployment was created (replacements included).
    pub replicas_started: u64,
    /// Every replica.
    pub replicas: Vec<ReplicaStatus>,
}
