//! Digest: the daily summary an analyst reads instead of watching the database.
//!
//! Why a module of its own: the same summary is produced on demand (`newswatch digest`) and on
//! a schedule by the daemon, rendered four ways (Markdown, self-contained HTML, plain text,
//! JSON) and optionally delivered by e-mail or webhook. [`build`] turns stored matches into a
//! plain [`Digest`] (pure data, serialisable as the JSON format); [`render`] turns it into text;
//! [`write_scheduled`] covers every match first seen since the previous scheduled digest, using
//! item ids as the exact cut so none is skipped or repeated, even after downtime; [`deliver`]
//! sends a written digest on, with bounded retries.
//!
//! A story that matched several rules is shown in full once, under the first of its rules (in
//! section order), saying "also matched: …"; every other rule's section lists it as a one-line
//! reference to that entry. So each section stays complete (an analyst who owns one topic reads
//! only their section and misses nothing) while nobody reads the same snippet three times. The
//! header counts distinct stories as well as per-rule entries.

mod deliver;
mod highlight;
mod render;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

use crate::store::sql::{Db, Sqlite, Val};
use crate::store::{self, MatchFilter, MatchRow, Store, StoreError, parse_ts, ts};

pub use deliver::{
    DeliveryReport, EmailSecurity, EmailSettings, RetryPolicy, SecretSource, WebhookSettings,
    deliver, send_mail,
};
pub use highlight::highlight_terms;
pub use render::render;

/// How long a feed may go without a success (while failing) before the digest lists it.
pub const FEED_STALE_AFTER: chrono::Duration = chrono::Duration::hours(24);

/// Why a digest could not be built, written or delivered.
#[derive(Debug, thiserror::Error)]
pub enum DigestError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("cannot write {path}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid period: {0}")]
    Period(String),
    #[error("e-mail delivery failed: {0}")]
    Email(String),
    #[error("webhook delivery failed: {0}")]
    Webhook(String),
}

pub type Result<T, E = DigestError> = std::result::Result<T, E>;

/// Output format of a digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, clap::ValueEnum)]
pub enum Format {
    /// Markdown
    Md,
    /// A single self-contained HTML file (inline CSS, no scripts, no external resources)
    Html,
    /// Plain text
    Text,
    /// JSON (the `Digest` structure)
    Json,
}

impl Format {
    /// File extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Md => "md",
            Format::Html => "html",
            Format::Text => "txt",
            Format::Json => "json",
        }
    }

    /// Parse a config value (`md`, `markdown`, `html`, `text`, `txt`, `json`).
    pub fn parse(s: &str) -> Option<Format> {
        match s.trim().to_ascii_lowercase().as_str() {
            "md" | "markdown" => Some(Format::Md),
            "html" => Some(Format::Html),
            "text" | "txt" => Some(Format::Text),
            "json" => Some(Format::Json),
            _ => None,
        }
    }
}

/// Scheduled digest settings, filled by the config loader (`[digest]`).
#[derive(Debug, Clone, PartialEq)]
pub struct DigestSettings {
    /// Cron line (read in `schedule.timezone`) at which the daemon writes a digest.
    pub schedule: String,
    /// Folder the digest files go to.
    pub dir: PathBuf,
    /// Formats written besides Markdown (which is always written).
    pub formats: Vec<Format>,
    pub email: Option<EmailSettings>,
    pub webhook: Option<WebhookSettings>,
    /// Retries of a failed delivery.
    pub retry: RetryPolicy,
    /// `backlog`: entries published more than this before their feed's first poll are stored
    /// and searchable but not digested (a new feed's archive is not news).
    pub backlog: chrono::Duration,
    /// `max_per_rule`: at most this many entries shown per rule section (`None`: all).
    pub max_per_rule: Option<usize>,
}

/// `[digest] backlog` when not set.
pub const DEFAULT_BACKLOG: chrono::Duration = chrono::Duration::days(7);

/// `[digest] max_per_rule` when not set.
pub const DEFAULT_MAX_PER_RULE: usize = 50;

