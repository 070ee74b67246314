//! Stories: the reports of one event from many outlets, grouped online and incrementally.
//!
//! Why this exists: one event is covered by many outlets under different URLs and headlines;
//! the analyst should read it once. Identical titles (`dedup::story_key`) catch reposts, not
//! coverage. This module decides, for each new stored item (a *report*), which *story* it
//! belongs to. It is pure: no I/O, no SQL; the store persists what it returns.
//!
//! # The algorithm
//! - [`DocFreq`] counts, over every entry polled (matched or not), how many documents hold
//!   each word (a fixed table of 2^19 counters keyed by a 64-bit word hash, halved every
//!   400,000 documents). Its idf says how distinctive a word is.
//! - [`Features::new`] turns a [`Report`] into three L2-normalised TF-IDF sub-vectors
//!   (weights `(1 + ln tf) · idf²`): the *title* (16 heaviest words), the *text* (title words
//!   counted twice plus the body, 48 heaviest) and the *names* (capitalised words not opening a
//!   sentence, acronyms, numbers; 24 heaviest), plus the *runs*: hashes of every 8-word
//!   sequence whose hash is 0 mod 3 (the same runs are sampled in every report, so a quotation
//!   or wire paragraph shared by two reports yields shared runs; runs in more than 8
//!   documents are boilerplate and dropped).
//! - A [`StoryIndex`] holds the stories of the time window with their *centroid* (sum of
//!   members' sub-vectors, 128 heaviest terms kept per sub-vector, and the union of their
//!   runs, each with the host it came from) and an inverted index from a story's distinctive
//!   keys (its 12 heaviest text terms, 6 heaviest names, its runs) to stories.
//! - [`StoryIndex::place`] looks up the report's own keys in the inverted index (posting lists
//!   longer than [`MAX_POSTING`] are skipped as undistinctive), keeps the
//!   [`MAX_CANDIDATES`] stories with most shared keys inside the window, and scores each:
//!   `score = g(Δt) · (0.25·cos_title + 0.45·cos_text + 0.30·cos_names + 0.1·min(runs, 3))`,
//!   where the cosines are against the centroid, `runs` counts shared runs from another host
//!   (an outlet's own boilerplate does not count) and `g(Δt) = exp(−Δt² / 2σ²)` with Δt the
//!   distance to the story's time span (first to last report). It joins the best story when `score ≥ threshold`
//!   *and* they share at least [`StorySettings::min_shared_terms`] distinctive terms or two
//!   runs; otherwise it starts a story. Comparing with the centroid (not the nearest member)
//!   keeps chains of loosely related reports from snowballing.
//! - Manual decisions ([`StoryIndex::split`], [`StoryIndex::merge`]) *pin* the items they
//!   touch: re-scoring an edited pinned report updates its story's centroid but never moves it.
//!   The store persists `(item, story, pinned)`; [`StoryIndex::insert_existing`] rebuilds the
//!   index from those rows (centroids are built lazily, once per story).
//!
//! Cost: placement looks at the postings of at most ~100 keys and scores at most
//! [`MAX_CANDIDATES`] stories, so it does not grow with the number of stories stored.

mod features;
#[cfg(test)]
mod tests;

/// Maps keyed by ids and term hashes: foldhash (as in the matcher), not SipHash — the keys
/// are not attacker-chosen strings but hashes and ids, and every placement does a few hundred
/// lookups.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

pub use features::{DocFreq, DocFreqError, DocTerms, Features, Report, term_hash};
use features::{Vector, top};

/// Item ids as the store has them.
pub type ItemId = i64;
/// Story ids: allocated by the index (from [`StoryIndex::with_next_id`] on), persisted by the
/// store.
pub type StoryId = i64;

/// A report with fewer distinct words than this (title and text together) carries too little
/// evidence to join anything: a one-word or empty entry gets a story of its own. Precision
/// first: 250 copies of "NCA update" are not one event.
pub const MIN_REPORT_TERMS: usize = 4;

