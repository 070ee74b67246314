//! Character decoding: turn the raw bytes of a feed into UTF-8 text before feed-rs sees it.
//!
//! feed-rs (through quick-xml) only honours a BOM and the XML declaration; a charset that is
//! given only in the HTTP `Content-Type` is ignored, and invalid UTF-8 fails the whole
//! document. We therefore do all decoding here and hand feed-rs a UTF-8 string whose prolog
//! no longer names another encoding (otherwise quick-xml would decode it a second time).
//!
//! Precedence: **BOM > XML declaration > HTTP charset > UTF-8**.
//! RFC 7303 says the HTTP charset wins for `text/xml`, but in practice the header is often a
//! server-wide default (historically ISO-8859-1) stamped on every file, whereas the BOM and
//! the declaration were written by the software that produced the bytes. Putting the
//! document first is what browsers' feed readers and Python's feedparser effectively do for
//! real feeds, and it decodes more real-world feeds correctly. One more guard for the same
//! reason: when only the HTTP header names a legacy charset but the bytes are valid UTF-8
//! containing non-ASCII text, we keep UTF-8 — valid multi-byte UTF-8 essentially never
//! arises by accident from a legacy encoding, while mislabelled UTF-8 is common. The same
//! holds for a declaration naming a single-byte encoding, and for undeclared bytes that are
//! mostly not UTF-8 the reverse: they are read as windows-1252 (see [`decode`]).

use std::borrow::Cow;

use encoding_rs::{Encoding, UTF_8, UTF_16BE, UTF_16LE, WINDOWS_1252};

/// The outcome of decoding: the text, and which encoding was used (for tests/diagnostics).
pub(crate) struct Decoded<'a> {
    pub text: Cow<'a, str>,
    // Read only by the unit tests (which encoding was picked); kept for diagnostics.
    #[cfg_attr(not(test), allow(dead_code))]
    pub encoding: &'static str,
}

/// How far into the document we look for the XML declaration. A real declaration is at
/// the very start (after a BOM / whitespace) and is short.
const PROLOG_SCAN: usize = 512;

/// Decode `body` to UTF-8. `is_json` skips XML-declaration handling (JSON is UTF-8 by RFC 8259).
pub(crate) fn decode<'a>(body: &'a [u8], content_type: Option<&str>, is_json: bool) -> Decoded<'a> {
    // 1. Byte order marks (UTF-32 first: its little-endian BOM starts like UTF-16LE's).
    if let Some(big_endian) = utf32_bom(body) {
        return Decoded {
            text: Cow::Owned(decode_utf32(&body[4..], big_endian)),
            encoding: if big_endian { "UTF-32BE" } else { "UTF-32LE" },
        };
    }
    if let Some((enc, bom_len)) = Encoding::for_bom(body) {
        return finish(enc, &body[bom_len..], is_json);
    }
    // UTF-16/32 without BOM: recognisable from how the first `<` is laid out.
    match body {
        [0, 0, 0, b'<', ..] => {
            return Decoded {
                text: Cow::Owned(decode_utf32(body, true)),
                encoding: "UTF-32BE",
            };
        }
        [b'<', 0, 0, 0, ..] => {
            return Decoded {
                text: Cow::Owned(decode_utf32(body, false)),
                encoding: "UTF-32LE",
            };
        }
        [0, b'<', 0, _, ..] => return finish(UTF_16BE, body, is_json),
        [b'<', 0, _, 0, ..] => return finish(UTF_16LE, body, is_json),
        _ => {}
    }
    // 2. The XML declaration (the document is ASCII-compatible if we can read it).
    if !is_json && let Some(enc) = declared_encoding(body) {
        // A UTF-16 label in a document we just read as ASCII is a lie: ignore it. So is a
        // single-byte label (ISO-8859-1 …) on bytes that are valid UTF-8 with non-ASCII text
        // (see the module doc; feedparser reads such feeds as UTF-8 too).
        let utf8_with_non_ascii = || !body.is_ascii() && std::str::from_utf8(body).is_ok();
        if enc != UTF_16LE && enc != UTF_16BE && !(enc.is_single_byte() && utf8_with_non_ascii()) {
            return finish(enc, body, is_json);
        }
    }
    // 3. The HTTP charset, unless the bytes are clearly UTF-8 (see module doc).
    if let Some(enc) = content_type.and_then(http_charset) {
        let utf8_with_non_ascii = !body.is_ascii() && std::str::from_utf8(body).is_ok();
        if enc != UTF_16LE && enc != UTF_16BE && !utf8_with_non_ascii {
            return finish(enc, body, is_json);
        }
    }
    // 4. Default: UTF-8 — unless the bytes are not UTF-8 and hold more invalid sequences than
    // valid multi-byte ones: then they are in an undeclared single-byte legacy encoding (an
    // ISO-8859-1 feed without a declaration, where a few byte runs are valid UTF-8 by
    // accident), and windows-1252 is the guess feedparser and browsers make.
    // Decoding those bytes as UTF-8 would turn every accented letter into U+FFFD, and the
    // words that hold one could never be matched.
    if !is_json && std::str::from_utf8(body).is_err() && mostly_not_utf8(body) {
        return finish(WINDOWS_1252, body, is_json);
    }
    finish(UTF_8, body, is_json)
}

