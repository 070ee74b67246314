//! Issue 12, "Text and stories lost" (items 1, 4, 4b, and 25's title cap), through the real
//! binary: each feed is a `file://` document written into the project, polled with `poll`, and
//! read back with `query` / `feeds`.

use serde_json::Value;

use crate::support::Project;

/// A project polling the given `(name, file name, document)` feeds with the rule `query`.
fn project(feeds: &[(&str, &str, &str)], query: &str) -> Project {
    let p = Project::new("");
    let mut config = String::from("[storage]\npath = \"data/news.db\"\n");
    for (name, file, body) in feeds {
        std::fs::write(p.path(file), body).expect("write feed");
        let url = url::Url::from_file_path(p.path(file)).expect("file url");
        config.push_str(&format!("[[feeds]]\nname = \"{name}\"\nurl = \"{url}\"\n"));
    }
    config.push_str(&format!("[[rules]]\nname = \"r\"\nquery = '{query}'\n"));
    p.write_config(&config);
    p
}

fn poll(p: &Project) -> String {
    let (code, out, err) = p.run(&["poll"]);
    assert_eq!(code, 0, "poll failed: {out}\n{err}");
    format!("{out}\n{err}")
}

fn titles(p: &Project) -> Vec<String> {
    let mut t: Vec<String> = p
        .query_json(&[])
        .iter()
        .map(|m| m["title"].as_str().unwrap_or("").to_string())
        .collect();
    t.sort();
    t
}

fn rss(items: &str) -> String {
    format!("<rss version=\"2.0\"><channel><title>T</title>{items}</channel></rss>")
}

#[test]
fn raw_html_in_rss_description_is_matched() {
    // Item 1: unescaped markup (not CDATA) inside <description> stored and matched nothing.
    let p = project(
        &[(
            "raw",
            "raw.rss",
            &rss(
                "<item><title>Raid</title><link>https://example.org/a</link>\
                  <description><p>The police said <b>GCHQ</b> helped.</p></description></item>\
                  <item><title>Other</title><link>https://example.org/b</link>\
                  <description><p>Nothing to see</p></description></item>",
            ),
        )],
        "police AND GCHQ",
    );
    poll(&p);
    let matches = p.query_json(&[]);
    assert_eq!(matches.len(), 1, "{matches:?}");
    assert_eq!(matches[0]["title"], "Raid");
    assert_eq!(matches[0]["snippet"], "The police said GCHQ helped.");
}

#[test]
fn media_description_is_matched_when_the_entry_has_no_other_summary() {
    // Item 1: MediaRSS (YouTube-style media:group) and iTunes text.
    let p = project(
        &[(
            "video",
            "video.rss",
            "<rss version=\"2.0\" xmlns:media=\"http://search.yahoo.com/mrss/\" \
             xmlns:itunes=\"http://www.itunes.com/DTDs/Podcast-1.0.dtd\"><channel><title>V</title>\
             <item><title>Clip</title><link>https://example.org/v</link><media:group>\
             <media:content url=\"https://example.org/v.mp4\"/>\
             <media:description>Interview about GCHQ</media:description></media:group></item>\
             <item><link>https://example.org/m</link><media:title>GCHQ media title</media:title></item>\
             <item><title>Episode</title><link>https://example.org/e</link>\
             <itunes:summary>Podcast on GCHQ</itunes:summary></item>\
             </channel></rss>",
        )],
        "GCHQ",
    );
    poll(&p);
    assert_eq!(titles(&p), ["Clip", "Episode", "GCHQ media title"]);
}

#[test]
fn text_inside_script_and_style_is_not_matchable() {
    // Item 4b: script/style content is code, not story text — raw, escaped or in CDATA.
    let p = project(
        &[(
            "code",
            "code.rss",
            &rss("<item><title>Raw</title><link>https://example.org/1</link>\
                  <description><p>Plain</p><script>var GCHQ = 1;</script>\
                  <style>.GCHQ { color: red }</style></description></item>\
                  <item><title>Escaped</title><link>https://example.org/2</link>\
                  <description>&lt;script&gt;GCHQ()&lt;/script&gt; words</description></item>\
                  <item><title>Cdata</title><link>https://example.org/3</link>\
                  <description><![CDATA[<style>#GCHQ{}</style> text]]></description></item>\
                  <item><title>Control</title><link>https://example.org/4</link>\
                  <description><p>GCHQ in the text</p><script>x()</script></description></item>"),
        )],
        "GCHQ",
    );
    poll(&p);
    assert_eq!(titles(&p), ["Control"]);
}

