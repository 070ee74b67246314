//! Digests: golden md/text/json output from a fixed database, HTML escaping of hostile feed
//! text, quiet days, scheduled digests (catch-up after downtime: no gap, no repeat), e-mail to an
//! in-process SMTP server, webhook retries against the loopback server, and the CLI.
//!
//! The fixture database is built through `Store::commit_feed` with fixed timestamps, so the
//! golden outputs never depend on the clock; one test polls the real fixture feeds first.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use newswatch::outputs::digest::{
    self, DigestOptions, DigestSettings, EmailSecurity, EmailSettings, Format, Period, RetryPolicy,
    WebhookSettings,
};
use newswatch::pipeline::dedup;
use newswatch::pipeline::matcher::RuleMatch;
use newswatch::pipeline::parse::Entry;
use newswatch::store::{EntryRecord, EntryText, FetchFacts, MatchedEntry, Store};
use serde_json::Value;

use crate::support::server::{Route, TestServer, write_response};
use crate::support::{Project, read};

pub const TZ: Tz = chrono_tz::Europe::London;

pub fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("fixture time")
        .with_timezone(&Utc)
}

/// One story as a feed carries it.
pub struct Story<'a> {
    pub guid: &'a str,
    pub link: &'a str,
    pub title: &'a str,
    pub published: Option<&'a str>,
    pub snippet: &'a str,
    pub rules: &'a [(&'a str, &'a [&'a str])],
}

pub fn record(s: &Story) -> EntryRecord {
    let e = Entry {
        guid: Some(s.guid.into()),
        link: Some(s.link.into()),
        title: s.title.into(),
        summary: s.snippet.into(),
        published: s.published.map(t),
        ..Default::default()
    };
    let (_, identity) = dedup::identify(std::slice::from_ref(&e)).remove(0);
    EntryRecord {
        identity,
        fingerprint: dedup::fingerprint(&e),
        text: EntryText {
            guid: e.guid.clone(),
            link: e.link.clone(),
            title: s.title.into(),
            summary: s.snippet.into(),
            content: format!("{}\nSecond paragraph.", s.snippet),
            authors: vec!["A. Reporter".into()],
            published: e.published,
        },
        matched: Some(MatchedEntry {
            rules: s
                .rules
                .iter()
                .map(|(r, terms)| RuleMatch {
                    rule: r.to_string(),
                    terms: terms.iter().map(|x| x.to_string()).collect(),
                })
                .collect(),
            snippet: s.snippet.into(),
            link_rank: 0,
        }),
    }
}

pub fn open_store(path: &Path) -> Store {
    let mut store = Store::open(path).expect("open store");
    store
        .sync_feeds(
            ["agency", "flaky", "gone", "security", "uknews"]
                .map(|name| (name, format!("https://{name}.example/feed")))
                .iter()
                .map(|(n, u)| (*n, u.as_str())),
        )
        .expect("sync feeds");
    store
}

pub fn commit(store: &mut Store, feed: &str, at: &str, stories: &[Story]) -> Vec<i64> {
    let id = store.feed_state(feed).expect("state").expect("feed").id;
    let recs: Vec<EntryRecord> = stories.iter().map(record).collect();
    store
        .commit_feed(id, &FetchFacts::default(), &recs, t(at))
        .expect("commit");
    recs.iter()
        .map(|r| {
            store
                .conn()
                .query_row(
                    "SELECT item_id FROM sightings WHERE feed_id = ?1 AND entry_key = ?2",
                    rusqlite::params![id, &r.identity.key_hash[..]],
                    |row| row.get(0),
                )
                .expect("item id")
        })
        .collect()
}

/// The golden fixture: 2015-11-09 (London = UTC in November), seen through the day, plus one
/// story the day before, one dismissed, and two feeds in trouble.
pub fn golden_store(path: &Path) -> Store {
    let mut s = open_store(path);
    commit(
        &mut s,
        "uknews",
        "2015-11-08T20:00:00Z",
        &[Story {
            guid: "uk-0999",
            link: "https://uknews.example/old-nca",
            title: "Yesterday's NCA briefing",
            published: Some("2015-11-08T19:00:00Z"),
            snippet: "The NCA briefed reporters on Sunday.",
            rules: &[("nca", &["NCA"])],
        }],
    );
    let nca = Story {
        guid: "uk-1001",
        link: "https://uknews.example/nca-dark-web?utm_source=rss",
        title: "NCA arrests suspects in dark web drugs probe",
        published: Some("2015-11-09T08:30:00Z"),
        snippet: "The National Crime Agency (NCA) said officers arrested three people linked to a dark web drugs market.",
        rules: &[("darkweb", &["\"dark web\""]), ("nca", &["NCA"])],
    };
    commit(
        &mut s,
        "uknews",
        "2015-11-09T09:00:00Z",
        &[
            nca,
            Story {
                guid: "uk-1002",
                link: "https://uknews.example/ipb",
                title: "MPs debate surveillance law",
                published: None,
                snippet: "MPs questioned the Home Secretary over the Investigatory Powers Bill on Monday.",
                rules: &[("ipb", &["\"Investigatory Powers Bill\""])],
            },
        ],
    );
    commit(
        &mut s,
        "security",
        "2015-11-09T10:05:00Z",
        &[
            Story {
                guid: "sec-7",
                link: "https://uknews.example/nca-dark-web",
                title: "NCA arrests suspects in dark web drugs probe",
                published: Some("2015-11-09T08:30:00Z"),
                snippet: "The National Crime Agency (NCA) said officers arrested three people linked to a dark web drugs market.",
                rules: &[("darkweb", &["\"dark web\""]), ("nca", &["NCA"])],
            },
            Story {
                guid: "sec-8",
                link: "https://security.example/gchq-schools",
                title: "GCHQ opens its doors to schools",
                published: Some("2015-11-09T10:00:00Z"),
                snippet: "Pupils visited GCHQ in Cheltenham, where analysts explained *why* codes matter.",
                rules: &[("gchq", &["GCHQ"])],
            },
        ],
    );
    let dismissed = commit(
        &mut s,
        "agency",
        "2015-11-09T12:00:00Z",
        &[
            Story {
                guid: "ag-1",
                link: "https://agency.example/joc",
                title: "Joint Operations Cell marks first year",
                published: Some("2015-11-09T11:45:00Z"),
                snippet: "The Joint Operations Cell, run by GCHQ and the NCA, marked its first year.",
                rules: &[
                    ("gchq", &["GCHQ"]),
                    ("joc", &["\"Joint Operations Cell\""]),
                    ("nca", &["NCA"]),
                ],
            },
            Story {
                guid: "ag-2",
                link: "https://agency.example/noise",
                title: "GCHQ staff bake-off results",
                published: Some("2015-11-09T12:00:00Z"),
                snippet: "GCHQ staff baked cakes.",
                rules: &[("gchq", &["GCHQ"])],
            },
        ],
    );
    newswatch::store::review::mark(&mut s, &dismissed[1..], "dismissed").expect("dismiss");
    // Feed health: "gone" never succeeded; "flaky" failed but succeeded within 24 h.
    let gone = s.feed_state("gone").expect("state").expect("gone").id;
    s.record_failure(gone, "HTTP 404", Some(404), None, t("2015-11-09T06:00:00Z"))
        .expect("fail");
    s.record_failure(gone, "HTTP 404", Some(404), None, t("2015-11-09T18:00:00Z"))
        .expect("fail");
    let flaky = s.feed_state("flaky").expect("state").expect("flaky").id;
    s.record_unchanged(flaky, &FetchFacts::default(), t("2015-11-09T20:00:00Z"))
        .expect("ok");
    s.record_failure(flaky, "timed out", None, None, t("2015-11-09T21:00:00Z"))
        .expect("fail");
    s
}

