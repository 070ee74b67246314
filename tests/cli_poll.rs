//! End to end: the real binary polls fixture feeds from a loopback server, then `query` reads
//! the matches back — exact matches, no duplicates across feeds or polls, edits in place.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::support::server::{Route, TestServer};
use crate::support::{Project, fixture, fixture_bytes};

/// The seed rules, as the fixture feeds exercise them.
pub(crate) const RULES: &str = r#"
[[rules]]
name = "nca"
query = 'NCA OR "National Crime Agency"'

[[rules]]
name = "joc"
query = 'JOC OR "Joint Operations Cell"'

[[rules]]
name = "gchq"
query = 'GCHQ'

[[rules]]
name = "ipb"
query = '"Investigatory Powers Bill" OR "Investigatory Powers Act"'

[[rules]]
name = "darkweb"
query = '"dark web" OR "dark net" OR darknet'
"#;

/// Serve the fixture feeds (RSS 2.0, Atom, JSON Feed, ISO-8859-1, windows-1251, an HTML page).
pub(crate) fn serve_fixtures(server: &TestServer) {
    server.route(
        "/uk.rss",
        Route::cached(
            "application/rss+xml",
            fixture_bytes("uk-news.rss"),
            "\"uk-v1\"",
            "Mon, 09 Nov 2015 10:00:00 GMT",
        ),
    );
    server.route(
        "/security.atom",
        Route::ok("application/atom+xml", fixture_bytes("security.atom")),
    );
    server.route(
        "/blog.json",
        Route::ok("application/feed+json", fixture_bytes("blog.json")),
    );
    server.route(
        "/latin1.rss",
        Route::ok("application/rss+xml", fixture_bytes("latin1.rss")),
    );
    server.route(
        "/cp1251.rss",
        Route::ok(
            "text/xml; charset=windows-1251",
            fixture_bytes("cp1251.rss"),
        ),
    );
    server.route(
        "/error.html",
        Route::ok("text/html", "<!DOCTYPE html><html><head><title>Site maintenance</title></head><body>Back soon</body></html>"),
    );
}

/// A config over the fixture feeds (one of them a file:// RSS 1.0 feed, one a 404) and [`RULES`].
pub(crate) fn config(server: &TestServer) -> String {
    let agency = url::Url::from_file_path(fixture("agency.rdf")).expect("file url");
    format!(
        r#"
[storage]
path = "data/news.db"

[[feeds]]
name = "uknews"
url = "{uk}"

[[feeds]]
name = "security"
url = "{sec}"

[[feeds]]
name = "blog"
url = "{blog}"

[[feeds]]
name = "agency"
url = "{agency}"

[[feeds]]
name = "lemonde"
url = "{latin1}"

[[feeds]]
name = "cyrillic"
url = "{cp1251}"

[[feeds]]
name = "maintenance"
url = "{html}"

[[feeds]]
name = "gone"
url = "{missing}"
{RULES}"#,
        uk = server.url("/uk.rss"),
        sec = server.url("/security.atom"),
        blog = server.url("/blog.json"),
        latin1 = server.url("/latin1.rss"),
        cp1251 = server.url("/cp1251.rss"),
        html = server.url("/error.html"),
        missing = server.url("/missing.rss"),
    )
}

/// title → (rules, feeds)
fn by_title(rows: &[Value]) -> BTreeMap<String, (Vec<String>, Vec<String>)> {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .expect("array")
            .iter()
            .map(|s| s.as_str().expect("string").to_string())
            .collect()
    };
    let mut map = BTreeMap::new();
    for r in rows {
        let title = r["title"].as_str().expect("title").to_string();
        let prev = map.insert(title.clone(), (strings(&r["rules"]), strings(&r["feeds"])));
        assert!(prev.is_none(), "title stored twice: {title}");
    }
    map
}

