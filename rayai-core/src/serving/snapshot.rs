//! What the controller publishes: the route table and the applications, immutable once
//! published. The HTTP front, the status API and the metrics read it; only the controller
//! writes a new one.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use serde_json::Value;

use crate::error::Error;
use crate::handle::DeploymentHandle;
use crate::handler::{HttpService, LayerFn};
use crate::route::{Route, RouteTable};

/// What serves one route: its deployment, and for an application's ingress the layers its HTTP
/// service is wrapped in. A route that is not an ingress is an agent, served with the chat
/// contract.
#[derive(Clone)]
pub struct Endpoint {
    deployment: DeploymentHandle,
    ingress: Option<Ingress>,
    openai: Option<Arc<OpenAiRoutes>>,
}

/// Where an agent also answers behind the OpenAI API: under its application's route prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenAiRoutes {
    prefix: String,
    model_suffix: bool,
}

impl OpenAiRoutes {
    pub(crate) fn new(prefix: &str, model_suffix: bool) -> Self {
        OpenAiRoutes {
            prefix: prefix.to_owned(),
            model_suffix,
        }
    }

    /// The application's route prefix: the OpenAI routes are `{prefix}/v1/...`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Whether `model` may name a multiplexed model after a `:` (`agent:model`).
    pub fn model_suffix(&self) -> bool {
        self.model_suffix
    }
}

/// An ingress route: the application's layers, and the service the front built with them.
#[derive(Clone)]
struct Ingress {
    layers: Arc<[LayerFn]>,
    service: OnceLock<HttpService>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("deployment", &self.deployment.name())
            .field("ingress", &self.ingress.is_some())
            .finish()
    }
}

impl Endpoint {
    /// An agent's route, also behind the OpenAI API when `openai` says where.
    pub(crate) fn agent(deployment: DeploymentHandle, openai: Option<OpenAiRoutes>) -> Self {
        Endpoint {
            deployment,
            ingress: None,
            openai: openai.map(Arc::new),
        }
    }

    /// An application's ingress route, wrapped in `layers`.
    pub(crate) fn ingress(deployment: DeploymentHandle, layers: &[LayerFn]) -> Self {
        Endpoint {
            deployment,
            ingress: Some(Ingress {
                layers: layers.into(),
                service: OnceLock::new(),
            }),
            openai: None,
        }
    }

    /// Where the agent answers behind the OpenAI API, if it does.
    pub fn openai(&self) -> Option<&OpenAiRoutes> {
        self.openai.as_deref()
    }

    /// The deployment that serves the route (an agent, or the application's ingress).
    pub fn deployment(&self) -> &DeploymentHandle {
        &self.deployment
    }

    /// Whether the route is an application's ingress (else an agent).
    pub fn is_ingress(&self) -> bool {
        self.ingress.is_some()
    }

    /// The ingress's HTTP service in the application's layers; `None` for an agent. The front
    /// supplies the innermost service (`inner`: the request to the deployment, and its errors as
    /// responses) the first time; the layered service is kept for the routes' lifetime.
    pub fn ingress_service(
        &self,
        inner: impl FnOnce(&DeploymentHandle) -> HttpService,
    ) -> Option<&HttpService> {
        let ingress = self.ingress.as_ref()?;
        Some(ingress.service.get_or_init(|| {
            ingress
                .layers
                .iter()
                .fold(inner(&self.deployment), |service, layer| layer(service))
        }))
    }
}

/// Where an application came from, as Ray Serve's status API says it (`source`).
///
/// # Examples
///
/// ```
/// use rayai_core::AppSource;
///
/// assert_eq!(AppSource::Declarative.as_str(), "declarative");
/// assert_eq!(AppSource::default(), AppSource::Imperative);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum AppSource {
    /// Deployed from code: [`crate::Controller::deploy_app`], `serve::run`, `rayai serve`.
    #[default]
    Imperative,
    /// Deployed from a config ([`crate::Controller::apply_app_declared`]: Ray's
    /// `PUT /api/serve/applications/`, `rayai deploy`).
    Declarative,
}

impl AppSource {
    /// Ray's name for it: `imperative` or `declarative`.
    pub fn as_str(self) -> &'static str {
        match self {
            AppSource::Imperative => "imperative",
            AppSource::Declarative => "declarative",
        }
    }
}

/// Where a version of an application came from: its source and the config it was deployed with.
#[derive(Debug, Clone, Default)]
pub(crate) struct Origin {
    pub(crate) source: AppSource,
    pub(crate) config: Option<Value>,
}

/// An application as served: its name, route prefix and deployments.
#[derive(Debug, Clone)]
pub struct Application {
    name: String,
    route_prefix: String,
    pub(super) deployments: Vec<DeploymentHandle>,
    ingress: Option<DeploymentHandle>,
    deployed_at: SystemTime,
    origin: Origin,
}

