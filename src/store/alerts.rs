//! Alert outbox: what `[[alerts]]` must tell, written in the same transaction as the matches
//! that caused it, and the queries the sender uses to deliver it exactly once per key.
//!
//! Two tables (`migrations/*/0008_alerts.sql`, alike on both backends): `alert_outbox` holds
//! one row per (story, alert, kind) under a UNIQUE idempotency key, so enqueueing twice is a
//! no-op; `alert_messages` holds what is sent: one story or a batch, its rows fixed when it is
//! created, so every attempt carries the same stories and the same key. Sending happens after
//! commit, outside any transaction (`service::alerts`); a message is leased (its
//! `next_attempt_at` moved ahead) before it is sent, so two processes never send it at once,
//! and a crash mid-send leaves it to be retried once the lease ends.
//!
//! Every function here takes a [`Db`], so SQLite and PostgreSQL run the same statements.
//! The trigger is one function, [`enqueue_story`]: "story S, matching rules R, now carried by
//! N outlets".

use std::collections::HashSet;

use chrono::{DateTime, Utc};

use super::sql::{self, Db, Dialect};
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
    tx: &mut dyn Db,
    plan: &AlertPlan,
    story_id: i64,
    rules: &[String],
    outlets: u32,
    include_new: bool,
    now: &str,
) -> Result<usize> {
    let mut added = 0;
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
            added += tx.exec(
                "INSERT INTO alert_outbox (idem_key, alert, story_id, kind, outlets, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(idem_key) DO NOTHING",
                &[
                    key.into(),
                    (&t.name).into(),
                    story_id.into(),
                    kind.into(),
                    i64::from(outlets).into(),
                    now.into(),
                ],
            )? as usize;
        }
    }
    Ok(added)
}

/// The alerts of the stories of `items` (see [`enqueue_story`]): each story's rules are those
/// of all its reports, its outlets the distinct feeds that carried any of them. With no alerts
/// configured this returns at once.
pub(crate) fn enqueue_for_items(
    tx: &mut dyn Db,
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
        let story: Option<i64> =
            match tx.row("SELECT story_id FROM items WHERE id = ?1", &[item.into()])? {
                Some(r) => r.get(0)?,
                None => None,
            };
        let Some(story) = story else { continue };
        if !stories.insert(story) {
            continue;
        }
        let rules: Vec<String> = tx
            .rows(
                "SELECT DISTINCT r.rule FROM item_rules r JOIN items i ON i.id = r.item_id
                 WHERE i.story_id = ?1 ORDER BY r.rule",
                &[story.into()],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect::<Result<_>>()?;
        let outlets: u32 = sql::value(
            tx,
            "SELECT count(DISTINCT s.feed_id) FROM sightings s JOIN items i ON i.id = s.item_id
             WHERE i.story_id = ?1",
            &[story.into()],
        )?;
        added += enqueue_story(tx, plan, story, &rules, outlets.max(1), include_new, now)?;
    }
    Ok(added)
}

/// [`enqueue_for_items`] in a transaction of its own (`backfill --alert`).
pub fn enqueue_story_alerts(
    db: &mut dyn Db,
    plan: &AlertPlan,
    items: &[i64],
    include_new: bool,
    now: DateTime<Utc>,
) -> Result<usize> {
    let now = ts(now);
    sql::transaction(db, |tx| {
        enqueue_for_items(tx, plan, items, include_new, &now)
    })
}

impl Store {
    /// [`enqueue_story_alerts`] with this store's alerts.
    pub fn enqueue_story_alerts(
        &mut self,
        items: &[i64],
        include_new: bool,
        now: DateTime<Utc>,
    ) -> Result<usize> {
        let plan = self.alerts.clone();
        enqueue_story_alerts(self, &plan, items, include_new, now)
    }

    /// Which alerts the commits of this store enqueue ([`enqueue_story`]).
    pub fn set_alerts(&mut self, plan: AlertPlan) {
        self.alerts = plan;
    }

