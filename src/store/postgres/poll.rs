//! The poll path on PostgreSQL: [`PgStore`] implements [`PollStore`] with the same rows as the
//! SQLite [`Store`](crate::store::Store) writes (the statements of `store/mod.rs`,
//! `store/archive.rs` and `store/stories.rs`, in PostgreSQL's dialect), plus the feed leases
//! that let several `newswatch run` workers share one database.
//!
//! Leases (migration 0009): a worker claims due feeds in small batches with
//! `SELECT … FOR UPDATE SKIP LOCKED`, setting `lease_owner` to its worker id and `lease_until`
//! to now + `[cluster] lease`. A feed is due when `next_due_at` has passed (or was never set)
//! and it has no lease or its lease ran out. Writing the feed's result (in the feed's
//! part of the grouped write) clears the lease, sets `last_worker` and the next due time,
//! and only happens while the lease is still this worker's: a worker that stalled past its
//! lease writes nothing (its feed's part of the group is skipped), so one poll per due time is stored.
//! A worker killed with kill -9 holds its leases until they run out; then the others claim
//! those feeds. `newswatch poll` takes no leases (like the SQLite `poll`, it polls what it is
//! told to) and leaves other workers' leases alone.
//!
//! Times are the workers' clocks, as RFC 3339 text (as everywhere in the schema): the
//! workers' clocks must agree to well within the lease (NTP).
//!
//! Statements are prepared once per connection ([`Statements`]), as SQLite's
//! `prepare_cached`: a poll runs the same few statements thousands of times.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use postgres::{GenericClient, Statement, Transaction};

use super::{PgDb, one_line};
use crate::pipeline::fetch::Validators;
use crate::pipeline::stories::{DocFreq, Features, StoryIndex, StorySettings};
use crate::store::alerts::{AlertPlan, enqueue_for_items};
use crate::store::stories::{ITEM_TEXT, ItemText, Placed, StoryState};
use crate::store::{
    CommitCounts, EntryRecord, EntryText, FeedState, FeedStatus, FeedWrite, FetchFacts, MatchPlace,
    MatchedEntry, PollStore, Result, StoreError, parse_ts, ts,
};

/// Key of the transaction-scoped advisory lock that serialises story placement between
/// workers ("nwstory" in ASCII): one placement at a time sees and places the pending items.
pub(crate) const STORY_LOCK: i64 = 0x6e77_7374_6f72_7900;

/// Key of the transaction-scoped advisory lock that serialises claims ("nwclaim"), so that
/// each claim counts every host's live leases exactly.
const CLAIM_LOCK: i64 = 0x6e77_636c_6169_6d00;

/// The host a feed is fetched from, as the poll service's per-host limit keys it.
fn host_of(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_default()
}

/// Key of the advisory lock that serialises `sync_feeds` (several workers starting at once).
const SYNC_LOCK: i64 = 0x6e77_6665_6564_7300;

/// Prepared statements of one connection, by their SQL text.
#[derive(Default)]
pub(super) struct Statements(HashMap<&'static str, Statement>);

impl Statements {
    pub(super) fn get(
        &mut self,
        c: &mut impl GenericClient,
        sql: &'static str,
    ) -> std::result::Result<Statement, postgres::Error> {
        if let Some(s) = self.0.get(sql) {
            return Ok(s.clone());
        }
        let s = c.prepare(sql)?;
        self.0.insert(sql, s.clone());
        Ok(s)
    }
}

/// A PostgreSQL error as the store's one-line error naming the database.
pub(super) trait At<T> {
    fn at(self, target: &str) -> Result<T>;
}

impl<T> At<T> for std::result::Result<T, postgres::Error> {
    fn at(self, target: &str) -> Result<T> {
        self.map_err(|e| StoreError::Postgres {
            target: target.to_string(),
            reason: one_line(&e),
        })
    }
}

/// One feed's claim, as [`PgStore::claim_due`] returns it.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub state: FeedState,
}

/// Who writes: the database, whether entries are archived, and the lease the writes need.
struct Writer<'a> {
    target: &'a str,
    archive: bool,
    /// `Some(worker)`: writes only land while the feed's lease is this worker's.
    lease: Option<&'a str>,
    worker: &'a str,
}

/// A connection to a newswatch PostgreSQL database for polling (see the module docs).
pub struct PgStore {
    /// Always `Some` until dropped (see the `Drop` impl).
    db: Option<PgDb>,
    target: String,
    /// Where to connect again when the connection is lost (never printed: it may hold the
    /// password).
    url: String,
    password: Option<String>,
    stmts: Statements,
    /// Keep every polled entry's text in the archive (`[archive] keep`).
    archive: bool,
    stories: StoryState,
    /// The document frequencies as last read from or written to the database: what this
    /// worker counted since is its own, to add to what other workers saved meanwhile.
    df_base: Option<DocFreq>,
    /// This worker's id (`last_worker`, and `lease_owner` when leasing).
    worker: String,
    /// Whether writes need this worker's lease (`run`), or not (`poll`).
    leasing: bool,
    /// What the placement enqueues for `[[alerts]]` (as [`crate::store::Store::set_alerts`]).
    alerts: AlertPlan,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("target", &self.target)
            .field("worker", &self.worker)
            .field("leasing", &self.leasing)
            .finish()
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        // The sync client owns a small tokio runtime, which must not be dropped on a thread
        // that runs async code (tokio panics there): hand it to a thread of its own then.
        if let Some(db) = self.db.take()
            && tokio::runtime::Handle::try_current().is_ok()
        {
            let _ = std::thread::Builder::new()
                .name("pg-close".into())
                .spawn(move || drop(db));
        }
    }
}

impl PgStore {
    /// Connect, bring the schema up to date, and poll as `worker`; with `leasing`, writes
    /// need the feed's lease ([`PgStore::claim_due`]). Must not be called on a thread running
    /// async code (see [`super`]).
    pub fn open(
        url: &str,
        password: Option<&str>,
        worker: String,
        leasing: bool,
    ) -> Result<PgStore> {
        let mut db = PgDb::connect(url, password)?;
        db.migrate()?;
        Ok(PgStore {
            target: db.target().to_string(),
            db: Some(db),
            url: url.to_string(),
            password: password.map(str::to_string),
            stmts: Statements::default(),
            archive: true,
            stories: StoryState::default(),
            df_base: None,
            worker,
            leasing,
            alerts: AlertPlan::default(),
        })
    }

    /// Which alerts story placement enqueues (empty: none).
    pub fn set_alerts(&mut self, plan: AlertPlan) {
        self.alerts = plan;
    }

    /// `user@host:port/dbname`.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// This worker's id.
    pub fn worker(&self) -> &str {
        &self.worker
    }

