//! Who may use the web server, and which requests may change state.
//!
//! - **Token**: a listen address that is not loopback refuses to start without `[web]
//!   token_file` / `token_env`; with a token, every request but the login form, the static
//!   assets and `/healthz` must carry it, as `Authorization: Bearer <token>` or as the session
//!   cookie the login form sets (HttpOnly, SameSite=Strict, holding a hash of the token, not
//!   the token). Tokens are compared as SHA-256 digests in constant time (`subtle`).
//! - **Host**: without a token (loopback only), the `Host` header must name a loopback host, so
//!   a web page that rebinds its own DNS name to 127.0.0.1 cannot read or change anything.
//! - **CSRF**: a POST is refused unless the browser says it is same-origin (`Sec-Fetch-Site:
//!   same-origin`, or an `Origin` equal to the request's own host). A request with neither
//!   header is not from a browser form and passes only with the Bearer token or as JSON
//!   (`Content-Type: application/json`, which a cross-site page cannot send without a CORS
//!   preflight that this server never grants).

use std::net::{IpAddr, SocketAddr};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{AppState, Failure, WebError};
use crate::config::WebSettings;

/// Shortest token accepted: anything shorter is guessable.
pub const MIN_TOKEN_CHARS: usize = 16;
/// The session cookie's name.
pub const COOKIE: &str = "newswatch_session";

/// True for 127.0.0.0/8, ::1 and IPv4-mapped loopback.
pub fn is_loopback(addr: &SocketAddr) -> bool {
    match addr.ip() {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// The access rules of one server.
pub(crate) struct Auth {
    /// SHA-256 of the token, when one is configured.
    token: Option<[u8; 32]>,
    /// The session cookie's value: a hash of the token under another label.
    session: Option<String>,
}

fn digest(label: &str, token: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(label.as_bytes());
    h.update([0]);
    h.update(token.as_bytes());
    h.finalize().into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn same(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

impl Auth {
    pub(crate) fn new(web: &WebSettings) -> Result<Auth, WebError> {
        let token = match &web.token {
            None if !is_loopback(&web.listen) => return Err(WebError::NeedsToken(web.listen)),
            None => None,
            Some(source) => {
                let t = source.read().map_err(|e| WebError::Token(e.to_string()))?;
                let t = t.trim().to_string();
                if t.chars().count() < MIN_TOKEN_CHARS {
                    return Err(WebError::Token(format!(
                        "the token must be at least {MIN_TOKEN_CHARS} characters (e.g. `openssl rand -hex 32`)"
                    )));
                }
                Some(t)
            }
        };
        Ok(Auth {
            token: token.as_deref().map(|t| digest("newswatch-web-token", t)),
            session: token
                .as_deref()
                .map(|t| hex(&digest("newswatch-web-session", t))),
        })
    }

    pub(crate) fn required(&self) -> bool {
        self.token.is_some()
    }

    /// Whether `given` is the token.
    pub(crate) fn token_matches(&self, given: &str) -> bool {
        match &self.token {
            Some(want) => same(&digest("newswatch-web-token", given.trim()), want),
            None => false,
        }
    }

    /// The `Set-Cookie` value that logs a browser in.
    pub(crate) fn session_cookie(&self) -> Option<String> {
        self.session
            .as_ref()
            .map(|s| format!("{COOKIE}={s}; HttpOnly; SameSite=Strict; Path=/; Max-Age=2592000"))
    }

    /// How the request proves it may come in: `Some(true)` by Bearer token, `Some(false)` by
    /// cookie, `None` not at all.
    fn authenticated(&self, headers: &HeaderMap) -> Option<bool> {
        if let Some(v) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            && let Some(t) = v.strip_prefix("Bearer ")
            && self.token_matches(t)
        {
            return Some(true);
        }
        let session = self.session.as_deref()?;
        for v in headers.get_all(header::COOKIE) {
            let Ok(v) = v.to_str() else { continue };
            for pair in v.split(';') {
                if let Some((name, value)) = pair.trim().split_once('=')
                    && name == COOKIE
                    && same(value.as_bytes(), session.as_bytes())
                {
                    return Some(false);
                }
            }
        }
        None
    }
}

/// The host part of a `Host` header (`[::1]:8080` → `::1`, `localhost:80` → `localhost`).
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("");
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

fn is_loopback_host(host: &str) -> bool {
    let name = host_name(host);
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| match ip {
            IpAddr::V4(v4) => v4.is_loopback(),
            IpAddr::V6(v6) => v6.is_loopback(),
        })
}

/// Paths anyone may fetch, token or not.
fn is_public(method: &Method, path: &str) -> bool {
    path == "/login"
        || path == "/healthz"
        || (method == Method::GET && path.starts_with("/assets/"))
}

/// The middleware: host check, authentication, then the CSRF rule for anything but GET/HEAD.
pub(crate) async fn guard(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let api = req.uri().path().starts_with("/api/") || req.uri().path() == "/metrics";
    match check(&app, &req) {
        Ok(()) => next.run(req).await,
        Err(f) if api => f.json(),
        Err(f) => f.html(),
    }
}

fn check(app: &AppState, req: &Request) -> Result<(), Failure> {
    let headers = req.headers();
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .ok_or_else(|| Failure::BadRequest("the request has no Host header".into()))?;
    let auth = &app.auth;
    if !auth.required() && !is_loopback_host(host) {
        return Err(Failure::Misdirected(format!(
            "this server answers only to loopback host names (got Host: {})",
            crate::text::sanitize(host)
        )));
    }
    let path = req.uri().path();
    let by = auth.authenticated(headers);
    if auth.required() && by.is_none() && !is_public(req.method(), path) {
        return Err(Failure::Unauthorized);
    }
    if req.method() == Method::GET || req.method() == Method::HEAD {
        return Ok(());
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = header("sec-fetch-site") {
        return if site == "same-origin" {
            Ok(())
        } else {
            Err(Failure::Forbidden(format!(
                "cross-site request refused (Sec-Fetch-Site: {})",
                crate::text::sanitize(site)
            )))
        };
    }
    if let Some(origin) = header("origin") {
        let ok = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .is_some_and(|o| o.eq_ignore_ascii_case(host));
        return if ok {
            Ok(())
        } else {
            Err(Failure::Forbidden(format!(
                "cross-origin request refused (Origin: {} is not this server)",
                crate::text::sanitize(origin)
            )))
        };
    }
    let json = header("content-type").is_some_and(|c| {
        c.split(';')
            .next()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
    });
    if by == Some(true) || json {
        return Ok(());
    }
    Err(Failure::Forbidden(
        "a state change needs a same-origin browser request (Origin or Sec-Fetch-Site), a JSON body, or the Bearer token".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_and_addresses() {
        assert!(is_loopback_host("127.0.0.1:8080"));
        assert!(is_loopback_host("localhost"));
        assert!(is_loopback_host("[::1]:8080"));
        assert!(is_loopback_host("127.0.0.2:1"));
        assert!(!is_loopback_host("evil.example:8080"));
        assert!(!is_loopback_host("127.0.0.1.evil.example"));
        assert!(is_loopback(&"127.0.0.2:1".parse().unwrap()));
        assert!(!is_loopback(&"0.0.0.0:1".parse().unwrap()));
        assert!(!is_loopback(&"[::]:1".parse().unwrap()));
    }
}
