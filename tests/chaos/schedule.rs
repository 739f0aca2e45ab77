//! The cluster schedule's properties, DESIGN's P6–P8, from the runs of every key: each run's
//! committed start (the store's history, kept whole, on the store's clock mapped to the
//! monotonic one), the start of its body and the tick that asked for it (the node's `RUN`
//! line), and whether an operator's trigger started it (the history).
//!
//! ε, the margin P6 grants: a tenth of the lease ttl (the cluster schedule's clock margin,
//! which is also how late a run may be and keep the grid), 2 ms for the store's millisecond
//! clock, 50 ms of slack, and the earlier run's own way from its tick to its body (its start's
//! round trip). The argument: the earlier run's start writes the next due time at least
//! `interval − ttl/10 − 1 ms` after the store's clock at its tick (a node judges how late a
//! run is by the store's clock measured from when its last call was sent, which never trails
//! it, so a slowed or stalled store widens nothing), and no node starts a run before the
//! store's clock reaches its due time.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use loopjob::store::RunRecord;

use crate::clock::{StoreTime, ms};
use crate::faults::{Fault, Kind};
use crate::lines::Line;
use crate::node::{INTERVAL, RETRY_EVERY, TTL};
use crate::operator::{Command, Event};

/// Slack for the store's times as this checker maps them onto its own clock.
const CLOCK_LAG: Duration = Duration::from_millis(50);
/// The store's times are whole milliseconds.
const ROUNDING: Duration = Duration::from_millis(2);

/// P7's slack, for three steps that DESIGN's bound leaves out, each an event or a round trip on
/// a loaded host: the new owner's grant reaching its job, its read of the key's record, and
/// its tick (P5 grants 250 ms for the first alone).
const P7_SLACK: Duration = Duration::from_millis(750);

/// What the schedule checks read.
pub struct Input<'a> {
    pub lines: &'a [Line],
    pub history: &'a [RunRecord],
    pub faults: &'a [Fault],
    /// Faults that stopped the store for everyone (store-wide kinds, and SQLite writers frozen
    /// inside a transaction), as (start, end).
    pub store_wide: &'a [(u64, u64)],
    pub events: &'a [Event],
    pub store_time: StoreTime,
    /// The end of the observed run (just before shutdown).
    pub observed_until: u64,
}

/// One run of one key.
#[derive(Debug, Clone)]
struct Run<'a> {
    node: &'a str,
    epoch: u64,
    /// Monotonic ns: the tick that asked for it, its committed start, its body's start.
    tick: Option<u64>,
    committed: Option<u64>,
    body: Option<u64>,
    triggered: bool,
}

impl Run<'_> {
    /// When it started: its body, or (the body never began) its committed start.
    fn start(&self) -> u64 {
        self.body
            .or(self.committed)
            .expect("a run has one or the other")
    }
}

/// The keys' runs, from the history and the `RUN` lines; and the violations of "a run starts
/// only after its start is committed".
fn runs<'a>(input: &Input<'a>, v: &mut Vec<String>) -> BTreeMap<&'a str, Vec<Run<'a>>> {
    // The history, per (key, epoch), in sequence order.
    let mut committed: BTreeMap<(&str, u64), Vec<(&RunRecord, bool)>> = BTreeMap::new();
    for record in input.history {
        committed
            .entry((&record.key, record.epoch))
            .or_default()
            .push((record, false));
    }
    for list in committed.values_mut() {
        list.sort_by_key(|(r, _)| (r.started_ms, r.seq));
    }
    let mut bodies: Vec<(&str, u64, &str, u64, u64)> = Vec::new();
    for line in input.lines {
        if let Line::Run {
            node,
            tick,
            t,
            leases,
            ..
        } = line
        {
            for (key, epoch) in leases {
                bodies.push((key, *epoch, node, *tick, *t));
            }
        }
    }
    bodies.sort_by_key(|b| b.4);
    let mut by_key: BTreeMap<&str, Vec<Run>> = BTreeMap::new();
    for (key, epoch, node, tick, body) in bodies {
        // The latest start of this key and epoch committed before the body began.
        let slot = committed.get_mut(&(key, epoch)).and_then(|list| {
            list.iter_mut().rev().find(|(r, used)| {
                !used && input.store_time.mono(r.started_ms) <= body + ROUNDING.as_nanos() as u64
            })
        });
        let (committed_at, triggered) = match slot {
            Some((record, used)) => {
                *used = true;
                if !record.holder.starts_with(&format!("{node}/")) {
                    v.push(format!(
                        "P6: {key} epoch {epoch}: {node} ran a start committed by {}",
                        record.holder
                    ));
                }
                (
                    Some(input.store_time.mono(record.started_ms)),
                    record.triggered,
                )
            }
            None => {
                let forgotten = input.faults.iter().any(|f| {
                    f.forgets && f.start <= body + 1_000_000_000 && body <= f.end + 1_000_000_000
                });
                if !forgotten {
                    v.push(format!(
                        "P6: {key} epoch {epoch}: {node}'s run began at {} ms with no start committed in the history",
                        ms(input.observed_until, body) as i64
                    ));
                }
                (None, false)
            }
        };
        by_key.entry(key).or_default().push(Run {
            node,
            epoch,
            tick: Some(tick),
            committed: committed_at,
            body: Some(body),
            triggered,
        });
    }
    // Starts committed whose body never began (the node died or froze, or the answer was lost).
    // Not those their node ended unrun as it stopped (cancelled, no attempt): they hold no
    // body, and the next leader runs their point (docs/RELIABILITY.md, item 20).
    for ((key, epoch), list) in &committed {
        for (record, used) in list {
            if !used && !record.ended_unrun() {
                by_key.entry(key).or_default().push(Run {
                    node: record.holder.split('/').next().unwrap_or(""),
                    epoch: *epoch,
                    tick: None,
                    committed: Some(input.store_time.mono(record.started_ms)),
                    body: None,
                    triggered: record.triggered,
                });
            }
        }
    }
    for list in by_key.values_mut() {
        list.sort_by_key(Run::start);
    }
    by_key
}

