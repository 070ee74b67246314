//! Schedule: when each feed is due, from crontab lines read in the configured time zone.
//!
//! We use `croner` rather than `cron`: operators write crontab syntax, and croner reads the
//! standard 5-field form with crontab meanings (day-of-week 1 = Monday, `1-5` = Mon–Fri,
//! day-of-month and day-of-week OR-ed when both are restricted), accepts an optional seconds
//! field, and can describe a schedule in words. The `cron` crate rejects 5-field lines and
//! reads `1-5` as Sunday–Thursday.

use chrono::{DateTime, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// Poll schedule used when the config gives none: every 15 minutes.
pub const DEFAULT_POLL: &str = "*/15 * * * *";

/// A parsed cron schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    source: String,
}

/// A cron line that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cron expression {source_text:?}: {reason}")]
pub struct ScheduleError {
    pub source_text: String,
    pub reason: String,
}

impl Schedule {
    /// Parse a crontab line: 5 fields (minute hour day-of-month month day-of-week), or 6 with
    /// a leading seconds field; `@hourly`-style nicknames too.
    pub fn parse(line: &str) -> Result<Schedule, ScheduleError> {
        let fields = line.split_whitespace().count();
        let nickname = line.trim_start().starts_with('@');
        if !nickname && !(5..=6).contains(&fields) {
            return Err(ScheduleError {
                source_text: line.to_string(),
                reason: format!("expected 5 fields (or 6 with seconds), found {fields}"),
            });
        }
        let parser = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build();
        let cron = parser.parse(line).map_err(|e| ScheduleError {
            source_text: line.to_string(),
            reason: e
                .to_string()
                .lines()
                .next()
                .unwrap_or("invalid")
                .to_string(),
        })?;
        Ok(Schedule {
            cron,
            source: line.to_string(),
        })
    }

    /// The line as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The schedule in words.
    pub fn describe(&self) -> String {
        self.cron.describe()
    }

