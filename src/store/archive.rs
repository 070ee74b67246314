//! The archive: every entry polled, matched or not, kept as plain text for `[archive] keep`,
//! searchable with the rule language and open to rules written later (`backfill`).
//!
//! Search is exact by construction: SQLite FTS5 only *narrows* the candidates, and the
//! [`Matcher`] — the same code that matches during a poll — decides. The index holds the
//! matcher's own tokens, folded, so every entry the matcher would accept is among the FTS
//! candidates (a superset): phrases are FTS phrases over the same token positions, prefixes are
//! FTS prefixes, acronyms are looked up folded and then confirmed case-exactly, `NOT` is left
//! to the matcher. User text never reaches FTS5's query syntax: the query is built from the
//! parsed rule's tokens, each a quoted string.
//!
//! Indexing may trail the poll: rows are written in the feed's commit and indexed later in
//! batches (by the daemon after each wave of polls, and by any command that searches). Rows
//! above the index watermark are scanned directly, so a search never misses an entry; it says
//! how many it had to scan that way. An edited entry replaces its row with a new id, so a row
//! never changes once indexed.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::sql::{Db, Dialect, Sqlite, Val, value};
use super::{EntryText, MatchPlace, MatchedEntry, Result, Store, StoreError, store_match, ts};
use crate::pipeline::dedup;
use crate::pipeline::matcher::query::{Expr, Pat, Term};
use crate::pipeline::matcher::{Matcher, Query, item_body};
use crate::pipeline::normalise::{fold_cow, tokens};

/// Rows indexed per transaction: small enough that a running daemon's commits wait only
/// briefly for the write lock.
const INDEX_BATCH: usize = 2_000;
/// Rows deleted per transaction by [`Store::prune`] (the write lock is held per batch).
const PRUNE_BATCH: usize = 2_000;

/// One archived entry.
#[derive(Debug, Clone, PartialEq)]
pub struct ArchiveRow {
    pub id: i64,
    pub feed: String,
    pub feed_id: i64,
    pub entry_key: Vec<u8>,
    pub item_id: Option<i64>,
    pub text: EntryText,
    pub first_seen: String,
}

/// What to search: the query plus filters on first-seen time and feed.
#[derive(Debug, Clone, Default)]
pub struct SearchFilter {
    /// Entries first seen at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Entries of any of these feeds (empty: all feeds).
    pub feeds: Vec<String>,
    /// At most this many hits, newest first (`None`: all).
    pub limit: Option<usize>,
}

/// One entry the query matched, with the snippet and terms the matcher reports.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchHit {
    pub row: ArchiveRow,
    pub snippet: String,
    pub terms: Vec<String>,
}

/// The result of [`Store::search_archive`].
#[derive(Debug, Clone, Default)]
pub struct SearchResult {
    pub hits: Vec<SearchHit>,
    /// Entries newer than the full-text index, checked one by one instead.
    pub scanned_unindexed: u64,
    /// True when `limit` cut the list (there are more hits).
    pub truncated: bool,
}

/// What [`Store::prune`] removed (or, on a dry run, would remove).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneCounts {
    /// Unmatched archived entries past `[archive] keep`.
    pub archived: u64,
    /// Matches past `[storage] keep_matches` (never starred ones).
    pub matches: u64,
    /// Longest time one batch held the write lock.
    pub longest_batch: std::time::Duration,
}

/// Size and age of the archive, for `stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ArchiveStats {
    pub entries: u64,
    pub oldest: Option<String>,
    /// Entries not yet in the full-text index.
    pub unindexed: u64,
    /// Bytes on disk of the archive table, its indexes and the full-text index.
    pub bytes: u64,
}

/// A rule version the archive has not been searched with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnappliedRule {
    pub rule: String,
    /// Archived entries first seen before this version of the rule was active.
    pub entries: u64,
}

/// One match found (or, on a dry run, that would be added) by [`Store::backfill`].
#[derive(Debug, Clone, PartialEq)]
pub struct BackfillHit {
    pub archive_id: i64,
    pub feed: String,
    pub title: String,
    pub first_seen: String,
    pub rules: Vec<String>,
    /// The item it was stored as (`None` on a dry run).
    pub item_id: Option<i64>,
}

impl BackfillHit {
    /// Archived entry `r` matched by `rule`, not stored yet.
    pub(crate) fn new(r: &ArchiveRow, rule: &str) -> BackfillHit {
        BackfillHit {
            archive_id: r.id,
            feed: r.feed.clone(),
            title: r.text.title.clone(),
            first_seen: r.first_seen.clone(),
            rules: vec![rule.to_string()],
            item_id: None,
        }
    }
}

/// What `matcher` finds in archived entry `r`, as the poll path would store it (backfill on
/// either backend).
pub(crate) fn backfill_match(matcher: &Matcher, r: &ArchiveRow) -> Option<MatchedEntry> {
    let m = matcher.match_item(&r.text.title, &item_body(&r.text.summary, &r.text.content))?;
    let canonical = r.text.link.as_deref().and_then(dedup::canonical_url);
    Some(MatchedEntry {
        rules: m.rules,
        snippet: m.snippet,
        link_rank: dedup::link_rank(r.text.link.as_deref(), canonical.as_deref(), None),
    })
}

