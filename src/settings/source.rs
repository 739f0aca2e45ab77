//! Reading the sources: TOML files and strings (with the line of every key) and the
//! environment, each into a table of [`config::Value`]s, merged by the `config` crate in the
//! order given so that later sources override earlier ones key by key.
//!
//! The `config` crate keeps no line numbers, so each source also records the [`Origin`] of
//! every key it sets, by dotted path; the merged record answers "where did this value come
//! from" for any key of the merged tree.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::Path;

use config::{Map, Source, Value, ValueKind};
use toml::de::{DeTable, DeValue};

use super::error::{Origin, SettingsProblem, SettingsWarning};

/// A table of settings, as `config` holds one.
pub(crate) type Table = Map<String, Value>;

/// The prefix of every environment variable loopjob reads.
pub const ENV_PREFIX: &str = "LOOPJOB__";

/// Where every key of a tree came from, by dotted path (`jobs.cleanup.interval`).
#[derive(Debug, Clone, Default)]
pub(crate) struct Origins(HashMap<String, Origin>);

impl Origins {
    /// The origin of the key at `path`, if a source gives it.
    pub(crate) fn get(&self, path: &str) -> Option<&Origin> {
        self.0.get(path)
    }

    /// The origin of the key at `path`, or of its nearest enclosing table that a source gives.
    pub(crate) fn of(&self, path: &str) -> Origin {
        let mut path = path;
        loop {
            if let Some(origin) = self.0.get(path) {
                return origin.clone();
            }
            match path.rfind('.') {
                Some(dot) => path = &path[..dot],
                None => return Origin::Code,
            }
        }
    }

    fn set(&mut self, path: String, origin: Origin) {
        self.0.insert(path, origin);
    }

    fn extend(&mut self, other: Origins) {
        self.0.extend(other.0);
    }
}

impl Origins {
    /// The environment variables that set a key under `path` (`jobs.cleanup`), sorted.
    pub(crate) fn env_vars_under(&self, path: &str) -> Vec<&str> {
        let mut vars: Vec<&str> = self
            .0
            .iter()
            .filter(|(key, _)| {
                key.strip_prefix(path)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
            })
            .filter_map(|(_, origin)| match origin {
                Origin::Env { var } => Some(var.as_str()),
                _ => None,
            })
            .collect();
        vars.sort_unstable();
        vars.dedup();
        vars
    }
}

/// One source, read: its table and the origin of each of its keys.
#[derive(Debug, Clone)]
pub(crate) struct Layer {
    table: Table,
    origins: Origins,
}

impl Source for Layer {
    fn clone_into_box(&self) -> Box<dyn Source + Send + Sync> {
        Box::new(self.clone())
    }

    fn collect(&self) -> Result<Table, config::ConfigError> {
        Ok(self.table.clone())
    }
}

/// Merges `layers`, later over earlier.
pub(crate) fn merge(layers: Vec<Layer>) -> Result<(Table, Origins), config::ConfigError> {
    let mut builder = config::Config::builder();
    let mut origins = Origins::default();
    for layer in layers {
        origins.extend(layer.origins.clone());
        builder = builder.add_source(layer);
    }
    let table = builder.build()?.collect()?;
    Ok((table, origins))
}

/// Reads TOML `text`, loaded from `path` (or under that name), recording each key's line.
pub(crate) fn toml_layer(path: &Path, text: &str) -> Result<Layer, Vec<SettingsProblem>> {
    let lines = LineIndex::new(text);
    let (document, errors) = DeTable::parse_recoverable(text);
    if !errors.is_empty() {
        return Err(errors
            .iter()
            .map(|error| {
                let line = error.span().map(|span| lines.line(span.start));
                let origin = Origin::File {
                    path: path.to_owned(),
                    line,
                };
                let message = format!("invalid TOML: {}", error.message().trim_end());
                SettingsProblem::new(origin, "", "", message)
            })
            .collect());
    }
    let mut layer = Layer {
        table: Table::new(),
        origins: Origins::default(),
    };
    let mut reader = TomlReader {
        path,
        lines: &lines,
        origins: &mut layer.origins,
        problems: Vec::new(),
    };
    layer.table = reader.table(document.get_ref(), "");
    if reader.problems.is_empty() {
        Ok(layer)
    } else {
        Err(reader.problems)
    }
}

struct TomlReader<'a> {
    path: &'a Path,
    lines: &'a LineIndex,
    origins: &'a mut Origins,
    problems: Vec<SettingsProblem>,
}

