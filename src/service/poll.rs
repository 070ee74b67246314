//! Poll: one pass of the pipeline over feeds — fetch → parse → normalise → match → dedup →
//! store — with bounded concurrency (global and per host).
//!
//! A feed's failure is a message, not an abort: it is recorded on that feed, logged with the
//! feed's name, and the cycle goes on. Each feed's results are written atomically, in the
//! transaction that writes whatever other feeds finished meanwhile ([`Store::write_feeds`]);
//! a feed whose write fails is rolled back alone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::config::{FeedSettings, Settings};
use crate::pipeline::dedup;
use crate::pipeline::fetch::{FetchError, FetchOptions, Fetcher};
use crate::pipeline::matcher::{Field, Matcher, item_body};
use crate::pipeline::normalise::to_plain_text;
use crate::pipeline::parse;
use crate::pipeline::stories::{DocFreq, DocTerms};
use crate::store::{
    CommitCounts, EntryReader, EntryRecord, EntryText, FeedState, FeedWrite, FetchFacts,
    KnownEntries, MatchedEntry, PollStore, Store, StoreError,
};

/// Longest summary or content kept in the database per entry (characters beyond are cut).
pub const MAX_STORED_TEXT: usize = 64 * 1024;
/// Longest stored title, in characters (then "…"). Titles are one line in every table,
/// digest and export; the longest of the corpus's 3,767 real entry titles has 282.
pub const MAX_STORED_TITLE: usize = 1024;

/// Most threads for blocking work (parsing + matching, store calls) beside the async thread.
/// Tokio's default (512) lets store calls queued on the writer lock pile up threads, and every
/// thread that allocates gets its own malloc arena: a cold poll of 1,000 feeds peaked at
/// ~150 MB RSS with the default and ~75 MB with two arenas. CPU work cannot use more threads
/// than cores, so a few more than the cores keeps parsing parallel and memory flat.
pub fn max_blocking_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    (cores + 2).max(4)
}

/// The async runtime `poll` and `run` use: one async thread for all network I/O and timers,
/// and the blocking pool (capped by [`max_blocking_threads`]) for the CPU work and the store.
///
/// The CPU work of a poll (parsing, matching, SQLite) already runs on the blocking pool, so
/// async worker threads only added hand-offs: each finished parse or commit woke a parked
/// worker, and feeds' futures moved between threads. A cold poll of 1,000 loopback feeds used
/// ~6.5% less CPU time (and wall time) with one async thread than with a worker per core.
pub fn build_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(max_blocking_threads())
        .build()
}

/// A validated config turned into working parts: compiled matcher, one HTTP client per
/// distinct set of fetch options, per-host limits. Built once per (re)load.
pub struct Runtime {
    pub settings: Settings,
    pub matcher: Matcher,
    fetchers: HashMap<FetchOptions, Fetcher>,
    hosts: Mutex<HashMap<String, Arc<Semaphore>>>,
    /// Documents parsed and matched at once: one per core. More cannot go faster, and each
    /// document in flight holds ~15x its size in memory (a 2.7 MB feed peaks at ~40 MB).
    cpu: Arc<Semaphore>,
    /// Where each feed's poll is counted; shared across reloads (see [`Runtime::with_metrics`]).
    pub metrics: Arc<crate::service::metrics::Metrics>,
    /// Feeds' writes waiting for the writer ([`write_grouped`]).
    writes: Mutex<WriteQueue>,
    /// Read connections for the parsing threads ([`ReadPool`]).
    reads: ReadPool,
}

