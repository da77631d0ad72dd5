use rayai::agent;

#[agent(crate = "not a path")]
#[derive(Default)]
struct A;

fn main() {}
