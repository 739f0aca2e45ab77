//! The checker: reads what a chaos run left (the fenced journal, the nodes' lines, the faults
//! and operator commands, the store's lease rows and run history, the processes' exits) and
//! states every breach of DESIGN's P1–P8 (P6–P8 in `schedule.rs`), plus the figures
//! docs/RELIABILITY.md reports.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::Duration;

use loopjob::store::{LeaseStatus, RunRecord};

use crate::clock::{StoreTime, ms};
use crate::faults::{Fault, Kind};
use crate::harness::NodeOutcome;
use crate::journal::Written;
use crate::lines::{Counters, Line};
use crate::node::{INTERVAL, PARTITIONS, RENEW_EVERY, RETRY_EVERY, TTL};
use crate::operator::{Command, Event, Source};
use crate::schedule;
use crate::skew::{self, NodeClock};

/// P4: a run in flight when its process was frozen past its lease's deadline must have stopped
/// (token cancelled, or ended) within this long of SIGCONT. DESIGN says "a few milliseconds";
/// the assertion leaves room for a loaded 2-core CI host, and the report gives the real figures.
pub const P4_BOUND: Duration = Duration::from_millis(50);

/// P5 is measured from a node's `on_acquired` line, which trails the grant by the event
/// channel and stdout; and two cores run the database, the nodes and the harness. This slack is
/// added to every takeover bound, and the report shows how much of it was used.
pub const P5_SLACK: Duration = Duration::from_millis(250);

/// How far a node's `on_acquired` line may trail the grant it reports (the event channel and
/// stdout, on a loaded host): two grants of a key this close may show in either order (a
/// partition handed on at once, say).
pub const LINE_LAG: Duration = Duration::from_millis(50);

