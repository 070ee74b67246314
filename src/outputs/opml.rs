//! OPML: the subscription-list format every feed reader imports and exports.
//!
//! It exists so people can bring the feed lists they already keep elsewhere (Miniflux,
//! FreshRSS, newsboat, …) into newswatch without retyping them, and take newswatch's list back
//! out. [`parse`] reads outlines (nested folders too) into [`OpmlFeed`]s, with the folder path
//! kept as tags and a line:column for every feed so mistakes are reported like config errors;
//! [`write`] produces OPML 2.0 with tags as nested folders; [`unique_names`] gives feeds names
//! that are unique across a whole config.
//!
//! What the importers we target read (from their import code), and so what [`write`] emits:
//! Miniflux takes any outline with a non-empty `xmlUrl`, names it from `title` else `text`, and
//! uses the nearest enclosing folder's title as its category; FreshRSS needs `text` on feeds and
//! folders and flattens nested folders into the top one; newsboat (`-i`) takes `xmlUrl` (or
//! `url`) and joins folder names with `/` into one tag. So every feed outline carries
//! `type="rss"`, `text`, `title` and `xmlUrl`, and every folder both `text` and `title`.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;

use quick_xml::XmlVersion;
use quick_xml::events::{BytesDecl, BytesStart, BytesText, Event};
use quick_xml::{Reader, Writer};

/// One feed found in an OPML document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpmlFeed {
    /// `title`, else `text`, trimmed (may be empty: see [`unique_names`]).
    pub name: String,
    /// The `xmlUrl` attribute, trimmed (not yet checked to be a URL).
    pub xml_url: String,
    /// The `htmlUrl` attribute, if any.
    pub html_url: Option<String>,
    /// Names of the enclosing folders, outermost first.
    pub folders: Vec<String>,
    /// 1-based line and column of the feed's `<outline`.
    pub position: (usize, usize),
}

/// Why an OPML document could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", position.map(|(l, c)| format!("{l}:{c}: ")).unwrap_or_default())]
pub struct OpmlError {
    /// 1-based line and column, when known.
    pub position: Option<(usize, usize)>,
    pub message: String,
}

/// A feed to write out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportFeed {
    pub name: String,
    pub xml_url: String,
    pub html_url: Option<String>,
    /// Folder path, outermost first (newswatch's tags).
    pub folders: Vec<String>,
}

/// Parse an OPML document (1.0 or 2.0). Outlines with an `xmlUrl` (any letter case) are feeds;
/// outlines without one are folders whose `text` (else `title`) names them.
pub fn parse(text: &str) -> Result<Vec<OpmlFeed>, OpmlError> {
    let lines = LineIndex::new(text);
    let mut reader = Reader::from_str(text);
    // Real-world OPML is written by hand as often as by programs: be lenient where it is
    // harmless, strict where it would change meaning.
    reader.config_mut().allow_dangling_amp = false;
    reader.config_mut().check_end_names = true;

    let mut feeds = Vec::new();
    // One slot per open <outline>: `Some(name)` for a folder, `None` for a feed with children.
    let mut open: Vec<Option<String>> = Vec::new();
    let mut saw_root = false;
    loop {
        let start = usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX);
        let event = reader.read_event().map_err(|e| OpmlError {
            position: Some(
                lines.position(usize::try_from(reader.error_position()).unwrap_or(usize::MAX)),
            ),
            message: format!("malformed XML: {e}"),
        })?;
        let (element, has_children) = match &event {
            Event::Start(e) => (e, true),
            Event::Empty(e) => (e, false),
            Event::End(e) => {
                if e.local_name().as_ref().eq_ignore_ascii_case("outline") {
                    open.pop();
                }
                continue;
            }
            Event::Eof => break,
            _ => continue,
        };
        // `start` points just before any text preceding the tag; move to the `<` itself.
        let tag_at = text
            .get(start..)
            .and_then(|rest| rest.find('<'))
            .map_or(start, |i| start + i);
        let name = element.local_name();
        if !saw_root {
            if !name.as_ref().eq_ignore_ascii_case("opml") {
                return Err(OpmlError {
                    position: Some(lines.position(tag_at)),
                    message: format!(
                        "not an OPML document (root element is <{}>, expected <opml>)",
                        name.as_ref()
                    ),
                });
            }
            saw_root = true;
            continue;
        }
        if !name.as_ref().eq_ignore_ascii_case("outline") {
            continue;
        }
        let attrs = attributes(element).map_err(|message| OpmlError {
            position: Some(lines.position(tag_at)),
            message,
        })?;
        let get = |key: &str| {
            attrs
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v.trim().to_string())
        };
        let title = get("title").filter(|s| !s.is_empty());
        let label = title.or_else(|| get("text")).unwrap_or_default();
        match get("xmlUrl").filter(|u| !u.is_empty()) {
            Some(xml_url) => {
                feeds.push(OpmlFeed {
                    name: one_line(&label),
                    xml_url,
                    html_url: get("htmlUrl").filter(|u| !u.is_empty()),
                    folders: open.iter().flatten().cloned().collect(),
                    position: lines.position(tag_at),
                });
                if has_children {
                    open.push(None);
                }
            }
            None => {
                if has_children {
                    // Folders name themselves by `text` first (the OPML spec's required
                    // attribute), as Miniflux, FreshRSS and newsboat read them.
                    let folder = get("text")
                        .filter(|s| !s.is_empty())
                        .or_else(|| get("title"))
                        .map(|s| one_line(&s))
                        .filter(|s| !s.is_empty());
                    open.push(folder);
                }
            }
        }
    }
    if !saw_root {
        return Err(OpmlError {
            position: None,
            message: "not an OPML document (no <opml> element)".into(),
        });
    }
    Ok(feeds)
}