/// Posting lists longer than this are skipped when looking for candidates: a key in that
/// many stories of the window is not distinctive.
pub const MAX_POSTING: usize = 2_000;
/// Stories scored in full per placement (those sharing most keys with the report).
pub const MAX_CANDIDATES: usize = 32;
/// Terms kept per centroid sub-vector.
const CENTROID_TERMS: usize = 128;
/// Runs kept per story.
const STORY_RUNS: usize = 512;
/// Keys of a story (or report) in the inverted index besides its runs.
const KEY_TEXT_TERMS: usize = 12;
const KEY_NAME_TERMS: usize = 6;
/// A term counts as shared evidence when it contributes at least this to a cosine.
const SHARED_TERM_CONTRIBUTION: f32 = 0.015;

/// Parameters of story clustering (`[stories]` in the config).
#[derive(Debug, Clone, PartialEq)]
pub struct StorySettings {
    /// Reports join only stories whose time span is within this of theirs (default 3 days);
    /// stories whose last report is older than this are evicted.
    pub window: TimeDelta,
    /// Score a report needs to join a story (default 0.22, on a 0–1.3 scale).
    pub threshold: f32,
    /// σ of the Gaussian time closeness (default 48 hours: 1 day from the story's time span
    /// keeps 88 % of the score, 2 days 61 %, 3 days 32 %).
    pub time_scale: TimeDelta,
    /// Distinctive terms a report must share with a story's centroid to join it, unless they
    /// share two runs (default 2).
    pub min_shared_terms: usize,
}

impl Default for StorySettings {
    fn default() -> Self {
        StorySettings {
            window: TimeDelta::days(3),
            threshold: 0.22,
            time_scale: TimeDelta::hours(48),
            min_shared_terms: 2,
        }
    }
}

/// Why a report is (or is not) in the story it was placed in: for `show ID`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// The story compared with (the one joined, or the best one rejected); `None` when no
    /// story in the window shared a key.
    pub story: Option<StoryId>,
    pub score: f32,
    pub threshold: f32,
    pub title: f32,
    pub text: f32,
    pub names: f32,
    /// Gaussian time closeness, 0–1.
    pub time: f32,
    /// Distinctive words shared with the story, heaviest first (at most 8).
    pub shared_terms: Vec<String>,
    /// How many distinctive terms are shared (`shared_terms` lists at most 8).
    pub shared_count: usize,
    /// Sampled 8-word runs shared with another outlet's report in the story.
    pub shared_runs: usize,
    /// One shared run, as the report words it (a quotation or copied paragraph).
    pub quote: Option<String>,
    /// The placement was a manual decision (split/merge), not a score.
    pub manual: bool,
}

impl std::fmt::Display for Evidence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.manual {
            return write!(f, "placed by hand (story split/merge)");
        }
        write!(
            f,
            "score {:.2} vs threshold {:.2} (title {:.2}, text {:.2}, names {:.2}, time {:.2}",
            self.score, self.threshold, self.title, self.text, self.names, self.time
        )?;
        if self.shared_runs > 0 {
            write!(f, ", {} shared runs", self.shared_runs)?;
        }
        write!(f, ")")?;
        if !self.shared_terms.is_empty() {
            write!(f, "; shared terms: {}", self.shared_terms.join(", "))?;
        }
        if let Some(q) = &self.quote {
            write!(f, "; shared wording: \"{q}\"")?;
        }
        Ok(())
    }
}

/// Where [`StoryIndex::place`] or [`StoryIndex::rescore`] put a report.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    pub item: ItemId,
    pub story: StoryId,
    /// It joined a story that had other reports (else it is a story of its own).
    pub joined: bool,
    /// On re-scoring: the story it left, when it moved.
    pub moved_from: Option<StoryId>,
    pub evidence: Evidence,
}

/// Result of [`StoryIndex::split`]: persist `item → to` (pinned). `to == from` when the
/// report was already alone in its story.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    pub item: ItemId,
    pub from: StoryId,
    pub to: StoryId,
}

/// Result of [`StoryIndex::merge`]: persist `moved → kept`, and pin every item of `kept`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merge {
    pub kept: StoryId,
    pub removed: StoryId,
    pub moved: Vec<ItemId>,
    /// Every item of the merged story (all pinned now).
    pub members: Vec<ItemId>,
}

