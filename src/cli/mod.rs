//! CLI: the commands people and scripts use. A public contract: names of commands, flags and
//! JSON fields do not change lightly.
//!
//! Each command is a function from parsed arguments to output on a writer, so `main.rs` only
//! wires them and tests can call them directly.

mod alerts;
mod archive;
mod args;
mod docs;
mod feeds;
mod matches;
mod migrate;
mod review;
mod service;
mod stories;
mod table;
mod web;

pub use alerts::{alerts_list, alerts_test};
pub use archive::{archive_rebuild, backfill, prune, search};
pub use args::*;
pub use docs::{completions, man};
pub use feeds::{feeds_discover, feeds_export, feeds_import, feeds_list};
pub use matches::{export, print_matches, query};
pub use migrate::migrate;
pub use review::{digest, mark, show, stats};
pub use service::{check, poll, run};
pub use stories::story;
pub use table::fit;
pub use web::serve;

use std::io::Write;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, NaiveDate, Utc};

use crate::config::{self, ConfigSource, Settings};
use crate::store::Store;

/// The longest look-back a duration argument may ask for.
pub const MAX_LOOKBACK_DAYS: i64 = 100 * 366;

/// The earliest and latest years a date argument may name.
pub const DATE_YEARS: std::ops::RangeInclusive<i32> = 1900..=9999;

/// The one parser of every time argument (`--since`, `--published-since` of every command):
/// a duration ago from now (`24h`, `7d`, `90m`, at most [`MAX_LOOKBACK_DAYS`]), a date
/// (`2015-11-01`, UTC midnight) or an RFC 3339 time, the dates within [`DATE_YEARS`]. Anything
/// else is a usage error naming the value.
pub fn parse_since(s: &str) -> Result<DateTime<Utc>, String> {
    parse_since_at(s, Utc::now())
}

/// [`parse_since`] with a given "now".
pub fn parse_since_at(s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    use chrono::Datelike;
    let s = s.trim();
    let in_range = |t: DateTime<Utc>| -> Result<DateTime<Utc>, String> {
        if DATE_YEARS.contains(&t.year()) {
            Ok(t)
        } else {
            Err(format!(
                "date {s:?} is out of range (years {}–{})",
                DATE_YEARS.start(),
                DATE_YEARS.end()
            ))
        }
    };
    if s.len() == 10 && s.as_bytes().get(4) == Some(&b'-') {
        let d = parse_day(s)?;
        return d
            .and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc())
            .ok_or_else(|| format!("invalid date {s:?}"))
            .and_then(in_range);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return in_range(t.with_timezone(&Utc));
    }
    let too_long = || format!("duration {s:?} is out of range (at most {MAX_LOOKBACK_DAYS}d)");
    let d = humantime::parse_duration(s).map_err(|_| {
        format!("expected a duration like 24h or 7d, or a date like 2015-11-01, got {s:?}")
    })?;
    let d = chrono::Duration::from_std(d).map_err(|_| too_long())?;
    if d > chrono::Duration::days(MAX_LOOKBACK_DAYS) {
        return Err(too_long());
    }
    now.checked_sub_signed(d).ok_or_else(too_long)
}

/// A calendar day `YYYY-MM-DD` within [`DATE_YEARS`].
pub fn parse_day(s: &str) -> Result<NaiveDate, String> {
    use chrono::Datelike;
    let s = s.trim();
    let d = NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|_| format!("expected a date like 2015-11-01, got {s:?}"))?;
    if !DATE_YEARS.contains(&d.year()) {
        return Err(format!(
            "date {s:?} is out of range (years {}–{})",
            DATE_YEARS.start(),
            DATE_YEARS.end()
        ));
    }
    Ok(d)
}

/// The most rows `--limit` may ask for: the largest SQL (64-bit signed) `LIMIT`, so that any
/// "everything" value a script passes (e.g. 100,000,000) is accepted.
pub const MAX_LIMIT: usize = i64::MAX as usize;

/// `--limit N`: a whole number from 1 to [`MAX_LIMIT`].
pub fn parse_limit(s: &str) -> Result<usize, String> {
    s.trim()
        .parse::<usize>()
        .ok()
        .filter(|n| (1..=MAX_LIMIT).contains(n))
        .ok_or_else(|| format!("expected a whole number from 1 to {MAX_LIMIT}, got {s:?}"))
}

/// Fail with a usage error, listing the known names, when a `--rule` or `--feed` names no
/// rule or feed of the config or the database (so a typo is never an empty result).
pub(crate) fn check_names(
    settings: &Settings,
    db: &mut dyn crate::store::sql::Db,
    names: &NameArgs,
) -> Result<()> {
    let known = crate::store::review::known_names(db).context("cannot read names")?;
    let check = |kind: &str, asked: &[String], config: Vec<&str>, db: &[String]| -> Result<()> {
        let mut all: Vec<&str> = config;
        all.extend(db.iter().map(String::as_str));
        all.sort_unstable();
        all.dedup();
        for name in asked {
            if !all.contains(&name.as_str()) {
                let list = if all.is_empty() {
                    "none".to_string()
                } else {
                    all.join(", ")
                };
                bail!(UsageError(format!(
                    "no {kind} named {name:?} in the config or the database (known {kind}s: {list})",
                    name = crate::text::sanitize(name),
                    list = crate::text::sanitize(&list)
                )));
            }
        }
        Ok(())
    };
    check(
        "rule",
        &names.rule,
        settings.rules.iter().map(|r| r.name.as_str()).collect(),
        &known.rules,
    )?;
    check(
        "feed",
        &names.feed,
        settings.feeds.iter().map(|f| f.name.as_str()).collect(),
        &known.feeds,
    )
}

