//! Batched transactions: how the etcd store reads and writes many keys in few round trips.
//!
//! etcd refuses a transaction of more than 128 operations (its `--max-txn-ops`), counting a
//! nested transaction's operations against what its parent leaves. Each key's reads (or its
//! guarded writes, at most [`MAX_OPS_PER_KEY`]) are one nested transaction, so one round trip
//! carries up to 120 keys, and a key whose guard fails leaves the others' writes standing.
//! Larger batches are split into round trips of 120 keys. Every request is sent again while
//! its connection to the endpoint the client picked fails (see [`sent`]).

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
/// trip. `always` (writes of keys no item reads) ends the last round trip, so the reads see
/// what was there before them. The answer has, per item and per get, the key-values found.
pub(super) async fn read(
    client: &mut Client,
    always: Vec<TxnOp>,
    items: Vec<Vec<TxnOp>>,
) -> Result<(Vec<Vec<Vec<KeyValue>>>, i64), etcd_client::Error> {
    let per_round_trip = keys_per_round_trip(&always);
    let mut found = Vec::with_capacity(items.len());
    let mut revision = 0;
    let mut items = items.into_iter().peekable();
    loop {
        let mut ops: Vec<TxnOp> = items
            .by_ref()
            .take(per_round_trip)
            .map(|gets| TxnOp::txn(Txn::new().and_then(gets)))
            .collect();
        let last = items.peek().is_none();
        if last {
            ops.extend(always.iter().cloned());
        }
        let response = txn(client, Txn::new().and_then(ops)).await?;
        if revision == 0 {
            revision = response.header().map_or(0, |header| header.revision());
        }
        for nested in response.op_responses() {
            let TxnOpResponse::Txn(nested) = nested else {
                continue;
            };
            let gets = nested
                .op_responses()
                .into_iter()
                .map(|get| match get {
                    TxnOpResponse::Get(get) => get.kvs().to_vec(),
                    _ => Vec::new(),
                })
                .collect();
            found.push(gets);
        }
        if last {
            return Ok((found, revision));
        }
    }
}

/// The writes of one key, made only if every guard still holds.
#[derive(Debug, Default)]
pub(super) struct Guarded {
    guards: Vec<Compare>,
    writes: Vec<TxnOp>,
}

impl Guarded {
    /// Writes made only if `key` is unchanged since it was read as `read` (or still absent).
    pub(super) fn unchanged(mut self, key: Vec<u8>, read: Option<&KeyValue>) -> Self {
        let revision = read.map_or(0, KeyValue::mod_revision);
        self.guards
            .push(Compare::mod_revision(key, CompareOp::Equal, revision));
        self
    }

    pub(super) fn write(mut self, op: TxnOp) -> Self {
        self.writes.push(op);
        self
    }
}

/// Makes each item's writes where its guards hold, with `always` (writes of keys no item
/// writes) in every round trip, so at least one; answers per item whether it was written.
pub(super) async fn write(
    client: &mut Client,
    always: Vec<TxnOp>,
    items: Vec<Guarded>,
) -> Result<Vec<bool>, etcd_client::Error> {
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
        written.extend(
            response
                .op_responses()
                .into_iter()
                .filter_map(|op| match op {
                    TxnOpResponse::Txn(nested) => Some(nested.succeeded()),
                    _ => None,
                }),
        );
        if items.peek().is_none() {
            return Ok(written);
        }
    }
}
