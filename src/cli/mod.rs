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

use crate::config::{self, ConfigSource, FeedSettings, Settings};
use crate::outputs::digest::{self, Period};
use crate::pipeline::matcher::{Matcher, Query};
use crate::schedule::Schedule;
use crate::service::poll::{self, Outcome, Runtime, Summary};
use crate::store::review;
use crate::store::{MatchFilter, MatchRow, Store};
use crate::text::sanitize;

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
    /// Validate the config and print the feeds, rules and schedules it would use
    Check,
    /// List every feed with its health (last fetch, status, failures, next due time, counts);
    /// import, export or discover feeds
    Feeds(FeedsArgs),
    /// Write stored matches as an Atom 1.0 or JSON Feed 1.1 document
    Export(ExportArgs),
    /// Print a shell completion script (e.g. `newswatch completions bash`)
    Completions(CompletionsArgs),
    /// Print the man page (roff) to stdout
    Man,
    /// Print (or write) a digest of matches first seen in a period (default: the last 24 hours)
    Digest(DigestArgs),
    /// Print one match in full: text, links, feeds, rules and terms, status
    Show(ShowArgs),
    /// Set the review status of matches (read, starred, dismissed, or back to new)
    Mark(MarkArgs),
    /// Matches per rule, feed and day since a time, and each feed's health
    Stats(StatsArgs),
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct FeedsArgs {
    #[command(subcommand)]
    pub command: Option<FeedsCommand>,
    /// Output format of the listing
    #[arg(long, value_enum, default_value_t = ListFormat::Table)]
    pub format: ListFormat,
}

#[derive(Debug, Subcommand)]
pub enum FeedsCommand {
    /// Print the feeds of an OPML file as TOML [[feeds]] tables (folders become tags)
    Import(FeedsImportArgs),
    /// Write every configured feed as OPML 2.0 (tags become nested folders)
    Export(FeedsExportArgs),
    /// List the feeds a web page advertises (or, failing that, common feed paths of its site)
    Discover(DiscoverArgs),
}

