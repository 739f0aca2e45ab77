//! Reading a job's options so that every problem comes out at once, each at its own key.
//!
//! serde stops at the first problem: a value of the wrong type hides every other, and of
//! several missing fields only the first is named. So the options are read again after each
//! problem, with the key at fault taken out of the table (a value of the wrong type, an
//! unknown key) or given a placeholder (a missing field), until they read; then `validator`
//! checks them, and its problems on keys that were not already reported are added.
//!
//! The placeholder is a deserializer that answers whatever type asks with its smallest value
//! (`0`, `""`, `false`, no items, `"0s"` for a duration); it is never used beyond this check.
//!
//! Nested tables (`[jobs.x.retry]`) are read the same way, each key at its dotted path
//! (`retry.max`); a value inside an array is taken out with its whole array.

use std::collections::BTreeSet;
use std::fmt;

use config::{ConfigError, Map, Value, ValueKind};
use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, MapAccess, Visitor};

/// Why reading failed, and at which key (a dotted path within the section).
#[derive(Debug)]
pub(crate) struct ReadError {
    /// The dotted path of the key at fault; empty for the whole table.
    pub(crate) key: String,
    pub(crate) kind: ReadErrorKind,
    /// Whether `key` is the whole path yet, or still relative to the table being read.
    located: bool,
}

