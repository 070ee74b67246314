//! Stories in the store: where [`crate::pipeline::stories`] decisions are kept, and the one
//! place they are made.
//!
//! A stored item starts as a story of its own, marked `story_pending`. At the end of each poll
//! cycle [`Store::place_stories`] places every pending item with the clustering engine, in
//! arrival order, in one `BEGIN IMMEDIATE` transaction: it joins the best story of the time
//! window or keeps its own. The engine's window (the stories of the last `[stories] window`
//! with their centroids) lives in memory beside the connection; `story_state.generation`
//! changes with every placement or manual decision, so a process whose window is stale (another
//! `newswatch poll`, a `story split` beside a running daemon) reloads it before placing. Story
//! ids always come from the database, never from the engine's own counter, so two processes
//! cannot both start story N.
//!
//! The document frequencies the engine weighs words with are counted over every polled entry
//! (the poller calls [`Store::doc_freq`] and observes) and saved with each placement.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, Transaction, TransactionBehavior, params};
use serde::Serialize;

use std::collections::BTreeSet;

use super::sql::{self, Db, Dialect, Sqlite, Val};
use super::{MatchRow, Result, Store, StoreError, effective_time, parse_ts, ts};
use crate::pipeline::stories::{DocFreq, Evidence, Features, Report, StoryIndex, StorySettings};

/// The clustering state a [`Store`] keeps beside its connection.
#[derive(Debug, Default)]
pub(crate) struct StoryState {
    pub(crate) settings: StorySettings,
    /// The stories of the window, as of `generation`; `None` until first needed.
    pub(crate) index: Option<StoryIndex>,
    /// The index holds the stored items whose time is at or after this.
    pub(crate) loaded_since: Option<DateTime<Utc>>,
    pub(crate) generation: i64,
    pub(crate) doc_freq: Option<Arc<Mutex<DocFreq>>>,
    /// `doc_freq`'s [`DocFreq::revision`] as last read or saved: unchanged, it is not
    /// written again.
    pub(crate) saved_revision: u64,
}

/// What one [`Store::place_stories`] pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Placed {
    /// Items placed (new or changed since the last pass).
    pub items: usize,
    /// Of those, items that joined a story with other reports.
    pub joined: usize,
}

/// One report of a story, for `story show` and `show`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoryReport {
    pub id: i64,
    pub title: String,
    pub link: Option<String>,
    pub published: Option<String>,
    pub first_seen: String,
    pub feeds: Vec<String>,
    pub status: String,
    pub pinned: bool,
    /// Why it is in this story (`None` for reports stored before stories existed).
    pub evidence: Option<Evidence>,
}

/// A story with its reports, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoryDetail {
    pub id: i64,
    pub first_seen: String,
    pub updated: String,
    pub reports: Vec<StoryReport>,
}

/// One story as `query --stories` prints it.
#[derive(Debug, Serialize)]
pub struct StoryRow {
    /// The story id (`story` of the report rows).
    pub story: i64,
    /// The headline of its fullest report (the first one on a tie).
    pub headline: String,
    pub link: Option<String>,
    /// Every outlet (feed) among its reports, in order of first report.
    pub outlets: Vec<String>,
    pub first_seen: String,
    pub last_seen: String,
    pub rules: Vec<String>,
    /// Reports in the story (all of them, also those the filters left out).
    pub size: i64,
    /// The match ids of the reports the filters kept.
    pub reports: Vec<i64>,
    /// When a report last joined, left or changed (exports re-send the story then).
    pub updated: String,
    /// The fullest report's snippet.
    pub snippet: String,
    /// Every report the filters kept, oldest first.
    #[serde(skip)]
    pub rows: Vec<MatchRow>,
}

