//! Review through the real binary: `show`, `mark`, `query --status` and `stats`.
//!
//! Most tests use the golden fixture database (built through the store); one polls the fixture
//! feeds from the loopback server (tests/cli_poll.rs) first.

use serde_json::Value;

use crate::digest::golden_project;
use crate::support::Project;
use crate::support::server::TestServer;

fn ids_with_title(project: &Project, title: &str) -> Vec<i64> {
    project
        .query_json(&[])
        .iter()
        .filter(|r| r["title"] == title)
        .filter_map(|r| r["id"].as_i64())
        .collect()
}

fn statuses(project: &Project, status: &str) -> Vec<String> {
    let mut v: Vec<String> = project
        .query_json(&["--status", status])
        .iter()
        .filter_map(|r| r["title"].as_str().map(str::to_string))
        .collect();
    v.sort();
    v
}

#[test]
fn review_show_prints_one_match_in_full_text_and_json() {
    let project = golden_project();
    let id = ids_with_title(&project, "NCA arrests suspects in dark web drugs probe")[0];
    let (code, out, err) = project.run(&["show", &id.to_string()]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with(&format!(
            "#{id}  NCA arrests suspects in dark web drugs probe\n"
        )),
        "{out}"
    );
    for want in [
        "link:       https://uknews.example/nca-dark-web?utm_source=rss",
        "published:  2015-11-09 08:30 GMT",
        "first seen: 2015-11-09 09:00 GMT",
        "status:     new",
        "authors:    A. Reporter",
        "  uknews <https://uknews.example/feed> since 2015-11-09 09:00 GMT",
        "  security <https://security.example/feed> since 2015-11-09 10:05 GMT",
        "  darkweb: \"dark web\"",
        "  nca: NCA",
        "content:\n  The National Crime Agency",
        "  Second paragraph.",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    let (code, json, _) = project.run(&["show", &id.to_string(), "--format", "json"]);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&json).expect("json");
    assert_eq!(v["id"], id);
    assert_eq!(v["feeds"].as_array().map(Vec::len), Some(2));
    assert_eq!(v["rules"][0]["rule"], "darkweb");
    assert_eq!(v["rules"][1]["terms"][0], "NCA");
    assert!(
        v["content"]
            .as_str()
            .is_some_and(|c| c.contains("Second paragraph"))
    );

    let (code, _, err) = project.run(&["show", "99999"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no match with id 99999"), "{err}");
}

#[test]
fn review_show_is_terminal_safe() {
    let project = Project::new("[storage]\npath = \"data/news.db\"\n");
    let mut store = crate::digest::open_store(&project.path("data/news.db"));
    let id = crate::digest::commit(
        &mut store,
        "uknews",
        "2015-11-09T09:00:00Z",
        &[crate::digest::Story {
            guid: "esc",
            link: "https://uknews.example/\u{1b}]8;;evil",
            title: "NCA \u{1b}[2J\u{1b}[31mcleared screen",
            published: None,
            snippet: "line one\u{8}\u{8}\nline two \u{202e}txet",
            rules: &[("nca", &["NCA"])],
        }],
    )[0];
    drop(store);
    project.seed_postgres(&project.path("data/news.db"));
    let (code, out, err) = project.run(&["show", &id.to_string()]);
    assert_eq!(code, 0, "{err}");
    assert!(
        !out.chars()
            .any(|c| (c.is_control() && c != '\n') || c == '\u{202e}'),
        "{out:?}"
    );
    assert!(out.contains("cleared screen"));
}

#[test]
fn review_mark_round_trips_through_query_status_and_leaves_digests() {
    let project = golden_project();
    let nca = ids_with_title(&project, "NCA arrests suspects in dark web drugs probe")[0];
    let gchq = ids_with_title(&project, "GCHQ opens its doors to schools")[0];
    let ipb = ids_with_title(&project, "MPs debate surveillance law")[0];

    let (code, out, err) = project.run(&["mark", &nca.to_string(), &gchq.to_string(), "--read"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), format!("marked read: {nca} {gchq}"));
    assert_eq!(
        statuses(&project, "read"),
        vec![
            "GCHQ opens its doors to schools",
            "NCA arrests suspects in dark web drugs probe"
        ]
    );
    let (code, out, _) = project.run(&["mark", &nca.to_string(), "--read"]);
    assert_eq!(code, 0);
    assert_eq!(out.trim(), format!("already read: {nca}"));

    let (code, _, _) = project.run(&["mark", &gchq.to_string(), "--star"]);
    assert_eq!(code, 0);
    assert_eq!(
        statuses(&project, "starred"),
        vec!["GCHQ opens its doors to schools"]
    );
    assert_eq!(
        statuses(&project, "read"),
        vec!["NCA arrests suspects in dark web drugs probe"]
    );

    // Dismissing removes it from the digest; --new brings it back.
    let (code, _, _) = project.run(&["mark", &ipb.to_string(), "--dismiss"]);
    assert_eq!(code, 0);
    let (_, md, _) = project.run(&["digest", "--date", "2015-11-09"]);
    assert!(!md.contains("MPs debate surveillance law"), "{md}");
    let (code, _, _) = project.run(&["mark", &ipb.to_string(), "--new"]);
    assert_eq!(code, 0);
    let (_, md, _) = project.run(&["digest", "--date", "2015-11-09"]);
    assert!(md.contains("MPs debate surveillance law"), "{md}");

    // Unknown ids: the known ones are still marked, the unknown named, exit 1.
    let (code, out, err) = project.run(&["mark", &ipb.to_string(), "424242", "--star"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no match with id 424242"), "{err}");
    assert!(out.contains(&format!("marked starred: {ipb}")), "{out}");
    assert_eq!(statuses(&project, "starred").len(), 2);

    // Exactly one status flag.
    let (code, _, _) = project.run(&["mark", &ipb.to_string()]);
    assert_eq!(code, 2);
    let (code, _, _) = project.run(&["mark", &ipb.to_string(), "--read", "--star"]);
    assert_eq!(code, 2);
}

#[test]
fn review_stats_counts_per_rule_feed_day_and_feed_health() {
    let project = golden_project();
    // The fixture is from 2015; a window reaching back to it.
    let (code, json, err) = project.run(&["stats", "--since", "36500d", "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&json).expect("json");
    let count = |list: &str, name: &str| {
        v[list]
            .as_array()
            .and_then(|a| a.iter().find(|c| c["name"] == name))
            .and_then(|c| c["count"].as_u64())
    };
    assert_eq!(v["total"], 6, "all stored matches, dismissed included");
    assert_eq!(count("per_rule", "gchq"), Some(3));
    assert_eq!(count("per_rule", "nca"), Some(3));
    assert_eq!(count("per_feed", "uknews"), Some(3));
    assert_eq!(count("per_feed", "security"), Some(2));
    assert_eq!(count("per_day", "2015-11-09"), Some(5));
    assert_eq!(count("per_day", "2015-11-08"), Some(1));
    assert_eq!(count("per_day", "2015-11-10"), Some(0), "quiet days listed");
    assert_eq!(count("per_status", "dismissed"), Some(1));
    let gone = v["feeds"]
        .as_array()
        .and_then(|a| a.iter().find(|f| f["name"] == "gone"))
        .expect("gone");
    assert_eq!(gone["consecutive_failures"], 2);
    assert_eq!(gone["last_error"], "HTTP 404");
    assert_eq!(gone["last_status"], "failed");

    let (code, text, _) = project.run(&["stats", "--since", "36500d"]);
    assert_eq!(code, 0);
    assert!(
        text.contains("per rule:") && text.contains("feed health:"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains("gone") && l.contains("failed") && l.contains("HTTP 404")),
        "{text}"
    );

    let (code, text, _) = project.run(&["stats"]);
    assert_eq!(code, 0);
    assert!(
        text.starts_with("0 matches (0 stories) first seen"),
        "default 7 days: {text}"
    );
}

// ---------------------------------------------------------------------------------------------
// With real polling.

/// poll → mark → show → query --status, all through the binary, on the fixture feeds.
#[test]
fn poll_then_mark_show_and_query_status() {
    let server = TestServer::start();
    crate::cli_poll::serve_fixtures(&server);
    // The fixtures are from 2015: a backlog long enough to digest them on a first poll.
    let project = Project::new(&format!(
        "{}\n[digest]\nbacklog = \"36500d\"\n",
        crate::cli_poll::config(&server)
    ));
    let (code, _, err) = project.run(&["poll"]);
    assert_eq!(code, 0, "{err}");
    let id = ids_with_title(&project, "GCHQ opens its doors to schools")[0];
    let (code, _, err) = project.run(&["mark", &id.to_string(), "--star"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        statuses(&project, "starred"),
        vec!["GCHQ opens its doors to schools"]
    );
    let (code, out, _) = project.run(&["show", &id.to_string()]);
    assert_eq!(code, 0);
    assert!(
        out.contains("status:     starred") && out.contains("gchq: GCHQ"),
        "{out}"
    );
    let (code, _, _) = project.run(&["mark", &id.to_string(), "--dismiss"]);
    assert_eq!(code, 0);
    let (_, md, _) = project.run(&["digest", "--since", "1h"]);
    assert!(
        !md.contains("GCHQ opens its doors"),
        "dismissed left out: {md}"
    );
    assert!(md.contains("NCA arrests suspects"), "{md}");
}
