//! Config: the TOML file people write, checked once into a runtime [`Settings`].
//!
//! Two stages: serde structs mirror the file exactly (`deny_unknown_fields`, typed defaults);
//! [`load_str`] validates them (unique names, URLs, rule syntax, schedules) into [`Settings`],
//! reporting every mistake with file:line:column and a one-line reason. A reload builds a new
//! `Settings`; a bad file never replaces a good one.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use url::Url;

mod split;
mod storage;

pub use crate::outputs::export::OutputSettings;
use crate::pipeline::fetch::{self, FetchOptions};
use crate::pipeline::matcher::Query;
pub use storage::{Database, Secret};

/// The built-in default configuration (config/newswatch.toml), used when no file is given.
pub const DEFAULT_CONFIG: &str = include_str!("../config/newswatch.toml");

/// Default time of the scheduled digest: 07:00 every day.
pub const DEFAULT_DIGEST_SCHEDULE: &str = "0 7 * * *";

/// Default number of feeds fetched at once.
pub const DEFAULT_CONCURRENCY: usize = 16;
/// Default number of simultaneous requests to one host.
pub const DEFAULT_PER_HOST: usize = 2;

/// A config error: where, and why, in one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}{}: {message}", position.map(|(l, c)| format!(":{l}:{c}")).unwrap_or_default())]
pub struct ConfigError {
    /// The file name (or `<built-in default config>`).
    pub origin: String,
    /// 1-based line and column, when known.
    pub position: Option<(usize, usize)>,
    pub message: String,
}

// ---------------------------------------------------------------------------------------------
// Stage one: the file as written.

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    /// OPML files whose feeds are added to `[[feeds]]` (paths relative to the config's folder).
    #[serde(default)]
    feeds_opml: Vec<Spanned<String>>,
    #[serde(default)]
    storage: RawStorage,
    #[serde(default)]
    output: RawOutput,
    #[serde(default)]
    archive: RawArchive,
    #[serde(default)]
    stories: RawStories,
    digest: Option<RawDigest>,
    #[serde(default)]
    http: RawHttp,
    #[serde(default)]
    schedule: RawSchedule,
    #[serde(default)]
    feeds: Vec<RawFeed>,
    #[serde(default)]
    rules: Vec<RawRule>,
    /// The review page, JSON API and metrics (`[web]`); off when absent.
    web: Option<RawWeb>,
    #[serde(default)]
    alerts: Vec<RawAlert>,
    /// `[cluster]`: several `newswatch run` workers on one PostgreSQL database.
    #[serde(default)]
    cluster: RawCluster,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    /// How long a worker's claim on a due feed lasts ("2m").
    lease: Option<Spanned<String>>,
    /// This worker's name in `feeds` (default: hostname:pid).
    worker: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWeb {
    /// Address and port to serve on, e.g. "127.0.0.1:8080".
    listen: Spanned<String>,
    /// File holding the access token (relative to the config's folder).
    token_file: Option<String>,
    /// Name of the environment variable holding the access token.
    token_env: Option<String>,
}

/// `[[alerts]]`: a name, the rules it covers, exactly one destination, and how quiet it is.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlert {
    name: Spanned<String>,
    /// Rule names (default: every rule).
    rules: Option<Spanned<Vec<String>>>,
    webhook: Option<Spanned<String>>,
    /// Environment variable holding the webhook's HMAC-SHA256 signing secret.
    secret_env: Option<Spanned<String>>,
    ntfy: Option<Spanned<String>>,
    /// ntfy priority 1..=5 (default 3).
    priority: Option<Spanned<u8>>,
    slack: Option<Spanned<String>>,
    matrix: Option<Spanned<String>>,
    /// Recipients; sent through `[digest.email]`'s SMTP settings.
    email: Option<Spanned<Vec<String>>>,
    /// argv of a program given the JSON on stdin (no shell).
    command: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    update_at: Vec<u32>,
    min_interval: Option<Spanned<String>>,
    quiet_hours: Option<Spanned<String>>,
    max_per_hour: Option<Spanned<u32>>,
    timeout: Option<Spanned<String>>,
    give_up_after: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStorage {
    path: Option<Spanned<String>>,
    /// `postgres://…`: PostgreSQL instead of the SQLite file (see [`storage`]).
    url: Option<Spanned<String>>,
    /// The environment variable holding the PostgreSQL password.
    password_env: Option<Spanned<String>>,
    /// The file holding the PostgreSQL password (relative to the config's folder).
    password_file: Option<Spanned<String>>,
    /// How long matches are kept ("forever", the default, or a duration); starred ones always.
    keep_matches: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStories {
    /// How far apart in time reports of one story may be ("3d").
    window: Option<Spanned<String>>,
    /// Score a report needs to join a story (0.22; higher: fewer, surer merges).
    threshold: Option<Spanned<f64>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawArchive {
    /// How long every polled entry is kept for search and backfill ("30d"; "0" = no archive).
    keep: Option<Spanned<String>>,
    /// Apply a new or changed rule to the archive automatically when the daemon loads it.
    backfill_new_rules: Option<bool>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawOutput {
    atom: Option<Spanned<String>>,
    json_feed: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDigest {
    schedule: Option<Spanned<String>>,
    dir: Option<Spanned<String>>,
    #[serde(default)]
    formats: Vec<Spanned<String>>,
    email: Option<RawEmail>,
    webhook: Option<RawWebhook>,
    /// Delivery attempts (default 3).
    attempts: Option<u32>,
    /// First retry delay, doubled each time (default "30s").
    retry_delay: Option<Spanned<String>>,
    /// Entries published longer than this before their feed's first poll are not digested
    /// (default "7d").
    backlog: Option<Spanned<String>>,
    /// At most this many entries per rule section (default 50; 0: no cap).
    max_per_rule: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEmail {
    host: Spanned<String>,
    port: Option<u16>,
    /// "starttls" (default), "tls" or "plain" (loopback only).
    security: Option<Spanned<String>>,
    from: String,
    to: Vec<String>,
    username: Option<String>,
    /// Name of the environment variable holding the password.
    password_env: Option<String>,
    /// File holding the password (relative to the config's folder).
    password_file: Option<String>,
    timeout: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    url: Spanned<String>,
    timeout: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    concurrency: Option<Spanned<usize>>,
    per_host: Option<Spanned<usize>>,
    connect_timeout: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    max_redirects: Option<usize>,
    max_body_bytes: Option<u64>,
    user_agent: Option<Spanned<String>>,
    proxy: Option<Spanned<String>>,
    headers: Option<Spanned<HashMap<String, String>>>,
    /// Follow redirects from a public address to a private one (default false).
    allow_private_redirects: Option<bool>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSchedule {
    poll: Option<Spanned<String>>,
    timezone: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFeed {
    name: Spanned<String>,
    url: Spanned<String>,
    schedule: Option<Spanned<String>>,
    proxy: Option<Spanned<String>>,
    user_agent: Option<Spanned<String>>,
    headers: Option<Spanned<HashMap<String, String>>>,
    timeout: Option<Spanned<String>>,
    #[serde(default)]
    tags: Vec<String>,
    /// Overrides `[http] allow_private_redirects` for this feed.
    allow_private_redirects: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Spanned<String>,
    query: Spanned<String>,
}

// ---------------------------------------------------------------------------------------------
// Stage two: validated settings.

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where the config came from (a path, or `None` for the built-in default).
    pub source: Option<PathBuf>,
    /// The SQLite database file. Empty when [`Settings::backend`] is PostgreSQL.
    pub database: PathBuf,
    /// `[storage]`: the SQLite file or the PostgreSQL database.
    pub backend: Database,
    /// Where `storage.url` is written (for [`Settings::require_sqlite`]'s error).
    storage_url_at: Option<(usize, usize)>,
    pub concurrency: usize,
    pub per_host: usize,
    pub schedule: ScheduleSettings,
    pub feeds: Vec<FeedSettings>,
    pub rules: Vec<RuleSettings>,
    /// Files kept up to date with the stored matches (`[output]`).
    pub output: OutputSettings,
    /// The scheduled digest (`[digest]`); `None` when the section is absent.
    pub digest: Option<crate::outputs::digest::DigestSettings>,
    /// `[archive]`: every polled entry, kept for search and backfill.
    pub archive: ArchiveSettings,
    /// `[stories]`: how reports of one event from many outlets are grouped.
    pub stories: crate::pipeline::stories::StorySettings,
    /// `[storage] keep_matches`: matches first seen longer ago are pruned (never starred ones);
    /// `None` keeps them forever.
    pub keep_matches: Option<Duration>,
    /// `[web]`: the review page, JSON API and metrics; `None` when the section is absent.
    pub web: Option<WebSettings>,
    /// `[[alerts]]`.
    pub alerts: Vec<crate::outputs::alerts::AlertSettings>,
    /// `[cluster]`: leases of due feeds between workers sharing a PostgreSQL database.
    pub cluster: ClusterSettings,
}

/// How long a worker's lease on a due feed lasts when `[cluster] lease` is not set.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(120);

/// `[cluster]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSettings {
    /// A claimed feed is this worker's until then; a worker that dies (kill -9) loses its
    /// feeds to the others when their leases run out.
    pub lease: Duration,
    /// This worker's name (`None`: hostname:pid, see [`ClusterSettings::worker_id`]).
    pub worker: Option<String>,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings {
            lease: DEFAULT_LEASE,
            worker: None,
        }
    }
}

impl ClusterSettings {
    /// The configured worker name, else `hostname:pid`.
    pub fn worker_id(&self) -> String {
        if let Some(w) = &self.worker {
            return w.clone();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".into());
        format!("{host}:{}", std::process::id())
    }
}

/// `[web]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSettings {
    /// Where to listen.
    pub listen: std::net::SocketAddr,
    /// Where the access token is read from when the server starts; required for a listen
    /// address that is not loopback.
    pub token: Option<crate::outputs::digest::SecretSource>,
}

impl Settings {
    /// For the code that works on an SQLite file only (the SQLite daemon, `service::daemon`;
    /// every command picks its backend from `[storage]`): a config whose `[storage] url` names
    /// PostgreSQL is refused with this error (file and line, like every config error) rather
    /// than quietly using some SQLite file.
    pub fn require_sqlite(&self) -> Result<(), ConfigError> {
        let Database::Postgres { url, .. } = &self.backend else {
            return Ok(());
        };
        Err(ConfigError {
            origin: self
                .source
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "<built-in default config>".into()),
            position: self.storage_url_at,
            message: format!(
                "storage.url: this needs an SQLite file (storage.path), not the PostgreSQL database {}; `newswatch migrate --from <url> --to <file>` copies it into one",
                crate::store::postgres::describe_url(url.expose())
            ),
        })
    }

    /// The cut-off times at `now`: unmatched archived entries first seen before the first go
    /// (with the archive off, all of them), and matches first seen before the second (`None`:
    /// kept forever).
    pub fn retention(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> (
        Option<chrono::DateTime<chrono::Utc>>,
        Option<chrono::DateTime<chrono::Utc>>,
    ) {
        let before = |d: Duration| {
            chrono::Duration::from_std(d)
                .ok()
                .and_then(|d| now.checked_sub_signed(d))
        };
        let archive = match self.archive.keep {
            Some(keep) => before(keep),
            None => Some(now),
        };
        (archive, self.keep_matches.and_then(before))
    }
}

/// Default `[archive] keep`.
pub const DEFAULT_ARCHIVE_KEEP: Duration = Duration::from_secs(30 * 24 * 3600);

/// `[archive]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveSettings {
    /// How long unmatched entries are kept; `None` when the archive is off (`keep = "0"`).
    pub keep: Option<Duration>,
    /// Apply new or changed rules to the archive when the daemon loads them.
    pub backfill_new_rules: bool,
}

impl Default for ArchiveSettings {
    fn default() -> Self {
        ArchiveSettings {
            keep: Some(DEFAULT_ARCHIVE_KEEP),
            backfill_new_rules: false,
        }
    }
}

/// Global schedule settings.
#[derive(Debug, Clone)]
pub struct ScheduleSettings {
    /// Cron line for feeds without their own.
    pub poll: String,
    /// Time zone the cron lines are read in.
    pub timezone: chrono_tz::Tz,
}

/// One feed.
#[derive(Debug, Clone)]
pub struct FeedSettings {
    pub name: String,
    pub url: Url,
    /// Cron line; `None` means the global one.
    pub schedule: Option<String>,
    pub fetch: FetchOptions,
    pub tags: Vec<String>,
}

impl FeedSettings {
    /// `(name, url)`: what the store keeps of a configured feed ([`crate::store::Store::sync_feeds`]).
    pub fn name_url(&self) -> (&str, &str) {
        (&self.name, self.url.as_str())
    }
}

/// One rule.
#[derive(Debug, Clone)]
pub struct RuleSettings {
    pub name: String,
    pub query: Query,
    /// The query as written.
    pub source: String,
}

impl Settings {
    /// The cron line that applies to `feed`.
    pub fn feed_schedule<'a>(&'a self, feed: &'a FeedSettings) -> &'a str {
        feed.schedule.as_deref().unwrap_or(&self.schedule.poll)
    }
}

/// Which config to use, as decided from `--config`, `NEWSWATCH_CONFIG` and the working folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    File(PathBuf),
    BuiltIn,
}

impl fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigSource::File(p) => write!(f, "{}", p.display()),
            ConfigSource::BuiltIn => f.write_str("<built-in default config>"),
        }
    }
}

