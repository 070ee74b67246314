//! Service telemetry: the Prometheus metrics the poller records, and the scheduler's liveness
//! that `/healthz` reads.
//!
//! Why this shape: polling must stay cheap, so everything the poller records is a handful of
//! atomic increments per feed poll on counters created once (no label lookups, nothing per
//! entry). Whatever the database already knows (per-feed last success and failures, matches
//! per rule, stories, archive size) is read when `/metrics` is scraped instead of being
//! mirrored, so `newswatch serve` (no poller) reports it too. Names follow Prometheus
//! conventions: `newswatch_` prefix, `_total` counters (prometheus-client appends the suffix),
//! base units (`_seconds`, `_bytes`), label values from small fixed sets or the configured
//! feed and rule names.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::service::poll::{FeedReport, Outcome};

/// Label set of one value, e.g. `[("outcome", "ok")]`.
type Labels = Vec<(String, String)>;

/// The process's metrics; one per process, shared by `Arc` (the poller's [`crate::service::poll::Runtime`]
/// and the web server).
pub struct Metrics {
    registry: Registry,
    polls: [Counter; 3],
    fetches: [Counter; 5],
    fetch_duration: Histogram,
    bytes: Counter,
    new_entries: Counter,
    new_matches: Counter,
    http_requests: Family<Labels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// Poll outcomes, as the `outcome` label says them (index into `Metrics::polls`).
const POLL_OUTCOMES: [&str; 3] = ["ok", "unchanged", "failed"];
/// HTTP results of fetches, as the `result` label says them (index into `Metrics::fetches`).
const FETCH_RESULTS: [&str; 5] = [
    "success",
    "not_modified",
    "client_error",
    "server_error",
    "error",
];

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("newswatch");
        let polls_family = Family::<Labels, Counter>::default();
        registry.register(
            "polls",
            "Feed polls by outcome (ok: stored; unchanged: 304; failed: fetch, parse or store failed)",
            polls_family.clone(),
        );
        let polls = POLL_OUTCOMES.map(|o| {
            polls_family
                .get_or_create(&vec![("outcome".to_string(), o.to_string())])
                .clone()
        });
        let fetch_family = Family::<Labels, Counter>::default();
        registry.register(
            "fetches",
            "HTTP fetches by result (success: 2xx; not_modified: 304; client_error: 4xx; server_error: 5xx; error: no response or another status)",
            fetch_family.clone(),
        );
        let fetches = FETCH_RESULTS.map(|o| {
            fetch_family
                .get_or_create(&vec![("result".to_string(), o.to_string())])
                .clone()
        });
        // 10 ms .. ~82 s.
        let fetch_duration = Histogram::new(exponential_buckets(0.01, 2.0, 14));
        registry.register_with_unit(
            "fetch_duration",
            "Time from the start of a feed's poll to its outcome",
            Unit::Seconds,
            fetch_duration.clone(),
        );
        let bytes = Counter::default();
        registry.register_with_unit(
            "fetched",
            "Feed document bytes received (after content decoding)",
            Unit::Bytes,
            bytes.clone(),
        );
        let new_entries = Counter::default();
        registry.register(
            "new_entries",
            "Entries seen for the first time",
            new_entries.clone(),
        );
        let new_matches = Counter::default();
        registry.register(
            "new_matches",
            "Matches stored for the first time by polls",
            new_matches.clone(),
        );
        let http_requests = Family::<Labels, Counter>::default();
        registry.register(
            "http_requests",
            "Web requests by route (the route pattern, or \"unmatched\") and status class",
            http_requests.clone(),
        );
        Metrics {
            registry,
            polls,
            fetches,
            fetch_duration,
            bytes,
            new_entries,
            new_matches,
            http_requests,
        }
    }

    /// Record one feed's poll: a few atomic increments and one histogram observation.
    pub fn record_poll(&self, report: &FeedReport) {
        let (poll, fetch) = match &report.outcome {
            Outcome::Ok(c) => {
                self.new_entries.inc_by(c.new_entries as u64);
                self.new_matches.inc_by(c.new_matches as u64);
                (0, 0)
            }
            Outcome::Unchanged => (1, 1),
            Outcome::Failed { http_status, .. } => {
                let fetch = match http_status {
                    Some(304) => 1,
                    Some(400..=499) => 2,
                    Some(500..=599) => 3,
                    // A document arrived but parsing or storing it failed.
                    Some(200..=299) => 0,
                    None if report.bytes > 0 => 0,
                    _ => 4,
                };
                (2, fetch)
            }
        };
        self.polls[poll].inc();
        self.fetches[fetch].inc();
        self.bytes.inc_by(report.bytes as u64);
        self.fetch_duration.observe(report.duration.as_secs_f64());
    }

    /// Count one web request (`route` is the matched route pattern or "unmatched").
    pub fn record_request(&self, route: &str, status: u16) {
        let class = match status {
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        self.http_requests
            .get_or_create(&vec![
                ("route".to_string(), route.to_string()),
                ("status".to_string(), class.to_string()),
            ])
            .inc();
    }

    /// The OpenMetrics text of the recorded metrics plus `db`'s.
    pub fn encode(&self, db: &DbMetrics) -> String {
        let mut out = String::new();
        let mut scrape = Registry::with_prefix("newswatch");
        db.register(&mut scrape);
        // Writing to a String cannot fail.
        let _ = encode_registry(&mut out, &self.registry);
        let _ = encode_registry(&mut out, &scrape);
        let _ = encode_eof(&mut out);
        out
    }
}

