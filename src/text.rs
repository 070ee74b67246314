//! Text safety for every output: feed text is written by strangers.
//!
//! Promises used by the CLI, the digest and the exports alike so that no output has its own
//! weaker copy:
//! - [`sanitize`]: text safe for a terminal or a plain-text file (no control characters, no
//!   bidirectional controls or marks);
//! - [`web_link`]: a link leaves newswatch only as an absolute http(s) URL;
//! - [`csv_cell`]: a CSV cell a spreadsheet will not run as a formula;
//! - [`rfc3339_or_none`]: a stored time as valid RFC 3339, or nothing.

/// Make feed text safe for a terminal: control characters (ESC and so ANSI sequences, CR,
/// backspace, …) and bidirectional controls and marks are replaced, newlines, tabs and the
/// Unicode line/paragraph separators become spaces.
pub fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\n' | '\t' | '\r' | '\u{2028}' | '\u{2029}' => ' ',
            c if c.is_control() => '\u{FFFD}',
            c if is_bidi_control(c) => '\u{FFFD}',
            c => c,
        })
        .collect()
}

/// Unicode's bidirectional formatting characters (UAX #9, "explicit formatting" and the
/// implicit marks): embeddings, overrides, isolates, and the LRM / RLM / ALM marks. Any of
/// them can make a terminal show text in an order other than the bytes'.
fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
    )
}

/// A stored link as it may leave newswatch: kept when it is an absolute http(s) URL
/// ([`web_link`]), else dropped. Every output that prints stored links reads them through this.
pub fn outgoing_link(link: Option<String>) -> Option<String> {
    link.filter(|l| is_outgoing(l))
}

/// Whether `link` may leave newswatch ([`outgoing_link`]).
pub fn is_outgoing(link: &str) -> bool {
    web_link(Some(link)).is_some()
}

/// The link as an http(s) URL safe to put in markup, or `None`.
pub fn web_link(link: Option<&str>) -> Option<url::Url> {
    let u = url::Url::parse(link?.trim()).ok()?;
    matches!(u.scheme(), "http" | "https").then_some(u)
}

/// A CSV cell that spreadsheets will not evaluate: as OWASP recommends against CSV injection,
/// a cell starting with `=`, `+`, `-`, `@`, tab or carriage return gets a leading `'`, which
/// Excel, LibreOffice and Google Sheets show as text. (The CSV writer quotes as needed.)
pub fn csv_cell(s: &str) -> String {
    match s.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{s}"),
        _ => s.to_string(),
    }
}

/// A stored time (RFC 3339 text) as RFC 3339 UTC with seconds, or `None` when it cannot be
/// one: unparseable, or a year outside 0000–9999 (chrono writes year 99999 as `+99999-…`,
/// which no RFC 3339 reader accepts). Output writers call this for every time they emit.
pub fn rfc3339_or_none(stored: &str) -> Option<String> {
    use chrono::Datelike;
    let t = chrono::DateTime::parse_from_rfc3339(stored.trim()).ok()?;
    let t = t.with_timezone(&chrono::Utc);
    (0..=9999)
        .contains(&t.year())
        .then(|| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_strips_every_bidi_control_and_mark() {
        for c in [
            '\u{061C}', '\u{200E}', '\u{200F}', '\u{202A}', '\u{202E}', '\u{2066}', '\u{2069}',
        ] {
            let s = sanitize(&format!("a{c}b"));
            assert_eq!(s, "a\u{FFFD}b", "U+{:04X}", c as u32);
        }
        assert_eq!(sanitize("a\u{2028}b"), "a b");
    }

    #[test]
    fn csv_cell_neutralises_formula_starts() {
        for s in ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"] {
            assert_eq!(csv_cell(s), format!("'{s}"));
        }
        assert_eq!(csv_cell("NCA"), "NCA");
        assert_eq!(csv_cell(""), "");
    }

    #[test]
    fn rfc3339_or_none_refuses_years_rfc3339_cannot_write() {
        assert_eq!(
            rfc3339_or_none("2015-11-09T10:00:00.000Z").as_deref(),
            Some("2015-11-09T10:00:00Z")
        );
        assert_eq!(rfc3339_or_none("+99999-01-01T00:00:00Z"), None);
        assert_eq!(rfc3339_or_none("not a date"), None);
    }
}
