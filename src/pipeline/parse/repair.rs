//! One linear pass over the decoded text that repairs what makes quick-xml (and thus feed-rs)
//! reject a whole document, and sniffs the root element on the way.
//!
//! Repairs, all outside CDATA sections, comments, processing instructions and the DOCTYPE:
//! - a bare `&` (not starting a well-formed reference) becomes `&amp;`;
//! - an HTML named entity (`&nbsp;`, `&eacute;` …) becomes numeric character references,
//!   since XML only predefines five; an unknown name becomes literal text (`&amp;name;`).
//!   This also means entities *declared in a DOCTYPE* are never expanded (billion laughs,
//!   external `SYSTEM` entities): they come out as literal text;
//! - a numeric reference to a character XML forbids (`&#0;`, surrogates) becomes U+FFFD;
//! - a `<` that cannot start markup (`a < b`) becomes `&lt;`;
//! - a root `<rss>` with no or an unknown `version` gets `version="2.0"` (feed-rs only
//!   dispatches on 2.0/0.91/0.92);
//! - raw (unescaped, non-CDATA) HTML inside RSS text elements and Atom text/html constructs
//!   becomes escaped text (feed-rs keeps only the text before the first child element);
//! - Atom 0.3 becomes Atom 1.0; Atom 1.0 MIME-typed text constructs get 1.0's types (base64
//!   content decoded); RSS 1.0 items get their `rdf:about` as a link; RSS 2.0 `dc:title`,
//!   `dc:description`, `xhtml:body` … are renamed to elements feed-rs reads; namespace URIs
//!   spelt otherwise than feed-rs expects are corrected.
//!
//! Every close-tag search is cached per element name ([`CloseCache`]), so hostile input
//! (thousands of unclosed elements) keeps the pass linear.
//!
//! Copy-on-write: when nothing needs repairing (the common case) the input is returned
//! borrowed, so valid feeds cost one scan and no allocation.

use std::borrow::Cow;

/// Result of the pass.
pub(crate) enum Scan<'a> {
    /// Looks like XML; here is the (possibly repaired) text and the root element's local
    /// name (lower-cased), if one was found.
    Xml {
        text: Cow<'a, str>,
        root: Option<String>,
        /// How many `<item>`/`<entry>` start tags the document has (a document with some
        /// that yields no entries is a failure, never "ok, 0 entries").
        entry_elements: usize,
    },
    /// The document is an HTML page (root `<html>`/`<head>`/`<body>` or an HTML DOCTYPE).
    Html,
}

/// RSS versions feed-rs dispatches on; anything else is parsed as 2.0 (0.93/0.94/2.01 …
/// are all 2.0-compatible in practice).
const RSS_VERSIONS: [&str; 3] = ["2.0", "0.91", "0.92"];

/// Media RSS elements feed-rs requires text in (only these are touched, so the many
/// self-closing `<media:thumbnail/>`/`<media:content/>` keep the zero-copy path).
const MEDIA_TEXT_ELEMENTS: [&str; 6] = [
    "title",
    "description",
    "text",
    "keywords",
    "credit",
    "copyright",
];

/// RSS elements whose content is text (often HTML). feed-rs reads only their text nodes, so
/// raw (unescaped, not CDATA) HTML children — `<description><p>The police …</p></description>`
/// — lose their text. The repair turns such children into escaped text, as feedparser reads
/// them; normalise then strips the tags as it does for escaped HTML.
const RSS_TEXT_ELEMENTS: [&str; 12] = [
    "xhtml:body",
    "body",
    "fullitem",
    "title",
    "description",
    "dc:title",
    "dc:description",
    "content:encoded",
    "itunes:summary",
    "itunes:subtitle",
    "media:title",
    "media:description",
];

/// Atom 0.3's namespace; feed-rs reads only Atom 1.0, whose structure 0.3 shares.
const ATOM03_NS: &str = "http://purl.org/atom/ns#";
const ATOM10_NS: &str = "http://www.w3.org/2005/Atom";

/// Atom 0.3 element names and their Atom 1.0 equivalents (as feedparser maps them).
const ATOM03_RENAMES: [(&str, &str); 4] = [
    ("issued", "published"),
    ("modified", "updated"),
    ("tagline", "subtitle"),
    ("copyright", "rights"),
];

/// Atom 0.3 text constructs, whose `type` is a MIME type and whose `mode` says how the
/// content is encoded (`xml`, `escaped`, `base64`).
const ATOM03_TEXT: [&str; 5] = ["title", "summary", "content", "tagline", "copyright"];

/// What the root element says about how to repair the rest.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Dialect {
    /// RSS 0.91–2.0 (`<rss>`): text elements may hold raw HTML.
    Rss2,
    /// RSS 0.90/1.0 (`<rdf:RDF>`): likewise; items may be identified only by `rdf:about`.
    Rdf,
    /// Atom 0.3, mapped onto Atom 1.0 on the way.
    Atom03,
    /// Atom 1.0: text constructs with a MIME type feed-rs rejects are mapped.
    Atom10,
    /// Anything else: left as is.
    Other,
}

