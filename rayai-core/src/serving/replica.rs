//! One replica: a user's agent, handler or typed deployment on its executor, and how busy it is.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde_json::Value;
use tokio::sync::Notify;

use super::executor::{Executor, join_error};
use super::stats::{ReplicaCounters, ReplicaStats};
use crate::config::DeploymentConfig;
use crate::context::ReplicaContext;
use crate::deployment::ReconfigureFn;
use crate::error::{AgentError, Error};
use crate::striped::Striped;
use crate::target::{Factory, Target};

/// How busy a replica is, and whether it takes requests: what the router reads and reserves.
#[derive(Debug)]
pub(crate) struct Load {
    ongoing: AtomicU32,
    /// `max_ongoing_requests`, changed in place by a lightweight update.
    max_ongoing: AtomicU32,
    accepting: AtomicBool,
    /// Wakes a drain waiting for the last request to finish.
    idle: Notify,
}

impl Load {
    pub(crate) fn new(max_ongoing: u32) -> Self {
        Load {
            ongoing: AtomicU32::new(0),
            max_ongoing: AtomicU32::new(max_ongoing),
            accepting: AtomicBool::new(true),
            idle: Notify::new(),
        }
    }

    pub(crate) fn ongoing(&self) -> u32 {
        self.ongoing.load(Ordering::SeqCst)
    }

    /// Takes one of the replica's slots if it has a free one and accepts requests.
    pub(crate) fn try_reserve(&self) -> bool {
        if !self.accepting.load(Ordering::Relaxed) {
            return false;
        }
        let max = self.max_ongoing.load(Ordering::Relaxed);
        self.ongoing
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }

    /// Changes how many requests the replica takes at once, for the requests that reserve a
    /// slot from now on (the ongoing ones keep theirs).
    pub(crate) fn set_max_ongoing(&self, max: u32) {
        self.max_ongoing.store(max, Ordering::Relaxed);
    }

    /// Gives a slot back; the last one out of a replica that stopped accepting wakes its drain.
    pub(crate) fn release(&self) {
        let before = self.ongoing.fetch_sub(1, Ordering::SeqCst);
        if before == 1 && !self.accepting.load(Ordering::SeqCst) {
            self.idle.notify_waiters();
        }
    }

    pub(crate) fn stop_accepting(&self) {
        self.accepting.store(false, Ordering::SeqCst);
    }

    /// Resolves when no request is ongoing; call after [`Load::stop_accepting`].
    async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if self.ongoing() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// What a router routes to: a replica in this process, or one in another.
pub(crate) trait Routed: Send + Sync + 'static {
    /// Its id, which sticky sessions hash.
    fn id(&self) -> &str;
    /// How busy it is.
    fn load(&self) -> &Load;
    /// The multiplexed models it holds, when the router can see them.
    fn models(&self) -> Option<&super::models::ModelSet> {
        None
    }
}

impl Routed for Replica {
    fn id(&self) -> &str {
        Replica::id(self)
    }
    fn load(&self) -> &Load {
        Replica::load(self)
    }
    fn models(&self) -> Option<&super::models::ModelSet> {
        Some(self.ctx.models())
    }
}

/// A running replica.
pub(crate) struct Replica {
    ctx: ReplicaContext,
    load: Load,
    served: Striped<1>,
    counters: ReplicaCounters,
    pub(super) target: Target,
    pub(super) executor: Executor,
    dead: AtomicBool,
    last_error: Mutex<Option<String>>,
    /// When its constructor finished.
    started_at: SystemTime,
    /// The `user_config` its `reconfigure` last applied.
    applied: Mutex<Option<Value>>,
    /// Wakes the deployment's control loop (a replica died).
    kick: Arc<Notify>,
}

impl Replica {
    /// Starts the executor and runs the constructor on it, then, when the deployment has a
    /// `user_config`, `reconfigure` with it: the replica takes no request before both succeed.
    pub(crate) async fn start(
        ctx: ReplicaContext,
        config: &DeploymentConfig,
        factory: &Factory,
        hook: Option<&ReconfigureFn>,
        kick: Arc<Notify>,
    ) -> Result<Arc<Replica>, Error> {
        let executor = Executor::new(
            config.isolation(),
            ctx.replica_id(),
            config.threads_per_replica(),
        )
        .map_err(Error::Executor)?;
        let fail = |cause: Error| Error::ReplicaStart {
            deployment: ctx.deployment().to_owned(),
            replica: ctx.replica_id().to_owned(),
            cause: Box::new(cause),
        };
        let target = match executor.spawn(factory(ctx.clone())).await {
            Ok(Ok(target)) => target,
            Ok(Err(e)) => return Err(fail(Error::Agent(e))),
            Err(join) => return Err(fail(join_error(join))),
        };
        let replica = Arc::new(Replica {
            ctx,
            load: Load::new(config.max_ongoing_requests()),
            served: Striped::new(),
            counters: ReplicaCounters::default(),
            target,
            executor,
            dead: AtomicBool::new(false),
            last_error: Mutex::new(None),
            started_at: SystemTime::now(),
            applied: Mutex::new(None),
            kick,
        });
        if let Some(user_config) = config.user_config() {
            replica
                .reconfigure(user_config, hook)
                .await
                .map_err(|e| Error::ReplicaStart {
                    deployment: replica.ctx.deployment().to_owned(),
                    replica: replica.id().to_owned(),
                    cause: Box::new(e),
                })?;
        }
        Ok(replica)
    }

