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

/// A temp folder holding a config, and the real binary pointed at it.
pub struct Project {
    pub dir: tempfile::TempDir,
}

impl Project {
    /// A project whose `newswatch.toml` is `config`.
    pub fn new(config: &str) -> Project {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("newswatch.toml"), config).expect("write config");
        Project { dir }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write_config(&self, config: &str) {
        std::fs::write(self.path("newswatch.toml"), config).expect("write config");
    }

    /// `newswatch ARGS` with `--config <dir>/newswatch.toml`, run in the project folder.
    pub fn cmd(&self, args: &[&str]) -> assert_cmd::Command {
        let mut cmd = bin();
        cmd.current_dir(self.dir.path())
            .arg("--config")
            .arg(self.path("newswatch.toml"))
            .args(args);
        cmd
    }

    /// Run and return (exit code, stdout, stderr).
    pub fn run(&self, args: &[&str]) -> (i32, String, String) {
        let out = self.cmd(args).output().expect("run newswatch");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `query --format json` parsed.
    pub fn query_json(&self, extra: &[&str]) -> Vec<serde_json::Value> {
        let mut args = vec!["query", "--format", "json", "--limit", "1000"];
        args.extend_from_slice(extra);
        let (code, out, err) = self.run(&args);
        assert_eq!(code, 0, "query failed: {err}");
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("query output is not JSON ({e}): {out}"))
    }
}

/// The real binary, with the environment cleaned of variables that would change its behaviour.
pub fn bin() -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::cargo_bin("newswatch").expect("binary built");
    cmd.env_remove("NEWSWATCH_CONFIG")
        .env_remove("RUST_LOG")
        .env("COLUMNS", "120");
    cmd.timeout(Duration::from_secs(60));
    cmd
}

/// Path of a fixture file in tests/fixtures.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Bytes of a fixture file.
pub fn fixture_bytes(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}
