//! The controller: the one owner of deployment state. It places replicas on the node through the
//! scheduler, starts them (retrying a failing constructor with backoff), checks their health,
//! replaces the dead ones, scales between bounds, and drains on shutdown. Everything it decides
//! is published as a [`DeploymentStatus`].

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::autoscale::Autoscaler;
use crate::deployment::DeploymentKind;
use crate::plan::{Plan, PlanRow};
use crate::replica::{Factory, Replica};
use crate::resources::NodeResources;
use crate::router::Router;
use crate::scheduler::{Reservation, Scheduler};
use crate::status::{DeploymentState, DeploymentStatus, ReplicaState, ReplicaStatus};
use crate::{App, Deployment, DeploymentConfig, DeploymentHandle, Error, ReplicaContext};

/// Attempts at a replica's constructor before its start counts as failed.
const START_ATTEMPTS: u32 = 3;
/// The first pause between constructor attempts; it doubles each time.
const START_BACKOFF: Duration = Duration::from_millis(100);
/// The longest pause before the controller tries again to start a failed replica.
const MAX_RESTART_BACKOFF: Duration = Duration::from_secs(30);
/// How often an autoscaling deployment looks at its load.
const AUTOSCALE_TICK: Duration = Duration::from_millis(100);

/// Owns the node's resources and every deployment on it.
///
/// # Examples
///
/// ```
/// use rayai_core::Controller;
/// use rayai_core::resources::NodeResources;
///
/// let controller = Controller::new(NodeResources::new(2.0, 8 << 30).with_gpus(1));
/// assert_eq!(controller.node().num_gpus(), 1);
/// ```
#[derive(Clone)]
pub struct Controller {
    node: Arc<Node>,
}