    /// Runs the target's `reconfigure`, then the deployment's `hook`, with `user_config` on the
    /// replica's executor, while the replica keeps serving.
    ///
    /// # Errors
    ///
    /// The hook's error ([`Error::Agent`]) or panic ([`Error::Panicked`]).
    pub(crate) async fn reconfigure(
        &self,
        user_config: &Value,
        hook: Option<&ReconfigureFn>,
    ) -> Result<(), Error> {
        let target = self.target.clone();
        let value = user_config.clone();
        let hook = hook.cloned();
        let task = async move {
            match &target {
                Target::Agent(agent) => agent.reconfigure(&value).await?,
                Target::Handler(handler) => handler.reconfigure(&value).await?,
                Target::Callable(callable) => callable.reconfigure(&value).await?,
            }
            if let Some(hook) = hook {
                hook(value).await?;
            }
            Ok::<(), AgentError>(())
        };
        self.executor.run(task).await?.map_err(Error::Agent)?;
        if let Ok(mut applied) = self.applied.lock() {
            *applied = Some(user_config.clone());
        }
        Ok(())
    }

    /// Whether `user_config` is what the replica's `reconfigure` last applied (`None`: never
    /// called).
    pub(crate) fn has_applied(&self, user_config: Option<&Value>) -> bool {
        self.applied
            .lock()
            .map(|applied| applied.as_ref() == user_config)
            .unwrap_or(false)
    }

    /// Marks the replica dead (it panicked or failed its health check): it takes no new
    /// requests, and the controller replaces it.
    pub(crate) fn mark_dead(&self, reason: String) {
        self.load.stop_accepting();
        tracing::warn!(replica = %self.id(), %reason, "replica is dead; replacing it");
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(reason);
        }
        self.dead.store(true, Ordering::SeqCst);
        self.kick.notify_one();
    }

    pub(crate) fn is_dead(&self) -> bool {
        self.dead.load(Ordering::SeqCst)
    }

    pub(crate) fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }

    /// Runs the agent's health check on the replica's executor, bounded by `timeout`.
    pub(crate) async fn check_health(&self, timeout: Duration) -> Result<(), String> {
        let Target::Agent(agent) = &self.target else {
            return Ok(());
        };
        let agent = agent.clone();
        let check = self
            .executor
            .spawn(async move { agent.check_health().await });
        match tokio::time::timeout(timeout, check).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(format!("health check failed: {e}")),
            Ok(Err(join)) => Err(format!("health check failed: {}", join_error(join))),
            Err(_) => Err(format!(
                "health check timed out after {:.1}s",
                timeout.as_secs_f64()
            )),
        }
    }

    /// Waits until the replica serves nothing (at most `timeout`); it takes no new requests.
    pub(crate) async fn drain(&self, timeout: Duration) {
        self.load.stop_accepting();
        let _ = tokio::time::timeout(timeout, self.load.idle()).await;
    }

    /// When the replica started (its constructor finished).
    pub(crate) fn started_at(&self) -> SystemTime {
        self.started_at
    }

    pub(crate) fn id(&self) -> &str {
        self.ctx.replica_id()
    }

    pub(crate) fn context(&self) -> &ReplicaContext {
        &self.ctx
    }

    pub(crate) fn load(&self) -> &Load {
        &self.load
    }

    /// Counts one more request given to this replica.
    pub(crate) fn count_served(&self) {
        self.served.add(0, 1);
    }

    pub(crate) fn served(&self) -> u64 {
        self.served.get(0)
    }

    /// Counts one request the replica finished (`ok`, or its user code failed), `started` when
    /// the user's code was handed the request.
    pub(crate) fn record(&self, started: tokio::time::Instant, ok: bool) {
        self.counters.record(started.elapsed(), ok);
    }

    /// What the replica processed so far.
    pub(crate) fn stats(&self) -> ReplicaStats {
        let mut stats = self.counters.snapshot(self.id());
        stats.models = self.ctx.models().stats();
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drain_wakes_when_the_last_request_leaves() {
        let load = Arc::new(Load::new(4));
        assert!(load.try_reserve());
        assert!(load.try_reserve());
        load.stop_accepting();
        let waiting = {
            let load = load.clone();
            tokio::spawn(async move { load.idle().await })
        };
        tokio::task::yield_now().await;
        load.release();
        assert!(!waiting.is_finished());
        load.release();
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the drain wakes")
            .expect("the task ends");
    }

    #[tokio::test]
    async fn an_idle_replica_drains_at_once() {
        let load = Load::new(1);
        load.stop_accepting();
        tokio::time::timeout(Duration::from_secs(1), load.idle())
            .await
            .expect("nothing to wait for");
    }
}
