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
//!
//! Two rules keep a redirect from turning newswatch against its own network:
//! - Configured extra headers (API keys, tokens) go only to the configured origin
//!   ([`FetchOptions::headers_origin`]), never to a host a redirect names, and not to a
//!   remembered permanent redirect either.
//! - SSRF guard: once a hop of a fetch was answered from a public address, a redirect to a
//!   loopback, private, link-local, unique-local, shared (CGNAT) or unspecified address
//!   ([`non_public_kind`]) is refused unless `allow_private_redirects` is set. The check is made
//!   on addresses, not names: an IP literal is checked before connecting; a name is resolved
//!   by a resolver that drops such addresses (so a name that resolves, or rebinds, to
//!   127.0.0.1 is never connected to); and the address a response actually came from
//!   ([`reqwest::Response::remote_addr`]) is checked again before its body is read. A feed
//!   configured on a private address (an intranet server, every test's 127.0.0.1) is not
//!   guarded: its redirects start from a private address. Through a proxy the addresses
//!   connected to are the proxy's, so only IP literals and `localhost` names can be checked.
//!
//! Test seam: `NEWSWATCH_ASSUME_PUBLIC=127.0.0.1:8080,…` (or
//! [`FetchOptions::assume_public`]) declares the listed socket addresses public *as the origin
//! of a redirect*, so tests on loopback can play a public server. It only ever makes the guard
//! refuse more: it never makes a redirect target acceptable.

mod dates;

pub use dates::{MAX_SERVER_DELAY, parse_http_date, parse_retry_after};

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, OnceLock};
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
/// Environment variable of the test seam (see the module doc): socket addresses, comma
/// separated, treated as public when they answer a request that redirects.
pub const ASSUME_PUBLIC_ENV: &str = "NEWSWATCH_ASSUME_PUBLIC";

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
    /// The only origin the extra headers are sent to (see [`FetchOptions::bind_headers`]);
    /// `None`: the origin of the URL given to [`Fetcher::fetch`].
    pub headers_origin: Option<url::Origin>,
    /// Follow redirects from a public address to a non-public one (the SSRF guard is off).
    pub allow_private_redirects: bool,
    /// Test seam: socket addresses treated as public origins (module doc). Never loosens.
    #[doc(hidden)]
    pub assume_public: Vec<SocketAddr>,
}

