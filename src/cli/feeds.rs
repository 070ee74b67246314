//! `feeds`: health of every feed, OPML import and export, discovery.

use std::io::Write;

use anyhow::{Context, Result, bail};

use super::table::{fit, terminal_width};
use super::*;
use crate::config::{self, Settings};
use crate::text::sanitize;

/// `newswatch feeds`: every feed's health, from the database (read-only use).
pub fn feeds_list(settings: &Settings, format: ListFormat, out: &mut dyn Write) -> Result<()> {
    let statuses = if let crate::config::Database::Postgres { url, password } = &settings.backend {
        crate::store::postgres::poll::PgStore::open(
            url.expose(),
            password.as_ref().map(|p| p.expose()),
            settings.cluster.worker_id(),
            false,
        )
        .context("cannot use the database")?
        .feed_statuses()
        .context("cannot read feeds")?
    } else if settings.database.exists() {
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
                last_worker: None,
            });
        }
    }
    match format {
        ListFormat::Json => {
            serde_json::to_writer_pretty(&mut *out, &all)?;
            writeln!(out)?;
        }
        ListFormat::Table => {
            // The configured zone, with its abbreviation, like every other table.
            let tz = settings.schedule.timezone;
            let short = |t: &Option<String>| {
                t.as_deref()
                    .map(|t| crate::store::review::local(t, tz))
                    .unwrap_or_else(|| "-".into())
            };
            writeln!(
                out,
                "{:<22} {:<9} {:>4} {:<20} {:<20} {:>6} {:>7}  LAST ERROR",
                "NAME", "STATUS", "FAIL", "LAST FETCH", "NEXT DUE", "ITEMS", "MATCHES"
            )?;
            for s in &all {
                let mut status = s.last_status.clone().unwrap_or_else(|| "never".into());
                if !s.in_config {
                    status = "removed".into();
                }
                let mut line = format!(
                    "{:<22} {:<9} {:>4} {:<20} {:<20} {:>6} {:>7}  {}",
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
                if let Some(w) = &s.last_worker {
                    line.push_str(&format!("  (by {})", sanitize(w)));
                }
                writeln!(out, "{}", fit(&line, terminal_width().max(100)))?;
            }
            if settings.database.exists()
                || matches!(settings.backend, config::Database::Postgres { .. })
            {
                let mut db = open_review(settings, true)?;
                for line in super::alerts::failing_lines(&mut db, settings)? {
                    writeln!(out, "{line}")?;
                }
            }
        }
    }
    Ok(())
}
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
