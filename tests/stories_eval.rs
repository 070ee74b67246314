//! Story clustering measured on a labelled evaluation set (tests/fixtures/stories/): 43 public
//! news events of Aug–Dec 2015 reported by seven invented outlets (full-content, summary-only,
//! wire copies under edited headlines, follow-ups, hard negatives), plus background entries
//! that match no rule and only feed the document frequencies.
//!
//! The feeds are read with the real parser and normaliser and run through the engine as two
//! polls by two "processes": poll 1 from scratch; then everything is persisted (document
//! frequencies, each item's features, story and pin) and poll 2 starts from a fresh index
//! rebuilt from that state, as `newswatch poll` does. Entries already seen with the same text
//! are skipped, as the store skips known sightings; an edited entry is re-scored.
//!
//! Figures: B-cubed precision/recall/F1 (per report: how much of its story is its event, and
//! how much of its event is its story) and pairwise P/R/F1, overall and for the two halves of
//! the events (even/odd positions in events.py), printed with every wrong merge and every
//! split event so a regression says what went wrong.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use newswatch::pipeline::normalise::to_plain_text;
use newswatch::pipeline::parse::parse_feed;
use newswatch::pipeline::stories::{
    DocFreq, Features, Placement, Report, StoryIndex, StorySettings,
};

use crate::support;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/stories")
}

struct Label {
    event: String,
    outlet: String,
    poll: u32,
}

fn labels() -> HashMap<String, Label> {
    let text = support::read(&dir().join("labels.tsv"));
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(f.len(), 5, "labels.tsv: bad line {l:?}");
            (
                f[0].to_owned(),
                Label {
                    event: f[2].to_owned(),
                    outlet: f[3].to_owned(),
                    poll: f[4].parse().unwrap(),
                },
            )
        })
        .collect()
}

fn poll_times() -> BTreeMap<u32, DateTime<Utc>> {
    support::read(&dir().join("polls.tsv"))
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (p, t) = l.split_once('\t').unwrap();
            (p.parse().unwrap(), t.parse().unwrap())
        })
        .collect()
}

/// One entry of one poll, as the store would hold it.
struct Polled {
    guid: String,
    title: String,
    body: String,
    time: DateTime<Utc>,
    host: Option<String>,
}

/// Every feed of a poll, in file-name order, entries in document order.
fn read_poll(poll: u32, seen_at: DateTime<Utc>) -> Vec<Vec<Polled>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir().join(format!("poll{poll}")))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .iter()
        .map(|path| {
            let bytes = std::fs::read(path).unwrap();
            let feed = parse_feed(&bytes, None, None)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            feed.entries
                .iter()
                .map(|e| {
                    let content = to_plain_text(&e.content);
                    Polled {
                        guid: e.guid.clone().unwrap(),
                        title: to_plain_text(&e.title),
                        body: if content.is_empty() {
                            to_plain_text(&e.summary)
                        } else {
                            content
                        },
                        time: e.published.unwrap_or(seen_at),
                        host: e
                            .link
                            .as_deref()
                            .and_then(|l| url::Url::parse(l).ok())
                            .and_then(|u| u.host_str().map(str::to_owned)),
                    }
                })
                .collect()
        })
        .collect()
}

fn report(item: i64, p: &Polled) -> Report<'_> {
    Report {
        item,
        time: p.time,
        title: &p.title,
        body: &p.body,
        host: p.host.as_deref(),
    }
}

/// What the store persists between polls.
#[derive(Default)]
struct Stored {
    doc_freq: Vec<u8>,
    /// guid → (item id, text, features blob)
    items: HashMap<String, (i64, String, Vec<u8>)>,
    next_item: i64,
}

struct Run {
    /// item → story
    story: HashMap<i64, i64>,
    /// item → guid
    guid: HashMap<i64, String>,
    placements: HashMap<i64, Placement>,
}

