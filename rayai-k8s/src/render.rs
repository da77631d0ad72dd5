//! The manifests of a rayai program: what its applications' `#[agent]` attributes become in
//! Kubernetes (see the table in the crate's documentation). [`render`] builds them from
//! [`AppSpec`]s and [`Settings`]; [`Manifests::to_yaml`] prints them as one multi-document YAML,
//! the same bytes for the same program and settings.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec as KubeDeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec,
    MetricIdentifier, MetricSpec, MetricTarget, PodsMetricSource,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapEnvSource, Container, ContainerPort, EmptyDirVolumeSource,
    EnvFromSource, EnvVar, EnvVarSource, HTTPGetAction, Lifecycle, LifecycleHandler,
    ObjectFieldSelector, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements,
    SeccompProfile, SecurityContext, Service, ServiceAccount, ServicePort, ServiceSpec,
    SleepAction, Toleration, Volume, VolumeMount,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use rayai_core::{App, DeploymentConfig};
use serde_json::Value;

use crate::names::{self, object_name, program_name};

/// The GPU resource of NVIDIA's device plugin.
pub const GPU_RESOURCE: &str = "nvidia.com/gpu";

/// The gauge the autoscalers scale on: requests a replica is processing now.
pub const ONGOING_METRIC: &str = "ray_serve_replica_processing_queries";

/// The user the image runs as (the Dockerfiles create it), and the pods' `runAsUser`.
pub const RUN_AS_USER: i64 = 10001;

/// What scales an autoscaling deployment's pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Autoscaler {
    /// A `HorizontalPodAutoscaler` (autoscaling/v2) on a pods metric, served by a metrics
    /// adapter (prometheus-adapter) from the replicas' `/metrics`.
    #[default]
    Hpa,
    /// A KEDA `ScaledObject` with a Prometheus trigger (KEDA must be installed).
    Keda,
}

impl std::str::FromStr for Autoscaler {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "hpa" => Ok(Autoscaler::Hpa),
            "keda" => Ok(Autoscaler::Keda),
            other => Err(format!("unknown autoscaler `{other}`: hpa or keda")),
        }
    }
}

/// The type of the proxy's Service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ServiceType {
    /// Reachable inside the cluster (an Ingress or a Gateway in front).
    #[default]
    ClusterIp,
    /// On a port of every node.
    NodePort,
    /// Behind the cloud's load balancer.
    LoadBalancer,
}

impl ServiceType {
    /// The name Kubernetes gives it.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceType::ClusterIp => "ClusterIP",
            ServiceType::NodePort => "NodePort",
            ServiceType::LoadBalancer => "LoadBalancer",
        }
    }
}

impl std::str::FromStr for ServiceType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "clusterip" => Ok(ServiceType::ClusterIp),
            "nodeport" => Ok(ServiceType::NodePort),
            "loadbalancer" => Ok(ServiceType::LoadBalancer),
            other => Err(format!(
                "unknown service type `{other}`: ClusterIP, NodePort or LoadBalancer"
            )),
        }
    }
}

/// How the program is deployed: the image and where, and the server's options that the pods
/// share.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The container image with the program (`registry.example.org/shop:1.2`).
    pub image: String,
    /// The namespace of every object (none: `kubectl apply -n` chooses).
    pub namespace: Option<String>,
    /// The program's name: the proxy's objects are named after it, the deployments' start with
    /// it (made a DNS label by [`names::program_name`]).
    pub program: String,
    /// What scales autoscaling deployments.
    pub autoscaler: Autoscaler,
    /// The type of the proxy's Service.
    pub service_type: ServiceType,
    /// Pods of the proxy.
    pub proxy_replicas: u32,
    /// The port every pod serves on (the proxy's clients, the replicas' proxies).
    pub http_port: u16,
    /// The port of `/metrics` in every pod (Prometheus scrapes it).
    pub metrics_port: u16,
    /// The program's drain delay: the seconds a stopping process keeps serving while its
    /// clients learn it leaves. On Kubernetes it is the pods' `preStop` pause (the endpoints
    /// update while the process still serves everything); the process then stops at once
    /// (`RAYAI_DRAIN_DELAY_S=0` in the pods) and gives in-flight requests their grace.
    pub drain_delay_s: f64,
    /// Seconds the proxy gives in-flight requests when it stops.
    pub proxy_graceful_shutdown_s: f64,
    /// Node labels GPU deployments' pods must run on (`nvidia.com/gpu.present=true`, say).
    pub gpu_node_selector: BTreeMap<String, String>,
    /// The Prometheus that KEDA's trigger asks.
    pub prometheus_address: String,
}

impl Settings {
    /// The defaults for `image` and `program`: no namespace, HPA, a `ClusterIP` proxy with one
    /// pod, port 8000, metrics on 9090, a 5 s drain delay (rayai's), 20 s of grace for the
    /// proxy.
    pub fn new(image: impl Into<String>, program: impl Into<String>) -> Settings {
        Settings {
            image: image.into(),
            namespace: None,
            program: program.into(),
            autoscaler: Autoscaler::Hpa,
            service_type: ServiceType::ClusterIp,
            proxy_replicas: 1,
            http_port: 8000,
            metrics_port: 9090,
            drain_delay_s: 5.0,
            proxy_graceful_shutdown_s: 20.0,
            gpu_node_selector: BTreeMap::new(),
            prometheus_address: "http://prometheus-operated.monitoring.svc:9090".to_owned(),
        }
    }
}

