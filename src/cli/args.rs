//! The command line as clap parses it: commands, flags, formats.

use std::path::PathBuf;

use chrono::{DateTime, NaiveDate, Utc};
use clap::{Args, Parser, Subcommand, ValueEnum};

use super::*;
use crate::outputs::digest::{self};
use crate::store::MatchFilter;

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
    /// Stories: the reports of one event from many outlets (show, split, merge)
    Story(StoryArgs),
    /// Search every archived entry (matched or not) with the rule language
    Search(SearchArgs),
    /// Apply rules (new or edited) to the archived entries and store what they match
    Backfill(BackfillArgs),
    /// Delete archived entries past [archive] keep (and matches past [storage] keep_matches)
    Prune(PruneArgs),
    /// Maintain the archive
    Archive(ArchiveArgs),
    /// Serve the review page, JSON API and metrics ([web]) without polling (beside a
    /// `newswatch run` elsewhere, or on a copy of the database)
    Serve(ServeArgs),
    /// The [[alerts]] outbox: list what is pending, sent or failed; send a test alert
    Alerts(AlertsArgs),
    /// Copy a whole database between SQLite and PostgreSQL (either way), then check the copy
    Migrate(MigrateArgs),
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The database to copy: an SQLite file or a postgres:// URL (the password in the URL
    /// or in PGPASSWORD)
    #[arg(long, value_name = "PATH|URL")]
    pub from: String,
    /// Where to copy it: an SQLite file (created if missing) or a postgres:// URL (the
    /// schema is created if missing)
    #[arg(long, value_name = "PATH|URL")]
    pub to: String,
    /// Replace a target that already holds data (its rows are deleted first, in the same
    /// transaction as the copy)
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Listen here instead of [web] listen (default 127.0.0.1:8080 when the config has no [web])
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<std::net::SocketAddr>,
}

#[derive(Debug, Args)]
pub struct StoryArgs {
    #[command(subcommand)]
    pub command: StoryCommand,
}

#[derive(Debug, Subcommand)]
pub enum StoryCommand {
    /// List a story's reports: outlet, headline, link, times, and why each is there
    Show {
        /// Story id (the `story` field of `query --format json`)
        #[arg(value_name = "STORY")]
        id: i64,
        #[arg(long, value_enum, default_value_t = ReviewFormat::Text)]
        format: ReviewFormat,
    },
    /// Take a report out of its story into one of its own (kept apart from then on)
    Split {
        /// Match id of the report
        #[arg(value_name = "ID")]
        item: i64,
    },
    /// Join story B into story A (its reports stay together from then on)
    Merge {
        #[arg(value_name = "A")]
        a: i64,
        #[arg(value_name = "B")]
        b: i64,
    },
}

#[derive(Debug, Args)]
pub struct AlertsArgs {
    #[command(subcommand)]
    pub command: AlertsCommand,
}

#[derive(Debug, Subcommand)]
pub enum AlertsCommand {
    /// Show the outbox, newest first: pending, held, sent and failed alerts with reasons
    List(AlertsListArgs),
    /// Send a sample alert to the destination of the alert NAME (nothing is stored)
    Test(AlertsTestArgs),
}

#[derive(Debug, Args)]
pub struct AlertsListArgs {
    /// Output format
    #[arg(long, value_enum, default_value_t = ListFormat::Table)]
    pub format: ListFormat,
    /// At most this many rows
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
}

#[derive(Debug, Args)]
pub struct AlertsTestArgs {
    /// The [[alerts]] name
    #[arg(value_name = "NAME")]
    pub name: String,
}