/// Why a manual decision could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoryError {
    /// The item is not in the index (not stored, or older than the window).
    #[error("item {0} is not in a story of the current window")]
    UnknownItem(ItemId),
    /// The story is not in the index.
    #[error("story {0} is not in the current window")]
    UnknownStory(StoryId),
}

struct Member {
    item: ItemId,
    features: Features,
    pinned: bool,
}

#[derive(Default)]
struct Centroid {
    title: Vector,
    text: Vector,
    names: Vector,
    title_norm: f32,
    text_norm: f32,
    names_norm: f32,
    /// `(run, host)` sorted.
    runs: Vec<(u64, u32)>,
}

struct Story {
    members: Vec<Member>,
    centroid: Centroid,
    /// Keys this story is listed under in the postings.
    keys: Vec<u64>,
    first: i64,
    last: i64,
    /// Members were added by `insert_existing` and the centroid is not built yet.
    dirty: bool,
}

/// The stories of the time window and the inverted index over their distinctive keys.
pub struct StoryIndex {
    settings: StorySettings,
    stories: HashMap<StoryId, Story>,
    item_story: HashMap<ItemId, StoryId>,
    postings: HashMap<u64, Vec<StoryId>>,
    dirty: Vec<StoryId>,
    next_id: StoryId,
    /// The id the next story started gets instead of `next_id` ([`StoryIndex::set_new_story_id`]).
    new_story_id: Option<StoryId>,
}

impl std::fmt::Debug for StoryIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoryIndex")
            .field("stories", &self.stories.len())
            .field("items", &self.item_story.len())
            .field("next_id", &self.next_id)
            .finish()
    }
}

fn dot(a: &[(u64, f32)], b: &[(u64, f32)], mut each: impl FnMut(u64, f32)) -> f32 {
    let (mut i, mut j, mut sum) = (0, 0, 0.0);
    while let (Some(x), Some(y)) = (a.get(i), b.get(j)) {
        match x.0.cmp(&y.0) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                let p = x.1 * y.1;
                each(x.0, p);
                sum += p;
                i += 1;
                j += 1;
            }
        }
    }
    sum
}

fn norm(v: &[(u64, f32)]) -> f32 {
    v.iter().map(|e| e.1 * e.1).sum::<f32>().sqrt()
}

/// Add `b` into the sorted vector `a`, keeping `keep` heaviest terms.
fn accumulate(a: &mut Vector, b: &[(u64, f32)], keep: usize) {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    loop {
        match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) if x.0 == y.0 => {
                out.push((x.0, x.1 + y.1));
                i += 1;
                j += 1;
            }
            (Some(x), Some(y)) if x.0 < y.0 => {
                out.push(*x);
                i += 1;
            }
            (Some(_), Some(y)) | (None, Some(y)) => {
                out.push(*y);
                j += 1;
            }
            (Some(x), None) => {
                out.push(*x);
                i += 1;
            }
            (None, None) => break,
        }
    }
    top(&mut out, keep);
    *a = out;
}

/// The keys a report or story is found by: its heaviest text terms and names, and its runs.
fn keys_of(text: &[(u64, f32)], names: &[(u64, f32)], runs: impl Iterator<Item = u64>) -> Vec<u64> {
    let heaviest = |v: &[(u64, f32)], n: usize| -> Vec<u64> {
        let mut v = v.to_vec();
        v.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        v.into_iter().take(n).map(|e| e.0).collect()
    };
    let mut keys = heaviest(text, KEY_TEXT_TERMS);
    keys.extend(heaviest(names, KEY_NAME_TERMS));
    keys.extend(runs);
    keys.sort_unstable();
    keys.dedup();
    keys
}

impl Story {
    fn new() -> Story {
        Story {
            members: Vec::new(),
            centroid: Centroid::default(),
            keys: Vec::new(),
            first: i64::MAX,
            last: i64::MIN,
            dirty: false,
        }
    }

