//! `newswatch run` on PostgreSQL: one of several workers sharing a database. There is no
//! schedule in memory (as the SQLite daemon keeps): the due times live in `feeds.next_due_at`
//! and each worker claims due feeds in small batches with a lease
//! ([`PgStore::claim_due`], `SELECT … FOR UPDATE SKIP LOCKED`), polls them through the same
//! [`poll::poll_feed`] as every other poll, and writes each result with its next due time,
//! which ends the lease. Between claims a worker sleeps until the earliest due time or lease
//! end (a worker killed with kill -9 holds its feeds until their leases run out), capped at
//! [`MAX_IDLE`] so that feeds another worker's config added are noticed.
//!
//! Beside polling a worker takes its turn at the cluster's daily prune (one worker a day,
//! under an advisory lock), writes the cluster's scheduled `[digest]` (once per scheduled time,
//! under an advisory lock), rewrites its host's `[output]` files after each wave, serves
//! `[web]` if configured, and runs an alert sender that delivers `[[alerts]]` while this
//! worker leads (one sender for the cluster, under a session advisory lock:
//! [`crate::service::alerts::Sender`]). With `[archive] backfill_new_rules`, the worker
//! that records a new or changed rule applies it to the archive.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{self, ConfigSource, Database, FeedSettings, Settings};
use crate::service::daemon::{Control, DaemonError, drain, next_due};
use crate::service::poll::{self, FeedReport, Runtime, Shared};
use crate::store::StoreError;
use crate::store::postgres::poll::PgStore;

/// Most feeds claimed in one statement: small batches keep the claim short and spread the
/// due feeds over the workers instead of the first one taking them all.
pub const CLAIM_BATCH: usize = 16;

/// Longest sleep between looks for due feeds (other workers may have added feeds).
pub const MAX_IDLE: Duration = Duration::from_secs(10);

/// Longest a busy worker (one whose fetches never all end at once) goes without placing the
/// matches it stored into stories.
pub const PLACE_EVERY: Duration = Duration::from_secs(5);

/// Shortest sleep: due feeds held back by their host's limit (`[http] per_host`, counted over
/// every worker's leases) are looked at again this often, or when one of this worker's
/// fetches ends.
const MIN_SLEEP: Duration = Duration::from_millis(50);

/// Open the PostgreSQL database `settings` names for polling as `worker` (leasing feeds when
/// `leasing`), with the feeds and rules of the config recorded. Blocking: call it from a
/// blocking thread (or from `main`'s).
pub fn open(settings: &Settings, worker: String, leasing: bool) -> Result<PgStore, StoreError> {
    open_registering(settings, worker, leasing).map(|(store, _)| store)
}

/// [`open`], also returning the rules this registration found new (or changed) while the
/// archive holds entries they were not applied to (see [`PgStore::register_rules`]).
fn open_registering(
    settings: &Settings,
    worker: String,
    leasing: bool,
) -> Result<(PgStore, Vec<crate::store::archive::UnappliedRule>), StoreError> {
    let Database::Postgres { url, password } = &settings.backend else {
        return Err(StoreError::Postgres {
            target: settings.backend.describe(),
            reason: "internal error: not a PostgreSQL database".into(),
        });
    };
    let mut store = PgStore::open(
        url.expose(),
        password.as_ref().map(|p| p.expose()),
        worker,
        leasing,
    )?;
    store.set_archive(settings.archive.keep.is_some());
    store.set_story_settings(settings.stories.clone());
    store.set_alerts(crate::outputs::alerts::plan(&settings.alerts));
    store.sync_feeds(settings.feeds.iter().map(FeedSettings::name_url))?;
    let versions: Vec<(String, String)> = settings
        .rules
        .iter()
        .map(|r| (r.name.clone(), r.query.to_string()))
        .collect();
    let unapplied = store.register_rules(&versions, Utc::now())?;
    Ok((store, unapplied))
}

