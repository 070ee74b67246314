//! Alerts (issue 15) through the real binary against loopback receivers: one alert per story,
//! batching and quiet hours under a controlled clock (`NEWSWATCH_ALERTS_CLOCK`, never sleeps),
//! retries after a 500, kill -9 at both ends of a send, hostile titles for every destination,
//! and a slow receiver that must not delay the daemon's next poll.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::support::server::{Request, Route, TestServer, write_response};
use crate::support::{Daemon, Project, wait_until};

const CLOCK: &str = "NEWSWATCH_ALERTS_CLOCK";

/// An RSS document with `(guid, link, title)` items.
fn rss(items: &[(&str, &str, &str)]) -> String {
    let mut s = String::from(
        "<?xml version=\"1.0\"?><rss version=\"2.0\"><channel><title>t</title><link>https://outlet.example/</link>",
    );
    for (id, link, title) in items {
        s.push_str(&format!(
            "<item><guid isPermaLink=\"false\">{id}</guid><link>{link}</link><title>{title}</title><description>Report on the NCA.</description></item>"
        ));
    }
    s.push_str("</channel></rss>");
    s
}

const RULE: &str = "\n[[rules]]\nname = \"nca\"\nquery = 'NCA'\n";

fn feed_block(name: &str, url: &str) -> String {
    format!("\n[[feeds]]\nname = \"{name}\"\nurl = \"{url}\"\n")
}

/// A receiver path answering 200 to every POST.
fn ok_hook(server: &TestServer, path: &str) {
    server.route(path, Route::status(200, vec![], "ok"));
}

fn json_body(r: &Request) -> Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|e| {
        panic!(
            "body is not JSON ({e}): {}",
            String::from_utf8_lossy(&r.body)
        )
    })
}

fn poll_at(p: &Project, at: Option<DateTime<Utc>>) -> String {
    let mut cmd = p.cmd(&["poll"]);
    if let Some(t) = at {
        cmd.env(CLOCK, t.to_rfc3339());
    }
    let out = cmd.output().expect("run poll");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "poll failed: {err}");
    err
}

