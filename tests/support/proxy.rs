//! A TCP proxy for outage tests: forwards to a database, and on command cuts every connection
//! (the database went down) or stalls them (a network partition: packets vanish, nothing closes).
//! It listens on 127.0.0.1 only and forwards only to the address it is given.

#![allow(dead_code)] // Each test uses the part it needs.

use std::net::SocketAddr;

use tokio::io::copy_bidirectional;
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
}

/// A running proxy; stops when dropped.
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

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Switches the mode for open and new connections.
    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }

    /// `url` with its `host:port` replaced by this proxy's address, and the address it named.
    pub fn rewrite(&self, url: &str) -> String {
        let (_, upstream_authority) = split_authority(url);
        url.replacen(&upstream_authority, &self.addr.to_string(), 1)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// The upstream `host:port` of a database URL such as `postgres://user@127.0.0.1:5432/db`, as a
/// socket address, and as written.
pub fn upstream_of(url: &str) -> SocketAddr {
    let (host_port, _) = split_authority(url);
    host_port
        .parse()
        .expect("the test database URL names an IP address and port")
}

fn split_authority(url: &str) -> (String, String) {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    let host_port = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let host_port = host_port.replace("localhost", "127.0.0.1");
    (
        host_port,
        authority
            .rsplit_once('@')
            .map_or(authority, |(_, h)| h)
            .to_owned(),
    )
}

async fn serve(mut client: TcpStream, upstream: SocketAddr, mut mode: watch::Receiver<Mode>) {
    let current = *mode.borrow_and_update();
    match current {
        Mode::Cut => return,
        Mode::Stall => {
            let _ = mode.changed().await;
            return;
        }
        Mode::Forward => {}
    }
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    tokio::select! {
        _ = copy_bidirectional(&mut client, &mut server) => {}
        next = wait_for_change(&mut mode) => {
            if next == Mode::Stall {
                // Hold both ends open, silent, until the partition heals.
                let _ = mode.changed().await;
            }
        }
    }
}

async fn wait_for_change(mode: &mut watch::Receiver<Mode>) -> Mode {
    loop {
        if mode.changed().await.is_err() {
            // The proxy is gone: behave as cut.
            return Mode::Cut;
        }
        let next = *mode.borrow_and_update();
        if next != Mode::Forward {
            return next;
        }
    }
}
