//! Issue 12 item 4b: Python feedparser's own test suite (`feedparser-wellformed/` in the
//! corpus) states in each file's `Expect:` comment what feedparser extracts. Two checks:
//! - a document that has `<item>`/`<entry>` elements is never "ok, 0 entries" (a failure with
//!   a reason is acceptable: it shows in `feeds`; a silent success is not);
//! - for every document whose `Expect:` states an entry's title, summary/description or
//!   content (`entries[0]['title'] == '…'`), the words of that text are in what newswatch
//!   stores for its first entry (plain text, as poll stores it).
//!
//! "Agrees" means word-level: feedparser's value goes through our own normaliser (tags
//! stripped, entities decoded) and every resulting word must be among the words of ours.
//! Exact string equality would test feedparser's HTML sanitiser, not whether text is lost.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use newswatch::pipeline::normalise::{fold, to_plain_text, tokens};
use newswatch::pipeline::parse::parse_feed;

use crate::support;

/// Minimum number of documents (of those stating an entry's text with words) whose words we
/// store. Measured with this test's definitions: 155 of 296 before issue 12 (the issue
/// counted 159 of 308 its own way), 289 of 296 after; the other 7 are the reasoned
/// [`TEXT_EXCEPTIONS`]. The floor is today's measurement: any document lost fails the test
/// (and an unlisted disagreement fails it by name).
const MIN_AGREE: usize = 289;

/// Documents with `<item>`/`<entry>` that may be read as "ok, 0 entries", and why. Every one
/// not listed fails the test. None: such documents now fail with a reason (measured before
/// issue 12: 311 of the 1,152 such documents read as "ok, 0 entries").
const ZERO_ENTRY_EXCEPTIONS: &[(&str, &str)] = &[];

/// Documents stating an entry's text that we knowingly do not agree with, and why.
const TEXT_EXCEPTIONS: &[(&str, &str)] = &[
    (
        "cdf/item_abstract_map_description.xml",
        "Microsoft CDF (root <channel>), not RSS/Atom/JSON Feed: feed-rs has no reader for it; \
         the document fails with a reason",
    ),
    ("cdf/item_title.xml", "Microsoft CDF, as above"),
    (
        "rdf/rss090_item_title.xml",
        "RSS 0.90 item with neither <link> nor rdf:about: feed-rs drops items without a link \
         and there is nothing to identify it by; the document fails with a reason",
    ),
    (
        "rss/item_description_not_a_doctype2.xml",
        "<rss> with <item> but no <channel>: feedparser's loose reading; feed-rs requires the \
         channel; the document fails with a reason",
    ),
    (
        "rss/item_summary_and_description.xml",
        "an RSS item's <summary> (not an RSS element) with a <description> as well: we store \
         the description, which feedparser reads as content",
    ),
    (
        "media-rss/media_group.xml",
        "a media:group with no media:content: feed-rs emits no media object for it, so its \
         description is not seen (groups with content, as YouTube's, are read)",
    ),
    (
        "sanitize/item_content_encoded_script_nested_cdata.xml",
        "the expected \"text\" is the literal markup `<![CDATA[]]>`: CDATA markers are markup \
         to our normaliser, not words",
    ),
];

fn all_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            all_files(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// Which entry field an `Expect:` states, and the Python string it compares with.
struct Stated {
    field: &'static str,
    value: String,
}

/// Parse a Python string literal (with `u`/`b`/`r` prefixes, `+` concatenation) at the start
/// of `s`; returns the string.
fn python_string(s: &str) -> Option<String> {
    let mut out = String::new();
    let mut rest = s.trim_start();
    loop {
        let mut raw = false;
        while let Some(c) = rest.chars().next().filter(|c| "uUbBrR".contains(*c)) {
            raw |= c == 'r' || c == 'R';
            rest = &rest[1..];
        }
        let quote = rest.chars().next().filter(|c| *c == '\'' || *c == '"')?;
        let mut chars = rest[1..].char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            if c == quote {
                end = Some(i + 2);
                break;
            }
            if c == '\\' && !raw {
                let (_, e) = chars.next()?;
                match e {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    'u' | 'x' => {
                        let n = if e == 'u' { 4 } else { 2 };
                        let hex: String =
                            (0..n).filter_map(|_| chars.next().map(|c| c.1)).collect();
                        let v = u32::from_str_radix(&hex, 16).ok()?;
                        out.push(char::from_u32(v).unwrap_or('\u{FFFD}'));
                    }
                    other => out.push(other),
                }
            } else {
                out.push(c);
            }
        }
        rest = &rest[end?..];
        let t = rest.trim_start();
        match t.strip_prefix('+') {
            Some(more) => rest = more,
            None => break,
        }
    }
    Some(out)
}

