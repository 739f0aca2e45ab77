//! The release bell: how SQLite stores in the processes of one host tell each other of a
//! release or an operator's command, which SQLite itself cannot push.
//!
//! Every store that listens binds a Unix datagram socket in a directory beside the database
//! file (`<file>-loopjob/`, as SQLite keeps `<file>-wal` beside it). A store that has committed
//! a release or a command sends one datagram to every socket there: `R` (released) or `C`
//! (commanded), the name of its leases table, a NUL byte and the key. A listener forwards the
//! notices of its own tables (stores with other table prefixes may share the file) to its
//! subscribers as [`ReleaseNotice`]s.
//!
//! A notice is only a hint (see [`ReleaseNotice`]), so the bell never fails a store call: a
//! datagram lost to a full socket buffer, a directory that cannot be made, an in-memory
//! database, a path too long for a socket address or a platform without Unix sockets leave
//! followers to their polling, as without the bell. A socket whose process died is removed by
//! the next ring that finds nobody listening on it.

use std::path::{Path, PathBuf};

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::store::ReleaseNotice;

/// The longest directory path the bell uses: a socket's path (the directory, `/` and a 16-digit
/// name) must fit the 104 bytes of a socket address on every Unix (108 on Linux).
const MAX_DIR_LEN: usize = 86;

/// The largest datagram: a kind byte, a leases table's name (a prefix of at most 40 bytes and
/// `leases`), NUL and a key (at most 255 bytes).
const MAX_DATAGRAM: usize = 512;

/// The bell of one database file, for the tables of one prefix.
#[derive(Debug)]
pub(super) struct Bell {
    /// `<file>-loopjob`, made on the first listen.
    dir: PathBuf,
    /// The leases table's name, which tells the tables of one prefix from another's.
    tables: String,
}

impl Bell {
    /// The bell of the database file `file` for the tables whose leases table is `tables`;
    /// `None` for a file that does not exist (an in-memory database) or whose sockets' paths
    /// would be too long.
    pub(super) fn new(file: &Path, tables: &str) -> Option<Bell> {
        let file = std::fs::canonicalize(file).ok()?;
        let mut dir = file.into_os_string();
        dir.push("-loopjob");
        if dir.len() > MAX_DIR_LEN {
            tracing::debug!(
                dir = %Path::new(&dir).display(),
                "the SQLite store's release bell needs a shorter path; followers poll"
            );
            return None;
        }
        Some(Bell {
            dir: dir.into(),
            tables: tables.to_owned(),
        })
    }

    /// Sends `notices` to every store listening on this file. Never fails: see the module docs.
    pub(super) fn ring(&self, notices: impl IntoIterator<Item = ReleaseNotice>) {
        let datagrams: Vec<Vec<u8>> = notices
            .into_iter()
            .filter_map(|notice| self.datagram(&notice))
            .collect();
        if datagrams.is_empty() {
            return;
        }
        #[cfg(unix)]
        unix::ring(&self.dir, &datagrams);
    }

    /// Starts listening: binds a socket in the bell's directory and forwards the notices of
    /// these tables to `sender` until `stop` is cancelled, then removes the socket. Must be
    /// called within a Tokio runtime.
    pub(super) fn listen(
        &self,
        sender: broadcast::Sender<ReleaseNotice>,
        stop: CancellationToken,
    ) -> std::io::Result<()> {
        #[cfg(unix)]
        return unix::listen(&self.dir, self.tables.clone(), sender, stop);
        #[cfg(not(unix))]
        {
            let _ = (sender, stop);
            Err(std::io::ErrorKind::Unsupported.into())
        }
    }

    fn datagram(&self, notice: &ReleaseNotice) -> Option<Vec<u8>> {
        let (kind, key) = match notice {
            ReleaseNotice::Released(key) => (b'R', key),
            ReleaseNotice::Commanded(key) => (b'C', key),
            ReleaseNotice::Missed => return None,
        };
        let mut datagram = Vec::with_capacity(2 + self.tables.len() + key.len());
        datagram.push(kind);
        datagram.extend_from_slice(self.tables.as_bytes());
        datagram.push(0);
        datagram.extend_from_slice(key.as_bytes());
        Some(datagram)
    }
}

/// The notice a datagram stands for, if it is about `tables`.
fn notice(datagram: &[u8], tables: &str) -> Option<ReleaseNotice> {
    let (&kind, rest) = datagram.split_first()?;
    let nul = rest.iter().position(|&b| b == 0)?;
    if &rest[..nul] != tables.as_bytes() {
        return None;
    }
    let key = std::str::from_utf8(&rest[nul + 1..]).ok()?.to_owned();
    match kind {
        b'R' => Some(ReleaseNotice::Released(key)),
        b'C' => Some(ReleaseNotice::Commanded(key)),
        _ => None,
    }
}

