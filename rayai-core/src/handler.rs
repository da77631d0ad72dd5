//! Handler deployments: anything that answers an HTTP request, replicated like an agent. A type
//! implementing [`Handler`], or any tower `Service` (an axum `Router`) as an ingress.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use http::{Request, Response};
use http_body_util::BodyExt;

use crate::error::AgentError;

/// An error inside a body or a service.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The request and response body of handlers: bytes, possibly streamed over time.
pub type HttpBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

/// A tower service over [`HttpBody`] requests and responses that never fails: what a route
/// prefix is served by, with its layers.
pub type HttpService =
    tower::util::BoxCloneSyncService<Request<HttpBody>, Response<HttpBody>, Infallible>;

/// The route prefix the request came in under (Ray's `root_path`), in the request's extensions.
/// The handler sees the path below it in `req.uri()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootPath(pub String);

/// The route pattern that answered a request, below the route prefix (`/items/{item_id}`),
/// in the response's extensions. The proxy labels the request's metrics with it (joined to the
/// route prefix), never with the raw path, so the labels stay bounded. An axum `Router` served
/// with [`crate::deployment::Deployment::ingress`] reports it by itself (the `axum` feature); another
/// service can insert it into its responses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchedRoute(pub Arc<str>);

/// An axum `Router` with a route layer that puts axum's `MatchedPath` into the response as a
/// [`MatchedRoute`]; any other service as it is.
#[cfg(feature = "axum")]
pub(crate) fn report_matched_routes<S: 'static>(mut service: S) -> S {
    let any: &mut dyn std::any::Any = &mut service;
    if let Some(router) = any.downcast_mut::<axum::Router>()
        && router.has_routes()
    {
        let taken = std::mem::take(router);
        *router = taken.route_layer(axum::middleware::from_fn(matched_route));
    }
    service
}

#[cfg(feature = "axum")]
async fn matched_route(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let pattern = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|m| Arc::<str>::from(m.as_str()));
    let mut resp = next.run(req).await;
    if let Some(pattern) = pattern {
        resp.extensions_mut().insert(MatchedRoute(pattern));
    }
    resp
}

/// A whole body.
pub fn full(bytes: impl Into<Bytes>) -> HttpBody {
    http_body_util::Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// An empty body.
pub fn empty() -> HttpBody {
    http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A body whose chunks are sent as the stream yields them.
pub fn stream_body<S, E>(stream: S) -> HttpBody
where
    S: futures::Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: Into<BoxError> + 'static,
{
    use futures::TryStreamExt;
    http_body_util::StreamBody::new(stream.map_ok(http_body::Frame::data).map_err(Into::into))
        .boxed_unsync()
}

/// Any body as an [`HttpBody`].
pub fn boxed<B>(body: B) -> HttpBody
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError> + 'static,
{
    body.map_err(Into::into).boxed_unsync()
}

/// Answers HTTP requests: Ray Serve's default deployment, `__call__(request)`.
///
/// # Examples
///
/// ```
/// use rayai_core::handler::{Handler, HttpBody, full};
/// use http::{Request, Response};
///
/// #[derive(Default)]
/// struct Hello;
///
/// impl Handler for Hello {
///     async fn call(&self, _req: Request<HttpBody>) -> Response<HttpBody> {
///         Response::new(full("hello"))
///     }
/// }
/// ```
pub trait Handler: Send + Sync + 'static {
    /// Answers one request. The URI's path is the part below the route prefix; the prefix is in
    /// the [`RootPath`] extension.
    fn call(&self, req: Request<HttpBody>) -> impl Future<Output = Response<HttpBody>> + Send;

    /// Applies the deployment's `user_config`, as [`crate::agent::Agent::reconfigure`]: after the
    /// constructor, before the replica takes a request, and on every running replica whenever the
    /// `user_config` changes, without a restart. The default does nothing. (An ingress built from
    /// a tower service gets one with [`crate::deployment::Deployment::with_reconfigure`].)
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::RwLock;
    /// use rayai_core::AgentError;
    /// use rayai_core::handler::{Handler, HttpBody, full};
    /// use http::{Request, Response};
    /// use serde_json::Value;
    ///
    /// struct Banner { text: RwLock<String> }
    ///
    /// impl Handler for Banner {
    ///     async fn call(&self, _req: Request<HttpBody>) -> Response<HttpBody> {
    ///         let text = self.text.read().map(|t| t.clone()).unwrap_or_default();
    ///         Response::new(full(text))
    ///     }
    ///
    ///     async fn reconfigure(&self, user_config: &Value) -> Result<(), AgentError> {
    ///         let text = user_config["banner"].as_str().unwrap_or("welcome").to_owned();
    ///         *self.text.write().map_err(|e| AgentError::new(e.to_string()))? = text;
    ///         Ok(())
    ///     }
    /// }
    /// ```
    fn reconfigure(
        &self,
        user_config: &serde_json::Value,
    ) -> impl Future<Output = Result<(), AgentError>> + Send {
        let _ = user_config;
        async { Ok(()) }
    }
}

/// [`Handler`] with its future boxed; a tower service's error comes back as the error.
pub(crate) trait DynHandler: Send + Sync + 'static {
    fn call(&self, req: Request<HttpBody>) -> BoxFuture<'_, Result<Response<HttpBody>, BoxError>>;
    fn reconfigure<'a>(
        &'a self,
        user_config: &'a serde_json::Value,
    ) -> BoxFuture<'a, Result<(), AgentError>>;
}

