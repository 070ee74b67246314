//! The PostgreSQL backend (issue 17): connecting (TLS through rustls, never OpenSSL), the
//! schema (`migrations/postgres/`, numbered like `migrations/sqlite/` and holding the same
//! tables, columns and value representation), `newswatch migrate`'s copy between the two
//! backends ([`crate::store::copy`]), the poll path with feed leases ([`poll`]) and
//! `newswatch backfill` ([`poll::PgStore::backfill`], in `backfill.rs`). The reviewing commands
//! and the web go through [`crate::store::sql`].
//!
//! The client is the synchronous `postgres` crate, which drives its own small tokio runtime.
//! It must not be called from a thread that is running a tokio runtime (it panics there, as
//! `block_on` inside `block_on` does): the CLI calls it from `main`'s thread, and the daemon
//! will call it the way it calls the SQLite store, from `spawn_blocking` threads.
//!
//! Errors name the server and database (`user@host:port/db`) and never the password.

use std::sync::Arc;
use std::time::Duration;

use postgres::config::{Host, SslMode};
use postgres::{Client, Config};

use super::StoreError;

mod backfill;
pub mod index;
pub mod poll;

/// The schema, as ordered migrations. Append only; `MIGRATIONS[n]` and SQLite's `n`th
/// migration bring both backends to the same version.
const MIGRATIONS: &[&str] = &[
    include_str!("../../../migrations/postgres/0001_initial.sql"),
    include_str!("../../../migrations/postgres/0002_digest.sql"),
    include_str!("../../../migrations/postgres/0003_story_key.sql"),
    include_str!("../../../migrations/postgres/0004_item_copies.sql"),
    include_str!("../../../migrations/postgres/0005_archive.sql"),
    include_str!("../../../migrations/postgres/0006_stories.sql"),
    include_str!("../../../migrations/postgres/0007_effective_time_index.sql"),
    include_str!("../../../migrations/postgres/0008_alerts.sql"),
    include_str!("../../../migrations/postgres/0009_leases.sql"),
    include_str!("../../../migrations/postgres/0010_archive_pending.sql"),
];

/// The schema version this newswatch writes (the same number on both backends).
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// How long connecting may take when the URL sets no `connect_timeout`.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Key of the transaction-scoped advisory lock that serialises migrations: two processes
/// opening a new database at once cannot both apply a migration ("nwschema" in ASCII).
const MIGRATE_LOCK: i64 = 0x6e77_7363_6865_6d61;

/// Does `s` name a PostgreSQL database (rather than an SQLite file)?
pub fn is_url(s: &str) -> bool {
    s.starts_with("postgres://") || s.starts_with("postgresql://")
}

/// A connection to a newswatch PostgreSQL database.
pub struct PgDb {
    client: Client,
    target: String,
    tls: bool,
}

impl std::fmt::Debug for PgDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgDb")
            .field("target", &self.target)
            .field("tls", &self.tls)
            .finish()
    }
}

/// Parse a `postgres://` URL; the error is one line and never repeats the URL (it may hold a
/// password).
pub fn parse_url(url: &str) -> Result<Config, String> {
    if !is_url(url) {
        return Err("not a postgres:// or postgresql:// URL".into());
    }
    url.parse::<Config>()
        .map_err(|e| format!("invalid PostgreSQL URL: {}", one_line(&e)))
}

/// `user@host:port/dbname`: how errors and `check` name a database (no password).
pub fn describe(config: &Config) -> String {
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config
        .get_user()
        .map(|u| format!("{u}@"))
        .unwrap_or_default();
    let db = config.get_dbname().or(config.get_user()).unwrap_or("");
    format!("{user}{host}:{port}/{db}")
}

/// [`describe`] for a URL that may not parse: then the URL itself with any password replaced
/// by `***`.
pub fn describe_url(url: &str) -> String {
    parse_url(url)
        .map(|c| describe(&c))
        .unwrap_or_else(|_| redact(url))
}

