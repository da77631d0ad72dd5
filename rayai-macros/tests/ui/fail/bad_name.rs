use rayai::agent;

#[agent(name = "has space")]
#[derive(Default)]
struct A;

#[agent(name = "..")]
#[derive(Default)]
struct B;

#[agent(name = "")]
#[derive(Default)]
struct C;

fn main() {}