/// What a digest lists besides its period: filters, section order, caps.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DigestOptions {
    /// Only matches of any of these rules (empty: every rule); only their sections are shown.
    pub rules: Vec<String>,
    /// Only matches seen in any of these feeds (empty: every feed).
    pub feeds: Vec<String>,
    /// Section order: these rules first, in this order (the config's `[[rules]]` order), then
    /// any other rule (say, one since removed from the config) by name.
    pub rule_order: Vec<String>,
    /// At most this many entries per section; the rest are counted in [`Section::more`].
    pub max_per_rule: Option<usize>,
    /// Leave out entries published more than this before the first poll of the feed that
    /// first carried them (`None`: leave none out).
    pub backlog: Option<chrono::Duration>,
}

impl DigestOptions {
    /// The options `[digest]` and the config's rules ask for (defaults without `[digest]`).
    pub fn from_settings(digest: Option<&DigestSettings>, rule_order: Vec<String>) -> Self {
        DigestOptions {
            rule_order,
            max_per_rule: digest.map_or(Some(DEFAULT_MAX_PER_RULE), |d| d.max_per_rule),
            backlog: Some(digest.map_or(DEFAULT_BACKLOG, |d| d.backlog)),
            ..DigestOptions::default()
        }
    }
}

/// A half-open time range `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl Period {
    /// The `length` up to `now`.
    pub fn last(length: chrono::Duration, now: DateTime<Utc>) -> Period {
        Period {
            start: now
                .checked_sub_signed(length)
                .unwrap_or(DateTime::<Utc>::MIN_UTC),
            end: now,
        }
    }

    /// Calendar day `date` in time zone `tz` (23 or 25 hours long on DST changes).
    pub fn day(date: NaiveDate, tz: Tz) -> Result<Period> {
        let start = local_midnight(date, tz)?;
        let next = date
            .succ_opt()
            .ok_or_else(|| DigestError::Period(format!("no day after {date}")))?;
        let end = local_midnight(next, tz)?;
        Ok(Period { start, end })
    }
}

fn local_midnight(date: NaiveDate, tz: Tz) -> Result<DateTime<Utc>> {
    // Midnight may not exist (a DST jump at 00:00): take the first instant of the day.
    (0..=180)
        .step_by(15)
        .find_map(|min| {
            let t = date.and_hms_opt(0, 0, 0)? + chrono::Duration::minutes(min);
            tz.from_local_datetime(&t).earliest()
        })
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| DigestError::Period(format!("{date} has no midnight in {tz}")))
}

/// A digest: pure data. Serialised as-is for the JSON format and the webhook. Times are UTC;
/// `timezone` names the zone the other formats display them in.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Digest {
    /// Start of the period covered (inclusive).
    pub period_start: DateTime<Utc>,
    /// End of the period covered (exclusive).
    pub period_end: DateTime<Utc>,
    /// IANA name of the display time zone.
    pub timezone: String,
    #[serde(skip)]
    pub tz: Tz,
    pub generated_at: DateTime<Utc>,
    /// Set when the digest was limited to one rule.
    pub rule: Option<String>,
    /// Set when the digest was limited to some rules or feeds: what it was limited to.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub only: Vec<String>,
    /// Scheduled digests: the exact item-id cut covered, `(after, upto]`.
    pub item_ids: Option<ItemCut>,
    /// Distinct stories listed.
    pub total: usize,
    /// Entries per rule, in section order.
    pub counts: Vec<RuleCount>,
    pub sections: Vec<Section>,
    /// Feeds failing with no success for [`FEED_STALE_AFTER`] (or ever).
    pub feed_problems: Vec<FeedProblem>,
}

/// Item ids covered by a scheduled digest: `after < id <= upto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ItemCut {
    pub after: i64,
    pub upto: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RuleCount {
    pub rule: String,
    pub count: usize,
}