fn stated(expect: &str) -> Option<Stated> {
    const FIELDS: [(&str, &str); 5] = [
        ("entries[0]['title'] ==", "title"),
        ("entries[0]['summary'] ==", "summary"),
        ("entries[0]['description'] ==", "summary"),
        ("entries[0]['content'][0]['value'] ==", "content"),
        ("entries[0]['content'] ==", "content"),
    ];
    FIELDS.iter().find_map(|(needle, field)| {
        let at = expect.find(needle)?;
        let value = python_string(&expect[at + needle.len()..])?;
        Some(Stated { field, value })
    })
}

fn words(text: &str) -> Vec<String> {
    let plain = to_plain_text(text);
    tokens(&plain).map(|t| fold(t.text)).collect()
}

fn has_entry_element(text: &str) -> bool {
    ["<item", "<entry"].iter().any(|tag| {
        text.match_indices(tag).any(|(i, _)| {
            text[i + tag.len()..]
                .chars()
                .next()
                .is_some_and(|c| c == '>' || c == '/' || c.is_whitespace())
        })
    })
}

#[test]
fn corpus_feedparser_expectations() {
    let Some(dir) = support::corpus_dir() else {
        println!("SKIPPED: NEWSWATCH_CORPUS not set");
        return;
    };
    let mut files = Vec::new();
    all_files(&dir.join("feedparser-wellformed"), &mut files);
    files.sort();
    assert!(!files.is_empty(), "no files under feedparser-wellformed/");
    let (mut with_entries, mut zero_ok, mut failed) = (0usize, 0usize, 0usize);
    let (mut stating, mut agree) = (0usize, 0usize);
    let mut zero_unexpected = Vec::new();
    let mut text_unexpected = Vec::new();
    for path in &files {
        let rel = path
            .strip_prefix(&dir)
            .unwrap_or(path)
            .to_string_lossy()
            .into_owned();
        let body = std::fs::read(path).unwrap_or_else(|e| panic!("read {rel}: {e}"));
        let text = String::from_utf8_lossy(&body);
        let result = parse_feed(&body, Some("application/xml"), Some("http://example.org/"));
        if has_entry_element(&text) {
            with_entries += 1;
            match &result {
                Ok(f) if f.entries.is_empty() => {
                    zero_ok += 1;
                    if !ZERO_ENTRY_EXCEPTIONS.iter().any(|(k, _)| rel.ends_with(k)) {
                        zero_unexpected.push(rel.clone());
                    }
                }
                Ok(_) => {}
                Err(_) => failed += 1,
            }
        }
        let Some(expect) = text.lines().find_map(|l| l.trim().strip_prefix("Expect:")) else {
            continue;
        };
        let Some(st) = stated(expect) else { continue };
        let want = words(&st.value);
        if want.is_empty() {
            continue; // states an empty text (e.g. a sanitised-away element): nothing to lose
        }
        stating += 1;
        let ours: HashSet<String> = match result.as_ref().ok().and_then(|f| f.entries.first()) {
            Some(e) if st.field == "title" => words(&e.title).into_iter().collect(),
            Some(e) => words(&e.summary)
                .into_iter()
                .chain(words(&e.content))
                .collect(),
            None => HashSet::new(),
        };
        let missing: Vec<&String> = want.iter().filter(|w| !ours.contains(*w)).collect();
        if missing.is_empty() {
            agree += 1;
        } else if !TEXT_EXCEPTIONS.iter().any(|(k, _)| rel.ends_with(k)) {
            let why = match &result {
                Err(e) => format!("error: {e}"),
                Ok(f) if f.entries.is_empty() => "no entries".to_string(),
                Ok(_) => format!("{} missing {:?}", st.field, missing),
            };
            text_unexpected.push(format!("{rel}: {why}"));
        }
    }
    println!(
        "feedparser-wellformed/: {} files; {with_entries} with <item>/<entry>: \
         {zero_ok} ok with 0 entries, {failed} failed with a reason",
        files.len()
    );
    println!(
        "{stating} state an entry's title/summary/content with words; \
         newswatch stores the words for {agree}"
    );
    for l in &text_unexpected {
        println!("  disagree: {l}");
    }
    for l in &zero_unexpected {
        println!("  ok with 0 entries: {l}");
    }
    for (k, why) in TEXT_EXCEPTIONS {
        println!("  known exception: {k}: {why}");
    }
    assert!(
        text_unexpected.is_empty(),
        "{} documents whose stated entry text we do not store (not in TEXT_EXCEPTIONS)",
        text_unexpected.len()
    );
    assert!(
        zero_unexpected.is_empty(),
        "{} documents with <item>/<entry> read as ok with 0 entries",
        zero_unexpected.len()
    );
    assert!(
        agree >= MIN_AGREE,
        "agreement {agree} of {stating} < floor {MIN_AGREE}"
    );
}