    /// The first run strictly after `after`, with the cron line read in `tz`.
    pub fn next_after(&self, after: DateTime<Utc>, tz: chrono_tz::Tz) -> Option<DateTime<Utc>> {
        // Runs are whole seconds. croner keeps the fraction of `after` (the next run after
        // 57.967 would be 00.967), so two workers asking a few milliseconds apart got
        // different times for one run, and the later one took the other's digest for an
        // earlier run's (both wrote it): the fraction goes first.
        use chrono::Timelike;
        let after = after.with_nanosecond(0).unwrap_or(after);
        let local = after.with_timezone(&tz);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

/// Longest pause after consecutive failures.
pub const MAX_BACKOFF: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
/// Largest start-time spread added to a feed's polls.
pub const MAX_JITTER: std::time::Duration = std::time::Duration::from_secs(60);

/// A stable number in [0, 1) per feed name, so a feed's jitter is the same on every run.
pub fn feed_fraction(name: &str) -> f64 {
    // FNV-1a: tiny, stable across versions and platforms (unlike std's hasher).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // FNV's last step barely moves the high bits; a splitmix64 finaliser spreads them.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// Deterministic per-feed jitter: up to a tenth of the schedule's interval, at most
/// [`MAX_JITTER`], so 500 feeds on one cron line do not fire in the same second.
pub fn jitter(name: &str, interval: chrono::Duration) -> chrono::Duration {
    let cap = interval
        .to_std()
        .unwrap_or_default()
        .div_f64(10.0)
        .min(MAX_JITTER);
    chrono::Duration::from_std(cap.mul_f64(feed_fraction(name))).unwrap_or_default()
}

/// Exponential backoff after `failures` consecutive failures (1 → `base`), doubled each
/// time, capped at [`MAX_BACKOFF`], plus up to 10% deterministic jitter.
pub fn backoff(name: &str, failures: u32, base: chrono::Duration) -> chrono::Duration {
    let base = base
        .to_std()
        .unwrap_or_default()
        .max(std::time::Duration::from_secs(1));
    let exp = failures.saturating_sub(1).min(30);
    let d = base.saturating_mul(1u32 << exp.min(20)).min(MAX_BACKOFF);
    let d = d + d.div_f64(10.0).mul_f64(feed_fraction(name));
    chrono::Duration::from_std(d.min(MAX_BACKOFF)).unwrap_or(chrono::Duration::hours(24))
}

impl Schedule {
    /// The last run at or before `at`, with the cron line read in `tz`.
    pub fn prev_at_or_before(&self, at: DateTime<Utc>, tz: chrono_tz::Tz) -> Option<DateTime<Utc>> {
        // Runs are whole seconds: within a matching second, the run is that second's start,
        // not `at` itself (which a later digest would wrongly count as not yet written).
        use chrono::Timelike;
        let at = at.with_nanosecond(0).unwrap_or(at);
        let local = at.with_timezone(&tz);
        self.cron
            .find_previous_occurrence(&local, true)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// The gap between the next two runs after `after`: the schedule's current interval.
    pub fn interval_after(&self, after: DateTime<Utc>, tz: chrono_tz::Tz) -> chrono::Duration {
        match self
            .next_after(after, tz)
            .and_then(|a| self.next_after(a, tz).map(|b| b - a))
        {
            Some(d) => d,
            None => chrono::Duration::hours(24),
        }
    }

    /// When a feed on this schedule is next due after `now`: the next cron time plus the
    /// feed's jitter.
    pub fn next_due(&self, name: &str, now: DateTime<Utc>, tz: chrono_tz::Tz) -> DateTime<Utc> {
        let interval = self.interval_after(now, tz);
        let base = self
            .next_after(now, tz)
            .unwrap_or(now + chrono::Duration::hours(24));
        base + jitter(name, interval)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_run_is_a_whole_second_also_within_a_matching_second() {
        let s = Schedule::parse("*/3 * * * * *").unwrap();
        let at = DateTime::parse_from_rfc3339("2026-12-02T18:26:57.866Z")
            .unwrap()
            .with_timezone(&Utc);
        let prev = s.prev_at_or_before(at, chrono_tz::UTC).unwrap();
        assert_eq!(prev.to_rfc3339(), "2026-12-02T18:26:57+00:00");
    }

    #[test]
    fn the_next_run_is_a_whole_second_whatever_the_fraction_asked_from() {
        let s = Schedule::parse("*/3 * * * * *").unwrap();
        let at = |t: &str| DateTime::parse_from_rfc3339(t).unwrap().with_timezone(&Utc);
        // Two workers asking 100 ms apart get the same run, on the second.
        for asked in ["2026-12-03T15:57:57.867Z", "2026-12-03T15:57:57.967Z"] {
            let next = s.next_after(at(asked), chrono_tz::UTC).unwrap();
            assert_eq!(next.to_rfc3339(), "2026-12-03T15:58:00+00:00", "{asked}");
        }
        // Strictly after: within a matching second, the next one.
        let next = s
            .next_after(at("2026-12-03T15:58:00.500Z"), chrono_tz::UTC)
            .unwrap();
        assert_eq!(next.to_rfc3339(), "2026-12-03T15:58:03+00:00");
    }
    use chrono::{Datelike, TimeZone, Weekday};

    #[test]
    fn weekday_range_is_monday_to_friday_like_crontab() {
        let s = Schedule::parse("0 9 * * 1-5").unwrap();
        // 2026-11-21 is a Saturday.
        let mut t = Utc.with_ymd_and_hms(2026, 11, 21, 0, 0, 0).unwrap();
        let mut days = Vec::new();
        for _ in 0..7 {
            t = s.next_after(t, chrono_tz::UTC).unwrap();
            days.push(t.weekday());
        }
        assert_eq!(
            days,
            [
                Weekday::Mon,
                Weekday::Tue,
                Weekday::Wed,
                Weekday::Thu,
                Weekday::Fri,
                Weekday::Mon,
                Weekday::Tue
            ]
        );
    }

    #[test]
    fn five_and_six_field_lines_parse_others_do_not() {
        assert!(Schedule::parse("*/15 * * * *").is_ok());
        assert!(Schedule::parse("*/5 * * * * *").is_ok());
        assert!(Schedule::parse("@hourly").is_ok());
        assert!(Schedule::parse("* * *").is_err());
        assert!(Schedule::parse("61 * * * *").is_err());
        assert!(Schedule::parse("every day").is_err());
    }

    #[test]
    fn jitter_is_deterministic_small_and_spread() {
        let i = chrono::Duration::minutes(15);
        assert_eq!(jitter("bbc", i), jitter("bbc", i));
        let all: Vec<_> = (0..500).map(|n| jitter(&format!("feed-{n}"), i)).collect();
        assert!(
            all.iter()
                .all(|j| *j >= chrono::Duration::zero() && *j <= chrono::Duration::seconds(60))
        );
        let distinct: std::collections::HashSet<_> = all.iter().map(|j| j.num_seconds()).collect();
        assert!(
            distinct.len() > 40,
            "500 feeds spread over the minute: {}",
            distinct.len()
        );
        assert!(jitter("x", chrono::Duration::seconds(1)) <= chrono::Duration::milliseconds(100));
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let base = chrono::Duration::minutes(1);
        let b1 = backoff("f", 1, base);
        let b2 = backoff("f", 2, base);
        let b3 = backoff("f", 3, base);
        assert!(b1 >= chrono::Duration::minutes(1) && b1 < chrono::Duration::seconds(67));
        assert!(b2 >= chrono::Duration::minutes(2) && b3 >= chrono::Duration::minutes(4));
        assert_eq!(backoff("f", 40, base), chrono::Duration::hours(24));
    }

    #[test]
    fn schedules_follow_the_time_zone() {
        let s = Schedule::parse("0 7 * * *").unwrap();
        // In July London is UTC+1: 07:00 local is 06:00 UTC.
        let t = Utc.with_ymd_and_hms(2026, 7, 1, 0, 0, 0).unwrap();
        let next = s.next_after(t, chrono_tz::Europe::London).unwrap();
        assert_eq!(next, Utc.with_ymd_and_hms(2026, 7, 1, 6, 0, 0).unwrap());
    }
}
