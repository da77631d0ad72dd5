//! A running deployment: its replicas, router and control loop (health checks, replacement,
//! autoscaling, drain), and the [`Backend`] its handles talk to.

use std::any::TypeId;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use futures::future::BoxFuture;
use serde_json::Value;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::autoscale::Autoscaler;
use super::replica::Replica;
use super::router::Router;
use super::slot::{Events, Slot, Text};
use super::stats::{DeploymentStats, LoopCounters};
use crate::callable::Codec;
use crate::config::{DeploymentConfig, DeploymentKind};
use crate::context::{Registry, ReplicaContext};
use crate::deployment::{Parts, ReconfigureFn};
use crate::error::Error;
use crate::handle::{Answer, AnyBox, Backend, DeploymentHandle};
use crate::handler::HttpBody;
use crate::node::Shortfall;
use crate::node::scheduler::{Reservation, Scheduler};
use crate::request::RequestContext;
use crate::schema::AgentSchema;
use crate::status::{DeploymentState, DeploymentStatus, ReplicaState, ReplicaStatus};
use crate::stream::ReplicaStream;
use crate::striped::Striped;
use crate::target::Factory;

/// Attempts at a replica's constructor before its start counts as failed.
const START_ATTEMPTS: u32 = 3;
/// The first pause between constructor attempts; it doubles each time.
const START_BACKOFF: Duration = Duration::from_millis(100);
/// The longest pause before the controller tries again to start a failed replica.
const MAX_RESTART_BACKOFF: Duration = Duration::from_secs(30);
/// How often an autoscaling deployment looks at its load.
const AUTOSCALE_TICK: Duration = Duration::from_millis(100);
/// The most replicas one deployment may have in this process.
const MAX_REPLICAS: u32 = 1024;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A running deployment: what the controller keeps of it.
pub(crate) struct Running {
    name: String,
    /// The configuration now: lightweight options change in place ([`Running::update`]).
    config: ArcSwap<DeploymentConfig>,
    factory: Factory,
    kind: DeploymentKind,
    schema: Option<Arc<AgentSchema>>,
    /// A hook given with `Deployment::with_reconfigure`.
    reconfigure: Option<ReconfigureFn>,
    /// The Rust types that build the replicas (see `Deployment::same_code`).
    code: TypeId,
    /// How a typed deployment's values cross processes.
    codec: Option<Codec>,
    /// Held while replicas are reconfigured, and while a started replica catches up with the
    /// `user_config` and joins: no replica misses an update.
    reconfiguring: tokio::sync::Mutex<()>,
    /// The version that replaced this one: requests that reach this one once it is shutting
    /// down (a caller that read the routes just before they changed) go there instead.
    successor: arc_swap::ArcSwapOption<DeploymentHandle>,
    router: Router,
    scheduler: Arc<Mutex<Scheduler>>,
    registry: Weak<dyn Registry>,
    kick: Arc<Notify>,
    state: Mutex<State>,
    next_replica: AtomicU64,
    closed: AtomicBool,
    /// Requests sent through the deployment's handles, for the metrics.
    handle_requests: Striped<1>,
    /// The control loop's iterations and how long the last one took.
    loops: LoopCounters,
}

struct State {
    status: DeploymentState,
    message: String,
    target: u32,
    members: Vec<Member>,
    autoscaler: Option<Autoscaler>,
    start_failures: u32,
    retry_at: Option<Instant>,
    /// Replicas waiting for resources, and why: set while the node cannot hold the target.
    pending: Option<(u32, String)>,
    /// Why the last `reconfigure` of running replicas failed: the deployment stays `UNHEALTHY`
    /// until an update succeeds.
    update_error: Option<String>,
}

/// Resources reserved on the node, given back when dropped: on every path (a replica retired or
/// shut down, a start that failed or was cancelled, a dropped deployment).
struct Held {
    reservation: Reservation,
    scheduler: Arc<Mutex<Scheduler>>,
}

