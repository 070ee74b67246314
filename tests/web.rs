//! The web server through the real binary: `newswatch serve` (and `run` with `[web]`) on
//! loopback, spoken to over plain TCP so hostile requests can be sent exactly as written.
//!
//! Covers every route and status code, cursor pagination, token auth on a non-loopback bind,
//! CSRF and DNS-rebinding refusal, escaping of hostile feed text, metrics parsed by a
//! Prometheus text parser, and a headless Chromium run (tests/web_browser.rs).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::support::server::{Route, TestServer};
use crate::support::{Project, wait_until};

/// A response as read off the socket.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    /// Header names lower-cased; repeated headers joined by "\n".
    pub headers: HashMap<String, String>,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or("")
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// Send one HTTP/1.1 request to `addr` (`host:port`) and read the whole response.
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    let mut s = TcpStream::connect(addr).expect("connect to web server");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read response");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("response head");
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let mut headers: HashMap<String, String> = HashMap::new();
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            headers
                .entry(k.trim().to_ascii_lowercase())
                .and_modify(|e| {
                    e.push('\n');
                    e.push_str(v.trim());
                })
                .or_insert_with(|| v.trim().to_string());
        }
    }
    Resp {
        status,
        headers,
        body: body.to_string(),
    }
}

pub fn get(addr: &str, path: &str) -> Resp {
    request(addr, "GET", path, &[], b"")
}

/// A running `newswatch serve` (or `run`), killed on drop.
pub struct Web {
    child: std::process::Child,
    log: PathBuf,
    /// `127.0.0.1:PORT`.
    pub addr: String,
}

impl Web {
    /// Start `newswatch <args>` in `project` and wait for its "listening on" log line.
    pub fn start(project: &Project, args: &[&str]) -> Web {
        Web::start_with_env(project, args, &[])
    }