/// What the parsing threads read from the store, without waiting for the writer: each feed's
/// known entries through the store's reader connections ([`PollStore::reader`]; SQLite's WAL
/// shows them the last committed state, and a feed is polled once at a time, so its own
/// sightings are always committed), and the store's document frequencies, taken once. Before
/// this, a parsing thread took the store's lock for its lookup and, holding a CPU permit,
/// waited while the writer wrote other feeds' groups. A backend without readers (PostgreSQL)
/// is looked up under the lock, as before.
#[derive(Default)]
struct ReadPool {
    idle: Mutex<Vec<Box<dyn EntryReader>>>,
    /// The backend has no second connection for reads ([`PollStore::reader`] gave none):
    /// lookups go through the store's own, under its lock.
    shared: std::sync::atomic::AtomicBool,
    doc_freq: std::sync::OnceLock<Arc<Mutex<DocFreq>>>,
}

impl ReadPool {
    fn known<S: PollStore>(
        &self,
        store: &Shared<S>,
        feed_id: i64,
    ) -> Result<(KnownEntries, Arc<Mutex<DocFreq>>), StoreError> {
        use std::sync::atomic::Ordering;
        let shared = self.shared.load(Ordering::Relaxed);
        let idle = if shared {
            None
        } else {
            self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop()
        };
        let (reader, df) = match (idle, self.doc_freq.get()) {
            (Some(r), Some(df)) => (r, df.clone()),
            (idle, _) => {
                // A thread's first lookup (or every lookup where the backend has no reader):
                // the only time the store's lock is taken here.
                let mut s = lock(store);
                let df = match self.doc_freq.get() {
                    Some(df) => df.clone(),
                    None => {
                        let df = s.doc_freq()?;
                        self.doc_freq.get_or_init(|| df).clone()
                    }
                };
                let reader = match idle {
                    Some(r) => Some(r),
                    None if shared => None,
                    None => s.reader()?,
                };
                let Some(reader) = reader else {
                    self.shared.store(true, Ordering::Relaxed);
                    return Ok((s.known_entries(feed_id)?, df));
                };
                (reader, df)
            }
        };
        let known = reader.known_entries(feed_id);
        self.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(reader);
        Ok((known?, df))
    }
}

/// A feed's finished write and where its result goes.
type QueuedWrite = (
    FeedWrite,
    tokio::sync::oneshot::Sender<Result<CommitCounts, StoreError>>,
);

/// Feeds' finished writes waiting for the store, and whether a writer task is on them.
#[derive(Default)]
struct WriteQueue {
    pending: Vec<QueuedWrite>,
    /// A blocking task is writing (or about to write) the pending writes: it takes every
    /// group queued until it finds none.
    writer: bool,
}

/// Why a runtime could not be built.
#[derive(Debug, thiserror::Error)]
#[error("feed {feed:?}: {source}")]
pub struct RuntimeError {
    pub feed: String,
    #[source]
    pub source: FetchError,
}

impl Runtime {
    pub fn new(settings: Settings) -> Result<Runtime, RuntimeError> {
        let matcher = Matcher::new(
            settings
                .rules
                .iter()
                .map(|r| (r.name.clone(), r.query.clone()))
                .collect(),
        );
        let mut fetchers = HashMap::new();
        for f in &settings.feeds {
            if !fetchers.contains_key(&f.fetch) {
                let fetcher = Fetcher::new(f.fetch.clone()).map_err(|source| RuntimeError {
                    feed: f.name.clone(),
                    source,
                })?;
                fetchers.insert(f.fetch.clone(), fetcher);
            }
        }
        Ok(Runtime {
            settings,
            matcher,
            fetchers,
            hosts: Mutex::new(HashMap::new()),
            cpu: Arc::new(Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            )),
            metrics: Arc::default(),
            writes: Mutex::default(),
            reads: ReadPool::default(),
        })
    }

    /// Count polls into `metrics` (the process's, kept across config reloads).
    pub fn with_metrics(mut self, metrics: Arc<crate::service::metrics::Metrics>) -> Runtime {
        self.metrics = metrics;
        self
    }

    fn fetcher(&self, feed: &FeedSettings) -> Option<&Fetcher> {
        self.fetchers.get(&feed.fetch)
    }

    fn host_permit(&self, host: &str) -> Arc<Semaphore> {
        let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        hosts
            .entry(host.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(self.settings.per_host)))
            .clone()
    }
}