impl Drop for Held {
    fn drop(&mut self) {
        lock(&self.scheduler).release(&self.reservation);
    }
}

/// A replica and the resources it holds.
struct Member {
    replica: Arc<Replica>,
    held: Held,
    starts: u32,
}

impl Running {
    /// Starts `initial` replicas of a deployment, then its control loop. Nothing keeps running
    /// when this fails.
    pub(crate) async fn start(
        parts: Parts,
        scheduler: Arc<Mutex<Scheduler>>,
        registry: Weak<dyn Registry>,
    ) -> Result<Arc<Running>, Error> {
        let Parts {
            config,
            factory,
            kind,
            schema,
            reconfigure,
            code,
            codec,
        } = parts;
        config.validate()?;
        let kick = Arc::new(Notify::new());
        let running = Arc::new(Running {
            router: Router::new(
                config.name().to_owned(),
                config.max_queued_requests(),
                kick.clone(),
            ),
            state: Mutex::new(State {
                status: DeploymentState::Updating,
                message: String::new(),
                target: config.initial_replicas(),
                members: Vec::new(),
                autoscaler: config.autoscaling().cloned().map(Autoscaler::new),
                start_failures: 0,
                retry_at: None,
                pending: None,
                update_error: None,
            }),
            name: config.name().to_owned(),
            config: ArcSwap::from_pointee(config),
            factory,
            kind,
            schema,
            reconfigure,
            code,
            codec,
            reconfiguring: tokio::sync::Mutex::new(()),
            successor: arc_swap::ArcSwapOption::empty(),
            scheduler,
            registry,
            kick,
            next_replica: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            handle_requests: Striped::new(),
            loops: LoopCounters::default(),
        });
        // The minimum must start; the replicas beyond it start now if they fit, else they wait
        // as pending for the control loop to start them when resources free up.
        let initial = running.config().initial_replicas();
        let minimum = running.config().min_replicas().min(initial);
        let required = (0..minimum).map(|_| running.start_member());
        let extra = (minimum..initial).map(|_| running.start_member());
        let (required, extra) = futures::future::join(
            futures::future::try_join_all(required),
            futures::future::join_all(extra),
        )
        .await;
        let mut members = match required {
            Ok(members) => members,
            Err(e) => {
                lock(&running.state).status = DeploymentState::DeployFailed;
                running.closed.store(true, Ordering::SeqCst);
                return Err(e);
            }
        };
        let mut shortfall = None;
        for started in extra {
            match started {
                Ok(member) => members.push(member),
                Err(Error::NoRoom {
                    shortfall: short, ..
                }) => shortfall = Some(short),
                Err(e) => {
                    lock(&running.state).status = DeploymentState::DeployFailed;
                    running.closed.store(true, Ordering::SeqCst);
                    return Err(e);
                }
            }
        }
        {
            let mut st = lock(&running.state);
            st.members = members;
            match shortfall {
                Some(short) => running.note_pending(&mut st, &short),
                None if st.members.len() as u32 == st.target => {
                    st.status = DeploymentState::Healthy;
                }
                None => {}
            }
        }
        running.publish();
        tokio::spawn(control_loop(Arc::downgrade(&running), running.kick.clone()));
        Ok(running)
    }

