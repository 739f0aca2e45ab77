//! Batched transactions: how the etcd store reads and writes many keys in few round trips.
//!
//! etcd refuses a transaction of more than 128 operations (its `--max-txn-ops`) at any one
//! level of nesting.
//!
//! - **Reads are flat**: up to 128 gets per transaction, the round trips of a larger batch
//!   sent side by side. etcd serves a transaction of gets alone as a read, without a log entry
//!   (a linearizable one first asks the leader how far it has committed). A transaction that
//!   nests another, even of gets alone, is a write to etcd: it is appended to the raft log
//!   and written to every member's disk, so a small read would cost as much as a write.
//! - **Writes nest** each key's guarded writes (at most [`MAX_OPS_PER_KEY`]) in a transaction
//!   of their own, so that one round trip carries up to 120 keys and a key whose guard fails
//!   leaves the others' writes standing. Larger batches are split into round trips of 120 keys.
//!
//! Every request is sent again while its connection to the endpoint the client picked fails
//! (see [`sent`]).

use std::future::Future;
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, GetOptions, GetResponse, KeyValue, Txn, TxnOp, TxnOpResponse,
    TxnResponse,
};

/// How long a request waits before it is sent again after failing to connect.
const RESEND_AFTER: Duration = Duration::from_millis(50);

/// Sends `request` again while its connection fails: the client spreads requests over every
/// endpoint of the URL, so while a member is down some requests meet it (and one in flight
/// when it went down loses its connection). No member answered such a request; if it reached
/// etcd before the connection broke, sending it again is still harmless: reads and keep-alives
/// repeat, and a repeated guarded write finds its guards changed and writes nothing (answering
/// "not written", as a call cancelled after it committed would). A caller that tries again on
/// "not written" must first tell its own write from another's: the operator commands do, by
/// the unique value each writes to its key's command key. The caller's timeout bounds the
/// wait.
pub(super) async fn sent<T, F: Future<Output = Result<T, etcd_client::Error>>>(
    mut request: impl FnMut() -> F,
) -> Result<T, etcd_client::Error> {
    loop {
        match request().await {
            Err(error) if connection_failed(&error) => {
                tokio::time::sleep(RESEND_AFTER).await;
            }
            answer => return answer,
        }
    }
}

/// Whether `error` says the request's connection failed, rather than etcd's answer: it could
/// not be made, broke, or ended before the answer came (hyper cancels the requests on a
/// connection that was closed, even cleanly, as a proxy in front of a member that died closes
/// it, or that closed before it was ready).
fn connection_failed(error: &etcd_client::Error) -> bool {
    let text = error.to_string();
    [
        "tcp connect error",
        "transport error",
        "connection closed",
        "connection was not ready",
    ]
    .iter()
    .any(|sign| text.contains(sign))
}

/// One transaction, sent again while its connection fails (see [`sent`]).
pub(super) async fn txn(client: &Client, txn: Txn) -> Result<TxnResponse, etcd_client::Error> {
    sent(|| {
        let (mut client, txn) = (client.clone(), txn.clone());
        async move { client.txn(txn).await }
    })
    .await
}

/// One range read, sent again while its connection fails (see [`sent`]).
pub(super) async fn get(
    client: &Client,
    key: Vec<u8>,
    options: GetOptions,
) -> Result<GetResponse, etcd_client::Error> {
    sent(|| {
        let (mut client, key, options) = (client.clone(), key.clone(), options.clone());
        async move { client.get(key, Some(options)).await }
    })
    .await
}

/// The most operations etcd takes in one transaction by default.
const MAX_TXN_OPS: usize = 128;

/// The most operations one key's nested transaction has (compares or requests).
const MAX_OPS_PER_KEY: usize = 8;

/// How many keys one round trip carries beside `always` operations.
fn keys_per_round_trip(always: &[TxnOp]) -> usize {
    MAX_TXN_OPS - MAX_OPS_PER_KEY - always.len()
}

/// The reads of `items` (each a list of gets) and the cluster revision of the first round
/// trip. `always` (writes) ends the last round trip, which is sent once the others have been
/// answered, so every read sees what was there before them. The answer has, per item and per
/// get, the key-values found.
pub(super) async fn read(
    client: &mut Client,
    always: Vec<TxnOp>,
    items: Vec<Vec<TxnOp>>,
) -> Result<(Vec<Vec<Vec<KeyValue>>>, i64), etcd_client::Error> {
    let client: &Client = client;
    let mut round_trips = round_trips(items, always.len());
    let last = round_trips.pop().unwrap_or_default();
    let earlier = futures_util::future::try_join_all(
        round_trips
            .into_iter()
            .map(|items| read_flat(client, Vec::new(), items)),
    )
    .await?;
    let (last_found, last_revision) = read_flat(client, always, last).await?;
    let revision = earlier
        .first()
        .map_or(last_revision, |(_, revision)| *revision);
    let mut found: Vec<_> = earlier.into_iter().flat_map(|(found, _)| found).collect();
    found.extend(last_found);
    Ok((found, revision))
}

