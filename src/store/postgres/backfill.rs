//! `newswatch backfill` on PostgreSQL: [`PgStore::backfill`] gives what the SQLite
//! [`Store::backfill`](crate::store::Store::backfill) gives for the same archive. For each rule
//! the archive's tsvectors narrow the candidates ([`ts_query`], as
//! [`crate::store::archive::search_archive`] does on PostgreSQL, but oldest first) and the
//! matcher decides. Candidates are read, confirmed and stored a batch at a time, each batch in
//! one short transaction (a dry run rolls it back), so a running worker's writes wait on it only
//! briefly. Matches become items through the poll path's `store_match` (the same canonical-URL
//! dedup), marked backfilled with the entry's own first-seen time, and are placed in stories at
//! the end by the poll path's placement, under its advisory lock.

use chrono::{DateTime, Utc};
use postgres::Transaction;

use super::poll::{At, PgStore, Statements, store_match};
use crate::pipeline::dedup;
use crate::pipeline::matcher::{Matcher, Query};
use crate::store::archive::{
    ArchiveRow, BackfillHit, BackfillReport, ROW_SELECT, TsPlan, archive_row, backfill_match,
    finish_rule_backfill, ts_query,
};
use crate::store::sql::{Db, PgTx, Val};
use crate::store::{MatchPlace, MatchedEntry, PollStore, Result, ts};

/// Candidates read, confirmed and stored per transaction.
const BATCH: i64 = 500;

impl PgStore {
    /// Apply `rules` (name, query) to the archived entries first seen since `since`, as
    /// [`Store::backfill`](crate::store::Store::backfill) does: matches the archive holds that
    /// are not stored yet are added (marked backfilled, with their archived first-seen times),
    /// or on a dry run only listed; stored matches of these rules that the rule no longer
    /// matches are listed, never removed. Backfilled matches enqueue alerts only with `alert`.
    ///
    /// Blocking (the sync client): not on a thread running async code.
    pub fn backfill(
        &mut self,
        rules: &[(String, Query)],
        since: Option<DateTime<Utc>>,
        dry_run: bool,
        alert: bool,
        now: DateTime<Utc>,
    ) -> Result<BackfillReport> {
        let mut report = BackfillReport::default();
        let now_s = ts(now);
        let since_s = since.map(ts);
        let t = self.target().to_string();
        let mut alert_items: Vec<i64> = Vec::new();
        for (name, q) in rules {
            let matcher = Matcher::new(vec![(name.clone(), q.clone())]);
            if let Some((sql, tsq)) = candidates_sql(q, since_s.is_some()) {
                let mut after = i64::MIN;
                loop {
                    let (client, st) = self.parts()?;
                    let mut tx = client.transaction().at(&t)?;
                    let mut params = vec![Val::from(tsq.clone()), Val::Int(after), Val::Int(BATCH)];
                    params.extend(since_s.iter().map(Val::from));
                    let rows = PgTx {
                        tx: &mut tx,
                        target: &t,
                    }
                    .rows(&sql, &params)?;
                    for r in &rows {
                        let r = archive_row(r)?;
                        after = r.id;
                        let Some(m) = backfill_match(&matcher, &r) else {
                            continue;
                        };
                        if has_rule(&mut tx, st, &t, r.item_id, name)? {
                            continue;
                        }
                        let mut hit = BackfillHit::new(&r, name);
                        if !dry_run {
                            let item = store_backfilled(
                                &mut tx,
                                st,
                                &t,
                                &r,
                                &m,
                                &now_s,
                                &mut report.new_items,
                            )?;
                            hit.item_id = Some(item);
                            if alert {
                                alert_items.push(item);
                            }
                        }
                        report.added.push(hit);
                    }
                    if dry_run {
                        tx.rollback().at(&t)?;
                    } else {
                        tx.commit().at(&t)?;
                    }
                    if (rows.len() as i64) < BATCH {
                        break;
                    }
                }
            }
            report.no_longer.extend(finish_rule_backfill(
                self.connection()?,
                &matcher,
                name,
                q,
                dry_run,
                since.is_some(),
                &now_s,
            )?);
        }
        // Backfilled matches join their stories now (the poll path's placement, under its
        // advisory lock); with `alert` their stories alert as new ones would (a placement
        // never alerts for backfilled items).
        if !dry_run && !report.added.is_empty() {
            PollStore::place_stories(self, now)?;
            if alert {
                let plan = self.alert_plan().clone();
                crate::store::alerts::enqueue_story_alerts(
                    self.connection()?,
                    &plan,
                    &alert_items,
                    true,
                    now,
                )?;
            }
        }
        Ok(report)
    }
}

