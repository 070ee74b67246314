//! Export: stored matches as a feed (Atom 1.0 or JSON Feed 1.1) that any feed reader follows,
//! one entry per story ([`per_story`]): the story's fullest report, with every outlet that
//! reported it; the entry keeps its id and gets a new `updated` when reports join.
//!
//! It exists so newswatch's results can be read where people already read news: point
//! Miniflux, FreshRSS, newsboat or a phone app at the file and every match shows up, with its
//! feeds and rules as categories. [`write_atom`] and [`write_json_feed`] render rows from
//! [`Store::matches`]; [`write_atomic`] replaces a file without readers ever seeing half of
//! it; [`update_outputs`] does both for the `[output]` files of a config (the daemon calls it
//! after each poll).
//!
//! Two promises on what leaves here: a link is written only as an absolute http(s) URL, in the
//! form [`web_link`] parsed it (so `javascript:`, `data:`, `vbscript:` and their obfuscations
//! never reach an `href` or `url`); and dismissed matches are left out unless a caller asks for
//! them by status ([`SHOWN_STATUSES`]).

use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesText, Event};
use sha2::{Digest, Sha256};

use crate::outputs::opml::xml_safe;
use crate::store::{MatchFilter, MatchRow, Store, StoreError, parse_ts};
use crate::text::web_link;

/// Category scheme of a matched rule's name.
pub const RULE_SCHEME: &str = "urn:newswatch:rule";
/// Category scheme of a source feed's name.
pub const FEED_SCHEME: &str = "urn:newswatch:feed";
/// How many of the newest stories the `[output]` files hold.
pub const OUTPUT_LIMIT: usize = 200;
/// The review statuses an export holds when none is asked for: every one but `dismissed` (a
/// dismissed match is one the reader said they do not want to see again, anywhere).
pub const SHOWN_STATUSES: [&str; 3] = ["new", "read", "starred"];

/// The link as it may leave newswatch: an absolute http(s) URL as [`web_link`] serialises it
/// (not the stored text, so what a reader's browser acts on is what was checked).
fn safe_link(link: Option<&str>) -> Option<String> {
    web_link(link).map(String::from)
}

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Writing the output failed.
    #[error("cannot write output: {0}")]
    Write(#[from] std::io::Error),
    /// Replacing a file failed.
    #[error("cannot write {path}: {source}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Reading the matches failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What describes the feed as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedMeta {
    pub title: String,
    /// The feed's id (an IRI); entry ids are `{id}:story:{story id}`.
    pub id: String,
    /// Where the feed will be published, for `rel="self"` / `feed_url`, if known.
    pub self_link: Option<String>,
    /// The feed's `updated` when there are no entries (else the newest entry's).
    pub updated: DateTime<Utc>,
}

impl FeedMeta {
    /// Meta for the matches of the database at `database`: the id is stable for that file
    /// (`urn:newswatch:` + 16 hex digits of SHA-256 of its absolute path), so item ids from two
    /// databases never collide in a reader.
    pub fn for_database(database: &Path, title: impl Into<String>) -> FeedMeta {
        let abs = std::path::absolute(database).unwrap_or_else(|_| database.to_path_buf());
        FeedMeta::for_name(&abs.to_string_lossy(), title)
    }

    /// As [`FeedMeta::for_database`], for a database named otherwise (PostgreSQL's
    /// `user@host:port/db`).
    pub fn for_name(database: &str, title: impl Into<String>) -> FeedMeta {
        let digest = Sha256::digest(database.as_bytes());
        let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        FeedMeta {
            title: title.into(),
            id: format!("urn:newswatch:{hex}"),
            self_link: None,
            updated: Utc::now(),
        }
    }

    /// The stable id of story `id` (one entry per story).
    pub fn story_id(&self, id: i64) -> String {
        format!("{}:story:{id}", self.id)
    }
}

/// RFC 3339 in seconds, UTC; stored text that does not parse is passed through unchanged.
fn rfc3339(stored: &str) -> String {
    // First-seen times are written by newswatch and always valid; anything else (a
    // published year 99999 a feed gave) falls back to the Unix epoch rather than making
    // the whole document invalid. Published times use `published` below instead.
    crate::text::rfc3339_or_none(stored).unwrap_or_else(|| "1970-01-01T00:00:00Z".into())
}

