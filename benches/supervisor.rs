//! Supervisor benchmark: N no-op jobs under loopjob against N raw tokio tasks, each ticking
//! `tokio::time::interval` (`MissedTickBehavior::Skip`), the physical limit of the runtime.
//!
//! ```text
//! cargo bench --bench supervisor                      # N = 100, 1,000, 10,000 at 100 ms
//! cargo bench --bench supervisor -- --jobs 10000 --interval 100ms --seconds 20 [--json]
//! ```
//!
//! Every (system, N) pair is measured in a fresh child process (this binary re-executed with the
//! hidden `--child` flag), so that each resident-memory baseline is clean: no allocator arenas,
//! freed pages or runtime state left over from the previous measurement. Both systems run on the
//! same runtime as in production: tokio multi-thread, 2 workers.
//!
//! For each system it reports: executions whose ideal tick fell in the measured window against
//! the ticks that window holds; lateness of each execution start after its ideal tick
//! (`ctx.scheduled_at()` for loopjob, the instant `Interval::tick` returns for tokio) and after
//! the job's ideal grid `t0 + k·interval`; CPU seconds of the whole process over the window
//! (getrusage); resident memory per job (RSS after spawning and warm-up minus RSS before
//! spawning, over N); start-up (spawning the tasks, or building and starting the host) and the
//! time from the start of spawning until every job had started its first run. Lateness goes
//! into per-thread log-linear histograms (≤ 3% relative error, no allocation, no shared cache
//! line between the workers), so recording stays negligible.
//!
//! Options: `--jobs N[,N…]`, `--interval D`, `--seconds S`, `--warmup S`, `--json`,
//! `--allocs` (also count heap allocations: live heap bytes per job and allocations per
//! execution; this adds contended atomics to every allocation, so its CPU figures are not the
//! reference ones), `--tracing` (install a `tracing` subscriber at `info`, writing nowhere, as a
//! production service would; each job body of both systems then logs one `info` event per
//! run), `--tracing-filter F` (the same with the filter `F`, e.g. `info,loopjob=warn`),
//! `--only loopjob|tokio`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use loopjob::{Host, Schedule};
use tokio::time::{Instant, MissedTickBehavior};

// ---------------------------------------------------------------------------------------------
// Options

#[derive(Debug, Clone)]
struct Options {
    jobs: Vec<usize>,
    interval: Duration,
    seconds: f64,
    warmup: f64,
    json: bool,
    allocs: bool,
    /// The filter of the `tracing` subscriber to install, if any.
    tracing: Option<String>,
    only: Option<Subject>,
    child: Option<Subject>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Subject {
    Loopjob,
    Tokio,
}

impl Subject {
    fn name(self) -> &'static str {
        match self {
            Subject::Loopjob => "loopjob",
            Subject::Tokio => "tokio",
        }
    }

    fn parse(text: &str) -> Subject {
        match text {
            "loopjob" => Subject::Loopjob,
            "tokio" => Subject::Tokio,
            other => usage(&format!("unknown system `{other}` (loopjob or tokio)")),
        }
    }
}

fn usage(problem: &str) -> ! {
    eprintln!(
        "error: {problem}\nusage: cargo bench --bench supervisor -- [--jobs N[,N...]] \
         [--interval 100ms] [--seconds S] [--warmup S] [--json] [--allocs] [--tracing] \
         [--tracing-filter F] [--only loopjob|tokio]"
    );
    std::process::exit(2)
}

