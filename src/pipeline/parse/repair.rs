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
//!   dispatches on 2.0/0.91/0.92).
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
            i += 2;
        } else if rest.get(1).is_some_and(|&c| is_name_start(c)) {
            let name_end = i + 1 + rest[1..].iter().take_while(|&&c| is_name_char(c)).count();
            let qname = src.get(i + 1..name_end).unwrap_or("");
            if root.is_none() {
                let local = qname
                    .rsplit(':')
                    .next()
                    .unwrap_or(qname)
                    .to_ascii_lowercase();
                if matches!(local.as_str(), "html" | "head" | "body") {
                    return Scan::Html;
                }
                if local == "rss" || local == "rdf" {
                    fix_root(&mut w, b, name_end, local == "rss");
                }
                root = Some(local);
            } else if qname
                .strip_prefix("media:")
                .is_some_and(|l| MEDIA_TEXT_ELEMENTS.contains(&l))
            {
                fill_empty_media(&mut w, b, i, qname);
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
    }
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
///   knows the RSS 1.0 namespace, whose structure 0.90 shares, so that URI is substituted.
fn fix_root(w: &mut Writer<'_>, b: &[u8], name_end: usize, is_rss: bool) {
    let mut edits: Vec<(usize, usize, &str)> = Vec::new();
    let mut has_version = false;
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