/// `url` with its password (if any) replaced by `***`; `<unreadable URL>` when it does not
/// even parse as a URL (it might hold a password anywhere).
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "<unreadable URL>".into(),
    }
}

/// One line for a client error: the server's message and SQLSTATE, or the error and its causes.
pub fn one_line(e: &(dyn std::error::Error + 'static)) -> String {
    if let Some(db) = e
        .downcast_ref::<postgres::Error>()
        .and_then(postgres::Error::as_db_error)
    {
        return format!("{} (SQLSTATE {})", db.message(), db.code().code());
    }
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let s = c.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cause = c.source();
    }
    out.replace(['\n', '\r'], " ")
}

/// rustls with the webpki roots and the ring provider (explicit, so no process-wide default
/// provider has to be installed).
fn tls() -> Result<tokio_postgres_rustls::MakeRustlsConnect, String> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("TLS set-up: {e}"))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// A connection error from the TLS handshake (not from the server or the network).
fn is_tls_failure(e: &postgres::Error) -> bool {
    e.as_db_error().is_none() && e.to_string().contains("TLS handshake")
}

impl PgDb {
    /// Connect to the database `url` names. `password` (from `password_env`/`password_file`)
    /// is used when the URL has none. `sslmode` in the URL is honoured: `disable` (plain),
    /// `prefer` (the default: TLS when the server offers it and its certificate verifies,
    /// else plain, as libpq falls back) or `require` (TLS with a verified certificate, which
    /// is stricter than libpq's `require`). Certificates are checked against the webpki
    /// (Mozilla) roots.
    ///
    /// Must not be called on a tokio runtime thread (see the module docs).
    pub fn connect(url: &str, password: Option<&str>) -> Result<PgDb, StoreError> {
        let mut config = parse_url(url).map_err(|reason| StoreError::PgConnect {
            target: redact(url),
            reason,
        })?;
        let target = describe(&config);
        let fail = |reason: String| StoreError::PgConnect {
            target: target.clone(),
            reason,
        };
        if let Some(p) = password.filter(|_| config.get_password().is_none()) {
            config.password(p);
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("newswatch");
        }
        let client = match config.get_ssl_mode() {
            SslMode::Disable => config.connect(postgres::NoTls),
            // libpq's `prefer`: a failed TLS attempt (here also a certificate rustls cannot
            // verify, such as a self-signed one) falls back to a plain connection.
            SslMode::Prefer => match config.connect(tls().map_err(&fail)?) {
                Err(e) if is_tls_failure(&e) => {
                    tracing::info!(
                        target = %target,
                        reason = %one_line(&e),
                        "TLS to PostgreSQL failed; connecting without TLS (sslmode=prefer; use sslmode=require to insist)"
                    );
                    config.connect(postgres::NoTls)
                }
                other => other,
            },
            _ => config.connect(tls().map_err(&fail)?),
        }
        .map_err(|e| fail(one_line(&e)))?;
        // Under `prefer` a server without TLS answers the request with "no" and the client
        // goes on in plain text without an error: ask the server which it is.
        let mut client = client;
        let tls = client
            .query_one(
                "SELECT COALESCE((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false)",
                &[],
            )
            .and_then(|r| r.try_get(0))
            .unwrap_or(false);
        Ok(PgDb {
            client,
            target,
            tls,
        })
    }

    /// Whether the connection is encrypted.
    pub fn tls(&self) -> bool {
        self.tls
    }

    /// `user@host:port/dbname`.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The raw client, for the copy between backends and for tests.
    pub fn client(&mut self) -> &mut Client {
        &mut self.client
    }

    /// An error on this database, as one line.
    pub(crate) fn error(&self, e: &postgres::Error) -> StoreError {
        StoreError::Postgres {
            target: self.target.clone(),
            reason: one_line(e),
        }
    }

