//! A deployment whose replicas run in other processes: the same router (power of two choices
//! on the in-flight count kept here, `max_ongoing_requests` per replica, the queue and its
//! `503`, sticky sessions by rendezvous hashing) over the addresses a [`Discovery`] yields, a
//! health probe per address, and requests retried elsewhere when a replica never saw them.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use futures::StreamExt;
use futures::future::BoxFuture;
use serde_json::Value;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

use super::executor::AbortOnDrop;
use super::replica::{Load, Routed};
use super::router::Router;
use super::slot::Slot;
use super::stats::{DeploymentStats, LoopCounters, ReplicaCounters};
use crate::callable::Codec;
use crate::config::{DeploymentConfig, DeploymentKind};
use crate::deployment::Parts;
use crate::error::Error;
use crate::handle::{Answer, AnyBox, Backend};
use crate::handler::{BoxError, HttpBody};
use crate::remote::{Failure, RemoteStream, Roles};
use crate::request::RequestContext;
use crate::schema::AgentSchema;
use crate::status::{DeploymentState, DeploymentStatus, ReplicaState, ReplicaStatus};
use crate::stream::{Msg, ReplicaStream};
use crate::striped::Striped;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One replica process of a remote deployment, as this process sees it.
pub(crate) struct Peer {
    address: String,
    load: Load,
    served: AtomicU64,
    counters: ReplicaCounters,
    /// Taken out of the set (refused a connection, reset, failed its probe) until a probe
    /// says it is healthy again.
    down: AtomicBool,
    /// Never probed healthy yet: not routed to before its first probe.
    fresh: AtomicBool,
    last_error: Mutex<Option<String>>,
    since: SystemTime,
}

impl Routed for Peer {
    fn id(&self) -> &str {
        &self.address
    }
    fn load(&self) -> &Load {
        &self.load
    }
}

impl Peer {
    fn new(address: String, max_ongoing: u32) -> Self {
        Peer {
            address,
            load: Load::new(max_ongoing),
            served: AtomicU64::new(0),
            counters: ReplicaCounters::default(),
            down: AtomicBool::new(false),
            fresh: AtomicBool::new(true),
            last_error: Mutex::new(None),
            since: SystemTime::now(),
        }
    }

    fn routable(&self) -> bool {
        !self.down.load(Ordering::SeqCst) && !self.fresh.load(Ordering::SeqCst)
    }
}

/// A deployment whose replicas are other processes.
pub(crate) struct RemoteDeployment {
    name: String,
    config: ArcSwap<DeploymentConfig>,
    kind: DeploymentKind,
    schema: Option<Arc<AgentSchema>>,
    /// How a typed deployment's values cross.
    codec: Option<Codec>,
    roles: Roles,
    router: Router<Peer>,
    /// Every address discovery yields, routable or not, in discovery's order.
    peers: Mutex<Vec<Arc<Peer>>>,
    /// Why discovery failed last, while it fails.
    discovery_error: Mutex<Option<String>>,
    /// Wakes requests waiting for a first live replica, and the control loop.
    changed: Notify,
    kick: Arc<Notify>,
    closed: AtomicBool,
    handle_requests: Striped<1>,
    loops: LoopCounters,
}

/// How many replicas one request may try when the ones it reaches never saw it.
const MAX_ATTEMPTS: usize = 8;

