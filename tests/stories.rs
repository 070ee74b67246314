//! Stories through the real binary (issue 13): the labelled evaluation set served over
//! loopback in two polls, B-cubed and pairwise figures from what `query --format json` says;
//! `query --stories`, `story show/split/merge` surviving a re-poll, `show`'s explanation,
//! `mark --story`, stats, a digest listing a three-outlet story once, an Atom export updated in
//! place, and hostile inputs (500 near-empty entries, no dates, empty titles).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::support::server::{Route, TestServer};
use crate::support::{Project, read};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/stories")
}

/// link → event (`None`: background, an event of its own).
fn labels() -> HashMap<String, Option<String>> {
    read(&fixtures().join("labels.tsv"))
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (
                f[1].to_string(),
                Some(f[2].to_string()).filter(|e| !e.is_empty()),
            )
        })
        .collect()
}

pub(crate) fn serve_poll(server: &TestServer, poll: u32) {
    for entry in std::fs::read_dir(fixtures().join(format!("poll{poll}"))).expect("poll dir") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("name")
            .to_string();
        server.route(
            &format!("/{name}"),
            Route::ok("application/rss+xml", std::fs::read(&path).expect("read")),
        );
    }
}

/// Every feed of the set (poll 2 has them all), and a rule that every report matches: the
/// background entries become matches too, each its own event, so a wrong merge with one of
/// them costs precision.
pub(crate) fn eval_project(server: &TestServer) -> Project {
    let mut config =
        String::from("[storage]\npath = \"news.db\"\n[digest]\nbacklog = \"36500d\"\n");
    let mut names: Vec<String> = std::fs::read_dir(fixtures().join("poll2"))
        .expect("poll2")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    names.sort();
    for name in &names {
        config.push_str(&format!(
            "\n[[feeds]]\nname = \"{}\"\nurl = \"{}\"\n",
            name.trim_end_matches(".xml"),
            server.url(&format!("/{name}"))
        ));
    }
    config.push_str(
        "\n[[rules]]\nname = \"all\"\nquery = 'the OR a OR of OR to OR in OR and OR for OR on OR at OR is OR with OR by'\n",
    );
    Project::new(&config)
}

struct Figures {
    b_p: f64,
    b_r: f64,
    p_p: f64,
    p_r: f64,
}

fn f1(p: f64, r: f64) -> f64 {
    if p + r == 0.0 {
        0.0
    } else {
        2.0 * p * r / (p + r)
    }
}

/// B-cubed and pairwise precision/recall of `story` (item → story) against `event`.
fn score(rows: &[(String, i64)], event: &HashMap<String, String>) -> Figures {
    let (mut bp, mut br) = (0.0, 0.0);
    let (mut tp, mut fp, mut fneg) = (0u64, 0u64, 0u64);
    for (a, sa) in rows {
        let same_story: Vec<&String> = rows
            .iter()
            .filter(|(_, s)| s == sa)
            .map(|(b, _)| b)
            .collect();
        let same_event: Vec<&String> = rows
            .iter()
            .filter(|(b, _)| event[b] == event[a])
            .map(|(b, _)| b)
            .collect();
        let both = same_story.iter().filter(|b| event[**b] == event[a]).count() as f64;
        bp += both / same_story.len() as f64;
        br += both / same_event.len() as f64;
        for (b, sb) in rows {
            if a >= b {
                continue;
            }
            match (sa == sb, event[a] == event[b]) {
                (true, true) => tp += 1,
                (true, false) => fp += 1,
                (false, true) => fneg += 1,
                _ => {}
            }
        }
    }
    let n = rows.len() as f64;
    Figures {
        b_p: bp / n,
        b_r: br / n,
        p_p: tp as f64 / (tp + fp).max(1) as f64,
        p_r: tp as f64 / (tp + fneg).max(1) as f64,
    }
}

