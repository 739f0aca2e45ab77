//! Settings from TOML files and the environment: the host's section, and one section per job
//! with its schedule keys, its leadership keys and its own options.
//!
//! ```toml
//! [loopjob]
//! node_id = "web-1"              # default: $HOSTNAME, else host name + pid
//! group = "eu-west"              # default: $CLUSTER_NAME, else "default"
//! store = "sqlite://loopjob.db"  # memory | sqlite:… | postgres://… | mysql://… | redis://…
//! shutdown_grace = "30s"
//! max_parallel_runs = 8          # at most 8 runs in flight over all jobs (default: no limit)
//! node_id_env = "POD_NAME"       # read the node id from this variable instead of HOSTNAME
//! group_env = "REGION"           # read the group from this variable instead of CLUSTER_NAME
//!
//! [loopjob.leaders.orders]       # a standalone `LeaderElector`'s timing
//! lease_ttl = "30s"
//!
//! [jobs.pc_keep_alive]
//! interval = "10s"               # schedule keys: see `Schedule`
//! initial_delay = "10m"
//! leader = "cluster"             # leadership keys: see `Leadership`
//! change_state_after = "15m"     # the job's own options
//! ```
//!
//! # Layers
//!
//! Each value comes from the last layer that gives it: the job's code (its
//! [`LoopJob::schedule`](crate::LoopJob::schedule), the derive attribute), then each file in the
//! order loaded, then the environment:
//!
//! | variable | sets |
//! |---|---|
//! | `LOOPJOB__JOBS__<JOB>__<KEY>` | `[jobs.<job>] <key>` |
//! | `LOOPJOB__JOBS__<JOB>__<TABLE>__<KEY>` | `[jobs.<job>.<table>] <key>` (nested options) |
//! | `LOOPJOB__<KEY>` | `[loopjob] <key>`, e.g. `LOOPJOB__STORE`, `LOOPJOB__NODE_ID` |
//! | `LOOPJOB__LEADERS__<NAME>__<KEY>` | `[loopjob.leaders.<name>] <key>` |
//!
//! Names are written in capitals and read in lower case, so a job whose name has capitals
//! cannot be set from the environment. A variable that looks like one of these but is never
//! read (`loopjob__store` in lower case, `LOOPJOB_JOBS_CLEANUP_INTERVAL` or `LOOPJOB_STORE` with
//! single underscores) is a [`SettingsWarning`] naming it ([`Settings::warnings`]).
//!
//! # Checks
//!
//! Loading fails only when a source cannot be read (a missing file, invalid TOML, a variable
//! whose value is not UTF-8). Everything else is checked by
//! [`HostBuilder::build`](crate::HostBuilder::build), before any job starts, and every problem
//! comes back at once, each with its [`Origin`] (file and line, or variable), section and key:
//!
//! - Durations are humantime strings (`"10s"`, `"1h 30m"`, `"250ms"`); a bare number is refused
//!   with the form to write (`interval = 10` → `write "10s"`).
//! - An unknown key is an error with a "did you mean" suggestion (none for a key longer than
//!   64 bytes; long keys and values are shortened in messages).
//! - Names from a fixed set (`leader`, `mode`, `missed_ticks`) are read in any case, as the
//!   derive attribute reads them: `"Global"` is `"global"`.
//! - The rules of [`Schedule::validate`](crate::Schedule::validate) and
//!   [`Leadership::validate`], with the bounds of [`limits`](crate::limits), are checked on the
//!   merged values, and reported at the key set.
//! - A job's options are read into its own `Deserialize + Validate` type (the `validator`
//!   crate, with nested validation); a value of the wrong type does not hide the checks of the
//!   other keys, every missing field is named, and an unknown key is reported at its line.
//! - The store URL is checked (a file, or a host and a database) and never shown with its
//!   password.
//! - A section for a job that is not registered is a [`SettingsWarning`], logged and kept on the
//!   host (one per variable that sets a key in it); a registered job without a section runs on
//!   its code's values. A job reads the section of its name, or of its
//!   [`LoopJob::section`](crate::LoopJob::section).

mod admin;
mod collect;
mod configure;
pub mod duration;
mod error;
mod host;
mod job;
mod leaders;
mod leadership;
mod options;
mod section;
mod source;
mod value;

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use config::{Value, ValueKind};
use serde::de::DeserializeOwned;
use validator::Validate;

use crate::schedule::Schedule;

pub use admin::ADMIN_KEYS;
pub use error::{Origin, SettingsError, SettingsProblem, SettingsWarning};
pub use host::{HOST_KEYS, HostSettings};
pub use job::{JobSettings, LEADERSHIP_KEYS, SCHEDULE_KEYS};
pub use leaders::LEADER_KEYS;
pub use leadership::{
    DEFAULT_HISTORY, DEFAULT_LEASE_TTL, DEFAULT_PARTITIONS, DEFAULT_RETRY_EVERY, LeaderMode,
    Leadership, MAX_HISTORY, MAX_PARTITIONS,
};
pub use source::ENV_PREFIX;

