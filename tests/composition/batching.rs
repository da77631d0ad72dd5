//! An agent whose replica batches its requests with `rayai::batch::Batcher`, served on a real
//! server. Concurrent HTTP requests are answered from shared batch calls, each client gets its
//! own result, and an error for one item reaches only its client.

use std::sync::Mutex;
use std::time::Duration;

use http::StatusCode;
use rayai::batch::Batcher;
use rayai::prelude::*;
use rayai::{Controller, NodeResources};

use crate::common::{serve_on, start_post};

/// The size of every batch the `doubler` agent's batch function was given.
static DOUBLER_BATCHES: Mutex<Vec<usize>> = Mutex::new(Vec::new());

/// The largest batch the `doubler` agent asks for.
const MAX_BATCH: usize = 4;

/// Doubles `data.x` in batches of up to four; a negative `x` is that item's error.
#[agent(
    name = "doubler",
    num_cpus = 0.1,
    memory = "16MB",
    num_replicas = 1,
    max_ongoing_requests = 32
)]
struct Doubler {
    batch: Batcher<i64, i64>,
}

impl Construct for Doubler {
    async fn construct(_ctx: ReplicaContext) -> Result<Self, AgentError> {
        // Long enough that requests sent together on a loaded machine share batches.
        let wait = Duration::from_millis(200);
        let batch = Batcher::new(MAX_BATCH, wait, |xs: Vec<i64>| async move {
            DOUBLER_BATCHES.lock().unwrap().push(xs.len());
            xs.into_iter()
                .map(|x| {
                    if x < 0 {
                        Err(AgentError::new(format!("{x} is negative")))
                    } else {
                        Ok(2 * x)
                    }
                })
                .collect()
        });
        Ok(Doubler { batch })
    }
}

impl Agent for Doubler {
    async fn run(&self, data: Value) -> Result<Value, AgentError> {
        let x = data["x"]
            .as_i64()
            .ok_or_else(|| AgentError::new("x must be an integer"))?;
        let doubled = self.batch.call(x).await?;
        Ok(json!({ "doubled": doubled }))
    }
}

#[tokio::test]
async fn concurrent_requests_share_batches_and_get_their_own_results() {
    let node = Controller::new(NodeResources::new(4.0, 1 << 30));
    let server = serve_on(node, App::new().agent::<Doubler>()).await;
    let addr = server.local_addr();

    let xs: Vec<i64> = (0..9).chain([-1]).collect();
    let in_flight: Vec<_> = xs
        .iter()
        .map(|x| {
            let body = json!({ "data": { "x": x } }).to_string();
            (*x, start_post(addr, "/agents/doubler/chat", &body))
        })
        .collect();

    for (x, request) in in_flight {
        let reply = request.reply().await;
        if x < 0 {
            assert_eq!(
                reply.status,
                StatusCode::INTERNAL_SERVER_ERROR,
                "{}",
                reply.body
            );
            assert_eq!(reply.json()["detail"], "-1 is negative");
        } else {
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
            assert_eq!(reply.json()["result"], json!({ "doubled": 2 * x }));
        }
    }

    let batches = DOUBLER_BATCHES.lock().unwrap().clone();
    assert_eq!(batches.iter().sum::<usize>(), xs.len(), "{batches:?}");
    assert!(batches.iter().all(|&n| n <= MAX_BATCH), "{batches:?}");
    assert!(
        batches.len() < xs.len(),
        "no two requests shared a batch: {batches:?}"
    );
    server.shutdown().await;
}