/// Decode with `enc` (BOM already removed) and, when the text came out of a non-UTF-8
/// encoding or the declaration names one, neutralise the XML declaration.
fn finish<'a>(enc: &'static Encoding, bytes: &'a [u8], is_json: bool) -> Decoded<'a> {
    // Invalid sequences become U+FFFD instead of failing the whole feed.
    let (text, _had_errors) = enc.decode_without_bom_handling(bytes);
    let text = if is_json {
        text
    } else {
        neutralise_declaration(text)
    };
    Decoded {
        text,
        encoding: enc.name(),
    }
}

/// quick-xml re-decodes the input according to the declaration's `encoding`; our text is
/// already UTF-8, so any declaration naming something else is replaced. Fast path: no copy
/// when the declaration is absent or already says UTF-8.
fn neutralise_declaration(text: Cow<'_, str>) -> Cow<'_, str> {
    let Some((start, end, label)) = find_declaration(text.as_bytes()) else {
        return text;
    };
    match label {
        Some(label) if Encoding::for_label(label) != Some(UTF_8) => {}
        _ => return text,
    }
    let mut out = String::with_capacity(text.len());
    out.push_str(&text[..start]);
    out.push_str("<?xml version=\"1.0\"?>");
    out.push_str(&text[end..]);
    Cow::Owned(out)
}

/// Locate `<?xml ... ?>` at the start (after whitespace) and its `encoding` value.
/// Returns (start, end-exclusive, encoding label) as byte offsets.
fn find_declaration(bytes: &[u8]) -> Option<(usize, usize, Option<&[u8]>)> {
    let start = bytes.iter().position(|b| !b.is_ascii_whitespace())?;
    let rest = &bytes[start..];
    if !rest.starts_with(b"<?xml") {
        return None;
    }
    let scan = &rest[..rest.len().min(PROLOG_SCAN)];
    let close = find(scan, b"?>")?;
    let decl = &scan[..close];
    Some((start, start + close + 2, attribute(decl, b"encoding")))
}

/// The encoding named by the XML declaration, if any and known to encoding_rs.
fn declared_encoding(body: &[u8]) -> Option<&'static Encoding> {
    let (_, _, label) = find_declaration(body)?;
    Encoding::for_label(label?)
}

/// The `charset` parameter of a Content-Type header, if known to encoding_rs.
fn http_charset(content_type: &str) -> Option<&'static Encoding> {
    content_type.split(';').skip(1).find_map(|param| {
        let (name, value) = param.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("charset") {
            return None;
        }
        Encoding::for_label(
            value
                .trim()
                .trim_matches(|c| c == '"' || c == '\'')
                .as_bytes(),
        )
    })
}

/// Value of pseudo-attribute `name` inside an XML declaration (`name = "value"` or '...').
fn attribute<'a>(decl: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let at = find(decl, name)?;
    let rest = &decl[at + name.len()..];
    let rest = trim_start(rest).strip_prefix(b"=")?;
    let rest = trim_start(rest);
    let (&quote, rest) = rest.split_first()?;
    if quote != b'"' && quote != b'\'' {
        return None;
    }
    let end = rest.iter().position(|&b| b == quote)?;
    Some(&rest[..end])
}

fn trim_start(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|c| c.is_ascii_whitespace()).count();
    &b[n..]
}

/// What [`mark_lone_surrogates`] puts in place of an unpaired surrogate escape: private-use
/// characters bracketed by NULs, which no real feed text holds.
pub(crate) const LONE_SURROGATE: &str = "\u{0}\u{F8FF}nw-lone-surrogate\u{0}";

