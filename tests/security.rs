//! Security defects of issue 12 (items 5–8, 10, 21), each pinned by a test named after it:
//! headers and redirects that leave the configured origin, SSRF through redirects and OPML,
//! raw names from OPML, non-http(s) links in exports, the lock file, dismissed matches in
//! exports.

use std::time::Duration;

use crate::support::Project;
use crate::support::server::{Route, TestServer};
use newswatch::pipeline::fetch::ASSUME_PUBLIC_ENV;

fn feed(name: &str, url: &str) -> String {
    format!("[[feeds]]\nname = \"{name}\"\nurl = \"{url}\"\n")
}

const NCA_RULE: &str = "[[rules]]\nname = \"nca\"\nquery = 'NCA'\n";

fn rss(items: &[(&str, &str, &str)]) -> String {
    let mut s = String::from(
        "<?xml version=\"1.0\"?><rss version=\"2.0\"><channel><title>t</title><link>http://x/</link><description>d</description>",
    );
    for (guid, title, link) in items {
        s.push_str(&format!(
            "<item><title>{title}</title><link>{link}</link><guid>{guid}</guid><description>{title}</description></item>"
        ));
    }
    s.push_str("</channel></rss>");
    s
}

fn redirect(status: u16, to: &str) -> Route {
    Route::status(status, vec![("Location", to)], "")
}