/// An application to render: its name, route prefix and deployments.
#[derive(Debug, Clone, PartialEq)]
pub struct AppSpec {
    /// The application's name.
    pub name: String,
    /// Where the proxy serves it.
    pub route_prefix: String,
    /// Its deployments.
    pub deployments: Vec<DeploymentSpec>,
}

impl AppSpec {
    /// The application `app` served at `route_prefix`.
    pub fn from_app(app: &App, route_prefix: &str) -> AppSpec {
        AppSpec {
            name: app.name().to_owned(),
            route_prefix: route_prefix.to_owned(),
            deployments: app
                .deployments()
                .iter()
                .map(|d| DeploymentSpec::from_config(d.config()))
                .collect(),
        }
    }
}

/// Autoscaling bounds, as the deployment declares them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scaling {
    /// The fewest replicas (0: scale to zero, which only KEDA does).
    pub min_replicas: u32,
    /// The most replicas.
    pub max_replicas: u32,
    /// The replicas at start.
    pub initial_replicas: u32,
    /// The ongoing requests per replica the autoscaler aims at.
    pub target_ongoing_requests: f64,
    /// Seconds of low load before scaling down.
    pub downscale_delay_s: u64,
}

/// A deployment to render: what its attributes declare.
#[derive(Debug, Clone, PartialEq)]
pub struct DeploymentSpec {
    /// The deployment's name.
    pub name: String,
    /// Its replicas (when not autoscaling).
    pub num_replicas: u32,
    /// Its autoscaling bounds.
    pub autoscaling: Option<Scaling>,
    /// CPUs per replica.
    pub num_cpus: f64,
    /// GPUs per replica.
    pub num_gpus: f64,
    /// Memory per replica, in bytes.
    pub memory_bytes: u64,
    /// Seconds in-flight requests get when a replica stops.
    pub graceful_shutdown_s: f64,
    /// Seconds between health checks.
    pub health_check_period_s: f64,
    /// Seconds a health check may take.
    pub health_check_timeout_s: f64,
}

impl DeploymentSpec {
    /// The deployment `config` declares.
    pub fn from_config(config: &DeploymentConfig) -> DeploymentSpec {
        let resources = config.resources();
        DeploymentSpec {
            name: config.name().to_owned(),
            num_replicas: config.num_replicas(),
            autoscaling: config.autoscaling().map(|a| Scaling {
                min_replicas: a.min_replicas,
                max_replicas: a.max_replicas,
                initial_replicas: a.start_replicas(),
                target_ongoing_requests: a.target_ongoing_requests,
                downscale_delay_s: a.downscale_delay.as_secs(),
            }),
            num_cpus: resources.num_cpus,
            num_gpus: resources.num_gpus,
            memory_bytes: resources.memory_bytes,
            graceful_shutdown_s: config.graceful_shutdown_timeout().as_secs_f64(),
            health_check_period_s: config.health_check_period().as_secs_f64(),
            health_check_timeout_s: config.health_check_timeout().as_secs_f64(),
        }
    }

    /// Its pods at start.
    fn replicas(&self) -> u32 {
        self.autoscaling
            .map_or(self.num_replicas, |s| s.initial_replicas)
    }

    /// Whether it may run 2 pods or more.
    fn several(&self) -> bool {
        self.autoscaling
            .map_or(self.num_replicas >= 2, |s| s.max_replicas >= 2)
    }
}

/// Why a program cannot be rendered.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RenderError {
    /// A deployment asks for part of a GPU: Kubernetes schedules whole devices.
    #[error(
        "deployment `{deployment}` asks for num_gpus = {num_gpus}: Kubernetes gives pods whole \
         GPUs (`nvidia.com/gpu` is a count), so a fraction cannot be rendered. Use a whole \
         number of GPUs, or share devices on the cluster's side: the NVIDIA device plugin's \
         time-slicing (several pods per `nvidia.com/gpu`) or MIG (a GPU partition is a resource \
         of its own, such as `nvidia.com/mig-1g.5gb`), then declare num_gpus = 1"
    )]
    FractionalGpu {
        /// The deployment.
        deployment: String,
        /// What it asks for.
        num_gpus: f64,
    },
    /// Two applications have a deployment of the same name: one name is one set of pods.
    #[error(
        "deployment `{deployment}` is in applications `{first}` and `{second}`: on Kubernetes a \
         deployment name is one set of pods; rename one of them"
    )]
    DuplicateDeployment {
        /// The deployment's name.
        deployment: String,
        /// The first application that has it.
        first: String,
        /// The other.
        second: String,
    },
    /// Nothing to render.
    #[error("the program deployed no application, so there is nothing to render")]
    NoApplications,
    /// A setting cannot be rendered (an empty image, a namespace that is not a DNS label...).
    #[error("{0}")]
    Setting(String),
    /// The rendered objects break a rule of Kubernetes' that its schemas do not check (see
    /// [`crate::check`]).
    #[error("the rendered manifests are not valid: {}", .0.join("; "))]
    Invalid(Vec<String>),
}

