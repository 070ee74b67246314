//! Store queries for the web layer: one page of matches by keyset (cursor) pagination, the
//! outlets' own links for a page, and the counts `/metrics` reports.
//!
//! Why keyset and not OFFSET: a page deep into 100,000 matches must cost what the first page
//! costs. Pages are ordered by ([`super::EFFECTIVE_TIME_SQL`], id) descending, the same order
//! as `query`; an index on exactly that expression (migration 0007, [`EFFECTIVE_TIME_INDEX`]) lets SQLite
//! walk the order instead of sorting every match, and the cursor is the last row's key.

use std::collections::HashMap;

use rusqlite::params_from_iter;

use super::{
    EFFECTIVE_TIME_SQL, MatchFilter, MatchRow, Result, Store, filter_sql, match_row, match_select,
};

/// Where a page starts: strictly after this (sort time, id) key, in newest-first order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageKey {
    /// The row's effective time, as stored (RFC 3339 text).
    pub time: String,
    pub id: i64,
}

/// One page of matches and the key to continue after, if there are more.
#[derive(Debug, Clone, Default)]
pub struct MatchPage {
    pub rows: Vec<MatchRow>,
    pub next: Option<PageKey>,
}

/// One outlet's copy of a match: the feed and the link that feed gave.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OutletLink {
    pub feed: String,
    /// Only http(s) links (see [`crate::text::web_link`]).
    pub link: Option<String>,
}

/// The counts `/metrics` reads from the database at scrape time.
#[derive(Debug, Clone, Default)]
pub struct WebCounts {
    /// Stored matches (items).
    pub items: u64,
    /// Stories they form.
    pub stories: u64,
    /// Stored matches per rule.
    pub per_rule: Vec<(String, u64)>,
}

/// The index on ([`super::EFFECTIVE_TIME_SQL`], id), created by migration 0007.
pub const EFFECTIVE_TIME_INDEX: &str = "items_effective_time";

impl Store {
    /// Up to `limit` matches passing `filter` (its own limit ignored), newest first, starting
    /// after `after`.
    pub fn match_page(
        &self,
        filter: &MatchFilter,
        after: Option<&PageKey>,
        limit: usize,
    ) -> Result<MatchPage> {
        let (cond, mut args) = filter_sql(filter);
        let mut sql = format!("{} WHERE 1 = 1{cond}", match_select());
        if let Some(key) = after {
            args.push(key.time.clone().into());
            let t = args.len();
            args.push(key.id.into());
            let id = args.len();
            sql.push_str(&format!(
                " AND ({EFFECTIVE_TIME_SQL}, i.id) < (?{t}, ?{id})"
            ));
        }
        // One more than asked: tells whether there is a next page.
        args.push(
            i64::try_from(limit.saturating_add(1))
                .unwrap_or(i64::MAX)
                .into(),
        );
        sql.push_str(&format!(
            " ORDER BY {EFFECTIVE_TIME_SQL} DESC, i.id DESC LIMIT ?{}",
            args.len()
        ));
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(params_from_iter(args), match_row)?;
        let mut page = MatchPage::default();
        let mut last_key = None;
        for row in rows {
            let raw = row?;
            if page.rows.len() == limit {
                page.next = last_key.take();
                break;
            }
            let time = raw.time.clone();
            let m = raw.finish()?;
            last_key = Some(PageKey { time, id: m.id });
            page.rows.push(m);
        }
        Ok(page)
    }

    /// Each outlet's own link for the items `ids` (from the archive, which keeps every feed's
    /// copy), by item id; feeds whose copy is no longer archived are listed without a link.
    pub fn outlet_links(&self, ids: &[i64]) -> Result<HashMap<i64, Vec<OutletLink>>> {
        let mut out: HashMap<i64, Vec<OutletLink>> = HashMap::new();
        if ids.is_empty() {
            return Ok(out);
        }
        let marks: Vec<String> = (1..=ids.len()).map(|i| format!("?{i}")).collect();
        let sql = format!(
            "SELECT s.item_id, f.name,
               (SELECT a.link FROM archive a WHERE a.feed_id = s.feed_id AND a.item_id = s.item_id
                ORDER BY a.id DESC LIMIT 1)
             FROM sightings s JOIN feeds f ON f.id = s.feed_id
             WHERE s.item_id IN ({})
             GROUP BY s.item_id, s.feed_id ORDER BY s.item_id, f.name",
            marks.join(", ")
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map(params_from_iter(ids.iter()), |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?,
            ))
        })?;
        for row in rows {
            let (id, feed, link) = row?;
            let link = crate::text::outgoing_link(link);
            out.entry(id).or_default().push(OutletLink { feed, link });
        }
        Ok(out)
    }

    /// Stored matches in all and per rule.
    pub fn web_counts(&self) -> Result<WebCounts> {
        let items: i64 = self
            .conn
            .query_row("SELECT count(*) FROM items", [], |r| r.get(0))?;
        let mut stmt = self
            .conn
            .prepare_cached("SELECT rule, count(*) FROM item_rules GROUP BY rule ORDER BY rule")?;
        let per_rule = stmt
            .query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?.max(0) as u64))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let stories: i64 = self
            .conn
            .query_row("SELECT count(*) FROM stories", [], |r| r.get(0))?;
        Ok(WebCounts {
            items: items.max(0) as u64,
            stories: stories.max(0) as u64,
            per_rule,
        })
    }

    /// Whether the database accepts a write right now: an IMMEDIATE transaction (the write
    /// lock, waiting up to the busy timeout) rolled back at once.
    pub fn check_writable(&self) -> Result<()> {
        let tx = rusqlite::Transaction::new_unchecked(
            &self.conn,
            rusqlite::TransactionBehavior::Immediate,
        )?;
        tx.rollback()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The index of migration 0007 must be the very expression queries order by, or SQLite
    /// silently stops using it.
    #[test]
    fn migration_index_expression_is_the_effective_time_expression() {
        let squash = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
        let migration = include_str!("../../migrations/sqlite/0007_effective_time_index.sql");
        let expected = squash(&super::super::EFFECTIVE_TIME_SQL.replace("i.", ""));
        assert!(squash(migration).contains(&expected), "{migration}");
    }

    #[test]
    fn keyset_page_query_walks_the_effective_time_index() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).unwrap();
        let plan: Vec<String> = store
            .conn
            .prepare(&format!(
                "EXPLAIN QUERY PLAN SELECT i.id FROM items i WHERE ({EFFECTIVE_TIME_SQL}, i.id) < ('x', 1)
                 ORDER BY {EFFECTIVE_TIME_SQL} DESC, i.id DESC LIMIT 51"
            ))
            .unwrap()
            .query_map([], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        let plan = plan.join("\n");
        assert!(plan.contains(EFFECTIVE_TIME_INDEX), "{plan}");
        assert!(!plan.contains("TEMP B-TREE"), "no sort: {plan}");
    }
}