/// `feeds --format json` entry of feed `name`.
fn feed_status(project: &Project, name: &str) -> serde_json::Value {
    let (code, out, err) = project.run(&["feeds", "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let all: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    all.into_iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("no feed {name} in {out}"))
}

/// `poll` with the test seam declaring `public` a public server.
fn poll_as_public(project: &Project, public: &TestServer) -> (i32, String) {
    let out = project
        .cmd(&["poll"])
        .env(ASSUME_PUBLIC_ENV, public.addr.to_string())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

// ---------------------------------------------------------------------------------------------
// Item 10: a symlinked `<db>.lock` was followed and its target truncated.

#[test]
fn symlinked_db_lock_is_not_followed_nor_its_target_truncated() {
    if crate::support::sqlite_only("the lock file beside the SQLite database") {
        return;
    }
    let project = Project::new(NCA_RULE);
    let precious = project.path("precious.txt");
    std::fs::write(&precious, "do not truncate me").unwrap();
    std::os::unix::fs::symlink(&precious, project.path("newswatch.db.lock")).unwrap();
    let out = project
        .cmd(&["run"])
        .timeout(Duration::from_secs(20))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("newswatch.db.lock") && err.contains("symbolic link"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&precious).unwrap(),
        "do not truncate me"
    );

    // A dangling link is not followed either: nothing is created at its target.
    let project = Project::new(NCA_RULE);
    let target = project.path("created-by-link");
    std::os::unix::fs::symlink(&target, project.path("newswatch.db.lock")).unwrap();
    let (code, _, err) = project.run(&["run"]);
    assert_eq!(code, 1, "{err}");
    assert!(!target.exists(), "the link's target was created");
}

#[test]
fn db_lock_that_is_a_fifo_or_hard_link_is_refused() {
    if crate::support::sqlite_only("the lock file beside the SQLite database") {
        return;
    }
    let project = Project::new(NCA_RULE);
    let lock = project.path("newswatch.db.lock");
    let status = std::process::Command::new("mkfifo")
        .arg(&lock)
        .status()
        .unwrap();
    assert!(status.success());
    let (code, _, err) = project.run(&["run"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not a regular file"), "{err}");

    let project = Project::new(NCA_RULE);
    let other = project.path("other.txt");
    std::fs::write(&other, "keep").unwrap();
    std::fs::hard_link(&other, project.path("newswatch.db.lock")).unwrap();
    let (code, _, err) = project.run(&["run"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("hard links"), "{err}");
    assert_eq!(std::fs::read_to_string(&other).unwrap(), "keep");
}

// ---------------------------------------------------------------------------------------------
// Items 5 and 6: headers and SSRF through redirects.

#[test]
fn custom_headers_do_not_leak_on_redirect_nor_to_the_remembered_url() {
    let origin = TestServer::start();
    let other = TestServer::start();
    origin.route("/feed", redirect(301, &other.url("/moved")));
    other.route(
        "/moved",
        Route::ok(
            "application/rss+xml",
            rss(&[("a", "NCA raid", "https://n.example/a")]),
        ),
    );
    // The README's example: a global API key.
    let project = Project::new(&format!(
        "[http]\nheaders = {{ \"X-Api-Key\" = \"k-secret\", \"Authorization\" = \"Bearer t\" }}\n{}{NCA_RULE}",
        feed("api", &origin.url("/feed"))
    ));
    for _ in 0..2 {
        let (code, _, err) = project.run(&["poll"]);
        assert_eq!(code, 0, "{err}");
    }
    assert_eq!(
        origin.requests("/feed")[0].header("x-api-key"),
        Some("k-secret")
    );
    // The first poll followed the redirect; the second went straight to the remembered URL.
    assert_eq!(origin.hits("/feed"), 1);
    let moved = other.requests("/moved");
    assert_eq!(moved.len(), 2);
    for r in &moved {
        assert_eq!(r.header("x-api-key"), None, "{:?}", r.headers);
        assert_eq!(r.header("authorization"), None, "{:?}", r.headers);
    }
    assert_eq!(
        feed_status(&project, "api")["effective_url"],
        other.url("/moved").as_str()
    );
}

#[test]
fn redirect_from_public_address_to_loopback_is_refused_and_not_remembered() {
    let public = TestServer::start();
    let internal = TestServer::start();
    let secret = rss(&[("s", "NCA internal secret", "https://n.example/s")]);
    internal.route(
        "/admin.rss",
        Route::ok("application/rss+xml", secret.as_str()),
    );
    // An IP literal, a name that resolves to loopback (what DNS rebinding gives), and the
    // cloud metadata address.
    public.route("/literal", redirect(301, &internal.url("/admin.rss")));
    let by_name = format!("http://localhost:{}/admin.rss", internal.addr.port());
    public.route("/name", redirect(302, &by_name));
    public.route(
        "/metadata",
        redirect(307, "http://169.254.169.254/latest/meta-data/"),
    );
    public.route(
        "/mapped",
        redirect(
            301,
            &format!(
                "http://[::ffff:127.0.0.1]:{}/admin.rss",
                internal.addr.port()
            ),
        ),
    );
    let project = Project::new(&format!(
        "{}{}{}{}{NCA_RULE}",
        feed("literal", &public.url("/literal")),
        feed("name", &public.url("/name")),
        feed("metadata", &public.url("/metadata")),
        feed("mapped", &public.url("/mapped")),
    ));
    let (code, err) = poll_as_public(&project, &public);
    assert_eq!(code, 0, "a feed's failure is not the poll's: {err}");
    // Nothing was ever asked of the internal server: refused before connecting.
    assert_eq!(internal.hits("/admin.rss"), 0);
    for (name, why) in [
        ("literal", "127.0.0.1 is a loopback address"),
        ("name", "resolves only to non-public addresses"),
        ("metadata", "169.254.169.254 is a link-local address"),
        ("mapped", "127.0.0.1 is a loopback address"),
    ] {
        let f = feed_status(&project, name);
        let last = f["last_error"].as_str().unwrap_or("");
        assert!(last.contains(why), "{name}: {last}");
        assert!(last.contains("allow_private_redirects"), "{name}: {last}");
        assert!(f["effective_url"].is_null(), "{name}: {f}");
    }
    assert!(project.query_json(&[]).is_empty());
}

#[test]
fn private_redirects_are_followed_when_allowed_per_feed_or_globally() {
    let public = TestServer::start();
    let internal = TestServer::start();
    internal.route(
        "/a.rss",
        Route::ok(
            "application/rss+xml",
            rss(&[("a", "NCA intranet", "https://n.example/a")]),
        ),
    );
    public.route("/feed", redirect(301, &internal.url("/a.rss")));
    public.route("/feed2", redirect(301, &internal.url("/a.rss")));
    let per_feed = Project::new(&format!(
        "{}allow_private_redirects = true\n{}{NCA_RULE}",
        feed("allowed", &public.url("/feed")),
        feed("guarded", &public.url("/feed2")),
    ));
    let (_, err) = poll_as_public(&per_feed, &public);
    assert_eq!(internal.hits("/a.rss"), 1, "{err}");
    assert_eq!(feed_status(&per_feed, "allowed")["last_status"], "ok");
    assert_eq!(
        feed_status(&per_feed, "allowed")["effective_url"],
        internal.url("/a.rss").as_str()
    );
    assert_eq!(feed_status(&per_feed, "guarded")["last_status"], "failed");
    assert_eq!(per_feed.query_json(&[]).len(), 1);

    let global = Project::new(&format!(
        "[http]\nallow_private_redirects = true\n{}{NCA_RULE}",
        feed("a", &public.url("/feed"))
    ));
    let (code, err) = poll_as_public(&global, &public);
    assert_eq!(code, 0, "{err}");
    assert_eq!(feed_status(&global, "a")["last_status"], "ok");
}

#[test]
fn configured_loopback_feed_still_follows_redirects_to_loopback() {
    // Without the seam the server is what it is, a loopback address: a feed configured there
    // is trusted, and so are its redirects within private space.
    let server = TestServer::start();
    let other = TestServer::start();
    server.route(
        "/feed",
        redirect(
            302,
            &format!("http://localhost:{}/a.rss", other.addr.port()),
        ),
    );
    other.route(
        "/a.rss",
        Route::ok(
            "application/rss+xml",
            rss(&[("a", "NCA", "https://n.example/a")]),
        ),
    );
    let project = Project::new(&format!("{}{NCA_RULE}", feed("lan", &server.url("/feed"))));
    let (code, _, err) = project.run(&["poll"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(other.hits("/a.rss"), 1);
}

// ---------------------------------------------------------------------------------------------
// Items 6 (OPML) and 7: feeds from an OPML file are untrusted input.

#[test]
fn opml_file_urls_are_refused_unless_configured_in_the_toml() {
    let project = Project::new(&format!("feeds_opml = [\"subs.opml\"]\n{NCA_RULE}"));
    std::fs::write(
        project.path("subs.opml"),
        "<opml version=\"2.0\"><body>\n<outline text=\"ok\" xmlUrl=\"https://a.example/rss\"/>\n  <outline text=\"secrets\" xmlUrl=\"file:///etc/passwd\"/>\n</body></opml>\n",
    )
    .unwrap();
    let (code, _, err) = project.run(&["check"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("subs.opml:3:3"), "{err}");
    assert!(
        err.contains("file:// URLs are not accepted from an OPML file"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let (code, out, err) = project.run(&["feeds", "import", "subs.opml"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("[[feeds]]"), "says how to allow it: {err}");

    // The operator's own TOML may poll a local file.
    let local = project.path("local.rss");
    std::fs::write(&local, rss(&[("l", "NCA local", "https://n.example/l")])).unwrap();
    let url = url::Url::from_file_path(&local).unwrap();
    project.write_config(&format!("{}{NCA_RULE}", feed("local", url.as_str())));
    let (code, _, err) = project.run(&["poll"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(project.query_json(&[]).len(), 1);
}

#[test]
fn opml_feed_names_with_escapes_never_reach_the_terminal_and_import_loads() {
    let project = Project::new(&format!("feeds_opml = [\"subs.opml\"]\n{NCA_RULE}"));
    // A raw ESC, a character reference to one, and a bidi override, in names and folders.
    std::fs::write(
        project.path("subs.opml"),
        "<opml version=\"2.0\"><body>\n<outline text=\"Fold\u{1b}[2Jer\">\n<outline text=\"Evil\u{1b}[31mRed\" xmlUrl=\"https://a.example/rss\"/>\n<outline text=\"Ref&#x1b;]0;pwned&#7;\" xmlUrl=\"https://b.example/rss\"/>\n<outline text=\"\u{202e}gnp.exe\" xmlUrl=\"https://c.example/rss\"/>\n<outline text=\"&#x1b;\" xmlUrl=\"https://d.example/rss\"/>\n</outline></body></opml>\n",
    )
    .unwrap();
    let (code, out, err) = project.run(&["check"]);
    assert_eq!(code, 0, "{err}");
    for text in [&out, &err] {
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{7}'),
            "{text:?}"
        );
        assert!(!text.contains('\u{202e}'), "{text:?}");
    }
    assert!(out.contains("Evil[31mRed"), "{out}");
    assert!(
        err.contains("subs.opml:3:1") && err.contains("control or bidi"),
        "{err}"
    );

    let (code, toml_text, err) = project.run(&["feeds", "import", "subs.opml"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        !toml_text.contains("\\u001b") && !toml_text.contains('\u{1b}'),
        "{toml_text}"
    );
    assert!(
        !toml_text.contains("\\u202e") && !toml_text.contains('\u{202e}'),
        "{toml_text}"
    );
    // What import prints, the loader accepts, with the same names.
    let imported = Project::new(&format!("{toml_text}{NCA_RULE}"));
    let (code, out2, err) = imported.run(&["check"]);
    assert_eq!(code, 0, "imported TOML is refused: {err}\n{toml_text}");
    for name in ["Evil[31mRed", "Ref]0;pwned", "gnp.exe", "d.example"] {
        assert!(toml_text.contains(name), "{name}: {toml_text}");
        assert!(out2.contains(name), "{name}: {out2}");
    }
    assert!(toml_text.contains("Fold[2Jer"), "{toml_text}");
}

// ---------------------------------------------------------------------------------------------
// Items 8 and 21: what an export may contain.

const HOSTILE_LINKS: [&str; 6] = [
    "javascript:alert(1)",
    "&amp;#106;avascript:alert(1)",
    "java&#9;script:alert(1)",
    "vbscript:msgbox(1)",
    "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
    " JaVaScRiPt&#x0A;:alert(1)",
];

/// A project that polled one feed of NCA stories: `links` items with those links, then one
/// with a good link.
fn polled(links: &[&str]) -> (TestServer, Project) {
    let server = TestServer::start();
    let mut items: Vec<(String, String, String)> = links
        .iter()
        .enumerate()
        .map(|(i, l)| (format!("h{i}"), format!("NCA story {i}"), l.to_string()))
        .collect();
    items.push((
        "good".into(),
        "NCA good story".into(),
        "https://news.example/good?a=1&amp;b=2".into(),
    ));
    let refs: Vec<(&str, &str, &str)> = items
        .iter()
        .map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str()))
        .collect();
    server.route("/feed.rss", Route::ok("application/rss+xml", rss(&refs)));
    let project = Project::new(&format!(
        "{}{NCA_RULE}",
        feed("f", &server.url("/feed.rss"))
    ));
    let (code, _, err) = project.run(&["poll"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(project.query_json(&[]).len(), links.len() + 1);
    (server, project)
}

/// Only http(s) links leave newswatch in any output: `query` (JSON, CSV) and `show` too.
#[test]
fn query_and_show_print_no_javascript_vbscript_or_data_links() {
    let (_server, project) = polled(&HOSTILE_LINKS);
    for format in ["json", "csv", "ndjson", "table"] {
        let (code, out, err) = project.run(&["query", "--format", format]);
        assert_eq!(code, 0, "{err}");
        let lower = out.to_lowercase();
        for bad in ["javascript", "vbscript", "data:", "java\tscript"] {
            assert!(
                !lower.contains(bad),
                "{bad:?} in query --format {format}: {out}"
            );
        }
    }
    for row in project.query_json(&[]) {
        let (code, out, _) = project.run(&["show", &row["id"].to_string(), "--format", "json"]);
        assert_eq!(code, 0);
        let lower = out.to_lowercase();
        assert!(
            !lower.contains("javascript") && !lower.contains("data:"),
            "{out}"
        );
    }
}

#[test]
fn exports_write_no_javascript_vbscript_or_data_links_even_obfuscated() {
    let (_server, project) = polled(&HOSTILE_LINKS);
    let (code, atom, err) = project.run(&["export", "--format", "atom"]);
    assert_eq!(code, 0, "{err}");
    let (code, json, err) = project.run(&["export", "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    // Every link written is an absolute http(s) URL (a relative one the parser resolved
    // against the channel's http link, like `http://x/&#106;avascript:…`, is a path on that
    // site: harmless); no other scheme appears anywhere.
    let hrefs: Vec<&str> = atom
        .split("href=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .collect();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let json_urls: Vec<&str> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["url"].as_str())
        .collect();
    assert!(!hrefs.is_empty() && !json_urls.is_empty());
    for link in hrefs.iter().chain(&json_urls) {
        assert!(
            link.starts_with("https://") || link.starts_with("http://"),
            "{link:?} in\n{atom}\n{json}"
        );
    }
    for out in [&atom, &json] {
        let lower = out.to_lowercase();
        for bad in [
            "\"javascript",
            "\"java\t",
            "\"vbscript",
            "data:",
            "java\\tscript",
        ] {
            assert!(!lower.contains(bad), "{bad:?} in {out}");
        }
    }
    // The good link is there, once per format, in its one serialised form.
    assert_eq!(
        atom.matches("href=\"https://news.example/good?a=1&amp;b=2\"")
            .count(),
        1,
        "{atom}"
    );
    assert!(
        json_urls.contains(&"https://news.example/good?a=1&b=2"),
        "{json}"
    );
    // Every item is still exported, just without a link.
    assert_eq!(
        v["items"].as_array().unwrap().len(),
        HOSTILE_LINKS.len() + 1
    );
}

#[test]
fn dismissed_matches_stay_out_of_export_and_output_feeds() {
    let (_server, project) = polled(&["https://news.example/a", "https://news.example/b"]);
    let ids: Vec<i64> = project
        .query_json(&[])
        .iter()
        .map(|m| m["id"].as_i64().unwrap())
        .collect();
    let (code, _, err) = project.run(&["mark", "--dismiss", &ids[0].to_string()]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = project.run(&["mark", "--star", &ids[1].to_string()]);
    assert_eq!(code, 0, "{err}");
    let exported_ids = |args: &[&str]| -> Vec<i64> {
        let mut all = vec!["export", "--format", "json"];
        all.extend_from_slice(args);
        let (code, out, err) = project.run(&all);
        assert_eq!(code, 0, "{err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["_newswatch"]["item_id"].as_i64().unwrap())
            .collect()
    };
    let default = exported_ids(&[]);
    assert_eq!(default.len(), 2);
    assert!(!default.contains(&ids[0]), "dismissed {} exported", ids[0]);
    assert_eq!(exported_ids(&["--status", "dismissed"]), vec![ids[0]]);
    assert_eq!(exported_ids(&["--status", "starred"]), vec![ids[1]]);
    let mut both = exported_ids(&["--status", "starred", "--status", "dismissed"]);
    both.sort();
    let mut want = vec![ids[0], ids[1]];
    want.sort();
    assert_eq!(both, want);
    let (code, _, err) = project.run(&["export", "--status", "bogus"]);
    assert_eq!(code, 2, "{err}");

    // The daemon's [output] files: the same function it calls after each poll.
    let settings = newswatch::config::load(&newswatch::config::ConfigSource::File(
        project.path("newswatch.toml"),
    ))
    .unwrap();
    let out = newswatch::outputs::export::OutputSettings {
        atom: Some(project.path("out.atom")),
        json_feed: Some(project.path("out.json")),
    };
    match &project.pg {
        None => {
            let store = newswatch::store::Store::open(&settings.database).unwrap();
            newswatch::outputs::export::update_outputs(&out, &settings.database, &store).unwrap();
        }
        Some(pg) => {
            let mut db = newswatch::store::sql::AnyDb::postgres(&pg.url, None).unwrap();
            let meta = newswatch::outputs::export::FeedMeta::for_name("test", "newswatch matches");
            newswatch::outputs::export::update_outputs_in(&out, meta, &mut db).unwrap();
        }
    }
    let atom = std::fs::read_to_string(project.path("out.atom")).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(project.path("out.json")).unwrap()).unwrap();
    assert_eq!(json["items"].as_array().unwrap().len(), 2);
    assert_eq!(atom.matches("<entry>").count(), 2, "{atom}");
    assert!(!atom.contains(&format!(":item:{}<", ids[0])), "{atom}");
}