/// The stored matches of `rule` that `matcher` (the rule as written now) no longer matches,
/// and, unless `dry_run` or only entries since some time were checked (`partial`), the rule
/// version recorded as backfilled at `now` (backfill's last step per rule, on either backend).
pub(crate) fn finish_rule_backfill(
    db: &mut dyn super::sql::Db,
    matcher: &Matcher,
    rule: &str,
    query: &Query,
    dry_run: bool,
    partial: bool,
    now: &str,
) -> Result<Vec<NoLongerMatches>> {
    let mut out = Vec::new();
    for r in db.rows(
        "SELECT i.id, i.title, i.summary, i.content FROM items i
         JOIN item_rules r ON r.item_id = i.id WHERE r.rule = ?1 ORDER BY i.id",
        &[rule.into()],
    )? {
        let (id, title, summary, content): (i64, String, String, String) =
            (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
        if matcher
            .match_item(&title, &item_body(&summary, &content))
            .is_none()
        {
            out.push(NoLongerMatches {
                item_id: id,
                rule: rule.to_string(),
                title,
            });
        }
    }
    if !dry_run && !partial {
        db.exec(
            "UPDATE rule_versions SET backfilled_at = ?3 WHERE rule = ?1 AND query = ?2",
            &[rule.into(), query.to_string().into(), now.into()],
        )?;
    }
    Ok(out)
}

/// A stored match that its rule, as written now, no longer matches (an edited rule).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoLongerMatches {
    pub item_id: i64,
    pub rule: String,
    pub title: String,
}

/// What [`Store::backfill`] did.
#[derive(Debug, Clone, Default)]
pub struct BackfillReport {
    pub added: Vec<BackfillHit>,
    pub no_longer: Vec<NoLongerMatches>,
    /// New items created (the rest joined items already stored).
    pub new_items: u64,
}

/// The matcher's tokens of `text`, folded and joined by spaces: what the index holds.
fn fts_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for t in tokens(text) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&fold_cow(t.text));
    }
    out
}

/// How a full-text query is written: FTS5's syntax for SQLite, `tsquery`'s for PostgreSQL.
#[derive(Clone, Copy)]
enum Syntax {
    Fts5,
    TsQuery,
}

impl Syntax {
    fn and(self) -> &'static str {
        match self {
            Syntax::Fts5 => " AND ",
            Syntax::TsQuery => " & ",
        }
    }

    fn or(self) -> &'static str {
        match self {
            Syntax::Fts5 => " OR ",
            Syntax::TsQuery => " | ",
        }
    }

    fn phrase(self, t: &Term, title: bool) -> String {
        match self {
            Syntax::Fts5 => phrase(t, title),
            Syntax::TsQuery => ts_phrase(t, title),
        }
    }
}

/// An FTS5 query whose matches include every entry `q` matches (see the module docs).
pub(crate) fn fts_query(q: &Query) -> String {
    full_text_query(q, Syntax::Fts5).unwrap_or_else(|| "\"\"".to_string())
}

/// How PostgreSQL finds the candidates of a search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TsPlan {
    /// Rows whose tsvector matches this `tsquery` (text to cast with `::tsquery`): a superset
    /// of what the query matches, over the tsvectors
    /// [`crate::store::copy::tsvector_literal`] writes.
    Query(String),
    /// Every row: a term has no word the index holds (longer than a lexeme may be).
    ScanAll,
    /// No row can match.
    Nothing,
}

/// The [`TsPlan`] of `q`.
pub(crate) fn ts_query(q: &Query) -> TsPlan {
    fn unindexable(e: &Expr) -> bool {
        let term = |t: &Term| {
            t.pats.iter().all(|p| {
                let (Pat::Folded(w) | Pat::Exact(w)) = p;
                let w = fold_cow(w);
                w.is_empty() || w.len() > crate::store::copy::MAX_LEXEME
            })
        };
        match e {
            Expr::Term(t) => term(t),
            Expr::Near(a, b, _) => term(a) || term(b),
            Expr::Not(i) | Expr::Title(i) => unindexable(i),
            Expr::And(items) | Expr::Or(items) => items.iter().any(unindexable),
        }
    }
    if unindexable(q.root()) {
        return TsPlan::ScanAll;
    }
    match full_text_query(q, Syntax::TsQuery) {
        Some(t) => TsPlan::Query(t),
        None => TsPlan::Nothing,
    }
}

fn full_text_query(q: &Query, syn: Syntax) -> Option<String> {
    let narrowed = narrow(q.root(), false, syn);
    // A rule also needs one of its positive terms present (matcher semantics), which bounds
    // queries like `a OR NOT b` that narrow to nothing by themselves.
    let mut positive = Vec::new();
    positive_terms(q.root(), false, false, syn, &mut positive);
    let any_positive = match positive.len() {
        0 => None,
        1 => positive.pop(),
        _ => Some(format!("({})", positive.join(syn.or()))),
    };
    match (narrowed, any_positive) {
        (Some(n), Some(p)) if n != p => Some(format!("({n}){}{p}", syn.and())),
        (Some(n), _) => Some(n),
        (None, Some(p)) => Some(p),
        // A parsed query always has a positive term; an impossible query finds nothing.
        (None, None) => None,
    }
}

/// `Some(query)` for a sub-query that narrows, `None` for "anything" (what NOT leaves).
fn narrow(e: &Expr, title: bool, syn: Syntax) -> Option<String> {
    match e {
        Expr::Term(t) => Some(syn.phrase(t, title)),
        // Both terms present narrows; the matcher checks the distance.
        Expr::Near(a, b, _) => Some(format!(
            "({}{}{})",
            syn.phrase(a, title),
            syn.and(),
            syn.phrase(b, title)
        )),
        Expr::Not(_) => None,
        Expr::Title(inner) => narrow(inner, true, syn),
        Expr::And(items) => {
            let parts: Vec<String> = items.iter().filter_map(|i| narrow(i, title, syn)).collect();
            match parts.len() {
                0 => None,
                1 => parts.into_iter().next(),
                _ => Some(format!("({})", parts.join(syn.and()))),
            }
        }
        Expr::Or(items) => {
            let parts: Option<Vec<String>> = items.iter().map(|i| narrow(i, title, syn)).collect();
            parts.map(|p| format!("({})", p.join(syn.or())))
        }
    }
}

