//! The wall clock a host reads: the system's, or a [`TestClock`] that a test sets and steps.
//!
//! Interval jobs never read it (they are timed by the monotonic clock); cron jobs do, since
//! their occurrences are wall-clock times. Injecting it
//! ([`HostBuilder::wall_clock`](crate::HostBuilder::wall_clock)) lets a test step the clock
//! backwards and forwards under tokio's paused time, deterministically.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

/// A source of wall-clock time.
pub trait WallClock: Send + Sync + 'static {
    /// The wall-clock time now.
    fn now(&self) -> SystemTime;
}

/// The system's wall clock (`SystemTime::now`): a host's default.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl WallClock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A wall clock for tests: it starts at a given time, advances with tokio's clock (so with
/// `start_paused = true` it moves only as the test advances time), and can be stepped like a
/// machine's clock that NTP or an operator corrects.
///
/// Clones share the clock: keep one to step it, give the other to the host.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use loopjob::{TestClock, WallClock};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
/// let clock = TestClock::starting_at(start);
/// tokio::time::sleep(Duration::from_secs(10)).await;
/// assert_eq!(clock.now(), start + Duration::from_secs(10));
/// clock.step_back(Duration::from_secs(3600));
/// assert_eq!(clock.now(), start + Duration::from_secs(10) - Duration::from_secs(3600));
/// # }
/// ```
#[derive(Clone)]
pub struct TestClock {
    inner: Arc<Mutex<TestClockInner>>,
}

struct TestClockInner {
    /// The wall time at `since`.
    at: SystemTime,
    since: Instant,
}

impl TestClock {
    /// A clock that reads `start` now and runs on with tokio's clock.
    pub fn starting_at(start: SystemTime) -> Self {
        TestClock {
            inner: Arc::new(Mutex::new(TestClockInner {
                at: start,
                since: Instant::now(),
            })),
        }
    }

    /// Steps the clock forwards by `by` at once (monotonic time does not move).
    pub fn step_forward(&self, by: Duration) {
        self.set(self.now() + by);
    }

    /// Steps the clock backwards by `by` at once (monotonic time does not move).
    pub fn step_back(&self, by: Duration) {
        self.set(self.now() - by);
    }

    /// Sets the clock to read `now` at this instant; it runs on from there.
    pub fn set(&self, now: SystemTime) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.at = now;
        inner.since = Instant::now();
    }
}

impl WallClock for TestClock {
    fn now(&self) -> SystemTime {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.at + inner.since.elapsed()
    }
}

impl fmt::Debug for TestClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestClock")
            .field("now", &self.now())
            .finish()
    }
}
