//! Cron schedules: occurrences through daylight-saving changes, calendar edge cases and bad
//! input, at fixed instants (no clock is read).
#![cfg(feature = "cron")]

use jiff::civil::date;
use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};
use loopjob::{CronSchedule, Schedule, ScheduleMode};

fn cron(expression: &str, zone: &str) -> CronSchedule {
    let schedule = Schedule::cron(expression).timezone(zone);
    if let Err(problems) = schedule.validate() {
        panic!("{expression} in {zone}: {problems:?}");
    }
    schedule.cron_schedule().expect("a cron schedule").clone()
}

/// The instant of a wall-clock time in `zone` (the earlier one, in a fold).
fn local(zone: &str, y: i16, m: i8, d: i8, hour: i8, minute: i8) -> Timestamp {
    let zone = TimeZone::get(zone).expect("a known zone");
    date(y, m, d)
        .at(hour, minute, 0, 0)
        .to_zoned(zone)
        .expect("a valid time")
        .timestamp()
}

/// The occurrences during the local day `y-m-d` (from its midnight to the next).
fn day(cron: &CronSchedule, zone: &str, y: i16, m: i8, d: i8) -> Vec<Zoned> {
    let start = local(zone, y, m, d, 0, 0);
    let end = {
        let next = date(y, m, d).tomorrow().expect("a next day");
        local(zone, next.year(), next.month(), next.day(), 0, 0)
    };
    // The midnight that starts the day is an occurrence too (for a frequency).
    let before = start
        .checked_sub(jiff::SignedDuration::from_secs(1))
        .unwrap();
    cron.next_runs(before, 200)
        .into_iter()
        .take_while(|run| run.timestamp() < end)
        .collect()
}

fn shown(runs: &[Zoned]) -> Vec<String> {
    runs.iter().map(|run| run.to_string()).collect()
}

fn hours_long(zone: &str, y: i16, m: i8, d: i8) -> f64 {
    let next = date(y, m, d).tomorrow().unwrap();
    let length = local(zone, next.year(), next.month(), next.day(), 0, 0)
        .duration_since(local(zone, y, m, d, 0, 0));
    length.as_secs_f64() / 3600.0
}

#[test]
fn an_hourly_job_runs_23_times_on_a_23_hour_day_and_25_on_a_25_hour_day() {
    for (zone, spring, autumn) in [
        ("America/New_York", (2026, 3, 8), (2026, 11, 1)),
        ("Europe/Berlin", (2026, 3, 29), (2026, 10, 25)),
    ] {
        let hourly = cron("0 * * * *", zone);
        let (y, m, d) = spring;
        assert_eq!(hours_long(zone, y, m, d), 23.0, "{zone}");
        assert_eq!(day(&hourly, zone, y, m, d).len(), 23, "{zone} spring");
        let (y, m, d) = autumn;
        assert_eq!(hours_long(zone, y, m, d), 25.0, "{zone}");
        let runs = day(&hourly, zone, y, m, d);
        assert_eq!(runs.len(), 25, "{zone} autumn");
        // One hour apart, every one of them, in real time.
        for pair in runs.windows(2) {
            let gap = pair[1].timestamp().duration_since(pair[0].timestamp());
            assert_eq!(gap.as_secs(), 3600, "{zone}: {pair:?}");
        }
        // And on an ordinary day, 24.
        assert_eq!(day(&hourly, zone, 2026, 6, 1).len(), 24, "{zone} June");
    }
}

#[test]
fn every_day_at_0230_across_both_changes_in_berlin() {
    let nightly = cron("30 2 * * *", "Europe/Berlin");
    // Spring: 02:00 jumps to 03:00, so 02:30 does not exist; it runs once, at 03:00.
    let after = local("Europe/Berlin", 2026, 3, 27, 12, 0);
    assert_eq!(
        shown(&nightly.next_runs(after, 3)),
        [
            "2026-03-28T02:30:00+01:00[Europe/Berlin]",
            "2026-03-29T03:00:00+02:00[Europe/Berlin]",
            "2026-03-30T02:30:00+02:00[Europe/Berlin]",
        ]
    );
    // Autumn: 03:00 goes back to 02:00, so 02:30 happens twice; it runs once, the first time.
    let after = local("Europe/Berlin", 2026, 10, 24, 12, 0);
    assert_eq!(
        shown(&nightly.next_runs(after, 2)),
        [
            "2026-10-25T02:30:00+02:00[Europe/Berlin]",
            "2026-10-26T02:30:00+01:00[Europe/Berlin]",
        ]
    );
    // Searching from between the two 02:30s does not find the second one.
    let first = local("Europe/Berlin", 2026, 10, 25, 2, 30);
    let between = first
        .checked_add(jiff::SignedDuration::from_mins(45))
        .unwrap();
    assert_eq!(
        nightly.next_after(between).unwrap().to_string(),
        "2026-10-26T02:30:00+01:00[Europe/Berlin]"
    );
}