/// `--config`/`NEWSWATCH_CONFIG` if given, else `./newswatch.toml` if it exists, else built-in.
pub fn resolve_source(explicit: Option<&Path>) -> ConfigSource {
    if let Some(p) = explicit {
        return ConfigSource::File(p.to_path_buf());
    }
    let local = PathBuf::from("newswatch.toml");
    if local.is_file() {
        ConfigSource::File(local)
    } else {
        ConfigSource::BuiltIn
    }
}

/// The folder the built-in config keeps its database in (platform data directory).
pub fn default_data_dir() -> PathBuf {
    directories::ProjectDirs::from("", "", "newswatch")
        .map(|d| d.data_dir().to_path_buf())
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Load and validate a config from its source.
pub fn load(source: &ConfigSource) -> Result<Settings, ConfigError> {
    match source {
        ConfigSource::BuiltIn => load_str(DEFAULT_CONFIG, None, &default_data_dir()),
        ConfigSource::File(path) => {
            let bytes = std::fs::read(path).map_err(|e| ConfigError {
                origin: path.display().to_string(),
                position: None,
                message: format!("cannot read config: {e}"),
            })?;
            let text = String::from_utf8(bytes).map_err(|e| {
                // Point at the first bad byte, like every other config mistake.
                let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
                let valid = String::from_utf8_lossy(good);
                ConfigError {
                    origin: path.display().to_string(),
                    position: Some(LineIndex::new(&valid).position(valid.len())),
                    message: "config is not valid UTF-8".into(),
                }
            })?;
            let base = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from("."));
            load_str(&text, Some(path), &base)
        }
    }
}