/// How one feed's poll ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Fetched and stored.
    Ok(CommitCounts),
    /// 304 Not Modified.
    Unchanged,
    /// Failed; the reason is one line.
    Failed {
        reason: String,
        http_status: Option<u16>,
        retry_after: Option<DateTime<Utc>>,
    },
}

/// What happened to one feed.
#[derive(Debug, Clone)]
pub struct FeedReport {
    pub feed: String,
    pub outcome: Outcome,
    pub duration: Duration,
    pub bytes: usize,
    /// Entries in the fetched document.
    pub entries: usize,
    /// Earliest next poll the server asked for (max-age, Expires, RSS ttl), if any.
    pub fresh_until: Option<DateTime<Utc>>,
}

/// Totals of a cycle.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub ok: usize,
    pub unchanged: usize,
    pub failed: usize,
    pub new_entries: usize,
    pub new_matches: usize,
}

impl Summary {
    pub fn of(reports: &[FeedReport]) -> Summary {
        let mut s = Summary::default();
        for r in reports {
            match &r.outcome {
                Outcome::Ok(c) => {
                    s.ok += 1;
                    s.new_entries += c.new_entries;
                    s.new_matches += c.new_matches;
                }
                Outcome::Unchanged => s.unchanged += 1,
                Outcome::Failed { .. } => s.failed += 1,
            }
        }
        s
    }
}

/// The writer connection, shared by the feeds of a cycle (one writer at a time): any
/// [`PollStore`] (SQLite's [`Store`] or PostgreSQL's `PgStore`).
pub type Shared<S> = Arc<Mutex<S>>;

/// The SQLite writer connection (what the SQLite daemon and the commands share).
pub type SharedStore = Shared<Store>;

/// Decides a feed's next due time once its poll ended (the daemon's scheduler); `poll` alone
/// records none.
pub type DuePolicy = dyn Fn(&FeedSettings, &FeedReport, u32) -> Option<DateTime<Utc>> + Send + Sync;

/// Poll every configured feed once (or only `only`), with bounded concurrency.
pub async fn poll_all<S: PollStore>(
    runtime: &Arc<Runtime>,
    store: &Shared<S>,
    only: Option<&str>,
) -> Vec<FeedReport> {
    // Borrowed from the runtime, not cloned: one copy of each feed's settings (issue 18).
    let feeds = runtime
        .settings
        .feeds
        .iter()
        .filter(|f| only.is_none_or(|n| f.name == n));
    // Every feed's state in one query. Should that fail, each feed loads its own (and reports
    // the failure as its outcome).
    let mut states = with_store(store, |s| s.feed_states())
        .await
        .unwrap_or_default();
    let reports = futures_util::stream::iter(feeds)
        .map(|feed| {
            let runtime = runtime.clone();
            let store = store.clone();
            let state = states.remove(&feed.name);
            async move { poll_feed(&runtime, &store, feed, state, None).await }
        })
        .buffer_unordered(runtime.settings.concurrency)
        .collect::<Vec<_>>()
        .await;
    place_stories(store).await;
    reports
}

/// `NEWSWATCH_BENCH_NO_STORIES=1` turns story work off (no document frequencies, no
/// placement: every match stays a story of its own). For paired benchmarks only
/// (`scripts/paired.py --env-a`), so that what clustering costs can be measured.
fn stories_on() -> bool {
    static ON: std::sync::LazyLock<bool> =
        std::sync::LazyLock::new(|| std::env::var_os("NEWSWATCH_BENCH_NO_STORIES").is_none());
    *ON
}

/// After a cycle: place the matches it stored into stories (see [`Store::place_stories`]).
pub async fn place_stories<S: PollStore>(store: &Shared<S>) {
    if !stories_on() {
        return;
    }
    match with_store(store, |s| s.place_stories(Utc::now())).await {
        Ok(p) if p.items > 0 => {
            tracing::info!(placed = p.items, joined = p.joined, "stories updated")
        }
        Ok(_) => {}
        Err(e) => tracing::error!(error = %e, "cannot place matches into stories"),
    }
}