/// One rendered object, with the comment printed above it.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// Lines printed as `# ...` before the object.
    pub comment: Option<String>,
    /// The object, as its JSON.
    pub object: Value,
}

impl Document {
    /// The object's `kind`.
    pub fn kind(&self) -> &str {
        self.object["kind"].as_str().unwrap_or_default()
    }

    /// The object's `metadata.name`.
    pub fn name(&self) -> &str {
        self.object["metadata"]["name"].as_str().unwrap_or_default()
    }
}

/// The rendered objects, in the order they are applied: the proxy's account and rights, the
/// server options, the proxy, then each deployment (sorted by name) with its Service, budget
/// and autoscaler.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Manifests {
    /// The objects.
    pub documents: Vec<Document>,
}

impl Manifests {
    /// The objects as one multi-document YAML (`---` between them).
    pub fn to_yaml(&self) -> String {
        let mut out = String::new();
        for doc in &self.documents {
            out.push_str("---\n");
            if let Some(comment) = &doc.comment {
                for line in comment.lines() {
                    out.push_str("# ");
                    out.push_str(line);
                    out.push('\n');
                }
            }
            let yaml = serde_norway::to_string(&doc.object).expect("a JSON value is always YAML");
            out.push_str(&yaml);
            if !yaml.ends_with('\n') {
                out.push('\n');
            }
        }
        out
    }

    /// The object of `kind` named `name`.
    pub fn get(&self, kind: &str, name: &str) -> Option<&Value> {
        self.documents
            .iter()
            .find(|d| d.kind() == kind && d.name() == name)
            .map(|d| &d.object)
    }
}

/// The CPU quantity of `cpus`: millicores (`0.25` is `250m`), whole CPUs as a number (`2`), at
/// least `1m`.
pub fn cpu_quantity(cpus: f64) -> String {
    decimal_quantity(cpus)
}

