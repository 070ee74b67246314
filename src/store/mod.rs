//! Store: everything newswatch remembers, in one SQLite file.
//!
//! Set-up lives in one place ([`Store::open`]: pragmas, then the ordered migrations in
//! `migrations/sqlite/`; the PostgreSQL schema and the copy between backends are in
//! [`postgres`] and [`copy`]). Each feed's results are written in one transaction ([`Store::commit_feed`]),
//! so a crash or kill never leaves half a feed. `rusqlite::Connection` is not `Sync`: one
//! `Store` is owned by one writer; readers open their own.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{Connection, OptionalExtension, params};

pub mod alerts;
pub mod archive;
pub mod backend;
pub mod copy;
pub mod postgres;
pub mod review;
pub mod sql;
pub mod stories;
pub mod web;

pub use backend::{EntryReader, PollStore};

use crate::pipeline::dedup::Identity;
use crate::pipeline::fetch::Validators;
use crate::pipeline::matcher::RuleMatch;

/// How long a statement waits for another connection's write lock before failing.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The schema, as ordered migrations. Append only.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/sqlite/0001_initial.sql"),
    include_str!("../../migrations/sqlite/0002_digest.sql"),
    include_str!("../../migrations/sqlite/0003_story_key.sql"),
    include_str!("../../migrations/sqlite/0004_item_copies.sql"),
    include_str!("../../migrations/sqlite/0005_archive.sql"),
    include_str!("../../migrations/sqlite/0006_stories.sql"),
    include_str!("../../migrations/sqlite/0007_effective_time_index.sql"),
    include_str!("../../migrations/sqlite/0008_alerts.sql"),
    include_str!("../../migrations/sqlite/0009_leases.sql"),
    include_str!("../../migrations/sqlite/0010_archive_pending.sql"),
];

/// Why the database could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database file (or its folder) could not be created or opened.
    #[error("cannot open database {path}: {reason}")]
    Open { path: PathBuf, reason: String },
    /// Applying the schema migrations failed.
    #[error("cannot migrate database {path}: {reason}")]
    Migrate { path: PathBuf, reason: String },
    /// Any SQLite error while reading or writing.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A grouped write ([`Store::write_feeds`]) failed as a whole: the reason, for each feed
    /// of the group.
    #[error("database error: {0}")]
    Write(String),
    /// A row holds data this version cannot read.
    #[error("database holds unreadable data: {0}")]
    Corrupt(String),
    /// The thing asked for is not in the database (a command's argument names it).
    #[error("{0}")]
    NotFound(String),
    /// The archive's full-text index cannot be read or written.
    #[error(
        "the archive's full-text index (archive_fts) is damaged or unreadable ({0}): run `newswatch archive rebuild`"
    )]
    Index(String),
    /// A PostgreSQL server could not be reached or refused the connection (`target` is
    /// `user@host:port/db`, never the password).
    #[error("cannot connect to PostgreSQL {target}: {reason}")]
    PgConnect { target: String, reason: String },
    /// Applying the PostgreSQL schema migrations failed.
    #[error("cannot migrate PostgreSQL database {target}: {reason}")]
    PgMigrate { target: String, reason: String },
    /// Any PostgreSQL error while reading or writing.
    #[error("PostgreSQL {target}: {reason}")]
    Postgres { target: String, reason: String },
    /// Copying between databases (`newswatch migrate`) failed.
    #[error("cannot copy: {0}")]
    Copy(String),
    /// The copy's target already holds data.
    #[error("{0}")]
    NotEmpty(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// RFC 3339 UTC with milliseconds: sorts lexicographically in time order.
pub fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Parse a timestamp written by [`ts`] (or any RFC 3339 text).
pub fn parse_ts(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// What the store remembers about a feed between polls.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeedState {
    pub id: i64,
    pub name: String,
    pub url: String,
    pub effective_url: Option<String>,
    pub validators: Validators,
    pub consecutive_failures: u32,
    pub next_due_at: Option<DateTime<Utc>>,
}

const FEED_STATE_SELECT: &str = "SELECT id, name, url, effective_url, etag, last_modified, \
     consecutive_failures, next_due_at FROM feeds";

fn feed_state_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<FeedState> {
    Ok(FeedState {
        id: r.get(0)?,
        name: r.get(1)?,
        url: r.get(2)?,
        effective_url: r.get(3)?,
        validators: Validators {
            etag: r.get(4)?,
            last_modified: r.get(5)?,
        },
        consecutive_failures: r.get(6)?,
        next_due_at: r.get::<_, Option<String>>(7)?.as_deref().and_then(parse_ts),
    })
}

/// What a reader sees of one entry, as stored (text already normalised to plain text).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EntryText {
    pub guid: Option<String>,
    pub link: Option<String>,
    pub title: String,
    pub summary: String,
    pub content: String,
    pub authors: Vec<String>,
    pub published: Option<DateTime<Utc>>,
}

/// Why an entry matched, ready to store.
#[derive(Debug, Clone, PartialEq)]
pub struct MatchedEntry {
    pub rules: Vec<RuleMatch>,
    pub snippet: String,
    /// How good the entry's link is as the item's link ([`crate::pipeline::dedup::link_rank`]).
    pub link_rank: u8,
}

/// One new or changed entry of a fetched document.
#[derive(Debug, Clone, PartialEq)]
pub struct EntryRecord {
    pub identity: Identity,
    pub fingerprint: [u8; 16],
    /// The entry's text: stored in the archive, and in its item when it matched.
    pub text: EntryText,
    /// `None` when it matched no rule.
    pub matched: Option<MatchedEntry>,
}

/// Facts of a successful fetch to remember on the feed.
#[derive(Debug, Clone, Default)]
pub struct FetchFacts {
    pub http_status: Option<u16>,
    pub validators: Validators,
    pub effective_url: Option<String>,
    pub title: Option<String>,
    pub next_due_at: Option<DateTime<Utc>>,
}

/// What one feed's commit changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitCounts {
    /// Entries never seen before in this feed.
    pub new_entries: usize,
    /// Entries seen before whose text changed.
    pub changed_entries: usize,
    /// Items stored for the first time (new matches).
    pub new_matches: usize,
    /// Existing items that gained a feed, a rule or new text.
    pub updated_matches: usize,
}

/// Filters for reading matches back. Several rules (or feeds) are OR-ed: an item of any of
/// them passes; rules and feeds together are AND-ed.
#[derive(Debug, Clone, Default)]
pub struct MatchFilter {
    /// Items that matched any of these rules (empty: any rule).
    pub rules: Vec<String>,
    /// Items seen in any of these feeds (empty: any feed).
    pub feeds: Vec<String>,
    /// Only items whose effective published time ([`EFFECTIVE_TIME_SQL`]) is at or after this.
    pub published_since: Option<DateTime<Utc>>,
    /// Only items first seen at or after this.
    pub first_seen_since: Option<DateTime<Utc>>,
    pub statuses: Vec<String>,
    pub ids: Vec<i64>,
    /// `None`: no limit.
    pub limit: Option<usize>,
}

/// Published times earlier than this are not believed for ordering and windows (feeds that
/// send 1970-01-01 or year 1 for "unknown").
pub const EARLIEST_BELIEVED: &str = "1990-01-01";

/// How far after its first-seen time a published time may lie and still be believed.
pub const FUTURE_SLACK: chrono::Duration = chrono::Duration::days(1);

/// The time an item is ordered and windowed by, in SQL over `items i`: its published time,
/// unless that is missing, before [`EARLIEST_BELIEVED`] or more than [`FUTURE_SLACK`] after it
/// was first seen (a date far in the future would pin it to the top of "newest first"
/// forever), in which case its first-seen time. The published time is still shown as given.
/// Text comparison is time order for `ts` text; `+99999-…` and negative years sort before
/// "1990" and so fall back too. [`effective_time`] is the same rule in Rust.
pub const EFFECTIVE_TIME_SQL: &str =
    "(CASE WHEN i.published_at IS NULL OR i.published_at < '1990-01-01'
      OR i.published_at > strftime('%Y-%m-%dT%H:%M:%fZ', i.first_seen_at, '+1 day')
    THEN i.first_seen_at ELSE i.published_at END)";

