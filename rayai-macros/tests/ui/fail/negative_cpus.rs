use rayai::agent;

#[agent(num_cpus = -1.0)]
#[derive(Default)]
struct A;

fn main() {}