    /// The configuration now.
    pub(crate) fn config(&self) -> Arc<DeploymentConfig> {
        self.config.load_full()
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn kind(&self) -> DeploymentKind {
        self.kind
    }

    /// The Rust types that build the replicas.
    pub(crate) fn code(&self) -> TypeId {
        self.code
    }

    /// Whether the deployment was shut down (or never started).
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Replicas running now (what the node holds for it).
    pub(crate) fn running_replicas(&self) -> u32 {
        lock(&self.state).members.len() as u32
    }

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
        let config = self.config();
        let reservation = lock(&self.scheduler)
            .reserve(&self.name, &config.resources())
            .map_err(|shortfall| Error::NoRoom {
                deployment: self.name.clone(),
                shortfall,
            })?;
        let held = Held {
            reservation,
            scheduler: self.scheduler.clone(),
        };
        let n = self.next_replica.fetch_add(1, Ordering::Relaxed);
        let ctx = ReplicaContext::with_registry(
            &self.name,
            format!("{}#{n}", self.name),
            held.reservation.gpu_ids.clone(),
            self.registry.clone(),
        );
        let mut pause = START_BACKOFF;
        for attempt in 1..=START_ATTEMPTS {
            // The configuration now: a start retried after an update gets the new one.
            let config = self.config();
            let started = Replica::start(
                ctx.clone(),
                &config,
                &self.factory,
                self.reconfigure.as_ref(),
                self.kick.clone(),
            )
            .await;
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

    /// Starts one more replica and adds it to the members; it catches up first with a
    /// `user_config` that changed while it started.
    async fn start_joining(&self) -> Result<(), Error> {
        let member = self.start_member().await?;
        let _reconfiguring = self.reconfiguring.lock().await;
        let config = self.config();
        if let Some(user_config) = config.user_config()
            && !member.replica.has_applied(Some(user_config))
        {
            // Never routed to: dropping it stops it and gives its resources back.
            member
                .replica
                .reconfigure(user_config, self.reconfigure.as_ref())
                .await
                .map_err(|e| Error::ReplicaStart {
                    deployment: self.name.clone(),
                    replica: member.replica.id().to_owned(),
                    cause: Box::new(e),
                })?;
        }
        {
            let mut st = lock(&self.state);
            st.members.push(member);
            st.start_failures = 0;
            st.retry_at = None;
        }
        self.publish();
        Ok(())
    }

    /// Applies a lightweight change of configuration in place (the name, resources and isolation
    /// stay; the controller checks): new limits for the requests that reserve or queue from now
    /// on, a new target number of replicas (or autoscaling bounds) that the control loop brings
    /// the replicas to, and a new `user_config` given to every running replica's `reconfigure`
    /// without a restart (replicas started later get it at start). A `reconfigure` that fails
    /// marks the deployment `UNHEALTHY` with the error as its message until an update succeeds;
    /// the replicas keep serving.
    pub(crate) async fn update(&self, config: DeploymentConfig) {
        // Held first: a replica that is starting joins before (and is reconfigured here) or
        // after (and catches up itself).
        let _reconfiguring = self.reconfiguring.lock().await;
        let old = self.config();
        let new_user_config =
            (old.user_config() != config.user_config()).then(|| config.user_config().cloned());
        self.router.set_max_queued(config.max_queued_requests());
        let replicas: Vec<Arc<Replica>> = {
            let mut st = lock(&self.state);
            for m in &st.members {
                m.replica
                    .load()
                    .set_max_ongoing(config.max_ongoing_requests());
            }
            match config.autoscaling() {
                Some(bounds) => {
                    if old.autoscaling() != Some(bounds) {
                        st.autoscaler = Some(Autoscaler::new(bounds.clone()));
                    }
                    // Back inside the new bounds at once; the autoscaler takes it from there.
                    st.target = st.target.clamp(bounds.min_replicas, bounds.max_replicas);
                }
                None => {
                    st.autoscaler = None;
                    st.target = config.num_replicas();
                }
            }
            st.members
                .iter()
                .filter(|m| !m.replica.is_dead())
                .map(|m| m.replica.clone())
                .collect()
        };
        self.config.store(Arc::new(config));
        self.router.wake();
        if let Some(user_config) = new_user_config {
            let mut failures = Vec::new();
            if let Some(user_config) = &user_config {
                let hook = self.reconfigure.as_ref();
                let results = futures::future::join_all(
                    replicas
                        .iter()
                        .map(|r| async move { (r, r.reconfigure(user_config, hook).await) }),
                )
                .await;
                // A replica the control loop stopped or found dead meanwhile does not count.
                let members: Vec<Arc<Replica>> = lock(&self.state)
                    .members
                    .iter()
                    .filter(|m| !m.replica.is_dead())
                    .map(|m| m.replica.clone())
                    .collect();
                for (replica, result) in results {
                    if let Err(e) = result
                        && members.iter().any(|m| Arc::ptr_eq(m, replica))
                    {
                        failures.push(format!(
                            "reconfigure failed on replica {}: {}",
                            replica.id(),
                            error_chain(&e)
                        ));
                    }
                }
            }
            let mut st = lock(&self.state);
            if failures.is_empty() {
                if st.update_error.take().is_some() {
                    st.message.clear();
                }
            } else {
                let message = failures.join("; ");
                tracing::warn!(deployment = %self.name, "{message}");
                st.status = DeploymentState::Unhealthy;
                st.message.clone_from(&message);
                st.update_error = Some(message);
            }
        }
        self.kick.notify_one();
    }

    /// Stops a member in the background: no new requests, its ongoing ones finish (at most the
    /// graceful timeout), then its resources go back to the node.
    fn retire(self: &Arc<Self>, member: Member) {
        member.replica.load().stop_accepting();
        let grace = self.config().graceful_shutdown_timeout();
        tokio::spawn(async move {
            member.replica.drain(grace).await;
            drop(member);
        });
    }

    /// How many more replicas of this deployment the node could hold now (at most `cap`).
    fn room(&self, cap: u32) -> u32 {
        lock(&self.scheduler).room(&self.config().resources(), cap)
    }

    async fn check_health(self: &Arc<Self>) {
        let replicas: Vec<Arc<Replica>> = lock(&self.state)
            .members
            .iter()
            .map(|m| m.replica.clone())
            .collect();
        let timeout = self.config().health_check_timeout();
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
                let cap = running + self.room(MAX_REPLICAS.saturating_sub(running));
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
            match self.start_joining().await {
                Ok(()) => running += 1,
                Err(Error::NoRoom { shortfall, .. }) => {
                    // Not a failure: the replica waits until resources free up.
                    self.note_pending(&mut lock(&self.state), &shortfall);
                    break;
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
        if running >= st.target && st.pending.take().is_some() {
            st.message.clear();
            tracing::info!(
                deployment = %self.name,
                "all {} replicas of deployment `{}` run",
                st.target,
                self.name
            );
        }
        if let Some(error) = &st.update_error {
            st.message = error.clone();
            st.status = DeploymentState::Unhealthy;
        } else if running == st.target && st.start_failures == 0 {
            st.status = DeploymentState::Healthy;
        } else if st.start_failures == 0 {
            st.status = DeploymentState::Updating;
        }
    }

    /// Records that replicas wait for resources (`shortfall` says what is missing); warns when
    /// that changes.
    fn note_pending(&self, st: &mut State, shortfall: &Shortfall) {
        let pending = st.target.saturating_sub(st.members.len() as u32);
        if pending == 0 {
            return;
        }
        let message = format!(
            "{pending} of {} replicas pending: {shortfall}; they start when resources free up \
             (or lower num_cpus / memory / num_replicas, or declare the node with RAYAI_NUM_CPUS, \
             RAYAI_MEMORY, RAYAI_NUM_GPUS)",
            st.target
        );
        if st
            .pending
            .as_ref()
            .is_none_or(|(n, m)| *n != pending || *m != message)
        {
            tracing::warn!(
                deployment = %self.name,
                pending,
                "deployment `{}`: {message}",
                self.name
            );
        }
        st.status = DeploymentState::Updating;
        st.message.clone_from(&message);
        st.pending = Some((pending, message));
    }

    pub(crate) fn status(&self) -> DeploymentStatus {
        let st = lock(&self.state);
        DeploymentStatus {
            name: self.name.clone(),
            served_name: self.kind.served_name(&self.name).into_owned(),
            status: st.status,
            message: st.message.clone(),
            target_replicas: st.target,
            running_replicas: st.members.len() as u32,
            pending_replicas: st.pending.as_ref().map_or(0, |(n, _)| *n),
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
                    start_time: m.replica.started_at(),
                    address: None,
                })
                .collect(),
        }
    }

    /// The counters the metrics read.
    pub(crate) fn stats(&self) -> DeploymentStats {
        let (control_loops, last_control_loop) = self.loops.read();
        let st = lock(&self.state);
        let missing = st.target.saturating_sub(st.members.len() as u32);
        DeploymentStats {
            handle_requests: self.handle_requests.get(0),
            router_requests: self.router.requests(),
            pending_replicas: st.pending.as_ref().map_or(0, |(n, _)| *n),
            replicas_in_backoff: if st.retry_at.is_some_and(|at| at > Instant::now()) {
                missing
            } else {
                0
            },
            control_loops,
            last_control_loop,
            replicas: st.members.iter().map(|m| m.replica.stats()).collect(),
        }
    }

    /// Counts one request sent through a handle.
    fn count_handle_request(&self) {
        self.handle_requests.add(0, 1);
    }

    /// Sends the requests that reach this version from now on, once it is shutting down, to
    /// `next`, the version that replaces it: a caller that read the routes just before they
    /// changed is served, not refused.
    pub(crate) fn hand_over(&self, next: DeploymentHandle) {
        self.successor.store(Some(Arc::new(next)));
    }

    /// A handle's request: `on_replica` with a slot on one of the replicas (after waiting in the
    /// queue if need be), or, when this version no longer takes requests and another replaced
    /// it, `on_successor` with that one.
    fn routed<'a, P, T, R, RF, S, SF>(
        &'a self,
        ctx: RequestContext,
        payload: P,
        on_replica: R,
        on_successor: S,
    ) -> BoxFuture<'a, Result<T, Error>>
    where
        P: Send + 'a,
        R: FnOnce(Slot, RequestContext, P) -> RF + Send + 'a,
        RF: Future<Output = Result<T, Error>> + Send + 'a,
        S: FnOnce(Arc<DeploymentHandle>, RequestContext, P) -> SF + Send + 'a,
        SF: Future<Output = Result<T, Error>> + Send + 'a,
    {
        self.count_handle_request();
        Box::pin(async move {
            match self
                .router
                .acquire(ctx.routing_key(), ctx.model_key())
                .await
            {
                Ok(slot) => on_replica(slot, ctx, payload).await,
                Err(e) => match self.successor(&e) {
                    Some(next) => on_successor(next, ctx, payload).await,
                    None => Err(e),
                },
            }
        })
    }

    /// The version that replaced this one, when requests are to go there: once this one no
    /// longer takes them.
    fn successor(&self, refused: &Error) -> Option<Arc<DeploymentHandle>> {
        matches!(refused, Error::ShuttingDown(_))
            .then(|| self.successor.load_full())
            .flatten()
    }

    /// Stops taking requests, lets the ongoing ones finish (at most `timeout`), stops the
    /// replicas and gives their resources back.
    pub(crate) async fn shutdown(&self, timeout: Duration) {
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

impl Backend for Running {
    fn name(&self) -> &str {
        &self.name
    }

    fn config(&self) -> Arc<DeploymentConfig> {
        Running::config(self)
    }

    fn kind(&self) -> DeploymentKind {
        self.kind
    }

    fn schema(&self) -> Option<&AgentSchema> {
        self.schema.as_deref()
    }

    fn status(&self) -> DeploymentStatus {
        Running::status(self)
    }

    fn queued(&self) -> u32 {
        self.router.queued()
    }

    fn stats(&self) -> DeploymentStats {
        Running::stats(self)
    }

    fn call(&self, ctx: RequestContext, data: Value) -> BoxFuture<'_, Result<Value, Error>> {
        self.routed(
            ctx,
            data,
            |slot, ctx, data| slot.call(ctx, data),
            |next, ctx, data| async move { next.backend().call(ctx, data).await },
        )
    }

    /// As `call`, in one boxed future rather than the default's box around `call`'s box.
    fn call_answer(
        &self,
        ctx: RequestContext,
        data: Value,
    ) -> BoxFuture<'_, Result<Answer, Error>> {
        self.routed(
            ctx,
            data,
            |slot, ctx, data| async move { slot.call(ctx, data).await.map(Answer::Value) },
            |next, ctx, data| async move { next.backend().call_answer(ctx, data).await },
        )
    }

    fn stream_text(
        &self,
        ctx: RequestContext,
        data: Value,
    ) -> BoxFuture<'_, Result<ReplicaStream<String>, Error>> {
        self.routed(
            ctx,
            data,
            |slot, ctx, data| slot.stream::<Text>(ctx, data),
            |next, ctx, data| async move { next.backend().stream_text(ctx, data).await },
        )
    }