/// JSON text with every `\uXXXX` escape of an unpaired UTF-16 surrogate (a high one not
/// followed by a low one, or a lone low one) replaced by an escaped [`LONE_SURROGATE`], so the
/// document parses and the spot can be found and reported. Borrowed when there is none.
/// Linear: one pass over the backslashes.
pub(crate) fn mark_lone_surrogates(text: &str) -> Cow<'_, str> {
    const MARK: &str = "\\u0000\\uF8FFnw-lone-surrogate\\u0000";
    let b = text.as_bytes();
    let hex4 = |at: usize| -> Option<u32> {
        let s = text.get(at..at + 4)?;
        if s.bytes().all(|c| c.is_ascii_hexdigit()) {
            u32::from_str_radix(s, 16).ok()
        } else {
            None
        }
    };
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut i = 0;
    while let Some(p) = b.get(i..).and_then(|r| memchr::memchr(b'\\', r)) {
        let at = i + p;
        if b.get(at + 1) != Some(&b'u') {
            i = at + 2; // another escape (`\\`, `\"` …): skip its character
            continue;
        }
        let Some(unit) = hex4(at + 2) else {
            i = at + 2;
            continue;
        };
        let is_high = (0xD800..0xDC00).contains(&unit);
        let is_low = (0xDC00..0xE000).contains(&unit);
        if is_high
            && b.get(at + 6) == Some(&b'\\')
            && b.get(at + 7) == Some(&b'u')
            && hex4(at + 8).is_some_and(|u| (0xDC00..0xE000).contains(&u))
        {
            i = at + 12; // a proper pair
            continue;
        }
        if is_high || is_low {
            let o = out.get_or_insert_with(|| String::with_capacity(text.len() + 64));
            o.push_str(text.get(copied..at).unwrap_or(""));
            o.push_str(MARK);
            copied = at + 6;
        }
        i = at + 6;
    }
    match out {
        None => Cow::Borrowed(text),
        Some(mut o) => {
            o.push_str(text.get(copied..).unwrap_or(""));
            Cow::Owned(o)
        }
    }
}

/// JSON text with raw control characters (U+0000–U+001F: a literal newline or tab pasted
/// into a title) inside strings written as `\u00XX` escapes: JSON forbids them raw, and
/// serde_json (so feed-rs) rejects the whole document for one. The character is kept, only
/// its spelling changes. Borrowed when there is none. Linear: one pass, tracking strings.
pub(crate) fn escape_raw_controls(text: &str) -> Cow<'_, str> {
    let b = text.as_bytes();
    let mut out: Option<String> = None;
    let mut copied = 0;
    let (mut in_string, mut escaped) = (false, false);
    for (i, &c) in b.iter().enumerate() {
        if !in_string {
            in_string = c == b'"';
            continue;
        }
        if escaped {
            escaped = false;
        } else if c == b'\\' {
            escaped = true;
        } else if c == b'"' {
            in_string = false;
        } else if c < 0x20 {
            let o = out.get_or_insert_with(|| String::with_capacity(text.len() + 16));
            // `i` is at an ASCII byte: a char boundary.
            o.push_str(text.get(copied..i).unwrap_or(""));
            o.push_str(&format!("\\u{c:04x}"));
            copied = i + 1;
        }
    }
    match out {
        None => Cow::Borrowed(text),
        Some(mut o) => {
            o.push_str(text.get(copied..).unwrap_or(""));
            Cow::Owned(o)
        }
    }
}

pub(crate) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(hay, needle)
}

/// Whether `body` has more invalid UTF-8 sequences than valid non-ASCII characters.
fn mostly_not_utf8(body: &[u8]) -> bool {
    let (mut invalid, mut multibyte) = (0usize, 0usize);
    for chunk in body.utf8_chunks() {
        multibyte += chunk.valid().chars().filter(|c| !c.is_ascii()).count();
        invalid += usize::from(!chunk.invalid().is_empty());
    }
    invalid > multibyte
}

/// `Some(big_endian)` if `body` starts with a UTF-32 BOM.
fn utf32_bom(body: &[u8]) -> Option<bool> {
    match body {
        [0, 0, 0xFE, 0xFF, ..] => Some(true),
        [0xFF, 0xFE, 0, 0, ..] => Some(false),
        _ => None,
    }
}

