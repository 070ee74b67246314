//! Throughput benchmarks of the CPU stages of a poll: parse, normalise, match, store.
//!
//! Run with `cargo bench` (or `cargo bench -- match` for one group). Text comes from the
//! shared corpus when `NEWSWATCH_CORPUS` names it (e.g. /work/shared/corpus, files under
//! `real/`); otherwise from `tests/fixtures`, which is small and says so on stderr. Every
//! input is built deterministically, so two runs measure the same work.
//!
//! Divan reports time per call plus bytes/s and items/s (the counters). Timings on a shared
//! machine are noisy; for decisions, compare instruction counts (see BENCHMARKS.md).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use chrono::Utc;
use divan::counter::{BytesCount, ItemsCount};
use divan::{Bencher, black_box};
use newswatch::pipeline::dedup;
use newswatch::pipeline::matcher::{Matcher, Query, RuleMatch};
use newswatch::pipeline::normalise::to_plain_text;
use newswatch::pipeline::parse::{Entry, parse_feed};
use newswatch::store::{EntryRecord, EntryText, FetchFacts, MatchedEntry, Store};

fn main() {
    divan::main();
}

/// One corpus file: its bytes and its format group.
struct Doc {
    bytes: Vec<u8>,
    format: &'static str,
}

/// The raw (HTML-ish) text fields of one entry.
struct RawItem {
    title: String,
    body: Vec<String>,
}

/// The same item after `to_plain_text`: what the matcher sees.
struct PlainItem {
    title: String,
    body: String,
}

struct Corpus {
    docs: Vec<Doc>,
    raw: Vec<RawItem>,
    plain: Vec<PlainItem>,
    /// Bytes of raw text in `raw` (title + summary + content).
    raw_bytes: usize,
    /// Bytes of plain text in `plain` (title + body).
    plain_bytes: usize,
}

/// Format group of a MANIFEST.tsv format name (feedparser's `version`).
fn group(format: &str) -> Option<&'static str> {
    match format {
        "rss10" | "rss090" => Some("rss1"),
        f if f.starts_with("rss") => Some("rss2"),
        f if f.starts_with("atom") => Some("atom"),
        f if f.starts_with("json") => Some("json"),
        _ => None,
    }
}

fn group_by_extension(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("json") => "json",
        Some("atom") => "atom",
        Some("rdf") => "rss1",
        _ => "rss2",
    }
}

fn load_docs() -> Vec<Doc> {
    if let Some(dir) = std::env::var_os("NEWSWATCH_CORPUS").map(PathBuf::from) {
        let manifest = std::fs::read_to_string(dir.join("MANIFEST.tsv")).unwrap_or_default();
        let formats: HashMap<&str, &str> = manifest
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                Some((*f.first()?, *f.get(2)?))
            })
            .collect();
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir.join("real"))
            .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        paths.sort();
        let docs: Vec<Doc> = paths
            .iter()
            .filter_map(|p| {
                let name = format!("real/{}", p.file_name()?.to_str()?);
                let format = formats
                    .get(name.as_str())
                    .and_then(|f| group(f))
                    .unwrap_or_else(|| group_by_extension(p));
                Some(Doc {
                    bytes: std::fs::read(p).ok()?,
                    format,
                })
            })
            .collect();
        if !docs.is_empty() {
            eprintln!("bench corpus: {} files from {}", docs.len(), dir.display());
            return docs;
        }
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    eprintln!(
        "bench corpus: NEWSWATCH_CORPUS unset or empty; using the small fixtures in {} \
         (figures are not comparable with corpus runs)",
        dir.display()
    );
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/fixtures")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| Doc {
            bytes: std::fs::read(p).expect("fixture"),
            format: group_by_extension(p),
        })
        .collect()
}