fn positive_terms(e: &Expr, negated: bool, title: bool, syn: Syntax, out: &mut Vec<String>) {
    match e {
        Expr::Term(t) if !negated => out.push(syn.phrase(t, title)),
        Expr::Near(a, b, _) if !negated => {
            out.push(syn.phrase(a, title));
            out.push(syn.phrase(b, title));
        }
        Expr::Term(_) | Expr::Near(..) => {}
        Expr::Not(inner) => positive_terms(inner, !negated, title, syn, out),
        Expr::Title(inner) => positive_terms(inner, negated, true, syn, out),
        Expr::And(items) | Expr::Or(items) => {
            for i in items {
                positive_terms(i, negated, title, syn, out);
            }
        }
    }
}

/// A term as an FTS5 phrase of folded tokens, quoted (so no FTS syntax can come from it).
fn phrase(t: &Term, title: bool) -> String {
    let words: Vec<String> = t
        .pats
        .iter()
        .map(|p| match p {
            Pat::Folded(w) | Pat::Exact(w) => fold_cow(w).replace('"', "\"\""),
        })
        .collect();
    let mut s = format!("\"{}\"", words.join(" "));
    if t.prefix {
        s.push_str(" *");
    }
    if title {
        s = format!("title : {s}");
    }
    s
}

/// A term as a `tsquery`: every folded word present (AND, not the phrase operator: the
/// tsvector's positions are capped, so adjacency could miss a phrase deep in a long body; the
/// matcher checks the phrase), each word a quoted lexeme (no tsquery syntax can come from the
/// text), `:*` for the prefix of the last one, weight A (the title) in a title scope.
fn ts_phrase(t: &Term, title: bool) -> String {
    let n = t.pats.len();
    let mut words = Vec::with_capacity(n);
    for (i, p) in t.pats.iter().enumerate() {
        let (Pat::Folded(w) | Pat::Exact(w)) = p;
        let w = fold_cow(w);
        // The index leaves out what it cannot hold (crate::store::copy::tsvector_literal),
        // so such a word cannot narrow.
        if w.is_empty() || w.len() > crate::store::copy::MAX_LEXEME {
            continue;
        }
        let mut lexeme = String::with_capacity(w.len() + 6);
        lexeme.push('\'');
        for c in w.chars() {
            match c {
                '\'' => lexeme.push_str("''"),
                '\\' => lexeme.push_str("\\\\"),
                c => lexeme.push(c),
            }
        }
        lexeme.push('\'');
        let prefix = t.prefix && i + 1 == n;
        match (prefix, title) {
            (true, true) => lexeme.push_str(":*A"),
            (true, false) => lexeme.push_str(":*"),
            (false, true) => lexeme.push_str(":A"),
            (false, false) => {}
        }
        words.push(lexeme);
    }
    match words.len() {
        // Not reached: ts_query scans every row for such a term.
        0 => "''".to_string(),
        1 => words.remove(0),
        _ => format!("({})", words.join(" & ")),
    }
}

/// Write (or replace, for an edited entry) the archived copy of one entry. Runs inside the
/// feed's commit.
pub(super) fn put(
    tx: &Connection,
    feed_id: i64,
    entry_key: &[u8; 16],
    item_id: Option<i64>,
    text: &EntryText,
    now: &str,
    is_new: bool,
) -> Result<()> {
    let authors = serde_json::to_string(&text.authors).unwrap_or_else(|_| "[]".into());
    // A new entry (the feed had no sighting of it) has no archive row either: every row is
    // written beside its sighting and both go only with the feed. Insert it straight away;
    // should a row be there after all, the UNIQUE (feed_id, entry_key) constraint says so
    // and the edit path below replaces it.
    if is_new {
        match insert(tx, feed_id, entry_key, item_id, text, &authors, now) {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE => {}
            other => return other.map(|_| ()).map_err(Into::into),
        }
    }
    // An edit: drop the old row (and its index entry, if it was indexed), keep its first-seen
    // time. The new row gets a new id above the watermark and is indexed with the rest.
    let old: Option<(i64, String)> = tx
        .prepare_cached(
            "DELETE FROM archive WHERE feed_id = ?1 AND entry_key = ?2 RETURNING id, first_seen_at",
        )?
        .query_row(params![feed_id, &entry_key[..]], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    if let Some((old_id, _)) = &old {
        unindex(tx, *old_id)?;
    }
    let first_seen = old.as_ref().map_or(now, |(_, t)| t.as_str());
    insert(tx, feed_id, entry_key, item_id, text, &authors, first_seen)?;
    Ok(())
}

/// The archive row of one entry.
fn insert(
    tx: &Connection,
    feed_id: i64,
    entry_key: &[u8; 16],
    item_id: Option<i64>,
    text: &EntryText,
    authors: &str,
    first_seen: &str,
) -> rusqlite::Result<usize> {
    tx.prepare_cached(
        "INSERT INTO archive (feed_id, entry_key, item_id, guid, link, title, summary, content,
           authors, published_at, first_seen_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        feed_id,
        &entry_key[..],
        item_id,
        text.guid,
        text.link,
        text.title,
        text.summary,
        text.content,
        authors,
        text.published.map(ts),
        first_seen
    ])
}

/// A `count(*)` read as u64.
fn count(r: &rusqlite::Row<'_>) -> rusqlite::Result<u64> {
    Ok(r.get::<_, i64>(0)?.max(0) as u64)
}

