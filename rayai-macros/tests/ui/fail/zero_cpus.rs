use rayai::agent;

#[agent(num_cpus = 0)]
#[derive(Default)]
struct A;

fn main() {}
