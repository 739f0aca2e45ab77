//! Compile errors of `#[derive(LoopJob)]`: each names the problem at the tokens at fault and
//! says what to write (a missing `execute`, options that are not `Deserialize + Validate`, a
//! field that is neither `Default` nor an `Arc` resource, bad attribute keys and values).

#[test]
fn derive_errors_point_at_the_mistake() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
