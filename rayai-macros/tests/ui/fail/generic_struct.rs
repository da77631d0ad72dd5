use rayai::agent;

#[agent]
#[derive(Default)]
struct A<T> {
    t: T,
}

#[agent]
struct B<'a>(&'a str);

fn main() {}
