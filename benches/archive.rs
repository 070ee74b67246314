//! The archive at scale: `cargo bench --bench archive` (one run, figures on stdout).
//!
//! Builds a database of `NEWSWATCH_BENCH_ENTRIES` archived entries (default 1,000,000) through
//! the real commit path (`Store::commit_feed`, 1,000 entries a commit, 100 feeds), indexes
//! them, then measures what issue 14 sets targets for:
//! - a selective `search` (a rare term, and a rare phrase) — target < 200 ms;
//! - `backfill` of one rule over every entry — target < 30 s;
//! - pruning one day's entries (1/30 of them): the longest time one batch holds the write
//!   lock — target < 100 ms;
//! - archive bytes on disk per 100,000 entries, and the CPU of committing + indexing per
//!   1,000 new entries.
//!
//! Text: words drawn with a Zipf-like law from the corpus (`NEWSWATCH_CORPUS`, files under
//! `real/`) when set, else from a generated vocabulary; titles of 8 words, summaries of 60.
//! One entry in 10,000 mentions "Operation Tangerine". Deterministic: two runs do the same work.

use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use newswatch::pipeline::dedup;
use newswatch::pipeline::matcher::Query;
use newswatch::pipeline::parse::Entry;
use newswatch::store::archive::SearchFilter;
use newswatch::store::{EntryRecord, EntryText, FetchFacts, Store};

const FEEDS: usize = 100;
const BATCH: usize = 1_000;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// Zipf-like index below `n`: small indexes far more often.
    fn zipf(&mut self, n: usize) -> usize {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        ((n as f64).powf(u) as usize).saturating_sub(1).min(n - 1)
    }
}

fn vocabulary() -> Vec<String> {
    let mut words: Vec<String> = Vec::new();
    if let Some(dir) = std::env::var_os("NEWSWATCH_CORPUS") {
        let real = std::path::Path::new(&dir).join("real");
        let mut seen = std::collections::HashMap::<String, usize>::new();
        if let Ok(entries) = std::fs::read_dir(real) {
            for e in entries.flatten() {
                let Ok(bytes) = std::fs::read(e.path()) else {
                    continue;
                };
                let Ok(feed) = newswatch::pipeline::parse::parse_feed(&bytes, None, None) else {
                    continue;
                };
                for entry in feed.entries {
                    let text = newswatch::pipeline::normalise::to_plain_text(&format!(
                        "{} {}",
                        entry.title, entry.summary
                    ));
                    for t in newswatch::pipeline::normalise::tokenize(&text) {
                        *seen.entry(t.text.to_string()).or_default() += 1;
                    }
                }
            }
        }
        let mut by_count: Vec<(String, usize)> = seen.into_iter().collect();
        by_count.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        words = by_count.into_iter().map(|(w, _)| w).take(50_000).collect();
    }
    if words.len() < 1_000 {
        eprintln!("archive bench: NEWSWATCH_CORPUS unset or small: generated vocabulary");
        let mut rng = Rng(7);
        words = (0..50_000)
            .map(|_| {
                let len = 3 + (rng.next() % 8) as usize;
                (0..len)
                    .map(|_| (b'a' + (rng.next() % 26) as u8) as char)
                    .collect()
            })
            .collect();
    }
    words.retain(|w| !w.eq_ignore_ascii_case("tangerine"));
    words
}

fn sentence(rng: &mut Rng, words: &[String], n: usize) -> String {
    let mut s = String::new();
    for i in 0..n {
        if i > 0 {
            s.push(' ');
        }
        s.push_str(&words[rng.zipf(words.len())]);
    }
    s
}

