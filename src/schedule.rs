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
        let local = after.with_timezone(&tz);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
    fn schedules_follow_the_time_zone() {
        let s = Schedule::parse("0 7 * * *").unwrap();
        // In July London is UTC+1: 07:00 local is 06:00 UTC.
        let t = Utc.with_ymd_and_hms(2026, 7, 1, 0, 0, 0).unwrap();
        let next = s.next_after(t, chrono_tz::Europe::London).unwrap();
        assert_eq!(next, Utc.with_ymd_and_hms(2026, 7, 1, 6, 0, 0).unwrap());
    }
}
