use rayai::agent;

#[agent(num_cpu = 1)]
#[derive(Default)]
struct A;

fn main() {}