fn outbox(p: &Project) -> Vec<Value> {
    let (code, out, err) = p.run(&["alerts", "list", "--format", "json"]);
    assert_eq!(code, 0, "alerts list: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

#[test]
fn one_alert_per_story_across_three_outlets_in_two_polls() {
    let server = TestServer::start();
    let story = [("x1", "https://news.example/raid", "NCA raid in Leeds")];
    server.route("/a", Route::ok("application/rss+xml", rss(&story)));
    server.route("/b", Route::ok("application/rss+xml", rss(&story)));
    server.route("/c", Route::ok("application/rss+xml", rss(&[])));
    ok_hook(&server, "/desk");
    ok_hook(&server, "/plain");
    let p = Project::new(&format!(
        "{}{}{}{RULE}
[[alerts]]
name = \"desk\"
webhook = \"{}\"
update_at = [3]

[[alerts]]
name = \"plain\"
rules = [\"nca\"]
webhook = \"{}\"
",
        feed_block("a", &server.url("/a")),
        feed_block("b", &server.url("/b")),
        feed_block("c", &server.url("/c")),
        server.url("/desk"),
        server.url("/plain"),
    ));
    poll_at(&p, None);
    assert_eq!(
        server.hits("/desk"),
        1,
        "two outlets in one poll: one alert"
    );
    assert_eq!(server.hits("/plain"), 1);
    server.route("/c", Route::ok("application/rss+xml", rss(&story)));
    poll_at(&p, None);
    poll_at(&p, None);
    let desk = server.requests("/desk");
    assert_eq!(desk.len(), 2, "new + reached 3 outlets, nothing more");
    assert_eq!(
        server.hits("/plain"),
        1,
        "a third outlet joining is not a new alert"
    );
    let first = json_body(&desk[0]);
    let second = json_body(&desk[1]);
    assert_eq!(first["stories"][0]["kind"], "new");
    assert_eq!(first["stories"][0]["title"], "NCA raid in Leeds");
    assert_eq!(second["stories"][0]["kind"], "outlets-3");
    assert_eq!(second["stories"][0]["outlets"], 3);
    // Keyed by story (the reports of one event), not by item.
    let id = first["stories"][0]["story"].as_i64().unwrap();
    assert_eq!(first["idempotency_key"], format!("story-{id}:desk:new"));
    assert_eq!(
        desk[0].header("idempotency-key"),
        first["idempotency_key"].as_str()
    );
    assert_eq!(
        second["idempotency_key"],
        format!("story-{id}:desk:outlets-3")
    );
    // The fields are those of `query --format json`.
    let rows = p.query_json(&[]);
    assert_eq!(rows.len(), 1);
    for field in [
        "id",
        "title",
        "link",
        "feeds",
        "rules",
        "first_seen",
        "status",
    ] {
        assert_eq!(second["stories"][0][field], rows[0][field], "field {field}");
    }
}

#[test]
fn stories_inside_min_interval_are_batched_into_one_message() {
    let server = TestServer::start();
    server.route(
        "/a",
        Route::ok(
            "application/rss+xml",
            rss(&[("s1", "https://n.example/1", "NCA story one")]),
        ),
    );
    ok_hook(&server, "/hook");
    let p = Project::new(&format!(
        "{}{RULE}\n[[alerts]]\nname = \"desk\"\nwebhook = \"{}\"\nmin_interval = \"1h\"\n",
        feed_block("a", &server.url("/a")),
        server.url("/hook")
    ));
    let t0 = Utc::now();
    poll_at(&p, Some(t0));
    assert_eq!(server.hits("/hook"), 1, "the first alert goes at once");
    server.route(
        "/a",
        Route::ok(
            "application/rss+xml",
            rss(&[
                ("s1", "https://n.example/1", "NCA story one"),
                ("s2", "https://n.example/2", "NCA story two"),
                ("s3", "https://n.example/3", "NCA story three"),
            ]),
        ),
    );
    poll_at(&p, Some(t0 + chrono::Duration::minutes(10)));
    assert_eq!(server.hits("/hook"), 1, "inside min_interval: held");
    let pending: Vec<Value> = outbox(&p)
        .into_iter()
        .filter(|r| r["state"] == "pending")
        .collect();
    assert_eq!(pending.len(), 2, "two stories wait");
    poll_at(&p, Some(t0 + chrono::Duration::minutes(61)));
    let reqs = server.requests("/hook");
    assert_eq!(reqs.len(), 2, "one message for the two held stories");
    let batch = json_body(&reqs[1]);
    let titles: Vec<&str> = batch["stories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["NCA story two", "NCA story three"]);
    assert_eq!(batch["held"], "min_interval");
    assert!(
        batch["idempotency_key"]
            .as_str()
            .unwrap()
            .starts_with("batch-2:")
    );
    poll_at(&p, Some(t0 + chrono::Duration::minutes(200)));
    assert_eq!(server.hits("/hook"), 2, "nothing is sent twice");
}

#[test]
fn quiet_hours_hold_alerts_and_deliver_them_as_one_batch_at_the_end() {
    let server = TestServer::start();
    server.route(
        "/a",
        Route::ok(
            "application/rss+xml",
            rss(&[
                ("q1", "https://n.example/q1", "NCA night story one"),
                ("q2", "https://n.example/q2", "NCA night story two"),
            ]),
        ),
    );
    ok_hook(&server, "/hook");
    let p = Project::new(&format!(
        "[schedule]\ntimezone = \"Europe/London\"\n{}{RULE}\n[[alerts]]\nname = \"desk\"\nwebhook = \"{}\"\nquiet_hours = \"22:00-07:00\"\n",
        feed_block("a", &server.url("/a")),
        server.url("/hook")
    ));
    // 23:30 London tonight (within a day of the real time, so nothing is too old).
    let tz: chrono_tz::Tz = "Europe/London".parse().unwrap();
    let today = Utc::now().with_timezone(&tz).date_naive();
    let night = today
        .and_hms_opt(23, 30, 0)
        .unwrap()
        .and_local_timezone(tz)
        .unwrap()
        .with_timezone(&Utc);
    let err = poll_at(&p, Some(night));
    assert_eq!(server.hits("/hook"), 0, "quiet hours: held ({err})");
    let (_, list, _) = p.run(&["alerts", "list"]);
    assert!(
        list.contains("pending") && list.contains("held: quiet hours"),
        "{list}"
    );
    let rows = outbox(&p);
    assert_eq!(rows[0]["held"], "quiet hours");
    let until: DateTime<Utc> = rows[0]["next_attempt_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let seven = today
        .succ_opt()
        .unwrap()
        .and_hms_opt(7, 0, 0)
        .unwrap()
        .and_local_timezone(tz)
        .unwrap();
    assert_eq!(until, seven, "held until 07:00 London");
    // 06:59 next morning: still quiet.
    let morning = |h, m| {
        today
            .succ_opt()
            .unwrap()
            .and_hms_opt(h, m, 0)
            .unwrap()
            .and_local_timezone(tz)
            .unwrap()
            .with_timezone(&Utc)
    };
    poll_at(&p, Some(morning(6, 59)));
    assert_eq!(server.hits("/hook"), 0);
    poll_at(&p, Some(morning(7, 1)));
    let reqs = server.requests("/hook");
    assert_eq!(reqs.len(), 1, "one batch at the end of quiet hours");
    let batch = json_body(&reqs[0]);
    assert_eq!(batch["stories"].as_array().unwrap().len(), 2);
    assert_eq!(batch["held"], "quiet hours");
}

#[test]
fn receiver_failing_with_500_then_succeeding_gets_exactly_one_delivery() {
    let server = TestServer::start();
    server.route(
        "/a",
        Route::ok(
            "application/rss+xml",
            rss(&[("f1", "https://n.example/f1", "NCA retry story")]),
        ),
    );
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    server.route(
        "/hook",
        Route::custom(move |_req, stream| {
            let n = c.fetch_add(1, Ordering::SeqCst);
            let status = if n == 0 { 500 } else { 200 };
            write_response(stream, status, &[], b"");
        }),
    );
    let p = Project::new(&format!(
        "{}{RULE}\n[[alerts]]\nname = \"desk\"\nwebhook = \"{}\"\n",
        feed_block("a", &server.url("/a")),
        server.url("/hook")
    ));
    let t0 = Utc::now();
    let err = poll_at(&p, Some(t0));
    assert!(err.contains("1 failed"), "{err}");
    let rows = outbox(&p);
    assert_eq!(rows[0]["state"], "failed");
    assert!(
        rows[0]["last_error"].as_str().unwrap().contains("HTTP 500"),
        "{rows:?}"
    );
    // The backoff is persisted: a poll before it ends does not retry.
    poll_at(&p, Some(t0 + chrono::Duration::seconds(5)));
    assert_eq!(server.hits("/hook"), 1);
    poll_at(&p, Some(t0 + chrono::Duration::minutes(1)));
    poll_at(&p, Some(t0 + chrono::Duration::minutes(30)));
    let reqs = server.requests("/hook");
    assert_eq!(reqs.len(), 2, "one failure, one delivery, no repeat");
    assert_eq!(
        reqs[0].header("idempotency-key"),
        reqs[1].header("idempotency-key")
    );
    assert_eq!(outbox(&p)[0]["state"], "sent");
}

/// Spawn `newswatch poll` (not waited for) with the alert clock at `at`.
fn spawn_poll(p: &Project, at: Option<DateTime<Utc>>) -> std::process::Child {
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("newswatch"));
    cmd.current_dir(p.dir.path())
        .env_remove("NEWSWATCH_CONFIG")
        .arg("--config")
        .arg(p.path("newswatch.toml"))
        .arg("poll")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    if let Some(t) = at {
        cmd.env(CLOCK, t.to_rfc3339());
    }
    cmd.spawn().expect("spawn poll")
}

fn kill_9(child: &mut std::process::Child) {
    let status = std::process::Command::new("kill")
        .arg("-9")
        .arg(child.id().to_string())
        .status()
        .expect("kill");
    assert!(status.success());
    let _ = child.wait();
}

#[test]
fn kill_9_between_commit_and_send_loses_nothing() {
    let server = TestServer::start();
    server.route(
        "/a",
        Route::ok(
            "application/rss+xml",
            rss(&[("k1", "https://n.example/k1", "NCA kill story")]),
        ),
    );
    // A second feed that hangs until released: the poll commits feed a, then waits here,
    // before any alert is sent.
    let release = Arc::new(AtomicBool::new(false));
    let r = release.clone();
    server.route(
        "/slow",
        Route::custom(move |_req, stream| {
            while !r.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(20));
            }
            write_response(
                stream,
                200,
                &[("Content-Type".into(), "application/rss+xml".into())],
                rss(&[]).as_bytes(),
            );
        }),
    );
    ok_hook(&server, "/hook");
    let p = Project::new(&format!(
        "{}{}{RULE}\n[[alerts]]\nname = \"desk\"\nwebhook = \"{}\"\n",
        feed_block("a", &server.url("/a")),
        feed_block("slow", &server.url("/slow")),
        server.url("/hook")
    ));
    let mut child = spawn_poll(&p, None);
    // Feed a's match is committed; its story is placed (and its alert enqueued, in that
    // transaction) when the cycle ends, which the hanging feed holds back.
    wait_until(
        "feed a's match is committed",
        Duration::from_secs(30),
        || server.hits("/slow") == 1 && p.query_json(&[]).len() == 1,
    );
    assert_eq!(server.hits("/hook"), 0);
    kill_9(&mut child);
    release.store(true, Ordering::SeqCst);
    let pending = p.int("SELECT count(*) FROM items WHERE story_pending = 1");
    assert_eq!(pending, 1, "committed, waiting for its story (and alert)");
    assert!(
        outbox(&p).iter().all(|o| o["state"] == "pending"),
        "nothing sent"
    );
    poll_at(&p, None);
    assert_eq!(server.hits("/hook"), 1, "the restart sends it");
    poll_at(&p, None);
    assert_eq!(server.hits("/hook"), 1, "once");
}

#[test]
fn kill_9_between_send_and_mark_repeats_with_the_same_idempotency_key() {
    let server = TestServer::start();
    server.route(
        "/a",
        Route::ok(
            "application/rss+xml",
            rss(&[("m1", "https://n.example/m1", "NCA mark story")]),
        ),
    );
    // The first delivery arrives and is never answered: the sender is killed while it waits.
    let first = Arc::new(AtomicBool::new(true));
    let f = first.clone();
    server.route(
        "/hook",
        Route::custom(move |_req, stream| {
            if f.swap(false, Ordering::SeqCst) {
                std::thread::sleep(Duration::from_secs(3));
                return;
            }
            write_response(stream, 200, &[], b"");
        }),
    );
    let p = Project::new(&format!(
        "{}{RULE}\n[[alerts]]\nname = \"desk\"\nwebhook = \"{}\"\ntimeout = \"10s\"\n",
        feed_block("a", &server.url("/a")),
        server.url("/hook")
    ));
    let t0 = Utc::now();
    let mut child = spawn_poll(&p, Some(t0));
    wait_until(
        "the alert reaches the receiver",
        Duration::from_secs(30),
        || server.hits("/hook") == 1,
    );
    kill_9(&mut child);
    assert_eq!(outbox(&p)[0]["state"], "pending", "sent but not marked");
    // Within the lease nobody resends; after it, the same message goes again.
    poll_at(&p, Some(t0 + chrono::Duration::seconds(20)));
    assert_eq!(server.hits("/hook"), 1);
    poll_at(&p, Some(t0 + chrono::Duration::minutes(5)));
    let reqs = server.requests("/hook");
    assert_eq!(reqs.len(), 2);
    let key = reqs[0].header("idempotency-key").map(String::from);
    assert!(
        key.as_deref().is_some_and(|k| k.ends_with(":desk:new")),
        "{key:?}"
    );
    assert_eq!(reqs[1].header("idempotency-key").map(String::from), key);
    assert_eq!(
        json_body(&reqs[1])["idempotency_key"].as_str(),
        key.as_deref()
    );
    assert_eq!(outbox(&p)[0]["state"], "sent");
    poll_at(&p, Some(t0 + chrono::Duration::minutes(30)));
    assert_eq!(server.hits("/hook"), 2);
}

/// A minimal SMTP server on loopback: accepts every message and keeps its DATA.
struct Smtp {
    port: u16,
    messages: Arc<Mutex<Vec<String>>>,
}

impl Smtp {
    fn start() -> Smtp {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let m = messages.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(stream) = conn else { continue };
                let m = m.clone();
                std::thread::spawn(move || smtp_session(stream, &m));
            }
        });
        Smtp { port, messages }
    }
}

