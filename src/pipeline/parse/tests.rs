//! Unit tests for `parse_feed`: one per gap closed on top of feed-rs, plus hostile inputs.

use std::time::{Duration, Instant};

use super::*;

fn parse(body: &str) -> ParsedFeed {
    match parse_feed(body.as_bytes(), None, None) {
        Ok(f) => f,
        Err(e) => panic!("parse failed: {e}"),
    }
}

fn rss(items: &str) -> String {
    format!(
        "<?xml version=\"1.0\"?><rss version=\"2.0\"><channel><title>T</title>\
         <link>https://example.org/news/</link>{items}</channel></rss>"
    )
}

#[test]
fn basic_rss2() {
    let f = parse(&rss(
        "<ttl>30</ttl><item><title>A &amp; B</title><guid>g1</guid>\
         <link>https://example.org/a</link><description>&lt;p&gt;Hi&lt;/p&gt;</description>\
         <pubDate>Tue, 15 Nov 2022 20:15:04 GMT</pubDate><author>jo@example.org (Jo)</author></item>",
    ));
    assert_eq!(f.title.as_deref(), Some("T"));
    assert_eq!(f.ttl_minutes, Some(30));
    let e = &f.entries[0];
    assert_eq!(e.guid.as_deref(), Some("g1"));
    assert_eq!(e.title, "A & B");
    assert_eq!(e.summary, "<p>Hi</p>");
    assert_eq!(e.link.as_deref(), Some("https://example.org/a"));
    assert_eq!(e.published.map(|d| d.timestamp()), Some(1_668_543_304));
    assert_eq!(e.authors, vec!["Jo".to_string()]);
}

#[test]
fn missing_fields_are_empty_not_none_literal() {
    let f = parse(&rss("<item><link>https://example.org/x</link></item>"));
    let e = &f.entries[0];
    assert_eq!(
        (e.title.as_str(), e.summary.as_str(), e.content.as_str()),
        ("", "", "")
    );
}

#[test]
fn invented_ids_are_never_exposed() {
    // No link either: feed-rs would invent a random UUID on every parse.
    let f = parse(&rss(
        "<item><title>x</title></item><item><link>/y</link></item>",
    ));
    assert!(f.entries.iter().all(|e| e.guid.is_none()), "{f:?}");
    let atom = parse(
        "<feed xmlns=\"http://www.w3.org/2005/Atom\"><title>t</title>\
         <entry><title>e</title><id>urn:x</id></entry><entry><title>f</title></entry></feed>",
    );
    assert_eq!(atom.entries[0].guid.as_deref(), Some("urn:x"));
    assert_eq!(atom.entries[1].guid, None);
}

#[test]
fn rss_without_version() {
    let f = parse("<rss><channel><item><title>x</title></item></channel></rss>");
    assert_eq!(f.entries.len(), 1);
}

#[test]
fn bare_ampersand_and_html_entities() {
    let f = parse(&rss(
        "<item><title>AT&T &eacute;t&eacute;&nbsp;ok &copy; &bogus;</title></item>",
    ));
    assert_eq!(f.entries[0].title, "AT&T été\u{a0}ok © &bogus;");
}

#[test]
fn encoding_from_declaration() {
    let mut body = b"<?xml version=\"1.0\" encoding=\"windows-1251\"?><rss version=\"2.0\"><channel><item><title>".to_vec();
    body.extend_from_slice(b"\xcf\xf0\xe8\xe2\xe5\xf2"); // Привет
    body.extend_from_slice(b"</title></item></channel></rss>");
    let f = parse_feed(&body, Some("text/xml; charset=utf-8"), None);
    assert_eq!(
        f.map(|f| f.entries[0].title.clone()),
        Ok("Привет".to_string())
    );

    let latin1 = b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><rss version=\"2.0\"><channel><item><title>caf\xe9</title></item></channel></rss>";
    let f = parse_feed(latin1, None, None);
    assert_eq!(
        f.map(|f| f.entries[0].title.clone()),
        Ok("café".to_string())
    );
}

