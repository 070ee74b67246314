//! Shared test helpers: loopback HTTP server, temp project dirs, the real binary.

// Each test module uses a different subset of these helpers.
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

/// A running `newswatch run` child, killed on drop; stderr goes to a file we can poll.
pub struct Daemon {
    pub child: std::process::Child,
    pub log: PathBuf,
}

impl Daemon {
    /// Start `newswatch --config <project>/newswatch.toml run`.
    pub fn start(project: &Project) -> Daemon {
        Daemon::start_with(project, &[])
    }

    pub fn start_with(project: &Project, extra: &[&str]) -> Daemon {
        let log = project.path(&format!(
            "daemon-{}.log",
            std::process::id() as u64 * 1000 + next_id()
        ));
        let file = std::fs::File::create(&log).expect("log file");
        let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("newswatch"))
            .current_dir(project.dir.path())
            .env_remove("NEWSWATCH_CONFIG")
            .env("RUST_LOG", "newswatch=debug")
            .arg("--config")
            .arg(project.path("newswatch.toml"))
            .args(extra)
            .arg("run")
            .stdout(std::process::Stdio::null())
            .stderr(file)
            .spawn()
            .expect("spawn daemon");
        Daemon { child, log }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, sig: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{sig} failed");
    }

    /// Send SIGTERM and wait (with a deadline) for the exit status.
    pub fn stop(&mut self, deadline: Duration) -> std::process::ExitStatus {
        self.signal("TERM");
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                start.elapsed() < deadline,
                "daemon did not exit within {deadline:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn next_id() -> u64 {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
}
