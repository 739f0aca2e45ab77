//! `shutdown_grace` from the settings reaches the host: a run that ignores its token is dropped
//! exactly that long after the shutdown began (paused clock), whatever the builder said.

use std::time::Duration;

use loopjob::{Host, Schedule, Settings};
use tokio::time::Instant;

/// Builds a host with `settings` and a builder grace of 30 s, whose one job ignores its token
/// (with a cancel grace of an hour, so that only the shutdown grace bounds it); returns how long
/// its shutdown took.
async fn shutdown_takes(settings: Settings) -> Duration {
    let host = Host::builder()
        .settings(settings)
        .shutdown_grace(Duration::from_secs(30))
        .job_fn(
            "deaf",
            Schedule::every(Duration::from_secs(60)).cancel_grace(Duration::from_secs(3600)),
            |_ctx| async {
                tokio::time::sleep(Duration::from_secs(7200)).await;
                Ok(())
            },
        )
        .build()
        .unwrap();
    let shutdown_at = Instant::now() + Duration::from_secs(1);
    let report = host.run_until(tokio::time::sleep_until(shutdown_at)).await;
    assert_eq!(
        report.dropped(),
        1,
        "the run outlived the grace and was dropped"
    );
    Instant::now() - shutdown_at
}

#[tokio::test(start_paused = true)]
async fn the_settings_file_sets_the_shutdown_grace() {
    let settings = Settings::loader()
        .toml("app.toml", "[loopjob]\nshutdown_grace = \"3s\"\n")
        .load()
        .unwrap();
    assert_eq!(shutdown_takes(settings).await, Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn the_environment_overrides_the_file() {
    let settings = Settings::loader()
        .toml("app.toml", "[loopjob]\nshutdown_grace = \"3s\"\n")
        .env_vars([("LOOPJOB__SHUTDOWN_GRACE", "2s")])
        .load()
        .unwrap();
    assert_eq!(shutdown_takes(settings).await, Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn without_the_key_the_builder_value_stands() {
    let settings = Settings::loader()
        .toml("app.toml", "[jobs.deaf]\ninterval = \"60s\"\n")
        .load()
        .unwrap();
    assert_eq!(shutdown_takes(settings).await, Duration::from_secs(30));
}