impl FetchOptions {
    /// Bind the extra headers to the origin of `configured` (a feed's configured URL), so
    /// that neither a redirect nor a remembered permanent redirect carries them elsewhere.
    pub fn bind_headers(&mut self, configured: &Url) {
        if !self.headers.is_empty() && matches!(configured.scheme(), "http" | "https") {
            self.headers_origin = Some(configured.origin());
        }
    }
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
            headers_origin: None,
            allow_private_redirects: false,
            assume_public: Vec::new(),
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
    /// A redirect from a public address to a non-public one (the SSRF guard).
    #[error(
        "redirect to {to} refused: {reason}, and the redirect came from public address {from} \
         (set allow_private_redirects = true to allow it)"
    )]
    PrivateRedirect {
        /// The public address that answered with the redirect.
        from: String,
        /// The redirect target.
        to: String,
        /// Which address is non-public, and what kind it is.
        reason: String,
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
    headers_origin: Option<url::Origin>,
    /// The client for hops guarded against non-public addresses (its resolver drops them),
    /// built on first use: most fetchers never follow a redirect from a public server.
    guarded: Arc<OnceLock<Result<reqwest::Client, String>>>,
    options: Arc<FetchOptions>,
    allow_private_redirects: bool,
    assume_public: Arc<[SocketAddr]>,
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
        let client = build_client(&options, None)?;
        let mut assume_public = options.assume_public.clone();
        assume_public.extend(assume_public_from_env());
        Ok(Fetcher {
            client,
            extra_headers,
            headers_origin: options.headers_origin.clone(),
            guarded: Arc::new(OnceLock::new()),
            allow_private_redirects: options.allow_private_redirects,
            assume_public: assume_public.into(),
            connect_timeout: options.connect_timeout,
            timeout: options.timeout,
            max_redirects: options.max_redirects,
            max_body_bytes: options.max_body_bytes,
            options: Arc::new(options),
        })
    }

    /// The client for a hop the SSRF guard covers (see the module doc).
    fn guarded_client(&self) -> Result<&reqwest::Client, FetchError> {
        self.guarded
            .get_or_init(|| {
                build_client(&self.options, Some(Arc::new(PublicOnlyResolver)))
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| FetchError::Setup(e.clone()))
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
        let headers_origin = self.headers_origin.clone().unwrap_or_else(|| url.origin());
        // The public address that answered an earlier hop, if any: from then on the chain is
        // steered by a public server, and the SSRF guard applies (module doc).
        let mut public_from: Option<String> = None;
        let response = loop {
            let cross_origin = current.origin() != headers_origin;
            let guard = public_from
                .as_deref()
                .filter(|_| !self.allow_private_redirects);
            if let Some(from) = guard {
                self.check_target(&current, from)?;
            }
            let response = self.send(&current, validators, cross_origin, guard).await?;
            let remote = response.remote_addr();
            if let Some(from) = guard {
                self.check_connected(&current, remote, from)?;
            }
            if public_from.is_none() {
                public_from = self.public_origin(&current, remote);
            }
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

    /// Before connecting: a guarded hop's IP literal (or, through a proxy, `localhost`
    /// name) must not be non-public. Names are checked by the guarded client's resolver.
    fn check_target(&self, url: &Url, from: &str) -> Result<(), FetchError> {
        let reason = match literal_ip(url) {
            Some(ip) => non_public_reason(ip),
            None if self.options.proxy.is_some() && is_localhost_name(url) => Some(format!(
                "{} is a loopback name",
                url.host_str().unwrap_or("")
            )),
            None => None,
        };
        match reason {
            Some(reason) => Err(self.refused(url, from, reason)),
            None => Ok(()),
        }
    }

    /// After the response head, before the body: the address a guarded hop actually came
    /// from must be public (a pooled connection or any path around the resolver is caught
    /// here). Through a proxy the address is the proxy's and says nothing of the target.
    fn check_connected(
        &self,
        url: &Url,
        remote: Option<SocketAddr>,
        from: &str,
    ) -> Result<(), FetchError> {
        if self.options.proxy.is_some() {
            return Ok(());
        }
        match remote.and_then(|a| non_public_reason(a.ip())) {
            Some(reason) => Err(self.refused(url, from, reason)),
            None => Ok(()),
        }
    }

    /// The public address that answered `url` (from `remote`), or `None` when it is a
    /// non-public one. Through a proxy, judged by the URL's host: an IP literal by its
    /// address, `localhost` names as loopback, any other name as public.
    fn public_origin(&self, url: &Url, remote: Option<SocketAddr>) -> Option<String> {
        // The address that answered: the connection's peer, or (through a proxy, whose
        // address says nothing of the target) the URL's own IP literal, if it has one.
        let answered = match remote {
            Some(a) if self.options.proxy.is_none() => Some(a),
            _ => literal_ip(url)
                .map(|ip| SocketAddr::new(ip, url.port_or_known_default().unwrap_or(0))),
        };
        match answered {
            Some(a) => (self.assume_public.contains(&a) || non_public_kind(a.ip()).is_none())
                .then(|| a.to_string()),
            // A host name seen only through a proxy: public unless it is a localhost name.
            None => (!is_localhost_name(url)).then(|| url.host_str().unwrap_or("").to_string()),
        }
    }

    fn refused(&self, url: &Url, from: &str, reason: String) -> FetchError {
        FetchError::PrivateRedirect {
            from: from.to_string(),
            to: url.to_string(),
            reason,
        }
    }

    async fn send(
        &self,
        url: &Url,
        validators: &Validators,
        cross_origin: bool,
        guard: Option<&str>,
    ) -> Result<reqwest::Response, FetchError> {
        let mut headers = HeaderMap::new();
        // Configured headers (API keys, tokens, cookies, Authorization) are for the origin
        // they were configured for: none of them follows a redirect elsewhere.
        if !cross_origin {
            for (name, value) in &self.extra_headers {
                headers.append(name.clone(), value.clone());
            }
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
        if close_unconditional()
            && !headers.contains_key(header::IF_NONE_MATCH)
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
        // A guarded hop without a proxy goes through the client whose resolver drops
        // non-public addresses (and whose pool holds only connections it made).
        let client = match guard {
            Some(_) if self.options.proxy.is_none() => self.guarded_client()?,
            _ => &self.client,
        };
        client
            .get(url.clone())
            .headers(headers)
            .send()
            .await
            .map_err(|e| match (guard, non_public_name(&e)) {
                (Some(from), Some(name)) => self.refused(url, from, name.to_string()),
                _ => self.request_error(&e),
            })
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

/// `NEWSWATCH_BENCH_KEEPALIVE=1` keeps unconditional requests on kept-alive connections too
/// (no `Connection: close`). For paired benchmarks only (`scripts/keepalive.sh`), so that the
/// choice below can be measured under both bench servers with one build.
fn close_unconditional() -> bool {
    static CLOSE: std::sync::LazyLock<bool> =
        std::sync::LazyLock::new(|| std::env::var_os("NEWSWATCH_BENCH_KEEPALIVE").is_none());
    *CLOSE
}

/// The HTTP client for `options`; with `resolver`, names are resolved by it.
fn build_client(
    options: &FetchOptions,
    resolver: Option<Arc<PublicOnlyResolver>>,
) -> Result<reqwest::Client, FetchError> {
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
        // "every hop permanent" fact, the SSRF guard, and to refuse redirects to non-HTTP
        // schemes.
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
    if let Some(resolver) = resolver {
        builder = builder.dns_resolver(resolver);
    }
    builder.build().map_err(|e| FetchError::Setup(one_line(&e)))
}

/// The socket addresses of [`ASSUME_PUBLIC_ENV`]; entries that do not parse are logged and
/// skipped.
fn assume_public_from_env() -> Vec<SocketAddr> {
    let Ok(value) = std::env::var(ASSUME_PUBLIC_ENV) else {
        return Vec::new();
    };
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .filter_map(|s| match s.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                tracing::warn!("{ASSUME_PUBLIC_ENV}: {s:?} is not an IP:port; ignored");
                None
            }
        })
        .collect()
}

/// What kind of non-public address `ip` is, or `None` for a public one: where a redirect from
/// a public server may not lead. IPv4-mapped, IPv4-compatible and NAT64 (64:ff9b::/96) IPv6
/// addresses are judged by the IPv4 address inside them.
///
/// Shared address space (100.64.0.0/10, "CGNAT") counts as non-public: it is not reachable
/// from the internet, and clouds and VPNs (Tailscale) put internal services there.
pub fn non_public_kind(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_kind(v4),
        IpAddr::V6(v6) => {
            let seg = v6.segments();
            if let Some(v4) = v6.to_ipv4_mapped() {
                return v4_kind(v4);
            }
            // ::a.b.c.d (deprecated IPv4-compatible) and 64:ff9b::a.b.c.d (NAT64): the
            // embedded IPv4 address is where the packets end up. `::` and `::1` are not
            // embeddings: they are handled below.
            let embedded = Ipv4Addr::new(
                (seg[6] >> 8) as u8,
                seg[6] as u8,
                (seg[7] >> 8) as u8,
                seg[7] as u8,
            );
            let compat = seg[..6].iter().all(|&s| s == 0) && u32::from(embedded) > 1;
            let nat64 = seg[0] == 0x64 && seg[1] == 0xff9b && seg[2..6].iter().all(|&s| s == 0);
            if compat || nat64 {
                return v4_kind(embedded);
            }
            if v6.is_unspecified() {
                Some("unspecified")
            } else if v6.is_loopback() {
                Some("loopback")
            } else if seg[0] & 0xffc0 == 0xfe80 {
                Some("link-local")
            } else if seg[0] & 0xffc0 == 0xfec0 {
                Some("site-local")
            } else if seg[0] & 0xfe00 == 0xfc00 {
                Some("unique local (fc00::/7)")
            } else if v6.is_multicast() {
                Some("multicast")
            } else {
                None
            }
        }
    }
}

fn v4_kind(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip.is_unspecified() || a == 0 {
        Some("unspecified")
    } else if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_private() {
        Some("private")
    } else if ip.is_link_local() {
        Some("link-local")
    } else if a == 100 && (64..128).contains(&b) {
        Some("shared (CGNAT, 100.64.0.0/10)")
    } else if ip.is_broadcast() {
        Some("broadcast")
    } else if ip.is_multicast() {
        Some("multicast")
    } else {
        None
    }
}

/// "127.0.0.1 is a loopback address", for [`FetchError::PrivateRedirect`].
fn non_public_reason(ip: IpAddr) -> Option<String> {
    non_public_kind(ip).map(|kind| format!("{ip} is a {kind} address"))
}

/// The IP address of a URL's host, when it is an IP literal (the url crate has already
/// normalised forms like `0x7f.1` or `2130706433` to 127.0.0.1).
fn literal_ip(url: &Url) -> Option<IpAddr> {
    match url.host()? {
        url::Host::Ipv4(v4) => Some(IpAddr::V4(v4)),
        url::Host::Ipv6(v6) => Some(IpAddr::V6(v6)),
        url::Host::Domain(_) => None,
    }
}

/// `localhost` and `*.localhost` (RFC 6761: always loopback), checked by name where the
/// addresses cannot be seen (through a proxy).
fn is_localhost_name(url: &Url) -> bool {
    url.host_str().is_some_and(|h| {
        let h = h.trim_end_matches('.').to_ascii_lowercase();
        h == "localhost" || h.ends_with(".localhost")
    })
}

/// Resolves names like the system resolver, keeping only public addresses: the resolver of
/// guarded hops. A name with no public address fails with [`NonPublicName`].
struct PublicOnlyResolver;

impl reqwest::dns::Resolve for PublicOnlyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> = all
                .iter()
                .copied()
                .filter(|a| non_public_kind(a.ip()).is_none())
                .collect();
            match all.first() {
                Some(first) if public.is_empty() => Err(Box::new(NonPublicName {
                    host,
                    ip: first.ip(),
                })
                    as Box<dyn std::error::Error + Send + Sync>),
                _ => Ok(Box::new(public.into_iter()) as reqwest::dns::Addrs),
            }
        })
    }
}

