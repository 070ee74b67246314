//! What one report contributes to story clustering: term hashes, document frequencies, and
//! the weighted sub-vectors (title, text, names) plus the sampled word runs of a report.

use chrono::{DateTime, Utc};

use crate::pipeline::normalise::{ASCII_HASH_SEED, ascii_hash_step, fold, tokens};

/// Stable 64-bit hash of a token's folded form: FNV-1a over the lower-cased bytes, the same as
/// [`crate::pipeline::normalise::Tokens::next_hashed`] gives for ASCII tokens, so it can be
/// persisted (document frequencies) and recomputed by another process.
pub fn term_hash(token: &str) -> u64 {
    if token.is_ascii() {
        token.bytes().fold(ASCII_HASH_SEED, |h, b| {
            ascii_hash_step(h, b.to_ascii_lowercase())
        })
    } else {
        folded_hash(token)
    }
}

/// [`term_hash`] the slow way, folding the whole token as a string (for tests).
#[cfg(test)]
pub(super) fn term_hash_folding(token: &str) -> u64 {
    fold(token).bytes().fold(ASCII_HASH_SEED, ascii_hash_step)
}

/// Slots of the per-thread table of folded chars ([`folded_hash`]): a power of two.
const FOLDED_CHARS: usize = 4_096;

/// One char's folded form (lower case, decomposed, marks dropped), as UTF-8.
#[derive(Clone, Copy)]
struct FoldedChar {
    /// The char (`u32::MAX`: empty slot).
    c: u32,
    len: u8,
    bytes: [u8; 11],
}

/// [`term_hash`] of a token that is not all ASCII, without folding it as a string: folding
/// (lower case, NFD, marks dropped) costs thousands of instructions per token, and CJK or
/// Cyrillic text brings many such tokens. The fold of a token is the concatenation of the folds
/// of its chars: lower-casing is per char, and NFD's only context, the canonical reordering of
/// combining marks, moves only chars that the fold drops (every char of non-zero combining
/// class is a mark; `tests::fold_is_per_char` checks this for every char). So each char's
/// fold is computed once per thread (a direct-mapped table) and its bytes hashed.
fn folded_hash(token: &str) -> u64 {
    use std::cell::RefCell;
    const EMPTY: FoldedChar = FoldedChar {
        c: u32::MAX,
        len: 0,
        bytes: [0; 11],
    };
    thread_local! {
        static TABLE: RefCell<Vec<FoldedChar>> = RefCell::new(vec![EMPTY; FOLDED_CHARS]);
    }
    let slow = || fold(token).bytes().fold(ASCII_HASH_SEED, ascii_hash_step);
    TABLE.with(|table| {
        let Ok(mut table) = table.try_borrow_mut() else {
            return slow();
        };
        let mut h = ASCII_HASH_SEED;
        for c in token.chars() {
            if c.is_ascii() {
                h = ascii_hash_step(h, (c as u8).to_ascii_lowercase());
                continue;
            }
            let Some(slot) = table.get_mut(c as usize & (FOLDED_CHARS - 1)) else {
                return slow();
            };
            if slot.c != c as u32 {
                let mut buf = [0u8; 4];
                let folded = fold(c.encode_utf8(&mut buf));
                let Some(bytes) = slot.bytes.get_mut(..folded.len()) else {
                    return slow(); // longer than a slot holds (no such char is known)
                };
                bytes.copy_from_slice(folded.as_bytes());
                slot.len = folded.len() as u8;
                slot.c = c as u32;
            }
            for &b in slot.bytes.get(..usize::from(slot.len)).unwrap_or(&[]) {
                h = ascii_hash_step(h, b);
            }
        }
        h
    })
}

