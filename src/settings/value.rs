//! Reading typed values out of the merged settings tree: durations in humantime form, booleans,
//! counts and names from a fixed set, with messages that say what was expected, what was found
//! and what to write instead.
//!
//! Values from the environment are always strings, so every reader also accepts a string that
//! parses as its type (`"true"`, `"3"`).

use std::time::Duration;

use config::{Value, ValueKind};

/// A value's shape in words, for messages: `the number 10`, `"abc"`, `a table`.
pub(crate) fn describe(value: &Value) -> String {
    match &value.kind {
        ValueKind::Nil => "nothing".to_owned(),
        ValueKind::Boolean(b) => format!("the boolean {b}"),
        ValueKind::I64(n) => format!("the number {n}"),
        ValueKind::I128(n) => format!("the number {n}"),
        ValueKind::U64(n) => format!("the number {n}"),
        ValueKind::U128(n) => format!("the number {n}"),
        ValueKind::Float(n) => format!("the number {n}"),
        ValueKind::String(s) => quote(s),
        ValueKind::Table(_) => "a table".to_owned(),
        ValueKind::Array(_) => "an array".to_owned(),
    }
}

/// A string in quotes for a message, shortened if it is long: its start, `…` and its length.
pub(crate) fn quote(text: &str) -> String {
    match text.char_indices().nth(super::error::SHOWN_CHARS) {
        Some((cut, _)) => format!("{:?}… ({} bytes)", &text[..cut], text.len()),
        None => format!("{text:?}"),
    }
}

/// A value as a whole number, if it is one (a string of digits counts).
fn integer(value: &Value) -> Option<i128> {
    match &value.kind {
        ValueKind::I64(n) => Some(i128::from(*n)),
        ValueKind::I128(n) => Some(*n),
        ValueKind::U64(n) => Some(i128::from(*n)),
        ValueKind::U128(n) => i128::try_from(*n).ok(),
        ValueKind::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A duration in humantime form: `"10s"`, `"1h 30m"`, `"250ms"`.
///
/// A bare number is refused, with the humantime form to write instead: a number alone does not
/// say whether it means seconds or milliseconds.
pub(crate) fn duration(value: &Value) -> Result<Duration, String> {
    const EXPECTED: &str = "expected a duration such as \"10s\", \"1m 30s\" or \"250ms\"";
    let bare_number_hint = |number: String| {
        format!(
            "{EXPECTED}, found {} without a unit; write \"{number}s\" for seconds",
            describe(value)
        )
    };
    match &value.kind {
        ValueKind::String(text) => {
            let trimmed = text.trim();
            if !trimmed.is_empty() && trimmed.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bare_number_hint(trimmed.to_owned()));
            }
            humantime::parse_duration(trimmed)
                .map_err(|error| format!("{EXPECTED}, found {} ({error})", quote(text)))
        }
        ValueKind::Float(seconds) if seconds.is_finite() && *seconds >= 0.0 => {
            // Whole milliseconds: 1.5 → "1500ms"; no need for more precision in a hint.
            Err(format!(
                "{EXPECTED}, found {} without a unit; write \"{}ms\"",
                describe(value),
                (seconds * 1000.0).round()
            ))
        }
        _ => match integer(value) {
            Some(number) if number >= 0 => Err(bare_number_hint(number.to_string())),
            _ => Err(format!("{EXPECTED}, found {}", describe(value))),
        },
    }
}

/// A duration, or `"none"` for no value at all (used by `timeout`).
pub(crate) fn optional_duration(value: &Value) -> Result<Option<Duration>, String> {
    match &value.kind {
        ValueKind::String(text) if text.trim().eq_ignore_ascii_case("none") => Ok(None),
        _ => duration(value).map(Some).map_err(|message| {
            message.replacen("expected a duration", "expected \"none\" or a duration", 1)
        }),
    }
}

/// `true` or `false` (also as a string, as the environment gives it).
pub(crate) fn boolean(value: &Value) -> Result<bool, String> {
    match &value.kind {
        ValueKind::Boolean(b) => Ok(*b),
        ValueKind::String(text) if text.trim().eq_ignore_ascii_case("true") => Ok(true),
        ValueKind::String(text) if text.trim().eq_ignore_ascii_case("false") => Ok(false),
        _ => Err(format!("expected true or false, found {}", describe(value))),
    }
}

/// A whole number from 0 to `u32::MAX`.
pub(crate) fn count(value: &Value) -> Result<u32, String> {
    integer(value)
        .and_then(|number| u32::try_from(number).ok())
        .ok_or_else(|| {
            format!(
                "expected a whole number from 0 to {}, found {}",
                u32::MAX,
                describe(value)
            )
        })
}

