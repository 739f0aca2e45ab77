//! Nodes whose clocks are not the host's: Debian's libfaketime (package `faketime`), preloaded
//! into node processes, is the proof behind "no clock synchronisation needed".
//!
//! Of the first nodes of a run, one runs 5% fast and one 5% slow (both its clocks: a fast
//! crystal moves the monotonic clock and the wall clock alike), and one keeps the host's
//! monotonic clock but has its wall clock stepped by an hour forward and back during the run, as
//! an NTP step would. Leases are timed by the store's clock and each node's monotonic clock
//! (DESIGN's safety argument, whose margin covers a drift rate of 10%), and interval jobs follow
//! the cluster's grid in store time: no property may notice.
//!
//! The checker's own clock ([`crate::clock`]) reads the kernel directly, so the times the
//! nodes print stay the host's even under libfaketime. A store that keeps no clock of its own
//! (SQLite, whose time is each node process's wall clock) runs with the host's clocks only:
//! [`Backend::own_clock`](crate::backend::Backend::own_clock).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::clock::mono_ns;
use crate::lines::Line;

/// Where Debian's `faketime` package puts the library.
const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// The wall clock steps of the jumping node, in order, as libfaketime offsets.
pub const JUMPS: [&str; 3] = ["+1h", "-1h", "+0"];

/// The clock a node process runs with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NodeClock {
    Host,
    /// Both clocks run at this rate of the host's.
    Rate(f64),
    /// The wall clock steps (see [`JUMPS`]); the monotonic clock is the host's.
    Jumping,
}

impl NodeClock {
    /// The clock of the `index`th node started (1-based): the first four cover every kind.
    pub fn of_node(index: usize) -> NodeClock {
        match index {
            2 => NodeClock::Rate(1.05),
            3 => NodeClock::Rate(0.95),
            4 => NodeClock::Jumping,
            _ => NodeClock::Host,
        }
    }
}

impl std::fmt::Display for NodeClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NodeClock::Host => f.write_str("the host's clocks"),
            NodeClock::Rate(rate) if *rate > 1.0 => write!(f, "{:.0}% fast", (rate - 1.0) * 100.0),
            NodeClock::Rate(rate) => write!(f, "{:.0}% slow", (1.0 - rate) * 100.0),
            NodeClock::Jumping => f.write_str("wall clock stepped ±1 h"),
        }
    }
}

/// The run's skewed clocks: where the jumping nodes read their wall clocks' offsets from.
#[derive(Clone)]
pub struct Skew {
    dir: PathBuf,
}

impl Skew {
    /// `None` when the store keeps no clock of its own, or libfaketime is missing (which fails
    /// under CI, whose `.ci/run` installs it, and is said plainly elsewhere).
    pub fn new(own_clock: bool, dir: &Path, label: &str) -> Option<Skew> {
        if !own_clock {
            eprintln!(
                "chaos {label}: every node on the host's clocks (the store's time is theirs)"
            );
            return None;
        }
        if !Path::new(LIBFAKETIME).exists() {
            assert!(
                std::env::var_os("CI").is_none(),
                "chaos {label}: {LIBFAKETIME} is missing: install Debian's faketime package"
            );
            eprintln!(
                "chaos {label}: SKIPPED skewed node clocks ({LIBFAKETIME} is missing: install faketime)"
            );
            return None;
        }
        Some(Skew {
            dir: dir.to_owned(),
        })
    }

    fn offset_file(&self, node: &str) -> PathBuf {
        self.dir.join(format!("{node}.faketime"))
    }

    /// The environment that gives node `node` its clock.
    pub fn env(&self, node: &str, clock: NodeClock) -> Vec<(&'static str, String)> {
        let spec = match clock {
            NodeClock::Host => return Vec::new(),
            NodeClock::Rate(rate) => vec![("FAKETIME", format!("+0 x{rate}"))],
            NodeClock::Jumping => {
                let file = self.offset_file(node);
                std::fs::write(&file, "+0\n").expect("write the node's clock offset");
                vec![
                    ("FAKETIME_TIMESTAMP_FILE", file.display().to_string()),
                    // Read again at most a second after it changes.
                    ("FAKETIME_CACHE_DURATION", "1".to_owned()),
                    ("FAKETIME_DONT_FAKE_MONOTONIC", "1".to_owned()),
                ]
            }
        };
        [("LD_PRELOAD", LIBFAKETIME.to_owned())]
            .into_iter()
            .chain(spec)
            .collect()
    }