/// Mixes a term hash into another feature space (names, numbers, runs) so that the same
/// word as a plain term and as a name are different features.
fn salted(hash: u64, salt: u64) -> u64 {
    let x = hash ^ salt;
    // splitmix64 finaliser: spreads the low bits the tables index by.
    let x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

const NAME_SALT: u64 = 0x6e61_6d65_0000_0001;
const RUN_SALT: u64 = 0x7275_6e73_0000_0002;

/// Words in a run (shingle): 8 words in a row shared by two reports is a quotation or a
/// copied paragraph, not chance.
pub const RUN_WORDS: usize = 8;
/// A run is kept when `hash % RUN_SAMPLE == 0`: the same runs are sampled in every report
/// (unlike a random sample), so a quote of `L` words shared by two reports shows up as about
/// `(L - 7) / RUN_SAMPLE` shared runs.
const RUN_SAMPLE: u64 = 3;
/// Runs in more documents than this are boilerplate: a quotation or wire paragraph is
/// carried by a handful of outlets (the reports' shared words still join wider copies).
const RUN_MAX_DF: u32 = 8;
/// Most sampled runs kept per report (the first ones in text order).
const MAX_RUNS: usize = 96;
/// Tokens of a body considered (huge bodies are cut: the lead paragraphs carry the event).
const MAX_BODY_TOKENS: usize = 2_000;
/// Tokens of each field a document-frequency count reads. A word's document frequency is
/// estimated from where most words of most entries are (summaries are shorter, long articles
/// repeat their vocabulary), and the sampled runs a report keeps ([`MAX_RUNS`], one position
/// in three) lie within the first ~300 tokens anyway; counting all 2,000 was 8% of a cold
/// poll's CPU.
const DF_TOKENS: usize = 600;
/// Tokens of a title considered.
const MAX_TITLE_TOKENS: usize = 64;
/// Terms kept per sub-vector (the heaviest ones).
pub(super) const MAX_TITLE_TERMS: usize = 16;
pub(super) const MAX_TEXT_TERMS: usize = 48;
pub(super) const MAX_NAME_TERMS: usize = 24;

/// Function words never used as terms (they still count in runs). Document frequencies make
/// most of them weightless anyway; the list matters while the frequencies are young.
const STOPWORDS: &[&str] = &[
    "a",
    "about",
    "after",
    "again",
    "against",
    "all",
    "also",
    "am",
    "an",
    "and",
    "any",
    "are",
    "as",
    "at",
    "be",
    "because",
    "been",
    "before",
    "being",
    "between",
    "both",
    "but",
    "by",
    "can",
    "could",
    "did",
    "do",
    "does",
    "down",
    "during",
    "each",
    "few",
    "for",
    "from",
    "further",
    "had",
    "has",
    "have",
    "having",
    "he",
    "her",
    "here",
    "hers",
    "him",
    "his",
    "how",
    "i",
    "if",
    "in",
    "into",
    "is",
    "it",
    "its",
    "just",
    "may",
    "me",
    "more",
    "most",
    "my",
    "new",
    "no",
    "nor",
    "not",
    "now",
    "of",
    "off",
    "on",
    "once",
    "one",
    "only",
    "or",
    "other",
    "our",
    "out",
    "over",
    "own",
    "said",
    "same",
    "says",
    "she",
    "should",
    "so",
    "some",
    "such",
    "than",
    "that",
    "the",
    "their",
    "them",
    "then",
    "there",
    "these",
    "they",
    "this",
    "those",
    "through",
    "to",
    "too",
    "two",
    "under",
    "until",
    "up",
    "very",
    "was",
    "we",
    "were",
    "what",
    "when",
    "where",
    "which",
    "while",
    "who",
    "whom",
    "why",
    "will",
    "with",
    "would",
    "year",
    "you",
    "your",
    "week",
    "told",
    "today",
    "yesterday",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
    "mr",
    "mrs",
    "ms",
    "per",
    "via",
    "news",
    "read",
    "more",
    "post",
    "appeared",
    "first",
    "according",
    "since",
    "last",
    "being",
];

fn is_stopword(folded_hash: u64) -> bool {
    use std::sync::LazyLock;
    static SET: LazyLock<Vec<u64>> = LazyLock::new(|| {
        let mut v: Vec<u64> = STOPWORDS.iter().map(|w| term_hash(w)).collect();
        v.sort_unstable();
        v.dedup();
        v
    });
    SET.binary_search(&folded_hash).is_ok()
}

/// Document frequencies over every entry polled, matched or not: how distinctive a word is.
///
/// A fixed table of `2^BITS` saturating `u16` counters indexed by the low bits of a term hash
/// (collisions only make a rare word look a little commoner), plus the number of documents.
/// Memory is fixed (1 MiB of counters), [`DocFreq::observe`] is O(1) per token, and when the
/// document count reaches [`DocFreq::HALF_LIFE_DOCS`] every counter is halved, so the table
/// follows recent vocabulary and never saturates.
#[derive(Clone)]
pub struct DocFreq {
    counts: Vec<u16>,
    /// The buckets of the document being observed: sorted and deduplicated at its end (a word
    /// counts once per document), then counted in bucket order (a pass over the table, not
    /// one cache miss per token and one more for a per-bucket stamp).
    scratch: Vec<u32>,
    docs: u32,
    /// Changes since this table was made or read ([`DocFreq::revision`]); not saved.
    revision: u64,
}

impl std::fmt::Debug for DocFreq {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DocFreq").field("docs", &self.docs).finish()
    }
}