/// The pause windows of each key: (committed, resume sent, resume answered), from the
/// operator's events. A window ends early where the store forgot its records (a restart
/// without persistence forgets the pause too: not P8's to hold).
fn pauses<'a>(input: &Input<'a>) -> BTreeMap<&'a str, Vec<(u64, u64, u64)>> {
    let mut windows: BTreeMap<&str, Vec<(u64, u64, u64)>> = BTreeMap::new();
    for (i, event) in input.events.iter().enumerate() {
        if event.command != Command::Pause || event.error.is_some() {
            continue;
        }
        for (key, &at) in &event.committed {
            let resume = input.events[i + 1..].iter().find(|e| {
                e.command == Command::Resume && e.error.is_none() && e.keys.contains(key)
            });
            let (sent, done) = resume.map_or((input.observed_until, input.observed_until), |r| {
                (r.sent, r.done)
            });
            let forgotten = input
                .faults
                .iter()
                .find(|f| f.forgets && at < f.end && f.start < sent)
                .map(|f| f.start);
            let (sent, done) = match forgotten {
                Some(start) => (start, start),
                None => (sent, done),
            };
            windows.entry(key).or_default().push((at, sent, done));
        }
    }
    windows
}

/// The figures the report shows.
#[derive(Default)]
pub struct Figures {
    pub runs: usize,
    pub committed_only: usize,
    pub p6_pairs: usize,
    /// The smallest spacing: (ms, its interval − ε in ms, key).
    pub p6_smallest: Option<(f64, f64, String)>,
    pub p6_smallest_margin: Option<f64>,
    pub p6_frozen: usize,
    pub p6_forgotten: Vec<f64>,
    pub p7_gaps: usize,
    /// The largest gap against its bound, (ms, bound ms, key).
    pub p7_largest: Option<(f64, f64, String)>,
    pub p7_least_room: Option<f64>,
    pub p8_windows: usize,
    pub p8_in_flight: usize,
    pub p8_after: usize,
    pub p8_restarts: usize,
    pub triggers: usize,
    pub triggered_runs: usize,
    pub triggers_pending: usize,
    /// Triggers no run served before the store forgot them (a restart without persistence).
    pub triggers_forgotten: usize,
}