    /// The alert triggers in use.
    pub fn alert_plan(&self) -> &AlertPlan {
        &self.alerts
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

fn column<T: sql::FromVal>(rows: Vec<sql::Row>) -> Result<Vec<T>> {
    rows.iter().map(|r| r.get(0)).collect()
}

/// The cheap check a delivery pass makes before any other: rows waiting for a message plus
/// messages not yet sent (both from partial indexes).
pub fn work(db: &mut dyn Db) -> Result<u64> {
    sql::value(
        db,
        "SELECT (SELECT count(*) FROM alert_outbox WHERE message_id IS NULL AND state = 'pending')
              + (SELECT count(*) FROM alert_messages WHERE state = 'pending')",
        &[],
    )
}

/// Alerts with rows waiting to be put into a message.
pub fn with_unassigned(db: &mut dyn Db) -> Result<Vec<String>> {
    column(db.rows(
        "SELECT DISTINCT alert FROM alert_outbox WHERE message_id IS NULL AND state = 'pending' ORDER BY alert",
        &[],
    )?)
}

/// Creation times of `alert`'s messages created at or after `since`, oldest first, and the
/// newest one ever (for `min_interval`).
pub fn message_times(db: &mut dyn Db, alert: &str, since: DateTime<Utc>) -> Result<MessageTimes> {
    let recent: Vec<String> = column(db.rows(
        "SELECT created_at FROM alert_messages WHERE alert = ?1 AND created_at >= ?2 AND state != 'dropped'
         ORDER BY created_at",
        &[alert.into(), ts(since).into()],
    )?)?;
    let last: Option<String> = sql::value(
        db,
        "SELECT max(created_at) FROM alert_messages WHERE alert = ?1 AND state != 'dropped'",
        &[alert.into()],
    )?;
    Ok((
        recent.iter().filter_map(|t| parse_ts(t)).collect(),
        last.as_deref().and_then(parse_ts),
    ))
}

/// Record that `alert`'s waiting stories are held until `until` (shown by `alerts list`, and
/// named in the batch that ends the hold).
pub fn hold(db: &mut dyn Db, alert: &str, why: &str, until: DateTime<Utc>) -> Result<()> {
    db.exec(
        "INSERT INTO alert_destinations (alert, held_reason, held_until) VALUES (?1, ?2, ?3)
         ON CONFLICT(alert) DO UPDATE SET held_reason = ?2, held_until = ?3",
        &[alert.into(), why.into(), ts(until).into()],
    )?;
    Ok(())
}

/// Put every row of `alert` not yet in a message into one new message, due now (naming the
/// hold it ends, if any). Returns its id, or `None` when there was nothing to put in.
pub fn claim(db: &mut dyn Db, alert: &str, now: DateTime<Utc>) -> Result<Option<i64>> {
    // SQLite's write transaction is the whole database's; PostgreSQL's rows are locked, and a
    // second claimer waits, then finds them taken.
    let lock = match db.dialect() {
        Dialect::Sqlite => "",
        Dialect::Postgres => " FOR UPDATE",
    };
    sql::transaction(db, |tx| {
        let held: Option<String> = match tx.row(
            "SELECT held_reason FROM alert_destinations WHERE alert = ?1",
            &[alert.into()],
        )? {
            Some(r) => r.get(0)?,
            None => None,
        };
        let rows: Vec<(i64, String)> = tx
            .rows(
                &format!(
                    "SELECT id, idem_key FROM alert_outbox WHERE alert = ?1 AND message_id IS NULL AND state = 'pending'
                     ORDER BY id{lock}"
                ),
                &[alert.into()],
            )?
            .iter()
            .map(|r| Ok((r.get(0)?, r.get(1)?)))
            .collect::<Result<_>>()?;
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
        let id: i64 = sql::value(
            tx,
            "INSERT INTO alert_messages (idem_key, alert, created_at, next_attempt_at, held)
             VALUES (?1, ?2, ?3, ?3, ?4) RETURNING id",
            &[key.into(), alert.into(), now_s.into(), held.into()],
        )?;
        for (row, _) in &rows {
            tx.exec(
                "UPDATE alert_outbox SET message_id = ?2 WHERE id = ?1",
                &[(*row).into(), id.into()],
            )?;
        }
        tx.exec(
            "UPDATE alert_destinations SET held_reason = NULL, held_until = NULL WHERE alert = ?1",
            &[alert.into()],
        )?;
        Ok(Some(id))
    })
}

/// Pending messages due at `now`, oldest first.
pub fn due_messages(db: &mut dyn Db, now: DateTime<Utc>) -> Result<Vec<i64>> {
    column(db.rows(
        "SELECT id FROM alert_messages WHERE state = 'pending' AND next_attempt_at <= ?1
         ORDER BY next_attempt_at, id",
        &[ts(now).into()],
    )?)
}

/// The earliest time a pending message of `alert` is next due, if any.
pub fn next_due(db: &mut dyn Db, alert: &str) -> Result<Option<DateTime<Utc>>> {
    let t: Option<String> = sql::value(
        db,
        "SELECT min(next_attempt_at) FROM alert_messages WHERE alert = ?1 AND state = 'pending'",
        &[alert.into()],
    )?;
    Ok(t.as_deref().and_then(parse_ts))
}

/// Take message `id` for sending until `until`: false when it is not due at `now` (sent, or
/// another sender holds it). One conditional UPDATE, so of two senders one wins.
pub fn lease(db: &mut dyn Db, id: i64, now: DateTime<Utc>, until: DateTime<Utc>) -> Result<bool> {
    let n = db.exec(
        "UPDATE alert_messages SET next_attempt_at = ?3
         WHERE id = ?1 AND state = 'pending' AND next_attempt_at <= ?2",
        &[id.into(), ts(now).into(), ts(until).into()],
    )?;
    Ok(n == 1)
}

/// Message `id` with its stories.
pub fn message(db: &mut dyn Db, id: i64) -> Result<Option<QueuedMessage>> {
    let Some(r) = db.row(
        "SELECT id, idem_key, alert, attempts, created_at, held FROM alert_messages WHERE id = ?1",
        &[id.into()],
    )?
    else {
        return Ok(None);
    };
    let mut m = QueuedMessage {
        id: r.get(0)?,
        idem_key: r.get(1)?,
        alert: r.get(2)?,
        attempts: r.get(3)?,
        created_at: r.get(4)?,
        held: r.get(5)?,
        stories: Vec::new(),
    };
    m.stories = db
        .rows(
            "SELECT idem_key, story_id, kind, outlets, created_at FROM alert_outbox WHERE message_id = ?1 ORDER BY id",
            &[id.into()],
        )?
        .iter()
        .map(|r| {
            Ok(QueuedStory {
                idem_key: r.get(0)?,
                story_id: r.get(1)?,
                kind: r.get(2)?,
                outlets: r.get(3)?,
                created_at: r.get(4)?,
            })
        })
        .collect::<Result<_>>()?;
    Ok(Some(m))
}

/// Message `id` was delivered.
pub fn mark_sent(db: &mut dyn Db, id: i64, alert: &str, now: DateTime<Utc>) -> Result<()> {
    let now_s = ts(now);
    sql::transaction(db, |tx| {
        tx.exec(
            "UPDATE alert_messages SET state = 'sent', sent_at = ?2, attempts = attempts + 1, last_error = NULL
             WHERE id = ?1",
            &[id.into(), (&now_s).into()],
        )?;
        tx.exec(
            "UPDATE alert_outbox SET state = 'sent', done_at = ?2 WHERE message_id = ?1",
            &[id.into(), (&now_s).into()],
        )?;
        tx.exec(
            "INSERT INTO alert_destinations (alert, failing_since, last_error, last_success_at) VALUES (?1, NULL, NULL, ?2)
             ON CONFLICT(alert) DO UPDATE SET failing_since = NULL, last_error = NULL, last_success_at = ?2",
            &[alert.into(), (&now_s).into()],
        )?;
        Ok(())
    })
}

/// Message `id` failed with `error`; it is next tried at `next`.
pub fn mark_failed(
    db: &mut dyn Db,
    id: i64,
    alert: &str,
    error: &str,
    now: DateTime<Utc>,
    next: DateTime<Utc>,
) -> Result<()> {
    sql::transaction(db, |tx| {
        tx.exec(
            "UPDATE alert_messages SET attempts = attempts + 1, last_error = ?2, next_attempt_at = ?3
             WHERE id = ?1 AND state = 'pending'",
            &[id.into(), error.into(), ts(next).into()],
        )?;
        tx.exec(
            "INSERT INTO alert_destinations (alert, failing_since, last_error) VALUES (?1, ?2, ?3)
             ON CONFLICT(alert) DO UPDATE SET failing_since = COALESCE(alert_destinations.failing_since, ?2),
               last_error = ?3",
            &[alert.into(), ts(now).into(), error.into()],
        )?;
        Ok(())
    })
}

/// Give up on everything not sent that was enqueued before `before`: messages and rows become
/// `dropped`. Returns what was dropped (one entry per row).
pub fn drop_expired(
    db: &mut dyn Db,
    alert: &str,
    before: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Vec<DroppedAlert>> {
    sql::transaction(db, |tx| {
        let dropped = tx
            .rows(
                "UPDATE alert_outbox SET state = 'dropped', done_at = ?2
                 WHERE state = 'pending' AND alert = ?3 AND (
                   (message_id IS NULL AND created_at < ?1)
                   OR message_id IN (SELECT m.id FROM alert_messages m WHERE m.state = 'pending'
                        AND (SELECT min(o.created_at) FROM alert_outbox o WHERE o.message_id = m.id) < ?1))
                 RETURNING alert, idem_key, created_at",
                &[ts(before).into(), ts(now).into(), alert.into()],
            )?
            .iter()
            .map(|r| {
                Ok(DroppedAlert {
                    alert: r.get(0)?,
                    idem_key: r.get(1)?,
                    created_at: r.get(2)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        tx.exec(
            "UPDATE alert_messages SET state = 'dropped'
             WHERE state = 'pending' AND alert = ?1 AND NOT EXISTS
               (SELECT 1 FROM alert_outbox o WHERE o.message_id = alert_messages.id AND o.state = 'pending')",
            &[alert.into()],
        )?;
        Ok(dropped)
    })
}

/// The outbox, newest first (at most `limit` rows).
pub fn outbox(db: &mut dyn Db, limit: usize) -> Result<Vec<OutboxRow>> {
    db.rows(
        "SELECT o.idem_key, o.alert, o.story_id, i.title, o.kind, o.outlets, o.state, o.created_at,
           m.idem_key, COALESCE(m.attempts, 0),
           COALESCE(m.next_attempt_at, CASE WHEN o.message_id IS NULL AND o.state = 'pending' THEN d.held_until END),
           m.last_error, m.sent_at,
           CASE WHEN o.message_id IS NULL AND o.state = 'pending' THEN d.held_reason ELSE m.held END
         FROM alert_outbox o LEFT JOIN alert_messages m ON m.id = o.message_id
         LEFT JOIN items i ON i.id = (SELECT min(id) FROM items WHERE story_id = o.story_id)
         LEFT JOIN alert_destinations d ON d.alert = o.alert
         ORDER BY o.id DESC LIMIT ?1",
        &[i64::try_from(limit).unwrap_or(i64::MAX).into()],
    )?
    .iter()
    .map(|r| {
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
    })
    .collect()
}

/// Destinations failing without a success since before `since` (e.g. a day ago).
pub fn failing(db: &mut dyn Db, since: DateTime<Utc>) -> Result<Vec<FailingDestination>> {
    db.rows(
        "SELECT alert, failing_since, last_error FROM alert_destinations
         WHERE failing_since IS NOT NULL AND failing_since <= ?1 ORDER BY alert",
        &[ts(since).into()],
    )?
    .iter()
    .map(|r| {
        Ok(FailingDestination {
            alert: r.get(0)?,
            failing_since: r.get(1)?,
            last_error: r.get(2)?,
        })
    })
    .collect()
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
        assert_eq!(
            enqueue_story(&mut sql::Sqlite(&tx), &plan, 7, &nca, 1, true, now).unwrap(),
            1
        );
        assert_eq!(
            enqueue_story(&mut sql::Sqlite(&tx), &plan, 7, &nca, 2, true, now).unwrap(),
            0,
            "a repeat is a no-op"
        );
        assert_eq!(
            enqueue_story(&mut sql::Sqlite(&tx), &plan, 7, &nca, 3, true, now).unwrap(),
            1,
            "reached 3 outlets"
        );
        assert_eq!(
            enqueue_story(&mut sql::Sqlite(&tx), &plan, 7, &nca, 4, true, now).unwrap(),
            0
        );
        // The story gains rule x: first match of x-only's rules.
        let both = ["nca".to_string(), "x".to_string()];
        assert_eq!(
            enqueue_story(&mut sql::Sqlite(&tx), &plan, 7, &both, 4, true, now).unwrap(),
            1
        );
        assert_eq!(
            enqueue_story(&mut sql::Sqlite(&tx), &plan, 8, &[], 1, true, now).unwrap(),
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
        enqueue_story(&mut sql::Sqlite(&tx), &plan, 9, &nca, 1, true, now).unwrap();
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
                enqueue_story(
                    &mut sql::Sqlite(&tx),
                    &plan(),
                    id,
                    &["nca".into()],
                    1,
                    true,
                    &ts(now),
                )
                .unwrap();
            }
            tx.commit().unwrap();
        }
        assert_eq!(work(&mut s).unwrap(), 2);
        let id = claim(&mut s, "all", now).unwrap().unwrap();
        assert_eq!(
            claim(&mut s, "all", now).unwrap(),
            None,
            "rows are in one message only"
        );
        let m = message(&mut s, id).unwrap().unwrap();
        assert_eq!(m.idem_key, "batch-2:story-1:all:new");
        assert_eq!(m.stories.len(), 2);
        let until = now + chrono::Duration::minutes(2);
        assert!(lease(&mut s, id, now, until).unwrap());
        assert!(
            !lease(&mut s, id, now, until).unwrap(),
            "held by the first sender"
        );
        mark_sent(&mut s, id, "all", now).unwrap();
        assert_eq!(work(&mut s).unwrap(), 0);
        assert!(due_messages(&mut s, until).unwrap().is_empty());
    }
}