/// Validate config text. `path` names the file in errors; relative paths resolve against `base`.
pub fn load_str(text: &str, path: Option<&Path>, base: &Path) -> Result<Settings, ConfigError> {
    let origin = path
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "<built-in default config>".to_string());
    let lines = LineIndex::new(text);
    let err = |span: Option<std::ops::Range<usize>>, message: String| ConfigError {
        origin: origin.clone(),
        position: span.map(|s| lines.position(s.start)),
        message,
    };

    let toml_err = |e: toml::de::Error| {
        // toml's message is multi-line with a source excerpt; keep the first line only.
        let msg = e
            .message()
            .lines()
            .next()
            .unwrap_or("invalid TOML")
            .trim()
            .to_string();
        err(e.span(), msg)
    };
    let (raw, feed_bodies) = parse_raw(text).map_err(toml_err)?;

    let backend = storage::database(
        storage::RawChoice {
            path: &raw.storage.path,
            url: &raw.storage.url,
            password_env: &raw.storage.password_env,
            password_file: &raw.storage.password_file,
        },
        base,
        &|var| std::env::var(var).ok(),
    )
    .map_err(|(span, message)| err(span, message))?;
    let database = match &backend {
        Database::Sqlite(p) => p.clone(),
        Database::Postgres { .. } => PathBuf::new(),
    };
    let storage_url_at = raw
        .storage
        .url
        .as_ref()
        .map(|u| lines.position(u.span().start));

    let positive = |v: &Option<Spanned<usize>>, default: usize, what: &str| match v {
        Some(s) if *s.get_ref() == 0 => {
            Err(err(Some(s.span()), format!("{what} must be at least 1")))
        }
        Some(s) => Ok(*s.get_ref()),
        None => Ok(default),
    };
    let concurrency = positive(
        &raw.http.concurrency,
        DEFAULT_CONCURRENCY,
        "http.concurrency",
    )?;
    let per_host = positive(&raw.http.per_host, DEFAULT_PER_HOST, "http.per_host")?;

    let duration =
        |v: &Option<Spanned<String>>, default: Duration| -> Result<Duration, ConfigError> {
            match v {
                None => Ok(default),
                Some(s) => humantime::parse_duration(s.get_ref()).map_err(|e| {
                    err(
                        Some(s.span()),
                        format!("invalid duration {:?}: {e}", s.get_ref()),
                    )
                }),
            }
        };
    let check_proxy = |v: &Option<Spanned<String>>| -> Result<Option<String>, ConfigError> {
        match v {
            None => Ok(None),
            Some(s) => {
                let u = Url::parse(s.get_ref()).map_err(|e| {
                    err(
                        Some(s.span()),
                        format!("invalid proxy URL {:?}: {e}", s.get_ref()),
                    )
                })?;
                match u.scheme() {
                    "http" | "https" | "socks5" | "socks5h" => Ok(Some(s.get_ref().clone())),
                    other => Err(err(
                        Some(s.span()),
                        format!(
                            "unsupported proxy scheme {other:?} (use http, https, socks5 or socks5h)"
                        ),
                    )),
                }
            }
        }
    };

    let mut base_fetch = FetchOptions {
        connect_timeout: duration(&raw.http.connect_timeout, fetch::DEFAULT_CONNECT_TIMEOUT)?,
        timeout: duration(&raw.http.timeout, fetch::DEFAULT_TIMEOUT)?,
        max_redirects: raw
            .http
            .max_redirects
            .unwrap_or(fetch::DEFAULT_MAX_REDIRECTS),
        max_body_bytes: raw
            .http
            .max_body_bytes
            .unwrap_or(fetch::DEFAULT_MAX_BODY_BYTES),
        user_agent: raw
            .http
            .user_agent
            .as_ref()
            .map(|u| u.get_ref().clone())
            .unwrap_or_else(fetch::default_user_agent),
        proxy: check_proxy(&raw.http.proxy)?,
        headers: Vec::new(),
        allow_private_redirects: raw.http.allow_private_redirects.unwrap_or(false),
        ..FetchOptions::default()
    };
    // Header names/values and user agents the HTTP client would refuse are config mistakes:
    // report them here, with a position, rather than when the first poll builds its client.
    let check_http = |headers: &Option<Spanned<HashMap<String, String>>>,
                      user_agent: &Option<Spanned<String>>,
                      what: &str|
     -> Result<(), ConfigError> {
        if let Some(h) = headers {
            for (name, value) in sorted_headers(h.get_ref()) {
                fetch::check_header(&name, &value)
                    .map_err(|m| err(Some(h.span()), format!("{what}headers: {m}")))?;
            }
        }
        if let Some(ua) = user_agent {
            fetch::check_user_agent(ua.get_ref())
                .map_err(|m| err(Some(ua.span()), format!("{what}user_agent: {m}")))?;
        }
        Ok(())
    };
    check_http(&raw.http.headers, &raw.http.user_agent, "http.")?;
    let global_headers: HashMap<String, String> = raw
        .http
        .headers
        .as_ref()
        .map(|h| h.get_ref().clone())
        .unwrap_or_default();
    base_fetch.headers = sorted_headers(&global_headers);

    let timezone = match &raw.schedule.timezone {
        None => chrono_tz::UTC,
        Some(s) => s.get_ref().parse::<chrono_tz::Tz>().map_err(|_| {
            err(
                Some(s.span()),
                format!(
                    "unknown time zone {:?} (use an IANA name like \"Europe/London\")",
                    s.get_ref()
                ),
            )
        })?,
    };
    let poll = match &raw.schedule.poll {
        None => crate::schedule::DEFAULT_POLL.to_string(),
        Some(s) => {
            crate::schedule::Schedule::parse(s.get_ref())
                .map_err(|e| err(Some(s.span()), format!("schedule.poll: {e}")))?;
            s.get_ref().clone()
        }
    };

    let mut feeds = Vec::with_capacity(
        feed_bodies
            .as_ref()
            .map_or(raw.feeds.len(), |b| b.len() + raw.feeds.len()),
    );
    let mut seen: HashMap<String, usize> = HashMap::new();
    // Where each feed's url is written (for the OPML merge's "already configured at").
    let mut url_at: Vec<usize> = Vec::new();
    let mut add_feed = |f: &RawFeed| -> Result<(), ConfigError> {
        let name = unique_name("feed", &f.name, &mut seen, &lines)
            .map_err(|m| err(Some(f.name.span()), m))?;
        let url = feed_url(name, f.url.get_ref()).map_err(|m| err(Some(f.url.span()), m))?;
        if let Some(s) = &f.schedule {
            crate::schedule::Schedule::parse(s.get_ref())
                .map_err(|e| err(Some(s.span()), format!("feed {name:?}: schedule: {e}")))?;
        }
        let mut fetch = base_fetch.clone();
        if let Some(p) = check_proxy(&f.proxy)? {
            fetch.proxy = Some(p);
        }
        check_http(&f.headers, &f.user_agent, &format!("feed {name:?}: "))?;
        if let Some(ua) = &f.user_agent {
            fetch.user_agent = ua.get_ref().clone();
        }
        if let Some(h) = f.headers.as_ref().filter(|h| !h.get_ref().is_empty()) {
            let mut all: HashMap<String, String> = global_headers.clone();
            all.extend(h.get_ref().clone());
            fetch.headers = sorted_headers(&all);
        }
        fetch.timeout = duration(&f.timeout, fetch.timeout)?;
        if let Some(allow) = f.allow_private_redirects {
            fetch.allow_private_redirects = allow;
        }
        feeds.push(FeedSettings {
            name: name.to_string(),
            url,
            schedule: f.schedule.as_ref().map(|s| s.get_ref().clone()),
            fetch,
            tags: f.tags.clone(),
        });
        if !raw.feeds_opml.is_empty() {
            url_at.push(f.url.span().start);
        }
        Ok(())
    };
    match &feed_bodies {
        None => raw.feeds.iter().try_for_each(&mut add_feed)?,
        // Parsed one at a time (each parsed once already, in `parse_raw`).
        Some(bodies) => {
            for body in bodies {
                add_feed(&parse_feed(text, body.clone()).map_err(toml_err)?)?;
            }
        }
    }

    let opml_feeds = opml_feeds(&raw, &feeds, &url_at, &base_fetch, &origin, &lines, base)?;
    feeds.extend(opml_feeds);
    // Extra headers go to each feed's configured origin only (never where it redirects).
    for f in &mut feeds {
        f.fetch.bind_headers(&f.url);
    }

    // Files newswatch writes (digests, [output] feeds) resolve against the service's state
    // directory under systemd: the config's folder is read-only there (ProtectSystem=strict).
    let out_base = output_base(base, std::env::var_os("STATE_DIRECTORY").as_deref());
    let output_path = |v: &Option<Spanned<String>>, key: &str| match v {
        None => Ok(None),
        Some(s) if s.get_ref().trim().is_empty() => {
            Err(err(Some(s.span()), format!("output.{key} is empty")))
        }
        Some(s) => Ok(Some(out_base.join(s.get_ref().trim()))),
    };
    let output = OutputSettings {
        atom: output_path(&raw.output.atom, "atom")?,
        json_feed: output_path(&raw.output.json_feed, "json_feed")?,
    };
    let digest = match &raw.digest {
        None => None,
        Some(d) => Some(digest_settings(d, base, &out_base, &duration, &err)?),
    };
    // "0" / "off" / "forever" / "never" beside humantime durations; `None` = no limit.
    let limit = |v: &Option<Spanned<String>>,
                 default: Option<Duration>,
                 off: &[&str],
                 key: &str|
     -> Result<Option<Duration>, ConfigError> {
        let Some(s) = v else { return Ok(default) };
        let text = s.get_ref().trim();
        if off.contains(&text) {
            return Ok(None);
        }
        match humantime::parse_duration(text) {
            Ok(d) if d.is_zero() => Ok(None),
            Ok(d) => Ok(Some(d)),
            Err(e) => Err(err(
                Some(s.span()),
                format!(
                    "{key}: invalid duration {text:?}: {e} (e.g. \"30d\", or {:?})",
                    off[0]
                ),
            )),
        }
    };
    let archive = ArchiveSettings {
        keep: limit(
            &raw.archive.keep,
            Some(DEFAULT_ARCHIVE_KEEP),
            &["0", "off"],
            "archive.keep",
        )?,
        backfill_new_rules: raw.archive.backfill_new_rules.unwrap_or(false),
    };
    let mut stories = crate::pipeline::stories::StorySettings::default();
    if let Some(w) = &raw.stories.window {
        let d = humantime::parse_duration(w.get_ref().trim())
            .ok()
            .and_then(|d| chrono::Duration::from_std(d).ok())
            .filter(|d| *d >= chrono::Duration::hours(1) && *d <= chrono::Duration::days(60))
            .ok_or_else(|| {
                err(
                    Some(w.span()),
                    format!(
                        "stories.window: {:?} is not a duration from 1h to 60d (e.g. \"3d\")",
                        w.get_ref()
                    ),
                )
            })?;
        stories.window = d;
    }
    if let Some(t) = &raw.stories.threshold {
        let v = *t.get_ref();
        if !(0.05..=1.0).contains(&v) {
            return Err(err(
                Some(t.span()),
                format!("stories.threshold: {v} is outside 0.05–1.0 (default 0.22)"),
            ));
        }
        stories.threshold = v as f32;
    }
    let keep_matches = limit(
        &raw.storage.keep_matches,
        None,
        &["forever", "never"],
        "storage.keep_matches",
    )?;

    let mut rules = Vec::with_capacity(raw.rules.len());
    let mut seen: HashMap<String, usize> = HashMap::new();
    for r in &raw.rules {
        let name = unique_name("rule", &r.name, &mut seen, &lines)
            .map_err(|m| err(Some(r.name.span()), m))?;
        let source = r.query.get_ref();
        let query = Query::parse(source).map_err(|e| {
            // Point at the offending character inside the query string when we can.
            let span = r.query.span();
            let at = query_offset(text, span.clone(), e.column);
            ConfigError {
                origin: origin.clone(),
                position: Some(lines.position(at)),
                message: format!("rule {name:?}: {} (query column {})", e.message, e.column),
            }
        })?;
        rules.push(RuleSettings {
            name: name.to_string(),
            query,
            source: source.clone(),
        });
    }

    let web = match &raw.web {
        None => None,
        Some(w) => {
            let listen = w.listen.get_ref().trim().parse().map_err(|_| {
                err(
                    Some(w.listen.span()),
                    format!(
                        "web.listen: expected an IP address and port like \"127.0.0.1:8080\" or \"[::1]:8080\", got {:?}",
                        w.listen.get_ref()
                    ),
                )
            })?;
            let token = match (&w.token_env, &w.token_file) {
                (Some(_), Some(_)) => {
                    return Err(err(
                        None,
                        "web: give token_env or token_file, not both".into(),
                    ));
                }
                (Some(v), None) => Some(crate::outputs::digest::SecretSource::Env(v.clone())),
                (None, Some(f)) => Some(crate::outputs::digest::SecretSource::File(base.join(f))),
                (None, None) => None,
            };
            Some(WebSettings { listen, token })
        }
    };
    let alerts = alert_settings(&raw, &rules, digest.as_ref(), &duration, &err, &lines)?;
    let lease = duration(&raw.cluster.lease, DEFAULT_LEASE)?;
    if let Some(l) = raw
        .cluster
        .lease
        .as_ref()
        .filter(|_| lease < Duration::from_secs(1))
    {
        return Err(err(
            Some(l.span()),
            format!("cluster.lease: {:?} is shorter than 1s", l.get_ref()),
        ));
    }
    let worker = match &raw.cluster.worker {
        Some(w) if w.get_ref().trim().is_empty() || w.get_ref().chars().any(char::is_control) => {
            return Err(err(
                Some(w.span()),
                "cluster.worker: empty, or holds control characters".into(),
            ));
        }
        Some(w) => Some(w.get_ref().trim().to_string()),
        None => None,
    };
    let cluster = ClusterSettings { lease, worker };

    Ok(Settings {
        source: path.map(Path::to_path_buf),
        database,
        backend,
        storage_url_at,
        concurrency,
        per_host,
        schedule: ScheduleSettings { poll, timezone },
        feeds,
        rules,
        output,
        digest,
        archive,
        stories,
        keep_matches,
        web,
        alerts,
        cluster,
    })
}