/// Group report rows (newest first) into stories, newest first, at most `limit`.
pub fn group(rows: &[MatchRow], limit: usize) -> Vec<StoryRow> {
    let mut order: Vec<i64> = Vec::new();
    let mut by: std::collections::HashMap<i64, Vec<&MatchRow>> = Default::default();
    for r in rows {
        if !by.contains_key(&r.story) {
            order.push(r.story);
        }
        by.entry(r.story).or_default().push(r);
    }
    order
        .into_iter()
        .take(limit)
        .filter_map(|story| {
            let mut reports = by.remove(&story)?;
            reports.sort_by(|a, b| a.first_seen.cmp(&b.first_seen).then(a.id.cmp(&b.id)));
            let fullest = reports
                .iter()
                .max_by_key(|r| {
                    (
                        r.summary.chars().count() + r.content.chars().count(),
                        std::cmp::Reverse(r.id),
                    )
                })
                .copied()?;
            let mut outlets: Vec<String> = Vec::new();
            let mut rules: BTreeSet<String> = BTreeSet::new();
            for r in &reports {
                for f in &r.feeds {
                    if !outlets.contains(f) {
                        outlets.push(f.clone());
                    }
                }
                rules.extend(r.rules.iter().cloned());
            }
            Some(StoryRow {
                updated: reports
                    .iter()
                    .map(|r| r.story_updated.as_str())
                    .max()
                    .unwrap_or_default()
                    .to_string(),
                snippet: fullest.snippet.clone(),
                story,
                headline: fullest.title.clone(),
                link: fullest.link.clone(),
                outlets,
                first_seen: reports.first()?.first_seen.clone(),
                last_seen: reports.last()?.first_seen.clone(),
                rules: rules.into_iter().collect(),
                size: fullest.story_size,
                reports: reports.iter().map(|r| r.id).collect(),
                rows: reports.into_iter().cloned().collect(),
            })
        })
        .collect()
}

/// The host of a link, for telling an outlet's own boilerplate from shared wording.
fn host(link: Option<&str>) -> Option<String> {
    url::Url::parse(link?).ok()?.host_str().map(str::to_string)
}

/// The engine's view of one stored item (read by both backends).
pub(crate) struct ItemText {
    pub(crate) id: i64,
    pub(crate) story: i64,
    /// Never placed before: a new report (not an edit or another feed's copy).
    pub(crate) new: bool,
    /// Found by `backfill`: never alerts from a placement.
    pub(crate) backfilled: bool,
    pub(crate) title: String,
    pub(crate) summary: String,
    pub(crate) content: String,
    pub(crate) link: Option<String>,
    pub(crate) published: Option<String>,
    pub(crate) first_seen: String,
}

impl ItemText {
    /// Published time when believable, else first-seen time.
    pub(crate) fn time(&self) -> DateTime<Utc> {
        let when = effective_time(self.published.as_deref(), &self.first_seen);
        parse_ts(when).unwrap_or_else(Utc::now)
    }

    pub(crate) fn features(&self, df: &DocFreq) -> Features {
        let time = self.time();
        let body = if self.content.is_empty() {
            &self.summary
        } else {
            &self.content
        };
        let host = host(self.link.as_deref());
        Features::new(
            &Report {
                item: self.id,
                time,
                title: &self.title,
                body,
                host: host.as_deref(),
            },
            df,
        )
    }
}

/// What placement reads of an item (`items` rows, both backends).
pub(crate) const ITEM_TEXT: &str =
    "SELECT id, story_id, title, summary, content, link, published_at,
       first_seen_at, story_features IS NULL, backfilled FROM items";

fn item_text(r: &rusqlite::Row<'_>) -> rusqlite::Result<ItemText> {
    Ok(ItemText {
        id: r.get(0)?,
        story: r.get::<_, Option<i64>>(1)?.unwrap_or(0),
        title: r.get(2)?,
        summary: r.get(3)?,
        content: r.get(4)?,
        link: r.get(5)?,
        published: r.get(6)?,
        first_seen: r.get(7)?,
        new: r.get(8)?,
        backfilled: r.get::<_, i64>(9)? != 0,
    })
}

impl Store {
    /// Use these clustering parameters (`[stories]`); the window is rebuilt on next use.
    pub fn set_story_settings(&mut self, settings: StorySettings) {
        if self.stories.settings != settings {
            self.stories.settings = settings;
            self.stories.index = None;
        }
    }

    /// The document frequencies over every polled entry, shared with the poller (which
    /// observes each new or changed entry) and saved by [`Store::place_stories`].
    pub fn doc_freq(&mut self) -> Result<Arc<Mutex<DocFreq>>> {
        shared_doc_freq(&mut self.stories, &self.conn)
    }

