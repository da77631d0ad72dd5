//! Model multiplexing, as Ray Serve's `@serve.multiplexed`: a replica keeps a few models loaded
//! (at most `max_num_models_per_replica`), loads the one a request names on demand, unloads the
//! least recently used, and tells its router which models it holds so that requests for a model
//! go where it is already loaded.

use std::future::Future;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use tokio::sync::OnceCell;

use crate::context::ReplicaContext;
use crate::error::AgentError;
use crate::request::RequestContext;
use crate::serving::models::ModelSet;

type LoadFn<M> = Box<dyn Fn(String) -> BoxFuture<'static, Result<M, AgentError>> + Send + Sync>;
type UnloadFn<M> = Box<dyn Fn(String, Arc<M>) -> BoxFuture<'static, ()> + Send + Sync>;

/// A model loaded or loading: the requests for it share one load.
struct Entry<M> {
    id: Arc<str>,
    model: Arc<OnceCell<Arc<M>>>,
}

/// A replica's multiplexed models (Ray Serve's `@serve.multiplexed`): loads the model a request
/// names on demand with an async loader, keeps at most `max_models` of them, and unloads the
/// least recently used (with the async unloader, if one is set) to make room. Requests for a
/// model that is loading wait for that one load.
///
/// Build it in the agent's constructor from the [`ReplicaContext`]: the replica's router then
/// knows which models the replica holds, and sends a request that names a model (the
/// `serve_multiplexed_model_id` header, [`crate::DeploymentHandle::with_multiplexed_model_id`],
/// or an OpenAI `model` of the form `agent:model`) to a replica that already holds it, falling
/// back to the less loaded replica, which loads it.
///
/// # Examples
///
/// ```
/// use rayai_core::{Agent, AgentError, Construct, ModelCache, ReplicaContext};
/// use serde_json::{Value, json};
///
/// struct Adapter { name: String }
///
/// struct Lora { models: ModelCache<Adapter> }
///
/// impl Construct for Lora {
///     async fn construct(ctx: ReplicaContext) -> Result<Self, AgentError> {
///         let models = ModelCache::new(&ctx, 2, |model_id: String| async move {
///             // Read the adapter's weights here.
///             Ok(Adapter { name: model_id })
///         });
///         Ok(Lora { models })
///     }
/// }
///
/// impl Agent for Lora {
///     async fn run(&self, data: Value) -> Result<Value, AgentError> {
///         // The request's model (`serve_multiplexed_model_id`), loaded if it is not yet.
///         let adapter = self.models.current().await?;
///         Ok(json!({ "adapter": adapter.name, "echo": data }))
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let ctx = ReplicaContext::new("lora", "lora#0", vec![]);
/// let lora = Lora::construct(ctx).await.unwrap();
/// let first = lora.models.get("adapter-1").await.unwrap();
/// let again = lora.models.get("adapter-1").await.unwrap();
/// assert!(std::sync::Arc::ptr_eq(&first, &again));
/// assert_eq!(lora.models.loaded(), ["adapter-1"]);
/// # }
/// ```
pub struct ModelCache<M> {
    set: Arc<ModelSet>,
    max: usize,
    /// Least recently used first.
    entries: Mutex<Vec<Entry<M>>>,
    load: LoadFn<M>,
    unload: Option<UnloadFn<M>>,
}

impl<M: Send + Sync + 'static> std::fmt::Debug for ModelCache<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelCache")
            .field("max", &self.max)
            .field("loaded", &self.loaded())
            .finish_non_exhaustive()
    }
}

