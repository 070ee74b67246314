//! Shared test helpers: loopback HTTP server, temp project dirs, the real binary.

#![allow(dead_code)]

pub mod server;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Poll `cond` until it returns true or `deadline` passes; panics with `what` on timeout.
pub fn wait_until(what: &str, deadline: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < deadline {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out after {deadline:?} waiting for: {what}");
}

/// Path of the corpus when `NEWSWATCH_CORPUS` is set and exists.
pub fn corpus_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var_os("NEWSWATCH_CORPUS")?);
    dir.is_dir().then_some(dir)
}

/// Read a file into a string (test helper).
pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}
