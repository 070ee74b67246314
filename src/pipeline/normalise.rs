//! Normalise: turn feed text (HTML fragments, entities, odd Unicode) into plain text and tokens.
//!
//! Everything the matcher and the stored snippets see has been through here, so matching is
//! defined on one canonical form: tags stripped, entities decoded, Unicode NFKC, whitespace folded.
//! Feed content is untrusted and arrives in every state of brokenness, so nothing here may panic
//! and every pass is linear in the input length (the functions are fuzzed).

use std::borrow::Cow;

use unicode_normalization::char::is_combining_mark;
use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfkc_quick};

/// Plain text from a feed's HTML or text field: tags removed (script/style content dropped),
/// entities decoded (named, decimal, hex), NFKC, control characters removed, every run of
/// whitespace folded to one ASCII space, trimmed.
pub fn to_plain_text(input: &str) -> String {
    // Order matters: tags are stripped *before* entities are decoded, so `&lt;b&gt;` survives as
    // the literal text "<b>" and `&amp;amp;` is decoded exactly once (to "&amp;").
    // Most titles and many summaries hold neither markup nor entities: both passes then borrow
    // the input, and the only allocation is the result.
    let stripped = strip_tags(input);
    let decoded = decode_entities(&stripped);
    let mut out = Folder {
        out: String::with_capacity(decoded.len()),
        pending_space: false,
    };
    nfkc_into(&decoded, &mut out);
    out.out
}

/// Named and numeric character references decoded. html-escape looks for `&` a byte at a
/// time; most text has none (memchr says so at a glance) or its first one late, and no
/// reference starts before the first `&`, so html-escape sees only the text from there on.
fn decode_entities(text: &str) -> Cow<'_, str> {
    let Some(amp) = memchr::memchr(b'&', text.as_bytes()) else {
        return Cow::Borrowed(text);
    };
    // `amp` indexes an ASCII byte: a char boundary.
    let (head, tail) = text.split_at(amp);
    match html_escape::decode_html_entities(tail) {
        Cow::Borrowed(_) => Cow::Borrowed(text),
        Cow::Owned(decoded) => {
            let mut out = String::with_capacity(head.len() + decoded.len());
            out.push_str(head);
            out.push_str(&decoded);
            Cow::Owned(out)
        }
    }
}

/// NFKC of `text`, fed char by char to `out`, without paying for normalisation where the text
/// is already normal. NFKC (decompose + recompose every char) was the costliest step of a
/// cold poll, and feed text is mostly ASCII with a few `&nbsp;`, `…` or accented letters.
///
/// ASCII runs are normal as they are and go straight to the folder. A non-ASCII run is
/// normalised together with the character before it (a combining mark may compose with it:
/// `e` + U+0301 is `é`), and only when the quick check cannot prove the pair normal already.
/// This is exact: an ASCII character never composes with what precedes it and, being a
/// starter, stops canonical reordering, so the NFKC of the whole is the concatenation of the
/// NFKC of the pieces cut before ASCII characters.
fn nfkc_into(text: &str, out: &mut Folder) {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let j = out.push_ascii_run(text, i);
        if j >= bytes.len() {
            break;
        }
        let mut k = j;
        while k < bytes.len() && !bytes[k].is_ascii() {
            k += 1;
        }
        // Cut points are ASCII bytes (or the ends), hence char boundaries. The ASCII character
        // before the run, if any, has been pushed already; it is the folder's last character
        // exactly when it is a visible one (spaces and controls compose with nothing).
        let before = j.checked_sub(1).filter(|&b| b >= i);
        let with_before = before.filter(|&b| matches!(ascii_class(bytes[b]), CharClass::Keep));
        let piece = &text[with_before.unwrap_or(j)..k];
        if is_nfkc_quick(piece.chars()) == IsNormalized::Yes {
            text[j..k].chars().for_each(|c| out.push(c));
        } else {
            if with_before.is_some() {
                out.out.pop();
            }
            piece.nfkc().for_each(|c| out.push(c));
        }
        i = k;
    }
}

