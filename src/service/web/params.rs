//! Query strings of the review page and the API, parsed strictly: a repeated key is a list, an
//! empty value is absent, and anything malformed is a 400 naming the parameter.

use chrono::{DateTime, NaiveDate, Utc};

use super::{DEFAULT_PAGE, Failure, MAX_PAGE};
use crate::store::MatchFilter;
use crate::store::review::STATUSES;
use crate::store::web::PageKey;

/// The filters of a list of matches (page or API).
#[derive(Debug, Clone, Default)]
pub(crate) struct ListParams {
    pub rules: Vec<String>,
    pub feeds: Vec<String>,
    pub statuses: Vec<String>,
    /// As written (`24h`, `7d`, `2015-11-01`), for links.
    pub period: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub cursor: Option<PageKey>,
    pub limit: usize,
    /// Archive search expression (the review page's search box, `/api/v1/search`).
    pub q: Option<String>,
}

/// The longest look-back a period may ask for.
const MAX_PERIOD_DAYS: i64 = 100 * 366;

/// `24h`, `7d`, `90m` (ago from `now`) or a date `2015-11-01` (UTC midnight).
pub(crate) fn parse_period(s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let s = s.trim();
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return d
            .and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc())
            .ok_or_else(|| format!("invalid date {s:?}"));
    }
    let d = humantime::parse_duration(s).map_err(|_| {
        format!("period: expected a duration like 24h or 7d, or a date like 2015-11-01, got {s:?}")
    })?;
    let d = chrono::Duration::from_std(d)
        .ok()
        .filter(|d| *d <= chrono::Duration::days(MAX_PERIOD_DAYS))
        .ok_or_else(|| format!("period {s:?} is too long (at most {MAX_PERIOD_DAYS}d)"))?;
    now.checked_sub_signed(d)
        .ok_or_else(|| format!("period {s:?} is out of range"))
}

/// A cursor as [`cursor_text`] wrote it.
pub(crate) fn parse_cursor(s: &str) -> Result<PageKey, String> {
    let bad = || {
        format!("cursor {s:?} is not one this server gave (use next_cursor from a previous page)")
    };
    let (time, id) = s.rsplit_once('_').ok_or_else(bad)?;
    let id: i64 = id.parse().map_err(|_| bad())?;
    if crate::store::parse_ts(time).is_none() || id <= 0 {
        return Err(bad());
    }
    Ok(PageKey {
        time: time.to_string(),
        id,
    })
}

pub(crate) fn cursor_text(k: &PageKey) -> String {
    format!("{}_{}", k.time, k.id)
}

/// A match id from a path or form: a positive integer.
pub(crate) fn parse_id(s: &str) -> Result<i64, Failure> {
    s.trim()
        .parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| {
            Failure::BadRequest(format!(
                "match id must be a positive integer, got {:?}",
                crate::text::sanitize(s)
            ))
        })
}

/// Parse `query` (the raw query string) for a list of matches; `allowed` are the keys this
/// endpoint takes beyond the filters.
pub(crate) fn list_params(query: Option<&str>, now: DateTime<Utc>) -> Result<ListParams, Failure> {
    let mut p = ListParams {
        limit: DEFAULT_PAGE,
        ..ListParams::default()
    };
    let bad = |m: String| Failure::BadRequest(m);
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        let value = value.trim();
        if value.is_empty() {
            continue;
        }
        match key.as_ref() {
            "rule" => p.rules.push(value.to_string()),
            "feed" => p.feeds.push(value.to_string()),
            "status" => {
                if !STATUSES.contains(&value) {
                    return Err(bad(format!(
                        "status must be one of {}, got {:?}",
                        STATUSES.join(", "),
                        crate::text::sanitize(value)
                    )));
                }
                p.statuses.push(value.to_string());
            }
            "period" | "since" => {
                p.since = Some(parse_period(value, now).map_err(bad)?);
                p.period = Some(value.to_string());
            }
            "cursor" => p.cursor = Some(parse_cursor(value).map_err(bad)?),
            "limit" => {
                p.limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE).contains(n))
                    .ok_or_else(|| {
                        bad(format!(
                            "limit must be a number from 1 to {MAX_PAGE}, got {:?}",
                            crate::text::sanitize(value)
                        ))
                    })?;
            }
            "q" => p.q = Some(value.to_string()),
            other => {
                return Err(bad(format!(
                    "unknown parameter {:?} (known: rule, feed, status, period, cursor, limit, q)",
                    crate::text::sanitize(other)
                )));
            }
        }
    }
    Ok(p)
}

impl ListParams {
    pub(crate) fn filter(&self) -> MatchFilter {
        MatchFilter {
            rules: self.rules.clone(),
            feeds: self.feeds.clone(),
            published_since: self.since,
            statuses: self.statuses.clone(),
            ..MatchFilter::default()
        }
    }

    /// The query string of these filters (no cursor), for links that keep them.
    pub(crate) fn query_string(&self, cursor: Option<&PageKey>) -> String {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for r in &self.rules {
            q.append_pair("rule", r);
        }
        for f in &self.feeds {
            q.append_pair("feed", f);
        }
        for s in &self.statuses {
            q.append_pair("status", s);
        }
        if let Some(p) = &self.period {
            q.append_pair("period", p);
        }
        if let Some(s) = &self.q {
            q.append_pair("q", s);
        }
        if self.limit != DEFAULT_PAGE {
            q.append_pair("limit", &self.limit.to_string());
        }
        if let Some(c) = cursor {
            q.append_pair("cursor", &cursor_text(c));
        }
        q.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_rejects_forgeries() {
        let k = PageKey {
            time: "2015-11-09T08:30:00.000Z".into(),
            id: 42,
        };
        assert_eq!(parse_cursor(&cursor_text(&k)), Ok(k));
        for bad in [
            "",
            "x",
            "2015_x",
            "nottime_4",
            "2015-11-09T08:30:00Z_-1",
            "2015-11-09T08:30:00Z_",
        ] {
            assert!(parse_cursor(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn list_params_reject_malformed_values_with_the_parameter_named() {
        let now = Utc::now();
        for (q, want) in [
            ("status=bogus", "status must be"),
            ("limit=0", "limit must be"),
            ("limit=abc", "limit must be"),
            ("period=yesterday", "period"),
            ("nope=1", "unknown parameter"),
            ("cursor=zzz", "cursor"),
        ] {
            match list_params(Some(q), now) {
                Err(Failure::BadRequest(m)) => assert!(m.contains(want), "{q}: {m}"),
                other => panic!("{q}: {other:?}"),
            }
        }
        let p = list_params(Some("rule=a&rule=b&status=&feed=f&period=7d"), now).unwrap();
        assert_eq!(p.rules, ["a", "b"]);
        assert!(p.statuses.is_empty());
        assert!(p.since.is_some());
    }
}