fn run(settings: &StorySettings, labels: &HashMap<String, Label>, polls: u32) -> Run {
    let times = poll_times();
    let mut stored = Stored {
        next_item: 1,
        ..Stored::default()
    };
    let mut out = Run {
        story: HashMap::new(),
        guid: HashMap::new(),
        placements: HashMap::new(),
    };
    for (&poll, &at) in times.iter().take(polls as usize) {
        // A new process: state from the "database".
        let mut df = if stored.doc_freq.is_empty() {
            DocFreq::new()
        } else {
            DocFreq::from_bytes(&stored.doc_freq).unwrap()
        };
        let next_story = out.story.values().max().map_or(1, |m| m + 1);
        let mut index = StoryIndex::with_next_id(settings.clone(), next_story);
        // In item order, as the store would load them (deterministic centroids).
        let mut rows: Vec<&(i64, String, Vec<u8>)> = stored.items.values().collect();
        rows.sort_by_key(|r| r.0);
        for (id, _, blob) in rows {
            let features = Features::from_bytes(blob).unwrap();
            index.insert_existing(*id, out.story[id], false, features);
        }
        for feed in read_poll(poll, at) {
            // Sightings: new or edited entries only (a known, unchanged entry is skipped).
            let fresh: Vec<&Polled> = feed
                .iter()
                .filter(|p| {
                    stored
                        .items
                        .get(&p.guid)
                        .is_none_or(|(_, text, _)| *text != format!("{}\n{}", p.title, p.body))
                })
                .collect();
            for p in &fresh {
                df.observe_text(&p.title, &p.body);
            }
            for p in fresh {
                let label = labels
                    .get(&p.guid)
                    .unwrap_or_else(|| panic!("{} has no label", p.guid));
                if label.event.is_empty() {
                    continue; // background: matches no rule, never stored
                }
                let id = match stored.items.get(&p.guid) {
                    Some((id, _, _)) => *id,
                    None => {
                        stored.next_item += 1;
                        stored.next_item - 1
                    }
                };
                let features = Features::new(&report(id, p), &df);
                let placement = index.place(id, features.clone());
                stored.items.insert(
                    p.guid.clone(),
                    (id, format!("{}\n{}", p.title, p.body), features.to_bytes()),
                );
                out.guid.insert(id, p.guid.clone());
                out.placements.insert(id, placement);
            }
        }
        for (&item, _) in out.guid.iter() {
            if let Some(s) = index.story_of(item) {
                out.story.insert(item, s);
            }
        }
        stored.doc_freq = df.to_bytes();
    }
    out
}

#[derive(Debug, Clone, Copy)]
struct Scores {
    b3_p: f64,
    b3_r: f64,
    b3_f1: f64,
    pair_p: f64,
    pair_r: f64,
    pair_f1: f64,
}

fn f1(p: f64, r: f64) -> f64 {
    if p + r == 0.0 {
        0.0
    } else {
        2.0 * p * r / (p + r)
    }
}

/// B-cubed and pairwise scores of `items` (item → (story, event)).
fn scores(items: &[(i64, &str)]) -> Scores {
    let n = items.len() as f64;
    let (mut p, mut r) = (0.0, 0.0);
    let (mut tp, mut same_story, mut same_event) = (0u64, 0u64, 0u64);
    for (i, (s, e)) in items.iter().enumerate() {
        let story = items.iter().filter(|(s2, _)| s2 == s).count() as f64;
        let event = items.iter().filter(|(_, e2)| e2 == e).count() as f64;
        let both = items.iter().filter(|(s2, e2)| s2 == s && e2 == e).count() as f64;
        p += both / story;
        r += both / event;
        for (s2, e2) in &items[i + 1..] {
            same_story += u64::from(s2 == s);
            same_event += u64::from(e2 == e);
            tp += u64::from(s2 == s && e2 == e);
        }
    }
    let (b3_p, b3_r) = (p / n, r / n);
    let pair_p = if same_story == 0 {
        1.0
    } else {
        tp as f64 / same_story as f64
    };
    let pair_r = if same_event == 0 {
        1.0
    } else {
        tp as f64 / same_event as f64
    };
    Scores {
        b3_p,
        b3_r,
        b3_f1: f1(b3_p, b3_r),
        pair_p,
        pair_r,
        pair_f1: f1(pair_p, pair_r),
    }
}

fn event_order() -> Vec<String> {
    // Events in labels.tsv order (= events.py order).
    let text = support::read(&dir().join("labels.tsv"));
    let mut order: Vec<String> = Vec::new();
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        let e = l.split('\t').nth(2).unwrap_or("");
        if !e.is_empty() && !order.iter().any(|o| o == e) {
            order.push(e.to_owned());
        }
    }
    order
}

fn print_scores(name: &str, s: &Scores, reports: usize) {
    println!(
        "{name:<22} reports {reports:>3}  B-cubed P {:.3} R {:.3} F1 {:.3}   pairwise P {:.3} R {:.3} F1 {:.3}",
        s.b3_p, s.b3_r, s.b3_f1, s.pair_p, s.pair_r, s.pair_f1
    );
}

