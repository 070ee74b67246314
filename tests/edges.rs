//! Bad input at the edges, through the real binary: every kind of config mistake gives
//! `file:line:column: reason` on one line and exit code 2 (never a panic or backtrace); bad
//! command-line arguments exit 2; feed text with control characters, ANSI escapes and bidi
//! overrides never reaches the terminal raw (query and feeds tables, text logs).

use crate::support::server::{Route, TestServer};
use crate::support::{Project, bin};

/// (what, config text, expected line:column, a word of the reason).
const MISTAKES: &[(&str, &str, &str, &str)] = &[
    ("toml syntax", "[[feeds]\nname = \"a\"\n", "1:9", "expected"),
    (
        "unknown key",
        "[http]\ntimeuot = \"2s\"\n",
        "2:1",
        "unknown field `timeuot`",
    ),
    (
        "unknown section",
        "[htp]\ntimeout = \"2s\"\n",
        "1:2",
        "unknown field `htp`",
    ),
    (
        "bad cron",
        "[schedule]\npoll = \"61 * * * *\"\n",
        "2:8",
        "invalid cron expression",
    ),
    (
        "bad feed cron",
        "[[feeds]]\nname = \"a\"\nurl = \"http://x/\"\nschedule = \"bogus\"\n",
        "4:12",
        "schedule",
    ),
    (
        "bad url",
        "[[feeds]]\nname = \"a\"\nurl = \"not a url\"\n",
        "3:7",
        "invalid URL",
    ),
    (
        "bad scheme",
        "[[feeds]]\nname = \"a\"\nurl = \"ftp://x/\"\n",
        "3:7",
        "unsupported URL scheme",
    ),
    (
        "missing url",
        "[[feeds]]\nname = \"a\"\n",
        "1:1",
        "missing field `url`",
    ),
    (
        "duplicate feed",
        "[[feeds]]\nname = \"a\"\nurl = \"http://x/\"\n[[feeds]]\nname = \"a\"\nurl = \"http://y/\"\n",
        "5:8",
        "duplicate feed name",
    ),
    (
        "duplicate rule",
        "[[rules]]\nname = \"r\"\nquery = \"a\"\n[[rules]]\nname = \"r\"\nquery = \"b\"\n",
        "5:8",
        "duplicate rule name",
    ),
    (
        "bad rule",
        "[[rules]]\nname = \"r\"\nquery = \"(a OR\"\n",
        "3:13",
        "rule \"r\"",
    ),
    (
        "empty rule",
        "[[rules]]\nname = \"r\"\nquery = \"\"\n",
        "3:",
        "rule \"r\"",
    ),
    (
        "bad time zone",
        "[schedule]\ntimezone = \"Mars/Olympus\"\n",
        "2:12",
        "unknown time zone",
    ),
    (
        "bad duration",
        "[http]\ntimeout = \"2 fortnights\"\n",
        "2:11",
        "invalid duration",
    ),
    (
        "wrong type",
        "[http]\nconcurrency = \"many\"\n",
        "2:15",
        "invalid type",
    ),
    (
        "zero concurrency",
        "[http]\nconcurrency = 0\n",
        "2:15",
        "at least 1",
    ),
    (
        "bad proxy",
        "[http]\nproxy = \"::::\"\n",
        "2:9",
        "invalid proxy URL",
    ),
    (
        "bad header name",
        "[http]\nheaders = { \"bad header\" = \"x\" }\n",
        "2:11",
        "invalid header name",
    ),
    (
        "bad feed header value",
        "[[feeds]]\nname = \"a\"\nurl = \"http://x/\"\nheaders = { X-A = \"a\\nb\" }\n",
        "4:11",
        "invalid value for header",
    ),
    (
        "bad user agent",
        "[http]\nuser_agent = \"a\\nb\"\n",
        "2:14",
        "user_agent",
    ),
];

fn assert_config_error(what: &str, text: &[u8], position: &str, word: &str) {
    let project = Project::new("");
    std::fs::write(project.path("newswatch.toml"), text).expect("write config");
    for cmd in ["check", "poll", "query"] {
        let out = project
            .cmd(&[cmd])
            .env("RUST_BACKTRACE", "1")
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{what} ({cmd}): {err}");
        assert_eq!(
            err.lines().count(),
            1,
            "{what} ({cmd}): not one line: {err}"
        );
        let prefix = format!(
            "newswatch: error: {}:{position}",
            project.path("newswatch.toml").display()
        );
        assert!(
            err.starts_with(&prefix),
            "{what} ({cmd}): want {prefix:?}…, got {err}"
        );
        assert!(err.contains(word), "{what} ({cmd}): want {word:?} in {err}");
        assert!(
            !err.contains("panicked") && !err.contains("backtrace"),
            "{err}"
        );
        assert!(out.stdout.is_empty() || cmd == "check", "{what} ({cmd})");
    }
}

#[test]
fn every_kind_of_config_mistake_is_one_line_with_position_and_exit_2() {
    for (what, text, position, word) in MISTAKES {
        assert_config_error(what, text.as_bytes(), position, word);
    }
}

#[test]
fn config_with_invalid_utf8_points_at_the_bad_byte() {
    assert_config_error(
        "invalid UTF-8",
        b"[http]\ntimeout = \"2s\"\nuser_agent = \"x\xff\"\n",
        "3:16",
        "not valid UTF-8",
    );
}

