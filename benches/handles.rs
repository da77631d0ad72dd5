#![allow(missing_docs)] // criterion_group! generates undocumented functions

//! What a handle call between two deployments costs on top of the callee's work: the callee
//! called directly, and through a `TypedHandle` (router, slot, replica) with each isolation mode;
//! then handle calls per second with 64 calls in flight.
//!
//! ```text
//! cargo bench --bench handles
//! ```

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use rayai::prelude::*;
use rayai::{Controller, NodeResources, TypedHandle};

#[deployment(
    num_cpus = 0.1,
    memory = "16MB",
    max_ongoing_requests = 1000,
    isolation = "shared"
)]
#[derive(Default)]
struct Shared;

#[deployment(num_cpus = 0.1, memory = "16MB", max_ongoing_requests = 1000)]
#[derive(Default)]
struct Threaded;

macro_rules! add_one {
    ($($t:ty),*) => {$(
        impl Callable for $t {
            type Request = u64;
            type Response = u64;
            async fn call(&self, x: u64) -> Result<u64, AgentError> {
                Ok(x + 1)
            }
        }
    )*};
}
add_one!(Shared, Threaded);

fn handles(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let controller = Controller::new(NodeResources::new(8.0, 8 << 30));
    let app = App::new().callable::<Shared>().callable::<Threaded>();
    rt.block_on(controller.deploy_app(app, "/")).unwrap();
    let shared: TypedHandle<Shared> = TypedHandle::new(controller.handle("shared").unwrap());
    let threaded: TypedHandle<Threaded> = TypedHandle::new(controller.handle("threaded").unwrap());

    let mut group = c.benchmark_group("handle call");
    group.bench_function("callee called directly", |b| {
        b.to_async(&rt)
            .iter(|| async { Callable::call(&Shared, 41).await.unwrap() });
    });
    group.bench_function("typed handle, shared isolation", |b| {
        b.to_async(&rt)
            .iter(|| async { shared.call(41).await.unwrap() });
    });
    group.bench_function("typed handle, thread isolation", |b| {
        b.to_async(&rt)
            .iter(|| async { threaded.call(41).await.unwrap() });
    });
    group.finish();

    // Throughput: 64 callers in a loop for one second each.
    for (name, calls) in [
        ("shared", rt.block_on(throughput(shared.clone()))),
        ("thread", rt.block_on(throughput(threaded.clone()))),
    ] {
        println!("handle calls/s, 64 in flight, {name} isolation: {calls:.0}");
    }
}

async fn throughput<T: Callable<Request = u64, Response = u64>>(handle: TypedHandle<T>) -> f64 {
    let end = Instant::now() + Duration::from_secs(1);
    let workers = (0..64).map(|_| {
        let handle = handle.clone();
        tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < end {
                handle.call(n).await.unwrap();
                n += 1;
            }
            n
        })
    });
    let mut total = 0;
    for w in workers {
        total += w.await.unwrap();
    }
    total as f64
}

criterion_group!(benches, handles);
criterion_main!(benches);