pub fn now() -> DateTime<Utc> {
    t("2015-11-10T07:00:00Z")
}

fn golden_digest(store: &mut Store) -> digest::Digest {
    let day = NaiveDate::from_ymd_opt(2015, 11, 9).expect("date");
    digest::build(
        store,
        Period::day(day, TZ).expect("period"),
        &DigestOptions::default(),
        TZ,
        now(),
    )
    .expect("build")
}

fn golden_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

/// Compare with tests/golden/NAME; `UPDATE_GOLDEN=1` rewrites the file instead.
fn assert_golden(name: &str, got: &str) {
    let path = golden_path(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, got).expect("write golden");
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "golden file {} missing ({e}); run with UPDATE_GOLDEN=1",
            path.display()
        )
    });
    if want != got {
        let first = want
            .lines()
            .zip(got.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(want.lines().count().min(got.lines().count()));
        panic!(
            "{name} differs from the golden file at line {} (UPDATE_GOLDEN=1 to accept):\n--- want\n{}\n--- got\n{}",
            first + 1,
            want.lines().nth(first).unwrap_or("<end>"),
            got.lines().nth(first).unwrap_or("<end>")
        );
    }
}

#[test]
fn digest_golden_md_text_json() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut store = golden_store(&dir.path().join("news.db"));
    let d = golden_digest(&mut store);

    // The facts the golden files pin, asserted directly too.
    let titles: Vec<(&str, &str)> = d
        .sections
        .iter()
        .flat_map(|s| {
            s.entries
                .iter()
                .map(move |e| (s.rule.as_str(), e.title.as_str()))
        })
        .collect();
    assert_eq!(
        titles,
        vec![
            ("darkweb", "NCA arrests suspects in dark web drugs probe"),
            ("gchq", "Joint Operations Cell marks first year"),
            ("gchq", "GCHQ opens its doors to schools"),
            ("ipb", "MPs debate surveillance law"),
            ("joc", "Joint Operations Cell marks first year"),
            ("nca", "Joint Operations Cell marks first year"),
            ("nca", "NCA arrests suspects in dark web drugs probe"),
        ],
        "per rule, newest first; yesterday's story and the dismissed one left out"
    );
    assert_eq!(d.total, 4, "distinct stories");
    let nca = &d.sections[0].entries[0];
    assert_eq!(
        nca.feeds,
        vec!["uknews", "security"],
        "one item, two outlets, the first to carry it first"
    );
    assert_eq!(nca.also_matched, vec!["nca"]);
    assert_eq!(
        d.feed_problems
            .iter()
            .map(|p| p.feed.as_str())
            .collect::<Vec<_>>(),
        vec!["gone"],
        "flaky succeeded within 24 h"
    );

    let md = digest::render(&d, Format::Md);
    assert!(
        md.contains("**NCA**") && md.contains("**dark web**"),
        "{md}"
    );
    assert!(md.contains("\\*why\\*"), "feed asterisks escaped: {md}");
    assert!(md.contains("uknews (also in: security)"), "{md}");
    assert_eq!(
        md.matches("### [Joint Operations Cell marks first year]")
            .count(),
        1,
        "a story matching three rules is shown in full once: {md}"
    );
    assert!(
        md.contains(
            "- [Joint Operations Cell marks first year](https://agency.example/joc) — under gchq"
        ),
        "and referred to from its other rules' sections: {md}"
    );
    assert_golden("digest-2015-11-09.md", &md);
    assert_golden("digest-2015-11-09.txt", &digest::render(&d, Format::Text));
    let json = digest::render(&d, Format::Json);
    let v: Value = serde_json::from_str(&json).expect("json");
    assert_eq!(v["total"], 4);
    assert_eq!(v["timezone"], "Europe/London");
    assert_golden("digest-2015-11-09.json", &json);
}

