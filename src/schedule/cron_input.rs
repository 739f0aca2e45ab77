//! Reading a cron expression and a time-zone name, with messages that name what to fix.
//!
//! croner does the parsing; its errors say what broke ("Number out of bounds.") but not in
//! which field. When an expression fails, each field is parsed again on its own (the others
//! replaced by `*`) to find the one at fault, and the message names it, the value, and what the
//! field accepts: `minute: 61 is out of range 0–59`.

use std::sync::OnceLock;

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use jiff::tz::{TimeZone, TimeZoneDatabase};

/// One field of an expression: its name, its range, and what it accepts besides numbers.
struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    accepts: &'static str,
}

const COMMON: &str = "`*`, lists `a,b`, ranges `a-b` and steps `*/n` or `a-b/n`";

const SECOND: Field = Field {
    name: "second",
    min: 0,
    max: 59,
    accepts: "",
};
const FIELDS: [Field; 5] = [
    Field {
        name: "minute",
        min: 0,
        max: 59,
        accepts: "",
    },
    Field {
        name: "hour",
        min: 0,
        max: 23,
        accepts: "",
    },
    Field {
        name: "day of month",
        min: 1,
        max: 31,
        accepts: ", `L` (the last day) and `W` (the nearest weekday, as in `15W`)",
    },
    Field {
        name: "month",
        min: 1,
        max: 12,
        accepts: ", JAN–DEC",
    },
    Field {
        name: "day of week",
        min: 0,
        max: 7,
        accepts: ", SUN–SAT (0 and 7 are Sunday), `L` (the last in the month, as in `5L`) and `#` \
                  (the nth in the month, as in `MON#2`)",
    },
];

/// The expression forms, for messages.
const FORMS: &str = "write five fields (minute hour day-of-month month day-of-week) or six \
                     (with seconds first), e.g. \"0 */5 * * * *\", or @hourly, @daily, @weekly, \
                     @monthly, @yearly";

/// Parses `expression` with croner (five fields, or six with seconds first; no year field).
pub(super) fn parse(expression: &str) -> Result<Cron, String> {
    let expression = expression.trim();
    if expression.is_empty() {
        return Err(format!("is empty: {FORMS}"));
    }
    let fields: Vec<&str> = expression.split_whitespace().collect();
    let nickname = expression.starts_with('@');
    if !nickname && !(5..=6).contains(&fields.len()) {
        return Err(format!(
            "has {} field{}: {FORMS}",
            fields.len(),
            if fields.len() == 1 { "" } else { "s" }
        ));
    }
    match parser().parse(expression) {
        Ok(cron) => Ok(cron),
        Err(_) if nickname => Err(format!("`{expression}` is not a known nickname: {FORMS}")),
        Err(error) => Err(field_at_fault(&fields).unwrap_or_else(|| error.to_string())),
    }
}

fn parser() -> CronParser {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build()
}

/// The message for the first field that fails on its own, if one does.
fn field_at_fault(fields: &[&str]) -> Option<String> {
    let named: Vec<&Field> = match fields.len() {
        6 => std::iter::once(&SECOND).chain(&FIELDS).collect(),
        _ => FIELDS.iter().collect(),
    };
    (0..fields.len()).find_map(|at| {
        let probe: Vec<&str> = (0..fields.len())
            .map(|i| if i == at { fields[i] } else { "*" })
            .collect();
        let error = parser().parse(&probe.join(" ")).err()?;
        Some(field_message(named[at], fields[at], &error.to_string()))
    })
}

/// What is wrong with `text` in `field`: a number out of range, or croner's word on it.
fn field_message(field: &Field, text: &str, croner_says: &str) -> String {
    let out_of_range = values(text).find(|&value| value < field.min || value > field.max);
    match out_of_range {
        Some(value) => format!(
            "{}: {value} is out of range {}–{}",
            field.name, field.min, field.max
        ),
        None => {
            let croner_says = croner_says
                .trim_start_matches("Component error: ")
                .trim_end_matches('.');
            format!(
                "{}: `{text}` is not valid ({croner_says}); it accepts {}–{}{}, {COMMON}",
                field.name, field.min, field.max, field.accepts
            )
        }
    }
}

/// The numbers a field's text gives as values (not steps, not the n of `#n`).
fn values(text: &str) -> impl Iterator<Item = u32> + '_ {
    text.split(',')
        .map(|item| item.split('/').next().unwrap_or(item))
        .map(|item| item.split('#').next().unwrap_or(item))
        .flat_map(|range| range.split('-'))
        .map(|value| value.trim_end_matches(['L', 'l', 'W', 'w']))
        .filter_map(|value| value.parse().ok())
}

/// The bundled time-zone database: the same on every machine, whatever its zoneinfo says.
fn database() -> &'static TimeZoneDatabase {
    static DATABASE: OnceLock<TimeZoneDatabase> = OnceLock::new();
    DATABASE.get_or_init(TimeZoneDatabase::bundled)
}