/// One rule's matches, newest first.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Section {
    pub rule: String,
    pub entries: Vec<Entry>,
    /// Entries of this rule not shown because of `max_per_rule` (`newswatch query --rule R`
    /// lists them).
    #[serde(skip_serializing_if = "is_zero")]
    pub more: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// One story in a section.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Entry {
    /// Item id (for `newswatch show ID` / `mark ID`).
    pub id: i64,
    pub title: String,
    pub link: Option<String>,
    /// Every feed that carried it, the first to carry it first.
    pub feeds: Vec<String>,
    pub published: Option<DateTime<Utc>>,
    pub first_seen: DateTime<Utc>,
    /// Every rule it matched.
    pub rules: Vec<String>,
    /// The rules other than this section's.
    pub also_matched: Vec<String>,
    /// The section where the story is shown in full (the first of its rules in section order);
    /// other sections only refer to it.
    pub listed_under: String,
    /// Matched query terms as written in the rules.
    pub terms: Vec<String>,
    pub snippet: String,
    /// Byte ranges `[start, end)` in `snippet` of the matched terms.
    pub highlights: Vec<[usize; 2]>,
    pub status: String,
    /// The story this entry stands for (its fullest report is the entry).
    pub story: i64,
    /// The story's other reports in the digest: other outlets' coverage of the same event.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub also_reported: Vec<AlsoReported>,
}

/// Another outlet's report of an entry's story.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AlsoReported {
    pub id: i64,
    pub feed: String,
    pub title: String,
    pub link: Option<String>,
}

/// A feed that keeps failing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FeedProblem {
    pub feed: String,
    pub url: String,
    /// `None`: never succeeded.
    pub last_success: Option<DateTime<Utc>>,
    pub consecutive_failures: u32,
    pub last_error: Option<String>,
}

/// Which items a digest covers.
#[derive(Debug, Clone, Copy)]
enum Select {
    /// First seen in the period.
    FirstSeen(Period),
    /// `after < id <= upto`, and (first run only) first seen at or after `since`.
    Ids {
        after: i64,
        upto: i64,
        since: Option<DateTime<Utc>>,
    },
}

/// Build the digest of matches first seen in `period` (dismissed ones left out), as `opts`
/// filters, orders and caps it. `now` is the generation time (and the reference for feed
/// health).
pub fn build(
    store: &mut dyn Db,
    period: Period,
    opts: &DigestOptions,
    tz: Tz,
    now: DateTime<Utc>,
) -> Result<Digest> {
    build_selected(store, Select::FirstSeen(period), period, opts, tz, now)
}

