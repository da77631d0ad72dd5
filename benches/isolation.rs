#![allow(missing_docs)] // criterion_group! generates undocumented functions
//! What replica isolation costs per request: the same agent called directly, and through a
//! deployment (router, slot, the hop to the replica's own executor and back).
//!
//! ```text
//! cargo bench --bench isolation
//! ```

use criterion::{Criterion, criterion_group, criterion_main};
use rayai::prelude::*;
use rayai::{Controller, Deployment, RequestContext};

#[agent(num_cpus = 0.1, memory = "16MB", max_ongoing_requests = 1000)]
#[derive(Default)]
struct Echo;

impl Agent for Echo {
    async fn run(&self, data: Value) -> Result<Value, AgentError> {
        Ok(json!({ "echo": data }))
    }
}

fn isolation(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let handle = rt
        .block_on(async {
            let controller = Controller::global().await;
            controller.deploy(Deployment::agent::<Echo>()).await
        })
        .unwrap();
    let data = json!({"messages": [{"role": "user", "content": "hello"}]});
    let mut group = c.benchmark_group("isolation");
    group.bench_function("direct call of run", |b| {
        b.to_async(&rt)
            .iter(|| async { Echo.run(data.clone()).await.unwrap() });
    });
    group.bench_function("through the deployment (router + replica executor)", |b| {
        b.to_async(&rt).iter(|| async {
            let ctx = RequestContext::new("bench", "default");
            handle.call_with(ctx, data.clone()).await.unwrap()
        });
    });
    group.finish();
}

criterion_group!(benches, isolation);
criterion_main!(benches);