/// Whether a feed URL read from an OPML document may be polled: http(s) only.
///
/// An OPML file is untrusted input (exported by another program, shared, downloaded), so a
/// `file://` URL in it would let whoever wrote the file make newswatch read local files and
/// store whatever matches. Local files stay available, but only from the operator's own TOML
/// (`[[feeds]] url = "file://…"`): that is the way to allow one, and the error says so.
pub fn check_feed_url(url: &url::Url) -> Result<(), String> {
    match url.scheme() {
        "http" | "https" => Ok(()),
        "file" => Err(format!(
            "{url}: file:// URLs are not accepted from an OPML file (it is untrusted input); \
             to poll a local file, add it as a [[feeds]] table in the TOML config"
        )),
        other => Err(format!(
            "unsupported URL scheme {other:?} (use http or https)"
        )),
    }
}

/// Attributes of an element, unescaped, in document order.
fn attributes(element: &BytesStart<'_>) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for attr in element.attributes() {
        let attr = attr.map_err(|e| format!("bad attribute: {e}"))?;
        let key = attr.key.local_name().as_ref().to_string();
        let value = attr
            .normalized_value(XmlVersion::Implicit1_0)
            .map_err(|e| format!("bad value of attribute {key:?}: {e}"))?;
        out.push((key, value.into_owned()));
    }
    Ok(out)
}

/// Whitespace runs (newlines included) become one space; ends trimmed.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Give each of `wanted` a name unique among themselves and not in `taken`: a name already in
/// use gets `-2`, `-3`, … (the first free one). An empty name becomes `fallback(i)`'s value
/// first. Names chosen are added to `taken`.
pub fn unique_names(
    wanted: &[String],
    taken: &mut HashSet<String>,
    fallback: impl Fn(usize) -> String,
) -> Vec<String> {
    let mut out = Vec::with_capacity(wanted.len());
    for (i, name) in wanted.iter().enumerate() {
        let base = if name.trim().is_empty() {
            fallback(i)
        } else {
            name.trim().to_string()
        };
        let mut candidate = base.clone();
        let mut n = 2usize;
        while taken.contains(&candidate) {
            candidate = format!("{base}-{n}");
            n += 1;
        }
        taken.insert(candidate.clone());
        out.push(candidate);
    }
    out
}

/// A folder of the output tree.
#[derive(Default)]
struct Folder<'a> {
    /// Subfolders in order of first appearance.
    order: Vec<&'a str>,
    children: BTreeMap<&'a str, Folder<'a>>,
    feeds: Vec<&'a ExportFeed>,
}

impl<'a> Folder<'a> {
    fn insert(&mut self, path: &'a [String], feed: &'a ExportFeed) {
        match path.split_first() {
            None => self.feeds.push(feed),
            Some((head, rest)) => {
                let name = head.as_str();
                if !self.children.contains_key(name) {
                    self.order.push(name);
                }
                self.children.entry(name).or_default().insert(rest, feed);
            }
        }
    }
}

/// Write OPML 2.0: feeds as `<outline type="rss" text title xmlUrl [htmlUrl]/>`, folders as
/// `<outline text title>` around them (both attributes, as the readers that import it differ
/// on which they read). Folders come before loose feeds at each level, in first-seen order.
pub fn write(feeds: &[ExportFeed], title: &str, out: &mut dyn Write) -> std::io::Result<()> {
    let mut root = Folder::default();
    for f in feeds {
        let path: &[String] = &f.folders;
        root.insert(path, f);
    }
    let mut w = Writer::new_with_indent(out, b' ', 2);
    w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
    w.create_element("opml")
        .with_attribute(("version", "2.0"))
        .write_inner_content(|w| {
            w.create_element("head").write_inner_content(|w| {
                w.create_element("title")
                    .write_text_content(BytesText::new(&xml_safe(title)))?;
                Ok(())
            })?;
            w.create_element("body")
                .write_inner_content(|w| write_folder(w, &root))?;
            Ok(())
        })?;
    let out = w.into_inner();
    out.write_all(b"\n")?;
    out.flush()
}