/// The last pass of [`to_plain_text`]: drops invisible characters and folds whitespace.
struct Folder {
    out: String,
    pending_space: bool,
}

impl Folder {
    fn push(&mut self, c: char) {
        match classify(c) {
            CharClass::Space => self.pending_space = true,
            CharClass::Drop => {}
            CharClass::Keep => {
                self.space_before_kept();
                self.out.push(c);
            }
        }
    }

    /// [`Folder::push`] for every char of the ASCII run of `s` starting at byte `from`, a run
    /// of visible characters at a time (feed text is mostly ASCII, and this was the hottest
    /// loop of a cold poll). Returns where the run ends: the first non-ASCII byte, or the end.
    fn push_ascii_run(&mut self, s: &str, from: usize) -> usize {
        let bytes = s.as_bytes();
        let mut i = from;
        while i < bytes.len() {
            let start = i;
            // Visible ASCII ('!' ..= '~'), and single spaces between visible characters: they
            // come out as they are, so "word word word" is copied in one go.
            while let Some(&b) = bytes.get(i) {
                let visible = |b: u8| (0x21..0x7F).contains(&b);
                if visible(b)
                    || (b == b' ' && i > start && bytes.get(i + 1).is_some_and(|&n| visible(n)))
                {
                    i += 1;
                } else {
                    break;
                }
            }
            if i > start {
                self.space_before_kept();
                self.out.push_str(&s[start..i]);
            }
            // Runs end at an ASCII byte or a non-ASCII char's first byte: char boundaries.
            match bytes.get(i).map(|&b| (b, ascii_class(b))) {
                Some((b, _)) if !b.is_ascii() => return i,
                Some((_, CharClass::Space)) => self.pending_space = true,
                Some(_) => {}
                None => break,
            }
            i += 1;
        }
        i
    }

