//! `proto/greeter.proto` compiled by protox (protobuf in Rust: no `protoc` on the machine), the
//! descriptors fed to tonic-prost-build, as any project with its own `.proto` would.

fn main() {
    println!("cargo:rerun-if-changed=proto/greeter.proto");
    let descriptors =
        protox::compile(["greeter.proto"], ["proto"]).expect("greeter.proto compiles");
    tonic_prost_build::configure()
        .compile_fds(descriptors)
        .expect("the greeter code");
}