/// Poll one feed: fetch, process, commit (or record the failure). Never returns an error:
/// every problem becomes the feed's recorded outcome.
///
/// `state` is the feed's stored state when the caller has loaded it already (a full cycle
/// loads every feed's at once); `None` loads it here.
pub async fn poll_feed<S: PollStore>(
    runtime: &Arc<Runtime>,
    store: &Shared<S>,
    feed: &FeedSettings,
    state: Option<FeedState>,
    due: Option<&DuePolicy>,
) -> FeedReport {
    // An ERROR-level span is enabled whenever any event is: at the default filter (warnings
    // only, as `poll` runs) an INFO span would be off and its warnings would lose the name.
    let span = tracing::error_span!("feed", feed = %feed.name);
    async {
        let started = Instant::now();
        let mut report = poll_feed_inner(runtime, store, feed, state, due).await;
        report.duration = started.elapsed();
        runtime.metrics.record_poll(&report);
        match &report.outcome {
            Outcome::Ok(c) => tracing::info!(
                status = "ok",
                duration_ms = report.duration.as_millis() as u64,
                bytes = report.bytes,
                entries = report.entries,
                new_items = c.new_entries,
                changed_items = c.changed_entries,
                new_matches = c.new_matches,
                "fetched"
            ),
            Outcome::Unchanged => tracing::info!(
                status = "unchanged",
                duration_ms = report.duration.as_millis() as u64,
                "not modified"
            ),
            Outcome::Failed { reason, .. } => tracing::warn!(
                status = "failed",
                duration_ms = report.duration.as_millis() as u64,
                reason = %reason,
                "fetch failed"
            ),
        }
        report
    }
    .instrument(span)
    .await
}