    /// Keep every polled entry's text in the archive (on by default).
    pub fn set_archive(&mut self, on: bool) {
        self.archive = on;
    }

    /// Use these clustering parameters (`[stories]`).
    pub fn set_story_settings(&mut self, settings: StorySettings) {
        if self.stories.settings != settings {
            self.stories.settings = settings;
            self.stories.index = None;
        }
    }

    /// The connection and the statement cache, split so both can be borrowed.
    pub(super) fn parts(&mut self) -> Result<(&mut postgres::Client, &mut Statements)> {
        self.reconnect_if_lost()?;
        match self.db.as_mut() {
            Some(db) => Ok((db.client(), &mut self.stmts)),
            None => Err(StoreError::Postgres {
                target: self.target.clone(),
                reason: "connection closed".into(),
            }),
        }
    }

    /// The connection (opened again if it was lost), as a [`crate::store::sql::Db`].
    pub(super) fn connection(&mut self) -> Result<&mut PgDb> {
        self.reconnect_if_lost()?;
        match self.db.as_mut() {
            Some(db) => Ok(db),
            None => Err(StoreError::Postgres {
                target: self.target.clone(),
                reason: "connection closed".into(),
            }),
        }
    }

    /// Which alerts story placement enqueues.
    pub(super) fn alert_plan(&self) -> &AlertPlan {
        &self.alerts
    }

    /// A connection the server closed (restarted, failed over, `pg_terminate_backend`) is
    /// opened again on the next call, so a worker outlives its server's restarts: the call
    /// that met the closed connection failed (its feed is retried), the next one reconnects.
    /// A failed reconnect is this call's error; the next call tries again.
    fn reconnect_if_lost(&mut self) -> Result<()> {
        if self.db.as_mut().is_some_and(|db| !db.client().is_closed()) {
            return Ok(());
        }
        tracing::warn!(target = %self.target, "connection to PostgreSQL lost: reconnecting");
        let db = PgDb::connect(&self.url, self.password.as_deref())?;
        // Prepared statements belonged to the old connection.
        self.stmts = Statements::default();
        self.db = Some(db);
        tracing::info!(target = %self.target, "reconnected to PostgreSQL");
        Ok(())
    }