/// A row's published time as valid RFC 3339 (years 0000–9999), if it has one.
fn published(row: &MatchRow) -> Option<String> {
    row.published
        .as_deref()
        .and_then(crate::text::rfc3339_or_none)
}

/// When an entry's story last changed (a report joined, left or was edited).
fn entry_updated(row: &MatchRow) -> String {
    rfc3339(row.story_updated.as_str().max(row.first_seen.as_str()))
}

/// One row per story, newest first, at most `limit`: the story's fullest report standing for
/// it, with the outlets, rules and terms of every report, the earliest published time, and
/// the other reports named after the snippet ("Also reported by …").
pub fn per_story(rows: &[MatchRow], limit: usize) -> Vec<MatchRow> {
    crate::store::stories::group(rows, limit)
        .into_iter()
        .filter_map(|s| {
            let head = s
                .rows
                .iter()
                .find(|r| r.title == s.headline && r.link == s.link)
                .or(s.rows.first())?;
            let mut row = head.clone();
            row.feeds = s.outlets.clone();
            row.rules = s.rules.clone();
            for r in &s.rows {
                for t in &r.terms {
                    if !row.terms.contains(t) {
                        row.terms.push(t.clone());
                    }
                }
            }
            row.published = s.rows.iter().filter_map(|r| r.published.clone()).min();
            row.story_updated = s.updated.clone();
            let others: Vec<String> = s
                .rows
                .iter()
                .filter(|r| r.id != head.id)
                .map(|r| {
                    let link = safe_link(r.link.as_deref())
                        .map(|l| format!(" <{l}>"))
                        .unwrap_or_default();
                    format!(
                        "{}: {}{link}",
                        r.feeds.first().map(String::as_str).unwrap_or("?"),
                        r.title
                    )
                })
                .collect();
            if !others.is_empty() {
                row.snippet = format!(
                    "{}\n\nAlso reported by {}",
                    summary_of(&row),
                    others.join("; ")
                );
            }
            Some(row)
        })
        .collect()
}

