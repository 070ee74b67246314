//! The web surface: a server-rendered review page, a JSON API under `/api/v1/`, `/healthz` and
//! `/metrics`, served by `newswatch run` beside polling or by `newswatch serve` alone.
//!
//! What it promises, because the page shows text written by strangers and can change state:
//! - every piece of feed text is escaped by the templates (askama escapes by default; no
//!   template marks anything `|safe`), and only http(s) links are ever emitted;
//! - a strict Content-Security-Policy (scripts only from our own `/assets/app.js`, no inline
//!   script or style), `nosniff`, `Referrer-Policy: no-referrer`, `frame-ancestors 'none'` on
//!   every response;
//! - state changes only by POST, refused unless the browser says the request is same-origin
//!   ([`auth`]); a non-loopback listen address needs a token, checked in constant time;
//! - request body and time limits; unknown routes are 404 and malformed ids or filters 400 with
//!   the reason, never 500.
//!
//! The database is read and written through a small pool of its own [`Store`] connections on
//! the blocking pool (`rusqlite::Connection` is not `Sync`), never through the poller's writer,
//! so a page never waits for a poll's parse.

mod api;
mod auth;
mod pages;
mod params;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use crate::config::Database;
use crate::config::{Settings, WebSettings};
use crate::service::metrics::{DbMetrics, Liveness, Metrics};
use crate::store::sql::AnyDb;
use crate::store::{Store, StoreError};

pub use auth::is_loopback;

/// Largest request body accepted (forms and JSON are tiny; the longest is "mark all shown").
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Longest a request may take, body included, before it is answered 408.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Matches per page when the request does not say.
pub const DEFAULT_PAGE: usize = 50;
/// Most matches one page or API call returns.
pub const MAX_PAGE: usize = 500;
/// Idle database connections kept for requests.
const POOL_IDLE: usize = 4;
/// How long in-flight requests get after a stop request.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// The Content-Security-Policy of every response: nothing but our own script, style and
/// forms; never framed.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// The OpenAPI 3 document of `/api/v1/`, kept in the repository.
pub const OPENAPI: &str = include_str!("../../../docs/openapi.json");

/// Why the web server could not start.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// A non-loopback address without a token.
    #[error(
        "web.listen = \"{0}\" is not a loopback address: set [web] token_file or token_env so every request needs a token (or listen on 127.0.0.1)"
    )]
    NeedsToken(SocketAddr),
    /// The token could not be read, or is empty/too short.
    #[error("web token: {0}")]
    Token(String),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Connections to the database for requests, opened on demand and kept for reuse: SQLite
/// connections to the file, or PostgreSQL ones (a `serve` keeps no state of its own, so
/// several can run against one PostgreSQL database behind a proxy).
struct Pool {
    backend: Database,
    path: PathBuf,
    idle: Mutex<Vec<AnyDb>>,
}

impl Pool {
    fn open(backend: &Database, path: &std::path::Path) -> Result<AnyDb, StoreError> {
        match backend {
            Database::Postgres { url, password } => {
                AnyDb::postgres(url.expose(), password.as_ref().map(|p| p.expose()))
            }
            Database::Sqlite(_) => Store::open(path).map(AnyDb::Sqlite),
        }
    }

    fn take(&self) -> Result<AnyDb, StoreError> {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match idle {
            // A PostgreSQL connection the server closed (restart, failover) is replaced.
            Some(AnyDb::Postgres(mut p)) => {
                if p.client().is_closed() {
                    tracing::warn!(target = %p.target(), "web: PostgreSQL connection lost, reconnecting");
                    Pool::open(&self.backend, &self.path)
                } else {
                    Ok(AnyDb::Postgres(p))
                }
            }
            Some(s) => Ok(s),
            None => Pool::open(&self.backend, &self.path),
        }
    }