/// What the SQLite daemon does when rules are new or changed (`service::daemon`): say so, and
/// with `[archive] backfill_new_rules` apply them to the archive, in the background on a
/// connection of its own. The worker whose registration recorded the new rule version is the
/// one that backfills it (once for the cluster).
fn rules_changed(settings: &Settings, unapplied: Vec<crate::store::archive::UnappliedRule>) {
    let on = settings.archive.backfill_new_rules;
    crate::service::daemon::announce_unapplied(&unapplied, on);
    if !on || unapplied.is_empty() {
        return;
    }
    let rules: Vec<(String, crate::pipeline::matcher::Query)> = settings
        .rules
        .iter()
        .filter(|r| unapplied.iter().any(|u| u.rule == r.name))
        .map(|r| (r.name.clone(), r.query.clone()))
        .collect();
    let Database::Postgres { url, password } = &settings.backend else {
        return;
    };
    let (url, password) = (
        url.expose().to_string(),
        password.as_ref().map(|p| p.expose().to_string()),
    );
    let (archive, stories) = (settings.archive.keep.is_some(), settings.stories.clone());
    let alert_plan = crate::outputs::alerts::plan(&settings.alerts);
    let worker = settings.cluster.worker_id();
    tokio::spawn(async move {
        let done = tokio::task::spawn_blocking(move || {
            let mut s = PgStore::open(&url, password.as_deref(), worker, false)?;
            s.set_archive(archive);
            s.set_story_settings(stories);
            s.set_alerts(alert_plan);
            // New rules' old matches never alert (as on SQLite).
            let report = s.backfill(&rules, None, false, false, Utc::now());
            drop(s);
            report
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

/// Run a store call on a blocking thread.
async fn blocking<T: Send + 'static>(
    store: &Shared<PgStore>,
    f: impl FnOnce(&mut PgStore) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let store = store.clone();
    match tokio::task::spawn_blocking(move || {
        f(&mut store.lock().unwrap_or_else(|p| p.into_inner()))
    })
    .await
    {
        Ok(r) => r,
        Err(e) => Err(StoreError::Corrupt(format!("internal error: {e}"))),
    }
}

/// How often a worker asks whether the cluster's daily prune is due.
const PRUNE_CHECK: Duration = Duration::from_secs(3600);

/// How old the last prune (by any worker) must be before the next.
const PRUNE_EVERY: chrono::Duration = chrono::Duration::hours(24);

/// The cluster's daily prune, if it is this worker's turn
/// ([`crate::store::archive::prune_once_for_cluster`]), on a connection of its own so that
/// the worker's writes do not wait for it.
async fn prune_if_due(settings: &Settings) {
    let Database::Postgres { url, password } = &settings.backend else {
        return;
    };
    let (url, password) = (
        url.expose().to_string(),
        password.as_ref().map(|p| p.expose().to_string()),
    );
    let (archive_before, matches_before) = settings.retention(Utc::now());
    let done = tokio::task::spawn_blocking(move || {
        let mut db = crate::store::postgres::PgDb::connect(&url, password.as_deref())?;
        let out = crate::store::archive::prune_once_for_cluster(
            &mut db,
            archive_before,
            matches_before,
            PRUNE_EVERY,
            Utc::now(),
        );
        drop(db);
        out
    })
    .await;
    match done {
        Ok(Ok(Some(c))) => tracing::info!(
            archived = c.archived,
            matches = c.matches,
            longest_batch_ms = c.longest_batch.as_millis() as u64,
            "pruned (for the cluster)"
        ),
        Ok(Ok(None)) => tracing::debug!("prune: not due, or another worker is pruning"),
        Ok(Err(e)) => tracing::error!(error = %e, "cannot prune"),
        Err(e) => tracing::error!(error = %e, "prune task failed"),
    }
}

/// Archive rows indexed per blocking step of [`index_archive`] (a few transactions; shutdown
/// is looked at between steps).
const INDEX_STEP: u64 = 2_000;

/// After a wave: build the archive documents it queued (and any another worker left), in the
/// background on a connection of its own, so that fetching goes on meanwhile; workers skip
/// each other's rows (`index::index_pending`). One run per worker at a time.
fn index_archive(settings: &Settings, running: &Arc<AtomicBool>, shutdown: &CancellationToken) {
    if running.swap(true, Ordering::AcqRel) {
        return;
    }
    let (settings, running, shutdown) = (settings.clone(), running.clone(), shutdown.clone());
    tokio::spawn(async move {
        // All on one blocking thread, the connection dropped there too (a sync client
        // dropped on an async thread would block it).
        let done = tokio::task::spawn_blocking(move || {
            let mut db = connect(&settings)?;
            let mut total = 0u64;
            while !shutdown.is_cancelled() {
                let n = crate::store::postgres::index::index_pending(&mut db, INDEX_STEP)?;
                total += n;
                if n < INDEX_STEP {
                    break;
                }
            }
            Ok::<_, StoreError>(total)
        })
        .await;
        running.store(false, Ordering::Release);
        match done {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::debug!(indexed = n, "archive documents built"),
            Ok(Err(e)) => tracing::error!(error = %e, "cannot index the archive"),
            Err(e) => tracing::error!(error = %e, "index task failed"),
        }
    });
}

/// The PostgreSQL connection settings name, on a blocking thread's own connection.
fn connect(settings: &Settings) -> Result<crate::store::postgres::PgDb, StoreError> {
    match &settings.backend {
        Database::Postgres { url, password } => crate::store::postgres::PgDb::connect(
            url.expose(),
            password.as_ref().map(|p| p.expose()),
        ),
        Database::Sqlite(_) => Err(StoreError::Corrupt("not a PostgreSQL database".into())),
    }
}

/// When this worker should next see whether the cluster's scheduled digest is due, and the
/// scheduled time that digest stands for. At start (`catch_up`): now, for the scheduled time
/// that passed last, when no worker wrote a digest since (the cluster was down); otherwise the
/// next scheduled time. `None`: no `[digest]`.
async fn digest_due(
    settings: &Settings,
    now: chrono::DateTime<Utc>,
    catch_up: bool,
) -> Option<(chrono::DateTime<Utc>, chrono::DateTime<Utc>)> {
    let digest = settings.digest.as_ref()?;
    let schedule = crate::schedule::Schedule::parse(&digest.schedule).ok()?;
    let tz = settings.schedule.timezone;
    if catch_up {
        let settings2 = settings.clone();
        let last = tokio::task::spawn_blocking(move || {
            let mut db = connect(&settings2)?;
            let runs = crate::outputs::digest::scheduled_runs(&mut db);
            drop(db);
            Ok::<_, StoreError>(runs.ok().and_then(|r| r.last().map(|r| r.period_end)))
        })
        .await
        .ok()
        .and_then(Result::ok)
        .flatten();
        if let (Some(last), Some(prev)) = (last, schedule.prev_at_or_before(now, tz))
            && last < prev
        {
            tracing::info!(last_digest = %last, missed = %prev, "digest missed while the cluster was down: catching up");
            return Some((now, prev));
        }
    }
    schedule.next_after(now, tz).map(|t| (t, t))
}

/// The cluster's scheduled digest for scheduled time `tick`, written by this worker unless
/// another one already wrote it (a digest recorded as ending at or after `tick`)
/// ([`crate::outputs::digest::write_scheduled_in`] under the digest lock); then delivered.
async fn write_digest(settings: &Settings, tick: chrono::DateTime<Utc>) {
    let Some(digest) = settings.digest.clone() else {
        return;
    };
    let tz = settings.schedule.timezone;
    let (settings2, opts) = (settings.clone(), settings.digest_options());
    let (dir, formats) = (digest.dir.clone(), digest.formats.clone());
    let written = tokio::task::spawn_blocking(move || {
        let mut db = connect(&settings2)?;
        let out = crate::outputs::digest::write_scheduled_in(
            &mut db,
            &dir,
            &formats,
            &opts,
            tz,
            Utc::now(),
            Some(tick),
        );
        drop(db);
        out.map_err(|e| StoreError::Corrupt(e.to_string()))
    })
    .await;
    match written {
        Ok(Ok(Some(run))) => {
            let files: Vec<String> = run.files.iter().map(|f| f.display().to_string()).collect();
            tracing::info!(files = %files.join(", "), "digest written (for the cluster)");
            crate::service::daemon::deliver_digest(run, digest);
        }
        Ok(Ok(None)) => tracing::info!("digest: another worker wrote it"),
        Ok(Err(e)) => tracing::error!(error = %e, "cannot write digest"),
        Err(e) => tracing::error!(error = %e, "digest task failed"),
    }
}

/// Rewrite this worker's `[output]` Atom / JSON Feed files (files of its own host) from the
/// cluster's matches, on a connection of its own.
async fn update_outputs(settings: &Settings) {
    if settings.output.atom.is_none() && settings.output.json_feed.is_none() {
        return;
    }
    let settings = settings.clone();
    let result = tokio::task::spawn_blocking(move || {
        let mut db = connect(&settings).map_err(|e| e.to_string())?;
        let meta = crate::outputs::export::FeedMeta::for_name(db.target(), "newswatch matches");
        let out = crate::outputs::export::update_outputs_in(&settings.output, meta, &mut db);
        drop(db);
        out.map_err(|e| e.to_string())
    })
    .await;
    match result {
        Ok(Ok(())) => tracing::debug!("outputs updated"),
        Ok(Err(e)) => tracing::error!(error = %e, "cannot update [output] files"),
        Err(e) => tracing::error!(error = %e, "output task failed"),
    }
}

/// Run a worker until `shutdown` is cancelled; `control` carries reload requests.
pub async fn run(
    source: ConfigSource,
    settings: Settings,
    shutdown: CancellationToken,
    mut control: mpsc::Receiver<Control>,
) -> Result<(), DaemonError> {
    let worker = settings.cluster.worker_id();
    let opened = {
        let (settings, worker) = (settings.clone(), worker.clone());
        tokio::task::spawn_blocking(move || open_registering(&settings, worker, true))
            .await
            .map_err(|e| StoreError::Corrupt(format!("internal error: {e}")))??
    };
    let (opened, unapplied) = opened;
    let target = opened.target().to_string();
    let store: Shared<PgStore> = Arc::new(Mutex::new(opened));
    rules_changed(&settings, unapplied);
    let metrics = Arc::new(crate::service::metrics::Metrics::new());
    let liveness = Arc::new(crate::service::metrics::Liveness::default());
    liveness.beat(Utc::now());
    // The web server, as under the SQLite daemon (its own PostgreSQL connections; stopped
    // with the worker); its /healthz reports this worker's loop.
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
    let mut by_name = index(&runtime);
    tracing::info!(
        feeds = runtime.settings.feeds.len(),
        rules = runtime.settings.rules.len(),
        database = %target,
        worker = %worker,
        lease_s = runtime.settings.cluster.lease.as_secs_f64(),
        "worker started"
    );
    let lease = runtime.settings.cluster.lease;
    if let Some(f) = runtime
        .settings
        .feeds
        .iter()
        .find(|f| f.fetch.connect_timeout + f.fetch.timeout >= lease)
    {
        tracing::warn!(
            feed = %f.name,
            "cluster.lease is not longer than this feed's connect + fetch timeout: a fetch that slow outlives its lease, is not stored, and another worker polls the feed again"
        );
    }
    let tracker = TaskTracker::new();
    let tasks_stop = CancellationToken::new();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<i64>();
    let mut in_flight: HashSet<i64> = HashSet::new();
    let mut wave_done = false;
    let mut last_placed = std::time::Instant::now();
    // The first look at the cluster's prune comes after this worker's first wave.
    let mut last_prune_check: Option<std::time::Instant> = None;
    let mut next_digest = digest_due(&runtime.settings, Utc::now(), true).await;
    // Alerts: a sender of this worker's own, delivering while it leads the cluster's alerts.
    let sender = crate::service::alerts::Sender::start(&runtime.settings, shutdown.clone());
    // Whether this worker is building archive documents (one run at a time).
    let indexing = Arc::new(AtomicBool::new(false));

    loop {
        let free = runtime.settings.concurrency.saturating_sub(in_flight.len());
        let mut sleep = MAX_IDLE;
        // A claim is a transaction under the cluster's claim lock: claim for a quarter of
        // `concurrency` at a time (at most CLAIM_BATCH) as fetches finish, not for each
        // finished fetch alone (which made the claims the cluster's limit: BENCHMARKS.md);
        // with nothing in flight, for whatever is free.
        let min_claim = (runtime.settings.concurrency / 4).clamp(1, CLAIM_BATCH);
        if free > 0 && (free >= min_claim || in_flight.is_empty()) {
            let want = free.min(CLAIM_BATCH);
            let (lease, per_host) = (runtime.settings.cluster.lease, runtime.settings.per_host);
            match blocking(&store, move |s| {
                s.claim_due(want, per_host, lease, Utc::now())
            })
            .await
            {
                Ok(claims) => {
                    let full = claims.len() == want;
                    for claim in claims {
                        let Some(feed) = by_name
                            .get(&claim.state.name)
                            .and_then(|&i| runtime.settings.feeds.get(i))
                            .cloned()
                        else {
                            // Another worker's config has it, this one's not: its lease runs out.
                            tracing::warn!(feed = %claim.state.name, "claimed a feed this worker's config does not have");
                            continue;
                        };
                        let id = claim.state.id;
                        in_flight.insert(id);
                        let (runtime, store, done, stop) = (
                            runtime.clone(),
                            store.clone(),
                            done_tx.clone(),
                            tasks_stop.clone(),
                        );
                        tracker.spawn(async move {
                            let rt = runtime.clone();
                            let policy = move |f: &FeedSettings, r: &FeedReport, failures: u32| {
                                Some(next_due(&rt.settings, f, r, failures, Utc::now()))
                            };
                            tokio::select! {
                                _ = poll::poll_feed(&runtime, &store, &feed, Some(claim.state), Some(&policy)) => {}
                                _ = stop.cancelled() => {
                                    tracing::info!(feed = %feed.name, "fetch abandoned at shutdown");
                                }
                            }
                            let _ = done.send(id);
                        });
                    }
                    if full && free > want {
                        sleep = Duration::ZERO; // more may be due: claim again at once
                    } else {
                        sleep = match blocking(&store, |s| s.next_wake(Utc::now())).await {
                            Ok(Some(at)) => (at - Utc::now()).to_std().unwrap_or(Duration::ZERO),
                            Ok(None) => MAX_IDLE,
                            Err(e) => {
                                tracing::error!(error = %e, "cannot read due times");
                                Duration::from_secs(1)
                            }
                        }
                        .clamp(MIN_SLEEP, MAX_IDLE);
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot claim due feeds");
                    sleep = Duration::from_secs(1);
                }
            }
        }
        // Stories are placed when this worker's fetches are done, or every PLACE_EVERY when it
        // never runs dry (a busy worker among many feeds): placing also saves the document
        // frequencies it counted, which a kill -9 would otherwise lose.
        if wave_done && (in_flight.is_empty() || last_placed.elapsed() >= PLACE_EVERY) {
            wave_done = false;
            last_placed = std::time::Instant::now();
            poll::place_stories(&store).await;
            sender.wake();
            update_outputs(&runtime.settings).await;
            index_archive(&runtime.settings, &indexing, &shutdown);
            if last_prune_check.is_none_or(|t| t.elapsed() >= PRUNE_CHECK) {
                last_prune_check = Some(std::time::Instant::now());
                prune_if_due(&runtime.settings).await;
            }
        }

        if let Some((at, tick)) = next_digest
            && at <= Utc::now()
        {
            write_digest(&runtime.settings, tick).await;
            next_digest = digest_due(&runtime.settings, Utc::now(), false).await;
        }
        if let Some((at, _)) = next_digest {
            sleep = sleep.min((at - Utc::now()).to_std().unwrap_or(Duration::ZERO));
        }
        liveness.beat(
            Utc::now() + chrono::Duration::from_std(sleep).unwrap_or(chrono::Duration::zero()),
        );
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(id) = done_rx.recv() => {
                in_flight.remove(&id);
                wave_done = true;
            }
            Some(Control::Reload) = control.recv() => {
                match reload(&source, &runtime, &store).await {
                    Ok(new) => {
                        runtime = new;
                        sender.reload(&runtime.settings);
                        next_digest = digest_due(&runtime.settings, Utc::now(), false).await;
                        by_name = index(&runtime);
                        tracing::info!(feeds = runtime.settings.feeds.len(), rules = runtime.settings.rules.len(), "config reloaded");
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
    match blocking(&store, |s| s.release_leases()).await {
        Ok(n) if n > 0 => tracing::info!(released = n, "leases released"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot release leases (they run out by themselves)"),
    }
    if let Some(web) = web {
        let _ = web.await;
    }
    sender.stopped().await;
    tracing::info!("stopped");
    Ok(())
}

/// Configured feed name → its index in the settings.
fn index(runtime: &Runtime) -> HashMap<String, usize> {
    runtime
        .settings
        .feeds
        .iter()
        .enumerate()
        .map(|(i, f)| (f.name.clone(), i))
        .collect()
}

/// Load the config again; on success record its feeds and rules and build its runtime.
async fn reload(
    source: &ConfigSource,
    current: &Runtime,
    store: &Shared<PgStore>,
) -> Result<Arc<Runtime>, String> {
    let settings = config::load(source).map_err(|e| e.to_string())?;
    if settings.backend != current.settings.backend {
        return Err("storage changed (restart the worker to switch databases)".into());
    }
    let runtime = Runtime::new(settings)
        .map_err(|e| e.to_string())?
        .with_metrics(current.metrics.clone());
    let feeds: Vec<(String, String)> = runtime
        .settings
        .feeds
        .iter()
        .map(|f| (f.name.clone(), f.url.to_string()))
        .collect();
    let versions: Vec<(String, String)> = runtime
        .settings
        .rules
        .iter()
        .map(|r| (r.name.clone(), r.query.to_string()))
        .collect();
    let (archive, stories) = (
        runtime.settings.archive.keep.is_some(),
        runtime.settings.stories.clone(),
    );
    let alert_plan = crate::outputs::alerts::plan(&runtime.settings.alerts);
    let unapplied = blocking(store, move |s| {
        s.set_archive(archive);
        s.set_alerts(alert_plan);
        s.set_story_settings(stories);
        s.sync_feeds(feeds.iter().map(|(n, u)| (n.as_str(), u.as_str())))?;
        s.register_rules(&versions, Utc::now())
    })
    .await
    .map_err(|e| e.to_string())?;
    rules_changed(&runtime.settings, unapplied);
    Ok(Arc::new(runtime))
}
