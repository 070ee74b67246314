//! `search`, `backfill`, `prune` and `archive rebuild`: the archive of every polled entry.

use std::io::Write;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::table::write_table;
use super::*;
use crate::config::Settings;
use crate::pipeline::matcher::Query;
use crate::store::Store;
use crate::store::archive::{BackfillReport, SearchFilter, SearchHit};
use crate::text::{csv_cell, sanitize};

/// How many unindexed rows `search` indexes before searching (the rest are scanned directly).
const SEARCH_INDEX_BUDGET: usize = 200_000;

/// One search hit as JSON / NDJSON / CSV print it.
#[derive(Debug, Serialize)]
struct HitRow<'a> {
    /// The archived entry's id.
    id: i64,
    feed: &'a str,
    title: &'a str,
    link: Option<&'a str>,
    published: Option<String>,
    first_seen: &'a str,
    /// The stored match this entry is part of, if any (see `newswatch show`).
    r#match: Option<i64>,
    terms: &'a [String],
    snippet: &'a str,
}

impl<'a> From<&'a SearchHit> for HitRow<'a> {
    fn from(h: &'a SearchHit) -> Self {
        HitRow {
            id: h.row.id,
            feed: &h.row.feed,
            title: &h.row.text.title,
            // Only http(s) links leave newswatch, whatever a feed gave.
            link: h
                .row
                .text
                .link
                .as_deref()
                .filter(|l| crate::text::is_outgoing(l)),
            published: h.row.text.published.map(crate::store::ts),
            first_seen: &h.row.first_seen,
            r#match: h.row.item_id,
            terms: &h.terms,
            snippet: &h.snippet,
        }
    }
}

fn parse_expr(expr: &str, what: &str) -> Result<Query> {
    let q = Query::parse(expr).map_err(|e| UsageError(format!("{what}: {e}")))?;
    for w in crate::pipeline::matcher::lint(expr) {
        eprintln!("newswatch: warning: {what}: {}", sanitize(&w.to_string()));
    }
    Ok(q)
}

/// `newswatch search`.
pub fn search(settings: &Settings, args: &SearchArgs, out: &mut dyn Write) -> Result<()> {
    let q = parse_expr(&args.expr, "search EXPR")?;
    check_names_in(
        settings,
        &NameArgs {
            rule: Vec::new(),
            feed: args.feed.clone(),
        },
    )?;
    let on_pg = matches!(settings.backend, crate::config::Database::Postgres { .. });
    let hits = if on_pg || settings.database.exists() {
        let mut db = open_review(settings, true)?;
        // Catch the index up first (cheap when the daemon or the workers keep it current);
        // whatever is left is scanned directly, so nothing is missed either way. A read-only
        // database (or role) is fine.
        let indexed = match &mut db {
            ReviewDb::Sqlite(store) => store.index_archive(SEARCH_INDEX_BUDGET),
            ReviewDb::Postgres(pg) => {
                crate::store::postgres::index::index_pending(pg, SEARCH_INDEX_BUDGET as u64)
            }
        };
        if let Err(e) = indexed {
            tracing::debug!(error = %e, "cannot index the archive now");
        }
        let filter = SearchFilter {
            since: args.since,
            feeds: args.feed.clone(),
            limit: Some(args.limit),
        };
        let result = crate::store::archive::search_archive(&mut db, &q, &filter)
            .context("cannot search the archive")?;
        if result.scanned_unindexed > 0 {
            eprintln!(
                "search: the full-text index is behind by {} entries; they were checked one by one",
                result.scanned_unindexed
            );
        }
        if result.truncated {
            eprintln!(
                "search: {} shown (--limit {}); there are more",
                result.hits.len(),
                args.limit
            );
        }
        result.hits
    } else {
        Vec::new()
    };
    match args.format {
        Format::Json | Format::Ndjson => {
            let rows: Vec<HitRow<'_>> = hits.iter().map(HitRow::from).collect();
            write_json(&rows, args.format == Format::Ndjson, out)?;
        }
        Format::Csv => {
            let mut w = csv::Writer::from_writer(out);
            w.write_record([
                "id",
                "feed",
                "published",
                "first_seen",
                "match",
                "terms",
                "title",
                "link",
                "snippet",
            ])?;
            for h in &hits {
                let r = HitRow::from(h);
                // Every text cell through csv_cell: a spreadsheet must not run feed text.
                w.write_record([
                    r.id.to_string(),
                    csv_cell(r.feed),
                    r.published.unwrap_or_default(),
                    r.first_seen.to_string(),
                    r.r#match.map(|m| m.to_string()).unwrap_or_default(),
                    csv_cell(&r.terms.join(" | ")),
                    csv_cell(r.title),
                    csv_cell(r.link.unwrap_or_default()),
                    csv_cell(r.snippet),
                ])?;
            }
            w.flush()?;
        }
        Format::Table => search_table(&hits, settings.schedule.timezone, out)?,
    }
    Ok(())
}

fn search_table(hits: &[SearchHit], tz: chrono_tz::Tz, out: &mut dyn Write) -> Result<()> {
    let cells: Vec<Vec<String>> = hits
        .iter()
        .map(|h| {
            vec![
                h.row.id.to_string(),
                crate::store::review::local(&h.row.first_seen, tz),
                sanitize(&h.row.feed),
                sanitize(&h.row.text.title),
            ]
        })
        .collect();
    write_table(
        out,
        &["ID", "FIRST SEEN", "FEED", "TITLE"],
        &cells,
        &[None, None, Some(24)],
        "(no entries)",
    )?;
    Ok(())
}