/// [`EFFECTIVE_TIME_SQL`] for rows already read: the stored text to order `published` /
/// `first_seen` by.
pub fn effective_time<'a>(published: Option<&'a str>, first_seen: &'a str) -> &'a str {
    let believed = |p: &str| -> bool {
        let (Some(t), Some(seen)) = (parse_ts(p), parse_ts(first_seen)) else {
            return false;
        };
        p >= EARLIEST_BELIEVED && !p.starts_with(['+', '-']) && t <= seen + FUTURE_SLACK
    };
    match published {
        Some(p) if believed(p) => p,
        _ => first_seen,
    }
}

/// A stored match as read back.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MatchRow {
    pub id: i64,
    pub title: String,
    pub link: Option<String>,
    pub published: Option<String>,
    pub first_seen: String,
    pub feeds: Vec<String>,
    pub rules: Vec<String>,
    pub terms: Vec<String>,
    pub snippet: String,
    pub status: String,
    /// The story this report belongs to (shared by all reports of one event), and how many
    /// reports it has.
    pub story: i64,
    pub story_size: i64,
    /// When the story last changed (a report joined, left or was edited).
    #[serde(skip)]
    pub story_updated: String,
    #[serde(skip)]
    pub summary: String,
    #[serde(skip)]
    pub content: String,
}

/// [`EFFECTIVE_TIME_SQL`] in `d`'s SQL.
pub fn effective_time_sql(d: sql::Dialect) -> &'static str {
    static PG: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        EFFECTIVE_TIME_SQL.replace(
            "strftime('%Y-%m-%dT%H:%M:%fZ', i.first_seen_at, '+1 day')",
            &sql::Dialect::Postgres.plus_day("i.first_seen_at"),
        )
    });
    match d {
        sql::Dialect::Sqlite => EFFECTIVE_TIME_SQL,
        sql::Dialect::Postgres => &PG,
    }
}

/// The columns of a [`MatchRow`] (read by [`match_row`]), from `items i`, in `d`'s SQL;
/// column 15 is the row's [`EFFECTIVE_TIME_SQL`] (the sort key), for keyset pages.
pub(crate) fn match_select(d: sql::Dialect) -> &'static str {
    fn build(d: sql::Dialect) -> String {
        format!(
            "SELECT i.id, i.title, i.link, i.published_at, i.first_seen_at, i.snippet, i.status,
               i.summary, i.content,
               {feeds},
               {rules},
               {terms},
               COALESCE(i.story_id, 0), (SELECT count(*) FROM items o WHERE o.story_id = i.story_id),
               COALESCE((SELECT st.updated_at FROM stories st WHERE st.id = i.story_id), i.updated_at),
               {eff}
             FROM items i",
            feeds = d.json_list(
                "name",
                "SELECT DISTINCT f.name AS name FROM sightings s
                  JOIN feeds f ON f.id = s.feed_id WHERE s.item_id = i.id",
                "name"
            ),
            rules = d.json_list(
                "rule",
                "SELECT rule FROM item_rules WHERE item_id = i.id",
                "rule"
            ),
            terms = d.item_terms("i.id"),
            eff = effective_time_sql(d),
        )
    }
    static SQLITE: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| build(sql::Dialect::Sqlite));
    static PG: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| build(sql::Dialect::Postgres));
    match d {
        sql::Dialect::Sqlite => &SQLITE,
        sql::Dialect::Postgres => &PG,
    }
}

/// A [`match_select`] row whose JSON lists are still text ([`RawMatch::finish`] parses them).
pub(crate) struct RawMatch {
    pub row: MatchRow,
    /// Column 15: the effective time.
    pub time: String,
    feeds: String,
    rules: String,
    terms: Option<String>,
}

/// Read one [`match_select`] row.
pub(crate) fn match_row(r: &sql::Row) -> Result<RawMatch> {
    Ok(RawMatch {
        row: MatchRow {
            id: r.get(0)?,
            title: r.get(1)?,
            // Only http(s) links leave newswatch, whatever a feed gave.
            link: crate::text::outgoing_link(r.get(2)?),
            published: r.get(3)?,
            first_seen: r.get(4)?,
            snippet: r.get(5)?,
            status: r.get(6)?,
            summary: r.get(7)?,
            content: r.get(8)?,
            feeds: Vec::new(),
            rules: Vec::new(),
            terms: Vec::new(),
            story: r.get(12)?,
            story_size: r.get(13)?,
            story_updated: r.get(14)?,
        },
        feeds: r.get(9)?,
        rules: r.get(10)?,
        terms: r.get(11)?,
        time: r.get(15)?,
    })
}

impl RawMatch {
    /// The row with its feeds, rules and terms parsed.
    pub(crate) fn finish(self) -> Result<MatchRow> {
        let RawMatch {
            mut row,
            feeds,
            rules,
            terms,
            ..
        } = self;
        let id = row.id;
        let json = |s: &str| -> Result<Vec<String>> {
            serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("item {id}: {e}")))
        };
        row.feeds = json(&feeds)?;
        row.rules = json(&rules)?;
        row.terms = json(terms.as_deref().unwrap_or("[]"))?;
        Ok(row)
    }
}

/// A feed's health and counters, as `newswatch feeds` shows them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FeedStatus {
    pub name: String,
    pub url: String,
    /// Where a permanent redirect pointed; polled instead of `url`.
    pub effective_url: Option<String>,
    pub title: Option<String>,
    pub last_fetch_at: Option<String>,
    pub last_success_at: Option<String>,
    pub last_status: Option<String>,
    pub last_http_status: Option<i64>,
    pub consecutive_failures: i64,
    pub next_due_at: Option<String>,
    /// Distinct entries ever seen.
    pub items: i64,
    /// Stored matches this feed carried.
    pub matches: i64,
    pub last_error: Option<String>,
    /// False once the feed was removed from the config.
    pub in_config: bool,
    /// The worker that last polled it (PostgreSQL workers, `[cluster] worker`; `None` on
    /// SQLite, which has one poller).
    pub last_worker: Option<String>,
}

/// Bring the schema to the latest version, recorded in `PRAGMA user_version`.
///
/// The version is read inside an IMMEDIATE transaction, so two processes opening a new
/// database at once (a daemon starting while `query` runs) cannot both apply a migration.
fn migrate(conn: &mut Connection) -> std::result::Result<(), String> {
    let latest = MIGRATIONS.len() as i64;
    let version =
        |c: &Connection| c.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0));
    // Fast path for readers of an up-to-date database: no write lock.
    if version(conn).map_err(|e| e.to_string())? == latest {
        return Ok(());
    }
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(|e| e.to_string())?;
    let current = version(&tx).map_err(|e| e.to_string())?;
    if current > latest {
        return Err(format!(
            "schema version {current} is newer than this newswatch knows ({latest}); upgrade newswatch"
        ));
    }
    for (i, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(current).unwrap_or(0))
    {
        tx.execute_batch(sql)
            .map_err(|e| format!("migration {}: {e}", i + 1))?;
    }
    tx.pragma_update(None, "user_version", latest)
        .map_err(|e| e.to_string())?;
    tx.commit().map_err(|e| e.to_string())
}

/// The database.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    path: PathBuf,
    /// Keep every polled entry's text in the archive ([`Store::set_archive`]).
    archive: bool,
    /// The story window and document frequencies ([`stories`]).
    stories: stories::StoryState,
    /// What commits enqueue in the alert outbox ([`Store::set_alerts`]).
    alerts: alerts::AlertPlan,
}

/// A feed's known entries: identity hash → fingerprint ([`Store::known_entries`]).
pub type KnownEntries = HashMap<[u8; 16], [u8; 16]>;

