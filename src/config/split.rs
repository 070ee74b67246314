//! Memory: a config's `[[feeds]]` sections parsed one at a time (issue 18).
//!
//! `toml::from_str` builds the whole document's tree before deserializing, about 1 KB per
//! feed: 100 MB for a 100,000-feed config. [`feed_sections`] finds, with the TOML lexer (no
//! tree), every top-level `[[feeds]]` header; the caller then parses the rest of the file with
//! those sections blanked (same byte offsets, so every span stays right) and each section on
//! its own. This is only a fast path: whenever anything is unusual (a header it does not
//! recognise as exactly `[[feeds]]`, text after the header on its line, feeds also defined
//! another way) or any part fails to parse, the caller parses the whole file as before, so
//! every error is the one the whole-file parse reports.

use std::ops::Range;

use toml_parser::Source;
use toml_parser::lexer::TokenKind;

/// The `[[feeds]]` sections of a document.
pub(super) struct Sections {
    /// The document with every section (header and body) replaced by spaces, line breaks kept.
    pub rest: String,
    /// Each section's body: the byte range after its `]]`, up to the next header or the end.
    pub bodies: Vec<Range<usize>>,
}

/// The top-level `[[feeds]]` sections of `text`; `None` when there are none or when the
/// document is anything but plain (see the module doc).
pub(super) fn feed_sections(text: &str) -> Option<Sections> {
    let mut tokens = Source::new(text).lex().peekable();
    // Open `[` / `{` of the value being read, and whether a `key =` statement is open.
    let mut depth = 0usize;
    let mut in_value = false;
    // Nothing but whitespace since the last statement-level line break.
    let mut line_empty = true;
    // (header start, body start) of each `[[feeds]]`, and every other header's start.
    let mut feeds: Vec<(usize, usize)> = Vec::new();
    let mut headers: Vec<usize> = Vec::new();
    while let Some(tok) = tokens.next() {
        let kind = tok.kind();
        if in_value {
            match kind {
                TokenKind::LeftSquareBracket | TokenKind::LeftCurlyBracket => depth += 1,
                TokenKind::RightSquareBracket | TokenKind::RightCurlyBracket => {
                    depth = depth.checked_sub(1)?;
                }
                TokenKind::Newline | TokenKind::Eof if depth == 0 => {
                    in_value = false;
                    line_empty = true;
                }
                _ => {}
            }
            continue;
        }
        match kind {
            TokenKind::Whitespace | TokenKind::Comment => {}
            TokenKind::Newline | TokenKind::Eof => line_empty = true,
            TokenKind::Equals => {
                in_value = true;
                line_empty = false;
            }
            TokenKind::LeftSquareBracket if line_empty => {
                let start = tok.span().start();
                let mut kinds = Vec::with_capacity(8);
                let mut end = start;
                let mut atom = "";
                // A header ends at its line break (no key can hold one).
                while let Some(t) =
                    tokens.next_if(|t| !matches!(t.kind(), TokenKind::Newline | TokenKind::Eof))
                {
                    if !matches!(t.kind(), TokenKind::Whitespace | TokenKind::Comment) {
                        kinds.push(t.kind());
                        end = t.span().end();
                        if t.kind() == TokenKind::Atom {
                            atom = text.get(t.span().start()..t.span().end())?;
                        }
                    }
                }
                use TokenKind::{Atom, LeftSquareBracket as L, RightSquareBracket as R};
                if kinds == [L, Atom, R, R] && atom == "feeds" {
                    feeds.push((start, end));
                } else if kinds.first() == Some(&L) && kinds.contains(&Atom) && atom == "feeds" {
                    // `[[ feeds ]] x`, or the like: leave it to the whole-file parse.
                    return None;
                } else {
                    headers.push(start);
                }
            }
            _ => line_empty = false,
        }
    }
    if feeds.is_empty() || depth != 0 {
        return None;
    }
    // Each body runs to the next header of either kind.
    let mut all: Vec<usize> = feeds.iter().map(|&(s, _)| s).chain(headers).collect();
    all.sort_unstable();
    let mut rest = text.as_bytes().to_vec();
    let mut bodies = Vec::with_capacity(feeds.len());
    for &(start, body) in &feeds {
        let next = all.partition_point(|&h| h <= start);
        let end = all.get(next).copied().unwrap_or(text.len());
        for b in rest.get_mut(start..end)? {
            if *b != b'\n' && *b != b'\r' {
                *b = b' ';
            }
        }
        bodies.push(body..end);
    }
    Some(Sections {
        rest: String::from_utf8(rest).ok()?,
        bodies,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_feeds_headers_and_blanks_them_in_place() {
        let text = "a = [\n[1],\n]\n[[feeds]] # x\nname = \"é\"\n[http]\ntimeout = \"1s\"\n  [[feeds]]\nurl = 'u'\n";
        let s = feed_sections(text).expect("sections");
        assert_eq!(s.rest.len(), text.len());
        assert_eq!(s.rest.lines().count(), text.lines().count());
        assert!(s.rest.contains("[http]") && !s.rest.contains("feeds"));
        let bodies: Vec<&str> = s.bodies.iter().map(|r| &text[r.clone()]).collect();
        assert_eq!(bodies, [" # x\nname = \"é\"\n", "\nurl = 'u'\n"]);
    }

    #[test]
    fn anything_unusual_is_left_to_the_whole_file_parse() {
        assert!(feed_sections("[storage]\npath = 'x'\n").is_none());
        assert!(feed_sections("[[feeds]] name = 'x'\n").is_none());
        assert!(feed_sections("[[ feeds ]]]\n").is_none());
        // A header-like line inside a multi-line array is not a header.
        assert!(feed_sections("x = [\n[[feeds]]\n]\n").is_none());
        let s = feed_sections("[[\"feeds\"]]\nname='a'\n[[feeds]]\nname='b'\n").expect("one");
        assert_eq!(s.bodies.len(), 1);
        assert!(s.rest.contains("[[\"feeds\"]]"));
    }
}