/// What the database says at scrape time.
#[derive(Debug, Clone, Default)]
pub struct DbMetrics {
    /// (feed, last success as Unix seconds if any, consecutive failures), configured feeds.
    pub feeds: Vec<(String, Option<i64>, i64)>,
    /// (rule, stored matches).
    pub per_rule: Vec<(String, u64)>,
    /// Stored stories (each one event's reports from many outlets).
    pub stories: u64,
    pub archive_entries: u64,
    pub archive_bytes: u64,
    /// (alert, failing since as Unix seconds): alert destinations failing now.
    pub alerts_failing: Vec<(String, i64)>,
    /// (feed, worker): which PostgreSQL worker last polled each configured feed (none on
    /// SQLite, which has one poller).
    pub last_worker: Vec<(String, String)>,
}

impl DbMetrics {
    fn register(&self, r: &mut Registry) {
        let success = Family::<Labels, Gauge>::default();
        let failures = Family::<Labels, Gauge>::default();
        for (feed, last, fails) in &self.feeds {
            let labels = vec![("feed".to_string(), feed.clone())];
            if let Some(t) = last {
                success.get_or_create(&labels).set(*t);
            }
            failures.get_or_create(&labels).set(*fails);
        }
        r.register_with_unit(
            "feed_last_success_timestamp",
            "When each feed last fetched successfully (2xx or 304), Unix time",
            Unit::Seconds,
            success,
        );
        r.register(
            "feed_consecutive_failures",
            "Failed polls of each feed since its last success",
            failures,
        );
        if !self.last_worker.is_empty() {
            let by = Family::<Labels, Gauge>::default();
            for (feed, worker) in &self.last_worker {
                by.get_or_create(&vec![
                    ("feed".to_string(), feed.clone()),
                    ("worker".to_string(), worker.clone()),
                ])
                .set(1);
            }
            r.register(
                "feed_last_worker",
                "The worker that last polled each feed (PostgreSQL workers; always 1)",
                by,
            );
        }
        let rules = Family::<Labels, Gauge>::default();
        for (rule, n) in &self.per_rule {
            rules
                .get_or_create(&vec![("rule".to_string(), rule.clone())])
                .set(i64::try_from(*n).unwrap_or(i64::MAX));
        }
        r.register("matches", "Stored matches per rule", rules);
        let gauge = |v: u64| {
            let g = Gauge::<i64>::default();
            g.set(i64::try_from(v).unwrap_or(i64::MAX));
            g
        };
        r.register(
            "stories",
            "Stored stories (one event's reports from many outlets)",
            gauge(self.stories),
        );
        r.register(
            "archive_entries",
            "Polled entries kept in the archive",
            gauge(self.archive_entries),
        );
        let failing = Family::<Labels, Gauge>::default();
        for (alert, since) in &self.alerts_failing {
            failing
                .get_or_create(&vec![("alert".to_string(), alert.clone())])
                .set(*since);
        }
        r.register_with_unit(
            "alert_destination_failing_since_timestamp",
            "Alert destinations failing now ([[alerts]] name), since when, Unix time",
            Unit::Seconds,
            failing,
        );
        r.register_with_unit(
            "archive_size",
            "Bytes the archive and its full-text index take in the database",
            Unit::Bytes,
            gauge(self.archive_bytes),
        );
    }
}

