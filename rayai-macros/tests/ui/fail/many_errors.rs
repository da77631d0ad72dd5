// Every mistake in one attribute is reported at once, each at its own token.
use rayai::agent;

#[agent(
    num_cpu = 1,
    num_replicas = 0,
    memory = "2 potatoes",
    name = "has space",
    num_gpus = "one",
    num_replicas = 2
)]
#[derive(Default)]
struct A;

fn main() {}