/// Everything the checker reads.
pub struct Evidence {
    pub backend: &'static str,
    pub seed: u64,
    pub run_secs: f64,
    pub journal: Vec<Written>,
    pub lines: Vec<Line>,
    pub bad_lines: Vec<String>,
    pub faults: Vec<Fault>,
    pub kinds: Vec<Kind>,
    pub events: Vec<Event>,
    /// Every key's runs, as the store's history keeps them.
    pub history: Vec<RunRecord>,
    /// Store stalls the suite did not inject, (start, end): see `stalls.rs`.
    pub stalls: Vec<(u64, u64)>,
    /// The jumping node's wall clock steps: (when, the offset it stepped to).
    pub clock_jumps: Vec<(u64, &'static str)>,
    pub store_time: StoreTime,
    /// When `owners_at_end` was read, just before shutdown.
    pub observed_until: u64,
    pub outcomes: Vec<NodeOutcome>,
    pub store_rows: Result<Vec<LeaseStatus>, String>,
    /// key → (node, epoch) just before shutdown.
    pub owners_at_end: BTreeMap<String, (String, u64)>,
    pub expected_keys: Vec<String>,
}

/// What the checker found.
#[derive(Default)]
pub struct Report {
    pub violations: Vec<String>,
    pub text: String,
}

/// How much of `[from, to)` the intervals cover (overlaps counted once each).
fn overlap(intervals: &[(u64, u64)], from: u64, to: u64) -> Duration {
    let ns: u64 = intervals
        .iter()
        .map(|&(s, t)| t.min(to).saturating_sub(s.max(from)))
        .sum();
    Duration::from_nanos(ns)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn stats(mut v: Vec<f64>) -> String {
    if v.is_empty() {
        return "n=0".to_owned();
    }
    v.sort_by(f64::total_cmp);
    format!(
        "n={} p50={:.1} p99={:.1} max={:.1}",
        v.len(),
        percentile(&v, 0.5),
        percentile(&v, 0.99),
        v[v.len() - 1]
    )
}

pub fn check(e: &Evidence) -> Report {
    let mut r = Report::default();
    let mut out = String::new();
    let v = &mut r.violations;
    let pauses: Vec<(&str, u64, u64)> = e
        .faults
        .iter()
        .filter(|f| f.kind == Kind::Stop)
        .filter_map(|f| Some((f.node.as_deref()?, f.start, f.end)))
        .collect();
    let paused_during = |node: &str, from: u64, to: u64| {
        pauses
            .iter()
            .any(|&(n, s, c)| n == node && s < to && from < c)
    };
    // A store that forgot its leases (a restart without persistence) lets a node take a key
    // whose old holder still believes in it until its next renewal: like a pause, only
    // fencing keeps the two runs apart.
    let forgotten_during = |from: u64, to: u64| {
        e.faults
            .iter()
            .any(|f| f.forgets && f.start < to && from < f.end + RENEW_EVERY.as_nanos() as u64)
    };

    // --- Loud failure on an empty run -----------------------------------------------------
    if e.faults.is_empty() {
        v.push("no fault was injected: this run proves nothing".to_owned());
    }
    if e.journal.is_empty() {
        v.push("no run was journaled: this run proves nothing".to_owned());
    }
    for kind in &e.kinds {
        if !e.faults.iter().any(|f| f.kind == *kind) {
            v.push(format!(
                "no {kind} fault was injected (run longer, or check the harness)"
            ));
        }
    }
    for (command, source) in [
        (Command::Pause, Source::Node),
        (Command::Pause, Source::Store),
        (Command::Resume, Source::Node),
        (Command::Resume, Source::Store),
        (Command::Trigger, Source::Node),
        (Command::Trigger, Source::Store),
    ] {
        let from_store = source == Source::Store;
        if !e
            .events
            .iter()
            .any(|ev| ev.command == command && (ev.by == "store") == from_store)
        {
            v.push(format!(
                "no {command} was given from {} (run longer, or check the harness)",
                if from_store {
                    "the store URL"
                } else {
                    "a node"
                }
            ));
        }
    }
    for ev in e.events.iter().filter(|ev| ev.error.is_some()) {
        v.push(format!(
            "{} of {} by {} failed: {}",
            ev.command,
            ev.job,
            ev.by,
            ev.error.as_deref().unwrap_or_default()
        ));
    }
    for bad in &e.bad_lines {
        v.push(bad.clone());
    }

    // --- P2 fenced writes: replay every key's writes in the journal's order ----------------
    let mut by_key: BTreeMap<&str, Vec<&Written>> = BTreeMap::new();
    for w in &e.journal {
        by_key.entry(&w.entry.key).or_default().push(w);
    }
    let mut stale_rejected = 0usize;
    for (key, writes) in &mut by_key {
        writes.sort_by_key(|w| w.key_seq);
        let mut highest: Option<u64> = None;
        for (i, w) in writes.iter().enumerate() {
            if w.key_seq != i as u64 + 1 {
                v.push(format!(
                    "P2: {key}: journal sequence has a gap at {}",
                    w.key_seq
                ));
            }
            let fresh = highest.is_none_or(|h| w.entry.epoch >= h);
            if fresh != w.accepted {
                v.push(format!(
                    "P2: {key}: write #{} epoch {} by {} was {} with high-water {:?}",
                    w.key_seq,
                    w.entry.epoch,
                    w.entry.node,
                    if w.accepted { "accepted" } else { "rejected" },
                    highest
                ));
            }
            if fresh {
                highest = Some(w.entry.epoch);
            } else {
                stale_rejected += 1;
            }
        }
    }

    // --- P1 store exclusivity ---------------------------------------------------------------
    let mut holders: BTreeMap<(&str, u64), BTreeSet<&str>> = BTreeMap::new();
    let mut acqs: BTreeMap<&str, Vec<(u64, u64, &str)>> = BTreeMap::new();
    for line in &e.lines {
        if let Line::Acq {
            node,
            key,
            epoch,
            t,
        } = line
        {
            holders.entry((key, *epoch)).or_default().insert(node);
            acqs.entry(key).or_default().push((*epoch, *t, node));
        }
    }
    for w in &e.journal {
        holders
            .entry((&w.entry.key, w.entry.epoch))
            .or_default()
            .insert(&w.entry.node);
    }
    for ((key, epoch), nodes) in &holders {
        if nodes.len() > 1 {
            v.push(format!(
                "P1: {key} epoch {epoch} was held by several nodes: {nodes:?}"
            ));
        }
    }
    let mut grants = 0usize;
    for (key, list) in &mut acqs {
        list.sort();
        grants += list.len();
        for pair in list.windows(2) {
            let ((e1, t1, n1), (e2, t2, _)) = (pair[0], pair[1]);
            if e1 == e2 {
                v.push(format!("P1: {key} epoch {e1} was granted twice"));
            } else if t1 > t2 + LINE_LAG.as_nanos() as u64
                && !paused_during(n1, t2.saturating_sub(100_000_000), t1)
            {
                v.push(format!(
                    "P1: {key}: epoch {e2} was reported {:.1} ms before epoch {e1}",
                    ms(t2, t1)
                ));
            }
        }
    }
    match &e.store_rows {
        Ok(rows) => {
            for (key, list) in &acqs {
                let seen_max = list.iter().map(|a| a.0).max().unwrap_or(0);
                match rows.iter().find(|row| row.lease.key == *key) {
                    Some(row) if row.lease.epoch >= seen_max => {}
                    Some(row) => v.push(format!(
                        "P1: {key}: the store's row has epoch {} below epoch {seen_max} a node held",
                        row.lease.epoch
                    )),
                    None => v.push(format!("P1: {key}: no row in the store")),
                }
            }
        }
        Err(error) => v.push(format!("reading the store's lease rows failed: {error}")),
    }

    // --- P3 no overlap without pauses -------------------------------------------------------
    let mut runs_by_key: BTreeMap<&str, Vec<&Written>> = BTreeMap::new();
    for w in &e.journal {
        runs_by_key.entry(&w.entry.key).or_default().push(w);
    }
    let (mut paused_overlaps, mut paused_fenced_rejected, mut paused_fenced_earlier) = (0, 0, 0);
    for (key, runs) in &mut runs_by_key {
        runs.sort_by_key(|w| w.entry.start_ns);
        for (i, a) in runs.iter().enumerate() {
            for b in runs[i + 1..].iter() {
                if b.entry.start_ns >= a.entry.end_ns {
                    break;
                }
                let (a_, b_) = (&a.entry, &b.entry);
                let paused = paused_during(&a_.node, a_.start_ns, a_.end_ns)
                    || paused_during(&b_.node, b_.start_ns, b_.end_ns)
                    || forgotten_during(a_.start_ns, a_.end_ns);
                let overlap = ms(b_.start_ns, a_.end_ns.min(b_.end_ns));
                if !paused {
                    v.push(format!(
                        "P3: {key}: run {} of {} (epoch {}) and run {} of {} (epoch {}) overlap by {overlap:.1} ms, neither paused",
                        a_.run_id, a_.node, a_.epoch, b_.run_id, b_.node, b_.epoch
                    ));
                    continue;
                }
                paused_overlaps += 1;
                let (old, new) = if a_.epoch < b_.epoch { (a, b) } else { (b, a) };
                if old.entry.epoch == new.entry.epoch {
                    v.push(format!(
                        "P3: {key}: overlapping runs share epoch {}",
                        old.entry.epoch
                    ));
                } else if !old.accepted {
                    paused_fenced_rejected += 1;
                } else if old.key_seq < new.key_seq {
                    paused_fenced_earlier += 1;
                } else {
                    v.push(format!(
                        "P3: {key}: paused run of {} (epoch {}) wrote after epoch {} and was accepted",
                        old.entry.node, old.entry.epoch, new.entry.epoch
                    ));
                }
            }
        }
    }

    // --- P4 prompt stop after SIGCONT -------------------------------------------------------
    let lost_at: BTreeMap<(&str, &str, u64), u64> = e
        .lines
        .iter()
        .filter_map(|l| match l {
            Line::Lost {
                node,
                key,
                epoch,
                t,
            } => Some(((node.as_str(), key.as_str(), *epoch), *t)),
            _ => None,
        })
        .collect();
    let cancel_at: BTreeMap<(&str, &str, u64), u64> = e
        .lines
        .iter()
        .filter_map(|l| match l {
            Line::Cancel { node, job, run, t } => Some(((node.as_str(), job.as_str(), *run), *t)),
            _ => None,
        })
        .collect();
    let (mut lease_lost_ms, mut run_stop_ms, mut token_cancel_ms) = (vec![], vec![], vec![]);
    for f in e.faults.iter().filter(|f| f.kind == Kind::Stop) {
        let Some(node) = f.node.as_deref() else {
            continue;
        };
        for (key, epoch) in &f.held {
            match lost_at.get(&(node, key.as_str(), *epoch)) {
                Some(&t) if t >= f.end => lease_lost_ms.push(ms(f.end, t)),
                Some(_) => {} // lost before the pause (a renew was refused just before)
                None => v.push(format!(
                    "P4: {node} never marked {key} epoch {epoch} lost after its pause"
                )),
            }
        }
        let mut in_flight = BTreeSet::new();
        for w in e.journal.iter().filter(|w| w.entry.node == node) {
            let run = &w.entry;
            if run.start_ns < f.start && run.end_ns >= f.end {
                in_flight.insert((run.job.as_str(), run.run_id, run.end_ns, run.cancelled));
            }
        }
        for (job, run_id, end, saw_cancel) in in_flight {
            // The freeze outlasted the lease: the run, woken, must have seen its cancellation
            // before it finished its step (the context checks the deadline itself).
            if !saw_cancel {
                v.push(format!(
                    "P4: {node} {job} run {run_id} finished its step after SIGCONT without seeing that its lease's deadline had passed"
                ));
            }
            let cancelled = cancel_at.get(&(node, job, run_id)).copied();
            if let Some(t) = cancelled {
                token_cancel_ms.push(ms(f.end, t));
            }
            let stopped = cancelled.map_or(end, |t| t.min(end));
            let latency = ms(f.end, stopped);
            run_stop_ms.push(latency);
            if latency > P4_BOUND.as_secs_f64() * 1e3 {
                v.push(format!(
                    "P4: {node} {job} run {run_id} kept running {latency:.1} ms after SIGCONT past its lease's deadline"
                ));
            }
        }
    }

    // --- P5 liveness ------------------------------------------------------------------------
    let mut takeover: BTreeMap<(Kind, &str), Vec<f64>> = BTreeMap::new();
    let mut kept: BTreeMap<Kind, usize> = BTreeMap::new();
    let mut slack_used: f64 = 0.0;
    let mut frozen_writers = 0usize;
    // The store stalls that no injected store-wide fault explains.
    let uninjected: Vec<(u64, u64)> = e
        .stalls
        .iter()
        .copied()
        .filter(|&(s, t)| {
            !e.faults
                .iter()
                .any(|f| f.kind.is_store_wide() && f.start < t && s < f.end)
        })
        .collect();
    let mut store_wide: Vec<(u64, u64)> = uninjected.clone();
    for (index, f) in e.faults.iter().enumerate() {
        // A takeover belongs to this fault only if it came before the next fault began, and
        // before the nodes were shut down: at shutdown a holder releases its keys and another
        // node, not yet stopped, may take one, which is no takeover from the fault (CI: etcd,
        // seed 1796561897215041967, a key held through a leader-kill to the end).
        let window_end = e
            .faults
            .get(index + 1)
            .map_or(e.observed_until, |next| next.start);
        // A node frozen inside a write transaction can stop the store for everyone: on SQLite
        // it holds the file's write lock, which no server can take back; on PostgreSQL it was
        // seen once too (see docs/RELIABILITY.md). Such a freeze is store-wide, like a held
        // lock, and is recognised by what it did: no lease was granted to anyone while it
        // lasted, and another node lost a lease of its own to stalled renewals. Its takeover
        // is timed from SIGCONT.
        let froze_the_store = f.kind == Kind::Stop
            && !acqs
                .values()
                .flatten()
                .any(|(_, t, _)| *t > f.start && *t < f.end)
            && e.lines.iter().any(|l| {
                matches!(l, Line::Lost { node, t, .. }
                    if Some(node.as_str()) != f.node.as_deref()
                        && *t > f.start
                        && *t < f.end + TTL.as_nanos() as u64)
            });
        if froze_the_store {
            frozen_writers += 1;
        }
        let is_store_wide = f.kind.is_store_wide() || froze_the_store;
        if is_store_wide {
            store_wide.push((f.start, f.end));
        }
        let from = if is_store_wide { f.end } else { f.start };
        let bound = if f.forgets {
            // The store is back, empty: each holder learns it lost its leases at its next
            // renewal, and they are taken again at the next retry. A holder whose connection
            // broke in the restart may wait on its client's reconnection first, which sends
            // calls to a dead connection through the proxy until it notices: one more retry
            // period with the elector's backoff (two), measured at 1.4 s once
            // (docs/RELIABILITY.md, item 11).
            Duration::from_nanos(f.end - f.start) + RENEW_EVERY + 3 * RETRY_EVERY
        } else if is_store_wide {
            // The database is back: the elector's backoff (doubling from retry_every, and never
            // longer than the outage it grew during) then one retry.
            Duration::from_nanos(f.end - f.start) + RETRY_EVERY
        } else {
            TTL + RETRY_EVERY + f.added_latency + f.expiry_lag
        };
        // A stall of the store the suite did not inject, while the key waited for its new
        // owner, holds every node back as an outage would: the bound grows by twice its
        // length (the outage, and the backoff it leaves).
        let bound = bound
            + 2 * overlap(
                &uninjected,
                from,
                from + (bound + P5_SLACK).as_nanos() as u64,
            );
        for (key, epoch) in &f.held {
            let class = if key.contains('#') {
                "partition"
            } else {
                "single"
            };
            let bound_ms = bound.as_secs_f64() * 1e3;
            let next = acqs.get(key.as_str()).and_then(|l| {
                l.iter()
                    .find(|(e2, t, _)| e2 > epoch && *t >= f.start && *t < window_end)
            });
            // Still held at that epoch just before shutdown: the fault did not cost the lease (its
            // release at shutdown is not a loss to take over from).
            let held_to_the_end = e
                .owners_at_end
                .get(key.as_str())
                .is_some_and(|(_, e2)| e2 == epoch);
            let lost_by_holder = !held_to_the_end
                && e.lines.iter().any(|l| {
                    matches!(l, Line::Lost { key: k, epoch: e2, t, .. }
                        if k == key && e2 == epoch && *t < window_end)
                });
            // A slowed holder keeps renewing, more slowly, and so keeps its lease for a while:
            // the key is owned until the holder itself gives it up, so the time to take over is
            // counted from that moment. (A killed, frozen or cut-off holder loses it at once.)
            let from = match f.kind {
                Kind::Slow => e
                    .lines
                    .iter()
                    .find_map(|l| match l {
                        Line::Lost {
                            key: k,
                            epoch: e2,
                            t,
                            ..
                        } if k == key && e2 == epoch && *t >= f.start && *t < window_end => {
                            Some(*t)
                        }
                        _ => None,
                    })
                    .unwrap_or(from),
                _ => from,
            };
            match next {
                Some(&(_, t, _)) => {
                    let took = ms(from, t).max(0.0);
                    takeover.entry((f.kind, class)).or_default().push(took);
                    slack_used = slack_used.max(took - bound_ms);
                    if took > bound_ms + P5_SLACK.as_secs_f64() * 1e3 {
                        v.push(format!(
                            "P5: after {} of {:?}, {key} was owned again only after {took:.0} ms (bound {bound_ms:.0} ms + {} ms slack)",
                            f.kind,
                            f.node,
                            P5_SLACK.as_millis()
                        ));
                    }
                }
                None if f.kind != Kind::Kill && !lost_by_holder => {
                    *kept.entry(f.kind).or_default() += 1;
                }
                None => v.push(format!(
                    "P5: after {} of {:?}, {key} (epoch {epoch}) was never owned again",
                    f.kind, f.node
                )),
            }
        }
    }
    for key in &e.expected_keys {
        if !e.owners_at_end.contains_key(key) {
            v.push(format!("P5: {key} had no owner at the end of the run"));
        }
    }
    // Every node reaches the store again after its faults: the last read each surviving node
    // made through its store succeeded. (A Redis node whose connection never came back after a
    // cut failed every call for the rest of its run.)
    let mut last_probe: BTreeMap<&str, (u64, bool)> = BTreeMap::new();
    let (mut probes_ok, mut probes_failed) = (0usize, 0usize);
    for line in &e.lines {
        if let Line::Store { node, ok, t } = line {
            if *ok {
                probes_ok += 1;
            } else {
                probes_failed += 1;
            }
            if last_probe.get(node.as_str()).is_none_or(|(t0, _)| t > t0) {
                last_probe.insert(node, (*t, *ok));
            }
        }
    }
    for o in e.outcomes.iter().filter(|o| !o.killed) {
        match last_probe.get(o.name.as_str()) {
            Some((_, true)) => {}
            Some((t, false)) => v.push(format!(
                "P5: {}'s last store read ({:.1} s before the end) failed: it did not get back to the store",
                o.name,
                ms(*t, e.observed_until) / 1e3
            )),
            None => v.push(format!("P5: {} never read the store", o.name)),
        }
    }

    // --- P6–P8 the cluster schedule ---------------------------------------------------------
    let schedule = schedule::check(
        &schedule::Input {
            lines: &e.lines,
            history: &e.history,
            faults: &e.faults,
            store_wide: &store_wide,
            events: &e.events,
            store_time: e.store_time,
            observed_until: e.observed_until,
        },
        v,
    );

    // --- Processes and tick accounting ------------------------------------------------------
    let mut starts: BTreeMap<&str, u64> = BTreeMap::new();
    let mut exits: BTreeMap<(&str, &str), (Counters, u64)> = BTreeMap::new();
    for line in &e.lines {
        match line {
            Line::Start { node, t } => {
                starts.insert(node, *t);
            }
            Line::Exit {
                node,
                job,
                counters,
                t,
            } => {
                exits.insert((node, job), (*counters, *t));
            }
            Line::Jerr {
                node,
                key,
                epoch,
                error,
            } => v.push(format!(
                "journal write of {node} {key} epoch {epoch} failed: {error}"
            )),
            _ => {}
        }
    }
    let mut journaled_runs: BTreeMap<(&str, &str), BTreeSet<u64>> = BTreeMap::new();
    for w in &e.journal {
        journaled_runs
            .entry((&w.entry.node, &w.entry.job))
            .or_default()
            .insert(w.entry.run_id);
    }
    let (mut ticks_total, mut runs_total, mut skipped_total) = (0u64, 0u64, 0u64);
    for o in &e.outcomes {
        if o.stderr.contains("panicked") {
            let at = o.stderr.find("panicked").unwrap_or(0);
            let excerpt: String = o.stderr[at..].chars().take(300).collect();
            v.push(format!("{} panicked: {excerpt}", o.name));
        }
        if o.killed {
            continue;
        }
        match o.exit {
            Some(status) if status.success() => {}
            other => v.push(format!(
                "{} did not exit cleanly after SIGTERM: {other:?}",
                o.name
            )),
        }
        let Some(&start) = starts.get(o.name.as_str()) else {
            v.push(format!("{} never started its host", o.name));
            continue;
        };
        for (job, _) in crate::node::JOBS {
            let Some((c, end)) = exits.get(&(o.name.as_str(), job)).copied() else {
                v.push(format!("{} printed no counters for {job}", o.name));
                continue;
            };
            let expected = ((end - start) as f64 / INTERVAL.as_nanos() as f64).floor() as i64;
            let accounted = (c.runs + c.skipped + c.not_leader + c.missed) as i64;
            ticks_total += accounted as u64;
            runs_total += c.runs;
            skipped_total += c.skipped;
            // A guarded job ticks only while its node holds a key (its keys' cluster schedule
            // times it), so a node accounts for at most the ticks due while it ran; the ticks
            // between SIGTERM and the exit line are not ticked. Each key has its own grid, so
            // a node ticks the partitioned job for each partition it holds.
            let keys = if job == "part" {
                i64::from(PARTITIONS)
            } else {
                1
            };
            if accounted > keys * expected + 3 + (expected / 100) {
                v.push(format!(
                    "ticks: {} {job}: {accounted} ticks accounted (runs {} skipped {} not-leader {} missed {}) for ~{expected} due",
                    o.name, c.runs, c.skipped, c.not_leader, c.missed
                ));
            }
            let journaled = journaled_runs
                .get(&(o.name.as_str(), job))
                .map_or(0, |s| s.len() as u64);
            if journaled > c.runs || c.runs - journaled > 1 {
                v.push(format!(
                    "ticks: {} {job}: {} runs counted but {journaled} journaled",
                    o.name, c.runs
                ));
            }
            if c.panics + c.dropped + c.failures > 0 {
                v.push(format!(
                    "{} {job}: {} failures ({} panics, {} dropped)",
                    o.name, c.failures, c.panics, c.dropped
                ));
            }
        }
    }

    // --- The report -------------------------------------------------------------------------
    let mut by_kind: BTreeMap<Kind, usize> = BTreeMap::new();
    for f in &e.faults {
        *by_kind.entry(f.kind).or_default() += 1;
    }
    let runs: BTreeSet<(&str, &str, u64)> = e
        .journal
        .iter()
        .map(|w| (w.entry.node.as_str(), w.entry.job.as_str(), w.entry.run_id))
        .collect();
    let _ = writeln!(
        out,
        "chaos run: backend {} seed {} ({:.0} s)",
        e.backend, e.seed, e.run_secs
    );
    let _ = writeln!(
        out,
        "faults injected: {} ({})",
        e.faults.len(),
        by_kind
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let clocks: Vec<(&str, NodeClock)> = e
        .outcomes
        .iter()
        .map(|node| (node.name.as_str(), node.clock))
        .collect();
    let stops: Vec<(&str, u64, u64)> = e
        .faults
        .iter()
        .filter(|f| f.kind == Kind::Stop)
        .filter_map(|f| Some((f.node.as_deref()?, f.start, f.end)))
        .collect();
    let (skewed, wrong_clocks) = skew::observed(&e.lines, &clocks, &e.clock_jumps, &stops);
    v.extend(wrong_clocks);
    let _ = writeln!(
        out,
        "node clocks (libfaketime): {}",
        if skewed.is_empty() {
            "every node on the host's".to_owned()
        } else {
            skewed.join(", ")
        }
    );
    let _ = writeln!(
        out,
        "runs checked: {} ({} journal writes over {} keys); lease grants seen: {grants}",
        runs.len(),
        e.journal.len(),
        by_key.len()
    );
    let _ = writeln!(
        out,
        "P2: stale writes rejected: {stale_rejected}; P3: paused overlaps: {paused_overlaps} (stale write rejected {paused_fenced_rejected}, written before the newer epoch's {paused_fenced_earlier})"
    );
    let _ = writeln!(
        out,
        "ticks of graceful nodes: {ticks_total} accounted ({runs_total} runs, {skipped_total} skipped while running, rest not leader or missed)"
    );
    let _ = writeln!(
        out,
        "P5 takeover ms (per fault kind; node faults from the fault's start, store-wide from its end):"
    );
    for ((kind, class), times) in &takeover {
        let _ = writeln!(out, "  {kind:<9} {class:<9} {}", stats(times.clone()));
    }
    for (kind, n) in &kept {
        let _ = writeln!(
            out,
            "  {kind:<9} leases kept through the fault (no takeover needed): {n}"
        );
    }
    let _ = writeln!(
        out,
        "  every lease: largest excess over lease_ttl + retry_every (+ latency, + the store's expiry lag): {:.0} ms (slack {} ms)",
        slack_used.max(0.0),
        P5_SLACK.as_millis()
    );
    if frozen_writers > 0 {
        let _ = writeln!(
            out,
            "  sigstop of a node inside a write transaction that stalled the store (store-wide, timed from SIGCONT): {frozen_writers}"
        );
    }
    let longest = uninjected
        .iter()
        .map(|&(s, t)| ms(s, t))
        .fold(0.0, f64::max);
    let _ = writeln!(
        out,
        "store stalls the suite did not inject (a harness write over {} ms): {}, {:.0} ms in all, longest {longest:.0} ms",
        crate::stalls::STALL.as_millis(),
        uninjected.len(),
        uninjected
            .iter()
            .map(|&(s, t)| ms(s, t))
            .fold(0.0, |a, b| a + b)
    );
    let _ = writeln!(
        out,
        "store reads by the nodes (one a second): {probes_ok} ok, {probes_failed} failed (during faults); every surviving node's last one ok"
    );
    schedule.report(&mut out);
    let mut commands: BTreeMap<(Command, &str), usize> = BTreeMap::new();
    for ev in &e.events {
        let by = if ev.by == "store" {
            "store URL"
        } else {
            "node"
        };
        *commands.entry((ev.command, by)).or_default() += 1;
    }
    let _ = writeln!(
        out,
        "operator commands: {} ({} given again after a failed attempt)",
        commands
            .iter()
            .map(|((c, by), n)| format!("{c} by {by} {n}"))
            .collect::<Vec<_>>()
            .join(", "),
        e.events.iter().filter(|ev| ev.attempts > 1).count()
    );
    let _ = writeln!(
        out,
        "P4 after SIGCONT, ms: lease marked lost {}",
        stats(lease_lost_ms)
    );
    let _ = writeln!(
        out,
        "P4 after SIGCONT, ms: run token cancelled {}",
        stats(token_cancel_ms)
    );
    let _ = writeln!(
        out,
        "P4 after SIGCONT, ms: in-flight run stopped {}",
        stats(run_stop_ms)
    );
    let _ = writeln!(out, "violations: {}", r.violations.len());
    for violation in &r.violations {
        let _ = writeln!(out, "  {violation}");
    }
    r.text = out;
    r
}