impl RemoteDeployment {
    /// Starts following the deployment's replicas through discovery: resolves and probes them
    /// once before it returns (a replica found later joins when its first probe succeeds).
    pub(crate) async fn start(parts: Parts, roles: Roles) -> Result<Arc<RemoteDeployment>, Error> {
        let Parts {
            config,
            kind,
            schema,
            codec,
            ..
        } = parts;
        config.validate()?;
        if kind == DeploymentKind::Callable && codec.is_none() {
            return Err(Error::InvalidConfig {
                deployment: config.name().to_owned(),
                field: "name",
                reason: format!(
                    "the typed (Callable) deployment `{}` runs in another process, and its \
                     request and response do not say how to cross processes: implement \
                     `Callable::crossing` (`Some(Crossing::serde())` for serde types), or run it \
                     in the processes of its callers (list it in their RAYAI_DEPLOYMENT)",
                    config.name()
                ),
            });
        }
        let kick = Arc::new(Notify::new());
        let remote = Arc::new(RemoteDeployment {
            name: config.name().to_owned(),
            router: Router::new(
                config.name().to_owned(),
                config.max_queued_requests(),
                kick.clone(),
            ),
            config: ArcSwap::from_pointee(config),
            kind,
            schema,
            codec,
            roles,
            peers: Mutex::new(Vec::new()),
            discovery_error: Mutex::new(None),
            changed: Notify::new(),
            kick,
            closed: AtomicBool::new(false),
            handle_requests: Striped::new(),
            loops: LoopCounters::default(),
        });
        remote.discover().await;
        remote.probe_all().await;
        tokio::spawn(control_loop(Arc::downgrade(&remote)));
        Ok(remote)
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Reads the deployment's addresses again: new ones are probed before they take requests,
    /// gone ones leave the set (their requests in flight finish).
    async fn discover(&self) {
        match self.roles.discovery.resolve(&self.name).await {
            Ok(mut addresses) => {
                addresses.dedup();
                *lock(&self.discovery_error) = None;
                let max_ongoing = self.config.load().max_ongoing_requests();
                let mut peers = lock(&self.peers);
                let next: Vec<Arc<Peer>> = addresses
                    .into_iter()
                    .map(|address| {
                        peers
                            .iter()
                            .find(|p| p.address == address)
                            .cloned()
                            .unwrap_or_else(|| Arc::new(Peer::new(address, max_ongoing)))
                    })
                    .collect();
                let changed = next.len() != peers.len()
                    || next
                        .iter()
                        .zip(peers.iter())
                        .any(|(a, b)| !Arc::ptr_eq(a, b));
                *peers = next;
                drop(peers);
                if changed {
                    self.publish();
                }
            }
            Err(reason) => {
                let mut last = lock(&self.discovery_error);
                if last.as_deref() != Some(reason.as_str()) {
                    tracing::warn!(deployment = %self.name, %reason, "discovery failed; keeping the replicas known");
                }
                *last = Some(reason);
            }
        }
    }

    /// Probes every known replica; each one joins or leaves the set by its answer.
    async fn probe_all(&self) {
        let peers: Vec<Arc<Peer>> = lock(&self.peers).clone();
        let timeout = self
            .roles
            .probe_period
            .clamp(Duration::from_millis(200), Duration::from_secs(5));
        let probes = peers.iter().map(|peer| async move {
            let result = match tokio::time::timeout(
                timeout,
                self.roles.transport.probe(&peer.address, &self.name),
            )
            .await
            {
                Ok(result) => result,
                Err(_) => Err(format!(
                    "health probe timed out after {:.1}s",
                    timeout.as_secs_f64()
                )),
            };
            (peer, result)
        });
        let mut changed = false;
        for (peer, result) in futures::future::join_all(probes).await {
            match result {
                Ok(capacity) => {
                    peer.load.set_max_ongoing(capacity.max(1));
                    let was_down = peer.down.swap(false, Ordering::SeqCst);
                    let was_fresh = peer.fresh.swap(false, Ordering::SeqCst);
                    if was_down {
                        tracing::info!(deployment = %self.name, replica = %peer.address, "replica is healthy again; routing to it");
                    }
                    changed |= was_down || was_fresh;
                }
                Err(reason) => changed |= self.take_out(peer, reason, false),
            }
        }
        if changed {
            self.publish();
        }
    }

    /// Takes `peer` out of the set until a probe finds it healthy; returns whether it was in.
    fn take_out(&self, peer: &Peer, reason: String, publish: bool) -> bool {
        let was_up = !peer.down.swap(true, Ordering::SeqCst) && !peer.fresh.load(Ordering::SeqCst);
        if was_up {
            tracing::warn!(deployment = %self.name, replica = %peer.address, %reason, "replica taken out of the set");
        }
        *lock(&peer.last_error) = Some(reason);
        if was_up && publish {
            self.publish();
        }
        was_up
    }

    /// Makes the router route to the live replicas.
    fn publish(&self) {
        let live: Vec<Arc<Peer>> = lock(&self.peers)
            .iter()
            .filter(|p| p.routable())
            .cloned()
            .collect();
        self.router.set_replicas(live);
        self.changed.notify_waiters();
    }

    /// Replicas taking requests now: the router's set, read without a lock.
    fn live(&self) -> usize {
        self.router.len()
    }

    /// Waits until the deployment has a live replica, at most `roles.wait_for_replica`.
    async fn wait_for_live(&self) -> Result<(), Error> {
        let deadline = Instant::now() + self.roles.wait_for_replica;
        loop {
            let changed = self.changed.notified();
            let mut changed = std::pin::pin!(changed);
            changed.as_mut().enable();
            if self.closed.load(Ordering::SeqCst) {
                return Err(Error::ShuttingDown(self.name.clone()));
            }
            if self.live() > 0 {
                return Ok(());
            }
            self.kick.notify_one();
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return Err(self.unavailable());
            }
        }
    }

