use rayai::agent;

#[agent(autoscaling(min_replicas = 0, max_replicas = 4, target = 2))]
#[derive(Default)]
struct A;

fn main() {}