fn parse_options() -> Options {
    let mut options = Options {
        jobs: vec![100, 1_000, 10_000],
        interval: Duration::from_millis(100),
        seconds: 15.0,
        warmup: 2.0,
        json: false,
        allocs: false,
        tracing: None,
        only: None,
        child: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .unwrap_or_else(|| usage(&format!("{name} needs a value")))
        };
        match arg.as_str() {
            "--jobs" => {
                options.jobs = value("--jobs")
                    .split(',')
                    .map(|n| {
                        n.replace('_', "")
                            .parse()
                            .unwrap_or_else(|_| usage(&format!("bad job count `{n}`")))
                    })
                    .collect();
            }
            "--interval" => {
                let text = value("--interval");
                options.interval = humantime::parse_duration(&text)
                    .unwrap_or_else(|e| usage(&format!("bad interval `{text}`: {e}")));
            }
            "--seconds" => {
                options.seconds = value("--seconds")
                    .parse()
                    .unwrap_or_else(|_| usage("bad --seconds"));
            }
            "--warmup" => {
                options.warmup = value("--warmup")
                    .parse()
                    .unwrap_or_else(|_| usage("bad --warmup"));
            }
            "--json" => options.json = true,
            "--allocs" => options.allocs = true,
            "--tracing" => options.tracing = Some("info".to_owned()),
            "--tracing-filter" => options.tracing = Some(value("--tracing-filter")),
            "--only" => options.only = Some(Subject::parse(&value("--only"))),
            "--child" => options.child = Some(Subject::parse(&value("--child"))),
            // `cargo bench` passes `--bench` to every bench target.
            "--bench" => {}
            other => usage(&format!("unknown argument `{other}`")),
        }
    }
    if options.jobs.is_empty() || options.jobs.contains(&0) {
        usage("--jobs must be positive");
    }
    if options.interval.is_zero() || options.seconds <= 0.0 || options.warmup < 0.0 {
        usage("--interval and --seconds must be positive");
    }
    options
}

// ---------------------------------------------------------------------------------------------
// Counting allocator (active only with --allocs)

struct Counting;

static COUNT_ALLOCS: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicU64 = AtomicU64::new(0);
static LIVE_BYTES: AtomicU64 = AtomicU64::new(0);
/// Live allocations by size (rounded up to 16 bytes; the last class holds everything larger).
static LIVE_BY_SIZE: [AtomicI64; SIZE_CLASSES] = [const { AtomicI64::new(0) }; SIZE_CLASSES];
const SIZE_CLASSES: usize = 257;

fn size_class(size: usize) -> usize {
    size.div_ceil(16).min(SIZE_CLASSES - 1)
}

fn count_alloc(size: usize) {
    ALLOCS.fetch_add(1, Relaxed);
    LIVE_BYTES.fetch_add(size as u64, Relaxed);
    LIVE_BY_SIZE[size_class(size)].fetch_add(1, Relaxed);
}

fn count_dealloc(size: usize) {
    LIVE_BYTES.fetch_sub(size as u64, Relaxed);
    LIVE_BY_SIZE[size_class(size)].fetch_sub(1, Relaxed);
}

// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNT_ALLOCS.load(Relaxed) {
            count_alloc(layout.size());
        }
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if COUNT_ALLOCS.load(Relaxed) {
            count_dealloc(layout.size());
        }
        // SAFETY: forwarded with the caller's pointer and layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if COUNT_ALLOCS.load(Relaxed) {
            count_alloc(layout.size());
        }
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNT_ALLOCS.load(Relaxed) {
            count_dealloc(layout.size());
            count_alloc(new_size);
        }
        // SAFETY: forwarded with the caller's pointer, layout and size.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

// ---------------------------------------------------------------------------------------------
// Lateness histogram: log-linear, 32 sub-buckets per power of two (≤ 3% relative error), values
// in microseconds.

const SUB_BITS: u32 = 5;
const SUB: usize = 1 << SUB_BITS;
const LINEAR: usize = 2 * SUB; // values below this are exact
const BUCKETS: usize = LINEAR + SUB * 40;

struct Histogram {
    counts: Box<[AtomicU64]>,
    max: AtomicU64,
}

impl Histogram {
    fn new() -> Self {
        Histogram {
            counts: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            max: AtomicU64::new(0),
        }
    }

    fn index(value: u64) -> usize {
        if value < LINEAR as u64 {
            return value as usize;
        }
        let exponent = 63 - value.leading_zeros(); // ≥ SUB_BITS + 1
        let shift = exponent - SUB_BITS;
        let index =
            LINEAR + (exponent - SUB_BITS - 1) as usize * SUB + (value >> shift) as usize - SUB;
        index.min(BUCKETS - 1)
    }

