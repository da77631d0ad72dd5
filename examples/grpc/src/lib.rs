//! The grpc example's services and applications (the tests and the benchmark serve them too).

use std::pin::Pin;
use std::time::Duration;

use futures::Stream;
use rayai::{AgentError, App, Construct, ReplicaContext};
use tonic::{Request, Response, Status};

/// The code tonic-prost-build generated from `proto/greeter.proto`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("greeter.v1");
}

use pb::greeter_server::GreeterServer;
use pb::sleeper_server::SleeperServer;
use pb::{HelloReply, HelloRequest, SleepReply, SleepRequest};

/// Greets, from 2 replicas; each answer names the replica.
#[rayai::deployment(num_cpus = 0.25, memory = "64MB", num_replicas = 2)]
pub struct Greeter {
    replica: String,
}

impl Construct for Greeter {
    async fn construct(ctx: ReplicaContext) -> Result<Self, AgentError> {
        Ok(Greeter {
            replica: ctx.replica_id().to_owned(),
        })
    }
}

impl Greeter {
    /// A greeter outside rayai, answering as the replica `replica` (the benchmark's bare tonic
    /// server serves one).
    pub fn named(replica: impl Into<String>) -> Greeter {
        Greeter {
            replica: replica.into(),
        }
    }

    fn reply(&self, name: &str, i: Option<u32>) -> HelloReply {
        let name = if name.is_empty() { "world" } else { name };
        HelloReply {
            message: match i {
                None => format!("Hello, {name}!"),
                Some(i) => format!("Hello, {name}! ({i})"),
            },
            replica: self.replica.clone(),
        }
    }
}

#[tonic::async_trait]
impl pb::greeter_server::Greeter for Greeter {
    async fn say_hello(
        &self,
        request: Request<HelloRequest>,
    ) -> Result<Response<HelloReply>, Status> {
        let req = request.into_inner();
        if req.name.len() > 1000 {
            return Err(Status::invalid_argument("name: at most 1000 bytes"));
        }
        Ok(Response::new(self.reply(&req.name, None)))
    }

    type SayHelloStreamStream = Pin<Box<dyn Stream<Item = Result<HelloReply, Status>> + Send>>;

    async fn say_hello_stream(
        &self,
        request: Request<HelloRequest>,
    ) -> Result<Response<Self::SayHelloStreamStream>, Status> {
        let req = request.into_inner();
        let count = req.count.min(10_000);
        let delay = Duration::from_millis(u64::from(req.delay_ms.min(60_000)));
        let replies: Vec<HelloReply> = (1..=count)
            .map(|i| self.reply(&req.name, Some(i)))
            .collect();
        let stream = futures::stream::unfold(replies.into_iter(), move |mut rest| async move {
            let next = rest.next()?;
            tokio::time::sleep(delay).await;
            Some((Ok(next), rest))
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

/// Sleeps `ms`: one call at a time, one more queued (the rest are refused: backpressure).
#[rayai::deployment(
    num_cpus = 0.1,
    memory = "32MB",
    max_ongoing_requests = 1,
    max_queued_requests = 1
)]
#[derive(Default)]
pub struct Sleeper;

#[tonic::async_trait]
impl pb::sleeper_server::Sleeper for Sleeper {
    async fn sleep(&self, request: Request<SleepRequest>) -> Result<Response<SleepReply>, Status> {
        let ms = request.into_inner().ms.min(60_000);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(Response::new(SleepReply { slept_ms: ms }))
    }
}

/// The application `greeter` (served over HTTP at `/greeter` too): the `Greeter` service.
pub fn greeter_app() -> App {
    App::named("greeter").grpc(GreeterServer::<Greeter>::from_arc)
}

/// The application `sleeper` (at `/sleeper`): the `Sleeper` service.
pub fn sleeper_app() -> App {
    App::named("sleeper").grpc(SleeperServer::<Sleeper>::from_arc)
}
