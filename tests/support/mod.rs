//! Shared test helpers: loopback HTTP server, temp project dirs, the real binary.

// Each test module uses a different subset of these helpers.
#![allow(dead_code)]

pub mod pg;
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

/// Whether this test binary runs the suite on PostgreSQL (`tests/on_postgres.rs`): every
/// [`Project`] whose config names no `[storage]` gets a fresh PostgreSQL database.
pub fn on_postgres() -> bool {
    crate::ON_POSTGRES
}

/// In the PostgreSQL run of the suite, print why this test is SQLite's alone and return true
/// (the caller returns): it reads the SQLite file itself, or tests what only SQLite has.
pub fn sqlite_only(why: &str) -> bool {
    if on_postgres() {
        eprintln!("SKIPPED on PostgreSQL: {why}");
    }
    on_postgres()
}

/// The `path = "…"` line that follows a config's `[storage]` header, if it has one.
fn storage_path(config: &str) -> Option<String> {
    let rest = &config[config.find("[storage]")? + "[storage]".len()..];
    let line = rest.trim_start_matches('\n').lines().next()?;
    line.starts_with("path = \"").then(|| line.to_string())
}

/// A temp folder holding a config, and the real binary pointed at it.
pub struct Project {
    pub dir: tempfile::TempDir,
    /// The PostgreSQL database the config names, in the PostgreSQL run of the suite.
    pub pg: Option<pg::TestDb>,
}

impl Project {
    /// A project whose `newswatch.toml` is `config` (on PostgreSQL in the PostgreSQL run of
    /// the suite, unless `config` has a `[storage]` of its own).
    pub fn new(config: &str) -> Project {
        Project::on(config, on_postgres())
    }

    /// A project on SQLite in either run of the suite (its test fills or reads the SQLite
    /// file itself).
    pub fn sqlite(config: &str) -> Project {
        Project::on(config, false)
    }

    fn on(config: &str, postgres: bool) -> Project {
        let dir = tempfile::tempdir().expect("temp dir");
        let pg = if postgres && (!config.contains("[storage]") || storage_path(config).is_some()) {
            let db = pg::TestDb::create("suite");
            if db.is_none() {
                eprintln!("SKIPPED on PostgreSQL (NEWSWATCH_PG_URL unset): this ran on SQLite");
            }
            db
        } else {
            None
        };
        // Which backend each test's projects used, for counting (`NEWSWATCH_TEST_BACKENDS=file`).
        if let Some(log) = std::env::var_os("NEWSWATCH_TEST_BACKENDS") {
            use std::io::Write as _;
            let line = format!(
                "{}\t{}\n",
                std::thread::current().name().unwrap_or("?"),
                if pg.is_some() { "postgres" } else { "sqlite" }
            );
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
            {
                let _ = f.write_all(line.as_bytes());
            }
        }
        let p = Project { dir, pg };
        p.write_config(config);
        p
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Write `config`, on this project's PostgreSQL database if it has one: appended as
    /// `[storage] url`, or in place of the `path` of the config's own `[storage]`.
    pub fn write_config(&self, config: &str) {
        let config = match (&self.pg, storage_path(config)) {
            (Some(db), None) if !config.contains("[storage]") => {
                format!("{config}\n[storage]\nurl = \"{}\"\n", db.url)
            }
            (Some(db), Some(line)) => config.replacen(&line, &format!("url = \"{}\"", db.url), 1),
            _ => config.to_string(),
        };
        std::fs::write(self.path("newswatch.toml"), config).expect("write config");
    }

    /// Rows of `sql` on this project's database, whichever backend it is on (the SQLite file
    /// `newswatch.db` beside the config, or its PostgreSQL database), each value as text
    /// (NULL: `None`). No rows when the database does not exist yet, or the query fails (a
    /// table not created yet): callers poll for a condition.
    pub fn rows(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        if let Some(db) = &self.pg {
            let Ok(mut c) = newswatch::store::postgres::PgDb::connect(&db.url, None) else {
                return Vec::new();
            };
            let Ok(msgs) = c.client().simple_query(sql) else {
                return Vec::new();
            };
            return msgs
                .iter()
                .filter_map(|m| match m {
                    postgres::SimpleQueryMessage::Row(r) => {
                        Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
                    }
                    _ => None,
                })
                .collect();
        }
        let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
        let Ok(conn) = rusqlite::Connection::open_with_flags(self.sqlite_file(), flags) else {
            return Vec::new();
        };
        let Ok(mut stmt) = conn.prepare(sql) else {
            return Vec::new();
        };
        let n = stmt.column_count();
        stmt.query_map([], |r| {
            (0..n)
                .map(|i| {
                    Ok(match r.get_ref(i)? {
                        rusqlite::types::ValueRef::Null => None,
                        rusqlite::types::ValueRef::Integer(v) => Some(v.to_string()),
                        rusqlite::types::ValueRef::Real(v) => Some(v.to_string()),
                        rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => {
                            Some(String::from_utf8_lossy(t).into_owned())
                        }
                    })
                })
                .collect()
        })
        .map(|rows| rows.filter_map(Result::ok).collect())
        .unwrap_or_default()
    }

    /// In the PostgreSQL run of the suite, copy the SQLite file `sqlite` that the test
    /// filled through the library into this project's PostgreSQL database (`newswatch migrate`,
    /// which keeps every id); on SQLite, nothing.
    pub fn seed_postgres(&self, sqlite: &Path) {
        let Some(db) = &self.pg else { return };
        let out = bin()
            .args(["migrate", "--from"])
            .arg(sqlite)
            .args(["--to", &db.url])
            .output()
            .expect("run migrate");
        assert!(
            out.status.success(),
            "migrate to PostgreSQL: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The SQLite file of this project: its `[storage] path`, or `newswatch.db`.
    pub fn sqlite_file(&self) -> PathBuf {
        let config = std::fs::read_to_string(self.path("newswatch.toml")).unwrap_or_default();
        match storage_path(&config) {
            Some(line) => self.path(line.trim_start_matches("path = \"").trim_end_matches('"')),
            None => self.path("newswatch.db"),
        }
    }

    /// The integer `sql` selects (`SELECT count(*) …`) on this project's database.
    pub fn int(&self, sql: &str) -> i64 {
        self.rows(sql)
            .first()
            .and_then(|r| r.first().cloned().flatten())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no integer from {sql}"))
    }

    /// Run `sql` (statements without results) on this project's database.
    pub fn exec(&self, sql: &str) {
        if let Some(db) = &self.pg {
            db.connect().client().batch_execute(sql).expect(sql);
        } else {
            rusqlite::Connection::open(self.sqlite_file())
                .and_then(|c| c.execute_batch(sql))
                .expect(sql);
        }
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
