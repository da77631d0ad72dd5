use rayai::agent;

#[agent(num_replicas = 2, autoscaling(min_replicas = 1, max_replicas = 4))]
#[derive(Default)]
struct A;

#[agent(autoscaling(min_replicas = 1, max_replicas = 4), num_replicas = "auto")]
#[derive(Default)]
struct B;

fn main() {}
