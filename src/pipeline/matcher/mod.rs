//! Matcher: the rule language and the compiled multi-rule matcher.
//!
//! `query` parses a rule's text into an AST; [`Matcher`] compiles every rule of a config into one
//! index that scans an item's tokens once. A config may hold thousands of rules and every polled
//! item goes through here, so the cost per item is proportional to its tokens plus the term hits
//! found, never to the number of rules.
//!
//! Semantics, in one place:
//! - A term matches whole tokens only (`NCA` never matches "NCAA" or "Lancashire"), ignoring
//!   case and diacritics, except acronyms (see [`query`]) which must match exactly as written.
//! - A phrase (or a bare word containing punctuation, like `dark-net`) matches consecutive
//!   tokens of the same field. Whatever separates the tokens in the text is ignored, so
//!   `"Investigatory Powers Bill"` also matches "Investigatory Powers, Bill" and "dark. Net":
//!   missing a story costs more than an occasional loose hit.
//! - `term*` matches tokens whose folded form starts with `term` (exact-case for acronyms).
//! - `title:` restricts to the title; everything else looks at title and body (never a phrase
//!   straddling the two).
//! - `a NEAR/n b` needs an occurrence of each in the same field, either order, not overlapping,
//!   the later one starting at most `n` token positions after the earlier one ends.
//! - A rule matches an item when its boolean query is true **and** at least one of its
//!   non-negated terms occurs in the item. The second condition only matters for queries like
//!   `a OR NOT b`, which would otherwise match almost every item; it is also what lets the
//!   matcher skip every rule none of whose positive terms was seen.

pub mod query;

use std::collections::HashSet;
use std::ops::Range;

use crate::pipeline::normalise::{
    ASCII_HASH_SEED, Tokens, ascii_hash_step, fold, fold_cow, tokens,
};
use query::{Expr, Pat, Term};
pub use query::{Query, QueryError, QueryWarning, lint};

/// Hash map of the matcher's hot paths (one lookup per token). Keys come from the config (rule
/// terms) or are small term ids, never inserted from feed text, so a fast non-DoS-resistant
/// hasher is safe here; SipHash was ~8% of a cold poll's instructions.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// What rules see as an entry's body: its summary and content, each once (feeds often repeat
/// one as the other). Most entries have only one of them, which is then borrowed.
pub fn item_body<'a>(summary: &'a str, content: &'a str) -> std::borrow::Cow<'a, str> {
    use std::borrow::Cow;
    if content.is_empty() || content == summary {
        Cow::Borrowed(summary)
    } else if summary.is_empty() {
        Cow::Borrowed(content)
    } else {
        Cow::Owned(format!("{summary} {content}"))
    }
}

/// Which text of an item a token was read from ([`Matcher::match_item_visiting`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Title,
    Body,
}

/// One rule that matched an item, with the query terms (as written in the rule, phrases in
/// double quotes, prefixes with their `*`) that were found in the item.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RuleMatch {
    pub rule: String,
    pub terms: Vec<String>,
}

/// What matching one item produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemMatch {
    /// Rules that matched, in rule order.
    pub rules: Vec<RuleMatch>,
    /// Up to ~240 characters of the item's plain text around the first hit ("…" marks cuts).
    pub snippet: String,
}

/// Every rule of a configuration, compiled once.
#[derive(Debug)]
pub struct Matcher {
    rules: Vec<Rule>,
    /// Distinct terms of all rules (a term used by many rules is looked for once).
    terms: Vec<CompiledTerm>,
    index: Index,
    /// Some rule uses NEAR: matching then keeps where each term occurred, not only whether.
    has_near: bool,
}

#[derive(Debug)]
struct CompiledTerm {
    pats: Vec<Pat>,
    prefix: bool,
    /// `(rule, title_only)` for every non-negated occurrence, sorted, deduplicated: the rules an
    /// occurrence of this term makes worth evaluating.
    positive_in: Vec<(u32, bool)>,
}

#[derive(Debug)]
struct Rule {
    name: String,
    node: Node,
    /// Non-negated leaves in query order, one per distinct label: what `RuleMatch::terms`
    /// reports.
    reported: Vec<Leaf>,
}

#[derive(Debug)]
struct Leaf {
    term: u32,
    title_only: bool,
    /// The term as written, with `title:` when it applies.
    label: String,
}

/// A rule's query with terms replaced by term ids and `title:` pushed down to the leaves.
#[derive(Debug)]
enum Node {
    Leaf {
        term: u32,
        title_only: bool,
    },
    Near {
        a: u32,
        b: u32,
        n: u32,
        title_only: bool,
    },
    Not(Box<Node>),
    And(Vec<Node>),
    Or(Vec<Node>),
}

/// Lookup from a text token to the terms whose first token it can be.
#[derive(Debug, Default)]
struct Index {
    /// Folded first token -> terms.
    folded: HashMap<String, Vec<u32>>,
    /// Acronym first token, exactly as written -> terms.
    exact: HashMap<String, Vec<u32>>,
    /// Single-token prefix terms, by folded prefix; `*_lens` are the distinct byte lengths of
    /// the keys, ascending, so a token is probed once per length that exists rather than once
    /// per character (a pathological 1 MB token stays linear).
    folded_prefix: HashMap<String, Vec<u32>>,
    folded_prefix_lens: Vec<usize>,
    exact_prefix: HashMap<String, Vec<u32>>,
    exact_prefix_lens: Vec<usize>,
    /// Pre-filter for ASCII tokens, which are nearly all tokens: [`ascii_hash`] of the folded
    /// form of every key of the four maps. A lower-case-ASCII token (or prefix of one, at the
    /// lengths in `prefix_lens`) whose hash is not here starts no term, so the common token
    /// costs one pass over its bytes and one set probe, without folding or string compares.
    first_hashes: HashSet<u64, foldhash::fast::RandomState>,
    /// Byte lengths of the folded prefix keys of both prefix maps, ascending.
    prefix_lens: Vec<usize>,
}