async fn poll_feed_inner<S: PollStore>(
    runtime: &Arc<Runtime>,
    store: &Shared<S>,
    feed: &FeedSettings,
    state: Option<FeedState>,
    due: Option<&DuePolicy>,
) -> FeedReport {
    let mut report = FeedReport {
        feed: feed.name.clone(),
        outcome: Outcome::Unchanged,
        duration: Duration::ZERO,
        bytes: 0,
        entries: 0,
        fresh_until: None,
    };
    let loaded = match state {
        Some(state) => Ok(Some(state)),
        None => {
            with_store(store, {
                let name = feed.name.clone();
                move |s| s.feed_state(&name)
            })
            .await
        }
    };
    let state = match loaded {
        Ok(Some(state)) => state,
        Ok(None) => {
            report.outcome = failed(format!(
                "feed {:?} is not in the database (config not synced)",
                feed.name
            ));
            return report;
        }
        Err(e) => {
            report.outcome = failed(e.to_string());
            return report;
        }
    };
    let url = state
        .effective_url
        .as_deref()
        .and_then(|u| url::Url::parse(u).ok())
        .unwrap_or_else(|| feed.url.clone());

    let Some(fetcher) = runtime.fetcher(feed) else {
        report.outcome = failed("no HTTP client for this feed's settings".into());
        return report;
    };
    let host = url.host_str().unwrap_or("").to_string();
    let fetched = {
        let limit = runtime.host_permit(&host);
        let _permit = limit.acquire_owned().await;
        fetcher.fetch(&url, &state.validators).await
    };

    let now = Utc::now();
    let fetched = match fetched {
        Ok(f) => f,
        Err(e) => {
            let (http_status, retry_after) = match &e {
                FetchError::Status {
                    status,
                    retry_after,
                } => (Some(*status), *retry_after),
                _ => (None, None),
            };
            report.outcome = Outcome::Failed {
                reason: e.to_string(),
                http_status,
                retry_after,
            };
            record_failure(store, feed, &state.id, &mut report, due, now).await;
            return report;
        }
    };
    report.fresh_until = fetched.fresh_until;
    let effective_url = fetched.permanent_redirect.as_ref().map(|u| u.to_string());
    let Some(body) = fetched.body else {
        if state.validators.etag.is_none() && state.validators.last_modified.is_none() {
            // We asked unconditionally: "not modified" since when? Nothing was learnt, so
            // this is no success (and must not reset the failure count).
            report.outcome = Outcome::Failed {
                reason: "HTTP 304 without a validator (the request was unconditional)".into(),
                http_status: Some(fetched.status),
                retry_after: None,
            };
            record_failure(store, feed, &state.id, &mut report, due, now).await;
            return report;
        }
        let mut facts = FetchFacts {
            http_status: Some(fetched.status),
            validators: fetched.validators.clone(),
            effective_url,
            title: None,
            next_due_at: None,
        };
        report.outcome = Outcome::Unchanged;
        facts.next_due_at = due.and_then(|d| d(feed, &report, 0));
        let write = FeedWrite::Unchanged {
            feed_id: state.id,
            facts,
            now,
        };
        if let Err(e) = write_grouped(runtime, store, write).await {
            report.outcome = failed(e.to_string());
        }
        return report;
    };
    report.bytes = body.len();

    // Parsing and matching are CPU work: keep them off the async thread.
    let rt = runtime.clone();
    let st = store.clone();
    let feed_id = state.id;
    let content_type = fetched.content_type.clone();
    let base = fetched.final_url.to_string();
    // Never fails: the semaphore is not closed. Without a permit we would only lose the bound.
    let cpu_permit = runtime.cpu.clone().acquire_owned().await.ok();
    // Blocking threads do not inherit the span: carry the feed's name over by hand.
    let span = tracing::Span::current();
    let processed = tokio::task::spawn_blocking(move || {
        let _in_feed = span.enter();
        let _cpu_permit = cpu_permit;
        let parsed = parse::parse_feed(&body, content_type.as_deref(), Some(&base))?;
        drop(body);
        let (known, doc_freq) = rt.reads.known(&st, feed_id).map_err(ProcessError::Store)?;
        // Stories weigh words by how many documents hold them: every new or changed entry
        // counts, matched or not (its terms gathered during the matcher's scan).
        let (records, terms) = process_entries_counting(
            &rt.matcher,
            &parsed.entries,
            &known,
            parsed.site.as_deref(),
            stories_on(),
        );
        if !terms.is_empty() {
            let mut df = doc_freq.lock().unwrap_or_else(|p| p.into_inner());
            for t in &terms {
                df.add(t);
            }
        }
        // The parsed document is freed here, on the blocking thread, rather than held (and
        // later freed on the async thread) while the commit waits for the writer.
        let summary = (parsed.title, parsed.ttl_minutes, parsed.entries.len());
        Ok::<_, ProcessError>((summary, records, parsed.warnings))
    })
    .await;
    let ((title, ttl_minutes, entry_count), records, warnings) = match processed {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            report.outcome = failed(e.to_string());
            record_failure(store, feed, &state.id, &mut report, due, now).await;
            return report;
        }
        Err(join) => {
            report.outcome = failed(format!("internal error while parsing: {join}"));
            record_failure(store, feed, &state.id, &mut report, due, now).await;
            return report;
        }
    };
    report.entries = entry_count;
    // What parse repaired (e.g. an undecodable character in one item), inside the feed's span.
    for warning in &warnings {
        tracing::warn!(feed = %feed.name, "{warning}");
    }
    if let Some(ttl) = ttl_minutes {
        let ttl_until = now + chrono::Duration::minutes(i64::from(ttl.min(24 * 60)));
        report.fresh_until = Some(report.fresh_until.map_or(ttl_until, |f| f.max(ttl_until)));
    }
    report.outcome = Outcome::Ok(CommitCounts::default());
    let facts = FetchFacts {
        http_status: Some(fetched.status),
        validators: fetched.validators,
        effective_url,
        title,
        next_due_at: due.and_then(|d| d(feed, &report, 0)),
    };
    let write = FeedWrite::Fetched {
        feed_id,
        facts,
        entries: records,
        now,
    };
    match write_grouped(runtime, store, write).await {
        Ok(counts) => report.outcome = Outcome::Ok(counts),
        Err(e) => {
            // The transaction rolled back: nothing of this feed was written. Try to note why.
            report.outcome = failed(format!("cannot store results: {e}"));
            record_failure(store, feed, &state.id, &mut report, due, now).await;
        }
    }
    report
}

