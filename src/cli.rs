//! CLI: the commands people and scripts use. A public contract: names of commands, flags and
//! JSON fields do not change lightly.
//!
//! Each command is a function from parsed arguments to output on a writer, so `main.rs` only
//! wires them and tests can call them directly.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, NaiveDate, Utc};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::{self, ConfigSource, Settings};
use crate::matcher::{Matcher, Query};
use crate::poll::{self, Outcome, Runtime, Summary};
use crate::schedule::Schedule;
use crate::store::{MatchFilter, MatchRow, Store};

/// Watch public news feeds for named topics and keep every match for review.
#[derive(Debug, Parser)]
#[command(name = "newswatch", version, about, long_about = None, args_override_self = true)]
pub struct Cli {
    /// Config file [default: ./newswatch.toml if present, else the built-in default config]
    #[arg(long, global = true, env = "NEWSWATCH_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Log format on stderr
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service: poll every feed on its schedule until stopped (SIGTERM/SIGINT);
    /// SIGHUP reloads the config
    Run,
    /// Fetch every feed once (or one with --feed), store new matches, then exit
    Poll(PollArgs),
    /// Print stored matches, newest first
    Query(QueryArgs),
    /// List every feed with its health: last fetch, status, failures, next due time, counts
    Feeds(FeedsArgs),
    /// Validate the config and print the feeds, rules and schedules it would use
    Check,
}

#[derive(Debug, Args)]
pub struct FeedsArgs {
    /// Output format
    #[arg(long, value_enum, default_value_t = ListFormat::Table)]
    pub format: ListFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    Table,
    Json,
}

#[derive(Debug, Args)]
pub struct PollArgs {
    /// Poll only this feed
    #[arg(long, value_name = "NAME")]
    pub feed: Option<String>,
}

#[derive(Debug, Args)]
pub struct QueryArgs {
    /// Filter with the rule language, applied to the stored title and text
    /// (e.g. '"dark web" AND title:NCA')
    #[arg(value_name = "EXPR")]
    pub expr: Option<String>,
    /// Only matches of this rule
    #[arg(long, value_name = "NAME")]
    pub rule: Option<String>,
    /// Only matches seen in this feed
    #[arg(long, value_name = "NAME")]
    pub feed: Option<String>,
    /// Only matches published (else first seen) since: a duration (24h, 7d) or a date (2015-11-01)
    #[arg(long, value_name = "WHEN", value_parser = parse_since)]
    pub since: Option<DateTime<Utc>>,
    /// Only matches with this review status (repeatable)
    #[arg(long, value_enum, value_name = "STATUS")]
    pub status: Vec<Status>,
    /// At most this many matches
    #[arg(long, default_value_t = 50, value_name = "N")]
    pub limit: usize,
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
    Ndjson,
    Csv,
}

/// Review status of a match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Status {
    New,
    Read,
    Starred,
    Dismissed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::New => "new",
            Status::Read => "read",
            Status::Starred => "starred",
            Status::Dismissed => "dismissed",
        }
    }
}

/// An error the user caused (bad config, bad argument): exit code 2. Everything else is 1.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// `--since` values: `24h`, `7d`, `90m` (ago from now), `2015-11-01` (UTC midnight) or RFC 3339.
pub fn parse_since(s: &str) -> Result<DateTime<Utc>, String> {
    let s = s.trim();
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return d
            .and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc())
            .ok_or_else(|| format!("invalid date {s:?}"));
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let d = humantime::parse_duration(s).map_err(|_| {
        format!("expected a duration like 24h or 7d, or a date like 2015-11-01, got {s:?}")
    })?;
    let d = chrono::Duration::from_std(d).map_err(|_| format!("duration {s:?} is too long"))?;
    Utc::now()
        .checked_sub_signed(d)
        .ok_or_else(|| format!("duration {s:?} is too long"))
}

/// Load the config the flags point at, or fail with a usage error.
pub fn load_settings(cli: &Cli) -> Result<(ConfigSource, Settings)> {
    let source = config::resolve_source(cli.config.as_deref());
    let settings = config::load(&source).map_err(|e| UsageError(e.to_string()))?;
    Ok((source, settings))
}