/// `items` split into round trips of at most [`MAX_TXN_OPS`] gets, with room in the last one
/// for `always` operations; at least one round trip, perhaps empty.
fn round_trips(items: Vec<Vec<TxnOp>>, always: usize) -> Vec<Vec<Vec<TxnOp>>> {
    let (mut round_trips, mut current, mut operations) = (Vec::new(), Vec::new(), 0);
    for item in items {
        if operations + item.len() > MAX_TXN_OPS {
            round_trips.push(std::mem::take(&mut current));
            operations = 0;
        }
        operations += item.len();
        current.push(item);
    }
    round_trips.push(current);
    if operations + always > MAX_TXN_OPS {
        round_trips.push(Vec::new());
    }
    round_trips
}

/// One round trip of [`read`]: `items`' gets in one flat transaction, then `always`.
async fn read_flat(
    client: &Client,
    always: Vec<TxnOp>,
    items: Vec<Vec<TxnOp>>,
) -> Result<(Vec<Vec<Vec<KeyValue>>>, i64), etcd_client::Error> {
    let lengths: Vec<usize> = items.iter().map(Vec::len).collect();
    let mut ops: Vec<TxnOp> = items.into_iter().flatten().collect();
    ops.extend(always);
    let response = txn(client, Txn::new().and_then(ops)).await?;
    let revision = response.header().map_or(0, |header| header.revision());
    let mut answers = response.op_responses().into_iter().map(|get| match get {
        TxnOpResponse::Get(get) => get.kvs().to_vec(),
        _ => Vec::new(),
    });
    let found = lengths
        .into_iter()
        .map(|length| answers.by_ref().take(length).collect())
        .collect();
    Ok((found, revision))
}

/// The writes of one key, made only if every guard still holds.
#[derive(Debug, Default)]
pub(super) struct Guarded {
    guards: Vec<Compare>,
    writes: Vec<TxnOp>,
}

impl Guarded {
    /// Writes made only if `key` was last changed at `revision` (0: it is still absent).
    pub(super) fn unchanged(mut self, key: Vec<u8>, revision: i64) -> Self {
        self.guards
            .push(Compare::mod_revision(key, CompareOp::Equal, revision));
        self
    }

    pub(super) fn write(mut self, op: TxnOp) -> Self {
        self.writes.push(op);
        self
    }
}

/// The revision at which a key was last changed as `read` shows it, 0 for a key not found
/// (what [`Guarded::unchanged`] compares).
pub(super) fn revision(read: Option<&KeyValue>) -> i64 {
    read.map_or(0, KeyValue::mod_revision)
}

/// Makes each item's writes where its guards hold, with `always` (writes of keys no item
/// writes) in every round trip, so at least one; answers per item the revision at which its
/// writes were made (that of every key it wrote), or `None` where a guard failed.
pub(super) async fn write(
    client: &mut Client,
    always: Vec<TxnOp>,
    items: Vec<Guarded>,
) -> Result<Vec<Option<i64>>, etcd_client::Error> {
    let per_round_trip = keys_per_round_trip(&always);
    let mut written = Vec::with_capacity(items.len());
    let mut items = items.into_iter().peekable();
    loop {
        let mut ops = always.clone();
        ops.extend(
            items
                .by_ref()
                .take(per_round_trip)
                .map(|item| TxnOp::txn(Txn::new().when(item.guards).and_then(item.writes))),
        );
        let response = txn(client, Txn::new().and_then(ops)).await?;
        let revision = response.header().map_or(0, |header| header.revision());
        written.extend(
            response
                .op_responses()
                .into_iter()
                .filter_map(|op| match op {
                    TxnOpResponse::Txn(nested) => Some(nested.succeeded().then_some(revision)),
                    _ => None,
                }),
        );
        if items.peek().is_none() {
            return Ok(written);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gets(count: usize) -> Vec<TxnOp> {
        (0..count)
            .map(|i| TxnOp::get(vec![i as u8], None))
            .collect()
    }

    fn shape(round_trips: &[Vec<Vec<TxnOp>>]) -> Vec<Vec<usize>> {
        round_trips
            .iter()
            .map(|items| items.iter().map(Vec::len).collect())
            .collect()
    }

    #[test]
    fn reads_that_fit_are_one_round_trip() {
        let items = vec![gets(2), gets(2), gets(1)];
        assert_eq!(shape(&round_trips(items, 1)), vec![vec![2, 2, 1]]);
        assert_eq!(
            shape(&round_trips(Vec::new(), 0)),
            vec![Vec::<usize>::new()]
        );
    }

    #[test]
    fn larger_reads_split_between_items_and_leave_room_for_the_writes() {
        // 64 items of two gets fill one transaction exactly; the writes need another.
        let items = (0..64).map(|_| gets(2)).collect();
        assert_eq!(shape(&round_trips(items, 0)), vec![vec![2; 64]]);
        let items = (0..64).map(|_| gets(2)).collect();
        assert_eq!(shape(&round_trips(items, 1)), vec![vec![2; 64], vec![]]);
        // An item is never split: 42 items of three gets fit in 128, 43 would not.
        let items = (0..50).map(|_| gets(3)).collect();
        assert_eq!(shape(&round_trips(items, 1)), vec![vec![3; 42], vec![3; 8]]);
    }
}
