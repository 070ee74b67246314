//! Review: what an analyst does with stored matches after they arrive — read one in full,
//! mark it read / starred / dismissed (or back to new), and see how the watch is going.
//!
//! Why a module: the CLI (`show`, `mark`, `stats`) and any future UI share these reads and the
//! one write (status), and the daemon's digest relies on the same statuses (dismissed matches
//! are left out). All functions return plain serialisable data; printing is the caller's.

use std::collections::{BTreeMap, HashSet};

use crate::store::sql::{self, Db, Val};
use crate::store::{MatchFilter, StoreError, parse_ts};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;

/// The review statuses a match can have.
pub const STATUSES: [&str; 4] = ["new", "read", "starred", "dismissed"];

/// Why a review command failed.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("unknown status {0:?} (use new, read, starred or dismissed)")]
    UnknownStatus(String),
}

pub type Result<T, E = ReviewError> = std::result::Result<T, E>;

/// A feed that carried a match.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FeedRef {
    pub name: String,
    pub url: String,
    /// The feed's own title, if known.
    pub title: Option<String>,
    /// When this feed first carried the story.
    pub first_seen: String,
}

/// A rule that matched, with its terms.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RuleHit {
    pub rule: String,
    pub terms: Vec<String>,
    pub first_matched: String,
}

/// One match in full.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MatchDetail {
    pub id: i64,
    pub title: String,
    pub link: Option<String>,
    pub guid: Option<String>,
    pub published: Option<String>,
    pub first_seen: String,
    pub updated: String,
    pub status: String,
    pub authors: Vec<String>,
    pub feeds: Vec<FeedRef>,
    pub rules: Vec<RuleHit>,
    pub snippet: String,
    pub summary: String,
    pub content: String,
    /// The story this report is in, its number of reports, whether a person placed it there
    /// (`story split` / `merge`), and why it is there.
    pub story: i64,
    pub story_size: i64,
    pub story_pinned: bool,
    pub story_evidence: Option<crate::pipeline::stories::Evidence>,
}

/// Everything stored about match `id`, or `None`.
pub fn show(db: &mut dyn Db, id: i64) -> Result<Option<MatchDetail>> {
    let row = db.row(
        "SELECT id, title, link, guid, published_at, first_seen_at, updated_at, status, authors,
                snippet, summary, content, COALESCE(story_id, 0),
                (SELECT count(*) FROM items o WHERE o.story_id = items.story_id),
                story_pinned, story_evidence
         FROM items WHERE id = ?1",
        &[Val::Int(id)],
    )?;
    let Some(r) = row else {
        return Ok(None);
    };
    let mut m = MatchDetail {
        id: r.get(0)?,
        title: r.get(1)?,
        // Only http(s) links leave newswatch, whatever a feed gave.
        link: crate::text::outgoing_link(r.get(2)?),
        guid: r.get(3)?,
        published: r.get(4)?,
        first_seen: r.get(5)?,
        updated: r.get(6)?,
        status: r.get(7)?,
        authors: serde_json::from_str(&r.get::<String>(8)?).unwrap_or_default(),
        feeds: Vec::new(),
        rules: Vec::new(),
        snippet: r.get(9)?,
        summary: r.get(10)?,
        content: r.get(11)?,
        story: r.get(12)?,
        story_size: r.get(13)?,
        story_pinned: r.get::<i64>(14)? != 0,
        story_evidence: r
            .get::<Option<String>>(15)?
            .and_then(|e| serde_json::from_str(&e).ok()),
    };
    m.feeds = db
        .rows(
            "SELECT f.name, f.url, f.title, MIN(s.first_seen_at) FROM sightings s
             JOIN feeds f ON f.id = s.feed_id WHERE s.item_id = ?1
             GROUP BY f.id, f.name, f.url, f.title ORDER BY MIN(s.first_seen_at), f.name",
            &[Val::Int(id)],
        )?
        .iter()
        .map(|r| {
            Ok(FeedRef {
                name: r.get(0)?,
                url: r.get(1)?,
                title: r.get(2)?,
                first_seen: r.get(3)?,
            })
        })
        .collect::<crate::store::Result<_>>()?;
    let rules = db.rows(
        "SELECT rule, terms, first_matched_at FROM item_rules WHERE item_id = ?1 ORDER BY rule",
        &[Val::Int(id)],
    )?;
    for r in rules {
        let (rule, terms, first_matched): (String, String, String) =
            (r.get(0)?, r.get(1)?, r.get(2)?);
        let terms: Vec<String> = serde_json::from_str(&terms)
            .map_err(|e| StoreError::Corrupt(format!("item {id} rule {rule}: {e}")))?;
        m.rules.push(RuleHit {
            rule,
            terms,
            first_matched,
        });
    }
    Ok(Some(m))
}