/// Why [`DocFreq::from_bytes`] refused a blob.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocFreqError {
    /// Not a blob written by [`DocFreq::to_bytes`] of this version.
    #[error("document-frequency blob: {0}")]
    Corrupt(&'static str),
}

const DF_BITS: u32 = 19;
const DF_MAGIC: &[u8; 4] = b"NWD1";

impl Default for DocFreq {
    fn default() -> Self {
        Self::new()
    }
}

impl DocFreq {
    /// Documents after which all counts are halved.
    pub const HALF_LIFE_DOCS: u32 = 400_000;

    pub fn new() -> Self {
        DocFreq {
            counts: vec![0; 1 << DF_BITS],
            scratch: Vec::new(),
            docs: 0,
            revision: 0,
        }
    }

    /// How many times the counts changed (a document counted, another copy folded in) since
    /// this table was made or read back: a store saves it only when this moved.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    fn bucket(hash: u64) -> usize {
        // The FNV low bits are weak for short tokens: fold the high half in.
        ((hash ^ (hash >> 29) ^ (hash >> 43)) & ((1 << DF_BITS) - 1)) as usize
    }

    /// Count one document given the hashes of its terms (duplicates count once). The hashes
    /// are [`term_hash`]es, e.g. those `Tokens::next_hashed` yields for ASCII tokens.
    pub fn observe(&mut self, hashes: impl IntoIterator<Item = u64>) {
        self.begin();
        for h in hashes {
            self.count(h);
        }
        self.end();
    }

    /// Count one entry (title and plain-text body, first [`DF_TOKENS`] tokens of each): its
    /// words and its sampled 8-word runs (a run in many documents is boilerplate, not a
    /// quotation).
    pub fn observe_text(&mut self, title: &str, body: &str) {
        self.begin();
        for text in [title, body] {
            let mut toks = tokens(text);
            let mut runs = RunHasher::default();
            let mut n = 0;
            while let Some((tok, ascii)) = toks.next_hashed() {
                let h = ascii.unwrap_or_else(|| term_hash(tok.text));
                self.count(h);
                if let Some(r) = runs.push(h) {
                    self.count(r);
                }
                n += 1;
                if n >= DF_TOKENS {
                    break;
                }
            }
        }
        self.end();
    }

    /// Count one entry whose terms were gathered by a [`DocTerms`] (during another pass over
    /// its tokens, e.g. the matcher's): the same counts as [`DocFreq::observe_text`] over the
    /// same title and body.
    pub fn add(&mut self, terms: &DocTerms) {
        if terms.finished {
            // Already sorted and deduplicated by `DocTerms::finish`.
            self.count_distinct(&terms.buckets);
            return;
        }
        self.begin();
        self.scratch.extend_from_slice(&terms.buckets);
        self.end();
    }

    fn begin(&mut self) {
        self.scratch.clear();
    }

    fn count(&mut self, h: u64) {
        self.scratch.push(Self::bucket(h) as u32);
    }

    fn end(&mut self) {
        let mut scratch = std::mem::take(&mut self.scratch);
        sort_dedup_buckets(&mut scratch);
        self.count_distinct(&scratch);
        self.scratch = scratch;
    }

    /// Count one document given its distinct buckets (in ascending order: one pass over the
    /// table).
    fn count_distinct(&mut self, buckets: &[u32]) {
        for &b in buckets {
            if let Some(c) = self.counts.get_mut(b as usize) {
                *c = c.saturating_add(1);
            }
        }
        self.docs = self.docs.saturating_add(1);
        self.revision += 1;
        if self.docs >= Self::HALF_LIFE_DOCS {
            self.docs /= 2;
            for c in &mut self.counts {
                *c /= 2;
            }
        }
    }

    /// Fold in what others counted: `self` (which was `base` when last synchronised) becomes
    /// `stored` (the shared copy, which others may have added to since `base`) plus what
    /// `self` counted since `base`. Several processes counting into one shared copy this way
    /// (each under the shared copy's lock) count every document once. When nothing was added
    /// elsewhere (`stored` is `base`), `self` is unchanged. Should `self` have halved since
    /// `base`, its own counts are the best estimate left: the larger of each.
    pub fn merge_since(&mut self, base: &DocFreq, stored: &DocFreq) {
        self.revision += 1;
        if self.docs < base.docs {
            for (c, s) in self.counts.iter_mut().zip(&stored.counts) {
                *c = (*c).max(*s);
            }
            self.docs = self.docs.max(stored.docs);
            return;
        }
        for ((c, b), s) in self.counts.iter_mut().zip(&base.counts).zip(&stored.counts) {
            *c = s.saturating_add(c.saturating_sub(*b));
        }
        self.docs = stored.docs.saturating_add(self.docs - base.docs);
        if self.docs >= Self::HALF_LIFE_DOCS {
            self.docs /= 2;
            for c in &mut self.counts {
                *c /= 2;
            }
        }
    }

    /// Documents observed.
    pub fn docs(&self) -> u32 {
        self.docs
    }

    /// Documents that contained the term (approximate: shared bucket, halving).
    pub fn df(&self, hash: u64) -> u32 {
        u32::from(self.counts.get(Self::bucket(hash)).copied().unwrap_or(0))
    }

    /// Inverse document frequency, smoothed: `ln((N + 1) / (df + 1)) + 1`, never below 0.1.
    /// A word never seen counts as seen once (it is in the report being weighed).
    pub fn idf(&self, hash: u64) -> f32 {
        let n = f64::from(self.docs) + 1.0;
        let df = f64::from(self.df(hash).max(1)) + 1.0;
        (((n / df).ln() + 1.0).max(0.1)) as f32
    }

    /// The counts and the document count, zero runs compressed: one blob to persist per poll.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 * 1024);
        out.extend_from_slice(DF_MAGIC);
        out.extend_from_slice(&self.docs.to_le_bytes());
        // Pairs of (zeros to skip as varint, count as varint); counts never zero.
        let mut zeros: u64 = 0;
        for &c in &self.counts {
            if c == 0 {
                zeros += 1;
            } else {
                put_varint(&mut out, zeros);
                put_varint(&mut out, u64::from(c));
                zeros = 0;
            }
        }
        out
    }

    /// Read back a [`DocFreq::to_bytes`] blob.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DocFreqError> {
        let rest = bytes
            .strip_prefix(DF_MAGIC)
            .ok_or(DocFreqError::Corrupt("bad magic"))?;
        let (docs, mut rest) = rest
            .split_first_chunk::<4>()
            .ok_or(DocFreqError::Corrupt("truncated"))?;
        let mut df = DocFreq::new();
        df.docs = u32::from_le_bytes(*docs);
        let mut pos = 0usize;
        while !rest.is_empty() {
            let zeros = get_varint(&mut rest).ok_or(DocFreqError::Corrupt("truncated"))?;
            let count = get_varint(&mut rest).ok_or(DocFreqError::Corrupt("truncated"))?;
            pos = usize::try_from(zeros)
                .ok()
                .and_then(|z| pos.checked_add(z))
                .ok_or(DocFreqError::Corrupt("bad offset"))?;
            let slot = df
                .counts
                .get_mut(pos)
                .ok_or(DocFreqError::Corrupt("bad offset"))?;
            *slot = u16::try_from(count).map_err(|_| DocFreqError::Corrupt("bad count"))?;
            pos += 1;
        }
        Ok(df)
    }
}

