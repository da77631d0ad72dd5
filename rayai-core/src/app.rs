//! Applications: the deployments served together.

use std::convert::Infallible;

use crate::agent::Agent;
use crate::agent::Deploy;
use crate::callable::Callable;
use crate::config::DeploymentKind;
use crate::deployment::Deployment;
use crate::error::Error;
use crate::handler::Handler;
use crate::handler::{HttpBody, HttpService, LayerFn};

/// The deployments served together at one route prefix.
///
/// # Examples
///
/// ```
/// use rayai_core::{Agent, AgentError, App, Deployment, DeploymentConfig};
/// use serde_json::Value;
///
/// struct Echo;
/// impl Agent for Echo {
///     async fn run(&self, data: Value) -> Result<Value, AgentError> { Ok(data) }
/// }
/// let app = App::new().deployment(Deployment::from_fn(DeploymentConfig::new("echo"), |_| async { Ok(Echo) }));
/// assert_eq!(app.deployments().len(), 1);
/// ```
#[derive(Clone, Default)]
pub struct App {
    name: Option<String>,
    deployments: Vec<Deployment>,
    layers: Vec<LayerFn>,
    /// Agents an application with an ingress also serves at `/agents/{name}`.
    exposed: Vec<String>,
    /// Whether its agents answer behind the OpenAI API (`None`: when it has no ingress).
    openai: Option<bool>,
    /// Whether an OpenAI `model` of the form `agent:model` names a multiplexed model.
    openai_model_suffix: bool,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("name", &self.name())
            .field("deployments", &self.deployments)
            .field("layers", &self.layers.len())
            .field("exposed", &self.exposed)
            .field("openai", &self.serves_openai())
            .field("openai_model_suffix", &self.openai_model_suffix)
            .finish()
    }
}

/// An `#[agent]` registered at compile time, found by [`App::discover`].
#[doc(hidden)]
#[derive(Debug)]
pub struct Registration {
    name: &'static str,
    deployment: fn() -> Deployment,
}

impl Registration {
    /// A registration: the agent's name and how to build its deployment.
    pub const fn new(name: &'static str, deployment: fn() -> Deployment) -> Self {
        Registration { name, deployment }
    }
}

inventory::collect!(Registration);

impl App {
    /// An application with no deployments yet, named `default` (as Ray Serve names it).
    pub fn new() -> Self {
        App::default()
    }

    /// An application with a name: deploying another app of the same name replaces it.
    pub fn named(name: impl Into<String>) -> Self {
        App {
            name: Some(name.into()),
            ..App::default()
        }
    }

