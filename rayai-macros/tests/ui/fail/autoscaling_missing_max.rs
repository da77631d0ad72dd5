use rayai::agent;

#[agent(autoscaling(min_replicas = 1, target_ongoing_requests = 2))]
#[derive(Default)]
struct A;

fn main() {}