    /// Leading whitespace is never emitted and trailing whitespace stays pending, so the result
    /// is trimmed without a second pass.
    fn space_before_kept(&mut self) {
        if self.pending_space && !self.out.is_empty() {
            self.out.push(' ');
        }
        self.pending_space = false;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CharClass {
    Space,
    Drop,
    Keep,
}

/// [`classify`] for an ASCII byte: tab..carriage return and space are whitespace, the other
/// C0 controls and DEL are dropped.
fn ascii_class(b: u8) -> CharClass {
    match b {
        b'\t'..=b'\r' | b' ' => CharClass::Space,
        0..=0x1F | 0x7F => CharClass::Drop,
        _ => CharClass::Keep,
    }
}

fn classify(c: char) -> CharClass {
    if c.is_ascii() {
        return ascii_class(c as u8);
    }
    match c {
        // Zero-width space marks a word break (used between words in Thai, in URLs, ...), so it
        // separates words like a space does.
        '\u{200B}' => CharClass::Space,
        // Invisible formatting characters that would otherwise split or disguise words: soft
        // hyphen, zero-width (non-)joiner, word joiner, BOM, bidi marks/embeddings/isolates.
        '\u{00AD}'
        | '\u{200C}'
        | '\u{200D}'
        | '\u{2060}'
        | '\u{FEFF}'
        | '\u{200E}'
        | '\u{200F}'
        | '\u{202A}'..='\u{202E}'
        | '\u{2066}'..='\u{2069}' => CharClass::Drop,
        // Tabs, newlines, NBSP, U+2028/2029, ... (checked before is_control: \t and \n are both).
        c if c.is_whitespace() => CharClass::Space,
        c if c.is_control() => CharClass::Drop,
        _ => CharClass::Keep,
    }
}

/// Elements whose tags separate words. Any other tag (b, i, span, a, em, ...) is inline and
/// removed without a trace, so `Pow<b>ers</b>` stays one word.
const BLOCK_TAGS: &[&str] = &[
    "address",
    "article",
    "aside",
    "audio",
    "blockquote",
    "body",
    "br",
    "caption",
    "dd",
    "details",
    "dialog",
    "div",
    "dl",
    "dt",
    "embed",
    "fieldset",
    "figcaption",
    "figure",
    "footer",
    "form",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "head",
    "header",
    "hr",
    "html",
    "iframe",
    "img",
    "input",
    "li",
    "main",
    "nav",
    "object",
    "ol",
    "option",
    "p",
    "picture",
    "pre",
    "section",
    "select",
    "source",
    "summary",
    "table",
    "tbody",
    "td",
    "textarea",
    "tfoot",
    "th",
    "thead",
    "title",
    "tr",
    "ul",
    "video",
];

/// Remembers, per searched byte, a position from which that byte is known not to occur again.
/// Malformed input like `<a<a<a<a...` (no `>` anywhere) would otherwise rescan the tail for every
/// `<` and make stripping quadratic.
struct Finder<'a> {
    bytes: &'a [u8],
    /// Index 0: `>`, 1: `"`, 2: `'`.
    absent_from: [usize; 3],
}

impl<'a> Finder<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Finder {
            bytes,
            absent_from: [usize::MAX; 3],
        }
    }

    fn find(&mut self, needle: u8, from: usize) -> Option<usize> {
        let slot = match needle {
            b'>' => 0,
            b'"' => 1,
            _ => 2,
        };
        if from >= self.absent_from[slot] || from >= self.bytes.len() {
            return None;
        }
        let found = self.bytes[from..]
            .iter()
            .position(|&b| b == needle)
            .map(|p| p + from);
        if found.is_none() {
            self.absent_from[slot] = from;
        }
        found
    }

    /// End (index of `>`) of a tag whose attributes start at `from`. Quoted attribute values
    /// may contain `>`; an unterminated quote is ignored (the first `>` wins) rather than
    /// swallowing the rest of the document.
    fn tag_end(&mut self, from: usize) -> Option<usize> {
        let mut j = from;
        loop {
            let gt = self.find(b'>', j)?;
            let quote = self.bytes[j..gt]
                .iter()
                .position(|&b| b == b'"' || b == b'\'')
                .map(|p| p + j);
            let Some(q) = quote else {
                return Some(gt);
            };
            match self.find(self.bytes[q], q + 1) {
                Some(close) => j = close + 1,
                None => return Some(gt),
            }
        }
    }
}

/// What a piece of markup turns into.
struct Markup {
    /// Byte index just after the markup.
    end: usize,
    /// Whether it separates words.
    space: bool,
}

/// Remove tags, comments, CDATA markers and script/style content. Text (including a `<` that
/// does not start markup, as in "a < b") is copied unchanged; entities are left for later.
fn strip_tags(input: &str) -> Cow<'_, str> {
    let bytes = input.as_bytes();
    // Without a `<` there is no markup (CDATA ends only count after a CDATA start).
    let Some(first) = memchr::memchr(b'<', bytes) else {
        return Cow::Borrowed(input);
    };
    let mut out = String::with_capacity(input.len());
    let mut finder = Finder::new(bytes);
    let mut in_cdata = false;
    let mut text_start = 0;
    let mut i = first;
    // All structural characters are ASCII, so every index where we cut is a char boundary.
    while i < bytes.len() {
        // Jump to the next byte that may start or end markup.
        match memchr::memchr2(b'<', b']', &bytes[i..]) {
            Some(p) => i += p,
            None => break,
        }
        let b = bytes[i];
        if b == b'<' {
            if let Some(markup) = parse_markup(input, i, &mut finder, &mut in_cdata) {
                out.push_str(&input[text_start..i]);
                if markup.space {
                    out.push(' ');
                }
                i = markup.end;
                text_start = i;
                continue;
            }
        } else if b == b']' && in_cdata && bytes[i..].starts_with(b"]]>") {
            out.push_str(&input[text_start..i]);
            in_cdata = false;
            i += 3;
            text_start = i;
            continue;
        }
        i += 1;
    }
    out.push_str(&input[text_start..]);
    Cow::Owned(out)
}

