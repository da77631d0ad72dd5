//! Applications: the deployments served together.

use crate::agent::Deploy;
use crate::{Deployment, Error};

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
#[derive(Debug, Clone, Default)]
pub struct App {
    deployments: Vec<Deployment>,
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
    /// An application with no deployments yet.
    pub fn new() -> Self {
        App::default()
    }

    /// Every `#[agent]` linked into this binary, sorted by name.
    pub fn discover() -> Self {
        let mut found: Vec<&Registration> = inventory::iter::<Registration>.into_iter().collect();
        found.sort_by_key(|r| r.name);
        App {
            deployments: found.into_iter().map(|r| (r.deployment)()).collect(),
        }
    }

    /// Adds the `#[agent]` type `T`.
    pub fn agent<T: Deploy>(self) -> Self {
        self.deployment(Deployment::agent::<T>())
    }

    /// Adds a deployment.
    pub fn deployment(mut self, deployment: Deployment) -> Self {
        self.deployments.push(deployment);
        self
    }

    /// Keeps only the deployments whose names `keep` accepts.
    pub fn filter(mut self, mut keep: impl FnMut(&str) -> bool) -> Self {
        self.deployments.retain(|d| keep(d.config().name()));
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
        Ok(())
    }
}