#[derive(Debug, thiserror::Error)]
enum ProcessError {
    #[error(transparent)]
    Parse(#[from] parse::ParseError),
    #[error(transparent)]
    Store(StoreError),
}

/// Normalise and match the entries that are new or changed since the feed was last seen.
/// `site` is the feed's own site link (for telling an outlet's own links from syndicated ones).
pub fn process_entries(
    matcher: &Matcher,
    entries: &[parse::Entry],
    known: &KnownEntries,
    site: Option<&str>,
) -> Vec<EntryRecord> {
    process_entries_counting(matcher, entries, known, site, false).0
}

/// [`process_entries`], and with `count_terms` each record's document-frequency terms
/// (title and body as [`DocFreq::observe_text`] reads them: the content, else the summary),
/// gathered from the matcher's own pass over the tokens.
pub fn process_entries_counting(
    matcher: &Matcher,
    entries: &[parse::Entry],
    known: &KnownEntries,
    site: Option<&str>,
    count_terms: bool,
) -> (Vec<EntryRecord>, Vec<DocTerms>) {
    let mut out = Vec::new();
    let mut all_terms = Vec::new();
    for (i, mut identity, link) in dedup::identify_deferred(entries) {
        let Some(e) = entries.get(i) else { continue };
        let fingerprint = dedup::fingerprint(e);
        if known.get(&identity.key_hash) == Some(&fingerprint) {
            continue;
        }
        let title = to_plain_text(&e.title);
        let summary = to_plain_text(&e.summary);
        // Feeds often repeat the summary as the content: then there is only the summary.
        let content = if e.content == e.summary {
            String::new()
        } else {
            to_plain_text(&e.content)
        };
        let body = item_body(&summary, &content);
        // The story engine's body is the content, else the summary; in the matcher's body
        // (summary, a space, content, when both are there and differ) the content starts
        // after the summary.
        let body_from = if !summary.is_empty() && !content.is_empty() && content != summary {
            summary.len() + 1
        } else {
            0
        };
        let mut terms = count_terms.then(DocTerms::default);
        let mut field = None;
        let visit = |f: Field, start: usize, text: &str, hash: Option<u64>| {
            let Some(t) = terms.as_mut() else { return };
            if field != Some(f) {
                field = Some(f);
                t.field();
            }
            if f == Field::Title || start >= body_from {
                t.token(text, hash);
            }
        };
        let matched = matcher.match_item_visiting(&title, &body, visit).map(|m| {
            identity.canonical_url = link.and_then(dedup::canonical_url);
            MatchedEntry {
                rules: m.rules,
                snippet: m.snippet,
                link_rank: dedup::link_rank(link, identity.canonical_url.as_deref(), site),
            }
        });
        drop(body);
        let content = if content == summary {
            String::new()
        } else {
            truncate_chars(content, MAX_STORED_TEXT)
        };
        let text = EntryText {
            guid: e.guid.clone(),
            link: e.link.clone(),
            title: truncate_chars(title, MAX_STORED_TITLE),
            summary: truncate_chars(summary, MAX_STORED_TEXT),
            content,
            authors: e.authors.clone(),
            published: e.published,
        };
        out.push(EntryRecord {
            identity,
            fingerprint,
            text,
            matched,
        });
        if let Some(mut t) = terms {
            t.finish();
            all_terms.push(t);
        }
    }
    (out, all_terms)
}

/// `s` cut to at most `max` characters (plus "…" when cut), without copying when it fits.
fn truncate_chars(mut s: String, max: usize) -> String {
    if let Some((i, _)) = s.char_indices().nth(max) {
        s.truncate(i);
        s.push('…');
    }
    s
}

fn failed(reason: String) -> Outcome {
    Outcome::Failed {
        reason,
        http_status: None,
        retry_after: None,
    }
}

async fn record_failure<S: PollStore>(
    store: &Shared<S>,
    feed: &FeedSettings,
    feed_id: &i64,
    report: &mut FeedReport,
    due: Option<&DuePolicy>,
    now: DateTime<Utc>,
) {
    let Outcome::Failed {
        reason,
        http_status,
        ..
    } = &report.outcome
    else {
        return;
    };
    let (reason, http_status, id) = (reason.clone(), *http_status, *feed_id);
    let failures = with_store(store, {
        let reason = reason.clone();
        move |s| s.record_failure(id, &reason, http_status, None, now)
    })
    .await;
    match failures {
        Ok(n) => {
            if let Some(next) = due.and_then(|d| d(feed, report, n)) {
                let _ = with_store(store, move |s| s.set_next_due(id, next)).await;
            }
        }
        Err(e) => tracing::error!(error = %e, "cannot record failure"),
    }
}

fn lock<S>(store: &Shared<S>) -> std::sync::MutexGuard<'_, S> {
    // A panic while holding the lock cannot leave a half-written transaction (rusqlite rolls
    // back on drop), so a poisoned lock is still usable.
    store.lock().unwrap_or_else(|p| p.into_inner())
}