/// Byte ranges of the `[[feeds]]` sections' bodies in the config text.
type FeedBodies = Vec<std::ops::Range<usize>>;

/// The file as written, and, when its `[[feeds]]` sections were parsed one at a time (see
/// [`split`]), their bodies: the caller parses each again when it needs it, so that no tree
/// of the whole file, nor every raw feed, is held at once. Any TOML mistake comes from the
/// whole-file parse, exactly as without the fast path.
fn parse_raw(text: &str) -> Result<(RawConfig, Option<FeedBodies>), toml::de::Error> {
    if let Some(sections) = split::feed_sections(text) {
        let rest = toml::from_str::<RawConfig>(&sections.rest);
        drop(sections.rest);
        if let Ok(raw) = rest
            && raw.feeds.is_empty()
            && sections
                .bodies
                .iter()
                .all(|b| parse_feed(text, b.clone()).is_ok())
        {
            return Ok((raw, Some(sections.bodies)));
        }
    }
    toml::from_str(text).map(|raw| (raw, None))
}

/// One `[[feeds]]` section's body (`body`: its range in `text`), spans relative to `text`.
fn parse_feed(text: &str, body: std::ops::Range<usize>) -> Result<RawFeed, toml::de::Error> {
    let at = body.start;
    let section = text
        .get(body)
        .ok_or_else(|| <toml::de::Error as serde::de::Error>::custom("bad section"))?;
    let f: RawFeed = toml::from_str(section)?;
    fn shift<T>(s: Spanned<T>, by: usize) -> Spanned<T> {
        let r = s.span();
        Spanned::new(r.start + by..r.end + by, s.into_inner())
    }
    let opt = |s: Option<Spanned<String>>| s.map(|s| shift(s, at));
    Ok(RawFeed {
        name: shift(f.name, at),
        url: shift(f.url, at),
        schedule: opt(f.schedule),
        proxy: opt(f.proxy),
        user_agent: opt(f.user_agent),
        headers: f.headers.map(|h| shift(h, at)),
        timeout: opt(f.timeout),
        tags: f.tags,
        allow_private_redirects: f.allow_private_redirects,
    })
}

