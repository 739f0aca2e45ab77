//! The dashboard in a real headless Chromium, driven over WebDriver: it shows the jobs, a click
//! on "Pause" (after the token is entered) pauses the job, and at a phone's width nothing
//! overflows. Screenshots land in `target/tmp/admin-dashboard/` for people to look at.
//!
//! Needs `LOOPJOB_TEST_CHROMEDRIVER` (e.g. `/usr/bin/chromedriver`, from Debian's
//! chromium-driver package, which `.ci/run` installs); skipped visibly without it, and failing
//! under CI.
#![cfg(feature = "admin")]

#[path = "support/database_url.rs"]
mod database_url;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use loopjob::admin::AdminOptions;
use loopjob::store::MemoryStore;
use loopjob::{Host, JobError, JobState, LeaderMode, Leadership, NodeIdentity, Schedule};
use serde_json::{Value, json};

const TOKEN: &str = "dashboard-test-token";
/// The flags that keep a test browser quiet, offline and alone.
const CHROMIUM_FLAGS: [&str; 8] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];

/// chromedriver, started on a free port, killed when dropped.
struct Driver {
    child: Child,
    url: String,
    profile: PathBuf,
}

impl Driver {
    async fn start(path: &str) -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start chromedriver at {path}: {error}"));
        let profile = std::env::temp_dir().join(format!("loopjob-chromium-{}", std::process::id()));
        let driver = Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
            profile,
        };
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return driver;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("chromedriver did not listen on port {port} within 10 s");
    }

    async fn browser(&self) -> Client {
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|flag| flag.to_string()).collect();
        args.push(format!("--user-data-dir={}", self.profile.display()));
        args.push("--window-size=1280,900".into());
        let mut options = json!({ "args": args });
        if let Ok(binary) = std::env::var("LOOPJOB_TEST_CHROMIUM") {
            options["binary"] = Value::from(binary);
        } else if std::path::Path::new("/usr/bin/chromium").exists() {
            options["binary"] = Value::from("/usr/bin/chromium");
        }
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("goog:chromeOptions".into(), options);
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .expect("chromedriver starts a headless Chromium")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// Where the screenshots go.
fn screenshot_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("admin-dashboard");
    std::fs::create_dir_all(&dir).expect("the screenshot folder");
    dir
}

async fn card_state(browser: &Client, job: &str) -> String {
    let selector = format!("[data-job=\"{job}\"] .state");
    let element = browser
        .find(Locator::Css(&selector))
        .await
        .expect("the card");
    element.text().await.expect("its state")
}