    /// Make the feeds table agree with the config (as [`crate::store::Store::sync_feeds`]),
    /// in one transaction under an advisory lock (workers starting together take turns).
    pub fn sync_feeds<'a>(
        &mut self,
        feeds: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<()> {
        let (names, urls): (Vec<&str>, Vec<&str>) = feeds.into_iter().unzip();
        let t = self.target.clone();
        let (client, _) = self.parts()?;
        let mut tx = client.transaction().at(&t)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SYNC_LOCK])
            .at(&t)?;
        tx.execute(
            "UPDATE feeds SET in_config = 0 WHERE in_config <> 0 AND NOT (name = ANY($1::text[]))",
            &[&names],
        )
        .at(&t)?;
        tx.execute(
            "INSERT INTO feeds (name, url, in_config)
             SELECT n, u, 1 FROM unnest($1::text[], $2::text[]) AS c(n, u)
             ON CONFLICT (name) DO UPDATE SET in_config = 1,
               etag = CASE WHEN feeds.url = excluded.url THEN feeds.etag END,
               last_modified = CASE WHEN feeds.url = excluded.url THEN feeds.last_modified END,
               effective_url = CASE WHEN feeds.url = excluded.url THEN feeds.effective_url END,
               next_due_at = CASE WHEN feeds.url = excluded.url THEN feeds.next_due_at END,
               url = excluded.url
             WHERE feeds.in_config <> 1 OR feeds.url <> excluded.url",
            &[&names, &urls],
        )
        .at(&t)?;
        tx.commit().at(&t)
    }

    /// Record the rules in force (as [`crate::store::Store::register_rules`]): the new or
    /// changed ones that archived entries were not checked against, with their counts.
    pub fn register_rules(
        &mut self,
        rules: &[(String, String)],
        now: DateTime<Utc>,
    ) -> Result<Vec<crate::store::archive::UnappliedRule>> {
        let t = self.target.clone();
        let now_s = ts(now);
        let (client, _) = self.parts()?;
        let mut tx = client.transaction().at(&t)?;
        let mut out = Vec::new();
        for (rule, query) in rules {
            // Of two workers registering one new version at once, one inserts it: the other
            // waits on the key, then does nothing. So one worker learns that it is new.
            let new = tx
                .execute(
                    "INSERT INTO rule_versions (rule, query, first_active_at) VALUES ($1, $2, $3)
                     ON CONFLICT DO NOTHING",
                    &[rule, query, &now_s],
                )
                .at(&t)?
                > 0;
            if new {
                let entries: i64 = tx
                    .query_one(
                        "SELECT count(*) FROM archive WHERE first_seen_at < $1",
                        &[&now_s],
                    )
                    .at(&t)?
                    .try_get(0)
                    .at(&t)?;
                if entries > 0 {
                    out.push(crate::store::archive::UnappliedRule {
                        rule: rule.clone(),
                        entries: entries as u64,
                    });
                }
            }
        }
        tx.commit().at(&t)?;
        Ok(out)
    }

    /// Claim up to `max` due feeds for this worker until `now + lease` (see the module docs),
    /// the most overdue first, keeping every host's live leases (across all workers) within
    /// `per_host`: a lease lasts from the claim until the result is written, so live leases
    /// are the fetches in flight, and `[http] per_host` holds cluster-wide. Claims take turns
    /// (an advisory lock around one short transaction), so the counts they see are exact.
    pub fn claim_due(
        &mut self,
        max: usize,
        per_host: usize,
        lease: std::time::Duration,
        now: DateTime<Utc>,
    ) -> Result<Vec<Claimed>> {
        let t = self.target.clone();
        let now_s = ts(now);
        let until =
            ts(now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::minutes(2)));
        // Look past the first `max` due feeds: some may be held back by their host's limit.
        let look = i64::try_from(max.saturating_mul(8).max(64)).unwrap_or(i64::MAX);
        let worker = self.worker.clone();
        let (client, stmts) = self.parts()?;
        let due = stmts
            .get(
                client,
                "SELECT id, COALESCE(effective_url, url) FROM feeds
                 WHERE in_config = 1 AND (next_due_at IS NULL OR next_due_at <= $1)
                   AND (lease_until IS NULL OR lease_until <= $1)
                 ORDER BY next_due_at NULLS FIRST, id
                 LIMIT $2
                 FOR UPDATE SKIP LOCKED",
            )
            .at(&t)?;
        let live = stmts
            .get(
                client,
                "SELECT COALESCE(effective_url, url) FROM feeds WHERE lease_until > $1",
            )
            .at(&t)?;
        let take = stmts
            .get(
                client,
                "UPDATE feeds SET lease_owner = $2, lease_until = $3 WHERE id = ANY($1)
                 RETURNING id, name, url, effective_url, etag, last_modified,
                   consecutive_failures, next_due_at",
            )
            .at(&t)?;
        let mut tx = client.transaction().at(&t)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&CLAIM_LOCK])
            .at(&t)?;
        let candidates = tx.query(&due, &[&now_s, &look]).at(&t)?;
        if candidates.is_empty() {
            tx.commit().at(&t)?;
            return Ok(Vec::new());
        }
        let mut busy: HashMap<String, usize> = HashMap::new();
        for r in tx.query(&live, &[&now_s]).at(&t)? {
            let url: String = r.try_get(0).at(&t)?;
            *busy.entry(host_of(&url)).or_default() += 1;
        }
        let mut ids: Vec<i64> = Vec::new();
        for r in &candidates {
            if ids.len() >= max {
                break;
            }
            let id: i64 = r.try_get(0).at(&t)?;
            let url: String = r.try_get(1).at(&t)?;
            let n = busy.entry(host_of(&url)).or_default();
            if *n < per_host {
                *n += 1;
                ids.push(id);
            }
        }
        let rows = tx.query(&take, &[&ids, &worker, &until]).at(&t)?;
        tx.commit().at(&t)?;
        let mut claimed = rows
            .iter()
            .map(|r| feed_state_row(r).at(&t).map(|state| Claimed { state }))
            .collect::<Result<Vec<_>>>()?;
        // Most overdue first, as claimed (RETURNING has no order).
        claimed.sort_by_key(|c| ids.iter().position(|&i| i == c.state.id));
        Ok(claimed)
    }

    /// When this worker should next look for due feeds: the earliest due time of a feed
    /// without a live lease, or the earliest end of a live lease (its worker may have died).
    pub fn next_wake(&mut self, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>> {
        let t = self.target.clone();
        let now_s = ts(now);
        let (client, stmts) = self.parts()?;
        let stmt = stmts
            .get(
                client,
                "SELECT min(CASE WHEN lease_until > $1 THEN lease_until
                                 ELSE COALESCE(next_due_at, $1) END)
                 FROM feeds WHERE in_config = 1",
            )
            .at(&t)?;
        let at: Option<String> = client
            .query_one(&stmt, &[&now_s])
            .at(&t)?
            .try_get(0)
            .at(&t)?;
        Ok(at.as_deref().and_then(parse_ts))
    }

    /// Give up every lease this worker holds (a clean stop: the others need not wait for
    /// them to run out). Returns how many.
    pub fn release_leases(&mut self) -> Result<u64> {
        let t = self.target.clone();
        let worker = self.worker.clone();
        let (client, _) = self.parts()?;
        client
            .execute(
                "UPDATE feeds SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = $1",
                &[&worker],
            )
            .at(&t)
    }

    /// Every feed's status, configured ones first, by name (as
    /// [`crate::store::Store::feed_statuses`], with the worker that last polled it).
    pub fn feed_statuses(&mut self) -> Result<Vec<FeedStatus>> {
        let t = self.target.clone();
        let (client, _) = self.parts()?;
        let rows = client
            .query(
                "SELECT f.name, f.url, f.effective_url, f.title, f.last_fetch_at, f.last_success_at,
                   f.last_status, f.last_http_status, f.consecutive_failures, f.next_due_at,
                   (SELECT count(*) FROM sightings s WHERE s.feed_id = f.id),
                   (SELECT count(DISTINCT s.item_id) FROM sightings s
                      WHERE s.feed_id = f.id AND s.item_id IS NOT NULL),
                   f.last_error, f.in_config, f.last_worker
                 FROM feeds f ORDER BY f.in_config DESC, f.name",
                &[],
            )
            .at(&t)?;
        rows.iter()
            .map(|r| {
                Ok(FeedStatus {
                    name: r.try_get(0)?,
                    url: r.try_get(1)?,
                    effective_url: r.try_get(2)?,
                    title: r.try_get(3)?,
                    last_fetch_at: r.try_get(4)?,
                    last_success_at: r.try_get(5)?,
                    last_status: r.try_get(6)?,
                    last_http_status: r.try_get(7)?,
                    consecutive_failures: r.try_get(8)?,
                    next_due_at: r.try_get(9)?,
                    items: r.try_get(10)?,
                    matches: r.try_get(11)?,
                    last_error: r.try_get(12)?,
                    in_config: r.try_get::<_, i64>(13)? != 0,
                    last_worker: r.try_get(14)?,
                })
            })
            .collect::<std::result::Result<Vec<_>, postgres::Error>>()
            .at(&t)
    }

    fn lease(&self) -> Option<&str> {
        self.leasing.then_some(self.worker.as_str())
    }
}

fn feed_state_row(r: &postgres::Row) -> std::result::Result<FeedState, postgres::Error> {
    Ok(FeedState {
        id: r.try_get(0)?,
        name: r.try_get(1)?,
        url: r.try_get(2)?,
        effective_url: r.try_get(3)?,
        validators: Validators {
            etag: r.try_get(4)?,
            last_modified: r.try_get(5)?,
        },
        consecutive_failures: u32::try_from(r.try_get::<_, i64>(6)?).unwrap_or(u32::MAX),
        next_due_at: r
            .try_get::<_, Option<String>>(7)?
            .as_deref()
            .and_then(parse_ts),
    })
}

const FEED_STATE_SELECT: &str = "SELECT id, name, url, effective_url, etag, last_modified, \
     consecutive_failures, next_due_at FROM feeds";

impl PollStore for PgStore {
    fn feed_state(&mut self, name: &str) -> Result<Option<FeedState>> {
        let t = self.target.clone();
        let (client, stmts) = self.parts()?;
        let stmt = stmts
            .get(client, "SELECT id, name, url, effective_url, etag, last_modified, consecutive_failures, next_due_at FROM feeds WHERE name = $1")
            .at(&t)?;
        client
            .query_opt(&stmt, &[&name])
            .at(&t)?
            .map(|r| feed_state_row(&r).at(&t))
            .transpose()
    }

    fn feed_states(&mut self) -> Result<HashMap<String, FeedState>> {
        let t = self.target.clone();
        let (client, _) = self.parts()?;
        let rows = client.query(FEED_STATE_SELECT, &[]).at(&t)?;
        let mut out = HashMap::new();
        for r in &rows {
            let s = feed_state_row(r).at(&t)?;
            out.insert(s.name.clone(), s);
        }
        Ok(out)
    }