/// encoding_rs has no UTF-32 (the WHATWG standard dropped it); it is trivial to do by hand.
fn decode_utf32(bytes: &[u8], big_endian: bool) -> String {
    bytes
        .chunks(4)
        .map(|c| {
            let arr = [
                c.first().copied().unwrap_or(0),
                c.get(1).copied().unwrap_or(0),
                c.get(2).copied().unwrap_or(0),
                c.get(3).copied().unwrap_or(0),
            ];
            let n = if big_endian {
                u32::from_be_bytes(arr)
            } else {
                u32::from_le_bytes(arr)
            };
            if c.len() == 4 {
                char::from_u32(n).unwrap_or(char::REPLACEMENT_CHARACTER)
            } else {
                char::REPLACEMENT_CHARACTER
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(body: &[u8], ct: Option<&str>) -> (String, &'static str) {
        let d = decode(body, ct, false);
        (d.text.into_owned(), d.encoding)
    }

    #[test]
    fn utf8_fast_path_borrows() {
        let body = "<?xml version=\"1.0\" encoding=\"utf-8\"?><rss>é</rss>".as_bytes();
        let d = decode(body, None, false);
        assert!(matches!(d.text, Cow::Borrowed(_)));
    }

    #[test]
    fn declaration_wins_and_is_neutralised() {
        let body = b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><rss>\xe9</rss>";
        let (text, enc) = dec(body, Some("text/xml; charset=utf-8"));
        assert_eq!(enc, "windows-1252");
        assert_eq!(text, "<?xml version=\"1.0\"?><rss>é</rss>");
    }

    #[test]
    fn http_charset_used_when_document_silent() {
        let body = b"<rss>\xcf\xf0\xe8\xe2\xe5\xf2</rss>"; // "Привет" in windows-1251
        let (text, enc) = dec(body, Some("application/rss+xml; charset=\"windows-1251\""));
        assert_eq!(enc, "windows-1251");
        assert_eq!(text, "<rss>Привет</rss>");
    }

    #[test]
    fn valid_utf8_beats_a_legacy_http_charset() {
        let (text, _) = dec(
            "<rss>é</rss>".as_bytes(),
            Some("text/xml; charset=iso-8859-1"),
        );
        assert_eq!(text, "<rss>é</rss>");
    }

    #[test]
    fn bom_beats_declaration() {
        let mut body = vec![0xFF, 0xFE];
        for u in "<?xml version=\"1.0\" encoding=\"iso-8859-1\"?><a>ж</a>".encode_utf16() {
            body.extend_from_slice(&u.to_le_bytes());
        }
        let (text, enc) = dec(&body, None);
        assert_eq!(enc, "UTF-16LE");
        assert_eq!(text, "<?xml version=\"1.0\"?><a>ж</a>");
    }

    #[test]
    fn utf32_and_bomless_utf16() {
        let mut be32 = vec![0, 0, 0xFE, 0xFF];
        let mut le16 = Vec::new();
        for c in "<a>ж</a>".chars() {
            be32.extend_from_slice(&(c as u32).to_be_bytes());
        }
        for u in "<a>ж</a>".encode_utf16() {
            le16.extend_from_slice(&u.to_le_bytes());
        }
        assert_eq!(dec(&be32, None).0, "<a>ж</a>");
        assert_eq!(dec(&le16, None).0, "<a>ж</a>");
    }

    #[test]
    fn invalid_utf8_is_replaced_not_fatal() {
        // UTF-8 (é, è) with one bad byte: stays UTF-8, the bad byte becomes U+FFFD.
        let (text, enc) = dec(b"<rss>\xc3\xa9\xc3\xa8 a\xffb</rss>", None);
        assert_eq!((text.as_str(), enc), ("<rss>éè a\u{FFFD}b</rss>", "UTF-8"));
    }

    #[test]
    fn utf8_declared_as_latin1_stays_utf8() {
        let body = "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><a>Sänger</a>".as_bytes();
        let (text, enc) = dec(body, None);
        assert_eq!(enc, "UTF-8");
        assert!(text.ends_with("<a>Sänger</a>"), "{text}");
    }

    #[test]
    fn undeclared_latin1_is_read_as_windows_1252() {
        // Issue 12 item 1 (text lost): "Sécurité" in ISO-8859-1 with no declaration and no
        // HTTP charset was read as UTF-8, each accented letter a U+FFFD.
        let (text, enc) = dec(b"<rss>S\xe9curit\xe9</rss>", None);
        assert_eq!(
            (text.as_str(), enc),
            ("<rss>Sécurité</rss>", "windows-1252")
        );
        // "é »" (e9 a0 bb) happens to be a valid UTF-8 sequence: still mostly not UTF-8.
        let (text, _) = dec(b"<rss>d\xe9j\xe0 \xe9\xa0\xbb</rss>", None);
        assert_eq!(text, "<rss>déjà é\u{a0}»</rss>");
    }

    #[test]
    fn lying_utf16_declaration_ignored() {
        let (text, enc) = dec(b"<?xml version=\"1.0\" encoding=\"utf-16\"?><a>x</a>", None);
        assert_eq!(enc, "UTF-8");
        assert_eq!(text, "<?xml version=\"1.0\"?><a>x</a>");
    }
}