    /// Place every pending item (stored or changed since the last pass) into its story, and
    /// save the document frequencies. One transaction; cheap when nothing is pending.
    pub fn place_stories(&mut self, now: DateTime<Utc>) -> Result<Placed> {
        let state = &mut self.stories;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let generation: i64 =
            tx.query_row("SELECT generation FROM story_state WHERE id = 1", [], |r| {
                r.get(0)
            })?;
        let pending: Vec<ItemText> = tx
            .prepare_cached(&format!("{ITEM_TEXT} WHERE story_pending = 1 ORDER BY id"))?
            .query_map([], item_text)?
            .collect::<rusqlite::Result<_>>()?;
        let mut placed = Placed::default();
        if pending.is_empty() {
            // The document frequencies are saved when something was counted since they were
            // read or last saved; a cycle of 304s never reads them (nor writes back the same
            // ~300 KB blob, ~12% of a warm poll's WAL frames).
            let Some(df) = &state.doc_freq else {
                tx.commit()?;
                return Ok(placed);
            };
            let df = df.lock().unwrap_or_else(|p| p.into_inner());
            let revision = df.revision();
            if revision != state.saved_revision {
                save_doc_freq(&tx, &df, false)?;
            }
            tx.commit()?;
            state.saved_revision = revision;
            return Ok(placed);
        }
        let df = shared_doc_freq(state, &tx)?;
        let df = df.lock().unwrap_or_else(|p| p.into_inner());
        // The stories a pending report may join lie within the window around its own time,
        // which for a new feed's backlog can be long before now.
        let times: Vec<DateTime<Utc>> = pending.iter().map(ItemText::time).collect();
        let oldest = times.iter().copied().min().unwrap_or(now).min(now);
        let since = oldest - state.settings.window - chrono::Duration::days(1);
        let covered = state.loaded_since.is_some_and(|t| t <= since);
        if state.index.is_none() || state.generation != generation || !covered {
            state.index = Some(load_window(&tx, &state.settings, &df, since)?);
            state.loaded_since = Some(since);
        }
        let Some(index) = state.index.as_mut() else {
            return Err(StoreError::Corrupt("story window not loaded".into()));
        };
        let now_s = ts(now);
        for item in &pending {
            let features = item.features(&df);
            let blob = features.to_bytes();
            // If this placement starts a story, it gets a database id, never the engine's own.
            let alone = index
                .story_of(item.id)
                .is_none_or(|s| s == item.story && index.members(s).len() <= 1);
            let fresh = if alone {
                // Not placed yet, or alone in its story: if it starts a story, it is its own
                // story still (a story's id does not change because its only report was edited).
                item.story
            } else {
                next_story_id(&mut Sqlite(&tx))?
            };
            index.set_new_story_id(fresh);
            let p = index.place(item.id, features);
            let evidence = serde_json::to_string(&p.evidence).ok();
            tx.prepare_cached(
                "INSERT INTO stories (id, first_seen_at, updated_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT(id) DO UPDATE SET updated_at = excluded.updated_at,
                   first_seen_at = min(first_seen_at, excluded.first_seen_at)",
            )?
            .execute(params![p.story, item.first_seen, now_s])?;
            tx.prepare_cached(
                "UPDATE items SET story_id = ?2, story_pending = 0, story_evidence = ?3,
                   story_features = ?4 WHERE id = ?1",
            )?
            .execute(params![item.id, p.story, evidence, blob])?;
            if p.story != item.story {
                // Left (or never really had) its old story: drop it if nobody else is in it.
                tx.prepare_cached(
                    "DELETE FROM stories WHERE id = ?1
                       AND NOT EXISTS (SELECT 1 FROM items WHERE story_id = ?1)",
                )?
                .execute([item.story])?;
            }
            placed.items += 1;
            placed.joined += usize::from(p.joined);
        }
        // Alerts go by story, in this transaction: a new report's story may be new (or first
        // match an alert's rules); any touched story may reach an `update_at` outlet count.
        let (fresh, touched): (Vec<&ItemText>, Vec<&ItemText>) = pending
            .iter()
            .filter(|i| !i.backfilled)
            .partition(|i| i.new);
        let ids = |v: Vec<&ItemText>| v.into_iter().map(|i| i.id).collect::<Vec<_>>();
        let db = &mut Sqlite(&tx);
        super::alerts::enqueue_for_items(db, &self.alerts, &ids(fresh), true, &now_s)?;
        super::alerts::enqueue_for_items(db, &self.alerts, &ids(touched), false, &now_s)?;
        // Keep what later reports of this age may still join; drop the rest.
        index.evict(oldest);
        if let Some(t) = state.loaded_since.as_mut() {
            *t = (*t).max(oldest - state.settings.window);
        }
        save_doc_freq(&tx, &df, true)?;
        state.generation = generation + 1;
        tx.commit()?;
        state.saved_revision = df.revision();
        Ok(placed)
    }