    fn add_to_centroid(&mut self, f: &Features) {
        let c = &mut self.centroid;
        accumulate(&mut c.title, &f.title, CENTROID_TERMS);
        accumulate(&mut c.text, &f.text, CENTROID_TERMS);
        accumulate(&mut c.names, &f.names, CENTROID_TERMS);
        c.title_norm = norm(&c.title);
        c.text_norm = norm(&c.text);
        c.names_norm = norm(&c.names);
        if c.runs.len() < STORY_RUNS {
            c.runs.extend(f.runs.iter().map(|r| (*r, f.host)));
            c.runs.sort_unstable();
            c.runs.dedup();
        }
    }

    fn rebuild(&mut self) {
        self.centroid = Centroid::default();
        let mut members = std::mem::take(&mut self.members);
        for m in &members {
            self.add_to_centroid(&m.features);
        }
        self.members.append(&mut members);
        self.times();
        self.dirty = false;
    }

    fn times(&mut self) {
        self.first = self
            .members
            .iter()
            .map(|m| m.features.time)
            .min()
            .unwrap_or(0);
        self.last = self
            .members
            .iter()
            .map(|m| m.features.time)
            .max()
            .unwrap_or(0);
    }

    fn new_keys(&self) -> Vec<u64> {
        let c = &self.centroid;
        keys_of(&c.text, &c.names, c.runs.iter().map(|r| r.0))
    }
}

impl StoryIndex {
    /// An empty index; new stories get ids from 1.
    pub fn new(settings: StorySettings) -> StoryIndex {
        Self::with_next_id(settings, 1)
    }

    /// An empty index allocating story ids from `next_id` on (the store's next free id).
    pub fn with_next_id(settings: StorySettings, next_id: StoryId) -> StoryIndex {
        StoryIndex {
            settings,
            stories: HashMap::default(),
            item_story: HashMap::default(),
            postings: HashMap::default(),
            dirty: Vec::new(),
            next_id: next_id.max(1),
            new_story_id: None,
        }
    }

    /// The id that the next story this index starts (by placing, re-scoring or splitting)
    /// gets, once: for a store that allocates story ids itself (several processes may share
    /// one database, so ids must come from it). Ids in the index must stay unique: give an id
    /// no story of the index has.
    pub fn set_new_story_id(&mut self, id: StoryId) {
        self.new_story_id = Some(id);
        self.next_id = self.next_id.max(id.saturating_add(1));
    }

    pub fn settings(&self) -> &StorySettings {
        &self.settings
    }

    /// Stories in the index.
    pub fn stories(&self) -> usize {
        self.stories.len()
    }

    /// Items in the index.
    pub fn items(&self) -> usize {
        self.item_story.len()
    }

    /// The story an item is in.
    pub fn story_of(&self, item: ItemId) -> Option<StoryId> {
        self.item_story.get(&item).copied()
    }

    /// The items of a story, in the order they joined.
    pub fn members(&self, story: StoryId) -> Vec<ItemId> {
        self.stories
            .get(&story)
            .map(|s| s.members.iter().map(|m| m.item).collect())
            .unwrap_or_default()
    }

    /// Put back a stored item in its stored story (loading the window at start). Centroids
    /// and postings are built once per story, on the next placement.
    pub fn insert_existing(
        &mut self,
        item: ItemId,
        story: StoryId,
        pinned: bool,
        features: Features,
    ) {
        if self.item_story.contains_key(&item) {
            self.remove_item(item);
        }
        self.next_id = self.next_id.max(story.saturating_add(1));
        let s = self.stories.entry(story).or_insert_with(Story::new);
        s.members.push(Member {
            item,
            features: features.without_labels(),
            pinned,
        });
        if !s.dirty {
            s.dirty = true;
            self.dirty.push(story);
        }
        self.item_story.insert(item, story);
    }

    /// Build centroids and postings of stories loaded or changed since.
    fn settle(&mut self) {
        for id in std::mem::take(&mut self.dirty) {
            if let Some(s) = self.stories.get_mut(&id)
                && s.dirty
            {
                s.rebuild();
                self.reindex(id);
            }
        }
    }