/// RSS 2.0 elements feed-rs does not read, carried to one it does (feedparser reads them
/// all): `(element, replacement, namespace prefix, namespace URI)`. The iTunes elements are
/// read into a media object, which `convert` uses only when the item has no title or no
/// description of its own: a fallback, as feedparser uses them. Inside `media:group` and
/// `media:content` the MediaRSS elements are left alone (feed-rs reads them there).
const RSS2_CARRIED: [(&str, &str, &str, &str); 7] = [
    ("dc:title", "nwitunes:title", "nwitunes", ITUNES_NS),
    ("dc:description", "nwitunes:summary", "nwitunes", ITUNES_NS),
    ("media:title", "nwitunes:title", "nwitunes", ITUNES_NS),
    (
        "media:description",
        "nwitunes:summary",
        "nwitunes",
        ITUNES_NS,
    ),
    // feedparser's item bodies (RSS 2.0 `xhtml:body`, and its older `body`/`fullitem`).
    ("xhtml:body", "nwcontent:encoded", "nwcontent", CONTENT_NS),
    ("body", "nwcontent:encoded", "nwcontent", CONTENT_NS),
    ("fullitem", "nwcontent:encoded", "nwcontent", CONTENT_NS),
];

const ITUNES_NS: &str = "http://www.itunes.com/dtds/podcast-1.0.dtd";
const CONTENT_NS: &str = "http://purl.org/rss/1.0/modules/content/";
const RSS10_NS: &str = "http://purl.org/rss/1.0/";

/// Namespace URIs publishers spell differently from the one feed-rs compares with exactly
/// (Apple's own documentation long had `DTDs`): `(as found, ASCII case-insensitively; as
/// feed-rs knows it)`.
const NS_ALIASES: [(&str, &str); 4] = [
    (ITUNES_NS, ITUNES_NS),
    ("https://www.itunes.com/dtds/podcast-1.0.dtd", ITUNES_NS),
    (
        "http://search.yahoo.com/mrss",
        "http://search.yahoo.com/mrss/",
    ),
    (
        "https://search.yahoo.com/mrss/",
        "http://search.yahoo.com/mrss/",
    ),
];

/// RSS namespaces a prefixed `<r:rss>` may bind (feed-rs reads RSS elements only without
/// a namespace or in RSS 1.0's).
const RSS2_NAMESPACES: [&str; 2] = [
    "http://backend.userland.com/rss2",
    "http://blogs.law.harvard.edu/tech/rss",
];

/// Atom 1.0 text constructs (and content).
const ATOM10_TEXT: [&str; 5] = ["title", "summary", "subtitle", "rights", "content"];

/// Longest entity name we consider (the longest HTML entity name is 31 characters).
const MAX_ENTITY_NAME: usize = 32;