/// `[[alerts]]` → [`crate::outputs::alerts::AlertSettings`], checked against the rules and the
/// digest's SMTP settings.
fn alert_settings(
    raw: &RawConfig,
    rules: &[RuleSettings],
    digest: Option<&crate::outputs::digest::DigestSettings>,
    duration: &DurationParser<'_>,
    err: &dyn Fn(Option<std::ops::Range<usize>>, String) -> ConfigError,
    lines: &LineIndex<'_>,
) -> Result<Vec<crate::outputs::alerts::AlertSettings>, ConfigError> {
    use crate::outputs::alerts::{self, AlertSettings, Destination, QuietHours};
    let mut out = Vec::with_capacity(raw.alerts.len());
    let mut seen: HashMap<String, usize> = HashMap::new();
    for a in &raw.alerts {
        let name = unique_name("alert", &a.name, &mut seen, lines)
            .map_err(|m| err(Some(a.name.span()), m))?;
        let web = |v: &Spanned<String>, key: &str| -> Result<Url, ConfigError> {
            Url::parse(v.get_ref().trim())
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https"))
                .ok_or_else(|| {
                    err(
                        Some(v.span()),
                        format!(
                            "alert {name:?}: {key}: invalid http(s) URL {:?}",
                            v.get_ref()
                        ),
                    )
                })
        };
        let mut dests = Vec::new();
        if let Some(w) = &a.webhook {
            let secret = a
                .secret_env
                .as_ref()
                .map(|s| crate::outputs::digest::SecretSource::Env(s.get_ref().clone()));
            dests.push(Destination::Webhook {
                url: web(w, "webhook")?,
                secret,
            });
        } else if let Some(s) = &a.secret_env {
            return Err(err(
                Some(s.span()),
                format!("alert {name:?}: secret_env signs webhooks only"),
            ));
        }
        if let Some(n) = &a.ntfy {
            let url = web(n, "ntfy")?;
            if url
                .path_segments()
                .and_then(|mut p| p.next_back())
                .is_none_or(str::is_empty)
            {
                return Err(err(
                    Some(n.span()),
                    format!("alert {name:?}: ntfy URL needs a topic (https://ntfy.sh/TOPIC)"),
                ));
            }
            let priority = match &a.priority {
                Some(p) if !(1..=5).contains(p.get_ref()) => {
                    return Err(err(
                        Some(p.span()),
                        format!("alert {name:?}: priority must be 1 to 5"),
                    ));
                }
                Some(p) => *p.get_ref(),
                None => alerts::DEFAULT_NTFY_PRIORITY,
            };
            dests.push(Destination::Ntfy { url, priority });
        } else if let Some(p) = &a.priority {
            return Err(err(
                Some(p.span()),
                format!("alert {name:?}: priority is for ntfy only"),
            ));
        }
        if let Some(u) = &a.slack {
            dests.push(Destination::Slack {
                url: web(u, "slack")?,
            });
        }
        if let Some(u) = &a.matrix {
            dests.push(Destination::Matrix {
                url: web(u, "matrix")?,
            });
        }
        if let Some(to) = &a.email {
            let Some(smtp) = digest.and_then(|d| d.email.as_ref()) else {
                return Err(err(
                    Some(to.span()),
                    format!(
                        "alert {name:?}: email needs the SMTP settings of [digest.email] (host, from, …)"
                    ),
                ));
            };
            if to.get_ref().is_empty() {
                return Err(err(
                    Some(to.span()),
                    format!("alert {name:?}: email has no recipients"),
                ));
            }
            let mut smtp = smtp.clone();
            smtp.to = to.get_ref().clone();
            dests.push(Destination::Email { smtp });
        }
        if let Some(c) = &a.command {
            if c.get_ref().first().is_none_or(|p| p.trim().is_empty()) {
                return Err(err(
                    Some(c.span()),
                    format!(
                        "alert {name:?}: command is empty (give the program and its arguments)"
                    ),
                ));
            }
            dests.push(Destination::Command {
                argv: c.get_ref().clone(),
            });
        }
        let destination = match dests.len() {
            1 => dests.remove(0),
            0 => {
                return Err(err(
                    Some(a.name.span()),
                    format!(
                        "alert {name:?}: no destination (give one of webhook, ntfy, slack, matrix, email, command)"
                    ),
                ));
            }
            _ => {
                return Err(err(
                    Some(a.name.span()),
                    format!(
                        "alert {name:?}: give one destination of webhook, ntfy, slack, matrix, email, command (use another [[alerts]] for another)"
                    ),
                ));
            }
        };
        let covered = match &a.rules {
            None => None,
            Some(r) => {
                for rule in r.get_ref() {
                    if !rules.iter().any(|x| &x.name == rule) {
                        let known: Vec<&str> = rules.iter().map(|x| x.name.as_str()).collect();
                        return Err(err(
                            Some(r.span()),
                            format!(
                                "alert {name:?}: no rule named {rule:?} (known rules: {})",
                                known.join(", ")
                            ),
                        ));
                    }
                }
                Some(r.get_ref().clone())
            }
        };
        let mut update_at = a.update_at.clone();
        update_at.sort_unstable();
        update_at.dedup();
        if update_at.iter().any(|&n| n < 2) {
            return Err(err(
                Some(a.name.span()),
                format!("alert {name:?}: update_at counts outlets and must be 2 or more"),
            ));
        }
        let quiet_hours = match &a.quiet_hours {
            None => None,
            Some(q) => Some(QuietHours::parse(q.get_ref()).ok_or_else(|| {
                err(
                    Some(q.span()),
                    format!(
                        "alert {name:?}: quiet_hours must be \"HH:MM-HH:MM\" (e.g. \"22:00-07:00\"), got {:?}",
                        q.get_ref()
                    ),
                )
            })?),
        };
        let max_per_hour = match &a.max_per_hour {
            Some(m) if *m.get_ref() == 0 => {
                return Err(err(
                    Some(m.span()),
                    format!("alert {name:?}: max_per_hour must be at least 1"),
                ));
            }
            m => m.as_ref().map(|m| *m.get_ref()),
        };
        let min_interval =
            Some(duration(&a.min_interval, Duration::ZERO)?).filter(|d| !d.is_zero());
        out.push(AlertSettings {
            name: name.to_string(),
            rules: covered,
            destination,
            update_at,
            min_interval,
            quiet_hours,
            max_per_hour,
            timeout: duration(&a.timeout, alerts::DEFAULT_TIMEOUT)?,
            give_up_after: duration(&a.give_up_after, alerts::DEFAULT_GIVE_UP_AFTER)?,
        });
    }
    Ok(out)
}

/// A feed or rule name, trimmed: not empty, no control or bidi characters, not seen before in
/// `seen` (name → line of first definition). The error is the one-line reason.
fn unique_name<'a>(
    kind: &str,
    name: &'a Spanned<String>,
    seen: &mut HashMap<String, usize>,
    lines: &LineIndex<'_>,
) -> Result<&'a str, String> {
    let trimmed = name.get_ref().trim();
    if trimmed.is_empty() {
        return Err(format!("{kind} name is empty"));
    }
    if let Some(c) = trimmed.chars().find(|&c| is_unsafe_in_name(c)) {
        return Err(format!("{kind} name contains a control character ({c:?})"));
    }
    if let Some(first) = seen.insert(trimmed.to_string(), lines.position(name.span().start).0) {
        return Err(format!(
            "duplicate {kind} name {trimmed:?} (first defined on line {first})"
        ));
    }
    Ok(trimmed)
}

/// Reads an optional humantime duration, with a default, reporting errors at its position.
type DurationParser<'a> =
    dyn Fn(&Option<Spanned<String>>, Duration) -> Result<Duration, ConfigError> + 'a;

/// `[digest]` → [`crate::outputs::digest::DigestSettings`].
fn digest_settings(
    d: &RawDigest,
    base: &Path,
    out_base: &Path,
    duration: &DurationParser<'_>,
    err: &dyn Fn(Option<std::ops::Range<usize>>, String) -> ConfigError,
) -> Result<crate::outputs::digest::DigestSettings, ConfigError> {
    use crate::outputs::digest::{
        DigestSettings, EmailSecurity, EmailSettings, Format, RetryPolicy, SecretSource,
        WebhookSettings,
    };
    let schedule = match &d.schedule {
        None => DEFAULT_DIGEST_SCHEDULE.to_string(),
        Some(s) => {
            crate::schedule::Schedule::parse(s.get_ref())
                .map_err(|e| err(Some(s.span()), format!("digest.schedule: {e}")))?;
            s.get_ref().clone()
        }
    };
    let dir = match &d.dir {
        Some(s) if s.get_ref().trim().is_empty() => {
            return Err(err(Some(s.span()), "digest.dir is empty".into()));
        }
        Some(s) => out_base.join(s.get_ref().trim()),
        None => out_base.join("digests"),
    };
    let mut formats = Vec::new();
    for f in &d.formats {
        let fmt = Format::parse(f.get_ref()).ok_or_else(|| {
            err(
                Some(f.span()),
                format!(
                    "unknown digest format {:?} (use md, html, text or json)",
                    f.get_ref()
                ),
            )
        })?;
        if !formats.contains(&fmt) {
            formats.push(fmt);
        }
    }
    let email = match &d.email {
        None => None,
        Some(e) => {
            let security = match e
                .security
                .as_ref()
                .map(|s| (s, s.get_ref().to_ascii_lowercase()))
            {
                None => EmailSecurity::StartTls,
                Some((_, v)) if v == "starttls" => EmailSecurity::StartTls,
                Some((_, v)) if v == "tls" => EmailSecurity::Tls,
                Some((_, v)) if v == "plain" => EmailSecurity::Plain,
                Some((s, _)) => {
                    return Err(err(
                        Some(s.span()),
                        "digest.email.security must be starttls, tls or plain".into(),
                    ));
                }
            };
            if e.host.get_ref().trim().is_empty() {
                return Err(err(
                    Some(e.host.span()),
                    "digest.email.host is empty".into(),
                ));
            }
            let password = match (&e.password_env, &e.password_file) {
                (Some(_), Some(_)) => {
                    return Err(err(
                        None,
                        "digest.email: give password_env or password_file, not both".into(),
                    ));
                }
                (Some(v), None) => Some(SecretSource::Env(v.clone())),
                (None, Some(f)) => Some(SecretSource::File(base.join(f))),
                (None, None) => None,
            };
            Some(EmailSettings {
                host: e.host.get_ref().trim().to_string(),
                port: e.port.unwrap_or(match security {
                    EmailSecurity::Tls => 465,
                    EmailSecurity::StartTls => 587,
                    EmailSecurity::Plain => 25,
                }),
                security,
                from: e.from.clone(),
                to: e.to.clone(),
                username: e.username.clone(),
                password,
                timeout: duration(&e.timeout, Duration::from_secs(30))?,
            })
        }
    };
    let webhook = match &d.webhook {
        None => None,
        Some(w) => {
            let url = Url::parse(w.url.get_ref())
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https"))
                .ok_or_else(|| {
                    err(
                        Some(w.url.span()),
                        format!(
                            "digest.webhook.url: invalid http(s) URL {:?}",
                            w.url.get_ref()
                        ),
                    )
                })?;
            Some(WebhookSettings {
                url,
                timeout: duration(&w.timeout, Duration::from_secs(30))?,
            })
        }
    };
    Ok(DigestSettings {
        schedule,
        dir,
        formats,
        email,
        webhook,
        retry: RetryPolicy {
            attempts: d.attempts.unwrap_or(3).max(1),
            base_delay: duration(&d.retry_delay, Duration::from_secs(30))?,
        },
        backlog: {
            let default = crate::outputs::digest::DEFAULT_BACKLOG
                .to_std()
                .unwrap_or(Duration::from_secs(7 * 86_400));
            let b = duration(&d.backlog, default)?;
            chrono::Duration::from_std(b)
                .ok()
                .filter(|b| *b <= chrono::Duration::days(100 * 366))
                .ok_or_else(|| {
                    err(
                        d.backlog.as_ref().map(|s| s.span()),
                        "digest.backlog is out of range (at most 36600d)".into(),
                    )
                })?
        },
        max_per_rule: match d.max_per_rule {
            Some(0) => None,
            Some(n) => Some(n),
            None => Some(crate::outputs::digest::DEFAULT_MAX_PER_RULE),
        },
    })
}

