use rayai::agent;

#[agent(num_cpus = 1)]
async fn echo() {}

fn main() {}