/// Waits (up to 10 s: the page polls every 3 s) until the job's card shows `state`.
async fn wait_for_state(browser: &Client, job: &str, state: &str) {
    let mut shown = String::new();
    for _ in 0..100 {
        shown = card_state(browser, job).await;
        if shown == state {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the card of {job} shows {shown}, not {state}");
}

/// Waits until the job's card shows a strip of recent runs.
async fn wait_for_strip(browser: &Client, job: &str) {
    let selector = format!("[data-job=\"{job}\"] .strip li");
    browser
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(&selector))
        .await
        .unwrap_or_else(|error| panic!("the strip of {job} shows: {error}"));
}

/// Waits (up to 10 s) until the leader has written the guarded job's schedule record.
async fn wait_for_record(handle: &loopjob::HostHandle, job: &str) {
    for _ in 0..200 {
        if handle
            .schedule(job)
            .await
            .is_ok_and(|view| !view.records.is_empty())
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the schedule record of {job} was not written within 10 s");
}

fn hourly_b() -> Schedule {
    Schedule::every(Duration::from_secs(3600)).initial_delay(Duration::from_secs(3600))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_jobs_pauses_one_and_fits_a_phone() {
    let Some(chromedriver) =
        database_url::database_url("LOOPJOB_TEST_CHROMEDRIVER", "the dashboard browser test")
    else {
        return;
    };
    let hourly =
        Schedule::every(Duration::from_secs(3600)).initial_delay(Duration::from_secs(3600));
    let store = Arc::new(MemoryStore::new());
    let host = Host::builder()
        .node(NodeIdentity::new("node-a", "default"))
        .store(store.clone())
        .job_fn("nightly_report", hourly.clone(), |_ctx| async { Ok(()) })
        .leadership("nightly_report", Leadership::new(LeaderMode::Cluster))
        .job_fn("cache_warmer", hourly.clone(), |_ctx| async { Ok(()) })
        .job_fn("flaky_sync", hourly, |_ctx| async {
            Err(JobError::msg("upstream answered 502 Bad Gateway"))
        })
        .admin(AdminOptions::bind(SocketAddr::from(([127, 0, 0, 1], 0))).token(TOKEN))
        .build()
        .expect("the host builds");
    let base = format!("http://{}/", host.admin_address().expect("bound"));
    let handle = host.handle();
    let running = tokio::spawn(host.run_until(std::future::pending()));
    handle.trigger("cache_warmer").await.expect("a run");
    handle.trigger("flaky_sync").await.expect("a run");
    handle
        .wait_for("flaky_sync", |s| s.counters.failures == 1)
        .await
        .expect("the failing run ends");
    let leads = tokio::time::timeout(
        Duration::from_secs(10),
        handle.wait_for("nightly_report", |s| {
            s.leadership.as_ref().is_some_and(|l| !l.leases.is_empty())
        }),
    )
    .await;
    assert!(matches!(leads, Ok(Ok(_))), "node A leads, alone");
    // One run of the guarded job, for the strip of recent runs, once its record is written.
    wait_for_record(&handle, "nightly_report").await;
    handle.trigger("nightly_report").await.expect("requested");
    let ran = tokio::time::timeout(
        Duration::from_secs(10),
        handle.wait_for("nightly_report", |s| s.counters.succeeded == 1),
    )
    .await;
    assert!(matches!(ran, Ok(Ok(_))), "the requested run ran");
    // Node B shares the store and the guarded job, which node A leads already.
    let host_b = Host::builder()
        .node(NodeIdentity::new("node-b", "default"))
        .store(store)
        .job_fn("nightly_report", hourly_b(), |_ctx| async { Ok(()) })
        .leadership("nightly_report", Leadership::new(LeaderMode::Cluster))
        .admin(AdminOptions::bind(SocketAddr::from(([127, 0, 0, 1], 0))).token(TOKEN))
        .build()
        .expect("node B builds");
    let base_b = format!("http://{}/", host_b.admin_address().expect("bound"));
    let handle_b = host_b.handle();
    let running_b = tokio::spawn(host_b.run_until(std::future::pending()));

    let driver = Driver::start(&chromedriver).await;
    let browser = driver.browser().await;
    browser.goto(&base).await.expect("the page loads");
    let wait = Duration::from_secs(10);
    for job in ["nightly_report", "cache_warmer", "flaky_sync"] {
        let selector = format!("[data-job=\"{job}\"]");
        browser
            .wait()
            .at_most(wait)
            .for_element(Locator::Css(&selector))
            .await
            .unwrap_or_else(|error| panic!("the card of {job} shows: {error}"));
    }
    let leader = browser
        .find(Locator::Css("[data-job=\"nightly_report\"] .leader"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(leader.starts_with("this node · epoch "), "{leader}");
    let failure = browser
        .find(Locator::Css("[data-job=\"flaky_sync\"] .error-text"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(failure.contains("502 Bad Gateway"), "{failure}");
    assert_eq!(card_state(&browser, "cache_warmer").await, "IDLE");

    // Pause: the page asks for the token once, then acts.
    browser
        .find(Locator::Css(
            "[data-job=\"cache_warmer\"] [data-action=\"pause\"]",
        ))
        .await
        .unwrap()
        .click()
        .await
        .expect("the button clicks");
    let input = browser
        .wait()
        .at_most(wait)
        .for_element(Locator::Css("#token-input"))
        .await
        .expect("the token form");
    input.send_keys(TOKEN).await.expect("typing");
    browser
        .find(Locator::Id("token-save"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let paused = tokio::time::timeout(
        wait,
        handle.wait_for("cache_warmer", |s| s.state == JobState::Paused),
    )
    .await;
    assert!(matches!(paused, Ok(Ok(_))), "the click paused the job");
    wait_for_state(&browser, "cache_warmer", "PAUSED").await;

    // Resume needs no second prompt: the token is kept for the tab.
    browser
        .find(Locator::Css(
            "[data-job=\"cache_warmer\"] [data-action=\"resume\"]",
        ))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let resumed = tokio::time::timeout(
        wait,
        handle.wait_for("cache_warmer", |s| s.state == JobState::Idle),
    )
    .await;
    assert!(matches!(resumed, Ok(Ok(_))), "the click resumed the job");

    // Pause the guarded job on node A's page (the token is kept); node B's page shows it
    // paused, from the store, and node A's supervisor obeys.
    wait_for_strip(&browser, "nightly_report").await;
    browser
        .find(Locator::Css(
            "[data-job=\"nightly_report\"] [data-action=\"pause\"]",
        ))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let paused = tokio::time::timeout(
        wait,
        handle.wait_for("nightly_report", |s| s.state == JobState::Paused),
    )
    .await;
    assert!(matches!(paused, Ok(Ok(_))), "the leader obeyed the pause");
    wait_for_state(&browser, "nightly_report", "PAUSED").await;

    let dir = screenshot_dir();
    let wide = browser.screenshot().await.expect("a screenshot");
    std::fs::write(dir.join("wide.png"), wide).expect("saved");

    browser
        .set_window_size(390, 844)
        .await
        .expect("a phone's width");
    let widths = browser
        .execute(
            "return [document.scrollingElement.scrollWidth, window.innerWidth];",
            vec![],
        )
        .await
        .expect("the widths");
    let (scroll, inner) = (widths[0].as_u64().unwrap(), widths[1].as_u64().unwrap());
    assert!(inner <= 390, "the window is narrow: {inner}");
    assert!(scroll <= inner, "nothing overflows: {scroll} > {inner}");
    let narrow = browser.screenshot().await.expect("a screenshot");
    std::fs::write(dir.join("narrow.png"), narrow).expect("saved");

    browser.goto(&base_b).await.expect("node B's page loads");
    wait_for_state(&browser, "nightly_report", "PAUSED").await;
    let leader = browser
        .find(Locator::Css("[data-job=\"nightly_report\"] .leader"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(leader.contains("another node"), "{leader}");
    let on_b = browser.screenshot().await.expect("a screenshot");
    std::fs::write(dir.join("node-b-narrow.png"), on_b).expect("saved");

    browser.close().await.expect("the browser closes");
    handle.shutdown();
    handle_b.shutdown();
    running.await.expect("the host stops");
    running_b.await.expect("node B stops");
}