/// The memory quantity of `bytes`, in the largest binary unit that divides it (RayAI's units
/// are binary: `2GB` is `2Gi`), else in bytes.
pub fn memory_quantity(bytes: u64) -> String {
    for (shift, unit) in [(40, "Ti"), (30, "Gi"), (20, "Mi"), (10, "Ki")] {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

/// `RAYAI_MEMORY` for `bytes`: the quantity with a `B` (`2GiB`), or whole KiB rounded up, so
/// that the replica's reservation fits what the pod declares.
fn memory_env(bytes: u64) -> String {
    let quantity = memory_quantity(bytes);
    if quantity.ends_with('i') {
        format!("{quantity}B")
    } else {
        format!("{}KiB", bytes.div_ceil(1024))
    }
}

/// A decimal quantity for a target such as `target_ongoing_requests` (`2`, `1500m`).
fn decimal_quantity(value: f64) -> String {
    let milli = (value * 1000.0).round().max(1.0) as u64;
    if milli.is_multiple_of(1000) {
        (milli / 1000).to_string()
    } else {
        format!("{milli}m")
    }
}

/// Whole seconds, rounded up.
fn whole_seconds(seconds: f64) -> i64 {
    seconds.max(0.0).ceil() as i64
}

/// The whole GPUs of `deployment`, or why there are none.
fn whole_gpus(deployment: &DeploymentSpec) -> Result<u32, RenderError> {
    let gpus = deployment.num_gpus;
    if gpus == 0.0 {
        return Ok(0);
    }
    if gpus.fract() != 0.0 || !(gpus.is_finite() && gpus > 0.0) {
        return Err(RenderError::FractionalGpu {
            deployment: deployment.name.clone(),
            num_gpus: gpus,
        });
    }
    Ok(gpus as u32)
}

/// Renders `apps` with `settings`: every object the program needs, checked by
/// [`crate::check`].
///
/// # Errors
///
/// A fractional GPU, a deployment name in two applications, no application, a bad setting;
/// [`RenderError::Invalid`] would mean a bug of this function.
pub fn render(settings: &Settings, apps: &[AppSpec]) -> Result<Manifests, RenderError> {
    if apps.is_empty() {
        return Err(RenderError::NoApplications);
    }
    check_settings(settings)?;
    let program = program_name(&settings.program);
    let mut deployments: BTreeMap<&str, (&AppSpec, &DeploymentSpec)> = BTreeMap::new();
    for app in apps {
        for d in &app.deployments {
            if let Some((other, _)) = deployments.insert(&d.name, (app, d)) {
                return Err(RenderError::DuplicateDeployment {
                    deployment: d.name.clone(),
                    first: other.name.clone(),
                    second: app.name.clone(),
                });
            }
            whole_gpus(d)?;
        }
    }
    let r = Renderer { settings, program };
    let mut docs = vec![
        Document::of(None, &r.service_account()),
        Document::of(None, &r.role()),
        Document::of(None, &r.role_binding()),
        Document::of(None, &r.config_map()),
        Document::of(None, &r.proxy_service()),
        Document::of(None, &r.proxy_deployment()),
    ];
    for (app, d) in deployments.values() {
        docs.push(Document::of(None, &r.replica_service(app, d)));
        docs.push(Document::of(None, &r.replica_deployment(app, d)?));
        if d.several() {
            docs.push(Document::of(None, &r.budget(app, d)));
        }
        if let Some(scaling) = d.autoscaling {
            docs.push(match settings.autoscaler {
                Autoscaler::Hpa => Document::of(
                    Some(format!(
                        "Scales {} on the pods metric {ONGOING_METRIC} (requests each replica is \
                         processing),\naiming at {} per pod. It needs a metrics adapter that serves \
                         the pods' /metrics\nas custom metrics (prometheus-adapter, or KEDA: \
                         render with --autoscaler keda).",
                        d.name, scaling.target_ongoing_requests
                    )),
                    &r.hpa(app, d, scaling),
                ),
                Autoscaler::Keda => Document {
                    comment: Some(format!(
                        "KEDA scales {} on Prometheus' sum of {ONGOING_METRIC}.",
                        d.name
                    )),
                    object: r.scaled_object(app, d, scaling),
                },
            });
        }
    }
    let manifests = Manifests { documents: docs };
    let problems = crate::check::check(&manifests);
    if problems.is_empty() {
        Ok(manifests)
    } else {
        Err(RenderError::Invalid(problems))
    }
}

/// Refuses settings that would render invalid objects.
fn check_settings(settings: &Settings) -> Result<(), RenderError> {
    let bad = |m: String| Err(RenderError::Setting(m));
    if settings.image.trim().is_empty() || settings.image.contains(char::is_whitespace) {
        return bad(format!(
            "the image `{}` is not an image reference (registry/name:tag)",
            settings.image
        ));
    }
    if let Some(ns) = &settings.namespace
        && !names::is_dns_label(ns)
    {
        return bad(format!(
            "the namespace `{ns}` is not a DNS label (lowercase letters, digits and `-`, at most \
             63 characters)"
        ));
    }
    if settings.proxy_replicas == 0 {
        return bad("the proxy needs at least 1 pod".to_owned());
    }
    if settings.http_port == 0 || settings.metrics_port == 0 {
        return bad("the ports must not be 0".to_owned());
    }
    if settings.http_port == settings.metrics_port {
        return bad(format!(
            "the serving port and the metrics port are both {}",
            settings.http_port
        ));
    }
    let seconds = |s: f64| s.is_finite() && s >= 0.0;
    if !seconds(settings.drain_delay_s) || !seconds(settings.proxy_graceful_shutdown_s) {
        return bad("the drain delay and the grace period are seconds, 0 or more".to_owned());
    }
    for (key, value) in &settings.gpu_node_selector {
        if !crate::check::is_label_key(key) || !crate::check::is_label_value(value) {
            return bad(format!(
                "the GPU node selector `{key}={value}` is not a label (key=value)"
            ));
        }
    }
    Ok(())
}

impl Document {
    /// The document of a typed object.
    fn of<T: serde::Serialize>(comment: Option<String>, object: &T) -> Document {
        Document {
            comment,
            object: serde_json::to_value(object).expect("Kubernetes objects serialize"),
        }
    }
}

/// What every object is rendered with.
struct Renderer<'a> {
    settings: &'a Settings,
    /// The program's name as a DNS label.
    program: String,
}

impl Renderer<'_> {
    /// The name of the proxy's ServiceAccount, Role and RoleBinding.
    fn account(&self) -> String {
        self.program.clone()
    }

    /// The name of the ConfigMap of server options.
    fn config_name(&self) -> String {
        format!("{}-config", self.program)
    }

    /// Metadata with the program's labels and `component`.
    fn meta(&self, name: &str, component: Option<&str>, extra: &[(&str, String)]) -> ObjectMeta {
        let mut labels = BTreeMap::from([
            (names::NAME_LABEL.to_owned(), self.program.clone()),
            (names::MANAGED_BY_LABEL.to_owned(), "rayai".to_owned()),
        ]);
        if let Some(component) = component {
            labels.insert(names::COMPONENT_LABEL.to_owned(), component.to_owned());
            labels.insert(names::INSTANCE_LABEL.to_owned(), name.to_owned());
        }
        for (k, v) in extra {
            labels.insert((*k).to_owned(), v.clone());
        }
        ObjectMeta {
            name: Some(name.to_owned()),
            namespace: self.settings.namespace.clone(),
            labels: Some(labels),
            ..ObjectMeta::default()
        }
    }

    /// The labels that select the pods of the object `name`.
    fn selector(&self, name: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            (names::NAME_LABEL.to_owned(), self.program.clone()),
            (names::INSTANCE_LABEL.to_owned(), name.to_owned()),
        ])
    }

    /// The labels of a deployment's objects beyond the program's.
    fn deployment_labels(app: &AppSpec, d: &DeploymentSpec) -> Vec<(&'static str, String)> {
        vec![
            (names::APP_LABEL, names::label_value(&app.name)),
            (names::DEPLOYMENT_LABEL, names::label_value(&d.name)),
        ]
    }

    fn service_account(&self) -> ServiceAccount {
        ServiceAccount {
            metadata: self.meta(&self.account(), None, &[]),
            ..ServiceAccount::default()
        }
    }

    /// Read-only rights on what discovery watches: EndpointSlices, and pods for the status.
    fn role(&self) -> Role {
        let verbs = || vec!["get".to_owned(), "list".to_owned(), "watch".to_owned()];
        Role {
            metadata: self.meta(&self.account(), None, &[]),
            rules: Some(vec![
                PolicyRule {
                    api_groups: Some(vec!["discovery.k8s.io".to_owned()]),
                    resources: Some(vec!["endpointslices".to_owned()]),
                    verbs: verbs(),
                    ..PolicyRule::default()
                },
                PolicyRule {
                    api_groups: Some(vec![String::new()]),
                    resources: Some(vec!["pods".to_owned()]),
                    verbs: verbs(),
                    ..PolicyRule::default()
                },
            ]),
        }
    }

    fn role_binding(&self) -> RoleBinding {
        RoleBinding {
            metadata: self.meta(&self.account(), None, &[]),
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".to_owned(),
                kind: "Role".to_owned(),
                name: self.account(),
            },
            subjects: Some(vec![Subject {
                kind: "ServiceAccount".to_owned(),
                name: self.account(),
                namespace: self.settings.namespace.clone(),
                ..Subject::default()
            }]),
        }
    }

    /// The server options every pod reads (`envFrom`): where it listens, its metrics port, its
    /// drain delay, JSON logs. (What differs between pods, the role, is in each one's `env`.)
    fn config_map(&self) -> ConfigMap {
        let s = self.settings;
        let data = BTreeMap::from([
            ("RAYAI_HOST".to_owned(), "0.0.0.0".to_owned()),
            ("RAYAI_PORT".to_owned(), s.http_port.to_string()),
            (
                "RAYAI_METRICS_EXPORT_PORT".to_owned(),
                s.metrics_port.to_string(),
            ),
            // The drain happens before SIGTERM, in the `preStop` pause.
            ("RAYAI_DRAIN_DELAY_S".to_owned(), "0".to_owned()),
            ("RAYAI_LOG_FORMAT".to_owned(), "json".to_owned()),
        ]);
        ConfigMap {
            metadata: self.meta(&self.config_name(), None, &[]),
            data: Some(data),
            ..ConfigMap::default()
        }
    }

    fn ports(&self) -> Vec<ContainerPort> {
        vec![
            ContainerPort {
                name: Some("http".to_owned()),
                container_port: i32::from(self.settings.http_port),
                protocol: Some("TCP".to_owned()),
                ..ContainerPort::default()
            },
            ContainerPort {
                name: Some("metrics".to_owned()),
                container_port: i32::from(self.settings.metrics_port),
                protocol: Some("TCP".to_owned()),
                ..ContainerPort::default()
            },
        ]
    }

    fn service_ports(&self) -> Vec<ServicePort> {
        vec![
            ServicePort {
                name: Some("http".to_owned()),
                port: i32::from(self.settings.http_port),
                target_port: Some(IntOrString::String("http".to_owned())),
                protocol: Some("TCP".to_owned()),
                ..ServicePort::default()
            },
            ServicePort {
                name: Some("metrics".to_owned()),
                port: i32::from(self.settings.metrics_port),
                target_port: Some(IntOrString::String("metrics".to_owned())),
                protocol: Some("TCP".to_owned()),
                ..ServicePort::default()
            },
        ]
    }

    /// A probe of `/-/healthz` on the serving port.
    fn healthz(period_s: i32, timeout_s: i32, failures: i32) -> Probe {
        Probe {
            http_get: Some(HTTPGetAction {
                path: Some("/-/healthz".to_owned()),
                port: IntOrString::String("http".to_owned()),
                ..HTTPGetAction::default()
            }),
            period_seconds: Some(period_s),
            timeout_seconds: Some(timeout_s),
            failure_threshold: Some(failures),
            ..Probe::default()
        }
    }

    /// The environment variable `name` = `value`.
    fn env(name: &str, value: impl Into<String>) -> EnvVar {
        EnvVar {
            name: name.to_owned(),
            value: Some(value.into()),
            ..EnvVar::default()
        }
    }

    /// The pod's namespace, for the discovery.
    fn namespace_env() -> EnvVar {
        EnvVar {
            name: "RAYAI_NAMESPACE".to_owned(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "metadata.namespace".to_owned(),
                    ..ObjectFieldSelector::default()
                }),
                ..EnvVarSource::default()
            }),
            ..EnvVar::default()
        }
    }

    /// The pod template's annotations: Prometheus scrapes `/metrics` on the metrics port.
    fn scrape_annotations(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("prometheus.io/scrape".to_owned(), "true".to_owned()),
            (
                "prometheus.io/port".to_owned(),
                self.settings.metrics_port.to_string(),
            ),
            ("prometheus.io/path".to_owned(), "/metrics".to_owned()),
        ])
    }

    /// A pod running the image: non-root, read-only root file system (a writable `/tmp`), no
    /// capabilities, the server options from the ConfigMap, the probes, a `preStop` pause.
    #[allow(clippy::too_many_arguments)]
    fn pod(
        &self,
        labels: BTreeMap<String, String>,
        env: Vec<EnvVar>,
        resources: ResourceRequirements,
        grace_s: i64,
        liveness_period_s: i32,
        liveness_timeout_s: i32,
        gpu: bool,
    ) -> PodTemplateSpec {
        let container = Container {
            name: "rayai".to_owned(),
            image: Some(self.settings.image.clone()),
            image_pull_policy: Some("IfNotPresent".to_owned()),
            ports: Some(self.ports()),
            env: Some(env),
            env_from: Some(vec![EnvFromSource {
                config_map_ref: Some(ConfigMapEnvSource {
                    name: self.config_name(),
                    optional: Some(false),
                }),
                ..EnvFromSource::default()
            }]),
            resources: Some(resources),
            // Until the process serves (a replica: until its replicas run, models loaded),
            // liveness waits: up to 5 minutes.
            startup_probe: Some(Self::healthz(5, 5, 60)),
            readiness_probe: Some(Self::healthz(2, 2, 1)),
            liveness_probe: Some(Self::healthz(liveness_period_s, liveness_timeout_s, 3)),
            lifecycle: Some(Lifecycle {
                pre_stop: Some(LifecycleHandler {
                    sleep: Some(SleepAction {
                        seconds: self.pre_stop_s(),
                    }),
                    ..LifecycleHandler::default()
                }),
                ..Lifecycle::default()
            }),
            security_context: Some(SecurityContext {
                allow_privilege_escalation: Some(false),
                read_only_root_filesystem: Some(true),
                capabilities: Some(Capabilities {
                    drop: Some(vec!["ALL".to_owned()]),
                    ..Capabilities::default()
                }),
                ..SecurityContext::default()
            }),
            volume_mounts: Some(vec![VolumeMount {
                name: "tmp".to_owned(),
                mount_path: "/tmp".to_owned(),
                ..VolumeMount::default()
            }]),
            ..Container::default()
        };
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(labels),
                annotations: Some(self.scrape_annotations()),
                ..ObjectMeta::default()
            }),
            spec: Some(PodSpec {
                service_account_name: Some(self.account()),
                enable_service_links: Some(false),
                termination_grace_period_seconds: Some(grace_s),
                security_context: Some(PodSecurityContext {
                    run_as_non_root: Some(true),
                    run_as_user: Some(RUN_AS_USER),
                    run_as_group: Some(RUN_AS_USER),
                    seccomp_profile: Some(SeccompProfile {
                        type_: "RuntimeDefault".to_owned(),
                        ..SeccompProfile::default()
                    }),
                    ..PodSecurityContext::default()
                }),
                node_selector: (gpu && !self.settings.gpu_node_selector.is_empty())
                    .then(|| self.settings.gpu_node_selector.clone()),
                tolerations: gpu.then(|| {
                    vec![Toleration {
                        key: Some(GPU_RESOURCE.to_owned()),
                        operator: Some("Exists".to_owned()),
                        effect: Some("NoSchedule".to_owned()),
                        ..Toleration::default()
                    }]
                }),
                volumes: Some(vec![Volume {
                    name: "tmp".to_owned(),
                    empty_dir: Some(EmptyDirVolumeSource::default()),
                    ..Volume::default()
                }]),
                containers: vec![container],
                ..PodSpec::default()
            }),
        }
    }

    /// The `preStop` pause: the drain delay, at least a second.
    fn pre_stop_s(&self) -> i64 {
        whole_seconds(self.settings.drain_delay_s).max(1)
    }

    /// `terminationGracePeriodSeconds` for a process given `grace_s` for in-flight work: the
    /// drain delay (the `preStop` pause) plus the grace.
    fn termination_grace(&self, grace_s: f64) -> i64 {
        self.pre_stop_s() + whole_seconds(grace_s)
    }

    fn proxy_service(&self) -> Service {
        Service {
            metadata: self.meta(&self.program, Some(names::PROXY), &[]),
            spec: Some(ServiceSpec {
                type_: Some(self.settings.service_type.as_str().to_owned()),
                selector: Some(self.selector(&self.program)),
                ports: Some(vec![self.service_ports().swap_remove(0)]),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        }
    }

    fn proxy_deployment(&self) -> Deployment {
        let name = &self.program;
        let meta = self.meta(name, Some(names::PROXY), &[]);
        let env = vec![
            Self::env("RAYAI_ROLE", "proxy"),
            Self::env("RAYAI_DISCOVERY", "kubernetes"),
            Self::env("RAYAI_NAME", self.program.clone()),
            Self::namespace_env(),
        ];
        // The proxy runs no replica: a CPU and a little memory.
        let resources = ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_owned(), Quantity("1".to_owned())),
                ("memory".to_owned(), Quantity("512Mi".to_owned())),
            ])),
            limits: Some(BTreeMap::from([(
                "memory".to_owned(),
                Quantity("512Mi".to_owned()),
            )])),
            ..ResourceRequirements::default()
        };
        let grace = self.termination_grace(self.settings.proxy_graceful_shutdown_s);
        Deployment {
            spec: Some(KubeDeploymentSpec {
                replicas: Some(self.settings.proxy_replicas as i32),
                selector: LabelSelector {
                    match_labels: Some(self.selector(name)),
                    ..LabelSelector::default()
                },
                strategy: Some(rolling(1, 0)),
                template: self.pod(
                    meta.labels.clone().unwrap_or_default(),
                    env,
                    resources,
                    grace,
                    10,
                    5,
                    false,
                ),
                ..KubeDeploymentSpec::default()
            }),
            metadata: meta,
            ..Deployment::default()
        }
    }

    /// A deployment's headless Service: its EndpointSlices are how proxies find the pods (and
    /// its DNS name lists them, for `RAYAI_DISCOVERY=dns`).
    fn replica_service(&self, app: &AppSpec, d: &DeploymentSpec) -> Service {
        let name = object_name(&self.settings.program, &d.name);
        let mut meta = self.meta(
            &name,
            Some(names::REPLICA),
            &Self::deployment_labels(app, d),
        );
        meta.annotations = Some(self.deployment_annotations(app, d));
        Service {
            metadata: meta,
            spec: Some(ServiceSpec {
                cluster_ip: Some("None".to_owned()),
                selector: Some(self.selector(&name)),
                ports: Some(self.service_ports()),
                publish_not_ready_addresses: Some(false),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        }
    }

    fn deployment_annotations(
        &self,
        app: &AppSpec,
        d: &DeploymentSpec,
    ) -> BTreeMap<String, String> {
        BTreeMap::from([
            (names::DEPLOYMENT_ANNOTATION.to_owned(), d.name.clone()),
            ("rayai.io/app-name".to_owned(), app.name.clone()),
            ("rayai.io/route-prefix".to_owned(), app.route_prefix.clone()),
        ])
    }

    fn replica_deployment(
        &self,
        app: &AppSpec,
        d: &DeploymentSpec,
    ) -> Result<Deployment, RenderError> {
        let name = object_name(&self.settings.program, &d.name);
        let mut meta = self.meta(
            &name,
            Some(names::REPLICA),
            &Self::deployment_labels(app, d),
        );
        meta.annotations = Some(self.deployment_annotations(app, d));
        let gpus = whole_gpus(d)?;
        let memory = Quantity(memory_quantity(d.memory_bytes));
        let mut requests = BTreeMap::from([
            ("cpu".to_owned(), Quantity(cpu_quantity(d.num_cpus))),
            ("memory".to_owned(), memory.clone()),
        ]);
        let mut limits = BTreeMap::from([("memory".to_owned(), memory)]);
        if gpus > 0 {
            // Extended resources go in limits; Kubernetes makes the request equal.
            limits.insert(GPU_RESOURCE.to_owned(), Quantity(gpus.to_string()));
        }
        requests.retain(|k, _| k != GPU_RESOURCE);
        let mut env = vec![
            Self::env("RAYAI_ROLE", "replica"),
            Self::env("RAYAI_DEPLOYMENT", d.name.clone()),
            // One replica per pod: Kubernetes scales pods.
            Self::env("RAYAI_NUM_REPLICAS", "1"),
            // Handles to other deployments find their pods as the proxy does.
            Self::env("RAYAI_DISCOVERY", "kubernetes"),
            Self::env("RAYAI_NAME", self.program.clone()),
            // Replicas serve proxies only; the proxy has the dashboard.
            Self::env("RAYAI_DASHBOARD_PORT", "0"),
            Self::namespace_env(),
            // What this pod has, so that its replica fits whatever the node has.
            Self::env("RAYAI_NUM_CPUS", d.num_cpus.to_string()),
            Self::env("RAYAI_MEMORY", memory_env(d.memory_bytes)),
        ];
        if gpus > 0 {
            env.push(Self::env("RAYAI_NUM_GPUS", gpus.to_string()));
        }
        let labels = meta.labels.clone().unwrap_or_default();
        let period = whole_seconds(d.health_check_period_s).clamp(1, 3600) as i32;
        let timeout = whole_seconds(d.health_check_timeout_s).clamp(1, 3600) as i32;
        // A GPU pod cannot surge (there may be no spare GPU): one stops, then one starts.
        let strategy = if gpus > 0 {
            rolling(0, 1)
        } else {
            rolling(1, 0)
        };
        Ok(Deployment {
            spec: Some(KubeDeploymentSpec {
                replicas: Some(d.replicas() as i32),
                selector: LabelSelector {
                    match_labels: Some(self.selector(&name)),
                    ..LabelSelector::default()
                },
                strategy: Some(strategy),
                template: self.pod(
                    labels,
                    env,
                    ResourceRequirements {
                        requests: Some(requests),
                        limits: Some(limits),
                        ..ResourceRequirements::default()
                    },
                    self.termination_grace(d.graceful_shutdown_s),
                    period,
                    timeout,
                    gpus > 0,
                ),
                ..KubeDeploymentSpec::default()
            }),
            metadata: meta,
            ..Deployment::default()
        })
    }

    /// At most one pod of the deployment down at a time for voluntary disruptions (node
    /// drains).
    fn budget(&self, app: &AppSpec, d: &DeploymentSpec) -> PodDisruptionBudget {
        let name = object_name(&self.settings.program, &d.name);
        PodDisruptionBudget {
            metadata: self.meta(
                &name,
                Some(names::REPLICA),
                &Self::deployment_labels(app, d),
            ),
            spec: Some(PodDisruptionBudgetSpec {
                max_unavailable: Some(IntOrString::Int(1)),
                selector: Some(LabelSelector {
                    match_labels: Some(self.selector(&name)),
                    ..LabelSelector::default()
                }),
                ..PodDisruptionBudgetSpec::default()
            }),
            ..PodDisruptionBudget::default()
        }
    }

    fn hpa(&self, app: &AppSpec, d: &DeploymentSpec, s: Scaling) -> HorizontalPodAutoscaler {
        let name = object_name(&self.settings.program, &d.name);
        HorizontalPodAutoscaler {
            metadata: self.meta(
                &name,
                Some(names::REPLICA),
                &Self::deployment_labels(app, d),
            ),
            spec: Some(HorizontalPodAutoscalerSpec {
                scale_target_ref: CrossVersionObjectReference {
                    api_version: Some("apps/v1".to_owned()),
                    kind: "Deployment".to_owned(),
                    name: name.clone(),
                },
                // An HPA does not scale to zero (KEDA does).
                min_replicas: Some(s.min_replicas.max(1) as i32),
                max_replicas: s.max_replicas.max(1) as i32,
                metrics: Some(vec![MetricSpec {
                    type_: "Pods".to_owned(),
                    pods: Some(PodsMetricSource {
                        metric: MetricIdentifier {
                            name: ONGOING_METRIC.to_owned(),
                            ..MetricIdentifier::default()
                        },
                        target: MetricTarget {
                            type_: "AverageValue".to_owned(),
                            average_value: Some(Quantity(decimal_quantity(
                                s.target_ongoing_requests,
                            ))),
                            ..MetricTarget::default()
                        },
                    }),
                    ..MetricSpec::default()
                }]),
                ..HorizontalPodAutoscalerSpec::default()
            }),
            ..HorizontalPodAutoscaler::default()
        }
    }

    /// A KEDA `ScaledObject` (a custom resource: no type in k8s-openapi, built as JSON with the
    /// same metadata as the other objects).
    fn scaled_object(&self, app: &AppSpec, d: &DeploymentSpec, s: Scaling) -> Value {
        let name = object_name(&self.settings.program, &d.name);
        let meta = self.meta(
            &name,
            Some(names::REPLICA),
            &Self::deployment_labels(app, d),
        );
        let query = format!(
            "sum({ONGOING_METRIC}{{application=\"{}\",deployment=\"{}\"}})",
            app.name, d.name
        );
        serde_json::json!({
            "apiVersion": "keda.sh/v1alpha1",
            "kind": "ScaledObject",
            "metadata": serde_json::to_value(&meta).expect("metadata serializes"),
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                "minReplicaCount": s.min_replicas,
                "maxReplicaCount": s.max_replicas.max(1),
                "cooldownPeriod": s.downscale_delay_s.max(1),
                "triggers": [{
                    "type": "prometheus",
                    "metadata": {
                        "serverAddress": self.settings.prometheus_address,
                        "query": query,
                        "threshold": decimal_quantity(s.target_ongoing_requests),
                    }
                }]
            }
        })
    }
}

