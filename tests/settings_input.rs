//! Bad input in settings: values past their bounds, huge keys and values, passwords in store
//! URLs, and store URLs that name no database.

#[path = "support/settings.rs"]
mod support;

use loopjob::settings::HostSettings;
use loopjob::{Host, Leadership, Schedule, Settings};

use support::{SEC, build_problems, line_of, load};

#[test]
fn every_duration_key_has_an_upper_bound_reported_at_its_line() {
    let toml = "[loopjob]\n\
                store = \"memory\"\n\
                shutdown_grace = \"500000000000y\"\n\
                [jobs.cleanup]\n\
                interval = \"500000000000y\"\n\
                initial_delay = \"500000000000y\"\n\
                timeout = \"500000000000y\"\n\
                cancel_grace = \"2days\"\n\
                retry_backoff = \"400days\"\n\
                leader = \"global\"\n\
                lease_ttl = \"500000000000y\"\n\
                retry_every = \"2h\"\n";
    let problems = build_problems(load(toml, &[]));
    let found: Vec<_> = problems
        .iter()
        .map(|p| (line_of(p).unwrap_or(0), p.key.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            (3, "shutdown_grace"),
            (5, "interval"),
            (6, "initial_delay"),
            (7, "timeout"),
            (8, "cancel_grace"),
            (9, "retry_backoff"),
            (11, "lease_ttl"),
            (12, "retry_every"),
        ],
        "{problems:#?}"
    );
    let message = |key: &str| {
        problems
            .iter()
            .find(|p| p.key == key)
            .map(ToString::to_string)
            .unwrap_or_default()
    };
    assert!(
        message("interval").contains(
            "app.toml:5: [jobs.cleanup] interval: is 500000000000years, longer than the most \
             allowed, 366days (loopjob::limits::MAX_SCHEDULE_DURATION)"
        ),
        "{}",
        message("interval")
    );
    assert!(
        message("shutdown_grace").contains("allowed, 1day (loopjob::limits::MAX_GRACE)"),
        "{}",
        message("shutdown_grace")
    );
    assert!(message("cancel_grace").contains("is 2days, longer than the most allowed, 1day"));
    assert!(message("lease_ttl").contains("(loopjob::limits::MAX_LEASE_TTL)"));
    assert!(
        message("retry_every").contains("is 2h, longer than the most allowed, 1h"),
        "{}",
        message("retry_every")
    );
}

#[test]
fn lease_timing_that_would_flood_the_store_is_refused() {
    let settings = load(
        "[jobs.cleanup]\nleader = \"cluster\"\nlease_ttl = \"3ms\"\nretry_every = \"1ns\"\n",
        &[],
    );
    let error = settings
        .job("cleanup", &Schedule::every(SEC), &Leadership::default())
        .unwrap_err();
    let found: Vec<_> = error
        .problems()
        .iter()
        .map(|p| (line_of(p), p.key.as_str()))
        .collect();
    assert_eq!(
        found,
        [(Some(3), "lease_ttl"), (Some(4), "retry_every")],
        "{error}"
    );
    let text = error.to_string();
    assert!(
        text.contains("lease_ttl: is 3ms, shorter than the least allowed, 1s"),
        "{text}"
    );
    assert!(
        text.contains("retry_every: is 1ns, shorter than the least allowed, 10ms"),
        "{text}"
    );
}

#[test]
fn a_long_lease_keeps_the_default_retry_and_a_rule_broken_by_the_ttl_is_blamed_on_it() {
    // The default retry_every (2s) fits any ttl.
    let settings = load(
        "[jobs.cleanup]\nleader = \"global\"\nlease_ttl = \"1day\"\n",
        &[],
    );
    let job = settings
        .job("cleanup", &Schedule::every(SEC), &Leadership::default())
        .unwrap();
    assert_eq!(job.leadership.lease_ttl, 86_400 * SEC);
    // A renewal the code gives, made too frequent by the ttl that settings give: the problem is
    // at the ttl's line.
    let code = Leadership::default().with_renew_every(SEC);
    let error = settings
        .job("cleanup", &Schedule::every(SEC), &code)
        .unwrap_err();
    assert_eq!(error.problems().len(), 1, "{error}");
    let problem = &error.problems()[0];
    assert_eq!(
        (line_of(problem), problem.key.as_str()),
        (Some(3), "lease_ttl")
    );
    assert!(
        problem
            .message
            .contains("`renew_every` is 1s, shorter than the least allowed, 14m 24s"),
        "{problem}"
    );
}