    /// The largest value that falls in bucket `index`.
    fn upper(index: usize) -> u64 {
        if index < LINEAR {
            return index as u64;
        }
        let j = index - LINEAR;
        let shift = (j / SUB) as u32 + 1;
        let mantissa = (j % SUB + SUB) as u64;
        ((mantissa + 1) << shift) - 1
    }

    /// Only one thread writes a given histogram, so relaxed loads and stores are enough and no
    /// cache line is shared between workers.
    fn record(&self, value: u64) {
        let bucket = &self.counts[Self::index(value)];
        bucket.store(bucket.load(Relaxed) + 1, Relaxed);
        if value > self.max.load(Relaxed) {
            self.max.store(value, Relaxed);
        }
    }
}

#[derive(Default)]
struct Merged {
    counts: Vec<u64>,
    max: u64,
}

impl Merged {
    fn add(&mut self, histogram: &Histogram) {
        self.counts.resize(BUCKETS, 0);
        for (sum, count) in self.counts.iter_mut().zip(histogram.counts.iter()) {
            *sum += count.load(Relaxed);
        }
        self.max = self.max.max(histogram.max.load(Relaxed));
    }

    fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    fn quantile(&self, q: f64) -> u64 {
        let total = self.total();
        if total == 0 {
            return 0;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (index, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Histogram::upper(index).min(self.max);
            }
        }
        self.max
    }
}

// ---------------------------------------------------------------------------------------------
// Recorder: what every execution reports, into its worker thread's shard.

struct Shard {
    /// Lateness after the tick's ideal instant (`scheduled_at` / `Interval::tick`).
    tick: Histogram,
    /// Lateness after the job's ideal grid `t0 + k·interval`.
    grid: Histogram,
}

struct Recorder {
    base: Instant,
    interval_ns: u64,
    /// The measured window, in nanoseconds after `base`: executions whose ideal tick falls in
    /// `[window_start, window_end)` are counted.
    window_start: u64,
    window_end: u64,
    /// Each job's first tick, in nanoseconds after `base` (`u64::MAX` until it ran once).
    first_tick: Box<[AtomicU64]>,
    /// When the last job to run for the first time started that run, in nanoseconds after
    /// `base`: every job has run once by then.
    last_first_start: AtomicU64,
    shards: Mutex<Vec<Arc<Shard>>>,
}

static RECORDER: OnceLock<Recorder> = OnceLock::new();

thread_local! {
    static SHARD: Arc<Shard> = {
        let shard = Arc::new(Shard { tick: Histogram::new(), grid: Histogram::new() });
        recorder().shards.lock().unwrap().push(shard.clone());
        shard
    };
}

fn recorder() -> &'static Recorder {
    RECORDER
        .get()
        .expect("recorder is set before any job starts")
}

impl Recorder {
    fn nanos(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.base).as_nanos() as u64
    }

    /// One execution of job `job`, due at `scheduled`, started at `started`.
    #[inline]
    fn record(&self, job: usize, scheduled: Instant, started: Instant) {
        let scheduled = self.nanos(scheduled);
        let started = self.nanos(started);
        let first = &self.first_tick[job];
        let mut t0 = first.load(Relaxed);
        if t0 == u64::MAX {
            first.store(scheduled, Relaxed);
            self.last_first_start.fetch_max(started, Relaxed);
            t0 = scheduled;
        }
        if scheduled < self.window_start || scheduled >= self.window_end {
            return;
        }
        let k = (scheduled - t0 + self.interval_ns / 2) / self.interval_ns;
        let ideal = t0 + k * self.interval_ns;
        SHARD.with(|shard| {
            shard.tick.record(started.saturating_sub(scheduled) / 1_000);
            shard.grid.record(started.saturating_sub(ideal) / 1_000);
        });
    }

    fn merged(&self) -> (Merged, Merged) {
        let mut tick = Merged::default();
        let mut grid = Merged::default();
        for shard in self.shards.lock().unwrap().iter() {
            tick.add(&shard.tick);
            grid.add(&shard.grid);
        }
        (tick, grid)
    }
}

// ---------------------------------------------------------------------------------------------
// Process measurements

fn rss_bytes() -> u64 {
    statm_pages(1) * page_bytes()
}