/// A rolling update with at most `surge` extra pods and `unavailable` missing ones.
fn rolling(surge: i32, unavailable: i32) -> DeploymentStrategy {
    DeploymentStrategy {
        type_: Some("RollingUpdate".to_owned()),
        rolling_update: Some(RollingUpdateDeployment {
            max_surge: Some(IntOrString::Int(surge)),
            max_unavailable: Some(IntOrString::Int(unavailable)),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpus_are_millicores_or_whole() {
        assert_eq!(cpu_quantity(0.25), "250m");
        assert_eq!(cpu_quantity(0.1), "100m");
        assert_eq!(cpu_quantity(1.0), "1");
        assert_eq!(cpu_quantity(2.5), "2500m");
        assert_eq!(cpu_quantity(0.0001), "1m");
    }

    #[test]
    fn memory_is_in_binary_units() {
        assert_eq!(memory_quantity(2 << 30), "2Gi");
        assert_eq!(memory_quantity(512 << 20), "512Mi");
        assert_eq!(memory_quantity(1536 << 20), "1536Mi");
        assert_eq!(memory_quantity(3 << 40), "3Ti");
        assert_eq!(memory_quantity(1000), "1000");
        assert_eq!(memory_quantity(3 << 9), "1536");
        for bytes in [1, 1023, 1024, 5 << 20, (1 << 30) + 1] {
            assert!(crate::check::is_quantity(&memory_quantity(bytes)));
        }
    }

    #[test]
    fn whole_gpus_only() {
        let d = |gpus: f64| DeploymentSpec {
            num_gpus: gpus,
            ..DeploymentSpec::from_config(&DeploymentConfig::new("d"))
        };
        assert_eq!(whole_gpus(&d(0.0)), Ok(0));
        assert_eq!(whole_gpus(&d(2.0)), Ok(2));
        assert!(whole_gpus(&d(1.5)).is_err());
        assert!(whole_gpus(&d(f64::NAN)).is_err());
    }
}