/// Non-empty text.
pub(crate) fn text(value: &Value) -> Result<String, String> {
    match &value.kind {
        ValueKind::String(text) if !text.trim().is_empty() => Ok(text.trim().to_owned()),
        _ => Err(format!(
            "expected non-empty text, found {}",
            describe(value)
        )),
    }
}

/// One of a fixed set of names, such as `fixed_rate` or `fixed_delay`.
pub(crate) fn one_of<T: Copy>(value: &Value, choices: &[(&str, T)]) -> Result<T, String> {
    let names = || {
        choices
            .iter()
            .map(|(name, _)| format!("\"{name}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let ValueKind::String(text) = &value.kind else {
        return Err(format!(
            "expected one of {}, found {}",
            names(),
            describe(value)
        ));
    };
    let wanted = text.trim().to_ascii_lowercase();
    if let Some((_, choice)) = choices.iter().find(|(name, _)| *name == wanted) {
        return Ok(*choice);
    }
    let hint = super::error::did_you_mean(&wanted, choices.iter().map(|(name, _)| *name))
        .map(|name| format!("; did you mean \"{name}\"?"))
        .unwrap_or_default();
    Err(format!(
        "expected one of {}, found {}{hint}",
        names(),
        describe(value)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string(text: &str) -> Value {
        Value::new(None, text)
    }

    #[test]
    fn durations_take_every_humantime_form() {
        for (text, expected) in [
            ("10s", Duration::from_secs(10)),
            ("1h 30m", Duration::from_secs(5400)),
            ("250ms", Duration::from_millis(250)),
            ("2days", Duration::from_secs(172_800)),
            (" 5m ", Duration::from_secs(300)),
            ("0s", Duration::ZERO),
        ] {
            assert_eq!(duration(&string(text)), Ok(expected), "{text}");
        }
    }

    #[test]
    fn bare_numbers_are_refused_with_the_form_to_write() {
        let message = duration(&Value::new(None, 10_i64)).unwrap_err();
        assert!(
            message.contains("found the number 10 without a unit"),
            "{message}"
        );
        assert!(message.contains("write \"10s\""), "{message}");
        // The environment gives strings: "10" is a bare number too.
        let message = duration(&string("10")).unwrap_err();
        assert!(message.contains("write \"10s\""), "{message}");
        let message = duration(&Value::new(None, 1.5_f64)).unwrap_err();
        assert!(message.contains("write \"1500ms\""), "{message}");
        let message = duration(&Value::new(None, -3_i64)).unwrap_err();
        assert!(
            !message.contains("write"),
            "no hint for a negative number: {message}"
        );
    }

    #[test]
    fn malformed_durations_say_what_was_found() {
        let message = duration(&string("10 parsecs")).unwrap_err();
        assert!(message.starts_with("expected a duration"), "{message}");
        assert!(message.contains("\"10 parsecs\""), "{message}");
        assert!(
            duration(&Value::new(None, true))
                .unwrap_err()
                .contains("the boolean true")
        );
    }

    #[test]
    fn timeout_accepts_none() {
        assert_eq!(optional_duration(&string("none")), Ok(None));
        assert_eq!(
            optional_duration(&string("3s")),
            Ok(Some(Duration::from_secs(3)))
        );
        assert!(
            optional_duration(&string("never"))
                .unwrap_err()
                .contains("\"none\" or a duration")
        );
    }

    #[test]
    fn booleans_counts_and_names_accept_strings_from_the_environment() {
        assert_eq!(boolean(&string("TRUE")), Ok(true));
        assert_eq!(boolean(&Value::new(None, false)), Ok(false));
        assert!(boolean(&string("yes")).is_err());
        assert_eq!(count(&string("3")), Ok(3));
        assert_eq!(count(&Value::new(None, 7_i64)), Ok(7));
        assert!(
            count(&Value::new(None, -1_i64))
                .unwrap_err()
                .contains("the number -1")
        );
        assert!(count(&Value::new(None, 5_000_000_000_i64)).is_err());
        let choices = [("fixed_rate", 1), ("fixed_delay", 2)];
        assert_eq!(one_of(&string("Fixed_Delay"), &choices), Ok(2));
        let message = one_of(&string("fixed_rat"), &choices).unwrap_err();
        assert!(
            message.contains("did you mean \"fixed_rate\"?"),
            "{message}"
        );
    }
}
