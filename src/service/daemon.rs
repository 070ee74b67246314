//! Daemon: `newswatch run`, the long-running service that polls every feed on its schedule.
//!
//! One loop owns the schedule: it sleeps until the earliest due feed (no periodic wake-ups),
//! launches due feeds as tasks bounded by the global limit (the per-host limit is applied in
//! [`crate::service::poll`]), and learns each feed's next due time when its task ends. Every due time is
//! also written to the database, so a restart resumes instead of hammering every feed at once.
//! Shutdown is injectable (a [`CancellationToken`]) so tests stop it without signals; a reload
//! request builds a new [`Runtime`] and swaps it in only if the new config is valid.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{self, ConfigSource, FeedSettings, Settings};
use crate::schedule::{Schedule, backoff, jitter};
use crate::service::poll::{self, FeedReport, Outcome, Runtime, SharedStore};
use crate::store::{Store, StoreError};

/// How long in-flight fetches get to finish after a stop request before they are abandoned.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// At a stop: let the in-flight fetches finish for [`SHUTDOWN_GRACE`], then abandon what is
/// left (`tasks_stop`); a feed's results are committed whole or not at all.
pub async fn drain(tracker: &TaskTracker, tasks_stop: &CancellationToken) {
    tracker.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait())
        .await
        .is_err()
    {
        tasks_stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(2), tracker.wait()).await;
    }
}
/// Longest sleep of the scheduling loop when nothing is due (it wakes earlier on events).
const MAX_SLEEP: Duration = Duration::from_secs(3600);

/// Why the daemon could not start (or had to stop).
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// Another `newswatch run` holds the database.
    #[error("another `newswatch run` is already using {db}{}", pid.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    AlreadyRunning { db: PathBuf, pid: Option<u32> },
    /// The lock file could not be created (or is not a regular file: see `open_lock_file`).
    #[error("cannot create lock file {path}: {source}")]
    Lock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Runtime(#[from] poll::RuntimeError),
    /// The web server (`[web]`) could not start.
    #[error(transparent)]
    Web(#[from] crate::service::web::WebError),
}

/// An exclusive lock on a database, held for the daemon's lifetime (released by the OS when the
/// process ends, however it ends).
#[derive(Debug)]
pub struct DbLock {
    _file: File,
    pub path: PathBuf,
}

impl DbLock {
    /// Take `<db>.lock`, or fail with [`DaemonError::AlreadyRunning`].
    pub fn acquire(db: &Path) -> Result<DbLock, DaemonError> {
        let mut name = db.as_os_str().to_owned();
        name.push(".lock");
        let path = PathBuf::from(name);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| DaemonError::Lock {
                path: path.clone(),
                source,
            })?;
        }
        let mut file = open_lock_file(&path).map_err(|source| DaemonError::Lock {
            path: path.clone(),
            source,
        })?;
        match file.try_lock() {
            Ok(()) => {
                let _ = file.set_len(0);
                let _ = file.rewind();
                let _ = write!(file, "{}", std::process::id());
                let _ = file.flush();
                Ok(DbLock { _file: file, path })
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                Err(DaemonError::AlreadyRunning {
                    db: db.to_path_buf(),
                    pid: pid.trim().parse().ok(),
                })
            }
            Err(std::fs::TryLockError::Error(source)) => Err(DaemonError::Lock { path, source }),
        }
    }
}

/// Open (creating it if needed) the lock file without following a symbolic link, and refuse
/// anything but a regular file with one link: the file is truncated and rewritten with our pid
/// once locked, so a link planted at `<db>.lock` must not steer that write onto another file
/// (O_NOFOLLOW), and a FIFO or device must not block or be written to (O_NONBLOCK on open, then
/// the type check on the opened file itself, so there is no check-then-open race).
fn open_lock_file(path: &Path) -> std::io::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY);
    }
    let file = options.open(path).map_err(|e| {
        #[cfg(unix)]
        if e.raw_os_error() == Some(libc::ELOOP) {
            return std::io::Error::other(
                "it is a symbolic link; a lock file must be a regular file",
            );
        }
        e
    })?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other(
            "not a regular file (a FIFO, socket or device?); remove it",
        ));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if meta.nlink() > 1 {
            return Err(std::io::Error::other(
                "it has other hard links; a lock file must be a file of its own",
            ));
        }
    }
    Ok(file)
}