#[test]
fn stories_of_the_labelled_set_over_loopback_in_two_polls_reach_the_precision_and_f1_targets() {
    let server = TestServer::start();
    let p = eval_project(&server);
    serve_poll(&server, 1);
    assert_eq!(p.run(&["poll"]).0, 0);
    serve_poll(&server, 2);
    let (code, _, err) = p.run(&["poll"]);
    assert_eq!(code, 0, "{err}");
    let labels = labels();
    let rows = p.query_json(&["--limit", "100000"]);
    let mut stored: Vec<(String, i64)> = Vec::new();
    let mut event: HashMap<String, String> = HashMap::new();
    for r in &rows {
        let link = r["link"].as_str().expect("link").to_string();
        let Some(label) = labels.get(&link) else {
            panic!("unlabelled item {link}");
        };
        event.insert(
            link.clone(),
            label.clone().unwrap_or_else(|| format!("bg:{link}")),
        );
        stored.push((link, r["story"].as_i64().expect("story")));
        assert!(r["story_size"].as_i64().is_some_and(|n| n >= 1));
    }
    let reports = stored.iter().filter(|(l, _)| labels[l].is_some()).count();
    assert!(reports >= 140, "the labelled reports are stored: {reports}");
    let f = score(&stored, &event);
    eprintln!(
        "stories over loopback, {} items ({} reports of {} events + background): \
         B-cubed P {:.3} R {:.3} F1 {:.3}; pairwise P {:.3} R {:.3} F1 {:.3}",
        stored.len(),
        reports,
        labels
            .values()
            .flatten()
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        f.b_p,
        f.b_r,
        f1(f.b_p, f.b_r),
        f.p_p,
        f.p_r,
        f1(f.p_p, f.p_r)
    );
    assert!(f.b_p >= 0.98, "B-cubed precision {:.3}", f.b_p);
    assert!(
        f1(f.b_p, f.b_r) >= 0.90,
        "B-cubed F1 {:.3}",
        f1(f.b_p, f.b_r)
    );
}

// ---------------------------------------------------------------------------------------------
// The workflow on a small set of three outlets.

fn rss(site: &str, items: &[(&str, &str, &str, &str)]) -> String {
    let mut s = format!(
        "<?xml version=\"1.0\"?><rss version=\"2.0\"><channel><title>{site}</title><link>https://{site}/</link>"
    );
    for (id, title, date, text) in items {
        s.push_str(&format!(
            "<item><guid isPermaLink=\"false\">{id}</guid><link>https://{site}/{id}</link><title>{title}</title><pubDate>{date}</pubDate><description>{text}</description></item>"
        ));
    }
    // Like any real outlet's feed, the rest of the day's news (matching no rule): what the
    // document frequencies that weigh words learn from.
    for (k, (topic, text)) in BACKGROUND.iter().enumerate() {
        s.push_str(&format!(
            "<item><guid isPermaLink=\"false\">bg-{k}</guid><link>https://{site}/bg-{k}</link><title>{topic}</title><pubDate>Mon, 09 Nov 2015 0{}:00:00 GMT</pubDate><description>{text}</description></item>",
            k % 10
        ));
    }
    s.push_str("</channel></rss>");
    s
}