pub(crate) fn scan(src: &str) -> Scan<'_> {
    let b = src.as_bytes();
    let mut w = Writer {
        src,
        out: None,
        copied: 0,
    };
    let mut root: Option<String> = None;
    let mut dialect = Dialect::Other;
    let mut entry_elements = 0usize;
    let mut closes = CloseCache::default();
    // RSS 1.0 `rdf:about` of the item being read: feed-rs drops items without a `<link>`, so
    // the item's own URI is given to it as one (after any link of its own, which comes first).
    let mut about: Option<(usize, usize)> = None;
    // A close tag to rename (its `<`, the new name), for elements carried to another name.
    let mut close_rename: Option<(usize, &'static str)> = None;
    // How many MediaRSS containers (`media:group`, `media:content`) we are inside: their
    // title/description are read by feed-rs there, so they are not carried elsewhere.
    let mut media_depth = 0usize;
    let mut i = 0;
    while i < b.len() {
        // Jump to the next byte of interest.
        match memchr::memchr2(b'<', b'&', &b[i..]) {
            Some(p) => i += p,
            None => break,
        }
        if b[i] == b'&' {
            i = entity(&mut w, b, i);
            continue;
        }
        let rest = &b[i..];
        if rest.starts_with(b"<![CDATA[") {
            i = skip_past(b, i + 9, b"]]>");
        } else if rest.starts_with(b"<!--") {
            i = skip_past(b, i + 4, b"-->");
        } else if rest.starts_with(b"<?") {
            let end = skip_past(b, i + 2, b"?>");
            // An XML declaration is only allowed at the very start. A later one (two documents
            // concatenated) is dropped: with another encoding it makes quick-xml panic.
            let is_decl = rest.len() > 5
                && rest[2..5].eq_ignore_ascii_case(b"xml")
                && (rest[5].is_ascii_whitespace() || rest[5] == b'?');
            if is_decl && src.get(..i).is_some_and(|before| !before.trim().is_empty()) {
                w.replace(i, end, "");
            }
            i = end;
        } else if rest.len() >= 9 && rest[..9].eq_ignore_ascii_case(b"<!DOCTYPE") {
            let after = trim_start(&rest[9..]);
            if root.is_none() && after.len() >= 4 && after[..4].eq_ignore_ascii_case(b"html") {
                return Scan::Html;
            }
            i = skip_doctype(b, i + 9);
        } else if rest.starts_with(b"<!") {
            i = skip_past(b, i + 2, b">");
        } else if rest.get(1) == Some(&b'/') {
            if dialect != Dialect::Other {
                let name_end = i + 2 + rest[2..].iter().take_while(|&&c| is_name_char(c)).count();
                let qname = src.get(i + 2..name_end).unwrap_or("");
                let local = local_name(qname);
                if let Some((at, to)) = close_rename.filter(|(at, _)| *at == i) {
                    close_rename = None;
                    w.replace(at + 2, name_end, to);
                } else if qname == "media:group" || qname == "media:content" {
                    media_depth = media_depth.saturating_sub(1);
                } else if dialect == Dialect::Atom03 && !qname.contains(':') {
                    rename_atom03(&mut w, name_end - local.len(), name_end, local);
                } else if local == "item"
                    && let Some((start, end)) = about.take()
                {
                    let link = format!("<link>{}</link>", src.get(start..end).unwrap_or(""));
                    w.replace(i, i, &link);
                }
            }
            i += 2;
        } else if rest.get(1).is_some_and(|&c| is_name_start(c)) {
            let name_end = i + 1 + rest[1..].iter().take_while(|&&c| is_name_char(c)).count();
            let qname = src.get(i + 1..name_end).unwrap_or("");
            let local = local_name(qname);
            if root.is_none() {
                let local = local.to_ascii_lowercase();
                if matches!(local.as_str(), "html" | "head" | "body") {
                    return Scan::Html;
                }
                if local == "rss" || local == "rdf" || local == "feed" {
                    let prefix = qname
                        .len()
                        .checked_sub(local.len() + 1)
                        .map(|n| &qname[..n]);
                    let atom03 = fix_root(&mut w, b, name_end, local == "rss", prefix);
                    dialect = match local.as_str() {
                        "feed" if atom03 => Dialect::Atom03,
                        "feed" => Dialect::Atom10,
                        "rss" => Dialect::Rss2,
                        _ => Dialect::Rdf,
                    };
                }
                root = Some(local);
                i += 1;
                continue;
            }
            if local == "item" || local == "entry" {
                entry_elements += 1;
            }
            let media_text = qname
                .strip_prefix("media:")
                .inspect(|l| {
                    let container = *l == "group" || *l == "content";
                    if container && tag_end(b, i).is_some_and(|gt| b[gt - 1] != b'/') {
                        media_depth += 1;
                    }
                })
                .is_some_and(|l| MEDIA_TEXT_ELEMENTS.contains(&l));
            // Edits must come in document order: a carried element's new name, then the
            // MediaRSS attribute and empty-content fixes, then its content.
            let resume = match dialect {
                Dialect::Rss2 | Dialect::Rdf => {
                    if local == "item" && dialect == Dialect::Rdf {
                        about = tag_end(b, i).and_then(|gt| about_value(b, name_end, gt));
                    }
                    let carried = (dialect == Dialect::Rss2 && media_depth == 0)
                        .then(|| RSS2_CARRIED.iter().find(|c| c.0 == qname))
                        .flatten();
                    let plan = (carried.is_some() || RSS_TEXT_ELEMENTS.contains(&qname))
                        .then(|| text_element_plan(b, i, qname, carried.is_some(), &mut closes))
                        .flatten();
                    let carried = carried.filter(|_| plan.is_some());
                    if let Some(&(_, to, prefix, ns)) = carried {
                        w.replace(i + 1, name_end, &format!("{to} xmlns:{prefix}=\"{ns}\""));
                    }
                    if media_text {
                        fix_media_type(&mut w, b, i, name_end);
                        fill_empty_media(&mut w, b, i, qname);
                    }
                    plan.map(|(gt, close, markup)| {
                        close_rename = carried.map(|c| (close, c.1));
                        if markup == Markup::Raw {
                            escape_region(&mut w, b, gt + 1, close);
                            close
                        } else {
                            gt + 1
                        }
                    })
                }
                Dialect::Atom03 | Dialect::Atom10 => {
                    if media_text {
                        fix_media_type(&mut w, b, i, name_end);
                        fill_empty_media(&mut w, b, i, qname);
                    }
                    let v03 = dialect == Dialect::Atom03;
                    atom_text_start(&mut w, b, i, name_end, qname, v03, &mut closes)
                }
                Dialect::Other => {
                    if media_text {
                        fix_media_type(&mut w, b, i, name_end);
                        fill_empty_media(&mut w, b, i, qname);
                    }
                    None
                }
            };
            if let Some(resume) = resume {
                i = resume;
                continue;
            }
            i += 1;
        } else {
            // `<` followed by whitespace, a digit, `=`, end of input …: never markup.
            w.replace(i, i + 1, "&lt;");
            i += 1;
        }
    }
    Scan::Xml {
        text: w.finish(),
        root,
        entry_elements,
    }
}

fn local_name(qname: &str) -> &str {
    qname.rsplit(':').next().unwrap_or(qname)
}

/// Where the next `</qname>` is, per element name, so that searching for close tags stays
/// linear: a search that found nothing is not repeated, and one that found a close tag
/// further on is reused until the scan passes it.
#[derive(Default)]
struct CloseCache {
    found: Vec<(String, Option<usize>)>,
}