/// The statement reading a batch of `q`'s candidates oldest first, and its `tsquery`: `?1` =
/// the tsquery (NULL when every row is a candidate), `?2` = after this archive id, `?3` = the
/// batch, `?4` = first seen at or after (with `since`). `None`: no row can match.
fn candidates_sql(q: &Query, since: bool) -> Option<(String, Option<String>)> {
    let since = if since {
        " AND a.first_seen_at >= ?4"
    } else {
        ""
    };
    match ts_query(q) {
        TsPlan::Nothing => None,
        // Without a tsquery there is no ?1 in the statement, and PostgreSQL would not know
        // its type.
        TsPlan::ScanAll => Some((
            format!(
                "{ROW_SELECT} WHERE ?1::text IS NULL AND a.id > ?2{since} ORDER BY a.id LIMIT ?3"
            ),
            None,
        )),
        // The documents that match and the rows not indexed yet.
        TsPlan::Query(t) => Some((
            format!(
                "{ROW_SELECT} JOIN {} ON c.id = a.id WHERE true{since} ORDER BY a.id LIMIT ?3",
                super::index::candidates("> ?2")
            ),
            Some(t),
        )),
    }
}

/// Whether stored item `item` (the archived entry's, if any) already has `rule`.
fn has_rule(
    tx: &mut Transaction<'_>,
    st: &mut Statements,
    t: &str,
    item: Option<i64>,
    rule: &str,
) -> Result<bool> {
    let Some(item) = item else {
        return Ok(false);
    };
    let q = st
        .get(
            tx,
            "SELECT 1 FROM item_rules WHERE item_id = $1 AND rule = $2",
        )
        .at(t)?;
    Ok(tx.query_opt(&q, &[&item, &rule]).at(t)?.is_some())
}

/// Store one backfilled match (as `store::archive::store_backfilled`): the entry's item gains
/// the rule, or a new item (marked backfilled, first seen when the entry was) is created, or an
/// item with its canonical URL joined, and linked to the entry's sighting and archived row.
fn store_backfilled(
    tx: &mut Transaction<'_>,
    st: &mut Statements,
    t: &str,
    r: &ArchiveRow,
    m: &MatchedEntry,
    now: &str,
    new_items: &mut u64,
) -> Result<i64> {
    if let Some(item) = r.item_id {
        // Already stored for another rule: only the rule is new.
        let q = st
            .get(
                tx,
                "INSERT INTO item_rules (item_id, rule, terms, first_matched_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (item_id, rule) DO NOTHING",
            )
            .at(t)?;
        for rule in &m.rules {
            let terms = serde_json::to_string(&rule.terms).unwrap_or_else(|_| "[]".into());
            tx.execute(&q, &[&item, &rule.rule, &terms, &now]).at(t)?;
        }
        return Ok(item);
    }
    let canonical = r.text.link.as_deref().and_then(dedup::canonical_url);
    let (item, new) = store_match(
        tx,
        st,
        t,
        &MatchPlace {
            canonical_url: canonical.as_deref(),
            own_item: None,
            first_seen: &r.first_seen,
            now,
        },
        &r.text,
        m,
    )?;
    if new {
        *new_items += 1;
        let q = st
            .get(tx, "UPDATE items SET backfilled = 1 WHERE id = $1")
            .at(t)?;
        tx.execute(&q, &[&item]).at(t)?;
    }
    let q = st
        .get(tx, "UPDATE archive SET item_id = $2 WHERE id = $1")
        .at(t)?;
    tx.execute(&q, &[&r.id, &item]).at(t)?;
    let q = st
        .get(
            tx,
            "UPDATE sightings SET item_id = $3 WHERE feed_id = $1 AND entry_key = $2 AND item_id IS NULL",
        )
        .at(t)?;
    tx.execute(&q, &[&r.feed_id, &r.entry_key, &item]).at(t)?;
    Ok(item)
}
