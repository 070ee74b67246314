//! Polling on PostgreSQL (issue 17) through the real binary: `poll` stores what the same poll
//! stores in SQLite; three `newswatch run` workers share one database, lease due feeds so that
//! each due feed is fetched once, store no item or story twice, and take over the feeds of a
//! worker killed with kill -9 once its leases run out.
//!
//! Like `tests/postgres.rs`, these need `NEWSWATCH_PG_URL` and print SKIPPED without it.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use crate::cli_poll::{config, serve_fixtures};
use crate::support::pg::TestDb;
use crate::support::server::{Route, TestServer, write_response};
use crate::support::{Daemon, Project, wait_until};

/// Rows of `sql` over an SQLite file, every value as text (NULL as "∅").
fn rows(path: &Path, sql: &str) -> Vec<Vec<String>> {
    let conn = rusqlite::Connection::open(path).expect("open");
    let mut stmt = conn.prepare(sql).expect(sql);
    let n = stmt.column_count();
    stmt.query_map([], |r| {
        (0..n)
            .map(|i| {
                Ok(match r.get::<_, rusqlite::types::Value>(i)? {
                    rusqlite::types::Value::Null => "∅".into(),
                    rusqlite::types::Value::Integer(v) => v.to_string(),
                    rusqlite::types::Value::Real(v) => v.to_string(),
                    rusqlite::types::Value::Text(v) => v,
                    rusqlite::types::Value::Blob(v) => format!("{v:02x?}"),
                })
            })
            .collect::<Result<Vec<_>, rusqlite::Error>>()
    })
    .expect("query")
    .collect::<Result<_, _>>()
    .expect("rows")
}

/// What a poll stored, without ids and times (which differ between two runs): feeds, items,
/// their rules and terms, sightings, archive rows, rule versions, and stories as the sets of
/// items grouped together.
fn stored(path: &Path) -> BTreeMap<&'static str, Vec<Vec<String>>> {
    let q: &[(&str, &str)] = &[
        (
            "feeds",
            "SELECT name, url, effective_url, title, etag, last_modified, last_status,
               last_http_status, last_error, consecutive_failures, in_config FROM feeds ORDER BY name",
        ),
        (
            "items",
            "SELECT canonical_url, link, guid, title, summary, content, authors, published_at,
               snippet, status, link_rank, backfilled, story_pending, story_evidence IS NULL,
               story_features IS NULL
             FROM items ORDER BY canonical_url, title",
        ),
        (
            "item_rules",
            "SELECT i.canonical_url, i.title, r.rule, r.terms FROM item_rules r
             JOIN items i ON i.id = r.item_id ORDER BY 1, 2, 3",
        ),
        (
            "sightings",
            "SELECT f.name, hex(s.entry_key), hex(s.fingerprint), i.canonical_url, i.title
             FROM sightings s JOIN feeds f ON f.id = s.feed_id LEFT JOIN items i ON i.id = s.item_id
             ORDER BY 1, 2",
        ),
        (
            "archive",
            "SELECT f.name, hex(a.entry_key), a.guid, a.link, a.title, a.summary, a.content,
               a.authors, a.published_at, i.canonical_url
             FROM archive a JOIN feeds f ON f.id = a.feed_id LEFT JOIN items i ON i.id = a.item_id
             ORDER BY 1, 2",
        ),
        ("rule_versions", "SELECT rule, query FROM rule_versions ORDER BY 1, 2"),
        (
            "stories",
            "SELECT (SELECT group_concat(x, ' | ') FROM (SELECT COALESCE(canonical_url, title) AS x
                       FROM items WHERE story_id = s.id ORDER BY x))
             FROM stories s ORDER BY 1",
        ),
    ];
    q.iter().map(|(k, sql)| (*k, rows(path, sql))).collect()
}

/// Poll one feed at a time (see the tests that compare the backends).
const SEQUENTIAL: &str = "\n[http]\nconcurrency = 1\n";