/// Open the database named by the settings.
pub fn open_store(settings: &Settings) -> Result<Store> {
    Store::open(&settings.database).with_context(|| "cannot use the database".to_string())
}

/// `newswatch poll`.
pub async fn poll(settings: Settings, args: &PollArgs, err: &mut dyn Write) -> Result<Summary> {
    if let Some(name) = &args.feed
        && !settings.feeds.iter().any(|f| &f.name == name)
    {
        bail!(UsageError(format!("no feed named {name:?} in the config")));
    }
    let mut store = open_store(&settings)?;
    store
        .sync_feeds(&settings.feeds)
        .context("cannot record feeds in the database")?;
    let runtime = Arc::new(Runtime::new(settings).map_err(|e| UsageError(e.to_string()))?);
    let store = Arc::new(Mutex::new(store));
    let mut reports = poll::poll_all(&runtime, &store, args.feed.as_deref()).await;
    reports.sort_by(|a, b| a.feed.cmp(&b.feed));
    let summary = Summary::of(&reports);
    for r in &reports {
        if let Outcome::Failed { reason, .. } = &r.outcome {
            writeln!(err, "failed: {}: {}", sanitize(&r.feed), sanitize(reason))?;
        }
    }
    writeln!(
        err,
        "poll: {} feeds: {} ok, {} unchanged, {} failed; {} new items, {} new matches",
        reports.len(),
        summary.ok,
        summary.unchanged,
        summary.failed,
        summary.new_entries,
        summary.new_matches
    )?;
    Ok(summary)
}

/// `newswatch run`: the daemon, with SIGTERM/SIGINT to stop and SIGHUP to reload.
pub async fn run(source: ConfigSource, settings: Settings) -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let shutdown = tokio_util::sync::CancellationToken::new();
    let (control_tx, control_rx) = tokio::sync::mpsc::channel(4);
    let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    let mut hup = signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?;
    let stop = shutdown.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = term.recv() => { tracing::info!("SIGTERM: stopping"); stop.cancel(); break; }
                _ = int.recv() => { tracing::info!("SIGINT: stopping"); stop.cancel(); break; }
                _ = hup.recv() => {
                    tracing::info!("SIGHUP: reloading config");
                    let _ = control_tx.send(crate::daemon::Control::Reload).await;
                }
            }
        }
    });
    crate::daemon::run(source, settings, shutdown, control_rx).await?;
    Ok(())
}

/// `newswatch query`.
pub fn query(settings: &Settings, args: &QueryArgs, out: &mut dyn Write) -> Result<()> {
    let filter_matcher = match &args.expr {
        Some(expr) => {
            let q = Query::parse(expr).map_err(|e| UsageError(format!("query EXPR: {e}")))?;
            Some(Matcher::new(vec![("query".to_string(), q)]))
        }
        None => None,
    };
    if !settings.database.exists() {
        // Nothing polled yet: an empty result, not an error (and no file created by a read).
        return print_matches(&[], args.format, out);
    }
    let store = open_store(settings)?;
    let filter = MatchFilter {
        rule: args.rule.clone(),
        feed: args.feed.clone(),
        since: args.since,
        statuses: args.status.iter().map(|s| s.as_str().to_string()).collect(),
        // With an expression, filter in Rust first, then apply the limit.
        limit: if filter_matcher.is_some() {
            None
        } else {
            Some(args.limit)
        },
        ..MatchFilter::default()
    };
    let mut rows = store.matches(&filter).context("cannot read matches")?;
    if let Some(m) = &filter_matcher {
        rows.retain(|r| {
            let body = format!("{} {}", r.summary, r.content);
            m.match_item(&r.title, &body).is_some()
        });
        rows.truncate(args.limit);
    }
    print_matches(&rows, args.format, out)
}

/// Print matches in one of the output formats.
pub fn print_matches(rows: &[MatchRow], format: Format, out: &mut dyn Write) -> Result<()> {
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut *out, rows)?;
            writeln!(out)?;
        }
        Format::Ndjson => {
            for r in rows {
                serde_json::to_writer(&mut *out, r)?;
                writeln!(out)?;
            }
        }
        Format::Csv => {
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
                    r.published.clone().unwrap_or_default(),
                    r.first_seen.clone(),
                    r.status.clone(),
                    r.rules.join(" "),
                    r.feeds.join(" "),
                    r.terms.join(" | "),
                    r.title.clone(),
                    r.link.clone().unwrap_or_default(),
                    r.snippet.clone(),
                ])?;
            }
            w.flush()?;
        }
        Format::Table => print_table(rows, out)?,
    }
    Ok(())
}