    /// The server's version string (`15.4`).
    pub fn server_version(&mut self) -> Result<String, StoreError> {
        self.client
            .query_one("SELECT current_setting('server_version')", &[])
            .and_then(|r| r.try_get(0))
            .map_err(|e| self.error(&e))
    }

    /// The schema version applied (0: a database newswatch has not set up yet).
    pub fn schema_version(&mut self) -> Result<i64, StoreError> {
        let exists: bool = self
            .client
            .query_one("SELECT to_regclass('schema_version') IS NOT NULL", &[])
            .and_then(|r| r.try_get(0))
            .map_err(|e| self.error(&e))?;
        if !exists {
            return Ok(0);
        }
        self.client
            .query_one("SELECT COALESCE(max(version), 0) FROM schema_version", &[])
            .and_then(|r| r.try_get(0))
            .map_err(|e| self.error(&e))
    }

    /// Bring the schema to [`SCHEMA_VERSION`], one transaction per migration, each recorded in
    /// `schema_version`. A database newer than this binary is an error, not a downgrade.
    /// Returns how many migrations were applied.
    pub fn migrate(&mut self) -> Result<usize, StoreError> {
        let target = self.target.clone();
        let fail = |reason: String| StoreError::PgMigrate {
            target: target.clone(),
            reason,
        };
        let mut applied = 0;
        loop {
            let mut tx = self.client.transaction().map_err(|e| fail(one_line(&e)))?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATE_LOCK])
                .map_err(|e| fail(one_line(&e)))?;
            tx.batch_execute(
                "CREATE TABLE IF NOT EXISTS schema_version (
                     version    BIGINT PRIMARY KEY,
                     applied_at TEXT COLLATE \"C\" NOT NULL
                 )",
            )
            .map_err(|e| fail(one_line(&e)))?;
            let current: i64 = tx
                .query_one("SELECT COALESCE(max(version), 0) FROM schema_version", &[])
                .and_then(|r| r.try_get(0))
                .map_err(|e| fail(one_line(&e)))?;
            if current > SCHEMA_VERSION {
                return Err(fail(format!(
                    "schema version {current} is newer than this newswatch knows ({SCHEMA_VERSION}); upgrade newswatch"
                )));
            }
            let Some(sql) = usize::try_from(current)
                .ok()
                .and_then(|i| MIGRATIONS.get(i))
            else {
                tx.commit().map_err(|e| fail(one_line(&e)))?;
                return Ok(applied);
            };
            let version = current + 1;
            tx.batch_execute(sql)
                .map_err(|e| fail(format!("migration {version}: {}", one_line(&e))))?;
            tx.execute(
                "INSERT INTO schema_version (version, applied_at) VALUES ($1, $2)",
                &[&version, &super::ts(chrono::Utc::now())],
            )
            .map_err(|e| fail(one_line(&e)))?;
            tx.commit().map_err(|e| fail(one_line(&e)))?;
            applied += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_names_user_host_port_and_database_but_no_password() {
        let c = parse_url("postgres://nw:s3cret@db.example:6543/news?sslmode=require").unwrap();
        assert_eq!(describe(&c), "nw@db.example:6543/news");
        assert_eq!(
            describe_url("postgresql://db.example/news"),
            "db.example:5432/news"
        );
    }

    #[test]
    fn bad_urls_are_one_line_and_never_echo_the_url() {
        let e = parse_url("postgres://nw:s3cret@db.example/news?sslmode=bogus").unwrap_err();
        assert!(!e.contains("s3cret") && !e.contains('\n'), "{e}");
        assert!(parse_url("mysql://x/y").is_err());
        assert!(is_url("postgresql://h/d") && !is_url("newswatch.db"));
        assert_eq!(
            describe_url("postgres://nw:s3cret@db.example/news?sslmode=bogus"),
            "postgres://nw:***@db.example/news?sslmode=bogus"
        );
    }

    #[test]
    fn migrations_are_numbered_like_the_sqlite_ones() {
        assert_eq!(MIGRATIONS.len(), super::super::MIGRATIONS.len());
    }
}
