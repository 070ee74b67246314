//! Reviewing on PostgreSQL (issue 17): `query`, `show`, `mark`, `stats`, `story` and the web
//! (`serve`, pages and JSON API) give on PostgreSQL what they give on SQLite for the same
//! polls, and two `serve` instances on one database share every change (they keep no state of
//! their own, so several can run behind a proxy).
//!
//! Needs `NEWSWATCH_PG_URL` (prints SKIPPED without it), like `tests/postgres.rs`.

use serde_json::Value;

use crate::cli_poll::{config, serve_fixtures};
use crate::support::Project;
use crate::support::pg::TestDb;
use crate::support::server::TestServer;
use crate::web::{Web, get, request};

/// One feed at a time, so that both backends see entries in the same order and give them the
/// same ids.
const SEQUENTIAL: &str = "\n[http]\nconcurrency = 1\n";

/// Run `args` on both projects; both succeed; their stdout, parsed as JSON.
fn both(sqlite: &Project, pg: &Project, args: &[&str]) -> (Value, Value) {
    let parse = |p: &Project, which: &str| -> Value {
        let (code, out, err) = p.run(args);
        assert_eq!(code, 0, "{which} {args:?}: {err}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{which} {args:?}: {e}: {out}"))
    };
    (parse(sqlite, "sqlite"), parse(pg, "postgres"))
}

/// `v` without the fields that hold the time of the poll (each backend polled at its own
/// moment), recursively.
fn timeless(mut v: Value) -> Value {
    match &mut v {
        Value::Object(m) => {
            for k in [
                "first_seen",
                "last_seen",
                "updated",
                "last_fetch",
                "last_success",
                "first_matched",
                "since",
                "until",
                "per_day",
                "period_start",
                "period_end",
                "generated_at",
                "archive",
                "feeds",
            ] {
                if k == "feeds" {
                    // Feed lists of matches stay (names); the stats' feed health goes.
                    if m.get(k)
                        .and_then(Value::as_array)
                        .is_some_and(|a| a.first().is_some_and(Value::is_object))
                    {
                        m.remove(k);
                    }
                } else {
                    m.remove(k);
                }
            }
            for (_, x) in m.iter_mut() {
                *x = timeless(x.take());
            }
        }
        Value::Array(a) => {
            for x in a.iter_mut() {
                *x = timeless(x.take());
            }
        }
        _ => {}
    }
    v
}

