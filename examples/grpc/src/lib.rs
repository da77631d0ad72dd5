//! The grpc example's services and applications (the tests and the benchmark serve them too).

use std::pin::Pin;
use std::time::Duration;

use futures::Stream;
use rayai::{AgentError, App, Construct, ReplicaContext};
use tonic::{Request, Response, Status, Streaming};

/// The code tonic-prost-build generated from `proto/greeter.proto`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("greeter.v1");
}

use pb::greeter_server::GreeterServer;
use pb::sleeper_server::SleeperServer;
use pb::{HelloReply, HelloRequest, SleepReply, SleepRequest};

/// The most requests one `SayHelloToAll` or `Chat` call takes: the next one ends it with
/// `RESOURCE_EXHAUSTED`.
pub const MAX_MESSAGES: usize = 10_000;

/// The longest `name`, in bytes: a longer one is `INVALID_ARGUMENT` (and ends a stream).
pub const MAX_NAME_BYTES: usize = 1000;

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
        let name = greeted(name);
        HelloReply {
            message: match i {
                None => format!("Hello, {name}!"),
                Some(i) => format!("Hello, {name}! ({i})"),
            },
            replica: self.replica.clone(),
        }
    }
}

/// The name a greeting names: `world` for an empty one.
fn greeted(name: &str) -> &str {
    if name.is_empty() { "world" } else { name }
}

/// `INVALID_ARGUMENT` for a name longer than [`MAX_NAME_BYTES`].
fn check_name(name: &str) -> Result<(), Status> {
    if name.len() > MAX_NAME_BYTES {
        return Err(Status::invalid_argument("name: at most 1000 bytes"));
    }
    Ok(())
}

/// `RESOURCE_EXHAUSTED` for the request after the first [`MAX_MESSAGES`].
fn too_many() -> Status {
    Status::resource_exhausted("at most 10000 requests in one call")
}

/// The names as a greeting lists them: `a`, `a and b`, `a, b and c`; `world` for none.
fn listed(names: &[String]) -> String {
    match names {
        [] => "world".to_owned(),
        [only] => only.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// What is left of a `Chat`: the requests still to answer, how many were answered, and the
/// replica that answers.
struct Chatting {
    requests: Streaming<HelloRequest>,
    answered: usize,
    replica: String,
}

impl Chatting {
    /// The answer to the next request: `None` when the client closed its side, an error (the
    /// last item) for a bad request, one too many, or a broken request stream.
    async fn next(&mut self) -> Option<Result<HelloReply, Status>> {
        let req = match self.requests.message().await {
            Ok(Some(req)) => req,
            Ok(None) => return None,
            Err(status) => return Some(Err(status)),
        };
        if self.answered == MAX_MESSAGES {
            return Some(Err(too_many()));
        }
        if let Err(status) = check_name(&req.name) {
            return Some(Err(status));
        }
        self.answered += 1;
        Some(Ok(HelloReply {
            message: format!("Hello, {}!", greeted(&req.name)),
            replica: self.replica.clone(),
        }))
    }
}

#[tonic::async_trait]
impl pb::greeter_server::Greeter for Greeter {
    async fn say_hello(
        &self,
        request: Request<HelloRequest>,
    ) -> Result<Response<HelloReply>, Status> {
        let req = request.into_inner();
        check_name(&req.name)?;
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

    /// Client streaming: one greeting naming every request's name (in order, `world` for an
    /// empty one), once the client closes its side. A name past [`MAX_NAME_BYTES`] is
    /// `INVALID_ARGUMENT`, a request past [`MAX_MESSAGES`] `RESOURCE_EXHAUSTED`.
    async fn say_hello_to_all(
        &self,
        request: Request<Streaming<HelloRequest>>,
    ) -> Result<Response<HelloReply>, Status> {
        let mut requests = request.into_inner();
        let mut names = Vec::new();
        while let Some(req) = requests.message().await? {
            if names.len() == MAX_MESSAGES {
                return Err(too_many());
            }
            check_name(&req.name)?;
            names.push(greeted(&req.name).to_owned());
        }
        Ok(Response::new(HelloReply {
            message: format!("Hello, {}!", listed(&names)),
            replica: self.replica.clone(),
        }))
    }

    type ChatStream = Pin<Box<dyn Stream<Item = Result<HelloReply, Status>> + Send>>;

    /// Bidirectional: `Hello, <name>!` for each request as it arrives; the stream ends when the
    /// client closes its side, or with the status of the first bad request (`INVALID_ARGUMENT`
    /// for a name past [`MAX_NAME_BYTES`], `RESOURCE_EXHAUSTED` past [`MAX_MESSAGES`]).
    async fn chat(
        &self,
        request: Request<Streaming<HelloRequest>>,
    ) -> Result<Response<Self::ChatStream>, Status> {
        let chatting = Chatting {
            requests: request.into_inner(),
            answered: 0,
            replica: self.replica.clone(),
        };
        let stream = futures::stream::unfold(Some(chatting), |state| async move {
            let mut chatting = state?;
            let answer = chatting.next().await?;
            // After an error, nothing more: the status is the stream's last word.
            let rest = answer.is_ok().then_some(chatting);
            Some((answer, rest))
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