pub(super) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(super) fn get_varint(input: &mut &[u8]) -> Option<u64> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = input.split_first()?;
        *input = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// One entry's document-frequency terms, gathered token by token while another pass reads
/// its text (the matcher's scan), so that the entry is not tokenised a second time: start a
/// field ([`DocTerms::field`]: the title, then the body), feed it each token
/// ([`DocTerms::token`]), then hand it to [`DocFreq::add`]. It counts what
/// [`DocFreq::observe_text`] counts: the first [`DF_TOKENS`] tokens of each field and their
/// sampled word runs.
#[derive(Default)]
pub struct DocTerms {
    buckets: Vec<u32>,
    runs: RunHasher,
    in_field: usize,
    /// `buckets` are sorted and deduplicated ([`DocTerms::finish`]).
    finished: bool,
}

impl DocTerms {
    /// Start the next field (its runs do not continue the previous field's words).
    pub fn field(&mut self) {
        self.runs = RunHasher::default();
        self.in_field = 0;
    }

    /// The field's next token, with its ASCII hash when `Tokens::next_hashed` gave one.
    pub fn token(&mut self, text: &str, ascii: Option<u64>) {
        if self.in_field >= DF_TOKENS {
            return;
        }
        self.in_field += 1;
        self.finished = false;
        let h = ascii.unwrap_or_else(|| term_hash(text));
        self.buckets.push(DocFreq::bucket(h) as u32);
        if let Some(r) = self.runs.push(h) {
            self.buckets.push(DocFreq::bucket(r) as u32);
        }
    }