#[test]
fn json_feed_lone_surrogate_keeps_every_item_and_says_which() {
    // Item 4: one "\ud800" failed the whole JSON Feed ("no items array"); every item was lost.
    let body = r#"{"version": "https://jsonfeed.org/version/1.1", "title": "J", "items": [
        {"id": "a1", "url": "https://example.org/1", "title": "GCHQ first", "content_text": "x"},
        {"id": "a2", "url": "https://example.org/2", "title": "GCHQ bad \ud800 one", "content_text": "y"},
        {"id": "a3", "url": "https://example.org/3", "title": "GCHQ third", "content_text": "z"}]}"#;
    let p = project(&[("jsonfeed", "feed.json", body)], "GCHQ");
    let output = poll(&p);
    assert_eq!(
        titles(&p),
        ["GCHQ bad \u{FFFD} one", "GCHQ first", "GCHQ third"]
    );
    let warning = output
        .lines()
        .find(|l| l.contains("U+FFFD"))
        .unwrap_or_else(|| panic!("no warning about the repair in:\n{output}"));
    assert!(warning.contains("item 2 (a2)"), "{warning}");
    assert!(
        warning.contains("jsonfeed"),
        "the warning names the feed: {warning}"
    );
}

#[test]
fn document_with_items_but_no_entries_is_a_failure_not_ok() {
    // Item 4b: documents with <item>/<entry> elements were "ok, 0 entries".
    let p = project(
        &[(
            "noid",
            "noid.rdf",
            "<rdf:RDF xmlns:rdf=\"http://www.w3.org/1999/02/22-rdf-syntax-ns#\" \
             xmlns=\"http://purl.org/rss/1.0/\"><channel><title>C</title></channel>\
             <item><title>GCHQ without link or rdf:about</title></item></rdf:RDF>",
        )],
        "GCHQ",
    );
    let (code, out, err) = p.run(&["poll"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = p.run(&["feeds", "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let feeds: Vec<Value> = serde_json::from_str(&out).expect("feeds json");
    assert_eq!(feeds[0]["last_status"], "failed", "{out}");
    let reason = feeds[0]["last_error"].as_str().unwrap_or("");
    assert!(
        reason.contains("1 <item> element(s) but no entry could be read"),
        "{reason}"
    );
}

#[test]
fn atom_0_3_feeds_are_read() {
    // Item 4b: 206 of feedparser's documents are Atom 0.3; newswatch read none of them.
    let p = project(
        &[(
            "old",
            "old.atom",
            "<feed version=\"0.3\" xmlns=\"http://purl.org/atom/ns#\"><title>Old blog</title>\
             <entry><title>Escaped</title><link rel=\"alternate\" href=\"https://example.org/1\"/>\
             <id>tag:example.org,2004:1</id><issued>2004-01-02T03:04:05Z</issued>\
             <content type=\"text/html\" mode=\"escaped\">&lt;p&gt;About GCHQ&lt;/p&gt;</content></entry>\
             <entry><title>Base64</title><link rel=\"alternate\" href=\"https://example.org/2\"/>\
             <id>tag:example.org,2004:2</id>\
             <summary type=\"text/plain\" mode=\"base64\">QWxzbyBHQ0hR</summary></entry>\
             </feed>",
        )],
        "GCHQ",
    );
    poll(&p);
    let matches = p.query_json(&[]);
    let mut got: Vec<(String, String)> = matches
        .iter()
        .map(|m| {
            (
                m["title"].as_str().unwrap_or("").to_string(),
                m["published"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("Base64".to_string(), String::new()),
            (
                "Escaped".to_string(),
                "2004-01-02T03:04:05.000Z".to_string()
            ),
        ]
    );
}

#[test]
fn long_titles_are_length_capped() {
    // Item 25: summaries and contents were capped at 64 Ki characters, titles not at all.
    let title = format!("GCHQ {}", "word ".repeat(50_000));
    let p = project(
        &[(
            "long",
            "long.rss",
            &rss(&format!(
                "<item><title>{title}</title><link>https://example.org/l</link></item>"
            )),
        )],
        "GCHQ",
    );
    poll(&p);
    let matches = p.query_json(&[]);
    let stored = matches[0]["title"].as_str().unwrap_or("");
    assert_eq!(
        stored.chars().count(),
        newswatch::service::poll::MAX_STORED_TITLE + 1
    );
    assert!(stored.starts_with("GCHQ word") && stored.ends_with('…'));
}
