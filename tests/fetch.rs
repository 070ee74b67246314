//! Fetch stage against the loopback test server: conditional GET, redirects, statuses,
//! hostile servers (bombs, endless and slow bodies, resets) and request headers.

use std::io::Write;
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use newswatch::pipeline::fetch::{FetchError, FetchOptions, Fetched, Fetcher, Validators};
use url::Url;

use crate::support::server::{Route, TestServer, reset_on_close, write_head};

const RSS: &str = "<rss version=\"2.0\"><channel><title>t</title></channel></rss>";
const MIB: u64 = 1024 * 1024;

/// Options for tests: short timeouts so a broken test fails fast instead of hanging.
fn options() -> FetchOptions {
    FetchOptions {
        connect_timeout: Duration::from_secs(2),
        timeout: Duration::from_secs(5),
        ..FetchOptions::default()
    }
}

fn fetcher(options: FetchOptions) -> Fetcher {
    Fetcher::new(options).expect("build fetcher")
}

fn url(s: &str) -> Url {
    Url::parse(s).expect("test URL")
}

async fn get(f: &Fetcher, server: &TestServer, path: &str) -> Result<Fetched, FetchError> {
    f.fetch(&url(&server.url(path)), &Validators::default())
        .await
}

/// Every error must render as one line (logs, review UI).
fn assert_one_line(err: &FetchError) {
    let text = err.to_string();
    assert!(!text.contains('\n') && !text.is_empty(), "{text:?}");
}

#[tokio::test]
async fn ok_then_not_modified() {
    let server = TestServer::start();
    let lm = "Wed, 01 May 2024 10:00:00 GMT";
    server.route(
        "/feed",
        Route::cached("application/rss+xml", RSS, "\"v1\"", lm),
    );
    let f = fetcher(options());

    let first = get(&f, &server, "/feed").await.expect("200");
    assert_eq!(first.status, 200);
    assert_eq!(first.body.as_deref(), Some(RSS.as_bytes()));
    assert_eq!(first.content_type.as_deref(), Some("application/rss+xml"));
    assert_eq!(first.validators.etag.as_deref(), Some("\"v1\""));
    assert_eq!(first.validators.last_modified.as_deref(), Some(lm));
    assert_eq!(first.final_url, url(&server.url("/feed")));
    assert_eq!(first.permanent_redirect, None);

    let second = f
        .fetch(&url(&server.url("/feed")), &first.validators)
        .await
        .expect("304");
    assert_eq!(second.status, 304);
    assert!(second.body.is_none());
    assert_eq!(second.validators, first.validators);

    let requests = server.requests("/feed");
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].header("if-none-match"), None);
    assert_eq!(requests[1].header("if-none-match"), Some("\"v1\""));
    assert_eq!(requests[1].header("if-modified-since"), Some(lm));
}

#[tokio::test]
async fn not_modified_without_validators_keeps_old_ones() {
    let server = TestServer::start();
    server.route("/bare304", Route::status(304, vec![], ""));
    server.route(
        "/new-etag",
        Route::status(304, vec![("ETag", "\"v2\"")], ""),
    );
    let f = fetcher(options());
    let old = Validators {
        etag: Some("\"v1\"".into()),
        last_modified: Some("Wed, 01 May 2024 10:00:00 GMT".into()),
    };
    let got = f
        .fetch(&url(&server.url("/bare304")), &old)
        .await
        .expect("304");
    assert_eq!((got.status, got.body.is_none()), (304, true));
    assert_eq!(got.validators, old);

    let got = f
        .fetch(&url(&server.url("/new-etag")), &old)
        .await
        .expect("304");
    assert_eq!(got.validators.etag.as_deref(), Some("\"v2\""));
    assert_eq!(got.validators.last_modified, old.last_modified);
}

#[tokio::test]
async fn file_urls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("feed.xml");
    std::fs::write(&path, RSS).expect("write feed");
    let f = fetcher(options());
    let file_url = Url::from_file_path(&path).expect("file url");

    let got = f
        .fetch(&file_url, &Validators::default())
        .await
        .expect("file read");
    assert_eq!(got.status, 200);
    assert_eq!(got.body.as_deref(), Some(RSS.as_bytes()));
    assert_eq!(got.validators, Validators::default());

    let missing = Url::from_file_path(dir.path().join("nope.xml")).expect("file url");
    let err = f
        .fetch(&missing, &Validators::default())
        .await
        .expect_err("missing file");
    assert!(matches!(err, FetchError::File { .. }), "{err:?}");
    assert!(err.to_string().contains("nope.xml"), "{err}");
    assert_one_line(&err);

    let small = fetcher(FetchOptions {
        max_body_bytes: 10,
        ..options()
    });
    let err = small
        .fetch(&file_url, &Validators::default())
        .await
        .expect_err("over cap");
    assert!(matches!(err, FetchError::TooLarge(10)), "{err:?}");
}

