//! Normaliser + matcher: the first line is a rule, the rest item text (title, then body, split
//! at the first '\u{1}'). `to_plain_text`, `tokenize`, `match_item` and `highlight` never panic;
//! token and highlight ranges are in bounds, on char boundaries, sorted and disjoint.
#![no_main]

use libfuzzer_sys::fuzz_target;
use newswatch::pipeline::matcher::{Matcher, Query};
use newswatch::pipeline::normalise::{to_plain_text, tokenize};

fn check_ranges(text: &str, ranges: impl Iterator<Item = (usize, usize)>) {
    let mut prev_end = 0;
    for (start, end) in ranges {
        assert!(start < end, "empty or inverted range {start}..{end}");
        assert!(end <= text.len(), "range {start}..{end} out of bounds ({})", text.len());
        assert!(text.is_char_boundary(start) && text.is_char_boundary(end));
        assert!(start >= prev_end, "ranges overlap or are unsorted");
        prev_end = end;
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (rule, item) = text.split_once('\n').unwrap_or((&text, ""));
    let (title, body) = item.split_once('\u{1}').unwrap_or((item, ""));

    let plain_title = to_plain_text(title);
    let plain_body = to_plain_text(body);
    // Plain text is plain: no markup-significant control characters survive.
    assert!(!plain_body.contains('\u{0}'), "NUL in plain text");

    for t in [&plain_title, &plain_body] {
        let tokens = tokenize(t);
        check_ranges(t, tokens.iter().map(|tok| (tok.start, tok.end)));
        for tok in &tokens {
            assert_eq!(&t[tok.start..tok.end], tok.text);
        }
    }

    let Ok(q) = Query::parse(rule) else { return };
    let matcher = Matcher::new(vec![("r".to_string(), q)]);
    if let Some(m) = matcher.match_item(&plain_title, &plain_body) {
        assert_eq!(m.rules.len(), 1);
        assert_eq!(m.rules[0].rule, "r");
    }
    for t in [&plain_title, &plain_body] {
        let ranges = matcher.highlight(t);
        check_ranges(t, ranges.iter().map(|r| (r.start, r.end)));
    }
});
