//! Bearer-token authentication as a tower layer: for one app (`App::layer`), one axum route
//! (`route_layer`), or anything else tower wraps.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response, header};
use rayai_core::handler::{BoxError, HttpBody, boxed};

/// Requires `Authorization: Bearer <token>`; anything else is a 401 with `www-authenticate:
/// Bearer`. The token is compared in constant time and never printed (`Debug` redacts it).
///
/// # Examples
///
/// ```
/// use rayai_http::auth::BearerAuthLayer;
///
/// let layer = BearerAuthLayer::new("s3cret");
/// assert!(!format!("{layer:?}").contains("s3cret"));
/// ```
#[derive(Clone)]
pub struct BearerAuthLayer {
    token: Arc<[u8]>,
}

impl BearerAuthLayer {
    /// Requires this token.
    pub fn new(token: impl AsRef<[u8]>) -> Self {
        BearerAuthLayer {
            token: Arc::from(token.as_ref()),
        }
    }
}

impl std::fmt::Debug for BearerAuthLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerAuthLayer")
            .field("token", &"<redacted>")
            .finish()
    }
}

impl<S> tower::Layer<S> for BearerAuthLayer {
    type Service = BearerAuth<S>;

    fn layer(&self, inner: S) -> BearerAuth<S> {
        BearerAuth {
            inner,
            token: self.token.clone(),
        }
    }
}

/// The service [`BearerAuthLayer`] makes.
#[derive(Clone)]
pub struct BearerAuth<S> {
    inner: S,
    token: Arc<[u8]>,
}

impl<S> std::fmt::Debug for BearerAuth<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerAuth")
            .field("token", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// Equal without an early exit, so the time taken does not tell how much of a guess was right.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, &x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i).copied().unwrap_or(!x));
    }
    diff == 0
}

/// Whether the request carries `Authorization: Bearer <token>` (compared in constant time).
pub(crate) fn authorized<B>(req: &Request<B>, token: &[u8]) -> bool {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return false;
    };
    let value = value.as_bytes();
    value.len() > 7
        && value[..7].eq_ignore_ascii_case(b"bearer ")
        && constant_time_eq(&value[7..], token)
}

fn unauthorized() -> Response<HttpBody> {
    crate::error::unauthorized("Not authenticated").map(crate::Body::into_http)
}

impl<S, ReqBody, ResBody> tower::Service<Request<ReqBody>> for BearerAuth<S>
where
    S: tower::Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError> + 'static,
{
    type Response = Response<HttpBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<HttpBody>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        if !authorized(&req, &self.token) {
            return Box::pin(std::future::ready(Ok(unauthorized())));
        }
        Box::pin(futures::FutureExt::map(self.inner.call(req), |r| {
            r.map(|resp| resp.map(boxed))
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(auth: Option<&str>) -> Request<()> {
        let mut b = Request::builder();
        if let Some(a) = auth {
            b = b.header(header::AUTHORIZATION, a);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn only_the_exact_bearer_token_passes() {
        assert!(authorized(&req(Some("Bearer secret")), b"secret"));
        assert!(authorized(&req(Some("bearer secret")), b"secret"));
        for bad in [
            None,
            Some("Bearer secre"),
            Some("Bearer secrets"),
            Some("Basic secret"),
            Some("Bearer "),
            Some("secret"),
        ] {
            assert!(!authorized(&req(bad), b"secret"), "{bad:?}");
        }
    }

    #[test]
    fn constant_time_eq_compares_lengths_too() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"", b"a"));
    }
}