/// A read-only connection to the same database as a [`Store`] ([`Store::reader`]).
///
/// The database is in WAL mode, so a reader sees the last committed state while the
/// [`Store`]'s connection writes: a poll's parsing threads look up what a feed has already
/// seen without waiting for the writer to finish other feeds' transactions.
#[derive(Debug)]
pub struct Reader {
    conn: Connection,
}

impl Reader {
    /// As [`Store::known_entries`], from the last committed state.
    pub fn known_entries(&self, feed_id: i64) -> Result<KnownEntries> {
        known_entries(&self.conn, feed_id)
    }
}

/// Identity hash → fingerprint of every entry ever seen in feed `feed_id`.
fn known_entries(conn: &Connection, feed_id: i64) -> Result<KnownEntries> {
    let mut stmt =
        conn.prepare_cached("SELECT entry_key, fingerprint FROM sightings WHERE feed_id = ?1")?;
    let rows = stmt.query_map([feed_id], |r| {
        Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Vec<u8>>(1)?))
    })?;
    let mut out = HashMap::new();
    for row in rows {
        let (k, f) = row?;
        let (Ok(k), Ok(f)) = (
            <[u8; 16]>::try_from(k.as_slice()),
            <[u8; 16]>::try_from(f.as_slice()),
        ) else {
            return Err(StoreError::Corrupt(format!(
                "sighting of feed {feed_id} has a malformed key"
            )));
        };
        out.insert(k, f);
    }
    Ok(out)
}

/// SQLITE_BUSY or SQLITE_LOCKED: another connection holds a lock.
fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