#[derive(Debug)]
pub(crate) enum ReadErrorKind {
    /// A field the type needs is not given.
    Missing,
    /// A key the type does not read (`#[serde(deny_unknown_fields)]`), and those it reads.
    Unknown(&'static [&'static str]),
    /// Anything else: what was expected and what was found.
    Other(String),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ReadErrorKind::Missing => write!(f, "missing field `{}`", self.key),
            ReadErrorKind::Unknown(_) => write!(f, "unknown field `{}`", self.key),
            ReadErrorKind::Other(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for ReadError {}

impl de::Error for ReadError {
    fn custom<T: fmt::Display>(message: T) -> Self {
        ReadError {
            key: String::new(),
            kind: ReadErrorKind::Other(message.to_string()),
            located: false,
        }
    }

    fn missing_field(field: &'static str) -> Self {
        ReadError {
            key: field.to_owned(),
            kind: ReadErrorKind::Missing,
            located: false,
        }
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        ReadError {
            key: field.to_owned(),
            kind: ReadErrorKind::Unknown(expected),
            located: false,
        }
    }
}

impl ReadError {
    /// A `config` error from reading the value at `key`, with the path it carries.
    fn from_config(key: &str, error: ConfigError) -> Self {
        let (inner_key, message) = flatten(error);
        let mut path = join(key, &inner_key);
        // serde names a missing or unknown field only in its message.
        let named = |prefix: &str| {
            message
                .strip_prefix(prefix)
                .and_then(|rest| rest.split('`').next())
                .map(str::to_owned)
        };
        let kind = if let Some(field) = named("missing field `") {
            path = join(&path, &field);
            ReadErrorKind::Missing
        } else {
            if let Some(field) = named("unknown field `") {
                // At the unknown key's own line; serde's message lists the known ones.
                path = join(&path, &field);
            }
            ReadErrorKind::Other(message)
        };
        ReadError {
            key: path,
            kind,
            located: true,
        }
    }

    /// The error with its key made whole, if it is still relative to the table at `prefix`.
    fn located_in(mut self, prefix: &str) -> Self {
        if !self.located {
            self.key = join(prefix, &self.key);
            self.located = true;
        }
        self
    }
}

/// `a.b`, or whichever of the two is not empty.
fn join(prefix: &str, key: &str) -> String {
    match (prefix.is_empty(), key.is_empty()) {
        (_, true) => prefix.to_owned(),
        (true, false) => key.to_owned(),
        (false, false) if key.starts_with('[') => format!("{prefix}{key}"),
        (false, false) => format!("{prefix}.{key}"),
    }
}

/// The key a `config` error carries (relative to the value read) and its message.
fn flatten(error: ConfigError) -> (String, String) {
    match error {
        ConfigError::Type {
            unexpected,
            expected,
            key,
            ..
        } => (
            key.unwrap_or_default(),
            format!("expected {expected}, found {unexpected}"),
        ),
        ConfigError::At { error, key, .. } => {
            let (inner, message) = flatten(*error);
            let key = key.unwrap_or_default();
            // `At` wraps an error whose own key is already part of `key`, or is empty.
            let key = if inner.is_empty() || key.ends_with(&inner) {
                key
            } else {
                join(&key, &inner)
            };
            (key, message)
        }
        ConfigError::NotFound(key) => (String::new(), format!("missing field `{key}`")),
        other => (String::new(), other.to_string()),
    }
}

/// What [`read_all`] found: every problem, and the keys it reported (so that a check on a
/// value taken out or on a placeholder is not reported as well).
pub(crate) struct Attempts {
    pub(crate) problems: Vec<ReadError>,
    /// Dotted paths taken out or given a placeholder.
    pub(crate) reported: BTreeSet<String>,
}

impl Attempts {
    /// Whether a problem at `key` is about something already reported.
    pub(crate) fn covers(&self, key: &str) -> bool {
        self.reported.iter().any(|path| {
            key.strip_prefix(path.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
        })
    }
}

/// Reads `table` into `O`, again after each problem, until it reads or no progress is made.
/// Returns the value read (from a table that may have had keys taken out or filled in) and
/// every problem on the way.
pub(crate) fn read_all<O: DeserializeOwned>(table: Map<String, Value>) -> (Option<O>, Attempts) {
    let mut table = table;
    let mut fill: BTreeSet<String> = BTreeSet::new();
    let mut attempts = Attempts {
        problems: Vec::new(),
        reported: BTreeSet::new(),
    };
    // Each round takes out or fills one key; a table with more problems than this (a file
    // gone wrong) is reported in part rather than read again thousands of times.
    const MOST_ROUNDS: usize = 100;
    for _ in 0..MOST_ROUNDS {
        let read = O::deserialize(Options {
            prefix: "",
            table: &table,
            fill: &fill,
        });
        let error = match read {
            Ok(options) => return (Some(options), attempts),
            Err(error) => error.located_in(""),
        };
        if error.key.is_empty() || fill.contains(&error.key) {
            // A problem with no key, or a placeholder that does not fit: nothing more to do.
            if error.key.is_empty() {
                attempts.problems.push(error);
            }
            break;
        }
        if matches!(error.kind, ReadErrorKind::Missing) {
            fill.insert(error.key.clone());
            // A key taken out for a wrong value then shows as missing: reported already.
            if attempts.reported.insert(error.key.clone()) {
                attempts.problems.push(error);
            }
            continue;
        }
        let Some(removed) = remove(&mut table, &error.key) else {
            attempts.problems.push(error);
            break;
        };
        attempts.reported.insert(removed);
        attempts.problems.push(error);
    }
    (None, attempts)
}

/// Takes the value at the dotted `path` out of `table` (a value inside an array: the whole
/// array); returns the path taken out, or `None` if there is nothing there.
fn remove(table: &mut Map<String, Value>, path: &str) -> Option<String> {
    let path = path.split('[').next().unwrap_or_default();
    let mut parts: Vec<&str> = path.split('.').collect();
    let last = parts.pop()?;
    let mut table = table;
    for part in parts {
        match &mut table.get_mut(part)?.kind {
            ValueKind::Table(inner) => table = inner,
            _ => return None,
        }
    }
    table.remove(last).map(|_| path.to_owned())
}

/// A table of options as a deserializer, with placeholders for the fields in `fill` (dotted
/// paths from the top) that belong to it.
struct Options<'a> {
    /// The table's dotted path; empty at the top.
    prefix: &'a str,
    table: &'a Map<String, Value>,
    fill: &'a BTreeSet<String>,
}

impl Options<'_> {
    /// The entries, in key order (so that problems come out in the same order every time),
    /// then the placeholders.
    fn entries(&self) -> Vec<(String, Entry)> {
        let mut entries: Vec<(String, Entry)> = self
            .table
            .iter()
            .map(|(key, value)| (key.clone(), Entry::Value(value.clone())))
            .collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let placeholders = self.fill.iter().filter_map(|path| {
            let name = match self.prefix {
                "" => path.as_str(),
                prefix => path.strip_prefix(prefix)?.strip_prefix('.')?,
            };
            (!name.contains('.')).then(|| (name.to_owned(), Entry::Placeholder))
        });
        entries.extend(placeholders);
        entries
    }
}

