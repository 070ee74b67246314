//! Parse: bytes of a feed document (RSS 0.9x/1.0/2.0, Atom, JSON Feed) into entries.
//!
//! Why this module exists: feed-rs does the format work, but real-world feeds hit gaps that
//! would otherwise lose whole documents or leak nonsense into the pipeline. This thin
//! wrapper closes them:
//! - [`decode`]: charset from BOM > XML declaration > HTTP header > UTF-8, lossy on invalid
//!   bytes (feed-rs ignores the HTTP charset and fails on invalid UTF-8);
//! - [`repair`]: one linear pass fixing bare `&`, HTML named entities, stray `<`, and `<rss>`
//!   without a usable version; turning raw HTML inside text elements into escaped text;
//!   mapping Atom 0.3 and MIME-typed Atom text onto Atom 1.0, RSS 1.0 `rdf:about` onto a
//!   link, and elements feed-rs does not read (`dc:title` …) onto ones it does; it also
//!   sniffs HTML pages served instead of a feed, and guarantees DOCTYPE-declared entities
//!   are never expanded;
//! - a document with `<item>`/`<entry>` elements that yields no entry is an error with the
//!   reason, never "ok, 0 entries";
//! - JSON Feed: unpaired surrogate escapes become U+FFFD, reported in
//!   [`ParsedFeed::warnings`], instead of failing the document;
//! - invented ids: feed-rs makes up an id (random when there is no link) for entries without
//!   one; we register an id generator that returns a sentinel and map it to `None`;
//! - links resolved against xml:base, then the feed's own link, then the fetch URL.
//!
//! Everything here sees untrusted bytes, so nothing panics on purpose, and a panic inside
//! feed-rs (it has a few `unwrap()`s on parsed numbers) is caught and reported as
//! [`ParseError::Malformed`].

mod decode;
mod repair;

use std::panic::{AssertUnwindSafe, catch_unwind};

use chrono::{DateTime, Utc};
use url::Url;

use repair::Scan;

/// A parsed feed document.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParsedFeed {
    pub title: Option<String>,
    /// RSS `<ttl>` in minutes, if present.
    pub ttl_minutes: Option<u32>,
    /// The site the feed belongs to (its own link, absolute), if it names one.
    pub site: Option<String>,
    pub entries: Vec<Entry>,
    /// What was repaired or dropped while reading the document, one line each, naming the
    /// entry concerned (the poller logs them with the feed's name). Empty for clean documents.
    pub warnings: Vec<String>,
}

/// One entry, text fields as found in the feed (may contain HTML; normalise does the rest).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Entry {
    /// The document's own id/guid. `None` when the document has none (never an invented id).
    pub guid: Option<String>,
    /// Absolute link (resolved against the feed's base when relative), if any.
    pub link: Option<String>,
    pub title: String,
    pub summary: String,
    pub content: String,
    /// Published time, else updated time; `None` when absent or unparseable.
    pub published: Option<DateTime<Utc>>,
    pub authors: Vec<String>,
}

/// Why a document could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The body is empty.
    #[error("empty document")]
    Empty,
    /// The body is an HTML page (e.g. an error or login page), not a feed.
    #[error("not a feed: got an HTML page{0}")]
    Html(String),
    /// Not a feed format we know, or malformed beyond repair.
    #[error("malformed feed: {0}")]
    Malformed(String),
}

/// What our id generator returns. It cannot occur in a real id: feed-rs trims ids and a
/// NUL character is not allowed in XML or sensible in JSON Feed ids.
const INVENTED_ID: &str = "\u{0}newswatch:invented-id";

/// Longest error detail we pass on (error messages end up in logs and the store).
const MAX_REASON: usize = 200;

