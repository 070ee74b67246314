//! Alert outbox: what `[[alerts]]` must tell, written in the same transaction as the matches
//! that caused it, and the queries the sender uses to deliver it exactly once per key.
//!
//! Two tables (`migrations/sqlite/0008_alerts.sql`): `alert_outbox` holds one row per
//! (story, alert, kind) under a UNIQUE idempotency key, so enqueueing twice is a no-op;
//! `alert_messages` holds what is sent: one story or a batch, its rows fixed when it is
//! created, so every attempt carries the same stories and the same key. Sending happens after
//! commit, outside any transaction (`service::alerts`); a message is leased (its
//! `next_attempt_at` moved ahead) before it is sent, so two processes never send it at once,
//! and a crash mid-send leaves it to be retried once the lease ends.
//!
//! The trigger is one function, [`enqueue_story`]: "story S, matching rules R, now carried by
//! N outlets". Until stories exist as their own rows, a story is a stored item (story id =
//! item id) and its outlets are the feeds that carry the item.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use super::{Result, Store, parse_ts, ts};

/// What one `[[alerts]]` entry needs at commit time: which stories it covers and when it
/// speaks again about one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertTrigger {
    pub name: String,
    /// Rules it covers; `None`: every rule.
    pub rules: Option<Vec<String>>,
    /// Outlet counts at which a story is alerted again (`update_at = [3, 10]`), ascending.
    pub update_at: Vec<u32>,
}

impl AlertTrigger {
    fn covers(&self, rules: &[String]) -> bool {
        match &self.rules {
            None => !rules.is_empty(),
            Some(mine) => rules.iter().any(|r| mine.contains(r)),
        }
    }
}

/// Every configured alert's trigger ([`Store::set_alerts`]); empty: alerts are off and a
/// commit does no alert work at all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertPlan {
    pub triggers: Vec<AlertTrigger>,
}

/// Kind of the first alert of a story.
pub const KIND_NEW: &str = "new";

/// Kind of the alert sent when a story reaches `n` outlets.
pub fn kind_outlets(n: u32) -> String {
    format!("outlets-{n}")
}

/// The idempotency key of one story's alert: story id + alert name + kind.
pub fn idem_key(story_id: i64, alert: &str, kind: &str) -> String {
    format!("story-{story_id}:{alert}:{kind}")
}

/// Enqueue the alerts one story calls for now: with `include_new`, for every alert whose rules
/// it matches, a `new` alert (once per story and alert: the UNIQUE key makes a repeat a no-op,
/// so a story that gains outlets is not new again); and, for each `update_at` threshold it has
/// reached, an `outlets-N` alert. Call inside the transaction that placed the story's reports.
/// Returns how many rows were added.
pub fn enqueue_story(
    tx: &Connection,
    plan: &AlertPlan,
    story_id: i64,
    rules: &[String],
    outlets: u32,
    include_new: bool,
    now: &str,
) -> Result<usize> {
    let mut added = 0;
    let mut insert = tx.prepare_cached(
        "INSERT INTO alert_outbox (idem_key, alert, story_id, kind, outlets, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(idem_key) DO NOTHING",
    )?;
    for t in plan.triggers.iter().filter(|t| t.covers(rules)) {
        let new = include_new.then(|| KIND_NEW.to_string());
        let kinds = new.into_iter().chain(
            t.update_at
                .iter()
                .filter(|&&n| n > 1 && outlets >= n)
                .map(|&n| kind_outlets(n)),
        );
        for kind in kinds {
            let key = idem_key(story_id, &t.name, &kind);
            added += insert.execute(params![key, t.name, story_id, kind, outlets, now])?;
        }
    }
    Ok(added)
}

