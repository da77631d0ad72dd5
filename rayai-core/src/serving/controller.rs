//! The controller: the one owner of state. It holds the node's scheduler, every running
//! deployment, the applications and their route prefixes, and the redeploy policy (a new
//! version starts beside the old one, which drains first only when the node cannot hold both).
//! What it decides is published as an immutable [`Snapshot`] that the HTTP front, the status
//! API and the metrics only read.

use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use serde_json::Value;
use tokio::sync::OnceCell;

use super::publish::{self, planned_routes, publishable};
use super::remote::RemoteDeployment;
use super::running::Running;
use super::snapshot::{AppSource, Origin, Snapshot, SnapshotRef};
use crate::app::App;
use crate::config::{DeploymentConfig, DeploymentKind};
use crate::context::Registry;
use crate::deployment::Deployment;
use crate::error::Error;
use crate::handle::DeploymentHandle;
use crate::node::scheduler::Scheduler;
use crate::node::{NodeResources, Placement, Plan, PlanRow};
use crate::remote::Roles;
use crate::route::validate_prefix;
use crate::status::DeploymentStatus;

/// Owns the node's resources, every deployment on it, and the applications served.
///
/// # Examples
///
/// ```
/// use rayai_core::{Controller, NodeResources};
///
/// let controller = Controller::new(NodeResources::new(2.0, 8 << 30).with_gpus(1));
/// assert_eq!(controller.node().num_gpus(), 1);
/// assert!(controller.snapshot().routes().is_empty());
/// ```
#[derive(Clone)]
pub struct Controller {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("node", &self.node())
            .finish_non_exhaustive()
    }
}

struct Inner {
    scheduler: Arc<Mutex<Scheduler>>,
    /// Every deployment started here, newest last (dropped ones are swept on read).
    deployments: Mutex<Vec<Weak<Running>>>,
    /// Every deployment followed in other processes, newest last.
    remotes: Mutex<Vec<Weak<RemoteDeployment>>>,
    /// Which deployments run here, and how the others are reached; `None`: all run here.
    roles: arc_swap::ArcSwapOption<Roles>,
    /// Deploys and deletes, one at a time; readers never wait for it.
    changes: tokio::sync::Mutex<()>,
    snapshot: ArcSwap<Snapshot>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Inner {
    fn live(&self) -> Vec<Arc<Running>> {
        let mut list = lock(&self.deployments);
        list.retain(|w| w.strong_count() > 0);
        list.iter()
            .filter_map(Weak::upgrade)
            .filter(|r| !r.is_closed())
            .collect()
    }

    fn live_remotes(&self) -> Vec<Arc<RemoteDeployment>> {
        let mut list = lock(&self.remotes);
        list.retain(|w| w.strong_count() > 0);
        list.iter()
            .filter_map(Weak::upgrade)
            .filter(|r| !r.is_closed())
            .collect()
    }

    /// Whether the deployment `name` runs its replicas in this process.
    fn runs_here(&self, name: &str) -> bool {
        self.roles
            .load()
            .as_ref()
            .is_none_or(|roles| roles.runs_here(name))
    }
}

impl Registry for Inner {
    fn handle(&self, name: &str) -> Option<DeploymentHandle> {
        self.live()
            .into_iter()
            .rev()
            .find(|r| r.name() == name)
            .map(|r| DeploymentHandle::new(r))
            .or_else(|| {
                self.live_remotes()
                    .into_iter()
                    .rev()
                    .find(|r| r.name() == name)
                    .map(|r| DeploymentHandle::new(r))
            })
    }
}

impl Controller {
    /// A controller for a node with these resources.
    pub fn new(node: NodeResources) -> Self {
        Controller {
            inner: Arc::new(Inner {
                scheduler: Arc::new(Mutex::new(Scheduler::new(node))),
                deployments: Mutex::new(Vec::new()),
                remotes: Mutex::new(Vec::new()),
                roles: arc_swap::ArcSwapOption::empty(),
                changes: tokio::sync::Mutex::new(()),
                snapshot: ArcSwap::from_pointee(Snapshot::default()),
            }),
        }
    }

