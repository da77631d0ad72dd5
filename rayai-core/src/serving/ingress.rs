//! An application's ingress as a tower service: requests go to the ingress deployment through
//! its handle. A failure (overload, a panic, the service's own error) becomes a response that
//! carries the error as [`Failed`]: the HTTP front renders it with the status codes of the
//! contract, after the application's layers have seen a failed response go by.

use std::convert::Infallible;
use std::sync::Arc;

use http::{Request, Response, StatusCode};

use crate::error::Error;
use crate::handle::DeploymentHandle;
use crate::handler::{HttpBody, HttpService, empty};
use crate::request::RequestContext;

/// A response that stands for an error, in its extensions: the front replaces its body.
#[derive(Debug, Clone)]
pub struct Failed(pub Arc<Error>);

/// The service that sends an app's requests to its ingress deployment.
pub(crate) fn ingress_service(handle: DeploymentHandle) -> HttpService {
    HttpService::new(tower::service_fn(move |mut req: Request<HttpBody>| {
        let handle = handle.clone();
        let ctx = req
            .extensions_mut()
            .remove::<RequestContext>()
            .unwrap_or_else(|| RequestContext::new("", "default"));
        async move {
            Ok::<_, Infallible>(match handle.serve(ctx, req).await {
                Ok(resp) => resp,
                Err(e) => {
                    let mut resp = Response::new(empty());
                    *resp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                    resp.extensions_mut().insert(Failed(Arc::new(e)));
                    resp
                }
            })
        }
    }))
}