/// Entries, oldest entry, unindexed entries and bytes on disk of the archive (either backend).
pub fn archive_stats(db: &mut dyn Db) -> Result<ArchiveStats> {
    let r = db
        .row("SELECT count(*), min(first_seen_at) FROM archive", &[])?
        .ok_or_else(|| StoreError::Corrupt("no archive count".into()))?;
    let (entries, oldest): (i64, Option<String>) = (r.get(0)?, r.get(1)?);
    let bytes: Option<i64> = match db.dialect() {
        Dialect::Sqlite => db
            .row(
                "SELECT sum(pgsize) FROM dbstat WHERE name LIKE 'archive%'",
                &[],
            )?
            .map(|r| r.get(0))
            .transpose()?
            .flatten(),
        Dialect::Postgres => Some(value(
            db,
            "SELECT pg_total_relation_size('archive') + pg_total_relation_size('archive_fts')",
            &[],
        )?),
    };
    // Rows the full-text index does not hold yet: above SQLite's watermark, or queued on
    // PostgreSQL (`archive_pending`).
    let unindexed: i64 = match db.dialect() {
        Dialect::Sqlite => value(
            db,
            "SELECT count(*) FROM archive WHERE id > (SELECT indexed_upto FROM archive_index WHERE id = 1)",
            &[],
        )?,
        Dialect::Postgres => value(db, "SELECT count(*) FROM archive_pending", &[])?,
    };
    Ok(ArchiveStats {
        entries: entries.max(0) as u64,
        oldest,
        unindexed: unindexed.max(0) as u64,
        bytes: bytes.unwrap_or(0).max(0) as u64,
    })
}

/// [`Store::prune`] on either backend: the same small transactions on PostgreSQL (whose
/// `archive_fts` rows go with their archive rows, `ON DELETE CASCADE`).
pub fn prune(
    db: &mut super::sql::AnyDb,
    archive_before: Option<DateTime<Utc>>,
    matches_before: Option<DateTime<Utc>>,
    dry_run: bool,
    now: DateTime<Utc>,
) -> Result<PruneCounts> {
    match db {
        super::sql::AnyDb::Sqlite(store) => {
            store.prune(archive_before, matches_before, dry_run, now)
        }
        super::sql::AnyDb::Postgres(pg) => {
            prune_pg(pg, archive_before, matches_before, dry_run, now)
        }
    }
}

/// Key of the session advisory lock one cluster worker holds while it prunes ("nwprune").
const PRUNE_LOCK: i64 = 0x6e77_7072_756e_6500;

/// The daily prune of a cluster of PostgreSQL workers: done by whichever worker takes the
/// prune lock first, and only when the last prune (by any worker) is at least `every` old, so
/// that it runs once a day for the cluster and any worker can take it over. `None`: not this
/// worker's turn.
pub fn prune_once_for_cluster(
    pg: &mut super::postgres::PgDb,
    archive_before: Option<DateTime<Utc>>,
    matches_before: Option<DateTime<Utc>>,
    every: chrono::Duration,
    now: DateTime<Utc>,
) -> Result<Option<PruneCounts>> {
    let locked: bool = value(
        pg,
        "SELECT pg_try_advisory_lock(?1)",
        &[Val::Int(PRUNE_LOCK)],
    )?;
    if !locked {
        return Ok(None);
    }
    let run = (|| -> Result<Option<PruneCounts>> {
        let at: Option<String> =
            value(pg, "SELECT pruned_at FROM archive_index WHERE id = 1", &[])?;
        if at
            .as_deref()
            .and_then(super::parse_ts)
            .is_some_and(|at| now - at < every)
        {
            return Ok(None);
        }
        prune_pg(pg, archive_before, matches_before, false, now).map(Some)
    })();
    let unlocked = pg.rows("SELECT pg_advisory_unlock(?1)", &[Val::Int(PRUNE_LOCK)]);
    let out = run?;
    unlocked?;
    Ok(out)
}

fn prune_pg(
    pg: &mut super::postgres::PgDb,
    archive_before: Option<DateTime<Utc>>,
    matches_before: Option<DateTime<Utc>>,
    dry_run: bool,
    now: DateTime<Utc>,
) -> Result<PruneCounts> {
    let mut counts = PruneCounts::default();
    const ARCHIVED: &str = "FROM archive WHERE first_seen_at < ?1 AND item_id IS NULL";
    const MATCHES: &str = "FROM items WHERE first_seen_at < ?1 AND status <> 'starred'";
    let count =
        |pg: &mut super::postgres::PgDb, from: &str, before: DateTime<Utc>| -> Result<u64> {
            let n: i64 = value(
                pg,
                &format!("SELECT count(*) {from}"),
                &[Val::Text(ts(before))],
            )?;
            Ok(n.max(0) as u64)
        };
    if dry_run {
        if let Some(before) = archive_before {
            counts.archived = count(pg, ARCHIVED, before)?;
        }
        if let Some(before) = matches_before {
            counts.matches = count(pg, MATCHES, before)?;
        }
        return Ok(counts);
    }
    for (before, table, from, total) in [
        (matches_before, "items", MATCHES, &mut counts.matches),
        (archive_before, "archive", ARCHIVED, &mut counts.archived),
    ] {
        let Some(before) = before else { continue };
        loop {
            let started = std::time::Instant::now();
            let n = super::sql::transaction(pg, |tx| {
                tx.exec(
                    &format!("DELETE FROM {table} WHERE id IN (SELECT id {from} LIMIT ?2)"),
                    &[Val::Text(ts(before)), Val::Int(PRUNE_BATCH as i64)],
                )
            })?;
            counts.longest_batch = counts.longest_batch.max(started.elapsed());
            *total += n;
            if n < PRUNE_BATCH as u64 {
                break;
            }
        }
    }
    pg.exec(
        "UPDATE archive_index SET pruned_at = ?1 WHERE id = 1",
        &[Val::Text(ts(now))],
    )?;
    Ok(counts)
}

/// The matcher's decision on candidate `r` of a search: a hit is added to `out`; false once
/// `limit` hits are found and another one would follow (the search stops, truncated).
fn confirm(matcher: &Matcher, limit: Option<usize>, out: &mut SearchResult, r: ArchiveRow) -> bool {
    let body = item_body(&r.text.summary, &r.text.content);
    if let Some(m) = matcher.match_item(&r.text.title, &body) {
        if limit.is_some_and(|l| out.hits.len() >= l) {
            out.truncated = true;
            return false;
        }
        let terms = m.rules.into_iter().flat_map(|r| r.terms).collect();
        out.hits.push(SearchHit {
            row: r,
            snippet: m.snippet,
            terms,
        });
    }
    true
}