fn smtp_session(stream: TcpStream, messages: &Mutex<Vec<String>>) {
    let mut w = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    let _ = w.write_all(b"220 test ESMTP\r\n");
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let cmd = line.trim_end().to_ascii_uppercase();
        if cmd.starts_with("EHLO") || cmd.starts_with("HELO") {
            let _ = w.write_all(b"250-test\r\n250 8BITMIME\r\n");
        } else if cmd == "DATA" {
            let _ = w.write_all(b"354 go\r\n");
            let mut data = String::new();
            loop {
                line.clear();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                if line == ".\r\n" {
                    break;
                }
                data.push_str(&line);
            }
            messages.lock().unwrap().push(data);
            let _ = w.write_all(b"250 queued\r\n");
        } else if cmd == "QUIT" {
            let _ = w.write_all(b"221 bye\r\n");
            return;
        } else {
            let _ = w.write_all(b"250 ok\r\n");
        }
    }
}

#[test]
fn hostile_title_arrives_escaped_for_each_destination() {
    let server = TestServer::start();
    // In the XML: markdown, Slack mentions, an HTML-ish tag, an ampersand, a control char.
    let title = "NCA *raid* _now_ @channel @here &lt;!everyone&gt; &amp; &lt;b&gt;x&lt;/b&gt; bell&#x7;end 1 &lt; 2 &gt; 0";
    server.route(
        "/a",
        Route::ok(
            "application/rss+xml",
            rss(&[("h1", "https://n.example/h1", title)]),
        ),
    );
    for path in ["/webhook", "/ntfy", "/slack", "/matrix"] {
        ok_hook(&server, path);
    }
    let smtp = Smtp::start();
    let p = Project::new("");
    let cmd_out = p.path("cmd.json");
    p.write_config(&format!(
        "{feed}{RULE}
[digest]
[digest.email]
host = \"127.0.0.1\"
port = {port}
security = \"plain\"
from = \"newswatch@example.org\"
to = [\"digest@example.org\"]

[[alerts]]
name = \"webhook\"
webhook = \"{webhook}\"
secret_env = \"ALERT_SECRET\"

[[alerts]]
name = \"ntfy\"
ntfy = \"{ntfy}\"
priority = 4

[[alerts]]
name = \"slack\"
slack = \"{slack}\"

[[alerts]]
name = \"matrix\"
matrix = \"{matrix}\"

[[alerts]]
name = \"mail\"
email = [\"analyst@example.org\"]

[[alerts]]
name = \"cmd\"
command = [\"tee\", \"{cmd}\"]
",
        feed = feed_block("a", &server.url("/a")),
        port = smtp.port,
        webhook = server.url("/webhook"),
        ntfy = server.url("/ntfy/topic1"),
        slack = server.url("/slack"),
        matrix = server.url("/matrix"),
        cmd = cmd_out.display(),
    ));
    let out = p
        .cmd(&["poll"])
        .env("ALERT_SECRET", "s3cret")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("6 sent"), "{err}");
    let stored = p.query_json(&[]);
    let stored_title = stored[0]["title"].as_str().unwrap().to_string();
    assert!(stored_title.contains("@channel"), "{stored_title}");

    // Webhook: the JSON of query, signed.
    let hook = &server.requests("/webhook")[0];
    let doc = json_body(hook);
    assert_eq!(doc["stories"][0]["title"], stored_title.as_str());
    let sig = hook.header("x-newswatch-signature").unwrap();
    assert!(sig.starts_with("sha256=") && sig.len() == 7 + 64, "{sig}");

    // ntfy: JSON publishing to the server root, plain text, no control characters.
    let ntfy = &server.requests("/ntfy")[0];
    let doc = json_body(ntfy);
    assert_eq!(doc["topic"], "topic1");
    assert_eq!(doc["priority"], 4);
    assert_eq!(doc["markdown"], false);
    assert_eq!(doc["click"], "https://n.example/h1");
    let t = doc["title"].as_str().unwrap();
    assert!(!t.chars().any(|c| c.is_control()), "{t:?}");

    // Slack: no mention, no formatting, no raw angle brackets from feed text.
    let doc = json_body(&server.requests("/slack")[0]);
    let text = doc["text"].as_str().unwrap();
    for bad in [
        "@channel",
        "@here",
        "<!everyone>",
        "*raid*",
        "_now_",
        "<b>",
        "\u{7}",
    ] {
        assert!(!text.contains(bad), "slack text has {bad:?}: {text}");
    }
    assert!(stored_title.contains("1 < 2 > 0"), "{stored_title}");
    assert!(text.contains("1 &lt; 2 &gt; 0"), "{text}");
    assert!(text.contains("<https://n.example/h1|"), "{text}");

    // Matrix-style: markdown escaped in text, HTML escaped in html.
    let doc = json_body(&server.requests("/matrix")[0]);
    let text = doc["text"].as_str().unwrap();
    assert!(text.contains("\\*raid\\*"), "{text}");
    let html = doc["html"].as_str().unwrap();
    assert!(html.contains("1 &lt; 2 &gt; 0"), "{html}");
    assert!(html.contains("<a href=\"https://n.example/h1\">"), "{html}");

    // E-mail: one Subject line, and the key's Message-ID.
    wait_until("the e-mail arrives", Duration::from_secs(10), || {
        !smtp.messages.lock().unwrap().is_empty()
    });
    let mail = smtp.messages.lock().unwrap()[0].clone();
    let subject = mail
        .lines()
        .find(|l| l.starts_with("Subject:"))
        .unwrap()
        .to_string();
    assert!(!subject.contains('\u{7}'), "{subject}");
    assert!(mail.contains("Message-ID: <alert-"), "{mail}");
    assert!(mail.contains("To: analyst@example.org"), "{mail}");

    // Command: the JSON on stdin, the feed text only inside it.
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&cmd_out).unwrap()).unwrap();
    assert_eq!(doc["stories"][0]["title"], stored_title.as_str());
    assert_eq!(doc["alert"], "cmd");
}

