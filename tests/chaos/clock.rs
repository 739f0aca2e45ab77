//! One clock for every process of a chaos run: CLOCK_MONOTONIC, read directly so that times
//! printed by different processes on this host compare. (`std::time::Instant` reads the same
//! clock on Linux but does not expose its value.) It keeps counting while a process is stopped.
//! It is read by a system call, not through libc's `clock_gettime`, so that a node whose
//! clocks libfaketime skews (`skew.rs`) still prints the host's time.
//!
//! The stores' times (a run's committed start, a pause's mark) are the database server's wall
//! clock in milliseconds; every server of a chaos run is on this host, so its clock is this
//! host's CLOCK_REALTIME, and [`StoreTime`] maps it onto the monotonic clock.

/// The clocks as this process's own calls see them (through libc, where libfaketime may
/// answer instead of the kernel): its monotonic clock in ns, and how far its wall clock is
/// from the host's, in ms.
pub fn process_clocks() -> (u64, i64) {
    let own = |clock| {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: as in `read`, through libc's function.
        let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
        assert_eq!(rc, 0, "clock_gettime({clock}) failed");
        ts.tv_sec * 1_000_000_000 + ts.tv_nsec
    };
    let wall_offset_ns = own(libc::CLOCK_REALTIME) - read(libc::CLOCK_REALTIME) as i64;
    (
        own(libc::CLOCK_MONOTONIC) as u64,
        wall_offset_ns / 1_000_000,
    )
}

fn read(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes into the timespec we own; both clocks always exist on
    // Linux. The system call itself: a preloaded library cannot intercept it.
    let rc = unsafe { libc::syscall(libc::SYS_clock_gettime, clock, &mut ts as *mut _) };
    assert_eq!(rc, 0, "clock_gettime({clock}) failed");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Nanoseconds on CLOCK_MONOTONIC.
pub fn mono_ns() -> u64 {
    read(libc::CLOCK_MONOTONIC)
}

/// Milliseconds between two readings, signed.
pub fn ms(from: u64, to: u64) -> f64 {
    (to as f64 - from as f64) / 1e6
}

/// How a store time (ms of this host's wall clock) maps onto [`mono_ns`].
#[derive(Debug, Clone, Copy)]
pub struct StoreTime {
    /// CLOCK_REALTIME − CLOCK_MONOTONIC, in ns, read once (the wall clock is not stepped
    /// during a run; NTP slews it by at most 0.05%).
    offset_ns: i128,
}

impl StoreTime {
    pub fn now() -> StoreTime {
        let before = mono_ns();
        let real = read(libc::CLOCK_REALTIME);
        let after = mono_ns();
        StoreTime {
            offset_ns: i128::from(real) - i128::from(before / 2 + after / 2),
        }
    }

    /// The monotonic time of the store time `ms` (which the server truncated to the
    /// millisecond: the instant it stands for is up to 1 ms later).
    pub fn mono(&self, ms: i64) -> u64 {
        (i128::from(ms) * 1_000_000 - self.offset_ns).max(0) as u64
    }
}