/// Parse a feed document from raw bytes. `content_type` is the HTTP Content-Type header if
/// any (its charset is honoured when the document declares none); `base_url` resolves
/// relative links.
pub fn parse_feed(
    body: &[u8],
    content_type: Option<&str>,
    base_url: Option<&str>,
) -> Result<ParsedFeed, ParseError> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(ParseError::Empty);
    }
    let is_json = looks_like_json(body);
    let decoded = decode::decode(body, content_type, is_json);
    let text = decoded.text;
    if text.trim().is_empty() {
        return Err(ParseError::Empty);
    }

    if is_json {
        return parse_json(&text);
    }
    let (input, root, entry_elements) = match repair::scan(&text) {
        Scan::Xml {
            text,
            root,
            entry_elements,
        } => (text, root, entry_elements),
        Scan::Html => match embedded_feed(&text) {
            // A feed wrapped in an HTML page (seen in the wild): parse the feed part.
            Some(inner) => match repair::scan(inner) {
                Scan::Xml {
                    text,
                    root,
                    entry_elements,
                } => (text, root, entry_elements),
                Scan::Html => return Err(ParseError::Html(html_hint(&text))),
            },
            None => return Err(ParseError::Html(html_hint(&text))),
        },
    };
    let feed = run_feed_rs(input.as_bytes(), root.as_deref(), base_url)?;
    if feed.entries.is_empty() && entry_elements > 0 {
        // Never "ok, 0 entries" for a document that has some: the feed shows as failing,
        // with the reason, instead of silently losing every story.
        let (element, why) = match root.as_deref() {
            Some("feed") => ("<entry>", "not read as Atom 1.0 or 0.3 entries"),
            Some("rdf") => ("<item>", "RSS 1.0 items need a <link> or an rdf:about"),
            _ => ("<item>", "none is inside the feed's <channel>"),
        };
        return Err(ParseError::Malformed(format!(
            "document has {entry_elements} {element} element(s) but no entry could be read: {why}"
        )));
    }
    Ok(feed)
}

/// JSON Feed. feed-rs is strict where publishers are not; on failure we retry once with
/// the common deviations fixed (see `lenient_json`), so valid feeds pay nothing extra.
fn parse_json(text: &str) -> Result<ParsedFeed, ParseError> {
    let first = match run_feed_rs(text.as_bytes(), None, None) {
        Ok(feed) => return Ok(feed),
        Err(e) => e,
    };
    // A `\uD800` escape with no partner is not a character: serde_json (and so feed-rs)
    // rejects the whole document for it. Each becomes a marker, and the items holding one
    // get U+FFFD there and a warning (see `repair_surrogates`). A raw control character
    // inside a string (equally fatal) is re-spelt as an escape.
    let unpaired = decode::mark_lone_surrogates(text);
    let controls = decode::escape_raw_controls(&unpaired);
    let text: &str = &controls;
    let Some(mut value) = serde_json::from_str::<serde_json::Value>(text).ok() else {
        return Err(first);
    };
    if !value.get("items").is_some_and(serde_json::Value::is_array) {
        return Err(ParseError::Malformed(
            "JSON document is not a JSON Feed (no \"items\" array)".into(),
        ));
    }
    let warnings = repair_surrogates(&mut value);
    let fixed = if warnings.is_empty() && matches!(controls, std::borrow::Cow::Borrowed(_)) {
        lenient_json(value)
    } else {
        match serde_json::to_string(&value) {
            Ok(repaired) => match run_feed_rs(repaired.as_bytes(), None, None) {
                Ok(mut feed) => {
                    feed.warnings = warnings;
                    return Ok(feed);
                }
                Err(_) => lenient_json(value),
            },
            Err(_) => None,
        }
    };
    match fixed.map(|f| run_feed_rs(f.as_bytes(), None, None)) {
        Some(Ok(mut feed)) => {
            feed.warnings = warnings;
            Ok(feed)
        }
        _ => Err(first),
    }
}

