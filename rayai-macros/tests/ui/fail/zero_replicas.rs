use rayai::agent;

#[agent(num_replicas = 0)]
#[derive(Default)]
struct A;

fn main() {}
