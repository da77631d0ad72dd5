use rayai::agent;

#[agent(num_replicas = "four")]
#[derive(Default)]
struct A;

// Only the lower-case word: Ray Serve's spelling.
#[agent(num_replicas = "Auto")]
#[derive(Default)]
struct B;

fn main() {}