#[test]
fn digest_rule_filter_keeps_one_section_with_also_matched() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut store = golden_store(&dir.path().join("news.db"));
    let day = NaiveDate::from_ymd_opt(2015, 11, 9).expect("date");
    let d = digest::build(
        &mut store,
        Period::day(day, TZ).expect("p"),
        &DigestOptions {
            rules: vec!["nca".into()],
            ..DigestOptions::default()
        },
        TZ,
        now(),
    )
    .expect("build");
    assert_eq!(d.sections.len(), 1);
    assert_eq!(d.sections[0].rule, "nca");
    assert_eq!(d.total, 2);
    let md = digest::render(&d, Format::Md);
    assert!(md.contains("also matched: gchq, joc"), "{md}");
    assert!(!md.contains("## gchq"), "{md}");
}

#[test]
fn digest_quiet_day_says_so_in_every_format() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut store = golden_store(&dir.path().join("news.db"));
    let day = NaiveDate::from_ymd_opt(2015, 11, 12).expect("date");
    let d = digest::build(
        &mut store,
        Period::day(day, TZ).expect("p"),
        &DigestOptions::default(),
        TZ,
        now(),
    )
    .expect("build");
    assert_eq!(d.total, 0);
    let want = "No new matches between 2015-11-12 00:00 GMT and 2015-11-13 00:00 GMT.";
    for f in [Format::Md, Format::Text, Format::Html] {
        let out = digest::render(&d, f);
        assert!(out.contains(want), "{f:?}: {out}");
        assert!(
            out.contains("gone"),
            "feed problems still listed on a quiet day: {out}"
        );
    }
    let v: Value = serde_json::from_str(&digest::render(&d, Format::Json)).expect("json");
    assert_eq!(v["total"], 0);
    assert_eq!(v["sections"].as_array().map(Vec::len), Some(0));
}

#[test]
fn digest_day_follows_the_configured_time_zone() {
    // 2015-06-30 23:30 UTC is 2015-07-01 00:30 in London (BST): it belongs to 1 July there.
    let dir = tempfile::tempdir().expect("tmp");
    let mut store = open_store(&dir.path().join("news.db"));
    commit(
        &mut store,
        "uknews",
        "2015-06-30T23:30:00Z",
        &[Story {
            guid: "bst",
            link: "https://uknews.example/bst",
            title: "GCHQ after midnight",
            published: Some("2015-06-30T23:10:00Z"),
            snippet: "GCHQ late news.",
            rules: &[("gchq", &["GCHQ"])],
        }],
    );
    let july = NaiveDate::from_ymd_opt(2015, 7, 1).expect("d");
    let june = NaiveDate::from_ymd_opt(2015, 6, 30).expect("d");
    let now = t("2015-07-02T07:00:00Z");
    let d1 = digest::build(
        &mut store,
        Period::day(july, TZ).expect("p"),
        &DigestOptions::default(),
        TZ,
        now,
    )
    .expect("b");
    let d0 = digest::build(
        &mut store,
        Period::day(june, TZ).expect("p"),
        &DigestOptions::default(),
        TZ,
        now,
    )
    .expect("b");
    assert_eq!((d1.total, d0.total), (1, 0));
    let md = digest::render(&d1, Format::Md);
    assert!(
        md.contains("2015-07-01 00:00 BST – 2015-07-02 00:00 BST"),
        "{md}"
    );
    assert!(md.contains("published 2015-07-01 00:10 BST"), "{md}");
    let utc = digest::build(
        &mut store,
        Period::day(june, chrono_tz::UTC).expect("p"),
        &DigestOptions::default(),
        chrono_tz::UTC,
        now,
    )
    .expect("b");
    assert_eq!(utc.total, 1, "in UTC it is still 30 June");
}

/// Every tag in `html` is one we emit, with only attributes we emit, and no href is anything
/// but http(s).
fn assert_only_our_markup(html: &str) {
    const TAGS: &[&str] = &[
        "!DOCTYPE", "html", "head", "meta", "title", "body", "div", "h1", "h2", "h3", "p",
        "strong", "a", "mark",
    ];
    const ATTRS: &[&str] = &["lang", "charset", "name", "content", "style", "href"];
    let mut rest = html;
    while let Some(i) = rest.find('<') {
        rest = &rest[i + 1..];
        let end = rest.find('>').expect("tag closes");
        let tag = &rest[..end];
        let tag = tag.strip_prefix('/').unwrap_or(tag);
        let name = tag.split_whitespace().next().unwrap_or("");
        assert!(TAGS.contains(&name), "unexpected tag <{tag}> in\n{html}");
        // Attributes: name="value" pairs; values never contain a raw quote.
        let mut attrs = tag[name.len()..].trim();
        while !attrs.is_empty() {
            let eq = attrs.find("=\"");
            let Some(eq) = eq else {
                assert!(name == "!DOCTYPE", "bare attribute in <{tag}>");
                break;
            };
            let attr = attrs[..eq].trim();
            assert!(
                ATTRS.contains(&attr),
                "unexpected attribute {attr:?} in <{tag}>"
            );
            let after = &attrs[eq + 2..];
            let close = after.find('"').expect("attribute closes");
            let value = &after[..close];
            if attr == "href" {
                assert!(
                    value.starts_with("http://") || value.starts_with("https://"),
                    "href {value:?}"
                );
            }
            attrs = after[close + 1..].trim();
        }
        rest = &rest[end + 1..];
    }
}