/// When a feed is next due after a poll that ended with `report` (and `failures` consecutive
/// failures): its next cron time plus jitter, but never before the server allows (Cache-Control
/// max-age / Expires / RSS ttl, Retry-After) and, after failures, not before the backoff ends.
pub fn next_due(
    settings: &Settings,
    feed: &FeedSettings,
    report: &FeedReport,
    failures: u32,
    now: DateTime<Utc>,
) -> DateTime<Utc> {
    let tz = settings.schedule.timezone;
    let schedule = Schedule::parse(settings.feed_schedule(feed)).ok();
    let mut next = match &schedule {
        Some(s) => s.next_due(&feed.name, now, tz),
        None => now + chrono::Duration::minutes(15),
    };
    if let Some(fresh) = report.fresh_until {
        next = next.max(fresh);
    }
    if let Outcome::Failed { retry_after, .. } = &report.outcome {
        let interval = schedule
            .as_ref()
            .map(|s| s.interval_after(now, tz))
            .unwrap_or(chrono::Duration::minutes(15));
        if failures > 1 {
            next = next.max(now + backoff(&feed.name, failures, interval));
        }
        if let Some(ra) = retry_after {
            next = next.max(*ra);
        }
    }
    next
}

/// When a feed is first due after start: the stored due time if it is still ahead (a restart
/// resumes), else now plus the feed's jitter.
fn initial_due(
    settings: &Settings,
    feed: &FeedSettings,
    stored: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> DateTime<Utc> {
    if let Some(t) = stored.filter(|t| *t > now) {
        return t;
    }
    let interval = Schedule::parse(settings.feed_schedule(feed))
        .map(|s| s.interval_after(now, settings.schedule.timezone))
        .unwrap_or(chrono::Duration::minutes(15));
    now + jitter(&feed.name, interval)
}

/// A request to the daemon's loop from outside (signals, tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Reload the config from its source (SIGHUP).
    Reload,
}

