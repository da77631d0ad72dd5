//! A running deployment: its replicas, router and control loop (health checks, replacement,
//! autoscaling, drain), and the [`Backend`] its handles talk to.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::Value;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::autoscale::Autoscaler;
use super::replica::Replica;
use super::router::Router;
use super::slot::{Events, Text};
use super::stats::{DeploymentStats, LoopCounters};
use crate::config::{DeploymentConfig, DeploymentKind};
use crate::context::{Registry, ReplicaContext};
use crate::error::Error;
use crate::handle::{AnyBox, Backend};
use crate::handler::HttpBody;
use crate::node::Shortfall;
use crate::node::scheduler::{Reservation, Scheduler};
use crate::request::RequestContext;
use crate::schema::AgentSchema;
use crate::status::{DeploymentState, DeploymentStatus, ReplicaState, ReplicaStatus};
use crate::stream::ReplicaStream;
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
    config: DeploymentConfig,
    factory: Factory,
    kind: DeploymentKind,
    schema: Option<Arc<AgentSchema>>,
    router: Router,
    scheduler: Arc<Mutex<Scheduler>>,
    registry: Weak<dyn Registry>,
    kick: Arc<Notify>,
    state: Mutex<State>,
    next_replica: AtomicU64,
    closed: AtomicBool,
    /// Requests sent through the deployment's handles, for the metrics.
    handle_requests: AtomicU64,
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
        config: DeploymentConfig,
        factory: Factory,
        kind: DeploymentKind,
        schema: Option<Arc<AgentSchema>>,
        scheduler: Arc<Mutex<Scheduler>>,
        registry: Weak<dyn Registry>,
    ) -> Result<Arc<Running>, Error> {
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
            }),
            config,
            factory,
            kind,
            schema,
            scheduler,
            registry,
            kick,
            next_replica: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            handle_requests: AtomicU64::new(0),
            loops: LoopCounters::default(),
        });
        // The minimum must start; the replicas beyond it start now if they fit, else they wait
        // as pending for the control loop to start them when resources free up.
        let initial = running.config.initial_replicas();
        let minimum = running.config.min_replicas().min(initial);
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

    pub(crate) fn config(&self) -> &DeploymentConfig {
        &self.config
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
        let reservation = lock(&self.scheduler)
            .reserve(self.config.name(), &self.config.resources())
            .map_err(|shortfall| Error::NoRoom {
                deployment: self.config.name().to_owned(),
                shortfall,
            })?;
        let held = Held {
            reservation,
            scheduler: self.scheduler.clone(),
        };
        let n = self.next_replica.fetch_add(1, Ordering::Relaxed);
        let ctx = ReplicaContext::with_registry(
            self.config.name(),
            format!("{}#{n}", self.config.name()),
            held.reservation.gpu_ids.clone(),
            self.registry.clone(),
        );
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

    /// How many more replicas of this deployment the node could hold now (at most `cap`).
    fn room(&self, cap: u32) -> u32 {
        lock(&self.scheduler).room(&self.config.resources(), cap)
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
                deployment = %self.config.name(),
                "all {} replicas of deployment `{}` run",
                st.target,
                self.config.name()
            );
        }
        if running == st.target && st.start_failures == 0 {
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
                deployment = %self.config.name(),
                pending,
                "deployment `{}`: {message}",
                self.config.name()
            );
        }
        st.status = DeploymentState::Updating;
        st.message.clone_from(&message);
        st.pending = Some((pending, message));
    }

    pub(crate) fn status(&self) -> DeploymentStatus {
        let st = lock(&self.state);
        DeploymentStatus {
            name: self.config.name().to_owned(),
            served_name: self.kind.served_name(self.config.name()).into_owned(),
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
            handle_requests: self.handle_requests.load(Ordering::Relaxed),
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
        self.handle_requests.fetch_add(1, Ordering::Relaxed);
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
    fn config(&self) -> &DeploymentConfig {
        &self.config
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
        self.count_handle_request();
        Box::pin(async move {
            let slot = self.router.acquire(ctx.routing_key()).await?;
            slot.call(ctx, data).await
        })
    }

    fn stream_text(
        &self,
        ctx: RequestContext,
        data: Value,
    ) -> BoxFuture<'_, Result<ReplicaStream<String>, Error>> {
        self.count_handle_request();
        Box::pin(async move {
            let slot = self.router.acquire(ctx.routing_key()).await?;
            slot.stream::<Text>(ctx, data).await
        })
    }

    fn stream_events(
        &self,
        ctx: RequestContext,
        data: Value,
    ) -> BoxFuture<'_, Result<ReplicaStream<Value>, Error>> {
        self.count_handle_request();
        Box::pin(async move {
            let slot = self.router.acquire(ctx.routing_key()).await?;
            slot.stream::<Events>(ctx, data).await
        })
    }

    fn call_any(
        &self,
        ctx: RequestContext,
        request: AnyBox,
    ) -> BoxFuture<'_, Result<AnyBox, Error>> {
        self.count_handle_request();
        Box::pin(async move {
            let slot = self.router.acquire(ctx.routing_key()).await?;
            slot.call_any(ctx, request).await
        })
    }

    fn serve(
        &self,
        ctx: RequestContext,
        req: http::Request<HttpBody>,
    ) -> BoxFuture<'_, Result<http::Response<HttpBody>, Error>> {
        self.count_handle_request();
        Box::pin(async move {
            let slot = self.router.acquire(ctx.routing_key()).await?;
            slot.serve(ctx, req).await
        })
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
        let began = Instant::now();
        if began >= next_health {
            r.check_health().await;
            next_health = Instant::now() + period;
        }
        r.reconcile().await;
        r.loops.record(began.elapsed());
    }
}