#[test]
fn digest_html_escapes_hostile_feed_text_and_links() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut store = open_store(&dir.path().join("news.db"));
    commit(
        &mut store,
        "uknews",
        "2015-11-09T09:00:00Z",
        &[
            Story {
                guid: "x1",
                link: "javascript:alert(document.cookie)",
                title: "<script>alert(1)</script> NCA",
                published: Some("2015-11-09T09:00:00Z"),
                snippet: "NCA \" onerror=\"alert(2)\" <img src=x onerror=alert(3)> & more",
                rules: &[("nca", &["NCA"])],
            },
            Story {
                guid: "x2",
                link: "https://evil.example/a?q=\"><script>alert(4)</script>&b=' onmouseover='x",
                title: "NCA <b onclick=\"x\">bold</b>",
                published: Some("2015-11-09T08:00:00Z"),
                snippet: "</p><a href=\"javascript:alert(5)\">NCA</a>",
                rules: &[("nca", &["NCA", "\"<script>\""])],
            },
            Story {
                guid: "x3",
                link: "data:text/html;base64,PHNjcmlwdD4=",
                title: "NCA data link",
                published: Some("2015-11-09T07:00:00Z"),
                snippet: "NCA",
                rules: &[("<i>rule</i>", &["NCA"])],
            },
        ],
    );
    let day = NaiveDate::from_ymd_opt(2015, 11, 9).expect("d");
    let d = digest::build(
        &mut store,
        Period::day(day, TZ).expect("p"),
        &DigestOptions::default(),
        TZ,
        now(),
    )
    .expect("b");
    assert_eq!(d.total, 3);
    let html = digest::render(&d, Format::Html);
    assert_only_our_markup(&html);
    let lower = html.to_ascii_lowercase();
    assert!(!lower.contains("<script"), "{html}");
    assert!(
        !lower.contains("href=\"javascript") && !lower.contains("href=\"data:"),
        "{html}"
    );
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;&#x2F;script&gt; NCA"),
        "title shown as text: {html}"
    );
    assert!(
        !html.contains("javascript:alert(document.cookie)"),
        "a non-http(s) link never leaves newswatch, not even as text: {html}"
    );
    assert!(html.contains("<mark"), "terms still marked: {html}");
    assert!(
        html.contains("&lt;i&gt;rule&lt;&#x2F;i&gt;"),
        "rule names escaped too: {html}"
    );
    assert!(
        !lower.contains("<img") && !lower.contains("<link") && !lower.contains("url("),
        "no external resources"
    );
    assert_eq!(
        lower.matches("<a ").count(),
        1,
        "only the https link is a link: {html}"
    );

    let md = digest::render(&d, Format::Md);
    assert!(
        md.match_indices('<').all(|(i, _)| md[..i].ends_with('\\')),
        "every < in Markdown is escaped: {md}"
    );
    assert!(
        !md.contains("](javascript:") && !md.contains("](data:"),
        "{md}"
    );
    assert!(md.contains("\\<script\\>"), "{md}");
    let text = digest::render(&d, Format::Text);
    assert!(!text.chars().any(|c| c.is_control() && c != '\n'), "{text}");
}

#[test]
fn digest_text_and_md_strip_terminal_escapes() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut store = open_store(&dir.path().join("news.db"));
    commit(
        &mut store,
        "uknews",
        "2015-11-09T09:00:00Z",
        &[Story {
            guid: "esc",
            link: "https://uknews.example/esc",
            title: "NCA \u{1b}[31mred\u{1b}[0m \u{202e}reversed",
            published: None,
            snippet: "NCA\u{7}\u{8}",
            rules: &[("nca", &["NCA"])],
        }],
    );
    let day = NaiveDate::from_ymd_opt(2015, 11, 9).expect("d");
    let d = digest::build(
        &mut store,
        Period::day(day, TZ).expect("p"),
        &DigestOptions::default(),
        TZ,
        now(),
    )
    .expect("b");
    for f in [Format::Md, Format::Text, Format::Html] {
        let out = digest::render(&d, f);
        assert!(
            !out.chars()
                .any(|c| (c.is_control() && c != '\n') || c == '\u{202e}'),
            "{f:?}: {out:?}"
        );
    }
}

fn ids_of(d: &digest::Digest) -> BTreeSet<i64> {
    d.sections
        .iter()
        .flat_map(|s| s.entries.iter().map(|e| e.id))
        .collect()
}