#[test]
fn pg_poll_stores_what_the_same_poll_stores_in_sqlite() {
    let Some(db) = TestDb::create("pollsame") else {
        return;
    };
    let server = TestServer::start();
    serve_fixtures(&server);
    // One feed at a time, in config order: the order of arrival decides which copy creates an
    // item and how online story placement goes, so both backends must see the same order.
    let base = format!("{}{SEQUENTIAL}", config(&server));
    let sqlite = Project::new(&base);
    let pg_config = base.replace("path = \"data/news.db\"", &format!("url = \"{}\"", db.url));
    assert!(pg_config.contains("url = \"postgres"), "{pg_config}");
    let pg = Project::new(&pg_config);
    // Twice each: the second poll meets known entries and validators (304s).
    for round in 0..2 {
        let (code_s, _, err_s) = sqlite.run(&["poll"]);
        let (code_p, _, err_p) = pg.run(&["poll"]);
        assert_eq!(code_s, code_p, "round {round}: {err_s} / {err_p}");
        let summary = |e: &str| {
            e.lines()
                .filter(|l| l.starts_with("poll:"))
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert_eq!(summary(&err_s), summary(&err_p), "round {round}");
    }
    assert_eq!(
        db.count("archive"),
        db.count("archive_fts") + db.count("archive_pending"),
        "every archived entry is indexed or queued for it"
    );
    assert!(db.count("items") >= 3);
    // The PostgreSQL database copied into SQLite, to compare with one set of queries.
    let copy = pg.path("data/pg-copy.db");
    let (code, _, err) = pg.run(&["migrate", "--from", &db.url, "--to", copy.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let (want, got) = (stored(&sqlite.path("data/news.db")), stored(&copy));
    for table in ["items", "item_rules", "sightings", "archive", "stories"] {
        assert!(
            !want[table].is_empty(),
            "{table} is empty: the comparison means nothing"
        );
    }

    for (table, rows) in &want {
        assert_eq!(
            rows, &got[table],
            "{table} differs between SQLite and PostgreSQL"
        );
    }
    // `feeds` reads PostgreSQL too, naming the poller.
    let (code, out, err) = pg.run(&["feeds", "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let feeds: Vec<serde_json::Value> = serde_json::from_str(&out).expect("json");
    assert!(
        feeds
            .iter()
            .all(|f| f["last_worker"].as_str().is_some_and(|w| !w.is_empty())),
        "{out}"
    );
}

/// The labelled story set (`tests/fixtures/stories`, two polls): PostgreSQL groups the
/// reports into the same stories as SQLite, and stores the same rows.
#[test]
fn pg_places_the_labelled_set_into_the_stories_sqlite_makes() {
    let Some(db) = TestDb::create("storiessame") else {
        return;
    };
    let server = TestServer::start();
    let sqlite = crate::stories::eval_project(&server);
    let config =
        std::fs::read_to_string(sqlite.path("newswatch.toml")).expect("config") + SEQUENTIAL;
    sqlite.write_config(&config);
    let pg = Project::new(&config.replace("path = \"news.db\"", &format!("url = \"{}\"", db.url)));
    for poll in [1, 2] {
        crate::stories::serve_poll(&server, poll);
        let (code_s, _, err_s) = sqlite.run(&["poll"]);
        let (code_p, _, err_p) = pg.run(&["poll"]);
        assert_eq!((code_s, code_p), (0, 0), "{err_s} / {err_p}");
    }
    let copy = pg.path("pg-copy.db");
    let (code, _, err) = pg.run(&["migrate", "--from", &db.url, "--to", copy.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let (want, got) = (stored(&sqlite.path("news.db")), stored(&copy));
    let grouped = want["stories"]
        .iter()
        .filter(|s| s[0].contains(" | "))
        .count();
    assert!(
        grouped >= 5,
        "the set has stories of several reports: {grouped}"
    );
    for (table, rows) in &want {
        assert_eq!(
            rows, &got[table],
            "{table} differs between SQLite and PostgreSQL"
        );
    }
}

/// A small RSS document for feed `i`: its own report (matching rule `nca`), and either an
/// unmatched entry of its own or, for every tenth feed, a wire story ten feeds carry.
fn small_feed(i: usize) -> String {
    let second = if i.is_multiple_of(10) {
        let w = i / 100;
        format!(
            "<item><guid>wire-{w}</guid><title>NCA wire report {w}</title><link>http://wire.example/{w}</link>\
             <description>The National Crime Agency said raid {w} happened.</description></item>"
        )
    } else {
        format!(
            "<item><guid>wx-{i}</guid><title>Weather {i}</title><link>http://local.example/{i}/wx</link>\
             <description>Rain in town {i}.</description></item>"
        )
    };
    format!(
        "<?xml version=\"1.0\"?><rss version=\"2.0\"><channel><title>Feed {i}</title>\
         <link>http://site{i}.example/</link>\
         <item><guid>own-{i}</guid><title>NCA arrests {i} in town {i}</title>\
         <link>http://site{i}.example/a</link><description>Officers of the NCA arrested suspects in town {i}.</description></item>\
         {second}</channel></rss>"
    )
}

const FEEDS: usize = 1000;

/// `[http] per_host` of the cluster test: below the three workers' 24 fetches each.
const PER_HOST: usize = 10;

fn unix(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

#[test]
fn pg_three_workers_fetch_each_due_feed_once_and_take_over_a_killed_workers_leases() {
    let Some(db) = TestDb::create("cluster") else {
        return;
    };
    let started = Instant::now();
    let server = TestServer::start();
    let mut cfg = format!(
        "[storage]\nurl = \"{}\"\n\n[http]\nconcurrency = 24\nper_host = {PER_HOST}\n\n\
         [schedule]\npoll = \"*/5 * * * * *\"\n\n[cluster]\nlease = \"3s\"\n\n\
         [[rules]]\nname = \"nca\"\nquery = 'NCA OR \"National Crime Agency\"'\n",
        db.url
    );
    // Requests being answered now, and the most at once: every feed is on one host, so
    // `per_host` bounds them over all three workers together (each alone could reach it).
    let in_flight = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    for i in 0..FEEDS {
        let path = format!("/f{i}.rss");
        let body = small_feed(i).into_bytes();
        let (now, max) = (in_flight.clone(), most.clone());
        server.route(
            &path,
            Route::custom(move |_, stream| {
                let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                max.fetch_max(n, Ordering::SeqCst);
                // A server that takes a moment to answer, so that fetches overlap.
                std::thread::sleep(Duration::from_millis(20));
                let ct = [(
                    "Content-Type".to_string(),
                    "application/rss+xml".to_string(),
                )];
                now.fetch_sub(1, Ordering::SeqCst);
                write_response(stream, 200, &ct, &body);
            }),
        );
        cfg.push_str(&format!(
            "\n[[feeds]]\nname = \"f{i}\"\nurl = \"{}\"\n",
            server.url(&path)
        ));
    }
    let project = Project::new(&cfg);
    // The schema first, so that three workers starting at once do not all wait on it.
    db.connect().migrate().expect("migrate");
    let mut workers: Vec<Daemon> = (0..3).map(|_| Daemon::start(&project)).collect();
    let hits = |i: usize| server.hits(&format!("/f{i}.rss"));
    let all_fetched = |n: usize| (0..FEEDS).all(|i| hits(i) >= n);
    let log = |ws: &[Daemon]| {
        ws.iter()
            .map(Daemon::log)
            .collect::<Vec<_>>()
            .join("\n----\n")
    };

    wait_until("every feed fetched once", Duration::from_secs(40), || {
        all_fetched(1)
    });
    let cold = started.elapsed();

    // Kill one worker while it holds leases (mid-cycle).
    let victim = workers[0].child.id();
    let owner_like = format!("%:{victim}");
    let leased_by_victim = || {
        db.count(&format!(
            "feeds WHERE lease_owner LIKE '{owner_like}' AND lease_until > to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
        ))
    };
    // Frozen while its leases are counted (SIGSTOP), so that it cannot finish those feeds
    // between the count and the kill; thawed again when it holds too few.
    wait_until("the victim holds leases", Duration::from_secs(20), || {
        workers[0].signal("STOP");
        let enough = leased_by_victim() >= 3;
        if !enough {
            workers[0].signal("CONT");
        }
        enough
    });
    workers[0].signal("KILL");
    let _ = workers[0].child.wait();
    let killed_at = SystemTime::now();
    let mut pg = db.connect();
    let orphans: Vec<String> = pg
        .client()
        .query(
            "SELECT name FROM feeds WHERE lease_owner LIKE $1",
            &[&owner_like],
        )
        .expect("orphans")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(!orphans.is_empty());
    // Its feeds are polled by the others once the leases run out.
    wait_until(
        "the killed worker's feeds polled by the others",
        Duration::from_secs(20),
        || {
            pg.client()
                .query_one(
                    "SELECT count(*) FROM feeds WHERE name = ANY($1)
                       AND (lease_owner LIKE $2 OR last_worker LIKE $2 OR last_worker IS NULL)",
                    &[&orphans, &owner_like],
                )
                .map(|r| r.get::<_, i64>(0) == 0)
                .unwrap_or(false)
        },
    );
    let recovered = killed_at.elapsed().unwrap_or_default();
    // And every feed goes on being polled by the two left.
    let before: HashMap<usize, usize> = (0..FEEDS).map(|i| (i, hits(i))).collect();
    wait_until(
        "another cycle of every feed",
        Duration::from_secs(20),
        || (0..FEEDS).all(|i| hits(i) > before[&i]),
    );
    // The server drops every connection (a restart, a failover): the two workers reconnect
    // and go on; a feed whose write met the dead connection is retried at its next due time.
    pg.client()
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .expect("terminate");
    let before: HashMap<usize, usize> = (0..FEEDS).map(|i| (i, hits(i))).collect();
    wait_until(
        "every feed polled again after the connections were dropped, none failing",
        Duration::from_secs(30),
        || {
            (0..FEEDS).all(|i| hits(i) > before[&i])
                && db.count(
                    "feeds WHERE consecutive_failures > 0 AND last_error NOT LIKE '%deadlock detected%'",
                ) == 0
        },
    );
    assert!(
        workers[1..]
            .iter()
            .all(|w| w.log().contains("reconnected to PostgreSQL")),
        "{}",
        log(&workers)
    );
    // The archive documents the waves queued are built by the workers after their waves
    // (those the killed worker queued, and any whose indexing met a dropped connection, too).
    wait_until(
        "every archive row indexed by the workers",
        Duration::from_secs(30),
        || db.count("archive_pending") == 0 && db.count("archive_fts") == db.count("archive"),
    );
    for w in workers.iter_mut().skip(1) {
        let status = w.stop(Duration::from_secs(15));
        assert!(status.success(), "{}", log(&workers));
    }

    // Never two fetches of one feed for one due time: the schedule is every 5 s, so fetches of
    // a feed closer than 1 s apart would be two workers polling the same due time. (The
    // killed worker's unfinished fetch is retried after its 3 s lease, further apart.)
    let mut fetches = 0;
    for i in 0..FEEDS {
        let mut times: Vec<f64> = server
            .requests(&format!("/f{i}.rss"))
            .iter()
            .map(|r| unix(r.received_wall))
            .collect();
        times.sort_by(f64::total_cmp);
        fetches += times.len();
        for pair in times.windows(2) {
            assert!(
                pair[1] - pair[0] >= 1.0,
                "feed f{i} fetched twice within {:.3}s: {times:?}",
                pair[1] - pair[0]
            );
        }
        assert!(times.len() >= 2, "feed f{i}: {times:?}");
    }
    let _ = unix(killed_at);

    let most = most.load(Ordering::SeqCst);
    assert!(
        most <= PER_HOST,
        "{most} requests to one host at once over the workers; per_host = {PER_HOST}"
    );
    assert!(most > 1, "fetches overlapped: {most}");

    // Nothing stored twice: one item per report (the wire stories once for ten feeds), one
    // rule row each, one sighting and one archive row (indexed) per entry.
    let own = FEEDS as i64;
    let wire = (FEEDS / 100) as i64;
    assert_eq!(db.count("items"), own + wire, "{}", log(&workers));
    assert_eq!(
        db.count("(SELECT DISTINCT canonical_url FROM items) u"),
        own + wire
    );
    assert_eq!(db.count("item_rules"), own + wire);
    assert_eq!(db.count("sightings"), 2 * own);
    assert_eq!(db.count("archive"), 2 * own);
    assert_eq!(db.count("archive_fts"), 2 * own);
    assert_eq!(db.count("archive_pending"), 0);
    assert_eq!(db.count("items WHERE story_id IS NULL"), 0);
    assert_eq!(
        db.count("stories s WHERE NOT EXISTS (SELECT 1 FROM items i WHERE i.story_id = s.id)"),
        0,
        "no story without reports"
    );
    assert_eq!(
        db.count("items WHERE story_pending = 1"),
        0,
        "every report placed"
    );
    assert_eq!(
        db.count("feeds WHERE lease_owner IS NOT NULL"),
        0,
        "leases released"
    );
    // Two workers' grouped writes may meet on the shared wire items in opposite orders; a
    // deadlock then fails one feed's savepoint (retried at its next due time). Nothing else
    // may fail.
    let failed = db.count(
        "feeds WHERE consecutive_failures > 0 AND last_error NOT LIKE '%deadlock detected%'",
    );
    assert_eq!(failed, 0, "{}", log(&workers));
    let workers_seen = db.count("(SELECT DISTINCT last_worker FROM feeds) w");
    assert!(workers_seen >= 2, "{workers_seen}");

    // Document frequencies: each worker adds its own counts to the shared copy, so it holds
    // every entry's once — never more than the 2,000 entries (the killed worker's counts
    // since its last placement are lost; that the others' add up is unit-tested:
    // `doc_freq_merged_by_two_counters_counts_each_document_once`).
    let blob: Vec<u8> = pg
        .client()
        .query_one("SELECT doc_freq FROM story_state WHERE id = 1", &[])
        .expect("doc_freq")
        .get(0);
    let docs = newswatch::pipeline::stories::DocFreq::from_bytes(&blob)
        .expect("blob")
        .docs();
    assert!(docs <= 2 * FEEDS as u32, "documents counted: {docs}");

    // `feeds --format json` names the worker that last polled each feed.
    let (code, out, err) = project.run(&["feeds", "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let feeds: Vec<serde_json::Value> = serde_json::from_str(&out).expect("json");
    assert_eq!(feeds.len(), FEEDS);
    assert!(feeds.iter().all(|f| f["last_worker"].is_string()));
    eprintln!(
        "cluster: {FEEDS} feeds, 3 workers: every feed fetched in {:.1}s; {} orphaned leases taken over {:.1}s after kill -9; {fetches} fetches, at most {most} at once; {docs} documents counted; {:.1}s in all",
        cold.as_secs_f64(),
        orphans.len(),
        recovered.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}

/// One matched entry, as the poller hands it to the store.
fn record(guid: &str, link: &str, title: &str) -> newswatch::store::EntryRecord {
    use newswatch::pipeline::{dedup, matcher::RuleMatch, parse::Entry};
    use newswatch::store::{EntryRecord, EntryText, MatchedEntry};
    let e = Entry {
        guid: Some(guid.into()),
        link: Some(link.into()),
        title: title.into(),
        ..Default::default()
    };
    let (_, identity) = dedup::identify(std::slice::from_ref(&e)).remove(0);
    EntryRecord {
        identity,
        fingerprint: dedup::fingerprint(&e),
        text: EntryText {
            guid: e.guid.clone(),
            link: e.link.clone(),
            title: title.into(),
            ..Default::default()
        },
        matched: Some(MatchedEntry {
            rules: vec![RuleMatch {
                rule: "r".into(),
                terms: vec![title.into()],
            }],
            snippet: title.into(),
            link_rank: 0,
        }),
    }
}

/// As `store::tests::a_failing_feed_in_a_grouped_write_is_rolled_back_alone`, on PostgreSQL,
/// and a worker whose lease is gone writes nothing of that feed.
#[test]
fn pg_a_failing_feed_in_a_grouped_write_is_rolled_back_alone_and_a_lost_lease_writes_nothing() {
    use newswatch::store::postgres::poll::PgStore;
    use newswatch::store::{FeedWrite, FetchFacts, PollStore};
    let Some(db) = TestDb::create("grouped") else {
        return;
    };
    let now = chrono::Utc::now();
    let mut s = PgStore::open(&db.url, None, "w1".into(), true).expect("open");
    s.sync_feeds([("a", "http://a/feed"), ("b", "http://b/feed")])
        .expect("sync");
    let claimed = s
        .claim_due(10, usize::MAX, Duration::from_secs(60), now)
        .expect("claim");
    assert_eq!(claimed.len(), 2, "both feeds due, both claimed");
    let id = |name: &str| {
        claimed
            .iter()
            .find(|c| c.state.name == name)
            .map(|c| c.state.id)
            .expect("claimed")
    };
    let (a, b) = (id("a"), id("b"));
    let write = |feed_id, guid: &str| FeedWrite::Fetched {
        feed_id,
        facts: FetchFacts::default(),
        entries: vec![record(guid, &format!("http://x/{guid}"), "Title")],
        now,
    };
    // No such feed (and no lease on it): refused before anything of it is written.
    let results = s
        .write_feeds(&[
            write(a, "1"),
            write(9_999, "2"),
            FeedWrite::Unchanged {
                feed_id: b,
                facts: FetchFacts::default(),
                now,
            },
        ])
        .expect("write");
    assert!(
        results[0].is_ok() && results[1].is_err() && results[2].is_ok(),
        "{results:?}"
    );
    assert_eq!(db.count("sightings"), 1);
    assert_eq!(db.count("items"), 1);
    assert_eq!(db.count("archive WHERE feed_id = 9999"), 0);
    assert_eq!(
        db.count("feeds WHERE lease_owner IS NOT NULL"),
        0,
        "leases ended"
    );
    assert_eq!(db.count("feeds WHERE last_worker = 'w1'"), 2);

    // A worker whose lease ran out and was taken by another: its write is refused whole.
    let mut late = PgStore::open(&db.url, None, "w2".into(), true).expect("open");
    db.connect()
        .client()
        .batch_execute("UPDATE feeds SET next_due_at = NULL")
        .expect("due again");
    assert_eq!(
        late.claim_due(10, usize::MAX, Duration::from_secs(60), now)
            .expect("claim")
            .len(),
        2
    );
    let results = s.write_feeds(&[write(a, "3")]).expect("write");
    let e = results[0].as_ref().expect_err("lease is w2's");
    assert!(e.to_string().contains("lease ran out"), "{e}");
    assert_eq!(db.count("sightings"), 1, "nothing of the late write");
    assert!(s.record_failure(a, "x", None, None, now).is_err());
    assert_eq!(db.count("feeds WHERE lease_owner = 'w2'"), 2);
    // Claims skip leased feeds; `poll` (no leases) leaves other workers' leases alone.
    assert!(
        s.claim_due(10, usize::MAX, Duration::from_secs(60), now)
            .expect("claim")
            .is_empty()
    );
    let mut poll = PgStore::open(&db.url, None, "cli".into(), false).expect("open");
    let results = poll.write_feeds(&[write(b, "4")]).expect("write");
    assert!(results[0].is_ok(), "{results:?}");
    assert_eq!(db.count("feeds WHERE lease_owner = 'w2'"), 2);
    assert_eq!(db.count("feeds WHERE last_worker = 'cli'"), 1);
    // Without leases, a feed that fails midway (its item written, then its sighting refused
    // by the foreign key) is rolled back alone: its item and story go too.
    let (items, stories) = (db.count("items"), db.count("stories"));
    let results = poll
        .write_feeds(&[write(a, "5"), write(9_999, "6")])
        .expect("write");
    assert!(results[0].is_ok() && results[1].is_err(), "{results:?}");
    assert_eq!(db.count("items"), items + 1);
    assert_eq!(db.count("stories"), stories + 1);
    assert_eq!(db.count("archive WHERE feed_id = 9999"), 0);
    drop((s, late, poll));
}

#[test]
fn pg_the_daily_prune_runs_once_for_the_cluster() {
    let Some(db) = TestDb::create("prune") else {
        return;
    };
    let server = TestServer::start();
    serve_fixtures(&server);
    let base = config(&server).replace("path = \"data/news.db\"", &format!("url = \"{}\"", db.url));
    let project = Project::new(&format!("{base}\n[schedule]\npoll = \"*/2 * * * * *\"\n"));
    let (code, _, err) = project.run(&["poll"]);
    assert!(code == 0 || code == 1, "{err}");
    // Entries polled long ago (moved back by hand), and a last prune two days ago.
    db.connect()
        .client()
        .batch_execute(
            "UPDATE archive SET first_seen_at = '2000-01-01T00:00:00.000Z';
             UPDATE archive_index SET pruned_at = '2000-01-01T00:00:00.000Z'",
        )
        .expect("age the archive");
    let unmatched = db.count("archive WHERE item_id IS NULL");
    let matched = db.count("archive WHERE item_id IS NOT NULL");
    assert!(unmatched > 0 && matched > 0, "{unmatched} / {matched}");
    let items = db.count("items");

    let mut workers: Vec<Daemon> = (0..2).map(|_| Daemon::start(&project)).collect();
    let logs = |ws: &[Daemon]| ws.iter().map(Daemon::log).collect::<Vec<_>>();
    wait_until("the archive is pruned", Duration::from_secs(30), || {
        db.count("archive WHERE item_id IS NULL") == 0
    });
    // Both workers have had their look (each looks after its first wave).
    wait_until(
        "both workers looked at the prune",
        Duration::from_secs(30),
        || {
            logs(&workers)
                .iter()
                .all(|l| l.contains("pruned (for the cluster)") || l.contains("prune: not due"))
        },
    );
    for w in &mut workers {
        assert!(w.stop(Duration::from_secs(20)).success());
    }
    let all = logs(&workers);
    let pruned: Vec<usize> = all
        .iter()
        .map(|l| l.matches("pruned (for the cluster)").count())
        .collect();
    assert_eq!(
        pruned.iter().sum::<usize>(),
        1,
        "one prune for the cluster: {pruned:?}\n{}",
        all.join("\n----\n")
    );
    assert_eq!(
        db.count("archive WHERE item_id IS NOT NULL"),
        matched,
        "matched entries stay"
    );
    assert_eq!(
        db.count("items"),
        items,
        "matches stay (kept forever by default)"
    );
    assert_eq!(
        db.count("archive_fts") + db.count("archive_pending"),
        matched
    );
    let recent = db.count(
        "archive_index WHERE pruned_at > to_char((now() - interval '1 hour') AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')",
    );
    assert_eq!(recent, 1, "the prune is recorded");
}

#[test]
fn pg_two_workers_write_each_scheduled_digest_once() {
    let Some(db) = TestDb::create("digest") else {
        return;
    };
    let server = TestServer::start();
    serve_fixtures(&server);
    let base = config(&server).replace("path = \"data/news.db\"", &format!("url = \"{}\"", db.url));
    // Digests every 3 seconds (cron with seconds), both workers writing to one folder.
    let project = Project::new(&format!(
        "{base}\n[schedule]\npoll = \"*/2 * * * * *\"\n\n[digest]\nschedule = \"*/3 * * * * *\"\ndir = \"digests\"\n"
    ));
    db.connect().migrate().expect("migrate");
    let mut workers: Vec<Daemon> = (0..2).map(|_| Daemon::start(&project)).collect();
    let runs = || db.count("digest_runs");
    wait_until("four scheduled digests", Duration::from_secs(40), || {
        runs() >= 4
    });
    for w in &mut workers {
        assert!(w.stop(Duration::from_secs(20)).success());
    }
    let log = workers
        .iter()
        .map(Daemon::log)
        .collect::<Vec<_>>()
        .join("\n----\n");
    // One run per scheduled time: consecutive runs end at least ~3 s apart (two workers
    // writing one scheduled time would be milliseconds apart), their item ranges touch.
    let mut pg = db.connect();
    let rows = pg
        .client()
        .query(
            "SELECT period_start, period_end, after_item_id, last_item_id, files FROM digest_runs ORDER BY id",
            &[],
        )
        .expect("runs");
    let t = |s: String| chrono::DateTime::parse_from_rfc3339(&s).expect("time");
    for pair in rows.windows(2) {
        let (end0, end1) = (t(pair[0].get(1)), t(pair[1].get(1)));
        assert!(
            (end1 - end0).num_milliseconds() >= 2_000,
            "two digests {} ms apart: {:?}\n{log}",
            (end1 - end0).num_milliseconds(),
            rows.iter()
                .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1)))
                .collect::<Vec<_>>()
        );
        assert_eq!(t(pair[1].get(0)), end0, "no gap between periods");
        assert_eq!(
            pair[1].get::<_, i64>(2),
            pair[0].get::<_, i64>(3),
            "item cut contiguous"
        );
    }
    // Every run's files are there, one Markdown file per run.
    let md = std::fs::read_dir(project.path("digests"))
        .expect("digests folder")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "md"))
        .count();
    assert_eq!(md as i64, rows.len() as i64, "{log}");
    let total: i64 = db.count("items");
    let listed: i64 = pg
        .client()
        .query_one(
            "SELECT COALESCE(sum(items), 0)::bigint FROM digest_runs",
            &[],
        )
        .expect("sum")
        .get(0);
    assert!(
        listed <= total,
        "no match listed twice: {listed} of {total}"
    );
    assert!(log.contains("digest written (for the cluster)"), "{log}");
}

/// An RSS document of `(guid, title)` items about the NCA, each its own event.
fn nca_rss(items: &[(&str, &str)]) -> String {
    let mut s = String::from(
        "<?xml version=\"1.0\"?><rss version=\"2.0\"><channel><title>t</title><link>https://outlet.example/</link>",
    );
    for (id, title) in items {
        s.push_str(&format!(
            "<item><guid isPermaLink=\"false\">{id}</guid><link>https://outlet.example/{id}</link><title>{title}</title><description>{title}: a report on the NCA.</description></item>"
        ));
    }
    s.push_str("</channel></rss>");
    s
}

#[test]
fn pg_two_workers_send_each_alert_once_and_a_survivor_takes_over_delivery() {
    let Some(db) = TestDb::create("alerts") else {
        return;
    };
    let server = TestServer::start();
    server.route(
        "/a.rss",
        Route::ok(
            "application/rss+xml",
            nca_rss(&[("a1", "NCA raid in Leeds")]),
        ),
    );
    server.route("/hook", Route::status(200, vec![], "ok"));
    let project = Project::new(&format!(
        "[storage]\nurl = \"{}\"\n[schedule]\npoll = \"* * * * * *\"\n\
         [[feeds]]\nname = \"a\"\nurl = \"{}\"\n\
         [[rules]]\nname = \"nca\"\nquery = 'NCA'\n\
         [[alerts]]\nname = \"desk\"\nwebhook = \"{}\"\n",
        db.url,
        server.url("/a.rss"),
        server.url("/hook")
    ));
    let leads = "this worker delivers the cluster's alerts";
    let mut workers: Vec<Daemon> = (0..2).map(|_| Daemon::start(&project)).collect();
    wait_until(
        "the first alert is delivered",
        Duration::from_secs(30),
        || server.hits("/hook") >= 1,
    );
    wait_until("one worker leads", Duration::from_secs(10), || {
        workers.iter().any(|w| w.log().contains(leads))
    });
    let leader = workers
        .iter()
        .position(|w| w.log().contains(leads))
        .expect("a leader");
    assert!(
        !workers[1 - leader].log().contains(leads),
        "one sender for the cluster"
    );
    assert_eq!(
        db.count("alert_messages WHERE state = 'sent'"),
        1,
        "sent and marked once"
    );

    // The leader dies; a second story breaks: the survivor takes the lock and sends it.
    let mut dead = workers.remove(leader);
    let _ = dead.child.kill();
    let _ = dead.child.wait();
    server.route(
        "/a.rss",
        Route::ok(
            "application/rss+xml",
            nca_rss(&[
                ("a1", "NCA raid in Leeds"),
                ("a2", "Hannigan opens the Warrington cell with the NCA"),
            ]),
        ),
    );
    wait_until(
        "the survivor sends the second story's alert",
        Duration::from_secs(60),
        || db.count("alert_messages WHERE state = 'sent'") == 2,
    );
    let survivor = &mut workers[0];
    assert!(survivor.log().contains(leads), "{}", survivor.log());
    let hooks = server.requests("/hook");
    let keys: Vec<String> = hooks
        .iter()
        .map(|r| r.header("idempotency-key").unwrap_or_default().to_string())
        .collect();
    assert_eq!(hooks.len(), 2, "one delivery per story: {keys:?}");
    assert_ne!(keys[0], keys[1], "{keys:?}");
    assert_eq!(db.count("alert_outbox"), 2);
    assert_eq!(db.count("alert_outbox WHERE state = 'sent'"), 2);
    let (code, out, err) = project.run(&["alerts", "list", "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let list: Vec<serde_json::Value> = serde_json::from_str(&out).expect("alerts list JSON");
    assert!(
        list.iter().all(|r| r["state"] == "sent") && list.len() == 2,
        "{out}"
    );
    assert!(survivor.stop(Duration::from_secs(20)).success());
}
