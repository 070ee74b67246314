//! The archive (issue 14) through the real binary: every polled entry is searchable with the
//! rule language, rules written later reach the past with `backfill`, retention prunes, and a
//! damaged index is named and rebuilt. Plus the property that `search` agrees exactly with the
//! matcher applied to every entry (corpus entries, random queries).

use std::collections::BTreeSet;

use serde_json::Value;

use crate::support::server::{Route, TestServer};
use crate::support::{Project, corpus_dir};

fn rss(items: &[(&str, &str, &str)]) -> String {
    let mut s = String::from(
        "<?xml version=\"1.0\"?><rss version=\"2.0\"><channel><title>t</title><link>https://site.example/</link>",
    );
    for (id, title, text) in items {
        s.push_str(&format!(
            "<item><guid isPermaLink=\"false\">{id}</guid><link>https://site.example/{id}</link><title>{title}</title><description>{text}</description></item>"
        ));
    }
    s.push_str("</channel></rss>");
    s
}

const ITEMS: &[(&str, &str, &str)] = &[
    (
        "a1",
        "NCA arrests six",
        "The National Crime Agency said six were held.",
    ),
    (
        "a2",
        "NCAA brackets announced",
        "College basketball fans cheer the upsets.",
    ),
    (
        "a3",
        "Joc nou la Bucuresti",
        "Un joc de fotbal si un joc de carti pentru copii.",
    ),
    (
        "a4",
        "JOC marks a year",
        "The Joint Operations Cell (JOC) of GCHQ and the NCA.",
    ),
    (
        "a5",
        "Weather: a wet weekend ahead",
        "Rain for most of the country, says the forecaster.",
    ),
    (
        "a6",
        "Operation Tangerine update",
        "Officers named the operation after the fruit.",
    ),
];

fn project(server: &TestServer, rules: &str) -> Project {
    Project::new(&format!(
        r#"
[storage]
path = "news.db"

[[feeds]]
name = "wire"
url = "{url}"
{rules}"#,
        url = server.url("/feed.rss"),
    ))
}

const NCA_RULE: &str = r#"
[[rules]]
name = "nca"
query = 'NCA OR "National Crime Agency"'
"#;

fn served() -> TestServer {
    let server = TestServer::start();
    server.route("/feed.rss", Route::ok("application/rss+xml", rss(ITEMS)));
    server
}

