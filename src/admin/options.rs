//! What the admin endpoint is told: where it listens, its bearer token, and whether reading
//! needs the token too.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use super::auth::Token;

/// The address the admin endpoint listens on unless told otherwise: loopback only.
pub const DEFAULT_ADMIN_BIND: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 9464);

/// How long `/readyz` waits for the lease store to answer before calling the host not ready.
pub const DEFAULT_STORE_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// How the admin endpoint of a host is set up; give it to
/// [`HostBuilder::admin`](crate::HostBuilder::admin).
///
/// ```
/// use loopjob::admin::AdminOptions;
///
/// let options = AdminOptions::bind("127.0.0.1:9464".parse().unwrap())
///     .token("s3cret-from-a-vault")
///     .token_for_reads(true);
/// assert_eq!(format!("{options:?}").contains("s3cret"), false);
/// ```
///
/// Without a token every mutating endpoint (pause, resume, trigger, cancel) answers 403.
#[derive(Clone)]
#[must_use = "options do nothing until given to `HostBuilder::admin`"]
pub struct AdminOptions {
    pub(crate) bind: SocketAddr,
    pub(crate) token: Option<Token>,
    pub(crate) token_for_reads: bool,
    pub(crate) store_probe_timeout: Duration,
    pub(crate) prometheus: Option<metrics_exporter_prometheus::PrometheusHandle>,
}

impl AdminOptions {
    /// Listens on `address`. Use a loopback address (the default, `127.0.0.1:9464`) unless the
    /// endpoint must be reached from other machines; port 0 picks a free port (see
    /// [`Host::admin_address`](crate::Host::admin_address)).
    pub fn bind(address: SocketAddr) -> Self {
        AdminOptions {
            bind: address,
            ..AdminOptions::default()
        }
    }

    /// The bearer token that mutating endpoints require (`Authorization: Bearer <token>`).
    /// It never appears in logs or in `Debug` output.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(Token::new(token.into()));
        self
    }

    /// Whether the reading endpoints (`/api/...` and `/metrics`) require the token too; the
    /// probes `/healthz` and `/readyz` and the dashboard page itself never do. Default: no.
    pub fn token_for_reads(mut self, required: bool) -> Self {
        self.token_for_reads = required;
        self
    }

    /// How long `/readyz` waits for the lease store (default [`DEFAULT_STORE_PROBE_TIMEOUT`]).
    pub fn store_probe_timeout(mut self, timeout: Duration) -> Self {
        self.store_probe_timeout = timeout;
        self
    }

    /// Serves `/metrics` from this Prometheus recorder's handle, for an application that
    /// installed its own `metrics-exporter-prometheus` recorder. Without it, the endpoint
    /// installs one as the global recorder when the host is built.
    pub fn prometheus(mut self, handle: metrics_exporter_prometheus::PrometheusHandle) -> Self {
        self.prometheus = Some(handle);
        self
    }

    /// The address it listens on.
    pub fn address(&self) -> SocketAddr {
        self.bind
    }
}

impl Default for AdminOptions {
    /// Loopback port 9464, no token, reading open.
    fn default() -> Self {
        AdminOptions {
            bind: DEFAULT_ADMIN_BIND,
            token: None,
            token_for_reads: false,
            store_probe_timeout: DEFAULT_STORE_PROBE_TIMEOUT,
            prometheus: None,
        }
    }
}

impl fmt::Debug for AdminOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminOptions")
            .field("bind", &self.bind)
            .field("token", &self.token)
            .field("token_for_reads", &self.token_for_reads)
            .field("store_probe_timeout", &self.store_probe_timeout)
            .field("prometheus", &self.prometheus.is_some())
            .finish()
    }
}