/// Other news of the day, one line each.
const BACKGROUND: &[(&str, &str)] = &[
    (
        "Council approves new cycle lanes",
        "Councillors voted to build protected cycle lanes on the ring road by spring.",
    ),
    (
        "Football club wins derby in injury time",
        "A header in the 93rd minute settled the derby in front of a sell-out crowd.",
    ),
    (
        "Flood defences finished ahead of winter",
        "The Environment Agency completed a new flood wall along the river.",
    ),
    (
        "Library reopens after refurbishment",
        "The central library reopened with a new children's area and a cafe.",
    ),
    (
        "Rail works close the line this weekend",
        "Replacement buses will run between the two stations on Saturday and Sunday.",
    ),
    (
        "Storm brings heavy rain and power cuts",
        "Thousands of homes lost power and roads flooded as the storm crossed the north.",
    ),
    (
        "Market traders report a busy season",
        "Stallholders said footfall was up on last year in the run-up to Christmas.",
    ),
    (
        "Review: a mid-range phone with a huge battery",
        "The handset lasts two days between charges and has a good camera for its price.",
    ),
    (
        "How to choose a NAS for a small office",
        "We compare four network storage boxes on speed, noise and backup software.",
    ),
    (
        "Black Friday deals on laptops and monitors",
        "The best discounts we found on hardware for home workers.",
    ),
    (
        "Opinion: why IT projects overrun",
        "Scope creep and optimism bias are the usual culprits; here is how to plan for them.",
    ),
    (
        "Clocks go back tonight",
        "British Summer Time ends at two in the morning.",
    ),
    (
        "Rugby World Cup final won at Twickenham",
        "New Zealand beat Australia to keep the trophy.",
    ),
    (
        "Bond film tops the box office again",
        "Spectre keeps the lead for a second week running.",
    ),
    (
        "Winter fuel payments arrive",
        "Pensioners receive the payments this month, the department said.",
    ),
    (
        "Davis Cup: Britain win in Ghent",
        "Andy Murray sealed the first win since 1936.",
    ),
    (
        "Star Wars premiere draws crowds",
        "Fans queued in Leicester Square for the new film.",
    ),
    (
        "Last posting dates for Christmas",
        "Second class post must be sent by Friday to arrive in time.",
    ),
    (
        "Interest rates held at record low",
        "The Bank of England kept rates at half a percent for another month.",
    ),
    (
        "Supermarket price war deepens",
        "Discounters took market share from the big four grocers again.",
    ),
];

const JOC_TEXT: &str = "GCHQ and the National Crime Agency opened a Joint Operations Cell in \
    Warrington to tackle child sexual exploitation and serious crime on the dark web, bringing \
    together officers and analysts from both agencies, the NCA said on Monday.";

fn three_outlets() -> (TestServer, Project) {
    let server = TestServer::start();
    server.route(
        "/a.rss",
        Route::ok(
            "application/rss+xml",
            rss(
                "computerweekly.example",
                &[(
                    "a1",
                    "GCHQ and NCA join forces to police dark web",
                    "Mon, 09 Nov 2015 10:00:00 GMT",
                    JOC_TEXT,
                )],
            ),
        ),
    );
    server.route(
        "/b.rss",
        Route::ok(
            "application/rss+xml",
            rss(
                "securityaffairs.example",
                &[(
                    "b1",
                    "GCHQ and NCA hunting criminals in the dark web",
                    "Tue, 10 Nov 2015 08:00:00 GMT",
                    "The UK GCHQ and the National Crime Agency opened a Joint Operations Cell in \
                     Warrington to tackle child sexual exploitation and serious crime on the dark \
                     web, bringing together officers and analysts from both agencies.",
                )],
            ),
        ),
    );
    // The third outlet is added later (second poll).
    let config = |with_c: bool| {
        let mut c = format!(
            "[storage]\npath = \"news.db\"\n[digest]\nbacklog = \"36500d\"\n\n[[feeds]]\nname = \"computerweekly\"\nurl = \"{}\"\n\n[[feeds]]\nname = \"securityaffairs\"\nurl = \"{}\"\n",
            server.url("/a.rss"),
            server.url("/b.rss")
        );
        if with_c {
            c.push_str(&format!(
                "\n[[feeds]]\nname = \"theregister\"\nurl = \"{}\"\n",
                server.url("/c.rss")
            ));
        }
        c.push_str("\n[[rules]]\nname = \"nca\"\nquery = 'NCA OR \"National Crime Agency\"'\n");
        c
    };
    let p = Project::new(&config(false));
    assert_eq!(p.run(&["poll"]).0, 0);
    server.route(
        "/c.rss",
        Route::ok(
            "application/rss+xml",
            rss(
                "theregister.example",
                &[(
                    "c1",
                    "Spooks and cops open dark web crime cell in Warrington",
                    "Mon, 09 Nov 2015 16:00:00 GMT",
                    "GCHQ and the NCA have opened a Joint Operations Cell in Warrington to go \
                     after serious crime on the dark web, the agencies said.",
                )],
            ),
        ),
    );
    p.write_config(&config(true));
    assert_eq!(p.run(&["poll"]).0, 0);
    (server, p)
}

