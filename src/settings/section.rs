//! A view of one section of the merged settings, with the origin of each of its keys.

use config::Value;

use super::error::Origin;
use super::job::is_framework_key;
use super::source::{Origins, Table, join};

/// One section (`[jobs.cleanup]`, `[loopjob]`) of the merged settings; it may be absent.
#[doc(hidden)]
#[derive(Clone, Copy)]
pub struct Section<'a> {
    path: &'a str,
    table: Option<&'a Table>,
    origins: &'a Origins,
}

impl std::fmt::Debug for Section<'_> {
    /// The path and keys, not the values: they may hold a store URL's password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Section")
            .field("path", &self.path)
            .field("keys", &self.keys())
            .finish()
    }
}

impl<'a> Section<'a> {
    pub(crate) fn new(path: &'a str, table: Option<&'a Table>, origins: &'a Origins) -> Self {
        Section {
            path,
            table,
            origins,
        }
    }

    /// The dotted path: `jobs.cleanup`.
    pub(crate) fn path(&self) -> &'a str {
        self.path
    }

    /// Whether any source gives this section.
    pub(crate) fn exists(&self) -> bool {
        self.table.is_some()
    }

    /// The value at `key`.
    pub(crate) fn get(&self, key: &str) -> Option<&'a Value> {
        self.table?.get(key)
    }

    /// The section's keys, sorted.
    pub(crate) fn keys(&self) -> Vec<&'a str> {
        let mut keys: Vec<&str> = self
            .table
            .into_iter()
            .flatten()
            .map(|(k, _)| k.as_str())
            .collect();
        keys.sort_unstable();
        keys
    }

    /// Where the value at `key` (a dotted path within the section) came from: the key's own
    /// line, else that of the nearest enclosing table that a source gives, else the section's.
    pub(crate) fn origin(&self, key: &str) -> Origin {
        let mut key = key;
        loop {
            if let Some(origin) = self.origins.get(&join(self.path, key)) {
                return origin.clone();
            }
            match key.rfind('.') {
                Some(dot) => key = &key[..dot],
                None => return self.origin_of_section(),
            }
        }
    }

    /// Where the section itself is, or [`Origin::Code`] if no source gives it.
    pub(crate) fn origin_of_section(&self) -> Origin {
        match self.origins.get(self.path) {
            Some(origin) if self.exists() => origin.clone(),
            _ => Origin::Code,
        }
    }

    /// The section without its schedule and leadership keys: what the job's options read.
    pub(crate) fn option_table(&self) -> Table {
        self.table
            .into_iter()
            .flatten()
            .filter(|(key, _)| !is_framework_key(key))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect()
    }
}