#[test]
fn encoding_from_http_header_only() {
    let body = b"<rss version=\"2.0\"><channel><item><title>caf\xe9</title></item></channel></rss>";
    let f = parse_feed(body, Some("application/rss+xml; charset=ISO-8859-1"), None);
    assert_eq!(
        f.map(|f| f.entries[0].title.clone()),
        Ok("café".to_string())
    );
}

#[test]
fn invalid_utf8_replaced() {
    // UTF-8 (é, è) with a stray byte: the byte becomes U+FFFD, the rest is kept.
    let body = b"<rss version=\"2.0\"><channel><item><title>\xc3\xa9\xc3\xa8 caf\xe9</title></item></channel></rss>";
    let f = parse_feed(body, None, None);
    assert_eq!(
        f.map(|f| f.entries[0].title.clone()),
        Ok("éè caf\u{FFFD}".to_string())
    );
    // No UTF-8 at all (an undeclared ISO-8859-1 feed): read as windows-1252.
    let body = b"<rss version=\"2.0\"><channel><item><title>caf\xe9</title></item></channel></rss>";
    let f = parse_feed(body, None, None);
    assert_eq!(
        f.map(|f| f.entries[0].title.clone()),
        Ok("café".to_string())
    );
}

#[test]
fn dates_fall_back_to_updated_and_bad_dates_are_none() {
    let atom = parse(
        "<feed xmlns=\"http://www.w3.org/2005/Atom\"><entry><id>1</id>\
         <updated>2024-01-02T03:04:05Z</updated></entry>\
         <entry><id>2</id><published>yesterday-ish</published></entry></feed>",
    );
    assert_eq!(
        atom.entries[0].published.map(|d| d.timestamp()),
        Some(1_704_164_645)
    );
    assert_eq!(atom.entries[1].published, None);
}

#[test]
fn links_best_and_resolved() {
    let atom = parse(
        "<feed xmlns=\"http://www.w3.org/2005/Atom\" xml:base=\"https://a.example/blog/\">\
         <entry><id>1</id><link rel=\"enclosure\" href=\"x.mp3\"/><link rel=\"alternate\" href=\"post/1\"/></entry>\
         <entry><id>2</id><link rel=\"related\" href=\"/r\"/></entry></feed>",
    );
    assert_eq!(
        atom.entries[0].link.as_deref(),
        Some("https://a.example/blog/post/1")
    );
    assert_eq!(atom.entries[1].link.as_deref(), Some("https://a.example/r"));
    // RSS: relative to the channel link.
    let f = parse(&rss("<item><link>a/1.html</link></item>"));
    assert_eq!(
        f.entries[0].link.as_deref(),
        Some("https://example.org/news/a/1.html")
    );
    // No channel link: relative to the fetch URL.
    let body = "<rss version=\"2.0\"><channel><item><link>/p?id=3</link></item></channel></rss>";
    let f = parse_feed(body.as_bytes(), None, Some("http://feeds.example/rss.xml"));
    assert_eq!(
        f.map(|f| f.entries[0].link.clone()),
        Ok(Some("http://feeds.example/p?id=3".into()))
    );
}

#[test]
fn json_feed() {
    let body = r#"{"version":"https://jsonfeed.org/version/1.1","title":"J","items":[
        {"id":"1","url":"https://j.example/1","title":"One","content_html":"<b>x</b>","summary":"s",
         "authors":[{"name":"Ann"}],"date_published":"2024-05-01T00:00:00Z"},
        {"id":"2","content_text":"plain"}]}"#;
    let f = parse_feed(body.as_bytes(), Some("application/feed+json"), None);
    let Ok(f) = f else { panic!("{f:?}") };
    assert_eq!(f.title.as_deref(), Some("J"));
    let e = &f.entries[0];
    assert_eq!((e.content.as_str(), e.summary.as_str()), ("<b>x</b>", "s"));
    assert_eq!(e.authors, vec!["Ann".to_string()]);
    assert_eq!(e.link.as_deref(), Some("https://j.example/1"));
    assert_eq!(f.entries[1].content, "plain");
}

