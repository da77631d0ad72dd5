use rayai::agent;

#[agent(memory = "2 potatoes")]
#[derive(Default)]
struct UnknownUnit;

#[agent(memory = "")]
#[derive(Default)]
struct Empty;

#[agent(memory = "-1GB")]
#[derive(Default)]
struct Negative;

#[agent(memory = "1024")]
#[derive(Default)]
struct NoUnit;

#[agent(memory = "16777216TB")]
#[derive(Default)]
struct Overflow;

#[agent(memory = "1.2.3GB")]
#[derive(Default)]
struct BadNumber;

fn main() {}