impl Application {
    pub(super) fn new(
        name: &str,
        route_prefix: &str,
        deployments: Vec<DeploymentHandle>,
        ingress: Option<DeploymentHandle>,
        deployed_at: SystemTime,
        origin: Origin,
    ) -> Self {
        Application {
            name: name.to_owned(),
            route_prefix: route_prefix.to_owned(),
            deployments,
            ingress,
            deployed_at,
            origin,
        }
    }

    /// The same application, updated in place at `deployed_at` from `origin`.
    pub(super) fn updated(&self, deployed_at: SystemTime, origin: Origin) -> Self {
        Application {
            deployed_at,
            origin,
            ..self.clone()
        }
    }

    /// Where it came from: code ([`AppSource::Imperative`]) or a config
    /// ([`AppSource::Declarative`]).
    pub fn source(&self) -> AppSource {
        self.origin.source
    }

    /// The config it was last deployed or updated with, as given (Ray's `deployed_app_config`);
    /// `None` for an application deployed from code.
    pub fn deployed_config(&self) -> Option<&Value> {
        self.origin.config.as_ref()
    }

    /// The application's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where it is served.
    pub fn route_prefix(&self) -> &str {
        &self.route_prefix
    }

    /// Every deployment it runs: its ingress and what it composes.
    pub fn deployments(&self) -> &[DeploymentHandle] {
        &self.deployments
    }

    /// The deployment that answers at its route prefix, if it has one.
    pub fn ingress(&self) -> Option<&DeploymentHandle> {
        self.ingress.as_ref()
    }

    /// When this version was deployed, or last updated in place.
    pub fn deployed_at(&self) -> SystemTime {
        self.deployed_at
    }
}

/// The routes and applications served at one moment.
///
/// # Examples
///
/// ```
/// use rayai_core::{Controller, NodeResources};
///
/// let controller = Controller::new(NodeResources::new(1.0, 1 << 30));
/// let snapshot = controller.snapshot();
/// assert!(snapshot.lookup("/agents/echo/chat").is_none());
/// assert_eq!(snapshot.applications().count(), 0);
/// ```
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    routes: RouteTable<Endpoint>,
    apps: BTreeMap<String, Application>,
}

impl Snapshot {
    /// The route table.
    pub fn routes(&self) -> &RouteTable<Endpoint> {
        &self.routes
    }

    /// The route for `path` and the rest of the path below its prefix.
    pub fn lookup<'a>(&'a self, path: &'a str) -> Option<(&'a Route<Endpoint>, &'a str)> {
        self.routes.lookup(path)
    }

    /// Every application, by name.
    pub fn applications(&self) -> impl Iterator<Item = &Application> {
        self.apps.values()
    }

    /// The application `name`.
    pub fn application(&self, name: &str) -> Option<&Application> {
        self.apps.get(name)
    }

    /// Every deployment of the applications, each once, by name.
    pub fn deployments(&self) -> Vec<&DeploymentHandle> {
        let mut all: Vec<&DeploymentHandle> = Vec::new();
        for handle in self.apps.values().flat_map(|a| a.deployments.iter()) {
            if !all.iter().any(|d| d.name() == handle.name()) {
                all.push(handle);
            }
        }
        all.sort_by(|a, b| a.name().cmp(b.name()));
        all
    }

    /// The running deployment `name` among the applications'.
    pub fn deployment(&self, name: &str) -> Option<&DeploymentHandle> {
        self.apps
            .values()
            .flat_map(|a| a.deployments.iter())
            .find(|d| d.name() == name)
    }

    pub(super) fn serves_deployment(&self, handle: &DeploymentHandle) -> bool {
        self.apps.values().any(|a| a.deployments.contains(handle))
    }

    pub(super) fn insert_route(
        &mut self,
        prefix: &str,
        app: &str,
        endpoint: Endpoint,
    ) -> Result<(), Error> {
        self.routes.insert(prefix, app, endpoint)
    }

    pub(super) fn insert_app(&mut self, app: Application) {
        self.apps.insert(app.name.clone(), app);
    }

    /// Removes the application `name` and its routes.
    pub(super) fn remove_app(&mut self, name: &str) -> Option<Application> {
        self.routes.remove_app(name);
        self.apps.remove(name)
    }
}

/// A published [`Snapshot`], held for as long as it is read.
pub struct SnapshotRef(arc_swap::Guard<Arc<Snapshot>>);

impl SnapshotRef {
    pub(super) fn new(guard: arc_swap::Guard<Arc<Snapshot>>) -> Self {
        SnapshotRef(guard)
    }
}

impl std::ops::Deref for SnapshotRef {
    type Target = Snapshot;

    fn deref(&self) -> &Snapshot {
        &self.0
    }
}

impl std::fmt::Debug for SnapshotRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        Snapshot::fmt(self, f)
    }
}