#[test]
fn pg_review_commands_and_two_web_servers_agree_with_sqlite() {
    let Some(db) = TestDb::create("review") else {
        return;
    };
    let server = TestServer::start();
    serve_fixtures(&server);
    let base = format!("{}{SEQUENTIAL}", config(&server));
    let sqlite = Project::new(&base);
    let pg =
        Project::new(&base.replace("path = \"data/news.db\"", &format!("url = \"{}\"", db.url)));
    for p in [&sqlite, &pg] {
        let (code, _, err) = p.run(&["poll"]);
        assert!(code == 0 || code == 1, "{err}");
    }

    // The same matches, stories and statistics.
    let all = ["query", "--format", "json", "--limit", "1000"];
    let (want, got) = both(&sqlite, &pg, &all);
    let rows = want.as_array().expect("array").clone();
    assert!(rows.len() >= 3, "too little to compare: {want}");
    assert_eq!(timeless(want), timeless(got.clone()));
    let (want, got) = both(&sqlite, &pg, &["query", "--stories", "--format", "json"]);
    assert_eq!(timeless(want), timeless(got));
    let (want, got) = both(
        &sqlite,
        &pg,
        &["stats", "--format", "json", "--since", "30d"],
    );
    assert!(want["total"].as_u64().unwrap_or(0) >= 3, "{want}");
    assert_eq!(timeless(want), timeless(got));
    let id = rows[0]["id"].as_i64().expect("id");
    let (want, got) = both(&sqlite, &pg, &["show", &id.to_string(), "--format", "json"]);
    assert_eq!(got["id"], id);
    assert_eq!(timeless(want), timeless(got));
    // A query expression and a rule filter, as on SQLite; an unknown rule is a usage error
    // naming the known ones, also on PostgreSQL.
    let title_word = rows[0]["title"]
        .as_str()
        .and_then(|t| {
            t.split_whitespace()
                .find(|w| w.chars().all(char::is_alphabetic) && w.len() > 3)
        })
        .expect("a word of the first title")
        .to_string();
    let rule = rows[0]["rules"][0].as_str().expect("rule").to_string();
    let (want, got) = both(
        &sqlite,
        &pg,
        &["query", "--format", "json", "--rule", &rule, &title_word],
    );
    assert!(!want.as_array().expect("array").is_empty());
    assert_eq!(timeless(want), timeless(got));
    // The archive's search: the same hits, unmatched entries included, with filters and
    // field scopes; an unknown feed is a usage error.
    for args in [
        &["search", "--format", "json", &title_word][..],
        &[
            "search",
            "--format",
            "json",
            "--feed",
            "uknews",
            "police OR NCA",
        ],
        &[
            "search",
            "--format",
            "json",
            "title:(dark*) OR \"Investigatory Powers\"",
        ],
        &["search", "--format", "json", "--limit", "2", "the OR a"],
    ] {
        let (want, got) = both(&sqlite, &pg, args);
        assert!(!want.as_array().expect("array").is_empty(), "{args:?}");
        assert_eq!(timeless(want), timeless(got), "{args:?}");
    }
    let (code, _, err) = pg.run(&["search", "--feed", "no-such-feed", "x"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = pg.run(&["query", "--rule", "no-such-rule"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("known rules:") && err.contains(&rule), "{err}");

    // The same decisions give the same state: star one, merge two stories, split one back.
    let story = |r: &Value| r["story"].as_i64().expect("story");
    let (a, b) = (story(&rows[0]), story(&rows[rows.len() - 1]));
    assert_ne!(a, b, "two stories to merge");
    let split_item = rows[rows.len() - 1]["id"].as_i64().expect("id").to_string();
    for p in [&sqlite, &pg] {
        for args in [
            &["mark", &id.to_string(), "--star"][..],
            &["story", "merge", &a.to_string(), &b.to_string()],
            &["story", "split", &split_item],
        ] {
            let (code, _, err) = p.run(args);
            assert_eq!(code, 0, "{args:?}: {err}");
        }
        let (code, _, err) = p.run(&["mark", "999999", "--read"]);
        assert_eq!(code, 1);
        assert!(err.contains("no match with id 999999"), "{err}");
        let (code, _, err) = p.run(&["story", "merge", &a.to_string(), "999999"]);
        assert_eq!(code, 2);
        assert!(err.contains("no story with id 999999"), "{err}");
    }
    let (want, got) = both(&sqlite, &pg, &all);
    assert_eq!(timeless(want), timeless(got.clone()));
    let starred = |v: &Value| -> Vec<i64> {
        v.as_array()
            .expect("array")
            .iter()
            .filter(|r| r["status"] == "starred")
            .map(|r| r["id"].as_i64().expect("id"))
            .collect()
    };
    assert_eq!(starred(&got), [id]);
    let (want, got) = both(
        &sqlite,
        &pg,
        &["story", "show", &a.to_string(), "--format", "json"],
    );
    assert_eq!(timeless(want), timeless(got));

    // A manual decision survives the next poll, on PostgreSQL as on SQLite.
    let story_of = |p: &Project, item: &str| -> i64 {
        let (code, out, err) = p.run(&["show", item, "--format", "json"]);
        assert_eq!(code, 0, "{err}");
        serde_json::from_str::<Value>(&out).expect("json")["story"]
            .as_i64()
            .expect("story")
    };
    let split_to = story_of(&pg, &split_item);
    for p in [&sqlite, &pg] {
        let (code, _, err) = p.run(&["poll"]);
        assert!(code == 0 || code == 1, "{err}");
    }
    assert_eq!(story_of(&pg, &split_item), split_to);
    assert_eq!(story_of(&sqlite, &split_item), split_to);

    // The digest (stories once per rule section, "also reported by") and the Atom / JSON
    // Feed export (one entry per story) from the same state.
    let (want, got) = both(
        &sqlite,
        &pg,
        &["digest", "--since", "30d", "--format", "json"],
    );
    assert!(want["total"].as_u64().unwrap_or(0) >= 1, "{want}");
    assert_eq!(timeless(want), timeless(got));
    let (want, got) = both(&sqlite, &pg, &["export", "--format", "json"]);
    let entries = |v: &Value| -> Vec<(Value, Value, Value, Value)> {
        v["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|i| {
                (
                    i["title"].clone(),
                    i["url"].clone(),
                    i["_newswatch"]["story"].clone(),
                    i["_newswatch"]["feeds"].clone(),
                )
            })
            .collect()
    };
    assert!(!entries(&want).is_empty());
    assert_eq!(entries(&want), entries(&got));
    let (code, out, err) = pg.run(&["export", "--format", "atom"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("<feed xmlns=\"http://www.w3.org/2005/Atom\""),
        "{out}"
    );

    // Two web servers on one PostgreSQL database: a change through one is seen by the other.
    let one = Web::start(&pg, &["serve", "--listen", "127.0.0.1:0"]);
    let two = Web::start(&pg, &["serve", "--listen", "127.0.0.1:0"]);
    for w in [&one, &two] {
        let h = get(&w.addr, "/healthz");
        assert_eq!(h.status, 200, "{}", h.body);
        assert_eq!(h.json()["database"], "writable");
    }
    let listed = get(&one.addr, "/api/v1/matches?limit=500");
    assert_eq!(listed.status, 200, "{}", listed.body);
    let ids: Vec<i64> = listed.json()["matches"]
        .as_array()
        .expect("matches")
        .iter()
        .map(|m| m["id"].as_i64().expect("id"))
        .collect();
    let query_ids: Vec<i64> = pg
        .query_json(&["--limit", "500"])
        .iter()
        .map(|m| m["id"].as_i64().expect("id"))
        .collect();
    assert_eq!(
        ids, query_ids,
        "the API lists what `query` lists, in its order"
    );
    // Prune: unmatched archived entries past `[archive] keep` go, in the same counts on both
    // backends; matches stay (kept forever by default). The archive's times are moved back
    // by hand (the entries were polled just now).
    let old = "UPDATE archive SET first_seen_at = '2000-01-01T00:00:00.000Z'";
    rusqlite::Connection::open(sqlite.path("data/news.db"))
        .expect("open")
        .execute_batch(old)
        .expect("age sqlite archive");
    db.connect()
        .client()
        .batch_execute(old)
        .expect("age pg archive");
    // The report without its cut-off time (each run computes its own "now").
    let line = |p: &Project, args: &[&str]| -> String {
        let (code, out, err) = p.run(args);
        assert_eq!(code, 0, "{args:?}: {err}");
        let (head, rest) = out.split_once(" before ").expect("a cut-off time");
        let (_, tail) = rest.split_once(',').expect("the matches' count");
        format!("{head}{tail}")
    };
    let dry = line(&pg, &["prune", "--dry-run"]);
    assert_eq!(line(&sqlite, &["prune", "--dry-run"]), dry);
    assert!(
        dry.contains("would remove") && !dry.contains("remove 0 "),
        "{dry}"
    );
    let archived_before = db.count("archive");
    assert_eq!(line(&sqlite, &["prune"]), line(&pg, &["prune"]));
    let left = db.count("archive");
    assert!(left < archived_before, "{left} of {archived_before}");
    assert_eq!(
        left,
        db.count("archive WHERE item_id IS NOT NULL"),
        "only matched entries stay"
    );
    assert_eq!(
        db.count("archive_fts") + db.count("archive_pending"),
        left,
        "their index rows went with them"
    );
    let (want, got) = both(&sqlite, &pg, &all);
    assert_eq!(timeless(want), timeless(got));
    assert_eq!(
        pg.query_json(&["--limit", "500"]).len(),
        ids.len(),
        "matches are kept"
    );

    let other = ids
        .iter()
        .copied()
        .find(|&i| i != id)
        .expect("another match");
    let set = request(
        &one.addr,
        "POST",
        &format!("/api/v1/matches/{other}/status"),
        &[("Content-Type", "application/json")],
        br#"{"status":"dismissed"}"#,
    );
    assert_eq!(set.status, 200, "{}", set.body);
    let seen = get(&two.addr, &format!("/api/v1/matches/{other}"));
    assert_eq!(seen.status, 200, "{}", seen.body);
    assert_eq!(seen.json()["status"], "dismissed");
    let (_, out, _) = pg.run(&["show", &other.to_string(), "--format", "json"]);
    assert!(out.contains("\"status\": \"dismissed\""), "{out}");
    let page = get(&two.addr, "/");
    assert_eq!(page.status, 200);
    let title = rows[0]["title"].as_str().expect("title");
    let escaped = title
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    assert!(
        page.body.contains(&escaped),
        "the review page lists {title:?}"
    );
    let metrics = get(&one.addr, "/metrics");
    assert_eq!(metrics.status, 200);
    let with_rule = rows
        .iter()
        .filter(|r| {
            r["rules"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x == rule.as_str()))
        })
        .count();
    assert!(
        metrics
            .body
            .contains(&format!("newswatch_matches{{rule=\"{rule}\"}} {with_rule}")),
        "{}",
        metrics.body
    );
    // The archive's search over the API, as `newswatch search` gives it.
    let search = get(
        &one.addr,
        &format!("/api/v1/search?q={title_word}&limit=100"),
    );
    assert_eq!(search.status, 200, "{}", search.body);
    let api_hits = search.json()["hits"].as_array().expect("hits").len();
    let (code, out, err) = pg.run(&["search", "--format", "json", "--limit", "100", &title_word]);
    assert_eq!(code, 0, "{err}");
    let cli: Value = serde_json::from_str(&out).expect("json");
    assert!(api_hits >= 1);
    assert_eq!(api_hits, cli.as_array().expect("array").len());
}

#[test]
fn pg_a_worker_serves_the_web_and_reports_its_loop() {
    let Some(db) = TestDb::create("workerweb") else {
        return;
    };
    let server = TestServer::start();
    serve_fixtures(&server);
    let base = config(&server).replace("path = \"data/news.db\"", &format!("url = \"{}\"", db.url));
    let project = Project::new(&format!(
        "{base}\n[schedule]\npoll = \"*/2 * * * * *\"\n\n[web]\nlisten = \"127.0.0.1:0\"\n"
    ));
    let web = Web::start(&project, &["run"]);
    let mut feeds = Value::Null;
    crate::support::wait_until(
        "the worker's first poll, seen through its web API",
        std::time::Duration::from_secs(30),
        || {
            feeds = get(&web.addr, "/api/v1/feeds").json();
            feeds["feeds"].as_array().is_some_and(|fs| {
                fs.iter()
                    .any(|f| f["name"] == "uknews" && f["last_worker"].is_string())
            })
        },
    );
    let h = get(&web.addr, "/healthz");
    assert_eq!(h.status, 200, "{}", h.body);
    let h = h.json();
    assert_eq!(h["mode"], "run");
    assert_eq!(h["scheduler"], "alive");
    assert_eq!(h["database"], "writable");
    let listed = get(&web.addr, "/api/v1/matches");
    assert_eq!(listed.status, 200);
    assert!(
        !listed.json()["matches"]
            .as_array()
            .expect("matches")
            .is_empty(),
        "{}",
        listed.body
    );
    let metrics = get(&web.addr, "/metrics");
    assert_eq!(metrics.status, 200);
    let worker = feeds["feeds"]
        .as_array()
        .and_then(|fs| fs.iter().find(|f| f["name"] == "uknews"))
        .and_then(|f| f["last_worker"].as_str())
        .expect("uknews' worker")
        .to_string();
    assert!(
        metrics.body.contains(&format!(
            "newswatch_feed_last_worker{{feed=\"uknews\",worker=\"{worker}\"}} 1"
        )),
        "{}",
        metrics.body
    );
    let page = get(&web.addr, "/feeds");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("uknews"), "{}", page.body);
}

/// `line` of `backfill`'s report without the entry's first-seen time (each backend polled at
/// its own moment).
fn without_first_seen(line: &str) -> String {
    let Some(start) = line.find(" (first seen ") else {
        return line.to_string();
    };
    match line[start..].find(')') {
        Some(end) => format!("{}{}", &line[..start], &line[start + end + 1..]),
        None => line.to_string(),
    }
}

/// Run `args` (a `backfill`) on both projects: both succeed and report the same, but for the
/// first-seen times; the report's lines.
fn backfill_both(sqlite: &Project, pg: &Project, args: &[&str]) -> Vec<String> {
    let run = |p: &Project, which: &str| -> Vec<String> {
        let (code, out, err) = p.run(args);
        assert_eq!(code, 0, "{which} {args:?}: {err}");
        out.lines().map(without_first_seen).collect()
    };
    let want = run(sqlite, "sqlite");
    assert_eq!(want, run(pg, "postgres"), "{args:?}");
    want
}

/// The matches of `query --format json`, timeless, and the stories as groups of match ids (a
/// story's id aside).
fn matches_and_stories(sqlite: &Project, pg: &Project) -> (Value, Vec<Vec<i64>>) {
    let (want, got) = both(
        sqlite,
        pg,
        &["query", "--format", "json", "--limit", "1000"],
    );
    let groups = |v: &Value| -> Vec<Vec<i64>> {
        let mut by_story: std::collections::BTreeMap<i64, Vec<i64>> = Default::default();
        for r in v.as_array().expect("array") {
            by_story
                .entry(r["story"].as_i64().expect("story"))
                .or_default()
                .push(r["id"].as_i64().expect("id"));
        }
        let mut groups: Vec<Vec<i64>> = by_story
            .into_values()
            .map(|mut g| {
                g.sort_unstable();
                g
            })
            .collect();
        groups.sort();
        groups
    };
    assert_eq!(groups(&want), groups(&got), "the same stories");
    let stories = groups(&want);
    let want = timeless(want);
    assert_eq!(want, timeless(got));
    (want, stories)
}

#[test]
fn pg_backfill_adds_what_it_adds_on_sqlite() {
    let Some(db) = TestDb::create("backfill") else {
        return;
    };
    let server = TestServer::start();
    serve_fixtures(&server);
    let base = format!("{}{SEQUENTIAL}", config(&server));
    let on_pg = |c: &str| c.replace("path = \"data/news.db\"", &format!("url = \"{}\"", db.url));
    let sqlite = Project::new(&base);
    let pg = Project::new(&on_pg(&base));
    for p in [&sqlite, &pg] {
        let (code, _, err) = p.run(&["poll"]);
        assert!(code == 0 || code == 1, "{err}");
    }
    let (polled, _) = matches_and_stories(&sqlite, &pg);
    let polled = polled.as_array().expect("array").len();
    let configure = |extra: &str| {
        sqlite.write_config(&format!("{base}{extra}"));
        pg.write_config(&on_pg(&format!("{base}{extra}")));
    };

    // Rules written after the poll: an entry stored for other rules gains the new one (once,
    // though two feeds carry it), unmatched entries become new matches.
    let rules = "
[[rules]]
name = \"extra\"
query = 'weekend OR Rust OR \"dark web\" OR schools'

[[rules]]
name = \"college\"
query = 'basketball'
";
    configure(rules);
    let dry = backfill_both(&sqlite, &pg, &["backfill", "--dry-run"]);
    for want in [
        "would add: extra [uknews] Weather: a wet weekend ahead",
        "would add: extra [blog] Why we rewrote it in Rust",
        "would add: extra [security] GCHQ opens its doors to schools",
        "would add: college [uknews] NCAA brackets: the upsets nobody saw coming",
    ] {
        assert!(dry.iter().any(|l| l == want), "{want:?} in {dry:?}");
    }
    assert_eq!(
        dry.last().map(String::as_str),
        Some(
            "backfill (dry run): would add 6 entries (0 new matches), 0 stored matches no longer match their rule"
        ),
        "{dry:?}"
    );
    let (after_dry, _) = matches_and_stories(&sqlite, &pg);
    assert_eq!(
        after_dry.as_array().expect("array").len(),
        polled,
        "--dry-run writes nothing"
    );

    let added = backfill_both(&sqlite, &pg, &["backfill"]);
    assert_eq!(
        added.last().map(String::as_str),
        Some(
            "backfill: added 5 entries (3 new matches), 0 stored matches no longer match their rule"
        ),
        "{added:?}"
    );
    assert_eq!(
        added
            .iter()
            .filter(|l| l.contains("NCA arrests suspects"))
            .count(),
        1,
        "one stored match of two feeds gains the rule once: {added:?}"
    );
    assert!(
        added
            .iter()
            .all(|l| l.starts_with("backfill") || l.contains(" as match ")),
        "{added:?}"
    );
    let (rows, stories) = matches_and_stories(&sqlite, &pg);
    let rows = rows.as_array().expect("array").clone();
    assert_eq!(rows.len(), polled + 3);
    assert!(stories.len() > 1, "{stories:?}");
    let with_rule = |rule: &str| -> Vec<String> {
        let mut titles: Vec<String> = rows
            .iter()
            .filter(|r| {
                r["rules"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|x| x == rule))
            })
            .map(|r| r["title"].as_str().expect("title").to_string())
            .collect();
        titles.sort();
        titles
    };
    assert_eq!(
        with_rule("extra"),
        [
            "GCHQ opens its doors to schools",
            "NCA arrests suspects in dark web drugs probe",
            "Weather: a wet weekend ahead",
            "Why we rewrote it in Rust",
        ]
    );
    let (want, got) = both(&sqlite, &pg, &["query", "--stories", "--format", "json"]);
    assert_eq!(timeless(want), timeless(got));
    // Backfilled matches are marked so, first seen when their entries were, and linked to
    // their sightings and archived rows, on both.
    let sqlite_count = |rows: &str| -> i64 {
        rusqlite::Connection::open(sqlite.path("data/news.db"))
            .expect("open")
            .query_row(&format!("SELECT count(*) FROM {rows}"), [], |r| r.get(0))
            .expect("count")
    };
    for rows in [
        "items WHERE backfilled = 1",
        "items i JOIN archive a ON a.item_id = i.id WHERE i.backfilled = 1 AND i.first_seen_at = a.first_seen_at",
        "sightings WHERE item_id IS NULL",
        "archive WHERE item_id IS NULL",
        "item_rules",
    ] {
        assert_eq!(sqlite_count(rows), db.count(rows), "{rows}");
    }
    assert_eq!(db.count("items WHERE backfilled = 1"), 3);
    assert_eq!(
        db.count("items i JOIN archive a ON a.item_id = i.id WHERE i.backfilled = 1 AND i.first_seen_at = a.first_seen_at"),
        3
    );
    assert_eq!(
        db.count("rule_versions WHERE rule IN ('extra', 'college') AND backfilled_at IS NOT NULL"),
        2
    );

    // Twice adds nothing.
    let again = backfill_both(&sqlite, &pg, &["backfill"]);
    assert_eq!(
        again,
        ["backfill: added 0 entries (0 new matches), 0 stored matches no longer match their rule"]
    );

    // `--alert`: a rule backfilled with it enqueues its stories' alerts, the same on both.
    // (Enqueued only: nothing is delivered before the next poll.)
    let alerts = "
[[rules]]
name = \"children\"
query = 'copii'

[[alerts]]
name = \"desk\"
command = [\"true\"]
";
    configure(&format!("{rules}{alerts}"));
    let alerted = backfill_both(&sqlite, &pg, &["backfill", "--rule", "children", "--alert"]);
    assert!(
        alerted
            .iter()
            .any(|l| l.starts_with("added: children [agency] Un joc nou pentru copii as match ")),
        "{alerted:?}"
    );
    let outbox = |p: &Project| -> Vec<(Value, Value, Value, Value)> {
        let (code, out, err) = p.run(&["alerts", "list", "--format", "json"]);
        assert_eq!(code, 0, "{err}");
        let v: Value = serde_json::from_str(&out).expect("json");
        v.as_array()
            .expect("array")
            .iter()
            .map(|r| {
                (
                    r["alert"].clone(),
                    r["title"].clone(),
                    r["kind"].clone(),
                    r["state"].clone(),
                )
            })
            .collect()
    };
    let queued = outbox(&sqlite);
    assert!(
        queued.iter().any(|q| q.1 == "Un joc nou pentru copii"),
        "{queued:?}"
    );
    assert_eq!(queued, outbox(&pg));
    matches_and_stories(&sqlite, &pg);

    // An edited rule: what it no longer matches is listed (by match id), never removed.
    configure(&rules.replace("weekend OR ", ""));
    let edited = backfill_both(&sqlite, &pg, &["backfill", "--rule", "extra", "--dry-run"]);
    assert!(
        edited
            .iter()
            .any(|l| l.starts_with("no longer matches: extra match ")
                && l.ends_with(" Weather: a wet weekend ahead")),
        "{edited:?}"
    );
    assert!(
        edited
            .last()
            .is_some_and(|l| l.ends_with("1 stored match no longer matches their rule")),
        "{edited:?}"
    );
    let edited = backfill_both(&sqlite, &pg, &["backfill", "--rule", "extra"]);
    assert!(
        edited
            .last()
            .is_some_and(|l| l.starts_with("backfill: added 0 entries")),
        "{edited:?}"
    );
    let (after, _) = matches_and_stories(&sqlite, &pg);
    assert_eq!(after.as_array().expect("array").len(), polled + 4);
}