#[test]
fn backfilled_matches_never_alert_unless_asked() {
    let server = TestServer::start();
    server.route(
        "/a",
        Route::ok(
            "application/rss+xml",
            rss(&[("b1", "https://n.example/b1", "NCA backfill story")]),
        ),
    );
    ok_hook(&server, "/hook");
    // First without the rule: the entry is only archived.
    let base = feed_block("a", &server.url("/a"));
    let p = Project::new(&format!(
        "{base}\n[[rules]]\nname = \"other\"\nquery = 'weather'\n"
    ));
    poll_at(&p, None);
    let alerts = format!(
        "\n[[alerts]]\nname = \"desk\"\nwebhook = \"{}\"\n",
        server.url("/hook")
    );
    p.write_config(&format!("{base}{RULE}{alerts}"));
    let (code, out, err) = p.run(&["backfill"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("1 new match") || out.contains("(1 new"),
        "{out}"
    );
    poll_at(&p, None);
    assert_eq!(server.hits("/hook"), 0, "backfilled: no alert");
    assert!(outbox(&p).is_empty());
    // A second rule backfilled with --alert does alert.
    p.write_config(&format!(
        "{base}{RULE}\n[[rules]]\nname = \"raids\"\nquery = 'backfill'\n{alerts}"
    ));
    let (code, _, err) = p.run(&["backfill", "--rule", "raids", "--alert"]);
    assert_eq!(code, 0, "{err}");
    poll_at(&p, None);
    assert_eq!(server.hits("/hook"), 1, "backfill --alert: alerted");
}

#[test]
fn slow_alert_receiver_does_not_delay_the_next_poll() {
    let server = TestServer::start();
    server.route(
        "/a",
        Route::ok(
            "application/rss+xml",
            rss(&[("d1", "https://n.example/d1", "NCA daemon story")]),
        ),
    );
    // The receiver takes the request and never answers (until the 30 s timeout).
    let hold = Arc::new(AtomicBool::new(true));
    let h = hold.clone();
    server.route(
        "/hook",
        Route::custom(move |_req, _stream| {
            let start = std::time::Instant::now();
            while h.load(Ordering::SeqCst) && start.elapsed() < Duration::from_secs(40) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }),
    );
    let p = Project::new(&format!(
        "[schedule]\npoll = \"* * * * * *\"\n{}{RULE}\n[[alerts]]\nname = \"desk\"\nwebhook = \"{}\"\ntimeout = \"30s\"\n",
        feed_block("a", &server.url("/a")),
        server.url("/hook")
    ));
    let mut daemon = Daemon::start(&p);
    wait_until(
        "the alert reaches the slow receiver",
        Duration::from_secs(30),
        || server.hits("/hook") == 1,
    );
    let polls = server.hits("/a");
    // Every-second polls go on while the receiver holds the alert's request.
    wait_until(
        "two more polls while the alert is in flight",
        Duration::from_secs(10),
        || server.hits("/a") >= polls + 2,
    );
    assert_eq!(server.hits("/hook"), 1, "still the one request in flight");
    hold.store(false, Ordering::SeqCst);
    daemon.stop(Duration::from_secs(15));
}

#[test]
fn max_per_hour_holds_the_rest_and_sends_them_as_one_message_with_and_n_more() {
    let server = TestServer::start();
    let first = [("p0", "https://n.example/p0", "NCA first story")];
    server.route("/a", Route::ok("application/rss+xml", rss(&first)));
    ok_hook(&server, "/ntfy");
    let p = Project::new(&format!(
        "{}{RULE}\n[[alerts]]\nname = \"phone\"\nntfy = \"{}\"\nmax_per_hour = 1\n",
        feed_block("a", &server.url("/a")),
        server.url("/ntfy/desk")
    ));
    let t0 = Utc::now();
    poll_at(&p, Some(t0));
    assert_eq!(server.hits("/ntfy"), 1);
    let ids: Vec<String> = (1..=12).map(|i| format!("p{i}")).collect();
    let links: Vec<String> = (1..=12)
        .map(|i| format!("https://n.example/p{i}"))
        .collect();
    let titles: Vec<String> = (1..=12).map(|i| format!("NCA story number {i}")).collect();
    let items: Vec<(&str, &str, &str)> = (0..12)
        .map(|i| (ids[i].as_str(), links[i].as_str(), titles[i].as_str()))
        .collect();
    server.route("/a", Route::ok("application/rss+xml", rss(&items)));
    poll_at(&p, Some(t0 + chrono::Duration::minutes(5)));
    assert_eq!(
        server.hits("/ntfy"),
        1,
        "the hour's one message is spent: held"
    );
    poll_at(&p, Some(t0 + chrono::Duration::minutes(59)));
    assert_eq!(server.hits("/ntfy"), 1);
    poll_at(&p, Some(t0 + chrono::Duration::minutes(61)));
    let reqs = server.requests("/ntfy");
    assert_eq!(
        reqs.len(),
        2,
        "not silence: one message for the held twelve"
    );
    let doc = json_body(&reqs[1]);
    assert_eq!(doc["title"], "newswatch phone: 12 stories");
    let message = doc["message"].as_str().unwrap();
    assert!(message.contains("NCA story number 1 "), "{message}");
    assert!(message.contains("and 2 more"), "{message}");
    assert!(message.contains("held: max_per_hour"), "{message}");
}

#[test]
fn destination_failing_for_a_day_is_reported_and_old_alerts_are_dropped() {
    let server = TestServer::start();
    server.route(
        "/a",
        Route::ok(
            "application/rss+xml",
            rss(&[("g1", "https://n.example/g1", "NCA dropped story")]),
        ),
    );
    server.route("/hook", Route::status(503, vec![], "down"));
    let p = Project::new(&format!(
        "{}{RULE}\n[[alerts]]\nname = \"desk\"\nwebhook = \"{}\"\n",
        feed_block("a", &server.url("/a")),
        server.url("/hook")
    ));
    let t0 = Utc::now();
    poll_at(&p, Some(t0));
    let later = t0 + chrono::Duration::hours(25);
    poll_at(&p, Some(later));
    assert_eq!(server.hits("/hook"), 2, "retried after its backoff");
    for cmd in [&["feeds"][..], &["stats"][..], &["alerts", "list"][..]] {
        let out = p.cmd(cmd).env(CLOCK, later.to_rfc3339()).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("alert destination \"desk\" failing since") && text.contains("HTTP 503"),
            "{cmd:?}: {text}"
        );
    }
    // The web's feed-health page and /metrics report it too.
    let later_s = later.to_rfc3339();
    let web = crate::web::Web::start_with_env(
        &p,
        &["serve", "--listen", "127.0.0.1:0"],
        &[(CLOCK, later_s.as_str())],
    );
    let page = crate::web::get(&web.addr, "/feeds").body;
    assert!(
        page.contains("desk failing since") && page.contains("HTTP 503"),
        "{page}"
    );
    let metrics = crate::web::get(&web.addr, "/metrics").body;
    assert!(
        metrics.contains(
            "newswatch_alert_destination_failing_since_timestamp_seconds{alert=\"desk\"}"
        ),
        "{metrics}"
    );
    drop(web);
    // Not yet a day: not reported.
    let out = p
        .cmd(&["feeds"])
        .env(CLOCK, t0.to_rfc3339())
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&out.stdout).contains("failing since"));
    // Past give_up_after (2 days by default): dropped with a log line, never retried again.
    let err = poll_at(&p, Some(t0 + chrono::Duration::hours(49)));
    assert!(err.contains("alert dropped"), "{err}");
    assert!(err.contains("1 dropped"), "{err}");
    assert_eq!(outbox(&p)[0]["state"], "dropped");
    poll_at(&p, Some(t0 + chrono::Duration::hours(60)));
    assert_eq!(server.hits("/hook"), 2);
}