static CORPUS: LazyLock<Corpus> = LazyLock::new(|| {
    let docs = load_docs();
    let mut raw = Vec::new();
    for d in &docs {
        if let Ok(feed) = parse_feed(&d.bytes, None, Some("http://bench.invalid/feed")) {
            raw.extend(feed.entries.into_iter().map(|e| RawItem {
                title: e.title,
                body: vec![e.summary, e.content],
            }));
        }
    }
    let plain: Vec<PlainItem> = raw
        .iter()
        .map(|r| PlainItem {
            title: to_plain_text(&r.title),
            body: r
                .body
                .iter()
                .map(|b| to_plain_text(b))
                .collect::<Vec<_>>()
                .join(" "),
        })
        .collect();
    let raw_bytes = raw
        .iter()
        .map(|r| r.title.len() + r.body.iter().map(String::len).sum::<usize>())
        .sum();
    let plain_bytes = plain.iter().map(|p| p.title.len() + p.body.len()).sum();
    eprintln!(
        "bench corpus: {} entries, {raw_bytes} bytes raw text, {plain_bytes} bytes plain",
        raw.len()
    );
    Corpus {
        docs,
        raw,
        plain,
        raw_bytes,
        plain_bytes,
    }
});

/// Small deterministic PRNG (xorshift64*), so rule sets are identical across runs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn word(&mut self) -> String {
        let len = 4 + self.below(6);
        (0..len)
            .map(|_| char::from(b'a' + self.below(26) as u8))
            .collect()
    }
}

/// Real words that do occur in news text, so some synthetic rules hit and the evaluation
/// path (not just the index lookup) is exercised.
const COMMON: &[&str] = &[
    "police",
    "government",
    "election",
    "market",
    "security",
    "data",
    "court",
    "minister",
    "bank",
    "health",
    "cyber",
    "privacy",
    "surveillance",
    "encryption",
    "hacker",
    "ransomware",
];

/// The 5 seed rules plus `n - 5` synthetic ones: single terms, phrases, prefixes, mixed with
/// AND / OR / NOT, about one in eight using a real word.
fn rules(n: usize) -> Vec<(String, Query)> {
    let mut src: Vec<String> = vec![
        r#"JOC OR "Joint Operations Cell""#.into(),
        r#"NCA OR "National Crime Agency""#.into(),
        "GCHQ".into(),
        r#""Investigatory Powers Bill""#.into(),
        r#""dark web""#.into(),
    ];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    while src.len() < n {
        let term = |rng: &mut Rng| -> String {
            let w = if rng.below(8) == 0 {
                COMMON[rng.below(COMMON.len())].to_string()
            } else {
                rng.word()
            };
            match rng.below(4) {
                0 => format!("\"{w} {}\"", rng.word()),
                1 => format!("{}*", &w[..4]),
                _ => w,
            }
        };
        let q = match rng.below(5) {
            0 => format!("{} AND {}", term(&mut rng), term(&mut rng)),
            1 => format!("{} OR {}", term(&mut rng), term(&mut rng)),
            2 => format!("{} AND NOT {}", term(&mut rng), term(&mut rng)),
            3 => format!("title:{}", term(&mut rng)),
            _ => term(&mut rng),
        };
        src.push(q);
    }
    src.truncate(n.max(5));
    src.into_iter()
        .enumerate()
        .map(|(i, q)| {
            let query = Query::parse(&q).unwrap_or_else(|e| panic!("rule {q:?}: {e}"));
            (format!("r{i:05}"), query)
        })
        .collect()
}

const RULE_COUNTS: [usize; 3] = [10, 1_000, 10_000];

/// `to_plain_text` over every entry's title, summary and content.
#[divan::bench]
fn normalise(bencher: Bencher) {
    let c = &*CORPUS;
    bencher
        .counter(BytesCount::new(c.raw_bytes))
        .counter(ItemsCount::new(c.raw.len()))
        .bench(|| {
            for r in &c.raw {
                black_box(to_plain_text(&r.title));
                for b in &r.body {
                    black_box(to_plain_text(b));
                }
            }
        });
}

/// `Matcher::match_item` over every (already plain) entry, by number of rules.
#[divan::bench(args = RULE_COUNTS)]
fn match_items(bencher: Bencher, n: usize) {
    let c = &*CORPUS;
    let matcher = Matcher::new(rules(n));
    bencher
        .counter(BytesCount::new(c.plain_bytes))
        .counter(ItemsCount::new(c.plain.len()))
        .bench(|| {
            let mut hits = 0usize;
            for p in &c.plain {
                hits += usize::from(matcher.match_item(&p.title, &p.body).is_some());
            }
            black_box(hits)
        });
}

