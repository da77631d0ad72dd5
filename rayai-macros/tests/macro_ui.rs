//! Compile-time behaviour of `#[agent]`: what it accepts (`ui/pass`, which also run) and the errors
//! it gives (`ui/fail`, checked against the `.stderr` snapshots beside each case).
//!
//! Regenerate the snapshots with `TRYBUILD=overwrite cargo test -p rayai-macros --test macro_ui`,
//! then read the diff. They build against `rayai` without its optional features (the
//! dev-dependency says so): trybuild compiles in a target directory of its own.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