impl Index {
    /// Whether `token` may be the first token of some term. Never false when it is one.
    /// `hash` is the [`ascii_hash_step`] hash of the lower-cased token when it is ASCII.
    fn may_start(&self, token: &str, hash: Option<u64>) -> bool {
        // Not ASCII: folding may change its length and bytes, so leave it to the full lookups.
        let Some(hash) = hash else { return true };
        if self.prefix_lens.is_empty() {
            return self.first_hashes.contains(&hash);
        }
        let mut prefix = ASCII_HASH_SEED;
        let mut lens = self.prefix_lens.iter().peekable();
        for (n, b) in token.bytes().enumerate() {
            prefix = ascii_hash_step(prefix, b.to_ascii_lowercase());
            // Prefix keys of length n + 1.
            while let Some(&&len) = lens.peek() {
                if len > n + 1 {
                    break;
                }
                if len == n + 1 && self.first_hashes.contains(&prefix) {
                    return true;
                }
                lens.next();
            }
        }
        self.first_hashes.contains(&hash)
    }
}

/// [`ascii_hash_step`] over a whole string (keys at build time).
fn ascii_hash(s: &str) -> u64 {
    s.bytes().fold(ASCII_HASH_SEED, ascii_hash_step)
}

/// Which fields a term was found in, for one item.
#[derive(Debug, Clone, Copy, Default)]
struct Seen {
    title: bool,
    body: bool,
}

impl Seen {
    fn satisfies(self, title_only: bool) -> bool {
        self.title || (!title_only && self.body)
    }
}

/// One occurrence of a term in a text: byte range from its first to its last token, and the
/// positions (token indexes) of those tokens.
#[derive(Debug, Clone, Copy)]
struct Hit {
    term: u32,
    start: usize,
    end: usize,
    first: u32,
    last: u32,
}

/// Target snippet length in characters, and how much of it goes before the first hit.
const SNIPPET_CHARS: usize = 240;
const SNIPPET_BEFORE: usize = 80;
/// How far (in characters) a snippet edge may move to land on a word boundary.
const SNIPPET_SLACK: usize = 30;

impl Matcher {
    /// Compile `(rule name, parsed query)` pairs. Cost is paid once per configuration.
    pub fn new(rules: Vec<(String, Query)>) -> Matcher {
        let mut builder = Builder::default();
        let mut compiled = Vec::with_capacity(rules.len());
        for (k, (name, query)) in rules.into_iter().enumerate() {
            let rule_id = u32::try_from(k).unwrap_or(u32::MAX);
            let mut reported = Vec::new();
            let node = builder.compile(query.root(), false, false, rule_id, &mut reported);
            let mut labels = HashSet::new();
            reported.retain(|leaf: &Leaf| labels.insert(leaf.label.clone()));
            compiled.push(Rule {
                name,
                node,
                reported,
            });
        }
        let mut terms = std::mem::take(&mut builder.terms);
        let mut index = Index::default();
        for (id, term) in terms.iter_mut().enumerate() {
            term.positive_in.sort_unstable();
            term.positive_in.dedup();
            let id = u32::try_from(id).unwrap_or(u32::MAX);
            let single_prefix = term.prefix && term.pats.len() == 1;
            let Some(first) = term.pats.first() else {
                continue;
            };
            let (map, key) = match (first, single_prefix) {
                (Pat::Folded(s), false) => (&mut index.folded, s),
                (Pat::Exact(s), false) => (&mut index.exact, s),
                (Pat::Folded(s), true) => (&mut index.folded_prefix, s),
                (Pat::Exact(s), true) => (&mut index.exact_prefix, s),
            };
            map.entry(key.clone()).or_default().push(id);
        }
        index.folded_prefix_lens = key_lengths(&index.folded_prefix);
        index.exact_prefix_lens = key_lengths(&index.exact_prefix);
        for (map, prefix) in [
            (&index.folded, false),
            (&index.exact, false),
            (&index.folded_prefix, true),
            (&index.exact_prefix, true),
        ] {
            for key in map.keys() {
                let folded = fold(key);
                index.first_hashes.insert(ascii_hash(&folded));
                if prefix {
                    index.prefix_lens.push(folded.len());
                }
            }
        }
        index.prefix_lens.sort_unstable();
        index.prefix_lens.dedup();
        Matcher {
            has_near: builder.has_near,
            rules: compiled,
            terms,
            index,
        }
    }

    /// Match one item. `title` and `body` are already plain text (see
    /// [`crate::pipeline::normalise::to_plain_text`]); `body` is summary + content. `None` when no rule
    /// matched.
    pub fn match_item(&self, title: &str, body: &str) -> Option<ItemMatch> {
        self.match_item_visiting(title, body, |_, _, _, _| {})
    }