/// Normalise then match: the per-entry CPU work of a cold poll, by number of rules.
#[divan::bench(args = RULE_COUNTS)]
fn normalise_and_match(bencher: Bencher, n: usize) {
    let c = &*CORPUS;
    let matcher = Matcher::new(rules(n));
    bencher
        .counter(BytesCount::new(c.raw_bytes))
        .counter(ItemsCount::new(c.raw.len()))
        .bench(|| {
            let mut hits = 0usize;
            for r in &c.raw {
                let title = to_plain_text(&r.title);
                let body: Vec<String> = r.body.iter().map(|b| to_plain_text(b)).collect();
                hits += usize::from(matcher.match_item(&title, &body.join(" ")).is_some());
            }
            black_box(hits)
        });
}

/// Compiling the rules (paid once per config load).
#[divan::bench(args = RULE_COUNTS)]
fn compile_rules(bencher: Bencher, n: usize) {
    bencher
        .counter(ItemsCount::new(n))
        .with_inputs(|| rules(n))
        .bench_values(Matcher::new);
}

/// `parse_feed` over every corpus document of one format.
#[divan::bench(args = ["rss2", "rss1", "atom", "json"])]
fn parse(bencher: Bencher, format: &str) {
    let docs: Vec<&Doc> = CORPUS.docs.iter().filter(|d| d.format == format).collect();
    let bytes: usize = docs.iter().map(|d| d.bytes.len()).sum();
    let entries: usize = docs
        .iter()
        .filter_map(|d| parse_feed(&d.bytes, None, None).ok())
        .map(|f| f.entries.len())
        .sum();
    eprintln!(
        "parse/{format}: {} documents, {bytes} bytes, {entries} entries",
        docs.len()
    );
    bencher
        .counter(BytesCount::new(bytes))
        .counter(ItemsCount::new(entries))
        .bench(|| {
            for d in &docs {
                let _ = black_box(parse_feed(&d.bytes, None, Some("http://bench.invalid/")));
            }
        });
}

/// Entries per `commit_feed` call in the store benchmarks (a typical feed document).
const BATCH: usize = 50;

/// `BATCH` never-seen entries numbered from `first`; `matched` ones carry a stored item.
fn records(first: usize, matched: bool) -> Vec<EntryRecord> {
    let entries: Vec<Entry> = (first..first + BATCH)
        .map(|k| Entry {
            guid: Some(format!("urn:bench:{k}")),
            link: Some(format!("https://news.example/story/{k}")),
            title: format!("NCA and GCHQ story number {k}"),
            summary: "The National Crime Agency said on Tuesday that the dark web market ..."
                .repeat(4),
            ..Default::default()
        })
        .collect();
    dedup::identify(&entries)
        .into_iter()
        .map(|(i, identity)| {
            let e = &entries[i];
            EntryRecord {
                identity,
                fingerprint: dedup::fingerprint(e),
                text: EntryText {
                    guid: e.guid.clone(),
                    link: e.link.clone(),
                    title: e.title.clone(),
                    summary: e.summary.clone(),
                    content: String::new(),
                    authors: vec!["Bench Reporter".into()],
                    published: Some(Utc::now()),
                },
                matched: matched.then(|| MatchedEntry {
                    rules: vec![RuleMatch {
                        rule: "nca".into(),
                        terms: vec!["NCA".into()],
                    }],
                    snippet: e.summary.chars().take(240).collect(),
                    link_rank: 0,
                }),
            }
        })
        .collect()
}

/// `Store::commit_feed` of `BATCH` new entries (one transaction), matched or not, into a
/// database on disk (WAL, synchronous=NORMAL) that grows as the benchmark runs.
#[divan::bench(args = [false, true])]
fn store_commit(bencher: Bencher, matched: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = Store::open(&dir.path().join("bench.db")).expect("open");
    store
        .sync_feeds([("bench", "http://bench.invalid/feed")])
        .expect("sync");
    let id = store.feed_state("bench").expect("state").expect("feed").id;
    let mut next = 0usize;
    bencher
        .counter(ItemsCount::new(BATCH))
        .with_inputs(|| {
            next += BATCH;
            records(next, matched)
        })
        .bench_local_refs(|recs| {
            store
                .commit_feed(id, &FetchFacts::default(), recs, Utc::now())
                .expect("commit")
        });
}