    /// The same application under another name (a declarative config names the applications it
    /// deploys): its deployments, layers and exposed agents unchanged.
    ///
    /// # Examples
    ///
    /// ```
    /// use rayai_core::App;
    ///
    /// assert_eq!(App::new().with_name("shop").name(), "shop");
    /// ```
    #[must_use]
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The application's name (`default` unless named).
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or("default")
    }

    /// Adds the handler type `T` (`#[deployment(...)]`); the first handler or ingress of an app
    /// answers at its route prefix.
    #[must_use]
    pub fn handler<T: Deploy + Handler>(self) -> Self {
        self.deployment(Deployment::handler::<T>())
    }

    /// Adds the typed deployment `T` (reached through handles).
    #[must_use]
    pub fn callable<T: Deploy + Callable>(self) -> Self {
        self.deployment(Deployment::callable::<T>())
    }

    /// Wraps the application's HTTP face (its ingress) in a tower layer: CORS, auth, limits.
    /// Layers added later wrap the earlier ones.
    ///
    /// # Examples
    ///
    /// ```
    /// use rayai_core::App;
    ///
    /// let app = App::named("api").layer(tower::layer::util::Identity::new());
    /// assert_eq!(app.name(), "api");
    /// ```
    #[must_use]
    pub fn layer<L>(mut self, layer: L) -> Self
    where
        L: tower::Layer<HttpService> + Send + Sync + 'static,
        L::Service: tower::Service<
                http::Request<HttpBody>,
                Response = http::Response<HttpBody>,
                Error = Infallible,
            > + Clone
            + Send
            + Sync
            + 'static,
        <L::Service as tower::Service<http::Request<HttpBody>>>::Future: Send + 'static,
    {
        self.layers.push(std::sync::Arc::new(move |service| {
            HttpService::new(layer.layer(service))
        }));
        self
    }

    /// The application's layers, innermost first.
    pub(crate) fn layers(&self) -> &[LayerFn] {
        &self.layers
    }

    /// `service` wrapped in the application's layers.
    pub fn apply_layers(&self, service: HttpService) -> HttpService {
        self.layers
            .iter()
            .fold(service, |service, layer| layer(service))
    }

    /// The deployment that answers at the route prefix: the first handler or ingress.
    pub fn ingress(&self) -> Option<&Deployment> {
        self.deployments
            .iter()
            .find(|d| d.kind() == DeploymentKind::Handler)
    }

    /// Serves the agent `name` of this application at `{route_prefix}/agents/{name}` with the
    /// chat contract, beside the ingress. An application with an ingress serves only its ingress
    /// over HTTP: the agents it composes are reached through handles unless exposed here. (An
    /// application made only of agents serves each of them anyway.)
    ///
    /// # Examples
    ///
    /// ```
    /// use rayai_core::App;
    ///
    /// let app = App::named("shop").expose("assistant");
    /// assert!(app.exposes("assistant"));
    /// // An application without an ingress serves every agent it has anyway.
    /// assert!(app.exposes("ranker"));
    /// ```
    #[must_use]
    pub fn expose(mut self, name: impl Into<String>) -> Self {
        self.exposed.push(name.into());
        self
    }

    /// Whether the agent `name` answers over HTTP: every agent of an application without an
    /// ingress, and the exposed ones of an application with one.
    pub fn exposes(&self, name: &str) -> bool {
        self.ingress().is_none() || self.exposed.iter().any(|n| n == name)
    }

    /// Serves (or not) the application's agents behind the OpenAI chat-completions API, at
    /// `{route_prefix}/v1/models` and `{route_prefix}/v1/chat/completions`, the agent picked by
    /// `model`. On by default for an application made of agents; an application with an
    /// ingress serves its exposed agents there only when asked.
    ///
    /// # Examples
    ///
    /// ```
    /// use rayai_core::App;
    ///
    /// assert!(App::new().serves_openai());
    /// assert!(!App::new().openai(false).serves_openai());
    /// ```
    #[must_use]
    pub fn openai(mut self, serve: bool) -> Self {
        self.openai = Some(serve);
        self
    }

    /// Lets an OpenAI request name a multiplexed model after the agent: `"model": "lora:adapter-7"`
    /// goes to the agent `lora` with the multiplexed model id `adapter-7` (as the
    /// `serve_multiplexed_model_id` header would). Off by default: an agent's name never holds a
    /// `:`, but a client may send one in `model` for its own reasons.
    #[must_use]
    pub fn openai_model_suffix(mut self, enabled: bool) -> Self {
        self.openai_model_suffix = enabled;
        self
    }

    /// Whether the application's agents answer behind the OpenAI API (see [`App::openai`]).
    pub fn serves_openai(&self) -> bool {
        self.openai.unwrap_or_else(|| self.ingress().is_none())
    }

    /// Whether an OpenAI `model` may name a multiplexed model (see [`App::openai_model_suffix`]).
    pub fn uses_openai_model_suffix(&self) -> bool {
        self.openai_model_suffix
    }

    /// Every `#[agent]` linked into this binary, sorted by name.
    pub fn discover() -> Self {
        let mut found: Vec<&Registration> = inventory::iter::<Registration>.into_iter().collect();
        found.sort_by_key(|r| r.name);
        App {
            deployments: found.into_iter().map(|r| (r.deployment)()).collect(),
            ..App::default()
        }
    }

    /// Adds the `#[agent]` type `T`.
    #[must_use]
    pub fn agent<T: Deploy + Agent>(self) -> Self {
        self.deployment(Deployment::agent::<T>())
    }

    /// Adds the gRPC service `T` (a `#[deployment(...)]` type implementing a tonic-generated
    /// service trait), served as `wrap` makes it (`GreeterServer::from_arc`): see
    /// [`Deployment::grpc`]. Added first, it is the application's ingress, which the gRPC
    /// listener routes the application's calls to.
    #[must_use]
    pub fn grpc<T, S, B, W>(self, wrap: W) -> Self
    where
        T: Deploy,
        W: Fn(std::sync::Arc<T>) -> S + Send + Sync + 'static,
        S: tower::Service<http::Request<HttpBody>, Response = http::Response<B>>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
        S::Error: Into<crate::handler::BoxError> + 'static,
        B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<crate::handler::BoxError> + 'static,
    {
        self.deployment(Deployment::grpc::<T, S, B, W>(wrap))
    }

    /// Adds a deployment.
    #[must_use]
    pub fn deployment(mut self, deployment: Deployment) -> Self {
        self.deployments.push(deployment);
        self
    }

    /// Keeps only the deployments whose names `keep` accepts.
    #[must_use]
    pub fn filter(mut self, mut keep: impl FnMut(&str) -> bool) -> Self {
        self.deployments.retain(|d| keep(d.config().name()));
        self
    }

    /// The same application with each deployment replaced by `f`'s (overrides from a config
    /// file), keeping its layers and exposed agents.
    #[must_use]
    pub fn map_deployments(mut self, f: impl FnMut(Deployment) -> Deployment) -> Self {
        self.deployments = self.deployments.into_iter().map(f).collect();
        self
    }

    /// The deployments, in the order they were added.
    pub fn deployments(&self) -> &[Deployment] {
        &self.deployments
    }

    /// Takes the deployments out.
    pub fn into_deployments(self) -> Vec<Deployment> {
        self.deployments
    }

    /// Checks every configuration, and that names are unique and there is something to serve.
    ///
    /// # Errors
    ///
    /// [`Error::EmptyApp`], [`Error::DuplicateDeployment`] or the first invalid configuration.
    pub fn validate(&self) -> Result<(), Error> {
        if self.deployments.is_empty() {
            return Err(Error::EmptyApp);
        }
        let mut seen = std::collections::HashSet::new();
        for d in &self.deployments {
            d.config().validate()?;
            if !seen.insert(d.config().name()) {
                return Err(Error::DuplicateDeployment(d.config().name().to_owned()));
            }
        }
        for name in &self.exposed {
            let agent = self
                .deployments
                .iter()
                .any(|d| d.config().name() == name && d.kind() == DeploymentKind::Agent);
            if !agent {
                return Err(Error::InvalidConfig {
                    deployment: name.clone(),
                    field: "expose",
                    reason: "only an agent of the application can be exposed".to_owned(),
                });
            }
        }
        Ok(())
    }
}
