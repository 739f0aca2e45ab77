//! The host's own section, `[loopjob]`: node, group, store URL, shutdown grace, and the
//! sections of standalone electors, `[loopjob.leaders.<name>]` (the admin endpoint's,
//! `[loopjob.admin]`, is read in `admin.rs`).

use std::time::Duration;

use config::Value;

use super::error::{self, SettingsProblem, unknown_key_message};
use super::{Settings, leaders, value};
use crate::limits::{self, MAX_GRACE};

/// The keys of the `[loopjob]` section (`leaders` holds a table per standalone elector).
pub const HOST_KEYS: [&str; 9] = [
    "node_id",
    "group",
    "node_id_env",
    "group_env",
    "store",
    "shutdown_grace",
    "max_parallel_runs",
    "leaders",
    "admin",
];

/// The host's own section, `[loopjob]`: what it gives, each `None` when no source does. Its
/// `Debug` shows the store URL without its password.
#[derive(Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HostSettings {
    /// This node's id (default: `$HOSTNAME`, else host name and process id).
    pub node_id: Option<String>,
    /// This node's group (default: `$CLUSTER_NAME`, else `"default"`).
    pub group: Option<String>,
    /// The lease store: `memory`, or a URL starting `sqlite:`, `postgres://`, `postgresql://`,
    /// `mysql://`, `mariadb://`, `redis://` or `rediss://`.
    pub store: Option<String>,
    /// How long shutdown waits for in-flight runs.
    pub shutdown_grace: Option<Duration>,
    /// The most runs in flight at once, over every job of the host (see
    /// [`HostBuilder::max_parallel_runs`](crate::HostBuilder::max_parallel_runs)).
    pub max_parallel_runs: Option<u32>,
    /// The environment variable that holds this node's id, instead of `HOSTNAME`.
    pub node_id_env: Option<String>,
    /// The environment variable that holds this node's group, instead of `CLUSTER_NAME`.
    pub group_env: Option<String>,
}

impl std::fmt::Debug for HostSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostSettings")
            .field("node_id", &self.node_id)
            .field("group", &self.group)
            .field("store", &self.store.as_deref().map(crate::store::redact))
            .field("shutdown_grace", &self.shutdown_grace)
            .field("max_parallel_runs", &self.max_parallel_runs)
            .field("node_id_env", &self.node_id_env)
            .field("group_env", &self.group_env)
            .finish()
    }
}

/// The store URL forms `store` accepts.
const STORE_FORMS: [&str; 8] = [
    "memory",
    "sqlite:",
    "postgres://",
    "postgresql://",
    "mysql://",
    "mariadb://",
    "redis://",
    "rediss://",
];

impl Settings {
    /// The `[loopjob]` section; each bad value is a problem and reads as unset.
    pub(crate) fn host_checked(&self, problems: &mut Vec<SettingsProblem>) -> HostSettings {
        let section = self.section("loopjob");
        let mut host = HostSettings::default();
        for key in section.keys() {
            let Some(value) = section.get(key) else {
                continue;
            };
            let result = match key {
                "node_id" => value::text(value).map(|v| host.node_id = Some(v)),
                "group" => value::text(value).map(|v| host.group = Some(v)),
                "store" => store(value).map(|v| host.store = Some(v)),
                // Read by `admin_checked`, with its own problems.
                "admin" => Ok(()),
                "leaders" => {
                    self.leader_sections(problems);
                    Ok(())
                }
                "shutdown_grace" => value::duration(value)
                    .and_then(|grace| {
                        match limits::at_most("shutdown_grace", grace, MAX_GRACE, "MAX_GRACE") {
                            Some(problem) => Err(problem.message),
                            None => Ok(grace),
                        }
                    })
                    .map(|v| host.shutdown_grace = Some(v)),
                "max_parallel_runs" => value::count(value)
                    .and_then(|v| match v {
                        0 => Err("must be at least 1, e.g. 8; leave it unset for no limit".into()),
                        v => Ok(v),
                    })
                    .map(|v| host.max_parallel_runs = Some(v)),
                "node_id_env" => value::text(value).map(|v| host.node_id_env = Some(v)),
                "group_env" => value::text(value).map(|v| host.group_env = Some(v)),
                _ => Err(unknown_key_message(key, HOST_KEYS)),
            };
            if let Err(message) = result {
                problems.push(SettingsProblem::new(
                    section.origin(key),
                    "loopjob",
                    key,
                    message,
                ));
            }
        }
        host
    }
}

impl Settings {
    /// Checks every `[loopjob.leaders.<name>]` section, so that its problems come out with the
    /// host's, before any elector starts.
    fn leader_sections(&self, problems: &mut Vec<SettingsProblem>) {
        let leaders = self.section("loopjob.leaders");
        if !leaders.exists() {
            let origin = self.section("loopjob").origin("leaders");
            let message = "expected a table of leader sections, such as \
                           [loopjob.leaders.orders] with lease_ttl = \"15s\""
                .to_owned();
            problems.push(SettingsProblem::new(origin, "loopjob", "leaders", message));
            return;
        }
        for name in leaders.keys() {
            let path = format!("loopjob.leaders.{name}");
            let section = self.section(&path);
            if section.exists() {
                problems.extend(leaders::read(&section).err().into_iter().flatten());
            } else {
                let message = format!(
                    "expected a table ([loopjob.leaders.{}]) of lease_ttl, renew_every, \
                     retry_every and priority",
                    error::shorten(name)
                );
                problems.push(SettingsProblem::new(
                    leaders.origin(name),
                    "loopjob.leaders",
                    name,
                    message,
                ));
            }
        }
    }
}

fn store(value: &Value) -> Result<String, String> {
    let url = value::text(value)?;
    if STORE_FORMS.iter().any(|form| url.starts_with(form)) {
        Ok(url)
    } else {
        // The URL may hold a password: show it redacted.
        Err(format!(
            "expected \"memory\" or a URL starting with sqlite:, postgres://, postgresql://, \
             mysql://, mariadb://, redis:// or rediss://, found {}",
            value::quote(&crate::store::redact(&url))
        ))
    }
}