/// The newest change of `rows`' stories, else `meta.updated`.
fn feed_updated(rows: &[MatchRow], meta: &FeedMeta) -> String {
    rows.iter()
        .filter_map(|r| parse_ts(r.story_updated.as_str().max(r.first_seen.as_str())))
        .max()
        .unwrap_or(meta.updated)
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The text shown for an item: the snippet around the hit, else the stored summary.
fn summary_of(row: &MatchRow) -> &str {
    if row.snippet.trim().is_empty() {
        &row.summary
    } else {
        &row.snippet
    }
}

/// Write an Atom 1.0 feed with one entry per row (per story, see [`per_story`]): id
/// [`FeedMeta::story_id`], `updated` = the story's last change, `published` when known, the
/// link, the title, the snippet as summary, and a category per matched rule ([`RULE_SCHEME`])
/// and per source feed ([`FEED_SCHEME`]).
pub fn write_atom(
    rows: &[MatchRow],
    out: &mut dyn Write,
    meta: &FeedMeta,
) -> Result<(), ExportError> {
    let mut w = Writer::new_with_indent(out, b' ', 2);
    w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
    w.create_element("feed")
        .with_attribute(("xmlns", "http://www.w3.org/2005/Atom"))
        .write_inner_content(|w| {
            text_element(w, "id", &meta.id)?;
            w.create_element("title")
                .with_attribute(("type", "text"))
                .write_text_content(BytesText::new(&xml_safe(&meta.title)))?;
            text_element(w, "updated", &feed_updated(rows, meta))?;
            w.create_element("generator")
                .with_attribute(("version", env!("CARGO_PKG_VERSION")))
                .write_text_content(BytesText::new("newswatch"))?;
            w.create_element("author")
                .write_inner_content(|w| text_element(w, "name", "newswatch"))?;
            if let Some(link) = safe_link(meta.self_link.as_deref()) {
                w.create_element("link")
                    .with_attribute(("rel", "self"))
                    .with_attribute(("type", "application/atom+xml"))
                    .with_attribute(("href", link.as_str()))
                    .write_empty()?;
            }
            for row in rows {
                w.create_element("entry")
                    .write_inner_content(|w| write_entry(w, row, meta))?;
            }
            Ok(())
        })?;
    let out = w.into_inner();
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}

fn write_entry<W: Write>(
    w: &mut Writer<W>,
    row: &MatchRow,
    meta: &FeedMeta,
) -> std::io::Result<()> {
    text_element(w, "id", &meta.story_id(row.story))?;
    w.create_element("title")
        .with_attribute(("type", "text"))
        .write_text_content(BytesText::new(&xml_safe(&row.title)))?;
    text_element(w, "updated", &entry_updated(row))?;
    if let Some(p) = published(row) {
        text_element(w, "published", &p)?;
    }
    if let Some(link) = safe_link(row.link.as_deref()) {
        w.create_element("link")
            .with_attribute(("rel", "alternate"))
            .with_attribute(("href", link.as_str()))
            .write_empty()?;
    }
    for (scheme, names) in [(RULE_SCHEME, &row.rules), (FEED_SCHEME, &row.feeds)] {
        for name in names {
            let name = xml_safe(name);
            w.create_element("category")
                .with_attribute(("scheme", scheme))
                .with_attribute(("term", name.as_str()))
                .write_empty()?;
        }
    }
    let summary = summary_of(row);
    if !summary.is_empty() {
        w.create_element("summary")
            .with_attribute(("type", "text"))
            .write_text_content(BytesText::new(&xml_safe(summary)))?;
    }
    Ok(())
}

fn text_element<W: Write>(w: &mut Writer<W>, name: &str, text: &str) -> std::io::Result<()> {
    w.create_element(name)
        .write_text_content(BytesText::new(&xml_safe(text)))?;
    Ok(())
}

/// Write a JSON Feed 1.1 with one item per row. Rules and feeds are `tags` prefixed `rule:`
/// and `feed:`, and also listed plainly in the `_newswatch` extension object.
pub fn write_json_feed(
    rows: &[MatchRow],
    out: &mut dyn Write,
    meta: &FeedMeta,
) -> Result<(), ExportError> {
    let items: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            let mut item = serde_json::json!({
                "id": meta.story_id(r.story),
                "title": r.title,
                "content_text": summary_of(r),
                "summary": summary_of(r),
                "date_published": published(r).unwrap_or_else(|| rfc3339(&r.first_seen)),
                "date_modified": entry_updated(r),
                "tags": r.rules.iter().map(|x| format!("rule:{x}"))
                    .chain(r.feeds.iter().map(|x| format!("feed:{x}")))
                    .collect::<Vec<_>>(),
                "_newswatch": {
                    "story": r.story,
                    "item_id": r.id,
                    "first_seen": rfc3339(&r.first_seen),
                    "rules": r.rules,
                    "feeds": r.feeds,
                    "terms": r.terms,
                    "status": r.status,
                },
            });
            if let (Some(link), Some(obj)) = (safe_link(r.link.as_deref()), item.as_object_mut()) {
                obj.insert("url".into(), link.into());
            }
            item
        })
        .collect();
    let mut feed = serde_json::json!({
        "version": "https://jsonfeed.org/version/1.1",
        "title": meta.title,
        "authors": [{ "name": "newswatch" }],
        "items": items,
    });
    if let (Some(link), Some(obj)) = (safe_link(meta.self_link.as_deref()), feed.as_object_mut()) {
        obj.insert("feed_url".into(), link.into());
    }
    serde_json::to_writer_pretty(&mut *out, &feed).map_err(std::io::Error::from)?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}

/// Replace `path` with `bytes` atomically: write a temporary file in the same folder, flush it
/// to disk, then rename it over `path`. Readers see the old file or the new one, never a part.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ExportError> {
    crate::atomic::write(path, bytes).map_err(|source| ExportError::File {
        path: path.to_path_buf(),
        source,
    })
}