pub(crate) use configure::{Builder, configure};
pub(crate) use job::resolve;
#[doc(hidden)]
pub use options::{NoOptions, OptionKeys, OptionsSpec, Typed};
#[doc(hidden)]
pub use section::Section;

pub(crate) use error::did_you_mean;
use error::unknown_key_message;
use source::{Layer, Origins, Table};

/// Settings read from TOML files and the environment, merged; hand them to
/// [`HostBuilder::settings`](crate::HostBuilder::settings).
///
/// ```
/// use loopjob::Settings;
///
/// let settings = Settings::loader()
///     .toml("defaults", "[jobs.cleanup]\ninterval = \"1m\"\n")
///     .env_vars([("LOOPJOB__JOBS__CLEANUP__INTERVAL", "30s")])
///     .load()?;
/// # let _ = settings;
/// # Ok::<(), loopjob::SettingsError>(())
/// ```
pub struct Settings {
    table: Table,
    origins: Origins,
    /// What loading found odd (environment variables that are never read).
    warnings: Vec<SettingsWarning>,
    /// Option keys of sections read through [`Settings::options`], so that they are not
    /// reported as unknown.
    claimed: Mutex<HashMap<String, OptionKeys>>,
}

impl Default for Settings {
    /// No settings: every job runs on its code's values.
    fn default() -> Self {
        Settings {
            table: Table::new(),
            origins: Origins::default(),
            warnings: Vec::new(),
            claimed: Mutex::default(),
        }
    }
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("sections", &self.table.len())
            .finish_non_exhaustive()
    }
}

impl Settings {
    /// Loads one TOML file, then the process environment over it.
    pub fn load(path: impl AsRef<Path>) -> Result<Settings, SettingsError> {
        Settings::loader().file(path).env().load()
    }

    /// Reads settings from TOML text alone (no environment), as from a file named `<string>`.
    pub fn from_toml_str(text: &str) -> Result<Settings, SettingsError> {
        Settings::loader().toml("<string>", text).load()
    }

    /// Starts a loader for several sources.
    pub fn loader() -> SettingsLoader {
        SettingsLoader {
            sources: Vec::new(),
        }
    }

    /// What loading found that is probably a mistake but not an error: environment variables
    /// that look like loopjob's but are never read (`loopjob__store` in lower case,
    /// `LOOPJOB_JOBS_CLEANUP_INTERVAL` with single underscores). Each was logged with
    /// `tracing::warn!`; the host adds them to
    /// [`Host::settings_warnings`](crate::Host::settings_warnings).
    ///
    /// ```
    /// let settings = loopjob::Settings::loader()
    ///     .env_vars([("LOOPJOB_JOBS_CLEANUP_INTERVAL", "1m")])
    ///     .load()?;
    /// assert!(settings.warnings()[0].to_string().contains("separate their parts with `__`"));
    /// # Ok::<(), loopjob::SettingsError>(())
    /// ```
    pub fn warnings(&self) -> &[SettingsWarning] {
        &self.warnings
    }

    /// The environment variables that set a key under `path` (`jobs.cleanup`), sorted.
    pub(crate) fn env_vars_under(&self, path: &str) -> Vec<&str> {
        self.origins.env_vars_under(path)
    }

    /// The `[loopjob]` section, checked.
    pub fn host(&self) -> Result<HostSettings, SettingsError> {
        let mut problems = Vec::new();
        let host = self.host_checked(&mut problems);
        if problems.is_empty() {
            Ok(host)
        } else {
            Err(SettingsError::new(problems))
        }
    }

    /// Reads the options of the job whose section is `[jobs.<section>]`: its keys that are not
    /// schedule or leadership keys, into `O`, checked with `validator`.
    ///
    /// Use this for a job you construct yourself; its option keys then count as known when the
    /// host checks the section. (A job with `#[derive(LoopJob)]` and `discover` gets its
    /// options without this.)
    ///
    /// ```
    /// use loopjob::Settings;
    ///
    /// #[derive(Debug, serde::Deserialize, validator::Validate)]
    /// struct Options {
    ///     #[validate(range(min = 1))]
    ///     batch: u32,
    /// }
    ///
    /// let settings = Settings::from_toml_str("[jobs.purge]\ninterval = \"1m\"\nbatch = 0\n")?;
    /// let error = settings.options::<Options>("purge").unwrap_err();
    /// assert_eq!(error.problems()[0].key, "batch");
    /// # Ok::<(), loopjob::SettingsError>(())
    /// ```
    pub fn options<O>(&self, section: &str) -> Result<O, SettingsError>
    where
        O: DeserializeOwned + Validate + Send + Sync + 'static,
    {
        if let Ok(mut claimed) = self.claimed.lock() {
            claimed.insert(section.to_owned(), Typed::<O>::keys());
        }
        let path = format!("jobs.{section}");
        Typed::<O>::read(&self.section(&path)).map_err(SettingsError::new)
    }