/// Replace the lone-surrogate markers left by [`decode::mark_lone_surrogates`] with U+FFFD;
/// one warning per item repaired, naming it by position and id (or title).
fn repair_surrogates(value: &mut serde_json::Value) -> Vec<String> {
    fn fix(v: &mut serde_json::Value) -> usize {
        match v {
            serde_json::Value::String(s) if s.contains(decode::LONE_SURROGATE) => {
                let n = s.matches(decode::LONE_SURROGATE).count();
                *s = s.replace(decode::LONE_SURROGATE, "\u{FFFD}");
                n
            }
            serde_json::Value::Array(a) => a.iter_mut().map(fix).sum(),
            serde_json::Value::Object(o) => o.values_mut().map(fix).sum(),
            _ => 0,
        }
    }
    let mut warnings = Vec::new();
    let Some(obj) = value.as_object_mut() else {
        return warnings;
    };
    for (key, v) in obj.iter_mut() {
        if key == "items" {
            for (n, item) in v.as_array_mut().into_iter().flatten().enumerate() {
                let count = fix(item);
                if count > 0 {
                    let name = ["id", "title", "url"]
                        .iter()
                        .find_map(|k| item.get(*k).and_then(|v| v.as_str()))
                        // Feed text in a log line: no control characters or bidi overrides.
                        .map(|s| format!(" ({})", one_line(&crate::text::sanitize(s), 80)))
                        .unwrap_or_default();
                    warnings.push(format!(
                        "item {}{name}: {count} undecodable character(s) (lone UTF-16 \
                         surrogate escapes) replaced with U+FFFD",
                        n + 1
                    ));
                }
            }
        } else if fix(v) > 0 {
            warnings.push(format!(
                "feed field \"{key}\": undecodable character(s) replaced with U+FFFD"
            ));
        }
    }
    warnings
}

/// Fix what real JSON Feeds get wrong and feed-rs rejects: the version URL with `http:`
/// (or missing), a missing feed title, and `tags` given as a single string instead of an array.
fn lenient_json(mut v: serde_json::Value) -> Option<String> {
    let obj = v.as_object_mut()?;
    let version = obj.get("version").and_then(|v| v.as_str()).unwrap_or("");
    let fixed_version = match version.strip_prefix("http://") {
        Some(rest) => format!("https://{rest}"),
        None if version.starts_with("https://jsonfeed.org/version/") => version.to_string(),
        None => "https://jsonfeed.org/version/1.1".to_string(),
    };
    obj.insert("version".into(), fixed_version.into());
    // feed-rs requires the (spec-required) feed title.
    if !obj.get("title").is_some_and(|t| t.is_string()) {
        obj.insert("title".into(), "".into());
    }
    if let Some(items) = obj.get_mut("items").and_then(|i| i.as_array_mut()) {
        for item in items.iter_mut().filter_map(|i| i.as_object_mut()) {
            if let Some(serde_json::Value::String(tags)) = item.get("tags") {
                let tags: Vec<serde_json::Value> = tags
                    .split(',')
                    .map(|t| t.trim())
                    .filter(|t| !t.is_empty())
                    .map(|t| t.into())
                    .collect();
                item.insert("tags".into(), tags.into());
            }
        }
    }
    serde_json::to_string(&v).ok()
}

/// The part of an HTML page that is a feed, if it embeds a complete `<rss>`/`<feed>`.
fn embedded_feed(text: &str) -> Option<&str> {
    for (open, close) in [
        ("<rss", "</rss>"),
        ("<feed", "</feed>"),
        ("<rdf:RDF", "</rdf:RDF>"),
    ] {
        if let (Some(start), Some(end)) = (text.find(open), text.rfind(close)) {
            let after = text
                .as_bytes()
                .get(start + open.len())
                .copied()
                .unwrap_or(b'>');
            if end > start && (after.is_ascii_whitespace() || after == b'>') {
                return text.get(start..end + close.len());
            }
        }
    }
    None
}

/// Run feed-rs on prepared UTF-8 input and convert the result.
fn run_feed_rs(
    input: &[u8],
    root: Option<&str>,
    base_url: Option<&str>,
) -> Result<ParsedFeed, ParseError> {
    let parser = feed_rs::parser::Builder::new()
        // No base_uri: relative links are resolved by us (feed-rs still applies xml:base),
        // so that the feed's own link can take precedence over the fetch URL; see `resolve`.
        .sanitize_content(false)
        .id_generator(|_, _, _| INVENTED_ID.to_string())
        .timestamp_parser(parse_timestamp)
        .build();
    // feed-rs has `unwrap()`s on attacker-controlled numbers (e.g. media durations that
    // overflow u64); a bad feed must never take the poller down.
    let result = catch_unwind(AssertUnwindSafe(|| parser.parse(input)));
    let feed = match result {
        Ok(Ok(feed)) => feed,
        Ok(Err(e)) => return Err(explain(e, root)),
        Err(_) => {
            return Err(ParseError::Malformed(
                "feed parser crashed on this document".into(),
            ));
        }
    };
    Ok(convert(feed, base_url))
}

