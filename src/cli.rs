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

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Output format
    #[arg(long, value_enum, default_value_t = ExportFormat::Atom)]
    pub format: ExportFormat,
    /// Only matches of this rule
    #[arg(long, value_name = "NAME")]
    pub rule: Option<String>,
    /// Only matches seen in this feed
    #[arg(long, value_name = "NAME")]
    pub feed: Option<String>,
    /// Only matches published (else first seen) since: a duration (24h, 7d) or a date (2015-11-01)
    #[arg(long, value_name = "WHEN", value_parser = parse_since)]
    pub since: Option<DateTime<Utc>>,
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
    let feeds: Vec<crate::opml::ExportFeed> = settings
        .feeds
        .iter()
        .map(|f| crate::opml::ExportFeed {
            name: f.name.clone(),
            xml_url: f.url.to_string(),
            html_url: None,
            folders: f.tags.clone(),
        })
        .collect();
    let mut buf = Vec::new();
    crate::opml::write(&feeds, "newswatch feeds", &mut buf)?;
    emit(&buf, args.out.as_deref(), out)
}

/// Write `bytes` to `path` atomically, or to `out` when there is no path.
fn emit(bytes: &[u8], path: Option<&std::path::Path>, out: &mut dyn Write) -> Result<()> {
    match path {
        Some(p) => crate::export::write_atomic(p, bytes)?,
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
    let fetcher = crate::fetch::Fetcher::new(crate::fetch::FetchOptions {
        proxy: args.proxy.clone(),
        ..Default::default()
    })
    .map_err(|e| UsageError(e.to_string()))?;
    let found = crate::discover::discover(&fetcher, &url).await?;
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
            .matches(&MatchFilter {
                rule: args.rule.clone(),
                feed: args.feed.clone(),
                since: args.since,
                limit: Some(args.limit),
                ..MatchFilter::default()
            })
            .context("cannot read matches")?
    } else {
        // Nothing polled yet: an empty feed, and no database created by a read.
        Vec::new()
    };
    let mut meta = crate::export::FeedMeta::for_database(&settings.database, args.title.clone());
    meta.self_link = args.self_url.clone();
    let mut buf = Vec::new();
    match args.format {
        ExportFormat::Atom => crate::export::write_atom(&rows, &mut buf, &meta)?,
        ExportFormat::Json => crate::export::write_json_feed(&rows, &mut buf, &meta)?,
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