    fn stream_events(
        &self,
        ctx: RequestContext,
        data: Value,
    ) -> BoxFuture<'_, Result<ReplicaStream<Value>, Error>> {
        self.routed(
            ctx,
            data,
            |slot, ctx, data| slot.stream::<Events>(ctx, data),
            |next, ctx, data| async move { next.backend().stream_events(ctx, data).await },
        )
    }

    fn call_any(
        &self,
        ctx: RequestContext,
        request: AnyBox,
    ) -> BoxFuture<'_, Result<AnyBox, Error>> {
        self.routed(
            ctx,
            request,
            |slot, ctx, request| slot.call_any(ctx, request),
            |next, ctx, request| async move { next.backend().call_any(ctx, request).await },
        )
    }

    fn call_typed_json(
        &self,
        ctx: RequestContext,
        data: Value,
    ) -> BoxFuture<'_, Result<Value, Error>> {
        Box::pin(async move {
            let codec = self.codec.ok_or_else(|| Error::WrongKind {
                deployment: self.name.clone(),
                expected: "a typed deployment whose values cross processes (Callable::crossing)",
            })?;
            let request = (codec.request_from_json)(data)
                .map_err(|e| Error::Agent(crate::AgentError::bad_request(e)))?;
            let response = Backend::call_any(self, ctx, request).await?;
            (codec.response_to_json)(&response).map_err(|e| Error::Agent(crate::AgentError::new(e)))
        })
    }

    fn serve(
        &self,
        ctx: RequestContext,
        req: http::Request<HttpBody>,
    ) -> BoxFuture<'_, Result<http::Response<HttpBody>, Error>> {
        self.routed(
            ctx,
            req,
            |slot, ctx, req| slot.serve(ctx, req),
            |next, ctx, req| async move { next.backend().serve(ctx, req).await },
        )
    }

    fn shutdown(&self, timeout: Duration) -> BoxFuture<'_, ()> {
        Box::pin(Running::shutdown(self, timeout))
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
    let Some(mut period) = running.upgrade().map(|r| r.config().health_check_period()) else {
        return;
    };
    let mut next_health = Instant::now() + period;
    loop {
        // Read each time round: a lightweight update may change them.
        let Some((now_period, autoscaling)) = running.upgrade().map(|r| {
            let config = r.config();
            (config.health_check_period(), config.autoscaling().is_some())
        }) else {
            return;
        };
        if now_period != period {
            period = now_period;
            next_health = next_health.min(Instant::now() + period);
        }
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
        let began = Instant::now();
        if began >= next_health {
            r.check_health().await;
            next_health = Instant::now() + period;
        }
        r.reconcile().await;
        r.loops.record(began.elapsed());
    }
}
