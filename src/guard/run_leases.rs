//! The leases one run holds, as the run sees them: [`RunLeases`], held until the elector
//! reports one lost *or* until the earliest local deadline among them passes, whichever the run
//! notices first.
//!
//! The run checks the deadline itself (the elector's invariant 3, on the run's side): a process
//! frozen past its lease (SIGSTOP, a long GC-like stall, a suspended VM) and then resumed has
//! every expired timer fire in the same turn, and nothing orders the elector's task before the
//! run's. So [`RunLeases::is_held`] reads the clock, and [`RunLeases::lost`] compares the clock
//! with the deadline on every poll, before it relies on any timer.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::time::{Instant, Sleep, sleep_until};
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

use super::HeldLease;

/// The leases a run started with, and the token the elector cancels when one of them is lost.
#[derive(Debug)]
pub(crate) struct RunLeases {
    leases: Arc<[HeldLease]>,
    /// The job's state token when the run started: cancelled when any of its leases is lost.
    lost: CancellationToken,
    /// The earliest deadline among `leases` as last read. A lease's deadline only moves later
    /// (a renewal extends it), so while the clock is before this instant, every lease is still
    /// within its deadline and none has to be read: the check stays O(1) for a partitioned job
    /// holding thousands of partitions.
    valid_until: Mutex<Instant>,
}

impl RunLeases {
    /// The run's view of `leases`, which `lost` reports lost.
    pub(crate) fn new(leases: Arc<[HeldLease]>, lost: CancellationToken) -> Self {
        let valid_until = Mutex::new(earliest_deadline(&leases));
        RunLeases {
            leases,
            lost,
            valid_until,
        }
    }

    /// The leases, in the order the run got them.
    pub(crate) fn leases(&self) -> &[HeldLease] {
        &self.leases
    }

    /// The earliest local deadline among the leases, as renewed so far.
    pub(crate) fn deadline(&self) -> Instant {
        self.held_until().unwrap_or_else(|passed| passed)
    }

    /// Whether every lease is still held: none reported lost, and the clock before the earliest
    /// deadline.
    pub(crate) fn is_held(&self) -> bool {
        !self.lost.is_cancelled() && self.held_until().is_ok_and(|until| Instant::now() < until)
    }

    /// Completes once a lease is reported lost or the earliest deadline has passed; the clock is
    /// compared with the deadline on every poll. Cancel-safe.
    pub(crate) fn lost(&self) -> Lost<'_> {
        Lost {
            leases: self,
            reported: self.lost.cancelled(),
            timer: None,
        }
    }

    /// `Ok` with the earliest deadline while the clock is before it, `Err` with it once passed.
    fn held_until(&self) -> Result<Instant, Instant> {
        let now = Instant::now();
        let mut until = self
            .valid_until
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if now < *until {
            return Ok(*until);
        }
        // Past the deadline last read: renewals may have moved it since.
        *until = earliest_deadline(&self.leases);
        if now < *until {
            Ok(*until)
        } else {
            Err(*until)
        }
    }
}

fn earliest_deadline(leases: &[HeldLease]) -> Instant {
    leases
        .iter()
        .map(HeldLease::deadline)
        .min()
        .unwrap_or_else(Instant::now)
}

pin_project_lite::pin_project! {
    /// The future of [`RunLeases::lost`].
    pub(crate) struct Lost<'a> {
        leases: &'a RunLeases,
        #[pin]
        reported: WaitForCancellationFuture<'a>,
        // Wakes the task at the deadline when nothing else does; boxed and made at the first
        // poll, reset when a renewal moved the deadline.
        timer: Option<Pin<Box<Sleep>>>,
    }
}

impl Future for Lost<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        if this.reported.poll(cx).is_ready() {
            return Poll::Ready(());
        }
        loop {
            // The clock first: after a freeze, the timer may not have fired yet.
            let Ok(deadline) = this.leases.held_until() else {
                return Poll::Ready(());
            };
            let timer = this
                .timer
                .get_or_insert_with(|| Box::pin(sleep_until(deadline)));
            if timer.deadline() != deadline {
                // A renewal moved the deadline.
                timer.as_mut().reset(deadline);
            } else if timer.is_elapsed() {
                return Poll::Ready(());
            }
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            // The timer fired: the loop reads the deadline again, which a renewal may have moved.
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn lease(key: &str, deadline: Instant) -> HeldLease {
        HeldLease::new(key.to_owned(), 1, None, deadline)
    }

    #[tokio::test(start_paused = true)]
    async fn lost_completes_exactly_at_the_deadline_without_any_elector() {
        let start = Instant::now();
        let leases = RunLeases::new(
            Arc::from(vec![lease("a", start + Duration::from_secs(9))]),
            CancellationToken::new(),
        );
        leases.lost().await;
        assert_eq!(start.elapsed(), Duration::from_secs(9));
        assert!(!leases.is_held());
    }

    #[tokio::test(start_paused = true)]
    async fn a_renewal_moves_the_end_and_the_earliest_lease_decides() {
        let start = Instant::now();
        let a = lease("a#0", start + Duration::from_secs(9));
        let b = lease("a#1", start + Duration::from_secs(12));
        let leases = RunLeases::new(
            Arc::from(vec![a.clone(), b.clone()]),
            CancellationToken::new(),
        );
        let renew = async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            a.extend_to(start + Duration::from_secs(14));
            assert!(leases.is_held());
        };
        tokio::join!(leases.lost(), renew);
        // `a` now runs to 14 s, so `b`, still at 12 s, ends the run.
        assert_eq!(start.elapsed(), Duration::from_secs(12));
        assert_eq!(leases.deadline(), start + Duration::from_secs(12));
    }

    #[tokio::test(start_paused = true)]
    async fn the_held_check_flips_at_the_deadline() {
        let start = Instant::now();
        let leases = RunLeases::new(
            Arc::from(vec![lease("a", start + Duration::from_secs(9))]),
            CancellationToken::new(),
        );
        tokio::time::sleep(Duration::from_millis(8_999)).await;
        assert!(leases.is_held());
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert!(!leases.is_held());
    }

    #[tokio::test(start_paused = true)]
    async fn a_loss_reported_by_the_elector_ends_it_before_the_deadline() {
        let start = Instant::now();
        let lost = CancellationToken::new();
        let leases = RunLeases::new(
            Arc::from(vec![lease("a", start + Duration::from_secs(9))]),
            lost.clone(),
        );
        let report = async {
            tokio::time::sleep(Duration::from_secs(2)).await;
            lost.cancel();
        };
        tokio::join!(leases.lost(), report);
        assert_eq!(start.elapsed(), Duration::from_secs(2));
        assert!(!leases.is_held());
    }
}