impl CloseCache {
    /// Index of the `<` of the first `</qname` + (`>` or whitespace) at or after `from`.
    fn next(&mut self, b: &[u8], from: usize, qname: &str) -> Option<usize> {
        if let Some((_, hit)) = self.found.iter().find(|(n, _)| n == qname) {
            match *hit {
                None => return None,
                Some(p) if p >= from => return Some(p),
                Some(_) => {}
            }
        }
        let needle = format!("</{qname}");
        let mut at = from;
        let hit = loop {
            let Some(p) = b
                .get(at..)
                .and_then(|r| memchr::memmem::find(r, needle.as_bytes()))
            else {
                break None;
            };
            let p = at + p;
            match b.get(p + needle.len()) {
                Some(&c) if c == b'>' || c.is_ascii_whitespace() => break Some(p),
                _ => at = p + needle.len(),
            }
        };
        match self.found.iter_mut().find(|(n, _)| n == qname) {
            Some(slot) => slot.1 = hit,
            None => self.found.push((qname.to_string(), hit)),
        }
        hit
    }
}

/// The value span of an `rdf:about` attribute in the tag `b[from..gt]`.
fn about_value(b: &[u8], from: usize, gt: usize) -> Option<(usize, usize)> {
    attributes(b, from, gt)
        .into_iter()
        .find(|a| &b[a.name.0..a.name.1] == b"rdf:about")
        .map(|a| a.value)
        .filter(|(s, e)| e > s)
}

