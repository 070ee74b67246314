//! `digest`, `show`, `mark`, `stats`: reading and reviewing what was stored.

use std::io::Write;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};

use super::*;
use crate::config::Settings;
use crate::outputs::digest::{self, Period};
use crate::store::review;
use crate::text::sanitize;

/// `newswatch digest`.
pub fn digest(
    settings: &Settings,
    args: &DigestArgs,
    now: DateTime<Utc>,
    out: &mut dyn Write,
) -> Result<()> {
    let tz = settings.schedule.timezone;
    let period = match (args.date, args.since) {
        (Some(date), _) => Period::day(date, tz).map_err(|e| UsageError(e.to_string()))?,
        (None, Some(since)) => Period {
            start: since.min(now),
            end: now,
        },
        (None, None) => Period::last(chrono::Duration::hours(24), now),
    };
    let mut store = open_review(settings, true)?;
    check_names(settings, &mut store, &args.names)?;
    let opts = digest::DigestOptions {
        rules: args.names.rule.clone(),
        feeds: args.names.feed.clone(),
        ..settings.digest_options()
    };
    let d = digest::build(&mut store, period, &opts, tz, now).context("cannot build the digest")?;
    let text = digest::render(&d, args.format);
    match &args.out {
        Some(path) => digest::write_atomic(path, text.as_bytes())?,
        None => out.write_all(text.as_bytes())?,
    }
    Ok(())
}

/// `newswatch show`.
pub fn show(settings: &Settings, args: &ShowArgs, out: &mut dyn Write) -> Result<()> {
    let mut store = open_review(settings, true)?;
    let Some(m) = review::show(&mut store, args.id).context("cannot read the match")? else {
        bail!("no match with id {}", args.id);
    };
    if args.format == ReviewFormat::Json {
        serde_json::to_writer_pretty(&mut *out, &m)?;
        writeln!(out)?;
        return Ok(());
    }
    let tz = settings.schedule.timezone;
    writeln!(out, "#{}  {}", m.id, sanitize(&m.title))?;
    let field = |out: &mut dyn Write, k: &str, v: &str| writeln!(out, "{k:<12}{v}");
    field(
        out,
        "link:",
        &m.link
            .as_deref()
            .map(sanitize)
            .unwrap_or_else(|| "(none)".into()),
    )?;
    field(
        out,
        "published:",
        &m.published
            .as_deref()
            .map(|p| review::local(p, tz))
            .unwrap_or_else(|| "(unknown)".into()),
    )?;
    field(out, "first seen:", &review::local(&m.first_seen, tz))?;
    field(out, "updated:", &review::local(&m.updated, tz))?;
    field(out, "status:", &m.status)?;
    let story = match (&m.story_evidence, m.story_pinned) {
        (_, true) => format!(
            "story {} ({} reports), placed there by hand (`newswatch story show {}`)",
            m.story, m.story_size, m.story
        ),
        (Some(e), false) if m.story_size > 1 && e.story == Some(m.story) => format!(
            "story {} ({} reports): {}",
            m.story,
            m.story_size,
            sanitize(&e.to_string())
        ),
        (Some(e), false) if m.story_size > 1 => format!(
            "story {} ({} reports), started by this report ({})",
            m.story,
            m.story_size,
            sanitize(&e.to_string())
        ),
        (Some(e), false) => format!(
            "story {} (its only report; best other story: {})",
            m.story,
            sanitize(&e.to_string())
        ),
        (None, false) => format!("story {} ({} reports)", m.story, m.story_size),
    };
    field(out, "story:", &story)?;
    if !m.authors.is_empty() {
        field(out, "authors:", &sanitize(&m.authors.join(", ")))?;
    }
    writeln!(out, "feeds:")?;
    for f in &m.feeds {
        let title = f
            .title
            .as_deref()
            .map(|t| format!(" \"{}\"", sanitize(t)))
            .unwrap_or_default();
        writeln!(
            out,
            "  {}{title} <{}> since {}",
            sanitize(&f.name),
            sanitize(&f.url),
            review::local(&f.first_seen, tz)
        )?;
    }
    writeln!(out, "rules:")?;
    for r in &m.rules {
        writeln!(
            out,
            "  {}: {}",
            sanitize(&r.rule),
            sanitize(&r.terms.join(", "))
        )?;
    }
    for (name, text) in [
        ("snippet", &m.snippet),
        ("summary", &m.summary),
        ("content", &m.content),
    ] {
        if text.trim().is_empty() {
            continue;
        }
        writeln!(out, "\n{name}:")?;
        for line in text.lines() {
            writeln!(out, "  {}", sanitize(line))?;
        }
    }
    Ok(())
}