    /// [`Web::start`] with extra environment variables for the server.
    pub fn start_with_env(project: &Project, args: &[&str], env: &[(&str, &str)]) -> Web {
        let log = project.path(&format!(
            "web-{}.log",
            args.join("_").replace(['/', ':'], "-")
        ));
        let file = std::fs::File::create(&log).expect("log file");
        let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("newswatch"))
            .current_dir(project.dir.path())
            .env_remove("NEWSWATCH_CONFIG")
            .env("RUST_LOG", "newswatch=info")
            .envs(env.iter().copied())
            .arg("--config")
            .arg(project.path("newswatch.toml"))
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(file)
            .spawn()
            .expect("spawn newswatch");
        let mut web = Web {
            child,
            log,
            addr: String::new(),
        };
        let mut found = None;
        wait_until(
            "the web server's listening line",
            Duration::from_secs(30),
            || {
                let text = std::fs::read_to_string(&web.log).unwrap_or_default();
                found = text
                    .split("listening on http://")
                    .nth(1)
                    .and_then(|r| r.split('/').next())
                    .map(str::to_string);
                found.is_some() || matches!(web.child.try_wait(), Ok(Some(_)))
            },
        );
        web.addr = found.unwrap_or_else(|| panic!("server did not start:\n{}", web.log()));
        // Listening on 0.0.0.0 / [::]: talk to it over loopback.
        web.addr = web.addr.replace("0.0.0.0", "127.0.0.1");
        web
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Web {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const RULES: &str =
    "[[rules]]\nname = \"nca\"\nquery = 'NCA'\n[[rules]]\nname = \"gchq\"\nquery = 'GCHQ'\n";

/// Hostile titles and the script they would run. Escaped twice (XML, then the HTML that
/// feed titles may hold), so the stored title is the markup as text: the normaliser would
/// strip it as tags if escaped once.
pub const HOSTILE_TITLES: &[&str] = &[
    "&amp;lt;script&amp;gt;document.title='pwned-script'&amp;lt;/script&amp;gt; NCA script title",
    "NCA &amp;quot;&amp;gt;&amp;lt;img src=x onerror=&amp;quot;document.title='pwned-img'&amp;quot;&amp;gt; breakout",
];

/// An RSS feed: `n` NCA stories, `m` GCHQ stories, the hostile ones and a javascript: link.
pub fn feed(n: usize, m: usize) -> String {
    let mut s = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><rss version=\"2.0\"><channel><title>Web test</title><link>https://news.example/</link><description>d</description>",
    );
    let mut item = |guid: &str, title: &str, link: &str, day: usize| {
        s.push_str(&format!(
            "<item><title>{title}</title><link>{link}</link><guid>{guid}</guid><description>{title} — the report said so.</description><pubDate>Mon, {day:02} Nov 2026 10:00:00 GMT</pubDate></item>"
        ));
    };
    // Distinct events (each with words of its own), so that stories keep them apart.
    let word = |i: usize, salt: usize| -> String {
        const SYL: [&str; 12] = [
            "ka", "lo", "mi", "nu", "pe", "ri", "so", "ta", "ve", "zu", "bo", "di",
        ];
        let mut n = i * 7 + salt * 131 + 5;
        let mut w = String::new();
        for _ in 0..4 {
            w.push_str(SYL[n % SYL.len()]);
            n /= SYL.len();
            n += 3;
        }
        w
    };
    for i in 0..n {
        item(
            &format!("nca-{i}"),
            &format!(
                "NCA story number {i}: {} {} {}",
                word(i, 1),
                word(i, 2),
                word(i, 3)
            ),
            &format!("https://news.example/nca-{i}"),
            1 + i % 20,
        );
    }
    for i in 0..m {
        item(
            &format!("gchq-{i}"),
            &format!(
                "GCHQ story number {i}: {} {} {}",
                word(i + 100, 4),
                word(i + 100, 5),
                word(i + 100, 6)
            ),
            &format!("https://news.example/gchq-{i}"),
            1 + i % 20,
        );
    }
    for (i, t) in HOSTILE_TITLES.iter().enumerate() {
        item(
            &format!("hostile-{i}"),
            t,
            &format!("https://news.example/hostile-{i}"),
            25,
        );
    }
    item(
        "jslink",
        "NCA javascript link story",
        "javascript:document.title='pwned-link'",
        26,
    );
    s.push_str("</channel></rss>");
    s
}

/// A project whose database holds the matches of [`feed`] (polled from a loopback server);
/// `web` is appended to the config.
pub fn project(n: usize, m: usize, web: &str) -> (Project, TestServer) {
    let server = TestServer::start();
    server.route("/feed.xml", Route::ok("application/rss+xml", feed(n, m)));
    let project = Project::new(&format!(
        "[storage]\npath = \"news.db\"\n[schedule]\ntimezone = \"Europe/London\"\n[[feeds]]\nname = \"webfeed\"\nurl = \"{}\"\n{RULES}{web}",
        server.url("/feed.xml")
    ));
    let (code, _, err) = project.run(&["poll"]);
    assert_eq!(code, 0, "poll: {err}");
    (project, server)
}

fn serve(project: &Project) -> Web {
    Web::start(project, &["serve", "--listen", "127.0.0.1:0"])
}

fn assert_security_headers(r: &Resp, what: &str) {
    let csp = r.header("content-security-policy");
    for want in [
        "default-src 'none'",
        "script-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ] {
        assert!(csp.contains(want), "{what}: CSP {csp:?} lacks {want}");
    }
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{what}: {csp}"
    );
    assert_eq!(r.header("x-content-type-options"), "nosniff", "{what}");
    assert_eq!(r.header("referrer-policy"), "no-referrer", "{what}");
}