fn search(p: &Project, expr: &str) -> Vec<Value> {
    let (code, out, err) = p.run(&["search", expr, "--format", "json"]);
    assert_eq!(code, 0, "search {expr}: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("search output is not JSON ({e}): {out}"))
}

fn titles(rows: &[Value]) -> BTreeSet<String> {
    rows.iter()
        .filter_map(|r| r["title"].as_str().map(String::from))
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn search_finds_a_term_in_an_entry_that_matched_no_rule() {
    let server = served();
    let p = project(&server, NCA_RULE);
    assert_eq!(p.run(&["poll"]).0, 0);
    let rows = search(&p, "weekend");
    assert_eq!(titles(&rows), set(&["Weather: a wet weekend ahead"]));
    let row = &rows[0];
    assert_eq!(row["feed"], "wire");
    assert_eq!(row["link"], "https://site.example/a5");
    assert!(row["match"].is_null(), "not a stored match: {row}");
    assert!(row["snippet"].as_str().is_some_and(|s| s.contains("Rain")));
    // A matched entry says which stored match it is.
    let rows = search(&p, "\"National Crime Agency\"");
    assert_eq!(titles(&rows), set(&["NCA arrests six"]));
    assert!(rows[0]["match"].as_i64().is_some(), "{}", rows[0]);
    // `stats` reports the archive.
    let (code, out, _) = p.run(&["stats", "--format", "json"]);
    assert_eq!(code, 0);
    let stats: Value = serde_json::from_str(&out).expect("stats json");
    assert_eq!(stats["archive"]["entries"], ITEMS.len(), "{stats}");
    assert_eq!(
        stats["archive"]["unindexed"], 0,
        "searching indexed everything: {stats}"
    );
    assert!(
        stats["archive"]["bytes"].as_u64().is_some_and(|b| b > 0),
        "{stats}"
    );
    let (code, out, _) = p.run(&["stats"]);
    assert_eq!(code, 0);
    assert!(out.contains("archive: 6 entries since"), "{out}");
    // Table output is the default and lists the entry.
    let (code, out, _) = p.run(&["search", "title:weather"]);
    assert_eq!(code, 0);
    assert!(out.contains("Weather: a wet weekend ahead"), "{out}");
}

#[test]
fn search_nca_never_finds_ncaa_and_joc_never_the_romanian_joc() {
    let server = served();
    let p = project(&server, NCA_RULE);
    assert_eq!(p.run(&["poll"]).0, 0);
    assert_eq!(
        titles(&search(&p, "NCA")),
        set(&["NCA arrests six", "JOC marks a year"])
    );
    assert_eq!(titles(&search(&p, "JOC")), set(&["JOC marks a year"]));
    // Lower case is an ordinary word: case and accents ignored.
    assert!(titles(&search(&p, "joc")).contains("Joc nou la Bucuresti"));
    assert_eq!(titles(&search(&p, "NCA -GCHQ")), set(&["NCA arrests six"]));
    // Proximity: "of GCHQ and the NCA" is 3 positions apart.
    assert_eq!(
        titles(&search(&p, "GCHQ NEAR/3 NCA")),
        set(&["JOC marks a year"])
    );
    assert!(search(&p, "GCHQ NEAR/2 NCA").is_empty());
    assert_eq!(
        titles(&search(&p, "oper*")),
        set(&["Operation Tangerine update", "JOC marks a year"])
    );
}

#[test]
fn search_input_never_reaches_fts_syntax() {
    let server = served();
    let p = project(&server, NCA_RULE);
    assert_eq!(p.run(&["poll"]).0, 0);
    // FTS5 operators, column filters and quotes are just words (or rule-language errors).
    for expr in [
        "title:weekend OR NEAR(rain country)",
        "rain + country",
        "{title body}: rain",
        "^rain",
        "rain\"\"",
        "body:rain",
        "rain * country",
        "\"\"\"rain\"",
    ] {
        let (code, _, err) = p.run(&["search", expr, "--format", "json"]);
        assert!(
            code == 0 || (code == 2 && err.lines().count() == 1),
            "{expr:?}: exit {code}: {err}"
        );
        assert!(!err.contains("fts5"), "{expr:?}: {err}");
    }
}

#[test]
fn a_rule_added_later_finds_nothing_until_backfill_which_stores_each_match_once() {
    let server = served();
    let p = project(&server, NCA_RULE);
    assert_eq!(p.run(&["poll"]).0, 0);
    let with_weather =
        format!("{NCA_RULE}\n[[rules]]\nname = \"weather\"\nquery = 'weekend OR forecaster'\n");
    p.write_config(&format!(
        "[storage]\npath = \"news.db\"\n\n[[feeds]]\nname = \"wire\"\nurl = \"{}\"\n{with_weather}",
        server.url("/feed.rss")
    ));
    assert!(
        p.query_json(&["--rule", "weather"]).is_empty(),
        "not before backfill"
    );
    let before = p.query_json(&[]).len();

    let (code, out, err) = p.run(&["backfill", "--rule", "weather", "--dry-run"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("would add: weather [wire] Weather: a wet weekend ahead"),
        "{out}"
    );
    assert!(out.contains("(dry run)"), "{out}");
    assert!(
        p.query_json(&["--rule", "weather"]).is_empty(),
        "--dry-run writes nothing"
    );
    assert_eq!(p.query_json(&[]).len(), before);

    let (code, out, err) = p.run(&["backfill", "--rule", "weather"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("added 1 entry (1 new matches)"), "{out}");
    let found = p.query_json(&["--rule", "weather"]);
    assert_eq!(titles(&found), set(&["Weather: a wet weekend ahead"]));
    // Stored with the entry's own first-seen time, and findable by search as a match.
    let hit = search(&p, "forecaster");
    assert_eq!(
        hit[0]["first_seen"], found[0]["first_seen"],
        "{hit:?} {found:?}"
    );
    assert_eq!(hit[0]["match"], found[0]["id"]);

    let (code, out, _) = p.run(&["backfill", "--rule", "weather"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("added 0 entries"),
        "running it twice adds nothing: {out}"
    );
    assert_eq!(p.query_json(&["--rule", "weather"]).len(), 1);

    // An edited rule: what it would no longer match is listed, never removed.
    p.write_config(&format!(
        "[storage]\npath = \"news.db\"\n\n[[feeds]]\nname = \"wire\"\nurl = \"{}\"\n{NCA_RULE}\n[[rules]]\nname = \"weather\"\nquery = 'snow'\n",
        server.url("/feed.rss")
    ));
    let (code, out, _) = p.run(&["backfill", "--rule", "weather", "--dry-run"]);
    assert_eq!(code, 0);
    assert!(out.contains("no longer matches: weather"), "{out}");
    assert_eq!(p.query_json(&["--rule", "weather"]).len(), 1);

    let (code, _, err) = p.run(&["backfill", "--rule", "nosuch"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("nosuch") && err.contains("known rules: nca, weather"),
        "{err}"
    );
}

fn sql(p: &Project, statement: &str) {
    p.exec(statement);
}

fn count(p: &Project, query: &str) -> i64 {
    p.int(query)
}

#[test]
fn prune_removes_old_unmatched_entries_and_keeps_matches_and_starred_items() {
    let server = served();
    let p = project(&server, NCA_RULE);
    assert_eq!(p.run(&["poll"]).0, 0);
    assert_eq!(
        count(&p, "SELECT count(*) FROM archive"),
        ITEMS.len() as i64
    );
    let matches = p.query_json(&[]);
    assert_eq!(matches.len(), 2, "{matches:?}");
    // Age everything by two months (the clock we control is the stored one).
    sql(
        &p,
        "UPDATE archive SET first_seen_at = '2015-11-09T10:00:00.000Z';
         UPDATE items SET first_seen_at = '2015-11-09T10:00:00.000Z';",
    );
    let (code, out, _) = p.run(&["prune", "--dry-run"]);
    assert_eq!(code, 0);
    assert!(out.contains("would remove 4 archived entries"), "{out}");
    assert_eq!(
        count(&p, "SELECT count(*) FROM archive"),
        6,
        "dry run deletes nothing"
    );

    let (code, out, err) = p.run(&["prune"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("removed 4 archived entries"), "{out}");
    assert_eq!(
        count(&p, "SELECT count(*) FROM archive"),
        2,
        "matched entries stay"
    );
    assert_eq!(
        p.query_json(&[]).len(),
        2,
        "matches are kept (keep_matches: forever)"
    );
    assert!(search(&p, "weekend").is_empty());
    assert_eq!(titles(&search(&p, "NCA")).len(), 2);

    // With keep_matches, old matches go too, except starred ones.
    let id = matches[0]["id"].to_string();
    assert_eq!(p.run(&["mark", &id, "--star"]).0, 0);
    p.write_config(&format!(
        "[storage]\npath = \"news.db\"\nkeep_matches = \"365d\"\n\n[[feeds]]\nname = \"wire\"\nurl = \"{}\"\n{NCA_RULE}",
        server.url("/feed.rss")
    ));
    let (code, out, err) = p.run(&["prune"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("1 matches"), "{out}");
    let left = p.query_json(&[]);
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["id"], matches[0]["id"], "the starred match is kept");
}

#[test]
fn a_damaged_index_is_named_and_archive_rebuild_repairs_it() {
    if crate::support::sqlite_only(
        "damage to the FTS5 index (PostgreSQL keeps its tsvector index in the same transaction)",
    ) {
        return;
    }
    let server = served();
    let p = project(&server, NCA_RULE);
    assert_eq!(p.run(&["poll"]).0, 0);
    assert_eq!(
        search(&p, "weekend").len(),
        1,
        "indexed by the first search"
    );
    // FTS5 detects a missing structure record; some other damage only makes it find less,
    // which is what `archive rebuild` is for.
    sql(&p, "DELETE FROM archive_fts_data;");
    let (code, _, err) = p.run(&["search", "weekend"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("archive_fts") && err.contains("newswatch archive rebuild"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    let (code, out, err) = p.run(&["archive", "rebuild"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("indexed 6 entries"), "{out}");
    assert_eq!(
        titles(&search(&p, "weekend")),
        set(&["Weather: a wet weekend ahead"])
    );
}

#[test]
fn an_archive_turned_off_keeps_nothing_new() {
    let server = served();
    let p = project(&server, &format!("{NCA_RULE}\n[archive]\nkeep = \"0\"\n"));
    assert_eq!(p.run(&["poll"]).0, 0);
    assert_eq!(count(&p, "SELECT count(*) FROM archive"), 0);
    assert_eq!(p.query_json(&[]).len(), 2, "matches are still stored");
    // `check` says so, with the other storage settings.
    let (code, out, _) = p.run(&["check"]);
    assert_eq!(code, 0);
    assert!(out.contains("archive     off"), "{out}");
    assert!(
        out.contains("stories     window 3days, threshold 0.22"),
        "{out}"
    );
    assert!(out.contains("matches     kept forever"), "{out}");
}

#[test]
fn an_edited_entry_is_updated_in_the_archive_not_duplicated() {
    let server = served();
    let p = project(&server, NCA_RULE);
    assert_eq!(p.run(&["poll"]).0, 0);
    assert_eq!(search(&p, "weekend").len(), 1);
    let mut edited: Vec<(&str, &str, &str)> = ITEMS.to_vec();
    edited[4] = (
        "a5",
        "Weather: a dry weekend after all",
        "Sunshine everywhere.",
    );
    server.route("/feed.rss", Route::ok("application/rss+xml", rss(&edited)));
    assert_eq!(p.run(&["poll"]).0, 0);
    assert_eq!(
        count(&p, "SELECT count(*) FROM archive"),
        ITEMS.len() as i64
    );
    assert_eq!(
        titles(&search(&p, "weekend")),
        set(&["Weather: a dry weekend after all"])
    );
    assert!(
        search(&p, "forecaster").is_empty(),
        "the old text is gone from the index"
    );
}

// ---------------------------------------------------------------------------------------------
// Property: search == the matcher over every archived entry.

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

#[test]
fn search_agrees_with_the_matcher_on_every_corpus_entry_for_random_queries() {
    use newswatch::pipeline::matcher::{Matcher, Query, item_body};
    use newswatch::pipeline::normalise::tokenize;
    use newswatch::store::archive::SearchFilter;
    use newswatch::store::{FetchFacts, Store};

    let Some(corpus) = corpus_dir() else {
        eprintln!("SKIPPED: search/matcher agreement over the corpus (NEWSWATCH_CORPUS unset)");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = Store::open(&dir.path().join("a.db")).expect("open");
    let mut files: Vec<_> = std::fs::read_dir(corpus.join("real"))
        .expect("corpus/real")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    let files: Vec<_> = files.into_iter().take(120).collect();
    let names: Vec<String> = (0..files.len()).map(|i| format!("f{i}")).collect();
    store
        .sync_feeds(names.iter().map(|n| (n.as_str(), "http://corpus.invalid/")))
        .expect("sync");
    let never = Matcher::new(vec![(
        "none".into(),
        Query::parse("zzzqqqxxnevermatches").expect("query"),
    )]);
    let mut words: Vec<String> = Vec::new();
    for (i, path) in files.iter().enumerate() {
        let Ok(bytes) = std::fs::read(path) else {
            continue;
        };
        let Ok(parsed) = newswatch::pipeline::parse::parse_feed(&bytes, None, None) else {
            continue;
        };
        let records = newswatch::service::poll::process_entries(
            &never,
            &parsed.entries,
            &Default::default(),
            None,
        );
        for r in &records {
            for t in tokenize(&r.text.title)
                .iter()
                .chain(tokenize(&r.text.summary).iter())
            {
                if words.len() < 20_000 && t.text.chars().count() > 2 {
                    words.push(t.text.to_string());
                }
            }
        }
        let id = store
            .feed_state(&names[i])
            .expect("state")
            .expect("feed")
            .id;
        store
            .commit_feed(id, &FetchFacts::default(), &records, chrono::Utc::now())
            .expect("commit");
    }
    // Index half, so both the index and the unindexed tail are exercised.
    let total: i64 = store.archive_stats().expect("stats").entries as i64;
    assert!(total > 1_000, "enough corpus entries: {total}");
    store.index_archive(total as usize / 2).expect("index");
    let conn = rusqlite::Connection::open(dir.path().join("a.db")).expect("open");
    let all: Vec<(i64, String, String, String)> = conn
        .prepare("SELECT id, title, summary, content FROM archive")
        .expect("prepare")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .expect("query")
        .map(|r| r.expect("row"))
        .collect();

    // The same archive in PostgreSQL (copied with `newswatch migrate`, ids and all), when a
    // server is configured: its search must agree too.
    let pg_db = crate::support::pg::TestDb::create("searchprop");
    let mut pg = pg_db.as_ref().map(|db| {
        let from = dir.path().join("a.db");
        let out = crate::support::bin()
            .args([
                "migrate",
                "--from",
                from.to_str().expect("path"),
                "--to",
                &db.url,
            ])
            .output()
            .expect("migrate");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        newswatch::store::sql::AnyDb::postgres(&db.url, None).expect("connect")
    });
    let mut rng = Rng(0x00c0_ffee_1234_5678);
    let word = |rng: &mut Rng| -> String {
        let w = words[rng.below(words.len())].clone();
        match rng.below(6) {
            0 => w.to_uppercase(),
            1 => format!("{}*", w.chars().take(3).collect::<String>()),
            _ => w.to_lowercase(),
        }
    };
    let mut agreed = 0;
    for case in 0..100 {
        let a = word(&mut rng);
        let b = word(&mut rng);
        let expr = match rng.below(9) {
            7 => format!(
                "{} NEAR/{} {}",
                a.trim_end_matches('*'),
                1 + rng.below(8),
                b.trim_end_matches('*')
            ),
            8 => format!("title:({a} NEAR/3 {b}) OR {b}"),
            0 => a.clone(),
            1 => format!("{a} OR {b}"),
            2 => format!("{a} {b}"),
            3 => format!("{a} -{b}"),
            4 => format!("title:{a} OR {b}"),
            5 => format!(
                "\"{} {}\"",
                a.trim_end_matches('*'),
                b.trim_end_matches('*')
            ),
            _ => format!("({a} OR {b}) NOT title:{a}"),
        };
        let Ok(q) = Query::parse(&expr) else { continue };
        let matcher = Matcher::new(vec![("q".into(), q.clone())]);
        let expected: BTreeSet<i64> = all
            .iter()
            .filter(|(_, t, s, c)| matcher.match_item(t, &item_body(s, c)).is_some())
            .map(|(id, ..)| *id)
            .collect();
        let got: BTreeSet<i64> = store
            .search_archive(&q, &SearchFilter::default())
            .expect("search")
            .hits
            .iter()
            .map(|h| h.row.id)
            .collect();
        assert_eq!(got, expected, "case {case}: {expr:?}");
        if let Some(pg) = pg.as_mut() {
            let got: BTreeSet<i64> =
                newswatch::store::archive::search_archive(pg, &q, &SearchFilter::default())
                    .expect("search on PostgreSQL")
                    .hits
                    .iter()
                    .map(|h| h.row.id)
                    .collect();
            assert_eq!(got, expected, "PostgreSQL, case {case}: {expr:?}");
        }
        agreed += 1;
    }
    eprintln!(
        "search == matcher for {agreed} random queries over {total} corpus entries ({})",
        if pg.is_some() {
            "SQLite and PostgreSQL"
        } else {
            "SQLite; PostgreSQL SKIPPED"
        }
    );
    assert!(agreed >= 60, "{agreed}");
}
