//! What a replica holds of the multiplexed models (see [`crate::ModelCache`]): written by its
//! cache, read by its router, counted for the metrics.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::stats::{Histogram, ModelStats};

/// What a replica holds of the multiplexed models, shared by its [`ModelCache`] (which writes
/// it) and its router (which reads it), and counted for the metrics.
#[derive(Debug, Default)]
pub(crate) struct ModelSet {
    /// The models loaded or loading, least recently used first.
    ids: RwLock<Vec<Arc<str>>>,
    /// `max_num_models_per_replica`; `0` while the replica has no cache (not multiplexed).
    max: AtomicUsize,
    get_requests: AtomicU64,
    loads: AtomicU64,
    unloads: AtomicU64,
    load_latency: Histogram,
    unload_latency: Histogram,
}

impl ModelSet {
    /// Whether the model `id` is loaded (or loading) here.
    pub(crate) fn holds(&self, id: &str) -> bool {
        self.ids
            .read()
            .map(|ids| ids.iter().any(|held| &**held == id))
            .unwrap_or(false)
    }

    /// How many models it holds now.
    pub(crate) fn len(&self) -> usize {
        self.ids.read().map(|ids| ids.len()).unwrap_or(0)
    }

    /// Whether it can load another model without unloading one.
    pub(crate) fn has_room(&self) -> bool {
        self.len() < self.max.load(Ordering::Relaxed)
    }

    /// Notes that a request for `id` was just sent here (a replica with a cache only): until
    /// the cache says what it holds, the router counts the model as here, so the requests for
    /// it that follow in a burst come here too instead of loading it elsewhere.
    pub(crate) fn expect(&self, id: &str) {
        if self.max.load(Ordering::Relaxed) == 0 {
            return;
        }
        if let Ok(mut held) = self.ids.write()
            && !held.iter().any(|h| &**h == id)
        {
            held.push(Arc::from(id));
        }
    }

    /// What the replica holds now, least recently used first.
    pub(crate) fn hold(&self, ids: Vec<Arc<str>>) {
        if let Ok(mut held) = self.ids.write() {
            *held = ids;
        }
    }

    /// Makes the replica multiplexed, holding at most `max` models.
    pub(crate) fn set_max(&self, max: usize) {
        self.max.store(max, Ordering::Relaxed);
    }

    /// Counts a request for a model.
    pub(crate) fn counted_get(&self) {
        self.get_requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a model loaded in `took`.
    pub(crate) fn loaded(&self, took: Duration) {
        self.loads.fetch_add(1, Ordering::Relaxed);
        self.load_latency.observe(took);
    }

    /// Counts a model unloaded in `took`.
    pub(crate) fn unloaded(&self, took: Duration) {
        self.unloads.fetch_add(1, Ordering::Relaxed);
        self.unload_latency.observe(took);
    }

    /// The figures for the metrics; `None` for a replica that is not multiplexed.
    pub(crate) fn stats(&self) -> Option<ModelStats> {
        let max = self.max.load(Ordering::Relaxed);
        if max == 0 {
            return None;
        }
        let mut model_ids: Vec<String> = self
            .ids
            .read()
            .map(|ids| ids.iter().map(|id| id.to_string()).collect())
            .unwrap_or_default();
        model_ids.sort();
        Some(ModelStats {
            max_models: max,
            model_ids,
            get_model_requests: self.get_requests.load(Ordering::Relaxed),
            loads: self.loads.load(Ordering::Relaxed),
            unloads: self.unloads.load(Ordering::Relaxed),
            load_latency: self.load_latency.snapshot(),
            unload_latency: self.unload_latency.snapshot(),
        })
    }
}