fn build_selected(
    store: &mut dyn Db,
    select: Select,
    period: Period,
    opts: &DigestOptions,
    tz: Tz,
    now: DateTime<Utc>,
) -> Result<Digest> {
    let ids = select_ids(store, select, opts)?;
    let mut rows = rows_for(store, &ids)?;
    for row in &mut rows {
        row.feeds = feeds_in_order(store, row.id)?;
    }
    let mut by_rule: BTreeMap<String, Vec<Entry>> = BTreeMap::new();
    for (row, others) in stories_of(store, rows, select)? {
        let row = &row;
        let published = row.published.as_deref().and_then(parse_ts);
        let first_seen = parse_ts(&row.first_seen)
            .ok_or_else(|| StoreError::Corrupt(format!("item {}: bad first_seen_at", row.id)))?;
        let highlights = highlight_terms(&row.snippet, &row.terms)
            .into_iter()
            .map(|r| [r.start, r.end])
            .collect();
        for r in &row.rules {
            if !opts.rules.is_empty() && !opts.rules.contains(r) {
                continue;
            }
            by_rule.entry(r.clone()).or_default().push(Entry {
                id: row.id,
                title: row.title.clone(),
                link: row.link.clone(),
                feeds: row.feeds.clone(),
                published,
                first_seen,
                rules: row.rules.clone(),
                also_matched: row.rules.iter().filter(|x| *x != r).cloned().collect(),
                listed_under: String::new(),
                terms: row.terms.clone(),
                snippet: row.snippet.clone(),
                highlights: Vec::clone(&highlights),
                status: row.status.clone(),
                story: row.story,
                also_reported: others
                    .iter()
                    .map(|o| AlsoReported {
                        id: o.id,
                        feed: o.feeds.first().cloned().unwrap_or_default(),
                        title: o.title.clone(),
                        link: o.link.clone(),
                    })
                    .collect(),
            });
        }
    }
    // Sections in the config's rule order (rules it no longer has after, by name); each
    // capped at `max_per_rule`; a story is shown in full in the first section that shows it.
    let mut sections: Vec<(String, Vec<Entry>)> = by_rule.into_iter().collect();
    let rank = |rule: &str| {
        opts.rule_order
            .iter()
            .position(|r| r == rule)
            .unwrap_or(usize::MAX)
    };
    sections.sort_by(|(a, _), (b, _)| rank(a).cmp(&rank(b)).then(a.cmp(b)));
    let mut first_section: BTreeMap<i64, String> = BTreeMap::new();
    let counts: Vec<RuleCount> = sections
        .iter()
        .map(|(rule, entries)| RuleCount {
            rule: rule.clone(),
            count: entries.len(),
        })
        .collect();
    let distinct: BTreeSet<i64> = sections
        .iter()
        .flat_map(|(_, entries)| entries.iter().map(|e| e.id))
        .collect();
    let sections: Vec<Section> = sections
        .into_iter()
        .map(|(rule, mut entries)| {
            let cap = opts.max_per_rule.unwrap_or(usize::MAX);
            let more = entries.len().saturating_sub(cap);
            entries.truncate(cap);
            for e in &mut entries {
                e.listed_under = first_section
                    .entry(e.id)
                    .or_insert_with(|| rule.clone())
                    .clone();
            }
            Section {
                rule,
                entries,
                more,
            }
        })
        .collect();
    let mut only: Vec<String> = opts.rules.iter().map(|r| format!("rule {r}")).collect();
    only.extend(opts.feeds.iter().map(|f| format!("feed {f}")));
    Ok(Digest {
        period_start: period.start,
        period_end: period.end,
        timezone: tz.name().to_string(),
        tz,
        generated_at: now,
        rule: match opts.rules.as_slice() {
            [one] if opts.feeds.is_empty() => Some(one.clone()),
            _ => None,
        },
        only: if opts.rules.len() == 1 && opts.feeds.is_empty() {
            Vec::new()
        } else {
            only
        },
        item_ids: match select {
            Select::Ids { after, upto, .. } => Some(ItemCut { after, upto }),
            Select::FirstSeen(_) => None,
        },
        total: distinct.len(),
        counts,
        sections,
        feed_problems: feed_problems(store, now)?,
    })
}

/// The rows grouped into stories, in the order of each story's newest row: the story's
/// fullest report (most text; the first seen on a tie) with the rules and terms of all its
/// reports, and its other reports. A scheduled digest leaves out a story an earlier digest
/// already listed (a report joining later is no new story).
fn stories_of(
    conn: &mut dyn Db,
    rows: Vec<MatchRow>,
    select: Select,
) -> Result<Vec<(MatchRow, Vec<MatchRow>)>> {
    let mut order: Vec<i64> = Vec::new();
    let mut groups: BTreeMap<i64, Vec<MatchRow>> = BTreeMap::new();
    for r in rows {
        if !groups.contains_key(&r.story) {
            order.push(r.story);
        }
        groups.entry(r.story).or_default().push(r);
    }
    let mut out = Vec::with_capacity(order.len());
    for story in order {
        let Some(mut reports) = groups.remove(&story) else {
            continue;
        };
        if let Select::Ids { after, .. } = select {
            let first: Option<i64> = crate::store::sql::value(
                conn,
                "SELECT min(id) FROM items WHERE story_id = ?1",
                &[Val::Int(story)],
            )?;
            if first.is_some_and(|id| id <= after) {
                continue;
            }
        }
        reports.sort_by(|a, b| a.first_seen.cmp(&b.first_seen).then(a.id.cmp(&b.id)));
        let size = |r: &MatchRow| r.summary.chars().count() + r.content.chars().count();
        let best = reports
            .iter()
            .enumerate()
            .max_by_key(|(i, r)| (size(r), std::cmp::Reverse(*i)))
            .map_or(0, |(i, _)| i);
        let mut head = reports.remove(best);
        for o in &reports {
            for rule in &o.rules {
                if !head.rules.contains(rule) {
                    head.rules.push(rule.clone());
                }
            }
            for t in &o.terms {
                if !head.terms.contains(t) {
                    head.terms.push(t.clone());
                }
            }
        }
        head.rules.sort();
        out.push((head, reports));
    }
    Ok(out)
}