#[test]
fn every_day_at_0230_and_0130_across_both_changes_in_new_york() {
    let nightly = cron("30 2 * * *", "America/New_York");
    let after = local("America/New_York", 2026, 3, 7, 12, 0);
    assert_eq!(
        shown(&nightly.next_runs(after, 2)),
        [
            "2026-03-08T03:00:00-04:00[America/New_York]",
            "2026-03-09T02:30:00-04:00[America/New_York]",
        ]
    );
    let after = local("America/New_York", 2026, 10, 31, 12, 0);
    assert_eq!(
        shown(&nightly.next_runs(after, 2)),
        [
            "2026-11-01T02:30:00-05:00[America/New_York]",
            "2026-11-02T02:30:00-05:00[America/New_York]",
        ]
    );
    // New York's fold is 01:00–02:00: 01:30 runs once, in daylight time.
    let early = cron("30 1 * * *", "America/New_York");
    assert_eq!(
        shown(&early.next_runs(after, 2)),
        [
            "2026-11-01T01:30:00-04:00[America/New_York]",
            "2026-11-02T01:30:00-05:00[America/New_York]",
        ]
    );
}

#[test]
fn lord_howe_shifts_by_half_an_hour() {
    let zone = "Australia/Lord_Howe";
    // Spring (4 October 2026): 02:00 jumps to 02:30; 02:15 runs once, at 02:30.
    let quarter_past_two = cron("15 2 * * *", zone);
    let after = local(zone, 2026, 10, 3, 12, 0);
    assert_eq!(
        shown(&quarter_past_two.next_runs(after, 2)),
        [
            "2026-10-04T02:30:00+11:00[Australia/Lord_Howe]",
            "2026-10-05T02:15:00+11:00[Australia/Lord_Howe]",
        ]
    );
    // Autumn (5 April 2026): 02:00 goes back to 01:30; 01:45 runs once, the first time.
    let quarter_to_two = cron("45 1 * * *", zone);
    let after = local(zone, 2026, 4, 4, 12, 0);
    assert_eq!(
        shown(&quarter_to_two.next_runs(after, 2)),
        [
            "2026-04-05T01:45:00+11:00[Australia/Lord_Howe]",
            "2026-04-06T01:45:00+10:30[Australia/Lord_Howe]",
        ]
    );
    // A half-hourly job: 47 runs on the 23½-hour day, 49 on the 24½-hour day.
    let half_hourly = cron("*/30 * * * *", zone);
    assert_eq!(hours_long(zone, 2026, 10, 4), 23.5);
    assert_eq!(day(&half_hourly, zone, 2026, 10, 4).len(), 47);
    assert_eq!(hours_long(zone, 2026, 4, 5), 24.5);
    assert_eq!(day(&half_hourly, zone, 2026, 4, 5).len(), 49);
    // An hourly one never meets the shifted half hour: 23 and 24.
    let hourly = cron("0 * * * *", zone);
    assert_eq!(day(&hourly, zone, 2026, 10, 4).len(), 23);
    assert_eq!(day(&hourly, zone, 2026, 4, 5).len(), 24);
}

#[test]
fn kathmandu_keeps_its_quarter_hour_offset() {
    let zone = "Asia/Kathmandu";
    let nightly = cron("30 2 * * *", zone);
    let after: Timestamp = "2026-06-01T00:00:00Z".parse().unwrap();
    let next = nightly.next_after(after).unwrap();
    assert_eq!(
        next.to_string(),
        "2026-06-02T02:30:00+05:45[Asia/Kathmandu]"
    );
    assert_eq!(next.timestamp().to_string(), "2026-06-01T20:45:00Z");
    // An hourly job runs at :15 past each UTC hour, 24 times a day, every day of the year.
    let hourly = cron("0 * * * *", zone);
    let runs = day(&hourly, zone, 2026, 3, 29);
    assert_eq!(runs.len(), 24);
    assert!(
        runs.iter()
            .all(|run| { run.timestamp().to_zoned(TimeZone::UTC).minute() == 15 })
    );
}

#[test]
fn the_last_day_of_the_month_and_the_leap_day() {
    let last = cron("0 0 L * *", "UTC");
    let after: Timestamp = "2027-01-15T00:00:00Z".parse().unwrap();
    let days: Vec<String> = last
        .next_runs(after, 4)
        .iter()
        .map(|run| run.date().to_string())
        .collect();
    assert_eq!(
        days,
        ["2027-01-31", "2027-02-28", "2027-03-31", "2027-04-30"]
    );
    let after: Timestamp = "2028-02-01T00:00:00Z".parse().unwrap();
    assert_eq!(
        last.next_after(after).unwrap().date().to_string(),
        "2028-02-29"
    );

    let leap_day = cron("0 12 29 2 *", "Europe/Berlin");
    let after: Timestamp = "2025-03-01T00:00:00Z".parse().unwrap();
    assert_eq!(
        shown(&leap_day.next_runs(after, 2)),
        [
            "2028-02-29T12:00:00+01:00[Europe/Berlin]",
            "2032-02-29T12:00:00+01:00[Europe/Berlin]",
        ]
    );
}