/// Resident memory that is not backed by a file: RSS without the executable's code and data
/// pages, which the first use of a library's code faults in once (about 1 MB for loopjob's),
/// whatever the number of jobs.
fn anonymous_bytes() -> u64 {
    statm_pages(1).saturating_sub(statm_pages(2)) * page_bytes()
}

/// Field `index` of /proc/self/statm: 1 is resident pages, 2 resident file-backed pages.
fn statm_pages(index: usize) -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    statm
        .split_whitespace()
        .nth(index)
        .and_then(|field| field.parse().ok())
        .expect("page counts in /proc/self/statm")
}

fn page_bytes() -> u64 {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as u64 }
}

/// User plus system CPU time of the whole process, in seconds.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes into the zeroed struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

// ---------------------------------------------------------------------------------------------
// One measurement (in a child process)

#[derive(Debug, Clone, Default)]
struct Figures {
    system: String,
    jobs: u64,
    interval_ms: f64,
    seconds: f64,
    executions: u64,
    expected: u64,
    lateness_p50_us: u64,
    lateness_p99_us: u64,
    lateness_max_us: u64,
    grid_lateness_p50_us: u64,
    grid_lateness_p99_us: u64,
    grid_lateness_max_us: u64,
    cpu_s: f64,
    rss_per_job_bytes: f64,
    rss_end_per_job_bytes: f64,
    /// Like `rss_per_job_bytes`, without file-backed pages (see [`anonymous_bytes`]).
    anon_per_job_bytes: f64,
    heap_per_job_bytes: f64,
    heap_end_per_job_bytes: f64,
    allocs_per_execution: f64,
    start_ms: f64,
    /// From the start of spawning until every job had started its first run.
    first_runs_ms: f64,
}

impl Figures {
    fn to_json(&self) -> String {
        let mut fields = vec![
            format!("\"system\":\"{}\"", self.system),
            format!("\"jobs\":{}", self.jobs),
            format!("\"interval_ms\":{}", self.interval_ms),
            format!("\"seconds\":{}", self.seconds),
            format!("\"executions\":{}", self.executions),
            format!("\"expected\":{}", self.expected),
            format!("\"lateness_p50_us\":{}", self.lateness_p50_us),
            format!("\"lateness_p99_us\":{}", self.lateness_p99_us),
            format!("\"lateness_max_us\":{}", self.lateness_max_us),
            format!("\"grid_lateness_p50_us\":{}", self.grid_lateness_p50_us),
            format!("\"grid_lateness_p99_us\":{}", self.grid_lateness_p99_us),
            format!("\"grid_lateness_max_us\":{}", self.grid_lateness_max_us),
            format!("\"cpu_s\":{:.4}", self.cpu_s),
            format!("\"rss_per_job_bytes\":{:.1}", self.rss_per_job_bytes),
            format!(
                "\"rss_end_per_job_bytes\":{:.1}",
                self.rss_end_per_job_bytes
            ),
            format!("\"anon_per_job_bytes\":{:.1}", self.anon_per_job_bytes),
            format!("\"start_ms\":{:.1}", self.start_ms),
            format!("\"first_runs_ms\":{:.1}", self.first_runs_ms),
        ];
        if self.allocs_per_execution >= 0.0 {
            fields.push(format!(
                "\"heap_per_job_bytes\":{:.1}",
                self.heap_per_job_bytes
            ));
            fields.push(format!(
                "\"heap_end_per_job_bytes\":{:.1}",
                self.heap_end_per_job_bytes
            ));
            fields.push(format!(
                "\"allocs_per_execution\":{:.2}",
                self.allocs_per_execution
            ));
        }
        format!("{{{}}}", fields.join(","))
    }

