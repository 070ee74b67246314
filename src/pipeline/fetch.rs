//! Fetch: get a feed's bytes politely over HTTP(S) or from a `file://` path.
//!
//! Conditional GET (ETag / Last-Modified), redirects followed by hand (limit, permanent ones
//! reported), a body cap enforced on the decompressed stream, timeouts, and the response facts
//! the scheduler needs (Retry-After, Cache-Control max-age, Expires).
//!
//! It exists as its own stage because everything it touches is hostile by default: feed servers
//! can redirect in loops, drip bytes forever, send compression bombs, or point a redirect at a
//! local file. This module turns all of that into bounded work (time, redirects, memory) and a
//! small set of one-line [`FetchError`]s the scheduler can act on, so later stages only ever see
//! a finite byte buffer.

mod dates;

pub use dates::{MAX_SERVER_DELAY, parse_http_date, parse_retry_after};

use std::collections::HashSet;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use tokio::io::AsyncReadExt;
use url::Url;

/// What we ask servers for: feed formats first, generic XML next, anything as a last resort
/// (many servers label feeds `text/html` or `application/octet-stream`).
pub const ACCEPT: &str = "application/rss+xml, application/atom+xml, application/feed+json, \
                          application/xml;q=0.9, text/xml;q=0.8, */*;q=0.5";

/// Default connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default total time for one fetch, redirects and body included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default number of redirects followed before giving up.
pub const DEFAULT_MAX_REDIRECTS: usize = 5;
/// Default cap on a decompressed body.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 10 * 1024 * 1024;

/// How a [`Fetcher`] behaves. One fetcher is built per distinct set of options.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FetchOptions {
    pub connect_timeout: Duration,
    pub timeout: Duration,
    pub max_redirects: usize,
    pub max_body_bytes: u64,
    pub user_agent: String,
    /// Proxy URL (http://, https://, socks5://, socks5h://), if any.
    pub proxy: Option<String>,
    /// Extra request headers.
    pub headers: Vec<(String, String)>,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            timeout: DEFAULT_TIMEOUT,
            max_redirects: DEFAULT_MAX_REDIRECTS,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            user_agent: default_user_agent(),
            proxy: None,
            headers: Vec::new(),
        }
    }
}

/// `newswatch/VERSION (+https://github.com/newswatch/newswatch)`.
pub fn default_user_agent() -> String {
    format!(
        "newswatch/{} (+https://github.com/newswatch/newswatch)",
        env!("CARGO_PKG_VERSION")
    )
}

/// Cache validators remembered per feed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Validators {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

/// A successful fetch (2xx or 304).
#[derive(Debug, Clone)]
pub struct Fetched {
    pub status: u16,
    /// URL after redirects.
    pub final_url: Url,
    /// Set when every redirect hop was permanent (301/308): poll this URL next time.
    pub permanent_redirect: Option<Url>,
    /// `None` on 304 Not Modified.
    pub body: Option<Bytes>,
    pub content_type: Option<String>,
    /// Validators to send next time (the old ones on 304 unless the server sent new ones).
    pub validators: Validators,
    /// Earliest next poll the server asked for (Cache-Control max-age or Expires), if any.
    pub fresh_until: Option<DateTime<Utc>>,
}

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The URL scheme is not http, https or file.
    #[error("unsupported URL scheme {0:?}")]
    UnsupportedScheme(String),
    /// The request timed out (connect or total).
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// Connection-level failure (DNS, refused, reset, TLS).
    #[error("connection failed: {0}")]
    Connect(String),
    /// The server answered with a non-success status.
    #[error("HTTP {status}{}", retry_after.map(|t| format!(" (retry after {})", t.to_rfc3339())).unwrap_or_default())]
    Status {
        status: u16,
        /// From Retry-After (seconds or HTTP date), on any status.
        retry_after: Option<DateTime<Utc>>,
    },
    /// More redirects than allowed, or a loop.
    #[error("too many redirects (limit {0})")]
    TooManyRedirects(usize),
    /// The decompressed body exceeded the cap.
    #[error("body larger than {0} bytes")]
    TooLarge(u64),
    /// A `file://` feed could not be read.
    #[error("cannot read {path}: {source}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The HTTP client could not be built (bad proxy URL, bad header).
    #[error("invalid HTTP settings: {0}")]
    Setup(String),
    /// Any other transport error while reading the body.
    #[error("{0}")]
    Other(String),
}