#[test]
fn alerts_test_sends_a_sample_and_names_unknown_alerts() {
    let server = TestServer::start();
    ok_hook(&server, "/hook");
    let p = Project::new(&format!(
        "{}{RULE}\n[[alerts]]\nname = \"desk\"\nwebhook = \"{}\"\n",
        feed_block("a", &server.url("/a")),
        server.url("/hook")
    ));
    let (code, out, err) = p.run(&["alerts", "test", "desk"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("test alert sent"), "{out}");
    let doc = json_body(&server.requests("/hook")[0]);
    assert_eq!(doc["test"], true);
    assert_eq!(doc["alert"], "desk");
    let (code, _, err) = p.run(&["alerts", "test", "nope"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("no alert named \"nope\"") && err.contains("desk"),
        "{err}"
    );
    // A test is not stored: the outbox stays empty.
    assert!(outbox(&p).is_empty());
}

#[test]
fn alert_added_later_stays_silent_about_old_stories_that_are_edited() {
    let server = TestServer::start();
    let feed = |desc: &str, extra: bool| {
        let mut s = String::from(
            "<?xml version=\"1.0\"?><rss version=\"2.0\"><channel><title>t</title><link>https://outlet.example/</link>",
        );
        s.push_str(&format!(
            "<item><guid>o1</guid><link>https://n.example/o1</link><title>NCA old story</title><description>{desc}</description></item>"
        ));
        if extra {
            s.push_str("<item><guid>o2</guid><link>https://n.example/o2</link><title>NCA fresh story</title></item>");
        }
        s.push_str("</channel></rss>");
        s
    };
    server.route(
        "/a",
        Route::ok("application/rss+xml", feed("first text", false)),
    );
    ok_hook(&server, "/hook");
    let base = format!("{}{RULE}", feed_block("a", &server.url("/a")));
    let p = Project::new(&base);
    poll_at(&p, None);
    p.write_config(&format!(
        "{base}\n[[alerts]]\nname = \"desk\"\nwebhook = \"{}\"\n",
        server.url("/hook")
    ));
    server.route(
        "/a",
        Route::ok("application/rss+xml", feed("edited text", false)),
    );
    let err = poll_at(&p, None);
    assert!(err.contains("0 new matches"), "{err}");
    assert_eq!(
        server.hits("/hook"),
        0,
        "an edit of an old story is not news"
    );
    server.route(
        "/a",
        Route::ok("application/rss+xml", feed("edited text", true)),
    );
    poll_at(&p, None);
    let reqs = server.requests("/hook");
    assert_eq!(reqs.len(), 1);
    assert_eq!(
        json_body(&reqs[0])["stories"][0]["title"],
        "NCA fresh story"
    );
}