/// The time zone named `name` (an IANA name such as `Europe/Berlin`, or `UTC`), from the
/// bundled database; an unknown name gets the nearest known ones as suggestions.
pub(super) fn zone(name: &str) -> Result<TimeZone, String> {
    let name = name.trim();
    if name.eq_ignore_ascii_case("UTC") {
        return Ok(TimeZone::UTC);
    }
    if let Ok(zone) = database().get(name) {
        return Ok(zone);
    }
    let nearest = nearest_zones(name);
    Err(if nearest.is_empty() {
        format!(
            "`{name}` is not a known time zone: write an IANA name such as \"Europe/Berlin\" or \
             \"America/New_York\", or \"UTC\""
        )
    } else {
        format!(
            "`{name}` is not a known time zone; did you mean {}?",
            nearest
                .iter()
                .map(|zone| format!("`{zone}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

/// The known zone names nearest to `name` (up to three, if they tie), comparing with the whole name and with its
/// city (`Berlin` finds `Europe/Berlin`), ignoring case.
fn nearest_zones(name: &str) -> Vec<String> {
    let wanted = name.to_ascii_lowercase();
    let limit = 2.max(wanted.len() / 3);
    let mut scored: Vec<(usize, String)> = database()
        .available()
        .filter_map(|known| {
            let known = known.as_str().to_owned();
            let lower = known.to_ascii_lowercase();
            let city = lower.rsplit('/').next().unwrap_or(&lower);
            let distance = strsim::damerau_levenshtein(&wanted, &lower)
                .min(strsim::damerau_levenshtein(&wanted, city));
            (distance <= limit).then_some((distance, known))
        })
        .collect();
    scored.sort();
    let best = scored.first().map(|(distance, _)| *distance);
    scored
        .into_iter()
        .take_while(|(distance, _)| Some(*distance) == best)
        .take(3)
        .map(|(_, known)| known)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_number_out_of_range_names_the_field_and_the_range() {
        assert_eq!(
            parse("61 * * * *").unwrap_err(),
            "minute: 61 is out of range 0–59"
        );
        assert_eq!(
            parse("0 0 24 * * *").unwrap_err(),
            "hour: 24 is out of range 0–23"
        );
        assert_eq!(
            parse("60 0 0 * * *").unwrap_err(),
            "second: 60 is out of range 0–59"
        );
        assert_eq!(
            parse("0 0 0 * *").unwrap_err(),
            "day of month: 0 is out of range 1–31"
        );
        assert_eq!(
            parse("0 0 1 1-13 *").unwrap_err(),
            "month: 13 is out of range 1–12"
        );
        assert_eq!(
            parse("0 0 * * 8").unwrap_err(),
            "day of week: 8 is out of range 0–7"
        );
    }

    #[test]
    fn other_mistakes_name_the_field_and_what_it_accepts() {
        let message = parse("*/0 * * * *").unwrap_err();
        assert!(
            message.starts_with("minute: `*/0` is not valid"),
            "{message}"
        );
        assert!(message.contains("0–59"), "{message}");
        let message = parse("0 0 * * FUN").unwrap_err();
        assert!(message.starts_with("day of week: `FUN`"), "{message}");
        assert!(message.contains("SUN–SAT"), "{message}");
    }

    #[test]
    fn the_number_of_fields_is_checked_first() {
        let message = parse("* * *").unwrap_err();
        assert!(message.starts_with("has 3 fields: write five"), "{message}");
        let message = parse("0 0 0 1 1 * 2030").unwrap_err();
        assert!(message.starts_with("has 7 fields"), "{message}");
        assert!(parse("  ").unwrap_err().starts_with("is empty"));
        assert!(parse("@fortnightly").unwrap_err().contains("nickname"));
    }

    #[test]
    fn good_expressions_parse() {
        for good in [
            "*/5 * * * *",
            "0 */5 * * * *",
            "0 2 * * MON-FRI",
            "0 0 L * *",
            "0 9 * * MON#1",
            "@daily",
        ] {
            assert!(parse(good).is_ok(), "{good}: {:?}", parse(good).err());
        }
    }

    #[test]
    fn zones_come_from_the_bundled_database() {
        assert_eq!(
            zone("Europe/Berlin").unwrap().iana_name(),
            Some("Europe/Berlin")
        );
        assert_eq!(zone("utc").unwrap(), TimeZone::UTC);
        let message = zone("Europe/Berln").unwrap_err();
        assert!(
            message.contains("did you mean `Europe/Berlin`"),
            "{message}"
        );
        let message = zone("Kathmandu").unwrap_err();
        assert!(message.contains("`Asia/Kathmandu`"), "{message}");
        let message = zone("Nowhere/Atlantis").unwrap_err();
        assert!(message.contains("IANA name"), "{message}");
    }
}