/// An RSS text element starting at `i`: where its start tag ends, where its close tag is,
/// and what markup its content has. `None` when there is nothing to do: self-closing, never
/// closed, content that runs into another item (an unclosed element: left alone, so a
/// missing close tag can never swallow the items after it), or — unless the element is to be
/// renamed (`carried`, see [`RSS2_CARRIED`]) — content without raw markup.
fn text_element_plan(
    b: &[u8],
    i: usize,
    qname: &str,
    carried: bool,
    closes: &mut CloseCache,
) -> Option<(usize, usize, Markup)> {
    let gt = tag_end(b, i)?;
    if b[gt - 1] == b'/' {
        return None;
    }
    let close = closes.next(b, gt + 1, qname)?;
    match content_markup(&b[gt + 1..close], qname) {
        Markup::Boundary => None,
        Markup::None if !carried => None,
        markup => Some((gt, close, markup)),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Markup {
    /// Text and CDATA only.
    None,
    /// Elements or comments: HTML that was not escaped.
    Raw,
    /// An item/entry/channel boundary: the element was not closed where it should be.
    Boundary,
}

/// What markup `content` (the content of a `qname` element) has outside CDATA sections.
///
/// Another `qname` start tag inside is a boundary too: the element was not closed before it.
/// Stopping there also keeps the repair linear: a run of unclosed `<description>`s scans
/// each up to the next one, not each up to the one close tag at the end.
fn content_markup(content: &[u8], qname: &str) -> Markup {
    let mut found = Markup::None;
    let mut j = 0;
    while let Some(p) = memchr::memchr(b'<', &content[j..]) {
        let at = j + p;
        let rest = &content[at..];
        if rest.starts_with(b"<![CDATA[") {
            j = match memchr::memmem::find(&rest[9..], b"]]>") {
                Some(q) => at + 9 + q + 3,
                None => return Markup::Boundary,
            };
            continue;
        }
        let name = rest.get(1..).unwrap_or(b"");
        let name = name.strip_prefix(b"/").unwrap_or(name);
        let len = name.iter().take_while(|&&c| is_name_char(c)).count();
        let local = name[..len].rsplit(|&c| c == b':').next().unwrap_or(b"");
        if matches!(local, b"item" | b"entry" | b"channel" | b"rss" | b"feed")
            || (!rest.starts_with(b"</") && &name[..len] == qname.as_bytes())
        {
            return Markup::Boundary;
        }
        if len > 0 || rest.starts_with(b"<!--") {
            found = Markup::Raw;
        }
        j = at + 1;
    }
    found
}

/// MediaRSS text elements take `type="plain"` or `"html"`; feed-rs fails the whole document
/// on anything else (`text/html`, `text`), so other values are mapped onto those two.
fn fix_media_type(w: &mut Writer<'_>, b: &[u8], i: usize, name_end: usize) {
    let Some(gt) = tag_end(b, i) else { return };
    for a in attributes(b, name_end, gt) {
        if &b[a.name.0..a.name.1] != b"type" {
            continue;
        }
        let value = w.src.get(a.value.0..a.value.1).unwrap_or("");
        if value != "plain" && value != "html" {
            let to = if value.to_ascii_lowercase().contains("html") {
                "html"
            } else {
                "plain"
            };
            w.replace(a.value.0, a.value.1, to);
        }
    }
}

/// Rewrite `b[start..end]` as escaped text: every `<` becomes `&lt;`, a CDATA section becomes
/// its content escaped, references are repaired as everywhere else.
fn escape_region(w: &mut Writer<'_>, b: &[u8], start: usize, end: usize) {
    let mut j = start;
    while j < end {
        match memchr::memchr2(b'<', b'&', &b[j..end]) {
            Some(p) => j += p,
            None => break,
        }
        if b[j] == b'&' {
            j = entity(w, b, j);
            continue;
        }
        if b[j..end].starts_with(b"<![CDATA[") {
            let inner = j + 9;
            let stop = memchr::memmem::find(&b[inner..end], b"]]>").map_or(end, |q| inner + q);
            let text = w.src.get(inner..stop).unwrap_or("");
            let escaped = text.replace('&', "&amp;").replace('<', "&lt;");
            let after = (stop + 3).min(end);
            w.replace(j, after, &escaped);
            j = after;
            continue;
        }
        w.replace(j, j + 1, "&lt;");
        j += 1;
    }
}

/// Atom start tag at `i`. Atom 0.3: rename what Atom 1.0 calls otherwise, and turn `type` +
/// `mode` into Atom 1.0's `type`. Atom 1.0: a text construct whose `type` is a MIME type
/// (feed-rs fails the whole document on one) gets the Atom 1.0 value it stands for. Content
/// given in base64 (0.3's `mode="base64"`, 1.0's non-text, non-XML types) is decoded into
/// escaped text. Returns where scanning resumes when the content was rewritten.
fn atom_text_start(
    w: &mut Writer<'_>,
    b: &[u8],
    i: usize,
    name_end: usize,
    qname: &str,
    v03: bool,
    closes: &mut CloseCache,
) -> Option<usize> {
    // Prefixed elements are extensions (`media:title`, `dcterms:modified`), not Atom's.
    if qname.contains(':') {
        return None;
    }
    let local = qname;
    if v03 {
        rename_atom03(w, name_end - local.len(), name_end, local);
    }
    if !(if v03 {
        &ATOM03_TEXT[..]
    } else {
        &ATOM10_TEXT[..]
    })
    .contains(&local)
    {
        return None;
    }
    let gt = tag_end(b, i)?;
    let attrs = attributes(b, name_end, gt);
    let value = |name: &[u8]| {
        attrs
            .iter()
            .find(|a| &b[a.name.0..a.name.1] == name)
            .map(|a| (a, w.src.get(a.value.0..a.value.1).unwrap_or("").trim()))
    };
    if value(b"src").is_some() {
        return None; // out-of-line content: nothing inline to read
    }
    let ty = value(b"type");
    let mime = ty
        .map_or(if v03 { "text/plain" } else { "text" }, |(_, t)| t)
        .to_ascii_lowercase();
    let html = mime.contains("html");
    // The Atom 1.0 type to give the element (`None`: keep what it says), and whether its
    // content is base64.
    let (new_type, base64) = if v03 {
        match value(b"mode")
            .map(|(_, m)| m.to_ascii_lowercase())
            .as_deref()
        {
            Some("escaped") => (Some(if html { "html" } else { "text" }), false),
            Some("base64") => (Some(if html { "html" } else { "text" }), true),
            _ if matches!(mime.as_str(), "text" | "html" | "xhtml") => (None, false),
            _ if html => (Some("xhtml"), false),
            _ => (Some("text"), false),
        }
    } else {
        match mime.as_str() {
            "text" | "html" | "xhtml" | "text/html" => (None, false),
            "" => (Some("text"), false),
            m if m.starts_with("text/") => (Some(if html { "html" } else { "text" }), false),
            m if m.ends_with("+xml") || m.ends_with("/xml") => (Some("xhtml"), false),
            _ => (Some("text"), true),
        }
    };
    if let Some(new_type) = new_type {
        let ty_span = ty.map(|(a, _)| a.value);
        let mode_span = value(b"mode").map(|(a, _)| a.whole);
        let mut edits: Vec<(usize, usize, String)> = Vec::new();
        match ty_span {
            Some((s, e)) => edits.push((s, e, new_type.to_string())),
            None => edits.push((name_end, name_end, format!(" type=\"{new_type}\""))),
        }
        if let Some((s, e)) = mode_span {
            edits.push((s, e, String::new()));
        }
        edits.sort_by_key(|e| e.0);
        for (s, e, with) in edits {
            w.replace(s, e, &with);
        }
    }
    if b[gt - 1] == b'/' || new_type.unwrap_or(mime.as_str()) == "xhtml" {
        return None;
    }
    let close = closes.next(b, gt + 1, qname)?;
    if base64 {
        let decoded = base64_decode(&b[gt + 1..close])?;
        let text = String::from_utf8_lossy(&decoded);
        let escaped = text.replace('&', "&amp;").replace('<', "&lt;");
        w.replace(gt + 1, close, &escaped);
        return Some(close);
    }
    // Text or HTML holding raw (unescaped) markup: feed-rs keeps only the text before the
    // first child element, so the markup is escaped, as in RSS.
    if content_markup(&b[gt + 1..close], qname) != Markup::Raw {
        return None;
    }
    escape_region(w, b, gt + 1, close);
    Some(close)
}

fn rename_atom03(w: &mut Writer<'_>, start: usize, end: usize, local: &str) {
    if let Some((_, to)) = ATOM03_RENAMES.iter().find(|(from, _)| *from == local) {
        w.replace(start, end, to);
    }
}

/// One attribute of a start tag: spans of its name, its value (inside the quotes), and the
/// whole attribute including the whitespace before it.
struct Attr {
    name: (usize, usize),
    value: (usize, usize),
    whole: (usize, usize),
}

/// The quoted attributes of the tag whose name ends at `from` and whose `>` is at `gt`.
fn attributes(b: &[u8], from: usize, gt: usize) -> Vec<Attr> {
    let mut out = Vec::new();
    let mut j = from;
    while j < gt {
        let ws = j;
        while j < gt && b[j].is_ascii_whitespace() {
            j += 1;
        }
        let name_start = j;
        while j < gt && !matches!(b[j], b'=' | b'/') && !b[j].is_ascii_whitespace() {
            j += 1;
        }
        let name = (name_start, j);
        while j < gt && b[j].is_ascii_whitespace() {
            j += 1;
        }
        if b.get(j) != Some(&b'=') {
            j += 1;
            continue;
        }
        j += 1;
        while j < gt && b[j].is_ascii_whitespace() {
            j += 1;
        }
        let Some(&quote) = b.get(j).filter(|&&q| q == b'"' || q == b'\'') else {
            break;
        };
        let Some(len) = b[j + 1..gt].iter().position(|&c| c == quote) else {
            break;
        };
        let value = (j + 1, j + 1 + len);
        j = value.1 + 1;
        out.push(Attr {
            name,
            value,
            whole: (ws, j),
        });
    }
    out
}

/// Standard base64 (whitespace ignored, padding optional); `None` on any other character.
fn base64_decode(text: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in text {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            c if c.is_ascii_whitespace() => continue,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// Handle the `&` at `i`; returns where scanning resumes.
fn entity(w: &mut Writer<'_>, b: &[u8], i: usize) -> usize {
    let rest = &b[i + 1..];
    if rest.first() == Some(&b'#') {
        let (hex, digits_from) = match rest.get(1) {
            Some(b'x') | Some(b'X') => (true, 2),
            _ => (false, 1),
        };
        let digits = rest[digits_from..]
            .iter()
            .take(10)
            .take_while(|c| {
                if hex {
                    c.is_ascii_hexdigit()
                } else {
                    c.is_ascii_digit()
                }
            })
            .count();
        let semi = digits_from + digits;
        if digits == 0 || rest.get(semi) != Some(&b';') {
            w.replace(i, i + 1, "&amp;");
            return i + 1;
        }
        let end = i + 1 + semi + 1;
        let text = std::str::from_utf8(&rest[digits_from..semi]).unwrap_or("");
        let value = u32::from_str_radix(text, if hex { 16 } else { 10 }).ok();
        if !value.is_some_and(is_xml_char) {
            w.replace(i, end, "&#xFFFD;");
        }
        return end;
    }
    let name_len = rest
        .iter()
        .take(MAX_ENTITY_NAME + 1)
        .take_while(|c| c.is_ascii_alphanumeric())
        .count();
    if name_len == 0 || name_len > MAX_ENTITY_NAME || rest.get(name_len) != Some(&b';') {
        w.replace(i, i + 1, "&amp;");
        return i + 1;
    }
    let end = i + 1 + name_len + 1;
    let name = &rest[..name_len];
    if matches!(name, b"lt" | b"gt" | b"amp" | b"quot" | b"apos") {
        return end;
    }
    // Safe: `name` is ASCII alphanumerics, the span is `&name;`.
    let reference = w.src.get(i..end).unwrap_or("");
    let decoded = html_escape::decode_html_entities(reference);
    if decoded != reference && !decoded.is_empty() {
        let mut numeric = String::with_capacity(10 * decoded.chars().count());
        for c in decoded.chars() {
            numeric.push_str(&format!("&#{};", c as u32));
        }
        w.replace(i, end, &numeric);
    } else {
        // Unknown (or DOCTYPE-declared) entity: keep it as literal text, never expand it.
        w.replace(i, i + 1, "&amp;");
    }
    end
}

/// Fix the root element's attributes, `name_end` being just after `<rss` / `<rdf:RDF`:
/// - `<rss>` gets a version feed-rs understands;
/// - `<rss xmlns="…">` (e.g. `http://backend.userland.com/rss2`): feed-rs treats elements
///   in an unknown namespace as foreign and finds no items. RSS 0.9x/2.0 has no namespace,
///   so the default namespace declaration is renamed to an unused prefix;
/// - `<rdf:RDF xmlns="http://my.netscape.com/rdf/simple/0.9/">` (RSS 0.90): feed-rs only
///   knows the RSS 1.0 namespace, whose structure 0.90 shares, so that URI is substituted;
/// - `<feed xmlns="http://purl.org/atom/ns#">` (Atom 0.3): likewise mapped onto Atom 1.0's
///   namespace; returns whether it was (the rest of the document is then mapped too);
/// - `<r:rss xmlns:r="…/rss2">` (RSS in a namespace) and misspelt extension namespaces
///   (`…/DTDs/Podcast-1.0.dtd`) get the URI feed-rs compares with.
fn fix_root(
    w: &mut Writer<'_>,
    b: &[u8],
    name_end: usize,
    is_rss: bool,
    prefix: Option<&str>,
) -> bool {
    let mut edits: Vec<(usize, usize, &str)> = Vec::new();
    let mut has_version = false;
    let mut atom03 = false;
    let mut j = name_end;
    loop {
        while j < b.len() && b[j].is_ascii_whitespace() {
            j += 1;
        }
        if j >= b.len() || b[j] == b'>' || b[j] == b'/' {
            break;
        }
        let attr_start = j;
        while j < b.len() && !matches!(b[j], b'=' | b'>' | b'/') && !b[j].is_ascii_whitespace() {
            j += 1;
        }
        let attr = &b[attr_start..j];
        while j < b.len() && b[j].is_ascii_whitespace() {
            j += 1;
        }
        if b.get(j) != Some(&b'=') {
            continue; // attribute without value: ignore
        }
        j += 1;
        while j < b.len() && b[j].is_ascii_whitespace() {
            j += 1;
        }
        let Some(&quote) = b.get(j).filter(|&&q| q == b'"' || q == b'\'') else {
            break; // unquoted value: give up, the XML parser will complain anyway
        };
        let value_start = j + 1;
        let Some(len) = b[value_start..].iter().position(|&c| c == quote) else {
            break;
        };
        let value_end = value_start + len;
        let value = w.src.get(value_start..value_end).unwrap_or("").trim();
        match attr {
            b"version" if is_rss => {
                has_version = true;
                if !RSS_VERSIONS.contains(&value) {
                    edits.push((value_start, value_end, "2.0"));
                }
            }
            b"xmlns" if is_rss => edits.push((attr_start, attr_start + 5, "xmlns:nwdefault")),
            b"xmlns" if value.starts_with("http://my.netscape.com/rdf/simple/0.9") => {
                edits.push((value_start, value_end, "http://purl.org/rss/1.0/"));
            }
            _ if !is_rss
                && (attr == b"xmlns" || attr.starts_with(b"xmlns:"))
                && value == ATOM03_NS =>
            {
                atom03 = true;
                edits.push((value_start, value_end, ATOM10_NS));
            }
            // `<r:rss xmlns:r="http://backend.userland.com/rss2">`: the RSS elements are all
            // prefixed; bind the prefix to the namespace feed-rs reads RSS elements in.
            _ if is_rss
                && prefix.is_some_and(|p| attr.strip_prefix(b"xmlns:") == Some(p.as_bytes()))
                && RSS2_NAMESPACES.contains(&value.trim_end_matches('/')) =>
            {
                edits.push((value_start, value_end, RSS10_NS));
            }
            _ if attr.starts_with(b"xmlns:") => {
                if let Some((_, to)) = NS_ALIASES
                    .iter()
                    .find(|(from, to)| value.eq_ignore_ascii_case(from) && value != *to)
                {
                    edits.push((value_start, value_end, to));
                }
            }
            _ => {}
        }
        j = value_end + 1;
    }
    if is_rss && !has_version {
        w.replace(name_end, name_end, " version=\"2.0\"");
    }
    for (start, end, with) in edits {
        w.replace(start, end, with);
    }
    atom03
}

/// feed-rs fails the whole document on an empty Media RSS text element
/// (`<media:description></media:description>`, common in YouTube feeds). Give such an
/// element a single space of content. `i` is at the `<` of a start tag named `qname`.
fn fill_empty_media(w: &mut Writer<'_>, b: &[u8], i: usize, qname: &str) {
    let Some(gt) = tag_end(b, i) else { return };
    if gt > i && b[gt - 1] == b'/' {
        let closing = format!("> </{qname}>");
        w.replace(gt - 1, gt + 1, &closing);
    } else if b.get(gt + 1..gt + 3) == Some(b"</") {
        w.replace(gt + 1, gt + 1, " ");
    }
}

/// Index of the `>` closing the tag starting at `i`, skipping quoted attribute values.
fn tag_end(b: &[u8], i: usize) -> Option<usize> {
    let mut quote: Option<u8> = None;
    for (k, &c) in b.iter().enumerate().skip(i) {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == b'"' || c == b'\'' => quote = Some(c),
            None if c == b'>' => return Some(k),
            None => {}
        }
    }
    None
}

/// Index just past the first `end` at or after `from` (or the end of input).
fn skip_past(b: &[u8], from: usize, end: &[u8]) -> usize {
    match b
        .get(from..)
        .and_then(|r| crate::pipeline::parse::decode::find(r, end))
    {
        Some(p) => from + p + end.len(),
        None => b.len(),
    }
}

/// Skip a DOCTYPE, including an internal subset in `[...]` (which may contain `>`).
fn skip_doctype(b: &[u8], mut j: usize) -> usize {
    let mut in_subset = false;
    let mut quote: Option<u8> = None;
    while j < b.len() {
        let c = b[j];
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None => match c {
                b'"' | b'\'' => quote = Some(c),
                b'[' => in_subset = true,
                b']' => in_subset = false,
                b'>' if !in_subset => return j + 1,
                _ => {}
            },
        }
        j += 1;
    }
    b.len()
}

fn trim_start(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|c| c.is_ascii_whitespace()).count();
    &b[n..]
}

fn is_name_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c == b':' || c >= 0x80
}

