//! The PostgreSQL foundation (issue 17) through the real binary: the schema applies to an
//! empty database and again as a no-op; `newswatch migrate` copies a polled SQLite database
//! into PostgreSQL and back with every row equal; a non-empty target is refused without
//! `--force`; bad URLs and missing passwords are one-line errors; `check` connects.
//!
//! Tests that need a server run when `NEWSWATCH_PG_URL` names one (`.ci/run` sets it to a
//! fresh database); each creates its own database on that server and drops it afterwards.
//! Without it they print `SKIPPED: NEWSWATCH_PG_URL unset` and pass.

use std::collections::BTreeMap;
use std::path::Path;

use crate::cli_poll::{config, serve_fixtures};
use crate::support::server::TestServer;
use crate::support::{Project, bin};

use crate::support::pg::TestDb;

fn migrate(args: &[&str]) -> (i32, String, String) {
    let out = bin()
        .arg("migrate")
        .args(args)
        .output()
        .expect("run migrate");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every row of every table (the FTS5 index aside), for comparing two SQLite databases.
/// `archive_index.indexed_upto` is a watermark of the target's own indexing, not data.
fn dump(path: &Path) -> BTreeMap<String, Vec<Vec<rusqlite::types::Value>>> {
    let conn = rusqlite::Connection::open(path).expect("open");
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%' AND name NOT LIKE 'archive_fts%'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut out = BTreeMap::new();
    for t in tables {
        let sql = if t == "archive_index" {
            "SELECT id, pruned_at FROM archive_index".to_string()
        } else {
            format!("SELECT * FROM {t} ORDER BY 1, 2")
        };
        let mut stmt = conn.prepare(&sql).unwrap();
        let n = stmt.column_count();
        let rows = stmt
            .query_map([], |r| {
                (0..n)
                    .map(|i| r.get::<_, rusqlite::types::Value>(i))
                    .collect::<Result<Vec<_>, _>>()
            })
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        out.insert(t, rows);
    }
    out
}

/// A project polled once over the fixture feeds: `data/news.db` with feeds, items, matches,
/// stories, archive rows, sightings and one starred match.
fn polled() -> (TestServer, Project) {
    let server = TestServer::start();
    serve_fixtures(&server);
    let project = Project::new(&config(&server));
    let (code, _, err) = project.run(&["poll"]);
    assert!(code == 0 || code == 1, "poll failed: {err}");
    let rows = project.query_json(&[]);
    assert!(rows.len() >= 3, "poll stored too little: {rows:?}");
    let id = rows[0]["id"].as_i64().expect("id").to_string();
    let (code, _, err) = project.run(&["mark", &id, "--star"]);
    assert_eq!(code, 0, "{err}");
    (server, project)
}

#[test]
fn pg_migrations_apply_to_an_empty_database_and_rerun_as_a_no_op() {
    let Some(db) = TestDb::create("schema") else {
        return;
    };
    let mut pg = db.connect();
    assert_eq!(pg.schema_version().unwrap(), 0);
    assert_eq!(pg.migrate().unwrap(), 10);
    assert_eq!(pg.migrate().unwrap(), 0, "a second run applies nothing");
    assert_eq!(pg.schema_version().unwrap(), 10);
    let tables: Vec<String> = pg
        .client()
        .query(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for t in [
        "alert_destinations",
        "alert_messages",
        "alert_outbox",
        "archive",
        "archive_fts",
        "archive_index",
        "archive_pending",
        "digest_runs",
        "feeds",
        "item_rules",
        "items",
        "rule_versions",
        "schema_version",
        "sightings",
        "stories",
        "story_state",
    ] {
        assert!(tables.contains(&t.to_string()), "{t} missing: {tables:?}");
    }
    // The full-text side table has its GIN index.
    let gin: i64 = pg
        .client()
        .query_one(
            "SELECT count(*) FROM pg_indexes WHERE tablename = 'archive_fts' AND indexdef LIKE '%USING gin%'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(gin, 1);

    // A database from a newer newswatch is refused, not downgraded.
    pg.client()
        .batch_execute("INSERT INTO schema_version VALUES (99, 'later')")
        .unwrap();
    let e = pg.migrate().unwrap_err().to_string();
    assert!(
        e.contains("schema version 99 is newer than this newswatch knows (10)"),
        "{e}"
    );
    assert!(!e.contains('\n'));
}

#[test]
fn pg_migrate_copies_a_polled_database_to_postgres_and_back_row_for_row() {
    let Some(db) = TestDb::create("roundtrip") else {
        return;
    };
    let (_server, project) = polled();
    let a = project.path("data/news.db");
    let b = project.path("back.db");

    let (code, out, err) = migrate(&["--from", a.to_str().unwrap(), "--to", &db.url]);
    assert_eq!(code, 0, "to PostgreSQL: {err}\n{out}");
    assert!(out.contains("checked: row counts of"), "{out}");
    assert!(
        out.contains(&format!("PostgreSQL postgres@127.0.0.1:5432/{}", db.name))
            || out.contains(&db.name),
        "{out}"
    );
    let items: i64 = db.count("items");
    assert!(items >= 3, "{out}");
    assert_eq!(
        db.count("archive_fts") + db.count("archive_pending"),
        db.count("archive"),
        "every archive row indexed or queued for it"
    );

    // Identity sequences continue past the copied ids.
    let mut pg = db.connect();
    let next: i64 = pg
        .client()
        .query_one(
            "INSERT INTO stories (first_seen_at, updated_at) VALUES ('x', 'x') RETURNING id",
            &[],
        )
        .unwrap()
        .get(0);
    let max: i64 = pg
        .client()
        .query_one(
            "SELECT max(id) FROM stories WHERE first_seen_at <> 'x'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(next, max + 1);
    pg.client()
        .batch_execute("DELETE FROM stories WHERE first_seen_at = 'x'")
        .unwrap();

    let (code, out, err) = migrate(&["--from", &db.url, "--to", b.to_str().unwrap()]);
    assert_eq!(code, 0, "back to SQLite: {err}\n{out}");
    let (da, db_) = (dump(&a), dump(&b));
    assert_eq!(
        da.keys().collect::<Vec<_>>(),
        db_.keys().collect::<Vec<_>>()
    );
    for (table, rows) in &da {
        assert_eq!(
            rows, &db_[table],
            "table {table} differs after the round trip"
        );
    }
    assert!(!da["items"].is_empty() && !da["item_rules"].is_empty() && !da["stories"].is_empty());

    // The copy is a working database: same matches, and search uses the rebuilt index.
    let copy = Project::new(&config(&_server).replace("data/news.db", "back.db"));
    std::fs::rename(&b, copy.path("back.db")).unwrap();
    assert_eq!(project.query_json(&[]), copy.query_json(&[]));
    let (code, original, _) = project.run(&["search", "NCA"]);
    assert_eq!(code, 0);
    let (code, copied, err) = copy.run(&["search", "NCA"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(original, copied);
}

#[test]
fn pg_non_empty_target_is_refused_without_force_and_left_untouched() {
    let Some(db) = TestDb::create("nonempty") else {
        return;
    };
    let (_server, project) = polled();
    let a = project.path("data/news.db");
    let (code, _, err) = migrate(&["--from", a.to_str().unwrap(), "--to", &db.url]);
    assert_eq!(code, 0, "{err}");
    let counts = || {
        (
            db.count("items"),
            db.count("feeds"),
            db.count("archive_fts"),
        )
    };
    let before = counts();
    let mut pg = db.connect();
    pg.client()
        .batch_execute("UPDATE items SET title = 'edited in PostgreSQL' WHERE id = (SELECT min(id) FROM items)")
        .unwrap();

    let (code, out, err) = migrate(&["--from", a.to_str().unwrap(), "--to", &db.url]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("is not empty") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(counts(), before);
    let edited = db.count("items WHERE title = 'edited in PostgreSQL'");
    assert_eq!(edited, 1, "the refused copy changed nothing");

    let (code, out, err) = migrate(&["--from", a.to_str().unwrap(), "--to", &db.url, "--force"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("--force: the target's rows were deleted"),
        "{out}"
    );
    assert_eq!(counts(), before);
    let edited = db.count("items WHERE title = 'edited in PostgreSQL'");
    assert_eq!(edited, 0, "--force replaced the rows");
}

#[test]
fn pg_a_copy_that_fails_midway_leaves_the_target_without_rows() {
    let Some(db) = TestDb::create("midway") else {
        return;
    };
    let (_server, project) = polled();
    let a = project.path("data/news.db");
    // Bytes where the schema says text, in a table copied after feeds and items.
    rusqlite::Connection::open(&a)
        .unwrap()
        .execute_batch(
            "UPDATE archive SET title = x'00ff' WHERE id = (SELECT max(id) FROM archive)",
        )
        .unwrap();
    let (code, out, err) = migrate(&["--from", a.to_str().unwrap(), "--to", &db.url]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("nothing was copied")
            && err.contains("archive.title holds bytes where the schema declares text"),
        "{err}"
    );
    for table in ["feeds", "items", "item_rules", "archive", "archive_fts"] {
        assert_eq!(db.count(table), 0, "{table} has rows after a failed copy");
    }
}

#[test]
fn migrate_between_two_sqlite_files_and_refuses_a_non_empty_one() {
    // Needs no server: the same copy and checks, SQLite on both ends.
    let (_server, project) = polled();
    let a = project.path("data/news.db");
    let b = project.path("copy.db");
    let (code, out, err) = migrate(&["--from", a.to_str().unwrap(), "--to", b.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("items") && out.contains("checked:"), "{out}");
    let (da, dc) = (dump(&a), dump(&b));
    assert_eq!(da, dc);
    let (code, _, err) = migrate(&["--from", a.to_str().unwrap(), "--to", b.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("is not empty"), "{err}");
    assert_eq!(dump(&b), dc);
}

#[test]
fn migrate_bad_urls_and_paths_are_one_line_errors_without_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.db");
    let target = dir.path().join("t.db");

    let (code, _, err) = migrate(&[
        "--from",
        missing.to_str().unwrap(),
        "--to",
        target.to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("missing.db") && err.contains("no such file"),
        "{err}"
    );
    assert!(!target.exists(), "nothing created for a failed copy");

    let (_server, project) = polled();
    let a = project.path("data/news.db");
    // Nothing listens on port 1.
    let (code, _, err) = migrate(&[
        "--from",
        a.to_str().unwrap(),
        "--to",
        "postgres://nw:hunter2@127.0.0.1:1/newsdb",
    ]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("cannot connect to PostgreSQL nw@127.0.0.1:1/newsdb"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");

    let (code, _, err) = migrate(&[
        "--from",
        a.to_str().unwrap(),
        "--to",
        "postgres://nw:hunter2@h/d?sslmode=sometimes",
    ]);
    assert_eq!(code, 1);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("postgres://nw:***@h/d?sslmode=sometimes: invalid PostgreSQL URL"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");

    let same = project.path("data/../data/news.db");
    let (code, _, err) = migrate(&[
        "--from",
        a.to_str().unwrap(),
        "--to",
        same.to_str().unwrap(),
        "--force",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--from and --to name the same database"),
        "{err}"
    );

    let (code, _, err) = migrate(&["--from", a.to_str().unwrap(), "--to", "mysql://h/d"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("neither an SQLite file nor a postgres:// URL"),
        "{err}"
    );
}

fn url_config(url: &str, extra: &str) -> String {
    format!("[storage]\nurl = \"{url}\"\n{extra}\n[[rules]]\nname = \"r\"\nquery = 'x'\n")
}

#[test]
fn check_and_other_commands_with_a_postgres_url() {
    // No server needed for the refusals and the config errors.
    let project = Project::new(&url_config("postgres://nw@127.0.0.1:1/newsdb", ""));
    // Every command works on PostgreSQL: here the server is unreachable, one line naming it.
    for cmd in [
        &["poll"][..],
        &["feeds"],
        &["run"],
        &["query"],
        &["mark", "1", "--read"],
        &["story", "show", "1"],
        &["stats"],
        &["serve"],
        &["alerts", "list"],
        &["backfill"],
        &["backfill", "--dry-run"],
        &["archive", "rebuild"],
    ] {
        let (code, _, err) = project.run(cmd);
        assert_eq!(code, 1, "{cmd:?}: {err}");
        assert!(
            err.contains("cannot connect to PostgreSQL nw@127.0.0.1:1/newsdb"),
            "{cmd:?}: {err}"
        );
    }
    let (code, out, err) = project.run(&["check"]);
    assert_eq!(code, 1, "unreachable server: {out}");
    assert!(
        out.contains("database: PostgreSQL nw@127.0.0.1:1/newsdb"),
        "{out}"
    );
    assert!(
        err.contains("cannot connect to PostgreSQL nw@127.0.0.1:1/newsdb"),
        "{err}"
    );

    let both = Project::new("[storage]\npath = \"x.db\"\nurl = \"postgres://h/d\"\n");
    let (code, _, err) = both.run(&["check"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("newswatch.toml:3:7: storage.path and storage.url are both set"),
        "{err}"
    );

    let Some(db) = TestDb::create("check") else {
        return;
    };
    let project = Project::new(&url_config(&db.url, ""));
    let (code, out, err) = project.run(&["check"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("connection  ok: PostgreSQL"), "{out}");
    assert!(out.contains("no newswatch schema yet"), "{out}");
    let mut pg = db.connect();
    pg.migrate().unwrap();
    let (code, out, _) = project.run(&["check"]);
    assert_eq!(code, 0);
    assert!(out.contains("schema version 10 (current)"), "{out}");

    // sslmode is honoured: disable connects in plain text; require insists on TLS with a
    // certificate rustls verifies, which the loopback server (no TLS, or a self-signed
    // certificate) cannot offer.
    let sep = if db.url.contains('?') { '&' } else { '?' };
    let plain = Project::new(&url_config(&format!("{}{sep}sslmode=disable", db.url), ""));
    let (code, out, err) = plain.run(&["check"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("(no TLS)"), "{out}");
    let strict = Project::new(&url_config(&format!("{}{sep}sslmode=require", db.url), ""));
    let (code, _, err) = strict.run(&["check"]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("cannot connect to PostgreSQL"), "{err}");
}

#[test]
fn password_env_and_password_file_are_read_and_missing_ones_are_errors() {
    let url = std::env::var("NEWSWATCH_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:1/none".into());
    let env_project = Project::new(&url_config(&url, "password_env = \"NW_TEST_PG_PASSWORD\""));
    let (code, _, err) = env_project
        .cmd(&["check"])
        .env_remove("NW_TEST_PG_PASSWORD")
        .output()
        .map(|o| {
            (
                o.status.code().unwrap_or(-1),
                (),
                String::from_utf8_lossy(&o.stderr).into_owned(),
            )
        })
        .unwrap();
    assert_eq!(code, 2);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("newswatch.toml:3:16: storage.password_env: environment variable NW_TEST_PG_PASSWORD is not set"),
        "{err}"
    );

    let file_project = Project::new(&url_config(&url, "password_file = \"secrets/pg\""));
    let (code, _, err) = file_project.run(&["check"]);
    assert_eq!(code, 2);
    assert!(err.contains("storage.password_file: cannot read"), "{err}");
    assert!(err.contains("secrets/pg"), "{err}");

    if std::env::var("NEWSWATCH_PG_URL").is_err() {
        eprintln!("SKIPPED: NEWSWATCH_PG_URL unset (connecting with a password)");
        return;
    }
    // The server trusts the test user, so any password works: what is tested is that one is
    // read and connecting goes ahead, and that it never shows up in the output.
    let out = env_project
        .cmd(&["check"])
        .env("NW_TEST_PG_PASSWORD", "pw-from-env")
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("connection  ok") && !stdout.contains("pw-from-env"),
        "{stdout}"
    );

    std::fs::create_dir_all(file_project.path("secrets")).unwrap();
    std::fs::write(file_project.path("secrets/pg"), "pw-from-file\n").unwrap();
    let (code, out, err) = file_project.run(&["check"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("connection  ok") && !out.contains("pw-from-file"),
        "{out}"
    );
}

#[test]
fn pg_archive_documents_trail_the_poll_and_rebuild_writes_them_again() {
    let Some(db) = TestDb::create("rebuild") else {
        return;
    };
    let server = TestServer::start();
    serve_fixtures(&server);
    let project = Project::new(
        &config(&server).replace("path = \"data/news.db\"", &format!("url = \"{}\"", db.url)),
    );
    let (code, _, err) = project.run(&["poll"]);
    assert!(code == 0 || code == 1, "{err}");
    let archived = db.count("archive");
    assert!(archived > 0);
    // The poll queues every archived row for its document, as SQLite's index trails.
    assert_eq!(db.count("archive_pending"), archived);
    assert_eq!(db.count("archive_fts"), 0);
    let (code, out, err) = project.run(&["stats", "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let stats: serde_json::Value = serde_json::from_str(&out).expect("stats JSON");
    assert_eq!(stats["archive"]["unindexed"], archived, "{stats}");
    let search = |q: &str| {
        let (code, out, err) = project.run(&["search", q, "--format", "json"]);
        assert_eq!(code, 0, "{err}");
        (
            serde_json::from_str::<Vec<serde_json::Value>>(&out).expect("search JSON"),
            err,
        )
    };
    // While another connection holds the queued rows (a worker indexing them), search skips
    // indexing them, reads them directly and says so.
    let mut holder = db.connect();
    let mut tx = holder.client().transaction().expect("begin");
    let held = tx
        .query("SELECT id FROM archive_pending FOR UPDATE", &[])
        .expect("lock the queue")
        .len() as i64;
    assert_eq!(held, archived);
    let (while_held, err) = search("NCA");
    assert!(!while_held.is_empty());
    assert!(
        err.contains("the full-text index is behind by") && err.contains("checked one by one"),
        "{err}"
    );
    tx.rollback().expect("release");
    drop(holder);
    // Otherwise search first builds what is queued, and finds the same entries through it.
    let (before, err) = search("NCA");
    assert_eq!(
        before, while_held,
        "the same hits from the queue as from the index"
    );
    assert!(!err.contains("behind"), "{err}");
    assert_eq!(db.count("archive_fts"), archived);
    assert_eq!(db.count("archive_pending"), 0);
    let docs = |db: &TestDb| -> Vec<(i64, String)> {
        db.connect()
            .client()
            .query("SELECT id, doc::text FROM archive_fts ORDER BY id", &[])
            .expect("documents")
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    };
    let indexed = docs(&db);
    db.connect()
        .client()
        .batch_execute("DELETE FROM archive_fts")
        .expect("damage the index");
    assert!(search("NCA").0.is_empty(), "the index is what search reads");
    let (code, out, err) = project.run(&["archive", "rebuild"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.trim(),
        format!("archive rebuild: indexed {archived} entries")
    );
    assert_eq!(db.count("archive_fts"), archived);
    assert_eq!(db.count("archive_pending"), 0);
    assert!(docs(&db) == indexed, "the rebuild wrote other documents");
    assert_eq!(
        search("NCA").0,
        before,
        "the same hits as before the damage"
    );
}
