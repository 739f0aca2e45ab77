//! Removing a test's SQLite database with everything kept beside it.

use std::path::Path;

/// Removes the database file at `path`, SQLite's `-wal` and `-shm` files beside it, and the
/// store's release bell directory (`-loopjob`, see `SqliteStore`).
#[allow(dead_code)] // not every test that includes this module removes a database
pub fn remove(path: &Path) {
    let _ = std::fs::remove_file(path);
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let _ = std::fs::remove_dir_all(format!("{}-loopjob", path.display()));
}