    /// Sort and deduplicate the gathered buckets (outside any lock on the [`DocFreq`]).
    pub fn finish(&mut self) {
        sort_dedup_buckets(&mut self.buckets);
        self.finished = true;
    }
}

/// Sort and deduplicate document-frequency buckets (each below `2^DF_BITS`), as
/// `sort_unstable` + `dedup` would. Long lists (most entries' hundreds of words) go through a
/// per-thread bitmap of all buckets with a summary bit per 64-bucket word: O(1) per bucket
/// and one pass over the summary, instead of a comparison sort's `n log n`. (A bucket out of
/// range may be dropped: the table has no counter for it either.)
pub(super) fn sort_dedup_buckets(v: &mut Vec<u32>) {
    use std::cell::RefCell;
    /// Below this a comparison sort is as cheap as the bitmap's pass over its summary.
    const SHORT: usize = 64;
    const WORDS: usize = (1 << DF_BITS) / 64;
    struct BucketSet {
        bits: Vec<u64>,
        summary: Vec<u64>,
    }
    thread_local! {
        static SET: RefCell<BucketSet> = RefCell::new(BucketSet {
            bits: vec![0; WORDS],
            summary: vec![0; WORDS / 64],
        });
    }
    let sort = |v: &mut Vec<u32>| {
        v.sort_unstable();
        v.dedup();
    };
    if v.len() < SHORT {
        return sort(v);
    }
    SET.with(|set| {
        let Ok(mut set) = set.try_borrow_mut() else {
            return sort(v);
        };
        let BucketSet { bits, summary } = &mut *set;
        for &b in v.iter() {
            let w = (b >> 6) as usize;
            if let Some(word) = bits.get_mut(w) {
                *word |= 1 << (b & 63);
            }
            if let Some(s) = summary.get_mut(w >> 6) {
                *s |= 1 << (w & 63);
            }
        }
        v.clear();
        // Drain in ascending order, leaving both bitmaps all zero again.
        for (si, s) in summary.iter_mut().enumerate() {
            let mut words = std::mem::take(s);
            while words != 0 {
                let w = si * 64 + words.trailing_zeros() as usize;
                words &= words - 1;
                let Some(word) = bits.get_mut(w) else {
                    continue;
                };
                let mut set_bits = std::mem::take(word);
                while set_bits != 0 {
                    v.push((w * 64) as u32 + set_bits.trailing_zeros());
                    set_bits &= set_bits - 1;
                }
            }
        }
    });
}

/// Rolling (Rabin–Karp) hash of the last [`RUN_WORDS`] term hashes, O(1) per word; yields
/// the sampled ones.
#[derive(Default)]
struct RunHasher {
    window: [u64; RUN_WORDS],
    n: usize,
    rolling: u64,
}

/// Base of the rolling hash (odd) and its `RUN_WORDS`-th power, for removing the oldest word.
const RUN_BASE: u64 = 0x0000_0100_0000_01b3;
const RUN_BASE_POW: u64 = {
    let mut p: u64 = 1;
    let mut i = 0;
    while i < RUN_WORDS {
        p = p.wrapping_mul(RUN_BASE);
        i += 1;
    }
    p
};