#[test]
fn errors_empty_html_malformed() {
    assert_eq!(parse_feed(b"", None, None), Err(ParseError::Empty));
    assert_eq!(parse_feed(b" \r\n\t ", None, None), Err(ParseError::Empty));
    let html =
        b"<!DOCTYPE html>\n<html><head><title>\n  Sign in &amp; continue\n</title></head></html>";
    let err = parse_feed(html, Some("text/html"), None);
    assert_eq!(
        err,
        Err(ParseError::Html(" (title: \"Sign in & continue\")".into()))
    );
    let err = parse_feed(b"<html><body>no title", None, None);
    assert_eq!(err, Err(ParseError::Html(String::new())));
    for bad in [
        &b"<rss version=\"2.0\"><channel><item>"[..],
        b"<foo/>",
        b"hello",
        b"{\"x\":",
    ] {
        match parse_feed(bad, None, None) {
            Err(ParseError::Malformed(m)) => assert!(!m.contains('\n') && !m.is_empty(), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn billion_laughs_not_expanded() {
    let mut doctype = String::from("<?xml version=\"1.0\"?><!DOCTYPE rss [<!ENTITY lol \"lol\">");
    for i in 1..10 {
        let prev = if i == 1 {
            "lol".to_string()
        } else {
            format!("lol{}", i - 1)
        };
        doctype.push_str(&format!(
            "<!ENTITY lol{i} \"{}\">",
            format!("&{prev};").repeat(10)
        ));
    }
    doctype.push_str("]>");
    let body = format!(
        "{doctype}<rss version=\"2.0\"><channel><item><title>&lol9;</title></item></channel></rss>"
    );
    let start = Instant::now();
    let r = parse_feed(body.as_bytes(), None, None);
    assert!(start.elapsed() < Duration::from_secs(2));
    if let Ok(f) = r {
        assert!(f.entries.iter().all(|e| e.title.len() < 100), "{f:?}");
    }
}

#[test]
fn external_entities_not_read() {
    let body = "<?xml version=\"1.0\"?><!DOCTYPE rss [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">\
                <!ENTITY % p SYSTEM \"file:///etc/passwd\"> %p;]>\
                <rss version=\"2.0\"><channel><item><title>a&xxe;b</title><description>&xxe;</description></item></channel></rss>";
    if let Ok(f) = parse_feed(body.as_bytes(), None, None) {
        for e in &f.entries {
            assert!(
                !e.title.contains("root:") && !e.summary.contains("root:"),
                "{e:?}"
            );
        }
    }
}

#[test]
fn deep_nesting_does_not_overflow() {
    let depth = 100_000;
    let nested = format!("{}{}", "<a>".repeat(depth), "</a>".repeat(depth));
    // As the root element …
    assert!(parse_feed(nested.as_bytes(), None, None).is_err());
    // … and inside an item's description (serialised as markup by feed-rs).
    let f = parse_feed(
        rss(&format!(
            "<item><title>t</title><description>{nested}</description></item>"
        ))
        .as_bytes(),
        None,
        None,
    );
    assert!(f.is_ok() || f.is_err());
    // Unclosed nesting.
    let open = format!(
        "<rss version=\"2.0\"><channel><item>{}",
        "<a>".repeat(depth)
    );
    assert!(parse_feed(open.as_bytes(), None, None).is_err());
}

#[test]
fn panics_inside_feed_rs_become_errors() {
    // feed-rs 3.0 `unwrap()`s itunes:duration digits parsed as u64: overflow panics inside.
    let body = rss("<item><title>t</title><itunes:duration \
                    xmlns:itunes=\"http://www.itunes.com/dtds/podcast-1.0.dtd\">\
                    99999999999999999999999</itunes:duration></item>");
    let r = parse_feed(body.as_bytes(), None, None);
    assert!(
        r.is_ok() || matches!(r, Err(ParseError::Malformed(_))),
        "{r:?}"
    );
}

#[test]
fn youtube_style_empty_media_description() {
    let body = "<feed xmlns=\"http://www.w3.org/2005/Atom\" xmlns:media=\"http://search.yahoo.com/mrss/\">\
        <entry><id>yt:1</id><title>v</title><media:group><media:title>v</media:title>\
        <media:description></media:description></media:group></entry>\
        <entry><id>yt:2</id><title>w</title><media:group><media:description>About w</media:description></media:group></entry></feed>";
    let f = parse(body);
    assert_eq!(f.entries.len(), 2);
    // The filler space never surfaces.
    assert!(
        f.entries.iter().all(|e| e.summary.trim() == e.summary),
        "{f:?}"
    );
}

#[test]
fn rss_in_a_foreign_default_namespace() {
    let body = "<rss version=\"2.0\" xmlns=\"http://backend.userland.com/rss2\"><channel><title>c</title>\
        <item><title>i</title></item></channel></rss>";
    assert_eq!(parse(body).entries.len(), 1);
    let rss090 = "<rdf:RDF xmlns:rdf=\"http://www.w3.org/1999/02/22-rdf-syntax-ns#\" \
        xmlns=\"http://my.netscape.com/rdf/simple/0.9/\"><channel><title>c</title></channel>\
        <item><title>i</title><link>http://x/1</link></item></rdf:RDF>";
    assert_eq!(parse(rss090).entries.len(), 1);
}

#[test]
fn rss_in_json_is_not_a_json_feed() {
    // Dave Winer's "RSS in JSON" (as in the corpus's ScriptingNews.json): named, not
    // blamed on a missing "version".
    let body = r#"{"rss":{"version":"2.0","channel":{"title":"S","item":[{"description":"x"}]}}}"#;
    let err = parse_feed(body.as_bytes(), Some("application/json"), None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "malformed feed: JSON document is not a JSON Feed (no \"items\" array)"
    );
}

#[test]
fn lenient_json_feed() {
    let body = r#"{"version":"http://jsonfeed.org/version/1","items":[{"id":"1","tags":"a,b","content_text":"x"}]}"#;
    assert_eq!(parse(body).entries.len(), 1);
}

#[test]
fn feed_wrapped_in_html() {
    let body = "<!DOCTYPE html><html><body><feed xmlns=\"http://www.w3.org/2005/Atom\">\
        <entry><id>1</id></entry></feed></body></html>";
    assert_eq!(parse(body).entries.len(), 1);
}

/// Found by fuzzing (parse_feed): a second XML declaration after the root element (two feeds
/// concatenated) with another encoding made quick-xml panic inside feed-rs
/// ("set_encoding() called after prefix buffer was drained"); catch_unwind turned it into
/// "feed parser crashed" and the whole document was lost.
#[test]
fn second_xml_declaration_mid_document_does_not_lose_the_feed() {
    let body = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<rss version=\"2.0\"><channel><title>T</title>\
                <item><title>First</title><guid>a</guid></item>\
                <?xml version=\"1.0\" encoding=\"iso-8859-7\"?>\
                <item><title>Second</title><guid>b</guid></item></channel></rss>";
    let f = parse(body);
    let titles: Vec<&str> = f.entries.iter().map(|e| e.title.as_str()).collect();
    assert_eq!(titles, ["First", "Second"]);
    // Other processing instructions are left alone.
    let f = parse(&rss(
        "<?xml-stylesheet href=\"s.xsl\"?><item><title>X</title></item>",
    ));
    assert_eq!(f.entries.len(), 1);
}

/// The reference for these tests is `lenient_timestamp`: feed-rs's default timestamp parser,
/// run on a one-item document.
#[test]
fn timestamps_read_as_feed_rs_reads_them() {
    let cases = [
        "Tue, 15 Nov 2022 20:15:04 GMT",
        "Tue, 15 Nov 2022 20:15:04 +0000",
        "15 Nov 2022 20:15:04 -0500",
        "Tue, 15 Nov 2022 20:15:04 UTC",
        "Tue, 15 Nov 2022 20:15:04 -0000",
        "Wed, 15 Nov 2022 20:15:04 GMT",
        "Thurs, 13 Jul 2011 07:38:00 GMT",
        "Tuesday, 15 November 2022 20:15:04 GMT",
        "Nov 15 2022 20:15:04 GMT",
        "Tue, 15 Nov 2022 24:15:04 GMT",
        "Tue, 15 Nov 2022 8:15:04 GMT",
        "Tue, 15 Nov 2022 20:15:04 EST",
        "Tue, 15 Nov 2022 20:15:04 PDT",
        "Tue, 15 Nov 2022 20:15:04 Z",
        "Tue, 15 Nov 2022 20:15 GMT",
        "Tue, 15 Nov 22 20:15:04 GMT",
        "15 Nov 2022 20:15:04 +02:00",
        "2022-11-15T20:15:04Z",
        "2022-11-15t20:15:04z",
        "2022-11-15T20:15:04.123456+02:00",
        "2022-11-15T20:15:04+0200",
        "2022-11-15T20:15:04-05",
        "2022-11-15",
        "2022-11-15T20:15:04",
        "2022-11-15 20:15:04Z",
        "2022-11-15 20:15:04",
        "  2022-11-15T20:15:04Z\n",
        "\n Tue, 15 Nov 2022 20:15:04 GMT ",
        "",
        "  ",
        "garbage",
        "2022-13-45T99:99:99Z",
        "0000-00-00",
        "Tue, 31 Feb 2022 20:15:04 GMT",
        "1 & 2 < 3",
        "Tue, 15 Nov 2022 20:15:04 GMT]]>",
    ];
    for text in cases {
        assert_eq!(parse_timestamp(text), lenient_timestamp(text), "{text:?}");
    }
    let at = |s: &str| {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .ok()
    };
    assert_eq!(
        parse_timestamp("Tue, 15 Nov 2022 20:15:04 GMT"),
        at("2022-11-15T20:15:04Z")
    );
    assert_eq!(
        parse_timestamp("2022-11-15T20:15:04+02:00"),
        at("2022-11-15T18:15:04Z")
    );
    // Repaired by the lenient path: a wrong weekday, a long month name.
    assert_eq!(
        parse_timestamp("Wed, 15 Nov 2022 20:15:04 GMT"),
        at("2022-11-15T20:15:04Z")
    );
    assert_eq!(
        parse_timestamp("15 November 2022 20:15:04 GMT"),
        at("2022-11-15T20:15:04Z")
    );
    assert_eq!(parse_timestamp("garbage"), None);
}

/// Every timestamp in the corpus (`NEWSWATCH_CORPUS`) reads the same as with feed-rs's default.
#[test]
fn corpus_timestamps_read_as_feed_rs_reads_them() {
    let Some(dir) = std::env::var_os("NEWSWATCH_CORPUS").map(std::path::PathBuf::from) else {
        println!("skipped: NEWSWATCH_CORPUS not set");
        return;
    };
    let mut checked = 0;
    for sub in ["real", "illformed"] {
        let Ok(files) = std::fs::read_dir(dir.join(sub)) else {
            continue;
        };
        for file in files.flatten() {
            let Ok(bytes) = std::fs::read(file.path()) else {
                continue;
            };
            let text = String::from_utf8_lossy(&bytes);
            for text in corpus_dates(&text) {
                assert_eq!(
                    parse_timestamp(text),
                    lenient_timestamp(text),
                    "{text:?} in {}",
                    file.path().display()
                );
                checked += 1;
            }
        }
    }
    println!("{checked} corpus timestamps");
    assert!(
        checked > 1000,
        "only {checked} timestamps found in the corpus"
    );
}

/// The text of date elements and JSON Feed date members (no entities, no markup inside).
fn corpus_dates(doc: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for tag in [
        "pubDate",
        "lastBuildDate",
        "dc:date",
        "updated",
        "published",
        "modified",
        "issued",
        "created",
    ] {
        let open = format!("<{tag}>");
        let close = format!("</{tag}>");
        let mut rest = doc;
        while let Some(i) = rest.find(&open) {
            rest = &rest[i + open.len()..];
            if let Some(j) = rest.find(&close) {
                let value = &rest[..j];
                if !value.contains(['<', '&']) && value.len() < 100 {
                    out.push(value);
                }
            }
        }
    }
    for key in ["\"date_published\"", "\"date_modified\""] {
        let mut rest = doc;
        while let Some(i) = rest.find(key) {
            rest = &rest[i + key.len()..];
            let value = rest.trim_start().strip_prefix(':').map(str::trim_start);
            if let Some(v) = value.and_then(|v| v.strip_prefix('"'))
                && let Some(end) = v.find('"')
                && !v[..end].contains('\\')
            {
                out.push(&v[..end]);
            }
        }
    }
    out
}

// ---- Issue 12: text and stories lost ----

#[test]
fn raw_html_in_rss_description_is_read() {
    // Unescaped markup (not CDATA): feed-rs reads only text nodes, so all of this was lost.
    let f = parse(&rss(
        "<item><title>Raid <b>news</b></title><link>https://example.org/a</link>\
         <description><p>The police said <b>GCHQ</b> helped &amp; more.</p>\
         <![CDATA[<i>cdata</i> & co]]></description>\
         <content:encoded xmlns:content=\"http://purl.org/rss/1.0/modules/content/\">\
         <div>Full <em>text</em></div></content:encoded></item>",
    ));
    let e = &f.entries[0];
    assert_eq!(e.title, "Raid <b>news</b>");
    assert_eq!(
        e.summary,
        "<p>The police said <b>GCHQ</b> helped & more.</p><i>cdata</i> & co"
    );
    assert_eq!(e.content, "<div>Full <em>text</em></div>");
}

#[test]
fn raw_html_in_atom_text_constructs_is_read() {
    let f = parse(
        "<feed xmlns=\"http://www.w3.org/2005/Atom\"><entry><id>1</id>\
         <title type=\"html\">A <b>bold</b> claim</title>\
         <summary>Plain <i>text</i> with markup</summary>\
         <content type=\"xhtml\"><div xmlns=\"http://www.w3.org/1999/xhtml\">X <b>y</b></div></content>\
         </entry></feed>",
    );
    let e = &f.entries[0];
    assert_eq!(e.title, "A <b>bold</b> claim");
    assert_eq!(e.summary, "Plain <i>text</i> with markup");
    assert!(e.content.contains("<b>y</b>"), "{}", e.content);
}

#[test]
fn raw_html_repair_is_linear_on_hostile_input() {
    // Many text elements that never close, and many raw-HTML ones: each close tag is
    // searched for once per element name, not once per element.
    let mut hostile = String::from("<rss version=\"2.0\"><channel>");
    for _ in 0..40_000 {
        hostile.push_str("<item><description><b>x</b>");
    }
    // Unclosed text elements nested in one item, one close tag at the end: the repair pass
    // alone must be linear (quadratic would be 10^10 steps here).
    let nested = rss(&format!(
        "<item><link>https://e.org/</link>{}</description></item>",
        "<description>a <b>x</b> ".repeat(100_000)
    ));
    let t = Instant::now();
    assert!(matches!(super::repair::scan(&nested), Scan::Xml { .. }));
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "repair took {:?}",
        t.elapsed()
    );
    let mut body = String::from("<rss version=\"2.0\"><channel>");
    for _ in 0..40_000 {
        body.push_str(
            "<item><link>https://e.org/</link><description><b>x</b> y</description></item>",
        );
    }
    body.push_str("</channel></rss>");
    let started = Instant::now();
    let _ = parse_feed(hostile.as_bytes(), None, None);
    let f = parse(&body);
    assert_eq!(f.entries.len(), 40_000);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn atom_03_is_read_as_atom_10() {
    let f = parse(
        "<feed version=\"0.3\" xmlns=\"http://purl.org/atom/ns#\"><title>Old blog</title>\
         <entry><title type=\"text/html\" mode=\"escaped\">A &amp;amp; B</title>\
         <link rel=\"alternate\" type=\"text/html\" href=\"https://example.org/1\"/>\
         <id>tag:example.org,2004:1</id><issued>2004-01-02T03:04:05Z</issued>\
         <modified>2004-01-03T00:00:00Z</modified>\
         <summary type=\"text/plain\">Plain summary</summary>\
         <content type=\"text/html\" mode=\"base64\">PHA+QmFzZTY0IDxiPmJvZHk8L2I+PC9wPg==</content>\
         </entry></feed>",
    );
    let e = &f.entries[0];
    assert_eq!(e.title, "A &amp; B");
    assert_eq!(e.summary, "Plain summary");
    assert_eq!(e.content, "<p>Base64 <b>body</b></p>");
    assert_eq!(e.guid.as_deref(), Some("tag:example.org,2004:1"));
    assert_eq!(
        e.published.map(|t| t.to_rfc3339()),
        Some("2004-01-02T03:04:05+00:00".into())
    );
}

#[test]
fn atom_10_mime_typed_text_constructs_do_not_fail_the_document() {
    // feed-rs rejects `type="text/plain"` / a binary type on a title or summary (the whole
    // document); Atom 1.0 says a non-text, non-XML type means base64.
    let f = parse(
        "<feed xmlns=\"http://www.w3.org/2005/Atom\"><entry><id>1</id>\
         <title type=\"application/octet-stream\">RXhhbXBsZSA8Yj5BdG9tPC9iPg==</title>\
         <summary type=\"text/plain\">Plain</summary></entry></feed>",
    );
    assert_eq!(f.entries[0].title, "Example <b>Atom</b>");
    assert_eq!(f.entries[0].summary, "Plain");
}

#[test]
fn rss_1_items_identified_only_by_rdf_about() {
    let f = parse(
        "<rdf:RDF xmlns:rdf=\"http://www.w3.org/1999/02/22-rdf-syntax-ns#\" \
         xmlns=\"http://purl.org/rss/1.0/\"><channel rdf:about=\"https://example.org/\">\
         <title>C</title></channel>\
         <item rdf:about=\"https://example.org/a?x=1&amp;y=2\"><title>About only</title></item>\
         <item rdf:about=\"https://example.org/b\"><title>Both</title>\
         <link>https://example.org/b-link</link></item></rdf:RDF>",
    );
    assert_eq!(f.entries.len(), 2);
    assert_eq!(
        f.entries[0].link.as_deref(),
        Some("https://example.org/a?x=1&y=2")
    );
    // The item's own link comes first.
    assert_eq!(
        f.entries[1].link.as_deref(),
        Some("https://example.org/b-link")
    );
}

#[test]
fn rss_0_90_items_are_read() {
    let f = parse(
        "<rdf:RDF xmlns:rdf=\"http://www.w3.org/1999/02/22-rdf-syntax-ns#\" \
         xmlns=\"http://my.netscape.com/rdf/simple/0.9/\"><channel><title>C</title>\
         <link>https://example.org/</link></channel>\
         <item><title>Old</title><link>https://example.org/old</link></item></rdf:RDF>",
    );
    assert_eq!(f.entries[0].title, "Old");
}

#[test]
fn documents_with_items_but_no_entries_fail_with_a_reason() {
    // An RSS 1.0 item with neither link nor rdf:about: feed-rs drops it.
    let body = "<rdf:RDF xmlns:rdf=\"http://www.w3.org/1999/02/22-rdf-syntax-ns#\" \
                xmlns=\"http://purl.org/rss/1.0/\"><channel><title>C</title></channel>\
                <item><title>No identity</title></item></rdf:RDF>";
    match parse_feed(body.as_bytes(), None, None) {
        Err(ParseError::Malformed(reason)) => {
            assert!(reason.contains("1 <item> element"), "{reason}");
            assert!(reason.contains("rdf:about"), "{reason}");
        }
        other => panic!("expected a failure with a reason, got {other:?}"),
    }
    // A feed with no items at all is still fine (and empty).
    assert!(parse(&rss("")).entries.is_empty());
}

#[test]
fn dc_itunes_media_text_read_when_the_usual_element_is_missing() {
    let f = parse(
        "<rss version=\"2.0\" xmlns:dc=\"http://purl.org/dc/elements/1.1/\" \
         xmlns:itunes=\"http://www.itunes.com/DTDs/Podcast-1.0.dtd\" \
         xmlns:media=\"http://search.yahoo.com/mrss/\"><channel><title>C</title>\
         <item><dc:title>DC title</dc:title><dc:description>DC <b>desc</b></dc:description></item>\
         <item><title>T</title><itunes:summary>Podcast summary</itunes:summary></item>\
         <item><media:title>Media title</media:title>\
         <media:description type=\"text/html\">Media desc</media:description></item>\
         <item><title>Both</title><description>Short...</description>\
         <itunes:summary>Short... and the full text</itunes:summary></item>\
         <item><title>In content</title><description>D</description>\
         <media:content url=\"https://example.org/v.mp4\">\
         <media:description>Inside media content</media:description></media:content></item>\
         <item><title>In group</title><media:group><media:content url=\"https://example.org/g\"/>\
         <media:description>Inside group</media:description></media:group></item>\
         </channel></rss>",
    );
    let got: Vec<(&str, &str, &str)> = f
        .entries
        .iter()
        .map(|e| (e.title.as_str(), e.summary.as_str(), e.content.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("DC title", "DC <b>desc</b>", ""),
            ("T", "Podcast summary", ""),
            ("Media title", "Media desc", ""),
            ("Both", "Short...", "Short... and the full text"),
            ("In content", "D", "Inside media content"),
            ("In group", "Inside group", ""),
        ]
    );
}

#[test]
fn rss_with_a_prefixed_namespace() {
    let f = parse(
        "<r:rss version=\"2.0\" xmlns:r=\"http://backend.userland.com/rss2\"><r:channel>\
         <r:title>C</r:title><r:item><r:title>Prefixed</r:title>\
         <r:link>https://example.org/p</r:link></r:item></r:channel></r:rss>",
    );
    assert_eq!(f.entries[0].title, "Prefixed");
}

#[test]
fn json_feed_lone_surrogate_keeps_every_item() {
    let body = r#"{"version": "https://jsonfeed.org/version/1.1", "title": "J", "items": [
        {"id": "1", "title": "good one", "content_text": "a"},
        {"id": "2", "title": "bad \ud800 one", "content_text": "b \udc00"},
        {"id": "3", "title": "pair \ud83d\ude00 ok", "content_text": "c \\ud800 literal"}]}"#;
    let f = parse(body);
    let titles: Vec<&str> = f.entries.iter().map(|e| e.title.as_str()).collect();
    assert_eq!(titles, ["good one", "bad \u{FFFD} one", "pair 😀 ok"]);
    assert_eq!(f.entries[1].content, "b \u{FFFD}");
    assert_eq!(f.entries[2].content, "c \\ud800 literal");
    assert_eq!(f.warnings.len(), 1, "{:?}", f.warnings);
    assert!(f.warnings[0].starts_with("item 2 (2):"), "{:?}", f.warnings);
    assert!(f.warnings[0].contains("U+FFFD"), "{:?}", f.warnings);
    // The item named in the warning is feed text: no terminal escapes reach the log.
    let body = r#"{"version": "https://jsonfeed.org/version/1.1", "title": "J", "items": [
        {"id": "\u001b[31mred", "title": "x \ud800"}]}"#;
    let f = parse(body);
    assert!(!f.warnings[0].contains('\u{1b}'), "{:?}", f.warnings);
}

#[test]
fn json_feed_raw_control_character_keeps_the_document() {
    let body = "{\"version\": \"https://jsonfeed.org/version/1.1\", \"title\": \"J\", \"items\": [\n\
                {\"id\": \"1\", \"title\": \"two\nlines\\\"\ttab\"},\n\
                {\"id\": \"2\", \"title\": \"fine\"}]}";
    let f = parse(body);
    let titles: Vec<&str> = f.entries.iter().map(|e| e.title.as_str()).collect();
    assert_eq!(titles, ["two\nlines\"\ttab", "fine"]);
}