    /// Steps the wall clock of the jumping node `node` through [`JUMPS`], one at each of
    /// `at` (monotonic ns), noting each step (when, offset) in `done` once made.
    pub fn jumps(
        &self,
        node: String,
        at: [u64; 3],
        done: Arc<Mutex<Vec<(u64, &'static str)>>>,
    ) -> tokio::task::JoinHandle<()> {
        let file = self.offset_file(&node);
        tokio::spawn(async move {
            for (at, offset) in at.into_iter().zip(JUMPS) {
                tokio::time::sleep(Duration::from_nanos(at.saturating_sub(mono_ns()))).await;
                std::fs::write(&file, format!("{offset}\n"))
                    .expect("write the node's clock offset");
                done.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((mono_ns(), offset));
            }
        })
    }
}

/// What the nodes' `CLOCK` lines show: a part of the report per skewed node, and a violation
/// for each whose clock was not what it was given (a run that skewed nothing proves nothing).
/// `steps` are the jumping node's wall clock steps, (when, offset); `stops` the windows in
/// which a node was stopped (SIGSTOP to SIGCONT), (node, from, to), during which it reads no
/// clock.
pub fn observed(
    lines: &[Line],
    clocks: &[(&str, NodeClock)],
    steps: &[(u64, &str)],
    stops: &[(&str, u64, u64)],
) -> (Vec<String>, Vec<String>) {
    let (mut seen, mut violations) = (Vec::new(), Vec::new());
    for &(node, clock) in clocks.iter().filter(|(_, c)| *c != NodeClock::Host) {
        let readings: Vec<(u64, u64, i64)> = lines
            .iter()
            .filter_map(|line| match line {
                Line::Clock {
                    node: n,
                    t,
                    own,
                    wall_offset_ms,
                } if n == node => Some((*t, *own, *wall_offset_ms)),
                _ => None,
            })
            .collect();
        let (Some(first), Some(last)) = (readings.first(), readings.last()) else {
            continue;
        };
        if last.0 < first.0 + 3_000_000_000 {
            // Killed too soon after it started to tell.
            continue;
        }
        let rate = (last.1 - first.1) as f64 / (last.0 - first.0) as f64;
        let wanted = match clock {
            NodeClock::Rate(rate) => rate,
            _ => 1.0,
        };
        if (rate - wanted).abs() > 0.01 {
            violations.push(format!(
                "clocks: {node} was to run ×{wanted:.3} of the host's clock, but ran ×{rate:.3}"
            ));
        }
        let mut part = format!("{node} {clock} (×{rate:.3} seen");
        if clock == NodeClock::Jumping {
            // A step is read within a second and printed within another, counted from when
            // the node could first read it: a node stopped across the step reads it only
            // once it is continued. Only readings before the next step show this one; a step
            // with none (its node was stopped until just before the next) cannot be told.
            for (index, &(at, offset)) in steps.iter().enumerate() {
                let next_step = steps.get(index + 1).map_or(u64::MAX, |&(next, _)| next);
                let readable = stops
                    .iter()
                    .filter(|(n, from, to)| *n == node && *from <= at + 2_500_000_000 && at < *to)
                    .map(|(_, _, to)| *to)
                    .fold(at, u64::max);
                let after: Vec<i64> = readings
                    .iter()
                    .filter(|r| r.0 > readable + 2_500_000_000 && r.0 < next_step)
                    .map(|r| r.2)
                    .collect();
                let Some(&shown) = after.first() else {
                    continue;
                };
                let hours = shown as f64 / 3_600_000.0;
                part.push_str(&format!(", {offset} → {hours:+.2} h"));
                let wanted = match offset {
                    "+1h" => 1.0,
                    "-1h" => -1.0,
                    _ => 0.0,
                };
                if (hours - wanted).abs() > 0.01 {
                    violations.push(format!(
                        "clocks: {node}'s wall clock was stepped to {offset}, but was {hours:+.2} h off"
                    ));
                }
            }
        }
        part.push(')');
        seen.push(part);
    }
    (seen, violations)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;
    const HOUR_MS: i64 = 3_600_000;

    /// The jumping node `n4`'s readings, one a second from 0 to 20 s, each with the offset a
    /// function of its time gives.
    fn readings(offset_at: impl Fn(u64) -> i64) -> Vec<Line> {
        (0..=20)
            .map(|second| Line::Clock {
                node: "n4".to_owned(),
                t: second * S + S / 2,
                own: second * S + S / 2,
                wall_offset_ms: offset_at(second * S + S / 2),
            })
            .collect()
    }

    fn violations(lines: &[Line], stops: &[(&str, u64, u64)]) -> Vec<String> {
        let steps = [(5 * S, "+1h"), (10 * S, "-1h"), (15 * S, "+0")];
        observed(lines, &[("n4", NodeClock::Jumping)], &steps, stops).1
    }

    #[test]
    fn a_step_is_checked_only_by_readings_before_the_next_one() {
        let stepped = |t: u64| match t {
            t if t < 5 * S => 0,
            t if t < 10 * S => HOUR_MS,
            t if t < 15 * S => -HOUR_MS,
            _ => 0,
        };
        assert!(violations(&readings(stepped), &[]).is_empty());
        // Stopped until 7 s: the +1h step has no reading 2.5 s after that and before the next
        // step, so it cannot be told (CI's seed 1796310836126895403 reported it as wrong).
        let stopped = [("n4", 4 * S, 7 * S + S / 2)];
        assert!(violations(&readings(stepped), &stopped).is_empty());
        // A step the node never took is a violation.
        let missed_minus = |t: u64| {
            if (5 * S..10 * S).contains(&t) {
                HOUR_MS
            } else {
                0
            }
        };
        assert_eq!(violations(&readings(missed_minus), &[]).len(), 1);
    }
}
