//! Durations in a job's options, read like the schedule's: humantime strings (`"15m"`,
//! `"1h 30m"`), with a bare number refused and the form to write shown.
//!
//! ```
//! use std::time::Duration;
//!
//! #[derive(serde::Deserialize, validator::Validate)]
//! struct Options {
//!     #[serde(with = "loopjob::settings::duration")]
//!     change_state_after: Duration,
//! }
//!
//! let settings = loopjob::Settings::from_toml_str(
//!     "[jobs.keep_alive]\ninterval = \"10s\"\nchange_state_after = \"15m\"\n",
//! )?;
//! let options: Options = settings.options("keep_alive")?;
//! assert_eq!(options.change_state_after, Duration::from_secs(900));
//! # Ok::<(), loopjob::SettingsError>(())
//! ```

use std::time::Duration;

use serde::de::{Deserialize, Deserializer, Error};

/// Reads a duration in humantime form; for `#[serde(with = "loopjob::settings::duration")]`
/// or `#[serde(deserialize_with = "loopjob::settings::duration::deserialize")]`.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let value = config::Value::deserialize(deserializer)?;
    super::value::duration(&value).map_err(D::Error::custom)
}
