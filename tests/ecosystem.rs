//! Feed-reader ecosystem, end to end: OPML in (config `feeds_opml`) and out (`feeds export`,
//! `feeds import`), feed discovery against a loopback site, Atom / JSON Feed export of stored
//! matches, per-feed SOCKS5 proxies (a loopback SOCKS server that records the host name it was
//! asked for), shell completions and the man page.
//!
//! Only `poll_goes_through_a_per_feed_socks5h_proxy` needs the real matcher (`poll` compiles
//! the rules even when there are none); everything else runs on the matcher stub: configs
//! here have no `[[rules]]`, and stored matches are written with the store's own API.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};

use chrono::{TimeZone, Utc};
use newswatch::config::{self, FeedSettings};
use newswatch::pipeline::dedup;
use newswatch::pipeline::fetch::{FetchOptions, Fetcher, Validators};
use newswatch::pipeline::matcher::RuleMatch;
use newswatch::pipeline::parse::Entry;
use newswatch::store::{EntryRecord, EntryText, FetchFacts, MatchedEntry, Store};

use crate::support::server::{Route, TestServer};
use crate::support::{Project, fixture_bytes};

// ---------------------------------------------------------------------------------------------
// OPML

/// Nested folders, odd characters everywhere, a name shared by two outlines, a URL that the
/// TOML also has, and a name that the TOML also has.
const OPML: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<opml version="2.0">
  <head><title>My subscriptions</title></head>
  <body>
    <outline text="News &amp; Politics" title="News &amp; Politics">
      <outline text="UK &lt;local&gt;">
        <outline type="rss" text="BBC" title="BBC" xmlUrl="http://bbc.example/rss?x=1&amp;y=2"/>
        <outline type="rss" text="Same" xmlUrl="http://one.example/feed"/>
      </outline>
      <outline type="rss" text="&quot;Quoted&quot; — Ünïcødé &amp; &lt;b&gt;" xmlUrl="https://ü.example/feed?q=&quot;x&quot;"/>
      <outline type="rss" text="Same" xmlUrl="http://two.example/feed"/>
    </outline>
    <outline type="rss" text="Already in TOML" xmlUrl="http://toml.example/feed"/>
    <outline type="rss" text="" xmlUrl="http://nameless.example/rss"/>
  </body>
</opml>
"#;

const TOML_PART: &str = r#"feeds_opml = ["lists/subs.opml"]

[[feeds]]
name = "BBC"
url = "http://toml.example/feed"
"#;

/// (name, url, tags) of every feed, in order.
fn triples(feeds: &[FeedSettings]) -> Vec<(String, String, Vec<String>)> {
    feeds
        .iter()
        .map(|f| (f.name.clone(), f.url.to_string(), f.tags.clone()))
        .collect()
}

fn opml_project() -> Project {
    let project = Project::new(TOML_PART);
    std::fs::create_dir_all(project.path("lists")).unwrap();
    std::fs::write(project.path("lists/subs.opml"), OPML).unwrap();
    project
}

fn s(v: &str) -> String {
    v.to_string()
}

#[test]
fn opml_feeds_join_the_config_with_folder_tags_and_unique_names() {
    let project = opml_project();
    let settings = config::load(&config::ConfigSource::File(project.path("newswatch.toml")))
        .unwrap_or_else(|e| panic!("{e}"));
    let news = s("News & Politics");
    let uk = s("UK <local>");
    assert_eq!(
        triples(&settings.feeds),
        vec![
            (s("BBC"), s("http://toml.example/feed"), vec![]),
            (
                s("BBC-2"),
                s("http://bbc.example/rss?x=1&y=2"),
                vec![news.clone(), uk.clone()]
            ),
            (
                s("Same"),
                s("http://one.example/feed"),
                vec![news.clone(), uk]
            ),
            (
                s("\"Quoted\" — Ünïcødé & <b>"),
                s("https://xn--tda.example/feed?q=%22x%22"),
                vec![news.clone()]
            ),
            (s("Same-2"), s("http://two.example/feed"), vec![news]),
            // "Already in TOML" is dropped: its URL is the TOML feed's.
            (
                s("nameless.example"),
                s("http://nameless.example/rss"),
                vec![]
            ),
        ]
    );
}