/// [`check_names`] against the database the settings name (the config alone when there is
/// none yet).
pub(crate) fn check_names_in(settings: &Settings, names: &NameArgs) -> Result<()> {
    if names.rule.is_empty() && names.feed.is_empty() {
        return Ok(());
    }
    check_names(settings, &mut open_review(settings, true)?, names)
}

/// An error and its causes on one line, `: `-separated, each cause said once: many error
/// types print their source in their own message *and* return it as `source()`, so a plain
/// join would repeat it ("cannot write x: File exists: File exists").
pub fn error_line(e: &anyhow::Error) -> String {
    let mut msg = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if text.is_empty() || msg.contains(&text) {
            continue;
        }
        if !msg.is_empty() {
            msg.push_str(": ");
        }
        msg.push_str(&text);
    }
    msg.retain(|c| c != '\n');
    msg
}

/// Load the config the flags point at (either backend), or fail with a usage error.
pub fn load_settings_any_backend(cli: &Cli) -> Result<(ConfigSource, Settings)> {
    let source = config::resolve_source(cli.config.as_deref());
    let settings = config::load(&source).map_err(|e| UsageError(e.to_string()))?;
    Ok((source, settings))
}

/// Open the database named by the settings.
pub fn open_store(settings: &Settings) -> Result<Store> {
    let mut store =
        Store::open(&settings.database).with_context(|| "cannot use the database".to_string())?;
    store.set_archive(settings.archive.keep.is_some());
    store.set_story_settings(settings.stories.clone());
    store.set_alerts(crate::outputs::alerts::plan(&settings.alerts));
    Ok(store)
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

pub(crate) use crate::store::sql::AnyDb as ReviewDb;

/// Open the database `[storage]` names for a reviewing command. With `read_only`, an SQLite
/// file that does not exist yet is not created (an empty in-memory database stands in). A
/// PostgreSQL database is brought to the current schema, as `poll` would.
pub(crate) fn open_review(settings: &Settings, read_only: bool) -> Result<ReviewDb> {
    if let config::Database::Postgres { url, password } = &settings.backend {
        return ReviewDb::postgres(url.expose(), password.as_ref().map(|p| p.expose()))
            .context("cannot use the database");
    }
    Ok(ReviewDb::Sqlite(if read_only {
        open_for_read(settings)?
    } else {
        open_store(settings)?
    }))
}

/// `items` as one pretty JSON array (`ndjson == false`) or one compact object per line.
pub(super) fn write_json<T: serde::Serialize>(
    items: &[T],
    ndjson: bool,
    out: &mut dyn Write,
) -> Result<()> {
    if ndjson {
        for item in items {
            serde_json::to_writer(&mut *out, item)?;
            writeln!(out)?;
        }
    } else {
        serde_json::to_writer_pretty(&mut *out, items)?;
        writeln!(out)?;
    }
    Ok(())
}

/// Write `bytes` to `path` atomically, or to `out` when there is no path.
pub(super) fn emit(
    bytes: &[u8],
    path: Option<&std::path::Path>,
    out: &mut dyn Write,
) -> Result<()> {
    match path {
        Some(p) => crate::outputs::export::write_atomic(p, bytes)?,
        None => {
            out.write_all(bytes)?;
            out.flush()?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::table::display_width;
    use super::*;
    use crate::text::sanitize;

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
    fn error_line_says_each_cause_once() {
        let io = std::io::Error::other("File exists (os error 17)");
        let e = anyhow::Error::new(crate::outputs::export::ExportError::File {
            path: "x.atom".into(),
            source: io,
        })
        .context("cannot export");
        assert_eq!(
            error_line(&e),
            "cannot export: cannot write x.atom: File exists (os error 17)"
        );
    }

    #[test]
    fn every_time_argument_is_range_checked() {
        for bad in ["999999999d", "36700d", "0001-01-01", "1800-01-01T00:00:00Z"] {
            let e = parse_since(bad).unwrap_err();
            assert!(e.contains("out of range"), "{bad}: {e}");
        }
        assert!(parse_since("+99999-01-01T00:00:00Z").is_err());
        assert!(parse_since("36000d").is_ok());
        assert!(parse_day("99999-01-01").is_err());
        assert!(parse_limit("9223372036854775808").is_err());
        assert!(parse_limit("0").is_err());
        assert!(parse_limit("-5").is_err());
        assert!(parse_limit("ten").is_err());
        assert_eq!(parse_limit("50"), Ok(50));
        assert_eq!(parse_limit("100000000"), Ok(100_000_000));
        assert_eq!(parse_limit("9223372036854775807"), Ok(MAX_LIMIT));
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