    /// [`story_split`] on this database.
    pub fn story_split(&mut self, item: i64, now: DateTime<Utc>) -> Result<i64> {
        let threshold = self.stories.settings.threshold;
        story_split(self, item, threshold, now)
    }

    /// [`story_merge`] on this database.
    pub fn story_merge(&mut self, a: i64, b: i64, now: DateTime<Utc>) -> Result<()> {
        let threshold = self.stories.settings.threshold;
        story_merge(self, a, b, threshold, now)
    }

    /// [`story_heads`] on this database.
    pub fn story_heads(&self, stories: &[i64]) -> Result<std::collections::HashMap<i64, MatchRow>> {
        story_heads(&mut Sqlite(&self.conn), stories)
    }

    /// [`story_items`] on this database.
    pub fn story_items(&self, story: i64) -> Result<Vec<i64>> {
        story_items(&mut Sqlite(&self.conn), story)
    }

    /// [`story`] on this database.
    pub fn story(&self, id: i64) -> Result<Option<StoryDetail>> {
        story(&mut Sqlite(&self.conn), id)
    }
}

/// Inside a write transaction of a manual story decision: on PostgreSQL, wait for the lock
/// that serialises placement (workers placing stories, other people's `split`/`merge`).
fn lock_placement(tx: &mut dyn Db) -> Result<()> {
    if tx.dialect() == Dialect::Postgres {
        tx.rows(
            "SELECT pg_advisory_xact_lock(?1)",
            &[Val::Int(super::postgres::poll::STORY_LOCK)],
        )?;
    }
    Ok(())
}

/// Take report `item` out of its story into one of its own, pinned there (re-scoring never
/// moves it back). Returns the new story id. `threshold` is recorded in its evidence.
pub fn story_split(db: &mut dyn Db, item: i64, threshold: f32, now: DateTime<Utc>) -> Result<i64> {
    sql::transaction(db, |tx| {
        lock_placement(tx)?;
        let story: Option<i64> = match tx.row(
            "SELECT story_id FROM items WHERE id = ?1",
            &[Val::Int(item)],
        )? {
            Some(r) => r.get(0)?,
            None => None,
        };
        let Some(story) = story else {
            return Err(StoreError::NotFound(format!("no match with id {item}")));
        };
        let others: i64 = sql::value(
            tx,
            "SELECT count(*) FROM items WHERE story_id = ?1 AND id <> ?2",
            &[Val::Int(story), Val::Int(item)],
        )?;
        let to = if others == 0 {
            story
        } else {
            let to = next_story_id(tx)?;
            tx.exec(
                "INSERT INTO stories (id, first_seen_at, updated_at)
                 SELECT ?1, first_seen_at, ?2 FROM items WHERE id = ?3",
                &[Val::Int(to), Val::Text(ts(now)), Val::Int(item)],
            )?;
            tx.exec(
                "UPDATE stories SET updated_at = ?2 WHERE id = ?1",
                &[Val::Int(story), Val::Text(ts(now))],
            )?;
            to
        };
        let evidence = serde_json::to_string(&Evidence {
            story: Some(to),
            manual: true,
            threshold,
            ..Evidence::default()
        })
        .ok();
        tx.exec(
            "UPDATE items SET story_id = ?2, story_pinned = 1, story_evidence = ?3 WHERE id = ?1",
            &[Val::Int(item), Val::Int(to), Val::from(evidence)],
        )?;
        bump(tx)?;
        Ok(to)
    })
}