    fn give(&self, store: AnyDb) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < POOL_IDLE {
            idle.push(store);
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // A PostgreSQL client owns a small tokio runtime, which must not be dropped on a
        // thread that runs async code (tokio panics there): close those on a thread of
        // their own.
        let idle = std::mem::take(self.idle.get_mut().unwrap_or_else(|p| p.into_inner()));
        if tokio::runtime::Handle::try_current().is_ok()
            && idle.iter().any(|c| matches!(c, AnyDb::Postgres(_)))
        {
            let _ = std::thread::Builder::new()
                .name("pg-close".into())
                .spawn(move || drop(idle));
        }
    }
}

/// What every request handler shares.
pub(crate) struct App {
    settings: Settings,
    pool: Pool,
    metrics: Arc<Metrics>,
    /// The daemon's scheduler; `None` under `newswatch serve`.
    liveness: Option<Arc<Liveness>>,
    auth: auth::Auth,
}

type AppState = Arc<App>;

/// A request failure: the status and a one-line reason for the client. Internal errors are
/// logged in full and answered with a generic message.
#[derive(Debug)]
pub(crate) enum Failure {
    BadRequest(String),
    NotFound(String),
    Unauthorized,
    Forbidden(String),
    Misdirected(String),
    Internal(String),
}

impl Failure {
    fn status(&self) -> StatusCode {
        match self {
            Failure::BadRequest(_) => StatusCode::BAD_REQUEST,
            Failure::NotFound(_) => StatusCode::NOT_FOUND,
            Failure::Unauthorized => StatusCode::UNAUTHORIZED,
            Failure::Forbidden(_) => StatusCode::FORBIDDEN,
            Failure::Misdirected(_) => StatusCode::MISDIRECTED_REQUEST,
            Failure::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn message(&self) -> String {
        match self {
            Failure::BadRequest(m)
            | Failure::NotFound(m)
            | Failure::Forbidden(m)
            | Failure::Misdirected(m) => m.clone(),
            Failure::Unauthorized => {
                "a token is needed: log in at /login or send Authorization: Bearer <token>".into()
            }
            Failure::Internal(_) => "internal error (logged by the server)".into(),
        }
    }

    fn log(&self) {
        if let Failure::Internal(e) = self {
            tracing::error!(error = %e, "web request failed");
        }
    }

    /// As JSON: `{"error": "..."}`.
    pub(crate) fn json(self) -> Response {
        self.log();
        let mut resp = (
            self.status(),
            axum::Json(serde_json::json!({ "error": self.message() })),
        )
            .into_response();
        if matches!(self, Failure::Unauthorized) {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"newswatch\""),
            );
        }
        resp
    }

    /// As a small HTML page.
    pub(crate) fn html(self) -> Response {
        self.log();
        let status = self.status();
        let body = if matches!(self, Failure::Unauthorized) {
            pages::login_page(None)
        } else {
            pages::error_page(status, &self.message())
        };
        (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            body,
        )
            .into_response()
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Internal(e.to_string())
    }
}

impl From<crate::store::review::ReviewError> for Failure {
    fn from(e: crate::store::review::ReviewError) -> Self {
        Failure::Internal(e.to_string())
    }
}

impl App {
    /// Run `f` with a database connection of the pool, on the blocking pool.
    async fn db<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut AnyDb, &App) -> Result<T, Failure> + Send + 'static,
    ) -> Result<T, Failure> {
        let app = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut store = app.pool.take()?;
            let out = f(&mut store, &app);
            app.pool.give(store);
            out
        })
        .await
        .map_err(|e| Failure::Internal(format!("request task failed: {e}")))?
    }
}

/// A bound, ready-to-serve web server.
pub struct Server {
    listener: tokio::net::TcpListener,
    app: AppState,
    url: String,
}