/// Candidates read per statement by [`search_archive`] on PostgreSQL (newest first, by id).
const PG_SEARCH_BATCH: i64 = 500;

/// Search the archive on either backend, with the same results: on SQLite as
/// [`Store::search_archive`]; on PostgreSQL the tsvector index narrows ([`ts_query`]) and the
/// matcher decides, in batches newest first, so a `--limit` stops early.
pub fn search_archive(
    db: &mut super::sql::AnyDb,
    q: &Query,
    filter: &SearchFilter,
) -> Result<SearchResult> {
    let pg = match db {
        super::sql::AnyDb::Sqlite(store) => return store.search_archive(q, filter),
        super::sql::AnyDb::Postgres(pg) => pg,
    };
    let mut out = SearchResult::default();
    let ts = match ts_query(q) {
        TsPlan::Nothing => return Ok(out),
        TsPlan::ScanAll => None,
        TsPlan::Query(t) => Some(t),
    };
    let matcher = Matcher::new(vec![("search".to_string(), q.clone())]);
    // ?1 = tsquery, ?2 = below this id, ?3 = batch, the filter's parameters from ?4. With a
    // tsquery: the documents that match it and the rows not yet indexed (counted); without
    // one every row is a candidate.
    let (cond, args) = filter_sql(filter, 4);
    let sql = if ts.is_some() {
        format!(
            "{PG_CANDIDATE_SELECT} JOIN {} ON c.id = a.id WHERE true{cond} ORDER BY a.id DESC LIMIT ?3",
            super::postgres::index::candidates("< ?2")
        )
    } else {
        // No ?1 in the statement otherwise: PostgreSQL would not know its type.
        format!(
            "{ROW_SELECT} WHERE ?1::text IS NULL AND a.id < ?2{cond} ORDER BY a.id DESC LIMIT ?3"
        )
    };
    let mut below = i64::MAX;
    loop {
        let mut params = vec![
            Val::from(ts.clone()),
            Val::Int(below),
            Val::Int(PG_SEARCH_BATCH),
        ];
        params.extend(args.iter().map(|a| Val::Text(a.clone())));
        let rows = pg.rows(&sql, &params)?;
        let n = rows.len();
        for r in &rows {
            if ts.is_some() && r.get::<bool>(13)? {
                out.scanned_unindexed += 1;
            }
            let r = archive_row(r)?;
            below = r.id;
            if !confirm(&matcher, filter.limit, &mut out, r) {
                return Ok(out);
            }
        }
        if (n as i64) < PG_SEARCH_BATCH {
            return Ok(out);
        }
    }
}

/// A [`ROW_SELECT`] row read through [`super::sql`].
pub(crate) fn archive_row(r: &super::sql::Row) -> Result<ArchiveRow> {
    let authors: String = r.get(10)?;
    let published: Option<String> = r.get(11)?;
    Ok(ArchiveRow {
        id: r.get(0)?,
        feed: r.get(1)?,
        feed_id: r.get(2)?,
        entry_key: r.get(3)?,
        item_id: r.get(4)?,
        text: EntryText {
            guid: r.get(5)?,
            link: r.get(6)?,
            title: r.get(7)?,
            summary: r.get(8)?,
            content: r.get(9)?,
            authors: serde_json::from_str(&authors).unwrap_or_default(),
            published: published.as_deref().and_then(super::parse_ts),
        },
        first_seen: r.get(12)?,
    })
}

/// Remove row `id` from the full-text index if it was indexed.
fn unindex(tx: &Connection, id: i64) -> Result<()> {
    let upto: i64 = tx
        .prepare_cached("SELECT indexed_upto FROM archive_index WHERE id = 1")?
        .query_row([], |r| r.get(0))?;
    if id <= upto {
        tx.prepare_cached("DELETE FROM archive_fts WHERE rowid = ?1")?
            .execute([id])
            .map_err(fts_error)?;
    }
    Ok(())
}

/// Name the index in errors that come from it, with what to do.
fn fts_error(e: rusqlite::Error) -> StoreError {
    StoreError::Index(e.to_string())
}

macro_rules! row_columns {
    () => {
        "a.id, f.name, a.feed_id, a.entry_key, a.item_id, a.guid, a.link, a.title,
       a.summary, a.content, a.authors, a.published_at, a.first_seen_at"
    };
}

macro_rules! row_from {
    () => {
        "FROM archive a JOIN feeds f ON f.id = a.feed_id"
    };
}

/// The columns [`archive_row`] (and [`row`]) read: an archived row (`a`) with its feed (`f`).
pub(crate) const ROW_SELECT: &str = concat!("SELECT ", row_columns!(), " ", row_from!());

/// [`ROW_SELECT`] with a 14th column, PostgreSQL's candidate flag `c.pending` (joined by the
/// caller: [`super::postgres::index::candidates`]).
pub(crate) const PG_CANDIDATE_SELECT: &str =
    concat!("SELECT ", row_columns!(), ", c.pending ", row_from!());

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ArchiveRow> {
    let authors: String = r.get(10)?;
    let published: Option<String> = r.get(11)?;
    Ok(ArchiveRow {
        id: r.get(0)?,
        feed: r.get(1)?,
        feed_id: r.get(2)?,
        entry_key: r.get(3)?,
        item_id: r.get(4)?,
        text: EntryText {
            guid: r.get(5)?,
            link: r.get(6)?,
            title: r.get(7)?,
            summary: r.get(8)?,
            content: r.get(9)?,
            authors: serde_json::from_str(&authors).unwrap_or_default(),
            published: published.as_deref().and_then(super::parse_ts),
        },
        first_seen: r.get(12)?,
    })
}

