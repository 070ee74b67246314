//! `newswatch migrate --from <path|url> --to <path|url> [--force]`: copy a database between
//! SQLite and PostgreSQL ([`crate::store::copy`] does the work and the checks), print the row
//! counts, and fail on any difference.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::{MigrateArgs, UsageError};
use crate::store::copy::{self, Db};
use crate::store::postgres;

/// An SQLite target this run created, removed again when the copy fails so a failed run
/// leaves nothing behind.
struct Created(Option<PathBuf>);

impl Created {
    fn remove(&mut self) {
        if let Some(p) = self.0.take() {
            for suffix in ["", "-wal", "-shm"] {
                let mut f = p.clone().into_os_string();
                f.push(suffix);
                let _ = std::fs::remove_file(f);
            }
        }
    }
}

/// Open one end: a `postgres://` URL (password from the URL, else `PGPASSWORD`) or an SQLite
/// file (the source must exist; a missing target is created).
fn open(spec: &str, source: bool) -> Result<Db> {
    let role = if source { "--from" } else { "--to" };
    if postgres::is_url(spec) {
        let password = std::env::var("PGPASSWORD").ok().filter(|p| !p.is_empty());
        return Db::postgres(spec, password.as_deref(), !source).context(role);
    }
    if spec.contains("://") {
        return Err(UsageError(format!(
            "{role} {spec:?}: neither an SQLite file nor a postgres:// URL"
        ))
        .into());
    }
    if spec.trim().is_empty() {
        return Err(UsageError(format!("{role} is empty")).into());
    }
    Db::sqlite(Path::new(spec), !source).context(role)
}

/// `newswatch migrate`.
pub fn migrate(args: &MigrateArgs, out: &mut dyn Write) -> Result<()> {
    let same_file = !postgres::is_url(&args.from)
        && matches!(
            (std::fs::canonicalize(&args.from), std::fs::canonicalize(&args.to)),
            (Ok(a), Ok(b)) if a == b
        );
    if args.from == args.to || same_file {
        return Err(UsageError("--from and --to name the same database".into()).into());
    }
    let mut from = open(&args.from, true)?;
    let target_is_new = !postgres::is_url(&args.to) && !Path::new(&args.to).exists();
    let mut to = open(&args.to, false)?;
    let mut created = Created(target_is_new.then(|| PathBuf::from(&args.to)));
    let (from_name, to_name) = (from.describe(), to.describe());
    if from_name == to_name {
        drop(to);
        created.remove();
        return Err(UsageError(format!("--from and --to both name {from_name}")).into());
    }
    let report = match copy::copy(&mut from, &mut to, args.force) {
        Ok(r) => r,
        Err(e) => {
            drop(to);
            created.remove();
            return Err(e).context(format!("{from_name} → {to_name}: nothing was copied"));
        }
    };
    writeln!(out, "{from_name} → {to_name}")?;
    if report.replaced {
        writeln!(
            out,
            "--force: the target's rows were deleted before the copy"
        )?;
    }
    let width = report
        .counts
        .iter()
        .map(|c| c.table.len())
        .max()
        .unwrap_or(5)
        .max(5);
    writeln!(
        out,
        "{:<width$}  {:>10}  {:>10}",
        "table", "source", "target"
    )?;
    for c in &report.counts {
        let flag = if c.source == c.target {
            ""
        } else {
            "  differs"
        };
        writeln!(
            out,
            "{:<width$}  {:>10}  {:>10}{flag}",
            c.table, c.source, c.target
        )?;
    }
    if !report.mismatches.is_empty() {
        drop(to);
        created.remove();
        for m in &report.mismatches {
            writeln!(out, "mismatch: {m}")?;
        }
        bail!(
            "the copy did not match the source ({} differences; first: {}): rolled back, nothing was copied",
            report.mismatches.len(),
            report.mismatches[0]
        );
    }
    writeln!(
        out,
        "checked: row counts of {} tables equal; {} sampled rows equal column by column; full-text index rebuilt ({} archive rows)",
        report.counts.len(),
        report.sampled,
        report.indexed
    )?;
    Ok(())
}