/// Run the daemon until `shutdown` is cancelled. `control` carries reload requests.
pub async fn run(
    source: ConfigSource,
    settings: Settings,
    shutdown: CancellationToken,
    mut control: mpsc::Receiver<Control>,
) -> Result<(), DaemonError> {
    let _lock = DbLock::acquire(&settings.database)?;
    let mut store = Store::open(&settings.database)?;
    store.sync_feeds(settings.feeds.iter().map(FeedSettings::name_url))?;
    let store: SharedStore = Arc::new(Mutex::new(store));
    let metrics = Arc::new(crate::service::metrics::Metrics::new());
    let liveness = Arc::new(crate::service::metrics::Liveness::default());
    liveness.beat(Utc::now());
    // The web server (its own database connections; stopped with the daemon).
    let web = match &settings.web {
        Some(w) => {
            let server = crate::service::web::Server::bind(
                &settings,
                w,
                metrics.clone(),
                Some(liveness.clone()),
            )
            .await?;
            let stop = shutdown.child_token();
            Some(tokio::spawn(async move {
                if let Err(e) = server.serve(stop).await {
                    tracing::error!(error = %e, "web server stopped");
                }
            }))
        }
        None => None,
    };
    let mut runtime = Arc::new(Runtime::new(settings)?.with_metrics(metrics));
    tracing::info!(
        feeds = runtime.settings.feeds.len(),
        rules = runtime.settings.rules.len(),
        database = %runtime.settings.database.display(),
        "daemon started"
    );
    let housekeeping = Arc::new(tokio::sync::Mutex::new(()));
    rules_loaded(&runtime, &store, &housekeeping).await;
    // Alerts go out from a task of their own (own connection), woken after each wave.
    let sender = crate::service::alerts::Sender::start(&runtime.settings, shutdown.clone());

    let mut due: HashMap<String, DateTime<Utc>> = HashMap::new();
    schedule_new_feeds(&runtime, &store, &mut due, Utc::now());
    let mut in_flight: HashSet<String> = HashSet::new();
    // (feed, next due time, whether stored matches changed)
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(String, DateTime<Utc>, bool)>();
    let mut outputs_dirty = false;
    let mut wave_done = false;
    let mut digest_due = first_digest_due(&runtime.settings, &store, Utc::now());
    if let Some(t) = digest_due {
        tracing::info!(at = %t, "next digest");
    }
    let tracker = TaskTracker::new();
    let tasks_stop = CancellationToken::new();
    let mut permits = Arc::new(Semaphore::new(runtime.settings.concurrency));

    loop {
        let now = Utc::now();
        let ready: Vec<FeedSettings> = runtime
            .settings
            .feeds
            .iter()
            .filter(|f| !in_flight.contains(&f.name) && due.get(&f.name).is_some_and(|t| *t <= now))
            .cloned()
            .collect();
        for feed in ready {
            in_flight.insert(feed.name.clone());
            let (runtime, store, done, stop, permits) = (
                runtime.clone(),
                store.clone(),
                done_tx.clone(),
                tasks_stop.clone(),
                permits.clone(),
            );
            tracker.spawn(async move {
                let Ok(_permit) = permits.acquire_owned().await else {
                    return;
                };
                let settings_rt = runtime.clone();
                let policy = move |f: &FeedSettings, r: &FeedReport, failures: u32| {
                    Some(next_due(&settings_rt.settings, f, r, failures, Utc::now()))
                };
                let report = tokio::select! {
                    r = poll::poll_feed(&runtime, &store, &feed, None, Some(&policy)) => Some(r),
                    _ = stop.cancelled() => None,
                };
                let Some(report) = report else {
                    tracing::info!(feed = %feed.name, "fetch abandoned at shutdown");
                    return;
                };
                let next = stored_due(&store, &feed.name)
                    .await
                    .unwrap_or_else(|| next_due(&runtime.settings, &feed, &report, 0, Utc::now()));
                let changed = matches!(report.outcome, Outcome::Ok(c) if c.new_matches + c.updated_matches > 0);
                let _ = done.send((feed.name.clone(), next, changed));
            });
        }

        if wave_done && in_flight.is_empty() {
            // Idle time after a wave: place its matches into stories (which enqueues their
            // alerts), send the alerts, index what it archived, prune once a day.
            wave_done = false;
            poll::place_stories(&store).await;
            sender.wake();
            tokio::spawn(archive_housekeeping(
                runtime.clone(),
                store.clone(),
                housekeeping.clone(),
            ));
        }
        if outputs_dirty && in_flight.is_empty() {
            // After a wave of polls: refresh the [output] feeds of matches once.
            outputs_dirty = false;
            update_outputs(&runtime, &store).await;
        }
        if let Some(at) = digest_due
            && at <= Utc::now()
        {
            write_digest(&runtime, &store).await;
            digest_due = next_digest_due(&runtime.settings, Utc::now());
        }

        let sleep = due
            .iter()
            .filter(|(name, _)| !in_flight.contains(*name))
            .map(|(_, t)| *t)
            .chain(digest_due)
            .min()
            .map(|t| (t - Utc::now()).to_std().unwrap_or(Duration::ZERO))
            .unwrap_or(MAX_SLEEP)
            .min(MAX_SLEEP);
        liveness.beat(
            Utc::now() + chrono::Duration::from_std(sleep).unwrap_or(chrono::Duration::zero()),
        );

        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some((name, next, changed)) = done_rx.recv() => {
                in_flight.remove(&name);
                outputs_dirty |= changed;
                wave_done = true;
                if runtime.settings.feeds.iter().any(|f| f.name == name) {
                    due.insert(name, next);
                }
            }
            Some(Control::Reload) = control.recv() => {
                match reload(&source, &runtime, &store).await {
                    Ok(new) => {
                        let old = runtime.clone();
                        runtime = new;
                        permits = Arc::new(Semaphore::new(runtime.settings.concurrency));
                        let keep: HashSet<&str> = runtime
                            .settings
                            .feeds
                            .iter()
                            .filter(|f| old.settings.feeds.iter().any(|o| same_polling(o, f)))
                            .map(|f| f.name.as_str())
                            .collect();
                        due.retain(|name, _| keep.contains(name.as_str()));
                        let old_digest = old.settings.digest.as_ref().map(|d| d.schedule.clone());
                        if runtime.settings.digest.as_ref().map(|d| d.schedule.clone()) != old_digest {
                            digest_due = next_digest_due(&runtime.settings, Utc::now());
                        }
                        schedule_new_feeds(&runtime, &store, &mut due, Utc::now());
                        tracing::info!(
                            feeds = runtime.settings.feeds.len(),
                            rules = runtime.settings.rules.len(),
                            "config reloaded"
                        );
                        rules_loaded(&runtime, &store, &housekeeping).await;
                        sender.reload(&runtime.settings);
                    }
                    Err(reason) => tracing::error!(%reason, "config reload failed; keeping the running config"),
                }
            }
            _ = tokio::time::sleep(sleep) => {}
        }
    }

    tracing::info!(in_flight = in_flight.len(), "stopping");
    liveness.stopped();
    drain(&tracker, &tasks_stop).await;
    if let Some(web) = web {
        // Cancelled with `shutdown`; bounded by the server's own grace period.
        let _ = web.await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// When the first scheduled digest is due: now if a scheduled time passed since the last
/// digest (the daemon was down at digest time: catch up), else the next scheduled time.
fn first_digest_due(
    settings: &Settings,
    store: &SharedStore,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let digest = settings.digest.as_ref()?;
    let schedule = Schedule::parse(&digest.schedule).ok()?;
    let last_run = {
        let mut guard = store.lock().unwrap_or_else(|p| p.into_inner());
        crate::outputs::digest::scheduled_runs(&mut *guard)
            .ok()
            .and_then(|runs| runs.last().map(|r| r.period_end))
    };
    if let (Some(last), Some(prev)) = (
        last_run,
        schedule.prev_at_or_before(now, settings.schedule.timezone),
    ) && last < prev
    {
        tracing::info!(last_digest = %last, missed = %prev, "digest missed while stopped: catching up");
        return Some(now);
    }
    schedule.next_after(now, settings.schedule.timezone)
}

fn next_digest_due(settings: &Settings, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let digest = settings.digest.as_ref()?;
    Schedule::parse(&digest.schedule)
        .ok()?
        .next_after(now, settings.schedule.timezone)
}

/// Write the scheduled digest files (always), then deliver them (e-mail, webhook) in the
/// background with retries; every outcome is logged.
async fn write_digest(runtime: &Arc<Runtime>, store: &SharedStore) {
    let Some(settings) = runtime.settings.digest.clone() else {
        return;
    };
    let tz = runtime.settings.schedule.timezone;
    let st = store.clone();
    let dir = settings.dir.clone();
    let formats = settings.formats.clone();
    let opts = runtime.settings.digest_options();
    let written = tokio::task::spawn_blocking(move || {
        let guard = st.lock().unwrap_or_else(|p| p.into_inner());
        crate::outputs::digest::write_scheduled(&guard, &dir, &formats, &opts, tz, Utc::now())
    })
    .await;
    match written {
        Ok(Ok(run)) => {
            let files: Vec<String> = run.files.iter().map(|f| f.display().to_string()).collect();
            tracing::info!(files = %files.join(", "), "digest written");
            deliver_digest(run, settings);
        }
        Ok(Err(e)) => tracing::error!(error = %e, "cannot write digest"),
        Err(e) => tracing::error!(error = %e, "digest task failed"),
    }
}

/// Deliver a written scheduled digest (e-mail, webhook) in the background with retries; every
/// outcome is logged.
pub(crate) fn deliver_digest(
    run: crate::outputs::digest::ScheduledDigest,
    settings: crate::outputs::digest::DigestSettings,
) {
    if settings.email.is_some() || settings.webhook.is_some() {
        tokio::spawn(async move {
            for report in crate::outputs::digest::deliver(&run.digest, &settings).await {
                match report.result {
                    Ok(()) => tracing::info!(
                        channel = report.channel,
                        attempts = report.attempts,
                        "digest delivered"
                    ),
                    Err(reason) => tracing::error!(
                        channel = report.channel,
                        attempts = report.attempts,
                        %reason,
                        "digest delivery failed"
                    ),
                }
            }
        });
    }
}

/// Rows indexed per store lock while the daemon catches the archive's index up (the lock is
/// released between batches so polls can commit).
const INDEX_STEP: usize = 2_000;

/// How often the daemon prunes the archive (and old matches).
const PRUNE_EVERY: chrono::Duration = chrono::Duration::hours(24);

/// A config (re)load: record the rule versions in force. A rule the archive has not been
/// searched with is logged once, with the command that applies it, or applied right away with
/// `[archive] backfill_new_rules = true`.
async fn rules_loaded(
    runtime: &Arc<Runtime>,
    store: &SharedStore,
    housekeeping: &Arc<tokio::sync::Mutex<()>>,
) {
    let (rt, st) = (runtime.clone(), store.clone());
    let versions: Vec<(String, String)> = rt
        .settings
        .rules
        .iter()
        .map(|r| (r.name.clone(), r.query.to_string()))
        .collect();
    let archive_on = rt.settings.archive.keep.is_some();
    let stories = rt.settings.stories.clone();
    let alert_plan = crate::outputs::alerts::plan(&rt.settings.alerts);
    let registered = tokio::task::spawn_blocking(move || {
        let mut guard = st.lock().unwrap_or_else(|p| p.into_inner());
        guard.set_archive(archive_on);
        guard.set_story_settings(stories);
        guard.set_alerts(alert_plan);
        guard.register_rules(&versions, Utc::now())
    })
    .await;
    let unapplied = match registered {
        Ok(Ok(u)) => u,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot record the rules in the database");
            return;
        }
        Err(e) => {
            tracing::error!(error = %e, "rule registration task failed");
            return;
        }
    };
    announce_unapplied(&unapplied, runtime.settings.archive.backfill_new_rules);
    if !runtime.settings.archive.backfill_new_rules || unapplied.is_empty() {
        return;
    }
    let rules: Vec<(String, crate::pipeline::matcher::Query)> = runtime
        .settings
        .rules
        .iter()
        .filter(|r| unapplied.iter().any(|u| u.rule == r.name))
        .map(|r| (r.name.clone(), r.query.clone()))
        .collect();
    let (st, lock) = (store.clone(), housekeeping.clone());
    tokio::spawn(async move {
        let _one_at_a_time = lock.lock().await;
        let done = tokio::task::spawn_blocking(move || {
            let mut guard = st.lock().unwrap_or_else(|p| p.into_inner());
            guard.index_archive(usize::MAX)?;
            guard.backfill(&rules, None, false, false, Utc::now())
        })
        .await;
        match done {
            Ok(Ok(r)) => tracing::info!(
                added = r.added.len(),
                new_matches = r.new_items,
                "backfill of new rules done"
            ),
            Ok(Err(e)) => tracing::error!(error = %e, "backfill of new rules failed"),
            Err(e) => tracing::error!(error = %e, "backfill task failed"),
        }
    });
}

