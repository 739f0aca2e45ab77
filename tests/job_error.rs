//! `JobError` takes any error with `?`: error types, `anyhow::Error`, boxed errors, messages.

use std::error::Error;
use std::fmt;

use loopjob::JobError;

#[derive(Debug)]
struct Disconnected;

impl fmt::Display for Disconnected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the database disconnected")
    }
}

impl Error for Disconnected {}

fn with_anyhow() -> anyhow::Result<()> {
    use anyhow::Context;
    Err(Disconnected).context("cannot purge sessions")
}

fn with_box() -> Result<(), Box<dyn Error + Send + Sync>> {
    Err(Box::new(Disconnected))
}

#[test]
fn an_anyhow_error_converts_with_its_context_chain() {
    fn run() -> Result<(), JobError> {
        with_anyhow()?;
        Ok(())
    }
    let error = run().unwrap_err();
    assert_eq!(
        error.to_string(),
        "cannot purge sessions: the database disconnected"
    );
}

#[test]
fn a_boxed_error_converts_and_can_be_downcast() {
    fn run() -> Result<(), JobError> {
        with_box()?;
        Ok(())
    }
    let error = run().unwrap_err();
    assert_eq!(error.to_string(), "the database disconnected");
    assert!(error.as_error().downcast_ref::<Disconnected>().is_some());
}

#[test]
fn an_error_type_and_a_message_convert() {
    fn typed() -> Result<(), JobError> {
        Err(Disconnected)?
    }
    fn message() -> Result<(), JobError> {
        Err("no work today")?
    }
    assert_eq!(
        typed().unwrap_err().to_string(),
        "the database disconnected"
    );
    assert_eq!(message().unwrap_err().to_string(), "no work today");
}