    /// Resolves once the deployment has had no live replica for `roles.wait_for_replica`.
    async fn all_gone(&self) {
        loop {
            let changed = self.changed.notified();
            let mut changed = std::pin::pin!(changed);
            changed.as_mut().enable();
            if self.live() > 0 {
                changed.await;
                continue;
            }
            match tokio::time::timeout(self.roles.wait_for_replica, changed).await {
                Err(_) if self.live() == 0 => return,
                _ => {}
            }
        }
    }

    fn unavailable(&self) -> Error {
        let peers = lock(&self.peers);
        let reason = if peers.is_empty() {
            match lock(&self.discovery_error).as_deref() {
                Some(error) => format!("discovery found no replica ({error})"),
                None => format!(
                    "discovery ({}) lists no replica",
                    self.roles.discovery.describe()
                ),
            }
        } else {
            let why: Vec<String> = peers
                .iter()
                .map(|p| match lock(&p.last_error).as_deref() {
                    Some(e) => format!("{}: {e}", p.address),
                    None => format!("{}: not probed healthy yet", p.address),
                })
                .collect();
            format!("no replica is reachable ({})", why.join("; "))
        };
        Error::Unavailable {
            deployment: self.name.clone(),
            reason,
        }
    }

    /// Sends a request with `send` to a replica: one reserved by the router, and another when
    /// the one reached never saw the request. Returns the answer with the slot it holds.
    async fn send<T, F, Fut>(
        &self,
        ctx: &RequestContext,
        mut send: F,
    ) -> Result<(T, Slot<Peer>, Instant), Error>
    where
        F: FnMut(&str) -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        self.handle_requests.add(0, 1);
        for _ in 0..MAX_ATTEMPTS {
            self.wait_for_live().await?;
            // Queued behind busy replicas, a request waits as long as its timeout allows; but
            // when every replica leaves meanwhile, only as long as a new request would.
            let slot = tokio::select! {
                slot = self.router.acquire(
                    // The router cannot see what another process's replica holds: a model's
                    // requests keep to one replica as a session's do.
                    ctx.routing_key().or(ctx.model_key()),
                    None,
                ) => slot?,
                () = self.all_gone() => return Err(self.unavailable()),
            };
            let peer = slot.replica().clone();
            peer.served.fetch_add(1, Ordering::Relaxed);
            let started = Instant::now();
            match send(&peer.address).await {
                Ok(answer) => return Ok((answer, slot, started)),
                Err(Failure::Unsent(reason) | Failure::Refused(reason)) => {
                    // Not given to it after all.
                    peer.served.fetch_sub(1, Ordering::Relaxed);
                    tracing::debug!(deployment = %self.name, replica = %peer.address, %reason, "the replica did not take the request; trying another");
                    self.take_out(&peer, reason, true);
                }
                Err(Failure::Lost(reason)) => {
                    peer.counters.record(started.elapsed(), false);
                    self.take_out(&peer, reason.clone(), true);
                    return Err(Error::ReplicaLost {
                        deployment: self.name.clone(),
                        replica: peer.address.clone(),
                        reason,
                    });
                }
                Err(Failure::Answered(error)) => {
                    peer.counters.record(started.elapsed(), false);
                    return Err(error);
                }
            }
        }
        Err(self.unavailable())
    }

    /// Relays a remote stream into a [`ReplicaStream`] that holds the slot until it ends.
    fn relay<T: Send + 'static>(
        remote: RemoteStream<T>,
        slot: Slot<Peer>,
        started: Instant,
    ) -> ReplicaStream<T> {
        let (tx, rx) = mpsc::channel::<Msg<T>>(32);
        let task = tokio::spawn(async move {
            let mut remote = remote;
            let peer = slot.replica().clone();
            loop {
                let msg = match remote.next().await {
                    Some(Ok(item)) => Msg::Item(item),
                    Some(Err(e)) => Msg::Fail(e),
                    None => Msg::End,
                };
                let last = !matches!(msg, Msg::Item(_));
                if last {
                    peer.counters
                        .record(started.elapsed(), matches!(msg, Msg::End));
                }
                if tx.send(msg).await.is_err() || last {
                    break;
                }
            }
            drop(slot);
        });
        ReplicaStream::new(rx, AbortOnDrop::new(task))
    }

    pub(crate) fn status(&self) -> DeploymentStatus {
        let peers = lock(&self.peers);
        let live = peers.iter().filter(|p| p.routable()).count() as u32;
        let (status, message) = match (peers.len(), live) {
            (0, _) => (
                DeploymentState::Unhealthy,
                lock(&self.discovery_error).clone().unwrap_or_else(|| {
                    format!(
                        "discovery ({}) lists no replica",
                        self.roles.discovery.describe()
                    )
                }),
            ),
            (n, l) if l as usize == n => (DeploymentState::Healthy, String::new()),
            (n, 0) => (
                DeploymentState::Unhealthy,
                format!("none of {n} replicas is reachable"),
            ),
            (n, l) => (
                DeploymentState::Unhealthy,
                format!("{l} of {n} replicas reachable"),
            ),
        };
        DeploymentStatus {
            name: self.name.clone(),
            served_name: self.kind.served_name(&self.name).into_owned(),
            status,
            message,
            target_replicas: peers.len() as u32,
            running_replicas: live,
            pending_replicas: 0,
            queued_requests: self.router.queued(),
            replicas_started: peers.len() as u64,
            replicas: peers
                .iter()
                .map(|p| ReplicaStatus {
                    replica_id: p.address.clone(),
                    state: if p.routable() {
                        ReplicaState::Running
                    } else {
                        ReplicaState::Unreachable
                    },
                    ongoing_requests: p.load.ongoing(),
                    served: p.served.load(Ordering::Relaxed),
                    gpu_ids: Vec::new(),
                    starts: 1,
                    last_error: lock(&p.last_error).clone(),
                    start_time: p.since,
                    address: Some(p.address.clone()),
                })
                .collect(),
        }
    }

    pub(crate) fn stats(&self) -> DeploymentStats {
        let (control_loops, last_control_loop) = self.loops.read();
        DeploymentStats {
            handle_requests: self.handle_requests.get(0),
            router_requests: self.router.requests(),
            pending_replicas: 0,
            replicas_in_backoff: 0,
            control_loops,
            last_control_loop,
            replicas: lock(&self.peers)
                .iter()
                .map(|p| p.counters.snapshot(&p.address))
                .collect(),
        }
    }

    /// Stops routing; requests in flight finish on their replicas (at most `timeout`).
    pub(crate) async fn shutdown(&self, timeout: Duration) {
        self.closed.store(true, Ordering::SeqCst);
        self.router.close();
        self.changed.notify_waiters();
        let deadline = Instant::now() + timeout;
        let peers: Vec<Arc<Peer>> = lock(&self.peers).clone();
        for peer in &peers {
            peer.load.stop_accepting();
        }
        while Instant::now() < deadline && peers.iter().any(|p| p.load.ongoing() > 0) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Re-reads discovery every period and probes the replicas every probe period, until the
/// deployment is closed or dropped.
async fn control_loop(remote: Weak<RemoteDeployment>) {
    let Some((discover_every, probe_every, kick)) = remote.upgrade().map(|r| {
        (
            r.roles.discovery.period(),
            r.roles.probe_period,
            r.kick.clone(),
        )
    }) else {
        return;
    };
    let mut next_discovery = Instant::now() + discover_every;
    let mut next_probe = Instant::now() + probe_every;
    loop {
        let wake = next_discovery.min(next_probe);
        let kicked = tokio::select! {
            () = kick.notified() => true,
            () = tokio::time::sleep_until(wake) => false,
        };
        let Some(r) = remote.upgrade() else { return };
        if r.is_closed() {
            return;
        }
        let began = Instant::now();
        if kicked || began >= next_discovery {
            r.discover().await;
            next_discovery = Instant::now() + discover_every;
        }
        if kicked || began >= next_probe {
            r.probe_all().await;
            next_probe = Instant::now() + probe_every;
        }
        r.loops.record(began.elapsed());
        if kicked {
            // A request found no live replica: look again soon, not in a tight loop.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Backend for RemoteDeployment {
    fn name(&self) -> &str {
        &self.name
    }

    fn config(&self) -> Arc<DeploymentConfig> {
        self.config.load_full()
    }

    fn kind(&self) -> DeploymentKind {
        self.kind
    }

    fn schema(&self) -> Option<&AgentSchema> {
        self.schema.as_deref()
    }

    fn status(&self) -> DeploymentStatus {
        RemoteDeployment::status(self)
    }

    fn queued(&self) -> u32 {
        self.router.queued()
    }

    fn stats(&self) -> DeploymentStats {
        RemoteDeployment::stats(self)
    }

    fn call(&self, ctx: RequestContext, data: Value) -> BoxFuture<'_, Result<Value, Error>> {
        Box::pin(async move {
            match self.call_answer(ctx, data).await? {
                Answer::Value(value) => Ok(value),
                Answer::Json(json) => {
                    serde_json::from_slice(&json).map_err(|e| Error::ReplicaLost {
                        deployment: self.name.clone(),
                        replica: String::new(),
                        reason: format!("its answer is not JSON: {e}"),
                    })
                }
            }
        })
    }

    fn call_answer(
        &self,
        ctx: RequestContext,
        data: Value,
    ) -> BoxFuture<'_, Result<Answer, Error>> {
        Box::pin(async move {
            let transport = &self.roles.transport;
            let (json, slot, started) = self
                .send(&ctx, |address| {
                    transport.call_json(address, &self.name, &ctx, &data)
                })
                .await?;
            slot.replica().counters.record(started.elapsed(), true);
            Ok(Answer::Json(json))
        })
    }

    fn stream_text(
        &self,
        ctx: RequestContext,
        data: Value,
    ) -> BoxFuture<'_, Result<ReplicaStream<String>, Error>> {
        Box::pin(async move {
            let transport = &self.roles.transport;
            let (stream, slot, started) = self
                .send(&ctx, |address| {
                    transport.stream_text(address, &self.name, &ctx, &data)
                })
                .await?;
            Ok(Self::relay(stream, slot, started))
        })
    }

    fn stream_events(
        &self,
        ctx: RequestContext,
        data: Value,
    ) -> BoxFuture<'_, Result<ReplicaStream<Value>, Error>> {
        Box::pin(async move {
            let transport = &self.roles.transport;
            let (stream, slot, started) = self
                .send(&ctx, |address| {
                    transport.stream_events(address, &self.name, &ctx, &data)
                })
                .await?;
            Ok(Self::relay(stream, slot, started))
        })
    }

    fn call_any(
        &self,
        ctx: RequestContext,
        request: AnyBox,
    ) -> BoxFuture<'_, Result<AnyBox, Error>> {
        Box::pin(async move {
            let codec = self.codec.ok_or_else(|| Error::WrongKind {
                deployment: self.name.clone(),
                expected: "a typed deployment whose values cross processes (Callable::crossing)",
            })?;
            let data = (codec.request_to_json)(&request)
                .map_err(|e| Error::Agent(crate::AgentError::bad_request(e)))?;
            let value = self.call_typed_json(ctx, data).await?;
            (codec.response_from_json)(value).map_err(|e| Error::Agent(crate::AgentError::new(e)))
        })
    }

    fn call_typed_json(
        &self,
        ctx: RequestContext,
        data: Value,
    ) -> BoxFuture<'_, Result<Value, Error>> {
        Box::pin(async move {
            let transport = &self.roles.transport;
            let (value, slot, started) = self
                .send(&ctx, |address| {
                    transport.call_typed(address, &self.name, &ctx, &data)
                })
                .await?;
            slot.replica().counters.record(started.elapsed(), true);
            Ok(value)
        })
    }

    fn serve(
        &self,
        ctx: RequestContext,
        req: http::Request<HttpBody>,
    ) -> BoxFuture<'_, Result<http::Response<HttpBody>, Error>> {
        Box::pin(async move {
            // The body streams to one replica only: a request is retried elsewhere only when
            // the first replica could not be reached at all, before its body was read.
            let (parts, body) = req.into_parts();
            let empty = http_body::Body::is_end_stream(&body);
            let mut body = Some(body);
            let transport = &self.roles.transport;
            let (resp, slot, started) = self
                .send(&ctx, |address| {
                    let body = match body.take() {
                        Some(body) => body,
                        None if empty => crate::handler::empty(),
                        None => {
                            let refused = Error::Unavailable {
                                deployment: self.name.clone(),
                                reason: "the replica chosen could not be reached, and the \
                                         request's body cannot be sent twice"
                                    .to_owned(),
                            };
                            return Box::pin(async move { Err(Failure::Answered(refused)) })
                                as BoxFuture<'static, _>;
                        }
                    };
                    let req = http::Request::from_parts(parts.clone(), body);
                    transport.serve(address, &self.name, &ctx, req)
                })
                .await?;
            slot.replica().counters.record(started.elapsed(), true);
            Ok(resp.map(|body| {
                use http_body_util::BodyExt;
                HeldBody { body, _slot: slot }.boxed_unsync()
            }))
        })
    }

    fn shutdown(&self, timeout: Duration) -> BoxFuture<'_, ()> {
        Box::pin(RemoteDeployment::shutdown(self, timeout))
    }
}