impl RunHasher {
    fn push(&mut self, h: u64) -> Option<u64> {
        let slot = self.n % RUN_WORDS;
        let oldest = if self.n >= RUN_WORDS {
            self.window.get(slot).copied().unwrap_or(0)
        } else {
            0
        };
        if let Some(w) = self.window.get_mut(slot) {
            *w = h;
        }
        self.n += 1;
        self.rolling = self
            .rolling
            .wrapping_mul(RUN_BASE)
            .wrapping_add(h)
            .wrapping_sub(oldest.wrapping_mul(RUN_BASE_POW));
        if self.n < RUN_WORDS {
            return None;
        }
        let run = salted(self.rolling, RUN_SALT);
        run.is_multiple_of(RUN_SAMPLE).then_some(run)
    }
}

/// What one stored item contributes: the caller fills it from the item's row.
#[derive(Debug, Clone, Copy)]
pub struct Report<'a> {
    /// The item's id in the store (used by [`super::StoryIndex::place_report`]).
    pub item: i64,
    /// Published time, else first-seen time.
    pub time: DateTime<Utc>,
    /// Plain text (from `normalise::to_plain_text`).
    pub title: &'a str,
    /// Plain text: content if any, else summary.
    pub body: &'a str,
    /// Host of the item's link (`None` without one); runs shared only within one host are
    /// an outlet's boilerplate, not evidence.
    pub host: Option<&'a str>,
}

/// A sparse, L2-normalised vector: `(term, weight)` sorted by term.
pub(super) type Vector = Vec<(u64, f32)>;

/// Fewer documents observed than this, and idf cannot tell "story" or "report" from
/// "Warrington": a report weighted so joins a story only on shared wording (two runs), never
/// on shared words alone. A real first poll observes thousands of entries.
pub const COLD_DOCS: u32 = 50;

/// The features of one report, computed once with the document frequencies of the moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Features {
    pub(super) time: i64,
    pub(super) host: u32,
    pub(super) title: Vector,
    pub(super) text: Vector,
    pub(super) names: Vector,
    /// Sampled run hashes, sorted, deduplicated.
    pub(super) runs: Vec<u64>,
    /// Display words of the heaviest terms and names (not persisted): for explanations.
    pub(super) labels: Vec<(u64, String)>,
    /// Display text of each sampled run (not persisted).
    pub(super) run_text: Vec<(u64, String)>,
    /// Weighted with document frequencies over too few documents to tell distinctive words
    /// from common ones ([`COLD_DOCS`]): only shared wording counts then (not persisted).
    pub(super) cold: bool,
}

fn host_hash(host: Option<&str>) -> u32 {
    match host {
        None => 0,
        Some(h) => {
            let h = h.trim_start_matches("www.");
            (salted(term_hash(h), 7) as u32) | 1
        }
    }
}

