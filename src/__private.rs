//! Support for the code that `#[derive(LoopJob)]` generates. Not a public API: nothing here
//! is covered by semver.

use std::any::type_name;
use std::panic::Location;
use std::sync::Arc;

pub use inventory;

mod checks;
pub use checks::*;

use crate::host::Registration;
use crate::job::{Erased, ErasedJob, LoopJob, Resources};
use crate::schedule::Schedule;
use crate::settings::{Leadership, Settings, SettingsProblem};
pub use crate::settings::{NoOptions, OptionsSpec, Section, Typed};

/// What the derive knows about a job type beyond [`LoopJob`]: its section, its defaults, and
/// how to build it from options and resources.
pub trait Discover: LoopJob + Sized {
    /// The job's own options: the typed fields of its settings section besides the schedule
    /// keys (`()` for a job without any).
    type Options: Send + Sync + 'static;
    /// How the options are read (an [`OptionsSpec`], picked by the derive's checks).
    fn options_reader() -> OptionsReader<Self::Options>;
    /// The job's name.
    const NAME: &'static str;
    /// The job's section under `[jobs]`.
    const SECTION: &'static str;
    /// The schedule from the attribute.
    fn default_schedule() -> Schedule;
    /// The leadership from the attribute.
    fn default_leadership() -> Leadership;
    /// Builds the job: options into the options field, `Arc<T>` fields from resources, the
    /// rest from `Default`.
    fn build(options: Self::Options, resources: &Resources) -> Result<Self, MissingResources>;
}

/// The resources a job needs that the builder does not have.
#[derive(Debug, Default)]
pub struct MissingResources(Vec<(&'static str, &'static str)>);

impl MissingResources {
    /// The resource of type `T` for `field`, noting it if it is missing.
    pub fn take<T: Send + Sync + 'static>(
        &mut self,
        resources: &Resources,
        field: &'static str,
    ) -> Option<Arc<T>> {
        let found = resources.get::<T>();
        if found.is_none() {
            self.0.push((field, type_name::<T>()));
        }
        found
    }

    fn problems(self, section: &str) -> Vec<SettingsProblem> {
        self.0
            .into_iter()
            .map(|(field, type_name)| {
                let message = format!(
                    "the job's field `{field}` needs a `{type_name}` resource and none is \
                     registered: add one with `HostBuilder::resource`"
                );
                SettingsProblem::new(
                    crate::settings::Origin::Code,
                    format!("jobs.{section}"),
                    field,
                    message,
                )
            })
            .collect()
    }
}

/// A job type registered for discovery with `#[loopjob(discover)]`.
pub struct Discovered {
    name: &'static str,
    section: &'static str,
    register: fn(
        &Settings,
        &Resources,
        &'static Location<'static>,
    ) -> Result<Registration, Vec<SettingsProblem>>,
}

inventory::collect!(Discovered);

impl Discovered {
    /// The entry for `J`.
    pub const fn of<J: Discover>() -> Self {
        Discovered {
            name: J::NAME,
            section: J::SECTION,
            register: register::<J>,
        }
    }

    /// The job's name.
    pub(crate) fn name(&self) -> &'static str {
        self.name
    }

    /// The job's section under `[jobs]`.
    pub(crate) fn section(&self) -> &'static str {
        self.section
    }

    /// Every discovered job in the program, by name.
    pub(crate) fn all() -> Vec<&'static Discovered> {
        let mut all: Vec<_> = inventory::iter::<Discovered>.into_iter().collect();
        all.sort_by_key(|discovered| discovered.name);
        all
    }

    /// Builds the job from its section and the resources, as a registration.
    pub(crate) fn register(
        &self,
        settings: &Settings,
        resources: &Resources,
        at: &'static Location<'static>,
    ) -> Result<Registration, Vec<SettingsProblem>> {
        (self.register)(settings, resources, at)
    }
}

fn register<J: Discover>(
    settings: &Settings,
    resources: &Resources,
    at: &'static Location<'static>,
) -> Result<Registration, Vec<SettingsProblem>> {
    let path = format!("jobs.{}", J::SECTION);
    let section = settings.section(&path);
    let reader = J::options_reader();
    let job = (reader.read)(&section).and_then(|options| {
        J::build(options, resources).map_err(|missing| missing.problems(J::SECTION))
    });
    // The schedule keys are checked even when the job cannot be built: all problems at once.
    let resolved = crate::settings::resolve(
        &section,
        &J::default_schedule(),
        &J::default_leadership(),
        (reader.keys)(),
    );
    match (job, resolved) {
        (Ok(job), Ok(resolved)) => {
            let job: Arc<dyn ErasedJob> = Arc::new(Erased(job));
            Ok(Registration {
                name: Arc::from(J::NAME),
                section: Arc::from(J::SECTION),
                schedule: resolved.schedule,
                leadership: resolved.leadership,
                job,
                registered_at: at,
            })
        }
        (job, resolved) => {
            let mut problems: Vec<SettingsProblem> = Vec::new();
            // An unknown key is found by both the options and the section's check: once.
            for problem in job.err().into_iter().chain(resolved.err()).flatten() {
                if !problems.contains(&problem) {
                    problems.push(problem);
                }
            }
            Err(problems)
        }
    }
}
