//! The request being served, as the user's code sees it.

use std::sync::Arc;

/// The request being served: readable from inside `run` and the stream methods with
/// [`RequestContext::current`].
///
/// # Examples
///
/// ```
/// use rayai_core::RequestContext;
///
/// // Outside a request there is none.
/// assert!(RequestContext::current().is_none());
/// ```
#[derive(Debug, Clone)]
pub struct RequestContext {
    request_id: Arc<str>,
    session_id: Arc<str>,
    sticky: Option<Arc<str>>,
    /// The multiplexed model this request asks for (`serve_multiplexed_model_id`).
    model_id: Option<Arc<str>>,
}

tokio::task_local! {
    static CURRENT: RequestContext;
}

impl RequestContext {
    /// A context with these ids.
    pub fn new(request_id: impl Into<Arc<str>>, session_id: impl Into<Arc<str>>) -> Self {
        let session_id: Arc<str> = session_id.into();
        let sticky = (&*session_id != "default").then(|| session_id.clone());
        RequestContext {
            request_id: request_id.into(),
            session_id,
            sticky,
            model_id: None,
        }
    }

    /// The same context asking for the multiplexed model `model_id` (Ray Serve's
    /// `serve_multiplexed_model_id`): the router prefers a replica that holds it, and
    /// [`crate::ModelCache::current`] loads it. An empty id asks for none.
    #[must_use]
    pub fn with_multiplexed_model_id(mut self, model_id: impl Into<Arc<str>>) -> Self {
        let model_id: Arc<str> = model_id.into();
        self.model_id = (!model_id.is_empty()).then_some(model_id);
        self
    }

    /// The multiplexed model id of the request, `""` when it names none (as Ray Serve's
    /// `serve.get_multiplexed_model_id()`).
    pub fn multiplexed_model_id(&self) -> &str {
        self.model_id.as_deref().unwrap_or("")
    }

    /// The model id, for the router.
    pub(crate) fn model_key(&self) -> Option<&str> {
        self.model_id.as_deref()
    }

    /// The context a call made from inside this request carries: the same ids and session,
    /// without the multiplexed model id (a handle call names its own, as in Ray Serve).
    pub(crate) fn for_downstream(mut self) -> Self {
        self.model_id = None;
        self
    }

    /// Keeps the request's session on one replica under `key` (an `x-session-id` header) when the
    /// session id is the default one.
    #[must_use]
    pub fn with_session_key(mut self, key: impl Into<Arc<str>>) -> Self {
        if self.sticky.is_none() {
            self.sticky = Some(key.into());
        }
        self
    }

    /// The key that keeps this request's session on one replica, if it has a session.
    pub(crate) fn routing_key(&self) -> Option<&str> {
        self.sticky.as_deref()
    }

    /// The key that keeps this request's session on one replica (the session id, or an
    /// `x-session-id` header), if it has a session.
    pub fn sticky_key(&self) -> Option<&str> {
        self.sticky.as_deref()
    }

    /// The request id (the client's `X-Request-ID`, or a fresh UUID).
    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    /// The session id from the request body (`"default"` when absent).
    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// The context of the request the calling code serves, if it serves one.
    pub fn current() -> Option<RequestContext> {
        CURRENT.try_with(Clone::clone).ok()
    }

    /// Runs `fut` with `self` as the current request context.
    pub(crate) fn scope<F: std::future::Future>(
        self,
        fut: F,
    ) -> tokio::task::futures::TaskLocalFuture<RequestContext, F> {
        CURRENT.scope(self, fut)
    }
}
