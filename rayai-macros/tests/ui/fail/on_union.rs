use rayai::agent;

#[agent]
union A {
    b: u32,
    c: f32,
}

fn main() {}