pub fn check(input: &Input, v: &mut Vec<String>) -> Figures {
    let mut fig = Figures::default();
    let by_key = runs(input, v);
    let windows = pauses(input);
    let interval_ms = INTERVAL.as_secs_f64() * 1e3;
    let frozen = |node: &str, from: u64, to: u64| {
        input.faults.iter().any(|f| {
            f.kind == Kind::Stop && f.node.as_deref() == Some(node) && f.start < to && from < f.end
        })
    };
    let forgotten_between = |from: u64, to: u64| {
        input
            .faults
            .iter()
            .any(|f| f.forgets && f.start < to && from < f.end)
    };
    for list in by_key.values() {
        fig.runs += list.len();
        fig.committed_only += list.iter().filter(|r| r.body.is_none()).count();
        fig.triggered_runs += list.iter().filter(|r| r.triggered).count();
    }

    // --- P6 spacing ------------------------------------------------------------------------
    for (key, list) in &by_key {
        let scheduled: Vec<&Run> = list
            .iter()
            .filter(|r| !r.triggered && r.body.is_some())
            .collect();
        for pair in scheduled.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            let (a_body, b_body) = (a.body.unwrap_or(0), b.body.unwrap_or(0));
            let a_tick = a.tick.unwrap_or(a_body);
            let spacing = ms(a_body, b_body);
            // A run whose node froze between its tick and its body began late: a stale start,
            // which P3's fencing covers (its token is cancelled on waking).
            if frozen(a.node, a_tick, a_body) || frozen(b.node, b.tick.unwrap_or(b_body), b_body) {
                fig.p6_frozen += 1;
                continue;
            }
            if forgotten_between(a_body, b_body) {
                fig.p6_forgotten.push(spacing);
                continue;
            }
            let epsilon =
                (TTL / 10 + ROUNDING + CLOCK_LAG).as_secs_f64() * 1e3 + ms(a_tick, a_body);
            let least = interval_ms - epsilon;
            fig.p6_pairs += 1;
            if fig
                .p6_smallest
                .as_ref()
                .is_none_or(|(s, _, _)| spacing < *s)
            {
                fig.p6_smallest = Some((spacing, least, key.to_string()));
            }
            let margin = spacing - least;
            if fig.p6_smallest_margin.is_none_or(|m| margin < m) {
                fig.p6_smallest_margin = Some(margin);
            }
            if spacing < least {
                v.push(format!(
                    "P6: {key}: {}'s run (epoch {}) began {spacing:.1} ms after {}'s (epoch {}), under interval − ε = {least:.1} ms",
                    b.node, b.epoch, a.node, a.epoch
                ));
            }
        }
    }

    // --- P7 no lost period -----------------------------------------------------------------
    let base = INTERVAL + TTL + RETRY_EVERY + P7_SLACK;
    for (key, list) in &by_key {
        if list.iter().all(|r| r.triggered) {
            v.push(format!("P7: {key} never ran on its schedule"));
            continue;
        }
        // Every run of the key, triggered ones too: an operator's run in flight at a point
        // makes the key skip that point (never two runs of a key at once), so that period's
        // run is the triggered one.
        let last = list.last().expect("the key has runs");
        // From a run's start to the moment the next was asked for (its tick): the time its
        // start then takes to commit is the store's latency, not a lost period.
        let gaps = list
            .windows(2)
            .map(|w| {
                (
                    w[0].start(),
                    w[1].tick.unwrap_or(w[1].start()).max(w[0].start()),
                )
            })
            .chain(std::iter::once((last.start(), input.observed_until)));
        for (a, b) in gaps {
            // A pause covering part of the gap: the period from its resume counts.
            let a = windows
                .get(key)
                .into_iter()
                .flatten()
                .filter(|(paused, _, _)| *paused < b)
                .fold(a, |a, (_, _, resumed)| a.max(*resumed));
            if a >= b {
                continue;
            }
            let mut bound = base;
            for &(s, e) in input.store_wide {
                if s < b && a < e {
                    bound += 2 * Duration::from_nanos(e - s);
                }
            }
            for f in input.faults.iter().filter(|f| f.kind == Kind::Slow) {
                if f.start < b && a < f.end {
                    bound += Duration::from_nanos(f.end - f.start) + f.added_latency;
                }
            }
            let gap = ms(a, b);
            let bound_ms = bound.as_secs_f64() * 1e3;
            fig.p7_gaps += 1;
            let room = bound_ms - gap;
            if fig.p7_least_room.is_none_or(|r| room < r) {
                fig.p7_least_room = Some(room);
                fig.p7_largest = Some((gap, bound_ms, key.to_string()));
            }
            if gap > bound_ms {
                v.push(format!(
                    "P7: {key}: no run for {gap:.0} ms (bound {bound_ms:.0} ms), from {:.1} s",
                    ms(input.observed_until, a) / 1e3
                ));
            }
        }
    }

    // --- P8 pause --------------------------------------------------------------------------
    let retry = RETRY_EVERY.as_nanos() as u64;
    let mut restarts = std::collections::BTreeSet::new();
    for (key, list) in &windows {
        let runs = by_key.get(key).map(Vec::as_slice).unwrap_or_default();
        for &(paused, resume_sent, _) in list {
            fig.p8_windows += 1;
            restarts.extend(
                input
                    .faults
                    .iter()
                    .filter(|f| f.kind == Kind::Kill && paused < f.start && f.start < resume_sent)
                    .map(|f| f.start),
            );
            for run in runs.iter().filter(|r| !r.triggered) {
                let t = run.committed.or(run.body).unwrap_or(0);
                if t <= paused || t >= resume_sent {
                    continue;
                }
                if t <= paused + retry {
                    fig.p8_in_flight += 1;
                } else {
                    fig.p8_after += 1;
                    v.push(format!(
                        "P8: {key}: {}'s run (epoch {}) started {:.0} ms after the pause was committed",
                        run.node,
                        run.epoch,
                        ms(paused, t)
                    ));
                }
            }
        }
    }

    fig.p8_restarts = restarts.len();

    // --- Triggers run once -----------------------------------------------------------------
    let triggers: Vec<&Event> = input
        .events
        .iter()
        .filter(|e| e.command == Command::Trigger && e.error.is_none())
        .collect();
    let serve_within = (INTERVAL + TTL + RETRY_EVERY + Duration::from_secs(1)).as_nanos() as u64;
    for (i, trigger) in triggers.iter().enumerate() {
        for key in &trigger.keys {
            fig.triggers += 1;
            let until = triggers[i + 1..]
                .iter()
                .find(|t| t.keys.contains(key))
                .map_or(u64::MAX, |t| t.sent);
            let from = trigger.sent.saturating_sub(ROUNDING.as_nanos() as u64);
            let served = by_key
                .get(key.as_str())
                .into_iter()
                .flatten()
                .filter(|r| r.triggered && r.committed.is_some_and(|t| from <= t && t < until))
                .count();
            // A store that forgets its records (a restart without persistence) forgets a
            // trigger no run has served yet, as it forgets a pause.
            let forgotten = input.faults.iter().any(|f| {
                f.forgets && trigger.sent <= f.start && f.start < trigger.sent + serve_within
            });
            match served {
                1 => {}
                0 if trigger.sent + serve_within > input.observed_until => {
                    fig.triggers_pending += 1
                }
                0 if forgotten => fig.triggers_forgotten += 1,
                n => v.push(format!(
                    "trigger of {} by {} at {:.1} s: {key} ran {n} times for it (once expected)",
                    trigger.job,
                    trigger.by,
                    ms(input.observed_until, trigger.sent) / 1e3
                )),
            }
        }
    }
    fig
}

