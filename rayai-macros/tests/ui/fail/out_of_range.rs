use rayai::agent;

#[agent(num_gpus = -0.5)]
#[derive(Default)]
struct A;

#[agent(max_ongoing_requests = 0)]
#[derive(Default)]
struct B;

#[agent(max_queued_requests = -2)]
#[derive(Default)]
struct C;

#[agent(num_replicas = 4294967296)]
#[derive(Default)]
struct D;

fn main() {}