fn write_folder<W: Write>(w: &mut Writer<W>, folder: &Folder<'_>) -> std::io::Result<()> {
    for name in &folder.order {
        let Some(child) = folder.children.get(name) else {
            continue;
        };
        let name = xml_safe(name);
        w.create_element("outline")
            .with_attribute(("text", name.as_str()))
            .with_attribute(("title", name.as_str()))
            .write_inner_content(|w| write_folder(w, child))?;
    }
    for f in &folder.feeds {
        let name = xml_safe(&f.name);
        let url = xml_safe(&f.xml_url);
        let mut e = w
            .create_element("outline")
            .with_attribute(("type", "rss"))
            .with_attribute(("text", name.as_str()))
            .with_attribute(("title", name.as_str()))
            .with_attribute(("xmlUrl", url.as_str()));
        let html = f.html_url.as_deref().map(xml_safe);
        if let Some(h) = &html {
            e = e.with_attribute(("htmlUrl", h.as_str()));
        }
        e.write_empty()?;
    }
    Ok(())
}

/// Drop characters XML 1.0 cannot carry even escaped (C0 controls other than tab, newline and
/// carriage return; U+FFFE, U+FFFF).
pub fn xml_safe(s: &str) -> String {
    s.chars()
        .filter(|&c| {
            !matches!(c, '\u{0}'..='\u{8}' | '\u{b}' | '\u{c}' | '\u{e}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}')
        })
        .collect()
}

/// Byte offset → 1-based (line, column in characters).
pub(crate) struct LineIndex<'a> {
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { text, starts }
    }

    pub(crate) fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.starts.partition_point(|&s| s <= offset).max(1);
        let start = self.starts.get(line - 1).copied().unwrap_or(0);
        let col = self
            .text
            .get(start..offset)
            .map(|s| s.chars().count())
            .unwrap_or(0);
        (line, col + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<opml version="2.0">
  <head><title>subs</title></head>
  <body>
    <outline text="News" title="News">
      <outline text="UK">
        <outline type="rss" text="BBC &amp; co" xmlUrl="http://bbc.example/rss?a=1&amp;b=2"/>
      </outline>
      <outline type="rss" title="Le Monde" text="lm" xmlurl="https://lemonde.example/rss"/>
    </outline>
    <outline type="rss" text="Loose" xmlUrl="https://loose.example/feed" htmlUrl="https://loose.example/"/>
    <outline text="Empty folder"/>
  </body>
</opml>
"#;

    #[test]
    fn parses_nested_folders_names_and_positions() {
        let feeds = parse(SAMPLE).unwrap();
        assert_eq!(feeds.len(), 3);
        assert_eq!(feeds[0].name, "BBC & co");
        assert_eq!(feeds[0].xml_url, "http://bbc.example/rss?a=1&b=2");
        assert_eq!(feeds[0].folders, vec!["News", "UK"]);
        assert_eq!(feeds[0].position, (7, 9));
        assert_eq!(feeds[1].name, "Le Monde", "title wins over text");
        assert_eq!(feeds[1].folders, vec!["News"]);
        assert_eq!(feeds[2].folders, Vec::<String>::new());
        assert_eq!(feeds[2].html_url.as_deref(), Some("https://loose.example/"));
    }

    #[test]
    fn errors_carry_line_and_column() {
        let e = parse("<opml>\n<body>\n  <outline text=\"a\" xmlUrl=\"x\">\n</body></opml>")
            .unwrap_err();
        assert!(e.position.is_some(), "{e}");
        assert!(e.message.contains("malformed XML"), "{e}");
        let e = parse("<html><body/></html>").unwrap_err();
        assert_eq!(e.position, Some((1, 1)));
        assert!(e.message.contains("not an OPML document"), "{e}");
        let e = parse("<opml><body>\n <outline text=\"a &bogus; b\" xmlUrl=\"x\"/></body></opml>")
            .unwrap_err();
        assert_eq!(e.position, Some((2, 2)), "{e}");
    }

    #[test]
    fn unique_names_suffix_and_avoid_taken() {
        let mut taken: HashSet<String> = ["toml".to_string()].into();
        let names = unique_names(
            &[
                "a".into(),
                "a".into(),
                "toml".into(),
                "".into(),
                "a-2".into(),
            ],
            &mut taken,
            |i| format!("host{i}"),
        );
        assert_eq!(names, vec!["a", "a-2", "toml-2", "host3", "a-2-2"]);
    }

    #[test]
    fn write_then_parse_round_trips_odd_characters() {
        let feeds = vec![
            ExportFeed {
                name: "Q \"quoted\" <b> & 'x' — ünïcødé".into(),
                xml_url: "http://e.example/a?x=1&y=<2>".into(),
                html_url: None,
                folders: vec!["Top & <Co>".into(), "Ünter".into()],
            },
            ExportFeed {
                name: "plain".into(),
                xml_url: "http://e.example/b".into(),
                html_url: Some("http://e.example/".into()),
                folders: vec![],
            },
        ];
        let mut buf = Vec::new();
        write(&feeds, "t\u{1}itle", &mut buf).unwrap();
        let text = String::from_utf8(buf).unwrap();
        assert!(text.contains("&amp;") && text.contains("&lt;"), "{text}");
        let back = parse(&text).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[0].name, feeds[0].name);
        assert_eq!(back[0].xml_url, feeds[0].xml_url);
        assert_eq!(back[0].folders, feeds[0].folders);
        assert_eq!(back[1].html_url, feeds[1].html_url);
    }
}