impl<M: Send + Sync + 'static> ModelCache<M> {
    /// A cache for the replica of `ctx` holding at most `max_models` models (at least one),
    /// loaded by `load(model_id)`.
    pub fn new<F, Fut>(ctx: &ReplicaContext, max_models: usize, load: F) -> Self
    where
        F: Fn(String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<M, AgentError>> + Send + 'static,
    {
        let max = max_models.max(1);
        let set = ctx.models().clone();
        set.set_max(max);
        ModelCache {
            set,
            max,
            entries: Mutex::new(Vec::new()),
            load: Box::new(move |id| Box::pin(load(id))),
            unload: None,
        }
    }

    /// Runs `unload(model_id, model)` when a model is evicted, before the model that takes its
    /// place loads (Ray Serve awaits the model's `__del__`). The model is dropped after it, once
    /// the requests still using it are done.
    #[must_use]
    pub fn on_unload<G, Fut>(mut self, unload: G) -> Self
    where
        G: Fn(String, Arc<M>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.unload = Some(Box::new(move |id, model| Box::pin(unload(id, model))));
        self
    }

    /// The models loaded or loading now, least recently used first.
    pub fn loaded(&self) -> Vec<String> {
        self.entries
            .lock()
            .map(|entries| entries.iter().map(|e| e.id.to_string()).collect())
            .unwrap_or_default()
    }

    /// The model of the request being served (its `serve_multiplexed_model_id`), loaded if it
    /// is not yet.
    ///
    /// # Errors
    ///
    /// A `400` when the request names no model; the loader's error.
    pub async fn current(&self) -> Result<Arc<M>, AgentError> {
        let id = RequestContext::current()
            .map(|ctx| ctx.multiplexed_model_id().to_owned())
            .unwrap_or_default();
        if id.is_empty() {
            self.set.counted_get();
            return Err(AgentError::bad_request(
                "this request names no model: set the serve_multiplexed_model_id header \
                 (or the model after a ':' in an OpenAI request)",
            ));
        }
        self.get(&id).await
    }

    /// The model `model_id`: the one loaded, or loaded now (evicting the least recently used
    /// model when the cache is full).
    ///
    /// # Errors
    ///
    /// A `400` for an empty id; the loader's error (the model is not kept, and the next request
    /// for it loads it again).
    pub async fn get(&self, model_id: &str) -> Result<Arc<M>, AgentError> {
        self.set.counted_get();
        if model_id.is_empty() {
            return Err(AgentError::bad_request("the model id is empty"));
        }
        let (cell, evicted) = self.entry(model_id);
        for entry in evicted {
            self.unload(entry).await;
        }
        let mut loaded_here = None;
        let slot = &mut loaded_here;
        let result = cell
            .get_or_try_init(|| {
                let load = (self.load)(model_id.to_owned());
                let started = tokio::time::Instant::now();
                async move {
                    let model = load.await?;
                    *slot = Some(started.elapsed());
                    Ok::<_, AgentError>(Arc::new(model))
                }
            })
            .await
            .cloned();
        if let Some(took) = loaded_here {
            self.set.loaded(took);
            tracing::debug!(model_id, took_ms = took.as_secs_f64() * 1e3, "model loaded");
        }
        if result.is_err() {
            self.forget(model_id, &cell);
        }
        result
    }

    /// The entry of `id`, made the most recently used (added if new), and the entries evicted
    /// to make room for it.
    fn entry(&self, id: &str) -> (Arc<OnceCell<Arc<M>>>, Vec<Entry<M>>) {
        let Ok(mut entries) = self.entries.lock() else {
            return (Arc::new(OnceCell::new()), Vec::new());
        };
        if let Some(at) = entries.iter().position(|e| &*e.id == id) {
            let entry = entries.remove(at);
            let cell = entry.model.clone();
            entries.push(entry);
            self.publish(&entries);
            return (cell, Vec::new());
        }
        let overflow = (entries.len() + 1).saturating_sub(self.max);
        let evicted: Vec<Entry<M>> = entries.drain(..overflow).collect();
        let cell = Arc::new(OnceCell::new());
        entries.push(Entry {
            id: Arc::from(id),
            model: cell.clone(),
        });
        self.publish(&entries);
        (cell, evicted)
    }

    /// Drops the entry of `id` whose load failed (if it is still that one).
    fn forget(&self, id: &str, cell: &Arc<OnceCell<Arc<M>>>) {
        if let Ok(mut entries) = self.entries.lock() {
            entries
                .retain(|e| !(&*e.id == id && Arc::ptr_eq(&e.model, cell) && !cell.initialized()));
            self.publish(&entries);
        }
    }

    /// Tells the router what the replica holds now.
    fn publish(&self, entries: &[Entry<M>]) {
        self.set
            .hold(entries.iter().map(|e| e.id.clone()).collect());
    }

    /// Unloads an evicted model (one still loading is simply dropped). The unloader runs as a
    /// task of its own: a request that goes away does not cut it short.
    async fn unload(&self, entry: Entry<M>) {
        let Some(model) = entry.model.get().cloned() else {
            return;
        };
        let started = tokio::time::Instant::now();
        if let Some(unload) = &self.unload {
            let task = unload(entry.id.to_string(), model);
            if let Err(e) = tokio::spawn(task).await {
                tracing::warn!(model_id = &*entry.id, error = %e, "unloading the model failed");
            }
        }
        self.set.unloaded(started.elapsed());
        tracing::debug!(model_id = &*entry.id, "model unloaded");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn cache(max: usize, loads: Arc<AtomicU32>) -> (ModelCache<String>, Arc<ModelSet>) {
        let ctx = ReplicaContext::new("m", "m#0", vec![]);
        let set = ctx.models().clone();
        let cache = ModelCache::new(&ctx, max, move |id: String| {
            let loads = loads.clone();
            async move {
                loads.fetch_add(1, Ordering::SeqCst);
                if id == "bad" {
                    return Err(AgentError::not_found("no such model"));
                }
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                Ok(format!("model {id}"))
            }
        });
        (cache, set)
    }

    #[tokio::test]
    async fn loads_once_keeps_the_most_recent_and_evicts_the_least_recently_used() {
        let loads = Arc::new(AtomicU32::new(0));
        let unloaded = Arc::new(Mutex::new(Vec::new()));
        let (cache, set) = cache(2, loads.clone());
        let seen = unloaded.clone();
        let cache = cache.on_unload(move |id, model: Arc<String>| {
            let seen = seen.clone();
            async move {
                assert_eq!(*model, format!("model {id}"));
                seen.lock().unwrap().push(id);
            }
        });
        assert!(
            set.stats().is_some(),
            "a cache makes the replica multiplexed"
        );
        assert_eq!(*cache.get("a").await.unwrap(), "model a");
        cache.get("b").await.unwrap();
        cache.get("a").await.unwrap();
        assert_eq!(loads.load(Ordering::SeqCst), 2);
        assert!(set.holds("a") && set.holds("b") && !set.has_room());
        // `b` is the least recently used: `c` takes its place.
        cache.get("c").await.unwrap();
        assert_eq!(cache.loaded(), ["a", "c"]);
        assert_eq!(*unloaded.lock().unwrap(), ["b"]);
        assert!(!set.holds("b"));
        let stats = set.stats().unwrap();
        assert_eq!(
            (stats.loads, stats.unloads, stats.get_model_requests),
            (3, 1, 4)
        );
        assert_eq!(stats.model_ids, ["a", "c"]);
        assert_eq!(stats.load_latency.count, 3);
        assert_eq!(stats.unload_latency.count, 1);
    }

    #[tokio::test]
    async fn concurrent_requests_for_one_model_share_its_load() {
        let loads = Arc::new(AtomicU32::new(0));
        let (cache, _) = cache(3, loads.clone());
        let all = futures::future::join_all((0..8).map(|_| cache.get("x"))).await;
        assert!(all.iter().all(Result::is_ok));
        assert_eq!(loads.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_failed_load_is_not_kept_and_an_empty_id_is_refused() {
        let loads = Arc::new(AtomicU32::new(0));
        let (cache, set) = cache(2, loads.clone());
        let e = cache.get("bad").await.unwrap_err();
        assert_eq!(e.status(), 404);
        assert!(!set.holds("bad") && cache.loaded().is_empty());
        cache.get("bad").await.unwrap_err();
        assert_eq!(
            loads.load(Ordering::SeqCst),
            2,
            "a failed load is tried again"
        );
        assert_eq!(cache.get("").await.unwrap_err().status(), 400);
        // Outside a request there is no current model.
        assert_eq!(cache.current().await.unwrap_err().status(), 400);
        let ctx = RequestContext::new("r", "default").with_multiplexed_model_id("m1");
        let model = ctx.scope(cache.current()).await.unwrap();
        assert_eq!(*model, "model m1");
    }

    #[test]
    fn a_replica_without_a_cache_is_not_multiplexed() {
        let ctx = ReplicaContext::new("m", "m#0", vec![]);
        assert!(ctx.models().stats().is_none());
        assert!(!ctx.models().has_room() && !ctx.models().holds("a"));
    }
}