/// Ids of the non-dismissed items a selection covers, ascending.
fn select_ids(conn: &mut dyn Db, select: Select, opts: &DigestOptions) -> Result<Vec<i64>> {
    let d = conn.dialect();
    let mut sql = String::from(if opts.backlog.is_some() {
        "WITH first_poll(feed_id, at) AS MATERIALIZED
           (SELECT feed_id, MIN(first_seen_at) FROM sightings GROUP BY feed_id)
         SELECT id FROM items i WHERE i.status != 'dismissed'"
    } else {
        "SELECT id FROM items i WHERE i.status != 'dismissed'"
    });
    let mut args: Vec<Val> = Vec::new();
    let mut arg = |v: Val, sql: &mut String, cond: &str| {
        args.push(v);
        sql.push_str(&cond.replace("?", &format!("?{}", args.len())));
    };
    match select {
        Select::FirstSeen(p) => {
            arg(
                Val::Text(ts(p.start)),
                &mut sql,
                " AND i.first_seen_at >= ?",
            );
            arg(Val::Text(ts(p.end)), &mut sql, " AND i.first_seen_at < ?");
        }
        Select::Ids { after, upto, since } => {
            arg(Val::Int(after), &mut sql, " AND i.id > ?");
            arg(Val::Int(upto), &mut sql, " AND i.id <= ?");
            sql.push_str(" AND i.backfilled = 0");
            if let Some(since) = since {
                arg(Val::Text(ts(since)), &mut sql, " AND i.first_seen_at >= ?");
            }
        }
    }
    if !opts.rules.is_empty() {
        let list = serde_json::to_string(&opts.rules).unwrap_or_else(|_| "[]".into());
        arg(
            Val::Text(list),
            &mut sql,
            &format!(
                " AND EXISTS (SELECT 1 FROM item_rules r WHERE r.item_id = i.id
                 AND r.rule IN ({}))",
                d.json_values("?")
            ),
        );
    }
    if !opts.feeds.is_empty() {
        let list = serde_json::to_string(&opts.feeds).unwrap_or_else(|_| "[]".into());
        arg(
            Val::Text(list),
            &mut sql,
            &format!(
                " AND EXISTS (SELECT 1 FROM sightings s JOIN feeds f ON f.id = s.feed_id
                 WHERE s.item_id = i.id AND f.name IN ({}))",
                d.json_values("?")
            ),
        );
    }
    if let Some(backlog) = opts.backlog {
        arg(
            Val::Int(backlog.num_seconds().max(0)),
            &mut sql,
            &format!(
                " AND NOT ({eff} < (SELECT {before}
                   FROM first_poll fp WHERE fp.feed_id = (SELECT s.feed_id FROM sightings s
                     WHERE s.item_id = i.id ORDER BY s.first_seen_at, s.feed_id LIMIT 1)))",
                eff = store::effective_time_sql(d),
                before = d.minus_seconds("fp.at", "?"),
            ),
        );
    }
    sql.push_str(" ORDER BY i.id");
    conn.rows(&sql, &args)?
        .iter()
        .map(|r| Ok(r.get(0)?))
        .collect()
}

fn rows_for(store: &mut dyn Db, ids: &[i64]) -> Result<Vec<MatchRow>> {
    let mut rows = Vec::with_capacity(ids.len());
    // An empty id list would mean "no id filter": never ask with one.
    for chunk in ids.chunks(500) {
        rows.extend(store::matches(
            store,
            &MatchFilter {
                ids: chunk.to_vec(),
                ..MatchFilter::default()
            },
        )?);
    }
    rows.sort_by(|a, b| {
        let ka = store::effective_time(a.published.as_deref(), &a.first_seen);
        let kb = store::effective_time(b.published.as_deref(), &b.first_seen);
        kb.cmp(ka).then(b.id.cmp(&a.id))
    });
    Ok(rows)
}

