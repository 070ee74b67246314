//! Find a match's stored query terms in its snippet, so the digest can emphasise them.
//!
//! Why not the matcher: the digest works from what the store kept (the terms as written in the
//! rule), needs no compiled rules, and reads old matches whose rules have since changed. Terms
//! are found case- and accent-insensitively as whole words: `NCA` does not light up "NCAA";
//! `"dark web"` matches the words in sequence across any punctuation ("dark-web"); `darkn*`
//! matches words starting with "darkn". `title:` prefixes are ignored, `-term`s never hit.

use std::ops::Range;

use unicode_normalization::UnicodeNormalization;

/// A word of `text` with its byte range, folded for comparison.
struct Word {
    range: Range<usize>,
    folded: String,
}

/// Lower-case and strip combining marks (é → e).
fn fold(s: &str) -> String {
    s.nfd()
        .filter(|c| !unicode_normalization::char::is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .collect()
}

fn words(text: &str) -> Vec<Word> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        let is_word = c.is_alphanumeric() || unicode_normalization::char::is_combining_mark(c);
        match (is_word, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.push(Word {
                    range: s..i,
                    folded: fold(&text[s..i]),
                });
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push(Word {
            range: s..text.len(),
            folded: fold(&text[s..]),
        });
    }
    out
}

/// One term as a sequence of folded words; the last may be a prefix.
struct Pattern {
    words: Vec<String>,
    prefix: bool,
}

fn pattern(term: &str) -> Option<Pattern> {
    let mut t = term.trim();
    if t.starts_with('-') || t.is_empty() {
        return None;
    }
    if let Some(rest) = t.strip_prefix("title:") {
        t = rest;
    }
    let t = t.trim_matches('"');
    let prefix = t.ends_with('*');
    let t = t.trim_end_matches('*');
    let ws: Vec<String> = words(t).into_iter().map(|w| w.folded).collect();
    (!ws.is_empty()).then_some(Pattern { words: ws, prefix })
}

/// Byte ranges in `text` of every occurrence of any of `terms`, sorted, merged where they
/// overlap or touch.
pub fn highlight_terms(text: &str, terms: &[String]) -> Vec<Range<usize>> {
    let ws = words(text);
    let mut hits: Vec<Range<usize>> = Vec::new();
    for p in terms.iter().filter_map(|t| pattern(t)) {
        let n = p.words.len();
        if n > ws.len() {
            continue;
        }
        for i in 0..=ws.len() - n {
            let ok = p.words.iter().enumerate().all(|(k, pw)| {
                let w = &ws[i + k].folded;
                if p.prefix && k == n - 1 {
                    w.starts_with(pw.as_str())
                } else {
                    w == pw
                }
            });
            if ok {
                hits.push(ws[i].range.start..ws[i + n - 1].range.end);
            }
        }
    }
    hits.sort_by_key(|r| (r.start, r.end));
    let mut merged: Vec<Range<usize>> = Vec::new();
    for h in hits {
        match merged.last_mut() {
            Some(last) if h.start <= last.end => last.end = last.end.max(h.end),
            _ => merged.push(h),
        }
    }
    merged
}

/// Split `text` into `(piece, emphasised)` runs along `ranges` (ignoring bad ranges).
pub(crate) fn pieces<'a>(text: &'a str, ranges: &[[usize; 2]]) -> Vec<(&'a str, bool)> {
    let mut out = Vec::new();
    let mut at = 0;
    for &[s, e] in ranges {
        if s < at || e <= s || text.get(s..e).is_none() || text.get(at..s).is_none() {
            continue;
        }
        if s > at {
            out.push((&text[at..s], false));
        }
        out.push((&text[s..e], true));
        at = e;
    }
    if at < text.len() {
        out.push((&text[at..], false));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marked(text: &str, terms: &[&str]) -> String {
        let terms: Vec<String> = terms.iter().map(|s| s.to_string()).collect();
        let ranges: Vec<[usize; 2]> = highlight_terms(text, &terms)
            .into_iter()
            .map(|r| [r.start, r.end])
            .collect();
        pieces(text, &ranges)
            .into_iter()
            .map(|(p, e)| if e { format!("[{p}]") } else { p.to_string() })
            .collect()
    }

    #[test]
    fn whole_words_case_insensitive() {
        assert_eq!(
            marked("The NCA and nca, not NCAA or bNCA.", &["NCA"]),
            "The [NCA] and [nca], not NCAA or bNCA."
        );
    }

    #[test]
    fn phrases_span_punctuation_and_prefixes_extend() {
        assert_eq!(
            marked(
                "Dark web, dark-web and darknet: the Dark  Web",
                &["\"dark web\"", "darkn*"]
            ),
            "[Dark web], [dark-web] and [darknet]: the [Dark  Web]"
        );
    }

    #[test]
    fn accents_fold_and_byte_ranges_stay_on_char_boundaries() {
        assert_eq!(
            marked(
                "Théresa May et la National Crime Agency",
                &["theresa", "\"national crime agency\""]
            ),
            "[Théresa] May et la [National Crime Agency]"
        );
        assert_eq!(marked("Привет GCHQ", &["привет"]), "[Привет] GCHQ");
    }

    #[test]
    fn negative_field_and_empty_terms() {
        assert_eq!(
            marked(
                "NCA report on weather",
                &["-weather", "title:report", "\"\"", "*"]
            ),
            "NCA [report] on weather"
        );
    }

    #[test]
    fn overlapping_hits_merge() {
        assert_eq!(
            marked(
                "the national crime agency",
                &["crime", "\"national crime\""]
            ),
            "the [national crime] agency"
        );
    }
}