    /// [`Matcher::match_item`], handing every token it reads to `visit` on the way: the
    /// field (`Field::Title`, then `Field::Body`), the token's byte offset in that text, its
    /// text, and its ASCII hash when `Tokens::next_hashed` gave one. For callers that need
    /// the tokens too (the poll's document frequencies) and would otherwise tokenise the
    /// entry a second time.
    pub fn match_item_visiting(
        &self,
        title: &str,
        body: &str,
        mut visit: impl FnMut(Field, usize, &str, Option<u64>),
    ) -> Option<ItemMatch> {
        let title_hits = self.scan(title, |start, text, hash| {
            visit(Field::Title, start, text, hash)
        });
        let body_hits = self.scan(body, |start, text, hash| {
            visit(Field::Body, start, text, hash)
        });
        let mut seen: HashMap<u32, Seen> = HashMap::default();
        for h in &title_hits {
            seen.entry(h.term).or_default().title = true;
        }
        for h in &body_hits {
            seen.entry(h.term).or_default().body = true;
        }

        // Only rules with a positive term present can match (see the module docs).
        let mut candidates: Vec<u32> = Vec::new();
        for (&term, &s) in &seen {
            if let Some(t) = self.terms.get(term as usize) {
                candidates.extend(
                    t.positive_in
                        .iter()
                        .filter(|(_, title_only)| s.satisfies(*title_only))
                        .map(|(rule, _)| *rule),
                );
            }
        }
        candidates.sort_unstable();
        candidates.dedup();
        let places = self.has_near.then(|| Places {
            title: &title_hits,
            body: &body_hits,
        });

        let mut matched = Vec::new();
        // Terms whose body occurrences may anchor the snippet.
        let mut snippet_terms: HashSet<u32> = HashSet::new();
        for rule in candidates
            .iter()
            .filter_map(|&r| self.rules.get(r as usize))
        {
            if !eval(&rule.node, &seen, places.as_ref()) {
                continue;
            }
            let mut terms = Vec::new();
            for leaf in &rule.reported {
                if seen
                    .get(&leaf.term)
                    .is_some_and(|s| s.satisfies(leaf.title_only))
                {
                    terms.push(leaf.label.clone());
                    if !leaf.title_only {
                        snippet_terms.insert(leaf.term);
                    }
                }
            }
            matched.push(RuleMatch {
                rule: rule.name.clone(),
                terms,
            });
        }
        if matched.is_empty() {
            return None;
        }

        let first_body_hit = body_hits.iter().find(|h| snippet_terms.contains(&h.term));
        let snippet = match first_body_hit {
            Some(h) => snippet(body, h.start, h.end),
            // The hit was in the title, which the reader sees anyway: show the body's opening.
            None if !body.is_empty() => snippet(body, 0, 0),
            None => snippet(title, 0, 0),
        };
        Some(ItemMatch {
            rules: matched,
            snippet,
        })
    }

    /// Byte ranges in `text` (plain text) of every positive term hit of any rule, sorted and
    /// non-overlapping: used to emphasise matched terms in digests.
    ///
    /// The matcher does not know whether `text` is a title or a body, so `title:` terms are
    /// highlighted wherever they occur; negated terms never are. Overlapping or touching hits
    /// are merged into one range.
    pub fn highlight(&self, text: &str) -> Vec<Range<usize>> {
        let mut ranges: Vec<Range<usize>> = self
            .scan(text, |_, _, _| {})
            .into_iter()
            .filter(|h| {
                self.terms
                    .get(h.term as usize)
                    .is_some_and(|t| !t.positive_in.is_empty())
            })
            .map(|h| h.start..h.end)
            .collect();
        ranges.sort_unstable_by_key(|r| (r.start, r.end));
        let mut merged: Vec<Range<usize>> = Vec::with_capacity(ranges.len());
        for r in ranges {
            match merged.last_mut() {
                Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
                _ => merged.push(r),
            }
        }
        merged
    }

    /// Every occurrence of every term in `text`, in order of starting token.
    fn scan(&self, text: &str, mut visit: impl FnMut(usize, &str, Option<u64>)) -> Vec<Hit> {
        let mut hits = Vec::new();
        let mut candidates: Vec<u32> = Vec::new();
        let idx = &self.index;
        let mut tokens = tokens(text);
        let mut position: u32 = 0;
        while let Some((tok, hash)) = tokens.next_hashed() {
            visit(tok.start, tok.text, hash);
            let here = position;
            position = position.saturating_add(1);
            if !idx.may_start(tok.text, hash) {
                continue;
            }
            let f = fold_cow(tok.text);
            candidates.clear();
            if let Some(ids) = idx.folded.get(f.as_ref()) {
                candidates.extend(ids);
            }
            probe_prefixes(
                &idx.folded_prefix,
                &idx.folded_prefix_lens,
                &f,
                &mut candidates,
            );
            // Acronyms hold an upper-case letter, so a token that folding leaves unchanged
            // cannot be one.
            if f != tok.text {
                if let Some(ids) = idx.exact.get(tok.text) {
                    candidates.extend(ids);
                }
                probe_prefixes(
                    &idx.exact_prefix,
                    &idx.exact_prefix_lens,
                    tok.text,
                    &mut candidates,
                );
            }
            // Each term's first token is indexed under exactly one key, so no duplicates here.
            for &id in &candidates {
                if let Some(end) = self.rest_matches(id, tok.end, tokens.clone()) {
                    let len = self.terms.get(id as usize).map_or(1, |t| t.pats.len());
                    hits.push(Hit {
                        term: id,
                        start: tok.start,
                        end,
                        first: here,
                        last: here.saturating_add(u32::try_from(len - 1).unwrap_or(u32::MAX)),
                    });
                }
            }
        }
        hits
    }

    /// Whether term `id`, whose first token has just matched (ending at byte `end`), matches
    /// the tokens that follow (`rest`) too; returns the end byte of its last token.
    fn rest_matches(&self, id: u32, end: usize, mut rest: Tokens<'_>) -> Option<usize> {
        let term = self.terms.get(id as usize)?;
        let last = term.pats.len().checked_sub(1)?;
        let mut end = end;
        for (k, pat) in term.pats.iter().enumerate().skip(1) {
            let tok = rest.next()?;
            end = tok.end;
            let prefix = term.prefix && k == last;
            let folded;
            let (want, have) = match pat {
                Pat::Folded(s) => {
                    folded = fold_cow(tok.text);
                    (s.as_str(), folded.as_ref())
                }
                Pat::Exact(s) => (s.as_str(), tok.text),
            };
            let ok = if prefix {
                have.starts_with(want)
            } else {
                have == want
            };
            if !ok {
                return None;
            }
        }
        Some(end)
    }
}

fn key_lengths(map: &HashMap<String, Vec<u32>>) -> Vec<usize> {
    let mut lens: Vec<usize> = map.keys().map(String::len).collect();
    lens.sort_unstable();
    lens.dedup();
    lens
}