#[test]
fn poll_then_query_gives_exactly_the_expected_matches() {
    let server = TestServer::start();
    serve_fixtures(&server);
    let project = Project::new(&config(&server));

    let (code, _out, err) = project.run(&["poll"]);
    assert_eq!(code, 0, "poll exits 0 even when some feeds fail: {err}");
    assert!(
        err.contains("8 feeds: 6 ok, 0 unchanged, 2 failed"),
        "summary line: {err}"
    );
    assert!(
        err.contains("failed: gone: HTTP 404"),
        "404 named with its feed: {err}"
    );
    assert!(
        err.contains("failed: maintenance:") && err.contains("HTML"),
        "HTML page named: {err}"
    );
    assert!(
        project.pg.is_some() || project.path("data/news.db").exists(),
        "database created relative to the config"
    );

    let rows = project.query_json(&[]);
    let got = by_title(&rows);
    let expect: BTreeMap<String, (Vec<String>, Vec<String>)> = [
        (
            "NCA arrests suspects in dark web drugs probe",
            vec!["darkweb", "nca"],
            vec!["security", "uknews"],
        ),
        ("MPs debate surveillance law", vec!["ipb"], vec!["uknews"]),
        (
            "GCHQ opens its doors to schools",
            vec!["gchq"],
            vec!["security"],
        ),
        (
            "Joint Operations Cell marks first year",
            vec!["gchq", "joc", "nca"],
            vec!["agency"],
        ),
        ("Inside the dark-net markets", vec!["darkweb"], vec!["blog"]),
        (
            "Théresa May et la National Crime Agency",
            vec!["nca"],
            vec!["lemonde"],
        ),
        ("НАСТРОЙКИ GCHQ", vec!["gchq"], vec!["cyrillic"]),
    ]
    .into_iter()
    .map(|(t, r, f)| {
        (
            t.to_string(),
            (
                r.into_iter().map(String::from).collect(),
                f.into_iter().map(String::from).collect(),
            ),
        )
    })
    .collect();
    assert_eq!(
        got, expect,
        "decoys (NCAA, Jockey, Romanian joc, weather) must not match"
    );

    // JSON contract fields.
    let nca = rows
        .iter()
        .find(|r| r["title"] == "NCA arrests suspects in dark web drugs probe")
        .expect("nca row");
    for field in [
        "id",
        "title",
        "link",
        "published",
        "first_seen",
        "feeds",
        "rules",
        "terms",
        "snippet",
    ] {
        assert!(nca.get(field).is_some(), "field {field} missing in {nca}");
    }
    assert_eq!(nca["published"], "2015-11-09T08:30:00.000Z");
    let terms: Vec<&str> = nca["terms"]
        .as_array()
        .expect("terms")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        terms.contains(&"NCA") && terms.contains(&"\"dark web\""),
        "terms: {terms:?}"
    );
    let russian = rows
        .iter()
        .find(|r| r["title"] == "НАСТРОЙКИ GCHQ")
        .expect("cp1251 row");
    assert!(
        russian["snippet"].as_str().unwrap_or("").contains("Привет"),
        "windows-1251 body decoded: {russian}"
    );

    // Newest first.
    let dates: Vec<String> = rows
        .iter()
        .map(|r| {
            r["published"]
                .as_str()
                .unwrap_or_else(|| r["first_seen"].as_str().unwrap_or(""))
                .to_string()
        })
        .collect();
    let mut sorted = dates.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(dates, sorted);

    // Filters.
    assert_eq!(project.query_json(&["--rule", "joc"]).len(), 1);
    assert_eq!(project.query_json(&["--feed", "security"]).len(), 2);
    // --since is first-seen time (all were first seen by this poll); --published-since is
    // the feeds' dates.
    assert_eq!(project.query_json(&["--since", "1h"]).len(), rows.len());
    assert_eq!(
        project
            .query_json(&["--published-since", "2015-11-08"])
            .len(),
        5
    );
    assert_eq!(project.query_json(&["--limit", "2"]).len(), 2);
    let expr = project.query_json(&["title:GCHQ"]);
    assert_eq!(expr.len(), 2, "EXPR filters on stored text: {expr:?}");

    // Second poll: one entry edited, one added; the rest unchanged or conditional.
    let edited = String::from_utf8(fixture_bytes("uk-news.rss"))
        .expect("utf8")
        .replace("MPs debate surveillance law", "MPs debate the surveillance law again")
        .replace(
            "<item>\n      <title>Weather",
            "<item>\n      <title>JOC exercise announced</title>\n      <link>https://uknews.example/joc-exercise</link>\n      <guid>uknews-1005</guid>\n    </item>\n    <item>\n      <title>Weather",
        );
    server.route(
        "/uk.rss",
        Route::cached(
            "application/rss+xml",
            edited,
            "\"uk-v2\"",
            "Tue, 10 Nov 2015 10:00:00 GMT",
        ),
    );
    let (code, _, err) = project.run(&["poll"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("1 new item, 1 new match"),
        "only the added entry is new: {err}"
    );
    let rows = project.query_json(&[]);
    let got = by_title(&rows);
    assert_eq!(
        rows.len(),
        8,
        "one new match, no duplicates: {:?}",
        got.keys()
    );
    assert!(
        got.contains_key("MPs debate the surveillance law again"),
        "edit updated in place"
    );
    assert!(!got.contains_key("MPs debate surveillance law"));
    assert_eq!(got["JOC exercise announced"].0, vec!["joc"]);
    let uk = server.requests("/uk.rss");
    assert_eq!(
        uk[1].header("if-none-match"),
        Some("\"uk-v1\""),
        "conditional GET sends the ETag"
    );

    // Third poll: the server answers 304 and nothing changes.
    let (code, _, err) = project.run(&["poll", "--feed", "uknews"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("1 feed: 0 ok, 1 unchanged, 0 failed; 0 new items, 0 new matches"),
        "{err}"
    );
    assert_eq!(project.query_json(&[]).len(), 8);
}

#[test]
fn query_formats_table_csv_ndjson() {
    let server = TestServer::start();
    serve_fixtures(&server);
    let project = Project::new(&config(&server));
    assert_eq!(project.run(&["poll"]).0, 0);

    let (code, table, _) = project.run(&["query", "--format", "table"]);
    assert_eq!(code, 0);
    assert!(table.starts_with("ID"), "{table}");
    assert!(
        table
            .lines()
            .all(|l| unicode_width::UnicodeWidthStr::width(l) <= 120),
        "fits COLUMNS=120:\n{table}"
    );
    assert!(table.contains("GCHQ opens its doors"));

    let (_, csv, _) = project.run(&["query", "--format", "csv"]);
    assert_eq!(csv.lines().count(), 8, "header + 7 rows: {csv}");
    let (_, nd, _) = project.run(&["query", "--format", "ndjson"]);
    assert_eq!(nd.lines().count(), 7);
    for line in nd.lines() {
        serde_json::from_str::<Value>(line).expect("each line is JSON");
    }
}

#[test]
fn bad_usage_and_bad_config_exit_2_with_one_line() {
    let project =
        Project::new("[[feeds]]\nname = \"a\"\nurl = \"http://127.0.0.1:9/\"\nbogus = 1\n");
    let (code, _, err) = project.run(&["poll"]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(
        err.contains("newswatch.toml:4:1") && err.contains("unknown field `bogus`"),
        "{err}"
    );

    let project = Project::new("");
    let (code, _, err) = project.run(&["query", "--since", "someday"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = project.run(&["query", "\"unclosed"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("column"), "{err}");
    let (code, _, err) = project.run(&["poll", "--feed", "nope"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no feed named \"nope\""), "{err}");
}

#[test]
fn check_prints_feeds_rules_and_schedules() {
    let project = Project::new(&format!(
        "[schedule]\npoll = \"0 9 * * 1-5\"\n[[feeds]]\nname = \"a\"\nurl = \"http://127.0.0.1:9/a\"\n{RULES}"
    ));
    let (code, out, err) = project.run(&["check"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("http://127.0.0.1:9/a"));
    assert!(out.contains("nca") && out.contains("National Crime Agency"));
    assert!(out.contains("0 9 * * 1-5"));
    assert!(out.contains("next:"));
    assert!(out.contains("config OK"));
}

#[test]
fn built_in_default_config_checks_without_setup() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = crate::support::bin()
        .current_dir(dir.path())
        .env("XDG_DATA_HOME", dir.path().join("xdg"))
        .env("HOME", dir.path())
        .arg("check")
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("<built-in default config>"), "{stdout}");
    assert!(
        stdout.contains("bbc-uk") && stdout.contains("joc"),
        "{stdout}"
    );
}

#[test]
fn permanent_redirect_is_remembered_and_shown() {
    let server = TestServer::start();
    server.route(
        "/old.rss",
        Route::status(301, vec![("Location", "/new.rss")], ""),
    );
    server.route(
        "/new.rss",
        Route::ok("application/rss+xml", fixture_bytes("uk-news.rss")),
    );
    let project = Project::new(&format!(
        "[[feeds]]\nname = \"moved\"\nurl = \"{}\"\n{RULES}",
        server.url("/old.rss")
    ));
    assert_eq!(project.run(&["poll"]).0, 0);
    assert_eq!(project.run(&["poll"]).0, 0);
    assert_eq!(
        server.hits("/old.rss"),
        1,
        "second poll goes straight to the new URL"
    );
    assert_eq!(server.hits("/new.rss"), 2);
    let (_, out, _) = project.run(&["feeds", "--format", "json"]);
    let feeds: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(feeds[0]["effective_url"], server.url("/new.rss"));
    let out = project
        .cmd(&["feeds"])
        .env("COLUMNS", "200")
        .output()
        .expect("feeds");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("moved permanently to"), "{table}");
}

#[test]
fn per_host_limit_bounds_simultaneous_requests() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let server = TestServer::start();
    let active = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let body = fixture_bytes("uk-news.rss");
    let mut feeds = String::new();
    for i in 0..6 {
        let (active, peak, body) = (active.clone(), peak.clone(), body.clone());
        server.route(
            &format!("/f{i}.rss"),
            Route::custom(move |_req, stream| {
                let now = active.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                // Hold the request open so overlapping fetches would be seen.
                std::thread::sleep(std::time::Duration::from_millis(150));
                active.fetch_sub(1, Ordering::SeqCst);
                crate::support::server::write_response(
                    stream,
                    200,
                    &[("Content-Type".into(), "application/rss+xml".into())],
                    &body,
                );
            }),
        );
        feeds.push_str(&format!(
            "[[feeds]]\nname = \"f{i}\"\nurl = \"{}\"\n",
            server.url(&format!("/f{i}.rss"))
        ));
    }
    let project = Project::new(&format!("[http]\nper_host = 2\n{feeds}{RULES}"));
    let (code, _, err) = project.run(&["poll"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("6 ok"), "{err}");
    assert_eq!(
        peak.load(Ordering::SeqCst),
        2,
        "at most 2 requests to one host at once, and the limit is used"
    );
}

#[test]
fn json_logs_are_one_object_per_line_with_the_feed_name() {
    let server = TestServer::start();
    serve_fixtures(&server);
    let project = Project::new(&format!(
        "[[feeds]]\nname = \"uknews\"\nurl = \"{}\"\n{RULES}",
        server.url("/uk.rss")
    ));
    let (code, _, err) = project.run(&["-v", "--log-format", "json", "poll"]);
    assert_eq!(code, 0, "{err}");
    let logs: Vec<Value> = err
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).expect("JSON log line"))
        .collect();
    let fetched = logs
        .iter()
        .find(|l| l["fields"]["message"] == "fetched")
        .expect("a fetch log line");
    assert_eq!(fetched["span"]["feed"], "uknews", "{fetched}");
    assert_eq!(fetched["fields"]["new_matches"], 2, "{fetched}");
    for key in ["duration_ms", "bytes", "new_items", "status"] {
        assert!(fetched["fields"].get(key).is_some(), "{key} in {fetched}");
    }
}