impl Server {
    /// Check the settings (a non-loopback address needs a token), read the token, prepare the
    /// database (the pagination index) and bind. `liveness` is the daemon's scheduler, when
    /// there is one.
    pub async fn bind(
        settings: &Settings,
        web: &WebSettings,
        metrics: Arc<Metrics>,
        liveness: Option<Arc<Liveness>>,
    ) -> Result<Server, WebError> {
        let auth = auth::Auth::new(web)?;
        let path = settings.database.clone();
        let backend = settings.backend.clone();
        let store = tokio::task::spawn_blocking(move || -> Result<AnyDb, StoreError> {
            Pool::open(&backend, &path)
        })
        .await
        .map_err(|e| WebError::Token(format!("start-up task failed: {e}")))??;
        let listener = tokio::net::TcpListener::bind(web.listen)
            .await
            .map_err(|source| WebError::Bind {
                addr: web.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| WebError::Bind {
            addr: web.listen,
            source,
        })?;
        let url = format!("http://{addr}/");
        let app = Arc::new(App {
            settings: settings.clone(),
            pool: Pool {
                backend: settings.backend.clone(),
                path: settings.database.clone(),
                idle: Mutex::new(vec![store]),
            },
            metrics,
            liveness,
            auth,
        });
        Ok(Server { listener, app, url })
    }

    /// `http://ADDR:PORT/` as bound.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Serve until `shutdown` is cancelled; in-flight requests get [`SHUTDOWN_GRACE`].
    pub async fn serve(self, shutdown: CancellationToken) -> std::io::Result<()> {
        tracing::info!(url = %self.url, "web server listening on {}", self.url);
        let router = router(self.app);
        let stop = shutdown.clone();
        let serving = axum::serve(self.listener, router)
            .with_graceful_shutdown(async move { stop.cancelled().await });
        let mut serving = std::pin::pin!(serving.into_future());
        tokio::select! {
            r = &mut serving => r,
            _ = async {
                shutdown.cancelled().await;
                tokio::time::sleep(SHUTDOWN_GRACE).await;
            } => Ok(()),
        }
    }
}

/// Every route, as (method, path, handler): the router is built from this table, and a test
/// checks the table against `docs/openapi.json` both ways.
fn route_table() -> Vec<(&'static str, &'static str, MethodRouter<AppState>)> {
    vec![
        ("get", "/", get(pages::review)),
        ("get", "/feeds", get(pages::feeds)),
        ("get", "/digests", get(pages::digests)),
        ("get", "/login", get(pages::login_form)),
        ("post", "/login", post(pages::login)),
        ("post", "/logout", post(pages::logout)),
        ("post", "/mark", post(pages::mark)),
        ("get", "/assets/app.css", get(pages::css)),
        ("get", "/assets/app.js", get(pages::js)),
        ("get", "/healthz", get(healthz)),
        ("get", "/metrics", get(metrics)),
        ("get", "/api/v1/matches", get(api::matches)),
        ("get", "/api/v1/matches/{id}", get(api::one_match)),
        ("post", "/api/v1/matches/{id}/status", post(api::set_status)),
        ("get", "/api/v1/stories", get(api::stories)),
        ("get", "/api/v1/search", get(api::search)),
        ("get", "/api/v1/feeds", get(api::feeds)),
        ("get", "/api/v1/stats", get(api::stats)),
        ("get", "/api/v1/openapi.json", get(api::openapi)),
    ]
}

fn router(app: AppState) -> Router {
    let mut router = Router::new();
    for (_, path, handler) in route_table() {
        // Two methods on one path merge into one route.
        router = router.route(path, handler);
    }
    router
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(app.clone(), auth::guard))
        .layer(middleware::from_fn_with_state(app.clone(), count_request))
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(CatchPanicLayer::custom(|_| {
            Failure::Internal("a request handler panicked".into()).html()
        }))
        .layer(middleware::from_fn(security_headers))
        .with_state(app)
}

async fn not_found(req: Request) -> Response {
    let path = req.uri().path();
    let f = Failure::NotFound(format!("no such page: {}", crate::text::sanitize(path)));
    if path.starts_with("/api/") {
        f.json()
    } else {
        f.html()
    }
}

/// Headers on every response, whatever produced it.
async fn security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

