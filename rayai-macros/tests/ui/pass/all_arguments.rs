use rayai::agent;

#[agent(
    name = "echo-v2.1",
    num_cpus = 2,
    num_gpus = 1,
    memory = "4GB",
    num_replicas = 4,
    max_ongoing_requests = 8,
    max_queued_requests = 10,
    backpressure_retry_after_s = 5,
    crate = "::rayai"
)]
#[derive(Default)]
struct Echo {
    _calls: std::sync::atomic::AtomicU64,
}

impl rayai::Agent for Echo {
    async fn run(&self, data: rayai::Value) -> Result<rayai::Value, rayai::AgentError> {
        Ok(data)
    }
}

// `-1` is no limit on the queue, and `0` no queue at all.
#[agent(max_queued_requests = -1)]
#[derive(Default)]
struct Unbounded;

#[agent(max_queued_requests = 0)]
#[derive(Default)]
struct NoQueue;

macro_rules! echo_impls {
    ($($ty:ty),*) => {$(
        impl rayai::Agent for $ty {
            async fn run(&self, data: rayai::Value) -> Result<rayai::Value, rayai::AgentError> {
                Ok(data)
            }
        }
    )*};
}
echo_impls!(Unbounded, NoQueue);

fn main() {
    let config = <Echo as rayai::Deploy>::config();
    assert_eq!(config.name(), "echo-v2.1");
    assert_eq!(config.resources().num_cpus, 2.0);
    assert_eq!(config.resources().num_gpus, 1.0);
    assert_eq!(config.resources().memory_bytes, 4 << 30);
    assert_eq!(config.num_replicas(), 4);
    assert_eq!(config.max_ongoing_requests(), 8);
    assert_eq!(config.max_queued_requests(), Some(10));

    assert_eq!(
        <Unbounded as rayai::Deploy>::config().max_queued_requests(),
        None
    );
    assert_eq!(
        <NoQueue as rayai::Deploy>::config().max_queued_requests(),
        Some(0)
    );
}
