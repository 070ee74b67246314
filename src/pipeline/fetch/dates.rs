//! Server-supplied timing hints: Retry-After, Cache-Control max-age and Expires.
//!
//! Split out of the fetcher because these are pure functions of header text and a clock
//! reading, which makes them easy to unit-test without a server. Every value here comes from
//! an untrusted server, so parsing is lenient about form but strict about meaning: anything we
//! cannot read is "no hint", and absurd delays are clamped so one server cannot silence a
//! feed for months.

use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};

/// The longest delay a server may impose through Retry-After, max-age or Expires.
///
/// A week is far beyond any sane polling interval for a news feed, but short enough that a
/// misconfigured server (`max-age=31536000`, an Expires date years ahead) cannot stop a feed
/// from being polled for months.
pub const MAX_SERVER_DELAY: Duration = Duration::from_secs(MAX_SERVER_DELAY_SECS as u64);

const MAX_SERVER_DELAY_SECS: i64 = 7 * 24 * 60 * 60;

/// Parse a Retry-After value (delta seconds or HTTP date) relative to `now`.
///
/// - `"120"` → `now + 120 s`; absurdly large deltas (even ones that overflow `u64`) are clamped
///   to [`MAX_SERVER_DELAY`].
/// - An HTTP date (IMF-fixdate, RFC 850 or asctime) → that instant, clamped to
///   `now + MAX_SERVER_DELAY`. A date in the past returns `None`: it asks for no extra wait, so
///   it carries no hint beyond the caller's own backoff.
/// - Anything else (empty, negative, fractional, garbage) → `None`.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    if let Some(secs) = delta_seconds(value) {
        return after(now, secs);
    }
    let at = parse_http_date(value)?;
    if at < now {
        return None;
    }
    Some(clamp(at, now))
}

/// Parse an HTTP date in any of the three forms RFC 9110 says recipients must accept:
/// IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), RFC 850 (`Sunday, 06-Nov-94 08:49:37 GMT`)
/// and asctime (`Sun Nov  6 08:49:37 1994`).
pub fn parse_http_date(value: &str) -> Option<DateTime<Utc>> {
    // Collapse runs of whitespace: asctime pads single-digit days with a space, and some
    // servers add stray spaces elsewhere.
    let value = value.split_whitespace().collect::<Vec<_>>().join(" ");
    // RFC 2822 parsing in chrono is a superset of IMF-fixdate (it also takes numeric zones),
    // which is the leniency we want for sloppy servers.
    if let Ok(t) = DateTime::parse_from_rfc2822(&value) {
        return Some(t.with_timezone(&Utc));
    }
    // RFC 850: chrono maps two-digit years 70–99 to 19xx and 00–69 to 20xx, which is close
    // enough to RFC 9110's "within 50 years" rule for dates feeds will ever send.
    if let Ok(t) = NaiveDateTime::parse_from_str(&value, "%A, %d-%b-%y %H:%M:%S GMT") {
        return Some(t.and_utc());
    }
    if let Ok(t) = NaiveDateTime::parse_from_str(&value, "%a %b %e %H:%M:%S %Y") {
        return Some(t.and_utc());
    }
    None
}

/// When the server says the response stays fresh until, from Cache-Control and Expires.
///
/// `cache_control` is every Cache-Control header value joined with commas. `max-age` wins over
/// Expires (as in RFC 9111). `no-cache` or `no-store` mean the server gives no freshness
/// promise at all, so the result is `None` whatever else is sent. Zero, past or unreadable
/// values are `None`; far-future ones are clamped to `now + MAX_SERVER_DELAY`.
pub fn fresh_until(
    cache_control: Option<&str>,
    expires: Option<&str>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let mut max_age: Option<u64> = None;
    for directive in cache_control.unwrap_or("").split(',') {
        let (name, arg) = match directive.split_once('=') {
            Some((n, a)) => (n.trim(), Some(a.trim().trim_matches('"'))),
            None => (directive.trim(), None),
        };
        if name.eq_ignore_ascii_case("no-cache") || name.eq_ignore_ascii_case("no-store") {
            return None;
        }
        if name.eq_ignore_ascii_case("max-age") && max_age.is_none() {
            // An unreadable max-age is ignored rather than treated as zero: the scheduler
            // then simply has no hint from it.
            max_age = arg.and_then(delta_seconds);
        }
    }
    if let Some(secs) = max_age {
        if secs == 0 {
            return None;
        }
        return after(now, secs);
    }
    let at = parse_http_date(expires?)?;
    if at <= now {
        return None;
    }
    Some(clamp(at, now))
}

