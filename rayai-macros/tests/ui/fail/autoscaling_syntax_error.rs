// A syntax error inside `autoscaling(...)` is reported with the other mistakes, not alone.
use rayai::agent;

#[agent(autoscaling(min_replicas = 1 max_replicas = 2), num_cpus = 0)]
#[derive(Default)]
struct A;

#[agent(autoscaling(min_replicas = ), num_cpus(1))]
#[derive(Default)]
struct B;

fn main() {}
