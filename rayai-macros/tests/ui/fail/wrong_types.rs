use rayai::agent;

#[agent(
    num_replicas = "4",
    num_cpus = "one",
    num_gpus = true,
    memory = 2048,
    name = echo,
    max_ongoing_requests = 1.5,
    max_queued_requests = 'x',
    crate = rayai,
)]
#[derive(Default)]
struct A;

fn main() {}