    fn known_entries(&mut self, feed_id: i64) -> Result<HashMap<[u8; 16], [u8; 16]>> {
        let t = self.target.clone();
        let (client, stmts) = self.parts()?;
        let stmt = stmts
            .get(
                client,
                "SELECT entry_key, fingerprint FROM sightings WHERE feed_id = $1",
            )
            .at(&t)?;
        let rows = client.query(&stmt, &[&feed_id]).at(&t)?;
        let mut out = HashMap::with_capacity(rows.len());
        for r in &rows {
            let k: Vec<u8> = r.try_get(0).at(&t)?;
            let f: Vec<u8> = r.try_get(1).at(&t)?;
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

    fn doc_freq(&mut self) -> Result<Arc<Mutex<DocFreq>>> {
        if let Some(df) = &self.stories.doc_freq {
            return Ok(df.clone());
        }
        let t = self.target.clone();
        let (client, _) = self.parts()?;
        let blob: Option<Vec<u8>> = client
            .query_opt("SELECT doc_freq FROM story_state WHERE id = 1", &[])
            .at(&t)?
            .map(|r| r.try_get(0))
            .transpose()
            .at(&t)?
            .flatten();
        let df = match blob {
            Some(b) => DocFreq::from_bytes(&b).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "stored document frequencies unreadable: counting afresh");
                DocFreq::new()
            }),
            None => DocFreq::new(),
        };
        self.df_base = Some(df.clone());
        let df = Arc::new(Mutex::new(df));
        self.stories.doc_freq = Some(df.clone());
        Ok(df)
    }

    fn write_feeds(&mut self, batch: &[FeedWrite]) -> Result<Vec<Result<CommitCounts>>> {
        let target = self.target.clone();
        let worker = self.worker.clone();
        let lease = self.lease().map(str::to_string);
        let archive = self.archive;
        let w = Writer {
            target: &target,
            archive,
            lease: lease.as_deref(),
            worker: &worker,
        };
        let (client, stmts) = self.parts()?;
        // The group in one transaction without a savepoint per feed (two round trips each);
        // a feed whose write fails aborts it, and then every feed is written again in a
        // transaction of its own, so that only the failing one is lost.
        let mut tx = client.transaction().at(&target)?;
        let mut out = Vec::with_capacity(batch.len());
        let mut failed = false;
        for write in batch {
            match write_one(&mut tx, stmts, &w, write) {
                // A lost lease is found before anything of the feed is written.
                Ok(None) => out.push(Err(lease_lost(&target, write.feed_id()))),
                Ok(Some(counts)) => out.push(Ok(counts)),
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        if !failed {
            tx.commit().at(&target)?;
            return Ok(out);
        }
        tx.rollback().at(&target)?;
        let mut out = Vec::with_capacity(batch.len());
        for write in batch {
            let mut tx = client.transaction().at(&target)?;
            match write_one(&mut tx, stmts, &w, write) {
                Ok(Some(counts)) => {
                    tx.commit().at(&target)?;
                    out.push(Ok(counts));
                }
                Ok(None) => {
                    tx.rollback().at(&target)?;
                    out.push(Err(lease_lost(&target, write.feed_id())));
                }
                Err(e) => {
                    tx.rollback().at(&target)?;
                    out.push(Err(e));
                }
            }
        }
        Ok(out)
    }

    fn record_failure(
        &mut self,
        feed_id: i64,
        reason: &str,
        http_status: Option<u16>,
        next_due_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<u32> {
        let t = self.target.clone();
        let worker = self.worker.clone();
        let lease = self.lease().map(str::to_string);
        let (client, stmts) = self.parts()?;
        let stmt = stmts
            .get(
                client,
                "UPDATE feeds SET last_fetch_at = $2, last_status = 'failed', last_http_status = $3,
                   last_error = $4, consecutive_failures = consecutive_failures + 1, next_due_at = $5,
                   last_worker = $6
                 WHERE id = $1 AND ($7::text IS NULL OR lease_owner = $7)
                 RETURNING consecutive_failures",
            )
            .at(&t)?;
        let row = client
            .query_opt(
                &stmt,
                &[
                    &feed_id,
                    &ts(now),
                    &http_status.map(i64::from),
                    &reason,
                    &next_due_at.map(ts),
                    &worker,
                    &lease,
                ],
            )
            .at(&t)?;
        match row {
            Some(r) => {
                let n: i64 = r.try_get(0).at(&t)?;
                Ok(u32::try_from(n).unwrap_or(u32::MAX))
            }
            None => Err(lease_lost(&t, feed_id)),
        }
    }

    fn set_next_due(&mut self, feed_id: i64, at: DateTime<Utc>) -> Result<()> {
        let t = self.target.clone();
        let lease = self.lease().map(str::to_string);
        let (client, stmts) = self.parts()?;
        // The end of a failed poll: with the due time set, the lease goes.
        let stmt = stmts
            .get(
                client,
                "UPDATE feeds SET next_due_at = $2,
                   lease_owner = CASE WHEN $3::text IS NULL THEN lease_owner END,
                   lease_until = CASE WHEN $3::text IS NULL THEN lease_until END
                 WHERE id = $1 AND ($3::text IS NULL OR lease_owner = $3)",
            )
            .at(&t)?;
        client.execute(&stmt, &[&feed_id, &ts(at), &lease]).at(&t)?;
        Ok(())
    }

    fn place_stories(&mut self, now: DateTime<Utc>) -> Result<Placed> {
        place_stories(self, now)
    }
}

/// One feed's write in `tx`: its rows and counts, or `None` (nothing written) when it needs
/// this worker's lease and the lease is another's now.
fn write_one(
    tx: &mut Transaction<'_>,
    st: &mut Statements,
    w: &Writer<'_>,
    write: &FeedWrite,
) -> Result<Option<CommitCounts>> {
    if !hold_lease(tx, st, w, write.feed_id())? {
        return Ok(None);
    }
    match write {
        FeedWrite::Fetched {
            feed_id,
            facts,
            entries,
            now,
        } => commit_one(tx, st, w, *feed_id, facts, entries, *now).map(Some),
        FeedWrite::Unchanged {
            feed_id,
            facts,
            now,
        } => fetched_feed(tx, st, w, *feed_id, facts, *now, "unchanged")
            .map(|()| Some(CommitCounts::default())),
    }
}

/// With leases: lock the feed's row for the rest of the transaction if its lease is still
/// this worker's (false, before anything is written, when it is not). No other worker can
/// claim the feed while the lock is held, even if the lease runs out.
fn hold_lease(
    tx: &mut Transaction<'_>,
    st: &mut Statements,
    w: &Writer<'_>,
    feed_id: i64,
) -> Result<bool> {
    let Some(owner) = w.lease else {
        return Ok(true);
    };
    let q = st
        .get(
            tx,
            "SELECT 1 FROM feeds WHERE id = $1 AND lease_owner = $2 FOR UPDATE",
        )
        .at(w.target)?;
    Ok(tx
        .query_opt(&q, &[&feed_id, &owner])
        .at(w.target)?
        .is_some())
}

fn lease_lost(target: &str, feed_id: i64) -> StoreError {
    StoreError::Postgres {
        target: target.to_string(),
        reason: format!(
            "feed {feed_id}: this worker's lease ran out and the feed is another's now; its results were not stored"
        ),
    }
}

/// The rows of one feed's fetched document (as `store::commit_one`, the same rows). Where
/// SQLite runs a few statements per entry in-process, each would be a round trip here: the
/// feed's sightings are read once, and its sightings and archive rows are written in one
/// statement each after the entries are decided (last write per entry key wins, as it would
/// one entry after another). Items and their rules are still written entry by entry.
fn commit_one(
    tx: &mut Transaction<'_>,
    st: &mut Statements,
    w: &Writer<'_>,
    feed_id: i64,
    facts: &FetchFacts,
    entries: &[EntryRecord],
    now: DateTime<Utc>,
) -> Result<CommitCounts> {
    let t = w.target;
    let now_s = ts(now);
    let mut counts = CommitCounts::default();
    // entry key → (fingerprint, item), as the rows will be when this feed's write is done.
    let mut seen: HashMap<[u8; 16], (Vec<u8>, Option<i64>)> = HashMap::new();
    if !entries.is_empty() {
        let q = st
            .get(
                tx,
                "SELECT entry_key, fingerprint, item_id FROM sightings WHERE feed_id = $1",
            )
            .at(t)?;
        for r in tx.query(&q, &[&feed_id]).at(t)? {
            let key: Vec<u8> = r.try_get(0).at(t)?;
            let Ok(key) = <[u8; 16]>::try_from(key.as_slice()) else {
                return Err(StoreError::Corrupt(format!(
                    "sighting of feed {feed_id} has a malformed key"
                )));
            };
            seen.insert(key, (r.try_get(1).at(t)?, r.try_get(2).at(t)?));
        }
    }
    // An archive row is only ever written with its entry's sighting (and sightings stay when
    // the archive is pruned): a feed with none has nothing archived to replace (its first
    // poll, so the whole cold poll, skips that statement).
    let had_sightings = !seen.is_empty();
    // Keys in the order first written, and the archived text per key (the last one).
    let mut written: Vec<[u8; 16]> = Vec::new();
    let mut once: std::collections::HashSet<[u8; 16]> = std::collections::HashSet::new();
    let mut archived: HashMap<[u8; 16], (Option<i64>, &EntryText)> = HashMap::new();
    for rec in entries {
        let mut entry_key = rec.identity.key_hash;
        let mut existing = seen.get(&entry_key).cloned();
        // A reused guid for another story: filed under its link's identity (as in SQLite).
        if let (Some((fp, Some(old_item))), Some(alt), Some(canon)) = (
            &existing,
            rec.identity.link_key_hash,
            &rec.identity.canonical_url,
        ) && fp.as_slice() != rec.fingerprint
        {
            let q = st
                .get(tx, "SELECT canonical_url FROM items WHERE id = $1")
                .at(t)?;
            let stored: Option<String> = tx
                .query_opt(&q, &[old_item])
                .at(t)?
                .map(|r| r.try_get::<_, Option<String>>(0))
                .transpose()
                .at(t)?
                .flatten();
            if stored.is_some_and(|c| &c != canon) {
                entry_key = alt;
                existing = seen.get(&entry_key).cloned();
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
                st,
                t,
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
        // The sighting's upsert: new fingerprint, the item kept unless there is a new one.
        let kept = item_id.or(existing.and_then(|(_, id)| id));
        seen.insert(entry_key, (rec.fingerprint.to_vec(), kept));
        if once.insert(entry_key) {
            written.push(entry_key);
        }
        if w.archive {
            archived.insert(entry_key, (item_id, &rec.text));
        }
    }
    if !written.is_empty() {
        let mut keys: Vec<&[u8]> = Vec::with_capacity(written.len());
        let mut fps: Vec<&[u8]> = Vec::with_capacity(written.len());
        let mut items: Vec<Option<i64>> = Vec::with_capacity(written.len());
        for k in &written {
            let Some((fp, item)) = seen.get(k) else {
                continue;
            };
            keys.push(&k[..]);
            fps.push(fp);
            items.push(*item);
        }
        let q = st
            .get(
                tx,
                "INSERT INTO sightings (feed_id, entry_key, fingerprint, item_id, first_seen_at, changed_at)
                 SELECT $1, u.k, u.f, u.i, $5, $5 FROM unnest($2::bytea[], $3::bytea[], $4::bigint[]) AS u(k, f, i)
                 ON CONFLICT (feed_id, entry_key) DO UPDATE SET fingerprint = excluded.fingerprint,
                   item_id = COALESCE(excluded.item_id, sightings.item_id), changed_at = excluded.changed_at",
            )
            .at(t)?;
        tx.execute(&q, &[&feed_id, &keys, &fps, &items, &now_s])
            .at(t)?;
    }
    if !archived.is_empty() {
        let rows: Vec<([u8; 16], Option<i64>, &EntryText)> = written
            .iter()
            .filter_map(|k| archived.get(k).map(|(item, text)| (*k, *item, *text)))
            .collect();
        archive_put(tx, st, t, feed_id, &rows, had_sightings, &now_s)?;
    }
    fetched_feed(tx, st, w, feed_id, facts, now, "ok")?;
    Ok(counts)
}

/// What a successful fetch leaves on the feed (as `store::fetched_feed`), and the end of its
/// lease.
fn fetched_feed(
    tx: &mut Transaction<'_>,
    st: &mut Statements,
    w: &Writer<'_>,
    feed_id: i64,
    facts: &FetchFacts,
    now: DateTime<Utc>,
    status: &str,
) -> Result<()> {
    let t = w.target;
    let q = st
        .get(
            tx,
            "UPDATE feeds SET etag = $2, last_modified = $3, effective_url = COALESCE($4, effective_url),
               title = COALESCE($5, title), last_fetch_at = $6, last_success_at = $6, last_status = $9,
               last_http_status = $7, last_error = NULL, consecutive_failures = 0, next_due_at = $8,
               last_worker = $10,
               lease_owner = CASE WHEN $11::text IS NULL THEN lease_owner END,
               lease_until = CASE WHEN $11::text IS NULL THEN lease_until END
             WHERE id = $1 AND ($11::text IS NULL OR lease_owner = $11)",
        )
        .at(t)?;
    let n = tx
        .execute(
            &q,
            &[
                &feed_id,
                &facts.validators.etag,
                &facts.validators.last_modified,
                &facts.effective_url,
                &facts.title,
                &ts(now),
                &facts.http_status.map(i64::from),
                &facts.next_due_at.map(ts),
                &status,
                &w.worker,
                &w.lease,
            ],
        )
        .at(t)?;
    if n == 0 && w.lease.is_some() {
        return Err(lease_lost(t, feed_id));
    }
    Ok(())
}

/// The stored item with canonical URL `canon`, if any.
fn item_by_url(
    tx: &mut Transaction<'_>,
    st: &mut Statements,
    t: &str,
    canon: &str,
) -> Result<Option<i64>> {
    let q = st
        .get(tx, "SELECT id FROM items WHERE canonical_url = $1")
        .at(t)?;
    tx.query_opt(&q, &[&canon])
        .at(t)?
        .map(|r| r.try_get(0))
        .transpose()
        .at(t)
}

/// Store one matched entry as an item with its rules (as `store::store_match`): a new item is
/// first seen at `at.first_seen` (now when polling, the archived time when backfilling).
pub(super) fn store_match(
    tx: &mut Transaction<'_>,
    st: &mut Statements,
    t: &str,
    at: &MatchPlace<'_>,
    text: &EntryText,
    m: &MatchedEntry,
) -> Result<(i64, bool)> {
    let (canonical_url, own_item, now) = (at.canonical_url, at.own_item, at.now);
    let mut item_id = own_item;
    if item_id.is_none()
        && let Some(canon) = canonical_url
    {
        item_id = item_by_url(tx, st, t, canon)?;
    }
    let authors = serde_json::to_string(&text.authors).unwrap_or_else(|_| "[]".into());
    let published = text.published.map(ts);
    let mut inserted = None;
    if item_id.is_none() {
        inserted = insert_item(tx, st, t, at, text, m, &authors, &published)?;
    }
    if item_id.is_none() && inserted.is_none() {
        // Another worker stored the same canonical URL first (committed while this insert
        // waited on the unique index): join its item, as the copy of a known item does.
        if let Some(canon) = canonical_url {
            item_id = item_by_url(tx, st, t, canon)?;
        }
    }
    let (id, new) = match (inserted, item_id) {
        (Some(id), _) => (id, true),
        (None, Some(id)) => {
            if own_item.is_some() {
                let q = st
                    .get(
                        tx,
                        "UPDATE items SET title = $2, summary = $3, content = $4, authors = $5,
                           published_at = COALESCE($6, published_at), snippet = $7, updated_at = $8,
                           link = COALESCE(link, $9)
                         WHERE id = $1",
                    )
                    .at(t)?;
                tx.execute(
                    &q,
                    &[
                        &id,
                        &text.title,
                        &text.summary,
                        &text.content,
                        &authors,
                        &published,
                        &m.snippet,
                        &now,
                        &text.link,
                    ],
                )
                .at(t)?;
            } else {
                join_copy(tx, st, t, id, text, m, published.as_deref(), now)?;
            }
            let q = st
                .get(tx, "UPDATE items SET story_pending = 1 WHERE id = $1")
                .at(t)?;
            tx.execute(&q, &[&id]).at(t)?;
            let q = st
                .get(
                    tx,
                    "UPDATE stories SET updated_at = $2 WHERE id = (SELECT story_id FROM items WHERE id = $1)",
                )
                .at(t)?;
            tx.execute(&q, &[&id, &now]).at(t)?;
            (id, false)
        }
        (None, None) => {
            return Err(StoreError::Corrupt(format!(
                "item with canonical URL {canonical_url:?} neither inserted nor found"
            )));
        }
    };
    let q = st
        .get(
            tx,
            // SQLite's json_group_array over a UNION of json_each: the distinct terms in byte
            // order, as a compact JSON array.
            "INSERT INTO item_rules (item_id, rule, terms, first_matched_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (item_id, rule) DO UPDATE SET terms = (
               SELECT COALESCE('[' || string_agg(to_json(v)::text, ',' ORDER BY v) || ']', '[]')
               FROM (SELECT value COLLATE \"C\" AS v FROM jsonb_array_elements_text(item_rules.terms::jsonb)
                     UNION SELECT value COLLATE \"C\" FROM jsonb_array_elements_text(excluded.terms::jsonb)) u)",
        )
        .at(t)?;
    for rule in &m.rules {
        let terms = serde_json::to_string(&rule.terms).unwrap_or_else(|_| "[]".into());
        tx.execute(&q, &[&id, &rule.rule, &terms, &now]).at(t)?;
    }
    Ok((id, new))
}

/// A new item with a provisional story of its own (as the new-item branch of
/// `store::store_match`); `None` when another worker's item has this canonical URL (then
/// nothing is left behind).
#[allow(clippy::too_many_arguments)]
fn insert_item(
    tx: &mut Transaction<'_>,
    st: &mut Statements,
    t: &str,
    at: &MatchPlace<'_>,
    text: &EntryText,
    m: &MatchedEntry,
    authors: &str,
    published: &Option<String>,
) -> Result<Option<i64>> {
    let q = st
        .get(
            tx,
            "INSERT INTO stories (first_seen_at, updated_at) VALUES ($1, $2) RETURNING id",
        )
        .at(t)?;
    let (canonical_url, first_seen, now) = (at.canonical_url, at.first_seen, at.now);
    let story: i64 = tx
        .query_one(&q, &[&first_seen, &now])
        .at(t)?
        .try_get(0)
        .at(t)?;
    let q = st
        .get(
            tx,
            "INSERT INTO items (canonical_url, link, guid, title, summary, content, authors,
               published_at, first_seen_at, updated_at, snippet, link_rank, story_id, story_pending)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 1)
             ON CONFLICT (canonical_url) DO NOTHING
             RETURNING id",
        )
        .at(t)?;
    let id: Option<i64> = tx
        .query_opt(
            &q,
            &[
                &canonical_url,
                &text.link,
                &text.guid,
                &text.title,
                &text.summary,
                &text.content,
                &authors,
                published,
                &first_seen,
                &now,
                &m.snippet,
                &i64::from(m.link_rank),
                &story,
            ],
        )
        .at(t)?
        .map(|r| r.try_get(0))
        .transpose()
        .at(t)?;
    if id.is_none() {
        let q = st.get(tx, "DELETE FROM stories WHERE id = $1").at(t)?;
        tx.execute(&q, &[&story]).at(t)?;
    }
    Ok(id)
}

/// Another outlet's copy of stored item `id` (as `store::join_copy`).
#[allow(clippy::too_many_arguments)]
fn join_copy(
    tx: &mut Transaction<'_>,
    st: &mut Statements,
    t: &str,
    id: i64,
    text: &EntryText,
    m: &MatchedEntry,
    published: Option<&str>,
    now: &str,
) -> Result<()> {
    if published.is_some() {
        let q = st
            .get(
                tx,
                "UPDATE items SET published_at = $2
                 WHERE id = $1 AND (published_at IS NULL OR published_at > $2)",
            )
            .at(t)?;
        tx.execute(&q, &[&id, &published]).at(t)?;
    }
    if text.link.is_some() {
        let q = st
            .get(
                tx,
                "UPDATE items SET link = $2, title = $3, link_rank = $4 WHERE id = $1 AND link_rank < $4",
            )
            .at(t)?;
        tx.execute(&q, &[&id, &text.link, &text.title, &i64::from(m.link_rank)])
            .at(t)?;
    }
    let q = st
        .get(
            tx,
            "SELECT length(summary) + length(content),
                    (SELECT array_agg(rule) FROM item_rules WHERE item_id = $1)
             FROM items WHERE id = $1",
        )
        .at(t)?;
    let row = tx.query_one(&q, &[&id]).at(t)?;
    let stored_len: i32 = row.try_get(0).at(t)?;
    let stored_rules: Option<Vec<String>> = row.try_get(1).at(t)?;
    let new_len = text.summary.chars().count() + text.content.chars().count();
    if new_len <= usize::try_from(stored_len).unwrap_or(0) {
        return Ok(());
    }
    let covers = stored_rules
        .unwrap_or_default()
        .iter()
        .all(|r| m.rules.iter().any(|n| &n.rule == r));
    if covers {
        let authors = serde_json::to_string(&text.authors).unwrap_or_else(|_| "[]".into());
        let q = st
            .get(
                tx,
                "UPDATE items SET summary = $2, content = $3, snippet = $4, authors = $5, updated_at = $6
                 WHERE id = $1",
            )
            .at(t)?;
        tx.execute(
            &q,
            &[
                &id,
                &text.summary,
                &text.content,
                &m.snippet,
                &authors,
                &now,
            ],
        )
        .at(t)?;
    }
    Ok(())
}

/// The archived copies of a feed's new and changed entries (as `store::archive::put` for each,
/// in one statement per step). Their full-text documents trail the poll, as SQLite's FTS5
/// index does: each new row's id is queued in `archive_pending` by the same statement, and
/// [`super::index::index_pending`] builds the documents after the wave (search and backfill
/// read the queued rows directly meanwhile). An edited entry's old row goes (its document or
/// queue entry with it) and the new row keeps its first-seen time; `replaces` is false when
/// the feed has no archived row yet (nothing to look for).
fn archive_put(
    tx: &mut Transaction<'_>,
    st: &mut Statements,
    t: &str,
    feed_id: i64,
    rows: &[([u8; 16], Option<i64>, &EntryText)],
    replaces: bool,
    now: &str,
) -> Result<()> {
    let keys: Vec<&[u8]> = rows.iter().map(|(k, _, _)| &k[..]).collect();
    let mut first_seen: HashMap<Vec<u8>, String> = HashMap::new();
    if replaces {
        let q = st
            .get(
                tx,
                "DELETE FROM archive WHERE feed_id = $1 AND entry_key = ANY($2::bytea[])
                 RETURNING entry_key, first_seen_at",
            )
            .at(t)?;
        for r in tx.query(&q, &[&feed_id, &keys]).at(t)? {
            first_seen.insert(r.try_get(0).at(t)?, r.try_get(1).at(t)?);
        }
    }
    let n = rows.len();
    let (mut items, mut guids, mut links, mut titles) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut summaries, mut contents, mut authors, mut published, mut seen) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for (key, item, text) in rows {
        items.push(*item);
        guids.push(text.guid.as_deref());
        links.push(text.link.as_deref());
        titles.push(text.title.as_str());
        summaries.push(text.summary.as_str());
        contents.push(text.content.as_str());
        authors.push(serde_json::to_string(&text.authors).unwrap_or_else(|_| "[]".into()));
        published.push(text.published.map(ts));
        seen.push(
            first_seen
                .get(&key[..])
                .map_or(now.to_string(), Clone::clone),
        );
    }
    let q = st
        .get(
            tx,
            "WITH new AS (
               INSERT INTO archive (feed_id, entry_key, item_id, guid, link, title, summary,
                 content, authors, published_at, first_seen_at)
               SELECT $1, u.* FROM unnest($2::bytea[], $3::bigint[], $4::text[], $5::text[],
                 $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[]) AS u
               RETURNING id)
             INSERT INTO archive_pending (id) SELECT id FROM new",
        )
        .at(t)?;
    tx.execute(
        &q,
        &[
            &feed_id, &keys, &items, &guids, &links, &titles, &summaries, &contents, &authors,
            &published, &seen,
        ],
    )
    .at(t)?;
    Ok(())
}

/// A row of [`ITEM_TEXT`] (the same query as SQLite's: its SQL is portable).
fn item_text(r: &postgres::Row) -> std::result::Result<ItemText, postgres::Error> {
    Ok(ItemText {
        id: r.try_get(0)?,
        story: r.try_get::<_, Option<i64>>(1)?.unwrap_or(0),
        title: r.try_get(2)?,
        summary: r.try_get(3)?,
        content: r.try_get(4)?,
        link: r.try_get(5)?,
        published: r.try_get(6)?,
        first_seen: r.try_get(7)?,
        new: r.try_get(8)?,
        backfilled: r.try_get::<_, i64>(9)? != 0,
    })
}

/// The end-of-cycle placement (the algorithm of [`crate::store::Store::place_stories`]):
/// one transaction, under an advisory lock so workers place one at a time. New story ids come
/// from the stories' identity sequence (never the engine's counter, never `max(id) + 1`,
/// which another worker's insert could take meanwhile). Alerts are enqueued in the same
/// transaction, as on SQLite.
fn place_stories(store: &mut PgStore, now: DateTime<Utc>) -> Result<Placed> {
    let df = store.doc_freq()?;
    let mut df = df.lock().unwrap_or_else(|p| p.into_inner());
    let t = store.target.clone();
    store.reconnect_if_lost()?;
    let Some(db) = store.db.as_mut() else {
        return Err(StoreError::Postgres {
            target: t,
            reason: "connection closed".into(),
        });
    };
    let state = &mut store.stories;
    let mut tx = db.client().transaction().at(&t)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&STORY_LOCK])
        .at(&t)?;
    let (generation, stored): (i64, Option<Vec<u8>>) = {
        let r = tx
            .query_one(
                "SELECT generation, doc_freq FROM story_state WHERE id = 1",
                &[],
            )
            .at(&t)?;
        (r.try_get(0).at(&t)?, r.try_get(1).at(&t)?)
    };
    // Other workers' counts since this one last read or wrote them, added to this one's (a
    // no-op for a single process: the stored copy is then the one this worker wrote). Merged
    // into a copy that replaces this worker's only once the placement is committed: a failed
    // placement leaves both as they were, to merge again next time.
    let merged: Option<DocFreq> = match (
        store.df_base.as_ref(),
        stored.and_then(|b| DocFreq::from_bytes(&b).ok()),
    ) {
        (Some(base), Some(stored)) => {
            let mut m = df.clone();
            m.merge_since(base, &stored);
            Some(m)
        }
        _ => None,
    };
    let synced = |store_base: &mut Option<DocFreq>, df: &mut DocFreq, merged: Option<DocFreq>| {
        if let Some(m) = merged {
            *df = m;
        }
        *store_base = Some(df.clone());
    };
    let pending: Vec<ItemText> = tx
        .query(
            &format!("{ITEM_TEXT} WHERE story_pending = 1 ORDER BY id"),
            &[],
        )
        .at(&t)?
        .iter()
        .map(item_text)
        .collect::<std::result::Result<_, _>>()
        .at(&t)?;
    let mut placed = Placed::default();
    if pending.is_empty() {
        save_doc_freq(&mut tx, &t, merged.as_ref().unwrap_or(&df), false)?;
        tx.commit().at(&t)?;
        synced(&mut store.df_base, &mut df, merged);
        return Ok(placed);
    }
    let dfv: &DocFreq = merged.as_ref().unwrap_or(&df);
    let times: Vec<DateTime<Utc>> = pending.iter().map(ItemText::time).collect();
    let oldest = times.iter().copied().min().unwrap_or(now).min(now);
    let since = oldest - state.settings.window - chrono::Duration::days(1);
    let covered = state.loaded_since.is_some_and(|s| s <= since);
    if state.index.is_none() || state.generation != generation || !covered {
        state.index = Some(load_window(&mut tx, &t, &state.settings, dfv, since)?);
        state.loaded_since = Some(since);
    }
    let Some(index) = state.index.as_mut() else {
        return Err(StoreError::Corrupt("story window not loaded".into()));
    };
    let now_s = ts(now);
    let upsert = tx
        .prepare(
            "INSERT INTO stories (id, first_seen_at, updated_at) VALUES ($1, $2, $3)
             ON CONFLICT (id) DO UPDATE SET updated_at = excluded.updated_at,
               first_seen_at = LEAST(stories.first_seen_at, excluded.first_seen_at)",
        )
        .at(&t)?;
    let update = tx
        .prepare(
            "UPDATE items SET story_id = $2, story_pending = 0, story_evidence = $3,
               story_features = $4 WHERE id = $1",
        )
        .at(&t)?;
    let drop_empty = tx
        .prepare(
            "DELETE FROM stories WHERE id = $1
               AND NOT EXISTS (SELECT 1 FROM items WHERE story_id = $1)",
        )
        .at(&t)?;
    for item in &pending {
        let features = item.features(dfv);
        let blob = features.to_bytes();
        let alone = index
            .story_of(item.id)
            .is_none_or(|s| s == item.story && index.members(s).len() <= 1);
        let fresh = if alone {
            item.story
        } else {
            tx.query_one(
                "SELECT nextval(pg_get_serial_sequence('stories', 'id'))",
                &[],
            )
            .at(&t)?
            .try_get(0)
            .at(&t)?
        };
        index.set_new_story_id(fresh);
        let p = index.place(item.id, features);
        let evidence = serde_json::to_string(&p.evidence).ok();
        tx.execute(&upsert, &[&p.story, &item.first_seen, &now_s])
            .at(&t)?;
        tx.execute(&update, &[&item.id, &p.story, &evidence, &blob])
            .at(&t)?;
        if p.story != item.story {
            tx.execute(&drop_empty, &[&item.story]).at(&t)?;
        }
        placed.items += 1;
        placed.joined += usize::from(p.joined);
    }
    // Alerts go by story, in this transaction (as on SQLite).
    let (fresh, touched): (Vec<&ItemText>, Vec<&ItemText>) = pending
        .iter()
        .filter(|i| !i.backfilled)
        .partition(|i| i.new);
    let ids = |v: Vec<&ItemText>| v.into_iter().map(|i| i.id).collect::<Vec<_>>();
    {
        let plan = &store.alerts;
        let db = &mut crate::store::sql::PgTx {
            tx: &mut tx,
            target: &t,
        };
        enqueue_for_items(db, plan, &ids(fresh), true, &now_s)?;
        enqueue_for_items(db, plan, &ids(touched), false, &now_s)?;
    }
    index.evict(oldest);
    if let Some(s) = state.loaded_since.as_mut() {
        *s = (*s).max(oldest - state.settings.window);
    }
    save_doc_freq(&mut tx, &t, dfv, true)?;
    state.generation = generation + 1;
    tx.commit().at(&t)?;
    synced(&mut store.df_base, &mut df, merged);
    Ok(placed)
}