    /// Reads back what `to_json` wrote (a flat object of numbers and plain strings).
    fn from_json(line: &str) -> Option<Figures> {
        let body = line.trim().strip_prefix('{')?.strip_suffix('}')?;
        let mut figures = Figures {
            allocs_per_execution: -1.0,
            ..Figures::default()
        };
        for field in body.split(',') {
            let (key, value) = field.split_once(':')?;
            let key = key.trim().trim_matches('"');
            let value = value.trim().trim_matches('"');
            let number = || value.parse::<f64>().unwrap_or(f64::NAN);
            match key {
                "system" => figures.system = value.to_owned(),
                "jobs" => figures.jobs = number() as u64,
                "interval_ms" => figures.interval_ms = number(),
                "seconds" => figures.seconds = number(),
                "executions" => figures.executions = number() as u64,
                "expected" => figures.expected = number() as u64,
                "lateness_p50_us" => figures.lateness_p50_us = number() as u64,
                "lateness_p99_us" => figures.lateness_p99_us = number() as u64,
                "lateness_max_us" => figures.lateness_max_us = number() as u64,
                "grid_lateness_p50_us" => figures.grid_lateness_p50_us = number() as u64,
                "grid_lateness_p99_us" => figures.grid_lateness_p99_us = number() as u64,
                "grid_lateness_max_us" => figures.grid_lateness_max_us = number() as u64,
                "cpu_s" => figures.cpu_s = number(),
                "rss_per_job_bytes" => figures.rss_per_job_bytes = number(),
                "rss_end_per_job_bytes" => figures.rss_end_per_job_bytes = number(),
                "anon_per_job_bytes" => figures.anon_per_job_bytes = number(),
                "heap_per_job_bytes" => figures.heap_per_job_bytes = number(),
                "heap_end_per_job_bytes" => figures.heap_end_per_job_bytes = number(),
                "allocs_per_execution" => figures.allocs_per_execution = number(),
                "start_ms" => figures.start_ms = number(),
                "first_runs_ms" => figures.first_runs_ms = number(),
                _ => {}
            }
        }
        Some(figures)
    }
}