/// The scheduler's liveness, for `/healthz`. The daemon's loop says when it will next wake;
/// a loop that has not come round well after that is stuck. Costs no wake-ups of its own.
#[derive(Debug, Default)]
pub struct Liveness {
    running: AtomicBool,
    /// Unix milliseconds by which the loop promised to wake again.
    wake_by_ms: AtomicI64,
}

/// How late the scheduler's loop may be before `/healthz` calls it stuck.
pub const SCHEDULER_SLACK: chrono::Duration = chrono::Duration::seconds(60);

impl Liveness {
    /// The loop is about to sleep until at most `wake_by`.
    pub fn beat(&self, wake_by: chrono::DateTime<chrono::Utc>) {
        self.running.store(true, Ordering::Relaxed);
        self.wake_by_ms
            .store(wake_by.timestamp_millis(), Ordering::Relaxed);
    }

    /// The loop has ended.
    pub fn stopped(&self) {
        self.running.store(false, Ordering::Relaxed);
    }

    /// `Err(reason)` unless the loop is running and not overdue at `now`.
    pub fn check(&self, now: chrono::DateTime<chrono::Utc>) -> Result<(), String> {
        if !self.running.load(Ordering::Relaxed) {
            return Err("the scheduler is not running".into());
        }
        let due = self.wake_by_ms.load(Ordering::Relaxed);
        let late = now.timestamp_millis() - due;
        if late > SCHEDULER_SLACK.num_milliseconds() {
            return Err(format!(
                "the scheduler is stuck: it should have woken {}s ago",
                late / 1000
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn liveness_reports_stopped_and_overdue_scheduler() {
        let l = Liveness::default();
        let t = chrono::Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        assert!(l.check(t).is_err());
        l.beat(t);
        assert_eq!(l.check(t + chrono::Duration::seconds(30)), Ok(()));
        let late = l.check(t + chrono::Duration::seconds(120)).unwrap_err();
        assert!(late.contains("stuck"), "{late}");
        l.stopped();
        assert!(l.check(t).unwrap_err().contains("not running"));
    }

    #[test]
    fn metrics_encode_with_prefix_units_and_eof() {
        let m = Metrics::new();
        m.record_poll(&FeedReport {
            feed: "f".into(),
            outcome: Outcome::Unchanged,
            duration: std::time::Duration::from_millis(20),
            bytes: 0,
            entries: 0,
            fresh_until: None,
        });
        let text = m.encode(&DbMetrics {
            stories: 3,
            ..DbMetrics::default()
        });
        assert!(
            text.contains("newswatch_polls_total{outcome=\"unchanged\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("newswatch_fetch_duration_seconds_count 1"),
            "{text}"
        );
        assert!(text.contains("newswatch_stories 3"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert_eq!(text.matches("# EOF").count(), 1);
    }
}
