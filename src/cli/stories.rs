//! `story show|split|merge` and `query --stories`: one event's reports from many outlets.

use std::io::Write;

use anyhow::{Context, Result, bail};
use chrono::Utc;

use super::table::{display_width, fit, pad, terminal_width};
use super::*;
use crate::config::Settings;
use crate::store::review;
use crate::store::stories::StoryRow;
use crate::store::{StoreError, effective_time};
use crate::text::{csv_cell, sanitize};

/// Print stories in one of the output formats (tables in `tz`).
pub fn print_stories(
    stories: &[StoryRow],
    format: Format,
    tz: chrono_tz::Tz,
    out: &mut dyn Write,
) -> Result<()> {
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut *out, stories)?;
            writeln!(out)?;
        }
        Format::Ndjson => {
            for s in stories {
                serde_json::to_writer(&mut *out, s)?;
                writeln!(out)?;
            }
        }
        Format::Csv => {
            let mut w = csv::Writer::from_writer(out);
            w.write_record([
                "story",
                "size",
                "first_seen",
                "last_seen",
                "rules",
                "outlets",
                "headline",
                "link",
            ])?;
            for s in stories {
                w.write_record([
                    s.story.to_string(),
                    s.size.to_string(),
                    s.first_seen.clone(),
                    s.last_seen.clone(),
                    csv_cell(&s.rules.join(" ")),
                    csv_cell(&s.outlets.join(" ")),
                    csv_cell(&s.headline),
                    csv_cell(s.link.as_deref().unwrap_or_default()),
                ])?;
            }
            w.flush()?;
        }
        Format::Table => {
            let width = terminal_width();
            let cells: Vec<[String; 5]> = stories
                .iter()
                .map(|s| {
                    [
                        s.story.to_string(),
                        review::local(&s.last_seen, tz),
                        s.size.to_string(),
                        sanitize(&s.outlets.join(",")),
                        sanitize(&s.headline),
                    ]
                })
                .collect();
            let headers = ["STORY", "LAST SEEN", "SIZE", "OUTLETS", "HEADLINE"];
            let mut widths: Vec<usize> = headers.iter().map(|h| display_width(h)).collect();
            for row in &cells {
                for (i, c) in row.iter().enumerate().take(4) {
                    widths[i] = widths[i].max(display_width(c));
                }
            }
            widths[3] = widths[3].min(36);
            widths[4] = width
                .saturating_sub(widths[..4].iter().sum::<usize>() + 8)
                .max(20);
            let line = |cols: [&str; 5], out: &mut dyn Write| -> std::io::Result<()> {
                let mut s = String::new();
                for (i, c) in cols.iter().enumerate() {
                    let cell = fit(c, widths[i]);
                    if i < 4 {
                        s.push_str(&pad(&cell, widths[i]));
                        s.push_str("  ");
                    } else {
                        s.push_str(&cell);
                    }
                }
                writeln!(out, "{}", s.trim_end())
            };
            line(headers, out)?;
            for row in &cells {
                line([&row[0], &row[1], &row[2], &row[3], &row[4]], out)?;
            }
            if stories.is_empty() {
                writeln!(out, "(no stories)")?;
            }
        }
    }
    Ok(())
}

/// A store error that is the user's (an unknown id) becomes a usage error.
fn usage_if_not_found(e: StoreError) -> anyhow::Error {
    match e {
        StoreError::NotFound(m) => UsageError(m).into(),
        other => anyhow::Error::new(other),
    }
}

/// `newswatch story …`.
pub fn story(settings: &Settings, args: &StoryArgs, out: &mut dyn Write) -> Result<()> {
    let tz = settings.schedule.timezone;
    match &args.command {
        StoryCommand::Show { id, format } => {
            let store = open_for_read(settings)?;
            let Some(s) = store.story(*id).context("cannot read the story")? else {
                bail!(UsageError(format!("no story with id {id}")));
            };
            if *format == ReviewFormat::Json {
                serde_json::to_writer_pretty(&mut *out, &s)?;
                writeln!(out)?;
                return Ok(());
            }
            writeln!(
                out,
                "story {}: {} reports, first seen {}, updated {}",
                s.id,
                s.reports.len(),
                review::local(&s.first_seen, tz),
                review::local(&s.updated, tz)
            )?;
            for r in &s.reports {
                let when = effective_time(r.published.as_deref(), &r.first_seen);
                writeln!(
                    out,
                    "\n#{}  [{}] {}\n  {}  {}{}",
                    r.id,
                    sanitize(&r.feeds.join(", ")),
                    sanitize(&r.title),
                    review::local(when, tz),
                    r.link.as_deref().map(sanitize).unwrap_or_default(),
                    if r.status == "new" {
                        String::new()
                    } else {
                        format!("  ({})", r.status)
                    }
                )?;
                match (&r.evidence, r.pinned) {
                    (_, true) => writeln!(out, "  placed by hand (story split/merge)")?,
                    (Some(e), false) if e.story.is_none() || e.story != Some(s.id) => {
                        writeln!(out, "  started this story")?
                    }
                    (Some(e), false) => writeln!(out, "  joined: {}", sanitize(&e.to_string()))?,
                    (None, false) => {}
                }
            }
            Ok(())
        }
        StoryCommand::Split { item } => {
            let mut store = open_store(settings)?;
            let to = store
                .story_split(*item, Utc::now())
                .map_err(usage_if_not_found)?;
            writeln!(out, "match {item} is now in story {to}.")?;
            Ok(())
        }
        StoryCommand::Merge { a, b } => {
            let mut store = open_store(settings)?;
            store
                .story_merge(*a, *b, Utc::now())
                .map_err(usage_if_not_found)?;
            writeln!(out, "story {b} joined story {a}.")?;
            Ok(())
        }
    }
}
