//! The etcd leases a node's keys ride on: one per holder and ttl, so that one keep-alive renews
//! every key the node took with that ttl.
//!
//! etcd leases count whole seconds: a ttl becomes the next whole second (at least 1 s, and
//! never below the cluster's own minimum, which etcd derives from its election timeout: 2 s
//! with etcd's defaults). A key therefore never expires before the ttl its holder asked for,
//! but may outlive it by up to a second, plus the half second etcd takes to notice expiries.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use etcd_client::Client;

/// An etcd lease this store granted, and when its countdown was last restarted: when the
/// grant or keep-alive that etcd answered was sent.
#[derive(Debug, Clone, Copy)]
struct Granted {
    lease: i64,
    restarted: Instant,
}

/// Each holder's etcd lease per ttl (in whole seconds), as this store granted them.
#[derive(Debug, Default)]
pub(super) struct NodeLeases {
    granted: Mutex<HashMap<(String, i64), Granted>>,
}

/// The etcd ttl, in whole seconds, for a ttl in ms.
pub(super) fn etcd_ttl(ttl_ms: i64) -> i64 {
    ((ttl_ms + 999) / 1000).max(1)
}

impl NodeLeases {
    /// The etcd lease of `holder` for `ttl_ms`, sure to live at least `ttl_ms` from `call`
    /// (when the store call began): the lease granted before, as it is if its countdown was
    /// restarted recently enough (etcd rounds the ttl up to whole seconds, which leaves time to
    /// spare) or after a keep-alive, else a new one.
    pub(super) async fn refresh(
        &self,
        client: &mut Client,
        holder: &str,
        ttl_ms: i64,
        call: Instant,
    ) -> Result<i64, etcd_client::Error> {
        let slot = (holder.to_owned(), etcd_ttl(ttl_ms));
        let spare = Duration::from_millis((slot.1 * 1000 - ttl_ms).max(0).unsigned_abs());
        let known = self.lock().get(&slot).copied();
        if let Some(granted) = known {
            if granted.restarted + spare >= call {
                return Ok(granted.lease);
            }
            let sent = Instant::now();
            if keep_alive(client, granted.lease).await? {
                self.lock().insert(
                    slot,
                    Granted {
                        lease: granted.lease,
                        restarted: sent,
                    },
                );
                return Ok(granted.lease);
            }
        }
        let sent = Instant::now();
        let grant = || {
            let mut client = client.clone();
            async move { client.lease_grant(slot.1, None).await }
        };
        let lease = super::batch::sent(grant).await?.id();
        self.lock().insert(
            slot,
            Granted {
                lease,
                restarted: sent,
            },
        );
        Ok(lease)
    }

    /// The etcd leases granted to `holder`, for every ttl it used.
    pub(super) fn of(&self, holder: &str) -> Vec<i64> {
        self.lock()
            .iter()
            .filter(|((name, _), _)| name == holder)
            .map(|(_, granted)| granted.lease)
            .collect()
    }

    /// Forgets `lease` (etcd no longer knows it: revoked by hand), so the next call grants anew.
    pub(super) fn forget(&self, lease: i64) {
        self.lock().retain(|_, granted| granted.lease != lease);
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<(String, i64), Granted>> {
        self.granted.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Restarts `lease`'s countdown (the client's keep-alive sends one request and waits for its
/// answer); false if the lease has lapsed and etcd deleted its keys.
async fn keep_alive(client: &mut Client, lease: i64) -> Result<bool, etcd_client::Error> {
    let request = || {
        let mut client = client.clone();
        async move { client.lease_keep_alive(lease).await }
    };
    match super::batch::sent(request).await {
        Ok(_) => Ok(true),
        // How the client reports a lapsed lease (etcd answers a ttl of 0).
        Err(etcd_client::Error::LeaseKeepAliveError(message)) if message == "lease not found" => {
            Ok(false)
        }
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_round_up_to_whole_seconds() {
        assert_eq!(etcd_ttl(1), 1);
        assert_eq!(etcd_ttl(200), 1);
        assert_eq!(etcd_ttl(1000), 1);
        assert_eq!(etcd_ttl(1001), 2);
        assert_eq!(etcd_ttl(60_000), 60);
    }
}
