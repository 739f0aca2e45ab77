//! The listening server: bound when the host is built (so an address in use fails the build),
//! served while the host runs, stopped with it.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::auth::Access;
use super::metrics::MetricsSource;
use super::options::AdminOptions;
use super::routes::{AdminState, router};
use crate::HostHandle;
use crate::store::LeaseStore;

/// An admin endpoint bound to its address, not yet serving.
pub(crate) struct AdminServer {
    listener: std::net::TcpListener,
    address: SocketAddr,
    options: AdminOptions,
    metrics: MetricsSource,
}

impl AdminServer {
    /// Binds the address; the error comes with the address asked for.
    pub(crate) fn bind(options: AdminOptions) -> Result<Self, (SocketAddr, std::io::Error)> {
        let bound = std::net::TcpListener::bind(options.bind).and_then(|listener| {
            listener.set_nonblocking(true)?;
            let address = listener.local_addr()?;
            Ok((listener, address))
        });
        let (listener, address) = bound.map_err(|error| (options.bind, error))?;
        Ok(AdminServer {
            listener,
            address,
            metrics: MetricsSource::new(options.prometheus.clone()),
            options,
        })
    }

    /// The address it listens on (with the port picked, if port 0 was asked for).
    pub(crate) fn address(&self) -> SocketAddr {
        self.address
    }

    /// Serves until `stop` is cancelled, then finishes the requests in progress.
    pub(crate) fn spawn(
        self,
        handle: HostHandle,
        store: Option<Arc<dyn LeaseStore>>,
        stop: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let state = AdminState {
            handle,
            store,
            store_probe_timeout: self.options.store_probe_timeout,
            access: Access {
                token: self.options.token.clone(),
                token_for_reads: self.options.token_for_reads,
            },
            metrics: self.metrics,
        };
        let address = self.address;
        let listener = self.listener;
        tokio::spawn(async move {
            let listener = match tokio::net::TcpListener::from_std(listener) {
                Ok(listener) => listener,
                Err(error) => {
                    tracing::error!(%address, %error, "the admin endpoint cannot serve");
                    return;
                }
            };
            tracing::info!(%address, "admin endpoint listening");
            let served = axum::serve(listener, router(state))
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
            if let Err(error) = served {
                tracing::error!(%address, %error, "the admin endpoint failed");
            }
        })
    }
}

impl std::fmt::Debug for AdminServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminServer")
            .field("address", &self.address)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}