fn child(options: &Options, system: Subject) {
    let jobs = options.jobs[0];
    let interval = options.interval;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Some(filter) = &options.tracing {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::sink)
            .init();
    }

    runtime.block_on(async move {
        // The window starts after the warm-up, counted from the start of spawning; it holds a
        // whole number of intervals so that every job has the same number of ticks in it.
        let ticks_per_job = (options.seconds / interval.as_secs_f64()).round().max(1.0) as u64;
        let window = interval * ticks_per_job as u32;
        let warmup = Duration::from_secs_f64(options.warmup).max(interval * 3);

        // Let the workers start and touch their stacks before the baseline.
        for _ in 0..64 {
            tokio::spawn(async {}).await.unwrap();
        }
        let base = Instant::now() + Duration::from_millis(5);
        let window_start = warmup.as_nanos() as u64 + 5_000_000;
        let fresh = Recorder {
            base,
            interval_ns: interval.as_nanos() as u64,
            window_start,
            window_end: window_start + window.as_nanos() as u64,
            first_tick: (0..jobs).map(|_| AtomicU64::new(u64::MAX)).collect(),
            last_first_start: AtomicU64::new(0),
            shards: Mutex::new(Vec::new()),
        };
        if RECORDER.set(fresh).is_err() {
            unreachable!("one measurement per process");
        }
        // Touch the recorder's shard on the workers before the baseline.
        for _ in 0..8 {
            tokio::spawn(async { SHARD.with(|_| ()) }).await.unwrap();
        }

        tokio::time::sleep_until(base).await;
        COUNT_ALLOCS.store(options.allocs, Relaxed);
        let rss_before = rss_bytes();
        let anon_before = anonymous_bytes();
        let heap_before = LIVE_BYTES.load(Relaxed);
        let by_size_before: Vec<i64> = LIVE_BY_SIZE.iter().map(|c| c.load(Relaxed)).collect();
        let spawn_started = std::time::Instant::now();

        // With a subscriber, every job body logs one `info` event per run, as a service's jobs
        // do: the comparison is like with like.
        let log_runs = options.tracing.is_some();
        let mut keep = None;
        match system {
            Subject::Tokio => {
                for job in 0..jobs {
                    tokio::spawn(async move {
                        let mut ticks = tokio::time::interval(interval);
                        ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
                        loop {
                            let scheduled = ticks.tick().await;
                            recorder().record(job, scheduled, Instant::now());
                            if log_runs {
                                tracing::info!(job, "ran");
                            }
                        }
                    });
                }
            }
            Subject::Loopjob => {
                let mut builder = Host::builder().shutdown_grace(Duration::from_secs(1));
                for job in 0..jobs {
                    builder = builder.job_fn(
                        format!("noop-{job}"),
                        Schedule::every(interval),
                        move |ctx| async move {
                            recorder().record(job, ctx.scheduled_at(), Instant::now());
                            if log_runs {
                                tracing::info!(job, "ran");
                            }
                            Ok(())
                        },
                    );
                }
                let host = builder.build().expect("valid jobs");
                keep = Some(host.handle());
                tokio::spawn(host.run_until(std::future::pending()));
            }
        }
        let start_ms = spawn_started.elapsed().as_secs_f64() * 1e3;

        let recorder = recorder();
        tokio::time::sleep_until(base + Duration::from_nanos(recorder.window_start)).await;
        let rss_start = rss_bytes();
        let anon_start = anonymous_bytes();
        let heap_start = LIVE_BYTES.load(Relaxed);
        let allocs_start = ALLOCS.load(Relaxed);
        if options.allocs {
            // Which allocations each job keeps: the size classes that grew by about N or more.
            let mut per_job = Vec::new();
            for (class, count) in LIVE_BY_SIZE.iter().enumerate() {
                let grown = count.load(Relaxed) - by_size_before[class];
                if grown as f64 >= 0.5 * jobs as f64 {
                    per_job.push(format!(
                        "{}{} B ×{:.2}",
                        if class == SIZE_CLASSES - 1 {
                            ">"
                        } else {
                            "≤"
                        },
                        16 * class.min(SIZE_CLASSES - 2),
                        grown as f64 / jobs as f64
                    ));
                }
            }
            eprintln!(
                "{}: live allocations per job by size: {}",
                system.name(),
                per_job.join(", ")
            );
        }
        let cpu_start = cpu_seconds();

        tokio::time::sleep_until(base + Duration::from_nanos(recorder.window_end)).await;
        let cpu_end = cpu_seconds();
        let allocs_end = ALLOCS.load(Relaxed);
        let rss_end = rss_bytes();
        let heap_end = LIVE_BYTES.load(Relaxed);

        // Late executions of the window's last ticks still count: let them land.
        tokio::time::sleep(interval + Duration::from_millis(200)).await;
        let (tick, grid) = recorder.merged();
        let executions = tick.total();
        let per_job = |bytes: u64| bytes as f64 / jobs as f64;

        let figures = Figures {
            system: system.name().to_owned(),
            jobs: jobs as u64,
            interval_ms: interval.as_secs_f64() * 1e3,
            seconds: window.as_secs_f64(),
            executions,
            expected: jobs as u64 * ticks_per_job,
            lateness_p50_us: tick.quantile(0.50),
            lateness_p99_us: tick.quantile(0.99),
            lateness_max_us: tick.max,
            grid_lateness_p50_us: grid.quantile(0.50),
            grid_lateness_p99_us: grid.quantile(0.99),
            grid_lateness_max_us: grid.max,
            cpu_s: cpu_end - cpu_start,
            rss_per_job_bytes: per_job(rss_start.saturating_sub(rss_before)),
            rss_end_per_job_bytes: per_job(rss_end.saturating_sub(rss_before)),
            anon_per_job_bytes: per_job(anon_start.saturating_sub(anon_before)),
            heap_per_job_bytes: if options.allocs {
                per_job(heap_start.saturating_sub(heap_before))
            } else {
                0.0
            },
            heap_end_per_job_bytes: if options.allocs {
                per_job(heap_end.saturating_sub(heap_before))
            } else {
                0.0
            },
            allocs_per_execution: if options.allocs {
                (allocs_end - allocs_start) as f64 / executions.max(1) as f64
            } else {
                -1.0
            },
            start_ms,
            first_runs_ms: (recorder.last_first_start.load(Relaxed) as f64 / 1e6
                - spawn_started.duration_since(base.into_std()).as_secs_f64() * 1e3)
                .max(0.0),
        };
        println!("{}", figures.to_json());
        drop(keep);
    });
    // Tearing 10,000 tasks down is not measured: leave at once.
    std::process::exit(0);
}

// ---------------------------------------------------------------------------------------------
// The parent: one child per (N, system), then the report.

