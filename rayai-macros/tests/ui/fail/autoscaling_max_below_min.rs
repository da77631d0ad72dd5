use rayai::agent;

#[agent(autoscaling(min_replicas = 4, max_replicas = 2))]
#[derive(Default)]
struct A;

#[agent(autoscaling(min_replicas = 1, max_replicas = 4, initial_replicas = 8))]
#[derive(Default)]
struct B;

fn main() {}