/// A response body that keeps its remote replica's slot until it ends or is dropped.
struct HeldBody {
    body: HttpBody,
    _slot: Slot<Peer>,
}

impl http_body::Body for HeldBody {
    type Data = bytes::Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::Agent;
    use crate::deployment::Deployment;
    use crate::error::AgentError;
    use crate::remote::Discovery;

    struct Nop;
    impl Agent for Nop {
        async fn run(&self, data: Value) -> Result<Value, AgentError> {
            Ok(data)
        }
    }

    /// Discovery from a list the test changes.
    struct Listed(Mutex<Vec<String>>);
    impl Discovery for Listed {
        fn describe(&self) -> String {
            "listed".to_owned()
        }
        fn resolve<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Vec<String>, String>> {
            let list = lock(&self.0).clone();
            Box::pin(async move { Ok(list) })
        }
        fn period(&self) -> Duration {
            Duration::from_millis(20)
        }
    }

    /// A transport whose answer per address the test scripts: `ok`, `unsent`, `lost`, `hang`.
    struct Scripted(Mutex<Vec<(String, &'static str)>>);
    impl Scripted {
        fn mode(&self, address: &str) -> &'static str {
            lock(&self.0)
                .iter()
                .find(|(a, _)| a == address)
                .map_or("unsent", |(_, m)| *m)
        }
    }
    impl Scripted {
        fn call(
            &self,
            address: &str,
            _: &str,
            _: &RequestContext,
            data: Value,
        ) -> BoxFuture<'static, Result<Value, Failure>> {
            let (mode, address) = (self.mode(address), address.to_owned());
            Box::pin(async move {
                match mode {
                    "ok" => Ok(serde_json::json!({ "from": address, "data": data })),
                    "lost" => Err(Failure::Lost("reset".into())),
                    "hang" => std::future::pending().await,
                    _ => Err(Failure::Unsent("refused".into())),
                }
            })
        }
    }
    impl crate::remote::Transport for Scripted {
        fn call_json(
            &self,
            a: &str,
            d: &str,
            c: &RequestContext,
            v: &Value,
        ) -> BoxFuture<'static, Result<bytes::Bytes, Failure>> {
            let call = self.call(a, d, c, v.clone());
            Box::pin(async move { call.await.map(|v| bytes::Bytes::from(v.to_string())) })
        }
        fn call_typed(
            &self,
            a: &str,
            d: &str,
            c: &RequestContext,
            v: &Value,
        ) -> BoxFuture<'static, Result<Value, Failure>> {
            self.call(a, d, c, v.clone())
        }
        fn stream_text(
            &self,
            _: &str,
            _: &str,
            _: &RequestContext,
            _: &Value,
        ) -> BoxFuture<'static, Result<RemoteStream<String>, Failure>> {
            Box::pin(async { Err(Failure::Unsent("no streams here".into())) })
        }
        fn stream_events(
            &self,
            _: &str,
            _: &str,
            _: &RequestContext,
            _: &Value,
        ) -> BoxFuture<'static, Result<RemoteStream<Value>, Failure>> {
            Box::pin(async { Err(Failure::Unsent("no streams here".into())) })
        }
        fn serve(
            &self,
            _: &str,
            _: &str,
            _: &RequestContext,
            _: http::Request<HttpBody>,
        ) -> BoxFuture<'static, Result<http::Response<HttpBody>, Failure>> {
            Box::pin(async { Err(Failure::Unsent("no handlers here".into())) })
        }
        fn probe(&self, address: &str, _: &str) -> BoxFuture<'static, Result<u32, String>> {
            let up = self.mode(address) != "unsent";
            Box::pin(async move {
                if up {
                    Ok(self_capacity())
                } else {
                    Err("down".into())
                }
            })
        }
    }

    /// What every scripted replica process says it takes at once.
    fn self_capacity() -> u32 {
        1
    }

    async fn remote(
        peers: &[(&str, &'static str)],
        max_ongoing: u32,
    ) -> (Arc<RemoteDeployment>, Arc<Listed>, Arc<Scripted>) {
        let listed = Arc::new(Listed(Mutex::new(
            peers.iter().map(|(a, _)| (*a).to_owned()).collect(),
        )));
        let scripted = Arc::new(Scripted(Mutex::new(
            peers.iter().map(|(a, m)| ((*a).to_owned(), *m)).collect(),
        )));
        let roles = Roles {
            local: Vec::new(),
            num_replicas: None,
            discovery: listed.clone(),
            transport: scripted.clone(),
            probe_period: Duration::from_millis(20),
            wait_for_replica: Duration::from_millis(200),
        };
        let config = DeploymentConfig::new("echo").with_max_ongoing_requests(max_ongoing);
        let parts = Deployment::from_fn(config, |_| async { Ok(Nop) }).into_parts();
        let remote = RemoteDeployment::start(parts, roles).await.expect("starts");
        (remote, listed, scripted)
    }

    fn ctx() -> RequestContext {
        RequestContext::new("id", "default")
    }

    #[tokio::test]
    async fn a_replica_that_never_saw_the_request_hands_it_to_another() {
        let (remote, _, scripted) = remote(&[("a:1", "ok"), ("b:1", "ok")], 5).await;
        // `a` goes down after its probe: the requests that reach it are sent to `b`.
        lock(&scripted.0)[0].1 = "unsent";
        for _ in 0..10 {
            let answer = Backend::call(&*remote, ctx(), Value::Null)
                .await
                .expect("served");
            assert_eq!(answer["from"], "b:1");
        }
        let status = remote.status();
        let a = status
            .replicas
            .iter()
            .find(|r| r.replica_id == "a:1")
            .unwrap();
        assert_eq!(a.state, ReplicaState::Unreachable);
        assert_eq!(a.address.as_deref(), Some("a:1"));
        // It comes back when a probe finds it healthy.
        lock(&scripted.0)[0].1 = "ok";
        tokio::time::timeout(Duration::from_secs(5), async {
            while remote.live() < 2 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("a rejoins");
    }

    #[tokio::test]
    async fn a_request_the_replica_had_is_a_502_not_a_retry() {
        let (remote, _, _) = remote(&[("a:1", "lost")], 5).await;
        let error = Backend::call(&*remote, ctx(), Value::Null)
            .await
            .unwrap_err();
        assert!(matches!(error, Error::ReplicaLost { .. }), "{error}");
    }

    #[tokio::test]
    async fn no_replica_at_all_is_a_503_after_the_wait() {
        let (remote, _, _) = remote(&[], 5).await;
        let started = Instant::now();
        let error = Backend::call(&*remote, ctx(), Value::Null)
            .await
            .unwrap_err();
        assert!(matches!(error, Error::Unavailable { .. }), "{error}");
        assert!(started.elapsed() >= Duration::from_millis(200));
    }

    #[tokio::test]
    async fn a_queued_request_fails_when_every_replica_leaves() {
        let (remote, listed, _) = remote(&[("a:1", "hang")], 1).await;
        let busy = {
            let remote = remote.clone();
            tokio::spawn(async move { Backend::call(&*remote, ctx(), Value::Null).await })
        };
        while remote.status().replicas[0].ongoing_requests == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let queued = {
            let remote = remote.clone();
            tokio::spawn(async move { Backend::call(&*remote, ctx(), Value::Null).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(remote.queued(), 1);
        lock(&listed.0).clear();
        let error = tokio::time::timeout(Duration::from_secs(5), queued)
            .await
            .expect("no hang")
            .expect("the task")
            .unwrap_err();
        assert!(matches!(error, Error::Unavailable { .. }), "{error}");
        busy.abort();
    }
}