/// The alerts of the stories of `items` (see [`enqueue_story`]): each story's rules are those
/// of all its reports, its outlets the distinct feeds that carried any of them. With no alerts
/// configured this returns at once.
pub(crate) fn enqueue_for_items(
    tx: &Connection,
    plan: &AlertPlan,
    items: &[i64],
    include_new: bool,
    now: &str,
) -> Result<usize> {
    if plan.triggers.is_empty() || items.is_empty() {
        return Ok(0);
    }
    let mut stories = HashSet::new();
    let mut added = 0;
    for &item in items {
        let story: Option<i64> = tx
            .prepare_cached("SELECT story_id FROM items WHERE id = ?1")?
            .query_row([item], |r| r.get(0))
            .optional()?
            .flatten();
        let Some(story) = story else { continue };
        if !stories.insert(story) {
            continue;
        }
        let rules: Vec<String> = tx
            .prepare_cached(
                "SELECT DISTINCT r.rule FROM item_rules r JOIN items i ON i.id = r.item_id
                 WHERE i.story_id = ?1 ORDER BY r.rule",
            )?
            .query_map([story], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let outlets: u32 = tx
            .prepare_cached(
                "SELECT count(DISTINCT s.feed_id) FROM sightings s JOIN items i ON i.id = s.item_id
                 WHERE i.story_id = ?1",
            )?
            .query_row([story], |r| r.get(0))?;
        added += enqueue_story(tx, plan, story, &rules, outlets.max(1), include_new, now)?;
    }
    Ok(added)
}

impl Store {
    /// [`enqueue_for_items`] in a transaction of its own (`backfill --alert`).
    pub fn enqueue_story_alerts(
        &mut self,
        items: &[i64],
        include_new: bool,
        now: DateTime<Utc>,
    ) -> Result<usize> {
        let tx = self.conn.transaction()?;
        let n = enqueue_for_items(&tx, &self.alerts, items, include_new, &super::ts(now))?;
        tx.commit()?;
        Ok(n)
    }
}

/// Creation times of an alert's recent messages (oldest first) and of its newest one.
pub type MessageTimes = (Vec<DateTime<Utc>>, Option<DateTime<Utc>>);

/// One story of a message, as enqueued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedStory {
    pub idem_key: String,
    pub story_id: i64,
    pub kind: String,
    pub outlets: u32,
    pub created_at: String,
}

/// A message to send, with its stories (fixed when it was created).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedMessage {
    pub id: i64,
    pub idem_key: String,
    pub alert: String,
    pub attempts: u32,
    pub created_at: String,
    /// Why it waited before it was created, if it did.
    pub held: Option<String>,
    pub stories: Vec<QueuedStory>,
}

/// One outbox row as `newswatch alerts list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OutboxRow {
    pub idem_key: String,
    pub alert: String,
    pub story_id: i64,
    pub title: Option<String>,
    pub kind: String,
    pub outlets: u32,
    /// `pending` (not yet in a message, or its message not sent yet), `failed` (its message
    /// failed at least once and will be retried), `sent` or `dropped`.
    pub state: String,
    pub created_at: String,
    pub message_key: Option<String>,
    pub attempts: u32,
    pub next_attempt_at: Option<String>,
    pub last_error: Option<String>,
    pub sent_at: Option<String>,
    /// Not yet in a message because pacing holds it: why (`quiet hours`, `min_interval`,
    /// `max_per_hour`), until `next_attempt_at`.
    pub held: Option<String>,
}

/// A destination that has failed without a success since `failing_since`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FailingDestination {
    pub alert: String,
    pub failing_since: String,
    pub last_error: Option<String>,
}

/// Something given up on after `give_up_after`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DroppedAlert {
    pub alert: String,
    pub idem_key: String,
    pub created_at: String,
}

impl Store {
    /// Which alerts the commits of this store enqueue ([`enqueue_story`]).
    pub fn set_alerts(&mut self, plan: AlertPlan) {
        self.alerts = plan;
    }

    /// The alert triggers in use.
    pub fn alert_plan(&self) -> &AlertPlan {
        &self.alerts
    }