/// Write one feed's results, grouped with whatever other feeds' writes are waiting: the
/// feed's write joins the queue and, unless one is already at work, a blocking writer task
/// starts; it writes every queued write in one transaction ([`Store::write_feeds`]), then the
/// writes queued meanwhile, until the queue is empty. While one group is being written the
/// next one gathers, so groups grow with the load and nothing waits for a timer. Measured
/// (BENCHMARKS.md): 304s group well (a warm poll -8% CPU); a cold poll's groups are small, as
/// the writer keeps up with two parsing threads.
async fn write_grouped<S: PollStore>(
    runtime: &Arc<Runtime>,
    store: &Shared<S>,
    write: FeedWrite,
) -> Result<CommitCounts, StoreError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let start_writer = {
        let mut q = runtime.writes.lock().unwrap_or_else(|p| p.into_inner());
        q.pending.push((write, tx));
        !std::mem::replace(&mut q.writer, true)
    };
    // One writer task at a time: a task per write would each hold a blocking thread while
    // waiting for the store's lock, and leave too few for parsing.
    if start_writer {
        let (rt, store) = (runtime.clone(), store.clone());
        // Never awaited: results arrive through each write's channel.
        drop(tokio::task::spawn_blocking(move || {
            write_queued(&rt, &store)
        }));
    }
    rx.await.unwrap_or_else(|_| {
        Err(StoreError::Write(
            "internal error: the writer stopped".into(),
        ))
    })
}

/// How long the writer task waits for more writes once it has written all that were queued,
/// before it stops ([`write_queued`]).
const WRITER_LINGER: Duration = Duration::from_micros(500);

