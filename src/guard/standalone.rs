//! Leader election for code that is not a loop job: "run this while I am leader".

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::GuardedJob;
use super::elector::Elector;
use super::lease::{GuardState, HeldLease, LeadershipEvent};
use super::notice::JobLine;
use crate::identity::NodeIdentity;
use crate::schedule::ScheduleProblem;
use crate::settings::{Leadership, Settings, SettingsError};
use crate::store::LeaseStore;

/// Why [`LeaderElector::start`] refused to start: the lease timing breaks a rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot start the leader elector for `{key}`: {}", ProblemList(.problems))]
pub struct InvalidTiming {
    /// The lease key the elector was to compete for.
    pub key: String,
    /// Every broken rule, each naming its field.
    pub problems: Vec<ScheduleProblem>,
}

struct ProblemList<'a>(&'a [ScheduleProblem]);

impl std::fmt::Display for ProblemList<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (index, problem) in self.0.iter().enumerate() {
            let separator = if index == 0 { "" } else { "; " };
            write!(f, "{separator}{problem}")?;
        }
        Ok(())
    }
}

/// Whether this node leads, as [`LeaderElector::watch`] shows it.
#[derive(Debug, Clone, PartialEq)]
pub enum LeaderState {
    /// Another node leads, or nobody does yet.
    Follower,
    /// This node leads, under this lease.
    Leader(HeldLease),
}

impl LeaderState {
    /// The lease, while leading.
    pub fn lease(&self) -> Option<&HeldLease> {
        match self {
            LeaderState::Leader(lease) => Some(lease),
            LeaderState::Follower => None,
        }
    }
}

/// Competes for one lease key in the background and tells who leads: for work that is not a
/// periodic job (a consumer, a cache warmer) that must run on one replica only.
///
/// It keeps the same safety argument as guarded jobs (see [`elector`](super::elector)): the
/// lease is renewed in the background, and it is considered lost the moment its local deadline
/// passes or the store refuses a renewal.
///
/// It competes until [`LeaderElector::shutdown`], or until it is dropped, or until a
/// [`run_while_leader`](LeaderElector::run_while_leader) future is dropped before it
/// completes: each stops the background task, which releases the lease at once (reported as
/// [`LostReason::Released`](super::LostReason::Released) on the event stream) so another
/// candidate takes over. Nothing keeps renewing a lease that no code uses.
///
/// ```
/// use std::sync::Arc;
/// use loopjob::{LeaderElector, Leadership, LeaderMode, NodeIdentity};
/// use loopjob::store::MemoryStore;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let store = Arc::new(MemoryStore::new());
/// let node = NodeIdentity::new("web-1", "eu");
/// let elector =
///     LeaderElector::start(store, "orders-consumer", Leadership::new(LeaderMode::Global), &node)
///         .expect("the default timing is valid");
///
/// let epoch = elector
///     .run_while_leader(|lease, token| async move {
///         // consume until `token` is cancelled (leadership lost) or the work is done
///         let _ = token;
///         lease.epoch()
///     })
///     .await;
/// assert_eq!(epoch, 1);
/// elector.shutdown().await; // releases the lease at once
/// # }
/// ```
pub struct LeaderElector {
    state: watch::Receiver<LeaderState>,
    events: Option<mpsc::UnboundedReceiver<LeadershipEvent>>,
    stop: CancellationToken,
    /// The background task; taken by [`LeaderElector::shutdown`].
    task: Option<JoinHandle<()>>,
}

impl LeaderElector {
    /// Starts competing for `key` as `node`, with the lease timing of `leadership` (its mode is
    /// not used: the key is taken as given). Must be called inside a Tokio runtime.
    ///
    /// The timing is checked first, as a host checks a guarded job's: a `lease_ttl` of 3 ms or a
    /// `retry_every` of 1 ns would flood the store and the log, so it is an error naming each
    /// broken rule (see [`limits`](crate::limits)).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use loopjob::{LeaderElector, Leadership, LeaderMode, NodeIdentity};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let too_fast = Leadership::new(LeaderMode::Global)
    ///     .lease_ttl(Duration::from_millis(3))
    ///     .retry_every(Duration::from_nanos(1));
    /// let store = Arc::new(loopjob::store::MemoryStore::new());
    /// let node = NodeIdentity::new("web-1", "eu");
    /// let error = LeaderElector::start(store, "orders", too_fast, &node).unwrap_err();
    /// assert!(error.to_string().contains("lease_ttl"), "{error}");
    /// assert!(error.to_string().contains("retry_every"), "{error}");
    /// # }
    /// ```
    pub fn start(
        store: Arc<dyn LeaseStore>,
        key: impl Into<String>,
        leadership: Leadership,
        node: &NodeIdentity,
    ) -> Result<Self, InvalidTiming> {
        let key = key.into();
        let global = Leadership {
            mode: crate::LeaderMode::Global,
            ..leadership
        };
        match global.validate() {
            Ok(()) => Ok(LeaderElector::spawn(store, key, global, node)),
            Err(problems) => Err(InvalidTiming { key, problems }),
        }
    }

