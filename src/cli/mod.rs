//! CLI: the commands people and scripts use. A public contract: names of commands, flags and
//! JSON fields do not change lightly.
//!
//! Each command is a function from parsed arguments to output on a writer, so `main.rs` only
//! wires them and tests can call them directly.

mod archive;
mod args;
mod docs;
mod feeds;
mod matches;
mod review;
mod service;
mod table;

pub use archive::{archive_rebuild, backfill, prune, search};
pub use args::*;
pub use docs::{completions, man};
pub use feeds::{feeds_discover, feeds_export, feeds_import, feeds_list};
pub use matches::{export, print_matches, query};
pub use review::{digest, mark, show, stats};
pub use service::{check, poll, run};
pub use table::fit;

use std::io::Write;

use anyhow::{Context, Result};
use chrono::{DateTime, NaiveDate, Utc};

use crate::config::{self, ConfigSource, Settings};
use crate::store::Store;

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
    let mut store =
        Store::open(&settings.database).with_context(|| "cannot use the database".to_string())?;
    store.set_archive(settings.archive.keep.is_some());
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