fn measure(options: &Options, jobs: usize, system: Subject) -> Figures {
    let exe = std::env::current_exe().expect("path of this benchmark");
    let mut command = Command::new(exe);
    command
        .arg("--child")
        .arg(system.name())
        .arg("--jobs")
        .arg(jobs.to_string())
        .arg("--interval")
        .arg(format!("{}us", options.interval.as_micros()))
        .arg("--seconds")
        .arg(options.seconds.to_string())
        .arg("--warmup")
        .arg(options.warmup.to_string());
    if options.allocs {
        command.arg("--allocs");
    }
    if let Some(filter) = &options.tracing {
        command.arg("--tracing-filter").arg(filter);
    }
    let output = command
        .stderr(Stdio::inherit())
        .output()
        .expect("run the measurement child");
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        eprintln!("{stdout}");
        panic!(
            "the {} child for {jobs} jobs failed: {}",
            system.name(),
            output.status
        );
    }
    let line = stdout.lines().last().unwrap_or_default();
    Figures::from_json(line).unwrap_or_else(|| panic!("unreadable child output: {line}"))
}

fn main() {
    let options = parse_options();
    if let Some(system) = options.child {
        child(&options, system);
        return;
    }
    let systems: Vec<Subject> = [Subject::Tokio, Subject::Loopjob]
        .into_iter()
        .filter(|system| options.only.is_none_or(|only| only == *system))
        .collect();
    if !options.json {
        println!(
            "loopjob supervisor benchmark: interval {:?}, {} s measured after {} s warm-up per run, \
             tokio multi-thread runtime with 2 workers, one process per measurement",
            options.interval, options.seconds, options.warmup
        );
    }
    for &jobs in &options.jobs {
        let mut results = Vec::new();
        for &system in &systems {
            if !options.json {
                eprintln!("measuring {} with {jobs} jobs …", system.name());
            }
            let figures = measure(&options, jobs, system);
            if options.json {
                println!("{}", figures.to_json());
            }
            results.push(figures);
        }
        if !options.json {
            print_side_by_side(&results);
        }
    }
}