impl TomlReader<'_> {
    fn origin(&self, offset: usize) -> Origin {
        Origin::File {
            path: self.path.to_owned(),
            line: Some(self.lines.line(offset)),
        }
    }

    fn table(&mut self, table: &DeTable<'_>, prefix: &str) -> Table {
        let mut out = Table::new();
        for (key, value) in table {
            let key_text = key.get_ref().to_string();
            let path = join(prefix, &key_text);
            let origin = self.origin(key.span().start);
            self.origins.set(path.clone(), origin.clone());
            let value = self.value(value.get_ref(), &path, origin);
            out.insert(key_text, value);
        }
        out
    }

    fn value(&mut self, value: &DeValue<'_>, path: &str, origin: Origin) -> Value {
        let kind = match value {
            DeValue::String(text) => ValueKind::String(text.to_string()),
            DeValue::Boolean(b) => ValueKind::Boolean(*b),
            DeValue::Datetime(datetime) => ValueKind::String(datetime.to_string()),
            DeValue::Integer(number) => {
                let digits = number.as_str();
                match i64::from_str_radix(digits, number.radix()) {
                    Ok(n) => ValueKind::I64(n),
                    Err(_) => match u64::from_str_radix(digits, number.radix()) {
                        Ok(n) => ValueKind::U64(n),
                        Err(_) => {
                            let (section, key) = split_key(path);
                            self.problems.push(SettingsProblem::new(
                                origin.clone(),
                                section,
                                key,
                                format!("expected a number that fits in 64 bits, found {number}"),
                            ));
                            ValueKind::Nil
                        }
                    },
                }
            }
            DeValue::Float(number) => {
                ValueKind::Float(number.as_str().replace('_', "").parse().unwrap_or(f64::NAN))
            }
            DeValue::Array(items) => ValueKind::Array(
                items
                    .iter()
                    .map(|item| self.value(item.get_ref(), path, origin.clone()))
                    .collect(),
            ),
            DeValue::Table(table) => ValueKind::Table(self.table(table, path)),
        };
        Value::new(Some(&origin.to_string()), kind)
    }
}

/// The variables that look like loopjob's but are never read, each with what to write: a
/// name in lower case (`loopjob__store`), or with single underscores where `__` separates the
/// parts (`LOOPJOB_JOBS_CLEANUP_INTERVAL`, `LOOPJOB_STORE`).
pub(crate) fn env_near_misses<'a>(
    vars: impl IntoIterator<Item = &'a OsString>,
) -> Vec<SettingsWarning> {
    let mut warnings: Vec<SettingsWarning> = vars
        .into_iter()
        .filter_map(|name| {
            let var = name.to_str()?;
            let upper = var.to_ascii_uppercase();
            let message = if upper.starts_with(ENV_PREFIX) {
                if var.starts_with(ENV_PREFIX) {
                    return None;
                }
                format!("this variable is not read: loopjob's names are in capitals; write {upper}")
            } else {
                let rest = upper.strip_prefix("LOOPJOB_")?;
                let host_key = super::HOST_KEYS
                    .iter()
                    .any(|key| key.eq_ignore_ascii_case(rest));
                if !rest.starts_with("JOBS_") && !host_key {
                    return None;
                }
                format!(
                    "this variable is not read: loopjob's names separate their parts with `__`, \
                     as in LOOPJOB__JOBS__<JOB>__<KEY> or LOOPJOB__{}",
                    if host_key { rest } else { "<KEY>" }
                )
            };
            Some(SettingsWarning {
                origin: Origin::Env {
                    var: var.to_owned(),
                },
                section: String::new(),
                message,
            })
        })
        .collect();
    warnings.sort_by_key(|warning| warning.origin.to_string());
    warnings
}

