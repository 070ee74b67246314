//! Parse: bytes of a feed document (RSS 0.9x/1.0/2.0, Atom, JSON Feed) into entries.
//!
//! A thin wrapper over feed-rs that closes its known gaps: charset only in Content-Type,
//! `<rss>` without version, bare `&` and HTML entities in XML, invented ids, bad dates.

use chrono::{DateTime, Utc};

/// A parsed feed document.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParsedFeed {
    pub title: Option<String>,
    /// RSS `<ttl>` in minutes, if present.
    pub ttl_minutes: Option<u32>,
    pub entries: Vec<Entry>,
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

/// Parse a feed document from raw bytes. `content_type` is the HTTP Content-Type header if
/// any (its charset is honoured when the document declares none); `base_url` resolves
/// relative links.
pub fn parse_feed(
    body: &[u8],
    content_type: Option<&str>,
    base_url: Option<&str>,
) -> Result<ParsedFeed, ParseError> {
    let _ = (body, content_type, base_url);
    todo!("parse::parse_feed")
}
