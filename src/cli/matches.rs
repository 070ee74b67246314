//! `query` and `export`: stored matches as a table, JSON, NDJSON, CSV, Atom or JSON Feed.

use std::io::Write;

use anyhow::{Context, Result};

use super::table::write_table;
use super::*;
use crate::config::Settings;
use crate::pipeline::matcher::{Matcher, Query};
use crate::store::{MatchFilter, MatchRow};
use crate::text::{csv_cell, sanitize};

/// `newswatch query`. Likely mistakes in EXPR are warned about on stderr.
pub fn query(settings: &Settings, args: &QueryArgs, out: &mut dyn Write) -> Result<()> {
    let filter_matcher = match &args.expr {
        Some(expr) => {
            let q = Query::parse(expr).map_err(|e| UsageError(format!("query EXPR: {e}")))?;
            let mut err = std::io::stderr();
            for w in crate::pipeline::matcher::lint(expr) {
                writeln!(
                    err,
                    "newswatch: warning: query EXPR: {}",
                    sanitize(&w.to_string())
                )?;
            }
            Some(Matcher::new(vec![("query".to_string(), q)]))
        }
        None => None,
    };
    let tz = settings.schedule.timezone;
    let mut store = open_review(settings, true)?;
    check_names(settings, &mut store, &args.select.names)?;
    // With an expression, filter in Rust first, then apply the limit; with --stories the
    // limit counts stories, so every report row is needed.
    let limit = if filter_matcher.is_some() || args.stories {
        None
    } else {
        Some(args.limit)
    };
    let filter = MatchFilter {
        statuses: args.status.iter().map(|s| s.as_str().to_string()).collect(),
        ..args.select.filter(limit)
    };
    let mut rows = crate::store::matches(&mut store, &filter).context("cannot read matches")?;
    if args.stories {
        if let Some(m) = &filter_matcher {
            rows.retain(|r| {
                m.match_item(
                    &r.title,
                    &crate::pipeline::matcher::item_body(&r.summary, &r.content),
                )
                .is_some()
            });
        }
        let all = crate::store::stories::group(&rows, usize::MAX);
        let total = all.len();
        let shown: Vec<_> = all.into_iter().take(args.limit).collect();
        super::stories::print_stories(&shown, args.format, tz, out)?;
        if args.format == Format::Table && total > shown.len() {
            writeln!(
                out,
                "({} of {total} stories shown; --limit {total} for all)",
                shown.len()
            )?;
        }
        return Ok(());
    }
    let total = if let Some(m) = &filter_matcher {
        // The same decision as everywhere: the matcher over title and body (summary and
        // content, each once), as in a poll and in `search`.
        rows.retain(|r| {
            m.match_item(
                &r.title,
                &crate::pipeline::matcher::item_body(&r.summary, &r.content),
            )
            .is_some()
        });
        let total = rows.len();
        rows.truncate(args.limit);
        total
    } else if rows.len() == args.limit {
        crate::store::count_matches(&mut store, &filter).context("cannot count matches")?
    } else {
        rows.len()
    };
    print_matches(&rows, args.format, tz, out)?;
    if args.format == Format::Table && total > rows.len() {
        writeln!(
            out,
            "({} of {total} shown; --limit {total} for all)",
            rows.len()
        )?;
    }
    Ok(())
}

/// Print matches in one of the output formats. Tables show times in `tz` with its
/// abbreviation; JSON and CSV keep RFC 3339 UTC.
pub fn print_matches(
    rows: &[MatchRow],
    format: Format,
    tz: chrono_tz::Tz,
    out: &mut dyn Write,
) -> Result<()> {
    match format {
        Format::Json | Format::Ndjson => write_json(rows, format == Format::Ndjson, out)?,
        Format::Csv => {
            // Every text cell through csv_cell: a spreadsheet must not run feed text.
            let mut w = csv::Writer::from_writer(out);
            w.write_record([
                "id",
                "published",
                "first_seen",
                "status",
                "rules",
                "feeds",
                "terms",
                "title",
                "link",
                "snippet",
            ])?;
            for r in rows {
                w.write_record([
                    r.id.to_string(),
                    csv_cell(r.published.as_deref().unwrap_or_default()),
                    csv_cell(&r.first_seen),
                    csv_cell(&r.status),
                    csv_cell(&r.rules.join(" ")),
                    csv_cell(&r.feeds.join(" ")),
                    csv_cell(&r.terms.join(" | ")),
                    csv_cell(&r.title),
                    csv_cell(r.link.as_deref().unwrap_or_default()),
                    csv_cell(&r.snippet),
                ])?;
            }
            w.flush()?;
        }
        Format::Table => print_table(rows, tz, out)?,
    }
    Ok(())
}

fn print_table(rows: &[MatchRow], tz: chrono_tz::Tz, out: &mut dyn Write) -> Result<()> {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let when = r.published.as_deref().unwrap_or(&r.first_seen);
            vec![
                r.id.to_string(),
                crate::store::review::local(when, tz),
                sanitize(&r.rules.join(",")),
                sanitize(&r.feeds.join(",")),
                sanitize(&r.title),
            ]
        })
        .collect();
    // Rules and feeds columns may be long; keep them to a share of the line.
    write_table(
        out,
        &["ID", "DATE", "RULES", "FEEDS", "TITLE"],
        &cells,
        &[None, None, Some(24), Some(24)],
        "(no matches)",
    )?;
    Ok(())
}

/// `newswatch export`: stored matches as Atom 1.0 or JSON Feed 1.1.
pub fn export(settings: &Settings, args: &ExportArgs, out: &mut dyn Write) -> Result<()> {
    check_names_in(settings, &args.select.names)?;
    let pg = match &settings.backend {
        crate::config::Database::Postgres { url, .. } => {
            Some(crate::store::postgres::describe_url(url.expose()))
        }
        crate::config::Database::Sqlite(_) => None,
    };
    let rows = if pg.is_some() || settings.database.exists() {
        let mut store = open_review(settings, true)?;
        // Dismissed matches stay out of a feed unless asked for by status.
        let statuses = if args.status.is_empty() {
            crate::outputs::export::SHOWN_STATUSES
                .iter()
                .map(|s| s.to_string())
                .collect()
        } else {
            args.status.iter().map(|s| s.as_str().to_string()).collect()
        };
        let filter = MatchFilter {
            statuses,
            ..args.select.filter(None)
        };
        // One entry per story: --limit counts stories.
        let rows = crate::store::matches(&mut store, &filter).context("cannot read matches")?;
        crate::outputs::export::per_story(&rows, args.limit)
    } else {
        // Nothing polled yet: an empty feed, and no database created by a read.
        Vec::new()
    };
    let mut meta = match &pg {
        Some(target) => crate::outputs::export::FeedMeta::for_name(target, args.title.clone()),
        None => {
            crate::outputs::export::FeedMeta::for_database(&settings.database, args.title.clone())
        }
    };
    meta.self_link = args.self_url.clone();
    let mut buf = Vec::new();
    match args.format {
        ExportFormat::Atom => crate::outputs::export::write_atom(&rows, &mut buf, &meta)?,
        ExportFormat::Json => crate::outputs::export::write_json_feed(&rows, &mut buf, &meta)?,
    }
    emit(&buf, args.out.as_deref(), out)
}