/// The feeds that carried item `id`, the first to carry it first (then by name).
fn feeds_in_order(conn: &mut dyn Db, id: i64) -> Result<Vec<String>> {
    conn.rows(
        "SELECT f.name FROM sightings s JOIN feeds f ON f.id = s.feed_id WHERE s.item_id = ?1
         GROUP BY f.id, f.name ORDER BY MIN(s.first_seen_at), f.name",
        &[Val::Int(id)],
    )?
    .iter()
    .map(|r| Ok(r.get(0)?))
    .collect()
}

/// Configured feeds that are failing and have not succeeded for [`FEED_STALE_AFTER`] (or ever).
fn feed_problems(conn: &mut dyn Db, now: DateTime<Utc>) -> Result<Vec<FeedProblem>> {
    conn.rows(
        "SELECT name, url, last_success_at, consecutive_failures, last_error FROM feeds
         WHERE in_config = 1 AND consecutive_failures > 0
           AND (last_success_at IS NULL OR last_success_at < ?1)
         ORDER BY name",
        &[Val::Text(ts(now - FEED_STALE_AFTER))],
    )?
    .iter()
    .map(|r| {
        Ok(FeedProblem {
            feed: r.get(0)?,
            url: r.get(1)?,
            last_success: r.get::<Option<String>>(2)?.as_deref().and_then(parse_ts),
            consecutive_failures: r.get(3)?,
            last_error: r.get(4)?,
        })
    })
    .collect()
}

/// What one scheduled digest run produced.
#[derive(Debug, Clone)]
pub struct ScheduledDigest {
    /// Row id in `digest_runs`.
    pub run_id: i64,
    pub digest: Digest,
    /// Files written, Markdown first.
    pub files: Vec<PathBuf>,
}

/// Write the scheduled digest: every non-dismissed match first seen since the previous
/// scheduled digest (by item id, so none is skipped or repeated, however long the daemon was
/// down; the first run ever covers the last 24 hours). Writes `digest-YYYY-MM-DD.md` (plus one
/// file per other listed format; `-2`, `-3`… when that day already has one) atomically into
/// `dir`, and records the run in the same transaction that read the cut.
pub fn write_scheduled(
    store: &Store,
    dir: &Path,
    formats: &[Format],
    opts: &DigestOptions,
    tz: Tz,
    now: DateTime<Utc>,
) -> Result<ScheduledDigest> {
    write_scheduled_in(&mut Sqlite(store.conn()), dir, formats, opts, tz, now, None)?
        .ok_or_else(|| DigestError::Period("no digest written".into()))
}

/// Key of the transaction-scoped advisory lock under which a PostgreSQL worker writes the
/// cluster's scheduled digest ("nwdigest").
const DIGEST_LOCK: i64 = 0x6e77_6469_6765_7374;