fn probe_prefixes(
    map: &HashMap<String, Vec<u32>>,
    lens: &[usize],
    token: &str,
    out: &mut Vec<u32>,
) {
    for &len in lens {
        // `get` returns None past the end or off a char boundary.
        match token.get(..len) {
            Some(head) => {
                if let Some(ids) = map.get(head) {
                    out.extend(ids);
                }
            }
            None if len > token.len() => break,
            None => {}
        }
    }
}

/// Where terms occurred, for NEAR: every hit of the title and of the body, in order of
/// starting token.
struct Places<'a> {
    title: &'a [Hit],
    body: &'a [Hit],
}

fn eval(node: &Node, seen: &HashMap<u32, Seen>, places: Option<&Places<'_>>) -> bool {
    match node {
        Node::Leaf { term, title_only } => seen.get(term).is_some_and(|s| s.satisfies(*title_only)),
        Node::Near {
            a,
            b,
            n,
            title_only,
        } => places.is_some_and(|p| {
            near(p.title, *a, *b, *n) || (!*title_only && near(p.body, *a, *b, *n))
        }),
        Node::Not(inner) => !eval(inner, seen, places),
        Node::And(xs) => xs.iter().all(|x| eval(x, seen, places)),
        Node::Or(xs) => xs.iter().any(|x| eval(x, seen, places)),
    }
}

/// Whether some hit of `a` and some hit of `b` among `hits` (one field, in order of starting
/// token) do not overlap and the later starts at most `n` positions after the earlier ends.
/// Linear in the hits: for each `a`, the `b` ending last before it and the `b` starting first
/// after it are the nearest candidates, found by two pointers that only move forward (a
/// term's hits all have the same length, so their ends are in order too).
fn near(hits: &[Hit], a: u32, b: u32, n: u32) -> bool {
    let of = |t: u32| hits.iter().filter(move |h| h.term == t);
    let bs: Vec<&Hit> = of(b).collect();
    if bs.is_empty() {
        return false;
    }
    let (mut before, mut after) = (0usize, 0usize);
    for x in of(a) {
        // bs[..before]: the b hits that end before x starts.
        while bs.get(before).is_some_and(|y| y.last < x.first) {
            before += 1;
        }
        if let Some(y) = before.checked_sub(1).and_then(|i| bs.get(i))
            && x.first - y.last <= n
        {
            return true;
        }
        // bs[after]: the first b hit that starts after x ends.
        while bs.get(after).is_some_and(|y| y.first <= x.last) {
            after += 1;
        }
        if let Some(y) = bs.get(after)
            && y.first - x.last <= n
        {
            return true;
        }
    }
    false
}

#[derive(Default)]
struct Builder {
    terms: Vec<CompiledTerm>,
    ids: HashMap<(Vec<Pat>, bool), u32>,
    has_near: bool,
}

impl Builder {
    fn intern(&mut self, t: &Term) -> u32 {
        let key = (t.pats.clone(), t.prefix);
        if let Some(&id) = self.ids.get(&key) {
            return id;
        }
        let id = u32::try_from(self.terms.len()).unwrap_or(u32::MAX);
        self.terms.push(CompiledTerm {
            pats: t.pats.clone(),
            prefix: t.prefix,
            positive_in: Vec::new(),
        });
        self.ids.insert(key, id);
        id
    }

    fn compile(
        &mut self,
        e: &Expr,
        title: bool,
        negated: bool,
        rule: u32,
        reported: &mut Vec<Leaf>,
    ) -> Node {
        match e {
            Expr::Term(t) => {
                let id = self.intern(t);
                if !negated {
                    if let Some(ct) = self.terms.get_mut(id as usize) {
                        ct.positive_in.push((rule, title));
                    }
                    let label = if title {
                        format!("title:{}", t.written)
                    } else {
                        t.written.clone()
                    };
                    reported.push(Leaf {
                        term: id,
                        title_only: title,
                        label,
                    });
                }
                Node::Leaf {
                    term: id,
                    title_only: title,
                }
            }
            Expr::Near(a, b, n) => {
                self.has_near = true;
                let leaf = |me: &mut Self, t: &Term, reported: &mut Vec<Leaf>| match me.compile(
                    &Expr::Term(t.clone()),
                    title,
                    negated,
                    rule,
                    reported,
                ) {
                    Node::Leaf { term, .. } => term,
                    _ => 0,
                };
                Node::Near {
                    a: leaf(self, a, reported),
                    b: leaf(self, b, reported),
                    n: *n,
                    title_only: title,
                }
            }
            Expr::Not(inner) => Node::Not(Box::new(
                self.compile(inner, title, !negated, rule, reported),
            )),
            Expr::Title(inner) => self.compile(inner, true, negated, rule, reported),
            Expr::And(xs) => Node::And(
                xs.iter()
                    .map(|x| self.compile(x, title, negated, rule, reported))
                    .collect(),
            ),
            Expr::Or(xs) => Node::Or(
                xs.iter()
                    .map(|x| self.compile(x, title, negated, rule, reported))
                    .collect(),
            ),
        }
    }
}

