use rayai::agent;

#[agent(health_check_period_s = 0)]
#[derive(Default)]
struct A;

fn main() {}