    /// The lease timing of the standalone [`LeaderElector`](crate::LeaderElector) named `name`:
    /// its section `[loopjob.leaders.<name>]` (keys `lease_ttl`, `renew_every`, `retry_every`,
    /// `priority`) over the defaults, checked like a job's leadership. No section gives the
    /// defaults. See [`LeaderElector::from_settings`](crate::LeaderElector::from_settings).
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let settings = loopjob::Settings::loader()
    ///     .toml("app.toml", "[loopjob.leaders.orders]\nlease_ttl = \"30s\"\n")
    ///     .env_vars([("LOOPJOB__LEADERS__ORDERS__RETRY_EVERY", "5s")])
    ///     .load()?;
    /// let leadership = settings.leader("orders")?;
    /// assert_eq!(leadership.lease_ttl, Duration::from_secs(30));
    /// assert_eq!(leadership.retry_every, Duration::from_secs(5));
    /// # Ok::<(), loopjob::SettingsError>(())
    /// ```
    pub fn leader(&self, name: &str) -> Result<Leadership, SettingsError> {
        let path = format!("loopjob.leaders.{name}");
        leaders::read(&self.section(&path)).map_err(SettingsError::new)
    }

    /// The schedule and leadership a job runs on: its `[jobs.<section>]` applied over the
    /// values from its code, and checked, as [`HostBuilder::build`](crate::HostBuilder::build)
    /// does. Keys read through [`Settings::options`] count as known; others are unknown.
    ///
    /// ```
    /// use std::time::Duration;
    /// use loopjob::{Leadership, Schedule, Settings};
    ///
    /// let settings = Settings::loader()
    ///     .toml("app.toml", "[jobs.cleanup]\ninterval = \"1m\"\nleader = \"cluster\"\n")
    ///     .env_vars([("LOOPJOB__JOBS__CLEANUP__INTERVAL", "30s")])
    ///     .load()?;
    /// let code = Schedule::every(Duration::from_secs(3600));
    /// let job = settings.job("cleanup", &code, &Leadership::default())?;
    /// assert_eq!(job.schedule.interval(), Some(Duration::from_secs(30)));
    /// assert_eq!(job.leadership.mode, loopjob::LeaderMode::Cluster);
    /// # Ok::<(), loopjob::SettingsError>(())
    /// ```
    pub fn job(
        &self,
        section: &str,
        schedule: &Schedule,
        leadership: &Leadership,
    ) -> Result<JobSettings, SettingsError> {
        let path = format!("jobs.{section}");
        resolve(
            &self.section(&path),
            schedule,
            leadership,
            self.claimed_keys(section),
        )
        .map_err(SettingsError::new)
    }

    /// The section at a dotted path (`jobs.cleanup`); absent if no source gives it as a table.
    pub(crate) fn section<'a>(&'a self, path: &'a str) -> Section<'a> {
        let mut table = Some(&self.table);
        for part in path.split('.') {
            table = table.and_then(|t| match &t.get(part)?.kind {
                ValueKind::Table(inner) => Some(inner),
                _ => None,
            });
        }
        Section::new(path, table, &self.origins)
    }

    /// The option keys claimed for a job section through [`Settings::options`].
    pub(crate) fn claimed_keys(&self, section: &str) -> OptionKeys {
        self.claimed
            .lock()
            .ok()
            .and_then(|claimed| claimed.get(section).copied())
            .unwrap_or(OptionKeys::NONE)
    }

    /// The names of the `[jobs.*]` sections, sorted.
    pub(crate) fn job_sections(&self) -> Vec<&str> {
        self.section("jobs").keys()
    }

    /// Checks the layout: only `[loopjob]` and `[jobs]` at the top, and tables where sections go.
    pub(crate) fn layout_problems(&self, problems: &mut Vec<SettingsProblem>) {
        let mut top: Vec<(&String, &Value)> = self.table.iter().collect();
        top.sort_by(|a, b| a.0.cmp(b.0));
        for (key, value) in top {
            let origin = self.origins.of(key);
            if !matches!(key.as_str(), "loopjob" | "jobs") {
                let message = unknown_key_message(key, ["loopjob", "jobs"]);
                problems.push(SettingsProblem::new(origin, "", key.as_str(), message));
            } else if !matches!(value.kind, ValueKind::Table(_)) {
                let message = format!(
                    "expected a table ([{key}]), found {}",
                    value::describe(value)
                );
                problems.push(SettingsProblem::new(origin, "", key.as_str(), message));
            }
        }
        let jobs = self.section("jobs");
        for name in jobs.keys() {
            if let Some(value) = jobs
                .get(name)
                .filter(|v| !matches!(v.kind, ValueKind::Table(_)))
            {
                let shown = error::shorten(name);
                let message = format!(
                    "expected a table of settings for job `{shown}` ([jobs.{shown}]), found {}",
                    value::describe(value)
                );
                problems.push(SettingsProblem::new(
                    jobs.origin(name),
                    "jobs",
                    name,
                    message,
                ));
            }
        }
    }
}