/// Recognise markup starting at `bytes[i] == b'<'`; `None` means the `<` is ordinary text.
fn parse_markup(
    input: &str,
    i: usize,
    finder: &mut Finder<'_>,
    in_cdata: &mut bool,
) -> Option<Markup> {
    let bytes = input.as_bytes();
    let rest = &bytes[i..];
    if rest.starts_with(b"<!--") {
        // An unterminated comment runs to the end of input, as in browsers.
        let end = input[i + 4..]
            .find("-->")
            .map_or(bytes.len(), |p| i + 4 + p + 3);
        return Some(Markup { end, space: false });
    }
    if rest.starts_with(b"<![CDATA[") {
        // CDATA in feeds usually wraps HTML, so its content is processed like any other text;
        // only the markers go.
        *in_cdata = true;
        return Some(Markup {
            end: i + 9,
            space: false,
        });
    }
    if rest.starts_with(b"<!") || rest.starts_with(b"<?") {
        // Doctype, processing instruction, stray declaration.
        let gt = finder.find(b'>', i + 2)?;
        return Some(Markup {
            end: gt + 1,
            space: false,
        });
    }
    let closing = rest.get(1) == Some(&b'/');
    let name_start = i + if closing { 2 } else { 1 };
    if !bytes.get(name_start)?.is_ascii_alphabetic() {
        // "a < b", "<3", "< /p>": not a tag.
        return None;
    }
    let name_len = bytes[name_start..]
        .iter()
        .position(|b| !(b.is_ascii_alphanumeric() || *b == b'-' || *b == b':'))
        .unwrap_or(bytes.len() - name_start);
    let name_end = name_start + name_len;
    // Lower-cased on the stack: every name we look for is shorter than the buffer, and a
    // longer one is an inline tag whatever it says.
    let mut lower = [0u8; 12];
    let name: &[u8] = match lower.get_mut(..name_len) {
        Some(buf) => {
            buf.copy_from_slice(&bytes[name_start..name_end]);
            buf.make_ascii_lowercase();
            buf
        }
        None => b"",
    };
    let gt = finder.tag_end(name_end)?;
    let self_closing = gt > name_end && bytes[gt - 1] == b'/';
    if !closing && !self_closing && (name == b"script" || name == b"style") {
        // Drop everything up to the matching close tag; an unclosed script swallows the rest
        // (what a browser would do, and never leaks code into text).
        let end = find_close_tag(bytes, gt + 1, name)
            .and_then(|close| finder.find(b'>', close))
            .map_or(bytes.len(), |p| p + 1);
        return Some(Markup { end, space: true });
    }
    Some(Markup {
        end: gt + 1,
        space: BLOCK_TAGS
            .binary_search_by(|t| t.as_bytes().cmp(name))
            .is_ok(),
    })
}

/// Position of the first `</name` (ASCII case-insensitive) at or after `from`.
fn find_close_tag(bytes: &[u8], from: usize, name: &[u8]) -> Option<usize> {
    let mut p = from;
    while p < bytes.len() {
        let lt = bytes[p..].iter().position(|&b| b == b'<')? + p;
        let after = &bytes[lt + 1..];
        if after.first() == Some(&b'/')
            && after.len() > name.len()
            && after[1..=name.len()].eq_ignore_ascii_case(name)
        {
            return Some(lt);
        }
        p = lt + 1;
    }
    None
}

/// A token: a maximal run of Unicode letters/digits (combining marks stay inside the token).
/// `start..end` are byte offsets into the text that was tokenised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token<'a> {
    pub text: &'a str,
    pub start: usize,
    pub end: usize,
}

/// Split plain text into tokens. Everything that is not a letter/digit separates tokens.
pub fn tokenize(text: &str) -> Vec<Token<'_>> {
    tokens(text).collect()
}

/// The tokens of `text`, lazily (see [`tokenize`]).
pub fn tokens(text: &str) -> Tokens<'_> {
    Tokens { text, pos: 0 }
}