/// Say which new or changed rules the archive was not checked against: being applied now
/// (`backfill`: `[archive] backfill_new_rules`), or how to apply them.
pub(crate) fn announce_unapplied(
    unapplied: &[crate::store::archive::UnappliedRule],
    backfill: bool,
) {
    for u in unapplied {
        if backfill {
            tracing::info!(rule = %u.rule, entries = u.entries, "new or changed rule: applying it to the archive");
        } else {
            tracing::info!(
                rule = %u.rule,
                entries = u.entries,
                "new or changed rule: {} archived entries were not checked against it; apply it with `newswatch backfill --rule {}`",
                u.entries,
                u.rule
            );
        }
    }
}

/// After a wave of polls: index the entries it archived (a batch per store lock), and prune
/// the archive when the last prune is a day old. One run at a time.
async fn archive_housekeeping(
    runtime: Arc<Runtime>,
    store: SharedStore,
    lock: Arc<tokio::sync::Mutex<()>>,
) {
    let Ok(_one_at_a_time) = lock.try_lock() else {
        return;
    };
    loop {
        let st = store.clone();
        let step = tokio::task::spawn_blocking(move || {
            st.lock()
                .unwrap_or_else(|p| p.into_inner())
                .index_archive(INDEX_STEP)
        })
        .await;
        match step {
            Ok(Ok(n)) if n as usize == INDEX_STEP => continue,
            Ok(Ok(_)) => break,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot index the archive");
                break;
            }
            Err(e) => {
                tracing::error!(error = %e, "archive index task failed");
                break;
            }
        }
    }
    let st = store.clone();
    let settings = runtime.settings.clone();
    let pruned = tokio::task::spawn_blocking(move || {
        let mut guard = st.lock().unwrap_or_else(|p| p.into_inner());
        let now = Utc::now();
        if guard.pruned_at()?.is_some_and(|at| now - at < PRUNE_EVERY) {
            return Ok(None);
        }
        let (archive_before, matches_before) = settings.retention(now);
        guard
            .prune(archive_before, matches_before, false, now)
            .map(Some)
    })
    .await;
    match pruned {
        Ok(Ok(Some(c))) => tracing::info!(
            archived = c.archived,
            matches = c.matches,
            longest_batch_ms = c.longest_batch.as_millis() as u64,
            "pruned"
        ),
        Ok(Ok(None)) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "cannot prune"),
        Err(e) => tracing::error!(error = %e, "prune task failed"),
    }
}