#[cfg(unix)]
mod unix {
    use std::io::ErrorKind;
    use std::os::unix::net::UnixDatagram as StdDatagram;
    use std::path::{Path, PathBuf};

    use tokio::net::UnixDatagram;
    use tokio::sync::broadcast;
    use tokio_util::sync::CancellationToken;

    use super::{MAX_DATAGRAM, notice};
    use crate::store::ReleaseNotice;

    pub(super) fn ring(dir: &Path, datagrams: &[Vec<u8>]) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return; // nobody has listened on this file yet
        };
        let socket = match StdDatagram::unbound() {
            Ok(socket) => socket,
            Err(error) => {
                tracing::debug!(%error, "cannot ring the SQLite store's release bell");
                return;
            }
        };
        if socket.set_nonblocking(true).is_err() {
            return;
        }
        for entry in entries.flatten() {
            let peer = entry.path();
            for datagram in datagrams {
                match socket.send_to(datagram, &peer) {
                    Ok(_) => {}
                    // Its process died: nobody will listen there again.
                    Err(error) if error.kind() == ErrorKind::ConnectionRefused => {
                        let _ = std::fs::remove_file(&peer);
                        break;
                    }
                    // Gone meanwhile, or its buffer is full: it polls as it would without us.
                    Err(error)
                        if matches!(error.kind(), ErrorKind::NotFound | ErrorKind::WouldBlock) =>
                    {
                        break;
                    }
                    Err(error) => {
                        tracing::debug!(peer = %peer.display(), %error, "cannot ring a listener of the SQLite store's release bell");
                        break;
                    }
                }
            }
        }
    }

    pub(super) fn listen(
        dir: &Path,
        tables: String,
        sender: broadcast::Sender<ReleaseNotice>,
        stop: CancellationToken,
    ) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!("{:016x}", fastrand::u64(..)));
        let socket = UnixDatagram::bind(&path)?;
        tokio::spawn(forward(socket, SocketFile(path), tables, sender, stop));
        Ok(())
    }

    /// The listener's socket file, removed when the listener ends.
    struct SocketFile(PathBuf);

    impl Drop for SocketFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    async fn forward(
        socket: UnixDatagram,
        _file: SocketFile,
        tables: String,
        sender: broadcast::Sender<ReleaseNotice>,
        stop: CancellationToken,
    ) {
        let mut buffer = [0u8; MAX_DATAGRAM];
        loop {
            let received = tokio::select! {
                () = stop.cancelled() => return,
                received = socket.recv(&mut buffer) => received,
            };
            match received {
                Ok(length) => {
                    if let Some(notice) = notice(&buffer[..length], &tables) {
                        // No subscriber is not an error.
                        let _ = sender.send(notice);
                    }
                }
                Err(error) => {
                    tracing::debug!(%error, "the SQLite store's release bell stopped; followers poll");
                    let _ = sender.send(ReleaseNotice::Missed);
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_datagram_reads_back_as_its_notice_for_its_tables_only() {
        let bell = Bell {
            dir: PathBuf::from("/nonexistent"),
            tables: "app_leases".to_owned(),
        };
        for notice_sent in [
            ReleaseNotice::Released("global".to_owned()),
            ReleaseNotice::Commanded("part#3".to_owned()),
        ] {
            let datagram = bell
                .datagram(&notice_sent)
                .expect("a release or command rings");
            assert_eq!(notice(&datagram, "app_leases"), Some(notice_sent));
            assert_eq!(notice(&datagram, "other_leases"), None);
        }
        assert_eq!(bell.datagram(&ReleaseNotice::Missed), None);
        assert_eq!(notice(b"Xapp_leases\0key", "app_leases"), None);
        assert_eq!(notice(b"Rapp_leases", "app_leases"), None);
    }

    #[test]
    fn no_bell_for_a_missing_file_or_a_path_too_long_for_a_socket() {
        assert!(Bell::new(Path::new(":memory:"), "app_leases").is_none());
        let dir = std::env::temp_dir().join(format!("ljbell-long-{}", std::process::id()));
        let deep = dir.join("d".repeat(MAX_DIR_LEN));
        std::fs::create_dir_all(&deep).unwrap();
        let (short, long) = (dir.join("jobs.db"), deep.join("jobs.db"));
        std::fs::write(&short, b"").unwrap();
        std::fs::write(&long, b"").unwrap();
        // (A temporary directory with a long path of its own has no short path to try.)
        if short.as_os_str().len() + "-loopjob".len() <= MAX_DIR_LEN {
            assert!(Bell::new(&short, "app_leases").is_some());
        }
        assert!(Bell::new(&long, "app_leases").is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