/// The writer task: write the queued writes, group by group, until none is left.
fn write_queued<S: PollStore>(rt: &Runtime, store: &Shared<S>) {
    // Should a write panic, the next write must find no writer at work (and start one), and
    // the writes queued now must not wait for ever: their channels close ("writer stopped").
    struct Unwinding<'a>(&'a Mutex<WriteQueue>);
    impl Drop for Unwinding<'_> {
        fn drop(&mut self) {
            if std::thread::panicking() {
                let mut q = self.0.lock().unwrap_or_else(|p| p.into_inner());
                q.pending.clear();
                q.writer = false;
            }
        }
    }
    let _guard = Unwinding(&rt.writes);
    let mut lingered = false;
    loop {
        let group = {
            let mut q = rt.writes.lock().unwrap_or_else(|p| p.into_inner());
            if q.pending.is_empty() {
                if lingered {
                    q.writer = false;
                    return;
                }
                None
            } else {
                Some(std::mem::take(&mut q.pending))
            }
        };
        let Some(group) = group else {
            // Nothing queued: look once more after a moment before stopping. Writes that
            // arrive a few at a time (a warm poll's 304s, one every ~0.1 ms) then share a
            // commit and this task, instead of a commit and a blocking-pool hand-off each.
            lingered = true;
            std::thread::sleep(WRITER_LINGER);
            continue;
        };
        lingered = false;
        let (writes, replies): (Vec<_>, Vec<_>) = group.into_iter().unzip();
        let results = lock(store).write_feeds(&writes);
        match results {
            Ok(results) => {
                for (result, reply) in results.into_iter().zip(replies) {
                    let _ = reply.send(result);
                }
            }
            Err(e) => {
                let reason = e.to_string();
                for reply in replies {
                    let _ = reply.send(Err(StoreError::Write(reason.clone())));
                }
            }
        }
    }
}

/// Run a store operation on a blocking thread.
async fn with_store<S: PollStore, T: Send + 'static>(
    store: &Shared<S>,
    f: impl FnOnce(&mut S) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let store = store.clone();
    match tokio::task::spawn_blocking(move || f(&mut lock(&store))).await {
        Ok(r) => r,
        Err(e) => Err(StoreError::Corrupt(format!("internal error: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::matcher::query::Query;

    fn entry(i: usize, title: &str, summary: &str, content: &str) -> parse::Entry {
        parse::Entry {
            guid: Some(format!("g{i}")),
            link: Some(format!("https://example.org/{i}")),
            title: title.into(),
            summary: summary.into(),
            content: content.into(),
            ..Default::default()
        }
    }

    /// The terms gathered during the matcher's scan count exactly what a separate
    /// `observe_text` pass over the stored title and body (content, else summary) counts.
    #[test]
    fn document_terms_from_the_matchers_scan_equal_a_second_pass() {
        let long: String = (0..900).map(|i| format!("word{} ", i % 250)).collect();
        let entries = vec![
            entry(
                0,
                "GCHQ and NCA join forces",
                "Summary only, with Ünïcode café",
                "",
            ),
            entry(
                1,
                "Content only",
                "",
                "<p>The <b>Joint Operations Cell</b> opened</p>",
            ),
            entry(
                2,
                "Both differ",
                "A short summary",
                "The full content differs; naïve",
            ),
            entry(3, "Both equal", "Same text here", "Same text here"),
            entry(4, "", "", ""),
            entry(5, "Long body", &long, &format!("{long} tail")),
            entry(
                6,
                "Ünïcode title ΑΘΗΝΑ",
                "x",
                "ΑΘΗΝΑ 2015 \"quoted words in a run of eight or more\"",
            ),
        ];
        let rules = vec![("r".to_string(), Query::parse("GCHQ OR cell").unwrap())];
        let matcher = Matcher::new(rules);
        let (records, terms) =
            process_entries_counting(&matcher, &entries, &KnownEntries::new(), None, true);
        assert_eq!(records.len(), entries.len());
        assert_eq!(terms.len(), records.len());
        let (mut shared, mut separate) = (DocFreq::new(), DocFreq::new());
        for (r, t) in records.iter().zip(&terms) {
            shared.add(t);
            let body = if r.text.content.is_empty() {
                &r.text.summary
            } else {
                &r.text.content
            };
            separate.observe_text(&r.text.title, body);
        }
        assert_eq!(shared.docs(), 7);
        assert!(shared.to_bytes() == separate.to_bytes());
        // Without counting, no terms are gathered.
        let (_, none) =
            process_entries_counting(&matcher, &entries, &KnownEntries::new(), None, false);
        assert!(none.is_empty());
    }
}