/// Iterator returned by [`tokens`].
#[derive(Debug, Clone)]
pub struct Tokens<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Tokens<'a> {
    /// The char at byte `i` (a char boundary, not ASCII) and its length.
    fn char_at(&self, i: usize) -> Option<(char, usize)> {
        let c = self.text.get(i..)?.chars().next()?;
        Some((c, c.len_utf8()))
    }
}

/// FNV-1a offset basis: the hash of the empty string for [`ascii_hash_step`].
pub const ASCII_HASH_SEED: u64 = 0xcbf2_9ce4_8422_2325;

/// One step of FNV-1a: a hash that can be checked after every byte, so a token and its
/// prefixes are hashed in one pass.
pub fn ascii_hash_step(hash: u64, byte: u8) -> u64 {
    (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
}

/// [`BYTE_CLASS`] of an ASCII byte that separates tokens.
const SEPARATOR: u8 = 0;
/// [`BYTE_CLASS`] of a byte of a multi-byte char (decoded and classified as a char).
const NON_ASCII: u8 = 0xFF;

/// What the tokenizer needs to know of a byte, in one lookup: [`SEPARATOR`], [`NON_ASCII`],
/// or, for an ASCII letter or digit, the byte lower-cased (the input of the token hash).
static BYTE_CLASS: [u8; 256] = {
    let mut table = [NON_ASCII; 256];
    let mut b = 0;
    while b < 128 {
        let byte = b as u8;
        table[b] = if byte.is_ascii_alphanumeric() {
            byte.to_ascii_lowercase()
        } else {
            SEPARATOR
        };
        b += 1;
    }
    table
};

impl<'a> Tokens<'a> {
    /// The next token with, when it is all ASCII, the [`ascii_hash_step`] hash of its
    /// lower-cased bytes, computed in the same pass (the matcher's pre-filter key).
    ///
    /// The hottest loop of a cold poll (every word of every new entry passes here), hence the
    /// byte table: an ASCII byte costs one lookup, and only multi-byte chars are decoded.
    pub fn next_hashed(&mut self) -> Option<(Token<'a>, Option<u64>)> {
        let bytes = self.text.as_bytes();
        let mut pos = self.pos;
        // Skip to the first char of the token: an ASCII letter/digit or an alphanumeric char.
        let start = loop {
            let Some(&b) = bytes.get(pos) else {
                self.pos = pos;
                return None;
            };
            match BYTE_CLASS[usize::from(b)] {
                SEPARATOR => pos += 1,
                NON_ASCII => {
                    let (c, len) = self.char_at(pos)?;
                    if c.is_alphanumeric() {
                        break pos;
                    }
                    pos += len;
                }
                _ => break pos,
            }
        };
        // The token: letters, digits and combining marks.
        let mut hash = ASCII_HASH_SEED;
        let mut ascii = true;
        while let Some(&b) = bytes.get(pos) {
            match BYTE_CLASS[usize::from(b)] {
                SEPARATOR => break,
                NON_ASCII => {
                    let Some((c, len)) = self.char_at(pos) else {
                        break;
                    };
                    if !(c.is_alphanumeric() || is_combining_mark(c)) {
                        break;
                    }
                    ascii = false;
                    pos += len;
                }
                lower => {
                    hash = ascii_hash_step(hash, lower);
                    pos += 1;
                }
            }
        }
        self.pos = pos;
        let token = Token {
            text: self.text.get(start..pos)?,
            start,
            end: pos,
        };
        Some((token, ascii.then_some(hash)))
    }
}

impl<'a> Iterator for Tokens<'a> {
    type Item = Token<'a>;

    fn next(&mut self) -> Option<Token<'a>> {
        self.next_hashed().map(|(token, _)| token)
    }
}

/// Case- and diacritic-folded form of a token: lower case, accents removed (Théresa -> theresa).
pub fn fold(token: &str) -> String {
    fold_cow(token).into_owned()
}

