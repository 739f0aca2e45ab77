#![allow(dead_code)] // each test target uses a different part

//! A job that records when each of its runs started and ended, as offsets from the test's start
//! under tokio's paused clock.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use loopjob::{JobContext, JobError, LoopJob, Schedule};
use tokio::time::Instant;

/// What one run did, in offsets from the recorder's creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub run_id: u64,
    pub attempt: u32,
    pub started: Duration,
    /// `None` while running, or when the run was dropped before it ended.
    pub ended: Option<Duration>,
}

/// How a recorded run behaves.
#[derive(Debug, Clone, Copy)]
pub enum Behaviour {
    /// Works for this long (watching its token), then returns `Ok`.
    Work(Duration),
    /// Works for this long ignoring its token, then returns `Ok`.
    Stubborn(Duration),
    /// Returns an error at once.
    Fail,
    /// Panics at once.
    Panic,
}

#[derive(Clone)]
pub struct Recorder {
    pub t0: Instant,
    pub name: &'static str,
    pub schedule: Schedule,
    pub behaviour: Behaviour,
    spans: Arc<Mutex<Vec<Span>>>,
}

impl Recorder {
    pub fn new(name: &'static str, schedule: Schedule, behaviour: Behaviour) -> Self {
        Recorder {
            t0: Instant::now(),
            name,
            schedule,
            behaviour,
            spans: Arc::default(),
        }
    }

    pub fn spans(&self) -> Vec<Span> {
        self.spans.lock().unwrap().clone()
    }

    /// Start offsets of every attempt, in whole seconds.
    pub fn starts_secs(&self) -> Vec<u64> {
        self.spans().iter().map(|s| s.started.as_secs()).collect()
    }

    /// Start offsets of every attempt, exactly.
    pub fn starts(&self) -> Vec<Duration> {
        self.spans().iter().map(|s| s.started).collect()
    }

    fn now(&self) -> Duration {
        Instant::now() - self.t0
    }
}

impl LoopJob for Recorder {
    fn name(&self) -> &str {
        self.name
    }

    fn schedule(&self) -> Schedule {
        self.schedule.clone()
    }

    async fn execute(&self, ctx: &JobContext) -> Result<(), JobError> {
        let index = {
            let mut spans = self.spans.lock().unwrap();
            spans.push(Span {
                run_id: ctx.run_id(),
                attempt: ctx.attempt(),
                started: self.now(),
                ended: None,
            });
            spans.len() - 1
        };
        let result = match self.behaviour {
            Behaviour::Work(length) => {
                tokio::select! {
                    _ = tokio::time::sleep(length) => {}
                    _ = ctx.cancelled() => {}
                }
                Ok(())
            }
            Behaviour::Stubborn(length) => {
                tokio::time::sleep(length).await;
                Ok(())
            }
            Behaviour::Fail => Err(JobError::msg("deliberate failure")),
            Behaviour::Panic => panic!("deliberate panic in run {}", ctx.run_id()),
        };
        // A dropped run never gets here, so its span keeps `ended: None`.
        let ended = self.now();
        self.spans.lock().unwrap()[index].ended = Some(ended);
        result
    }
}

pub fn secs(secs: u64) -> Duration {
    Duration::from_secs(secs)
}

pub fn millis(millis: u64) -> Duration {
    Duration::from_millis(millis)
}