#[test]
fn three_outlets_in_two_polls_are_one_story_everywhere_a_person_reads() {
    let (_server, p) = three_outlets();
    let rows = p.query_json(&[]);
    assert_eq!(rows.len(), 3, "each outlet's report stays its own item");
    let story = rows[0]["story"].clone();
    assert!(rows.iter().all(|r| r["story"] == story), "{rows:?}");
    assert!(rows.iter().all(|r| r["story_size"] == 3));

    // query --stories: one row per story.
    let (code, out, _) = p.run(&["query", "--stories", "--format", "json"]);
    assert_eq!(code, 0);
    let stories: Value = serde_json::from_str(&out).expect("json");
    let stories = stories.as_array().expect("array");
    assert_eq!(stories.len(), 1, "{out}");
    assert_eq!(stories[0]["size"], 3);
    assert_eq!(stories[0]["outlets"].as_array().map(Vec::len), Some(3));
    let (code, table, _) = p.run(&["query", "--stories"]);
    assert_eq!(code, 0);
    assert!(
        table.contains("computerweekly") && table.contains("  3  "),
        "{table}"
    );

    // show says which story and why it joined.
    let joined = rows
        .iter()
        .find(|r| r["feeds"][0] == "theregister")
        .expect("the late outlet's report");
    let (code, show, _) = p.run(&["show", &joined["id"].to_string()]);
    assert_eq!(code, 0);
    assert!(show.contains(&format!("story {story}")), "{show}");
    assert!(show.contains("vs threshold"), "{show}");
    let (code, show, _) = p.run(&["show", &joined["id"].to_string(), "--format", "json"]);
    assert_eq!(code, 0);
    let show: Value = serde_json::from_str(&show).expect("json");
    assert_eq!(show["story"], story);
    assert!(show["story_evidence"]["score"].as_f64().is_some(), "{show}");

    // story show lists its reports.
    let (code, out, _) = p.run(&["story", "show", &story.to_string()]);
    assert_eq!(code, 0);
    assert_eq!(out.matches("[securityaffairs]").count(), 1, "{out}");
    assert!(out.contains("started this story"), "{out}");

    // stats counts stories as well as items.
    let (code, out, _) = p.run(&["stats", "--since", "36500d", "--format", "json"]);
    assert_eq!(code, 0);
    let stats: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(
        (stats["total"].clone(), stats["stories"].clone()),
        (3.into(), 1.into()),
        "{stats}"
    );

    // The digest lists the story once, with both other outlets.
    let (code, md, err) = p.run(&["digest", "--since", "36500d", "--format", "md"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(md.matches("also reported by").count(), 1, "{md}");
    for outlet in ["computerweekly", "securityaffairs", "theregister"] {
        assert!(md.contains(outlet), "{outlet} in {md}");
    }
    assert_eq!(
        md.matches("### ").count(),
        1,
        "one entry for the three reports: {md}"
    );

    // mark --story marks every report.
    let (code, _, err) = p.run(&["mark", "--story", &story.to_string(), "--read"]);
    assert_eq!(code, 0, "{err}");
    assert!(p.query_json(&[]).iter().all(|r| r["status"] == "read"));
}

#[test]
fn split_and_merge_survive_a_re_poll() {
    let (server, p) = three_outlets();
    let rows = p.query_json(&[]);
    let story = rows[0]["story"].as_i64().expect("story");
    let item = rows
        .iter()
        .find(|r| r["feeds"][0] == "theregister")
        .expect("report")["id"]
        .clone();
    let (code, out, err) = p.run(&["story", "split", &item.to_string()]);
    assert_eq!(code, 0, "{err}");
    let new_story: i64 = out
        .split_whitespace()
        .filter_map(|w| w.trim_end_matches('.').parse().ok())
        .next_back()
        .expect("the new story id in the output");
    // Re-poll with an edited text for the split report: it is re-scored, yet stays out.
    server.route(
        "/c.rss",
        Route::ok(
            "application/rss+xml",
            rss(
                "theregister.example",
                &[(
                    "c1",
                    "Spooks and cops open dark web crime cell in Warrington",
                    "Mon, 09 Nov 2015 16:00:00 GMT",
                    JOC_TEXT,
                )],
            ),
        ),
    );
    assert_eq!(p.run(&["poll"]).0, 0);
    let stories: BTreeMap<String, i64> = p
        .query_json(&[])
        .iter()
        .map(|r| {
            (
                r["feeds"][0].as_str().unwrap_or("").to_string(),
                r["story"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(stories["theregister"], new_story, "{stories:?}");
    assert_eq!(stories["computerweekly"], story);
    // Merge it back; a re-poll keeps the merge.
    let (code, _, err) = p.run(&["story", "merge", &story.to_string(), &new_story.to_string()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(p.run(&["poll"]).0, 0);
    assert!(p.query_json(&[]).iter().all(|r| r["story"] == story));
    // Bad arguments are usage errors naming the id.
    let (code, _, err) = p.run(&["story", "split", "999999"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("999999"), "{err}");
    let (code, _, err) = p.run(&["story", "merge", &story.to_string(), "424242"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("424242"), "{err}");
}

#[test]
fn atom_export_has_one_entry_per_story_updated_in_place_when_outlets_join() {
    let server = TestServer::start();
    server.route(
        "/a.rss",
        Route::ok(
            "application/rss+xml",
            rss(
                "computerweekly.example",
                &[(
                    "a1",
                    "GCHQ and NCA join forces to police dark web",
                    "Mon, 09 Nov 2015 10:00:00 GMT",
                    JOC_TEXT,
                )],
            ),
        ),
    );
    let p = Project::new(&format!(
        "[storage]\npath = \"news.db\"\n\n[[feeds]]\nname = \"computerweekly\"\nurl = \"{}\"\n\n[[feeds]]\nname = \"securityaffairs\"\nurl = \"{}\"\n\n[[rules]]\nname = \"nca\"\nquery = 'NCA'\n",
        server.url("/a.rss"),
        server.url("/b.rss")
    ));
    assert_eq!(p.run(&["poll"]).0, 0);
    let (_, first, _) = p.run(&["export", "--format", "atom"]);
    let id_of = |atom: &str| -> Vec<String> {
        atom.split("<entry>")
            .skip(1)
            .filter_map(|s| {
                s.split("<id>")
                    .nth(1)?
                    .split("</id>")
                    .next()
                    .map(String::from)
            })
            .collect()
    };
    let updated_of = |atom: &str| -> Vec<String> {
        atom.split("<entry>")
            .skip(1)
            .filter_map(|s| {
                s.split("<updated>")
                    .nth(1)?
                    .split("</updated>")
                    .next()
                    .map(String::from)
            })
            .collect()
    };
    assert_eq!(id_of(&first).len(), 1, "{first}");
    // Atom times are in seconds: let the clock pass the first export's second, so a change
    // of `updated` is visible (a condition with a deadline, not a sleep).
    let first_second = chrono::Utc::now().timestamp();
    crate::support::wait_until("the next second", std::time::Duration::from_secs(3), || {
        chrono::Utc::now().timestamp() > first_second
    });
    server.route(
        "/b.rss",
        Route::ok(
            "application/rss+xml",
            rss(
                "securityaffairs.example",
                &[(
                    "b1",
                    "GCHQ and NCA hunting criminals in the dark web",
                    "Tue, 10 Nov 2015 08:00:00 GMT",
                    JOC_TEXT,
                )],
            ),
        ),
    );
    assert_eq!(p.run(&["poll"]).0, 0);
    assert_eq!(p.query_json(&[]).len(), 2);
    let (_, second, _) = p.run(&["export", "--format", "atom"]);
    assert_eq!(id_of(&second), id_of(&first), "same entry id: {second}");
    assert_ne!(
        updated_of(&second),
        updated_of(&first),
        "a new <updated>: {second}"
    );
    assert!(
        second.contains("securityaffairs"),
        "the new outlet is listed: {second}"
    );
}

#[test]
fn five_hundred_near_empty_entries_and_undated_ones_never_become_one_story() {
    let server = TestServer::start();
    let items: Vec<(String, String, String, String)> = (0..500)
        .map(|i| {
            (
                format!("n{i}"),
                if i % 3 == 0 {
                    String::new()
                } else {
                    "NCA".to_string()
                },
                String::new(),
                if i % 2 == 0 {
                    "NCA".to_string()
                } else {
                    "NCA update".to_string()
                },
            )
        })
        .collect();
    let refs: Vec<(&str, &str, &str, &str)> = items
        .iter()
        .map(|(a, b, c, d)| (a.as_str(), b.as_str(), c.as_str(), d.as_str()))
        .collect();
    let doc = rss("thin.example", &refs).replace("<pubDate></pubDate>", "");
    server.route("/thin.rss", Route::ok("application/rss+xml", doc));
    let p = Project::new(&format!(
        "[storage]\npath = \"news.db\"\n\n[[feeds]]\nname = \"thin\"\nurl = \"{}\"\n\n[[rules]]\nname = \"nca\"\nquery = 'NCA'\n",
        server.url("/thin.rss")
    ));
    let (code, _, err) = p.run(&["poll"]);
    assert_eq!(code, 0, "{err}");
    let rows = p.query_json(&["--limit", "1000"]);
    assert_eq!(rows.len(), 500);
    let biggest = rows
        .iter()
        .map(|r| r["story_size"].as_i64().unwrap_or(0))
        .max()
        .unwrap_or(0);
    assert!(
        biggest < 50,
        "near-empty entries must not snowball into one story: {biggest}"
    );
}

#[test]
fn the_review_page_shows_a_story_once_with_each_outlets_report_and_acts_on_all_of_them() {
    let (_server, p) = three_outlets();
    let rows = p.query_json(&[]);
    let story = rows[0]["story"].as_i64().expect("story");
    let web = crate::web::Web::start(&p, &["serve", "--listen", "127.0.0.1:0"]);
    let page = crate::web::get(&web.addr, "/").body;
    assert_eq!(
        page.matches("<article class=\"story").count(),
        1,
        "one story card: {page}"
    );
    for outlet in ["computerweekly", "securityaffairs", "theregister"] {
        assert!(page.contains(outlet), "{outlet} in {page}");
    }
    // The story's buttons act on all three reports; each report has its own too.
    let mut ids: Vec<i64> = rows.iter().filter_map(|r| r["id"].as_i64()).collect();
    ids.sort_unstable();
    let all = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    assert!(page.contains(&format!("data-ids=\"{all}\"")), "{page}");
    for id in &ids {
        assert!(
            page.contains(&format!("name=\"ids\" value=\"{id}\"")),
            "a button for report {id} alone: {page}"
        );
    }
    let api = crate::web::get(&web.addr, "/api/v1/stories");
    let v: Value = serde_json::from_str(&api.body).expect("json");
    assert_eq!(v["stories"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v["stories"][0]["story"], story);
    assert_eq!(v["stories"][0]["story_size"], 3);
}