impl Store {
    /// Open (creating if needed) the database at `path`, set pragmas and apply migrations.
    pub fn open(path: &Path) -> Result<Store> {
        let open_err = |reason: String| StoreError::Open {
            path: path.to_path_buf(),
            reason,
        };
        // SQLite opens a temporary database for "": never a silent stand-in for a missing path.
        if path.as_os_str().is_empty() {
            return Err(open_err("no SQLite database file named".into()));
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| open_err(format!("cannot create {}: {e}", dir.display())))?;
        }
        let mut conn = Connection::open(path).map_err(|e| open_err(e.to_string()))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| open_err(e.to_string()))?;
        // WAL lets readers (query, feeds) work while a poll or the daemon writes.
        // Switching a new database to WAL needs an exclusive lock, and SQLite reports
        // SQLITE_BUSY at once (without the busy handler) when another connection is opening
        // the same file: retry for up to the busy timeout.
        let started = std::time::Instant::now();
        let mode: String = loop {
            match conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)) {
                Err(e) if is_busy(&e) && started.elapsed() < BUSY_TIMEOUT => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                other => break other.map_err(|e| open_err(e.to_string()))?,
            }
        };
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::debug!(mode, "database not in WAL mode");
        }
        conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")
            .map_err(|e| open_err(e.to_string()))?;
        migrate(&mut conn).map_err(|reason| StoreError::Migrate {
            path: path.to_path_buf(),
            reason,
        })?;
        Ok(Store {
            conn,
            path: path.to_path_buf(),
            archive: true,
            stories: Default::default(),
            alerts: alerts::AlertPlan::default(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Raw connection, for modules that own their own tables (digest state, locks).
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Make the feeds table agree with the config: add new feeds, update changed URLs
    /// (forgetting validators and redirects that belonged to the old URL), and mark feeds no
    /// longer configured. Matches and history are kept.
    /// `feeds` are the configured `(name, url)` pairs.
    pub fn sync_feeds<'a>(
        &mut self,
        feeds: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<()> {
        let feeds: Vec<(&str, &str)> = feeds.into_iter().collect();
        // Usually the table agrees already (every poll after the first): then nothing is
        // written. The upserts below would leave such rows as they are, yet still write every
        // page of the table to the WAL (~20% of a warm poll's start, and its checkpoint).
        if self.feeds_agree(&feeds)? {
            return Ok(());
        }
        let tx = self.conn.transaction()?;
        tx.execute("UPDATE feeds SET in_config = 0", [])?;
        for (name, url) in feeds {
            tx.execute(
                "INSERT INTO feeds (name, url, in_config) VALUES (?1, ?2, 1)
                 ON CONFLICT(name) DO UPDATE SET in_config = 1,
                   etag = CASE WHEN url = excluded.url THEN etag END,
                   last_modified = CASE WHEN url = excluded.url THEN last_modified END,
                   effective_url = CASE WHEN url = excluded.url THEN effective_url END,
                   next_due_at = CASE WHEN url = excluded.url THEN next_due_at END,
                   url = excluded.url",
                params![name, url],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The feeds table already says what [`Store::sync_feeds`] would make it say: every
    /// configured `(name, url)` is a row with that URL in the config, and no other row is.
    fn feeds_agree(&self, feeds: &[(&str, &str)]) -> Result<bool> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT name, url FROM feeds WHERE in_config = 1")?;
        let mut rows = stmt.query([])?;
        let mut stored: HashMap<String, String> = HashMap::new();
        while let Some(r) = rows.next()? {
            stored.insert(r.get(0)?, r.get(1)?);
        }
        // Names are unique in the config (checked when it is loaded); should one repeat, the
        // counts differ and the table is written as before.
        Ok(stored.len() == feeds.len()
            && feeds
                .iter()
                .all(|(name, url)| stored.get(*name).is_some_and(|u| u == url)))
    }

    /// The remembered state of feed `name`.
    pub fn feed_state(&self, name: &str) -> Result<Option<FeedState>> {
        self.conn
            .prepare_cached(&format!("{FEED_STATE_SELECT} WHERE name = ?1"))?
            .query_row([name], feed_state_row)
            .optional()
            .map_err(Into::into)
    }

    /// The remembered state of every feed, by name: one query where a cycle over all feeds
    /// would otherwise make one per feed.
    pub fn feed_states(&self) -> Result<HashMap<String, FeedState>> {
        let mut stmt = self.conn.prepare_cached(FEED_STATE_SELECT)?;
        let rows = stmt.query_map([], feed_state_row)?;
        let mut out = HashMap::new();
        for row in rows {
            let state = row?;
            out.insert(state.name.clone(), state);
        }
        Ok(out)
    }

    /// Identity hash → fingerprint of every entry ever seen in feed `feed_id`.
    pub fn known_entries(&self, feed_id: i64) -> Result<KnownEntries> {
        known_entries(&self.conn, feed_id)
    }

    /// A second connection to this database, for reads beside the writer ([`Reader`]).
    pub fn reader(&self) -> Result<Reader> {
        let conn = Connection::open(&self.path).map_err(|e| StoreError::Open {
            path: self.path.clone(),
            reason: e.to_string(),
        })?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // It only ever reads: say so to SQLite too.
        conn.execute_batch("PRAGMA query_only = ON;")?;
        Ok(Reader { conn })
    }

    /// Write one feed's fetch results atomically: new/changed entries, matches, feed state.
    pub fn commit_feed(
        &mut self,
        feed_id: i64,
        facts: &FetchFacts,
        entries: &[EntryRecord],
        now: DateTime<Utc>,
    ) -> Result<CommitCounts> {
        let archive = self.archive;
        let tx = self.conn.transaction()?;
        let counts = commit_one(&tx, archive, feed_id, facts, entries, now)?;
        tx.commit()?;
        Ok(counts)
    }

    /// Several feeds' results in one transaction: a feed whose writes fail is rolled back
    /// alone (its result is the error) and the others are kept. The same rows as one [`Store::commit_feed`] or [`Store::record_unchanged`] per
    /// feed, for one commit instead of many: each commit rewrites every B-tree page it touched
    /// into the WAL, so a cold poll's thousand small commits wrote the shared index pages a
    /// thousand times over. `Err` only when the transaction itself could not be begun or
    /// committed (then nothing of the batch was written).
    pub fn write_feeds(&mut self, batch: &[FeedWrite]) -> Result<Vec<Result<CommitCounts>>> {
        let archive = self.archive;
        // Optimistic: the whole group in one transaction, without a savepoint per feed (with a
        // savepoint open, SQLite copies every page a feed first touches into a statement
        // journal: ~6% of a cold poll's CPU). Writes almost never fail; when one does, the
        // group is rolled back and written again, one transaction per feed, so that the
        // failing feed is rolled back alone.
        {
            let tx = self.conn.transaction()?;
            let mut out = Vec::with_capacity(batch.len());
            for write in batch {
                match write_one(&tx, archive, write) {
                    Ok(counts) => out.push(Ok(counts)),
                    Err(e) if batch.len() == 1 => return Ok(vec![Err(e)]),
                    Err(_) => break,
                }
            }
            if out.len() == batch.len() {
                tx.commit()?;
                return Ok(out);
            }
            // Dropping `tx` rolls the group back.
        }
        Ok(batch
            .iter()
            .map(|write| {
                let tx = self.conn.transaction()?;
                let counts = write_one(&tx, archive, write)?;
                tx.commit()?;
                Ok(counts)
            })
            .collect())
    }

    /// Remember a 304 Not Modified.
    pub fn record_unchanged(
        &mut self,
        feed_id: i64,
        facts: &FetchFacts,
        now: DateTime<Utc>,
    ) -> Result<()> {
        unchanged_one(&self.conn, feed_id, facts, now)
    }

    /// Remember a failure; returns the new count of consecutive failures.
    pub fn record_failure(
        &mut self,
        feed_id: i64,
        reason: &str,
        http_status: Option<u16>,
        next_due_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<u32> {
        let n = self
            .conn
            .prepare_cached(
                "UPDATE feeds SET last_fetch_at = ?2, last_status = 'failed', last_http_status = ?3,
                   last_error = ?4, consecutive_failures = consecutive_failures + 1, next_due_at = ?5
                 WHERE id = ?1 RETURNING consecutive_failures",
            )?
            .query_row(params![feed_id, ts(now), http_status, reason, next_due_at.map(ts)], |r| r.get(0))?;
        Ok(n)
    }

    /// Every feed's status, configured ones first, by name.
    pub fn feed_statuses(&self) -> Result<Vec<FeedStatus>> {
        feed_statuses(&mut sql::Sqlite(&self.conn))
    }

    /// Set a feed's next due time (the daemon's scheduler).
    pub fn set_next_due(&mut self, feed_id: i64, at: DateTime<Utc>) -> Result<()> {
        self.conn
            .prepare_cached("UPDATE feeds SET next_due_at = ?2 WHERE id = ?1")?
            .execute(params![feed_id, ts(at)])?;
        Ok(())
    }

    /// How many stored matches pass `filter`, ignoring its limit.
    pub fn count_matches(&self, filter: &MatchFilter) -> Result<usize> {
        count_matches(&mut sql::Sqlite(&self.conn), filter)
    }

    /// Stored matches, newest first by [`EFFECTIVE_TIME_SQL`] (then by id).
    pub fn matches(&self, filter: &MatchFilter) -> Result<Vec<MatchRow>> {
        matches(&mut sql::Sqlite(&self.conn), filter)
    }
}

/// Every feed's status, configured ones first, by name (either backend).
pub fn feed_statuses(db: &mut dyn sql::Db) -> Result<Vec<FeedStatus>> {
    db.rows(
        "SELECT f.name, f.url, f.effective_url, f.title, f.last_fetch_at, f.last_success_at, f.last_status,
           f.last_http_status, f.consecutive_failures, f.next_due_at,
           (SELECT count(*) FROM sightings s WHERE s.feed_id = f.id),
           (SELECT count(DISTINCT s.item_id) FROM sightings s WHERE s.feed_id = f.id AND s.item_id IS NOT NULL),
           f.last_error, f.in_config, f.last_worker
         FROM feeds f ORDER BY f.in_config DESC, f.name",
        &[],
    )?
    .iter()
    .map(|r| {
        Ok(FeedStatus {
            name: r.get(0)?,
            url: r.get(1)?,
            effective_url: r.get(2)?,
            title: r.get(3)?,
            last_fetch_at: r.get(4)?,
            last_success_at: r.get(5)?,
            last_status: r.get(6)?,
            last_http_status: r.get(7)?,
            consecutive_failures: r.get(8)?,
            next_due_at: r.get(9)?,
            items: r.get(10)?,
            matches: r.get(11)?,
            last_error: r.get(12)?,
            in_config: r.get(13)?,
            last_worker: r.get(14)?,
        })
    })
    .collect()
}

/// How many stored matches pass `filter`, ignoring its limit (either backend).
pub fn count_matches(db: &mut dyn sql::Db, filter: &MatchFilter) -> Result<usize> {
    let (cond, args) = filter_sql(db.dialect(), filter);
    let n: i64 = sql::value(
        db,
        &format!("SELECT count(*) FROM items i WHERE 1 = 1{cond}"),
        &args,
    )?;
    Ok(usize::try_from(n).unwrap_or(0))
}

/// Stored matches, newest first by [`EFFECTIVE_TIME_SQL`] (then by id), on either backend.
pub fn matches(db: &mut dyn sql::Db, filter: &MatchFilter) -> Result<Vec<MatchRow>> {
    let d = db.dialect();
    let mut sql = format!("{} WHERE 1 = 1", match_select(d));
    let (cond, mut args) = filter_sql(d, filter);
    sql.push_str(&cond);
    sql.push_str(&format!(
        " ORDER BY {} DESC, i.id DESC",
        effective_time_sql(d)
    ));
    if let Some(limit) = filter.limit {
        // Bound as a parameter, saturated: SQL's LIMIT is a signed 64-bit integer.
        args.push(sql::Val::Int(i64::try_from(limit).unwrap_or(i64::MAX)));
        sql.push_str(&format!(" LIMIT ?{}", args.len()));
    }
    let mut out = Vec::new();
    for row in db.rows(&sql, &args)? {
        out.push(match_row(&row)?.finish()?);
    }
    Ok(out)
}

/// Where a matched entry is being stored: which feed carries it, what identifies it across
/// feeds, and when.
pub(crate) struct MatchPlace<'a> {
    pub canonical_url: Option<&'a str>,
    /// The item this feed's entry is already stored as (an edit), if any.
    pub own_item: Option<i64>,
    /// First-seen time for a new item: now when polling, the archived time when backfilling.
    pub first_seen: &'a str,
    pub now: &'a str,
}

/// One feed's write for [`Store::write_feeds`].
#[derive(Debug, Clone)]
pub enum FeedWrite {
    /// A fetched document's new and changed entries (as [`Store::commit_feed`]).
    Fetched {
        feed_id: i64,
        facts: FetchFacts,
        entries: Vec<EntryRecord>,
        now: DateTime<Utc>,
    },
    /// A 304 Not Modified (as [`Store::record_unchanged`]).
    Unchanged {
        feed_id: i64,
        facts: FetchFacts,
        now: DateTime<Utc>,
    },
}

impl FeedWrite {
    /// The feed written.
    pub fn feed_id(&self) -> i64 {
        match self {
            FeedWrite::Fetched { feed_id, .. } | FeedWrite::Unchanged { feed_id, .. } => *feed_id,
        }
    }
}

/// One [`FeedWrite`]'s rows, inside the caller's transaction.
fn write_one(tx: &Connection, archive: bool, write: &FeedWrite) -> Result<CommitCounts> {
    match write {
        FeedWrite::Fetched {
            feed_id,
            facts,
            entries,
            now,
        } => commit_one(tx, archive, *feed_id, facts, entries, *now),
        FeedWrite::Unchanged {
            feed_id,
            facts,
            now,
        } => unchanged_one(tx, *feed_id, facts, *now).map(|()| CommitCounts::default()),
    }
}

/// The rows of [`Store::commit_feed`], inside the caller's transaction.
fn commit_one(
    tx: &Connection,
    archive: bool,
    feed_id: i64,
    facts: &FetchFacts,
    entries: &[EntryRecord],
    now: DateTime<Utc>,
) -> Result<CommitCounts> {
    let now_s = ts(now);
    let mut counts = CommitCounts::default();
    for rec in entries {
        let sighting = |key: &[u8; 16]| -> rusqlite::Result<Option<(Vec<u8>, Option<i64>)>> {
            tx.prepare_cached(
                "SELECT fingerprint, item_id FROM sightings WHERE feed_id = ?1 AND entry_key = ?2",
            )?
            .query_row(params![feed_id, &key[..]], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
        };
        let mut entry_key = rec.identity.key_hash;
        let mut existing = sighting(&entry_key)?;
        // A known guid whose stored item has another canonical URL is not an edit but a
        // different story reusing the guid (some sites give every new entry the same one):
        // file it under its link's identity instead, and leave the stored item alone.
        if let (Some((fp, Some(old_item))), Some(alt), Some(canon)) = (
            &existing,
            rec.identity.link_key_hash,
            &rec.identity.canonical_url,
        ) && fp.as_slice() != rec.fingerprint
        {
            let stored: Option<String> = tx
                .prepare_cached("SELECT canonical_url FROM items WHERE id = ?1")?
                .query_row([old_item], |r| r.get(0))
                .optional()?
                .flatten();
            if stored.is_some_and(|c| &c != canon) {
                entry_key = alt;
                existing = sighting(&entry_key)?;
            }
        }
        if let Some((fp, _)) = &existing {
            if fp.as_slice() == rec.fingerprint {
                continue;
            }
            counts.changed_entries += 1;
        } else {
            counts.new_entries += 1;
        }
        let mut item_id = existing.as_ref().and_then(|(_, id)| *id);
        if let Some(m) = &rec.matched {
            let (id, new) = store_match(
                tx,
                &MatchPlace {
                    canonical_url: rec.identity.canonical_url.as_deref(),
                    own_item: item_id,
                    first_seen: &now_s,
                    now: &now_s,
                },
                &rec.text,
                m,
            )?;
            if new {
                counts.new_matches += 1;
            } else {
                counts.updated_matches += 1;
            }
            item_id = Some(id);
        }
        tx.prepare_cached(
                "INSERT INTO sightings (feed_id, entry_key, fingerprint, item_id, first_seen_at, changed_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5)
                 ON CONFLICT(feed_id, entry_key) DO UPDATE SET fingerprint = excluded.fingerprint,
                   item_id = COALESCE(excluded.item_id, sightings.item_id), changed_at = excluded.changed_at",
            )?
            .execute(params![feed_id, &entry_key[..], &rec.fingerprint[..], item_id, now_s])?;
        if archive {
            let is_new = existing.is_none();
            archive::put(tx, feed_id, &entry_key, item_id, &rec.text, &now_s, is_new)?;
        }
    }
    fetched_feed(tx, feed_id, facts, now, "ok")?;
    Ok(counts)
}

/// The row of [`Store::record_unchanged`].
fn unchanged_one(
    conn: &Connection,
    feed_id: i64,
    facts: &FetchFacts,
    now: DateTime<Utc>,
) -> Result<()> {
    fetched_feed(conn, feed_id, facts, now, "unchanged")
}

/// What a successful fetch (`status` "ok", or "unchanged" for a 304) leaves on the feed: its
/// validators, redirect, title (when the document gave one), times and next due time.
fn fetched_feed(
    conn: &Connection,
    feed_id: i64,
    facts: &FetchFacts,
    now: DateTime<Utc>,
    status: &str,
) -> Result<()> {
    conn.prepare_cached(
        "UPDATE feeds SET etag = ?2, last_modified = ?3, effective_url = COALESCE(?4, effective_url),
           title = COALESCE(?5, title), last_fetch_at = ?6, last_success_at = ?6, last_status = ?9,
           last_http_status = ?7, last_error = NULL, consecutive_failures = 0, next_due_at = ?8
         WHERE id = ?1",
    )?
    .execute(params![
        feed_id,
        facts.validators.etag,
        facts.validators.last_modified,
        facts.effective_url,
        facts.title,
        ts(now),
        facts.http_status,
        facts.next_due_at.map(ts),
        status
    ])?;
    Ok(())
}

/// Store one matched entry as an item (new, the feed's own edited one, or another outlet's
/// copy joining an item) with its rules; returns the item id and whether it is new.
pub(crate) fn store_match(
    tx: &Connection,
    at: &MatchPlace<'_>,
    text: &EntryText,
    m: &MatchedEntry,
) -> Result<(i64, bool)> {
    let mut item_id = at.own_item;
    if item_id.is_none()
        && let Some(canon) = at.canonical_url
    {
        item_id = tx
            .prepare_cached("SELECT id FROM items WHERE canonical_url = ?1")?
            .query_row([canon], |r| r.get(0))
            .optional()?;
    }
    let authors = serde_json::to_string(&text.authors).unwrap_or_else(|_| "[]".into());
    let published = text.published.map(ts);
    let (id, new) = match item_id {
        Some(id) => {
            if at.own_item.is_some() {
                // The same entry, edited: update the stored text in place.
                tx.prepare_cached(
                    "UPDATE items SET title = ?2, summary = ?3, content = ?4, authors = ?5,
                       published_at = COALESCE(?6, published_at), snippet = ?7, updated_at = ?8,
                       link = COALESCE(link, ?9)
                     WHERE id = ?1",
                )?
                .execute(params![
                    id,
                    text.title,
                    text.summary,
                    text.content,
                    authors,
                    published,
                    m.snippet,
                    at.now,
                    text.link
                ])?;
            } else {
                join_copy(tx, id, text, m, published.as_deref(), at.now)?;
            }
            // Its text or its outlets changed: the story placement looks at it again at the
            // end of the cycle, and the story counts as updated (exports re-send it).
            tx.prepare_cached("UPDATE items SET story_pending = 1 WHERE id = ?1")?
                .execute([id])?;
            tx.prepare_cached(
                "UPDATE stories SET updated_at = ?2 WHERE id = (SELECT story_id FROM items WHERE id = ?1)",
            )?
            .execute(params![id, at.now])?;
            (id, false)
        }
        None => {
            // A story of its own until the end-of-cycle placement ([`Store::place_stories`]).
            tx.prepare_cached("INSERT INTO stories (first_seen_at, updated_at) VALUES (?1, ?2)")?
                .execute(params![at.first_seen, at.now])?;
            let story = tx.last_insert_rowid();
            tx.prepare_cached(
                "INSERT INTO items (canonical_url, link, guid, title, summary, content, authors,
                   published_at, first_seen_at, updated_at, snippet, link_rank, story_id, story_pending)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, 1)",
            )?
            .execute(params![
                at.canonical_url,
                text.link,
                text.guid,
                text.title,
                text.summary,
                text.content,
                authors,
                published,
                at.first_seen,
                at.now,
                m.snippet,
                m.link_rank,
                story
            ])?;
            (tx.last_insert_rowid(), true)
        }
    };
    for rule in &m.rules {
        let terms = serde_json::to_string(&rule.terms).unwrap_or_else(|_| "[]".into());
        // Rules and terms accumulate: union the new terms into the stored ones.
        tx.prepare_cached(
            "INSERT INTO item_rules (item_id, rule, terms, first_matched_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(item_id, rule) DO UPDATE SET terms = (
               SELECT json_group_array(value) FROM (
                 SELECT value FROM json_each(item_rules.terms)
                 UNION SELECT value FROM json_each(excluded.terms)))",
        )?
        .execute(params![id, rule.rule, terms, at.now])?;
    }
    Ok((id, new))
}

/// Another outlet's copy `m` of stored item `id` (same canonical URL, or same story key).
///
/// Whatever the order of arrival, the item ends up with:
/// - the earliest published time any copy gives;
/// - the link and title of the best-linked copy ([`MatchedEntry::link_rank`]: the original
///   publisher's own link over a syndicator's), the first seen on a tie;
/// - the fullest text (most characters of summary + content), but only from a copy that
///   matches every rule the item already matched: the stored text never loses the terms that
///   made it match, so `query` over stored text still finds the item.
fn join_copy(
    tx: &Connection,
    id: i64,
    text: &EntryText,
    m: &MatchedEntry,
    published: Option<&str>,
    now: &str,
) -> Result<()> {
    if published.is_some() {
        tx.prepare_cached(
            "UPDATE items SET published_at = ?2
             WHERE id = ?1 AND (published_at IS NULL OR published_at > ?2)",
        )?
        .execute(params![id, published])?;
    }
    if text.link.is_some() {
        tx.prepare_cached(
            "UPDATE items SET link = ?2, title = ?3, link_rank = ?4 WHERE id = ?1 AND link_rank < ?4",
        )?
        .execute(params![id, text.link, text.title, m.link_rank])?;
    }
    let (stored_len, stored_rules): (i64, String) = tx
        .prepare_cached(
            "SELECT length(summary) + length(content),
                    (SELECT json_group_array(rule) FROM item_rules WHERE item_id = ?1)
             FROM items WHERE id = ?1",
        )?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let new_len = text.summary.chars().count() + text.content.chars().count();
    if i64::try_from(new_len).unwrap_or(i64::MAX) <= stored_len {
        return Ok(());
    }
    let stored_rules: Vec<String> = serde_json::from_str(&stored_rules).unwrap_or_default();
    let covers = stored_rules
        .iter()
        .all(|r| m.rules.iter().any(|n| &n.rule == r));
    if covers {
        let authors = serde_json::to_string(&text.authors).unwrap_or_else(|_| "[]".into());
        tx.prepare_cached(
            "UPDATE items SET summary = ?2, content = ?3, snippet = ?4, authors = ?5, updated_at = ?6
             WHERE id = ?1",
        )?
        .execute(params![id, text.summary, text.content, m.snippet, authors, now])?;
    }
    Ok(())
}

/// The `AND …` conditions (over `items i`) and their arguments for `filter`, limit aside.
fn filter_sql(d: sql::Dialect, filter: &MatchFilter) -> (String, Vec<sql::Val>) {
    let mut sql = String::new();
    let mut args: Vec<sql::Val> = Vec::new();
    let marks = |values: Vec<sql::Val>, args: &mut Vec<_>| -> String {
        let mut m = Vec::new();
        for v in values {
            args.push(v);
            m.push(format!("?{}", args.len()));
        }
        m.join(", ")
    };
    if !filter.rules.is_empty() {
        let m = marks(
            filter.rules.iter().map(|r| r.clone().into()).collect(),
            &mut args,
        );
        sql.push_str(&format!(
            " AND EXISTS (SELECT 1 FROM item_rules r WHERE r.item_id = i.id AND r.rule IN ({m}))"
        ));
    }
    if !filter.feeds.is_empty() {
        let m = marks(
            filter.feeds.iter().map(|f| f.clone().into()).collect(),
            &mut args,
        );
        sql.push_str(&format!(
            " AND EXISTS (SELECT 1 FROM sightings s JOIN feeds f ON f.id = s.feed_id
               WHERE s.item_id = i.id AND f.name IN ({m}))"
        ));
    }
    if let Some(since) = filter.published_since {
        let m = marks(vec![ts(since).into()], &mut args);
        sql.push_str(&format!(" AND {} >= {m}", effective_time_sql(d)));
    }
    if let Some(since) = filter.first_seen_since {
        let m = marks(vec![ts(since).into()], &mut args);
        sql.push_str(&format!(" AND i.first_seen_at >= {m}"));
    }
    if !filter.statuses.is_empty() {
        let m = marks(
            filter.statuses.iter().map(|s| s.clone().into()).collect(),
            &mut args,
        );
        sql.push_str(&format!(" AND i.status IN ({m})"));
    }
    if !filter.ids.is_empty() {
        let m = marks(
            filter.ids.iter().map(|&id| sql::Val::Int(id)).collect(),
            &mut args,
        );
        sql.push_str(&format!(" AND i.id IN ({m})"));
    }
    (sql, args)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::dedup;
    use crate::pipeline::parse::Entry;

    fn record(guid: &str, link: &str, title: &str, rule: Option<&str>) -> EntryRecord {
        let e = Entry {
            guid: Some(guid.into()),
            link: Some(link.into()),
            title: title.into(),
            ..Default::default()
        };
        let (_, identity) = dedup::identify(std::slice::from_ref(&e)).remove(0);
        EntryRecord {
            identity,
            fingerprint: dedup::fingerprint(&e),
            text: EntryText {
                guid: e.guid.clone(),
                link: e.link.clone(),
                title: title.into(),
                ..Default::default()
            },
            matched: rule.map(|r| MatchedEntry {
                rules: vec![RuleMatch {
                    rule: r.into(),
                    terms: vec![title.split(' ').next().unwrap_or("").into()],
                }],
                snippet: title.into(),
                link_rank: 0,
            }),
        }
    }

    fn open() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("sub/db.sqlite")).unwrap();
        store
            .sync_feeds([("a", "http://a/feed"), ("b", "http://b/feed")])
            .unwrap();
        (dir, store)
    }

    #[test]
    fn sync_feeds_writes_nothing_when_the_table_agrees() {
        let (_dir, mut s) = open();
        let before = s.conn().total_changes();
        s.sync_feeds([("a", "http://a/feed"), ("b", "http://b/feed")])
            .unwrap();
        assert_eq!(s.conn().total_changes(), before, "nothing to change");
        // Any difference still writes the whole sync: a removed feed, a new URL, a new feed.
        s.conn()
            .execute("UPDATE feeds SET etag = 'x' WHERE name = 'a'", [])
            .unwrap();
        s.sync_feeds([("a", "http://a/feed2"), ("c", "http://c/feed")])
            .unwrap();
        let rows: Vec<(String, String, i64, Option<String>)> = s
            .conn()
            .prepare("SELECT name, url, in_config, etag FROM feeds ORDER BY name")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        let want = [
            ("a", "http://a/feed2", 1, None),
            ("b", "http://b/feed", 0, None),
            ("c", "http://c/feed", 1, None),
        ]
        .map(|(n, u, c, e): (&str, &str, i64, Option<String>)| (n.into(), u.into(), c, e));
        assert_eq!(rows, want);
        // A feed back in the config is marked so again.
        s.sync_feeds([
            ("a", "http://a/feed2"),
            ("b", "http://b/feed"),
            ("c", "http://c/feed"),
        ])
        .unwrap();
        let in_config: i64 = s
            .conn()
            .query_row("SELECT sum(in_config) FROM feeds", [], |r| r.get(0))
            .unwrap();
        assert_eq!(in_config, 3);
    }

    #[test]
    fn document_frequencies_are_saved_only_when_counted_into() {
        let (_dir, mut s) = open();
        let now = Utc::now();
        let stored = |s: &Store| -> Option<Vec<u8>> {
            s.conn()
                .query_row("SELECT doc_freq FROM story_state WHERE id = 1", [], |r| {
                    r.get(0)
                })
                .unwrap()
        };
        // Nothing counted, nothing pending: nothing read, nothing written.
        let before = s.conn().total_changes();
        assert_eq!(s.place_stories(now).unwrap().items, 0);
        assert_eq!(s.conn().total_changes(), before);
        assert!(stored(&s).is_none());
        {
            let df = s.doc_freq().unwrap();
            df.lock()
                .unwrap()
                .observe_text("Some title", "Some body text");
        }
        s.place_stories(now).unwrap();
        let saved = stored(&s).unwrap();
        assert_eq!(
            crate::pipeline::stories::DocFreq::from_bytes(&saved)
                .unwrap()
                .docs(),
            1
        );
        // Unchanged since saved: not written again.
        let before = s.conn().total_changes();
        s.place_stories(now).unwrap();
        assert_eq!(s.conn().total_changes(), before);
        {
            let df = s.doc_freq().unwrap();
            df.lock()
                .unwrap()
                .observe_text("Another title", "Another body");
        }
        s.place_stories(now).unwrap();
        assert_eq!(
            crate::pipeline::stories::DocFreq::from_bytes(&stored(&s).unwrap())
                .unwrap()
                .docs(),
            2
        );
    }

    /// Found by the daemon tests under load: `newswatch run` and `newswatch query` opening a
    /// new database at the same moment both saw schema version 0; the loser's migration then
    /// failed with "table feeds already exists" and the command died.
    #[test]
    fn effective_time_in_sql_and_rust_agree() {
        let conn = Connection::open_in_memory().unwrap();
        let seen = "2015-11-09T10:00:00.000Z";
        for published in [
            None,
            Some("2015-11-09T08:00:00.000Z"),   // believed
            Some("2015-11-10T10:00:00.000Z"),   // exactly a day later: believed
            Some("2015-11-10T10:00:00.001Z"),   // later than that: first seen
            Some("+99999-01-01T00:00:00.000Z"), // year 99999
            Some("1970-01-01T00:00:00.000Z"),   // before 1990
            Some("1990-01-01T00:00:00.000Z"),   // believed
        ] {
            let sql: String = conn
                .query_row(
                    &format!(
                        "SELECT {EFFECTIVE_TIME_SQL} FROM (SELECT ?1 AS published_at, ?2 AS first_seen_at) i"
                    ),
                    params![published, seen],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(sql, effective_time(published, seen), "{published:?}");
        }
        assert_eq!(
            effective_time(Some("1990-01-01T00:00:00.000Z"), seen),
            "1990-01-01T00:00:00.000Z"
        );
        assert_eq!(
            effective_time(Some("+99999-01-01T00:00:00.000Z"), seen),
            seen
        );
    }

    #[test]
    fn concurrent_first_open_of_a_new_database_migrates_once() {
        for _ in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("db.sqlite");
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(4));
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    let (path, barrier) = (path.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        Store::open(&path).map(|_| ()).map_err(|e| e.to_string())
                    })
                })
                .collect();
            for h in handles {
                let r = h.join().unwrap();
                assert!(r.is_ok(), "{r:?}");
            }
        }
    }

    #[test]
    fn same_canonical_url_in_two_feeds_is_one_item_with_both_feeds_and_rules() {
        let (_d, mut s) = open();
        let a = s.feed_state("a").unwrap().unwrap().id;
        let b = s.feed_state("b").unwrap().unwrap().id;
        let now = Utc::now();
        let c = s
            .commit_feed(
                a,
                &FetchFacts::default(),
                &[record(
                    "a1",
                    "http://x.com/s?utm_source=a",
                    "NCA raid",
                    Some("nca"),
                )],
                now,
            )
            .unwrap();
        assert_eq!((c.new_entries, c.new_matches), (1, 1));
        let c = s
            .commit_feed(
                b,
                &FetchFacts::default(),
                &[record(
                    "b9",
                    "https://X.com/s#top",
                    "NCA raid GCHQ",
                    Some("gchq"),
                )],
                now,
            )
            .unwrap();
        assert_eq!((c.new_entries, c.new_matches, c.updated_matches), (1, 0, 1));
        let rows = s.matches(&MatchFilter::default()).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].feeds, vec!["a", "b"]);
        assert_eq!(rows[0].rules, vec!["gchq", "nca"]);
    }

    /// Issue 12 item 2: a fuller copy that lacks a rule the item matched must not replace
    /// the stored text (query over stored text would lose the item), while one that covers
    /// every rule does.
    #[test]
    fn merged_copy_never_replaces_text_with_one_that_loses_a_matched_rule() {
        let (_d, mut s) = open();
        let a = s.feed_state("a").unwrap().unwrap().id;
        let b = s.feed_state("b").unwrap().unwrap().id;
        let now = Utc::now();
        let mut thin = record("a1", "http://x.com/s", "NCA raid", Some("nca"));
        thin.text.summary = "NCA and GCHQ".into();
        if let Some(m) = thin.matched.as_mut() {
            m.rules.push(RuleMatch {
                rule: "gchq".into(),
                terms: vec!["GCHQ".into()],
            });
        }
        s.commit_feed(a, &FetchFacts::default(), &[thin], now)
            .unwrap();
        let mut fuller = record("b1", "https://x.com/s", "NCA raid", Some("nca"));
        fuller.text.summary =
            "A much longer text that names the NCA but not the other agency.".into();
        s.commit_feed(b, &FetchFacts::default(), &[fuller.clone()], now)
            .unwrap();
        let rows = s.matches(&MatchFilter::default()).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(
            rows[0].summary, "NCA and GCHQ",
            "the terms of rule gchq are kept"
        );
        // A fuller copy matching both rules wins.
        let mut full = record(
            "b2",
            "https://x.com/s?utm_source=b",
            "NCA raid",
            Some("nca"),
        );
        full.text.summary = "A much longer text: the NCA and GCHQ worked on it together.".into();
        if let Some(m) = full.matched.as_mut() {
            m.rules.push(RuleMatch {
                rule: "gchq".into(),
                terms: vec!["GCHQ".into()],
            });
        }
        s.commit_feed(b, &FetchFacts::default(), &[full], now)
            .unwrap();
        let rows = s.matches(&MatchFilter::default()).unwrap();
        assert_eq!(
            rows[0].summary,
            "A much longer text: the NCA and GCHQ worked on it together."
        );
    }

    #[test]
    fn two_outlets_reports_under_different_urls_are_two_items_of_one_story() {
        let (_d, mut s) = open();
        let a = s.feed_state("a").unwrap().unwrap().id;
        let b = s.feed_state("b").unwrap().unwrap().id;
        let now = Utc::now();
        let title = "NCA arrests six people in dark web drugs probe";
        let mut first = record("a1", "http://one.example/x", title, Some("nca"));
        first.text.summary =
            "The National Crime Agency said six people were arrested in Leeds and Bristol.".into();
        let mut second = record("b1", "http://two.example/y", title, Some("nca"));
        second.text.summary =
            "Six people were arrested in Leeds and Bristol, the National Crime Agency said.".into();
        s.commit_feed(a, &FetchFacts::default(), &[first], now)
            .unwrap();
        let c = s
            .commit_feed(b, &FetchFacts::default(), &[second], now)
            .unwrap();
        assert_eq!(c.new_matches, 1, "each outlet's report is its own item");
        let rows = s.matches(&MatchFilter::default()).unwrap();
        assert_eq!(rows.len(), 2);
        assert_ne!(
            rows[0].story, rows[1].story,
            "stories of their own until placed"
        );
        // As in a real poll, many other entries were counted first (the document frequencies
        // tell distinctive words from common ones only then).
        {
            let df = s.doc_freq().unwrap();
            let mut df = df.lock().unwrap();
            for i in 0..100 {
                df.observe_text(
                    &format!("Other news item {i}"),
                    &format!("The council said people in town {i} were told about the weather."),
                );
            }
        }
        let placed = s.place_stories(now).unwrap();
        assert_eq!((placed.items, placed.joined), (2, 1));
        let rows = s.matches(&MatchFilter::default()).unwrap();
        assert_eq!(rows[0].story, rows[1].story, "one story: {rows:?}");
        assert_eq!(rows[0].story_size, 2);
        // Nothing pending: a second pass places nothing.
        assert_eq!(s.place_stories(now).unwrap().items, 0);
        // A manual split takes one report out, and re-placing never moves it back.
        let item = rows[0].id;
        let to = s.story_split(item, now).unwrap();
        let rows = s.matches(&MatchFilter::default()).unwrap();
        assert_ne!(rows[0].story, rows[1].story);
        assert!(rows.iter().any(|r| r.story == to && r.id == item));
        let other = rows.iter().find(|r| r.id != item).unwrap().story;
        s.story_merge(other, to, now).unwrap();
        let rows = s.matches(&MatchFilter::default()).unwrap();
        assert_eq!(rows[0].story, rows[1].story);
        assert_eq!(rows[0].story, other);
        let detail = s.story(other).unwrap().unwrap();
        assert_eq!(detail.reports.len(), 2);
        assert!(detail.reports.iter().all(|r| r.pinned));
        assert!(s.story(to).unwrap().is_none(), "the merged story is gone");
    }

    #[test]
    fn unchanged_entries_add_nothing_and_edits_update_in_place() {
        let (_d, mut s) = open();
        let a = s.feed_state("a").unwrap().unwrap().id;
        let now = Utc::now();
        s.commit_feed(
            a,
            &FetchFacts::default(),
            &[record("g", "http://x/1", "NCA one", Some("nca"))],
            now,
        )
        .unwrap();
        let again = s
            .commit_feed(
                a,
                &FetchFacts::default(),
                &[record("g", "http://x/1", "NCA one", Some("nca"))],
                now,
            )
            .unwrap();
        assert_eq!(again, CommitCounts::default());
        let edit = s
            .commit_feed(
                a,
                &FetchFacts::default(),
                &[record("g", "http://x/1", "JOC two", Some("joc"))],
                now,
            )
            .unwrap();
        assert_eq!((edit.changed_entries, edit.new_matches), (1, 0));
        let rows = s.matches(&MatchFilter::default()).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].title, "JOC two");
        assert_eq!(rows[0].rules, vec!["joc", "nca"], "rules accumulate");
        assert_eq!(rows[0].terms.len(), 2);
    }

    #[test]
    fn unmatched_entries_are_remembered_compactly() {
        let (_d, mut s) = open();
        let a = s.feed_state("a").unwrap().unwrap().id;
        s.commit_feed(
            a,
            &FetchFacts::default(),
            &[record("g", "http://x/1", "weather", None)],
            Utc::now(),
        )
        .unwrap();
        assert_eq!(s.known_entries(a).unwrap().len(), 1);
        assert!(s.matches(&MatchFilter::default()).unwrap().is_empty());
    }

    #[test]
    fn a_new_entry_whose_archive_row_outlived_its_sighting_replaces_the_row() {
        let (_d, mut s) = open();
        let a = s.feed_state("a").unwrap().unwrap().id;
        let commit = |s: &mut Store, title: &str| {
            s.commit_feed(
                a,
                &FetchFacts::default(),
                &[record("g", "http://x/1", title, None)],
                Utc::now(),
            )
            .unwrap()
        };
        commit(&mut s, "first text");
        // The new-entry path inserts without looking: take the sighting away so that the
        // entry is new again while its archive row is still there.
        s.conn.execute("DELETE FROM sightings", []).unwrap();
        let counts = commit(&mut s, "second text");
        assert_eq!(counts.new_entries, 1);
        let rows: Vec<String> = s
            .conn
            .prepare("SELECT title FROM archive")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(rows, vec!["second text".to_string()]);
    }

    #[test]
    fn failures_count_up_and_success_resets() {
        let (_d, mut s) = open();
        let a = s.feed_state("a").unwrap().unwrap().id;
        assert_eq!(
            s.record_failure(a, "HTTP 500", Some(500), None, Utc::now())
                .unwrap(),
            1
        );
        assert_eq!(
            s.record_failure(a, "HTTP 500", Some(500), None, Utc::now())
                .unwrap(),
            2
        );
        s.record_unchanged(a, &FetchFacts::default(), Utc::now())
            .unwrap();
        assert_eq!(s.feed_state("a").unwrap().unwrap().consecutive_failures, 0);
    }

    #[test]
    fn a_failing_feed_in_a_grouped_write_is_rolled_back_alone() {
        let (_d, mut s) = open();
        let a = s.feed_state("a").unwrap().unwrap().id;
        let b = s.feed_state("b").unwrap().unwrap().id;
        let now = Utc::now();
        let write = |feed_id, guid: &str| FeedWrite::Fetched {
            feed_id,
            facts: FetchFacts::default(),
            entries: vec![record(
                guid,
                &format!("http://x/{guid}"),
                "Title",
                Some("r"),
            )],
            now,
        };
        let group = [
            write(a, "1"),
            // No such feed: the sighting's foreign key fails, after nothing else of it.
            write(9_999, "2"),
            FeedWrite::Unchanged {
                feed_id: b,
                facts: FetchFacts::default(),
                now,
            },
        ];
        let results = s.write_feeds(&group).unwrap();
        assert_eq!(results.len(), 3);
        assert_eq!(results[0].as_ref().unwrap().new_entries, 1);
        assert!(results[1].is_err(), "{:?}", results[1]);
        assert!(results[2].is_ok());
        let sightings: i64 = s
            .conn
            .query_row("SELECT count(*) FROM sightings", [], |r| r.get(0))
            .unwrap();
        assert_eq!(sightings, 1, "only feed a's entry is kept");
        // The failing feed's item was inserted before its sighting failed: rolled back too.
        let items: i64 = s
            .conn
            .query_row("SELECT count(*) FROM items", [], |r| r.get(0))
            .unwrap();
        assert_eq!(items, 1);
        let archived: i64 = s
            .conn
            .query_row(
                "SELECT count(*) FROM archive WHERE feed_id = 9999",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(archived, 0);
        let status: String = s
            .conn
            .query_row("SELECT last_status FROM feeds WHERE id = ?1", [b], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(status, "unchanged");
    }

    #[test]
    fn changing_a_feed_url_forgets_its_validators() {
        let (_d, mut s) = open();
        let a = s.feed_state("a").unwrap().unwrap().id;
        let facts = FetchFacts {
            validators: Validators {
                etag: Some("\"v1\"".into()),
                last_modified: None,
            },
            ..Default::default()
        };
        s.record_unchanged(a, &facts, Utc::now()).unwrap();
        s.sync_feeds([("a", "http://a/feed"), ("b", "http://b/feed")])
            .unwrap();
        assert_eq!(
            s.feed_state("a")
                .unwrap()
                .unwrap()
                .validators
                .etag
                .as_deref(),
            Some("\"v1\"")
        );
        s.sync_feeds([("a", "http://a/other")]).unwrap();
        assert_eq!(s.feed_state("a").unwrap().unwrap().validators.etag, None);
    }

    #[test]
    fn all_feed_states_at_once_equal_one_at_a_time() {
        let (_d, mut s) = open();
        let a = s.feed_state("a").unwrap().unwrap().id;
        let facts = FetchFacts {
            validators: Validators {
                etag: Some("\"v1\"".into()),
                last_modified: Some("Mon, 23 Nov 2026 10:00:00 GMT".into()),
            },
            effective_url: Some("http://a/moved".into()),
            ..Default::default()
        };
        s.record_unchanged(a, &facts, Utc::now()).unwrap();
        s.record_failure(a, "HTTP 500", Some(500), None, Utc::now())
            .unwrap();
        let all = s.feed_states().unwrap();
        let mut names: Vec<&str> = all.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["a", "b"]);
        for (name, state) in &all {
            let one = s.feed_state(name).unwrap().unwrap();
            assert_eq!(state.id, one.id);
            assert_eq!(state.url, one.url);
            assert_eq!(state.effective_url, one.effective_url);
            assert_eq!(state.validators, one.validators);
            assert_eq!(state.consecutive_failures, one.consecutive_failures);
            assert_eq!(state.next_due_at, one.next_due_at);
        }
        assert_eq!(all["a"].validators.etag.as_deref(), Some("\"v1\""));
        assert_eq!(all["a"].effective_url.as_deref(), Some("http://a/moved"));
        assert_eq!(all["a"].consecutive_failures, 1);
    }
}