fn is_name_char(c: u8) -> bool {
    is_name_start(c) || c.is_ascii_digit() || c == b'-' || c == b'.'
}

/// XML 1.0 `Char` production.
fn is_xml_char(v: u32) -> bool {
    matches!(v, 0x9 | 0xA | 0xD | 0x20..=0xD7FF | 0xE000..=0xFFFD | 0x1_0000..=0x10_FFFF)
}

/// Copy-on-write output: allocates only at the first repair.
struct Writer<'a> {
    src: &'a str,
    out: Option<String>,
    copied: usize,
}

impl<'a> Writer<'a> {
    /// Replace `src[start..end]` with `with` (`start == end` inserts).
    fn replace(&mut self, start: usize, end: usize, with: &str) {
        let src = self.src;
        let out = self
            .out
            .get_or_insert_with(|| String::with_capacity(src.len() + src.len() / 32 + 32));
        // All offsets are at ASCII bytes, hence char boundaries; `get` keeps us panic-free.
        out.push_str(src.get(self.copied..start).unwrap_or(""));
        out.push_str(with);
        self.copied = end;
    }

    fn finish(self) -> Cow<'a, str> {
        match self.out {
            None => Cow::Borrowed(self.src),
            Some(mut out) => {
                out.push_str(self.src.get(self.copied..).unwrap_or(""));
                Cow::Owned(out)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed(s: &str) -> String {
        match scan(s) {
            Scan::Xml { text, .. } => text.into_owned(),
            Scan::Html => "HTML".into(),
        }
    }

    #[test]
    fn valid_input_is_borrowed() {
        let s = "<rss version=\"2.0\"><a>&amp;&#233;&#xE9;<![CDATA[& &nbsp;]]></a></rss>";
        assert!(matches!(
            scan(s),
            Scan::Xml {
                text: Cow::Borrowed(_),
                ..
            }
        ));
    }

    #[test]
    fn bare_ampersand_and_html_entities() {
        assert_eq!(
            fixed("<a>AT&T &nbsp;&eacute;&lt;</a>"),
            "<a>AT&amp;T &#160;&#233;&lt;</a>"
        );
        assert_eq!(
            fixed("<a>&bogus; & &#; &#0; &#x41;</a>"),
            "<a>&amp;bogus; &amp; &amp;#; &#xFFFD; &#x41;</a>"
        );
    }

    #[test]
    fn cdata_comments_doctype_untouched() {
        let s = "<!DOCTYPE rss [<!ENTITY x \"a&b\">]><!-- & --><a><![CDATA[&nbsp; & <]]></a>";
        assert_eq!(fixed(s), s);
    }

    #[test]
    fn stray_less_than() {
        assert_eq!(fixed("<a>1 < 2</a>"), "<a>1 &lt; 2</a>");
    }

    #[test]
    fn rss_version_added_or_normalised() {
        assert_eq!(
            fixed("<rss><channel/></rss>"),
            "<rss version=\"2.0\"><channel/></rss>"
        );
        assert_eq!(
            fixed("<rss xmlns:a='x' version='0.94'>"),
            "<rss xmlns:a='x' version='2.0'>"
        );
        assert_eq!(fixed("<rss version=\"0.91\">"), "<rss version=\"0.91\">");
        // Only the root is touched.
        assert_eq!(fixed("<feed><rss/></feed>"), "<feed><rss/></feed>");
    }

    #[test]
    fn foreign_default_namespaces() {
        assert_eq!(
            fixed("<rss xmlns=\"http://backend.userland.com/rss2\" version=\"2.0\">"),
            "<rss xmlns:nwdefault=\"http://backend.userland.com/rss2\" version=\"2.0\">"
        );
        assert_eq!(
            fixed("<rdf:RDF xmlns='http://my.netscape.com/rdf/simple/0.9/'>"),
            "<rdf:RDF xmlns='http://purl.org/rss/1.0/'>"
        );
    }

    #[test]
    fn empty_media_elements_filled() {
        assert_eq!(
            fixed("<f><media:description></media:description><media:title a='/>'/></f>"),
            "<f><media:description> </media:description><media:title a='/>'> </media:title></f>"
        );
        let s = "<f><media:description>x</media:description><media:thumbnail url='u'/></f>";
        assert_eq!(fixed(s), s);
    }

    #[test]
    fn raw_html_in_text_elements_escaped() {
        assert_eq!(
            fixed(
                "<rss><channel><item><description><p>A &amp; <![CDATA[<b>&</b>]]></p></description></item>"
            ),
            "<rss version=\"2.0\"><channel><item><description>&lt;p>A &amp; &lt;b>&amp;&lt;/b>&lt;/p></description></item>"
        );
        // Text and CDATA only: untouched (borrowed).
        let s = "<rss version=\"2.0\"><item><description>a <![CDATA[<b>b</b>]]></description></item></rss>";
        assert_eq!(fixed(s), s);
    }

    #[test]
    fn unclosed_text_element_never_swallows_the_next_item() {
        let s = "<rss version=\"2.0\"><item><description><p>open</item>\
                 <item><description>ok</description></item></rss>";
        assert_eq!(fixed(s), s);
    }

    #[test]
    fn html_sniffed() {
        assert!(matches!(scan("<!DOCTYPE html><html>"), Scan::Html));
        assert!(matches!(
            scan("  <HTML lang=en><title>x</title>"),
            Scan::Html
        ));
        assert!(matches!(
            scan("<?xml version='1.0'?><html xmlns='x'>"),
            Scan::Html
        ));
    }
}