#[test]
fn a_megabyte_key_is_reported_shortened_and_without_a_suggestion_search() {
    let key = "x".repeat(1 << 20);
    let toml = format!("[jobs.cleanup]\n{key} = 1\n[loopjob]\n{key} = \"{key}\"\n");
    let problems = build_problems(load(&toml, &[]));
    assert_eq!(problems.len(), 2, "{problems:#?}");
    for problem in &problems {
        let shown = problem.to_string();
        // The whole problem reads in one line of a terminal, not a megabyte.
        assert!(
            shown.len() < 400,
            "{} bytes: {}",
            shown.len(),
            &shown[..400]
        );
        assert!(
            shown.contains(&format!("{}… (1048576 bytes)", "x".repeat(60))),
            "{shown}"
        );
        assert!(shown.contains("unknown key"), "{shown}");
        // The key itself is kept whole for programs.
        assert_eq!(problem.key.len(), 1 << 20);
    }
    // A long value is shortened too, with its length.
    let value = "y".repeat(100_000);
    let settings = load(&format!("[jobs.cleanup]\nmode = \"{value}\"\n"), &[]);
    let error = settings
        .job("cleanup", &Schedule::every(SEC), &Leadership::default())
        .unwrap_err();
    let shown = error.to_string();
    assert!(shown.len() < 400, "{} bytes", shown.len());
    assert!(
        shown.contains(&format!("\"{}\"… (100000 bytes)", "y".repeat(60))),
        "{shown}"
    );
}

#[test]
fn no_message_or_debug_output_shows_a_store_password() {
    const SECRET: &str = "hunter2";
    let wrong_scheme = format!("zookeeper://app:{SECRET}@cache:2181/0");
    let settings = load(
        &format!("[loopjob]\nstore = \"{wrong_scheme}\"\n"),
        &[("LOOPJOB__NODE_ID", "web-1")],
    );
    // The settings and their host section, in Debug.
    assert!(!format!("{settings:?}").contains(SECRET));
    let error = settings.host().unwrap_err();
    for shown in [error.to_string(), format!("{error:?}")] {
        assert!(!shown.contains(SECRET), "{shown}");
        assert!(
            shown.contains("zookeeper://app:***@cache:2181/0"),
            "{shown}"
        );
    }
    let mut host = HostSettings::default();
    host.store = Some(format!("postgres://app:{SECRET}@db/x?password={SECRET}"));
    let shown = format!("{host:?}");
    assert!(!shown.contains(SECRET), "{shown}");
    assert!(
        shown.contains("postgres://app:***@db/x?password=***"),
        "{shown}"
    );

    // A loader's Debug shows neither TOML text nor variable values.
    let loader = Settings::loader()
        .toml(
            "app.toml",
            format!("[loopjob]\nstore = \"{wrong_scheme}\"\n"),
        )
        .env_vars([("LOOPJOB__STORE", wrong_scheme.as_str())]);
    let shown = format!("{loader:?}");
    assert!(!shown.contains(SECRET), "{shown}");
    assert!(shown.contains("LOOPJOB__STORE"), "{shown}");

    // The build error, from a file and from the environment, in Display and Debug.
    for settings in [
        load(&format!("[loopjob]\nstore = \"{wrong_scheme}\"\n"), &[]),
        load("", &[("LOOPJOB__STORE", &wrong_scheme)]),
        load(
            &format!("[loopjob]\nstore = \"postgress:/app:{SECRET}@db\"\n"),
            &[],
        ),
    ] {
        let error = Host::builder()
            .settings(settings)
            .job_fn("cleanup", Schedule::every(SEC), |_| async { Ok(()) })
            .build()
            .unwrap_err();
        for shown in [error.to_string(), format!("{error:?}")] {
            assert!(!shown.contains(SECRET), "{shown}");
            assert!(shown.contains(":***@"), "{shown}");
        }
    }

    // The store's own errors.
    for url in [
        wrong_scheme.clone(),
        format!("mysql://root:{SECRET}@db"),
        format!("postgres://db/x?sslmode=require&password={SECRET}&x=1"),
    ] {
        let error = loopjob::store::open(&url).unwrap_err();
        for shown in [error.to_string(), format!("{error:?}")] {
            assert!(!shown.contains(SECRET), "{shown}");
        }
    }
}

#[cfg(all(feature = "postgres", feature = "mysql"))]
#[tokio::test]
async fn an_opened_store_does_not_show_its_password() {
    const SECRET: &str = "hunter2";
    for url in [
        format!("postgres://app:{SECRET}@127.0.0.1:1/x"),
        format!("mysql://app:{SECRET}@127.0.0.1:1/x"),
    ] {
        let store = loopjob::store::open(&url).expect("opens lazily, without I/O");
        let shown = format!("{store:?}");
        assert!(!shown.contains(SECRET), "{shown}");
    }
}

#[test]
fn a_store_url_without_a_file_host_or_database_is_a_build_error() {
    for (url, words) in [
        ("sqlite:", "names no database file; write sqlite://PATH"),
        (
            "postgres://",
            "names no host and no database; write postgres://USER:PASSWORD@HOST:5432/DATABASE",
        ),
        (
            "mysql://",
            "names no host and no database; write mysql://USER:PASSWORD@HOST:3306/DATABASE",
        ),
        ("postgres://db", "names no database"),
    ] {
        let problems = build_problems(load(&format!("[loopjob]\nstore = \"{url}\"\n"), &[]));
        assert_eq!(problems.len(), 1, "{url}: {problems:#?}");
        assert_eq!(problems[0].key, "store");
        assert_eq!(line_of(&problems[0]), Some(2));
        assert!(problems[0].message.contains(words), "{}", problems[0]);
    }
}