/// A feed's timestamp (RSS `pubDate`, Atom `updated`/`published`, `dc:date`, JSON Feed
/// dates), as feed-rs's default parser reads it, only cheaper.
///
/// feed-rs's default runs up to a dozen regex rewrites on every timestamp before handing it to
/// chrono (~3% of a cold poll's CPU). Those rewrites repair what chrono rejects (an offset
/// without a colon, "UTC", long or misplaced month names, a wrong weekday, hour 24, one-digit
/// hours) and leave a timestamp chrono already accepts meaning the same instant. So RFC 3339
/// and RFC 2822 are parsed directly, and only the rest (rare) take feed-rs's lenient path,
/// which feed-rs does not export: through its public API, as a one-item RSS document.
fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    let trimmed = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(trimmed) {
        return Some(t.with_timezone(&Utc));
    }
    if let Ok(t) = DateTime::parse_from_rfc2822(trimmed) {
        return Some(t.with_timezone(&Utc));
    }
    lenient_timestamp(text)
}

/// feed-rs's own lenient reading of a timestamp (see [`parse_timestamp`]).
fn lenient_timestamp(text: &str) -> Option<DateTime<Utc>> {
    let doc = format!(
        "<rss version=\"2.0\"><channel><item><pubDate>{}</pubDate></item></channel></rss>",
        html_escape::encode_text(text)
    );
    feed_rs::parser::parse(doc.as_bytes())
        .ok()?
        .entries
        .first()?
        .published
}