/// Where written files resolve when relative: the first path of systemd's `STATE_DIRECTORY`
/// (set by the unit's `StateDirectory=`) when it is absolute, else the config's folder.
fn output_base(base: &Path, state_directory: Option<&std::ffi::OsStr>) -> PathBuf {
    state_directory
        .and_then(|v| std::env::split_paths(v).next())
        .filter(|p| p.is_absolute())
        .unwrap_or_else(|| base.to_path_buf())
}

/// Why `dir` (or the nearest folder above it that exists, which newswatch would create it in)
/// cannot be written, or `None` when it can. Probes by creating and removing a file: mode bits
/// cannot tell a read-only mount (systemd's `ProtectSystem=strict`) from a writable folder.
pub fn unwritable(dir: &Path) -> Option<String> {
    let mut at = dir.to_path_buf();
    while !at.exists() {
        match at.parent() {
            Some(p) if !p.as_os_str().is_empty() => at = p.to_path_buf(),
            _ => {
                at = PathBuf::from(".");
                break;
            }
        }
    }
    if !at.is_dir() {
        return Some(format!("{} is not a directory", at.display()));
    }
    let probe = at.join(format!(".newswatch-check-{}", std::process::id()));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            None
        }
        Err(e) => Some(format!("{} is not writable: {e}", at.display())),
    }
}

impl Settings {
    /// Things that are allowed but probably mistakes, one line each, for `check`: no rules,
    /// rule queries that likely do not mean what they say.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.rules.is_empty() {
            out.push(
                "no [[rules]]: nothing will match, so nothing is stored or digested".to_string(),
            );
        }
        for r in &self.rules {
            for w in crate::pipeline::matcher::lint(&r.source) {
                out.push(format!("rule {:?}: {w}", r.name));
            }
        }
        out
    }

    /// The digest filters, order and caps this config asks for (`[digest]`, `[[rules]]`).
    pub fn digest_options(&self) -> crate::outputs::digest::DigestOptions {
        crate::outputs::digest::DigestOptions::from_settings(
            self.digest.as_ref(),
            self.rules.iter().map(|r| r.name.clone()).collect(),
        )
    }
}

/// Check a feed URL: http, https or file, with a host unless file. The message names the feed.
fn feed_url(name: &str, raw: &str) -> Result<Url, String> {
    let url =
        Url::parse(raw.trim()).map_err(|e| format!("feed {name:?}: invalid URL {raw:?}: {e}"))?;
    match url.scheme() {
        "http" | "https" | "file" => {}
        other => {
            return Err(format!(
                "feed {name:?}: unsupported URL scheme {other:?} (use http, https or file)"
            ));
        }
    }
    if url.scheme() != "file" && url.host_str().is_none_or(str::is_empty) {
        return Err(format!("feed {name:?}: URL has no host"));
    }
    Ok(url)
}

/// The feeds of one OPML file on their own, as `feeds_opml = [path]` would add them to a
/// config without `[[feeds]]` (names made unique, duplicate URLs dropped with a warning,
/// default HTTP settings). For `newswatch feeds import`.
pub fn load_opml(path: &Path) -> Result<Vec<FeedSettings>, ConfigError> {
    let file = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| ConfigError {
        origin: file.clone(),
        position: None,
        message: format!("cannot read OPML file: {e}"),
    })?;
    merge_opml(
        &bytes,
        &file,
        &mut HashMap::new(),
        &mut HashSet::new(),
        &FetchOptions::default(),
    )
}

/// The feeds of one OPML document (`bytes`, read from `file`) that are not in `first_seen`
/// yet, named uniquely against `taken`; both are updated.
fn merge_opml(
    bytes: &[u8],
    file: &str,
    first_seen: &mut HashMap<Url, (String, String)>,
    taken: &mut HashSet<String>,
    fetch: &FetchOptions,
) -> Result<Vec<FeedSettings>, ConfigError> {
    let text = String::from_utf8_lossy(bytes);
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let in_file = |position: Option<(usize, usize)>, message: String| ConfigError {
        origin: file.to_string(),
        position,
        message,
    };
    let found = crate::outputs::opml::parse(text).map_err(|e| in_file(e.position, e.message))?;
    let mut kept = Vec::new();
    let mut duplicates = Vec::new();
    for mut f in found {
        let (l, c) = f.position;
        // An OPML file is someone else's document: its names pass the same check as TOML
        // names (no control or bidi characters), by removing what the check refuses, so a
        // feed list exported from anywhere still loads and `feeds import` prints names the
        // loader accepts. Folder names (tags) get the same treatment.
        if f.name.chars().any(is_unsafe_in_name) {
            let cleaned = safe_name(&f.name);
            tracing::warn!(
                "{file}:{l}:{c}: feed name {:?} has control or bidi characters; using {cleaned:?}",
                f.name
            );
            f.name = cleaned;
        }
        for folder in &mut f.folders {
            *folder = safe_name(folder);
        }
        f.folders.retain(|t| !t.is_empty());
        let label = if f.name.is_empty() {
            &f.xml_url
        } else {
            &f.name
        };
        let url = feed_url(label, &f.xml_url).map_err(|m| in_file(Some(f.position), m))?;
        crate::outputs::opml::check_feed_url(&url)
            .map_err(|m| in_file(Some(f.position), format!("feed {label:?}: {m}")))?;
        let here = format!("{file}:{l}:{c}");
        if first_seen.contains_key(&url) {
            duplicates.push((url, here));
            continue;
        }
        first_seen.insert(url.clone(), (here, String::new()));
        kept.push((f, url));
    }
    let wanted: Vec<String> = kept.iter().map(|(f, _)| f.name.clone()).collect();
    let names = crate::outputs::opml::unique_names(&wanted, taken, |i| {
        kept.get(i)
            .and_then(|(_, u)| u.host_str().map(str::to_string))
            .unwrap_or_else(|| "feed".to_string())
    });
    let mut out = Vec::with_capacity(kept.len());
    for ((f, url), name) in kept.into_iter().zip(names) {
        if let Some(entry) = first_seen.get_mut(&url) {
            entry.1 = name.clone();
        }
        out.push(FeedSettings {
            name,
            url,
            schedule: None,
            fetch: fetch.clone(),
            tags: f.folders,
        });
    }
    // Reported once names are known (the first place may be in this same file).
    for (url, here) in duplicates {
        if let Some((first, name)) = first_seen.get(&url) {
            tracing::warn!(
                "feed URL {url} is configured twice, at {first} and at {here}; \
                 polling it once, as feed {name:?}"
            );
        }
    }
    Ok(out)
}

