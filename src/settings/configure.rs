//! Settings meet the builder: the host's section, discovered jobs, and each registered job's
//! section, checked together so that [`HostBuilder::build`](crate::HostBuilder::build) reports
//! every problem at once.

use std::collections::BTreeSet;
use std::panic::Location;
use std::sync::Arc;
use std::time::Duration;

use super::error::{Origin, SettingsProblem, SettingsWarning};
use super::{Settings, resolve};
use crate::__private::Discovered;
use crate::host::Registration;
use crate::identity::{DEFAULT_GROUP_ENV, DEFAULT_NODE_ID_ENV, NodeIdentity};
use crate::job::Resources;
use crate::store::LeaseStore;

/// What the builder holds that settings change.
pub(crate) struct Builder<'a> {
    pub(crate) registrations: &'a mut Vec<Registration>,
    pub(crate) resources: &'a Resources,
    pub(crate) node: &'a mut Option<NodeIdentity>,
    pub(crate) shutdown_grace: &'a mut Duration,
    pub(crate) max_parallel_runs: &'a mut Option<usize>,
    pub(crate) store: &'a mut Option<Arc<dyn LeaseStore>>,
    /// The admin endpoint's options: settings fill them when code gave none.
    #[cfg(feature = "admin")]
    pub(crate) admin: &'a mut Option<crate::admin::AdminOptions>,
}

/// Applies `settings` to the builder and adds the discovered jobs (when `discover_at` says
/// where [`HostBuilder::discover`](crate::HostBuilder::discover) was called). Returns the
/// warnings, or every problem.
pub(crate) fn configure(
    settings: Option<Settings>,
    discover_at: Option<&'static Location<'static>>,
    builder: Builder<'_>,
) -> Result<Vec<SettingsWarning>, Vec<SettingsProblem>> {
    if settings.is_none() && discover_at.is_none() {
        return Ok(Vec::new());
    }
    let settings = settings.unwrap_or_default();
    let settings = &settings;
    let mut problems = Vec::new();
    settings.layout_problems(&mut problems);

    let host = settings.host_checked(&mut problems);
    let named_elsewhere = host.node_id_env.is_some() || host.group_env.is_some();
    if host.node_id.is_some() || host.group.is_some() || named_elsewhere {
        let base = builder.node.take().unwrap_or_else(|| {
            NodeIdentity::from_env_vars(
                host.node_id_env.as_deref().unwrap_or(DEFAULT_NODE_ID_ENV),
                host.group_env.as_deref().unwrap_or(DEFAULT_GROUP_ENV),
            )
        });
        *builder.node = Some(NodeIdentity::new(
            host.node_id.unwrap_or_else(|| base.node_id().to_owned()),
            host.group.unwrap_or_else(|| base.group().to_owned()),
        ));
    }
    if let Some(grace) = host.shutdown_grace {
        *builder.shutdown_grace = grace;
    }
    if let Some(limit) = host.max_parallel_runs {
        *builder.max_parallel_runs = Some(limit as usize);
    }
    // A store handed to the builder is used as it is; the URL serves when there is none.
    if let (Some(url), None) = (&host.store, &builder.store) {
        match crate::store::open(url) {
            Ok(store) => *builder.store = Some(store),
            Err(error) => problems.push(SettingsProblem::new(
                settings.section("loopjob").origin("store"),
                "loopjob",
                "store",
                format!("cannot open the store: {error}"),
            )),
        }
    }

    let admin = settings.admin_checked(&mut problems);
    #[cfg(feature = "admin")]
    if builder.admin.is_none() {
        *builder.admin = admin;
    }
    #[cfg(not(feature = "admin"))]
    let _ = admin;

    let mut used_sections = BTreeSet::new();
    for registration in builder.registrations.iter_mut() {
        let path = format!("jobs.{}", registration.section);
        let keys = settings.claimed_keys(&registration.section);
        match resolve(
            &settings.section(&path),
            &registration.schedule,
            &registration.leadership,
            keys,
        ) {
            Ok(resolved) => {
                registration.schedule = resolved.schedule;
                registration.leadership = resolved.leadership;
            }
            Err(found) => problems.extend(found),
        }
        used_sections.insert(registration.section.to_string());
    }

    if let Some(discover_at) = discover_at {
        for discovered in Discovered::all() {
            if builder
                .registrations
                .iter()
                .any(|r| &*r.name == discovered.name())
            {
                tracing::debug!(
                    job = discovered.name(),
                    "registered explicitly; not discovered again"
                );
                continue;
            }
            used_sections.insert(discovered.section().to_owned());
            match discovered.register(settings, builder.resources, discover_at) {
                Ok(registration) => builder.registrations.push(registration),
                Err(found) => problems.extend(found),
            }
        }
    }

    let mut warnings = settings.warnings().to_vec();
    warnings.extend(unused_sections(settings, &used_sections));
    if problems.is_empty() {
        Ok(warnings)
    } else {
        problems.sort_by_key(|problem| order(&problem.origin));
        Err(problems)
    }
}

/// A section for a job that is not registered: probably a typo in the job's name, or a job
/// that was removed. Not an error, so one config can serve services that run different jobs.
/// Each variable that sets a key in it is named in a warning of its own; the section in a
/// file, at its line.
fn unused_sections(settings: &Settings, used: &BTreeSet<String>) -> Vec<SettingsWarning> {
    let mut warnings = Vec::new();
    for name in settings.job_sections() {
        if used.contains(name) {
            continue;
        }
        let section = format!("jobs.{name}");
        let hint = super::error::did_you_mean(name, used.iter().map(String::as_str))
            .map(|job| format!("; did you mean `{job}`?"))
            .unwrap_or_default();
        let message = format!("no registered job reads this section{hint}");
        let vars = settings.env_vars_under(&section);
        let mut origins: Vec<Origin> = vars
            .iter()
            .map(|var| Origin::Env {
                var: (*var).to_owned(),
            })
            .collect();
        let in_file = settings.section(&section).origin_of_section();
        if matches!(in_file, Origin::File { .. }) {
            origins.insert(0, in_file);
        }
        for origin in origins {
            let warning = SettingsWarning {
                origin,
                message: message.clone(),
                section: section.clone(),
            };
            tracing::warn!(origin = %warning.origin, section = %warning.section, "{}", warning.message);
            warnings.push(warning);
        }
    }
    warnings
}

/// Problems in source order: files (by path, then line), then the environment, then code.
fn order(origin: &Origin) -> (u8, String, usize) {
    match origin {
        Origin::File { path, line } => (0, path.display().to_string(), line.unwrap_or(0)),
        Origin::Env { var } => (1, var.clone(), 0),
        Origin::Code => (2, String::new(), 0),
    }
}
