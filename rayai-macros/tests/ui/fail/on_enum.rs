use rayai::agent;

#[agent]
enum A {
    B,
}

fn main() {}