/// `newswatch mark`. Unknown ids are reported and make it fail (exit 1) after the known ones
/// are marked.
pub fn mark(settings: &Settings, args: &MarkArgs, out: &mut dyn Write) -> Result<()> {
    let status = args.status().as_str();
    if args.ids.is_empty() && args.story.is_empty() {
        bail!(UsageError(
            "mark: give match ids, or --story ID for every report of a story".into()
        ));
    }
    let on_pg = matches!(settings.backend, crate::config::Database::Postgres { .. });
    let outcome = if on_pg || settings.database.exists() {
        let mut store = open_review(settings, false)?;
        let mut ids = args.ids.clone();
        for &story in &args.story {
            let items = crate::store::stories::story_items(&mut store, story)
                .context("cannot read the story")?;
            if items.is_empty() {
                bail!(UsageError(format!(
                    "--story {story}: no story with that id"
                )));
            }
            ids.extend(items);
        }
        review::mark(&mut store, &ids, status).context("cannot change status")?
    } else if !args.story.is_empty() {
        bail!(UsageError(format!(
            "--story {}: no story with that id (nothing stored yet)",
            args.story[0]
        )));
    } else {
        review::MarkOutcome {
            not_found: args.ids.clone(),
            ..Default::default()
        }
    };
    let list = |ids: &[i64]| ids.iter().map(i64::to_string).collect::<Vec<_>>().join(" ");
    if !outcome.changed.is_empty() {
        writeln!(out, "marked {status}: {}", list(&outcome.changed))?;
    }
    if !outcome.unchanged.is_empty() {
        writeln!(out, "already {status}: {}", list(&outcome.unchanged))?;
    }
    if !outcome.not_found.is_empty() {
        bail!("no match with id {}", list(&outcome.not_found));
    }
    Ok(())
}

/// `newswatch stats`.
pub fn stats(
    settings: &Settings,
    args: &StatsArgs,
    now: DateTime<Utc>,
    out: &mut dyn Write,
) -> Result<()> {
    let tz = settings.schedule.timezone;
    let mut store = open_review(settings, true)?;
    check_names(settings, &mut store, &args.names)?;
    let st = review::stats(
        &mut store,
        args.since.min(now),
        &args.names.rule,
        &args.names.feed,
        tz,
        now,
    )
    .context("cannot read stats")?;
    if args.format == ReviewFormat::Json {
        serde_json::to_writer_pretty(&mut *out, &st)?;
        writeln!(out)?;
        return Ok(());
    }
    writeln!(
        out,
        "{} matches ({} stories) first seen {} – {}",
        st.total,
        st.stories,
        st.since.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z"),
        st.until.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z")
    )?;
    for (title, counts) in [
        ("per rule", &st.per_rule),
        ("per feed", &st.per_feed),
        ("per day", &st.per_day),
        ("per status", &st.per_status),
    ] {
        writeln!(out, "\n{title}:")?;
        if counts.is_empty() {
            writeln!(out, "  (none)")?;
        }
        for c in counts {
            writeln!(out, "  {:<28} {:>6}", sanitize(&c.name), c.count)?;
        }
    }
    let a = &st.archive;
    writeln!(
        out,
        "\narchive: {} entries{}, {:.1} MB on disk{}",
        a.entries,
        a.oldest
            .as_deref()
            .map(|t| format!(" since {}", review::local(t, tz)))
            .unwrap_or_default(),
        a.bytes as f64 / 1e6,
        if a.unindexed > 0 {
            format!(", {} not yet in the search index", a.unindexed)
        } else {
            String::new()
        }
    )?;
    writeln!(out, "\nfeed health:")?;
    if st.feeds.is_empty() {
        writeln!(out, "  (no feeds polled yet)")?;
    }
    for f in &st.feeds {
        let mut line = format!(
            "  {:<28} {:<10} failures {:<3}",
            sanitize(&f.name),
            f.last_status.as_deref().unwrap_or("never"),
            f.consecutive_failures
        );
        if let Some(t) = &f.last_success {
            line.push_str(&format!(" last ok {}", review::local(t, tz)));
        }
        if let Some(e) = &f.last_error {
            line.push_str(&format!(" error: {}", sanitize(e)));
        }
        if !f.in_config {
            line.push_str(" (no longer configured)");
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    for line in super::alerts::failing_lines(&mut store, settings)? {
        writeln!(out, "\n{line}")?;
    }
    Ok(())
}