fn save_doc_freq(tx: &mut Transaction<'_>, t: &str, df: &DocFreq, placed: bool) -> Result<()> {
    tx.execute(
        "UPDATE story_state SET doc_freq = $1, generation = generation + $2 WHERE id = 1",
        &[&df.to_bytes(), &i64::from(placed)],
    )
    .at(t)?;
    Ok(())
}

/// The stories of the window (as `store::stories::load_window`).
fn load_window(
    tx: &mut Transaction<'_>,
    t: &str,
    settings: &StorySettings,
    df: &DocFreq,
    since: DateTime<Utc>,
) -> Result<StoryIndex> {
    let next: i64 = tx
        .query_one("SELECT COALESCE(max(id), 0) + 1 FROM stories", &[])
        .at(t)?
        .try_get(0)
        .at(t)?;
    let mut index = StoryIndex::with_next_id(settings.clone(), next);
    let rows = tx
        .query(
            "SELECT id, story_id, title, summary, content, link, published_at, first_seen_at,
               story_features IS NULL, backfilled, story_pinned, story_features
             FROM items WHERE story_id IS NOT NULL
               AND (story_pending = 0 OR story_features IS NOT NULL)
               AND (first_seen_at >= $1 OR published_at >= $1)
             ORDER BY id",
            &[&ts(since)],
        )
        .at(t)?;
    for r in &rows {
        let item = item_text(r).at(t)?;
        let pinned = r.try_get::<_, i64>(10).at(t)? != 0;
        let blob: Option<Vec<u8>> = r.try_get(11).at(t)?;
        let features = blob
            .as_deref()
            .and_then(Features::from_bytes)
            .unwrap_or_else(|| item.features(df));
        index.insert_existing(item.id, item.story, pinned, features);
    }
    Ok(index)
}