#[test]
fn seconds_are_optional_and_the_store_clock_form_is_strictly_after() {
    let every_five_minutes = cron("0 */5 * * * *", "UTC");
    let at: Timestamp = "2026-01-01T10:05:00Z".parse().unwrap();
    let at_ms = at.as_millisecond();
    // Strictly after: an occurrence exactly at `after` is not the next one.
    assert_eq!(
        every_five_minutes.next_after_ms(at_ms),
        Some(at_ms + 5 * 60_000)
    );
    assert_eq!(every_five_minutes.next_after_ms(at_ms - 1), Some(at_ms));
    let seconds = cron("*/20 * * * * *", "UTC");
    assert_eq!(seconds.next_after_ms(at_ms), Some(at_ms + 20_000));
}

fn problems(schedule: Schedule) -> Vec<String> {
    schedule
        .validate()
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn bad_input_names_what_to_fix() {
    assert_eq!(
        problems(Schedule::cron("61 * * * *")),
        ["`cron`: minute: 61 is out of range 0–59"]
    );
    let never = problems(Schedule::cron("0 0 30 2 *"));
    assert_eq!(never.len(), 1);
    assert!(never[0].contains("never fires"), "{never:?}");
    let zone = problems(Schedule::cron("0 2 * * *").timezone("Europe/Berln"));
    assert_eq!(
        zone,
        ["`timezone`: `Europe/Berln` is not a known time zone; did you mean `Europe/Berlin`?"]
    );
    // Keys that mean something only on an interval.
    let fields: Vec<&str> = Schedule::cron("0 2 * * *")
        .mode(ScheduleMode::FixedDelay)
        .align(true)
        .validate()
        .unwrap_err()
        .iter()
        .map(|problem| problem.field)
        .collect();
    assert_eq!(fields, ["mode", "align"]);
}

#[test]
fn jitter_and_backoff_must_be_shorter_than_the_shortest_gap() {
    let every_minute = Schedule::cron("* * * * *").jitter(std::time::Duration::from_secs(60));
    let jitter = problems(every_minute);
    assert_eq!(jitter.len(), 1);
    assert!(
        jitter[0].starts_with("`jitter`: is 1m, not shorter than 1m, the shortest time"),
        "{jitter:?}"
    );
    let weekdays = Schedule::cron("0 9 * * MON-FRI")
        .jitter(std::time::Duration::from_secs(3600))
        .retries(2)
        .retry_backoff(std::time::Duration::from_secs(600));
    assert!(weekdays.validate().is_ok());
}

#[test]
fn each_time_of_a_list_or_range_keeps_the_rule_of_a_time() {
    // Twice a day: 02:00 moves to 03:00 in the spring gap, and runs once in the autumn fold.
    let twice = cron("0 2,14 * * *", "Europe/Berlin");
    let after = local("Europe/Berlin", 2026, 3, 28, 15, 0);
    assert_eq!(
        shown(&twice.next_runs(after, 3)),
        [
            "2026-03-29T03:00:00+02:00[Europe/Berlin]",
            "2026-03-29T14:00:00+02:00[Europe/Berlin]",
            "2026-03-30T02:00:00+02:00[Europe/Berlin]",
        ]
    );
    let after = local("Europe/Berlin", 2026, 10, 24, 15, 0);
    assert_eq!(
        shown(&twice.next_runs(after, 2)),
        [
            "2026-10-25T02:00:00+02:00[Europe/Berlin]",
            "2026-10-25T14:00:00+01:00[Europe/Berlin]",
        ]
    );
    // A range of hours: 02:00 and 03:00 meet at 03:00 in the spring, and run once.
    let night = cron("0 1-3 * * *", "Europe/Berlin");
    assert_eq!(
        shown(&day(&night, "Europe/Berlin", 2026, 3, 29)),
        [
            "2026-03-29T01:00:00+01:00[Europe/Berlin]",
            "2026-03-29T03:00:00+02:00[Europe/Berlin]",
        ]
    );
    assert_eq!(
        shown(&day(&night, "Europe/Berlin", 2026, 10, 25)),
        [
            "2026-10-25T01:00:00+02:00[Europe/Berlin]",
            "2026-10-25T02:00:00+02:00[Europe/Berlin]",
            "2026-10-25T03:00:00+01:00[Europe/Berlin]",
        ]
    );
    // A frequency inside a fixed hour runs through real time: both passes of 01:xx in New York.
    let quarter_hours = cron("*/15 1 * * *", "America/New_York");
    assert_eq!(
        day(&quarter_hours, "America/New_York", 2026, 11, 1).len(),
        8
    );
}