#[derive(Debug, Args)]
pub struct FeedsImportArgs {
    /// The OPML file
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

#[derive(Debug, Args)]
pub struct FeedsExportArgs {
    /// Write to this file (replaced atomically) instead of stdout
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DiscoverArgs {
    /// A page of the site (https:// is assumed when no scheme is given)
    #[arg(value_name = "URL")]
    pub url: String,
    /// Fetch through this proxy (http://, https://, socks5://, socks5h://)
    #[arg(long, value_name = "URL")]
    pub proxy: Option<String>,
}

/// Which stored matches a command reads: the filters `query` and `export` share.
#[derive(Debug, Args)]
pub struct SelectArgs {
    /// Only matches of this rule
    #[arg(long, value_name = "NAME")]
    pub rule: Option<String>,
    /// Only matches seen in this feed
    #[arg(long, value_name = "NAME")]
    pub feed: Option<String>,
    /// Only matches published (else first seen) since: a duration (24h, 7d) or a date (2015-11-01)
    #[arg(long, value_name = "WHEN", value_parser = parse_since)]
    pub since: Option<DateTime<Utc>>,
}

impl SelectArgs {
    /// The store filter for these flags, with at most `limit` rows.
    pub fn filter(&self, limit: Option<usize>) -> MatchFilter {
        MatchFilter {
            rule: self.rule.clone(),
            feed: self.feed.clone(),
            since: self.since,
            limit,
            ..MatchFilter::default()
        }
    }
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Output format
    #[arg(long, value_enum, default_value_t = ExportFormat::Atom)]
    pub format: ExportFormat,
    #[command(flatten)]
    pub select: SelectArgs,
    /// At most this many matches, newest first
    #[arg(long, default_value_t = 200, value_name = "N")]
    pub limit: usize,
    /// The feed's title
    #[arg(long, default_value = "newswatch matches", value_name = "TEXT")]
    pub title: String,
    /// Where the feed will be published (its rel="self" link / feed_url)
    #[arg(long, value_name = "URL")]
    pub self_url: Option<String>,
    /// Write to this file (replaced atomically) instead of stdout
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DigestArgs {
    /// Matches first seen in this long up to now (e.g. 24h, 7d)
    #[arg(long, value_name = "DURATION", conflicts_with = "date", value_parser = parse_duration)]
    pub since: Option<chrono::Duration>,
    /// Matches first seen on this calendar day in the configured time zone (e.g. 2015-11-09)
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub date: Option<NaiveDate>,
    /// Only matches of this rule
    #[arg(long, value_name = "NAME")]
    pub rule: Option<String>,
    /// Output format
    #[arg(long, value_enum, default_value_t = digest::Format::Md)]
    pub format: digest::Format,
    /// Write to this file (atomically) instead of standard output
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// Atom 1.0
    Atom,
    /// JSON Feed 1.1
    Json,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    Table,
    Json,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Match id (as printed by query and digest)
    #[arg(value_name = "ID")]
    pub id: i64,
    /// Output format
    #[arg(long, value_enum, default_value_t = ReviewFormat::Text)]
    pub format: ReviewFormat,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("status").required(true).args(["read", "star", "dismiss", "new"])))]
pub struct MarkArgs {
    /// Match ids
    #[arg(value_name = "ID", required = true, num_args = 1..)]
    pub ids: Vec<i64>,
    /// Mark as read
    #[arg(long)]
    pub read: bool,
    /// Mark as starred
    #[arg(long)]
    pub star: bool,
    /// Mark as dismissed (left out of digests)
    #[arg(long)]
    pub dismiss: bool,
    /// Mark as new again
    #[arg(long)]
    pub new: bool,
}

impl MarkArgs {
    /// The status the flags ask for.
    pub fn status(&self) -> Status {
        if self.read {
            Status::Read
        } else if self.star {
            Status::Starred
        } else if self.dismiss {
            Status::Dismissed
        } else {
            Status::New
        }
    }
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Window: matches first seen in this long up to now (e.g. 24h, 7d)
    #[arg(long, value_name = "DURATION", default_value = "7d", value_parser = parse_duration)]
    pub since: chrono::Duration,
    /// Output format
    #[arg(long, value_enum, default_value_t = ReviewFormat::Text)]
    pub format: ReviewFormat,
}

/// Output format of `show` and `stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReviewFormat {
    Text,
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
    #[command(flatten)]
    pub select: SelectArgs,
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

/// A duration like `24h`, `7d`, `90m`.
pub fn parse_duration(s: &str) -> Result<chrono::Duration, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|_| format!("expected a duration like 24h or 7d, got {s:?}"))?;
    chrono::Duration::from_std(d).map_err(|_| format!("duration {s:?} is too long"))
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
        .sync_feeds(settings.feeds.iter().map(FeedSettings::name_url))
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
                    let _ = control_tx.send(crate::service::daemon::Control::Reload).await;
                }
            }
        }
    });
    crate::service::daemon::run(source, settings, shutdown, control_rx).await?;
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
    // With an expression, filter in Rust first, then apply the limit.
    let limit = if filter_matcher.is_some() {
        None
    } else {
        Some(args.limit)
    };
    let filter = MatchFilter {
        statuses: args.status.iter().map(|s| s.as_str().to_string()).collect(),
        ..args.select.filter(limit)
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
/// Open the database for a read-only command: an empty in-memory one when nothing was polled
/// yet (a read never creates the file).
fn open_for_read(settings: &Settings) -> Result<Store> {
    if settings.database.exists() {
        open_store(settings)
    } else {
        Store::open(std::path::Path::new(":memory:")).context("cannot open an empty database")
    }
}

/// `newswatch digest`.
pub fn digest(
    settings: &Settings,
    args: &DigestArgs,
    now: DateTime<Utc>,
    out: &mut dyn Write,
) -> Result<()> {
    let tz = settings.schedule.timezone;
    let period = match args.date {
        Some(date) => Period::day(date, tz).map_err(|e| UsageError(e.to_string()))?,
        None => Period::last(args.since.unwrap_or(chrono::Duration::hours(24)), now),
    };
    let store = open_for_read(settings)?;
    if let Some(rule) = &args.rule
        && !settings.rules.iter().any(|r| &r.name == rule)
        && !review::rule_is_known(&store, rule).context("cannot read rules")?
    {
        bail!(UsageError(format!(
            "no rule named {rule:?} in the config or the database"
        )));
    }
    let d = digest::build(&store, period, args.rule.as_deref(), tz, now)
        .context("cannot build the digest")?;
    let text = digest::render(&d, args.format);
    match &args.out {
        Some(path) => digest::write_atomic(path, text.as_bytes())?,
        None => out.write_all(text.as_bytes())?,
    }
    Ok(())
}

/// `newswatch show`.
pub fn show(settings: &Settings, args: &ShowArgs, out: &mut dyn Write) -> Result<()> {
    let store = open_for_read(settings)?;
    let Some(m) = review::show(&store, args.id).context("cannot read the match")? else {
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
    let outcome = if settings.database.exists() {
        let store = open_store(settings)?;
        review::mark(&store, &args.ids, status).context("cannot change status")?
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
    let store = open_for_read(settings)?;
    let st = review::stats(&store, now - args.since, tz, now).context("cannot read stats")?;
    if args.format == ReviewFormat::Json {
        serde_json::to_writer_pretty(&mut *out, &st)?;
        writeln!(out)?;
        return Ok(());
    }
    writeln!(
        out,
        "{} matches first seen {} – {}",
        st.total,
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

// ---------------------------------------------------------------------------------------------
// Feed-reader ecosystem: feeds listing/import/export/discover, match export, completions, man.

/// `newswatch feeds import FILE`: the OPML file's feeds as TOML `[[feeds]]` tables, named and
/// de-duplicated exactly as `feeds_opml = ["FILE"]` would load them.
pub fn feeds_import(args: &FeedsImportArgs, out: &mut dyn Write) -> Result<()> {
    #[derive(serde::Serialize)]
    struct Doc<'a> {
        feeds: Vec<Feed<'a>>,
    }
    #[derive(serde::Serialize)]
    struct Feed<'a> {
        name: &'a str,
        url: &'a str,
        #[serde(skip_serializing_if = "<[String]>::is_empty")]
        tags: &'a [String],
    }
    let feeds = config::load_opml(&args.file).map_err(|e| UsageError(e.to_string()))?;
    let doc = Doc {
        feeds: feeds
            .iter()
            .map(|f| Feed {
                name: &f.name,
                url: f.url.as_str(),
                tags: &f.tags,
            })
            .collect(),
    };
    let text = toml::to_string(&doc).context("cannot write TOML")?;
    writeln!(
        out,
        "# {} feeds from {} (newswatch feeds import)\n",
        feeds.len(),
        args.file.display()
    )?;
    out.write_all(text.as_bytes())?;
    Ok(())
}

/// `newswatch feeds export`: every configured feed as OPML 2.0, tags as nested folders.
pub fn feeds_export(
    settings: &Settings,
    args: &FeedsExportArgs,
    out: &mut dyn Write,
) -> Result<()> {
    let feeds: Vec<crate::outputs::opml::ExportFeed> = settings
        .feeds
        .iter()
        .map(|f| crate::outputs::opml::ExportFeed {
            name: f.name.clone(),
            xml_url: f.url.to_string(),
            html_url: None,
            folders: f.tags.clone(),
        })
        .collect();
    let mut buf = Vec::new();
    crate::outputs::opml::write(&feeds, "newswatch feeds", &mut buf)?;
    emit(&buf, args.out.as_deref(), out)
}

/// Write `bytes` to `path` atomically, or to `out` when there is no path.
fn emit(bytes: &[u8], path: Option<&std::path::Path>, out: &mut dyn Write) -> Result<()> {
    match path {
        Some(p) => crate::outputs::export::write_atomic(p, bytes)?,
        None => {
            out.write_all(bytes)?;
            out.flush()?;
        }
    }
    Ok(())
}

/// `newswatch feeds discover URL`: one line per feed found, `URL<TAB>TYPE<TAB>TITLE`.
pub async fn feeds_discover(args: &DiscoverArgs, out: &mut dyn Write) -> Result<()> {
    let raw = args.url.trim();
    let url = match url::Url::parse(raw) {
        Ok(u) => u,
        Err(url::ParseError::RelativeUrlWithoutBase) => url::Url::parse(&format!("https://{raw}"))
            .map_err(|e| UsageError(format!("invalid URL {raw:?}: {e}")))?,
        Err(e) => bail!(UsageError(format!("invalid URL {raw:?}: {e}"))),
    };
    if !matches!(url.scheme(), "http" | "https") {
        bail!(UsageError(format!("not an http(s) URL: {url}")));
    }
    let fetcher = crate::pipeline::fetch::Fetcher::new(crate::pipeline::fetch::FetchOptions {
        proxy: args.proxy.clone(),
        ..Default::default()
    })
    .map_err(|e| UsageError(e.to_string()))?;
    let found = crate::pipeline::discover::discover(&fetcher, &url).await?;
    if found.is_empty() {
        bail!("no feeds found at {url}");
    }
    for d in found {
        writeln!(
            out,
            "{}\t{}\t{}",
            d.url,
            d.kind,
            sanitize(d.title.as_deref().unwrap_or(""))
        )?;
    }
    Ok(())
}

/// `newswatch export`: stored matches as Atom 1.0 or JSON Feed 1.1.
pub fn export(settings: &Settings, args: &ExportArgs, out: &mut dyn Write) -> Result<()> {
    let rows = if settings.database.exists() {
        let store = open_store(settings)?;
        store
            .matches(&args.select.filter(Some(args.limit)))
            .context("cannot read matches")?
    } else {
        // Nothing polled yet: an empty feed, and no database created by a read.
        Vec::new()
    };
    let mut meta =
        crate::outputs::export::FeedMeta::for_database(&settings.database, args.title.clone());
    meta.self_link = args.self_url.clone();
    let mut buf = Vec::new();
    match args.format {
        ExportFormat::Atom => crate::outputs::export::write_atom(&rows, &mut buf, &meta)?,
        ExportFormat::Json => crate::outputs::export::write_json_feed(&rows, &mut buf, &meta)?,
    }
    emit(&buf, args.out.as_deref(), out)
}

/// `newswatch completions SHELL`.
pub fn completions(args: &CompletionsArgs, out: &mut dyn Write) -> Result<()> {
    use clap::CommandFactory;
    clap_complete::generate(args.shell, &mut Cli::command(), "newswatch", out);
    Ok(())
}

/// `newswatch man`: the man page, roff, generated from the same definitions as `--help`.
pub fn man(out: &mut dyn Write) -> Result<()> {
    use clap::CommandFactory;
    clap_mangen::Man::new(Cli::command()).render(out)?;
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