/// What [`mark`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct MarkOutcome {
    /// Ids whose status changed.
    pub changed: Vec<i64>,
    /// Ids that already had the status.
    pub unchanged: Vec<i64>,
    /// Ids with no match.
    pub not_found: Vec<i64>,
}

/// Set the status of every existing match in `ids` (one transaction); report unknown ids.
pub fn mark(db: &mut dyn Db, ids: &[i64], status: &str) -> Result<MarkOutcome> {
    if !STATUSES.contains(&status) {
        return Err(ReviewError::UnknownStatus(status.to_string()));
    }
    Ok(sql::transaction(db, |tx| {
        let mut out = MarkOutcome::default();
        let mut seen = HashSet::new();
        for &id in ids {
            if !seen.insert(id) {
                continue;
            }
            let current: Option<String> =
                match tx.row("SELECT status FROM items WHERE id = ?1", &[Val::Int(id)])? {
                    Some(r) => Some(r.get(0)?),
                    None => None,
                };
            match current {
                None => out.not_found.push(id),
                Some(s) if s == status => out.unchanged.push(id),
                Some(_) => {
                    tx.exec(
                        "UPDATE items SET status = ?2 WHERE id = ?1",
                        &[Val::Int(id), Val::from(status)],
                    )?;
                    out.changed.push(id);
                }
            }
        }
        Ok(out)
    })?)
}

/// A name and a count.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Count {
    pub name: String,
    pub count: usize,
}

/// One feed's health, as the poller last left it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FeedHealth {
    pub name: String,
    pub url: String,
    pub in_config: bool,
    /// `ok`, `unchanged`, `failed`, or `None` when never polled.
    pub last_status: Option<String>,
    pub last_http_status: Option<u16>,
    pub last_fetch: Option<String>,
    pub last_success: Option<String>,
    pub consecutive_failures: u32,
    pub last_error: Option<String>,
}

/// Activity since a time: matches per rule, per feed, per day (in `timezone`), per status,
/// and every feed's health.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub timezone: String,
    /// Distinct matches first seen in the window.
    pub total: usize,
    /// The stories those matches belong to.
    pub stories: usize,
    pub per_rule: Vec<Count>,
    pub per_feed: Vec<Count>,
    /// Local calendar day (`YYYY-MM-DD`) → matches first seen that day; days without any are
    /// listed with 0 so gaps are visible.
    pub per_day: Vec<Count>,
    pub per_status: Vec<Count>,
    pub feeds: Vec<FeedHealth>,
    /// Every polled entry kept for search (all time, not only the window).
    pub archive: crate::store::archive::ArchiveStats,
}

