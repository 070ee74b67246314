//! Store queries for the web layer: one page of matches by keyset (cursor) pagination, the
//! outlets' own links for a page, and the counts `/metrics` reports.
//!
//! Why keyset and not OFFSET: a page deep into 100,000 matches must cost what the first page
//! costs. Pages are ordered by ([`super::EFFECTIVE_TIME_SQL`], id) descending, the same order
//! as `query`; an index on exactly that expression (migration 0007, [`EFFECTIVE_TIME_INDEX`]) lets SQLite
//! walk the order instead of sorting every match, and the cursor is the last row's key.

use std::collections::HashMap;

use super::sql::{Db, Dialect, Sqlite, Val, value};
use super::{
    MatchFilter, MatchRow, Result, Store, effective_time_sql, filter_sql, match_row, match_select,
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
    /// [`match_page`] on this database.
    pub fn match_page(
        &self,
        filter: &MatchFilter,
        after: Option<&PageKey>,
        limit: usize,
    ) -> Result<MatchPage> {
        match_page(&mut Sqlite(self.conn()), filter, after, limit)
    }

    /// [`outlet_links`] on this database.
    pub fn outlet_links(&self, ids: &[i64]) -> Result<HashMap<i64, Vec<OutletLink>>> {
        outlet_links(&mut Sqlite(self.conn()), ids)
    }

    /// [`web_counts`] on this database.
    pub fn web_counts(&self) -> Result<WebCounts> {
        web_counts(&mut Sqlite(self.conn()))
    }

    /// [`check_writable`] on this database.
    pub fn check_writable(&self) -> Result<()> {
        check_writable(&mut Sqlite(self.conn()))
    }
}

/// Up to `limit` matches passing `filter` (its own limit ignored), newest first, starting
/// after `after`.
pub fn match_page(
    db: &mut dyn Db,
    filter: &MatchFilter,
    after: Option<&PageKey>,
    limit: usize,
) -> Result<MatchPage> {
    let d = db.dialect();
    let eff = effective_time_sql(d);
    let (cond, mut args) = filter_sql(d, filter);
    let mut sql = format!("{} WHERE 1 = 1{cond}", match_select(d));
    if let Some(key) = after {
        args.push(Val::Text(key.time.clone()));
        let t = args.len();
        args.push(Val::Int(key.id));
        let id = args.len();
        sql.push_str(&format!(" AND ({eff}, i.id) < (?{t}, ?{id})"));
    }
    // One more than asked: tells whether there is a next page.
    args.push(Val::Int(
        i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX),
    ));
    sql.push_str(&format!(
        " ORDER BY {eff} DESC, i.id DESC LIMIT ?{}",
        args.len()
    ));
    let mut page = MatchPage::default();
    let mut last_key = None;
    for row in db.rows(&sql, &args)? {
        let raw = match_row(&row)?;
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
pub fn outlet_links(db: &mut dyn Db, ids: &[i64]) -> Result<HashMap<i64, Vec<OutletLink>>> {
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
         GROUP BY s.item_id, s.feed_id, f.name ORDER BY s.item_id, f.name",
        marks.join(", ")
    );
    let args: Vec<Val> = ids.iter().map(|&id| Val::Int(id)).collect();
    for r in db.rows(&sql, &args)? {
        let id: i64 = r.get(0)?;
        let feed: String = r.get(1)?;
        let link = crate::text::outgoing_link(r.get(2)?);
        out.entry(id).or_default().push(OutletLink { feed, link });
    }
    Ok(out)
}

/// Stored matches in all and per rule.
pub fn web_counts(db: &mut dyn Db) -> Result<WebCounts> {
    let items: i64 = value(db, "SELECT count(*) FROM items", &[])?;
    let per_rule = db
        .rows(
            "SELECT rule, count(*) FROM item_rules GROUP BY rule ORDER BY rule",
            &[],
        )?
        .iter()
        .map(|r| Ok((r.get::<String>(0)?, r.get::<i64>(1)?.max(0) as u64)))
        .collect::<Result<Vec<_>>>()?;
    let stories: i64 = value(db, "SELECT count(*) FROM stories", &[])?;
    Ok(WebCounts {
        items: items.max(0) as u64,
        stories: stories.max(0) as u64,
        per_rule,
    })
}

/// Whether the database accepts a write right now: a write transaction (SQLite: the write
/// lock, waiting up to the busy timeout; PostgreSQL: read-write, which a standby refuses)
/// rolled back at once.
pub fn check_writable(db: &mut dyn Db) -> Result<()> {
    db.batch(match db.dialect() {
        Dialect::Sqlite => "BEGIN IMMEDIATE",
        Dialect::Postgres => "BEGIN READ WRITE",
    })?;
    db.batch("ROLLBACK")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::EFFECTIVE_TIME_SQL;

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
