//! Identity and merging defects of issue 12, through the real binary: which copy of a story
//! several outlets carry is kept, guids that identify nothing, a 304 that answers nothing, and
//! warnings that must name their feed.

use serde_json::Value;

use crate::support::server::{Route, TestServer};
use crate::support::{Project, fixture};

fn file_url(name: &str) -> String {
    url::Url::from_file_path(fixture(name))
        .expect("file url")
        .to_string()
}

/// The README's walkthrough: `uk` carries the original, `security` a syndicated one-liner
/// whose link (`#comments`, other case, http) canonicalises to the same URL.
fn readme_project() -> Project {
    Project::new(&format!(
        r#"
[storage]
path = "news.db"

[[feeds]]
name = "uk"
url = "{uk}"

[[feeds]]
name = "security"
url = "{sec}"

[[rules]]
name = "nca"
query = 'NCA OR "National Crime Agency"'

[[rules]]
name = "darkweb"
query = '"dark web" OR "dark net" OR darknet'
"#,
        uk = file_url("uk-news.rss"),
        sec = file_url("security.atom"),
    ))
}

fn the_shared_story(p: &Project, extra: &[&str]) -> Vec<Value> {
    p.query_json(extra)
        .into_iter()
        .filter(|r| r["title"] == "NCA arrests suspects in dark web drugs probe")
        .collect()
}

#[test]
fn merged_copies_keep_the_fullest_text_and_the_publishers_link_whatever_the_order() {
    for order in [["security", "uk"], ["uk", "security"]] {
        let p = readme_project();
        for feed in order {
            let (code, _, err) = p.run(&["poll", "--feed", feed]);
            assert_eq!(code, 0, "{err}");
        }
        let rows = the_shared_story(&p, &[]);
        assert_eq!(
            rows.len(),
            1,
            "one item for both copies ({order:?}): {rows:?}"
        );
        let row = &rows[0];
        assert_eq!(
            row["link"],
            "https://uknews.example/2015/11/nca-arrests?utm_source=rss&utm_medium=feed",
            "the original publisher's link, not the syndicator's #comments ({order:?})"
        );
        let feeds: Vec<&str> = row["feeds"]
            .as_array()
            .expect("feeds")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(
            feeds.contains(&"uk") && feeds.contains(&"security"),
            "{feeds:?}"
        );
        // The original's full text holds "National Crime Agency": the stored text must too.
        let found = the_shared_story(&p, &["\"National Crime Agency\""]);
        assert_eq!(
            found.len(),
            1,
            "query over stored text finds the item ({order:?})"
        );
        let (code, show, _) = p.run(&["show", &row["id"].to_string(), "--format", "json"]);
        assert_eq!(code, 0);
        let show: Value = serde_json::from_str(&show).expect("show json");
        let text = show.to_string();
        assert!(
            text.contains("officers arrested six people"),
            "fullest text kept ({order:?}): {text}"
        );
    }
}

/// Serve `body` at `/feed.rss` and return a project polling it with rule `nca`.
fn served_project(server: &TestServer) -> Project {
    Project::new(&format!(
        r#"
[storage]
path = "news.db"

[[feeds]]
name = "sameguid"
url = "{url}"

[[rules]]
name = "nca"
query = 'NCA'
"#,
        url = server.url("/feed.rss"),
    ))
}

fn rss(items: &[(&str, &str, &str)]) -> String {
    let mut s = String::from(
        "<?xml version=\"1.0\"?><rss version=\"2.0\"><channel><title>t</title><link>https://site.example/</link>",
    );
    for (guid, link, title) in items {
        s.push_str(&format!(
            "<item><guid isPermaLink=\"false\">{guid}</guid><link>{link}</link><title>{title}</title><description>NCA report {title}</description></item>"
        ));
    }
    s.push_str("</channel></rss>");
    s
}

fn titles(p: &Project) -> Vec<String> {
    let mut t: Vec<String> = p
        .query_json(&[])
        .iter()
        .filter_map(|r| r["title"].as_str().map(String::from))
        .collect();
    t.sort();
    t
}