#[test]
fn bad_command_line_arguments_exit_2() {
    let cases: &[&[&str]] = &[
        &[],
        &["--frobnicate"],
        &["nosuchcommand"],
        &["query", "--limit", "-3"],
        &["query", "--limit", "many"],
        &["query", "--since", "yesterday-ish"],
        &["query", "--format", "xml"],
        &["query", "--status", "unread"],
        &["feeds", "--format", "yaml"],
        &["--log-format", "xml", "check"],
        &["poll", "--feed"],
    ];
    for args in cases {
        let out = bin()
            .args(*args)
            .env("RUST_BACKTRACE", "1")
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    // A bad query expression is a usage error too, with its column.
    let project = Project::new("");
    let (code, _, err) = project.run(&["query", "(a OR"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.starts_with("newswatch: error: query EXPR: column"),
        "{err}"
    );
    let (code, _, err) = project.run(&["poll", "--feed", "nope"]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

/// Text a hostile publisher controls, full of terminal controls: ANSI colour and cursor
/// sequences, BEL, CR (overwrite the line), backspace, OSC (set window title) and a
/// right-to-left override.
const EVIL: &str =
    "NCA \u{1b}[31mred\u{1b}[0m \u{7}bell\r CR\u{8} \u{1b}]0;pwned\u{7} \u{202E}evil \u{9b}31m";

/// No C0 control bytes but newline (JSON output: C1 and bidi characters are valid JSON data
/// there, kept exactly; ESC, BEL, BS and CR are escaped).
fn no_raw_c0(what: &str, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    assert!(!bytes.contains(&0x1b), "{what}: raw ESC in {text:?}");
    assert!(!bytes.contains(&0x07), "{what}: raw BEL in {text:?}");
    assert!(!bytes.contains(&0x08), "{what}: raw BS in {text:?}");
    assert!(!bytes.contains(&b'\r'), "{what}: raw CR in {text:?}");
}

/// Nothing a terminal would interpret: no C0 controls but newline, no C1 controls, no bidi
/// overrides (tables and text logs).
fn no_raw_controls(what: &str, bytes: &[u8]) {
    no_raw_c0(what, bytes);
    let text = String::from_utf8_lossy(bytes);
    assert!(
        !text.contains('\u{202E}'),
        "{what}: bidi override in {text:?}"
    );
    assert!(!text.contains('\u{9b}'), "{what}: C1 CSI in {text:?}");
}

#[test]
fn control_characters_in_feed_text_never_reach_the_terminal_raw() {
    let server = TestServer::start();
    let json_feed = serde_json::json!({
        "version": "https://jsonfeed.org/version/1.1",
        "title": EVIL,
        "items": [{
            "id": "evil-1",
            "url": "https://news.example/evil",
            "title": EVIL,
            "content_text": EVIL,
            "authors": [{"name": EVIL}],
        }],
    });
    server.route(
        "/evil.json",
        Route::ok("application/feed+json", json_feed.to_string()),
    );
    // An HTML page instead of a feed: its <title> ends up in the recorded error.
    server.route(
        "/evil.html",
        Route::ok(
            "text/html",
            format!("<!DOCTYPE html><html><head><title>{EVIL}</title></head><body>x</body></html>"),
        ),
    );
    // A redirect whose Location carries controls (percent-encoded by URL parsing, or refused).
    server.route(
        "/evil-redirect",
        Route::status(302, vec![("Location", "/x\u{1b}[31m")], ""),
    );
    let project = Project::new(&format!(
        "[storage]\npath = \"data/news.db\"\n\
         [[feeds]]\nname = \"evil\"\nurl = \"{}\"\n\
         [[feeds]]\nname = \"html\"\nurl = \"{}\"\n\
         [[feeds]]\nname = \"redirect\"\nurl = \"{}\"\n\
         [[rules]]\nname = \"nca\"\nquery = 'NCA'\n",
        server.url("/evil.json"),
        server.url("/evil.html"),
        server.url("/evil-redirect"),
    ));

    // Logs in text mode, at every verbosity.
    for flag in ["-v", "-vv", "-vvv"] {
        let out = project.cmd(&[flag, "poll"]).output().expect("poll");
        assert_eq!(out.status.code(), Some(0));
        no_raw_controls(&format!("poll {flag} stderr"), &out.stderr);
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("not a feed"),
            "the HTML feed failed and said so"
        );
    }

    let out = project.cmd(&["query"]).output().expect("query");
    assert_eq!(out.status.code(), Some(0));
    no_raw_controls("query table", &out.stdout);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("red"),
        "the item is listed"
    );

    let out = project.cmd(&["feeds"]).output().expect("feeds");
    assert_eq!(out.status.code(), Some(0));
    no_raw_controls("feeds table", &out.stdout);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("not a feed"), "{table}");

    // JSON output escapes C0 controls (the data is kept exactly, ESC as \u001b).
    let out = project
        .cmd(&["query", "--format", "json"])
        .output()
        .expect("query json");
    no_raw_c0("query json", &out.stdout);
    let out = project
        .cmd(&["feeds", "--format", "json"])
        .output()
        .expect("feeds json");
    no_raw_c0("feeds json", &out.stdout);

    // `check` prints feed names from the config.
    let out = project.cmd(&["check"]).output().expect("check");
    assert_eq!(out.status.code(), Some(0));
    no_raw_controls("check", &out.stdout);
}