/// A guarded hop's host name resolved only to non-public addresses.
#[derive(Debug)]
struct NonPublicName {
    host: String,
    ip: IpAddr,
}

impl std::fmt::Display for NonPublicName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let reason = non_public_reason(self.ip).unwrap_or_else(|| self.ip.to_string());
        write!(
            f,
            "{} resolves only to non-public addresses ({reason})",
            self.host
        )
    }
}

impl std::error::Error for NonPublicName {}

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

/// The [`NonPublicName`] refusal somewhere in `err`'s source chain.
fn non_public_name<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a NonPublicName> {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<NonPublicName>() {
            return Some(found);
        }
        current = e.source();
    }
    None
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
    fn non_public_addresses_are_classified_and_public_ones_are_not() {
        let kind = |s: &str| non_public_kind(s.parse().unwrap());
        for (ip, want) in [
            ("127.0.0.1", "loopback"),
            ("127.255.0.9", "loopback"),
            ("0.0.0.0", "unspecified"),
            ("0.1.2.3", "unspecified"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("169.254.169.254", "link-local"),
            ("100.64.0.1", "shared (CGNAT, 100.64.0.0/10)"),
            ("100.127.255.255", "shared (CGNAT, 100.64.0.0/10)"),
            ("255.255.255.255", "broadcast"),
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("fe80::1", "link-local"),
            ("fc00::1", "unique local (fc00::/7)"),
            ("fd12:3456::1", "unique local (fc00::/7)"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:10.0.0.1", "private"),
            ("::127.0.0.1", "loopback"),
            ("64:ff9b::a9fe:a9fe", "link-local"),
        ] {
            assert_eq!(kind(ip), Some(want), "{ip}");
        }
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "192.169.0.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert_eq!(kind(ip), None, "{ip}");
        }
    }

    #[test]
    fn connected_address_is_checked_on_guarded_hops() {
        let f = Fetcher::new(FetchOptions::default()).unwrap();
        let u = Url::parse("http://looks-public.example/feed").unwrap();
        let err = f
            .check_connected(&u, Some("127.0.0.1:80".parse().unwrap()), "203.0.113.7:80")
            .unwrap_err();
        assert!(
            err.to_string().contains("127.0.0.1 is a loopback address"),
            "{err}"
        );
        assert!(
            f.check_connected(&u, Some("93.184.216.34:80".parse().unwrap()), "x")
                .is_ok()
        );
        // IP literals are refused before connecting, however the url crate spelled them.
        for target in [
            "http://0x7f.1/",
            "http://2130706433/",
            "http://[::1]/",
            "http://10.0.0.1:8080/",
        ] {
            assert!(
                f.check_target(&Url::parse(target).unwrap(), "x").is_err(),
                "{target}"
            );
        }
        assert!(f.check_target(&u, "x").is_ok(), "names go to the resolver");
        // Through a proxy, names cannot be resolved here: localhost names are refused by name.
        let proxied = Fetcher::new(FetchOptions {
            proxy: Some("http://127.0.0.1:3128".into()),
            ..FetchOptions::default()
        })
        .unwrap();
        let local = Url::parse("http://api.localhost/").unwrap();
        assert!(proxied.check_target(&local, "x").is_err());
        assert!(proxied.check_target(&u, "x").is_ok());
    }

    #[tokio::test]
    async fn resolver_of_guarded_hops_drops_non_public_addresses() {
        use reqwest::dns::Resolve;
        let name: reqwest::dns::Name = "localhost".parse().unwrap();
        let err = match PublicOnlyResolver.resolve(name).await {
            Ok(addrs) => panic!("resolved to {:?}", addrs.collect::<Vec<_>>()),
            Err(e) => e,
        };
        assert!(
            err.to_string().contains("resolves only to non-public"),
            "{err}"
        );
        assert!(non_public_name(err.as_ref()).is_some());
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