/// [`fold`] without allocating for the common case of a token that is already folded ASCII.
pub(crate) fn fold_cow(token: &str) -> Cow<'_, str> {
    if token.is_ascii() {
        if token.bytes().any(|b| b.is_ascii_uppercase()) {
            return Cow::Owned(token.to_ascii_lowercase());
        }
        return Cow::Borrowed(token);
    }
    // Lower-case first, then decompose: some lower-case mappings produce combining marks
    // (İ -> i + U+0307) which the decomposition pass then removes.
    Cow::Owned(
        token
            .chars()
            .flat_map(char::to_lowercase)
            .nfd()
            .filter(|c| !is_combining_mark(*c))
            .collect(),
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn piecewise_nfkc_equals_whole_text_nfkc() {
        let cases = [
            "plain ascii only",
            "cafe\u{301} au lait",
            "\u{301}leading mark",
            "Investigatory\u{a0}Powers\u{a0}Bill",
            "ﬁnal … “quoted” — dash",
            "ｆｕｌｌｗｉｄｔｈ ＧＣＨＱ and ①②",
            "a\u{308}\u{301}b o\u{31b}\u{323}x",
            "Ελληνικά και Русский, 한국어 가\u{11a8}",
            "ends with mark e\u{301}",
            "",
            "é",
            "a = b, a =\u{338} b, <\u{338}, e\t\u{301}, x \u{301}",
            "\u{301}\u{301}a\u{308}",
        ];
        let random = random_texts(3000);
        for text in cases
            .iter()
            .copied()
            .chain(random.iter().map(String::as_str))
        {
            let mut piecewise = Folder {
                out: String::new(),
                pending_space: false,
            };
            nfkc_into(text, &mut piecewise);
            let mut whole = Folder {
                out: String::new(),
                pending_space: false,
            };
            text.nfkc().for_each(|c| whole.push(c));
            assert_eq!(piecewise.out, whole.out, "{text:?}");
        }
    }

    #[test]
    fn plain_text_table() {
        let cases: &[(&str, &str)] = &[
            ("", ""),
            ("   ", ""),
            ("plain", "plain"),
            ("foo<br>bar", "foo bar"),
            ("foo<br/>bar", "foo bar"),
            ("foo<BR />bar", "foo bar"),
            ("<p>one</p><p>two</p>", "one two"),
            ("<div>a</div><div>b</div>", "a b"),
            ("<ul><li>x</li><li>y</li></ul>", "x y"),
            ("Pow<b>ers</b>", "Powers"),
            ("Pow<span class=\"x\">ers</span>", "Powers"),
            ("<a href=\"x>y\">link</a> text", "link text"),
            ("a<script>var x = '<p>';</script>b", "a b"),
            ("a<SCRIPT type=x>alert(1)</Script >b", "a b"),
            ("a<style>p { color: red }</style>b", "a b"),
            ("a<script>never closed", "a"),
            ("a<!-- hidden -->b", "ab"),
            ("a<!-- never closed", "a"),
            ("<![CDATA[<p>Hello</p>]]>", "Hello"),
            ("<!DOCTYPE html><?xml version=\"1.0\"?>x", "x"),
            ("a < b", "a < b"),
            ("a<b", "a<b"),
            ("3 <4 and 5> 2", "3 <4 and 5> 2"),
            ("<3 you", "<3 you"),
            ("AT&T", "AT&T"),
            ("Fish &amp; Chips", "Fish & Chips"),
            ("&amp;amp;", "&amp;"),
            ("&lt;b&gt;bold&lt;/b&gt;", "<b>bold</b>"),
            ("Th&eacute;resa", "Théresa"),
            ("a&mdash;b", "a\u{2014}b"),
            ("&#233;&#xE9;&#XE9;", "ééé"),
            ("a&nbsp;b", "a b"),
            ("a\u{00A0}\u{2028}\t\n\r b", "a b"),
            ("  lead and trail \n", "lead and trail"),
            ("a\u{0007}b\u{0000}c", "abc"),
            ("Investi\u{00AD}gatory", "Investigatory"),
            ("ＮＣＡ", "NCA"),
            ("\u{FB01}nance", "finance"),
            ("e\u{0301}", "é"),
            (
                "Investigatory <b>Powers</b>&nbsp;Bill",
                "Investigatory Powers Bill",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(to_plain_text(input), *want, "input {input:?}");
        }
    }

    #[test]
    fn plain_text_robust_on_garbage() {
        // Every prefix of a nasty string: must not panic (cuts are at char boundaries).
        let nasty = "<a \"b>'<!--<![CDATA[é]]><script></scr<</style>&#x;&#;&;&amp<<>>ü\u{0}";
        for (i, _) in nasty.char_indices() {
            let _ = to_plain_text(&nasty[..i]);
            let _ = to_plain_text(&nasty[i..]);
        }
    }

    #[test]
    fn plain_text_is_linear_on_pathological_input() {
        // Quadratic behaviour would take minutes here; linear takes milliseconds.
        let n = 200_000;
        for unit in ["<a", "<a \"", "&amp", "<!", "<script", "]]>", "<![CDATA["] {
            let s = unit.repeat(n / unit.len());
            let t = std::time::Instant::now();
            let _ = to_plain_text(&s);
            assert!(t.elapsed().as_secs() < 5, "slow on {unit:?}");
        }
    }

    /// Deterministic pseudo-random strings built from the fragments most likely to upset an
    /// HTML stripper (a cheap stand-in for the fuzzer).
    pub(crate) fn random_texts(count: usize) -> Vec<String> {
        const FRAGMENTS: &[&str] = &[
            "<",
            ">",
            "&",
            ";",
            "#",
            "x",
            "amp",
            "<!--",
            "-->",
            "<![CDATA[",
            "]]>",
            "<script>",
            "</script>",
            "<style",
            "\"",
            "'",
            "é",
            "\u{0301}",
            " ",
            "\n",
            "\u{0}",
            "<p>",
            "<br/>",
            "</",
            "ﬁ",
            "Ｎ",
            "\u{200B}",
            "&nbsp;",
            "&#x",
            "NCA",
            "dark",
            "-",
            "net",
            "\u{00A0}",
            "<b>",
            "Théresa",
            "\u{2028}",
            "\t",
            "&#233;",
            "?",
            "!",
        ];
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) as usize
        };
        (0..count)
            .map(|_| {
                let len = next() % 40;
                (0..len)
                    .map(|_| FRAGMENTS[next() % FRAGMENTS.len()])
                    .collect()
            })
            .collect()
    }

    #[test]
    fn plain_text_invariants_on_random_input() {
        for input in random_texts(3000) {
            let out = to_plain_text(&input);
            assert_eq!(out.trim(), out, "{input:?}");
            assert!(!out.contains("  "), "{input:?} -> {out:?}");
            assert!(
                out.chars()
                    .all(|c| c == ' ' || !(c.is_whitespace() || c.is_control())),
                "{input:?} -> {out:?}"
            );
            for t in tokenize(&out) {
                assert_eq!(&out[t.start..t.end], t.text);
                assert!(!t.text.is_empty());
                let _ = fold(t.text);
            }
        }
    }

    #[test]
    fn ascii_fast_paths_agree_with_unicode_properties() {
        for b in 0..=0x7Fu8 {
            let c = char::from(b);
            let want = if c.is_whitespace() {
                CharClass::Space
            } else if c.is_control() {
                CharClass::Drop
            } else {
                CharClass::Keep
            };
            assert_eq!(ascii_class(b), want, "{b:#04x}");
        }
        // The byte-wise tokenizer against the char-wise definition.
        let reference = |text: &str| -> Vec<(usize, usize)> {
            let mut out = Vec::new();
            let mut start = None;
            for (i, c) in text.char_indices() {
                let inside = c.is_alphanumeric() || (start.is_some() && is_combining_mark(c));
                match (inside, start) {
                    (true, None) => start = Some(i),
                    (false, Some(s)) => {
                        out.push((s, i));
                        start = None;
                    }
                    _ => {}
                }
            }
            out.extend(start.map(|s| (s, text.len())));
            out
        };
        for input in random_texts(3000) {
            let text = to_plain_text(&input);
            let got: Vec<(usize, usize)> =
                tokenize(&text).iter().map(|t| (t.start, t.end)).collect();
            assert_eq!(got, reference(&text), "{text:?}");
            // The table-driven hash: FNV-1a of the lower-cased bytes, for all-ASCII tokens only.
            let mut toks = tokens(&text);
            while let Some((tok, hash)) = toks.next_hashed() {
                let want = tok.text.is_ascii().then(|| {
                    tok.text.bytes().fold(ASCII_HASH_SEED, |h, b| {
                        ascii_hash_step(h, b.to_ascii_lowercase())
                    })
                });
                assert_eq!(hash, want, "{:?} in {text:?}", tok.text);
            }
            // Entities decoded from the first `&` on, against html-escape on the whole text.
            let stripped = strip_tags(&input);
            assert_eq!(
                decode_entities(&stripped),
                html_escape::decode_html_entities(&stripped),
                "{input:?}"
            );
            // Run-wise folding of ASCII against char-wise pushing.
            let mut runs = Folder {
                out: String::new(),
                pending_space: false,
            };
            let mut chars = Folder {
                out: String::new(),
                pending_space: false,
            };
            let ascii: String = input.chars().filter(char::is_ascii).collect();
            assert_eq!(runs.push_ascii_run(&ascii, 0), ascii.len());
            ascii.chars().for_each(|c| chars.push(c));
            assert_eq!(runs.out, chars.out, "{ascii:?}");
        }
    }

    #[test]
    fn entities_decode_from_the_first_ampersand() {
        for text in [
            "",
            "no references",
            "&amp;",
            "a &amp; b",
            "Tom &amp; Jerry &lt;3 &#233;t&#xE9; &nbsp;&unknown; & &; &#; &#x;",
            "tail &",
            "&&amp;",
            "é &eacute; ü",
        ] {
            assert_eq!(
                decode_entities(text),
                html_escape::decode_html_entities(text),
                "{text:?}"
            );
        }
        assert!(matches!(decode_entities("a & b"), Cow::Borrowed(_)));
        assert!(matches!(decode_entities("plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn block_tags_sorted_for_binary_search() {
        assert!(BLOCK_TAGS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn tokenize_table() {
        let texts =
            |s: &str| -> Vec<String> { tokenize(s).iter().map(|t| t.text.to_string()).collect() };
        assert_eq!(texts("dark-net"), ["dark", "net"]);
        assert_eq!(texts("NCA's"), ["NCA", "s"]);
        assert_eq!(texts("  G7 summit, 2024!"), ["G7", "summit", "2024"]);
        assert_eq!(texts("Théresa"), ["Théresa"]);
        assert_eq!(texts("e\u{0301}te\u{0301}"), ["e\u{0301}te\u{0301}"]);
        assert_eq!(texts("\u{0301}x"), ["x"]);
        assert_eq!(texts("हिन्दी"), ["हिन्दी"]);
        assert!(tokenize("").is_empty());
        assert!(tokenize(" ,.- ").is_empty());
        let toks = tokenize("a bé c");
        assert_eq!((toks[1].start, toks[1].end), (2, 5));
        assert_eq!((toks[2].start, toks[2].end), (6, 7));
    }

    #[test]
    fn fold_table() {
        assert_eq!(fold("Théresa"), "theresa");
        assert_eq!(fold("INVESTIGATORY"), "investigatory");
        assert_eq!(fold("already"), "already");
        assert_eq!(fold("Ÿ"), "y");
        assert_eq!(fold("İstanbul"), "istanbul");
        assert_eq!(fold("e\u{0301}"), "e");
        assert_eq!(fold("ΑΘΗΝΑ"), "αθηνα");
    }
}