#[test]
fn one_guid_shared_by_every_entry_keeps_every_entry() {
    let server = TestServer::start();
    let items: Vec<(String, String, String)> = (0..30)
        .map(|i| {
            (
                "same-guid".to_string(),
                format!("https://site.example/story/{i}"),
                format!("NCA story number {i}"),
            )
        })
        .collect();
    let borrowed: Vec<(&str, &str, &str)> = items
        .iter()
        .map(|(g, l, t)| (g.as_str(), l.as_str(), t.as_str()))
        .collect();
    server.route(
        "/feed.rss",
        Route::ok("application/rss+xml", rss(&borrowed)),
    );
    let p = served_project(&server);
    let (code, _, err) = p.run(&["poll"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(titles(&p).len(), 30, "every entry stored, not one");
    // A second poll of the same document adds and rewrites nothing.
    let (code, _, err) = p.run(&["poll"]);
    assert_eq!(code, 0, "{err}");
    let after = titles(&p);
    assert_eq!(after.len(), 30);
    assert!(after.iter().all(|t| t.starts_with("NCA story number")));
}

#[test]
fn a_guid_reused_for_a_new_story_in_a_later_poll_never_overwrites_the_first() {
    let server = TestServer::start();
    server.route(
        "/feed.rss",
        Route::ok(
            "application/rss+xml",
            rss(&[("only-guid", "https://site.example/a", "NCA first story")]),
        ),
    );
    let p = served_project(&server);
    assert_eq!(p.run(&["poll"]).0, 0);
    server.route(
        "/feed.rss",
        Route::ok(
            "application/rss+xml",
            rss(&[("only-guid", "https://site.example/b", "NCA second story")]),
        ),
    );
    assert_eq!(p.run(&["poll"]).0, 0);
    assert_eq!(titles(&p), ["NCA first story", "NCA second story"]);
    // The same second document again: nothing new, nothing rewritten.
    assert_eq!(p.run(&["poll"]).0, 0);
    assert_eq!(titles(&p), ["NCA first story", "NCA second story"]);
    // A real edit (same guid, same link, new title) still updates in place.
    server.route(
        "/feed.rss",
        Route::ok(
            "application/rss+xml",
            rss(&[(
                "only-guid",
                "https://site.example/b",
                "NCA second story, updated",
            )]),
        ),
    );
    assert_eq!(p.run(&["poll"]).0, 0);
    assert_eq!(titles(&p), ["NCA first story", "NCA second story, updated"]);
}

#[test]
fn unconditional_304_is_a_failure_not_a_success() {
    let server = TestServer::start();
    server.route("/feed.rss", Route::status(304, vec![], ""));
    let p = served_project(&server);
    let (code, _, err) = p.run(&["poll"]);
    assert_eq!(code, 0, "poll exits 0 even when a feed fails: {err}");
    assert!(err.contains("304 without a validator"), "{err}");
    let (code, out, _) = p.run(&["feeds", "--format", "json"]);
    assert_eq!(code, 0);
    let feeds: Value = serde_json::from_str(&out).expect("feeds json");
    let feed = &feeds.as_array().expect("array")[0];
    assert_eq!(feed["last_status"], "failed", "{feed}");
    assert_eq!(feed["consecutive_failures"], 1, "{feed}");
    assert!(
        feed["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("304 without a validator")),
        "{feed}"
    );
}

#[test]
fn poll_warning_lines_name_the_feed_in_text_and_json_logs() {
    let p = Project::new(
        r#"
[storage]
path = "news.db"

[[feeds]]
name = "brokenfeed"
url = "file:///nonexistent/newswatch/feed.xml"

[[rules]]
name = "nca"
query = 'NCA'
"#,
    );
    let (_, _, err) = p.run(&["poll"]);
    let warn = err
        .lines()
        .find(|l| l.contains("WARN"))
        .unwrap_or_else(|| panic!("a warning line: {err}"));
    assert!(warn.contains("feed=brokenfeed"), "{warn}");
    let (_, _, err) = p.run(&["--log-format", "json", "poll"]);
    let line = err
        .lines()
        .find(|l| l.starts_with('{') && l.contains("WARN"))
        .unwrap_or_else(|| panic!("a JSON warning line: {err}"));
    let v: Value = serde_json::from_str(line).expect("one JSON object per line");
    assert_eq!(v["span"]["feed"], "brokenfeed", "{v}");
}