/// Rewrite the `[output]` Atom / JSON Feed files of matches.
async fn update_outputs(runtime: &Arc<Runtime>, store: &SharedStore) {
    let (rt, st) = (runtime.clone(), store.clone());
    let result = tokio::task::spawn_blocking(move || {
        let guard = st.lock().unwrap_or_else(|p| p.into_inner());
        crate::outputs::export::update_outputs(&rt.settings.output, &rt.settings.database, &guard)
    })
    .await;
    match result {
        Ok(Ok(())) => tracing::debug!("outputs updated"),
        Ok(Err(e)) => tracing::error!(error = %e, "cannot update [output] files"),
        Err(e) => tracing::error!(error = %e, "output task failed"),
    }
}

/// Whether two versions of a feed poll the same way (so its due time carries over a reload).
fn same_polling(a: &FeedSettings, b: &FeedSettings) -> bool {
    a.name == b.name && a.url == b.url && a.schedule == b.schedule
}

/// Give every configured feed without a due time its first one.
fn schedule_new_feeds(
    runtime: &Runtime,
    store: &SharedStore,
    due: &mut HashMap<String, DateTime<Utc>>,
    now: DateTime<Utc>,
) {
    let guard = store.lock().unwrap_or_else(|p| p.into_inner());
    for feed in &runtime.settings.feeds {
        if due.contains_key(&feed.name) {
            continue;
        }
        let stored = guard
            .feed_state(&feed.name)
            .ok()
            .flatten()
            .and_then(|s| s.next_due_at);
        due.insert(
            feed.name.clone(),
            initial_due(&runtime.settings, feed, stored, now),
        );
    }
}

