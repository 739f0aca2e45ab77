//! Compile errors of `#[derive(LoopJob)]`: each names the problem at the tokens at fault.

#[test]
fn derive_errors_point_at_the_mistake() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