impl<'de> de::Deserializer<'de> for Options<'_> {
    type Error = ReadError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        let entries = Entries {
            prefix: self.prefix,
            entries: self.entries().into_iter(),
            fill: self.fill,
            next: None,
        };
        visitor
            .visit_map(entries)
            .map_err(|error| error.located_in(self.prefix))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, ReadError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ReadError> {
        // An enum written as a table (`[x.variant]`): as `config` reads it.
        Value::new(None, ValueKind::Table(self.table.clone()))
            .deserialize_enum(name, variants, visitor)
            .map_err(|error| ReadError::from_config(self.prefix, error))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

enum Entry {
    Value(Value),
    Placeholder,
}

struct Entries<'a> {
    prefix: &'a str,
    entries: std::vec::IntoIter<(String, Entry)>,
    fill: &'a BTreeSet<String>,
    next: Option<(String, Entry)>,
}

impl<'de> MapAccess<'de> for Entries<'_> {
    type Error = ReadError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, ReadError> {
        let Some((key, entry)) = self.entries.next() else {
            return Ok(None);
        };
        let read = seed.deserialize(key.as_str().into_deserializer());
        self.next = Some((key, entry));
        read.map(Some).map_err(|mut error: ReadError| {
            if let Some((key, _)) = &self.next {
                if error.key.is_empty() {
                    error.key = key.clone();
                }
            }
            error
        })
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, ReadError> {
        let Some((key, entry)) = self.next.take() else {
            return Err(de::Error::custom("a value without its key"));
        };
        let path = join(self.prefix, &key);
        match entry {
            Entry::Value(Value {
                kind: ValueKind::Table(table),
                ..
            }) => seed.deserialize(Options {
                prefix: &path,
                table: &table,
                fill: self.fill,
            }),
            Entry::Value(value) => seed
                .deserialize(value)
                .map_err(|error| ReadError::from_config(&path, error)),
            Entry::Placeholder => seed.deserialize(Placeholder).map_err(|error| ReadError {
                key: path,
                kind: ReadErrorKind::Other(error.to_string()),
                located: true,
            }),
        }
    }
}

/// `deserialize_*` methods of [`Placeholder`] that each answer with one visit.
macro_rules! placeholders {
    ($($($method:ident)+ => |$visitor:ident: V| $body:expr;)+) => {
        $($(
            fn $method<V: Visitor<'de>>(self, $visitor: V) -> Result<V::Value, ConfigError> {
                $body
            }
        )+)+
    };
}

/// Answers each type with its smallest value; see the module docs.
struct Placeholder;

impl<'de> de::Deserializer<'de> for Placeholder {
    type Error = ConfigError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
        // A duration read through `loopjob::settings::duration` asks for any value.
        visitor.visit_str("0s")
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
        visitor.visit_bool(false)
    }

    placeholders! {
        deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64 deserialize_i128
            => |visitor: V| visitor.visit_i64(0);
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_u128
            => |visitor: V| visitor.visit_u64(0);
        deserialize_f32 deserialize_f64 => |visitor: V| visitor.visit_f64(0.0);
        deserialize_char => |visitor: V| visitor.visit_char('0');
        deserialize_str deserialize_string deserialize_identifier
            => |visitor: V| visitor.visit_str("");
        deserialize_bytes deserialize_byte_buf => |visitor: V| visitor.visit_bytes(&[]);
        deserialize_unit deserialize_ignored_any => |visitor: V| visitor.visit_unit();
        deserialize_seq => |visitor: V| {
            Value::new(None, ValueKind::Array(Vec::new())).deserialize_seq(visitor)
        };
        deserialize_map => |visitor: V| {
            Value::new(None, ValueKind::Table(Map::new())).deserialize_map(visitor)
        };
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
        visitor.visit_none()
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, ConfigError> {
        visitor.visit_unit()
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ConfigError> {
        let fill: BTreeSet<String> = fields.iter().map(|field| (*field).to_owned()).collect();
        Options {
            prefix: "",
            table: &Map::new(),
            fill: &fill,
        }
        .deserialize_any(visitor)
        .map_err(|error| ConfigError::Message(error.to_string()))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, ConfigError> {
        visitor.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        tuple tuple_struct enum
    }
}