    /// Bring a story's postings in line with its centroid.
    fn reindex(&mut self, id: StoryId) {
        let Some(s) = self.stories.get_mut(&id) else {
            return;
        };
        let new = s.new_keys();
        let old = std::mem::replace(&mut s.keys, new.clone());
        for k in old.iter().filter(|k| new.binary_search(k).is_err()) {
            if let Some(p) = self.postings.get_mut(k) {
                p.retain(|s| *s != id);
                if p.is_empty() {
                    self.postings.remove(k);
                }
            }
        }
        for k in new.iter().filter(|k| old.binary_search(k).is_err()) {
            self.postings.entry(*k).or_default().push(id);
        }
    }

    fn drop_story(&mut self, id: StoryId) {
        if let Some(s) = self.stories.remove(&id) {
            for k in &s.keys {
                if let Some(p) = self.postings.get_mut(k) {
                    p.retain(|s| *s != id);
                    if p.is_empty() {
                        self.postings.remove(k);
                    }
                }
            }
            for m in &s.members {
                if self.item_story.get(&m.item) == Some(&id) {
                    self.item_story.remove(&m.item);
                }
            }
        }
    }

    /// Take an item out of its story (dropping the story if it empties). Returns the story
    /// and the member.
    fn remove_item(&mut self, item: ItemId) -> Option<(StoryId, Member)> {
        let id = self.item_story.remove(&item)?;
        let s = self.stories.get_mut(&id)?;
        let pos = s.members.iter().position(|m| m.item == item)?;
        let member = s.members.remove(pos);
        if s.members.is_empty() {
            self.drop_story(id);
        } else {
            s.rebuild();
            self.reindex(id);
        }
        Some((id, member))
    }

    fn allocate(&mut self) -> StoryId {
        if let Some(id) = self.new_story_id.take() {
            return id;
        }
        let id = self.next_id;
        self.next_id = self.next_id.saturating_add(1);
        id
    }

    fn add_member(&mut self, id: StoryId, member: Member) {
        let s = self.stories.entry(id).or_insert_with(Story::new);
        s.add_to_centroid(&member.features);
        self.item_story.insert(member.item, id);
        s.members.push(member);
        s.times();
        self.reindex(id);
    }

    /// Score a report against one story.
    fn score(&self, f: &Features, id: StoryId, s: &Story) -> Evidence {
        let c = &s.centroid;
        let mut shared: Vec<(u64, f32)> = Vec::new();
        let cos = |v: &[(u64, f32)], cv: &[(u64, f32)], n: f32, shared: &mut Vec<(u64, f32)>| {
            if n <= 0.0 {
                return 0.0;
            }
            dot(v, cv, |term, p| {
                let contribution = p / n;
                if contribution >= SHARED_TERM_CONTRIBUTION {
                    shared.push((term, contribution));
                }
            }) / n
        };
        let title = cos(&f.title, &c.title, c.title_norm, &mut Vec::new());
        let text = cos(&f.text, &c.text, c.text_norm, &mut shared);
        let names = cos(&f.names, &c.names, c.names_norm, &mut shared);
        let mut runs = 0usize;
        let mut quote_run = None;
        for r in &f.runs {
            let from = c.runs.partition_point(|e| e.0 < *r);
            let other_host = c
                .runs
                .get(from..)
                .unwrap_or(&[])
                .iter()
                .take_while(|e| e.0 == *r)
                .any(|e| e.1 != f.host || f.host == 0);
            if other_host {
                runs += 1;
                quote_run.get_or_insert(*r);
            }
        }
        // Distance to the story's time span: a story covered over two days is as close to a
        // report of either day (content is still compared with the whole centroid).
        let dt = if f.time < s.first {
            s.first - f.time
        } else if f.time > s.last {
            f.time - s.last
        } else {
            0
        } as f32;
        let sigma = self.settings.time_scale.num_seconds().max(1) as f32;
        let time = (-(dt / sigma).powi(2) / 2.0).exp();
        let score = time * (0.25 * title + 0.45 * text + 0.30 * names + 0.1 * runs.min(3) as f32);
        shared.sort_unstable_by(|a, b| b.1.total_cmp(&a.1));
        let mut words: Vec<String> = Vec::new();
        let mut distinct = 0usize;
        for (term, _) in &shared {
            let word = f.label(*term).map(str::to_owned);
            let key = word.as_deref().map(str::to_lowercase);
            if key
                .as_ref()
                .is_some_and(|k| words.iter().any(|w| w.to_lowercase() == *k))
            {
                continue;
            }
            distinct += 1;
            if let Some(w) = word
                && words.len() < 8
            {
                words.push(w);
            }
        }
        Evidence {
            story: Some(id),
            score,
            threshold: self.settings.threshold,
            title,
            text,
            names,
            time,
            shared_terms: words,
            shared_count: distinct,
            shared_runs: runs,
            quote: quote_run.and_then(|r| f.run_label(r)).map(str::to_owned),
            manual: false,
        }
    }