/// RFC 9110 delta-seconds: ASCII digits only (no sign, no fraction). All digits but too long
/// for `u64` is still a (silly) delay rather than garbage, so it saturates and gets clamped.
fn delta_seconds(value: &str) -> Option<u64> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(value.parse::<u64>().unwrap_or(u64::MAX))
}

/// `now + secs`, clamped to [`MAX_SERVER_DELAY`].
fn after(now: DateTime<Utc>, secs: u64) -> Option<DateTime<Utc>> {
    let secs = i64::try_from(secs)
        .unwrap_or(i64::MAX)
        .min(MAX_SERVER_DELAY_SECS);
    now.checked_add_signed(TimeDelta::try_seconds(secs)?)
}

fn clamp(at: DateTime<Utc>, now: DateTime<Utc>) -> DateTime<Utc> {
    match TimeDelta::try_seconds(MAX_SERVER_DELAY_SECS).and_then(|d| now.checked_add_signed(d)) {
        Some(limit) => at.min(limit),
        None => at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap()
    }

    #[test]
    fn retry_after_delta_seconds() {
        assert_eq!(
            parse_retry_after("120", now()),
            Some(now() + TimeDelta::seconds(120))
        );
        assert_eq!(
            parse_retry_after("  0 ", now()),
            Some(now()),
            "zero means retry now"
        );
    }

    #[test]
    fn retry_after_http_dates() {
        let want = Utc.with_ymd_and_hms(2024, 5, 2, 8, 49, 37).unwrap();
        for form in [
            "Thu, 02 May 2024 08:49:37 GMT",
            "Thursday, 02-May-24 08:49:37 GMT",
            "Thu May  2 08:49:37 2024",
            "Thu, 02 May 2024 10:49:37 +0200",
        ] {
            assert_eq!(parse_retry_after(form, now()), Some(want), "{form}");
        }
    }

    #[test]
    fn retry_after_garbage_negative_and_past_are_none() {
        for bad in [
            "",
            "soon",
            "-5",
            "1.5",
            "+10",
            "12 s",
            "Thu, 02 May 2024 25:00:00 GMT",
            "Sun, 06 Nov 1994 08:49:37 GMT",
        ] {
            assert_eq!(parse_retry_after(bad, now()), None, "{bad:?}");
        }
    }

    #[test]
    fn retry_after_clamps_absurd_delays() {
        let limit = now() + TimeDelta::seconds(MAX_SERVER_DELAY_SECS);
        assert_eq!(parse_retry_after("99999999", now()), Some(limit));
        assert_eq!(
            parse_retry_after("999999999999999999999999999999", now()),
            Some(limit)
        );
        assert_eq!(
            parse_retry_after("Fri, 01 Jan 2100 00:00:00 GMT", now()),
            Some(limit)
        );
    }

    #[test]
    fn freshness_from_max_age_and_expires() {
        assert_eq!(
            fresh_until(Some("public, max-age=300"), None, now()),
            Some(now() + TimeDelta::seconds(300))
        );
        assert_eq!(
            fresh_until(Some("max-age=\"60\""), None, now()),
            Some(now() + TimeDelta::seconds(60))
        );
        // max-age beats Expires.
        assert_eq!(
            fresh_until(
                Some("max-age=60"),
                Some("Thu, 02 May 2024 08:49:37 GMT"),
                now()
            ),
            Some(now() + TimeDelta::seconds(60))
        );
        assert_eq!(
            fresh_until(None, Some("Wed, 01 May 2024 13:00:00 GMT"), now()),
            Some(now() + TimeDelta::hours(1))
        );
    }

    #[test]
    fn freshness_none_cases() {
        assert_eq!(fresh_until(None, None, now()), None);
        assert_eq!(fresh_until(Some("no-cache, max-age=60"), None, now()), None);
        assert_eq!(fresh_until(Some("No-Store"), None, now()), None);
        assert_eq!(fresh_until(Some("max-age=0"), None, now()), None);
        assert_eq!(fresh_until(Some("max-age=abc"), None, now()), None);
        assert_eq!(fresh_until(None, Some("0"), now()), None);
        assert_eq!(
            fresh_until(None, Some("Sun, 06 Nov 1994 08:49:37 GMT"), now()),
            None
        );
    }

    #[test]
    fn freshness_clamped() {
        let limit = now() + TimeDelta::seconds(MAX_SERVER_DELAY_SECS);
        assert_eq!(
            fresh_until(Some("max-age=31536000000000000000"), None, now()),
            Some(limit),
            "overflowing max-age saturates"
        );
        assert_eq!(
            fresh_until(Some("max-age=31536000"), None, now()),
            Some(limit)
        );
        assert_eq!(
            fresh_until(None, Some("Fri, 01 Jan 2100 00:00:00 GMT"), now()),
            Some(limit)
        );
    }
}