/// The feeds of every `feeds_opml` file, in order, after the TOML ones (`toml_feeds`).
///
/// Folder paths become tags; names come from `title` else `text` (else the URL's host) and are
/// made unique across the whole config with `-2`, `-3`, …. A URL configured earlier (in the
/// TOML, or an earlier outline or file) is polled once: the later one is dropped with a warning
/// naming both places. Errors point into the OPML file (origin = its path).
fn opml_feeds(
    raw: &RawConfig,
    toml_feeds: &[FeedSettings],
    url_at: &[usize],
    fetch: &FetchOptions,
    origin: &str,
    lines: &LineIndex<'_>,
    base: &Path,
) -> Result<Vec<FeedSettings>, ConfigError> {
    let mut out = Vec::new();
    if raw.feeds_opml.is_empty() {
        return Ok(out);
    }
    // URL → (where it was first configured, the name it is polled as).
    let mut first_seen: HashMap<Url, (String, String)> = HashMap::new();
    for (f, &at) in toml_feeds.iter().zip(url_at) {
        let (l, c) = lines.position(at);
        first_seen
            .entry(f.url.clone())
            .or_insert_with(|| (format!("{origin}:{l}:{c}"), f.name.clone()));
    }
    let mut taken: HashSet<String> = toml_feeds.iter().map(|f| f.name.clone()).collect();
    for entry in &raw.feeds_opml {
        let rel = entry.get_ref().trim();
        let at_key = |message: String| ConfigError {
            origin: origin.to_string(),
            position: Some(lines.position(entry.span().start)),
            message,
        };
        if rel.is_empty() {
            return Err(at_key("feeds_opml entry is empty".into()));
        }
        let path = base.join(rel);
        let bytes = std::fs::read(&path)
            .map_err(|e| at_key(format!("cannot read OPML file {}: {e}", path.display())))?;
        out.extend(merge_opml(
            &bytes,
            &path.display().to_string(),
            &mut first_seen,
            &mut taken,
            fetch,
        )?);
    }
    Ok(out)
}

fn sorted_headers(h: &HashMap<String, String>) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = h.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    v.sort();
    v
}

/// Byte offset in the file of the query's `column`-th character (1-based), assuming a
/// single-line string literal without escapes; falls back to the literal's start.
fn query_offset(text: &str, span: std::ops::Range<usize>, column: usize) -> usize {
    let Some(literal) = text.get(span.clone()) else {
        return span.start;
    };
    let quote_len = if literal.starts_with("'''") || literal.starts_with("\"\"\"") {
        3
    } else {
        1
    };
    if literal.contains('\\') || literal.contains('\n') {
        return span.start;
    }
    let inner_start = span.start + quote_len;
    let inner = text.get(inner_start..span.end).unwrap_or("");
    let skip = column.saturating_sub(1);
    inner
        .char_indices()
        .nth(skip)
        .map(|(i, _)| inner_start + i)
        .unwrap_or(span.start)
}

/// Characters a feed or rule name may not hold: names are printed in logs, tables and digests,
/// where control characters (ANSI escapes, CR, BEL) and bidi overrides could spoof output.
/// `name` without the characters [`is_unsafe_in_name`] refuses, whitespace runs folded.
fn safe_name(name: &str) -> String {
    let kept: String = name.chars().filter(|&c| !is_unsafe_in_name(c)).collect();
    kept.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn is_unsafe_in_name(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}')
}