#[derive(Debug, Args)]
pub struct SearchArgs {
    /// The rule language, e.g. 'GCHQ NEAR/5 NCA' or '"Joint Operations Cell" -film'
    #[arg(value_name = "EXPR")]
    pub expr: String,
    /// Only entries first seen since: a duration (24h, 7d) or a date (2015-11-01)
    #[arg(long, value_name = "WHEN", value_parser = parse_since)]
    pub since: Option<DateTime<Utc>>,
    /// Only entries of this feed (repeat for several)
    #[arg(long, value_name = "NAME")]
    pub feed: Vec<String>,
    /// At most this many entries, newest first
    #[arg(long, default_value_t = 50, value_name = "N", value_parser = parse_limit)]
    pub limit: usize,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct BackfillArgs {
    /// Only this rule (repeat for several; default: every rule)
    #[arg(long, value_name = "NAME")]
    pub rule: Vec<String>,
    /// Only archived entries first seen since: a duration (24h, 7d) or a date (2015-11-01)
    #[arg(long, value_name = "WHEN", value_parser = parse_since)]
    pub since: Option<DateTime<Utc>>,
    /// Print what would be added (and what no longer matches) without writing
    #[arg(long)]
    pub dry_run: bool,
    /// Send [[alerts]] for the backfilled matches (by default they never alert)
    #[arg(long)]
    pub alert: bool,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Print what would be deleted without deleting
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct ArchiveArgs {
    #[command(subcommand)]
    pub command: ArchiveCommand,
}

#[derive(Debug, Subcommand)]
pub enum ArchiveCommand {
    /// Rebuild the full-text index from the archived text (e.g. after it was damaged)
    Rebuild,
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
    #[command(flatten)]
    pub names: NameArgs,
    /// Only matches first seen since: a duration (24h, 7d) or a date (2015-11-01, UTC)
    #[arg(long, value_name = "WHEN", value_parser = parse_since)]
    pub since: Option<DateTime<Utc>>,
    /// Only matches published since (a duration or a date); a published time before 1990 or
    /// more than a day after first seen counts as the first-seen time
    #[arg(long, value_name = "WHEN", value_parser = parse_since)]
    pub published_since: Option<DateTime<Utc>>,
}

/// `--rule` and `--feed`, repeatable: matches of any of the rules, seen in any of the feeds.
#[derive(Debug, Args, Default, Clone)]
pub struct NameArgs {
    /// Only matches of this rule (repeat for several: any of them)
    #[arg(long, value_name = "NAME")]
    pub rule: Vec<String>,
    /// Only matches seen in this feed (repeat for several: any of them)
    #[arg(long, value_name = "NAME")]
    pub feed: Vec<String>,
}

impl SelectArgs {
    /// The store filter for these flags, with at most `limit` rows.
    pub fn filter(&self, limit: Option<usize>) -> MatchFilter {
        MatchFilter {
            rules: self.names.rule.clone(),
            feeds: self.names.feed.clone(),
            first_seen_since: self.since,
            published_since: self.published_since,
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
    /// Only matches with this review status (repeatable); without it, every status but dismissed
    #[arg(long, value_enum, value_name = "STATUS")]
    pub status: Vec<Status>,
    /// At most this many matches, newest first
    #[arg(long, default_value_t = 200, value_name = "N", value_parser = parse_limit)]
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
    /// Matches first seen since: a duration up to now (24h, 7d) or a date (2015-11-01, UTC)
    #[arg(long, value_name = "WHEN", conflicts_with = "date", value_parser = parse_since)]
    pub since: Option<DateTime<Utc>>,
    /// Matches first seen on this calendar day in the configured time zone (e.g. 2015-11-09)
    #[arg(long, value_name = "YYYY-MM-DD", value_parser = parse_day)]
    pub date: Option<NaiveDate>,
    #[command(flatten)]
    pub names: NameArgs,
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
    #[arg(value_name = "ID", num_args = 0..)]
    pub ids: Vec<i64>,
    /// Every report of this story (repeatable; see `query --stories`)
    #[arg(long, value_name = "STORY")]
    pub story: Vec<i64>,
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
    /// Window: matches first seen since a duration up to now (24h, 7d) or a date (2015-11-01)
    #[arg(long, value_name = "WHEN", default_value = "7d", value_parser = parse_since)]
    pub since: DateTime<Utc>,
    #[command(flatten)]
    pub names: NameArgs,
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
    /// At most this many matches (with --stories: stories)
    #[arg(long, default_value_t = 50, value_name = "N", value_parser = parse_limit)]
    pub limit: usize,
    /// One row per story (headline, outlets, first and last seen, rules, size) instead of one
    /// per report
    #[arg(long)]
    pub stories: bool,
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