    /// The process's controller, for the node detected at first use (overridable with
    /// `RAYAI_NUM_CPUS`, `RAYAI_NUM_GPUS`, `RAYAI_MEMORY`). Detection is async: it never
    /// blocks a runtime thread.
    pub async fn global() -> Controller {
        static GLOBAL: OnceCell<Controller> = OnceCell::const_new();
        GLOBAL
            .get_or_init(|| async { Controller::new(NodeResources::detect().await) })
            .await
            .clone()
    }

    /// Runs only the deployments `roles.local` names in this process from now on; every other
    /// deployment of the applications deployed later is followed in other processes, found by
    /// `roles.discovery` and reached by `roles.transport` (the proxy and replica roles).
    pub fn set_roles(&self, roles: Roles) {
        self.inner.roles.store(Some(Arc::new(roles)));
    }

    /// The roles given with [`Controller::set_roles`]; `None` when everything runs here.
    pub fn roles(&self) -> Option<Roles> {
        self.inner.roles.load_full().map(|r| Roles::clone(&r))
    }

    /// The node's resources.
    pub fn node(&self) -> NodeResources {
        lock(&self.inner.scheduler).node().clone()
    }

    /// What the node's replicas hold now: `(cpus, gpus, memory_bytes)`.
    pub fn reserved(&self) -> (f64, f64, u64) {
        lock(&self.inner.scheduler).reserved()
    }

    /// The routes and applications served now: an immutable snapshot, cheap to take.
    pub fn snapshot(&self) -> SnapshotRef {
        SnapshotRef::new(self.inner.snapshot.load())
    }

    /// The resource plan of `app` on this node, beside what already runs here except the
    /// deployments `app` replaces (same names).
    pub fn plan(&self, app: &App) -> Plan {
        self.plan_with(app, DeploymentConfig::initial_replicas)
    }

    /// The plan of `app` with `replicas` of each deployment, beside the replicas running here.
    fn plan_with(&self, app: &App, replicas: impl Fn(&DeploymentConfig) -> u32) -> Plan {
        let names: Vec<&str> = app
            .deployments()
            .iter()
            .map(|d| d.config().name())
            .collect();
        let mut rows: Vec<PlanRow> = self
            .inner
            .live()
            .iter()
            .filter(|r| !names.contains(&r.name()))
            .map(|r| plan_row(&r.config(), r.running_replicas()))
            .collect();
        rows.extend(
            app.deployments()
                .iter()
                .filter(|d| self.inner.runs_here(d.config().name()))
                .map(|d| plan_row(d.config(), replicas(d.config()))),
        );
        Plan::new(self.node(), rows)
    }

    /// Starts `app`'s deployments and serves them under `route_prefix`. An application with an
    /// ingress (its first handler) is served at `route_prefix` itself, wrapped in the app's
    /// layers; the deployments it composes are reached only through handles, except agents it
    /// [exposes](App::expose). An application made only of agents serves each at
    /// `{route_prefix}/agents/{name}`, an application of its own called `<name>-service`, as
    /// RayAI deploys agents. An application of the same name deployed before is replaced: the old version
    /// serves until the new one runs, and drains first only when the node cannot hold both.
    ///
    /// # Errors
    ///
    /// An invalid prefix or application, a route another application holds,
    /// [`Error::Infeasible`] with the plan when the app does not fit beside what runs, or a
    /// replica that fails to start. Nothing changes on error, except that a version drained to
    /// make room stays drained.
    pub async fn deploy_app(&self, app: App, route_prefix: &str) -> Result<(), Error> {
        self.deploy_app_with(app, route_prefix, Placement::default())
            .await
    }

    /// [`Controller::deploy_app`] with the placement asked for: start what fits (the default),
    /// or refuse unless every replica fits ([`Placement::Strict`]).
    ///
    /// # Errors
    ///
    /// As [`Controller::deploy_app`]; [`Error::Infeasible`] names the placement.
    pub async fn deploy_app_with(
        &self,
        app: App,
        route_prefix: &str,
        placement: Placement,
    ) -> Result<(), Error> {
        validate_prefix(route_prefix)?;
        app.validate()?;
        let _changing = self.inner.changes.lock().await;
        self.deploy_locked(app, route_prefix, placement, Origin::default())
            .await
    }