#[test]
fn digest_scheduled_catches_up_after_downtime_without_gap_or_repeat() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("digests");
    let mut s = open_store(&dir.path().join("news.db"));
    let story = |guid: &'static str| Story {
        guid,
        link: "",
        title: guid,
        published: None,
        snippet: "NCA news",
        rules: &[("nca", &["NCA"])],
    };
    let mk = |s: &mut Store, at: &str, guid: &'static str| {
        let link = format!("https://uknews.example/{guid}");
        let st = Story {
            link: &link,
            ..story(guid)
        };
        commit(s, "uknews", at, &[st])[0]
    };
    // Before the first run: one old (outside its 24 h), two recent.
    let old = mk(&mut s, "2015-11-05T10:00:00Z", "old");
    let a = mk(&mut s, "2015-11-09T10:00:00Z", "a");
    let b = mk(&mut s, "2015-11-09T22:00:00Z", "b");
    let run1 = digest::write_scheduled(
        &s,
        &out,
        &[Format::Html, Format::Json],
        &DigestOptions::default(),
        TZ,
        t("2015-11-10T07:00:00Z"),
    )
    .expect("run 1");
    assert_eq!(
        ids_of(&run1.digest),
        BTreeSet::from([a, b]),
        "first run: the last 24 h"
    );
    assert!(!ids_of(&run1.digest).contains(&old));
    let names: Vec<String> = run1
        .files
        .iter()
        .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        vec![
            "digest-2015-11-10.md",
            "digest-2015-11-10.html",
            "digest-2015-11-10.json"
        ]
    );
    for f in &run1.files {
        assert!(f.is_file());
    }
    let on_disk: Value = serde_json::from_str(&read(&run1.files[2])).expect("json file");
    assert_eq!(on_disk["total"], 2);

    // The daemon is down for three days. Matches keep arriving (another process polls), one
    // with a clock that runs behind: its first_seen is before run 1's end, its id after.
    let c = mk(&mut s, "2015-11-10T09:00:00Z", "c");
    let skewed = mk(&mut s, "2015-11-10T06:00:00Z", "skewed");
    let d = mk(&mut s, "2015-11-11T09:00:00Z", "d");
    let dismissed = mk(&mut s, "2015-11-12T09:00:00Z", "dismissed");
    newswatch::store::review::mark(&mut s, &[dismissed], "dismissed").expect("dismiss");
    let e = mk(&mut s, "2015-11-13T06:59:00Z", "e");
    let run2 = digest::write_scheduled(
        &s,
        &out,
        &[],
        &DigestOptions::default(),
        TZ,
        t("2015-11-13T07:00:00Z"),
    )
    .expect("run 2");
    let got2 = ids_of(&run2.digest);
    assert_eq!(
        got2,
        BTreeSet::from([c, skewed, d, e]),
        "every match since run 1, skew included"
    );
    assert!(got2.is_disjoint(&ids_of(&run1.digest)), "no repeats");
    assert_eq!(
        run2.digest.period_start,
        t("2015-11-10T07:00:00Z"),
        "period continues from run 1"
    );
    let md = read(&run2.files[0]);
    assert!(
        md.contains("2015-11-10 07:00 GMT – 2015-11-13 07:00 GMT"),
        "{md}"
    );
    assert!(
        md.contains("### [skewed](") && !md.contains("[dismissed]"),
        "{md}"
    );

    // Same day again, nothing new: a second file, saying so.
    let run3 = digest::write_scheduled(
        &s,
        &out,
        &[],
        &DigestOptions::default(),
        TZ,
        t("2015-11-13T19:00:00Z"),
    )
    .expect("run 3");
    assert_eq!(run3.digest.total, 0);
    assert!(
        run3.files[0].ends_with("digest-2015-11-13-2.md"),
        "{:?}",
        run3.files
    );
    assert!(
        read(&run3.files[0])
            .contains("No new matches between 2015-11-13 07:00 GMT and 2015-11-13 19:00 GMT.")
    );
    assert!(
        read(&run2.files[0]).contains("### [c]("),
        "run 2's file not overwritten"
    );

    // The record: contiguous id cuts.
    let runs = digest::scheduled_runs(&mut s).expect("runs");
    assert_eq!(runs.len(), 3);
    assert_eq!(runs[1].after_item_id, runs[0].last_item_id);
    assert_eq!(runs[2].after_item_id, runs[1].last_item_id);
    assert_eq!(runs[1].last_item_id, e);
    assert_eq!(runs[1].items, 4);
    assert_eq!(runs[1].files, vec!["digest-2015-11-13.md"]);
    // No temp files left behind.
    let leftovers: Vec<_> = std::fs::read_dir(&out)
        .expect("dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

// ---------------------------------------------------------------------------------------------
// Delivery

/// A tiny SMTP server on 127.0.0.1: one session, records commands and the DATA.
struct SmtpServer {
    port: u16,
    log: Arc<Mutex<Vec<String>>>,
    data: Arc<Mutex<Vec<String>>>,
}

impl SmtpServer {
    fn start() -> SmtpServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let log = Arc::new(Mutex::new(Vec::new()));
        let data = Arc::new(Mutex::new(Vec::new()));
        let (l, d) = (log.clone(), data.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut w) = conn else { continue };
                let _ = w.set_read_timeout(Some(Duration::from_secs(10)));
                let mut r = BufReader::new(w.try_clone().expect("clone"));
                let _ = w.write_all(b"220 localhost ESMTP test\r\n");
                let mut line = String::new();
                loop {
                    line.clear();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    let cmd = line.trim_end().to_string();
                    l.lock().expect("log").push(cmd.clone());
                    let verb = cmd
                        .split_whitespace()
                        .next()
                        .unwrap_or("")
                        .to_ascii_uppercase();
                    let reply: &[u8] = match verb.as_str() {
                        "EHLO" => b"250-localhost\r\n250 8BITMIME\r\n",
                        "DATA" => {
                            let _ = w.write_all(b"354 end with .\r\n");
                            let mut msg = String::new();
                            loop {
                                let mut l2 = String::new();
                                if r.read_line(&mut l2).unwrap_or(0) == 0 || l2 == ".\r\n" {
                                    break;
                                }
                                msg.push_str(&l2);
                            }
                            d.lock().expect("data").push(msg);
                            b"250 queued\r\n"
                        }
                        "QUIT" => {
                            let _ = w.write_all(b"221 bye\r\n");
                            break;
                        }
                        _ => b"250 ok\r\n",
                    };
                    let _ = w.write_all(reply);
                }
            }
        });
        SmtpServer { port, log, data }
    }
}