/// [`write_scheduled`] on either backend. With `unless_written_since`, nothing is written
/// (`None`) when the last recorded run ended at or after that time: another worker of a
/// cluster wrote this scheduled digest already (on PostgreSQL the check and the write are
/// one transaction under an advisory lock, so two workers due at once write it once).
pub fn write_scheduled_in(
    db: &mut dyn Db,
    dir: &Path,
    formats: &[Format],
    opts: &DigestOptions,
    tz: Tz,
    now: DateTime<Utc>,
    unless_written_since: Option<DateTime<Utc>>,
) -> Result<Option<ScheduledDigest>> {
    std::fs::create_dir_all(dir).map_err(|source| DigestError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    // SQLite: IMMEDIATE, the write lock before reading the cut, so two writers cannot both
    // read the same previous run (pollers wait, busy timeout, the few milliseconds this
    // takes). PostgreSQL: the digest lock.
    db.batch(match db.dialect() {
        crate::store::sql::Dialect::Sqlite => "BEGIN IMMEDIATE",
        crate::store::sql::Dialect::Postgres => "BEGIN",
    })?;
    let out = scheduled_in_tx(db, dir, formats, opts, tz, now, unless_written_since);
    match &out {
        Ok(_) => db.batch("COMMIT")?,
        Err(_) => {
            // The error that ended the transaction is the one to report.
            let _ = db.batch("ROLLBACK");
        }
    }
    let out = out?;
    if let Some(run) = &out {
        tracing::info!(run_id = run.run_id, items = run.digest.total, files = ?run.files, "scheduled digest written");
    }
    Ok(out)
}

fn scheduled_in_tx(
    tx: &mut dyn Db,
    dir: &Path,
    formats: &[Format],
    opts: &DigestOptions,
    tz: Tz,
    now: DateTime<Utc>,
    unless_written_since: Option<DateTime<Utc>>,
) -> Result<Option<ScheduledDigest>> {
    if tx.dialect() == crate::store::sql::Dialect::Postgres {
        tx.rows("SELECT pg_advisory_xact_lock(?1)", &[Val::Int(DIGEST_LOCK)])?;
    }
    let prev: Option<(String, i64)> = match tx.row(
        "SELECT period_end, last_item_id FROM digest_runs ORDER BY id DESC LIMIT 1",
        &[],
    )? {
        Some(r) => Some((r.get(0)?, r.get(1)?)),
        None => None,
    };
    if let (Some(since), Some((end, _))) = (unless_written_since, &prev)
        && parse_ts(end).is_some_and(|end| end >= since)
    {
        return Ok(None);
    }
    let upto: i64 = crate::store::sql::value(tx, "SELECT COALESCE(MAX(id), 0) FROM items", &[])?;
    let (select, start) = match &prev {
        Some((end, last)) => {
            let start = parse_ts(end).ok_or_else(|| {
                StoreError::Corrupt(format!("digest_runs: bad period_end {end:?}"))
            })?;
            let after = *last;
            (
                Select::Ids {
                    after,
                    upto: upto.max(after),
                    since: None,
                },
                start,
            )
        }
        None => {
            let start = now - chrono::Duration::hours(24);
            (
                Select::Ids {
                    after: 0,
                    upto,
                    since: Some(start),
                },
                start,
            )
        }
    };
    let period = Period { start, end: now };
    let digest = build_selected(tx, select, period, opts, tz, now)?;

    let mut all = vec![Format::Md];
    for f in formats {
        if !all.contains(f) {
            all.push(*f);
        }
    }
    let stem = free_stem(dir, &now.with_timezone(&tz).date_naive(), &all);
    let mut files = Vec::new();
    for f in &all {
        let path = dir.join(format!("{stem}.{}", f.extension()));
        write_atomic(&path, render(&digest, *f).as_bytes())?;
        files.push(path);
    }
    let names: Vec<String> = files
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    let upto = digest.item_ids.map_or(upto, |c| c.upto);
    let run_id: i64 = crate::store::sql::value(
        tx,
        "INSERT INTO digest_runs (period_start, period_end, after_item_id, last_item_id, items, files, written_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) RETURNING id",
        &[
            Val::Text(ts(period.start)),
            Val::Text(ts(period.end)),
            Val::Int(digest.item_ids.map_or(0, |c| c.after)),
            Val::Int(upto),
            Val::Int(i64::try_from(digest.total).unwrap_or(i64::MAX)),
            Val::Text(serde_json::to_string(&names).unwrap_or_else(|_| "[]".into())),
            Val::Text(store::ts(now)),
        ],
    )?;
    Ok(Some(ScheduledDigest {
        run_id,
        digest,
        files,
    }))
}

/// `digest-DATE`, or `digest-DATE-N` when a file of that name exists in any of `formats`.
fn free_stem(dir: &Path, date: &NaiveDate, formats: &[Format]) -> String {
    let taken = |stem: &str| {
        formats
            .iter()
            .any(|f| dir.join(format!("{stem}.{}", f.extension())).exists())
    };
    let base = format!("digest-{date}");
    if !taken(&base) {
        return base;
    }
    (2..)
        .map(|n| format!("{base}-{n}"))
        .find(|s| !taken(s))
        .unwrap_or(base)
}

/// Write `bytes` to `path` atomically: a temporary file in the same folder, synced, then
/// renamed over `path`. Readers see the old file or the new one, never half of one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    crate::atomic::write(path, bytes).map_err(|source| DigestError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// One recorded scheduled digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestRun {
    pub id: i64,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    /// Items covered: `after_item_id < id <= last_item_id`.
    pub after_item_id: i64,
    pub last_item_id: i64,
    /// Distinct matches listed.
    pub items: i64,
    pub files: Vec<String>,
}