    /// Applies `app` at `route_prefix` as Ray Serve applies a declarative config: when the
    /// application runs already with the same deployments (the same names, kinds and code) at the
    /// same route prefix, and only *lightweight* options differ (`num_replicas`,
    /// `autoscaling_config`, `user_config`, `max_ongoing_requests`, `max_queued_requests`,
    /// `graceful_shutdown_timeout_s`, the health-check period and timeout, the backpressure
    /// `Retry-After`), it is updated in place, with no replica restarted and no request failed:
    ///
    /// - a new number of replicas (or new autoscaling bounds) is reached by the control loop,
    ///   starting replicas where the node has room (the rest wait as pending) and draining the
    ///   ones it stops;
    /// - new limits apply to the requests that arrive from now on;
    /// - a new `user_config` is given to the `reconfigure` of every running replica (see
    ///   [`crate::Agent::reconfigure`]), and to replicas started later. A `reconfigure` that
    ///   fails does not fail this call: the deployment turns `UNHEALTHY` with the error as its
    ///   message, as in Ray, and its replicas keep serving.
    ///
    /// Anything else (other resources or isolation, deployments added or removed, other code, a
    /// new route prefix, an application not running yet) goes through
    /// [`Controller::deploy_app`]: the new version starts beside the old one, which drains after.
    /// The layers of an application updated in place stay those it was deployed with.
    ///
    /// The application is recorded as [`AppSource::Imperative`]; a config's deploy uses
    /// [`Controller::apply_app_declared`].
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), rayai_core::Error> {
    /// use rayai_core::{Agent, AgentError, App, Controller, Deployment, DeploymentConfig, NodeResources};
    /// use serde_json::{Value, json};
    ///
    /// struct Echo;
    /// impl Agent for Echo {
    ///     async fn run(&self, data: Value) -> Result<Value, AgentError> { Ok(data) }
    /// }
    ///
    /// fn app(replicas: u32) -> App {
    ///     let config = DeploymentConfig::new("echo").with_num_cpus(0.25).with_num_replicas(replicas);
    ///     App::named("echo").deployment(Deployment::from_fn(config, |_| async { Ok(Echo) }))
    /// }
    ///
    /// let controller = Controller::new(NodeResources::new(2.0, 4 << 30));
    /// controller.apply_app(app(1), "/").await?;
    /// let before = controller.handle("echo").expect("it runs");
    /// controller.apply_app(app(2), "/").await?;
    /// // The same running deployment, with a new target.
    /// assert_eq!(controller.handle("echo"), Some(before.clone()));
    /// assert_eq!(before.status().target_replicas, 2);
    /// # controller.shutdown(std::time::Duration::ZERO).await;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Controller::deploy_app`]: an invalid prefix or application, and when it falls back
    /// to a deploy, whatever that deploy refuses.
    pub async fn apply_app(&self, app: App, route_prefix: &str) -> Result<(), Error> {
        self.apply(app, route_prefix, Placement::default(), Origin::default())
            .await
    }

    /// [`Controller::apply_app`] for an application from a declarative config (Ray's
    /// `PUT /api/serve/applications/`, `rayai deploy`): the application is recorded as
    /// [`AppSource::Declarative`] with `config`, the application's entry of the config as given,
    /// which [`crate::Application::deployed_config`] returns (the status API's
    /// `deployed_app_config`). When it must be deployed, `placement` applies as in
    /// [`Controller::deploy_app_with`].
    ///
    /// # Errors
    ///
    /// As [`Controller::apply_app`].
    pub async fn apply_app_declared(
        &self,
        app: App,
        route_prefix: &str,
        placement: Placement,
        config: Value,
    ) -> Result<(), Error> {
        let origin = Origin {
            source: AppSource::Declarative,
            config: Some(config),
        };
        self.apply(app, route_prefix, placement, origin).await
    }

    async fn apply(
        &self,
        app: App,
        route_prefix: &str,
        placement: Placement,
        origin: Origin,
    ) -> Result<(), Error> {
        validate_prefix(route_prefix)?;
        app.validate()?;
        let _changing = self.inner.changes.lock().await;
        let Some(updates) = self.lightweight_updates(&app, route_prefix) else {
            return self
                .deploy_locked(app, route_prefix, placement, origin)
                .await;
        };
        futures::future::join_all(
            updates
                .into_iter()
                .map(|(running, config)| async move { running.update(config).await }),
        )
        .await;
        let deployed_at = SystemTime::now();
        let mut next = Snapshot::clone(&self.inner.snapshot.load());
        for name in Controller::published_names(&app) {
            if let Some(current) = next.application(&name) {
                let updated = current.updated(deployed_at, origin.clone());
                next.insert_app(updated);
            }
        }
        self.inner.snapshot.store(Arc::new(next));
        Ok(())
    }

    /// When `app` at `route_prefix` differs from the running version only in lightweight
    /// options: each running deployment and its new configuration. `None` when it must be
    /// deployed (see [`Controller::apply_app`]).
    fn lightweight_updates(
        &self,
        app: &App,
        route_prefix: &str,
    ) -> Option<Vec<(Arc<Running>, DeploymentConfig)>> {
        let current = self.inner.snapshot.load();
        let names = Controller::published_names(app);
        let planned = planned_routes(app, route_prefix);
        let mut running: Vec<DeploymentHandle> = Vec::new();
        for name in &names {
            let published = current.application(name)?;
            let routes: Vec<(&str, &str, bool)> = current
                .routes()
                .iter()
                .filter(|r| r.app() == name)
                .map(|r| {
                    let endpoint = r.target();
                    (
                        r.prefix(),
                        endpoint.deployment().name(),
                        endpoint.is_ingress(),
                    )
                })
                .collect();
            let wanted: Vec<(&str, &str, bool)> = planned
                .iter()
                .filter(|p| &p.app == name)
                .map(|p| {
                    let ingress = app.ingress().map(|d| d.config().name());
                    (
                        p.prefix.as_str(),
                        p.deployment.as_str(),
                        ingress == Some(p.deployment.as_str()),
                    )
                })
                .collect();
            if routes != wanted {
                return None;
            }
            if wanted.is_empty() && published.route_prefix() != route_prefix {
                return None;
            }
            for handle in published.deployments() {
                if !running.contains(handle) {
                    running.push(handle.clone());
                }
            }
        }
        if running.len() != app.deployments().len() {
            return None;
        }
        let mut updates = Vec::new();
        for declared in app.deployments() {
            let handle = running
                .iter()
                .find(|h| h.name() == declared.config().name())?;
            let found = self.running(handle)?;
            let (old, new) = (found.config(), declared.config());
            let same = declared.kind() == found.kind()
                && declared.code() == found.code()
                && old.resources() == new.resources()
                && old.isolation() == new.isolation();
            if !same {
                return None;
            }
            updates.push((found.clone(), new.clone()));
        }
        Some(updates)
    }

    /// The names under which deploying `app` publishes applications: each agent it serves over
    /// HTTP as `<agent>-service` (every agent of an application without an ingress, the
    /// [exposed](App::expose) ones of one with), and the application's own name for its ingress
    /// and what it composes (or, without an ingress, for the typed deployments no route serves).
    /// What a declarative config's apply replaces: [`Controller::delete_app`] the others.
    ///
    /// # Examples
    ///
    /// ```
    /// use rayai_core::{Agent, AgentError, App, Controller, Deployment, DeploymentConfig};
    /// use serde_json::Value;
    ///
    /// struct Echo;
    /// impl Agent for Echo {
    ///     async fn run(&self, data: Value) -> Result<Value, AgentError> { Ok(data) }
    /// }
    /// let echo = Deployment::from_fn(DeploymentConfig::new("echo"), |_| async { Ok(Echo) });
    /// let app = App::named("agents").deployment(echo);
    /// assert_eq!(Controller::published_names(&app), ["echo-service"]);
    /// ```
    pub fn published_names(app: &App) -> Vec<String> {
        publish::published_names(app)
    }

    /// The running deployment a handle reaches.
    fn running(&self, handle: &DeploymentHandle) -> Option<Arc<Running>> {
        self.inner
            .live()
            .into_iter()
            .find(|r| DeploymentHandle::new(r.clone()) == *handle)
    }

    /// The names of the applications served now, sorted.
    pub fn application_names(&self) -> Vec<String> {
        self.inner
            .snapshot
            .load()
            .applications()
            .map(|a| a.name().to_owned())
            .collect()
    }

    /// The names of the applications served now that came from a declarative config
    /// ([`Controller::apply_app_declared`]), sorted: what a new config replaces as a whole.
    pub fn declared_application_names(&self) -> Vec<String> {
        self.inner
            .snapshot
            .load()
            .applications()
            .filter(|a| a.source() == AppSource::Declarative)
            .map(|a| a.name().to_owned())
            .collect()
    }

    /// The body of [`Controller::deploy_app_with`], with the change lock held.
    async fn deploy_locked(
        &self,
        app: App,
        route_prefix: &str,
        placement: Placement,
        origin: Origin,
    ) -> Result<(), Error> {
        let planned = planned_routes(&app, route_prefix);
        {
            let current = self.inner.snapshot.load();
            for route in &planned {
                current.routes().check(&route.prefix, &route.app)?;
            }
        }
        let mut replaced_apps: Vec<String> = planned.iter().map(|r| r.app.clone()).collect();
        replaced_apps.push(app.name().to_owned());
        let handles = match self.start_app(&app, placement).await {
            Ok(handles) => handles,
            Err(e) if e.is_infeasible() && self.serves_any(&replaced_apps) => {
                // The node cannot hold both versions: the old one drains first. Its routes stay
                // published meanwhile (requests get its "shutting down" answer, not a 404).
                let old = self.deployments_of(&replaced_apps);
                let grace = app_grace(&old);
                futures::future::join_all(old.iter().map(|d| d.shutdown(grace))).await;
                self.start_app(&app, placement).await?
            }
            Err(e) => return Err(e),
        };
        let mut next = Snapshot::clone(&self.inner.snapshot.load());
        let mut replaced = Vec::new();
        for name in &replaced_apps {
            if let Some(old) = next.remove_app(name) {
                replaced.extend(old.deployments);
            }
        }
        if let Err(e) = publishable(&mut next, &app, route_prefix, planned, &handles, &origin) {
            for h in &handles {
                h.shutdown(Duration::ZERO).await;
            }
            return Err(e);
        }
        self.inner.snapshot.store(Arc::new(next));
        replaced.retain(|old| !handles.contains(old));
        for old in &replaced {
            let next = handles.iter().find(|h| h.name() == old.name());
            if let (Some(running), Some(next)) = (self.running(old), next) {
                running.hand_over(next.clone());
            }
        }
        if !replaced.is_empty() {
            let grace = app_grace(&replaced);
            // The old ingress drains first: its requests in flight still call the deployments
            // it composes, which stop only after it.
            tokio::spawn(async move {
                let (ingress, composed): (Vec<_>, Vec<_>) = replaced
                    .into_iter()
                    .partition(|d| d.kind() == DeploymentKind::Handler);
                futures::future::join_all(ingress.iter().map(|d| d.shutdown(grace))).await;
                futures::future::join_all(composed.iter().map(|d| d.shutdown(grace))).await;
            });
        }
        Ok(())
    }

    /// Stops serving the application `name` and shuts its deployments down (each within its
    /// graceful shutdown timeout). Returns whether it existed.
    pub async fn delete_app(&self, name: &str) -> bool {
        let _changing = self.inner.changes.lock().await;
        let old = self.unpublish(&[name.to_owned()]);
        let existed = !old.is_empty();
        let grace = app_grace(&old);
        futures::future::join_all(old.iter().map(|d| d.shutdown(grace))).await;
        existed
    }

    /// Stops serving every application and shuts their deployments down: their requests get
    /// `timeout` from this call to finish, one deadline shared by every deployment (and by the
    /// wait for a deploy in progress), then the replicas stop.
    pub async fn shutdown(&self, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        let _changing = self.inner.changes.lock().await;
        let timeout = deadline.saturating_duration_since(tokio::time::Instant::now());
        let all: Vec<String> = self
            .inner
            .snapshot
            .load()
            .applications()
            .map(|a| a.name().to_owned())
            .collect();
        // Drained while still published (late requests get "shutting down", not a 404).
        let old = self.deployments_of(&all);
        futures::future::join_all(old.iter().map(|d| d.shutdown(timeout))).await;
        self.unpublish(&all);
    }

    /// Removes these applications from the published snapshot; returns their deployments.
    fn unpublish(&self, names: &[String]) -> Vec<DeploymentHandle> {
        let mut next = Snapshot::clone(&self.inner.snapshot.load());
        let mut old = Vec::new();
        for name in names {
            if let Some(app) = next.remove_app(name) {
                old.extend(app.deployments);
            }
        }
        self.inner.snapshot.store(Arc::new(next));
        old
    }

    /// The deployments of these applications, as published now.
    fn deployments_of(&self, names: &[String]) -> Vec<DeploymentHandle> {
        let current = self.inner.snapshot.load();
        names
            .iter()
            .filter_map(|name| current.application(name))
            .flat_map(|app| app.deployments().iter().cloned())
            .collect()
    }

    fn serves_any(&self, apps: &[String]) -> bool {
        let current = self.inner.snapshot.load();
        apps.iter().any(|name| current.application(name).is_some())
    }

    /// Starts every deployment of `app`, or none: the ingress after the rest, so that its
    /// constructor can take handles to the deployments it composes.
    async fn start_app(
        &self,
        app: &App,
        placement: Placement,
    ) -> Result<Vec<DeploymentHandle>, Error> {
        let plan = self.plan(app);
        if !plan.fits() {
            let required = match placement {
                Placement::Strict => Some(plan.clone()),
                _ => Some(self.plan_with(app, DeploymentConfig::min_replicas))
                    .filter(|minimum| !minimum.fits()),
            };
            if let Some(plan) = required {
                return Err(Error::Infeasible {
                    plan: Box::new(plan),
                    placement,
                });
            }
            tracing::warn!(
                "not every replica fits on this node; starting what fits, the rest waits as \
                 pending:\n{plan}"
            );
        }
        let (ingress, rest): (Vec<&Deployment>, Vec<&Deployment>) = app
            .deployments()
            .iter()
            .partition(|d| d.kind() == DeploymentKind::Handler);
        let mut handles = Vec::new();
        let mut failure = None;
        for wave in [rest, ingress] {
            if failure.is_some() {
                break;
            }
            let starts = wave.into_iter().map(|d| self.deploy(d.clone()));
            for result in futures::future::join_all(starts).await {
                match result {
                    Ok(h) => handles.push(h),
                    Err(e) => failure = failure.or(Some(e)),
                }
            }
        }
        if let Some(e) = failure {
            for h in &handles {
                h.shutdown(Duration::ZERO).await;
            }
            return Err(e);
        }
        Ok(handles)
    }

    /// Starts one deployment outside any application (reached only through the handle
    /// returned): reserves and starts its initial replicas, then keeps it running until the
    /// last handle is dropped or it is shut down.
    ///
    /// # Errors
    ///
    /// An invalid configuration, [`Error::NoRoom`] when a replica does not fit on the node, or a
    /// replica whose constructor keeps failing.
    pub async fn deploy(&self, deployment: Deployment) -> Result<DeploymentHandle, Error> {
        let mut parts = deployment.into_parts();
        if let Some(roles) = self.inner.roles.load_full() {
            if !roles.runs_here(parts.config.name()) {
                let remote = RemoteDeployment::start(parts, Roles::clone(&roles)).await?;
                lock(&self.inner.remotes).push(Arc::downgrade(&remote));
                return Ok(DeploymentHandle::new(remote));
            }
            if let Some(n) = roles.num_replicas {
                parts.config = parts.config.without_autoscaling().with_num_replicas(n);
            }
        }
        let inner: Arc<Inner> = self.inner.clone();
        let registry: Arc<dyn Registry> = inner;
        let running = Running::start(
            parts,
            self.inner.scheduler.clone(),
            Arc::downgrade(&registry),
        )
        .await?;
        lock(&self.inner.deployments).push(Arc::downgrade(&running));
        Ok(DeploymentHandle::new(running))
    }

    /// A handle to the running deployment `name` (the newest, while one replaces another).
    pub fn handle(&self, name: &str) -> Option<DeploymentHandle> {
        self.inner.handle(name)
    }

    /// A snapshot of every running deployment, those of applications and those started alone.
    pub fn status(&self) -> Vec<DeploymentStatus> {
        let mut all: Vec<DeploymentStatus> = self.inner.live().iter().map(|r| r.status()).collect();
        all.extend(self.inner.live_remotes().iter().map(|r| r.status()));
        all
    }
}

/// The longest graceful shutdown timeout among these deployments.
fn app_grace(deployments: &[DeploymentHandle]) -> Duration {
    deployments
        .iter()
        .map(|d| d.config().graceful_shutdown_timeout())
        .max()
        .unwrap_or(Duration::ZERO)
}

fn plan_row(config: &DeploymentConfig, replicas: u32) -> PlanRow {
    PlanRow::new(config.name(), replicas, config.resources())
}