impl Store {
    /// Keep (the default) or stop keeping every polled entry in the archive
    /// (`[archive] keep = "0"`).
    pub fn set_archive(&mut self, on: bool) {
        self.archive = on;
    }

    /// Index up to `max_rows` archived rows not yet in the full-text index, in small
    /// transactions; returns how many were indexed.
    pub fn index_archive(&mut self, max_rows: usize) -> Result<u64> {
        let mut done = 0u64;
        while (done as usize) < max_rows {
            let tx = self
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let upto: i64 = tx.query_row(
                "SELECT indexed_upto FROM archive_index WHERE id = 1",
                [],
                |r| r.get(0),
            )?;
            let batch = INDEX_BATCH.min(max_rows - done as usize);
            let rows: Vec<(i64, String, String, String)> = tx
                .prepare_cached(
                    "SELECT id, title, summary, content FROM archive WHERE id > ?1 ORDER BY id LIMIT ?2",
                )?
                .query_map(params![upto, batch as i64], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })?
                .collect::<rusqlite::Result<_>>()?;
            let Some(last) = rows.last().map(|r| r.0) else {
                break;
            };
            {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO archive_fts (rowid, title, body) VALUES (?1, ?2, ?3)",
                )?;
                for (id, title, summary, content) in &rows {
                    let body = fts_text(&item_body(summary, content));
                    insert
                        .execute(params![id, fts_text(title), body])
                        .map_err(fts_error)?;
                }
            }
            tx.execute(
                "UPDATE archive_index SET indexed_upto = ?1 WHERE id = 1",
                [last],
            )?;
            tx.commit()?;
            done += rows.len() as u64;
        }
        Ok(done)
    }

    /// Archived rows not yet in the full-text index.
    pub fn archive_unindexed(&self) -> Result<u64> {
        Ok(self.conn.query_row(
            "SELECT count(*) FROM archive WHERE id > (SELECT indexed_upto FROM archive_index WHERE id = 1)",
            [],
            count,
        )?)
    }

    /// Drop and rebuild the full-text index from the archived text. Returns the rows indexed.
    pub fn rebuild_archive_index(&mut self) -> Result<u64> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute_batch(
            "DROP TABLE IF EXISTS archive_fts;
             CREATE VIRTUAL TABLE archive_fts USING fts5(title, body, content = '', contentless_delete = 1, tokenize = 'ascii');
             UPDATE archive_index SET indexed_upto = 0 WHERE id = 1;",
        )?;
        tx.commit()?;
        self.index_archive(usize::MAX)
    }

    /// Visit archived rows that may match `q` (FTS candidates, plus every row above the index
    /// watermark), newest first when `newest_first`, else oldest first; `visit` returns false
    /// to stop. Returns how many unindexed rows were visited.
    pub fn archive_candidates(
        &self,
        q: &Query,
        filter: &SearchFilter,
        newest_first: bool,
        mut visit: impl FnMut(ArchiveRow) -> Result<bool>,
    ) -> Result<u64> {
        let upto: i64 = self.conn.query_row(
            "SELECT indexed_upto FROM archive_index WHERE id = 1",
            [],
            |r| r.get(0),
        )?;
        let order = if newest_first { "DESC" } else { "ASC" };
        // Rows above the watermark: ?1 = watermark, the filter's parameters from ?2.
        let tail = |visit: &mut dyn FnMut(ArchiveRow) -> Result<bool>| -> Result<(u64, bool)> {
            let (cond, args) = filter_sql(filter, 2);
            let mut stmt = self.conn.prepare(&format!(
                "{ROW_SELECT} WHERE a.id > ?1{cond} ORDER BY a.id {order}"
            ))?;
            let mut params: Vec<&dyn rusqlite::ToSql> = vec![&upto];
            params.extend(args.iter().map(|a| a as &dyn rusqlite::ToSql));
            let mut rows = stmt.query(params.as_slice())?;
            let mut n = 0;
            while let Some(r) = rows.next()? {
                n += 1;
                if !visit(row(r)?)? {
                    return Ok((n, false));
                }
            }
            Ok((n, true))
        };
        // Indexed rows: ?1 = FTS query, ?2 = watermark, the filter's parameters from ?3.
        let indexed = |visit: &mut dyn FnMut(ArchiveRow) -> Result<bool>| -> Result<bool> {
            let fts = fts_query(q);
            let (cond, args) = filter_sql(filter, 3);
            let mut stmt = self
                .conn
                .prepare(&format!(
                    "{ROW_SELECT} JOIN archive_fts ON archive_fts.rowid = a.id
                     WHERE archive_fts MATCH ?1 AND a.id <= ?2{cond} ORDER BY archive_fts.rowid {order}"
                ))
                .map_err(fts_error)?;
            let mut params: Vec<&dyn rusqlite::ToSql> = vec![&fts, &upto];
            params.extend(args.iter().map(|a| a as &dyn rusqlite::ToSql));
            let mut rows = stmt.query(params.as_slice()).map_err(fts_error)?;
            while let Some(r) = rows.next().map_err(fts_error)? {
                if !visit(row(r)?)? {
                    return Ok(false);
                }
            }
            Ok(true)
        };
        let mut visit: &mut dyn FnMut(ArchiveRow) -> Result<bool> = &mut visit;
        if newest_first {
            let (n, go_on) = tail(&mut visit)?;
            if go_on {
                indexed(&mut visit)?;
            }
            Ok(n)
        } else {
            if !indexed(&mut visit)? {
                return Ok(0);
            }
            Ok(tail(&mut visit)?.0)
        }
    }

    /// Search the archive with the rule language: FTS5 narrows, the matcher decides.
    pub fn search_archive(&self, q: &Query, filter: &SearchFilter) -> Result<SearchResult> {
        let matcher = Matcher::new(vec![("search".to_string(), q.clone())]);
        let mut out = SearchResult::default();
        out.scanned_unindexed = self.archive_candidates(q, filter, true, |r| {
            Ok(confirm(&matcher, filter.limit, &mut out, r))
        })?;
        Ok(out)
    }

    /// Delete unmatched archived entries first seen before `archive_before`, and (when given)
    /// matches first seen before `matches_before` that are not starred, in small transactions.
    /// A dry run only counts.
    pub fn prune(
        &mut self,
        archive_before: Option<DateTime<Utc>>,
        matches_before: Option<DateTime<Utc>>,
        dry_run: bool,
        now: DateTime<Utc>,
    ) -> Result<PruneCounts> {
        let mut counts = PruneCounts::default();
        if dry_run {
            if let Some(before) = archive_before {
                counts.archived = self.conn.query_row(
                    "SELECT count(*) FROM archive WHERE first_seen_at < ?1 AND item_id IS NULL",
                    [ts(before)],
                    count,
                )?;
            }
            if let Some(before) = matches_before {
                counts.matches = self.conn.query_row(
                    "SELECT count(*) FROM items WHERE first_seen_at < ?1 AND status <> 'starred'",
                    [ts(before)],
                    count,
                )?;
            }
            return Ok(counts);
        }
        if let Some(before) = matches_before {
            loop {
                let started = std::time::Instant::now();
                let tx = self
                    .conn
                    .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                let n = tx.execute(
                    "DELETE FROM items WHERE id IN (SELECT id FROM items
                       WHERE first_seen_at < ?1 AND status <> 'starred' LIMIT ?2)",
                    params![ts(before), PRUNE_BATCH as i64],
                )?;
                tx.commit()?;
                counts.longest_batch = counts.longest_batch.max(started.elapsed());
                counts.matches += n as u64;
                if n < PRUNE_BATCH {
                    break;
                }
            }
        }
        if let Some(before) = archive_before {
            loop {
                let started = std::time::Instant::now();
                let tx = self
                    .conn
                    .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                let ids: Vec<i64> = tx
                    .prepare_cached(
                        "SELECT id FROM archive WHERE first_seen_at < ?1 AND item_id IS NULL LIMIT ?2",
                    )?
                    .query_map(params![ts(before), PRUNE_BATCH as i64], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?;
                for id in &ids {
                    unindex(&tx, *id)?;
                    tx.prepare_cached("DELETE FROM archive WHERE id = ?1")?
                        .execute([id])?;
                }
                tx.commit()?;
                counts.longest_batch = counts.longest_batch.max(started.elapsed());
                counts.archived += ids.len() as u64;
                if ids.len() < PRUNE_BATCH {
                    break;
                }
            }
        }
        self.conn.execute(
            "UPDATE archive_index SET pruned_at = ?1 WHERE id = 1",
            [ts(now)],
        )?;
        Ok(counts)
    }

    /// When the archive was last pruned.
    pub fn pruned_at(&self) -> Result<Option<DateTime<Utc>>> {
        let at: Option<String> = self.conn.query_row(
            "SELECT pruned_at FROM archive_index WHERE id = 1",
            [],
            |r| r.get(0),
        )?;
        Ok(at.as_deref().and_then(super::parse_ts))
    }

    /// Entries, oldest entry, unindexed entries and bytes on disk of the archive.
    pub fn archive_stats(&self) -> Result<ArchiveStats> {
        archive_stats(&mut Sqlite(&self.conn))
    }

    /// Record the rule versions now in force (`(name, canonical query)`); returns those seen
    /// for the first time whose rule the archived entries before now have not been checked
    /// against, with how many such entries there are.
    pub fn register_rules(
        &mut self,
        rules: &[(String, String)],
        now: DateTime<Utc>,
    ) -> Result<Vec<UnappliedRule>> {
        let now_s = ts(now);
        let tx = self.conn.transaction()?;
        let mut out = Vec::new();
        for (rule, query) in rules {
            let new = tx
                .prepare_cached(
                    "INSERT INTO rule_versions (rule, query, first_active_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT DO NOTHING",
                )?
                .execute(params![rule, query, now_s])?
                > 0;
            if new {
                let entries: u64 = tx
                    .prepare_cached("SELECT count(*) FROM archive WHERE first_seen_at < ?1")?
                    .query_row([&now_s], count)?;
                if entries > 0 {
                    out.push(UnappliedRule {
                        rule: rule.clone(),
                        entries,
                    });
                }
            }
        }
        tx.commit()?;
        Ok(out)
    }

    /// Apply `rules` (name, query) to the archived entries first seen since `since`: matches
    /// the archive holds that are not stored yet are added (marked backfilled, with their
    /// archived first-seen times), or on a dry run only listed. Stored matches of these rules
    /// that the rule no longer matches (an edited rule) are listed, never removed.
    /// Backfilled matches enqueue alerts only with `alert` (`backfill --alert`).
    pub fn backfill(
        &mut self,
        rules: &[(String, Query)],
        since: Option<DateTime<Utc>>,
        dry_run: bool,
        alert: bool,
        now: DateTime<Utc>,
    ) -> Result<BackfillReport> {
        let mut report = BackfillReport::default();
        let filter = SearchFilter {
            since,
            ..SearchFilter::default()
        };
        let now_s = ts(now);
        let mut alert_items: Vec<i64> = Vec::new();
        for (name, q) in rules {
            let matcher = Matcher::new(vec![(name.clone(), q.clone())]);
            // Collect first (reading), then write in batches.
            let mut found: Vec<(ArchiveRow, MatchedEntry)> = Vec::new();
            self.archive_candidates(q, &filter, false, |r| {
                if let Some(m) = backfill_match(&matcher, &r) {
                    found.push((r, m));
                }
                Ok(true)
            })?;
            for batch in found.chunks(INDEX_BATCH) {
                let tx = self
                    .conn
                    .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                for (r, m) in batch {
                    let known = match r.item_id {
                        Some(item) => tx
                            .prepare_cached(
                                "SELECT 1 FROM item_rules WHERE item_id = ?1 AND rule = ?2",
                            )?
                            .query_row(params![item, name], |_| Ok(()))
                            .optional()?
                            .is_some(),
                        None => false,
                    };
                    if known {
                        continue;
                    }
                    let mut hit = BackfillHit::new(r, name);
                    if !dry_run {
                        let item = store_backfilled(&tx, r, m, &now_s, &mut report.new_items)?;
                        hit.item_id = Some(item);
                        if alert {
                            alert_items.push(item);
                        }
                    }
                    report.added.push(hit);
                }
                if dry_run {
                    tx.rollback()?;
                } else {
                    tx.commit()?;
                }
            }
            report.no_longer.extend(finish_rule_backfill(
                &mut Sqlite(&self.conn),
                &matcher,
                name,
                q,
                dry_run,
                since.is_some(),
                &now_s,
            )?);
        }
        // Backfilled matches join their stories now; with `alert` (`backfill --alert`) their
        // stories alert as new ones would (a poll's placement never alerts for them).
        if !dry_run && !report.added.is_empty() {
            self.place_stories(now)?;
            if alert {
                self.enqueue_story_alerts(&alert_items, true, now)?;
            }
        }
        Ok(report)
    }
}