    fn accepts(&self, e: &Evidence) -> bool {
        e.score >= self.settings.threshold
            && (e.shared_count >= self.settings.min_shared_terms || e.shared_runs >= 2)
    }

    /// [`StoryIndex::accepts`] for a report weighted by too few documents ([`features::COLD_DOCS`]):
    /// shared wording only.
    fn accepts_for(&self, f: &Features, e: &Evidence) -> bool {
        self.accepts(e) && (!f.cold || e.shared_runs >= 2)
    }

    /// The best story for a report, with the evidence (joined or not).
    fn best(&self, f: &Features) -> Option<Evidence> {
        if f.is_empty() || f.text.len() < MIN_REPORT_TERMS {
            return None;
        }
        let keys = keys_of(&f.text, &f.names, f.runs.iter().copied());
        let mut hits: HashMap<StoryId, u32> = HashMap::default();
        for k in &keys {
            if let Some(p) = self.postings.get(k)
                && p.len() <= MAX_POSTING
            {
                for s in p {
                    *hits.entry(*s).or_default() += 1;
                }
            }
        }
        let window = self.settings.window.num_seconds();
        let mut candidates: Vec<(StoryId, u32)> = hits
            .into_iter()
            .filter(|(id, _)| {
                self.stories
                    .get(id)
                    .is_some_and(|s| f.time >= s.first - window && f.time <= s.last + window)
            })
            .collect();
        candidates.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(b.0.cmp(&a.0)));
        candidates.truncate(MAX_CANDIDATES);
        let mut best: Option<Evidence> = None;
        for (id, _) in candidates {
            let Some(s) = self.stories.get(&id) else {
                continue;
            };
            let e = self.score(f, id, s);
            let better = match &best {
                None => true,
                Some(b) => (self.accepts_for(f, &e), e.score) > (self.accepts_for(f, b), b.score),
            };
            if better {
                best = Some(e);
            }
        }
        best
    }

    /// [`StoryIndex::place`] of a report, computing its features with `df` (the caller
    /// usually also persists `Features::to_bytes` of them for the next process).
    pub fn place_report(&mut self, report: &Report<'_>, df: &DocFreq) -> Placement {
        self.place(report.item, Features::new(report, df))
    }

    /// Place a new report: it joins the best story in the window or starts one. A report
    /// already in the index is re-scored ([`StoryIndex::rescore`]).
    pub fn place(&mut self, item: ItemId, features: Features) -> Placement {
        if self.item_story.contains_key(&item) {
            return self.rescore(item, features);
        }
        self.settle();
        self.place_new(item, features, false)
    }

    fn place_new(&mut self, item: ItemId, features: Features, pinned: bool) -> Placement {
        let best = self.best(&features);
        let accepted = best
            .as_ref()
            .is_some_and(|e| self.accepts_for(&features, e));
        let member = Member {
            item,
            features: features.without_labels(),
            pinned,
        };
        match best {
            Some(e) if accepted => {
                let story = e.story.unwrap_or(0);
                self.add_member(story, member);
                Placement {
                    item,
                    story,
                    joined: true,
                    moved_from: None,
                    evidence: e,
                }
            }
            other => {
                let story = self.allocate();
                self.add_member(story, member);
                Placement {
                    item,
                    story,
                    joined: false,
                    moved_from: None,
                    evidence: other.unwrap_or(Evidence {
                        threshold: self.settings.threshold,
                        ..Evidence::default()
                    }),
                }
            }
        }
    }

    /// Re-score an edited report: it leaves its story and is placed again, unless a manual
    /// decision pinned it (then only its story's centroid follows the new text).
    pub fn rescore(&mut self, item: ItemId, features: Features) -> Placement {
        self.settle();
        let Some((from, old)) = self.remove_item(item) else {
            return self.place_new(item, features, false);
        };
        if old.pinned {
            let stays = self.stories.contains_key(&from);
            self.add_member(
                from,
                Member {
                    item,
                    features: features.without_labels(),
                    pinned: true,
                },
            );
            return Placement {
                item,
                story: from,
                joined: stays,
                moved_from: None,
                evidence: Evidence {
                    story: Some(from),
                    threshold: self.settings.threshold,
                    manual: true,
                    ..Evidence::default()
                },
            };
        }
        let mut p = self.place_new(item, features, false);
        if p.story != from {
            p.moved_from = Some(from);
        }
        p
    }

    /// Take a report out into a story of its own, pinned there.
    pub fn split(&mut self, item: ItemId) -> Result<Split, StoryError> {
        self.settle();
        let from = self.story_of(item).ok_or(StoryError::UnknownItem(item))?;
        if let Some(s) = self.stories.get_mut(&from)
            && s.members.len() == 1
        {
            // Already a story of its own: keep its id, pin it.
            for m in &mut s.members {
                m.pinned = true;
            }
            return Ok(Split {
                item,
                from,
                to: from,
            });
        }
        let (from, member) = self
            .remove_item(item)
            .ok_or(StoryError::UnknownItem(item))?;
        let to = self.allocate();
        self.add_member(
            to,
            Member {
                pinned: true,
                ..member
            },
        );
        Ok(Split { item, from, to })
    }

    /// Join story `b` into story `a`; every report of the result is pinned.
    pub fn merge(&mut self, a: StoryId, b: StoryId) -> Result<Merge, StoryError> {
        self.settle();
        if !self.stories.contains_key(&a) {
            return Err(StoryError::UnknownStory(a));
        }
        let moved_story = match self.stories.get(&b) {
            None => return Err(StoryError::UnknownStory(b)),
            Some(_) if a == b => None,
            Some(_) => {
                let s = self
                    .stories
                    .get_mut(&b)
                    .map(|s| std::mem::take(&mut s.members));
                self.drop_story(b);
                s
            }
        };
        let moved: Vec<ItemId> = moved_story.iter().flatten().map(|m| m.item).collect();
        if let Some(s) = self.stories.get_mut(&a) {
            for m in moved_story.into_iter().flatten() {
                self.item_story.insert(m.item, a);
                s.members.push(m);
            }
            for m in &mut s.members {
                m.pinned = true;
            }
            s.rebuild();
        }
        self.reindex(a);
        Ok(Merge {
            kept: a,
            removed: b,
            moved,
            members: self.members(a),
        })
    }

    /// Drop stories whose last report is older than `now − window`; returns their ids, sorted.
    pub fn evict(&mut self, now: DateTime<Utc>) -> Vec<StoryId> {
        self.settle();
        let cutoff = now.timestamp() - self.settings.window.num_seconds();
        let mut old: Vec<StoryId> = self
            .stories
            .iter()
            .filter(|(_, s)| s.last < cutoff)
            .map(|(id, _)| *id)
            .collect();
        old.sort_unstable();
        // One pass over each affected posting list (not one per evicted story: a common key
        // can list thousands of stories).
        let gone: std::collections::HashSet<StoryId, foldhash::fast::RandomState> =
            old.iter().copied().collect();
        let mut keys: Vec<u64> = Vec::new();
        for id in &old {
            if let Some(s) = self.stories.remove(id) {
                keys.extend_from_slice(&s.keys);
                for m in &s.members {
                    if self.item_story.get(&m.item) == Some(id) {
                        self.item_story.remove(&m.item);
                    }
                }
            }
        }
        keys.sort_unstable();
        keys.dedup();
        for k in keys {
            if let Some(p) = self.postings.get_mut(&k) {
                p.retain(|s| !gone.contains(s));
                if p.is_empty() {
                    self.postings.remove(&k);
                }
            }
        }
        old
    }
}
