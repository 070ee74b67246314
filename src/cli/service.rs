//! `poll`, `run` and `check`: one cycle, the service, and the config explained in words.

use std::io::Write;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};
use chrono::Utc;

use super::*;
use crate::config::{ConfigSource, FeedSettings, Settings};
use crate::schedule::Schedule;
use crate::service::poll::{self, Outcome, Runtime, Summary};
use crate::text::sanitize;

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
    // Rules apply to what this poll archives from now on (see `newswatch backfill` for the past).
    let versions: Vec<(String, String)> = settings
        .rules
        .iter()
        .map(|r| (r.name.clone(), r.query.to_string()))
        .collect();
    store
        .register_rules(&versions, Utc::now())
        .context("cannot record the rules in the database")?;
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
