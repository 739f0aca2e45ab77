//! A TCP proxy between one node process and the database: forwards, cuts every connection (and
//! refuses new ones), or forwards with added latency. Like `tests/support/proxy.rs`, plus the
//! latency mode the slow-database fault needs. Listens on 127.0.0.1 only.

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
    /// Close every open connection and every new one as soon as it is accepted.
    Cut,
    /// Forward, holding every chunk this long in each direction.
    Delay(Duration),
}

/// A running proxy; stops accepting when dropped.
pub struct Proxy {
    addr: SocketAddr,
    mode: watch::Sender<Mode>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// A proxy on a free port of 127.0.0.1 forwarding to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
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

    /// Switches the mode for open and new connections.
    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }

    /// `url` with its `host:port` replaced by this proxy's address.
    pub fn rewrite(&self, url: &str) -> String {
        let authority = authority(url);
        url.replacen(&authority, &self.addr.to_string(), 1)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.mode.send_replace(Mode::Cut);
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

async fn serve(client: TcpStream, upstream: SocketAddr, mut mode: watch::Receiver<Mode>) {
    if *mode.borrow_and_update() == Mode::Cut {
        return;
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
        _ = cut(&mut mode) => {}
    }
}

async fn pipe(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mode: watch::Receiver<Mode>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let delay = match *mode.borrow() {
            Mode::Delay(delay) => delay,
            Mode::Forward | Mode::Cut => Duration::ZERO,
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// Completes when the mode becomes `Cut` (or the proxy is gone).
async fn cut(mode: &mut watch::Receiver<Mode>) {
    loop {
        if mode.changed().await.is_err() || *mode.borrow_and_update() == Mode::Cut {
            return;
        }
    }
}
