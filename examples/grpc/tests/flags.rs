//! The `grpc` binary takes `--port`, `--host` and `--dashboard-port` and serves where it is told.

#[test]
fn serves_on_the_port_host_and_dashboard_port_it_is_given() {
    example_support::serves_where_it_is_told("grpc", env!("CARGO_BIN_EXE_grpc"));
}
