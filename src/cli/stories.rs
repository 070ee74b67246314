//! `story show|split|merge` and `query --stories`: one event's reports from many outlets.

use std::io::Write;

use anyhow::{Context, Result, bail};
use chrono::Utc;

use super::table::write_table;
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
        Format::Json | Format::Ndjson => write_json(stories, format == Format::Ndjson, out)?,
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
            let cells: Vec<Vec<String>> = stories
                .iter()
                .map(|s| {
                    vec![
                        s.story.to_string(),
                        review::local(&s.last_seen, tz),
                        s.size.to_string(),
                        sanitize(&s.outlets.join(",")),
                        sanitize(&s.headline),
                    ]
                })
                .collect();
            write_table(
                out,
                &["STORY", "LAST SEEN", "SIZE", "OUTLETS", "HEADLINE"],
                &cells,
                &[None, None, None, Some(36)],
                "(no stories)",
            )?;
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
            let mut store = open_review(settings, true)?;
            let Some(s) =
                crate::store::stories::story(&mut store, *id).context("cannot read the story")?
            else {
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
            let mut store = open_review(settings, false)?;
            let threshold = settings.stories.threshold;
            let to = crate::store::stories::story_split(&mut store, *item, threshold, Utc::now())
                .map_err(usage_if_not_found)?;
            writeln!(out, "match {item} is now in story {to}.")?;
            Ok(())
        }
        StoryCommand::Merge { a, b } => {
            let mut store = open_review(settings, false)?;
            let threshold = settings.stories.threshold;
            crate::store::stories::story_merge(&mut store, *a, *b, threshold, Utc::now())
                .map_err(usage_if_not_found)?;
            writeln!(out, "story {b} joined story {a}.")?;
            Ok(())
        }
    }
}
