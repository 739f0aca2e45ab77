//! A TCP proxy between a client and a database, for outage and chaos tests: it forwards, and on
//! command cuts every connection (the database went down), stalls them (a network partition:
//! packets vanish, nothing closes), or forwards with added latency (a slow database). It listens
//! on 127.0.0.1 (or a host-side address of the chaos suite's network namespaces) and forwards
//! only to the address it is given.

#![allow(dead_code)] // Each test uses the part it needs.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the proxy does with connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forward bytes both ways.
    Forward,
    /// Close every open connection, and close new ones as soon as they are accepted.
    Cut,
    /// Stop forwarding: open and new connections stay open and silent. When the mode changes
    /// again, the stalled connections are closed, as when a partition heals with resets.
    Stall,
    /// Forward, holding every chunk this long in each direction.
    Delay(Duration),
}

/// A running proxy; it stops, cutting its connections, when dropped.
pub struct Proxy {
    addr: SocketAddr,
    mode: watch::Sender<Mode>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// A proxy on a free port of 127.0.0.1 forwarding to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        Proxy::start_at(std::net::Ipv4Addr::LOCALHOST.into(), upstream).await
    }

    /// A proxy on a free port of `ip` forwarding to `upstream`.
    pub async fn start_at(ip: std::net::IpAddr, upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind((ip, 0)).await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let (mode, watcher) = watch::channel(Mode::Forward);
        let accept = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(serve(client, upstream, watcher.clone()));
            }
        });
        Proxy { addr, mode, accept }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Switches the mode for open and new connections.
    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }

    /// `url` with its `host:port` replaced by this proxy's address.
    pub fn rewrite(&self, url: &str) -> String {
        url.replacen(&authority(url), &self.addr.to_string(), 1)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.mode.send_replace(Mode::Cut);
        self.accept.abort();
    }
}

/// The `host:port` of a database URL such as `postgres://user@127.0.0.1:5432/db`, as written.
fn authority(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host)
        .to_owned()
}

/// The upstream address of a database URL (an IP address or `localhost`, and a port).
pub fn upstream_of(url: &str) -> SocketAddr {
    authority(url)
        .replace("localhost", "127.0.0.1")
        .parse()
        .expect("the test database URL names an IP address (or localhost) and a port")
}

/// The upstream addresses of a URL whose authority lists several `host:port`s separated by
/// commas (an etcd URL: one per member), in order; one for a single-host URL.
pub fn upstreams_of(url: &str) -> Vec<SocketAddr> {
    authority(url)
        .split(',')
        .map(|host| {
            host.replace("localhost", "127.0.0.1")
                .parse()
                .expect("the test database URL names IP addresses (or localhost) and ports")
        })
        .collect()
}

/// `url` with its `host:port` list replaced by the addresses of `proxies`, in order (see
/// [`upstreams_of`]).
pub fn rewrite_all(url: &str, proxies: &[Proxy]) -> String {
    let hosts: Vec<String> = proxies.iter().map(|p| p.addr.to_string()).collect();
    url.replacen(&authority(url), &hosts.join(","), 1)
}

async fn serve(client: TcpStream, upstream: SocketAddr, mut mode: watch::Receiver<Mode>) {
    let current = *mode.borrow_and_update();
    match current {
        Mode::Cut => return,
        Mode::Stall => {
            let _ = mode.changed().await;
            return;
        }
        Mode::Forward | Mode::Delay(_) => {}
    }
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::select! {
        _ = pipe(client_read, server_write, mode.clone()) => {}
        _ = pipe(server_read, client_write, mode.clone()) => {}
        next = interrupted(&mut mode) => {
            if next == Mode::Stall {
                // Hold both ends open, silent, until the partition heals.
                let _ = mode.changed().await;
            }
        }
    }
}

/// Copies `from` to `to`, holding each chunk for the current delay.
async fn pipe(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mode: watch::Receiver<Mode>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let delay = match *mode.borrow() {
            Mode::Delay(delay) => delay,
            Mode::Forward | Mode::Cut | Mode::Stall => Duration::ZERO,
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// Completes with the new mode when it cuts or stalls connections (`Cut` if the proxy is gone).
async fn interrupted(mode: &mut watch::Receiver<Mode>) -> Mode {
    loop {
        if mode.changed().await.is_err() {
            return Mode::Cut;
        }
        let next = *mode.borrow_and_update();
        if matches!(next, Mode::Cut | Mode::Stall) {
            return next;
        }
    }
}