/// JSON Feed if the first non-whitespace character (after a UTF-8 BOM) is `{`.
fn looks_like_json(body: &[u8]) -> bool {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

/// Turn a feed-rs error into ours, one line.
fn explain(e: feed_rs::parser::ParseFeedError, root: Option<&str>) -> ParseError {
    use feed_rs::parser::{ParseErrorKind, ParseFeedError};
    let reason = match (&e, root) {
        // feed-rs reports a missing <channel> as "no root" too; say what is really wrong.
        (ParseFeedError::ParseError(ParseErrorKind::NoFeedRoot), Some("rss")) => {
            "RSS document without a <channel> element".to_string()
        }
        (ParseFeedError::ParseError(ParseErrorKind::NoFeedRoot), Some(root)) => {
            format!("not RSS, Atom or JSON Feed (root element <{root}>)")
        }
        (ParseFeedError::ParseError(ParseErrorKind::NoFeedRoot), None) => {
            "not RSS, Atom or JSON Feed (no root element)".to_string()
        }
        _ => e.to_string(),
    };
    ParseError::Malformed(one_line(&reason, MAX_REASON))
}

/// Collapse all whitespace runs (including newlines) to one space and cap the length.
fn one_line(s: &str, max_chars: usize) -> String {
    let mut out = String::new();
    for (n, word) in s.split_whitespace().enumerate() {
        if n > 0 {
            out.push(' ');
        }
        out.push_str(word);
    }
    if out.chars().count() > max_chars {
        out = out.chars().take(max_chars).collect();
        out.push('…');
    }
    out
}

/// ` (title: "…")` from an HTML page's `<title>`, to tell a login page from a 404 in logs.
fn html_hint(text: &str) -> String {
    // Only look at the head of the page; titles are near the top.
    let head = match text.char_indices().nth(64 * 1024) {
        Some((i, _)) => &text[..i],
        None => text,
    };
    let lower = head.to_ascii_lowercase();
    let Some(open) = lower.find("<title") else {
        return String::new();
    };
    let Some(gt) = lower[open..].find('>').map(|p| open + p + 1) else {
        return String::new();
    };
    let Some(close) = lower[gt..].find("</title").map(|p| gt + p) else {
        return String::new();
    };
    // ASCII lower-casing keeps byte offsets, so these slice `head` at the same places.
    let title = html_escape::decode_html_entities(head.get(gt..close).unwrap_or(""));
    let title = one_line(&title, 80);
    if title.is_empty() {
        String::new()
    } else {
        format!(" (title: {title:?})")
    }
}

/// Map the feed-rs model to ours.
fn convert(feed: feed_rs::model::Feed, base_url: Option<&str>) -> ParsedFeed {
    let fetch_base = base_url.and_then(|u| Url::parse(u.trim()).ok());
    // The feed's own (site) link, absolute, as a base for relative entry links.
    let feed_base = best_link(&feed.links)
        .and_then(|href| resolve(href, fetch_base.as_ref(), None))
        .and_then(|href| Url::parse(&href).ok());

    let entries = feed
        .entries
        .into_iter()
        .map(|e| {
            let guid = Some(e.id).filter(|id| id != INVENTED_ID && !id.trim().is_empty());
            let link = best_link(&e.links)
                .and_then(|href| resolve(href, feed_base.as_ref(), fetch_base.as_ref()));
            let mut summary = e.summary.map(|t| t.content).unwrap_or_default();
            let mut content = e.content.and_then(|c| c.body).unwrap_or_default();
            // MediaRSS / iTunes text (media:description, itunes:summary, also inside
            // media:group or media:content; YouTube and podcasts keep the only full
            // description there): the summary when the entry has none, else the content when
            // it has none and the text is not the summary again (feedparser reads it too).
            let media_text = e
                .media
                .iter()
                .filter_map(|m| m.description.as_ref())
                .map(|d| d.content.trim())
                // An empty media:description was given one space by `repair`.
                .find(|d| !d.is_empty() && *d != summary.trim());
            if let Some(text) = media_text {
                if summary.trim().is_empty() {
                    summary = text.to_string();
                } else if content.trim().is_empty() {
                    content = text.to_string();
                }
            }
            let mut title = e.title.map(|t| t.content).unwrap_or_default();
            if title.trim().is_empty() {
                // MediaRSS-only items (media:title, often inside media:group).
                title = e
                    .media
                    .iter()
                    .find_map(|m| m.title.as_ref().map(|t| t.content.clone()))
                    .filter(|t| !t.trim().is_empty())
                    .unwrap_or_default();
            }
            let authors = e
                .authors
                .into_iter()
                .filter_map(|p| p.name)
                // feed-rs splits "jo@example.org (Jo)" but keeps the parentheses.
                .map(|n| {
                    let n = n.trim();
                    n.strip_prefix('(')
                        .and_then(|n| n.strip_suffix(')'))
                        .unwrap_or(n)
                        .trim()
                        .to_string()
                })
                .filter(|n| !n.is_empty())
                .collect();
            Entry {
                guid,
                link,
                title,
                summary,
                content,
                published: e.published.or(e.updated),
                authors,
            }
        })
        .collect();

    ParsedFeed {
        title: feed
            .title
            .map(|t| t.content)
            .filter(|t| !t.trim().is_empty()),
        ttl_minutes: feed.ttl,
        site: feed_base.as_ref().map(Url::to_string),
        entries,
        warnings: Vec::new(),
    }
}

/// The entry's best link: the first `rel="alternate"` (or rel-less, which means alternate)
/// link, else the first link of any kind.
fn best_link(links: &[feed_rs::model::Link]) -> Option<&str> {
    links
        .iter()
        .find(|l| {
            l.rel
                .as_deref()
                .is_none_or(|r| r.eq_ignore_ascii_case("alternate"))
        })
        .or_else(|| links.first())
        .map(|l| l.href.trim())
        .filter(|h| !h.is_empty())
}

/// Make `href` absolute. feed-rs already applied xml:base; what is still relative is
/// resolved against the feed's own link, then the fetch URL. Returns the href unchanged if
/// it stays relative (better a relative link than none for the reviewer).
fn resolve(href: &str, first: Option<&Url>, second: Option<&Url>) -> Option<String> {
    match Url::parse(href) {
        Ok(url) => Some(url.to_string()),
        Err(url::ParseError::RelativeUrlWithoutBase) => {
            let joined = first
                .or(second)
                .and_then(|base| base.join(href).ok())
                .map(|u| u.to_string());
            Some(joined.unwrap_or_else(|| href.to_string()))
        }
        // Unparseable (e.g. spaces in the host): keep the text as found.
        Err(_) => Some(href.to_string()),
    }
}

#[cfg(test)]
mod tests;