/// Byte offset → 1-based (line, column in characters).
struct LineIndex<'a> {
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    fn new(text: &'a str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { text, starts }
    }

    fn position(&self, offset: usize) -> (usize, usize) {
        let line = self.starts.partition_point(|&s| s <= offset).max(1);
        let start = self.starts[line - 1];
        let col = self
            .text
            .get(start..offset.min(self.text.len()))
            .map(|s| s.chars().count())
            .unwrap_or(0);
        (line, col + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Settings, ConfigError> {
        load_str(text, Some(Path::new("test.toml")), Path::new("/base"))
    }

    #[test]
    fn cluster_lease_and_worker_have_defaults_and_are_checked() {
        let d = load("").unwrap().cluster;
        assert_eq!(d.lease, DEFAULT_LEASE);
        assert!(d.worker.is_none());
        let id = d.worker_id();
        assert!(id.ends_with(&format!(":{}", std::process::id())), "{id}");
        let c = load("[cluster]\nlease = \"3s\"\nworker = \" poller-a \"\n")
            .unwrap()
            .cluster;
        assert_eq!(c.lease, Duration::from_secs(3));
        assert_eq!(c.worker_id(), "poller-a");
        let e = load("[cluster]\nlease = \"500ms\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("test.toml:2:9: cluster.lease") && e.contains("shorter than 1s"),
            "{e}"
        );
        let e = load("[cluster]\nworker = \"\"\n").unwrap_err().to_string();
        assert!(e.contains("cluster.worker"), "{e}");
        let e = load("[cluster]\nleases = \"2m\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field"), "{e}");
    }

    #[test]
    fn alerts_are_checked_with_positions_and_reasons() {
        use crate::outputs::alerts::Destination;
        let rule = "[[rules]]\nname = \"nca\"\nquery = 'NCA'\n";
        let ok = load(&format!(
            "{rule}[[alerts]]\nname = \"desk\"\nrules = [\"nca\"]\nntfy = \"https://ntfy.sh/desk\"\nupdate_at = [10, 3]\nquiet_hours = \"22:00-07:00\"\nmin_interval = \"10m\"\nmax_per_hour = 6\n"
        ))
        .unwrap();
        let a = &ok.alerts[0];
        assert_eq!(a.update_at, [3, 10]);
        assert_eq!(a.min_interval, Some(Duration::from_secs(600)));
        assert_eq!(
            a.give_up_after,
            crate::outputs::alerts::DEFAULT_GIVE_UP_AFTER
        );
        assert!(matches!(
            a.destination,
            Destination::Ntfy { priority: 3, .. }
        ));
        let bad = |body: &str, want: &str| {
            let e = load(&format!("{rule}[[alerts]]\nname = \"desk\"\n{body}")).unwrap_err();
            assert!(e.to_string().contains(want), "{e} (wanted {want:?})");
            assert!(e.position.is_some(), "{e}: no position");
        };
        bad("", "no destination");
        bad(
            "webhook = \"https://a.example/\"\nslack = \"https://b.example/\"",
            "give one destination",
        );
        bad("webhook = \"ftp://a.example/\"", "invalid http(s) URL");
        bad(
            "webhook = \"https://a/\"\nrules = [\"nope\"]",
            "no rule named \"nope\"",
        );
        bad("email = [\"a@example.org\"]", "[digest.email]");
        bad("command = []", "command is empty");
        bad(
            "webhook = \"https://a/\"\nquiet_hours = \"late\"",
            "quiet_hours must be",
        );
        bad("webhook = \"https://a/\"\nupdate_at = [1]", "2 or more");
        bad("webhook = \"https://a/\"\nmax_per_hour = 0", "at least 1");
        bad(
            "slack = \"https://a/\"\nsecret_env = \"S\"",
            "signs webhooks only",
        );
        bad("ntfy = \"https://ntfy.sh/\"", "needs a topic");
        bad("webhook = \"https://a/\"\nfoo = 1", "unknown field");
    }

    #[test]
    fn written_paths_resolve_in_the_systemd_state_directory() {
        let base = Path::new("/etc/newswatch");
        let state = std::ffi::OsStr::new("/var/lib/newswatch:/var/lib/other");
        assert_eq!(
            output_base(base, Some(state)),
            Path::new("/var/lib/newswatch")
        );
        assert_eq!(output_base(base, None), base);
        // Relative or empty values are not trusted.
        assert_eq!(output_base(base, Some(std::ffi::OsStr::new("rel"))), base);
        assert_eq!(output_base(base, Some(std::ffi::OsStr::new(""))), base);
    }

    #[test]
    fn digest_backlog_and_max_per_rule_are_read_and_range_checked() {
        let d = load("[digest]\nbacklog = \"3d\"\nmax_per_rule = 0\n")
            .unwrap()
            .digest
            .unwrap();
        assert_eq!(d.backlog, chrono::Duration::days(3));
        assert_eq!(d.max_per_rule, None);
        let d = load("[digest]\n").unwrap().digest.unwrap();
        assert_eq!(d.backlog, crate::outputs::digest::DEFAULT_BACKLOG);
        assert_eq!(d.max_per_rule, Some(50));
        let e = load("[digest]\nbacklog = \"999999999d\"\n").unwrap_err();
        assert!(
            e.to_string()
                .contains("2:11: digest.backlog is out of range"),
            "{e}"
        );
    }

    #[test]
    fn built_in_default_config_is_valid() {
        let s = load_str(DEFAULT_CONFIG, None, Path::new("/data")).unwrap();
        assert!(s.feeds.len() >= 8, "default config lists real feeds");
        let names: Vec<_> = s.rules.iter().map(|r| r.name.as_str()).collect();
        for want in ["joc", "nca", "gchq", "ipb", "darkweb"] {
            assert!(
                names.contains(&want),
                "default rule {want} missing: {names:?}"
            );
        }
        assert_eq!(s.database, Path::new("/data/newswatch.db"));
    }

    #[test]
    fn digest_section_parses_with_defaults_and_rejects_mistakes() {
        let s = load(
            "[digest]\nformats = [\"html\", \"json\"]\n[digest.email]\nhost = \"smtp.example\"\nfrom = \"a@x\"\nto = [\"b@x\"]\npassword_env = \"PW\"\n[digest.webhook]\nurl = \"https://hook.example/x\"\n",
        )
        .unwrap();
        let d = s.digest.unwrap();
        assert_eq!(d.schedule, DEFAULT_DIGEST_SCHEDULE);
        assert_eq!(d.dir, Path::new("/base/digests"));
        assert_eq!(d.formats.len(), 2);
        let email = d.email.unwrap();
        assert_eq!(email.port, 587);
        assert_eq!(
            email.password,
            Some(crate::outputs::digest::SecretSource::Env("PW".into()))
        );
        assert!(load("").unwrap().digest.is_none());
        let e = load("[digest]\nformats = [\"pdf\"]\n").unwrap_err();
        assert_eq!(e.position, Some((2, 12)), "{e}");
        let e = load("[digest]\nschedule = \"7am\"\n").unwrap_err();
        assert!(e.message.contains("digest.schedule"), "{e}");
        let e = load("[digest.webhook]\nurl = \"ftp://x\"\n").unwrap_err();
        assert!(e.message.contains("digest.webhook.url"), "{e}");
    }

    #[test]
    fn relative_storage_path_resolves_against_config_folder() {
        let s = load("[storage]\npath = \"db/x.db\"\n").unwrap();
        assert_eq!(s.database, Path::new("/base/db/x.db"));
    }

    #[test]
    fn unknown_key_names_line_and_column() {
        let e = load("[[feeds]]\nname = \"a\"\nurl = \"http://x/\"\nurll = \"y\"\n").unwrap_err();
        assert_eq!(e.position, Some((4, 1)), "{e}");
        assert!(e.message.contains("unknown field `urll`"), "{e}");
        assert!(e.to_string().starts_with("test.toml:4:1: "), "{e}");
        assert!(!e.to_string().contains('\n'));
    }

    #[test]
    fn duplicate_names_are_rejected() {
        let e = load("[[feeds]]\nname = \"a\"\nurl = \"http://x/\"\n[[feeds]]\nname = \"a\"\nurl = \"http://y/\"\n")
            .unwrap_err();
        assert_eq!(e.position, Some((5, 8)));
        assert!(
            e.message
                .contains("duplicate feed name \"a\" (first defined on line 2)"),
            "{e}"
        );
        let e = load(
            "[[rules]]\nname = \"r\"\nquery = \"x\"\n[[rules]]\nname = \"r\"\nquery = \"y\"\n",
        )
        .unwrap_err();
        assert!(e.message.contains("duplicate rule name"), "{e}");
    }

    #[test]
    fn bad_urls_are_rejected() {
        let e = load("[[feeds]]\nname = \"a\"\nurl = \"not a url\"\n").unwrap_err();
        assert_eq!(e.position, Some((3, 7)));
        assert!(e.message.contains("invalid URL"), "{e}");
        let e = load("[[feeds]]\nname = \"a\"\nurl = \"ftp://x/feed\"\n").unwrap_err();
        assert!(e.message.contains("unsupported URL scheme \"ftp\""), "{e}");
    }

    #[test]
    fn feeds_parsed_section_by_section_match_the_whole_file_parse() {
        let text = "[http]\ntimeout = \"9s\"\n\n[[feeds]] # one\nname = \"a\"\nurl = \"http://a.example/\"\n\n  [[feeds]]\nname = \"é\"\nurl = \"http://b.example/\"\nheaders = { X-A = \"1\" }\ntimeout = \"3s\"\n[[rules]]\nname = \"r\"\nquery = 'x'\n";
        assert!(split::feed_sections(text).is_some());
        let fast = load(text).unwrap();
        let whole = toml::from_str::<RawConfig>(text).unwrap();
        assert_eq!(whole.feeds.len(), 2);
        let names: Vec<_> = fast.feeds.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["a", "é"]);
        assert_eq!(fast.feeds[0].fetch.timeout, Duration::from_secs(9));
        assert_eq!(fast.feeds[1].fetch.timeout, Duration::from_secs(3));
        assert_eq!(fast.feeds[1].fetch.headers.len(), 1);
        assert_eq!(fast.rules.len(), 1);
        // Positions of stage-two errors in a later section are those of the whole file.
        let e = load(&text.replace("http://b.example/", "not a url")).unwrap_err();
        assert_eq!(e.position, Some((10, 7)), "{e}");
        let e = load(&format!(
            "{text}[[feeds]]\nname = \"a\"\nurl = \"http://c/\"\n"
        ))
        .unwrap_err();
        assert_eq!(e.position, Some((17, 8)), "{e}");
        assert!(e.message.contains("first defined on line 5"), "{e}");
        // TOML mistakes in a section come from the whole-file parse, as before.
        let e = load(&text.replace("timeout = \"3s\"", "timeout = \"3s\"\nnmae = 1")).unwrap_err();
        assert_eq!(e.position, Some((13, 1)), "{e}");
        assert!(e.message.contains("nmae"), "{e}");
        // A sub-table of the last feed: the whole-file parse (which accepts it) is used.
        let sub = load(
            &text
                .replace("headers = { X-A = \"1\" }\n", "")
                .replace("[[rules]]", "[feeds.headers]\nX-B = \"2\"\n[[rules]]"),
        )
        .unwrap();
        assert_eq!(
            sub.feeds[1].fetch.headers,
            [("X-B".to_string(), "2".to_string())]
        );
        // … and its mistakes are reported by it (here: the header table given twice).
        let e = load(&text.replace("[[rules]]", "[feeds.headers]\nX-B = \"2\"\n[[rules]]"))
            .unwrap_err();
        assert_eq!(
            (e.position, e.message.as_str()),
            (Some((13, 8)), "duplicate key")
        );
        // Feeds both inline and as sections: refused, as the whole-file parse does.
        assert!(
            load(&format!(
                "feeds = [{{ name = \"z\", url = \"http://z/\" }}]\n{text}"
            ))
            .is_err()
        );
    }

    #[test]
    fn bad_and_empty_queries_point_into_the_query() {
        let e = load("[[rules]]\nname = \"r\"\nquery = '\"unclosed'\n").unwrap_err();
        assert!(e.message.starts_with("rule \"r\": "), "{e}");
        assert_eq!(e.position.map(|p| p.0), Some(3));
        let e = load("[[rules]]\nname = \"r\"\nquery = \"   \"\n").unwrap_err();
        assert!(e.message.starts_with("rule \"r\": "), "{e}");
    }

    #[test]
    fn bad_schedule_and_timezone_are_rejected() {
        let e = load("[schedule]\npoll = \"every day\"\n").unwrap_err();
        assert_eq!(e.position, Some((2, 8)));
        let e = load("[schedule]\ntimezone = \"Mars/Olympus\"\n").unwrap_err();
        assert!(e.message.contains("unknown time zone"), "{e}");
    }

    #[test]
    fn toml_syntax_error_is_one_line_with_position() {
        let e = load("[[feeds]\nname = 1\n").unwrap_err();
        assert!(e.position.is_some());
        assert!(!e.to_string().contains('\n'), "{e}");
    }

    #[test]
    fn per_feed_http_settings_override_defaults() {
        let s = load(
            "[http]\ntimeout = \"20s\"\nheaders = { X-A = \"1\" }\n[[feeds]]\nname = \"a\"\nurl = \"http://x/\"\ntimeout = \"5s\"\nproxy = \"socks5h://127.0.0.1:9050\"\nheaders = { X-B = \"2\" }\n[[feeds]]\nname = \"b\"\nurl = \"http://y/\"\n",
        )
        .unwrap();
        assert_eq!(s.feeds[0].fetch.timeout, Duration::from_secs(5));
        assert_eq!(
            s.feeds[0].fetch.proxy.as_deref(),
            Some("socks5h://127.0.0.1:9050")
        );
        assert_eq!(s.feeds[0].fetch.headers.len(), 2);
        assert_eq!(s.feeds[1].fetch.timeout, Duration::from_secs(20));
        assert_eq!(
            s.feeds[1].fetch.headers,
            vec![("X-A".to_string(), "1".to_string())]
        );
    }
}
