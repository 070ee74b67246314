//! The daemon, process-level: the real binary with every-second schedules against loopback
//! servers; deadlines instead of sleeps.

use std::time::Duration;

use crate::support::server::{Route, TestServer};
use crate::support::{Daemon, Project, wait_until};

fn rss(items: &[(&str, &str)]) -> String {
    let mut s = String::from(
        "<?xml version=\"1.0\"?><rss version=\"2.0\"><channel><title>t</title><link>http://x/</link><description>d</description>",
    );
    for (guid, title) in items {
        s.push_str(&format!(
            "<item><title>{title}</title><link>https://news.example/{guid}</link><guid>{guid}</guid><description>{title}</description></item>"
        ));
    }
    s.push_str("</channel></rss>");
    s
}

const NCA_RULE: &str = "[[rules]]\nname = \"nca\"\nquery = 'NCA OR \"National Crime Agency\"'\n";

fn feed(name: &str, url: &str) -> String {
    format!("[[feeds]]\nname = \"{name}\"\nurl = \"{url}\"\n")
}

const EVERY_SECOND: &str = "[schedule]\npoll = \"* * * * * *\"\n";

#[test]
fn run_polls_repeatedly_with_conditional_get_and_stops_on_sigterm() {
    let server = TestServer::start();
    server.route(
        "/a.rss",
        Route::cached(
            "application/rss+xml",
            rss(&[("a1", "NCA raid"), ("a2", "Weather")]),
            "\"v1\"",
            "Mon, 09 Nov 2015 10:00:00 GMT",
        ),
    );
    let project = Project::new(&format!(
        "{EVERY_SECOND}{}{NCA_RULE}",
        feed("a", &server.url("/a.rss"))
    ));
    let mut daemon = Daemon::start(&project);
    wait_until("three polls of /a.rss", Duration::from_secs(15), || {
        server.hits("/a.rss") >= 3
    });
    let reqs = server.requests("/a.rss");
    assert_eq!(reqs[0].header("if-none-match"), None);
    assert_eq!(
        reqs[1].header("if-none-match"),
        Some("\"v1\""),
        "second fetch is conditional"
    );
    assert_eq!(
        reqs[2].header("if-modified-since"),
        Some("Mon, 09 Nov 2015 10:00:00 GMT")
    );

    // query works while the daemon runs, and the 304s added nothing.
    let rows = project.query_json(&[]);
    assert_eq!(rows.len(), 1, "{rows:?}");
    let (code, out, err) = project.run(&["feeds", "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let feeds: serde_json::Value = serde_json::from_str(&out).expect("feeds json");
    assert_eq!(feeds[0]["name"], "a");
    assert_eq!(feeds[0]["last_status"], "unchanged");
    assert!(feeds[0]["next_due_at"].is_string(), "{feeds}");

    // A manual poll works beside the daemon too (WAL + busy timeout).
    let (code, _, err) = project.run(&["poll"]);
    assert_eq!(code, 0, "{err}");

    let started = std::time::Instant::now();
    let status = daemon.stop(Duration::from_secs(8));
    assert!(
        status.success(),
        "exit 0 on SIGTERM: {status:?}\n{}",
        daemon.log()
    );
    assert!(started.elapsed() < Duration::from_secs(6));
    let log = daemon.log();
    assert!(
        log.contains("feed{feed=a}"),
        "fetch logs carry the feed name:\n{log}"
    );
    assert!(log.contains("stopped"), "{log}");
}

#[test]
fn retry_after_is_honoured_failing_feeds_back_off_others_keep_pace() {
    let server = TestServer::start();
    server.route(
        "/ok.rss",
        Route::ok("application/rss+xml", rss(&[("o1", "hello")])),
    );
    server.route(
        "/limited.rss",
        Route::status(429, vec![("Retry-After", "4")], "slow down"),
    );
    server.route("/broken.rss", Route::status(500, vec![], "oops"));
    let project = Project::new(&format!(
        "{EVERY_SECOND}{}{}{}{NCA_RULE}",
        feed("ok", &server.url("/ok.rss")),
        feed("limited", &server.url("/limited.rss")),
        feed("broken", &server.url("/broken.rss"))
    ));
    let mut daemon = Daemon::start(&project);
    wait_until(
        "seven polls of the healthy feed",
        Duration::from_secs(20),
        || server.hits("/ok.rss") >= 7,
    );

    let limited = server.requests("/limited.rss");
    assert!(!limited.is_empty());
    for pair in limited.windows(2) {
        let gap = pair[1].received.duration_since(pair[0].received);
        assert!(
            gap >= Duration::from_millis(3900),
            "asked again {gap:?} after Retry-After: 4"
        );
    }
    let ok = server.hits("/ok.rss");
    let broken = server.hits("/broken.rss");
    assert!(broken >= 2, "the failing feed is retried");
    assert!(
        broken + 2 < ok,
        "the failing feed backs off ({broken} requests) while the healthy one keeps pace ({ok})"
    );

    let (_, out, _) = project.run(&["feeds", "--format", "json"]);
    let feeds: serde_json::Value = serde_json::from_str(&out).expect("feeds json");
    let broken = feeds
        .as_array()
        .expect("array")
        .iter()
        .find(|f| f["name"] == "broken")
        .expect("broken feed");
    assert!(
        broken["consecutive_failures"].as_u64().unwrap_or(0) >= 2,
        "{broken}"
    );
    assert_eq!(broken["last_status"], "failed");
    assert!(
        broken["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("HTTP 500"),
        "{broken}"
    );
    assert!(daemon.stop(Duration::from_secs(8)).success());
}

#[test]
fn sighup_adds_feed_and_rule_and_a_broken_config_keeps_the_old_one() {
    let server = TestServer::start();
    server.route(
        "/a.rss",
        Route::ok("application/rss+xml", rss(&[("a1", "NCA raid")])),
    );
    server.route(
        "/b.rss",
        Route::ok("application/rss+xml", rss(&[("b1", "GCHQ report")])),
    );
    let first = format!(
        "{EVERY_SECOND}{}{NCA_RULE}",
        feed("a", &server.url("/a.rss"))
    );
    let project = Project::new(&first);
    let mut daemon = Daemon::start(&project);
    wait_until("first poll", Duration::from_secs(10), || {
        project.query_json(&[]).len() == 1
    });
    assert_eq!(server.hits("/b.rss"), 0);

    project.write_config(&format!(
        "{first}{}[[rules]]\nname = \"gchq\"\nquery = \"GCHQ\"\n",
        feed("b", &server.url("/b.rss"))
    ));
    daemon.signal("HUP");
    wait_until(
        "the new feed's story matched by the new rule",
        Duration::from_secs(10),
        || project.query_json(&["--rule", "gchq"]).len() == 1,
    );
    assert!(server.hits("/b.rss") >= 1);

    project.write_config("[[feeds]]\nname = \"a\"\nurl = \"not a url\"\n");
    daemon.signal("HUP");
    wait_until("the reload failure logged", Duration::from_secs(10), || {
        daemon.log().contains("config reload failed")
    });
    let before = server.hits("/b.rss");
    wait_until(
        "old config still polling b",
        Duration::from_secs(10),
        || server.hits("/b.rss") >= before + 2,
    );
    assert!(
        daemon.log().contains("invalid URL"),
        "the reason is logged:\n{}",
        daemon.log()
    );
    assert!(daemon.stop(Duration::from_secs(8)).success());
}

#[test]
fn a_rule_added_on_sighup_is_applied_to_the_archive_with_backfill_new_rules() {
    let server = TestServer::start();
    server.route(
        "/a.rss",
        Route::ok(
            "application/rss+xml",
            rss(&[("a1", "NCA raid"), ("a2", "Snow closes schools")]),
        ),
    );
    let first = format!(
        "[archive]\nbackfill_new_rules = true\n{EVERY_SECOND}{}{NCA_RULE}",
        feed("a", &server.url("/a.rss"))
    );
    let project = Project::new(&first);
    let mut daemon = Daemon::start(&project);
    wait_until("first poll", Duration::from_secs(10), || {
        project.query_json(&[]).len() == 1
    });
    // The new rule matches an entry polled before it existed: only the archive can tell.
    project.write_config(&format!(
        "{first}[[rules]]\nname = \"weather\"\nquery = \"snow\"\n"
    ));
    daemon.signal("HUP");
    wait_until(
        "the archived entry matched by the new rule",
        Duration::from_secs(15),
        || project.query_json(&["--rule", "weather"]).len() == 1,
    );
    wait_until("the backfill logged", Duration::from_secs(10), || {
        daemon.log().contains("backfill of new rules done")
    });
    let log = daemon.log();
    assert!(
        log.contains("new or changed rule: applying it to the archive"),
        "{log}"
    );
    let rows = project.query_json(&["--rule", "weather"]);
    assert_eq!(rows[0]["title"], "Snow closes schools");
    assert_eq!(
        project.int("SELECT count(*) FROM items WHERE backfilled = 1"),
        1,
        "stored as a backfilled match"
    );
    assert!(daemon.stop(Duration::from_secs(8)).success());
}

#[test]
fn a_second_daemon_on_the_same_database_is_refused() {
    if crate::support::sqlite_only(
        "one daemon per SQLite file (on PostgreSQL several workers share the database: tests/cluster.rs)",
    ) {
        return;
    }
    let server = TestServer::start();
    server.route(
        "/a.rss",
        Route::ok("application/rss+xml", rss(&[("a1", "NCA raid")])),
    );
    let project = Project::new(&format!(
        "{EVERY_SECOND}{}{NCA_RULE}",
        feed("a", &server.url("/a.rss"))
    ));
    let mut daemon = Daemon::start(&project);
    wait_until("first poll", Duration::from_secs(10), || {
        server.hits("/a.rss") >= 1
    });
    let (code, _, err) = project.run(&["run"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("another `newswatch run` is already using"),
        "{err}"
    );
    assert!(err.contains(&format!("pid {}", daemon.child.id())), "{err}");
    let before = server.hits("/a.rss");
    wait_until(
        "the first daemon keeps running",
        Duration::from_secs(10),
        || server.hits("/a.rss") > before,
    );
    assert!(daemon.stop(Duration::from_secs(8)).success());
}

#[test]
fn restart_resumes_the_schedule_instead_of_polling_everything_at_once() {
    let server = TestServer::start();
    server.route(
        "/a.rss",
        Route::ok("application/rss+xml", rss(&[("a1", "NCA raid")])),
    );
    let project = Project::new(&format!(
        "[schedule]\npoll = \"*/20 * * * * *\"\n{}{NCA_RULE}",
        feed("a", &server.url("/a.rss"))
    ));
    let mut daemon = Daemon::start(&project);
    let next_due = || -> Option<chrono::DateTime<chrono::Utc>> {
        let (_, out, _) = project.run(&["feeds", "--format", "json"]);
        let v: serde_json::Value = serde_json::from_str(&out).ok()?;
        chrono::DateTime::parse_from_rfc3339(v[0]["next_due_at"].as_str()?)
            .ok()
            .map(|t| t.with_timezone(&chrono::Utc))
    };
    wait_until(
        "first poll and its due time stored",
        Duration::from_secs(15),
        || server.hits("/a.rss") >= 1 && next_due().is_some(),
    );
    let due = next_due().expect("stored due time");
    assert!(daemon.stop(Duration::from_secs(8)).success());
    assert_eq!(server.hits("/a.rss"), 1);

    let mut again = Daemon::start(&project);
    wait_until(
        "the restarted daemon polls",
        Duration::from_secs(30),
        || server.hits("/a.rss") >= 2,
    );
    let second: chrono::DateTime<chrono::Utc> = server.requests("/a.rss")[1].received_wall.into();
    assert!(
        second >= due - chrono::Duration::milliseconds(50),
        "restart polled at {second} before the stored due time {due}"
    );
    assert!(again.stop(Duration::from_secs(8)).success());
}

/// (id, after_item_id, last_item_id) of every scheduled digest run; empty until the daemon
/// has created the database.
fn digest_runs(project: &Project) -> Vec<(i64, i64, i64)> {
    let int = |v: &Option<String>| v.as_deref().and_then(|v| v.parse().ok()).unwrap_or(0);
    project
        .rows("SELECT id, after_item_id, last_item_id FROM digest_runs ORDER BY id")
        .iter()
        .map(|r| (int(&r[0]), int(&r[1]), int(&r[2])))
        .collect()
}

fn digest_files(project: &Project) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(project.path("digests"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn scheduled_digest_is_written_and_catches_up_after_downtime_without_gap_or_repeat() {
    let server = TestServer::start();
    server.route(
        "/a.rss",
        Route::ok(
            "application/rss+xml",
            rss(&[("a1", "NCA raid"), ("a2", "NCA report")]),
        ),
    );
    let feeds = feed("a", &server.url("/a.rss"));
    let every_second = format!(
        "{EVERY_SECOND}[digest]\nschedule = \"* * * * * *\"\ndir = \"digests\"\nformats = [\"html\", \"json\"]\n{feeds}{NCA_RULE}"
    );
    let project = Project::new(&every_second);
    let mut daemon = Daemon::start(&project);
    wait_until(
        "a digest listing both matches",
        Duration::from_secs(15),
        || digest_runs(&project).iter().any(|(_, _, last)| *last >= 2),
    );
    assert!(daemon.stop(Duration::from_secs(8)).success());
    let files = digest_files(&project);
    assert!(files.iter().any(|f| f.ends_with(".md")), "{files:?}");
    assert!(
        files.iter().any(|f| f.ends_with(".html")) && files.iter().any(|f| f.ends_with(".json")),
        "{files:?}"
    );
    assert!(
        !files.iter().any(|f| f.contains(".tmp")),
        "atomic writes leave no temp files: {files:?}"
    );

    // Pretend the daemon was down at the last 07:00 digest: the last run ended long ago.
    let before = digest_runs(&project);
    project.exec("UPDATE digest_runs SET period_end = '2020-01-01T00:00:00.000Z'");
    server.route(
        "/a.rss",
        Route::ok(
            "application/rss+xml",
            rss(&[
                ("a1", "NCA raid"),
                ("a2", "NCA report"),
                ("a3", "NCA appeal"),
            ]),
        ),
    );
    project.write_config(&format!(
        "{EVERY_SECOND}[digest]\nschedule = \"0 7 * * *\"\ndir = \"digests\"\n{feeds}{NCA_RULE}"
    ));
    let mut again = Daemon::start(&project);
    wait_until("the catch-up digest", Duration::from_secs(15), || {
        digest_runs(&project).len() > before.len()
    });
    assert!(again.log().contains("catching up"), "{}", again.log());
    let runs = digest_runs(&project);
    for pair in runs.windows(2) {
        assert_eq!(
            pair[1].1, pair[0].2,
            "each run starts where the previous one ended: {runs:?}"
        );
    }
    assert!(again.stop(Duration::from_secs(8)).success());
}

#[test]
fn output_atom_file_is_kept_up_to_date_after_polls() {
    let server = TestServer::start();
    server.route(
        "/a.rss",
        Route::ok("application/rss+xml", rss(&[("a1", "NCA raid")])),
    );
    let project = Project::new(&format!(
        "{EVERY_SECOND}[output]\natom = \"out/matches.atom\"\n{}{NCA_RULE}",
        feed("a", &server.url("/a.rss"))
    ));
    let mut daemon = Daemon::start(&project);
    let atom = project.path("out/matches.atom");
    wait_until("matches.atom written", Duration::from_secs(15), || {
        atom.exists()
    });
    server.route(
        "/a.rss",
        Route::ok(
            "application/rss+xml",
            rss(&[("a1", "NCA raid"), ("a2", "NCA arrests")]),
        ),
    );
    wait_until(
        "matches.atom has the new match",
        Duration::from_secs(15),
        || {
            std::fs::read(&atom)
                .ok()
                .and_then(|b| feed_rs::parser::parse(&b[..]).ok())
                .is_some_and(|f| f.entries.len() == 2)
        },
    );
    assert!(daemon.stop(Duration::from_secs(8)).success());
}