struct Node {
    scheduler: Mutex<Scheduler>,
    deployments: Mutex<Vec<Weak<Running>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Controller {
    /// A controller for a node with these resources.
    pub fn new(node: NodeResources) -> Self {
        Controller {
            node: Arc::new(Node {
                scheduler: Mutex::new(Scheduler::new(node)),
                deployments: Mutex::new(Vec::new()),
            }),
        }
    }

    /// The process's controller, for the node detected at first use (overridable with
    /// `RAYAI_NUM_CPUS`, `RAYAI_NUM_GPUS`, `RAYAI_MEMORY`).
    pub fn global() -> Controller {
        static GLOBAL: OnceLock<Controller> = OnceLock::new();
        GLOBAL
            .get_or_init(|| Controller::new(NodeResources::detect()))
            .clone()
    }

    /// The node's resources.
    pub fn node(&self) -> NodeResources {
        lock(&self.node.scheduler).node().clone()
    }

    /// What the node's replicas hold now: `(cpus, gpus, memory_bytes)`.
    pub fn reserved(&self) -> (f64, f64, u64) {
        lock(&self.node.scheduler).reserved()
    }

    fn live(&self) -> Vec<Arc<Running>> {
        let mut list = lock(&self.node.deployments);
        list.retain(|w| w.strong_count() > 0);
        list.iter()
            .filter_map(Weak::upgrade)
            .filter(|r| !r.closed.load(Ordering::SeqCst))
            .collect()
    }

    /// The resource plan of `app` on this node, beside what already runs here except the
    /// deployments `app` replaces (same names).
    pub fn plan(&self, app: &App) -> Plan {
        let names: Vec<&str> = app
            .deployments()
            .iter()
            .map(|d| d.config().name())
            .collect();
        let mut rows: Vec<PlanRow> = self
            .live()
            .iter()
            .filter(|r| !names.contains(&r.config.name()))
            .map(|r| plan_row(&r.config, lock(&r.state).target))
            .collect();
        rows.extend(
            app.deployments()
                .iter()
                .map(|d| plan_row(d.config(), d.config().initial_replicas())),
        );
        Plan::new(self.node(), rows)
    }

    /// Starts every deployment of `app`, or none.
    ///
    /// # Errors
    ///
    /// [`Error::Infeasible`] with the plan when the app does not fit on the node beside what
    /// runs; an invalid app; a replica whose constructor keeps failing.
    pub async fn deploy_app(&self, app: App) -> Result<Vec<DeploymentHandle>, Error> {
        app.validate()?;
        let plan = self.plan(&app);
        if !plan.fits() {
            return Err(Error::Infeasible {
                plan: plan.to_string(),
            });
        }
        // The ingress (handlers) starts after the rest, so that its constructor can take handles
        // to the deployments it composes.
        let (ingress, rest): (Vec<Deployment>, Vec<Deployment>) = app
            .into_deployments()
            .into_iter()
            .partition(|d| d.kind() == DeploymentKind::Handler);
        let mut handles = Vec::new();
        let mut failure = None;
        for wave in [rest, ingress] {
            if failure.is_some() {
                break;
            }
            for result in futures::future::join_all(wave.into_iter().map(|d| self.deploy(d))).await
            {
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

    /// Starts one deployment: reserves and starts its initial replicas, then keeps it running.
    ///
    /// # Errors
    ///
    /// As [`Controller::deploy_app`].
    pub async fn deploy(&self, deployment: Deployment) -> Result<DeploymentHandle, Error> {
        let (config, factory, kind) = deployment.into_parts();
        config.validate()?;
        let kick = Arc::new(Notify::new());
        let running = Arc::new(Running {
            router: Arc::new(Router::new(
                config.name().to_owned(),
                config.max_queued_requests(),
                kick.clone(),
            )),
            state: Mutex::new(State {
                status: DeploymentState::Updating,
                message: String::new(),
                target: config.initial_replicas(),
                members: Vec::new(),
                autoscaler: config.autoscaling().cloned().map(Autoscaler::new),
                start_failures: 0,
                retry_at: None,
            }),
            config,
            factory,
            kind,
            node: self.node.clone(),
            kick,
            next_replica: AtomicU64::new(0),
            closed: AtomicBool::new(false),
        });
        let initial = running.config.initial_replicas();
        let starts = (0..initial).map(|_| running.start_member());
        let members = match futures::future::try_join_all(starts).await {
            Ok(members) => members,
            Err(e) => {
                lock(&running.state).status = DeploymentState::DeployFailed;
                running.closed.store(true, Ordering::SeqCst);
                return Err(e);
            }
        };
        {
            let mut st = lock(&running.state);
            st.members = members;
            if st.members.len() as u32 == st.target {
                st.status = DeploymentState::Healthy;
            }
        }
        running.publish();
        lock(&self.node.deployments).push(Arc::downgrade(&running));
        tokio::spawn(control_loop(Arc::downgrade(&running), running.kick.clone()));
        Ok(DeploymentHandle::new(running))
    }

    /// A handle to the running deployment `name` (the newest, while one replaces another).
    pub fn handle(&self, name: &str) -> Option<DeploymentHandle> {
        self.live()
            .into_iter()
            .rev()
            .find(|r| r.config.name() == name)
            .map(DeploymentHandle::new)
    }

    /// A snapshot of every deployment.
    pub fn status(&self) -> Vec<DeploymentStatus> {
        self.live().iter().map(|r| r.status()).collect()
    }
}

fn plan_row(config: &DeploymentConfig, replicas: u32) -> PlanRow {
    PlanRow {
        deployment: config.name().to_owned(),
        replicas,
        per_replica: config.resources(),
    }
}

/// A running deployment: what the controller keeps of it.
pub(crate) struct Running {
    pub(crate) config: DeploymentConfig,
    factory: Factory,
    pub(crate) kind: DeploymentKind,
    pub(crate) router: Arc<Router>,
    node: Arc<Node>,
    kick: Arc<Notify>,
    state: Mutex<State>,
    next_replica: AtomicU64,
    closed: AtomicBool,
}

struct State {
    status: DeploymentState,
    message: String,
    target: u32,
    members: Vec<Member>,
    autoscaler: Option<Autoscaler>,
    start_failures: u32,
    retry_at: Option<Instant>,
}

/// Resources reserved on the node, given back when dropped: on every path (a replica retired or
/// shut down, a start that failed or was cancelled, a dropped deployment).
struct Held {
    reservation: Reservation,
    node: Arc<Node>,
}

impl Drop for Held {
    fn drop(&mut self) {
        lock(&self.node.scheduler).release(&self.reservation);
    }
}

/// A replica and the resources it holds.
struct Member {
    replica: Arc<Replica>,
    held: Held,
    starts: u32,
}

impl Running {
    /// Makes the router route to the current members.
    fn publish(&self) {
        let replicas = lock(&self.state)
            .members
            .iter()
            .map(|m| m.replica.clone())
            .collect();
        self.router.set_replicas(replicas);
    }

    /// Reserves resources for one replica and starts it, retrying its constructor with backoff.
    async fn start_member(&self) -> Result<Member, Error> {
        let reservation = lock(&self.node.scheduler)
            .reserve(self.config.name(), &self.config.resources())
            .map_err(|short| Error::Infeasible {
                plan: format!("deployment `{}`: {short}", self.config.name()),
            })?;
        let held = Held {
            reservation,
            node: self.node.clone(),
        };
        let n = self.next_replica.fetch_add(1, Ordering::Relaxed);
        let ctx = ReplicaContext::new(
            self.config.name(),
            format!("{}#{n}", self.config.name()),
            held.reservation.gpu_ids.clone(),
        )
        .with_controller(Controller {
            node: self.node.clone(),
        });
        let mut pause = START_BACKOFF;
        for attempt in 1..=START_ATTEMPTS {
            let started =
                Replica::start(ctx.clone(), &self.config, &self.factory, self.kick.clone()).await;
            match started {
                Ok(replica) => {
                    return Ok(Member {
                        replica,
                        held,
                        starts: attempt,
                    });
                }
                Err(e) if attempt < START_ATTEMPTS => {
                    tracing::warn!(replica = %ctx.replica_id(), attempt, error = %error_chain(&e), "replica failed to start; retrying");
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
                Err(e) => return Err(e),
            }
        }
        unreachable!("the last attempt returns")
    }

    /// Stops a member in the background: no new requests, its ongoing ones finish (at most the
    /// graceful timeout), then its resources go back to the node.
    fn retire(self: &Arc<Self>, member: Member) {
        member.replica.load().stop_accepting();
        let grace = self.config.graceful_shutdown_timeout();
        tokio::spawn(async move {
            member.replica.drain(grace).await;
            drop(member);
        });
    }

    /// How many more replicas of this deployment the node could hold now.
    fn room(&self) -> u32 {
        let mut scheduler = lock(&self.node.scheduler);
        let mut taken = Vec::new();
        while taken.len() < 1024 {
            match scheduler.reserve(self.config.name(), &self.config.resources()) {
                Ok(r) => taken.push(r),
                Err(_) => break,
            }
        }
        for r in &taken {
            scheduler.release(r);
        }
        taken.len() as u32
    }

    async fn check_health(self: &Arc<Self>) {
        let replicas: Vec<Arc<Replica>> = lock(&self.state)
            .members
            .iter()
            .map(|m| m.replica.clone())
            .collect();
        let timeout = self.config.health_check_timeout();
        let checks = replicas
            .iter()
            .map(|r| async move { (r, r.check_health(timeout).await) });
        for (replica, result) in futures::future::join_all(checks).await {
            if let Err(reason) = result {
                replica.mark_dead(reason);
            }
        }
    }

    /// Brings the replicas to the target: dead ones out, autoscaling, starts, stops.
    async fn reconcile(self: &Arc<Self>) {
        let now = Instant::now();
        let (dead, want, running) = {
            let mut st = lock(&self.state);
            let (dead, alive): (Vec<Member>, Vec<Member>) =
                st.members.drain(..).partition(|m| m.replica.is_dead());
            st.members = alive;
            let running = st.members.len() as u32;
            let ongoing: u32 = st.members.iter().map(|m| m.replica.load().ongoing()).sum();
            let st = &mut *st;
            if let Some(auto) = st.autoscaler.as_mut() {
                let cap = running + self.room();
                let decision =
                    auto.decide(now, running, f64::from(ongoing), self.router.queued(), cap);
                st.target = decision.desired;
                match decision.reason {
                    Some(reason) => st.message = reason,
                    None if st.start_failures == 0 => st.message.clear(),
                    None => {}
                }
            }
            (dead, st.target, running)
        };
        if !dead.is_empty() {
            self.publish();
            for m in dead {
                lock(&self.state).status = DeploymentState::Updating;
                self.retire(m);
            }
        }
        let mut running = running;
        while running < want {
            if lock(&self.state).retry_at.is_some_and(|at| at > now) {
                break;
            }
            match self.start_member().await {
                Ok(member) => {
                    let mut st = lock(&self.state);
                    st.members.push(member);
                    st.start_failures = 0;
                    st.retry_at = None;
                    drop(st);
                    self.publish();
                    running += 1;
                }
                Err(e) => {
                    let mut st = lock(&self.state);
                    st.start_failures += 1;
                    let pause = START_BACKOFF
                        .saturating_mul(1 << st.start_failures.min(10))
                        .min(MAX_RESTART_BACKOFF);
                    st.retry_at = Some(Instant::now() + pause);
                    st.status = if st.members.is_empty() {
                        DeploymentState::DeployFailed
                    } else {
                        DeploymentState::Unhealthy
                    };
                    st.message = error_chain(&e);
                    break;
                }
            }
        }
        while running > want {
            let member = {
                let mut st = lock(&self.state);
                let Some(i) =
                    (0..st.members.len()).min_by_key(|&i| st.members[i].replica.load().ongoing())
                else {
                    break;
                };
                st.members.remove(i)
            };
            self.publish();
            self.retire(member);
            running -= 1;
        }
        let mut st = lock(&self.state);
        if running == st.target && st.start_failures == 0 {
            st.status = DeploymentState::Healthy;
        } else if st.start_failures == 0 {
            st.status = DeploymentState::Updating;
        }
    }

    pub(crate) fn status(&self) -> DeploymentStatus {
        let st = lock(&self.state);
        DeploymentStatus {
            name: self.config.name().to_owned(),
            status: st.status,
            message: st.message.clone(),
            target_replicas: st.target,
            running_replicas: st.members.len() as u32,
            queued_requests: self.router.queued(),
            replicas_started: self.next_replica.load(Ordering::Relaxed),
            replicas: st
                .members
                .iter()
                .map(|m| ReplicaStatus {
                    replica_id: m.replica.id().to_owned(),
                    state: if m.replica.is_dead() {
                        ReplicaState::Stopping
                    } else {
                        ReplicaState::Running
                    },
                    ongoing_requests: m.replica.load().ongoing(),
                    served: m.replica.served(),
                    gpu_ids: m.held.reservation.gpu_ids.clone(),
                    starts: m.starts,
                    last_error: m.replica.last_error(),
                })
                .collect(),
        }
    }

    /// Stops taking requests, lets the ongoing ones finish (at most `timeout`), stops the
    /// replicas and gives their resources back.
    pub(crate) async fn shutdown(self: &Arc<Self>, timeout: Duration) {
        self.closed.store(true, Ordering::SeqCst);
        self.router.close();
        self.kick.notify_one();
        let members: Vec<Member> = lock(&self.state).members.drain(..).collect();
        for m in &members {
            m.replica.load().stop_accepting();
        }
        futures::future::join_all(members.iter().map(|m| m.replica.drain(timeout))).await;
        self.router.set_replicas(Vec::new());
    }
}

/// An error and its causes, on one line.
fn error_chain(error: &Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Watches one deployment until it is closed or dropped: health checks every period,
/// reconciliation whenever something changes (a replica died, a request found no replica) and,
/// for autoscaling deployments, on every tick.
async fn control_loop(running: Weak<Running>, kick: Arc<Notify>) {
    let (period, autoscaling) = match running.upgrade() {
        Some(r) => (
            r.config.health_check_period(),
            r.config.autoscaling().is_some(),
        ),
        None => return,
    };
    let mut next_health = Instant::now() + period;
    loop {
        let tick = if autoscaling {
            AUTOSCALE_TICK
        } else {
            Duration::from_secs(1)
        };
        let wake = next_health.min(Instant::now() + tick);
        tokio::select! {
            () = kick.notified() => {}
            () = tokio::time::sleep_until(wake) => {}
        }
        let Some(r) = running.upgrade() else { return };
        if r.closed.load(Ordering::SeqCst) {
            return;
        }
        if Instant::now() >= next_health {
            r.check_health().await;
            next_health = Instant::now() + period;
        }
        r.reconcile().await;
    }
}
