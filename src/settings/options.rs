//! A job's own options: read from its section (the keys that are not schedule or leadership
//! keys) into the job's `Deserialize + Validate` type, with every problem located.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeOwned, Visitor};
use validator::{Validate, ValidationErrors, ValidationErrorsKind};

use super::collect::{self, ReadError, ReadErrorKind};
use super::error::{SettingsProblem, unknown_key_message};
use super::job::{LEADERSHIP_KEYS, SCHEDULE_KEYS};
use super::section::Section;

/// The top-level keys an options type reads.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionKeys {
    /// Exactly these keys.
    Fields(&'static [&'static str]),
    /// Any key (a map, or a struct with `#[serde(flatten)]`): no key is unknown.
    Any,
}

impl OptionKeys {
    pub(crate) const NONE: OptionKeys = OptionKeys::Fields(&[]);
}

/// How a job's options are read: [`Typed`] for a `Deserialize + Validate` type, [`NoOptions`]
/// for a job without options. The derive macro picks one.
#[doc(hidden)]
pub trait OptionsSpec {
    /// The options value.
    type Output: Send + Sync + 'static;
    /// The keys the options read.
    fn keys() -> OptionKeys;
    /// Reads and validates the options from a section (absent: from an empty table).
    fn read(section: &Section<'_>) -> Result<Self::Output, Vec<SettingsProblem>>;
}

/// Options of type `O`, read with serde and checked with `validator`.
#[doc(hidden)]
pub struct Typed<O>(std::marker::PhantomData<O>);

/// No options: the section holds only schedule and leadership keys.
#[doc(hidden)]
pub struct NoOptions;

impl OptionsSpec for NoOptions {
    type Output = ();

    fn keys() -> OptionKeys {
        OptionKeys::NONE
    }

    fn read(_: &Section<'_>) -> Result<(), Vec<SettingsProblem>> {
        Ok(())
    }
}

impl<O> OptionsSpec for Typed<O>
where
    O: DeserializeOwned + Validate + Send + Sync + 'static,
{
    type Output = O;

    fn keys() -> OptionKeys {
        let keys = Cell::new(OptionKeys::Any);
        // The probe records what the type asks for and then stops it; the result is unused.
        let _ = O::deserialize(Probe(&keys));
        keys.get()
    }

    fn read(section: &Section<'_>) -> Result<O, Vec<SettingsProblem>> {
        let (options, mut attempts) = collect::read_all::<O>(section.option_table());
        let mut problems: Vec<SettingsProblem> = std::mem::take(&mut attempts.problems)
            .into_iter()
            .map(|error| located(section, error, Self::keys()))
            .collect();
        if let Some(options) = options {
            if let Err(errors) = options.validate() {
                let mut found = Vec::new();
                flatten(section, &errors, "", &mut found);
                // A check on a key already reported (or on its placeholder) says nothing new.
                found.retain(|problem| !attempts.covers(&problem.key));
                problems.extend(found);
            }
            if problems.is_empty() {
                return Ok(options);
            }
        }
        Err(problems)
    }
}

/// A problem from reading options, at the key it names.
fn located(section: &Section<'_>, error: ReadError, keys: OptionKeys) -> SettingsProblem {
    let key = error.key;
    let message = match error.kind {
        ReadErrorKind::Missing if section.exists() => format!(
            "missing: the job's options need `{key}`; add it to [{}]",
            section.path()
        ),
        ReadErrorKind::Missing => format!(
            "missing: the job's options need `{key}` and its code gives no default; add a \
             [{}] section with it",
            section.path()
        ),
        // At the top, the same message as the host's check of the section's keys, so that the
        // two agree; in a nested table, a suggestion among the keys it reads.
        ReadErrorKind::Unknown(expected) => match key.rsplit_once('.') {
            None => {
                let fields = match keys {
                    OptionKeys::Fields(fields) => fields,
                    OptionKeys::Any => &[],
                };
                let known = SCHEDULE_KEYS
                    .iter()
                    .chain(&LEADERSHIP_KEYS)
                    .chain(fields)
                    .copied();
                unknown_key_message(&key, known)
            }
            Some((_, name)) => unknown_key_message(name, expected.iter().copied()),
        },
        ReadErrorKind::Other(message) => message,
    };
    SettingsProblem::new(section.origin(&key), section.path(), key, message)
}

/// Every validation failure, with the dotted path of its key (`retry.max`, `hosts[2].port`).
fn flatten(
    section: &Section<'_>,
    errors: &ValidationErrors,
    prefix: &str,
    problems: &mut Vec<SettingsProblem>,
) {
    let mut fields: Vec<_> = errors.errors().iter().collect();
    fields.sort_by(|a, b| a.0.cmp(b.0));
    for (field, kind) in fields {
        let key = super::source::join(prefix, field);
        match kind {
            ValidationErrorsKind::Field(failures) => {
                for failure in failures {
                    let found = failure
                        .params
                        .get("value")
                        .map(|value| format!(", found {value}"))
                        .unwrap_or_default();
                    let expected = match &failure.message {
                        Some(message) => message.to_string(),
                        None => {
                            let mut params: Vec<_> = failure
                                .params
                                .iter()
                                .filter(|(name, _)| *name != "value")
                                .map(|(name, value)| format!("{name} = {value}"))
                                .collect();
                            params.sort();
                            let params = if params.is_empty() {
                                String::new()
                            } else {
                                format!(" ({})", params.join(", "))
                            };
                            format!("expected to pass the `{}` check{params}", failure.code)
                        }
                    };
                    let origin = section.origin(&key);
                    problems.push(SettingsProblem::new(
                        origin,
                        section.path(),
                        key.clone(),
                        format!("{expected}{found}"),
                    ));
                }
            }
            ValidationErrorsKind::Struct(inner) => flatten(section, inner, &key, problems),
            ValidationErrorsKind::List(items) => {
                for (index, inner) in items {
                    flatten(section, inner, &format!("{key}[{index}]"), problems);
                }
            }
        }
    }
}

/// A deserializer that answers no data and records which keys a type asks for.
struct Probe<'a>(&'a Cell<OptionKeys>);

#[derive(Debug)]
struct Stop;

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("probe")
    }
}

impl std::error::Error for Stop {}

impl de::Error for Stop {
    fn custom<T: fmt::Display>(_: T) -> Self {
        Stop
    }
}

impl<'de> de::Deserializer<'de> for Probe<'_> {
    type Error = Stop;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
        Err(Stop)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Stop> {
        self.0.set(OptionKeys::Fields(fields));
        Err(Stop)
    }

    fn deserialize_unit<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
        self.0.set(OptionKeys::NONE);
        Err(Stop)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}