/// Evaluate, print every figure and every error; returns the overall scores and the number
/// of poll-2 reports that joined a story holding poll-1 reports.
fn evaluate(settings: &StorySettings, verbose: bool) -> (Scores, usize) {
    let labels = labels();
    let result = run(settings, &labels, 2);
    let order = event_order();
    let event_of = |item: i64| labels[&result.guid[&item]].event.as_str();
    let mut items: Vec<(i64, i64, &str)> = result
        .story
        .iter()
        .map(|(&item, &story)| (item, story, event_of(item)))
        .collect();
    items.sort();
    let all: Vec<(i64, &str)> = items.iter().map(|(_, s, e)| (*s, *e)).collect();
    let overall = scores(&all);
    let events = order.len();
    println!(
        "stories eval: {events} events, {} reports, {} stories",
        all.len(),
        {
            let mut s: Vec<i64> = all.iter().map(|a| a.0).collect();
            s.sort();
            s.dedup();
            s.len()
        }
    );
    print_scores("all", &overall, all.len());
    let poll_of = |item: i64| labels[&result.guid[&item]].poll;
    let late_joins = items
        .iter()
        .filter(|(item, story, _)| {
            poll_of(*item) == 2
                && items
                    .iter()
                    .any(|(other, s2, _)| s2 == story && poll_of(*other) == 1)
        })
        .count();
    println!("poll 2 reports that joined a story stored in poll 1: {late_joins}");
    for half in 0..2 {
        let part: Vec<(i64, &str)> = items
            .iter()
            .filter(|(_, _, e)| order.iter().position(|o| o == e).unwrap() % 2 == half)
            .map(|(_, s, e)| (*s, *e))
            .collect();
        print_scores(
            if half == 0 {
                "even events"
            } else {
                "odd events"
            },
            &scores(&part),
            part.len(),
        );
    }
    if verbose {
        let describe = |item: i64| {
            let g = &result.guid[&item];
            format!("#{item} {} [{}]", labels[g].outlet, labels[g].event)
        };
        // Wrong merges: a story holding several events.
        let mut by_story: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
        for (item, story, _) in &items {
            by_story.entry(*story).or_default().push(*item);
        }
        for (story, members) in &by_story {
            let mut evs: Vec<&str> = members.iter().map(|m| event_of(*m)).collect();
            evs.sort();
            evs.dedup();
            if evs.len() > 1 {
                println!("WRONG MERGE story {story}:");
                for m in members {
                    println!("  {} — {}", describe(*m), result.placements[m].evidence);
                }
            }
        }
        // Split events.
        for e in &order {
            let mut stories: Vec<i64> = items
                .iter()
                .filter(|(_, _, ev)| ev == e)
                .map(|(_, s, _)| *s)
                .collect();
            stories.sort();
            stories.dedup();
            if stories.len() > 1 {
                println!("SPLIT {e}: {} stories", stories.len());
                for (item, story, ev) in &items {
                    if ev == e {
                        println!(
                            "  story {story} {} joined={} — {}",
                            describe(*item),
                            result.placements[item].joined,
                            result.placements[item].evidence
                        );
                    }
                }
            }
        }
    }
    (overall, late_joins)
}

/// The targets hold across a band of thresholds around the default, not only at the tuned
/// point (the printed curve is what chose 0.22: the first wrong merge appears below 0.12).
#[test]
fn stories_eval_targets_hold_across_a_threshold_band() {
    for t in [0.04, 0.08, 0.12, 0.15, 0.18, 0.22, 0.25, 0.30, 0.35] {
        println!("threshold {t:.2}:");
        let (s, _) = evaluate(
            &StorySettings {
                threshold: t,
                ..StorySettings::default()
            },
            false,
        );
        if (0.15..=0.30).contains(&t) {
            assert!(
                s.b3_p >= 0.98,
                "threshold {t}: B-cubed precision {:.3}",
                s.b3_p
            );
            assert!(s.b3_f1 >= 0.90, "threshold {t}: B-cubed F1 {:.3}", s.b3_f1);
        }
    }
}

#[test]
fn stories_eval_precision_and_f1_on_the_labelled_set() {
    let (s, late_joins) = evaluate(&StorySettings::default(), true);
    // Reports of a feed added later (and late coverage) join stories stored by poll 1.
    assert!(
        late_joins >= 3,
        "{late_joins} poll-2 reports joined poll-1 stories"
    );
    assert!(s.b3_p >= 0.98, "B-cubed precision {:.3} < 0.98", s.b3_p);
    assert!(s.b3_f1 >= 0.90, "B-cubed F1 {:.3} < 0.90", s.b3_f1);
}