/// Undo quoted-printable (soft breaks and =XX) well enough to search the text.
fn qp_decode(s: &str) -> String {
    let s = s.replace("=\r\n", "");
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'='
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn settings(email: Option<EmailSettings>, webhook: Option<WebhookSettings>) -> DigestSettings {
    DigestSettings {
        schedule: "0 7 * * *".into(),
        dir: PathBuf::from("digests"),
        formats: vec![Format::Html],
        email,
        webhook,
        retry: RetryPolicy {
            attempts: 3,
            base_delay: Duration::from_millis(10),
        },
        backlog: digest::DEFAULT_BACKLOG,
        max_per_rule: None,
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn digest_email_arrives_with_html_and_text_parts() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut store = golden_store(&dir.path().join("news.db"));
    let d = golden_digest(&mut store);
    let smtp = SmtpServer::start();
    let pw = dir.path().join("smtp-password");
    std::fs::write(&pw, "s3cret\n").expect("pw");
    let email = EmailSettings {
        host: "127.0.0.1".into(),
        port: smtp.port,
        security: EmailSecurity::Plain,
        from: "newswatch <newswatch@example.org>".into(),
        to: vec!["analyst@example.org".into()],
        username: None,
        password: Some(digest::SecretSource::File(pw)),
        timeout: Duration::from_secs(10),
    };
    let reports = rt().block_on(digest::deliver(&d, &settings(Some(email), None)));
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].result, Ok(()), "{reports:?}");
    assert_eq!(reports[0].attempts, 1);
    let data = smtp.data.lock().expect("data").clone();
    assert_eq!(data.len(), 1, "one message");
    let msg = qp_decode(&data[0]);
    assert!(
        msg.contains("Subject: newswatch digest 2015-11-09: 4 new matches"),
        "{msg}"
    );
    assert!(msg.contains("multipart/alternative"), "{msg}");
    assert!(
        msg.contains("text/plain") && msg.contains("text/html"),
        "{msg}"
    );
    assert!(
        msg.contains("NCA arrests suspects in dark web drugs probe"),
        "{msg}"
    );
    assert!(msg.contains("<mark"), "html part: {msg}");
    let log = smtp.log.lock().expect("log").clone();
    assert!(
        log.iter()
            .any(|c| c.starts_with("RCPT TO:<analyst@example.org>")),
        "{log:?}"
    );
}

#[test]
fn digest_email_refuses_plain_smtp_to_a_remote_host_and_reports_missing_password() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut store = golden_store(&dir.path().join("news.db"));
    let d = golden_digest(&mut store);
    let email = EmailSettings {
        host: "mail.example.org".into(),
        port: 25,
        security: EmailSecurity::Plain,
        from: "newswatch@example.org".into(),
        to: vec!["analyst@example.org".into()],
        username: None,
        password: None,
        timeout: Duration::from_secs(1),
    };
    let mut s = settings(Some(email.clone()), None);
    s.retry.attempts = 2;
    let r = rt().block_on(digest::deliver(&d, &s));
    assert_eq!(r[0].attempts, 2, "bounded attempts");
    assert!(
        r[0].result
            .as_ref()
            .is_err_and(|e| e.contains("refusing unencrypted")),
        "{r:?}"
    );

    let missing = digest::SecretSource::Env("NEWSWATCH_TEST_SURELY_UNSET_PASSWORD".into());
    let err = missing.read().expect_err("unset");
    assert!(
        err.to_string()
            .contains("NEWSWATCH_TEST_SURELY_UNSET_PASSWORD"),
        "{err}"
    );
}

/// Read what is left of a request so closing does not reset the connection.
fn drain(stream: &mut std::net::TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
    let mut buf = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
    }
}

#[test]
fn digest_webhook_retries_after_a_500_then_succeeds() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut store = golden_store(&dir.path().join("news.db"));
    let d = golden_digest(&mut store);
    let server = TestServer::start();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    server.route(
        "/hook",
        Route::custom(move |_req, stream| {
            drain(stream);
            let n = c.fetch_add(1, Ordering::SeqCst);
            let status = if n == 0 { 500 } else { 200 };
            write_response(stream, status, &[], b"");
        }),
    );
    let hook = WebhookSettings {
        url: url::Url::parse(&server.url("/hook")).expect("url"),
        timeout: Duration::from_secs(10),
    };
    let reports = rt().block_on(digest::deliver(&d, &settings(None, Some(hook))));
    assert_eq!(reports[0].result, Ok(()), "{reports:?}");
    assert_eq!(reports[0].attempts, 2);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    let reqs = server.requests("/hook");
    assert_eq!(reqs.len(), 2);
    let json = digest::render(&d, Format::Json);
    for r in &reqs {
        assert_eq!(r.method, "POST");
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(
            r.header("content-length"),
            Some(json.len().to_string().as_str()),
            "the JSON digest is the body"
        );
    }
}

#[test]
fn digest_webhook_gives_up_after_bounded_attempts() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut store = golden_store(&dir.path().join("news.db"));
    let d = golden_digest(&mut store);
    let server = TestServer::start();
    server.route(
        "/hook",
        Route::custom(|_req, stream| {
            drain(stream);
            write_response(stream, 500, &[], b"down");
        }),
    );
    let hook = WebhookSettings {
        url: url::Url::parse(&server.url("/hook")).expect("url"),
        timeout: Duration::from_secs(10),
    };
    let started = std::time::Instant::now();
    let reports = rt().block_on(digest::deliver(&d, &settings(None, Some(hook))));
    assert_eq!(reports[0].attempts, 3);
    assert!(
        reports[0]
            .result
            .as_ref()
            .is_err_and(|e| e.contains("HTTP 500")),
        "{reports:?}"
    );
    assert_eq!(server.hits("/hook"), 3);
    assert!(
        started.elapsed() >= Duration::from_millis(30),
        "backoff 10 ms + 20 ms"
    );
}

// ---------------------------------------------------------------------------------------------
// CLI

/// A project whose database is the golden fixture (config without rules: no matcher needed).
pub fn golden_project() -> Project {
    let project = Project::new(
        "[storage]\npath = \"data/news.db\"\n[schedule]\ntimezone = \"Europe/London\"\n",
    );
    drop(golden_store(&project.path("data/news.db")));
    project.seed_postgres(&project.path("data/news.db"));
    project
}