fn print_side_by_side(results: &[Figures]) {
    let tokio = results.iter().find(|f| f.system == "tokio");
    let loopjob = results.iter().find(|f| f.system == "loopjob");
    let Some(first) = results.first() else { return };
    println!(
        "\n== {} jobs every {} ms, {} s window ==",
        first.jobs, first.interval_ms, first.seconds
    );
    println!(
        "{:<28}{:>16}{:>16}{:>20}",
        "", "tokio", "loopjob", "loopjob vs tokio"
    );
    let cell = |f: Option<&Figures>, show: &dyn Fn(&Figures) -> String| {
        f.map(show).unwrap_or_else(|| "-".to_owned())
    };
    type Show = Box<dyn Fn(&Figures) -> String>;
    type Compare = Box<dyn Fn(&Figures, &Figures) -> String>;
    let rows: Vec<(&str, Show, Compare)> = vec![
        (
            "executions / expected",
            Box::new(|f| format!("{}/{}", f.executions, f.expected)),
            Box::new(|_, l| format!("{:.3}%", 100.0 * l.executions as f64 / l.expected as f64)),
        ),
        (
            "lateness p50 (µs)",
            Box::new(|f| f.lateness_p50_us.to_string()),
            Box::new(|t, l| format!("{:+}", l.lateness_p50_us as i64 - t.lateness_p50_us as i64)),
        ),
        (
            "lateness p99 (µs)",
            Box::new(|f| f.lateness_p99_us.to_string()),
            Box::new(|t, l| format!("{:+}", l.lateness_p99_us as i64 - t.lateness_p99_us as i64)),
        ),
        (
            "lateness max (µs)",
            Box::new(|f| f.lateness_max_us.to_string()),
            Box::new(|t, l| format!("{:+}", l.lateness_max_us as i64 - t.lateness_max_us as i64)),
        ),
        (
            "grid lateness p99 (µs)",
            Box::new(|f| f.grid_lateness_p99_us.to_string()),
            Box::new(|t, l| {
                format!(
                    "{:+}",
                    l.grid_lateness_p99_us as i64 - t.grid_lateness_p99_us as i64
                )
            }),
        ),
        (
            "CPU (s)",
            Box::new(|f| format!("{:.3}", f.cpu_s)),
            Box::new(|t, l| format!("×{:.2}", l.cpu_s / t.cpu_s)),
        ),
        (
            "CPU per execution (µs)",
            Box::new(|f| format!("{:.2}", 1e6 * f.cpu_s / f.executions.max(1) as f64)),
            Box::new(|_, _| String::new()),
        ),
        (
            "RSS per job (B)",
            Box::new(|f| format!("{:.0}", f.rss_per_job_bytes)),
            Box::new(|t, l| format!("{:+.0}", l.rss_per_job_bytes - t.rss_per_job_bytes)),
        ),
        (
            "RSS per job at end (B)",
            Box::new(|f| format!("{:.0}", f.rss_end_per_job_bytes)),
            Box::new(|t, l| format!("{:+.0}", l.rss_end_per_job_bytes - t.rss_end_per_job_bytes)),
        ),
        (
            "anonymous memory per job (B)",
            Box::new(|f| format!("{:.0}", f.anon_per_job_bytes)),
            Box::new(|t, l| format!("{:+.0}", l.anon_per_job_bytes - t.anon_per_job_bytes)),
        ),
        (
            "startup (ms)",
            Box::new(|f| format!("{:.0}", f.start_ms)),
            Box::new(|t, l| format!("×{:.2}", l.start_ms / t.start_ms)),
        ),
        (
            "every job's first run (ms)",
            Box::new(|f| format!("{:.0}", f.first_runs_ms)),
            Box::new(|t, l| format!("×{:.2}", l.first_runs_ms / t.first_runs_ms)),
        ),
    ];
    for (label, show, compare) in &rows {
        let comparison = match (tokio, loopjob) {
            (Some(t), Some(l)) => compare(t, l),
            _ => String::new(),
        };
        println!(
            "{label:<28}{:>16}{:>16}{:>20}",
            cell(tokio, show),
            cell(loopjob, show),
            comparison
        );
    }
    if results.iter().any(|f| f.allocs_per_execution >= 0.0) {
        for (label, show) in [
            (
                "heap per job (B)",
                Box::new(|f: &Figures| format!("{:.0}", f.heap_per_job_bytes)) as Show,
            ),
            (
                "heap per job at end (B)",
                Box::new(|f: &Figures| format!("{:.0}", f.heap_end_per_job_bytes)),
            ),
            (
                "allocations per execution",
                Box::new(|f: &Figures| format!("{:.2}", f.allocs_per_execution)),
            ),
        ] {
            println!(
                "{label:<28}{:>16}{:>16}",
                cell(tokio, &show),
                cell(loopjob, &show)
            );
        }
    }

    let (Some(t), Some(l)) = (tokio, loopjob) else {
        return;
    };
    let note = if l.jobs == 10_000 && (l.interval_ms - 100.0).abs() < 1e-9 {
        ""
    } else {
        " (the targets are set for 10,000 jobs at 100 ms; shown for reference)"
    };
    println!("targets{note}:");
    let verdict = |pass: bool| if pass { "PASS" } else { "FAIL" };
    let achieved = l.executions as f64 / l.expected as f64;
    println!(
        "  executions ≥ 99.5% of expected      {:>8.3}%            {}",
        100.0 * achieved,
        verdict(achieved >= 0.995)
    );
    let p99_over = l.lateness_p99_us as i64 - t.lateness_p99_us as i64;
    println!(
        "  lateness p99 ≤ tokio's + 1 ms       {:>+8} µs           {}",
        p99_over,
        verdict(p99_over <= 1_000)
    );
    let cpu_ratio = l.cpu_s / t.cpu_s;
    println!(
        "  CPU ≤ 1.5 × tokio's                 {:>8.2} ×            {}",
        cpu_ratio,
        verdict(cpu_ratio <= 1.5)
    );
    let memory_over = l.rss_per_job_bytes - t.rss_per_job_bytes;
    println!(
        "  memory ≤ tokio's + 2 KiB per job    {:>+8.0} B/job        {}",
        memory_over,
        verdict(memory_over <= 2_048.0)
    );
}