#[test]
fn web_every_route_answers_with_its_status_code_and_security_headers() {
    let (project, _server) = project(3, 2, "");
    let web = serve(&project);
    let a = &web.addr;
    let id = get(a, "/api/v1/matches?limit=1").json()["matches"][0]["id"]
        .as_i64()
        .expect("a match");
    for (path, status, ctype) in [
        ("/", 200, "text/html"),
        ("/?rule=nca&status=new&period=3650d", 200, "text/html"),
        ("/?q=GCHQ", 200, "text/html"),
        ("/feeds", 200, "text/html"),
        ("/digests", 200, "text/html"),
        ("/login", 200, "text/html"),
        ("/assets/app.css", 200, "text/css"),
        ("/assets/app.js", 200, "text/javascript"),
        ("/healthz", 200, "application/json"),
        ("/metrics", 200, "application/openmetrics-text"),
        ("/api/v1/matches", 200, "application/json"),
        (&format!("/api/v1/matches/{id}"), 200, "application/json"),
        ("/api/v1/stories", 200, "application/json"),
        ("/api/v1/search?q=GCHQ", 200, "application/json"),
        ("/api/v1/feeds", 200, "application/json"),
        ("/api/v1/stats?period=3650d", 200, "application/json"),
        ("/api/v1/openapi.json", 200, "application/json"),
        // Unknown routes.
        ("/nope", 404, "text/html"),
        ("/api/v1/nope", 404, "application/json"),
        ("/api/v1/matches/999999", 404, "application/json"),
        // Malformed ids and filters: 400 with the reason, never 500.
        ("/api/v1/matches/abc", 400, "application/json"),
        ("/api/v1/matches/-1", 400, "application/json"),
        (
            "/api/v1/matches/99999999999999999999999",
            400,
            "application/json",
        ),
        ("/api/v1/matches?status=bogus", 400, "application/json"),
        ("/api/v1/matches?limit=0", 400, "application/json"),
        ("/api/v1/matches?limit=100000", 400, "application/json"),
        ("/api/v1/matches?cursor=forged", 400, "application/json"),
        ("/api/v1/matches?period=tomorrow", 400, "application/json"),
        ("/api/v1/matches?color=red", 400, "application/json"),
        ("/api/v1/search", 400, "application/json"),
        ("/api/v1/search?q=%28unbalanced", 400, "application/json"),
        ("/?status=bogus", 400, "text/html"),
        ("/?q=%28unbalanced", 400, "text/html"),
    ] {
        let r = get(a, path);
        assert_eq!(r.status, status, "GET {path}: {}", r.body);
        assert!(
            r.header("content-type").starts_with(ctype),
            "GET {path}: {:?}",
            r.headers
        );
        assert_security_headers(&r, path);
        if status >= 400 && ctype == "application/json" {
            let msg = r.json()["error"].as_str().unwrap_or("").to_string();
            assert!(
                !msg.is_empty() && !msg.contains("internal"),
                "GET {path}: {msg}"
            );
        }
    }
    // State changes are POST only.
    assert_eq!(get(a, "/mark").status, 405);
    assert_eq!(get(a, &format!("/api/v1/matches/{id}/status")).status, 405);
    // Bodies beyond the limit.
    let big = vec![b'a'; 200 * 1024];
    let r = request(
        a,
        "POST",
        "/mark",
        &[("Origin", &format!("http://{a}"))],
        &big,
    );
    assert_eq!(r.status, 413, "{}", r.body);
    // The openapi document is the one in the repository.
    let doc = get(a, "/api/v1/openapi.json").json();
    let repo: Value = serde_json::from_str(&crate::support::read(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json"),
    ))
    .unwrap();
    assert_eq!(doc, repo);
}

