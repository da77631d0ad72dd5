use rayai::agent;

#[agent(num_cpus)]
#[derive(Default)]
struct A;

#[agent(num_cpus = 1 num_gpus = 1)]
#[derive(Default)]
struct B;

fn main() {}