/// Store one backfilled match: the entry's item gains the rule, or a new item (marked
/// backfilled, first seen when the entry was) is created and linked to the entry's sighting
/// and archived row.
fn store_backfilled(
    tx: &Transaction<'_>,
    r: &ArchiveRow,
    m: &MatchedEntry,
    now: &str,
    new_items: &mut u64,
) -> Result<i64> {
    if let Some(item) = r.item_id {
        // Already stored for another rule: only the rule is new.
        for rule in &m.rules {
            let terms = serde_json::to_string(&rule.terms).unwrap_or_else(|_| "[]".into());
            tx.prepare_cached(
                "INSERT INTO item_rules (item_id, rule, terms, first_matched_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(item_id, rule) DO NOTHING",
            )?
            .execute(params![item, rule.rule, terms, now])?;
        }
        return Ok(item);
    }
    let canonical = r.text.link.as_deref().and_then(dedup::canonical_url);
    let (item, new) = store_match(
        tx,
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
        tx.prepare_cached("UPDATE items SET backfilled = 1 WHERE id = ?1")?
            .execute([item])?;
    }
    tx.prepare_cached("UPDATE archive SET item_id = ?2 WHERE id = ?1")?
        .execute(params![r.id, item])?;
    tx.prepare_cached(
        "UPDATE sightings SET item_id = ?3 WHERE feed_id = ?1 AND entry_key = ?2 AND item_id IS NULL",
    )?
    .execute(params![r.feed_id, r.entry_key, item])?;
    Ok(item)
}