#[tokio::test]
async fn unsupported_scheme() {
    let f = fetcher(options());
    let err = f
        .fetch(&url("ftp://example.com/feed"), &Validators::default())
        .await
        .expect_err("ftp");
    assert!(
        matches!(err, FetchError::UnsupportedScheme(ref s) if s == "ftp"),
        "{err:?}"
    );
}

#[tokio::test]
async fn error_statuses() {
    let server = TestServer::start();
    server.route("/boom", Route::status(500, vec![], "oops"));
    let f = fetcher(options());
    for (path, want) in [("/missing", 404), ("/boom", 500)] {
        let err = get(&f, &server, path).await.expect_err("status");
        match err {
            FetchError::Status {
                status,
                retry_after,
            } => {
                assert_eq!(status, want);
                assert_eq!(retry_after, None);
            }
            other => panic!("{path}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn retry_after_seconds_and_date() {
    let server = TestServer::start();
    server.route(
        "/busy",
        Route::status(429, vec![("Retry-After", "120")], ""),
    );
    let later = Utc::now() + TimeDelta::hours(1);
    let date = later.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
    server.route(
        "/down",
        Route::status(503, vec![("Retry-After", date.as_str())], ""),
    );
    let f = fetcher(options());

    let before = Utc::now();
    let err = get(&f, &server, "/busy").await.expect_err("429");
    let after = Utc::now();
    let FetchError::Status {
        status: 429,
        retry_after: Some(at),
    } = err
    else {
        panic!("{err:?}");
    };
    assert!(
        at >= before + TimeDelta::seconds(120) && at <= after + TimeDelta::seconds(120),
        "{at}"
    );

    let err = get(&f, &server, "/down").await.expect_err("503");
    let FetchError::Status {
        status: 503,
        retry_after: Some(at),
    } = err
    else {
        panic!("{err:?}");
    };
    assert!((at - later).num_seconds().abs() <= 1, "{at} vs {later}");
    assert!(err_text(503, at).contains("retry after"));
}

fn err_text(status: u16, at: chrono::DateTime<Utc>) -> String {
    FetchError::Status {
        status,
        retry_after: Some(at),
    }
    .to_string()
}

fn redirect(status: u16, to: &str) -> Route {
    Route::status(status, vec![("Location", to)], "")
}

#[tokio::test]
async fn permanent_chain_is_followed_and_reported() {
    let server = TestServer::start();
    server.route("/a", redirect(301, &server.url("/b")));
    // Relative Location.
    server.route("/b", redirect(308, "/c"));
    server.route("/c", Route::ok("application/rss+xml", RSS));
    let f = fetcher(options());
    let got = get(&f, &server, "/a").await.expect("followed");
    assert_eq!(got.status, 200);
    assert_eq!(got.body.as_deref(), Some(RSS.as_bytes()));
    assert_eq!(got.final_url, url(&server.url("/c")));
    assert_eq!(got.permanent_redirect, Some(url(&server.url("/c"))));
}

#[tokio::test]
async fn temporary_hop_is_not_permanent() {
    let server = TestServer::start();
    server.route("/a", redirect(302, "/c"));
    server.route("/p", redirect(301, "/t"));
    server.route("/t", redirect(307, "/c"));
    server.route("/s", redirect(303, "c"));
    server.route("/c", Route::ok("application/rss+xml", RSS));
    let f = fetcher(options());
    for start in ["/a", "/p", "/s"] {
        let got = get(&f, &server, start).await.expect("followed");
        assert_eq!(got.final_url, url(&server.url("/c")), "{start}");
        assert_eq!(got.permanent_redirect, None, "{start}");
    }
}

#[tokio::test]
async fn redirect_loop_and_long_chain() {
    let server = TestServer::start();
    server.route("/x", redirect(302, "/y"));
    server.route("/y", redirect(302, "/x"));
    for i in 0..4 {
        server.route(
            &format!("/hop{i}"),
            redirect(301, &format!("/hop{}", i + 1)),
        );
    }
    server.route("/hop4", Route::ok("application/rss+xml", RSS));
    let f = fetcher(FetchOptions {
        max_redirects: 3,
        ..options()
    });

    let err = get(&f, &server, "/x").await.expect_err("loop");
    assert!(matches!(err, FetchError::TooManyRedirects(3)), "{err:?}");
    // Detected on revisiting /x, not after burning the whole budget.
    assert_eq!(server.hits("/x"), 1);

    let err = get(&f, &server, "/hop0").await.expect_err("4 hops > 3");
    assert!(matches!(err, FetchError::TooManyRedirects(3)), "{err:?}");
    assert_eq!(server.hits("/hop4"), 0);

    // Exactly at the limit is fine.
    let got = get(&f, &server, "/hop1").await.expect("3 hops");
    assert_eq!(got.final_url, url(&server.url("/hop4")));
}

#[tokio::test]
async fn redirect_to_file_is_refused() {
    let server = TestServer::start();
    server.route("/evil", redirect(302, "file:///etc/passwd"));
    let f = fetcher(options());
    let err = get(&f, &server, "/evil").await.expect_err("file redirect");
    assert!(
        matches!(err, FetchError::UnsupportedScheme(ref s) if s == "file"),
        "{err:?}"
    );
}

/// Issue 12 item 5: every configured header (not only credentials) stays with its origin.
#[tokio::test]
async fn configured_headers_not_sent_across_origins() {
    let first = TestServer::start();
    let other = TestServer::start();
    first.route("/feed", redirect(301, &other.url("/moved")));
    other.route("/moved", Route::ok("application/rss+xml", RSS));
    let f = fetcher(FetchOptions {
        headers: vec![
            ("Authorization".into(), "Bearer secret".into()),
            ("X-Newswatch-Test".into(), "yes".into()),
        ],
        ..options()
    });
    get(&f, &first, "/feed").await.expect("followed");
    let origin = &first.requests("/feed")[0];
    assert_eq!(origin.header("authorization"), Some("Bearer secret"));
    let moved = &other.requests("/moved")[0];
    assert_eq!(moved.header("authorization"), None);
    assert_eq!(origin.header("x-newswatch-test"), Some("yes"));
    assert_eq!(moved.header("x-newswatch-test"), None);
    // Bound to the configured origin, they are not sent to another URL handed to `fetch`
    // either (the daemon polls a remembered permanent redirect directly).
    let mut bound = options();
    bound.headers = vec![("X-Api-Key".into(), "k".into())];
    bound.bind_headers(&url(&first.url("/feed")));
    let f = fetcher(bound);
    get(&f, &other, "/moved").await.expect("fetched");
    assert_eq!(other.requests("/moved")[1].header("x-api-key"), None);
    get(&f, &first, "/feed").await.expect("fetched");
    assert_eq!(first.requests("/feed")[1].header("x-api-key"), Some("k"));
}

/// The SSRF guard through the library: an origin declared public (the test seam), a redirect
/// to loopback refused before connecting; allowed with `allow_private_redirects`.
#[tokio::test]
async fn redirect_from_public_origin_to_loopback_is_refused() {
    let public = TestServer::start();
    let internal = TestServer::start();
    public.route("/feed", redirect(302, &internal.url("/x")));
    internal.route("/x", Route::ok("application/rss+xml", RSS));
    let guarded = fetcher(FetchOptions {
        assume_public: vec![public.addr],
        ..options()
    });
    let err = get(&guarded, &public, "/feed").await.expect_err("refused");
    assert!(matches!(err, FetchError::PrivateRedirect { .. }), "{err:?}");
    assert_one_line(&err);
    assert_eq!(internal.hits("/x"), 0);
    let allowed = fetcher(FetchOptions {
        assume_public: vec![public.addr],
        allow_private_redirects: true,
        ..options()
    });
    let got = get(&allowed, &public, "/feed").await.expect("allowed");
    assert_eq!(got.final_url, url(&internal.url("/x")));
    // Without the seam the origin is loopback, i.e. private: followed.
    let plain = fetcher(options());
    get(&plain, &public, "/feed")
        .await
        .expect("private to private");
    assert_eq!(internal.hits("/x"), 2);
}

/// `n` zero bytes, compressed by `compress` in 64 KiB pieces (never all in memory).
fn bomb(n: usize, mut sink: impl Write) {
    let zeros = vec![0u8; 64 * 1024];
    let mut left = n;
    while left > 0 {
        let take = left.min(zeros.len());
        sink.write_all(&zeros[..take]).expect("compress");
        left -= take;
    }
}

fn gzip_bomb(n: usize) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    bomb(n, &mut enc);
    enc.finish().expect("gzip")
}

fn brotli_bomb(n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut enc = brotli::CompressorWriter::new(&mut out, 64 * 1024, 5, 22);
        bomb(n, &mut enc);
    }
    out
}

async fn assert_bomb_defused(encoding: &str, payload: Vec<u8>) {
    assert!(payload.len() < 512 * 1024, "bomb is small on the wire");
    let server = TestServer::start();
    server.route(
        "/bomb",
        Route::status(
            200,
            vec![
                ("Content-Type", "application/rss+xml"),
                ("Content-Encoding", encoding),
            ],
            payload,
        ),
    );
    let f = fetcher(FetchOptions {
        max_body_bytes: MIB,
        ..options()
    });
    let start = Instant::now();
    let err = get(&f, &server, "/bomb").await.expect_err("bomb");
    assert!(
        matches!(err, FetchError::TooLarge(MIB)),
        "{encoding}: {err:?}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn gzip_bomb_is_too_large() {
    assert_bomb_defused("gzip", gzip_bomb(50 * 1024 * 1024)).await;
}

#[tokio::test]
async fn brotli_bomb_is_too_large() {
    assert_bomb_defused("br", brotli_bomb(50 * 1024 * 1024)).await;
}

#[tokio::test]
async fn compressed_feed_is_decompressed() {
    let server = TestServer::start();
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(RSS.as_bytes()).expect("gzip");
    server.route(
        "/gz",
        Route::status(
            200,
            vec![("Content-Encoding", "gzip")],
            enc.finish().expect("gzip"),
        ),
    );
    let f = fetcher(options());
    let got = get(&f, &server, "/gz").await.expect("gzip feed");
    assert_eq!(got.body.as_deref(), Some(RSS.as_bytes()));
    assert!(
        server.requests("/gz")[0]
            .header("accept-encoding")
            .is_some_and(|v| v.contains("gzip") && v.contains("br"))
    );
}

#[tokio::test]
async fn plain_body_over_cap_is_too_large() {
    let server = TestServer::start();
    server.route("/big", Route::ok("application/rss+xml", vec![b'a'; 2048]));
    server.route("/fits", Route::ok("application/rss+xml", vec![b'a'; 1024]));
    let f = fetcher(FetchOptions {
        max_body_bytes: 1024,
        ..options()
    });
    let err = get(&f, &server, "/big").await.expect_err("over cap");
    assert!(matches!(err, FetchError::TooLarge(1024)), "{err:?}");
    let got = get(&f, &server, "/fits").await.expect("exactly the cap");
    assert_eq!(got.body.map(|b| b.len()), Some(1024));
}

#[tokio::test]
async fn endless_body_is_too_large() {
    let server = TestServer::start();
    server.route(
        "/endless",
        Route::custom(|_, stream| {
            if !write_head(stream, 200, &[("Content-Type", "application/rss+xml")]) {
                return;
            }
            let chunk = vec![b'a'; 64 * 1024];
            // Until the client hangs up; the bound only guards against a broken client.
            for _ in 0..16 * 1024 {
                if stream.write_all(&chunk).is_err() {
                    return;
                }
            }
        }),
    );
    let f = fetcher(FetchOptions {
        max_body_bytes: MIB,
        ..options()
    });
    let start = Instant::now();
    let err = get(&f, &server, "/endless").await.expect_err("endless");
    assert!(matches!(err, FetchError::TooLarge(MIB)), "{err:?}");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn slow_drip_times_out() {
    let server = TestServer::start();
    server.route(
        "/drip",
        Route::custom(|_, stream| {
            if !write_head(stream, 200, &[("Content-Type", "application/rss+xml")]) {
                return;
            }
            // One byte every 200 ms until the client hangs up (bounded at 30 s).
            for _ in 0..150 {
                if stream
                    .write_all(b"<")
                    .and_then(|()| stream.flush())
                    .is_err()
                {
                    return;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }),
    );
    let f = fetcher(FetchOptions {
        timeout: Duration::from_secs(1),
        ..options()
    });
    let start = Instant::now();
    let err = get(&f, &server, "/drip").await.expect_err("drip");
    let took = start.elapsed();
    assert!(
        matches!(err, FetchError::Timeout(d) if d == Duration::from_secs(1)),
        "{err:?}"
    );
    // 1 s budget plus generous slack for a loaded 2-core CI machine.
    assert!(took < Duration::from_millis(2500), "{took:?}");
}

#[tokio::test]
async fn reset_mid_body_is_an_error() {
    let server = TestServer::start();
    server.route(
        "/reset",
        Route::custom(|_, stream| {
            if write_head(stream, 200, &[("Content-Length", "100000")]) {
                let _ = stream.write_all(&[b'a'; 1000]);
                let _ = stream.flush();
            }
            reset_on_close(stream);
        }),
    );
    server.route(
        "/short",
        Route::custom(|_, stream| {
            if write_head(stream, 200, &[("Content-Length", "100000")]) {
                let _ = stream.write_all(&[b'a'; 1000]);
            }
        }),
    );
    let f = fetcher(options());
    for path in ["/reset", "/short"] {
        let err = get(&f, &server, path).await.expect_err("cut short");
        assert!(
            matches!(err, FetchError::Other(_) | FetchError::Connect(_)),
            "{path}: {err:?}"
        );
        assert_one_line(&err);
    }
}

#[tokio::test]
async fn unresolvable_host_is_connect_error() {
    let f = fetcher(options());
    let err = f
        .fetch(&url("http://feed.invalid/"), &Validators::default())
        .await
        .expect_err("dns");
    assert!(matches!(err, FetchError::Connect(_)), "{err:?}");
    assert_one_line(&err);
}

#[tokio::test]
async fn refused_connection_is_connect_error() {
    // Bind then drop to get a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let f = fetcher(options());
    let err = f
        .fetch(
            &url(&format!("http://127.0.0.1:{port}/feed")),
            &Validators::default(),
        )
        .await
        .expect_err("refused");
    assert!(matches!(err, FetchError::Connect(_)), "{err:?}");
    assert_one_line(&err);
}

#[tokio::test]
async fn request_headers() {
    let server = TestServer::start();
    server.route("/feed", Route::ok("application/rss+xml", RSS));
    let f = fetcher(FetchOptions {
        headers: vec![("X-Newswatch-Test".into(), "yes".into())],
        ..options()
    });
    get(&f, &server, "/feed").await.expect("200");
    let req = &server.requests("/feed")[0];
    assert!(
        req.header("user-agent")
            .is_some_and(|ua| ua.contains("newswatch/")),
        "{req:?}"
    );
    assert_eq!(req.header("x-newswatch-test"), Some("yes"));
    assert!(
        req.header("accept")
            .is_some_and(|a| a.starts_with("application/rss+xml")),
        "{req:?}"
    );

    // Extra headers override the defaults.
    let custom = fetcher(FetchOptions {
        headers: vec![("Accept".into(), "application/atom+xml".into())],
        ..options()
    });
    get(&custom, &server, "/feed").await.expect("200");
    assert_eq!(
        server.requests("/feed")[1].header("accept"),
        Some("application/atom+xml")
    );
}

#[tokio::test]
async fn freshness_headers() {
    let server = TestServer::start();
    server.route(
        "/max-age",
        Route::status(200, vec![("Cache-Control", "public, max-age=600")], RSS),
    );
    let expires = (Utc::now() + TimeDelta::hours(2))
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    server.route(
        "/expires",
        Route::status(200, vec![("Expires", expires.as_str())], RSS),
    );
    server.route(
        "/no-cache",
        Route::status(200, vec![("Cache-Control", "no-cache, max-age=600")], RSS),
    );
    server.route(
        "/past",
        Route::status(200, vec![("Expires", "Sun, 06 Nov 1994 08:49:37 GMT")], RSS),
    );
    let f = fetcher(options());

    let before = Utc::now();
    let got = get(&f, &server, "/max-age").await.expect("200");
    let after = Utc::now();
    let at = got.fresh_until.expect("max-age");
    assert!(
        at >= before + TimeDelta::seconds(600) && at <= after + TimeDelta::seconds(600),
        "{at}"
    );

    let got = get(&f, &server, "/expires").await.expect("200");
    let at = got.fresh_until.expect("expires");
    let want = Utc::now() + TimeDelta::hours(2);
    assert!((at - want).num_seconds().abs() <= 2, "{at} vs {want}");

    for path in ["/no-cache", "/past", "/missing-headers"] {
        if path == "/missing-headers" {
            server.route(path, Route::ok("text/xml", RSS));
        }
        let got = get(&f, &server, path).await.expect("200");
        assert_eq!(got.fresh_until, None, "{path}");
    }
}