/// `newswatch backfill`.
pub fn backfill(
    settings: &Settings,
    args: &BackfillArgs,
    now: DateTime<Utc>,
    out: &mut dyn Write,
) -> Result<()> {
    let rules: Vec<(String, Query)> = if args.rule.is_empty() {
        settings
            .rules
            .iter()
            .map(|r| (r.name.clone(), r.query.clone()))
            .collect()
    } else {
        let mut picked = Vec::new();
        for name in &args.rule {
            // Only rules of the config can be applied (a stored rule name has no query).
            let Some(r) = settings.rules.iter().find(|r| &r.name == name) else {
                let names: Vec<&str> = settings.rules.iter().map(|r| r.name.as_str()).collect();
                bail!(UsageError(format!(
                    "--rule {name:?}: no rule of that name in the config (known rules: {})",
                    names.join(", ")
                )));
            };
            if !picked.iter().any(|(n, _)| n == name) {
                picked.push((r.name.clone(), r.query.clone()));
            }
        }
        picked
    };
    let report = if matches!(settings.backend, crate::config::Database::Postgres { .. }) {
        // Opened as a poll opens it (the feeds and rule versions of the config recorded); the
        // sync client is fine here: this command runs no async code.
        let mut store =
            crate::service::cluster::open(settings, settings.cluster.worker_id(), false)
                .context("cannot use the database")?;
        store
            .backfill(&rules, args.since, args.dry_run, args.alert, now)
            .context("cannot backfill")?
    } else {
        if !settings.database.exists() {
            writeln!(out, "backfill: nothing archived yet")?;
            return Ok(());
        }
        let mut store = open_store(settings)?;
        store
            .index_archive(usize::MAX)
            .context("cannot index the archive")?;
        store
            .backfill(&rules, args.since, args.dry_run, args.alert, now)
            .context("cannot backfill")?
    };
    print_backfill(&report, args.dry_run, out)
}

/// `backfill`'s report: one line per entry added (or that would be), one per stored match its
/// rule no longer matches, and the counts.
fn print_backfill(report: &BackfillReport, dry_run: bool, out: &mut dyn Write) -> Result<()> {
    let verb = if dry_run { "would add" } else { "added" };
    for hit in &report.added {
        writeln!(
            out,
            "{verb}: {} [{}] {} (first seen {}){}",
            hit.rules.join(","),
            sanitize(&hit.feed),
            sanitize(&hit.title),
            hit.first_seen,
            hit.item_id
                .map(|i| format!(" as match {i}"))
                .unwrap_or_default()
        )?;
    }
    for gone in &report.no_longer {
        writeln!(
            out,
            "no longer matches: {} match {} {}",
            gone.rule,
            gone.item_id,
            sanitize(&gone.title)
        )?;
    }
    writeln!(
        out,
        "backfill{}: {} {} {} ({} new matches), {} stored {} no longer {} their rule",
        if dry_run { " (dry run)" } else { "" },
        verb,
        report.added.len(),
        if report.added.len() == 1 {
            "entry"
        } else {
            "entries"
        },
        report.new_items,
        report.no_longer.len(),
        if report.no_longer.len() == 1 {
            "match"
        } else {
            "matches"
        },
        if report.no_longer.len() == 1 {
            "matches"
        } else {
            "match"
        },
    )?;
    Ok(())
}

/// `newswatch prune`.
pub fn prune(
    settings: &Settings,
    args: &PruneArgs,
    now: DateTime<Utc>,
    out: &mut dyn Write,
) -> Result<()> {
    let on_pg = matches!(settings.backend, crate::config::Database::Postgres { .. });
    if !on_pg && !settings.database.exists() {
        writeln!(out, "prune: nothing stored yet")?;
        return Ok(());
    }
    let mut store = open_review(settings, false)?;
    let (archive_before, matches_before) = settings.retention(now);
    let counts = crate::store::archive::prune(
        &mut store,
        archive_before,
        matches_before,
        args.dry_run,
        now,
    )
    .context("cannot prune")?;
    writeln!(
        out,
        "prune{}: {} {} archived entries first seen before {}, {} matches{}",
        if args.dry_run { " (dry run)" } else { "" },
        if args.dry_run {
            "would remove"
        } else {
            "removed"
        },
        counts.archived,
        archive_before.map(crate::store::ts).unwrap_or_default(),
        counts.matches,
        match matches_before {
            Some(t) => format!(
                " first seen before {} (starred ones kept)",
                crate::store::ts(t)
            ),
            None => " (matches are kept forever: [storage] keep_matches)".into(),
        }
    )?;
    Ok(())
}

/// `newswatch archive rebuild`.
pub fn archive_rebuild(settings: &Settings, out: &mut dyn Write) -> Result<()> {
    if let crate::config::Database::Postgres { .. } = &settings.backend {
        let ReviewDb::Postgres(mut db) = open_review(settings, false)? else {
            anyhow::bail!("archive rebuild: not a PostgreSQL database");
        };
        let n = crate::store::postgres::index::rebuild(&mut db)
            .context("cannot rebuild the archive's full-text index")?;
        writeln!(out, "archive rebuild: indexed {n} entries")?;
        return Ok(());
    }
    if !settings.database.exists() {
        writeln!(out, "archive rebuild: nothing stored yet")?;
        return Ok(());
    }
    let mut store: Store = open_store(settings)?;
    let n = store
        .rebuild_archive_index()
        .context("cannot rebuild the archive's full-text index")?;
    writeln!(out, "archive rebuild: indexed {n} entries")?;
    Ok(())
}