fn print_table(rows: &[MatchRow], out: &mut dyn Write) -> Result<()> {
    let width = terminal_width();
    let cells: Vec<[String; 5]> = rows
        .iter()
        .map(|r| {
            let when = r.published.as_deref().unwrap_or(&r.first_seen);
            [
                r.id.to_string(),
                when.get(..16).unwrap_or(when).replace('T', " "),
                sanitize(&r.rules.join(",")),
                sanitize(&r.feeds.join(",")),
                sanitize(&r.title),
            ]
        })
        .collect();
    let headers = ["ID", "DATE", "RULES", "FEEDS", "TITLE"];
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &cells {
        for (i, c) in row.iter().enumerate().take(4) {
            widths[i] = widths[i].max(display_width(c));
        }
    }
    // Rules and feeds columns may be long; keep them to a share of the line.
    widths[2] = widths[2].min(24);
    widths[3] = widths[3].min(24);
    let fixed: usize = widths[..4].iter().sum::<usize>() + 4 * 2;
    widths[4] = width.saturating_sub(fixed).max(20);
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
    if rows.is_empty() {
        writeln!(out, "(no matches)")?;
    }
    Ok(())
}

fn terminal_width() -> usize {
    if let Some(cols) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse::<usize>().ok())
    {
        return cols.max(40);
    }
    terminal_size::terminal_size()
        .map(|(w, _)| usize::from(w.0))
        .unwrap_or(120)
        .max(40)
}

fn display_width(s: &str) -> usize {
    unicode_width::UnicodeWidthStr::width(s)
}

/// Cut `s` to at most `width` terminal columns, with "…" when cut.
pub fn fit(s: &str, width: usize) -> String {
    if display_width(s) <= width {
        return s.to_string();
    }
    let mut out = String::new();
    let mut w = 0;
    for c in s.chars() {
        let cw = unicode_width::UnicodeWidthChar::width(c).unwrap_or(0);
        if w + cw + 1 > width {
            break;
        }
        out.push(c);
        w += cw;
    }
    out.push('…');
    out
}

fn pad(s: &str, width: usize) -> String {
    let w = display_width(s);
    format!("{s}{}", " ".repeat(width.saturating_sub(w)))
}

/// Make feed text safe for a terminal: control characters (ESC and so ANSI sequences, CR,
/// backspace, …) and bidirectional overrides are replaced, newlines and tabs become spaces.
pub fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\n' | '\t' | '\r' => ' ',
            c if c.is_control() => '\u{FFFD}',
            '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' => {
                '\u{FFFD}'
            }
            c => c,
        })
        .collect()
}

/// `newswatch feeds`: every feed's health, from the database (read-only use).
pub fn feeds_list(settings: &Settings, format: ListFormat, out: &mut dyn Write) -> Result<()> {
    let statuses = if settings.database.exists() {
        open_store(settings)?
            .feed_statuses()
            .context("cannot read feeds")?
    } else {
        Vec::new()
    };
    // Configured feeds never polled yet still appear.
    let mut all = statuses;
    for f in &settings.feeds {
        if !all.iter().any(|s| s.name == f.name) {
            all.push(crate::store::FeedStatus {
                name: f.name.clone(),
                url: f.url.to_string(),
                effective_url: None,
                title: None,
                last_fetch_at: None,
                last_success_at: None,
                last_status: None,
                last_http_status: None,
                consecutive_failures: 0,
                next_due_at: None,
                items: 0,
                matches: 0,
                last_error: None,
                in_config: true,
            });
        }
    }
    match format {
        ListFormat::Json => {
            serde_json::to_writer_pretty(&mut *out, &all)?;
            writeln!(out)?;
        }
        ListFormat::Table => {
            let short = |t: &Option<String>| {
                t.as_deref()
                    .map(|t| t.get(..19).unwrap_or(t).replace('T', " "))
                    .unwrap_or_else(|| "-".into())
            };
            writeln!(
                out,
                "{:<22} {:<9} {:>4} {:<19} {:<19} {:>6} {:>7}  LAST ERROR",
                "NAME", "STATUS", "FAIL", "LAST FETCH", "NEXT DUE", "ITEMS", "MATCHES"
            )?;
            for s in &all {
                let mut status = s.last_status.clone().unwrap_or_else(|| "never".into());
                if !s.in_config {
                    status = "removed".into();
                }
                let mut line = format!(
                    "{:<22} {:<9} {:>4} {:<19} {:<19} {:>6} {:>7}  {}",
                    fit(&sanitize(&s.name), 22),
                    status,
                    s.consecutive_failures,
                    short(&s.last_fetch_at),
                    short(&s.next_due_at),
                    s.items,
                    s.matches,
                    sanitize(s.last_error.as_deref().unwrap_or("")),
                );
                if let Some(e) = &s.effective_url {
                    line.push_str(&format!("  (moved permanently to {})", sanitize(e)));
                }
                writeln!(out, "{}", fit(&line, terminal_width().max(100)))?;
            }
        }
    }
    Ok(())
}