/// Join story `b` into story `a`: every report of both is pinned in `a`.
pub fn story_merge(
    db: &mut dyn Db,
    a: i64,
    b: i64,
    threshold: f32,
    now: DateTime<Utc>,
) -> Result<()> {
    sql::transaction(db, |tx| {
        lock_placement(tx)?;
        for id in [a, b] {
            let exists: bool = sql::value(
                tx,
                "SELECT EXISTS (SELECT 1 FROM stories WHERE id = ?1)",
                &[Val::Int(id)],
            )?;
            if !exists {
                return Err(StoreError::NotFound(format!("no story with id {id}")));
            }
        }
        if a != b {
            let evidence = serde_json::to_string(&Evidence {
                story: Some(a),
                manual: true,
                threshold,
                ..Evidence::default()
            })
            .ok();
            tx.exec(
                "UPDATE items SET story_id = ?1, story_evidence = ?3 WHERE story_id = ?2",
                &[Val::Int(a), Val::Int(b), Val::from(evidence)],
            )?;
            let first = tx.dialect().least(
                "first_seen_at",
                "(SELECT first_seen_at FROM stories WHERE id = ?3)",
            );
            tx.exec(
                &format!(
                    "UPDATE stories SET updated_at = ?2, first_seen_at = {first} WHERE id = ?1"
                ),
                &[Val::Int(a), Val::Text(ts(now)), Val::Int(b)],
            )?;
            tx.exec("DELETE FROM stories WHERE id = ?1", &[Val::Int(b)])?;
        }
        tx.exec(
            "UPDATE items SET story_pinned = 1 WHERE story_id = ?1",
            &[Val::Int(a)],
        )?;
        bump(tx)
    })
}

/// For each of `stories`: its fullest report standing for it (with the outlets and rules
/// of all its reports), as alerts and exports show a story.
pub fn story_heads(
    db: &mut dyn Db,
    stories: &[i64],
) -> Result<std::collections::HashMap<i64, MatchRow>> {
    let mut ids = Vec::new();
    for &s in stories {
        ids.extend(story_items(db, s)?);
    }
    let mut out = std::collections::HashMap::new();
    if ids.is_empty() {
        return Ok(out);
    }
    let rows = super::matches(
        db,
        &super::MatchFilter {
            ids,
            ..super::MatchFilter::default()
        },
    )?;
    for g in group(&rows, usize::MAX) {
        let Some(head) = g
            .rows
            .iter()
            .find(|r| r.title == g.headline && r.link == g.link)
            .or(g.rows.first())
        else {
            continue;
        };
        let mut head = head.clone();
        head.feeds = g.outlets.clone();
        head.rules = g.rules.clone();
        out.insert(g.story, head);
    }
    Ok(out)
}