/// SQL conditions (`a` = archive, `f` = feeds) and their parameters, numbered from `first`.
fn filter_sql(f: &SearchFilter, first: usize) -> (String, Vec<String>) {
    let mut sql = String::new();
    let mut args = Vec::new();
    if let Some(since) = f.since {
        args.push(ts(since));
        sql.push_str(&format!(
            " AND a.first_seen_at >= ?{}",
            first + args.len() - 1
        ));
    }
    if !f.feeds.is_empty() {
        let mut marks = Vec::new();
        for name in &f.feeds {
            args.push(name.clone());
            marks.push(format!("?{}", first + args.len() - 1));
        }
        sql.push_str(&format!(" AND f.name IN ({})", marks.join(", ")));
    }
    (sql, args)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(q: &str) -> TsPlan {
        ts_query(&Query::parse(q).expect("query"))
    }

    #[test]
    fn ts_query_narrows_like_the_fts5_query() {
        assert_eq!(ts("GCHQ"), TsPlan::Query("'gchq'".into()));
        assert_eq!(
            ts("\"dark web\" OR title:nca*"),
            TsPlan::Query("(('dark' & 'web') | 'nca':*A)".into())
        );
        assert_eq!(
            ts("GCHQ NEAR/5 NCA -police"),
            TsPlan::Query("(('gchq' & 'nca')) & ('gchq' | 'nca')".into())
        );
    }

    /// Outside its quoted lexemes a tsquery holds only the operators, weights and brackets
    /// newswatch writes: no text of the query can become tsquery syntax.
    #[test]
    fn ts_query_quotes_every_word_of_hostile_text() {
        for q in [
            r#"O'Brien"#,
            r#""a\\b" OR c''d"#,
            "x & y | !z",
            "title:(a:* OR 'b':A)",
            "<-> <2> !!",
        ] {
            let Ok(parsed) = Query::parse(q) else {
                continue;
            };
            let TsPlan::Query(t) = ts_query(&parsed) else {
                continue;
            };
            let mut outside = String::new();
            let mut chars = t.chars().peekable();
            let mut quoted = false;
            while let Some(c) = chars.next() {
                match (quoted, c) {
                    (false, '\'') => quoted = true,
                    (true, '\'') if chars.peek() == Some(&'\'') => {
                        chars.next();
                    }
                    (true, '\'') => quoted = false,
                    (true, '\\') => {
                        chars.next();
                    }
                    (true, _) => {}
                    (false, c) => outside.push(c),
                }
            }
            assert!(!quoted, "{q:?} → {t}");
            let allowed = |c: char| " ()&|:*A".contains(c);
            assert!(
                outside.chars().all(allowed),
                "{q:?} → {t} (outside: {outside:?})"
            );
        }
    }
}
