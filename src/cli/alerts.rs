//! `alerts list` and `alerts test`, and the "destination failing" lines of `feeds` and `stats`.

use std::io::Write;

use anyhow::{Context, Result, bail};

use super::table::terminal_width;
use super::*;
use crate::config::Settings;
use crate::service::alerts;
use crate::text::sanitize;

/// `newswatch alerts list`: the outbox, newest first.
pub fn alerts_list(settings: &Settings, args: &AlertsListArgs, out: &mut dyn Write) -> Result<()> {
    let mut db = open_review(settings, true)?;
    let rows = crate::store::alerts::outbox(&mut db, args.limit)
        .context("cannot read the alert outbox")?;
    match args.format {
        ListFormat::Json => {
            serde_json::to_writer_pretty(&mut *out, &rows)?;
            writeln!(out)?;
        }
        ListFormat::Table => {
            let tz = settings.schedule.timezone;
            let local = |t: &Option<String>| {
                t.as_deref()
                    .map(|t| crate::store::review::local(t, tz))
                    .unwrap_or_else(|| "-".into())
            };
            writeln!(
                out,
                "{:<16} {:<8} {:>6} {:<10} {:<8} {:>3} {:<20} TITLE / LAST ERROR",
                "ALERT", "STATE", "STORY", "KIND", "OUTLETS", "TRY", "SENT / NEXT TRY"
            )?;
            for r in &rows {
                let when = match r.state.as_str() {
                    "sent" => local(&r.sent_at),
                    "pending" | "failed" => local(&r.next_attempt_at),
                    _ => "-".into(),
                };
                let title = sanitize(r.title.as_deref().unwrap_or("(story no longer stored)"));
                let line = format!(
                    "{:<16} {:<8} {:>6} {:<10} {:>8} {:>3} {:<20} {}",
                    fit(&sanitize(&r.alert), 16),
                    r.state,
                    r.story_id,
                    fit(&r.kind, 10),
                    r.outlets,
                    r.attempts,
                    when,
                    title
                );
                let width = terminal_width().max(100);
                writeln!(out, "{}", fit(&line, width))?;
                // The reason of a failure on its own line, never cut off by a long title.
                if let Some(e) = &r.last_error {
                    writeln!(out, "{}", fit(&format!("  error: {}", sanitize(e)), width))?;
                } else if let (Some(h), "pending") = (&r.held, r.state.as_str()) {
                    writeln!(out, "  held: {}", sanitize(h))?;
                }
            }
            if rows.is_empty() {
                writeln!(out, "(the outbox is empty)")?;
            }
            for line in failing_lines(&mut db, settings)? {
                writeln!(out, "{line}")?;
            }
        }
    }
    Ok(())
}

/// `newswatch alerts test NAME`: send a sample alert now (not stored, not paced).
pub async fn alerts_test(
    settings: &Settings,
    args: &AlertsTestArgs,
    out: &mut dyn Write,
) -> Result<()> {
    let Some(alert) = settings.alerts.iter().find(|a| a.name == args.name) else {
        let known: Vec<&str> = settings.alerts.iter().map(|a| a.name.as_str()).collect();
        bail!(UsageError(format!(
            "no alert named {:?} in the config (known alerts: {})",
            sanitize(&args.name),
            if known.is_empty() {
                "none".to_string()
            } else {
                sanitize(&known.join(", "))
            }
        )));
    };
    let message = alerts::sample_message(alert, alerts::now());
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .ok();
    alerts::send(alert, &client, &message)
        .await
        .with_context(|| format!("alert {:?}: test alert not delivered", alert.name))?;
    writeln!(
        out,
        "alert {:?}: test alert sent to its {} (key {})",
        sanitize(&alert.name),
        alert.destination.kind(),
        message.idempotency_key
    )?;
    Ok(())
}

/// One line per alert destination failing for a day or more, for `feeds`, `stats` and
/// `alerts list`.
pub(super) fn failing_lines(
    db: &mut dyn crate::store::sql::Db,
    settings: &Settings,
) -> Result<Vec<String>> {
    let since = alerts::now() - alerts::FAILING_REPORT_AFTER;
    let failing =
        crate::store::alerts::failing(db, since).context("cannot read alert destinations")?;
    let tz = settings.schedule.timezone;
    Ok(failing
        .iter()
        .map(|f| {
            format!(
                "alert destination {:?} failing since {}: {}",
                sanitize(&f.alert),
                crate::store::review::local(&f.failing_since, tz),
                sanitize(f.last_error.as_deref().unwrap_or("unknown error"))
            )
        })
        .collect())
}
