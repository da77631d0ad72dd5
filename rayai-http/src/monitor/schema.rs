//! The shape of Ray Serve's status API, `ServeInstanceDetails` (Ray's
//! `python/ray/serve/schema.py`): its field names, nesting and enum values, so that Ray's own
//! clients and pydantic models read rayai's answer. Where Ray's model allows more fields
//! (`ServeActorDetails` and `ReplicaDetails` ignore unknown ones) rayai adds its own: the
//! server's identity in `controller_info`, each replica's load and history; where it forbids them
//! (`ServeInstanceDetails`, `ApplicationDetails`, `DeploymentDetails`) there are none.

use std::collections::BTreeMap;

use rayai_core::ReplicaState;
use serde::Serialize;
use serde_json::{Map, Value};

/// `GET /api/serve/applications/`.
#[derive(Debug, Serialize)]
pub(crate) struct ServeInstanceDetails {
    pub(crate) controller_info: ControllerInfo,
    /// Ray's `ProxyLocation`: one proxy on every node (here: the one node).
    pub(crate) proxy_location: &'static str,
    pub(crate) http_options: HttpOptionsSchema,
    pub(crate) grpc_options: GrpcOptionsSchema,
    /// By node id.
    pub(crate) proxies: BTreeMap<String, ProxyDetails>,
    /// Ray's `ServeDeployMode`: always `MULTI_APP`.
    pub(crate) deploy_mode: &'static str,
    /// By application name.
    pub(crate) applications: BTreeMap<String, ApplicationDetails>,
    /// Ray's target capacity (a percentage of every deployment's replicas); rayai has none.
    pub(crate) target_capacity: Option<f64>,
    pub(crate) target_groups: Vec<TargetGroup>,
}

/// Ray's `ServeActorDetails`: where a Serve actor runs. rayai's controller, proxy and replicas
/// are no Ray actors: their actor and worker ids are null, and they log to the process's output
/// and the dashboard, not to files of their own.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ActorDetails {
    pub(crate) node_id: String,
    pub(crate) node_ip: String,
    /// The cloud provider's instance id: none.
    pub(crate) node_instance_id: Option<String>,
    pub(crate) actor_id: Option<String>,
    pub(crate) actor_name: String,
    pub(crate) worker_id: Option<String>,
    pub(crate) log_file_path: Option<String>,
}

/// `controller_info`: Ray's `ServeActorDetails` of the controller (this process), and which
/// server this is, which `rayai status` compares with the project it was asked about.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ControllerInfo {
    #[serde(flatten)]
    pub(crate) actor: ActorDetails,
    /// `RAYAI_PROJECT`, which `rayai serve` sets to the project's directory.
    pub(crate) project: Option<String>,
    pub(crate) pid: u32,
    /// Where the server serves (`host:port`).
    pub(crate) address: String,
    pub(crate) started_at_s: f64,
}

/// Ray's `HTTPOptionsSchema`, as the server runs.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct HttpOptionsSchema {
    pub(crate) host: String,
    /// The port bound (a free one when 0 was asked for).
    pub(crate) port: u16,
    pub(crate) root_path: String,
    pub(crate) request_timeout_s: Option<f64>,
    /// Whole seconds, as Ray's field is an integer.
    pub(crate) keep_alive_timeout_s: u64,
    pub(crate) ssl_keyfile: Option<String>,
    pub(crate) ssl_certfile: Option<String>,
}

/// Ray's `gRPCOptionsSchema`: Ray's default port with no servicer functions, which means no
/// gRPC server (rayai has none).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct GrpcOptionsSchema {
    pub(crate) port: u16,
    pub(crate) grpc_servicer_functions: Vec<String>,
}

/// Ray's `ProxyStatus`, of the values rayai's proxy goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(crate) enum ProxyStatus {
    /// Serving.
    Healthy,
    /// Shutting down: `/-/healthz` answers 503, in-flight requests finish.
    Draining,
}

/// Ray's `ProxyDetails`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ProxyDetails {
    #[serde(flatten)]
    pub(crate) actor: ActorDetails,
    pub(crate) status: ProxyStatus,
}

/// Ray's `TargetGroup`: where a load balancer sends a route's traffic (the proxies).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct TargetGroup {
    pub(crate) targets: Vec<Target>,
    pub(crate) route_prefix: String,
    /// Ray's `RequestProtocol`.
    pub(crate) protocol: &'static str,
}

/// Ray's `Target`: one proxy.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Target {
    pub(crate) ip: String,
    pub(crate) port: u16,
    pub(crate) instance_id: String,
    pub(crate) name: String,
}

/// Ray's `ApplicationStatus`, of the values rayai's applications go through (Ray also has
/// `NOT_STARTED` and `DELETING`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(crate) enum ApplicationStatus {
    /// Deployments are starting or updating.
    Deploying,
    /// A deployment could not be started.
    DeployFailed,
    /// Every deployment serves.
    Running,
    /// A deployment lost replicas it could not replace.
    Unhealthy,
}