    /// The cheap check a poll makes before any alert work: rows waiting for a message plus
    /// messages not yet sent (both from partial indexes).
    pub fn alert_work(&self) -> Result<u64> {
        let n: i64 = self
            .conn
            .prepare_cached(
                "SELECT (SELECT count(*) FROM alert_outbox WHERE message_id IS NULL AND state = 'pending')
                      + (SELECT count(*) FROM alert_messages WHERE state = 'pending')",
            )?
            .query_row([], |r| r.get(0))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Alerts with rows waiting to be put into a message.
    pub fn alerts_with_unassigned(&self) -> Result<Vec<String>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT DISTINCT alert FROM alert_outbox WHERE message_id IS NULL AND state = 'pending' ORDER BY alert",
        )?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        rows.collect::<rusqlite::Result<_>>().map_err(Into::into)
    }

    /// Creation times of `alert`'s messages created at or after `since`, oldest first, and
    /// the newest one ever (for `min_interval`).
    pub fn alert_message_times(&self, alert: &str, since: DateTime<Utc>) -> Result<MessageTimes> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT created_at FROM alert_messages WHERE alert = ?1 AND created_at >= ?2 AND state != 'dropped'
             ORDER BY created_at",
        )?;
        let recent: Vec<DateTime<Utc>> = stmt
            .query_map(params![alert, ts(since)], |r| r.get::<_, String>(0))?
            .filter_map(|r| r.ok().as_deref().and_then(parse_ts))
            .collect();
        let last: Option<String> = self
            .conn
            .prepare_cached(
                "SELECT max(created_at) FROM alert_messages WHERE alert = ?1 AND state != 'dropped'",
            )?
            .query_row([alert], |r| r.get(0))?;
        Ok((recent, last.as_deref().and_then(parse_ts)))
    }

    /// Record that `alert`'s waiting stories are held until `until` (shown by `alerts list`,
    /// and named in the batch that ends the hold).
    pub fn alert_hold(&mut self, alert: &str, why: &str, until: DateTime<Utc>) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO alert_destinations (alert, held_reason, held_until) VALUES (?1, ?2, ?3)
                 ON CONFLICT(alert) DO UPDATE SET held_reason = ?2, held_until = ?3",
            )?
            .execute(params![alert, why, ts(until)])?;
        Ok(())
    }

    /// Put every row of `alert` not yet in a message into one new message, due now (naming the
    /// hold it ends, if any). Returns its id, or `None` when there was nothing to put in.
    pub fn alert_claim(&mut self, alert: &str, now: DateTime<Utc>) -> Result<Option<i64>> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let held: Option<String> = tx
            .prepare_cached("SELECT held_reason FROM alert_destinations WHERE alert = ?1")?
            .query_row([alert], |r| r.get(0))
            .optional()?
            .flatten();
        let rows: Vec<(i64, String)> = tx
            .prepare_cached(
                "SELECT id, idem_key FROM alert_outbox WHERE alert = ?1 AND message_id IS NULL AND state = 'pending'
                 ORDER BY id",
            )?
            .query_map([alert], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let Some((_, first)) = rows.first() else {
            return Ok(None);
        };
        // One story: its own key. A batch: the first story's key and the count, unique because
        // a row is in one message only.
        let key = if rows.len() == 1 {
            first.clone()
        } else {
            format!("batch-{}:{first}", rows.len())
        };
        let now_s = ts(now);
        let id: i64 = tx
            .prepare_cached(
                "INSERT INTO alert_messages (idem_key, alert, created_at, next_attempt_at, held)
                 VALUES (?1, ?2, ?3, ?3, ?4) RETURNING id",
            )?
            .query_row(params![key, alert, now_s, held], |r| r.get(0))?;
        for (row, _) in &rows {
            tx.prepare_cached("UPDATE alert_outbox SET message_id = ?2 WHERE id = ?1")?
                .execute(params![row, id])?;
        }
        tx.prepare_cached(
            "UPDATE alert_destinations SET held_reason = NULL, held_until = NULL WHERE alert = ?1",
        )?
        .execute([alert])?;
        tx.commit()?;
        Ok(Some(id))
    }

    /// Pending messages due at `now`, oldest first.
    pub fn alert_due_messages(&self, now: DateTime<Utc>) -> Result<Vec<i64>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id FROM alert_messages WHERE state = 'pending' AND next_attempt_at <= ?1
             ORDER BY next_attempt_at, id",
        )?;
        let rows = stmt.query_map([ts(now)], |r| r.get(0))?;
        rows.collect::<rusqlite::Result<_>>().map_err(Into::into)
    }

    /// The earliest time a pending message of `alert` is next due, if any.
    pub fn alert_next_due(&self, alert: &str) -> Result<Option<DateTime<Utc>>> {
        let t: Option<String> = self
            .conn
            .prepare_cached(
                "SELECT min(next_attempt_at) FROM alert_messages WHERE alert = ?1 AND state = 'pending'",
            )?
            .query_row([alert], |r| r.get(0))?;
        Ok(t.as_deref().and_then(parse_ts))
    }

    /// Take message `id` for sending until `until`: false when it is not due at `now` (sent,
    /// or another sender holds it).
    pub fn alert_lease(
        &mut self,
        id: i64,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool> {
        let n = self
            .conn
            .prepare_cached(
                "UPDATE alert_messages SET next_attempt_at = ?3
                 WHERE id = ?1 AND state = 'pending' AND next_attempt_at <= ?2",
            )?
            .execute(params![id, ts(now), ts(until)])?;
        Ok(n == 1)
    }

    /// Message `id` with its stories.
    pub fn alert_message(&self, id: i64) -> Result<Option<QueuedMessage>> {
        let head = self
            .conn
            .prepare_cached(
                "SELECT id, idem_key, alert, attempts, created_at, held FROM alert_messages WHERE id = ?1",
            )?
            .query_row([id], |r| {
                Ok(QueuedMessage {
                    id: r.get(0)?,
                    idem_key: r.get(1)?,
                    alert: r.get(2)?,
                    attempts: r.get(3)?,
                    created_at: r.get(4)?,
                    held: r.get(5)?,
                    stories: Vec::new(),
                })
            })
            .optional()?;
        let Some(mut m) = head else { return Ok(None) };
        m.stories = self
            .conn
            .prepare_cached(
                "SELECT idem_key, story_id, kind, outlets, created_at FROM alert_outbox WHERE message_id = ?1 ORDER BY id",
            )?
            .query_map([id], |r| {
                Ok(QueuedStory {
                    idem_key: r.get(0)?,
                    story_id: r.get(1)?,
                    kind: r.get(2)?,
                    outlets: r.get(3)?,
                    created_at: r.get(4)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(Some(m))
    }

    /// Message `id` was delivered.
    pub fn alert_mark_sent(&mut self, id: i64, alert: &str, now: DateTime<Utc>) -> Result<()> {
        let tx = self.conn.transaction()?;
        let now_s = ts(now);
        tx.prepare_cached(
            "UPDATE alert_messages SET state = 'sent', sent_at = ?2, attempts = attempts + 1, last_error = NULL
             WHERE id = ?1",
        )?
        .execute(params![id, now_s])?;
        tx.prepare_cached(
            "UPDATE alert_outbox SET state = 'sent', done_at = ?2 WHERE message_id = ?1",
        )?
        .execute(params![id, now_s])?;
        tx.prepare_cached(
            "INSERT INTO alert_destinations (alert, failing_since, last_error, last_success_at) VALUES (?1, NULL, NULL, ?2)
             ON CONFLICT(alert) DO UPDATE SET failing_since = NULL, last_error = NULL, last_success_at = ?2",
        )?
        .execute(params![alert, now_s])?;
        tx.commit()?;
        Ok(())
    }

    /// Message `id` failed with `error`; it is next tried at `next`.
    pub fn alert_mark_failed(
        &mut self,
        id: i64,
        alert: &str,
        error: &str,
        now: DateTime<Utc>,
        next: DateTime<Utc>,
    ) -> Result<()> {
        let tx = self.conn.transaction()?;
        let now_s = ts(now);
        tx.prepare_cached(
            "UPDATE alert_messages SET attempts = attempts + 1, last_error = ?2, next_attempt_at = ?3
             WHERE id = ?1 AND state = 'pending'",
        )?
        .execute(params![id, error, ts(next)])?;
        tx.prepare_cached(
            "INSERT INTO alert_destinations (alert, failing_since, last_error) VALUES (?1, ?2, ?3)
             ON CONFLICT(alert) DO UPDATE SET failing_since = COALESCE(failing_since, ?2), last_error = ?3",
        )?
        .execute(params![alert, now_s, error])?;
        tx.commit()?;
        Ok(())
    }

    /// Give up on everything not sent that was enqueued before `before`: messages and rows
    /// become `dropped`. Returns what was dropped (one entry per row).
    pub fn alert_drop_expired(
        &mut self,
        alert: &str,
        before: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Vec<DroppedAlert>> {
        let tx = self.conn.transaction()?;
        let (before_s, now_s) = (ts(before), ts(now));
        let dropped: Vec<DroppedAlert> = tx
            .prepare_cached(
                "UPDATE alert_outbox SET state = 'dropped', done_at = ?2
                 WHERE state = 'pending' AND alert = ?3 AND (
                   (message_id IS NULL AND created_at < ?1)
                   OR message_id IN (SELECT m.id FROM alert_messages m WHERE m.state = 'pending'
                        AND (SELECT min(o.created_at) FROM alert_outbox o WHERE o.message_id = m.id) < ?1))
                 RETURNING alert, idem_key, created_at",
            )?
            .query_map(params![before_s, now_s, alert], |r| {
                Ok(DroppedAlert {
                    alert: r.get(0)?,
                    idem_key: r.get(1)?,
                    created_at: r.get(2)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        tx.prepare_cached(
            "UPDATE alert_messages SET state = 'dropped'
             WHERE state = 'pending' AND alert = ?1 AND NOT EXISTS
               (SELECT 1 FROM alert_outbox o WHERE o.message_id = alert_messages.id AND o.state = 'pending')",
        )?
        .execute([alert])?;
        tx.commit()?;
        Ok(dropped)
    }

    /// The outbox, newest first (at most `limit` rows).
    pub fn alert_outbox(&self, limit: usize) -> Result<Vec<OutboxRow>> {
        let mut stmt = self.conn.prepare(
            "SELECT o.idem_key, o.alert, o.story_id, i.title, o.kind, o.outlets, o.state, o.created_at,
               m.idem_key, COALESCE(m.attempts, 0),
               COALESCE(m.next_attempt_at, CASE WHEN o.message_id IS NULL AND o.state = 'pending' THEN d.held_until END),
               m.last_error, m.sent_at,
               CASE WHEN o.message_id IS NULL AND o.state = 'pending' THEN d.held_reason ELSE m.held END
             FROM alert_outbox o LEFT JOIN alert_messages m ON m.id = o.message_id
             LEFT JOIN items i ON i.id = (SELECT min(id) FROM items WHERE story_id = o.story_id)
             LEFT JOIN alert_destinations d ON d.alert = o.alert
             ORDER BY o.id DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
            let state: String = r.get(6)?;
            let error: Option<String> = r.get(11)?;
            Ok(OutboxRow {
                idem_key: r.get(0)?,
                alert: r.get(1)?,
                story_id: r.get(2)?,
                title: r.get(3)?,
                kind: r.get(4)?,
                outlets: r.get(5)?,
                state: if state == "pending" && error.is_some() {
                    "failed".into()
                } else {
                    state
                },
                created_at: r.get(7)?,
                message_key: r.get(8)?,
                attempts: r.get(9)?,
                next_attempt_at: r.get(10)?,
                last_error: error,
                sent_at: r.get(12)?,
                held: r.get(13)?,
            })
        })?;
        rows.collect::<rusqlite::Result<_>>().map_err(Into::into)
    }

    /// Destinations failing without a success since before `since` (e.g. a day ago).
    pub fn alert_failing(&self, since: DateTime<Utc>) -> Result<Vec<FailingDestination>> {
        let mut stmt = self.conn.prepare(
            "SELECT alert, failing_since, last_error FROM alert_destinations
             WHERE failing_since IS NOT NULL AND failing_since <= ?1 ORDER BY alert",
        )?;
        let rows = stmt.query_map([ts(since)], |r| {
            Ok(FailingDestination {
                alert: r.get(0)?,
                failing_since: r.get(1)?,
                last_error: r.get(2)?,
            })
        })?;
        rows.collect::<rusqlite::Result<_>>().map_err(Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> AlertPlan {
        AlertPlan {
            triggers: vec![
                AlertTrigger {
                    name: "all".into(),
                    rules: None,
                    update_at: vec![3],
                },
                AlertTrigger {
                    name: "x-only".into(),
                    rules: Some(vec!["x".into()]),
                    update_at: vec![],
                },
            ],
        }
    }

    fn count(s: &Store) -> i64 {
        s.conn()
            .query_row("SELECT count(*) FROM alert_outbox", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn enqueue_story_is_once_per_story_alert_and_kind() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("db")).unwrap();
        let plan = plan();
        let now = "2026-01-01T00:00:00.000Z";
        let tx = s.conn.transaction().unwrap();
        let nca = ["nca".to_string()];
        assert_eq!(enqueue_story(&tx, &plan, 7, &nca, 1, true, now).unwrap(), 1);
        assert_eq!(
            enqueue_story(&tx, &plan, 7, &nca, 2, true, now).unwrap(),
            0,
            "a repeat is a no-op"
        );
        assert_eq!(
            enqueue_story(&tx, &plan, 7, &nca, 3, true, now).unwrap(),
            1,
            "reached 3 outlets"
        );
        assert_eq!(enqueue_story(&tx, &plan, 7, &nca, 4, true, now).unwrap(), 0);
        // The story gains rule x: first match of x-only's rules.
        let both = ["nca".to_string(), "x".to_string()];
        assert_eq!(
            enqueue_story(&tx, &plan, 7, &both, 4, true, now).unwrap(),
            1
        );
        assert_eq!(
            enqueue_story(&tx, &plan, 8, &[], 1, true, now).unwrap(),
            0,
            "no rule: no alert"
        );
        tx.commit().unwrap();
        let keys: Vec<String> = s
            .conn()
            .prepare("SELECT idem_key FROM alert_outbox ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(
            keys,
            [
                "story-7:all:new",
                "story-7:all:outlets-3",
                "story-7:x-only:new"
            ]
        );
        // Written inside a transaction that rolls back: nothing stays.
        let tx = s.conn.transaction().unwrap();
        enqueue_story(&tx, &plan, 9, &nca, 1, true, now).unwrap();
        drop(tx);
        assert_eq!(count(&s), 3);
    }

    #[test]
    fn a_message_is_leased_once_and_marked_sent() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("db")).unwrap();
        let now = Utc::now();
        {
            let tx = s.conn.transaction().unwrap();
            for id in [1, 2] {
                enqueue_story(&tx, &plan(), id, &["nca".into()], 1, true, &ts(now)).unwrap();
            }
            tx.commit().unwrap();
        }
        assert_eq!(s.alert_work().unwrap(), 2);
        let id = s.alert_claim("all", now).unwrap().unwrap();
        assert_eq!(
            s.alert_claim("all", now).unwrap(),
            None,
            "rows are in one message only"
        );
        let m = s.alert_message(id).unwrap().unwrap();
        assert_eq!(m.idem_key, "batch-2:story-1:all:new");
        assert_eq!(m.stories.len(), 2);
        let until = now + chrono::Duration::minutes(2);
        assert!(s.alert_lease(id, now, until).unwrap());
        assert!(
            !s.alert_lease(id, now, until).unwrap(),
            "held by the first sender"
        );
        s.alert_mark_sent(id, "all", now).unwrap();
        assert_eq!(s.alert_work().unwrap(), 0);
        assert!(s.alert_due_messages(until).unwrap().is_empty());
    }
}
