//! What can go wrong in settings, and where: [`SettingsError`], [`SettingsProblem`],
//! [`SettingsWarning`] and the [`Origin`] of a value.

use std::borrow::Cow;
use std::fmt;
use std::path::PathBuf;

/// Where a setting came from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Origin {
    /// A TOML file (or a string loaded under a name), at a line when the problem has one.
    File {
        /// The file's path, or the name a string was loaded under.
        path: PathBuf,
        /// The 1-based line of the key, when known.
        line: Option<usize>,
    },
    /// An environment variable.
    Env {
        /// The variable's name, as it was set (`LOOPJOB__JOBS__CLEANUP__INTERVAL`).
        var: String,
    },
    /// The job's code: a default it gives, or a value no source gives.
    Code,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File {
                path,
                line: Some(line),
            } => write!(f, "{}:{line}", path.display()),
            Origin::File { path, line: None } => write!(f, "{}", path.display()),
            Origin::Env { var } => write!(f, "environment variable {var}"),
            Origin::Code => f.write_str("code"),
        }
    }
}

/// One thing wrong in the settings: where, which section and key, and what is wrong (what was
/// expected and what was found).
///
/// Displays as `config/app.toml:7: [jobs.cleanup] interval: expected a duration such as "10s",
/// found the number 10; write "10s"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsProblem {
    /// Where the value came from.
    pub origin: Origin,
    /// The section, as a dotted path: `loopjob`, `jobs.cleanup`; empty for a whole source.
    pub section: String,
    /// The key within the section (a dotted path for nested options); empty for a whole
    /// source or section.
    pub key: String,
    /// What is wrong: what was expected, what was found, and what to write instead.
    pub message: String,
}

impl SettingsProblem {
    pub(crate) fn new(
        origin: Origin,
        section: impl Into<String>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        SettingsProblem {
            origin,
            section: section.into(),
            key: key.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for SettingsProblem {
    /// Shows a long section or key shortened: its first 60 characters, `…` and its length.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.origin)?;
        let (section, key) = (shorten(&self.section), shorten(&self.key));
        match (section.is_empty(), key.is_empty()) {
            (false, false) => write!(f, "[{section}] {key}: ")?,
            (false, true) => write!(f, "[{section}]: ")?,
            (true, false) => write!(f, "{key}: ")?,
            (true, true) => {}
        }
        f.write_str(&self.message)
    }
}

/// The most characters of a key, section or value that a message shows.
pub(crate) const SHOWN_CHARS: usize = 60;

/// `text` as a message shows it: whole if it has at most [`SHOWN_CHARS`] characters, else its
/// start, `…` and its length (`aaaa… (1048576 bytes)`), so that a huge key stays readable.
pub(crate) fn shorten(text: &str) -> Cow<'_, str> {
    match text.char_indices().nth(SHOWN_CHARS) {
        Some((cut, _)) => Cow::Owned(format!("{}… ({} bytes)", &text[..cut], text.len())),
        None => Cow::Borrowed(text),
    }
}

impl std::error::Error for SettingsProblem {}

/// Something in the settings that is probably a mistake but does not stop the host, such as a
/// section for a job that is not registered. Each is also logged with `tracing::warn!`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsWarning {
    /// Where the section or key is.
    pub origin: Origin,
    /// The section, as a dotted path.
    pub section: String,
    /// What is odd about it.
    pub message: String,
}

impl fmt::Display for SettingsWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.origin)?;
        if !self.section.is_empty() {
            write!(f, "[{}]: ", shorten(&self.section))?;
        }
        f.write_str(&self.message)
    }
}

/// Settings that cannot be used: every problem found, each naming its origin, section and key.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", ProblemList(.problems))]
pub struct SettingsError {
    problems: Vec<SettingsProblem>,
}

impl SettingsError {
    pub(crate) fn new(problems: Vec<SettingsProblem>) -> Self {
        SettingsError { problems }
    }

    /// Every problem found, in the order of the sources and sections.
    pub fn problems(&self) -> &[SettingsProblem] {
        &self.problems
    }
}

struct ProblemList<'a>(&'a [SettingsProblem]);

impl fmt::Display for ProblemList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.0.len();
        write!(
            f,
            "invalid settings: {count} problem{}",
            if count == 1 { "" } else { "s" }
        )?;
        for problem in self.0 {
            write!(f, "\n  - {problem}")?;
        }
        Ok(())
    }
}

/// The longest name that [`did_you_mean`] looks for a suggestion for: no key, job or choice is
/// longer, and the edit distance costs the product of the two lengths.
const LONGEST_SUGGESTED: usize = 64;

/// The closest of `candidates` to `unknown`, if it is close enough to be a likely typo. A name
/// longer than any key (more than 64 bytes) gets no suggestion, so the search stays cheap.
pub(crate) fn did_you_mean<'a>(
    unknown: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    if unknown.len() > LONGEST_SUGGESTED {
        return None;
    }
    candidates
        .into_iter()
        .filter(|candidate| candidate.len() <= LONGEST_SUGGESTED)
        .map(|candidate| {
            // A key cut short (`shutdown` for `shutdown_grace`) counts as close.
            let cut_short = unknown.len() >= 4 && candidate.starts_with(unknown);
            let distance = if cut_short {
                1
            } else {
                strsim::damerau_levenshtein(unknown, candidate)
            };
            (distance, candidate)
        })
        .filter(|&(distance, candidate)| distance <= 2.max(candidate.len() / 3))
        .min_by_key(|&(distance, _)| distance)
        .map(|(_, candidate)| candidate)
}

/// The message for a key nobody reads.
pub(crate) fn unknown_key_message<'a>(
    key: &str,
    known: impl IntoIterator<Item = &'a str>,
) -> String {
    match did_you_mean(key, known) {
        Some(suggestion) => format!("unknown key; did you mean `{suggestion}`?"),
        None => "unknown key; remove it, or check the job's options type for the keys it reads"
            .to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_catch_typos_but_not_unrelated_words() {
        let known = ["interval", "initial_delay", "retries", "leader"];
        assert_eq!(did_you_mean("intreval", known), Some("interval"));
        assert_eq!(did_you_mean("intervall", known), Some("interval"));
        assert_eq!(did_you_mean("retires", known), Some("retries"));
        assert_eq!(did_you_mean("initial", known), Some("initial_delay"));
        assert_eq!(did_you_mean("colour", known), None);
        assert_eq!(did_you_mean("in", known), None);
        let long = format!("interval{}", "x".repeat(100));
        assert_eq!(did_you_mean(&long, known), None);
    }

    #[test]
    fn long_names_are_shortened() {
        assert_eq!(shorten("interval"), "interval");
        let long = "é".repeat(1000);
        assert_eq!(shorten(&long), format!("{}… (2000 bytes)", "é".repeat(60)));
    }
}