impl Features {
    /// Features of `report` weighted by `df`.
    pub fn new(report: &Report<'_>, df: &DocFreq) -> Features {
        let mut title_tf: Vec<(u64, f32)> = Vec::new();
        let mut text_tf: Vec<(u64, f32)> = Vec::new();
        let mut names_tf: Vec<(u64, f32)> = Vec::new();
        let mut labels: Vec<(u64, String)> = Vec::new();
        let mut runs: Vec<(u64, String)> = Vec::new();
        // Capitalised words at the start of a sentence: names only if the report also
        // writes them capitalised elsewhere ("Dell has shipped ... new Dell computers").
        let mut maybe_names: Vec<u64> = Vec::new();
        let title_case = is_title_case(report.title);

        for (field, text) in [(0, report.title), (1, report.body)] {
            let limit = if field == 0 {
                MAX_TITLE_TOKENS
            } else {
                MAX_BODY_TOKENS
            };
            let mut hasher = RunHasher::default();
            let mut starts: [usize; RUN_WORDS] = [0; RUN_WORDS];
            let mut toks = tokens(text);
            let mut n = 0usize;
            let mut sentence_start = true;
            let mut prev_end = 0usize;
            while let Some((tok, ascii)) = toks.next_hashed() {
                if n >= limit {
                    break;
                }
                // A name begins with a capital and is not the first word of a sentence
                // (headlines capitalise everything, so only acronyms count there).
                let gap = text.get(prev_end..tok.start).unwrap_or("");
                if n == 0 || gap.contains(['.', '!', '?', ':', '"', '\u{201c}', '|', '-']) {
                    sentence_start = true;
                }
                let h = ascii.unwrap_or_else(|| term_hash(tok.text));
                if let Some(slot) = starts.get_mut(n % RUN_WORDS) {
                    *slot = tok.start;
                }
                n += 1;
                if let Some(r) = hasher.push(h)
                    && runs.len() < MAX_RUNS
                {
                    let from = starts.get(n % RUN_WORDS).copied().unwrap_or(0);
                    runs.push((r, text.get(from..tok.end).unwrap_or("").to_owned()));
                }
                let chars = tok.text.chars().count();
                let has_digit = tok.text.chars().any(|c| c.is_ascii_digit());
                let stop = is_stopword(h);
                if !stop && (chars >= 2 || has_digit) {
                    let idf = df.idf(h);
                    text_tf.push((h, if field == 0 { 2.0 } else { 1.0 }));
                    if field == 0 {
                        title_tf.push((h, 1.0));
                    }
                    let first_upper = tok.text.chars().next().is_some_and(char::is_uppercase);
                    let acronym = chars >= 2
                        && tok
                            .text
                            .chars()
                            .all(|c| c.is_uppercase() || c.is_ascii_digit())
                        && tok.text.chars().any(char::is_uppercase);
                    // Inner capitals: TalkTalk, eDellRoot, iPad, OpParis.
                    let mixed = tok.text.chars().skip(1).any(char::is_uppercase)
                        && tok.text.chars().any(char::is_lowercase);
                    let in_prose = field == 1 || !title_case;
                    let name = acronym || mixed || (in_prose && first_upper && !sentence_start);
                    let number = has_digit && chars >= 2;
                    if name || number {
                        names_tf.push((h, 1.0));
                    } else if first_upper && in_prose {
                        maybe_names.push(h);
                    }
                    if (name || idf > 2.0) && labels.len() < 512 {
                        labels.push((h, tok.text.to_owned()));
                    }
                }
                sentence_start = false;
                prev_end = tok.end;
            }
        }

        {
            let mut confirmed: Vec<u64> = names_tf.iter().map(|e| e.0).collect();
            confirmed.sort_unstable();
            confirmed.dedup();
            names_tf.extend(
                maybe_names
                    .into_iter()
                    .filter(|h| confirmed.binary_search(h).is_ok())
                    .map(|h| (h, 1.0)),
            );
        }
        let weigh = |tf: Vec<(u64, f32)>, salt: Option<u64>, keep: usize| -> Vector {
            let mut v: Vec<(u64, f32)> = merge_counts(tf)
                .into_iter()
                .map(|(h, c)| {
                    // Squared idf: a distinctive word counts far more than a common one.
                    let idf = df.idf(h);
                    (salt.map_or(h, |s| salted(h, s)), (1.0 + c.ln()) * idf * idf)
                })
                .collect();
            top(&mut v, keep);
            normalise(&mut v);
            v
        };
        labels.sort_by_key(|l| l.0);
        labels.dedup_by_key(|l| l.0);
        // A run seen in more documents than a quotation plausibly is (licence notices,
        // newsletter footers shared by many sites) is not evidence.
        runs.retain(|r| df.df(r.0) <= RUN_MAX_DF);
        let mut run_hashes: Vec<u64> = runs.iter().map(|r| r.0).collect();
        run_hashes.sort_unstable();
        run_hashes.dedup();
        Features {
            time: report.time.timestamp(),
            host: host_hash(report.host),
            title: weigh(title_tf, None, MAX_TITLE_TERMS),
            text: weigh(text_tf, None, MAX_TEXT_TERMS),
            names: weigh(names_tf, Some(NAME_SALT), MAX_NAME_TERMS),
            runs: run_hashes,
            labels,
            cold: df.docs() < COLD_DOCS,
            run_text: runs,
        }
    }

    /// Display word of a term or name, if the report kept one.
    pub(super) fn label(&self, term: u64) -> Option<&str> {
        if let Ok(i) = self.labels.binary_search_by_key(&term, |l| l.0) {
            return self.labels.get(i).map(|l| l.1.as_str());
        }
        self.labels
            .iter()
            .find(|(h, _)| salted(*h, NAME_SALT) == term)
            .map(|(_, s)| s.as_str())
    }