/// The match ids of a story's reports (empty: no such story).
pub fn story_items(db: &mut dyn Db, story: i64) -> Result<Vec<i64>> {
    db.rows(
        "SELECT id FROM items WHERE story_id = ?1 ORDER BY id",
        &[Val::Int(story)],
    )?
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// A story and its reports, oldest first; `None` when there is no such story.
pub fn story(db: &mut dyn Db, id: i64) -> Result<Option<StoryDetail>> {
    let Some(head) = db.row(
        "SELECT first_seen_at, updated_at FROM stories WHERE id = ?1",
        &[Val::Int(id)],
    )?
    else {
        return Ok(None);
    };
    let (first_seen, updated): (String, String) = (head.get(0)?, head.get(1)?);
    let feeds = db.dialect().json_list(
        "name",
        "SELECT DISTINCT f.name AS name FROM sightings s
          JOIN feeds f ON f.id = s.feed_id WHERE s.item_id = i.id",
        "name",
    );
    let reports = db
        .rows(
            &format!(
                "SELECT i.id, i.title, i.link, i.published_at, i.first_seen_at, i.status, i.story_pinned,
                   i.story_evidence, {feeds}
                 FROM items i WHERE i.story_id = ?1 ORDER BY i.first_seen_at, i.id"
            ),
            &[Val::Int(id)],
        )?
        .iter()
        .map(|r| {
            let evidence: Option<String> = r.get(7)?;
            let feeds: String = r.get(8)?;
            Ok(StoryReport {
                id: r.get(0)?,
                title: r.get(1)?,
                link: crate::text::outgoing_link(r.get(2)?),
                published: r.get(3)?,
                first_seen: r.get(4)?,
                status: r.get(5)?,
                pinned: r.get::<i64>(6)? != 0,
                evidence: evidence.and_then(|e| serde_json::from_str(&e).ok()),
                feeds: serde_json::from_str(&feeds).unwrap_or_default(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Some(StoryDetail {
        id,
        first_seen,
        updated,
        reports,
    }))
}

/// The id a new story gets: above every story id in use (inside a write transaction, so no
/// other process can take it meanwhile; on PostgreSQL under the placement lock).
fn next_story_id(tx: &mut dyn Db) -> Result<i64> {
    sql::value(tx, "SELECT COALESCE(max(id), 0) + 1 FROM stories", &[])
}

/// A manual decision changed stories: every process's window must be reloaded.
fn bump(tx: &mut dyn Db) -> Result<()> {
    tx.exec(
        "UPDATE story_state SET generation = generation + 1 WHERE id = 1",
        &[],
    )?;
    Ok(())
}

/// `state`'s document frequencies, read from the database the first time.
fn shared_doc_freq(
    state: &mut StoryState,
    conn: &rusqlite::Connection,
) -> Result<Arc<Mutex<DocFreq>>> {
    if let Some(df) = &state.doc_freq {
        return Ok(df.clone());
    }
    let df = Arc::new(Mutex::new(read_doc_freq(conn)?));
    state.doc_freq = Some(df.clone());
    state.saved_revision = 0;
    Ok(df)
}

/// The stored document frequencies (a fresh table when none are stored, or when the stored
/// blob cannot be read).
fn read_doc_freq(conn: &rusqlite::Connection) -> Result<DocFreq> {
    let blob: Option<Vec<u8>> = conn
        .query_row("SELECT doc_freq FROM story_state WHERE id = 1", [], |r| {
            r.get(0)
        })
        .optional()?
        .flatten();
    Ok(match blob {
        Some(b) => DocFreq::from_bytes(&b).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "stored document frequencies unreadable: counting afresh");
            DocFreq::new()
        }),
        None => DocFreq::new(),
    })
}

/// Save the document frequencies (and, with `placed`, count a new generation).
fn save_doc_freq(tx: &Transaction<'_>, df: &DocFreq, placed: bool) -> Result<()> {
    tx.prepare_cached(
        "UPDATE story_state SET doc_freq = ?1, generation = generation + ?2 WHERE id = 1",
    )?
    .execute(params![df.to_bytes(), i64::from(placed)])?;
    Ok(())
}

/// The stories of stored items whose time (published or first seen) is at or after `since`,
/// rebuilt from the stored items (features from their saved blobs; items stored before
/// stories existed get theirs computed). A pending item that was placed before (an edit) is
/// loaded where it was, so that placing it re-scores it (and a pinned one stays put); a new
/// one is not.
fn load_window(
    tx: &Transaction<'_>,
    settings: &StorySettings,
    df: &DocFreq,
    since: DateTime<Utc>,
) -> Result<StoryIndex> {
    let next: i64 = tx.query_row("SELECT COALESCE(max(id), 0) + 1 FROM stories", [], |r| {
        r.get(0)
    })?;
    let mut index = StoryIndex::with_next_id(settings.clone(), next);
    let mut stmt = tx.prepare_cached(
        "SELECT id, story_id, title, summary, content, link, published_at, first_seen_at,
           story_features IS NULL, backfilled, story_pinned, story_features
         FROM items WHERE story_id IS NOT NULL
           AND (story_pending = 0 OR story_features IS NOT NULL)
           AND (first_seen_at >= ?1 OR published_at >= ?1)
         ORDER BY id",
    )?;
    let mut rows = stmt.query([ts(since)])?;
    while let Some(r) = rows.next()? {
        let item = item_text(r)?;
        let pinned = r.get::<_, i64>(10)? != 0;
        let blob: Option<Vec<u8>> = r.get(11)?;
        let features = blob
            .as_deref()
            .and_then(Features::from_bytes)
            .unwrap_or_else(|| item.features(df));
        index.insert_existing(item.id, item.story, pinned, features);
    }
    Ok(index)
}