/// `[output]`: feeds of the stored matches that the daemon rewrites after each poll, so any
/// feed reader can follow newswatch. Paths are already resolved against the config's folder.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutputSettings {
    /// Atom 1.0 file (`[output] atom = "matches.atom"`).
    pub atom: Option<PathBuf>,
    /// JSON Feed 1.1 file (`[output] json_feed = "matches.json"`).
    pub json_feed: Option<PathBuf>,
}

/// Rewrite the `[output]` files (if any) with the newest [`OUTPUT_LIMIT`] matches in `store`
/// (the database at `database`) that are not dismissed. For the daemon, after each poll.
pub fn update_outputs(
    out: &OutputSettings,
    database: &Path,
    store: &Store,
) -> Result<(), ExportError> {
    let meta = FeedMeta::for_database(database, "newswatch matches");
    update_outputs_in(out, meta, &mut crate::store::sql::Sqlite(store.conn()))
}

/// [`update_outputs`] on either backend, the feeds' identity given (`meta`).
pub fn update_outputs_in(
    out: &OutputSettings,
    meta: FeedMeta,
    db: &mut dyn crate::store::sql::Db,
) -> Result<(), ExportError> {
    if out.atom.is_none() && out.json_feed.is_none() {
        return Ok(());
    }
    let rows = crate::store::matches(
        db,
        &MatchFilter {
            statuses: SHOWN_STATUSES.iter().map(|s| s.to_string()).collect(),
            ..MatchFilter::default()
        },
    )?;
    let rows = per_story(&rows, OUTPUT_LIMIT);
    if let Some(path) = &out.atom {
        let mut buf = Vec::new();
        write_atom(&rows, &mut buf, &meta)?;
        write_atomic(path, &buf)?;
    }
    if let Some(path) = &out.json_feed {
        let mut buf = Vec::new();
        write_json_feed(&rows, &mut buf, &meta)?;
        write_atomic(path, &buf)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i64, title: &str) -> MatchRow {
        MatchRow {
            id,
            title: title.into(),
            link: Some(format!("https://news.example/{id}?a=1&b=2")),
            published: Some("2015-11-09T10:00:00.000Z".into()),
            first_seen: "2015-11-09T11:00:00.000Z".into(),
            feeds: vec!["uk & world".into()],
            rules: vec!["nca".into()],
            terms: vec!["NCA".into()],
            snippet: "…the <NCA> said…".into(),
            status: "new".into(),
            story: id,
            story_size: 1,
            story_updated: "2015-11-09T11:00:00.000Z".into(),
            summary: String::new(),
            content: String::new(),
        }
    }

    /// Issue 12 item 13: a published year 99999 made the Atom and JSON Feed files invalid.
    #[test]
    fn exports_never_write_a_date_outside_rfc_3339() {
        let mut r = row(1, "NCA");
        r.published = Some("+99999-01-01T00:00:00Z".into());
        let meta = FeedMeta::for_database(Path::new("/x/news.db"), "t");
        let mut atom = Vec::new();
        write_atom(std::slice::from_ref(&r), &mut atom, &meta).unwrap();
        let atom = String::from_utf8(atom).unwrap();
        assert!(
            !atom.contains("99999") && !atom.contains("<published>"),
            "{atom}"
        );
        let mut json = Vec::new();
        write_json_feed(std::slice::from_ref(&r), &mut json, &meta).unwrap();
        let json = String::from_utf8(json).unwrap();
        assert!(!json.contains("99999"), "{json}");
        assert!(
            json.contains("\"date_published\": \"2015-11-09T11:00:00Z\""),
            "{json}"
        );
    }

    #[test]
    fn atom_is_escaped_and_reads_back_with_feed_rs() {
        let meta = FeedMeta::for_database(Path::new("/tmp/x.db"), "m");
        let mut buf = Vec::new();
        let rows = [row(7, "<script>alert(1)</script> & \u{1}co")];
        write_atom(&rows, &mut buf, &meta).unwrap();
        let text = String::from_utf8(buf.clone()).unwrap();
        assert!(text.contains("&lt;script&gt;"), "{text}");
        assert!(!text.contains('\u{1}'));
        let feed = feed_rs::parser::parse(&buf[..]).unwrap();
        assert_eq!(feed.entries.len(), 1);
        let e = &feed.entries[0];
        assert_eq!(
            e.title.as_ref().unwrap().content,
            "<script>alert(1)</script> & co"
        );
        assert_eq!(e.id, meta.story_id(7));
        assert_eq!(e.links[0].href, "https://news.example/7?a=1&b=2");
        let cats: Vec<_> = e
            .categories
            .iter()
            .map(|c| (c.scheme.clone().unwrap_or_default(), c.term.clone()))
            .collect();
        assert!(
            cats.contains(&(RULE_SCHEME.into(), "nca".into())),
            "{cats:?}"
        );
        assert!(
            cats.contains(&(FEED_SCHEME.into(), "uk & world".into())),
            "{cats:?}"
        );
    }

    #[test]
    fn json_feed_has_required_fields() {
        let meta = FeedMeta::for_database(Path::new("a.db"), "m");
        let mut buf = Vec::new();
        write_json_feed(&[row(3, "t")], &mut buf, &meta).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(v["version"], "https://jsonfeed.org/version/1.1");
        assert_eq!(v["items"][0]["id"], meta.story_id(3));
        assert_eq!(v["items"][0]["date_published"], "2015-11-09T10:00:00Z");
        assert_eq!(v["items"][0]["tags"][0], "rule:nca");
        let feed = feed_rs::parser::parse(&buf[..]).unwrap();
        assert_eq!(feed.entries[0].title.as_ref().unwrap().content, "t");
    }

    #[test]
    fn export_writes_only_http_links_even_obfuscated_ones() {
        let hostile = [
            "javascript:alert(1)",
            " JavaScript:alert(1)",
            "java\tscript:alert(1)",
            "java\nscript:alert(1)",
            "\u{1}javascript:alert(1)",
            "&#106;avascript:alert(1)",
            "&#x6A;avascript:alert(1)",
            "javascript&colon;alert(1)",
            "vbscript:msgbox(1)",
            "data:text/html,<script>alert(1)</script>",
            "//evil.example/x",
            "file:///etc/passwd",
        ];
        let meta = FeedMeta::for_database(Path::new("/tmp/x.db"), "m");
        let rows: Vec<MatchRow> = hostile
            .iter()
            .enumerate()
            .map(|(i, l)| MatchRow {
                link: Some(l.to_string()),
                ..row(i as i64, "t")
            })
            .collect();
        let mut atom = Vec::new();
        write_atom(&rows, &mut atom, &meta).unwrap();
        let mut json = Vec::new();
        write_json_feed(&rows, &mut json, &meta).unwrap();
        for out in [&atom, &json] {
            let text = String::from_utf8_lossy(out).to_lowercase();
            for bad in ["script", "data:", "file:", "evil", "#106", "#x6a", "colon"] {
                assert!(!text.contains(bad), "{bad:?} in {text}");
            }
        }
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert!(
            v["items"]
                .as_array()
                .unwrap()
                .iter()
                .all(|i| i.get("url").is_none())
        );

        // A tab or newline inside an http(s) scheme is what a browser strips too: the link is
        // written in the one form both read, without the control character.
        let rows = [MatchRow {
            link: Some("ht\ttps://news.example/a b\"x".into()),
            ..row(1, "t")
        }];
        let mut json = Vec::new();
        write_json_feed(&rows, &mut json, &meta).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v["items"][0]["url"], "https://news.example/a%20b%22x");
    }

    #[test]
    fn database_ids_differ_per_file_and_are_stable() {
        let a = FeedMeta::for_database(Path::new("/x/a.db"), "t");
        let b = FeedMeta::for_database(Path::new("/x/b.db"), "t");
        assert_ne!(a.id, b.id);
        assert_eq!(a.id, FeedMeta::for_database(Path::new("/x/a.db"), "u").id);
    }

    #[test]
    fn write_atomic_replaces_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/out.atom");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(dir.path().join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("out.atom")]);
        // A parent that is a file: an error naming the path, not a panic.
        let e = write_atomic(&path.join("x"), b"x").unwrap_err();
        assert!(e.to_string().contains("out.atom"), "{e}");
    }
}