/// Statistics of matches first seen at or after `since`, optionally only those of any of
/// `rules` and seen in any of `feeds` (empty: all).
pub fn stats(
    db: &mut dyn Db,
    since: DateTime<Utc>,
    rules: &[String],
    feeds: &[String],
    tz: Tz,
    now: DateTime<Utc>,
) -> Result<Stats> {
    let rows = crate::store::matches(
        db,
        &MatchFilter {
            first_seen_since: Some(since),
            rules: rules.to_vec(),
            feeds: feeds.to_vec(),
            ..MatchFilter::default()
        },
    )?;
    let mut per_rule: BTreeMap<String, usize> = BTreeMap::new();
    let mut per_feed: BTreeMap<String, usize> = BTreeMap::new();
    let mut per_day: BTreeMap<chrono::NaiveDate, usize> = BTreeMap::new();
    let mut per_status: BTreeMap<String, usize> =
        STATUSES.iter().map(|s| (s.to_string(), 0)).collect();
    // Every day from the first match (or `since`, if later) to now, so quiet days show as 0.
    let day_of = |t: DateTime<Utc>| t.with_timezone(&tz).date_naive();
    let earliest = rows
        .iter()
        .filter_map(|r| parse_ts(&r.first_seen))
        .min()
        .map_or(since, |t| t.max(since));
    let mut d = day_of(earliest);
    while d <= day_of(now.max(earliest)) && per_day.len() < 36_600 {
        per_day.insert(d, 0);
        match d.succ_opt() {
            Some(n) => d = n,
            None => break,
        }
    }
    for r in &rows {
        for rule in &r.rules {
            if rules.is_empty() || rules.contains(rule) {
                *per_rule.entry(rule.clone()).or_default() += 1;
            }
        }
        for feed in &r.feeds {
            if feeds.is_empty() || feeds.contains(feed) {
                *per_feed.entry(feed.clone()).or_default() += 1;
            }
        }
        if let Some(t) = parse_ts(&r.first_seen) {
            *per_day
                .entry(t.with_timezone(&tz).date_naive())
                .or_default() += 1;
        }
        *per_status.entry(r.status.clone()).or_default() += 1;
    }
    let counts = |m: BTreeMap<String, usize>| -> Vec<Count> {
        m.into_iter()
            .map(|(name, count)| Count { name, count })
            .collect()
    };
    let feeds = db
        .rows(
            "SELECT name, url, in_config, last_status, last_http_status, last_fetch_at, last_success_at,
                    consecutive_failures, last_error
             FROM feeds ORDER BY in_config DESC, name",
            &[],
        )?
        .iter()
        .map(|r| {
            Ok(FeedHealth {
                name: r.get(0)?,
                url: r.get(1)?,
                in_config: r.get::<i64>(2)? != 0,
                last_status: r.get(3)?,
                last_http_status: r.get(4)?,
                last_fetch: r.get(5)?,
                last_success: r.get(6)?,
                consecutive_failures: r.get(7)?,
                last_error: r.get(8)?,
            })
        })
        .collect::<crate::store::Result<Vec<_>>>()?;
    Ok(Stats {
        since,
        until: now,
        timezone: tz.name().to_string(),
        total: rows.len(),
        stories: rows
            .iter()
            .map(|r| r.story)
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        per_rule: counts(per_rule),
        per_feed: counts(per_feed),
        per_day: per_day
            .into_iter()
            .map(|(d, count)| Count {
                name: d.to_string(),
                count,
            })
            .collect(),
        per_status: counts(per_status),
        feeds,
        archive: crate::store::archive::archive_stats(db)?,
    })
}

/// `true` if any stored match has rule `name`.
pub fn rule_is_known(db: &mut dyn Db, name: &str) -> Result<bool> {
    Ok(sql::value(
        db,
        "SELECT EXISTS (SELECT 1 FROM item_rules WHERE rule = ?1)",
        &[Val::from(name)],
    )?)
}

/// Rule and feed names the database knows: rules that matched something, feeds ever synced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KnownNames {
    pub rules: Vec<String>,
    pub feeds: Vec<String>,
}

/// Every rule name in `item_rules` and feed name in `feeds`, sorted.
pub fn known_names(db: &mut dyn Db) -> Result<KnownNames> {
    let mut list = |sql: &str| -> Result<Vec<String>> {
        Ok(db
            .rows(sql, &[])?
            .iter()
            .map(|r| r.get(0))
            .collect::<crate::store::Result<Vec<String>>>()?)
    };
    Ok(KnownNames {
        rules: list("SELECT DISTINCT rule FROM item_rules ORDER BY rule")?,
        feeds: list("SELECT name FROM feeds ORDER BY name")?,
    })
}

/// Timestamp helper for callers printing times of this module's data.
pub fn local(ts_text: &str, tz: Tz) -> String {
    match parse_ts(ts_text) {
        Some(t) => t.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z").to_string(),
        None => ts_text.to_string(),
    }
}