impl Figures {
    pub fn report(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "cluster schedule: {} runs of keys checked ({} committed starts whose body never began), {} triggered",
            self.runs, self.committed_only, self.triggered_runs
        );
        let interval_ms = INTERVAL.as_millis();
        match &self.p6_smallest {
            Some((spacing, least, key)) => {
                let _ = writeln!(
                    out,
                    "P6: {} pairs; smallest spacing {spacing:.1} ms ({key}) vs interval − ε = {least:.1} ms (interval {interval_ms} ms, ε = ttl/10 + 2 ms + 50 ms + that start's round trip); least room {:.1} ms",
                    self.p6_pairs,
                    self.p6_smallest_margin.unwrap_or(f64::NAN)
                );
            }
            None => {
                let _ = writeln!(out, "P6: no pairs");
            }
        }
        if self.p6_frozen > 0 {
            let _ = writeln!(
                out,
                "  pairs with a run whose node froze between its tick and its body (stale, fenced): {}",
                self.p6_frozen
            );
        }
        if !self.p6_forgotten.is_empty() {
            let smallest = self
                .p6_forgotten
                .iter()
                .copied()
                .fold(f64::INFINITY, f64::min);
            let _ = writeln!(
                out,
                "  pairs across a restart that forgot the schedule (not P6's to hold): {}, smallest {smallest:.1} ms",
                self.p6_forgotten.len()
            );
        }
        if let Some((gap, bound, key)) = &self.p7_largest {
            let _ = writeln!(
                out,
                "P7: {} gaps (a run's start to the next one's tick); the closest to its bound: {gap:.0} ms ({key}) vs {bound:.0} ms (interval + ttl + retry + {} ms slack, + 2 × a store-wide fault or stall, + a slowed store's length and latency)",
                self.p7_gaps,
                P7_SLACK.as_millis()
            );
        }
        let _ = writeln!(
            out,
            "P8: {} key pauses ({} node restarts inside them); runs started after a pause committed: {} within one retry period (allowed), {} after it",
            self.p8_windows, self.p8_restarts, self.p8_in_flight, self.p8_after
        );
        let _ = writeln!(
            out,
            "triggers: {} keys triggered, each ran once ({} still pending at the end, {} forgotten by a store restart before a run served them)",
            self.triggers, self.triggers_pending, self.triggers_forgotten
        );
    }
}