/// `Store::known_entries` of a feed with 1,000 entries seen (done once per fetched feed).
#[divan::bench]
fn store_known_entries(bencher: Bencher) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = Store::open(&dir.path().join("bench.db")).expect("open");
    store
        .sync_feeds([("bench", "http://bench.invalid/feed")])
        .expect("sync");
    let id = store.feed_state("bench").expect("state").expect("feed").id;
    for k in 0..1_000 / BATCH {
        store
            .commit_feed(
                id,
                &FetchFacts::default(),
                &records(k * BATCH, false),
                Utc::now(),
            )
            .expect("commit");
    }
    bencher
        .counter(ItemsCount::new(1_000usize))
        .bench_local(|| store.known_entries(id).expect("known"));
}

/// Story clustering (`pipeline::stories`): placing a report into a window holding 100,000
/// stored items, loading such a window, computing features, and document-frequency counting.
/// Run alone with `cargo bench --bench pipeline -- stories`.
mod stories {
    use std::sync::LazyLock;

    use chrono::{DateTime, TimeDelta, TimeZone, Utc};
    use divan::counter::ItemsCount;
    use divan::{Bencher, black_box};
    use newswatch::pipeline::normalise::tokens;
    use newswatch::pipeline::stories::{DocFreq, Features, Report, StoryIndex, StorySettings};

    /// Items stored in the window.
    const STORED: usize = 100_000;
    /// Reports per event in the synthetic stream (so ~33,000 stories).
    const PER_EVENT: usize = 3;

    struct Synthetic {
        /// (title, body, time, host)
        reports: Vec<(String, String, DateTime<Utc>, String)>,
        df: DocFreq,
        features: Vec<Features>,
        /// Reports of stored events from another outlet (they should join).
        joiners: Vec<Features>,
    }

    fn lcg(state: &mut u64) -> u64 {
        *state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        *state >> 33
    }

    /// A deterministic news-like stream: common words, topic words, and per-event names,
    /// spread over three days.
    fn report(
        event: usize,
        outlet: usize,
        rng: &mut u64,
    ) -> (String, String, DateTime<Utc>, String) {
        let start = Utc
            .with_ymd_and_hms(2015, 11, 9, 0, 0, 0)
            .single()
            .unwrap_or_default();
        let time = start + TimeDelta::seconds((event as i64 * 7) % (3 * 86_400));
        let name = |k: usize| format!("Name{}x{k}", event);
        let topic =
            |rng: &mut u64| format!("topic{}", (event * 13 + (lcg(rng) as usize % 40)) % 5_000);
        let common = |rng: &mut u64| format!("word{}", lcg(rng) % 800);
        let title = format!(
            "{} {} {} {} {} {}",
            name(0),
            common(rng),
            topic(rng),
            name(1),
            common(rng),
            topic(rng)
        );
        let mut body = String::with_capacity(600);
        for i in 0..80 {
            let w = match lcg(rng) % 10 {
                0 | 1 => name(lcg(rng) as usize % 4),
                2..=4 => topic(rng),
                _ => common(rng),
            };
            body.push_str(&w);
            body.push_str(if i % 15 == 14 { ". " } else { " " });
        }
        (title, body, time, format!("outlet{outlet}.example"))
    }

    static DATA: LazyLock<Synthetic> = LazyLock::new(|| {
        let mut rng = 42u64;
        let reports: Vec<_> = (0..STORED + 10_000)
            .map(|i| report(i / PER_EVENT, i % 50, &mut rng))
            .collect();
        let mut df = DocFreq::new();
        for (t, b, _, _) in &reports {
            df.observe_text(t, b);
        }
        let of = |i: usize, (title, body, time, host): &(String, String, DateTime<Utc>, String)| {
            Features::new(
                &Report {
                    item: i as i64,
                    time: *time,
                    title,
                    body,
                    host: Some(host),
                },
                &df,
            )
        };
        let features = reports.iter().enumerate().map(|(i, r)| of(i, r)).collect();
        let joiners = (0..5_000)
            .map(|k| of(k, &report((k * 7_919) % (STORED / PER_EVENT), 51, &mut rng)))
            .collect();
        Synthetic {
            reports,
            df,
            features,
            joiners,
        }
    });