#[test]
fn web_pagination_by_cursor_walks_every_match_once_in_query_order() {
    let (project, _server) = project(9, 4, "");
    let web = serve(&project);
    let want: Vec<i64> = project
        .query_json(&[])
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert!(want.len() >= 13, "{want:?}");
    let mut got = Vec::new();
    let mut path = "/api/v1/matches?limit=4".to_string();
    let mut pages = 0;
    loop {
        let r = get(&web.addr, &path).json();
        let rows = r["matches"].as_array().unwrap();
        assert!(rows.len() <= 4);
        got.extend(rows.iter().map(|m| m["id"].as_i64().unwrap()));
        pages += 1;
        match r["next_cursor"].as_str() {
            Some(c) => path = format!("/api/v1/matches?limit=4&cursor={}", urlencode(c)),
            None => break,
        }
        assert!(pages < 20, "cursor loops");
    }
    assert_eq!(got, want, "pages in `query` order, each match once");
    assert_eq!(pages, want.len().div_ceil(4));

    // Same fields as `query --format json`.
    let first = &get(&web.addr, "/api/v1/matches?limit=1").json()["matches"][0];
    assert_eq!(first, &project.query_json(&["--limit", "1"])[0]);

    // Filters combine with the cursor; stories group (these are distinct events: one each).
    let r = get(&web.addr, "/api/v1/stories?rule=gchq&limit=3").json();
    let stories = r["stories"].as_array().unwrap();
    assert_eq!(stories.len(), 3);
    for s in stories {
        assert_eq!(s["story_size"], 1);
        assert_eq!(s["items"][0]["id"], s["story"]);
        assert_eq!(s["items"][0]["rules"], serde_json::json!(["gchq"]));
    }
    let c = r["next_cursor"].as_str().expect("a second page");
    let r2 = get(
        &web.addr,
        &format!("/api/v1/stories?rule=gchq&limit=3&cursor={}", urlencode(c)),
    )
    .json();
    assert_eq!(r2["stories"].as_array().unwrap().len(), 1);
    assert!(r2["next_cursor"].is_null());

    // The page links to the next page with the filters kept.
    let page = get(&web.addr, "/?rule=nca&limit=5").body;
    let next = page
        .split("class=\"next\" href=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("an Older link")
        .replace("&amp;", "&");
    assert!(
        next.contains("rule=nca") && next.contains("cursor="),
        "{next}"
    );
    let page2 = get(&web.addr, &next);
    assert_eq!(page2.status, 200, "{}", page2.body);
    assert!(page2.body.contains("NCA story number"), "{}", page2.body);
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn status_of(project: &Project, id: i64) -> String {
    project
        .query_json(&[])
        .iter()
        .find(|r| r["id"] == id)
        .map(|r| r["status"].as_str().unwrap().to_string())
        .expect("match")
}

#[test]
fn web_state_changes_need_post_from_the_same_origin_csrf() {
    let (project, _server) = project(3, 0, "");
    let web = serve(&project);
    let a = web.addr.as_str();
    let origin = format!("http://{a}");
    let id = project.query_json(&[])[0]["id"].as_i64().unwrap();
    let form = format!("ids={id}&status=read&return=/");
    let form_ct = ("Content-Type", "application/x-www-form-urlencoded");
    // A cross-site form post, in every way a browser can label it, is refused.
    for headers in [
        vec![form_ct, ("Origin", "https://evil.example")],
        vec![
            form_ct,
            ("Sec-Fetch-Site", "cross-site"),
            ("Origin", origin.as_str()),
        ],
        vec![form_ct, ("Sec-Fetch-Site", "same-site")],
        vec![form_ct, ("Origin", "null")],
        vec![form_ct],
    ] {
        let r = request(a, "POST", "/mark", &headers, form.as_bytes());
        assert_eq!(r.status, 403, "{headers:?}: {}", r.body);
        assert_eq!(status_of(&project, id), "new", "{headers:?} changed state");
    }
    let r = request(
        a,
        "POST",
        &format!("/api/v1/matches/{id}/status"),
        &[
            ("Content-Type", "text/plain"),
            ("Origin", "https://evil.example"),
        ],
        br#"{"status":"read"}"#,
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(status_of(&project, id), "new");

    // Same-origin form post: done, redirected back to a path of this server only.
    let r = request(
        a,
        "POST",
        "/mark",
        &[form_ct, ("Origin", origin.as_str())],
        format!("ids={id}&status=starred&return=//evil.example/").as_bytes(),
    );
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.header("location"), "/");
    assert_eq!(status_of(&project, id), "starred");
    // Our script's request (fetch: Sec-Fetch-Site same-origin, Accept JSON).
    let r = request(
        a,
        "POST",
        "/mark",
        &[
            form_ct,
            ("Sec-Fetch-Site", "same-origin"),
            ("Accept", "application/json"),
        ],
        format!("ids={id},999999&status=read").as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["ids"], serde_json::json!([id]));
    assert_eq!(r.json()["not_found"], serde_json::json!([999999]));
    assert_eq!(status_of(&project, id), "read");
    // The JSON API from a non-browser client (JSON body, no Origin).
    let path = format!("/api/v1/matches/{id}/status");
    let json = ("Content-Type", "application/json");
    let r = request(a, "POST", &path, &[json], br#"{"status":"dismissed"}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["changed"], true);
    assert_eq!(status_of(&project, id), "dismissed");
    for (body, code) in [
        (&br#"{"status":"gone"}"#[..], 400),
        (b"not json", 400),
        (br#"{"status":"read","x":1}"#, 400),
    ] {
        let r = request(a, "POST", &path, &[json], body);
        assert_eq!(r.status, code, "{}", r.body);
        assert!(r.json()["error"].as_str().is_some());
    }
    let r = request(
        a,
        "POST",
        "/api/v1/matches/999999/status",
        &[json],
        br#"{"status":"read"}"#,
    );
    assert_eq!(r.status, 404);
    let r = request(
        a,
        "POST",
        "/mark",
        &[form_ct, ("Origin", origin.as_str())],
        b"ids=1;drop&status=read",
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(status_of(&project, id), "dismissed");
}

#[test]
fn web_loopback_server_refuses_a_foreign_host_header_dns_rebinding() {
    let (project, _server) = project(1, 0, "");
    let web = serve(&project);
    let r = request(
        &web.addr,
        "GET",
        "/api/v1/matches",
        &[("Host", "attacker.example:8080")],
        b"",
    );
    assert_eq!(r.status, 421, "{}", r.body);
    assert!(!r.body.contains("NCA story"), "{}", r.body);
    let r = request(
        &web.addr,
        "GET",
        "/api/v1/matches",
        &[("Host", "localhost:8080")],
        b"",
    );
    assert_eq!(r.status, 200);
}

#[test]
fn web_escapes_hostile_titles_and_drops_non_http_links() {
    let (project, _server) = project(1, 0, "");
    let stored: Vec<String> = project
        .query_json(&[])
        .iter()
        .map(|r| r["title"].as_str().unwrap().to_string())
        .collect();
    assert!(
        stored.iter().any(|t| t.contains("<script>"))
            && stored.iter().any(|t| t.contains("<img src=x")),
        "the hostile titles are stored as text: {stored:?}"
    );
    let web = serve(&project);
    for path in ["/", "/?q=NCA", "/?rule=nca&status=new"] {
        let body = get(&web.addr, path).body;
        assert!(
            !body.contains("<script>document"),
            "{path}: raw script in\n{body}"
        );
        assert!(!body.contains("<img"), "{path}: raw img in\n{body}");
        // askama escapes with numeric references: " > < ' as &#34; &#62; &#60; &#39;.
        assert!(
            body.contains("&#34;&#62;&#60;img src=x onerror=&#34;"),
            "{path}: breakout shown as text"
        );
        assert!(
            !body.contains("javascript:"),
            "{path}: javascript link in\n{body}"
        );
        assert!(
            body.contains("&#60;script&#62;document.title="),
            "{path}: escaped title shown"
        );
        assert!(body.contains("NCA javascript link story"), "{path}");
        // The only script is our own file.
        assert_eq!(body.matches("<script").count(), 1, "{path}");
        assert!(body.contains("<script src=\"/assets/app.js\" defer></script>"));
    }
    let api = get(&web.addr, "/api/v1/matches").json();
    let js = api["matches"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["title"] == "NCA javascript link story")
        .expect("js link story");
    assert!(js["link"].is_null(), "{js}");
}

#[test]
fn web_non_loopback_bind_without_token_refuses_to_start() {
    let project = Project::new("[storage]\npath = \"news.db\"\n[web]\nlisten = \"0.0.0.0:0\"\n");
    let (code, _, err) = project.run(&["serve"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("not a loopback address") && err.contains("token_file"),
        "{err}"
    );
    let (code, _, err) = project.run(&["serve", "--listen", "[::]:0"]);
    assert_eq!(code, 1, "{err}");
    // A token too short to be safe is refused too.
    std::fs::write(project.path("token"), "short\n").unwrap();
    project.write_config(
        "[storage]\npath = \"news.db\"\n[web]\nlisten = \"0.0.0.0:0\"\ntoken_file = \"token\"\n",
    );
    let (code, _, err) = project.run(&["serve"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("at least 16 characters"), "{err}");
    // And a bad listen value is a config error with its position.
    project.write_config("[web]\nlisten = \"localhost\"\n");
    let (code, _, err) = project.run(&["check"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("newswatch.toml:2:") && err.contains("web.listen"),
        "{err}"
    );
}

#[test]
fn web_token_on_non_loopback_bind_is_required_by_bearer_or_login_cookie() {
    const TOKEN: &str = "correct-horse-battery-staple-42";
    let (project, _server) = project(
        2,
        0,
        "[web]\nlisten = \"0.0.0.0:0\"\ntoken_file = \"secret/token\"\n",
    );
    std::fs::create_dir_all(project.path("secret")).unwrap();
    std::fs::write(project.path("secret/token"), format!("{TOKEN}\n")).unwrap();
    let web = Web::start(&project, &["serve"]);
    let a = web.addr.as_str();
    for path in [
        "/",
        "/feeds",
        "/metrics",
        "/api/v1/matches",
        "/api/v1/openapi.json",
    ] {
        let r = get(a, path);
        assert_eq!(r.status, 401, "GET {path} without token: {}", r.body);
        assert!(!r.body.contains("NCA story"), "{path}");
    }
    assert!(
        get(a, "/").body.contains("action=\"/login\""),
        "the page offers the login form"
    );
    assert_eq!(
        get(a, "/api/v1/matches").header("www-authenticate"),
        "Bearer realm=\"newswatch\""
    );
    // Public: the login form, assets, health.
    for path in ["/login", "/assets/app.js", "/healthz"] {
        assert_eq!(get(a, path).status, 200, "{path}");
    }
    let bearer = format!("Bearer {TOKEN}");
    let r = request(
        a,
        "GET",
        "/api/v1/matches",
        &[("Authorization", &bearer)],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    for wrong in [
        "Bearer correct-horse-battery-staple-43",
        "Bearer ",
        "Basic Y29ycmVjdA==",
        TOKEN,
    ] {
        let r = request(
            a,
            "GET",
            "/api/v1/matches",
            &[("Authorization", wrong)],
            b"",
        );
        assert_eq!(r.status, 401, "{wrong}");
    }
    // With the token, the JSON API takes a POST without Origin (not a browser).
    let id = r.json()["matches"][0]["id"].as_i64().unwrap();
    let r = request(
        a,
        "POST",
        &format!("/api/v1/matches/{id}/status"),
        &[("Authorization", &bearer), ("Content-Type", "text/plain")],
        br#"{"status":"read"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);

    // The login form: a wrong token is 401, the right one sets an HttpOnly SameSite=Strict
    // cookie that does not hold the token.
    let origin = format!("http://{a}");
    let form = [
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("Origin", origin.as_str()),
    ];
    let r = request(a, "POST", "/login", &form, b"token=wrong-wrong-wrong-wrong");
    assert_eq!(r.status, 401);
    assert!(r.header("set-cookie").is_empty());
    let r = request(
        a,
        "POST",
        "/login",
        &form,
        format!("token={TOKEN}").as_bytes(),
    );
    assert_eq!(r.status, 303, "{}", r.body);
    let cookie = r.header("set-cookie").to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(!cookie.contains(TOKEN), "{cookie}");
    let pair = cookie.split(';').next().unwrap().to_string();
    let r = request(a, "GET", "/", &[("Cookie", &pair)], b"");
    assert_eq!(r.status, 200);
    assert!(r.body.contains("NCA story"), "{}", r.body);
    let forged = format!(
        "{}0",
        pair.trim_end_matches(|c: char| c.is_ascii_hexdigit())
    );
    assert_eq!(
        request(a, "GET", "/", &[("Cookie", &forged)], b"").status,
        401
    );
    // A logged-in browser is still subject to the CSRF rule.
    let r = request(
        a,
        "POST",
        "/mark",
        &[
            ("Cookie", &pair),
            ("Origin", "https://evil.example"),
            form[0],
        ],
        format!("ids={id}&status=starred").as_bytes(),
    );
    assert_eq!(r.status, 403);
    // A foreign Host is fine with a token (the token is the protection, e.g. behind a proxy).
    let r = request(
        a,
        "GET",
        "/api/v1/feeds",
        &[("Authorization", &bearer), ("Host", "news.example.org")],
        b"",
    );
    assert_eq!(r.status, 200);
}

#[test]
fn web_healthz_is_503_with_the_reason_while_the_database_takes_no_write() {
    if crate::support::sqlite_only("an SQLite write lock held by another connection") {
        return;
    }
    let (project, _server) = project(1, 0, "");
    let web = serve(&project);
    let ok = get(&web.addr, "/healthz");
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.json()["mode"], "serve");
    let db = rusqlite::Connection::open(project.path("news.db")).unwrap();
    db.execute_batch("BEGIN IMMEDIATE").unwrap();
    let r = get(&web.addr, "/healthz");
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(
        r.json()["problems"][0]
            .as_str()
            .unwrap()
            .contains("not writable"),
        "{}",
        r.body
    );
    db.execute_batch("ROLLBACK").unwrap();
    assert_eq!(get(&web.addr, "/healthz").status, 200);
}

/// Value of the sample `name` with `labels` in a parsed scrape.
fn sample(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
}

#[test]
fn web_run_serves_beside_polling_with_metrics_as_prometheus_text_and_health() {
    let server = TestServer::start();
    server.route("/feed.xml", Route::ok("application/rss+xml", feed(3, 2)));
    let project = Project::new(&format!(
        "[storage]\npath = \"news.db\"\n[schedule]\npoll = \"* * * * *\"\n[[feeds]]\nname = \"webfeed\"\nurl = \"{}\"\n[[feeds]]\nname = \"broken\"\nurl = \"{}\"\n{RULES}[web]\nlisten = \"127.0.0.1:0\"\n",
        server.url("/feed.xml"),
        server.url("/missing.xml")
    ));
    let web = Web::start(&project, &["run"]);
    assert!(
        web.log()
            .contains("web server listening on http://127.0.0.1:"),
        "{}",
        web.log()
    );
    let mut scrape = None;
    wait_until(
        "both feeds polled, as /metrics says",
        Duration::from_secs(60),
        || {
            let r = get(&web.addr, "/metrics");
            assert_eq!(r.status, 200);
            assert!(
                r.header("content-type")
                    .starts_with("application/openmetrics-text")
            );
            let s =
                prometheus_parse::Scrape::parse(r.body.lines().map(|l| Ok(l.to_string()))).unwrap();
            let ok = sample(&s, "newswatch_polls_total", &[("outcome", "ok")]).unwrap_or(0.0);
            let failed =
                sample(&s, "newswatch_polls_total", &[("outcome", "failed")]).unwrap_or(0.0);
            // The per-rule gauges are read from the database at each scrape; under a loaded
            // CI machine one scrape after both polls still lacked them (not understood; see
            // the stop-23 note), so wait for them too. The values are asserted below.
            let stored = sample(&s, "newswatch_matches", &[("rule", "gchq")]).is_some();
            let done = ok >= 1.0 && failed >= 1.0 && stored;
            if done {
                scrape = Some(s);
            }
            done
        },
    );
    let s = scrape.unwrap();
    // Every sample has our prefix; every family was described.
    assert!(s.samples.iter().all(|x| x.metric.starts_with("newswatch_")));
    assert!(
        s.docs.contains_key("newswatch_polls"),
        "{:?}",
        s.docs.keys()
    );
    assert_eq!(
        sample(&s, "newswatch_fetches_total", &[("result", "client_error")]),
        Some(1.0)
    );
    assert!(sample(&s, "newswatch_fetches_total", &[("result", "success")]).unwrap() >= 1.0);
    assert!(sample(&s, "newswatch_fetch_duration_seconds_count", &[]).unwrap() >= 2.0);
    assert!(sample(&s, "newswatch_fetched_bytes_total", &[]).unwrap() > 100.0);
    assert!(sample(&s, "newswatch_new_entries_total", &[]).unwrap() >= 5.0);
    assert!(sample(&s, "newswatch_new_matches_total", &[]).unwrap() >= 5.0);
    assert_eq!(
        sample(&s, "newswatch_matches", &[("rule", "gchq")]),
        Some(2.0)
    );
    assert!(
        sample(&s, "newswatch_stories", &[]).unwrap() >= 5.0,
        "{:?}",
        sample(&s, "newswatch_stories", &[])
    );
    assert!(sample(&s, "newswatch_archive_entries", &[]).unwrap() >= 5.0);
    assert!(sample(&s, "newswatch_archive_size_bytes", &[]).is_some());
    let now = chrono::Utc::now().timestamp() as f64;
    let last = sample(
        &s,
        "newswatch_feed_last_success_timestamp_seconds",
        &[("feed", "webfeed")],
    )
    .unwrap();
    assert!((now - last).abs() < 120.0, "{last} vs {now}");
    assert_eq!(
        sample(
            &s,
            "newswatch_feed_consecutive_failures",
            &[("feed", "broken")]
        ),
        Some(1.0)
    );
    assert!(
        sample(
            &s,
            "newswatch_http_requests_total",
            &[("route", "/metrics"), ("status", "2xx")]
        )
        .is_some()
    );
    let h = get(&web.addr, "/healthz");
    assert_eq!(h.status, 200, "{}", h.body);
    assert_eq!(h.json()["mode"], "run");
    assert_eq!(h.json()["scheduler"], "alive");
    // The page shows what the daemon stored.
    assert!(
        get(&web.addr, "/?rule=gchq")
            .body
            .contains("GCHQ story number 1")
    );
}

/// The Chromium binary, if installed (`CHROMIUM` overrides).
fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|d| ["chromium", "chromium-browser"].map(|n| d.join(n)))
        .find(|p| p.is_file())
}

/// A headless Chromium driven over the DevTools protocol (one page, one WebSocket).
struct Browser {
    child: std::process::Child,
    _profile: tempfile::TempDir,
    ws: tungstenite::WebSocket<TcpStream>,
    next_id: u64,
    /// The page's session (flat mode), once attached.
    session: Option<String>,
}

impl Browser {
    fn launch(bin: &std::path::Path) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new(bin)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-extensions",
                "--disable-background-networking",
                "--window-size=1200,900",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start chromium");
        // "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/…"
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(url) = line.split("DevTools listening on ").nth(1) {
                    let _ = tx.send(url.trim().to_string());
                }
            }
        });
        let browser_ws = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("chromium's DevTools line");
        // One WebSocket to the browser; the page is a target attached in flat mode, its
        // commands carry the session id.
        let port = browser_ws
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .unwrap()
            .to_string();
        let stream = TcpStream::connect(&port).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let (ws, _) = tungstenite::client(browser_ws.as_str(), stream).expect("CDP websocket");
        let mut b = Browser {
            child,
            _profile: profile,
            ws,
            next_id: 0,
            session: None,
        };
        let target = b.call(
            "Target.createTarget",
            serde_json::json!({"url": "about:blank"}),
        );
        let attached = b.call(
            "Target.attachToTarget",
            serde_json::json!({"targetId": target["targetId"], "flatten": true}),
        );
        b.session = attached["sessionId"].as_str().map(str::to_string);
        assert!(b.session.is_some(), "{attached}");
        b
    }

    /// Send one command and wait for its result (events in between are skipped).
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = serde_json::json!({"id": id, "method": method, "params": params});
        if let Some(s) = &self.session {
            msg["sessionId"] = Value::String(s.clone());
        }
        self.ws
            .send(tungstenite::Message::text(msg.to_string()))
            .expect("CDP send");
        loop {
            let m = self.ws.read().expect("CDP read");
            let Ok(text) = m.to_text() else { continue };
            let Ok(v) = serde_json::from_str::<Value>(text) else {
                continue;
            };
            if v["id"] == id {
                assert!(v["error"].is_null(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    /// Evaluate `js` in the page; its value (by value).
    fn eval(&mut self, js: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            serde_json::json!({"expression": js, "returnByValue": true, "awaitPromise": true}),
        );
        assert!(r["exceptionDetails"].is_null(), "{js}: {r}");
        r["result"]["value"].clone()
    }

    fn wait_for(&mut self, what: &str, js: &str) {
        let start = std::time::Instant::now();
        while self.eval(js) != Value::Bool(true) {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "timed out waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A real mouse click (press and release) at the centre of the element `selector`.
    fn click(&mut self, selector: &str) {
        let rect = self.eval(&format!(
            "(() => {{ const e = document.querySelector({selector:?}); e.scrollIntoView({{block: 'center'}});
               const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; }})()"
        ));
        let (x, y) = (rect[0].as_f64().unwrap(), rect[1].as_f64().unwrap());
        for kind in ["mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                serde_json::json!({"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1}),
            );
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn web_browser_filters_by_rule_marks_a_story_read_and_runs_no_feed_script() {
    let Some(bin) = chromium() else {
        println!("SKIPPED: chromium is not installed (apt-get install chromium)");
        return;
    };
    let (project, _server) = project(4, 3, "");
    let web = serve(&project);
    let mut b = Browser::launch(&bin);
    b.call("Page.enable", serde_json::json!({}));
    b.call("Runtime.enable", serde_json::json!({}));
    b.call(
        "Page.navigate",
        serde_json::json!({"url": format!("http://{}/", web.addr)}),
    );
    b.wait_for(
        "the review page",
        "document.readyState === 'complete' && !!document.querySelector('form.filters')",
    );
    // The hostile titles are on the page, as text, and ran nothing.
    b.wait_for(
        "the script file",
        "document.querySelectorAll('article.story').length > 0",
    );
    assert_eq!(b.eval("document.title"), "newswatch — review");
    assert_eq!(
        b.eval("document.querySelectorAll('main img, main script').length"),
        0
    );
    assert_eq!(
        b.eval("document.body.textContent.includes(\"<img src=x onerror=\")"),
        true,
        "the hostile title is shown as text"
    );

    // Filter by a rule with the form.
    b.eval("document.querySelector('select[name=rule]').value = 'gchq'; true");
    b.click("form.filters button[type=submit]");
    b.wait_for(
        "the filtered page",
        "location.search.includes('rule=gchq') && document.readyState === 'complete'",
    );
    let titles =
        b.eval("[...document.querySelectorAll('article.story h2')].map(h => h.textContent)");
    let titles: Vec<&str> = titles
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(titles.len(), 3, "{titles:?}");
    assert!(
        titles.iter().all(|t| t.starts_with("GCHQ story")),
        "{titles:?}"
    );

    // Mark the first story read with a click: the script posts, the page updates in place.
    let id: i64 = b
        .eval("document.querySelector('article.story').dataset.ids")
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    b.eval("window.notReloaded = true; true");
    b.click("article.story button[data-action=read]");
    b.wait_for(
        "the story shown as read",
        "document.querySelector('article.story').classList.contains('status-read')",
    );
    assert_eq!(b.eval("window.notReloaded === true"), true, "no reload");
    assert_eq!(status_of(&project, id), "read", "the database has it");
    assert_eq!(b.eval("document.title"), "newswatch — review");
}