    /// Starts the elector's task for `key`, whose timing is checked.
    fn spawn(
        store: Arc<dyn LeaseStore>,
        key: String,
        leadership: Leadership,
        node: &NodeIdentity,
    ) -> Self {
        let (guard_tx, mut guard_rx) = watch::channel(GuardState::empty());
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let (state_tx, state_rx) = watch::channel(LeaderState::Follower);
        let job = GuardedJob {
            name: Arc::from(key.as_str()),
            leadership,
            keys: vec![key],
            scope: None,
            state: guard_tx,
            events: JobLine::Standalone(events_tx),
            initial_delay: None,
            // Never cancelled: a standalone elector has no supervisor to be dropped.
            abandoned: CancellationToken::new(),
        };
        let elector = Elector::new(
            store,
            super::holder_name(node),
            vec![job],
            Default::default(),
        );
        let stop = elector.stop_token();
        let forward = async move {
            while guard_rx.changed().await.is_ok() {
                let state = match guard_rx.borrow_and_update().leases.first() {
                    Some(lease) => LeaderState::Leader(lease.clone()),
                    None => LeaderState::Follower,
                };
                state_tx.send_replace(state);
            }
        };
        let task = tokio::spawn(async move {
            tokio::join!(elector.run(), forward);
        });
        LeaderElector {
            state: state_rx,
            events: Some(events_rx),
            stop,
            task: Some(task),
        }
    }

    /// Starts competing for `key` as `node`, with the lease timing that settings give in
    /// `[loopjob.leaders.<key>]` (see [`Settings::leader`]); fails, with every problem, if
    /// that section is wrong. Must be called inside a Tokio runtime.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use loopjob::{LeaderElector, NodeIdentity, Settings};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), loopjob::SettingsError> {
    /// let settings = Settings::from_toml_str("[loopjob.leaders.orders]\nlease_ttl = \"30s\"\n")?;
    /// let store = Arc::new(loopjob::store::MemoryStore::new());
    /// let node = NodeIdentity::new("web-1", "eu");
    /// let elector = LeaderElector::from_settings(store, "orders", &settings, &node)?;
    /// let lease = elector.run_while_leader(|lease, _token| async move { lease }).await;
    /// assert!(lease.deadline() > tokio::time::Instant::now() + Duration::from_secs(20));
    /// elector.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub fn from_settings(
        store: Arc<dyn LeaseStore>,
        key: impl Into<String>,
        settings: &Settings,
        node: &NodeIdentity,
    ) -> Result<Self, SettingsError> {
        let key = key.into();
        let leadership = settings.leader(&key)?;
        Ok(LeaderElector::spawn(store, key, leadership, node))
    }

    /// The current state.
    pub fn state(&self) -> LeaderState {
        self.state.borrow().clone()
    }

    /// A receiver that sees every change of leadership.
    pub fn watch(&self) -> watch::Receiver<LeaderState> {
        self.state.clone()
    }

    /// The stream of acquired and lost events, with the reason of each loss. It can be taken
    /// once; later calls return `None`.
    pub fn events(&mut self) -> Option<mpsc::UnboundedReceiver<LeadershipEvent>> {
        self.events.take()
    }

    /// Runs `task` while this node leads, and returns its output once it finishes while still
    /// leading.
    ///
    /// Waits to be elected, then calls `task(lease, token)`. If leadership is lost meanwhile,
    /// `token` is cancelled at once; the task should then stop soon, its output is discarded,
    /// and it is started again at the next election.
    ///
    /// Dropping the future before it completes drops the task and stops this elector, as
    /// [`LeaderElector::shutdown`] does: the lease is released at once and the elector no
    /// longer competes. (Its work was the reason to lead; with the work gone, renewing the
    /// lease would only keep every other candidate out.)
    pub async fn run_while_leader<F, Fut, T>(&self, mut task: F) -> T
    where
        F: FnMut(HeldLease, CancellationToken) -> Fut,
        Fut: Future<Output = T>,
    {
        // Stops the elector if this future is dropped before it returns.
        let stop_on_drop = self.stop.clone().drop_guard();
        let output = self.lead_and_run(&mut task).await;
        stop_on_drop.disarm();
        output
    }

    async fn lead_and_run<F, Fut, T>(&self, task: &mut F) -> T
    where
        F: FnMut(HeldLease, CancellationToken) -> Fut,
        Fut: Future<Output = T>,
    {
        let mut state = self.state.clone();
        loop {
            let leader = state
                .wait_for(|s| s.lease().is_some_and(HeldLease::is_held))
                .await
                .map(|leader| leader.lease().cloned());
            let lease = match leader {
                Ok(Some(lease)) => lease,
                Ok(None) => continue,
                // The elector stopped (it panicked): nobody will lead from here.
                Err(_) => std::future::pending().await,
            };
            let token = CancellationToken::new();
            let work = task(lease.clone(), token.clone());
            tokio::pin!(work);
            tokio::select! {
                output = &mut work => {
                    if lease.is_held() {
                        return output;
                    }
                }
                _ = lease.lost() => {
                    token.cancel();
                    let _ = work.await;
                }
            }
            tracing::info!(key = %lease.key(), epoch = lease.epoch(), "leadership lost; waiting to be elected again");
        }
    }

    /// Stops competing and releases the lease if held, so another node takes over at once.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for LeaderElector {
    /// Stops competing: the background task releases the lease, if held, and ends.
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl std::fmt::Debug for LeaderElector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderElector")
            .field("state", &*self.state.borrow())
            .finish_non_exhaustive()
    }
}