    fn loaded() -> StoryIndex {
        let d = &*DATA;
        let mut index = StoryIndex::new(StorySettings::default());
        for (i, f) in d.features.iter().take(STORED).enumerate() {
            index.insert_existing(i as i64, (i / PER_EVENT) as i64 + 1, false, f.clone());
        }
        index
    }

    /// One placement (features already computed) into a window of 100,000 stored items:
    /// alternately a report of a new event and another outlet's report of a stored event.
    #[divan::bench(sample_count = 20, sample_size = 200)]
    fn place_into_100k(bencher: Bencher) {
        let d = &*DATA;
        let mut index = loaded();
        // The first placement builds the loaded centroids: not part of a placement.
        index.place(-1, d.features[STORED].clone());
        let fresh = &d.features[STORED + 1..];
        let mut k = 0usize;
        let mut joined = 0usize;
        bencher
            .with_inputs(|| {
                k += 1;
                let f = if k.is_multiple_of(2) {
                    &fresh[(k / 2) % fresh.len()]
                } else {
                    &d.joiners[(k / 2) % d.joiners.len()]
                };
                (10_000_000 + k as i64, f.clone())
            })
            .bench_local_values(|(item, f)| {
                let p = index.place(item, f);
                joined += usize::from(p.joined);
                black_box(p)
            });
        eprintln!(
            "stories: {joined} of {k} placements joined a story (half the inputs are another \
             outlet's report of a stored event); the index holds {} stories, {} items",
            index.stories(),
            index.items()
        );
    }

    /// `Features::new` of one report (tokenise, weigh, sample runs).
    #[divan::bench]
    fn features_of_report(bencher: Bencher) {
        let d = &*DATA;
        let (title, body, time, host) = &d.reports[7];
        bencher.bench_local(|| {
            Features::new(
                &Report {
                    item: 7,
                    time: *time,
                    title,
                    body,
                    host: Some(host),
                },
                &d.df,
            )
        });
    }

    /// Rebuilding the window from 100,000 stored items (feature blobs) and building every
    /// story's centroid and postings: what a `newswatch poll` process does at start.
    #[divan::bench(sample_count = 3, sample_size = 1)]
    fn load_100k_from_blobs(bencher: Bencher) {
        let d = &*DATA;
        let blobs: Vec<Vec<u8>> = d
            .features
            .iter()
            .take(STORED)
            .map(Features::to_bytes)
            .collect();
        bencher.counter(ItemsCount::new(STORED)).bench_local(|| {
            let mut index = StoryIndex::new(StorySettings::default());
            for (i, b) in blobs.iter().enumerate() {
                if let Some(f) = Features::from_bytes(b) {
                    index.insert_existing(i as i64, (i / PER_EVENT) as i64 + 1, false, f);
                }
            }
            index.place(-1, d.features[STORED].clone());
            index
        });
    }

    /// `DocFreq::observe_text` over 1,000 entries; the counter is tokens (items/s).
    #[divan::bench]
    fn docfreq_observe(bencher: Bencher) {
        let d = &*DATA;
        let entries = &d.reports[..1_000];
        let tokens_n: usize = entries
            .iter()
            .map(|(t, b, _, _)| tokens(t).count() + tokens(b).count())
            .sum();
        let mut df = DocFreq::new();
        bencher.counter(ItemsCount::new(tokens_n)).bench_local(|| {
            for (t, b, _, _) in entries {
                df.observe_text(t, b);
            }
        });
    }

    /// Persisting the document frequencies (once per poll), and reading them back.
    #[divan::bench]
    fn docfreq_round_trip(bencher: Bencher) {
        let d = &*DATA;
        bencher.bench_local(|| DocFreq::from_bytes(&d.df.to_bytes()).map(|df| df.docs()));
    }
}