    /// The features without display text (what an index keeps per member).
    pub(super) fn without_labels(mut self) -> Features {
        self.labels = Vec::new();
        self.run_text = Vec::new();
        self
    }

    pub(super) fn run_label(&self, run: u64) -> Option<&str> {
        self.run_text
            .iter()
            .find(|(h, _)| *h == run)
            .map(|(_, s)| s.as_str())
    }

    /// Whether the report has anything to compare (an empty title and body has not).
    pub fn is_empty(&self) -> bool {
        self.text.is_empty() && self.runs.is_empty()
    }

    /// Compact persistent form (labels are not kept: explanations of reloaded items name
    /// terms of the new report only).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + 12 * (self.title.len() + self.text.len()));
        out.extend_from_slice(b"NWF1");
        out.extend_from_slice(&self.time.to_le_bytes());
        out.extend_from_slice(&self.host.to_le_bytes());
        for v in [&self.title, &self.text, &self.names] {
            put_varint(&mut out, v.len() as u64);
            for (h, w) in v {
                out.extend_from_slice(&h.to_le_bytes());
                out.extend_from_slice(&w.to_le_bytes());
            }
        }
        put_varint(&mut out, self.runs.len() as u64);
        for r in &self.runs {
            out.extend_from_slice(&r.to_le_bytes());
        }
        out
    }

    /// Read back [`Features::to_bytes`]; `None` when the blob is not one.
    pub fn from_bytes(bytes: &[u8]) -> Option<Features> {
        let mut rest = bytes.strip_prefix(b"NWF1")?;
        let (time, r) = rest.split_first_chunk::<8>()?;
        let (host, r) = r.split_first_chunk::<4>()?;
        rest = r;
        let mut vectors: [Vector; 3] = Default::default();
        for v in &mut vectors {
            let n = usize::try_from(get_varint(&mut rest)?).ok()?;
            if n > 4096 {
                return None;
            }
            for _ in 0..n {
                let (h, r) = rest.split_first_chunk::<8>()?;
                let (w, r) = r.split_first_chunk::<4>()?;
                rest = r;
                v.push((u64::from_le_bytes(*h), f32::from_le_bytes(*w)));
            }
        }
        let n = usize::try_from(get_varint(&mut rest)?).ok()?;
        if n > 4096 {
            return None;
        }
        let mut runs = Vec::with_capacity(n);
        for _ in 0..n {
            let (h, r) = rest.split_first_chunk::<8>()?;
            rest = r;
            runs.push(u64::from_le_bytes(*h));
        }
        let [title, text, names] = vectors;
        Some(Features {
            time: i64::from_le_bytes(*time),
            host: u32::from_le_bytes(*host),
            title,
            text,
            names,
            runs,
            labels: Vec::new(),
            run_text: Vec::new(),
            cold: false,
        })
    }
}

/// A headline in Title Case capitalises every word, so its capitals say nothing about names.
fn is_title_case(title: &str) -> bool {
    let (mut words, mut caps) = (0, 0);
    for t in tokens(title) {
        if t.text.chars().count() < 4 {
            continue; // short function words are often lower case even in Title Case
        }
        words += 1;
        caps += usize::from(t.text.chars().next().is_some_and(char::is_uppercase));
    }
    words >= 2 && caps * 4 >= words * 3
}

/// Sum the counts of equal terms.
fn merge_counts(mut tf: Vec<(u64, f32)>) -> Vec<(u64, f32)> {
    tf.sort_unstable_by_key(|e| e.0);
    let mut out: Vec<(u64, f32)> = Vec::with_capacity(tf.len());
    for (h, c) in tf {
        match out.last_mut() {
            Some(last) if last.0 == h => last.1 += c,
            _ => out.push((h, c)),
        }
    }
    out
}

/// Keep the `keep` heaviest entries, sorted by term.
pub(super) fn top(v: &mut Vec<(u64, f32)>, keep: usize) {
    if v.len() > keep {
        v.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        v.truncate(keep);
    }
    v.sort_unstable_by_key(|e| e.0);
}

pub(super) fn normalise(v: &mut [(u64, f32)]) {
    let norm = v.iter().map(|e| e.1 * e.1).sum::<f32>().sqrt();
    if norm > 0.0 {
        for e in v {
            e.1 /= norm;
        }
    }
}