/// Every scheduled digest written so far, oldest first.
pub fn scheduled_runs(db: &mut dyn crate::store::sql::Db) -> Result<Vec<DigestRun>> {
    let rows = db.rows(
        "SELECT id, period_start, period_end, after_item_id, last_item_id, items, files
         FROM digest_runs ORDER BY id",
        &[],
    )?;
    let rows = rows
        .iter()
        .map(|r| -> crate::store::Result<_> {
            Ok((
                r.get::<i64>(0)?,
                r.get::<String>(1)?,
                r.get::<String>(2)?,
                r.get::<i64>(3)?,
                r.get::<i64>(4)?,
                r.get::<i64>(5)?,
                r.get::<String>(6)?,
            ))
        })
        .collect::<crate::store::Result<Vec<_>>>()?;
    let mut out = Vec::new();
    for row in rows {
        let (id, start, end, after, last, items, files) = row;
        let time = |s: &str| {
            parse_ts(s)
                .ok_or_else(|| StoreError::Corrupt(format!("digest run {id}: bad time {s:?}")))
        };
        out.push(DigestRun {
            id,
            period_start: time(&start)?,
            period_end: time(&end)?,
            after_item_id: after,
            last_item_id: last,
            items,
            files: serde_json::from_str(&files)
                .map_err(|e| StoreError::Corrupt(format!("digest run {id}: {e}")))?,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_periods_follow_dst_in_the_time_zone() {
        let london = chrono_tz::Europe::London;
        let d = |y, m, day| NaiveDate::from_ymd_opt(y, m, day).unwrap();
        let spring = Period::day(d(2015, 3, 29), london).unwrap();
        assert_eq!(spring.end - spring.start, chrono::Duration::hours(23));
        let autumn = Period::day(d(2015, 10, 25), london).unwrap();
        assert_eq!(autumn.end - autumn.start, chrono::Duration::hours(25));
        let summer = Period::day(d(2015, 7, 1), london).unwrap();
        assert_eq!(ts(summer.start), "2015-06-30T23:00:00.000Z");
        // Midnight that does not exist (Santiago jumps 00:00 → 01:00): the day starts at 01:00.
        let santiago = Period::day(d(2022, 9, 11), chrono_tz::America::Santiago).unwrap();
        assert_eq!(ts(santiago.start), "2022-09-11T04:00:00.000Z");
    }

    #[test]
    fn formats_parse_and_name_files() {
        assert_eq!(Format::parse(" Markdown "), Some(Format::Md));
        assert_eq!(Format::parse("txt"), Some(Format::Text));
        assert_eq!(Format::parse("pdf"), None);
        let exts: Vec<&str> = [Format::Md, Format::Html, Format::Text, Format::Json]
            .iter()
            .map(|f| f.extension())
            .collect();
        assert_eq!(exts, vec!["md", "html", "txt", "json"]);
    }

    #[test]
    fn free_stem_adds_a_counter_when_the_day_has_a_digest() {
        let dir = tempfile::tempdir().unwrap();
        let day = NaiveDate::from_ymd_opt(2015, 11, 9).unwrap();
        let fs = [Format::Md, Format::Json];
        assert_eq!(free_stem(dir.path(), &day, &fs), "digest-2015-11-09");
        std::fs::write(dir.path().join("digest-2015-11-09.json"), "{}").unwrap();
        assert_eq!(free_stem(dir.path(), &day, &fs), "digest-2015-11-09-2");
    }
}
