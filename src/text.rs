//! Text safety for every output: feed text is written by strangers.
//!
//! Two promises, used by the CLI, the digest and the exports alike so that no output has its
//! own weaker copy:
//! - [`sanitize`]: text safe for a terminal or a plain-text file (no control characters, no
//!   bidirectional overrides);
//! - [`web_link`]: a link leaves newswatch only as an absolute http(s) URL.

/// Make feed text safe for a terminal: control characters (ESC and so ANSI sequences, CR,
/// backspace, …) and bidirectional overrides are replaced, newlines and tabs become spaces.
pub fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\n' | '\t' | '\r' => ' ',
            c if c.is_control() => '\u{FFFD}',
            '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' => {
                '\u{FFFD}'
            }
            c => c,
        })
        .collect()
}

/// The link as an http(s) URL safe to put in markup, or `None`.
pub fn web_link(link: Option<&str>) -> Option<url::Url> {
    let u = url::Url::parse(link?.trim()).ok()?;
    matches!(u.scheme(), "http" | "https").then_some(u)
}
