use rayai::agent;

#[agent(num_cpus = 1, memory = "1GB", num_cpus = 2)]
#[derive(Default)]
struct A;

fn main() {}