/// Fetches feeds with one set of [`FetchOptions`].
///
/// Cheap to clone: the underlying HTTP client (and its connection pool) is shared.
#[derive(Clone)]
pub struct Fetcher {
    client: reqwest::Client,
    /// Extra headers, added per request rather than as client defaults so that credentials
    /// can be dropped when a redirect leaves the original origin.
    extra_headers: HeaderMap,
    connect_timeout: Duration,
    timeout: Duration,
    max_redirects: usize,
    max_body_bytes: u64,
}

/// Hand-written so that extra headers (which may carry `Authorization`) and the proxy URL
/// (which may carry a password) never end up in logs.
impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher")
            .field("connect_timeout", &self.connect_timeout)
            .field("timeout", &self.timeout)
            .field("max_redirects", &self.max_redirects)
            .field("max_body_bytes", &self.max_body_bytes)
            .field(
                "extra_headers",
                &self.extra_headers.keys().collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Fetcher {
    /// Build the HTTP client. Fails with [`FetchError::Setup`] on a bad proxy URL, user agent
    /// or extra header.
    pub fn new(options: FetchOptions) -> Result<Fetcher, FetchError> {
        let extra_headers = parse_headers(&options.headers)?;
        let user_agent = HeaderValue::from_str(&options.user_agent)
            .map_err(|_| FetchError::Setup("user agent is not a valid header value".into()))?;
        let mut defaults = HeaderMap::new();
        defaults.insert(header::ACCEPT, HeaderValue::from_static(ACCEPT));

        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .user_agent(user_agent)
            .default_headers(defaults)
            .gzip(true)
            .brotli(true)
            .deflate(true)
            // Redirects are followed by hand: we need the limit, loop detection, the
            // "every hop permanent" fact, and to refuse redirects to non-HTTP schemes.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(options.connect_timeout)
            // Per-request bound; `fetch` also bounds the whole redirect chain.
            .timeout(options.timeout);
        builder = match &options.proxy {
            // reqwest understands socks5h:// as "resolve names at the proxy". The URL itself
            // is not echoed in the error: it may contain a password.
            Some(proxy) => builder.proxy(
                reqwest::Proxy::all(proxy.as_str())
                    .map_err(|e| FetchError::Setup(format!("bad proxy URL: {}", one_line(&e))))?,
            ),
            // Without a configured proxy, ignore HTTP_PROXY & co from the environment: the
            // config file is the one place that decides, so behaviour is reproducible.
            None => builder.no_proxy(),
        };
        let client = builder
            .build()
            .map_err(|e| FetchError::Setup(one_line(&e)))?;
        Ok(Fetcher {
            client,
            extra_headers,
            connect_timeout: options.connect_timeout,
            timeout: options.timeout,
            max_redirects: options.max_redirects,
            max_body_bytes: options.max_body_bytes,
        })
    }

    /// Fetch `url`, sending the validators as If-None-Match / If-Modified-Since.
    ///
    /// The whole fetch (every redirect hop and the body) is bounded by the configured timeout.
    pub async fn fetch(&self, url: &Url, validators: &Validators) -> Result<Fetched, FetchError> {
        match url.scheme() {
            "http" | "https" | "file" => {}
            other => return Err(FetchError::UnsupportedScheme(other.to_string())),
        }
        // reqwest's own timeout covers one request; this one covers the redirect chain as a
        // whole and file reads (a FIFO or slow network mount can block forever).
        match tokio::time::timeout(self.timeout, self.fetch_unbounded(url, validators)).await {
            Ok(result) => result,
            Err(_) => Err(FetchError::Timeout(self.timeout)),
        }
    }

    async fn fetch_unbounded(
        &self,
        url: &Url,
        validators: &Validators,
    ) -> Result<Fetched, FetchError> {
        if url.scheme() == "file" {
            self.fetch_file(url).await
        } else {
            self.fetch_http(url, validators).await
        }
    }

    async fn fetch_file(&self, url: &Url) -> Result<Fetched, FetchError> {
        let path = url.to_file_path().map_err(|()| FetchError::File {
            path: url.to_string(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a local file path"),
        })?;
        let shown = path.display().to_string();
        let file_error = |source| FetchError::File {
            path: shown.clone(),
            source,
        };
        let file = tokio::fs::File::open(&path).await.map_err(file_error)?;
        let cap = self.max_body_bytes;
        // Refuse early when the size is known. The capped read below is what actually
        // enforces the limit (files that grow, devices, FIFOs report no useful length).
        let metadata = file.metadata().await.map_err(file_error)?;
        if metadata.is_file() && metadata.len() > cap {
            return Err(FetchError::TooLarge(cap));
        }
        let mut buf = Vec::new();
        file.take(cap.saturating_add(1))
            .read_to_end(&mut buf)
            .await
            .map_err(file_error)?;
        if buf.len() as u64 > cap {
            return Err(FetchError::TooLarge(cap));
        }
        Ok(Fetched {
            status: 200,
            final_url: url.clone(),
            permanent_redirect: None,
            body: Some(Bytes::from(buf)),
            // No guessing from the extension: the parser sniffs the content anyway.
            content_type: None,
            validators: Validators::default(),
            fresh_until: None,
        })
    }

    async fn fetch_http(&self, url: &Url, validators: &Validators) -> Result<Fetched, FetchError> {
        let mut current = url.clone();
        let mut seen: HashSet<Url> = HashSet::from([current.clone()]);
        let mut hops = 0usize;
        let mut all_permanent = true;
        let response = loop {
            let cross_origin = current.origin() != url.origin();
            let response = self.send(&current, validators, cross_origin).await?;
            let status = response.status();
            if !is_redirect(status) {
                break response;
            }
            let Some(next) = redirect_target(&current, response.headers()) else {
                // A redirect without a usable Location is just an odd status to report.
                return Err(FetchError::Status {
                    status: status.as_u16(),
                    retry_after: retry_after(response.headers()),
                });
            };
            hops += 1;
            // A URL seen before is a loop; reporting it as "too many" right away saves the
            // remaining round trips.
            if hops > self.max_redirects || !seen.insert(next.clone()) {
                return Err(FetchError::TooManyRedirects(self.max_redirects));
            }
            // Never let a server steer us to file:// (local file disclosure) or anything else.
            if !matches!(next.scheme(), "http" | "https") {
                return Err(FetchError::UnsupportedScheme(next.scheme().to_string()));
            }
            if !matches!(status.as_u16(), 301 | 308) {
                all_permanent = false;
            }
            tracing::debug!(from = %current, to = %next, status = status.as_u16(), "redirect");
            current = next;
        };

        let permanent_redirect = (hops > 0 && all_permanent).then(|| current.clone());
        let status = response.status();
        let headers = response.headers();
        let now = Utc::now();
        let content_type = header_text(headers, &header::CONTENT_TYPE);
        let fresh_until = dates::fresh_until(
            joined_header(headers, &header::CACHE_CONTROL).as_deref(),
            header_text(headers, &header::EXPIRES).as_deref(),
            now,
        );
        let sent = Validators {
            etag: header_text(headers, &header::ETAG),
            last_modified: header_text(headers, &header::LAST_MODIFIED),
        };

        if status == StatusCode::NOT_MODIFIED {
            // Servers often omit validators on 304; keep what we had for whichever is missing.
            let validators = Validators {
                etag: sent.etag.or_else(|| validators.etag.clone()),
                last_modified: sent
                    .last_modified
                    .or_else(|| validators.last_modified.clone()),
            };
            return Ok(Fetched {
                status: 304,
                final_url: current,
                permanent_redirect,
                body: None,
                content_type,
                validators,
                fresh_until,
            });
        }
        if !status.is_success() {
            return Err(FetchError::Status {
                status: status.as_u16(),
                retry_after: retry_after(headers),
            });
        }
        let body = self.read_body(response).await?;
        Ok(Fetched {
            status: status.as_u16(),
            final_url: current,
            permanent_redirect,
            body: Some(body),
            content_type,
            validators: sent,
            fresh_until,
        })
    }

    async fn send(
        &self,
        url: &Url,
        validators: &Validators,
        cross_origin: bool,
    ) -> Result<reqwest::Response, FetchError> {
        let mut headers = HeaderMap::new();
        for (name, value) in &self.extra_headers {
            // Same rule browsers and reqwest's own redirect policy apply: credentials are
            // for the origin they were configured for.
            if cross_origin && is_credential(name) {
                continue;
            }
            headers.append(name.clone(), value.clone());
        }
        // Validators come from earlier responses, i.e. from a server: one that is not a
        // valid header value is skipped rather than failing the fetch.
        if let Some(value) = validators
            .etag
            .as_deref()
            .and_then(|v| HeaderValue::from_str(v).ok())
        {
            headers.insert(header::IF_NONE_MATCH, value);
        }
        if let Some(value) = validators
            .last_modified
            .as_deref()
            .and_then(|v| HeaderValue::from_str(v).ok())
        {
            headers.insert(header::IF_MODIFIED_SINCE, value);
        }
        if !headers.contains_key(header::IF_NONE_MATCH)
            && !headers.contains_key(header::IF_MODIFIED_SINCE)
        {
            // An unconditional request gets a whole document back: ask for a fresh connection
            // (closed after the response) rather than reusing a kept-alive one. A reused
            // connection stalls ~40 ms per response on servers that write headers and body in
            // two sends without TCP_NODELAY (Nagle waits for our delayed ACK), as Python's
            // http.server does: on loopback a cold poll of 1,000 feeds took 17 s with reuse and
            // ~5 s without (BENCHMARKS.md). Conditional requests mostly get a one-send 304 and
            // keep reusing connections, which halves a warm poll.
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        self.client
            .get(url.clone())
            .headers(headers)
            .send()
            .await
            .map_err(|e| self.request_error(&e))
    }

    /// Read the (already decompressed) body, stopping as soon as it passes the cap, so a
    /// compression bomb or an endless body costs at most `max_body_bytes` of memory.
    async fn read_body(&self, response: reqwest::Response) -> Result<Bytes, FetchError> {
        let cap = self.max_body_bytes;
        // reqwest reports a length only for bodies it does not decompress, so this is the
        // honest wire size of an uncompressed body: refuse without reading it.
        let declared = response.content_length();
        if declared.is_some_and(|len| len > cap) {
            return Err(FetchError::TooLarge(cap));
        }
        let initial = declared
            .and_then(|len| usize::try_from(len).ok())
            .unwrap_or(0);
        let mut body = BytesMut::with_capacity(initial);
        let mut total: u64 = 0;
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.body_error(&e))?;
            total = total.saturating_add(chunk.len() as u64);
            // Check before appending: the buffer never holds more than the cap.
            if total > cap {
                return Err(FetchError::TooLarge(cap));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    }

    fn request_error(&self, err: &reqwest::Error) -> FetchError {
        if err.is_timeout() {
            let limit = if err.is_connect() {
                self.connect_timeout
            } else {
                self.timeout
            };
            FetchError::Timeout(limit)
        } else if err.is_builder() {
            FetchError::Setup(one_line(err))
        } else {
            // Refused, DNS, TLS, reset before the response head: all connection-level.
            FetchError::Connect(one_line(err))
        }
    }

    fn body_error(&self, err: &reqwest::Error) -> FetchError {
        if err.is_timeout() {
            FetchError::Timeout(self.timeout)
        } else {
            FetchError::Other(format!("reading body: {}", one_line(err)))
        }
    }
}

fn is_redirect(status: StatusCode) -> bool {
    matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
}

/// The Location header resolved against the current URL (relative references allowed).
fn redirect_target(current: &Url, headers: &HeaderMap) -> Option<Url> {
    let location = headers.get(header::LOCATION)?;
    // Some servers send raw UTF-8 in Location; Url::join percent-encodes it.
    let location = std::str::from_utf8(location.as_bytes()).ok()?.trim();
    if location.is_empty() {
        return None;
    }
    current.join(location).ok()
}

fn retry_after(headers: &HeaderMap) -> Option<DateTime<Utc>> {
    header_text(headers, &header::RETRY_AFTER).and_then(|v| parse_retry_after(&v, Utc::now()))
}

fn is_credential(name: &HeaderName) -> bool {
    name == header::AUTHORIZATION || name == header::PROXY_AUTHORIZATION || name == header::COOKIE
}

/// A header's first value as text, if it is valid UTF-8 (server data: never fail on it).
fn header_text(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let value = headers.get(name)?;
    std::str::from_utf8(value.as_bytes())
        .ok()
        .map(|s| s.trim().to_string())
}

/// All values of a list-valued header joined with commas, as RFC 9110 allows.
fn joined_header(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let parts: Vec<&str> = headers
        .get_all(name)
        .iter()
        .filter_map(|v| std::str::from_utf8(v.as_bytes()).ok())
        .collect();
    (!parts.is_empty()).then(|| parts.join(","))
}

/// Whether an extra request header is one the client accepts (for config validation); the
/// reason otherwise. The value is never echoed: it may be a token.
pub fn check_header(name: &str, value: &str) -> Result<(), String> {
    match parse_headers(&[(name.to_string(), value.to_string())]) {
        Ok(_) => Ok(()),
        Err(FetchError::Setup(m)) => Err(m),
        Err(e) => Err(e.to_string()),
    }
}

/// Whether a user agent is a valid header value (for config validation).
pub fn check_user_agent(user_agent: &str) -> Result<(), String> {
    HeaderValue::from_str(user_agent)
        .map(|_| ())
        .map_err(|_| "not a valid header value".to_string())
}

fn parse_headers(pairs: &[(String, String)]) -> Result<HeaderMap, FetchError> {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        let header_name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| FetchError::Setup(format!("invalid header name {name:?}")))?;
        // The value is not echoed: it may be a token.
        let header_value = HeaderValue::from_str(value.trim())
            .map_err(|_| FetchError::Setup(format!("invalid value for header {name:?}")))?;
        map.append(header_name, header_value);
    }
    Ok(map)
}

/// Flatten an error and its source chain into one line.
///
/// reqwest/hyper errors nest several levels deep and the useful part ("Connection refused",
/// "dns error") is usually at the bottom; logs and the review UI want a single line.
fn one_line(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = Some(err);
    while let Some(e) = current {
        let text = e
            .to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        // Wrappers often repeat their source's text in their own message; keep each once.
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = e.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Chain(&'static str, Option<Box<Chain>>);
    impl std::fmt::Display for Chain {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }
    impl std::error::Error for Chain {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|c| c as _)
        }
    }

    #[test]
    fn one_line_flattens_and_dedups() {
        let err = Chain(
            "error sending request",
            Some(Box::new(Chain(
                "client error (Connect)",
                Some(Box::new(Chain("Connection\nrefused", None))),
            ))),
        );
        assert_eq!(
            one_line(&err),
            "error sending request: client error (Connect): Connection refused"
        );
        let repeated = Chain("io: boom", Some(Box::new(Chain("boom", None))));
        assert_eq!(one_line(&repeated), "io: boom");
    }

    #[test]
    fn bad_settings_are_setup_errors() {
        let bad_header = FetchOptions {
            headers: vec![("Bad Name".into(), "x".into())],
            ..FetchOptions::default()
        };
        assert!(matches!(
            Fetcher::new(bad_header),
            Err(FetchError::Setup(_))
        ));
        let bad_proxy = FetchOptions {
            proxy: Some("not a url".into()),
            ..FetchOptions::default()
        };
        assert!(matches!(Fetcher::new(bad_proxy), Err(FetchError::Setup(_))));
        let socks = FetchOptions {
            proxy: Some("socks5h://127.0.0.1:9050".into()),
            ..FetchOptions::default()
        };
        assert!(Fetcher::new(socks).is_ok());
    }

    #[test]
    fn debug_hides_header_values() {
        let fetcher = Fetcher::new(FetchOptions {
            headers: vec![("Authorization".into(), "Bearer secret".into())],
            ..FetchOptions::default()
        })
        .unwrap();
        let shown = format!("{fetcher:?}");
        assert!(!shown.contains("secret"), "{shown}");
    }

    #[test]
    fn redirect_target_resolves_relative() {
        let base = Url::parse("http://a.example/feeds/x.xml").unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(header::LOCATION, HeaderValue::from_static("../y.xml"));
        assert_eq!(
            redirect_target(&base, &headers).map(|u| u.to_string()),
            Some("http://a.example/y.xml".to_string())
        );
    }
}