/// About [`SNIPPET_CHARS`] characters of `text` around the hit at `hit_start..hit_end` (byte
/// offsets on char boundaries), starting [`SNIPPET_BEFORE`] characters before it, edges moved to
/// word boundaries when one is near, "…" where text was cut.
fn snippet(text: &str, hit_start: usize, hit_end: usize) -> String {
    let total = text.chars().count();
    if total <= SNIPPET_CHARS {
        return text.to_string();
    }
    let hit_char = text.get(..hit_start).map_or(0, |s| s.chars().count());
    let mut start_c = hit_char.saturating_sub(SNIPPET_BEFORE);
    let end_c = (start_c + SNIPPET_CHARS).min(total);
    // Near the end of the text, use the full window rather than a short one.
    start_c = start_c.min(end_c.saturating_sub(SNIPPET_CHARS));
    let byte_at = |c: usize| text.char_indices().nth(c).map_or(text.len(), |(b, _)| b);
    let mut start = byte_at(start_c);
    let mut end = byte_at(end_c);

    if start > 0 {
        // Move forward past the next space, unless that would skip into the hit.
        let limit = byte_at(start_c + SNIPPET_SLACK).min(hit_start);
        if let Some(p) = text.get(start..limit).and_then(|s| s.find(' ')) {
            start += p + 1;
        }
    }
    if end < text.len() {
        // Move back to the previous space, unless that would cut into the hit.
        let limit = byte_at(end_c.saturating_sub(SNIPPET_SLACK)).max(hit_end);
        if let Some(p) = text.get(limit..end).and_then(|s| s.rfind(' ')) {
            end = limit + p;
        }
    }
    let body = text.get(start..end).unwrap_or(text).trim();
    let mut out = String::with_capacity(body.len() + 8);
    if start > 0 {
        out.push('…');
    }
    out.push_str(body);
    if end < text.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::normalise::to_plain_text;

    fn matcher(rules: &[(&str, &str)]) -> Matcher {
        Matcher::new(
            rules
                .iter()
                .filter_map(|(name, src)| {
                    let q = Query::parse(src);
                    assert!(q.is_ok(), "{src:?}: {q:?}");
                    q.ok().map(|q| (name.to_string(), q))
                })
                .collect(),
        )
    }

    /// Terms reported when the single rule `src` is matched against `(title, body)`.
    fn one(src: &str, title: &str, body: &str) -> Option<Vec<String>> {
        let m = matcher(&[("r", src)]);
        m.match_item(title, body).map(|im| {
            assert_eq!(im.rules.len(), 1);
            im.rules[0].terms.clone()
        })
    }

    #[test]
    fn near_matches_within_n_positions_in_either_order_in_one_field() {
        let body = "The Joint Operations Cell (JOC) of GCHQ and the NCA opened in Warrington.";
        assert!(one("GCHQ NEAR/3 NCA", "", body).is_some());
        assert!(one("NCA NEAR/3 GCHQ", "", body).is_some(), "either order");
        assert!(
            one("GCHQ NEAR/2 NCA", "", body).is_none(),
            "3 positions apart"
        );
        assert_eq!(
            one("\"Joint Operations Cell\" NEAR/4 GCHQ", "", body),
            Some(vec![
                "\"Joint Operations Cell\"".to_string(),
                "GCHQ".to_string()
            ])
        );
        assert!(one("\"Joint Operations Cell\" NEAR/2 GCHQ", "", body).is_none());
        // Acronyms stay exact inside NEAR: "nca" in lower case is not the NCA.
        assert!(one("GCHQ NEAR/3 NCA", "", "GCHQ and the nca").is_none());
        // Never across fields; a title scope keeps both in the title.
        assert!(one("GCHQ NEAR/5 NCA", "GCHQ", "NCA").is_none());
        assert!(one("title:(GCHQ NEAR/2 NCA)", "GCHQ and NCA", "").is_some());
        assert!(one("title:(GCHQ NEAR/2 NCA)", "x", "GCHQ and NCA").is_none());
        // The same term twice needs two occurrences.
        assert!(one("NCA NEAR/2 NCA", "", "the NCA said").is_none());
        assert!(one("NCA NEAR/2 NCA", "", "NCA and NCA").is_some());
        // Adjacent is NEAR/1; overlapping phrases are not near each other.
        assert!(one("dark NEAR/1 web", "", "the dark web").is_some());
        assert!(one("\"dark web\" NEAR/1 web", "", "the dark web").is_none());
        // NOT NEAR and NEAR beside other operators.
        assert!(one("NCA -(NCA NEAR/1 raid)", "", "NCA raid").is_none());
        assert!(one("NCA -(NCA NEAR/1 raid)", "", "NCA said a raid").is_some());
        // Linear in the hits: 20,000 of each, none near, answers quickly.
        let far = format!(
            "{} {}",
            "GCHQ x x x ".repeat(20_000),
            "NCA y y y ".repeat(20_000)
        );
        let started = std::time::Instant::now();
        assert!(one("GCHQ NEAR/2 NCA", "", &far).is_none());
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
    }

    #[test]
    fn semantics_table() {
        // (query, title, body, expected terms or None for no match)
        let cases: &[(&str, &str, &str, Option<&[&str]>)] = &[
            // Whole tokens only; acronyms exact.
            ("NCA", "", "The NCA said", Some(&["NCA"])),
            ("NCA", "", "NCAA finals tonight", None),
            ("NCA", "", "Lancashire police", None),
            ("NCA", "", "Banca d'Italia", None),
            ("NCA", "", "the nca said", None),
            ("NCA", "", "Nca said", None),
            ("NCA", "", "the NCA's investigation", Some(&["NCA"])),
            ("NCA", "NCA raid", "", Some(&["NCA"])),
            ("JOC", "", "Jockey club", None),
            ("JOC", "", "Jocelyn Bell", None),
            ("JOC", "", "a Romanian joc", None),
            ("JOC", "", "Joc", None),
            ("JOC", "", "the JOC met", Some(&["JOC"])),
            ("GCHQ", "", "a GCHQ-led review", Some(&["GCHQ"])),
            ("GCHQ", "", "gchq", None),
            ("G7", "", "G7 summit", Some(&["G7"])),
            ("G7", "", "g7 summit", None),
            ("G7", "", "G77 nations", None),
            ("G7", "", "the G7's leaders", Some(&["G7"])),
            ("MI5", "", "Mi5", None),
            ("MI5", "", "(MI5)", Some(&["MI5"])),
            // Ordinary words: case and diacritics ignored, still whole tokens.
            (
                "investigatory",
                "",
                "INVESTIGATORY",
                Some(&["investigatory"]),
            ),
            (
                "Investigatory",
                "",
                "investigatory",
                Some(&["Investigatory"]),
            ),
            ("Theresa", "", "Théresa May", Some(&["Theresa"])),
            ("Théresa", "", "THERESA MAY", Some(&["Théresa"])),
            ("agency", "", "agencyfoo", None),
            ("nca", "", "NCA", Some(&["nca"])),
            // Phrases and punctuated words.
            (
                "\"Investigatory Powers Bill\"",
                "",
                "the Investigatory Powers Bill passed",
                Some(&["\"Investigatory Powers Bill\""]),
            ),
            (
                "\"Investigatory Powers Bill\"",
                "",
                "Investigatory Powers, Bill",
                Some(&["\"Investigatory Powers Bill\""]),
            ),
            (
                "\"Investigatory Powers Bill\"",
                "",
                "Investigatory Bill Powers",
                None,
            ),
            (
                "\"Investigatory Powers Bill\"",
                "",
                "Investigatory Powers",
                None,
            ),
            ("\"dark web\"", "dark", "web", None),
            ("dark-net", "", "the dark net", Some(&["dark-net"])),
            ("\"dark net\"", "", "the dark-net", Some(&["\"dark net\""])),
            ("\"dark-net\"", "", "dark net", Some(&["\"dark-net\""])),
            ("dark-net", "", "darknet", None),
            ("\"NCA officers\"", "", "nca officers", None),
            (
                "\"NCA officers\"",
                "",
                "NCA Officers",
                Some(&["\"NCA officers\""]),
            ),
            (
                "\"National Crime Agency\"",
                "",
                "NATIONAL CRIME AGENCY",
                Some(&["\"National Crime Agency\""]),
            ),
            ("NCA's", "", "the NCA’s boss", Some(&["NCA's"])),
            // Prefixes.
            ("surveil*", "", "Surveillance state", Some(&["surveil*"])),
            ("surveil*", "", "surveiller", Some(&["surveil*"])),
            ("surveil*", "", "surveil", Some(&["surveil*"])),
            ("surveil*", "", "sur veil", None),
            ("surveil*", "", "mass-surveillance", Some(&["surveil*"])),
            ("Surveil*", "", "SURVÉILLANCE", Some(&["Surveil*"])),
            ("GCHQ*", "", "GCHQs", Some(&["GCHQ*"])),
            ("GCHQ*", "", "Gchqs", None),
            ("dark-we*", "", "dark webs", Some(&["dark-we*"])),
            // title:
            ("title:NCA", "NCA raid", "", Some(&["title:NCA"])),
            ("title:NCA", "Raid", "NCA raid", None),
            (
                "title:\"dark web\"",
                "Dark Web",
                "",
                Some(&["title:\"dark web\""]),
            ),
            ("title:(NCA OR GCHQ)", "GCHQ", "NCA", Some(&["title:GCHQ"])),
            (
                "title:NCA GCHQ",
                "NCA",
                "GCHQ",
                Some(&["title:NCA", "GCHQ"]),
            ),
            ("NCA -title:NCAA", "NCAA", "NCA", None),
            ("NCA -title:NCAA", "x", "NCA NCAA", Some(&["NCA"])),
            // NOT and -term.
            ("NCA -NCAA", "", "NCA", Some(&["NCA"])),
            ("NCA -NCAA", "", "NCA and NCAA", None),
            ("NCA -NCAA", "NCAA", "NCA", None),
            (
                "\"dark web\" NOT film",
                "",
                "dark web market",
                Some(&["\"dark web\""]),
            ),
            ("\"dark web\" NOT film", "", "dark web film", None),
            ("NCA -\"crime film\"", "", "NCA crime film", None),
            ("NCA -\"crime film\"", "", "NCA film crime", Some(&["NCA"])),
            ("NCA -(film OR movie)", "", "NCA movie", None),
            ("NCA -(film OR movie)", "", "NCA", Some(&["NCA"])),
            ("NOT a b", "", "b", Some(&["b"])),
            ("NOT a b", "", "a b", None),
            ("NOT NOT a", "", "a", Some(&["a"])),
            // A rule needs a positive hit: `a OR NOT b` does not match unrelated items.
            ("a OR NOT b", "", "c", None),
            ("a OR NOT b", "", "a b", Some(&["a"])),
            // Precedence: NOT > AND > OR.
            ("a OR b c", "", "a", Some(&["a"])),
            ("a OR b c", "", "b", None),
            ("a OR b c", "", "b c", Some(&["b", "c"])),
            ("a OR b AND c", "", "c", None),
            ("(a OR b) c", "", "a", None),
            ("(a OR b) c", "", "a c", Some(&["a", "c"])),
            ("(a OR b) c", "", "b c", Some(&["b", "c"])),
            // Implicit and explicit AND; lower-case operators are words.
            ("NCA GCHQ", "", "NCA", None),
            ("NCA GCHQ", "NCA", "GCHQ", Some(&["NCA", "GCHQ"])),
            ("NCA AND GCHQ", "", "GCHQ and NCA", Some(&["NCA", "GCHQ"])),
            ("fish and chips", "", "fish chips", None),
            (
                "fish and chips",
                "",
                "fish and chips",
                Some(&["fish", "and", "chips"]),
            ),
            ("cats or dogs", "", "cats", None),
            // Reported terms: found positives only, de-duplicated, in query order.
            ("NCA OR GCHQ", "", "GCHQ", Some(&["GCHQ"])),
            ("GCHQ OR NCA", "", "NCA GCHQ", Some(&["GCHQ", "NCA"])),
            (
                "NCA OR (NCA AND GCHQ)",
                "",
                "GCHQ NCA",
                Some(&["NCA", "GCHQ"]),
            ),
            // `c` is under two negations, so it counts as a positive term.
            ("a -(b -c)", "", "a b c", Some(&["a", "c"])),
            ("a -(b -c)", "", "a b", None),
        ];
        for (src, title, body, want) in cases {
            let got = one(src, title, body);
            let want: Option<Vec<String>> = want.map(|w| w.iter().map(|s| s.to_string()).collect());
            assert_eq!(got, want, "query {src:?} title {title:?} body {body:?}");
        }
    }

    #[test]
    fn matches_after_normalisation() {
        let body = to_plain_text("Investigatory <b>Powers</b>&nbsp;Bill");
        assert_eq!(
            one("\"Investigatory Powers Bill\"", "", &body),
            Some(vec!["\"Investigatory Powers Bill\"".to_string()])
        );
        let body = to_plain_text("ＮＣＡ raid on the <i>ﬁ</i>nance house");
        assert_eq!(
            one("NCA finance", "", &body),
            Some(vec!["NCA".to_string(), "finance".to_string()])
        );
        assert_eq!(
            one("Theresa", "", &to_plain_text("Th&eacute;resa")),
            Some(vec!["Theresa".to_string()])
        );
        // Full-width query is NFKC'd too.
        assert!(one("ＮＣＡ", "", "NCA").is_some());
    }

    #[test]
    fn multiple_rules_share_terms() {
        let m = matcher(&[
            ("r1", "NCA"),
            ("r2", "NCA GCHQ"),
            ("r3", "GCHQ -NCA"),
            ("r4", "title:GCHQ"),
            ("r5", "MI6"),
            ("r6", "NCA OR MI6"),
        ]);
        let im = m.match_item("GCHQ news", "NCA and GCHQ");
        let got: Option<Vec<(String, Vec<String>)>> =
            im.map(|im| im.rules.into_iter().map(|r| (r.rule, r.terms)).collect());
        let want = vec![
            ("r1".to_string(), vec!["NCA".to_string()]),
            (
                "r2".to_string(),
                vec!["NCA".to_string(), "GCHQ".to_string()],
            ),
            ("r4".to_string(), vec!["title:GCHQ".to_string()]),
            ("r6".to_string(), vec!["NCA".to_string()]),
        ];
        assert_eq!(got, Some(want));
        assert_eq!(m.match_item("nothing", "to see here"), None);
        assert_eq!(m.match_item("", ""), None);
    }

    #[test]
    fn thousand_rules() {
        let srcs: Vec<String> = (0..1000)
            .map(|i| match i % 4 {
                0 => format!("w{i} common"),
                1 => format!("common -w{i}"),
                2 => format!("\"phrase {i}\" OR pre{i}x*"),
                _ => format!("title:w{i}"),
            })
            .collect();
        let rules: Vec<(&str, &str)> = srcs.iter().map(|s| (s.as_str(), s.as_str())).collect();
        let m = matcher(&rules);
        let title = "w3 w4";
        let body = "common w8 w9 w12 phrase 2 pre6xylophone w7 phrase 10";
        let mut want: Vec<(String, Vec<String>)> = Vec::new();
        for (i, src) in srcs.iter().enumerate() {
            let terms: Vec<String> = match (i % 4, i) {
                (0, 4 | 8 | 12) => vec![format!("w{i}"), "common".into()],
                (1, 9) => continue,
                (1, _) => vec!["common".into()],
                (2, 2 | 10) => vec![format!("\"phrase {i}\"")],
                (2, 6) => vec!["pre6x*".into()],
                (3, 3) => vec!["title:w3".into()],
                _ => continue,
            };
            want.push((src.clone(), terms));
        }
        let got: Vec<(String, Vec<String>)> = m
            .match_item(title, body)
            .map(|im| im.rules.into_iter().map(|r| (r.rule, r.terms)).collect())
            .unwrap_or_default();
        assert_eq!(got, want);

        // Scanning cost must not grow with the number of rules: 2,000 items against 1,000
        // rules in well under a few seconds even in a debug build.
        let t = std::time::Instant::now();
        for _ in 0..2000 {
            let _ = m.match_item(
                "An ordinary headline",
                "Nothing here mentions any of the terms at all, honestly.",
            );
        }
        assert!(t.elapsed().as_secs() < 5);
    }

    #[test]
    fn cli_style_single_query() {
        let q = Query::parse("\"dark web\" -film").ok();
        let m = Matcher::new(q.map(|q| vec![("query".into(), q)]).unwrap_or_default());
        let im = m.match_item("Dark Web", "");
        assert_eq!(
            im.map(|im| im.rules),
            Some(vec![RuleMatch {
                rule: "query".into(),
                terms: vec!["\"dark web\"".into()],
            }])
        );
    }

    #[test]
    fn snippet_around_first_body_hit() {
        let before = "lorem ipsum ".repeat(30);
        let after = " dolor sit amet".repeat(30);
        let body = format!("{before}the NCA said{after}");
        let m = matcher(&[("r", "NCA")]);
        let im = m.match_item("Title", &body);
        let snip = im.map(|im| im.snippet).unwrap_or_default();
        assert!(snip.starts_with('…'), "{snip}");
        assert!(snip.ends_with('…'), "{snip}");
        assert!(snip.contains("the NCA said"), "{snip}");
        let n = snip.chars().count();
        assert!((200..=245).contains(&n), "{n}: {snip}");
        // Cut on word boundaries.
        let inner = snip.trim_matches('…');
        assert!(
            inner.starts_with("lorem ") || inner.starts_with("ipsum "),
            "{snip}"
        );
        assert!(inner.ends_with("dolor") || inner.ends_with("sit") || inner.ends_with("amet"));
    }

    #[test]
    fn snippet_prefers_body_then_falls_back() {
        let m = matcher(&[("r", "NCA")]);
        let long = format!("Opening words. {}", "filler text ".repeat(40));
        // Hit only in the title: snippet is the start of the body.
        let snip = m.match_item("NCA raid", &long).map(|im| im.snippet);
        let snip = snip.unwrap_or_default();
        assert!(snip.starts_with("Opening words."), "{snip}");
        assert!(snip.ends_with('…'));
        // No body: the title.
        let snip = m.match_item("NCA raid", "").map(|im| im.snippet);
        assert_eq!(snip.as_deref(), Some("NCA raid"));
        // Short body with a hit: the whole body.
        let snip = m.match_item("NCA", "short NCA body").map(|im| im.snippet);
        assert_eq!(snip.as_deref(), Some("short NCA body"));
        // Hit near the end of a long body: full-length window, no trailing cut.
        let body = format!("{}NCA end", "word ".repeat(100));
        let snip = m
            .match_item("", &body)
            .map(|im| im.snippet)
            .unwrap_or_default();
        assert!(snip.starts_with('…') && snip.ends_with("NCA end"), "{snip}");
        assert!(snip.chars().count() >= 200);
        // Multi-byte text is cut on char boundaries.
        let body = format!("{}NCA{}", "é ".repeat(200), " ü".repeat(200));
        let snip = m
            .match_item("", &body)
            .map(|im| im.snippet)
            .unwrap_or_default();
        assert!(snip.contains("NCA"));
        // A title: hit in the body does not anchor the snippet.
        let m = matcher(&[("r", "title:NCA")]);
        let body = format!("{}NCA", "word ".repeat(100));
        let snip = m
            .match_item("NCA", &body)
            .map(|im| im.snippet)
            .unwrap_or_default();
        assert!(snip.starts_with("word word"), "{snip}");
    }

    #[test]
    fn highlight_ranges() {
        let m = matcher(&[
            ("a", "NCA -film"),
            ("b", "\"dark web\""),
            ("c", "\"web market\" OR surveil*"),
        ]);
        let text = "NCA: dark web market, surveillance film, nca";
        let got: Vec<&str> = m.highlight(text).into_iter().map(|r| &text[r]).collect();
        assert_eq!(got, ["NCA", "dark web market", "surveillance"]);
        assert!(m.highlight("").is_empty());
        assert!(m.highlight("nothing").is_empty());
    }

    #[test]
    fn robust_on_random_text() {
        let m = matcher(&[
            ("a", "NCA -film"),
            ("b", "dark-net OR \"dark web\""),
            ("c", "surveil* OR Thé* OR title:x"),
            ("d", "N* net"),
        ]);
        let texts = crate::pipeline::normalise::tests::random_texts(1500);
        for pair in texts.chunks(2) {
            let title = to_plain_text(&pair[0]);
            let body = pair
                .get(1)
                .map(|b| to_plain_text(&b.repeat(20)))
                .unwrap_or_default();
            if let Some(im) = m.match_item(&title, &body) {
                assert!(!im.rules.is_empty());
                assert!(im.rules.iter().all(|r| !r.terms.is_empty()));
                assert!(im.snippet.chars().count() <= SNIPPET_CHARS + 2);
            }
            let ranges = m.highlight(&body);
            for w in ranges.windows(2) {
                assert!(w[0].end < w[1].start, "{ranges:?}");
            }
            for r in ranges {
                assert!(body.get(r).is_some_and(|s| !s.is_empty()));
            }
        }
    }

    /// The pre-filter as `scan` calls it, for one word.
    fn may_start(m: &Matcher, word: &str) -> bool {
        let Some((tok, hash)) = tokens(word).next_hashed() else {
            return false;
        };
        assert_eq!(tok.text, word);
        m.index.may_start(tok.text, hash)
    }

    #[test]
    fn prefilter_passes_every_token_that_starts_a_term() {
        // Every kind of key: folded, acronym, folded prefix, acronym prefix, non-ASCII.
        let m = matcher(&[
            (
                "a",
                "dark OR NCA OR surveil* OR NC* OR Thé* OR \"Investigatory Powers\"",
            ),
            ("b", "G7 OR net OR Ελλάδα OR a*"),
        ]);
        let words = [
            "dark",
            "DARK",
            "Dark",
            "NCA",
            "nca",
            "surveillance",
            "SURVEIL",
            "surv",
            "NCB",
            "nc",
            "N",
            "Theresa",
            "THE",
            "Investigatory",
            "g7",
            "G7",
            "net",
            "network",
            "a",
            "Ab",
            "ελλαδα",
            "Ελλάδα",
            "ΕΛΛΑΔΑ",
            "x",
            "",
            "darker",
        ];
        for w in words {
            let has_candidates = {
                let f = fold_cow(w);
                let idx = &m.index;
                let mut c = Vec::new();
                probe_prefixes(&idx.folded_prefix, &idx.folded_prefix_lens, &f, &mut c);
                probe_prefixes(&idx.exact_prefix, &idx.exact_prefix_lens, w, &mut c);
                idx.folded.contains_key(f.as_ref()) || idx.exact.contains_key(w) || !c.is_empty()
            };
            if has_candidates {
                assert!(may_start(&m, w), "{w:?} starts a term but was filtered out");
            }
        }
        assert!(!may_start(&m, "policeman"));
        assert!(!may_start(&m, "web"));
        // Without prefix terms the pre-filter is the token hash alone.
        let m = matcher(&[("a", "dark OR NCA OR \"Investigatory Powers\" OR Ελλάδα")]);
        for w in [
            "dark",
            "DARK",
            "NCA",
            "nca",
            "Investigatory",
            "ελλαδα",
            "Ελλάδα",
        ] {
            assert!(may_start(&m, w), "{w:?}");
        }
        assert!(!may_start(&m, "darker"));
        assert!(!may_start(&m, "Powers"));
    }

    #[test]
    fn empty_matcher() {
        let m = Matcher::new(Vec::new());
        assert_eq!(m.match_item("NCA", "NCA"), None);
        assert!(m.highlight("NCA").is_empty());
    }
}
