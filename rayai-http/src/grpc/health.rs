//! `grpc.health.v1.Health`: the gRPC face of `/-/healthz`. The server (`""`) and each service
//! served here are `SERVING` while the server takes requests (in the replica role: once its
//! deployments run) and `NOT_SERVING` once it drains; `Watch` sends the status, then each change.

use std::sync::Arc;
use std::time::Duration;

use futures::stream::BoxStream;
use tonic::{Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

use crate::service::Shared;

/// The services whose health is asked for by name, besides the server's (`""`).
const SERVICES: [&str; 2] = ["rayai.v1.Agents", "grpc.health.v1.Health"];

/// How often a `Watch` looks at the status again.
const WATCH_PERIOD: Duration = Duration::from_millis(500);

/// The health service of a server.
#[derive(Clone)]
pub(crate) struct HealthService {
    server: HealthServer<Checker>,
}

impl HealthService {
    /// The health of the server `shared`.
    pub(crate) fn new(shared: Arc<Shared>) -> HealthService {
        HealthService {
            server: HealthServer::new(Checker { shared }),
        }
    }

    /// The tonic service.
    pub(crate) fn server(&self) -> HealthServer<Checker> {
        self.server.clone()
    }
}

/// Answers health checks from the server's state.
pub(crate) struct Checker {
    shared: Arc<Shared>,
}

impl Checker {
    /// The status of `service` now; `None` for a service not served here (applications'
    /// services count: any name with a `.`).
    fn status(&self, service: &str) -> Option<ServingStatus> {
        let known = service.is_empty() || SERVICES.contains(&service) || service.contains('.');
        if !known {
            return None;
        }
        Some(if self.shared.serving() {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        })
    }
}

#[tonic::async_trait]
impl Health for Checker {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        let service = request.into_inner().service;
        match self.status(&service) {
            Some(status) => Ok(Response::new(HealthCheckResponse {
                status: status as i32,
            })),
            None => Err(Status::not_found(format!("unknown service `{service}`"))),
        }
    }

    type WatchStream = BoxStream<'static, Result<HealthCheckResponse, Status>>;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let service = request.into_inner().service;
        let checker = Checker {
            shared: self.shared.clone(),
        };
        let first: Option<ServingStatus> = None;
        let stream = futures::stream::unfold(
            (checker, service, first),
            |(checker, service, last)| async move {
                loop {
                    let now = checker
                        .status(&service)
                        .unwrap_or(ServingStatus::ServiceUnknown);
                    if last != Some(now) {
                        let answer = Ok(HealthCheckResponse { status: now as i32 });
                        return Some((answer, (checker, service, Some(now))));
                    }
                    tokio::time::sleep(WATCH_PERIOD).await;
                }
            },
        );
        Ok(Response::new(Box::pin(stream)))
    }
}