#[test]
fn opml_errors_are_reported_like_config_errors() {
    let project = opml_project();
    // Broken XML inside the OPML file: the OPML file's name, line and column.
    std::fs::write(
        project.path("lists/subs.opml"),
        "<opml version=\"2.0\"><body>\n  <outline text=\"a\" xmlUrl=\"http://a.example/\">\n</body></opml>\n",
    )
    .unwrap();
    let (code, _, err) = project.run(&["check"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("subs.opml:"), "names the OPML file: {err}");
    assert!(err.contains("malformed XML"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");

    // A bad URL in an outline: points at that outline.
    std::fs::write(
        project.path("lists/subs.opml"),
        "<opml><body>\n<outline text=\"ok\" xmlUrl=\"http://a.example/\"/>\n   <outline text=\"bad\" xmlUrl=\"ftp://b.example/\"/>\n</body></opml>\n",
    )
    .unwrap();
    let e = config::load(&config::ConfigSource::File(project.path("newswatch.toml"))).unwrap_err();
    assert!(e.origin.ends_with("subs.opml"), "{e}");
    assert_eq!(e.position, Some((3, 4)), "{e}");
    assert!(e.message.contains("unsupported URL scheme \"ftp\""), "{e}");

    // A missing file: points at the config key.
    std::fs::remove_file(project.path("lists/subs.opml")).unwrap();
    let e = config::load(&config::ConfigSource::File(project.path("newswatch.toml"))).unwrap_err();
    assert!(e.origin.ends_with("newswatch.toml"), "{e}");
    assert_eq!(e.position, Some((1, 15)), "{e}");
    assert!(e.message.contains("cannot read OPML file"), "{e}");
}

#[test]
fn duplicate_urls_are_reported_once_naming_both_sources_and_polled_once() {
    let project = opml_project();
    let (code, out, err) = project.run(&["check"]);
    assert_eq!(code, 0, "{err}");
    let warnings: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("configured twice"))
        .collect();
    assert_eq!(warnings.len(), 1, "one warning: {err}");
    let w = warnings[0];
    assert!(
        w.contains("http://toml.example/feed")
            && w.contains("newswatch.toml:5:7")
            && w.contains("subs.opml:13:5")
            && w.contains("\"BBC\""),
        "names both places and the feed kept: {w}"
    );
    assert_eq!(
        out.matches("toml.example").count(),
        1,
        "listed once by check: {out}"
    );
    assert!(out.contains("feeds (6):"), "{out}");
}

#[test]
fn export_then_import_gives_the_same_feeds() {
    let project = opml_project();
    let original = config::load(&config::ConfigSource::File(project.path("newswatch.toml")))
        .unwrap_or_else(|e| panic!("{e}"));

    // OPML out, to a file.
    let (code, _, err) = project.run(&["feeds", "export", "--out", "exported.opml"]);
    assert_eq!(code, 0, "{err}");
    let exported = std::fs::read_to_string(project.path("exported.opml")).unwrap();
    assert!(exported.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"));
    assert!(exported.contains("<opml version=\"2.0\">"), "{exported}");
    assert!(
        exported.contains("&amp;") && exported.contains("&lt;"),
        "{exported}"
    );
    // Folders are nested outlines carrying both text and title (FreshRSS reads text).
    assert!(
        exported.contains("<outline text=\"News &amp; Politics\" title=\"News &amp; Politics\">"),
        "{exported}"
    );
    // And stdout gives the same document.
    let (_, stdout_doc, _) = project.run(&["feeds", "export"]);
    assert_eq!(stdout_doc, exported);

    // OPML back in, as a config of its own: same names, URLs and tags, in the same order
    // within each folder.
    let again = Project::new("feeds_opml = [\"in.opml\"]\n");
    std::fs::write(again.path("in.opml"), &exported).unwrap();
    let reloaded = config::load(&config::ConfigSource::File(again.path("newswatch.toml")))
        .unwrap_or_else(|e| panic!("{e}"));
    let as_set = |v: Vec<(String, String, Vec<String>)>| v.into_iter().collect::<BTreeSet<_>>();
    assert_eq!(
        as_set(triples(&reloaded.feeds)),
        as_set(triples(&original.feeds))
    );

    // `feeds import` prints TOML that loads to the same feeds again.
    let (code, toml_text, err) = again.run(&["feeds", "import", "in.opml"]);
    assert_eq!(code, 0, "{err}");
    assert!(toml_text.contains("[[feeds]]"), "{toml_text}");
    assert!(toml_text.contains("tags = ["), "{toml_text}");
    let from_toml = config::load_str(&toml_text, Some(Path::new("imported.toml")), Path::new("/"))
        .unwrap_or_else(|e| panic!("{e}\n{toml_text}"));
    assert_eq!(triples(&from_toml.feeds), triples(&reloaded.feeds));
}

#[test]
fn feeds_import_reports_bad_opml_with_position() {
    let project = Project::new("");
    std::fs::write(
        project.path("bad.opml"),
        "<opml><body>\n<outline text=\"x\" xmlUrl=\"http://a/\">\n</opml>",
    )
    .unwrap();
    let (code, out, err) = project.run(&["feeds", "import", "bad.opml"]);
    assert_eq!(code, 2, "{err}");
    assert!(out.is_empty());
    assert!(err.contains("bad.opml:"), "{err}");
}

#[test]
fn feeds_without_subcommand_lists_configured_feeds() {
    let project = opml_project();
    let (code, out, err) = project.run(&["feeds"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 7, "header + 6 feeds: {out}");
    assert!(lines[0].starts_with("NAME"), "{out}");
    assert!(
        lines[1].starts_with("BBC ") && lines[1].contains("never"),
        "{out}"
    );
}

// ---------------------------------------------------------------------------------------------
// Discovery

#[test]
fn discover_lists_advertised_feeds_resolved_against_base() {
    let server = TestServer::start();
    let page = r#"<!DOCTYPE html><html><head><title>Blog</title>
        <base href="/blog/">
        <link rel="stylesheet" href="style.css">
        <link rel="alternate" type="application/rss+xml" title="Posts &amp; news" href="posts.rss">
        <link rel="alternate" type="application/atom+xml" title="Comments" href="../comments.atom">
        <link rel="alternate" type="application/feed+json" href="feed.json">
        <link rel="alternate" hreflang="fr" href="/fr/">
        </head><body><a href="/feed.xml">not advertised</a></body></html>"#;
    server.route(
        "/site/index.html",
        Route::ok("text/html; charset=utf-8", page),
    );
    server.route(
        "/feed.xml",
        Route::ok("application/rss+xml", fixture_bytes("uk-news.rss")),
    );

    let project = Project::new("");
    let (code, out, err) = project.run(&["feeds", "discover", &server.url("/site/index.html")]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        vec![
            format!(
                "{}\tapplication/rss+xml\tPosts & news",
                server.url("/blog/posts.rss")
            ),
            format!(
                "{}\tapplication/atom+xml\tComments",
                server.url("/comments.atom")
            ),
            format!("{}\tapplication/feed+json\t", server.url("/blog/feed.json")),
        ]
    );
    assert_eq!(
        server.hits("/feed.xml"),
        0,
        "no probing when feeds are advertised"
    );
}

#[test]
fn discover_probes_common_paths_when_none_are_advertised() {
    let server = TestServer::start();
    server.route(
        "/articles/today",
        Route::ok(
            "text/html",
            "<html><head><title>No feeds here</title></head><body>hi</body></html>",
        ),
    );
    // A 200 that is not a feed, a 404, a redirect to an HTML page, and one real feed.
    server.route(
        "/rss",
        Route::ok("text/html", "<html><body>Subscribe!</body></html>"),
    );
    server.route(
        "/feed",
        Route::status(302, vec![("Location", "/articles/today")], ""),
    );
    server.route(
        "/feed.xml",
        Route::ok("application/rss+xml", fixture_bytes("uk-news.rss")),
    );

    let project = Project::new("");
    let (code, out, err) = project.run(&["feeds", "discover", &server.url("/articles/today")]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        vec![format!(
            "{}\tapplication/rss+xml\tUK News (fixture)",
            server.url("/feed.xml")
        )]
    );
    for path in [
        "/feed",
        "/rss",
        "/atom.xml",
        "/feed.xml",
        "/index.xml",
        "/rss.xml",
    ] {
        assert_eq!(server.hits(path), 1, "probed {path} once");
    }

    // Nothing anywhere: an error, exit 1.
    let bare = TestServer::start();
    bare.route("/", Route::ok("text/html", "<p>plain</p>"));
    let (code, out, err) = project.run(&["feeds", "discover", &bare.url("/")]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("no feeds found"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Atom / JSON Feed export

/// Store one matched entry in feed `feed_id`.
fn store_match(
    store: &mut Store,
    feed: &str,
    guid: &str,
    link: &str,
    title: &str,
    rules: &[&str],
    snippet: &str,
) {
    let feed_id = store.feed_state(feed).unwrap().unwrap().id;
    let e = Entry {
        guid: Some(guid.into()),
        link: Some(link.into()),
        title: title.into(),
        ..Default::default()
    };
    let (_, identity) = dedup::identify(std::slice::from_ref(&e)).remove(0);
    let rec = EntryRecord {
        identity,
        fingerprint: dedup::fingerprint(&e),
        text: EntryText {
            guid: e.guid.clone(),
            link: e.link.clone(),
            title: title.into(),
            summary: snippet.into(),
            published: Some(Utc.with_ymd_and_hms(2015, 11, 9, 10, 0, 0).unwrap()),
            ..Default::default()
        },
        matched: Some(MatchedEntry {
            rules: rules
                .iter()
                .map(|r| RuleMatch {
                    rule: r.to_string(),
                    terms: vec![],
                })
                .collect(),
            snippet: snippet.into(),
            link_rank: 0,
        }),
    };
    store
        .commit_feed(feed_id, &FetchFacts::default(), &[rec], Utc::now())
        .unwrap();
}

/// A project whose database holds three matches (one seen in two feeds).
fn project_with_matches(extra_config: &str) -> Project {
    let project = Project::new(&format!(
        "[storage]\npath = \"data/news.db\"\n{extra_config}\n[[feeds]]\nname = \"uk & world\"\nurl = \"http://uk.example/rss\"\n\n[[feeds]]\nname = \"security\"\nurl = \"http://sec.example/atom\"\n"
    ));
    let settings = config::load(&config::ConfigSource::File(project.path("newswatch.toml")))
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::create_dir_all(project.path("data")).unwrap();
    let mut store = Store::open(&project.path("data/news.db")).unwrap();
    store
        .sync_feeds(settings.feeds.iter().map(FeedSettings::name_url))
        .unwrap();
    store_match(
        &mut store,
        "uk & world",
        "a",
        "https://news.example/a?x=1&y=2",
        "<script>alert('x')</script> & NCA raid",
        &["nca"],
        "…the NCA said \"no\" & <b>left</b>…",
    );
    store_match(
        &mut store,
        "security",
        "a2",
        "https://news.example/a?x=1&y=2",
        "<script>alert('x')</script> & NCA raid",
        &["darkweb"],
        "…",
    );
    store_match(
        &mut store,
        "security",
        "b",
        "https://news.example/b",
        "GCHQ — Überwachung",
        &["gchq"],
        "GCHQ snippet",
    );
    drop(store);
    project.seed_postgres(&project.path("data/news.db"));
    project
}

/// (scheme, term) of an entry's categories.
type Categories = BTreeSet<(String, String)>;

/// Every event of an XML document, failing on the first error (well-formedness check).
fn assert_well_formed(xml: &str) {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut depth = 0i32;
    loop {
        match reader.read_event() {
            Ok(quick_xml::events::Event::Start(_)) => depth += 1,
            Ok(quick_xml::events::Event::End(_)) => depth -= 1,
            Ok(quick_xml::events::Event::Eof) => break,
            Ok(_) => {}
            Err(e) => panic!("not well-formed at {}: {e}\n{xml}", reader.error_position()),
        }
    }
    assert_eq!(depth, 0, "unbalanced: {xml}");
}

#[test]
fn atom_export_reads_back_as_the_stored_items() {
    let project = project_with_matches("");
    let (code, out, err) = project.run(&["export", "--format", "atom"]);
    assert_eq!(code, 0, "{err}");
    assert_well_formed(&out);
    assert!(out.contains("&lt;script&gt;"), "title escaped: {out}");
    assert!(!out.contains("<script>"), "{out}");
    assert!(out.contains("x=1&amp;y=2"), "{out}");

    let feed = feed_rs::parser::parse(out.as_bytes()).unwrap();
    assert_eq!(feed.entries.len(), 2);
    let mut got: Vec<(String, String, Categories)> = feed
        .entries
        .iter()
        .map(|e| {
            (
                e.title.as_ref().unwrap().content.clone(),
                e.links[0].href.clone(),
                e.categories
                    .iter()
                    .map(|c| (c.scheme.clone().unwrap(), c.term.clone()))
                    .collect(),
            )
        })
        .collect();
    got.sort();
    let cat = |scheme: &str, term: &str| (format!("urn:newswatch:{scheme}"), term.to_string());
    assert_eq!(
        got,
        vec![
            (
                s("<script>alert('x')</script> & NCA raid"),
                s("https://news.example/a?x=1&y=2"),
                [
                    cat("rule", "darkweb"),
                    cat("rule", "nca"),
                    cat("feed", "security"),
                    cat("feed", "uk & world"),
                ]
                .into()
            ),
            (
                s("GCHQ — Überwachung"),
                s("https://news.example/b"),
                [cat("rule", "gchq"), cat("feed", "security")].into()
            ),
        ]
    );
    let first = feed
        .entries
        .iter()
        .find(|e| e.links[0].href.ends_with("y=2"))
        .unwrap();
    assert_eq!(
        first.summary.as_ref().unwrap().content,
        "…the NCA said \"no\" & <b>left</b>…"
    );
    assert!(first.id.starts_with("urn:newswatch:") && first.id.contains(":story:"));
    assert!(first.updated.is_some(), "updated = first seen");

    // Ids are stable across runs; --rule filters.
    let (_, again, _) = project.run(&["export"]);
    let again = feed_rs::parser::parse(again.as_bytes()).unwrap();
    let ids = |f: &feed_rs::model::Feed| {
        f.entries
            .iter()
            .map(|e| e.id.clone())
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(ids(&again), ids(&feed));
    let (_, only, _) = project.run(&["export", "--rule", "gchq"]);
    let only = feed_rs::parser::parse(only.as_bytes()).unwrap();
    assert_eq!(only.entries.len(), 1);
    assert_eq!(
        only.entries[0].title.as_ref().unwrap().content,
        "GCHQ — Überwachung"
    );
}

#[test]
fn json_feed_export_to_a_file() {
    let project = project_with_matches("");
    let (code, out, err) = project.run(&["export", "--format", "json", "--out", "out/m.json"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.is_empty(), "nothing on stdout with --out: {out}");
    let text = std::fs::read_to_string(project.path("out/m.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["version"], "https://jsonfeed.org/version/1.1");
    let items = v["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    let feed = feed_rs::parser::parse(text.as_bytes()).unwrap();
    let titles: BTreeSet<String> = feed
        .entries
        .iter()
        .map(|e| e.title.as_ref().unwrap().content.clone())
        .collect();
    assert!(titles.contains("GCHQ — Überwachung"), "{titles:?}");
}

#[test]
fn export_without_a_database_is_an_empty_feed_and_creates_nothing() {
    let project = Project::new("[storage]\npath = \"never/news.db\"\n");
    let (code, out, err) = project.run(&["export"]);
    assert_eq!(code, 0, "{err}");
    let feed = feed_rs::parser::parse(out.as_bytes()).unwrap();
    assert!(feed.entries.is_empty());
    assert!(!project.path("never").exists());
}

#[test]
fn output_settings_resolve_and_update_outputs_writes_both_files() {
    let project = project_with_matches(
        "[output]\natom = \"pub/matches.atom\"\njson_feed = \"pub/matches.json\"\n",
    );
    let settings = config::load(&config::ConfigSource::File(project.path("newswatch.toml")))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(settings.output.atom, Some(project.path("pub/matches.atom")));
    assert_eq!(
        settings.output.json_feed,
        Some(project.path("pub/matches.json"))
    );
    let mut db = match &project.pg {
        Some(pg) => newswatch::store::sql::AnyDb::postgres(&pg.url, None).unwrap(),
        None => newswatch::store::sql::AnyDb::Sqlite(Store::open(&settings.database).unwrap()),
    };
    let meta = newswatch::outputs::export::FeedMeta::for_name("test", "newswatch matches");
    newswatch::outputs::export::update_outputs_in(&settings.output, meta, &mut db).unwrap();
    let atom = std::fs::read(project.path("pub/matches.atom")).unwrap();
    assert_eq!(feed_rs::parser::parse(&atom[..]).unwrap().entries.len(), 2);
    let json = std::fs::read(project.path("pub/matches.json")).unwrap();
    assert_eq!(feed_rs::parser::parse(&json[..]).unwrap().entries.len(), 2);

    let e = config::load_str(
        "[output]\natom = \"\"\n",
        Some(Path::new("c.toml")),
        Path::new("/b"),
    )
    .unwrap_err();
    assert_eq!(e.position, Some((2, 8)), "{e}");
    let none = config::load_str("", None, Path::new("/b")).unwrap();
    assert_eq!(none.output, config::OutputSettings::default());
}

// ---------------------------------------------------------------------------------------------
// SOCKS5

/// A loopback SOCKS5 server (no auth, CONNECT only) that records the destination it is asked
/// for and connects every request to `target` instead, relaying bytes both ways.
struct Socks5 {
    port: u16,
    /// (ATYP, host as asked, port) of every CONNECT.
    requests: Arc<Mutex<Vec<(u8, String, u16)>>>,
}

impl Socks5 {
    fn start(target: std::net::SocketAddr) -> Socks5 {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = requests.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(client) = conn else { continue };
                let log = log.clone();
                std::thread::spawn(move || {
                    let _ = socks_session(client, target, &log);
                });
            }
        });
        Socks5 { port, requests }
    }
}

fn socks_session(
    mut client: TcpStream,
    target: std::net::SocketAddr,
    log: &Mutex<Vec<(u8, String, u16)>>,
) -> std::io::Result<()> {
    let mut head = [0u8; 2];
    client.read_exact(&mut head)?;
    assert_eq!(head[0], 5, "SOCKS version");
    let mut methods = vec![0u8; usize::from(head[1])];
    client.read_exact(&mut methods)?;
    assert!(methods.contains(&0), "client offers no-auth");
    client.write_all(&[5, 0])?;
    let mut req = [0u8; 4];
    client.read_exact(&mut req)?;
    assert_eq!(&req[..3], &[5, 1, 0], "CONNECT");
    let host = match req[3] {
        1 => {
            let mut a = [0u8; 4];
            client.read_exact(&mut a)?;
            std::net::Ipv4Addr::from(a).to_string()
        }
        3 => {
            let mut len = [0u8; 1];
            client.read_exact(&mut len)?;
            let mut name = vec![0u8; usize::from(len[0])];
            client.read_exact(&mut name)?;
            String::from_utf8_lossy(&name).into_owned()
        }
        4 => {
            let mut a = [0u8; 16];
            client.read_exact(&mut a)?;
            std::net::Ipv6Addr::from(a).to_string()
        }
        other => panic!("bad ATYP {other}"),
    };
    let mut port = [0u8; 2];
    client.read_exact(&mut port)?;
    log.lock()
        .unwrap()
        .push((req[3], host, u16::from_be_bytes(port)));
    let upstream = TcpStream::connect(target)?;
    client.write_all(&[5, 0, 0, 1, 127, 0, 0, 1, 0, 0])?;
    let (mut c_read, mut u_write) = (client.try_clone()?, upstream.try_clone()?);
    let up = std::thread::spawn(move || {
        let _ = std::io::copy(&mut c_read, &mut u_write);
        let _ = u_write.shutdown(std::net::Shutdown::Write);
    });
    let (mut u_read, mut c_write) = (upstream, client);
    let _ = std::io::copy(&mut u_read, &mut c_write);
    let _ = c_write.shutdown(std::net::Shutdown::Write);
    let _ = up.join();
    Ok(())
}

#[tokio::test]
async fn fetcher_resolves_names_through_a_socks5h_proxy() {
    let server = TestServer::start();
    server.route(
        "/x.rss",
        Route::ok("application/rss+xml", fixture_bytes("uk-news.rss")),
    );
    let socks = Socks5::start(server.addr);
    let fetcher = Fetcher::new(FetchOptions {
        proxy: Some(format!("socks5h://127.0.0.1:{}", socks.port)),
        ..Default::default()
    })
    .unwrap();
    let url = url::Url::parse("http://feeds.example.invalid/x.rss").unwrap();
    let got = fetcher.fetch(&url, &Validators::default()).await.unwrap();
    assert_eq!(got.status, 200);
    assert_eq!(
        got.body.unwrap().as_ref(),
        &fixture_bytes("uk-news.rss")[..]
    );
    assert_eq!(
        socks.requests.lock().unwrap().as_slice(),
        &[(3, s("feeds.example.invalid"), 80)],
        "the proxy, not us, resolved the name"
    );
    let reqs = server.requests("/x.rss");
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].header("host"), Some("feeds.example.invalid"));

    // Without the proxy the name does not resolve at all (.invalid is reserved).
    let direct = Fetcher::new(FetchOptions::default()).unwrap();
    assert!(direct.fetch(&url, &Validators::default()).await.is_err());
}

/// Needs the real matcher: `poll` builds `Matcher::new` even for zero rules.
#[test]
fn poll_goes_through_a_per_feed_socks5h_proxy() {
    let server = TestServer::start();
    server.route(
        "/x.rss",
        Route::ok("application/rss+xml", fixture_bytes("uk-news.rss")),
    );
    let socks = Socks5::start(server.addr);
    let project = Project::new(&format!(
        "[storage]\npath = \"news.db\"\n\n[[feeds]]\nname = \"proxied\"\nurl = \"http://feeds.example.invalid/x.rss\"\nproxy = \"socks5h://127.0.0.1:{}\"\n\n[[feeds]]\nname = \"direct\"\nurl = \"http://feeds.example.invalid/y.rss\"\n",
        socks.port
    ));
    let (code, _, err) = project.run(&["poll", "--feed", "proxied"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("poll: 1 feed: 1 ok"), "{err}");
    assert_eq!(server.hits("/x.rss"), 1);
    assert_eq!(
        socks.requests.lock().unwrap().as_slice(),
        &[(3, s("feeds.example.invalid"), 80)]
    );
    // The other feed has no proxy: it fails to resolve rather than using this one.
    let (_, _, err) = project.run(&["poll", "--feed", "direct"]);
    assert!(err.contains("1 failed"), "{err}");
    assert_eq!(socks.requests.lock().unwrap().len(), 1);
}

// ---------------------------------------------------------------------------------------------
// Completions and man page

#[test]
fn bash_completions_mention_the_subcommands() {
    let project = Project::new("");
    let (code, out, err) = project.run(&["completions", "bash"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("complete -F"), "a bash completion script");
    for word in [
        "poll",
        "query",
        "check",
        "feeds",
        "export",
        "discover",
        "import",
        "completions",
    ] {
        assert!(out.contains(word), "mentions {word}");
    }
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let (code, out, err) = project.run(&["completions", shell]);
        assert_eq!(code, 0, "{shell}: {err}");
        assert!(out.contains("discover"), "{shell} script mentions discover");
    }
    let (code, _, _) = project.run(&["completions", "tcsh"]);
    assert_eq!(code, 2, "unknown shell is a usage error");
}

#[test]
fn man_page_is_roff_for_newswatch() {
    let project = Project::new("");
    let (code, out, err) = project.run(&["man"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with(".ie") || out.contains(".TH newswatch"),
        "{out}"
    );
    assert!(out.contains(".TH newswatch"), "{out}");
    assert!(out.contains("export"), "lists subcommands");
}
