//! The examples run as README says: each binary starts, prints what it promises, and stops
//! cleanly on SIGTERM or SIGINT (`Host::run` returns its shutdown report and `main` exits 0); a
//! bad settings file prints the problems as a person reads them.
//!
//! The binaries are the ones `cargo test` builds beside this test (`target/<profile>/examples`):
//! `cargo test` builds the examples unless a single test target is picked; then build them
//! first with `cargo build --all-features --examples`.

#![cfg(unix)]

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

/// The example binary `name`, built by cargo beside this test.
fn example(name: &str) -> Command {
    let test_exe = std::env::current_exe().expect("the test binary's path");
    // target/<profile>/deps/examples-<hash> → target/<profile>/examples/<name>
    let profile_dir = test_exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test binary lives in target/<profile>/deps");
    let path: PathBuf = profile_dir.join("examples").join(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo build --all-features --examples` (cargo test builds the \
         examples unless a single test target is picked)",
        path.display()
    );
    let mut command = Command::new(path);
    command
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("LOOPJOB__") {
            command.env_remove(key);
        }
    }
    command
}

/// A running example whose stdout and stderr lines arrive on one channel.
struct Running {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    fn start(mut command: Command) -> Self {
        let mut child = command.spawn().expect("the example starts");
        let (sender, lines) = channel();
        let streams: [Box<dyn Read + Send>; 2] = [
            Box::new(child.stdout.take().expect("piped stdout")),
            Box::new(child.stderr.take().expect("piped stderr")),
        ];
        for stream in streams {
            let sender = sender.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if sender.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Running {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits until a line contains `text`; panics with everything seen after `within`.
    fn wait_for(&mut self, text: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            if self.seen.iter().any(|line| line.contains(text)) {
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                    let _ = self.child.kill();
                    panic!(
                        "no line with {text:?} within {within:?}; the example printed:\n{}",
                        self.seen.join("\n")
                    );
                }
            }
        }
    }

    /// Sends `signal` ("TERM", "INT") to the example.
    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits for the example to exit (killing it after `within`) and collects the rest of its
    /// output.
    fn exit(mut self, within: Duration) -> (ExitStatus, Vec<String>) {
        let deadline = Instant::now() + within;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait on the example") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "the example did not exit within {within:?}; it printed:\n{}",
                    self.seen.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // The reader threads end at the pipes' end of file.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(line);
        }
        (status, std::mem::take(&mut self.seen))
    }
}

/// A test that fails half-way leaves no example running (holding a port, say).
impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn count(lines: &[String], text: &str) -> usize {
    lines.iter().filter(|line| line.contains(text)).count()
}

/// README's first command: the quickstart ticks, and SIGTERM makes `host.run()` return its
/// shutdown report, which `main` prints before it exits 0.
#[test]
fn quickstart_ticks_and_stops_on_sigterm_with_its_report() {
    let mut quickstart = Running::start(example("quickstart"));
    // "host started" is logged once the host listens for signals.
    quickstart.wait_for("host started", Duration::from_secs(20));
    quickstart.wait_for("heartbeat: still alive", Duration::from_secs(10));
    quickstart.wait_for("slow_report: started, takes 5s", Duration::from_secs(10));
    quickstart.signal("TERM");
    let (status, lines) = quickstart.exit(Duration::from_secs(15));
    assert!(
        status.success(),
        "exit status {status}; output:\n{}",
        lines.join("\n")
    );
    assert_eq!(
        count(&lines, "shutdown requested"),
        1,
        "{}",
        lines.join("\n")
    );
    for job in ["heartbeat", "slow_report", "warm_cache"] {
        assert_eq!(
            lines
                .iter()
                .filter(|line| line.contains("final counts") && line.contains(&format!("job={job}")))
                .count(),
            1,
            "one final count of {job}; output:\n{}",
            lines.join("\n")
        );
    }
}

/// The keep-alive job declares the two silent PCs offline and leaves the one that sends
/// keep-alives; SIGINT (Ctrl-C) stops it cleanly.
#[test]
fn pc_keep_alive_declares_silent_pcs_offline_and_stops_on_sigint() {
    let mut command = example("pc_keep_alive");
    command.args(["--config", "config/pc_keep_alive.toml"]);
    let mut job = Running::start(command);
    job.wait_for("host started", Duration::from_secs(20));
    job.wait_for("00:1a:2b:00:00:02", Duration::from_secs(10));
    job.wait_for("00:1a:2b:00:00:03", Duration::from_secs(10));
    job.signal("INT");
    let (status, lines) = job.exit(Duration::from_secs(15));
    assert!(
        status.success(),
        "exit status {status}; output:\n{}",
        lines.join("\n")
    );
    assert_eq!(
        count(&lines, "declaring PC offline"),
        2,
        "{}",
        lines.join("\n")
    );
    assert_eq!(
        count(&lines, "00:1a:2b:00:00:01"),
        0,
        "{}",
        lines.join("\n")
    );
}

/// A settings file with a typo: the example exits 1 and prints the problem as README shows it,
/// not the error's `Debug` form.
#[test]
fn a_bad_settings_file_prints_its_problems_for_a_person() {
    let path = std::env::temp_dir().join(format!("loopjob-examples-{}.toml", std::process::id()));
    std::fs::write(&path, "[jobs.heartbeat]\nintreval = \"2s\"\n").expect("write the file");
    let mut command = example("quickstart");
    command.arg("--config").arg(&path);
    let (status, lines) = Running::start(command).exit(Duration::from_secs(20));
    let _ = std::fs::remove_file(&path);
    let output = lines.join("\n");
    assert_eq!(status.code(), Some(1), "{output}");
    assert!(
        output.contains("Error: cannot start: 1 problem"),
        "{output}"
    );
    assert!(
        output.contains("[jobs.heartbeat] intreval: unknown key; did you mean `interval`?"),
        "{output}"
    );
    assert!(!output.contains("BuildError"), "{output}");
}

/// The cluster demo: two node processes on one SQLite file; the global job's leader is killed
/// and the other node takes over; the parent stops the rest with SIGTERM and exits 0.
#[test]
fn cluster_shows_a_takeover_and_exits() {
    let mut command = example("cluster");
    command.args(["--nodes", "2"]);
    let (status, lines) = Running::start(command).exit(Duration::from_secs(60));
    let output = lines.join("\n");
    assert!(status.success(), "exit status {status}; output:\n{output}");
    assert!(output.contains("singleton acquired singleton"), "{output}");
    assert!(output.contains("(SIGKILL: no release)"), "{output}");
    assert!(
        output.contains("takeover of the global job after"),
        "{output}"
    );
    assert!(output.contains("gracefully"), "{output}");
}

/// The cron example lists each job's next runs in its time zone, runs the ten-second pulse on
/// its occurrence, and stops cleanly on SIGINT.
#[cfg(feature = "cron")]
#[test]
fn cron_lists_next_runs_pulses_and_stops_on_sigint() {
    let mut cron = Running::start(example("cron"));
    cron.wait_for("host started", Duration::from_secs(20));
    // Three next runs for each of the two jobs, the nightly one in Berlin time.
    cron.wait_for(" pulse run=1", Duration::from_secs(15));
    cron.signal("INT");
    let (status, lines) = cron.exit(Duration::from_secs(15));
    assert!(
        status.success(),
        "exit status {status}; output:\n{}",
        lines.join("\n")
    );
    let scheduled = |job: &str| {
        lines
            .iter()
            .filter(|line| line.contains("scheduled") && line.contains(&format!("job=\"{job}\"")))
            .count()
    };
    assert_eq!(scheduled("nightly_report"), 3, "{}", lines.join("\n"));
    assert_eq!(scheduled("pulse"), 3, "{}", lines.join("\n"));
    assert!(
        lines
            .iter()
            .any(|line| line.contains("nightly_report") && line.contains("[Europe/Berlin]")),
        "the nightly report's next runs are shown in Berlin time:\n{}",
        lines.join("\n")
    );
}

/// One plain HTTP/1.1 request to `127.0.0.1:port`; the status line and body of the answer.
#[cfg(feature = "admin")]
fn http(port: u16, request: &str) -> String {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("the endpoint is up");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("a timeout");
    stream
        .write_all(request.as_bytes())
        .expect("the request is sent");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
}

/// The admin example starts two nodes with their endpoints: each answers its health probe, a
/// pause with the example's token is accepted, and SIGINT stops both cleanly.
#[cfg(feature = "admin")]
#[test]
fn admin_serves_both_dashboards_takes_a_pause_and_stops_on_sigint() {
    let mut command = example("admin");
    command.env("ADMIN_TOKEN", "example-token");
    let mut admin = Running::start(command);
    admin.wait_for(
        "node-b: dashboard at http://127.0.0.1:9465/",
        Duration::from_secs(20),
    );
    for port in [9464, 9465] {
        let health = http(
            port,
            "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        );
        assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    }
    let paused = http(
        9464,
        "POST /api/jobs/local_cache/pause HTTP/1.1\r\nHost: localhost\r\n\
         Authorization: Bearer example-token\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert!(paused.starts_with("HTTP/1.1 200"), "{paused}");
    admin.signal("INT");
    let (status, lines) = admin.exit(Duration::from_secs(20));
    assert!(
        status.success(),
        "exit status {status}; output:\n{}",
        lines.join("\n")
    );
}