/// Ray's `ApplicationDetails`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ApplicationDetails {
    pub(crate) name: String,
    /// Null when the application is not routed.
    pub(crate) route_prefix: Option<String>,
    pub(crate) docs_path: Option<String>,
    pub(crate) status: ApplicationStatus,
    pub(crate) message: String,
    pub(crate) last_deployed_time_s: f64,
    /// The config submitted through the declarative API; null for applications deployed in code.
    pub(crate) deployed_app_config: Option<Value>,
    /// Ray's `APIType`: `imperative` (deployed in code) or `declarative`.
    pub(crate) source: &'static str,
    /// By served name: the ingress and every deployment it composes.
    pub(crate) deployments: BTreeMap<String, DeploymentDetails>,
}

/// Ray's `DeploymentStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(crate) enum DeploymentStatus {
    /// Replicas are starting.
    Updating,
    /// Every target replica runs.
    Healthy,
    /// Replicas died or could not be replaced.
    Unhealthy,
    /// The deployment's replicas could not be started.
    DeployFailed,
    /// Autoscaling adds replicas.
    Upscaling,
    /// Autoscaling removes replicas.
    Downscaling,
}

/// Ray's `DeploymentStatusTrigger`, of the values rayai's deployments go through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(crate) enum StatusTrigger {
    /// The deployment's replicas are being started.
    ConfigUpdateStarted,
    /// They all run.
    ConfigUpdateCompleted,
    /// Autoscaling added replicas, which all run.
    UpscaleCompleted,
    /// Autoscaling removed replicas.
    DownscaleCompleted,
    /// Autoscaling is adding or removing replicas.
    Autoscaling,
    /// A replica's constructor failed.
    ReplicaStartupFailed,
    /// A replica died (a failed health check or a panic) and is being replaced.
    HealthCheckFailed,
}

/// Ray's `DeploymentDetails`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct DeploymentDetails {
    pub(crate) name: String,
    pub(crate) status: DeploymentStatus,
    pub(crate) status_trigger: StatusTrigger,
    pub(crate) message: String,
    pub(crate) deployment_config: DeploymentSchema,
    pub(crate) target_num_replicas: u32,
    /// Per replica, as Ray writes it: `CPU`, `GPU` (when any), `memory` (bytes).
    pub(crate) required_resources: Map<String, Value>,
    pub(crate) replicas: Vec<ReplicaDetails>,
}

/// Ray's `DeploymentSchema`: the options the deployment runs with.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct DeploymentSchema {
    pub(crate) name: String,
    /// Set unless the deployment autoscales.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) num_replicas: Option<u32>,
    /// Set when the deployment autoscales.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) autoscaling_config: Option<AutoscalingSchema>,
    pub(crate) max_ongoing_requests: u32,
    /// -1: no limit, as Ray writes it.
    pub(crate) max_queued_requests: i64,
    pub(crate) user_config: Option<Value>,
    pub(crate) graceful_shutdown_timeout_s: f64,
    pub(crate) health_check_period_s: f64,
    pub(crate) health_check_timeout_s: f64,
    pub(crate) ray_actor_options: RayActorOptions,
}

/// Ray's `AutoscalingConfig`, of the settings rayai has.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct AutoscalingSchema {
    pub(crate) min_replicas: u32,
    pub(crate) initial_replicas: Option<u32>,
    pub(crate) max_replicas: u32,
    pub(crate) target_ongoing_requests: f64,
    pub(crate) upscale_delay_s: f64,
    pub(crate) downscale_delay_s: f64,
    pub(crate) downscale_to_zero_delay_s: f64,
}

/// Ray's `RayActorOptionsSchema`: what each replica reserves.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RayActorOptions {
    pub(crate) num_cpus: f64,
    pub(crate) num_gpus: f64,
    /// Bytes.
    pub(crate) memory: u64,
}

/// Ray's `ReplicaDetails`, and rayai's own figures of the replica.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ReplicaDetails {
    #[serde(flatten)]
    pub(crate) actor: ActorDetails,
    pub(crate) replica_id: String,
    pub(crate) state: ReplicaState,
    pub(crate) pid: u32,
    pub(crate) start_time_s: f64,
    /// Requests it serves now.
    pub(crate) ongoing_requests: u32,
    /// Requests it has been given since it started.
    pub(crate) served: u64,
    pub(crate) gpu_ids: Vec<u32>,
    /// Constructor attempts it took to start.
    pub(crate) starts: u32,
    /// Where it runs, for a replica in another process (`host:port`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) address: Option<String>,
    /// Why it stopped, if it died.
    pub(crate) last_error: Option<String>,
}