/// Count each request by route pattern (bounded: unknown paths are "unmatched").
async fn count_request(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let resp = next.run(req).await;
    app.metrics.record_request(&route, resp.status().as_u16());
    resp
}

/// `GET /healthz`: 200 when the scheduler is alive (under `run`) and the database takes a
/// write; 503 with the reason otherwise.
async fn healthz(State(app): State<AppState>) -> Response {
    let scheduler = match &app.liveness {
        Some(l) => l.check(chrono::Utc::now()),
        None => Ok(()),
    };
    let db = app
        .db(|s, _| {
            crate::store::web::check_writable(s).map_err(|e| Failure::Internal(e.to_string()))
        })
        .await;
    let mode = if app.liveness.is_some() {
        "run"
    } else {
        "serve"
    };
    let mut problems = Vec::new();
    if let Err(e) = &scheduler {
        problems.push(e.clone());
    }
    if let Err(Failure::Internal(e)) = &db {
        problems.push(format!("the database is not writable: {e}"));
    }
    let status = if problems.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({
        "status": if problems.is_empty() { "ok" } else { "unavailable" },
        "mode": mode,
        "scheduler": match (&app.liveness, &scheduler) {
            (None, _) => "not part of this process (newswatch serve)".to_string(),
            (Some(_), Ok(())) => "alive".to_string(),
            (Some(_), Err(e)) => e.clone(),
        },
        "database": if db.is_ok() { "writable" } else { "not writable" },
        "problems": problems,
    });
    (status, axum::Json(body)).into_response()
}

/// `GET /metrics`: Prometheus (OpenMetrics) text.
async fn metrics(State(app): State<AppState>) -> Response {
    let db = app
        .db(|s, app| {
            let counts = crate::store::web::web_counts(s)?;
            let archive = crate::store::archive::archive_stats(s)?;
            let failing = crate::store::alerts::failing(s, chrono::Utc::now())?;
            let alerts_failing = failing
                .into_iter()
                .map(|f| {
                    let since =
                        crate::store::parse_ts(&f.failing_since).map_or(0, |t| t.timestamp());
                    (f.alert, since)
                })
                .collect();
            let statuses: Vec<_> = crate::store::feed_statuses(s)?
                .into_iter()
                .filter(|f| f.in_config)
                .collect();
            let last_worker = statuses
                .iter()
                .filter_map(|f| Some((f.name.clone(), f.last_worker.clone()?)))
                .collect();
            let feeds = statuses
                .into_iter()
                .map(|f| {
                    let last = f
                        .last_success_at
                        .as_deref()
                        .and_then(crate::store::parse_ts)
                        .map(|t| t.timestamp());
                    (f.name, last, f.consecutive_failures)
                })
                .collect();
            let _ = app;
            Ok(DbMetrics {
                feeds,
                stories: counts.stories,
                per_rule: counts.per_rule,
                archive_entries: archive.entries,
                archive_bytes: archive.bytes,
                alerts_failing,
                last_worker,
            })
        })
        .await;
    match db {
        Ok(db) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            app.metrics.encode(&db),
        )
            .into_response(),
        Err(f) => f.json(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_of_the_router_is_in_the_openapi_document_and_back() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        assert_eq!(doc["openapi"].as_str().map(|v| &v[..2]), Some("3."));
        let paths = doc["paths"].as_object().unwrap();
        let mut documented = Vec::new();
        for (path, ops) in paths {
            for method in ops.as_object().unwrap().keys() {
                documented.push((method.clone(), path.clone()));
            }
        }
        let served: Vec<(String, String)> = route_table()
            .into_iter()
            .map(|(m, p, _)| (m.to_string(), p.to_string()))
            .collect();
        for r in &served {
            assert!(
                documented.contains(r),
                "route {r:?} is not in docs/openapi.json"
            );
        }
        for d in &documented {
            assert!(
                served.contains(d),
                "docs/openapi.json documents {d:?}, which is not served"
            );
        }
    }
}