impl<T: Handler> DynHandler for T {
    fn call(&self, req: Request<HttpBody>) -> BoxFuture<'_, Result<Response<HttpBody>, BoxError>> {
        Box::pin(futures::FutureExt::map(Handler::call(self, req), Ok))
    }

    fn reconfigure<'a>(
        &'a self,
        user_config: &'a serde_json::Value,
    ) -> BoxFuture<'a, Result<(), AgentError>> {
        Box::pin(Handler::reconfigure(self, user_config))
    }
}

/// A tower service as a handler: one instance per replica, cloned per request as tower wants.
pub(crate) struct ServiceHandler<S>(pub(crate) S);

impl<S, B> DynHandler for ServiceHandler<S>
where
    S: tower::Service<Request<HttpBody>, Response = Response<B>> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError> + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError> + 'static,
{
    fn call(&self, req: Request<HttpBody>) -> BoxFuture<'_, Result<Response<HttpBody>, BoxError>> {
        use tower::ServiceExt;
        // Combinators rather than an async block: rustc cannot prove an async block holding a
        // generic service future `Send` for every lifetime (a known inference limitation).
        Box::pin(futures::FutureExt::map(
            self.0.clone().oneshot(req),
            |result| match result {
                Ok(resp) => Ok(resp.map(boxed)),
                Err(e) => Err(e.into()),
            },
        ))
    }

    /// A tower service has no hook of its own: [`crate::deployment::Deployment::with_reconfigure`] gives one.
    fn reconfigure<'a>(
        &'a self,
        _user_config: &'a serde_json::Value,
    ) -> BoxFuture<'a, Result<(), AgentError>> {
        Box::pin(async { Ok(()) })
    }
}

/// Wraps an app's service in a layer; kept type-erased so an app can hold several.
pub(crate) type LayerFn = Arc<dyn Fn(HttpService) -> HttpService + Send + Sync>;

#[cfg(all(test, feature = "axum"))]
mod tests {
    use super::*;
    use tower::ServiceExt;

    async fn matched(router: axum::Router, path: &str) -> (u16, Option<MatchedRoute>) {
        let resp = report_matched_routes(router)
            .oneshot(Request::get(path).body(empty()).unwrap())
            .await
            .unwrap();
        (
            resp.status().as_u16(),
            resp.extensions().get::<MatchedRoute>().cloned(),
        )
    }

    #[tokio::test]
    async fn an_axum_router_reports_the_pattern_it_matched() {
        let router = || {
            axum::Router::new()
                .route("/items/{item_id}", axum::routing::get(|| async { "item" }))
                .nest(
                    "/v2",
                    axum::Router::new().route("/{x}", axum::routing::get(|| async { "v2" })),
                )
        };
        let pattern = |p: &str| Some(MatchedRoute(Arc::from(p)));
        assert_eq!(
            matched(router(), "/items/7").await,
            (200, pattern("/items/{item_id}"))
        );
        assert_eq!(matched(router(), "/v2/a").await, (200, pattern("/v2/{x}")));
        // No route matched: nothing reported, the proxy labels the request by its prefix.
        assert_eq!(matched(router(), "/nope").await, (404, None));
        // A router without routes is left alone (axum refuses a route layer on it).
        assert_eq!(matched(axum::Router::new(), "/").await, (404, None));
    }

    #[test]
    fn any_other_service_is_left_as_it_is() {
        let service = tower::service_fn(|_: Request<HttpBody>| async {
            Ok::<_, Infallible>(Response::new(empty()))
        });
        let _same: tower::util::ServiceFn<_> = report_matched_routes(service);
    }
}
