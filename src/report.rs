//! [`Report`]: the error type for `main`, printed as a person reads it.

use std::error::Error as StdError;
use std::fmt;

/// An error for `main` to return, so that a failure prints its message rather than its
/// `Debug` form.
///
/// Rust prints the error that `main` returns with `Debug`; for a [`BuildError`] that would be
/// `BuildError { problems: [Settings(…` instead of the list of problems. A `Report`'s `Debug`
/// is the error's `Display` and each of its causes, one per line, as `anyhow` does. Every error
/// converts into it with `?`.
///
/// ```no_run
/// use loopjob::{Host, Report, Settings};
///
/// #[tokio::main]
/// async fn main() -> Result<(), Report> {
///     let host = Host::builder()
///         .settings(Settings::load("config/app.toml")?)
///         .build()?;
///     host.run().await;
///     Ok(())
/// }
/// ```
///
/// A build that fails then ends the program with exit code 1 and, on stderr:
///
/// ```text
/// Error: cannot start: 1 problem
///   - app.toml:9: [jobs.pc_keep_alive] intreval: unknown key; did you mean `interval`?
/// ```
///
/// [`BuildError`]: crate::BuildError
pub struct Report(Box<dyn StdError + Send + Sync + 'static>);

impl Report {
    /// The error inside, to inspect or downcast.
    pub fn as_error(&self) -> &(dyn StdError + Send + Sync + 'static) {
        &*self.0
    }
}

/// Every error type, a boxed error, and a `String` or `&str` message. (`Report` itself is not
/// an `Error`, so that this impl can exist.)
impl<E> From<E> for Report
where
    E: Into<Box<dyn StdError + Send + Sync + 'static>>,
{
    fn from(error: E) -> Self {
        Report(error.into())
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_chain(&*self.0, ": ", f)
    }
}

/// The `Display` form, with each cause on a line of its own: what `main` prints.
impl fmt::Debug for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_chain(&*self.0, "\n  caused by: ", f)
    }
}

/// Writes `error` and each of its causes, separated by `separator`.
pub(crate) fn write_chain(
    error: &(dyn StdError + 'static),
    separator: &str,
    f: &mut fmt::Formatter<'_>,
) -> fmt::Result {
    fmt::Display::fmt(error, f)?;
    let mut source = error.source();
    while let Some(cause) = source {
        write!(f, "{separator}{cause}")?;
        source = cause.source();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Report;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot open the store")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn debug_prints_the_message_and_its_causes() {
        let report = Report::from(Outer(std::io::Error::other("disk full")));
        assert_eq!(
            format!("{report:?}"),
            "cannot open the store\n  caused by: disk full"
        );
        assert_eq!(report.to_string(), "cannot open the store: disk full");
    }
}