#[test]
fn digest_cli_prints_formats_writes_files_and_checks_arguments() {
    let project = golden_project();
    let (code, md, err) = project.run(&["digest", "--date", "2015-11-09"]);
    assert_eq!(code, 0, "{err}");
    assert!(md.starts_with("# newswatch digest 2015-11-09\n"), "{md}");
    assert!(md.contains("**4 new matches**"), "{md}");

    let (code, _, err) = project.run(&[
        "digest",
        "--date",
        "2015-11-09",
        "--format",
        "html",
        "--out",
        "out/d.html",
    ]);
    assert_eq!(code, 0, "{err}");
    let html = read(&project.path("out/d.html"));
    assert!(
        html.starts_with("<!DOCTYPE html>") && html.contains("<mark"),
        "{html}"
    );
    let files: Vec<_> = std::fs::read_dir(project.path("out"))
        .expect("dir")
        .collect();
    assert_eq!(files.len(), 1, "no temp file left");

    let (code, json, _) = project.run(&[
        "digest",
        "--date",
        "2015-11-09",
        "--rule",
        "gchq",
        "--format",
        "json",
    ]);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&json).expect("json");
    assert_eq!(v["rule"], "gchq");
    assert_eq!(v["total"], 2);

    let (code, text, _) = project.run(&["digest", "--date", "2015-11-12", "--format", "text"]);
    assert_eq!(code, 0);
    assert!(
        text.contains("No new matches between 2015-11-12 00:00 GMT and 2015-11-13 00:00 GMT."),
        "{text}"
    );

    // The default period is the last 24 h of the wall clock: the 2015 fixture is all older.
    let (code, md, _) = project.run(&["digest"]);
    assert_eq!(code, 0);
    assert!(md.contains("No new matches between"), "{md}");

    let (code, _, err) = project.run(&["digest", "--rule", "nope"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no rule named \"nope\""), "{err}");
    let (code, _, err) = project.run(&["digest", "--since", "24h", "--date", "2015-11-09"]);
    assert_eq!(code, 2, "conflicting flags: {err}");
}