/// Reads the variables that start with [`ENV_PREFIX`]:
/// `LOOPJOB__JOBS__<JOB>__<KEY>` sets `[jobs.<job>] <key>`, and `LOOPJOB__<KEY>` sets
/// `[loopjob] <key>`. Further `__` separators reach into nested tables of a job's options.
/// Names are lower-cased; values are strings.
pub(crate) fn env_layer(
    vars: impl IntoIterator<Item = (OsString, OsString)>,
) -> Result<Layer, Vec<SettingsProblem>> {
    let mut vars: Vec<_> = vars
        .into_iter()
        .filter(|(name, _)| name.as_encoded_bytes().starts_with(ENV_PREFIX.as_bytes()))
        .collect();
    vars.sort();
    let mut layer = Layer {
        table: Table::new(),
        origins: Origins::default(),
    };
    let mut problems = Vec::new();
    for (name, value) in vars {
        let var = name.to_string_lossy().into_owned();
        let origin = Origin::Env { var: var.clone() };
        let problem = |message: &str| SettingsProblem::new(origin.clone(), "", "", message);
        let Some(path) = env_path(&var) else {
            problems.push(problem(
                "expected a name of the form LOOPJOB__<KEY> or LOOPJOB__JOBS__<JOB>__<KEY>, \
                 in capitals with `__` between the parts",
            ));
            continue;
        };
        let Ok(value) = value.into_string() else {
            problems.push(problem("expected a value in UTF-8, found other bytes"));
            continue;
        };
        let dotted = path.join(".");
        layer.origins.set(dotted, origin.clone());
        insert(
            &mut layer.table,
            &path,
            Value::new(Some(&origin.to_string()), value),
        );
    }
    if problems.is_empty() {
        Ok(layer)
    } else {
        Err(problems)
    }
}

/// The settings path a variable sets, or `None` if its name is malformed.
fn env_path(var: &str) -> Option<Vec<String>> {
    let rest = var.strip_prefix(ENV_PREFIX)?;
    let parts: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
    if parts.iter().any(String::is_empty) {
        return None;
    }
    match parts.first().map(String::as_str) {
        Some("jobs") if parts.len() >= 3 => Some(parts),
        Some("jobs") => None,
        _ => Some(std::iter::once("loopjob".to_owned()).chain(parts).collect()),
    }
}

/// Sets `path` in `table` to `value`, making (or replacing with) tables on the way.
fn insert(table: &mut Table, path: &[String], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut table = table;
    for part in parents {
        let entry = table
            .entry(part.clone())
            .or_insert_with(|| Value::new(None, Table::new()));
        if !matches!(entry.kind, ValueKind::Table(_)) {
            *entry = Value::new(None, Table::new());
        }
        let ValueKind::Table(inner) = &mut entry.kind else {
            return;
        };
        table = inner;
    }
    table.insert(last.clone(), value);
}

/// `prefix.key`, or `key` at the top.
pub(crate) fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

/// Splits a dotted path into its section and key: `jobs.x.retry.max` → (`jobs.x`, `retry.max`),
/// `loopjob.store` → (`loopjob`, `store`).
pub(crate) fn split_key(path: &str) -> (String, String) {
    let parts: Vec<&str> = path.splitn(3, '.').collect();
    match parts.as_slice() {
        ["jobs", job, key] => (format!("jobs.{job}"), (*key).to_owned()),
        [section, key] => ((*section).to_owned(), (*key).to_owned()),
        [section, job, key] => ((*section).to_owned(), format!("{job}.{key}")),
        _ => (String::new(), path.to_owned()),
    }
}

/// Byte offset → 1-based line.
struct LineIndex(Vec<usize>);

impl LineIndex {
    fn new(text: &str) -> Self {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(at, _)| at + 1))
            .collect();
        LineIndex(starts)
    }

    fn line(&self, offset: usize) -> usize {
        self.0.partition_point(|&start| start <= offset).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_counted_from_one() {
        let index = LineIndex::new("a = 1\nb = 2\n\nc = 3");
        assert_eq!(index.line(0), 1);
        assert_eq!(index.line(6), 2);
        assert_eq!(index.line(13), 4);
    }

    #[test]
    fn env_names_map_to_sections() {
        let path = |var: &str| env_path(var).map(|parts| parts.join("."));
        assert_eq!(
            path("LOOPJOB__JOBS__PC_KEEP_ALIVE__INTERVAL").as_deref(),
            Some("jobs.pc_keep_alive.interval")
        );
        assert_eq!(
            path("LOOPJOB__JOBS__X__RETRY__MAX").as_deref(),
            Some("jobs.x.retry.max")
        );
        assert_eq!(path("LOOPJOB__STORE").as_deref(), Some("loopjob.store"));
        assert_eq!(path("LOOPJOB__JOBS__X"), None);
        assert_eq!(path("LOOPJOB__"), None);
        assert_eq!(path("LOOPJOB__JOBS____INTERVAL"), None);
    }

    #[test]
    fn sections_and_keys_split_at_the_job() {
        assert_eq!(
            split_key("jobs.x.retry.max"),
            ("jobs.x".into(), "retry.max".into())
        );
        assert_eq!(
            split_key("loopjob.store"),
            ("loopjob".into(), "store".into())
        );
        assert_eq!(split_key("extra"), ("".into(), "extra".into()));
    }
}