fn cpu_seconds() -> f64 {
    // user + system time of this process, from /proc/self/stat (fields 14 and 15, in ticks).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn main() {
    let total: usize = std::env::var("NEWSWATCH_BENCH_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("archive.db");
    let mut store = Store::open(&path).expect("open");
    let names: Vec<String> = (0..FEEDS).map(|i| format!("feed{i}")).collect();
    store
        .sync_feeds(names.iter().map(|n| (n.as_str(), "http://bench.invalid/")))
        .expect("sync");
    let ids: Vec<i64> = names
        .iter()
        .map(|n| store.feed_state(n).expect("state").expect("feed").id)
        .collect();
    let words = vocabulary();
    let mut rng = Rng(0x5eed);
    // Entries are spread over 30 days of first-seen times, oldest first.
    let start = Utc
        .with_ymd_and_hms(2026, 10, 1, 0, 0, 0)
        .single()
        .expect("time");
    let step = chrono::Duration::days(30) / i32::try_from(total.max(1)).unwrap_or(i32::MAX);

    let t = Instant::now();
    let cpu0 = cpu_seconds();
    let mut made = 0usize;
    while made < total {
        let n = BATCH.min(total - made);
        let feed = ids[(made / BATCH) % FEEDS];
        let records: Vec<EntryRecord> = (0..n)
            .map(|k| {
                let i = made + k;
                let mut title = sentence(&mut rng, &words, 8);
                let mut summary = sentence(&mut rng, &words, 60);
                if i % 10_000 == 4_321 {
                    title.push_str(" Operation Tangerine");
                    summary.push_str(" officers of Operation Tangerine said");
                }
                let e = Entry {
                    guid: Some(format!("g{i}")),
                    link: Some(format!("https://bench.example/{i}")),
                    title: title.clone(),
                    summary: summary.clone(),
                    ..Default::default()
                };
                let (_, identity) = dedup::identify(std::slice::from_ref(&e)).remove(0);
                EntryRecord {
                    identity,
                    fingerprint: dedup::fingerprint(&e),
                    text: EntryText {
                        guid: e.guid.clone(),
                        link: e.link.clone(),
                        title,
                        summary,
                        ..Default::default()
                    },
                    matched: None,
                }
            })
            .collect();
        let at = start + step * i32::try_from(made).unwrap_or(i32::MAX);
        store
            .commit_feed(feed, &FetchFacts::default(), &records, at)
            .expect("commit");
        made += n;
    }
    let commit_wall = t.elapsed();
    let commit_cpu = cpu_seconds() - cpu0;
    let t = Instant::now();
    let cpu0 = cpu_seconds();
    store.index_archive(usize::MAX).expect("index");
    let index_wall = t.elapsed();
    let index_cpu = cpu_seconds() - cpu0;
    let stats = store.archive_stats().expect("stats");
    println!(
        "archive bench: {total} entries, {FEEDS} feeds, vocabulary {} words",
        words.len()
    );
    println!(
        "commit (archive rows, sightings): {:.1} s wall, {:.1} s CPU; index (FTS5): {:.1} s wall, {:.1} s CPU",
        commit_wall.as_secs_f64(),
        commit_cpu,
        index_wall.as_secs_f64(),
        index_cpu
    );
    println!(
        "CPU per 1,000 new entries: {:.1} ms commit + {:.1} ms index = {:.1} ms",
        commit_cpu * 1e6 / total as f64,
        index_cpu * 1e6 / total as f64,
        (commit_cpu + index_cpu) * 1e6 / total as f64
    );
    println!(
        "archive bytes on disk: {} ({:.1} MB per 100,000 entries; table, indexes and FTS5)",
        stats.bytes,
        stats.bytes as f64 / total as f64 * 100_000.0 / 1e6
    );

    // Selective searches: best and median of 5 runs each (first run warms the page cache).
    for expr in [
        "tangerine",
        "\"Operation Tangerine\"",
        "title:(operation NEAR/1 tangerine)",
    ] {
        let q = Query::parse(expr).expect("query");
        let filter = SearchFilter {
            limit: Some(50),
            ..SearchFilter::default()
        };
        let mut times: Vec<Duration> = Vec::new();
        let mut hits = 0;
        for _ in 0..5 {
            let t = Instant::now();
            hits = store
                .search_archive(&q, &filter)
                .expect("search")
                .hits
                .len();
            times.push(t.elapsed());
        }
        times.sort();
        println!(
            "search {expr:?}: {hits} hits, median {:.1} ms, best {:.1} ms",
            times[2].as_secs_f64() * 1e3,
            times[0].as_secs_f64() * 1e3
        );
    }
    // A broad query for contrast (not a target).
    let q = Query::parse(&words[0].to_lowercase()).expect("query");
    let t = Instant::now();
    let n = store
        .search_archive(
            &q,
            &SearchFilter {
                limit: Some(50),
                ..SearchFilter::default()
            },
        )
        .expect("search")
        .hits
        .len();
    println!(
        "search {:?} (the most frequent word, limit 50): {n} hits, {:.1} ms",
        words[0],
        t.elapsed().as_secs_f64() * 1e3
    );

    // Backfill of one rule over every archived entry.
    let rule = (
        "tangerine".to_string(),
        Query::parse("\"Operation Tangerine\" OR tangerine*").expect("rule"),
    );
    let t = Instant::now();
    let report = store
        .backfill(std::slice::from_ref(&rule), None, false, false, Utc::now())
        .expect("backfill");
    println!(
        "backfill of one rule over {total} entries: {} matches stored, {:.2} s",
        report.added.len(),
        t.elapsed().as_secs_f64()
    );

    // Prune one day's entries (the oldest 1/30): longest write-lock hold per batch.
    let day = start + chrono::Duration::days(1);
    let t = Instant::now();
    let counts = store
        .prune(Some(day), None, false, Utc::now())
        .expect("prune");
    println!(
        "prune of one day: {} entries in {:.2} s, longest batch (write lock held) {:.1} ms",
        counts.archived,
        t.elapsed().as_secs_f64(),
        counts.longest_batch.as_secs_f64() * 1e3
    );
}
