//! `poll`, `run` and `check`: one cycle, the service, and the config explained in words.

use std::io::Write;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};
use chrono::Utc;

use super::*;
use crate::config::{ConfigSource, Database, FeedSettings, Settings};
use crate::schedule::Schedule;
use crate::service::poll::{self, Outcome, Runtime, Summary};
use crate::text::sanitize;

/// `newswatch poll`.
pub async fn poll(settings: Settings, args: &PollArgs, err: &mut dyn Write) -> Result<Summary> {
    if let Some(name) = &args.feed
        && !settings.feeds.iter().any(|f| &f.name == name)
    {
        let known: Vec<&str> = settings.feeds.iter().map(|f| f.name.as_str()).collect();
        bail!(UsageError(format!(
            "no feed named {:?} in the config (known feeds: {})",
            sanitize(name),
            if known.is_empty() {
                "none".to_string()
            } else {
                sanitize(&known.join(", "))
            }
        )));
    }
    if matches!(settings.backend, Database::Postgres { .. }) {
        return poll_postgres(settings, args, err).await;
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
    drop(store);
    let sent = deliver_alerts(&runtime.settings).await?;
    let summary = print_summary(&mut reports, err)?;
    alerts_line(&sent, err)?;
    Ok(summary)
}

/// The alerts a poll created, and any still pending, sent before `poll` exits, on a
/// connection of their own. On PostgreSQL only when no running worker delivers the cluster's
/// alerts (it holds [`crate::service::alerts::ALERT_LOCK`]); they are its to send then.
async fn deliver_alerts(settings: &Settings) -> Result<crate::service::alerts::PassReport> {
    use crate::service::alerts;
    if settings.alerts.is_empty() {
        return Ok(alerts::PassReport::default());
    }
    let s = settings.clone();
    let db = tokio::task::spawn_blocking(move || {
        let mut db = open_review(&s, false)?;
        let lead = match &mut db {
            ReviewDb::Sqlite(_) => true,
            ReviewDb::Postgres(_) => {
                alerts::try_lead(&mut db).context("cannot read the alert outbox")?
            }
        };
        Ok::<_, anyhow::Error>((db, lead))
    })
    .await
    .context("internal error")??;
    let (db, lead) = db;
    let db = Arc::new(Mutex::new(db));
    let report = if lead {
        alerts::deliver_pending(
            &db,
            &settings.alerts,
            settings.schedule.timezone,
            alerts::now(),
        )
        .await
    } else {
        tracing::info!("alerts: a running worker delivers them");
        alerts::PassReport::default()
    };
    // The sync PostgreSQL client is closed on a blocking thread.
    let _ = tokio::task::spawn_blocking(move || drop(db)).await;
    Ok(report)
}

fn alerts_line(sent: &crate::service::alerts::PassReport, err: &mut dyn Write) -> Result<()> {
    if sent.sent + sent.failed + sent.held + sent.dropped > 0 {
        writeln!(
            err,
            "alerts: {} sent, {} failed (retried later), {} held, {} dropped",
            sent.sent, sent.failed, sent.held, sent.dropped
        )?;
    }
    Ok(())
}

/// `newswatch poll` with a PostgreSQL `[storage] url`: the same cycle, through
/// [`crate::store::postgres::poll::PgStore`], without leases (see `store::postgres::poll`).
async fn poll_postgres(
    settings: Settings,
    args: &PollArgs,
    err: &mut dyn Write,
) -> Result<Summary> {
    let opened = {
        let settings = settings.clone();
        let worker = settings.cluster.worker_id();
        tokio::task::spawn_blocking(move || crate::service::cluster::open(&settings, worker, false))
            .await
            .context("internal error")?
            .context("cannot use the database")?
    };
    let runtime = Arc::new(Runtime::new(settings).map_err(|e| UsageError(e.to_string()))?);
    let store = Arc::new(Mutex::new(opened));
    let mut reports = poll::poll_all(&runtime, &store, args.feed.as_deref()).await;
    // The connection is closed on a blocking thread (the sync client must not be dropped on
    // the async one).
    let _ = tokio::task::spawn_blocking(move || drop(store)).await;
    let sent = deliver_alerts(&runtime.settings).await?;
    let summary = print_summary(&mut reports, err)?;
    alerts_line(&sent, err)?;
    Ok(summary)
}

/// The failures and the one-line summary of a poll, on stderr.
fn print_summary(reports: &mut [poll::FeedReport], err: &mut dyn Write) -> Result<Summary> {
    reports.sort_by(|a, b| a.feed.cmp(&b.feed));
    let summary = Summary::of(reports);
    for r in reports.iter() {
        if let Outcome::Failed { reason, .. } = &r.outcome {
            writeln!(err, "failed: {}: {}", sanitize(&r.feed), sanitize(reason))?;
        }
    }
    let plural =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    writeln!(
        err,
        "poll: {}: {} ok, {} unchanged, {} failed; {}, {}",
        plural(reports.len(), "feed", "feeds"),
        summary.ok,
        summary.unchanged,
        summary.failed,
        plural(summary.new_entries, "new item", "new items"),
        plural(summary.new_matches, "new match", "new matches")
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
    if matches!(settings.backend, Database::Postgres { .. }) {
        crate::service::cluster::run(source, settings, shutdown, control_rx).await?;
    } else {
        crate::service::daemon::run(source, settings, shutdown, control_rx).await?;
    }
    Ok(())
}

/// One line about an alert for `check`: destination (host only: webhook URLs are secrets),
/// rules and pacing.
fn describe_alert(a: &crate::outputs::alerts::AlertSettings) -> String {
    use crate::outputs::alerts::Destination;
    let host = |u: &url::Url| u.host_str().unwrap_or("?").to_string();
    let mut parts = vec![match &a.destination {
        Destination::Webhook { url, secret } => format!(
            "webhook to {}{}",
            host(url),
            if secret.is_some() { " (signed)" } else { "" }
        ),
        Destination::Ntfy { url, priority } => {
            format!("ntfy on {} (priority {priority})", host(url))
        }
        Destination::Slack { url } => format!("slack webhook on {}", host(url)),
        Destination::Matrix { url } => format!("matrix webhook on {}", host(url)),
        Destination::Email { smtp } => {
            format!("e-mail to {} via {}", smtp.to.join(", "), smtp.host)
        }
        Destination::Command { argv } => {
            format!("command {}", argv.first().map_or("", |s| s.as_str()))
        }
    }];
    parts.push(match &a.rules {
        None => "every rule".into(),
        Some(r) => format!("rules {}", r.join(", ")),
    });
    if !a.update_at.is_empty() {
        let n: Vec<String> = a.update_at.iter().map(|n| n.to_string()).collect();
        parts.push(format!("again at {} outlets", n.join(", ")));
    }
    if let Some(iv) = a.min_interval {
        parts.push(format!(
            "at most one per {}",
            humantime::format_duration(iv)
        ));
    }
    if let Some(q) = a.quiet_hours {
        parts.push(format!(
            "quiet {}-{}",
            q.start.format("%H:%M"),
            q.end.format("%H:%M")
        ));
    }
    if let Some(m) = a.max_per_hour {
        parts.push(format!("at most {m} per hour"));
    }
    parts.join("; ")
}

/// `check` with a PostgreSQL `[storage] url`: connect and report the server and the schema
/// (read only: the schema is created by `migrate`, not by `check`).
fn check_postgres(url: &str, password: Option<&str>, out: &mut dyn Write) -> Result<()> {
    use crate::store::postgres::{PgDb, SCHEMA_VERSION};
    let mut db = PgDb::connect(url, password).context("storage.url")?;
    let server = db.server_version()?;
    let version = db.schema_version()?;
    let schema = match version {
        0 => "no newswatch schema yet (`newswatch migrate` creates it)".to_string(),
        v if v == SCHEMA_VERSION => format!("schema version {v} (current)"),
        v if v < SCHEMA_VERSION => {
            format!("schema version {v} of {SCHEMA_VERSION} (`newswatch migrate` upgrades it)")
        }
        v => format!(
            "schema version {v}, newer than this newswatch ({SCHEMA_VERSION}): upgrade newswatch"
        ),
    };
    let tls = if db.tls() { "TLS" } else { "no TLS" };
    writeln!(
        out,
        "  connection  ok: PostgreSQL {server} ({tls}), {schema}"
    )?;
    writeln!(
        out,
        "  note        `check`, `migrate`, `poll`, `run` (polling only) and `feeds` use PostgreSQL so far; the other commands need storage.path"
    )?;
    Ok(())
}

/// `newswatch check`.
pub fn check(source: &ConfigSource, settings: &Settings, out: &mut dyn Write) -> Result<()> {
    writeln!(out, "config: {source}")?;
    writeln!(out, "database: {}", settings.backend.describe())?;
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
    if !settings.alerts.is_empty() {
        writeln!(out, "\nalerts ({}):", settings.alerts.len())?;
        for a in &settings.alerts {
            writeln!(out, "  {:<24} {}", sanitize(&a.name), describe_alert(a))?;
        }
    }
    writeln!(out, "\noutputs:")?;
    let mut dirs: Vec<std::path::PathBuf> = Vec::new();
    match &settings.digest {
        Some(d) => {
            let formats: Vec<&str> = std::iter::once("md")
                .chain(
                    d.formats
                        .iter()
                        .map(|f| f.extension())
                        .filter(|e| *e != "md"),
                )
                .collect();
            writeln!(
                out,
                "  digest      {} into {} ({}), schedule {}",
                formats.join(", "),
                d.dir.display(),
                Schedule::parse(&d.schedule)
                    .map(|s| s.describe())
                    .unwrap_or_else(|_| d.schedule.clone()),
                d.schedule
            )?;
            writeln!(
                out,
                "  digest      backlog {}, at most {} per rule{}{}",
                humantime::format_duration(d.backlog.to_std().unwrap_or_default()),
                d.max_per_rule
                    .map_or_else(|| "all".to_string(), |n| n.to_string()),
                if d.email.is_some() { ", e-mail" } else { "" },
                if d.webhook.is_some() { ", webhook" } else { "" },
            )?;
            dirs.push(d.dir.clone());
        }
        None => writeln!(out, "  digest      none (no [digest] section)")?,
    }
    for (name, path) in [
        ("atom", &settings.output.atom),
        ("json_feed", &settings.output.json_feed),
    ] {
        if let Some(p) = path {
            writeln!(out, "  {name:<11} {}", p.display())?;
            if let Some(parent) = p.parent() {
                dirs.push(parent.to_path_buf());
            }
        }
    }
    if let Some(parent) = settings.database.parent() {
        dirs.push(parent.to_path_buf());
    }
    writeln!(out, "\nstorage:")?;
    writeln!(out, "  database    {}", settings.backend.describe())?;
    if let crate::config::Database::Postgres { url, password } = &settings.backend {
        writeln!(
            out,
            "  workers     leases of {} on due feeds; this one is {}",
            humantime::format_duration(settings.cluster.lease),
            sanitize(&settings.cluster.worker_id())
        )?;
        check_postgres(url.expose(), password.as_ref().map(|p| p.expose()), out)?;
    }
    let forever = |d: Option<std::time::Duration>, off: &str| {
        d.map_or_else(
            || off.to_string(),
            |d| humantime::format_duration(d).to_string(),
        )
    };
    writeln!(
        out,
        "  archive     {}{}",
        forever(settings.archive.keep, "off (keep = \"0\")"),
        if settings.archive.backfill_new_rules {
            ", new rules backfilled automatically"
        } else {
            ""
        }
    )?;
    writeln!(
        out,
        "  matches     kept {}",
        forever(settings.keep_matches, "forever")
    )?;
    writeln!(
        out,
        "  stories     window {}, threshold {:.2}",
        humantime::format_duration(settings.stories.window.to_std().unwrap_or_default()),
        settings.stories.threshold
    )?;
    match &settings.web {
        Some(w) => writeln!(
            out,
            "  web         http://{}/{}",
            w.listen,
            if w.token.is_some() {
                " (token required)"
            } else {
                ""
            }
        )?,
        None => writeln!(out, "  web         off (no [web] section)")?,
    }
    let mut warnings = settings.warnings();
    dirs.sort();
    dirs.dedup();
    for d in &dirs {
        if let Some(why) = crate::config::unwritable(d) {
            warnings.push(format!("cannot write there: {why}"));
        }
    }
    if !warnings.is_empty() {
        writeln!(out, "\nwarnings:")?;
        for w in &warnings {
            writeln!(out, "  warning: {}", sanitize(w))?;
        }
    }
    writeln!(out, "\nconfig OK")?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Feed-reader ecosystem: feeds listing/import/export/discover, match export, completions, man.