async fn stored_due(store: &SharedStore, name: &str) -> Option<DateTime<Utc>> {
    let store = store.clone();
    let name = name.to_string();
    tokio::task::spawn_blocking(move || {
        let guard = store.lock().unwrap_or_else(|p| p.into_inner());
        guard
            .feed_state(&name)
            .ok()
            .flatten()
            .and_then(|s| s.next_due_at)
    })
    .await
    .ok()
    .flatten()
}

/// Load the config again; on success record its feeds and build its runtime.
async fn reload(
    source: &ConfigSource,
    current: &Runtime,
    store: &SharedStore,
) -> Result<Arc<Runtime>, String> {
    let settings = config::load(source).map_err(|e| e.to_string())?;
    settings.require_sqlite().map_err(|e| e.to_string())?;
    if settings.database != current.settings.database {
        return Err(format!(
            "storage.path changed to {} (restart the daemon to switch databases)",
            settings.database.display()
        ));
    }
    let runtime = Runtime::new(settings)
        .map_err(|e| e.to_string())?
        .with_metrics(current.metrics.clone());
    if runtime.settings.web != current.settings.web {
        tracing::warn!("[web] changed: restart the daemon to apply it");
    }
    let feeds = runtime.settings.feeds.clone();
    let store = store.clone();
    tokio::task::spawn_blocking(move || {
        let mut guard = store.lock().unwrap_or_else(|p| p.into_inner());
        guard.sync_feeds(feeds.iter().map(FeedSettings::name_url))
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())?;
    Ok(Arc::new(runtime))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn settings(poll: &str) -> Settings {
        config::load_str(
            &format!("[schedule]\npoll = \"{poll}\"\n[[feeds]]\nname = \"f\"\nurl = \"http://127.0.0.1:9/\"\n"),
            None,
            Path::new("/tmp"),
        )
        .unwrap()
    }

    fn report(outcome: Outcome, fresh_until: Option<DateTime<Utc>>) -> FeedReport {
        FeedReport {
            feed: "f".into(),
            outcome,
            duration: Duration::ZERO,
            bytes: 0,
            entries: 0,
            fresh_until,
        }
    }

    #[test]
    fn next_due_follows_schedule_server_hints_and_backoff() {
        let s = settings("*/15 * * * *");
        let f = &s.feeds[0];
        let now = Utc.with_ymd_and_hms(2026, 11, 23, 10, 1, 0).unwrap();
        let ok = next_due(&s, f, &report(Outcome::Unchanged, None), 0, now);
        assert!(ok >= Utc.with_ymd_and_hms(2026, 11, 23, 10, 15, 0).unwrap());
        assert!(
            ok <= Utc.with_ymd_and_hms(2026, 11, 23, 10, 16, 0).unwrap(),
            "jitter is small: {ok}"
        );

        let fresh = now + chrono::Duration::hours(2);
        assert_eq!(
            next_due(&s, f, &report(Outcome::Unchanged, Some(fresh)), 0, now),
            fresh,
            "max-age honoured"
        );

        let ra = now + chrono::Duration::hours(5);
        let failed = Outcome::Failed {
            reason: "HTTP 429".into(),
            http_status: Some(429),
            retry_after: Some(ra),
        };
        assert_eq!(
            next_due(&s, f, &report(failed, None), 1, now),
            ra,
            "Retry-After honoured"
        );

        let failed = Outcome::Failed {
            reason: "HTTP 500".into(),
            http_status: Some(500),
            retry_after: None,
        };
        let after4 = next_due(&s, f, &report(failed, None), 4, now);
        assert!(
            after4 >= now + chrono::Duration::minutes(120),
            "backoff 15m * 2^3: {after4}"
        );
    }

    #[test]
    fn restart_resumes_stored_due_time() {
        let s = settings("*/15 * * * *");
        let now = Utc::now();
        let later = now + chrono::Duration::minutes(10);
        assert_eq!(initial_due(&s, &s.feeds[0], Some(later), now), later);
        let first = initial_due(&s, &s.feeds[0], None, now);
        assert!(first >= now && first <= now + chrono::Duration::seconds(60));
    }

    #[test]
    fn second_lock_on_a_database_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("x.db");
        let _first = DbLock::acquire(&db).unwrap();
        match DbLock::acquire(&db) {
            Err(DaemonError::AlreadyRunning { pid, .. }) => {
                assert_eq!(pid, Some(std::process::id()))
            }
            other => panic!("expected AlreadyRunning, got {other:?}"),
        }
    }
}