#[test]
fn digest_cli_without_a_database_reports_a_quiet_period_and_creates_nothing() {
    let project = Project::new("[storage]\npath = \"data/news.db\"\n");
    let (code, out, err) = project.run(&["digest", "--since", "7d", "--format", "text"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("No new matches between"), "{out}");
    assert!(!project.path("data/news.db").exists());
}

/// Polls the fixture feeds through the real binary, then digests them.
#[test]
fn digest_after_real_poll_lists_fixture_matches() {
    let server = TestServer::start();
    crate::cli_poll::serve_fixtures(&server);
    // The fixtures are from 2015: a backlog long enough to digest them on a first poll.
    let project = Project::new(&format!(
        "{}\n[digest]\nbacklog = \"36500d\"\n",
        crate::cli_poll::config(&server)
    ));
    let (code, _, err) = project.run(&["poll"]);
    assert_eq!(code, 0, "{err}");
    let (code, md, err) = project.run(&["digest", "--since", "1h"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        md.contains("NCA arrests suspects in dark web drugs probe"),
        "{md}"
    );
    assert!(
        md.contains("**NCA**") || md.contains("**dark web**"),
        "matched terms emphasised: {md}"
    );
    assert!(
        md.contains("## Feed problems") && md.contains("gone"),
        "{md}"
    );
}

// ---------------------------------------------------------------------------------------------
// Issue 12 item 22 and 25: section order, backlog, cap, Markdown `&`.

/// A project with `config` after `[storage]`, its database filled by `build`.
fn digest_project(config: &str, build: impl FnOnce(&mut Store)) -> Project {
    let project = Project::new(&format!(
        "[storage]\npath = \"data/news.db\"\n[schedule]\ntimezone = \"Europe/London\"\n{config}"
    ));
    let mut store = open_store(&project.path("data/news.db"));
    build(&mut store);
    drop(store);
    project.seed_postgres(&project.path("data/news.db"));
    project
}

fn json_digest(project: &Project, args: &[&str]) -> Value {
    let mut all = vec!["digest", "--format", "json"];
    all.extend_from_slice(args);
    let (code, out, err) = project.run(&all);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).expect("digest json")
}

fn section_rules(d: &Value) -> Vec<String> {
    d["sections"]
        .as_array()
        .expect("sections")
        .iter()
        .filter_map(|s| s["rule"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn digest_rule_sections_follow_the_config_rule_order_not_the_alphabet() {
    let project = golden_project();
    // joc is not in this config any more: its section comes after the configured ones.
    project.write_config(
        "[storage]\npath = \"data/news.db\"\n[schedule]\ntimezone = \"Europe/London\"\n\
         [[rules]]\nname = \"nca\"\nquery = 'NCA'\n\
         [[rules]]\nname = \"ipb\"\nquery = '\"Investigatory Powers Bill\"'\n\
         [[rules]]\nname = \"gchq\"\nquery = 'GCHQ'\n\
         [[rules]]\nname = \"darkweb\"\nquery = '\"dark web\"'\n",
    );
    let d = json_digest(&project, &["--date", "2015-11-09"]);
    assert_eq!(
        section_rules(&d),
        vec!["nca", "ipb", "gchq", "darkweb", "joc"]
    );
    // A story is shown in full under the first section in that order.
    let nca = &d["sections"][0]["entries"];
    assert!(
        nca.as_array()
            .expect("entries")
            .iter()
            .all(|e| e["listed_under"] == "nca"),
        "{nca}"
    );
}

#[test]
fn digest_leaves_out_a_new_feeds_backlog_but_query_still_finds_it() {
    let build = |s: &mut Store| {
        commit(
            s,
            "uknews",
            "2015-11-09T09:00:00Z",
            &[
                Story {
                    guid: "old",
                    link: "https://uknews.example/old",
                    title: "NCA story from last month",
                    published: Some("2015-10-01T09:00:00Z"),
                    snippet: "The NCA said so in October.",
                    rules: &[("nca", &["NCA"])],
                },
                Story {
                    guid: "new",
                    link: "https://uknews.example/new",
                    title: "NCA story from this morning",
                    published: Some("2015-11-09T07:00:00Z"),
                    snippet: "The NCA said so today.",
                    rules: &[("nca", &["NCA"])],
                },
                Story {
                    guid: "undated",
                    link: "https://uknews.example/undated",
                    title: "NCA story without a date",
                    published: None,
                    snippet: "The NCA said so at some point.",
                    rules: &[("nca", &["NCA"])],
                },
            ],
        );
        // A later poll of the same feed: an entry is judged against the feed's *first* poll
        // (published 5 days before it: within the backlog, so digested).
        commit(
            s,
            "uknews",
            "2015-11-09T15:00:00Z",
            &[Story {
                guid: "late",
                link: "https://uknews.example/late",
                title: "NCA story added late, dated last week",
                published: Some("2015-11-04T09:00:00Z"),
                snippet: "The NCA said so last week.",
                rules: &[("nca", &["NCA"])],
            }],
        );
    };
    let titles = |d: &Value| -> Vec<String> {
        let mut t: Vec<String> = d["sections"][0]["entries"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e["title"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        t.sort();
        t
    };
    let project = digest_project("", build);
    let d = json_digest(&project, &["--date", "2015-11-09"]);
    assert_eq!(
        titles(&d),
        vec![
            "NCA story added late, dated last week",
            "NCA story from this morning",
            "NCA story without a date"
        ],
        "default backlog 7 days"
    );
    assert_eq!(project.query_json(&[]).len(), 4, "stored and searchable");
    let project = digest_project("[digest]\nbacklog = \"60d\"\n", build);
    let d = json_digest(&project, &["--date", "2015-11-09"]);
    assert_eq!(titles(&d).len(), 4, "a longer backlog digests it");
    // The scheduled digest applies the same rule.
    let dir = tempfile::tempdir().expect("tmp");
    let mut store = open_store(&dir.path().join("news.db"));
    build(&mut store);
    let opts = DigestOptions {
        backlog: Some(digest::DEFAULT_BACKLOG),
        ..DigestOptions::default()
    };
    let run = digest::write_scheduled(
        &store,
        &dir.path().join("out"),
        &[],
        &opts,
        TZ,
        t("2015-11-09T20:00:00Z"),
    )
    .expect("scheduled");
    assert_eq!(run.digest.total, 3);
}

#[test]
fn digest_caps_each_rule_section_and_says_how_to_see_the_rest() {
    let build = |s: &mut Store| {
        let guids = ["a", "b", "c", "d", "e"];
        let stories: Vec<Story> = guids
            .iter()
            .enumerate()
            .map(|(i, g)| Story {
                guid: g,
                link: [
                    "https://x.example/a",
                    "https://x.example/b",
                    "https://x.example/c",
                    "https://x.example/d",
                    "https://x.example/e",
                ][i],
                title: ["NCA one", "NCA two", "NCA three", "NCA four", "NCA five"][i],
                published: None,
                snippet: "NCA.",
                rules: &[("nca", &["NCA"])],
            })
            .collect();
        commit(s, "uknews", "2015-11-09T09:00:00Z", &stories);
    };
    let project = digest_project("[digest]\nmax_per_rule = 2\n", build);
    let (code, md, err) = project.run(&["digest", "--date", "2015-11-09"]);
    assert_eq!(code, 0, "{err}");
    assert!(md.contains("## nca (5)"), "{md}");
    assert_eq!(md.matches("\n### ").count(), 2, "{md}");
    assert!(
        md.contains("_and 3 more — newswatch query --rule nca_"),
        "{md}"
    );
    let (_, text, _) = project.run(&["digest", "--date", "2015-11-09", "--format", "text"]);
    assert!(
        text.contains("and 3 more — newswatch query --rule nca"),
        "{text}"
    );
    let (_, html, _) = project.run(&["digest", "--date", "2015-11-09", "--format", "html"]);
    assert!(
        html.contains("and 3 more — newswatch query --rule nca"),
        "{html}"
    );
    let d = json_digest(&project, &["--date", "2015-11-09"]);
    assert_eq!(d["sections"][0]["more"], 3);
    assert_eq!(d["counts"][0]["count"], 5);
    // max_per_rule = 0: no cap.
    let project = digest_project("[digest]\nmax_per_rule = 0\n", build);
    let d = json_digest(&project, &["--date", "2015-11-09"]);
    assert_eq!(
        d["sections"][0]["entries"].as_array().map(Vec::len),
        Some(5)
    );
}

#[test]
fn markdown_digest_escapes_ampersand_in_feed_text() {
    let project = digest_project("", |s| {
        commit(
            s,
            "uknews",
            "2015-11-09T09:00:00Z",
            &[Story {
                guid: "amp",
                link: "https://uknews.example/amp",
                title: "AT&T &amp; the NCA",
                published: None,
                snippet: "AT&T told the NCA &lt;nothing&gt;.",
                rules: &[("nca", &["NCA"])],
            }],
        );
    });
    let (code, md, err) = project.run(&["digest", "--date", "2015-11-09"]);
    assert_eq!(code, 0, "{err}");
    assert!(md.contains("AT\\&T \\&amp; the NCA"), "{md}");
    assert!(
        md.contains("\\&lt;nothing\\&gt;"),
        "no entity survives unescaped: {md}"
    );
    assert!(!md.contains(" &amp;") && !md.contains("AT&T"), "{md}");
}