/// `newswatch check`.
pub fn check(source: &ConfigSource, settings: &Settings, out: &mut dyn Write) -> Result<()> {
    writeln!(out, "config: {source}")?;
    writeln!(out, "database: {}", settings.database.display())?;
    writeln!(out, "time zone: {}", settings.schedule.timezone)?;
    writeln!(
        out,
        "http: {} feeds at once, {} per host",
        settings.concurrency, settings.per_host
    )?;
    writeln!(out, "\nfeeds ({}):", settings.feeds.len())?;
    for f in &settings.feeds {
        let schedule = f
            .schedule
            .as_deref()
            .map(|s| format!("  [schedule {s}]"))
            .unwrap_or_default();
        writeln!(out, "  {:<24} {}{schedule}", f.name, f.url)?;
    }
    writeln!(out, "\nrules ({}):", settings.rules.len())?;
    for r in &settings.rules {
        writeln!(out, "  {:<24} {}", r.name, r.query)?;
    }
    let mut lines: Vec<&str> = settings
        .feeds
        .iter()
        .map(|f| settings.feed_schedule(f))
        .collect();
    lines.push(&settings.schedule.poll);
    lines.sort();
    lines.dedup();
    writeln!(out, "\nschedules:")?;
    let now = Utc::now();
    for line in lines {
        let s = Schedule::parse(line).map_err(|e| UsageError(e.to_string()))?;
        writeln!(out, "  {line:<20} {}", s.describe())?;
        let mut t = now;
        let mut next = Vec::new();
        for _ in 0..3 {
            match s.next_after(t, settings.schedule.timezone) {
                Some(n) => {
                    next.push(
                        n.with_timezone(&settings.schedule.timezone)
                            .format("%Y-%m-%d %H:%M %Z")
                            .to_string(),
                    );
                    t = n;
                }
                None => break,
            }
        }
        writeln!(out, "  {:<20} next: {}", "", next.join(", "))?;
    }
    writeln!(out, "\nconfig OK")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_accepts_durations_and_dates() {
        let d = parse_since("2015-11-01").unwrap();
        assert_eq!(d.to_rfc3339(), "2015-11-01T00:00:00+00:00");
        let h = parse_since("24h").unwrap();
        let age = Utc::now() - h;
        assert!(age.num_minutes() >= 24 * 60 - 1 && age.num_minutes() <= 24 * 60 + 1);
        assert!(parse_since("7d").is_ok());
        assert!(parse_since("yesterday-ish").is_err());
    }

    #[test]
    fn sanitize_removes_terminal_escapes() {
        let s = sanitize("a\u{1b}[31mred\u{7}\r\nb\u{202E}c");
        assert!(!s.chars().any(|c| c.is_control()), "{s:?}");
        assert!(s.contains("[31mred"));
        assert!(!s.contains('\u{202E}'));
    }

    #[test]
    fn fit_cuts_by_display_width() {
        assert_eq!(fit("hello", 10), "hello");
        assert_eq!(fit("hello world", 6), "hello…");
        assert_eq!(display_width(&fit("日本語のテキスト", 7)), 7);
    }
}