/// Loads settings from several sources, later over earlier; see [`Settings::loader`].
#[derive(Debug)]
#[must_use = "a loader does nothing until `load` is called"]
pub struct SettingsLoader {
    sources: Vec<SourceSpec>,
}

enum SourceSpec {
    File(PathBuf),
    Toml { name: String, text: String },
    ProcessEnv,
    Env(Vec<(OsString, OsString)>),
}

impl std::fmt::Debug for SourceSpec {
    /// Names each source without its text or values: they may hold a store URL's password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceSpec::File(path) => f.debug_tuple("File").field(path).finish(),
            SourceSpec::Toml { name, text } => f
                .debug_struct("Toml")
                .field("name", name)
                .field("bytes", &text.len())
                .finish_non_exhaustive(),
            SourceSpec::ProcessEnv => f.write_str("ProcessEnv"),
            SourceSpec::Env(vars) => f
                .debug_list()
                .entries(vars.iter().map(|(name, _)| name))
                .finish(),
        }
    }
}

impl SettingsLoader {
    /// Adds a TOML file; a missing or unreadable file is an error at [`SettingsLoader::load`].
    pub fn file(mut self, path: impl AsRef<Path>) -> Self {
        self.sources
            .push(SourceSpec::File(path.as_ref().to_owned()));
        self
    }

    /// Adds TOML text; `name` stands for the file name in messages.
    pub fn toml(mut self, name: impl Into<String>, text: impl Into<String>) -> Self {
        self.sources.push(SourceSpec::Toml {
            name: name.into(),
            text: text.into(),
        });
        self
    }

    /// Adds the process environment's `LOOPJOB__…` variables, as they are at load time.
    pub fn env(mut self) -> Self {
        self.sources.push(SourceSpec::ProcessEnv);
        self
    }

    /// Adds variables as if they were the environment (for tests and for tools that hold the
    /// environment elsewhere); only the names starting `LOOPJOB__` are read.
    pub fn env_vars<K, V>(mut self, vars: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<OsString>,
        V: Into<OsString>,
    {
        let vars = vars
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        self.sources.push(SourceSpec::Env(vars));
        self
    }

    /// Reads every source and merges them; fails, with every problem, if any source cannot be
    /// read or parsed.
    pub fn load(self) -> Result<Settings, SettingsError> {
        let mut layers = Vec::new();
        let mut problems = Vec::new();
        let mut warnings = Vec::new();
        for source in self.sources {
            let layer = match source {
                SourceSpec::File(path) => match std::fs::read_to_string(&path) {
                    Ok(text) => source::toml_layer(&path, &text),
                    Err(error) => Err(vec![SettingsProblem::new(
                        Origin::File {
                            path: path.clone(),
                            line: None,
                        },
                        "",
                        "",
                        format!("cannot read the settings file: {error}"),
                    )]),
                },
                SourceSpec::Toml { name, text } => source::toml_layer(Path::new(&name), &text),
                SourceSpec::ProcessEnv => {
                    let vars: Vec<_> = std::env::vars_os().collect();
                    warnings.extend(source::env_near_misses(vars.iter().map(|(name, _)| name)));
                    source::env_layer(vars)
                }
                SourceSpec::Env(vars) => {
                    warnings.extend(source::env_near_misses(vars.iter().map(|(name, _)| name)));
                    source::env_layer(vars)
                }
            };
            match layer {
                Ok(layer) => layers.push(layer),
                Err(found) => problems.extend(found),
            }
        }
        if !problems.is_empty() {
            return Err(SettingsError::new(problems));
        }
        let (table, origins) = merge(layers)?;
        for warning in &warnings {
            tracing::warn!(origin = %warning.origin, "{}", warning.message);
        }
        Ok(Settings {
            table,
            origins,
            warnings,
            claimed: Mutex::default(),
        })
    }
}

fn merge(layers: Vec<Layer>) -> Result<(Table, Origins), SettingsError> {
    source::merge(layers).map_err(|error| {
        SettingsError::new(vec![SettingsProblem::new(
            Origin::Code,
            "",
            "",
            format!("cannot merge the settings: {error}"),
        )])
    })
}
