use rayai::agent;

#[agent(autoscaling = "auto")]
#[derive(Default)]
struct A;

#[agent(autoscaling)]
#[derive(Default)]
struct B;

fn main() {}
