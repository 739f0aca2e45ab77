//! The `LJ` lines node processes print (see `node.rs`), parsed.

/// Counters a node prints per job when it exits.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counters {
    pub runs: u64,
    pub skipped: u64,
    pub not_leader: u64,
    pub missed: u64,
    pub failures: u64,
    pub panics: u64,
    pub dropped: u64,
}

#[derive(Debug, Clone)]
pub enum Line {
    Start {
        node: String,
        t: u64,
    },
    Acq {
        node: String,
        key: String,
        epoch: u64,
        t: u64,
    },
    Lost {
        node: String,
        key: String,
        epoch: u64,
        t: u64,
    },
    /// A run's body began: `tick` is when its tick asked for it, `t` when the body began.
    Run {
        node: String,
        tick: u64,
        t: u64,
        /// The leases it holds, (key, epoch).
        leases: Vec<(String, u64)>,
    },
    /// An operator's command given through the node's handle.
    Op {
        node: String,
        command: String,
        job: String,
        sent: u64,
        done: u64,
        /// `None` when it succeeded, else the error.
        error: Option<String>,
    },
    /// The node's periodic read of a schedule record through its store.
    Store {
        node: String,
        ok: bool,
        t: u64,
    },
    Cancel {
        node: String,
        job: String,
        run: u64,
        t: u64,
    },
    Jerr {
        node: String,
        key: String,
        epoch: u64,
        error: String,
    },
    Exit {
        node: String,
        job: String,
        counters: Counters,
        t: u64,
    },
    /// The node's own clocks beside the host's (`skew.rs`): its monotonic clock at the host's
    /// `t`, and its wall clock's distance from the host's in ms.
    Clock {
        node: String,
        t: u64,
        own: u64,
        wall_offset_ms: i64,
    },
}

impl Line {
    /// The line, if `text` is an `LJ` line; other output (the test harness's) is `None`.
    pub fn parse(text: &str) -> Option<Result<Line, String>> {
        // libtest prints `test chaos_node ... ` before the node's first line, without a newline.
        let at = text.find("LJ ")?;
        let rest = &text[at + 3..];
        Some(parse(rest).ok_or_else(|| format!("unreadable node line: {text}")))
    }
}

fn parse(rest: &str) -> Option<Line> {
    let f: Vec<&str> = rest.split(' ').collect();
    let s = |i: usize| f.get(i).map(|s| (*s).to_owned());
    let n = |i: usize| f.get(i).and_then(|s| s.parse::<u64>().ok());
    Some(match *f.first()? {
        "START" => Line::Start {
            node: s(1)?,
            t: n(3)?,
        },
        "ACQ" => Line::Acq {
            node: s(1)?,
            key: s(2)?,
            epoch: n(3)?,
            t: n(4)?,
        },
        "LOST" => Line::Lost {
            node: s(1)?,
            key: s(2)?,
            epoch: n(3)?,
            t: n(4)?,
        },
        "RUN" => Line::Run {
            node: s(1)?,
            tick: n(4)?,
            t: n(5)?,
            leases: match f.get(6) {
                None | Some(&"") => Vec::new(),
                Some(list) => list
                    .split(',')
                    .map(|lease| {
                        let (key, epoch) = lease.rsplit_once(':')?;
                        Some((key.to_owned(), epoch.parse().ok()?))
                    })
                    .collect::<Option<_>>()?,
            },
        },
        "OP" => Line::Op {
            node: s(1)?,
            command: s(2)?,
            job: s(3)?,
            sent: n(4)?,
            done: n(5)?,
            error: match *f.get(6)? {
                "ok" => None,
                _ => Some(f[7.min(f.len())..].join(" ")),
            },
        },
        "STORE" => Line::Store {
            node: s(1)?,
            ok: f.get(2)? == &"ok",
            t: n(3)?,
        },
        "CANCEL" => Line::Cancel {
            node: s(1)?,
            job: s(2)?,
            run: n(3)?,
            t: n(4)?,
        },
        "JERR" => Line::Jerr {
            node: s(1)?,
            key: s(2)?,
            epoch: n(3)?,
            error: f.get(4..).map(|e| e.join(" ")).unwrap_or_default(),
        },
        "EXIT" => Line::Exit {
            node: s(1)?,
            job: s(2)?,
            counters: Counters {
                runs: n(3)?,
                skipped: n(4)?,
                not_leader: n(5)?,
                missed: n(6)?,
                failures: n(7)?,
                panics: n(8)?,
                dropped: n(9)?,
            },
            t: n(10)?,
        },
        "CLOCK" => Line::Clock {
            node: s(1)?,
            t: n(2)?,
            own: n(3)?,
            wall_offset_ms: f.get(4)?.parse().ok()?,
        },
        _ => return None,
    })
}
