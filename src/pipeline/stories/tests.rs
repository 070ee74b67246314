use chrono::TimeZone;

use super::*;

fn at(hours: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2015, 11, 9, 8, 0, 0)
        .single()
        .unwrap_or_default()
        + TimeDelta::hours(hours)
}

fn features(df: &DocFreq, item: i64, hours: i64, title: &str, body: &str, host: &str) -> Features {
    Features::new(
        &Report {
            item,
            time: at(hours),
            title,
            body,
            host: Some(host),
        },
        df,
    )
}

const JOC: &str = "GCHQ and the National Crime Agency have opened a Joint Operations Cell in \
    Warrington to tackle child sexual exploitation on the dark web. Robert Hannigan and Keith \
    Bristow said the cell brings the skills of both agencies together so that offenders cannot \
    hide in the corners of the internet.";
const JOC2: &str = "The British spy agency GCHQ and the NCA launched a Joint Operations Cell in \
    Warrington. Hannigan said the cell brings the skills of both agencies together so that \
    offenders cannot hide in the corners of the internet, and Bristow praised the partnership.";
const ARREST: &str = "The National Crime Agency arrested a man in Hertfordshire who bought a \
    pistol on a dark web market; the parcel was intercepted by NCA officers.";

/// Document frequencies that know some ordinary news, so common words weigh little.
fn background() -> DocFreq {
    let mut df = DocFreq::new();
    let filler = [
        "The council said the new plan would be published next week after a vote.",
        "Police said a man was arrested and the investigation continues, officers said.",
        "The company said customers would be told about the changes to the service.",
        "The government said it would publish the report and the minister would speak.",
        "Shares rose after the bank said profits were higher than expected this year.",
    ];
    for i in 0..200 {
        df.observe_text("", filler[i % filler.len()]);
    }
    // A security watcher's feeds name the agencies and the dark web all the time: these words
    // say little about which event a report covers (at cold start they would, see the
    // module doc).
    let security = [
        "The National Crime Agency (NCA) said dark web markets sell drugs and stolen data.",
        "GCHQ warned companies about phishing; the NCA said cyber crime reports rose.",
        "Dark web vendors were arrested by police; the National Crime Agency joined the inquiry.",
        "Europol, the NCA and the FBI shut down a dark web forum selling malware.",
        "A report by GCHQ and the National Cyber Security Centre on ransomware attacks.",
    ];
    for i in 0..60 {
        df.observe_text("", security[i % security.len()]);
    }
    df.observe_text("", JOC);
    df.observe_text("", JOC2);
    df.observe_text("", ARREST);
    df
}

#[test]
fn two_outlets_of_one_event_join_and_the_evidence_says_why() {
    let df = background();
    let mut index = StoryIndex::new(StorySettings::default());
    let a = index.place(
        1,
        features(
            &df,
            1,
            0,
            "GCHQ and NCA join forces to police dark web",
            JOC,
            "cw.example",
        ),
    );
    assert!(!a.joined);
    let b = index.place(
        2,
        features(
            &df,
            2,
            6,
            "GCHQ and NCA hunting criminals in the dark web",
            JOC2,
            "sa.example",
        ),
    );
    assert!(b.joined, "{}", b.evidence);
    assert_eq!(b.story, a.story);
    assert!(b.evidence.score >= b.evidence.threshold);
    assert!(b.evidence.shared_runs >= 1, "{}", b.evidence);
    assert!(b.evidence.quote.is_some(), "{}", b.evidence);
    let text = b.evidence.to_string();
    assert!(text.contains("Warrington"), "{text}");
    assert!(text.contains("vs threshold"), "{text}");
}

#[test]
fn same_entities_same_day_different_event_stays_apart() {
    let df = background();
    let mut index = StoryIndex::new(StorySettings::default());
    let a = index.place(
        1,
        features(
            &df,
            1,
            0,
            "GCHQ and NCA join forces to police dark web",
            JOC,
            "cw.example",
        ),
    );
    let b = index.place(
        2,
        features(
            &df,
            2,
            5,
            "NCA arrests dark web gun buyer",
            ARREST,
            "wire.example",
        ),
    );
    assert_ne!(a.story, b.story, "{}", b.evidence);
}

#[test]
fn split_takes_a_report_out_and_rescoring_keeps_it_out() {
    let df = background();
    let mut index = StoryIndex::new(StorySettings::default());
    let a = index.place(
        1,
        features(&df, 1, 0, "GCHQ and NCA join forces", JOC, "cw.example"),
    );
    let b = index.place(
        2,
        features(
            &df,
            2,
            3,
            "GCHQ and NCA hunting criminals",
            JOC2,
            "sa.example",
        ),
    );
    assert_eq!(a.story, b.story);
    let split = index.split(2).unwrap();
    assert_eq!(split.from, a.story);
    assert_ne!(split.to, a.story);
    assert_eq!(index.story_of(2), Some(split.to));
    // The outlet edits the report: re-scoring does not put it back.
    let edited = features(
        &df,
        2,
        3,
        "GCHQ and NCA hunting criminals (updated)",
        JOC2,
        "sa.example",
    );
    let again = index.rescore(2, edited);
    assert_eq!(again.story, split.to);
    assert!(again.evidence.manual);
    assert_eq!(index.members(a.story), vec![1]);
    assert_eq!(index.split(99), Err(StoryError::UnknownItem(99)));
    // Splitting a report that is already alone keeps its story.
    let alone = index.split(2).unwrap();
    assert_eq!((alone.from, alone.to), (split.to, split.to));
}

#[test]
fn merge_joins_two_stories_and_survives_rescoring() {
    let df = background();
    let mut index = StoryIndex::new(StorySettings::default());
    let a = index.place(
        1,
        features(&df, 1, 0, "GCHQ and NCA join forces", JOC, "cw.example"),
    );
    let b = index.place(
        2,
        features(
            &df,
            2,
            1,
            "NCA arrests dark web gun buyer",
            ARREST,
            "wire.example",
        ),
    );
    assert_ne!(a.story, b.story);
    let m = index.merge(a.story, b.story).unwrap();
    assert_eq!(m.moved, vec![2]);
    assert_eq!(index.story_of(2), Some(a.story));
    let again = index.rescore(
        2,
        features(&df, 2, 1, "NCA arrests gun buyer", ARREST, "wire.example"),
    );
    assert_eq!(again.story, a.story);
    assert_eq!(
        index.merge(a.story, 999),
        Err(StoryError::UnknownStory(999))
    );
    // Reloaded from the store with the pins, a re-score still keeps it.
    let mut fresh = StoryIndex::with_next_id(StorySettings::default(), 10);
    fresh.insert_existing(
        1,
        a.story,
        true,
        features(&df, 1, 0, "GCHQ and NCA join forces", JOC, "cw.example"),
    );
    fresh.insert_existing(
        2,
        a.story,
        true,
        features(
            &df,
            2,
            1,
            "NCA arrests dark web gun buyer",
            ARREST,
            "wire.example",
        ),
    );
    let p = fresh.rescore(
        2,
        features(&df, 2, 1, "NCA arrests", ARREST, "wire.example"),
    );
    assert_eq!(p.story, a.story);
}

#[test]
fn an_edited_report_is_rescored_and_moves_when_its_text_changes() {
    let df = background();
    let mut index = StoryIndex::new(StorySettings::default());
    let a = index.place(
        1,
        features(&df, 1, 0, "GCHQ and NCA join forces", JOC, "cw.example"),
    );
    let b = index.place(
        2,
        features(
            &df,
            2,
            1,
            "NCA arrests dark web gun buyer",
            ARREST,
            "wire.example",
        ),
    );
    let c = index.place(
        3,
        features(&df, 3, 2, "Placeholder", "Text to follow.", "sa.example"),
    );
    assert_ne!(c.story, a.story);
    let moved = index.rescore(
        3,
        features(
            &df,
            3,
            2,
            "GCHQ and NCA hunting criminals",
            JOC2,
            "sa.example",
        ),
    );
    assert_eq!(moved.story, a.story, "{}", moved.evidence);
    assert_eq!(moved.moved_from, Some(c.story));
    assert_ne!(moved.story, b.story);
    // The empty story it left is gone.
    assert!(index.members(c.story).is_empty());
}

#[test]
fn loading_stored_items_rebuilds_stories_that_new_reports_join() {
    let df = background();
    let mut index = StoryIndex::with_next_id(StorySettings::default(), 40);
    let blob = features(&df, 7, 0, "GCHQ and NCA join forces", JOC, "cw.example").to_bytes();
    let f = Features::from_bytes(&blob).unwrap();
    assert_eq!(
        f,
        features(&df, 7, 0, "GCHQ and NCA join forces", JOC, "cw.example").without_labels()
    );
    index.insert_existing(7, 33, false, f);
    let p = index.place(
        8,
        features(
            &df,
            8,
            5,
            "Spies and police open a cell",
            JOC2,
            "sa.example",
        ),
    );
    assert_eq!(p.story, 33, "{}", p.evidence);
    let q = index.place(
        9,
        features(
            &df,
            9,
            5,
            "Unrelated",
            "Wholly different words about gardening.",
            "x.example",
        ),
    );
    assert_eq!(q.story, 40, "new stories take ids from with_next_id");
    assert!(Features::from_bytes(b"garbage").is_none());
    assert!(Features::from_bytes(&blob[..blob.len() - 3]).is_none());
}

#[test]
fn empty_and_one_word_reports_get_stories_of_their_own() {
    let df = background();
    let mut index = StoryIndex::new(StorySettings::default());
    let a = index.place(1, features(&df, 1, 0, "", "", "a.example"));
    let b = index.place(2, features(&df, 2, 0, "", "", "b.example"));
    let c = index.place(3, features(&df, 3, 0, "Update", "Update", "c.example"));
    let d = index.place(4, features(&df, 4, 0, "Update", "Update", "d.example"));
    let stories = [a.story, b.story, c.story, d.story];
    for (i, s) in stories.iter().enumerate() {
        assert!(!stories[..i].contains(s), "{stories:?}");
    }
}

#[test]
fn five_hundred_near_empty_entries_do_not_become_one_story() {
    let mut df = background();
    let words = [
        "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
    ];
    let entries: Vec<(String, String)> = (0..500)
        .map(|i| {
            (
                format!("Item {i}"),
                format!("{} {}", words[i % 8], words[(i / 8) % 8]),
            )
        })
        .collect();
    for (t, b) in &entries {
        df.observe_text(t, b);
    }
    let mut index = StoryIndex::new(StorySettings::default());
    let mut sizes: HashMap<StoryId, usize> = HashMap::default();
    for (i, (t, b)) in entries.iter().enumerate() {
        let id = i as i64;
        let p = index.place(id, features(&df, id, 0, t, b, "feed.example"));
        *sizes.entry(p.story).or_default() += 1;
    }
    let largest = sizes.values().max().copied().unwrap_or(0);
    assert!(
        sizes.len() >= 400,
        "{} stories for 500 entries",
        sizes.len()
    );
    assert!(largest <= 10, "a story of {largest} near-empty entries");
}

#[test]
fn a_republished_archive_with_boilerplate_does_not_collapse() {
    // 300 unrelated posts of one feed, each ending in the same 20-word boilerplate.
    let mut df = background();
    let boiler = "The post appeared first on Example Security Blog, follow us on social media \
                  and subscribe to the newsletter for weekly updates from the team";
    let topics: Vec<String> = (0..300)
        .map(|i| format!("Report number {i} covers subject{i} and detail{i} in place{i}. {boiler}"))
        .collect();
    for t in &topics {
        df.observe_text("", t);
    }
    let mut index = StoryIndex::new(StorySettings::default());
    let mut stories = std::collections::HashSet::new();
    for (i, t) in topics.iter().enumerate() {
        let id = i as i64;
        let title = format!("Subject{i} in place{i}");
        stories.insert(
            index
                .place(
                    id,
                    features(&df, id, (i % 48) as i64, &title, t, "blog.example"),
                )
                .story,
        );
    }
    assert_eq!(
        stories.len(),
        300,
        "boilerplate of one host is not evidence"
    );
}

#[test]
fn the_same_report_in_many_feeds_is_one_story() {
    // Every copy is counted in the document frequencies first, as a poll does: past eight
    // copies the shared runs stop counting and the shared words carry on.
    let mut df = background();
    df.observe_text("GCHQ and NCA join forces", JOC);
    let mut index = StoryIndex::new(StorySettings::default());
    let first = index.place(
        1,
        features(&df, 1, 0, "GCHQ and NCA join forces", JOC, "a.example"),
    );
    for i in 2..30 {
        df.observe_text("GCHQ and NCA join forces", JOC);
        let host = format!("outlet{i}.example");
        let p = index.place(
            i,
            features(&df, i, i, "GCHQ and NCA join forces", JOC, &host),
        );
        assert_eq!(p.story, first.story, "{}", p.evidence);
    }
}

#[test]
fn a_huge_body_and_an_undated_far_report_are_handled() {
    let df = background();
    let mut index = StoryIndex::new(StorySettings::default());
    let huge = format!(
        "{JOC} {}",
        "lorem ipsum dolor sit amet consectetur ".repeat(20_000)
    );
    let a = index.place(
        1,
        features(&df, 1, 0, "GCHQ and NCA join forces", &huge, "a.example"),
    );
    let f = features(&df, 2, 0, "x", &huge, "b.example");
    assert!(f.text.len() <= features::MAX_TEXT_TERMS);
    assert!(f.runs.len() <= 96);
    // A week later: outside the window, a story of its own.
    let b = index.place(
        3,
        features(&df, 3, 24 * 7, "GCHQ and NCA join forces", JOC, "c.example"),
    );
    assert_ne!(a.story, b.story);
}

#[test]
fn eviction_drops_stories_older_than_the_window() {
    let df = background();
    let mut index = StoryIndex::new(StorySettings::default());
    let a = index.place(
        1,
        features(&df, 1, 0, "GCHQ and NCA join forces", JOC, "a.example"),
    );
    let b = index.place(
        2,
        features(&df, 2, 24 * 5, "NCA arrests gun buyer", ARREST, "b.example"),
    );
    let c = index.place(
        3,
        features(
            &df,
            3,
            1,
            "GCHQ and NCA hunting criminals",
            JOC2,
            "c.example",
        ),
    );
    assert_eq!(c.story, a.story);
    let gone = index.evict(at(24 * 5));
    assert_eq!(gone, vec![a.story]);
    assert_eq!(index.story_of(3), None);
    assert!(
        index.postings.values().all(|p| !p.contains(&a.story)),
        "evicted story left in the postings"
    );
    // A new JOC report starts a story.
    let d = index.place(
        4,
        features(&df, 4, 24 * 5, "GCHQ and NCA join forces", JOC, "d.example"),
    );
    assert!(!d.joined, "{}", d.evidence);
    assert_eq!(index.story_of(1), None);
    assert_eq!(index.story_of(2), Some(b.story));
    assert_eq!(index.stories(), 2);
    assert_eq!(index.items(), 2);
}

#[test]
fn doc_freq_counts_once_per_document_and_round_trips() {
    let mut df = DocFreq::new();
    df.observe_text("Warrington Warrington", "Warrington and GCHQ");
    df.observe_text("", "GCHQ");
    assert_eq!(df.docs(), 2);
    assert_eq!(df.df(term_hash("warrington")), 1);
    assert_eq!(df.df(term_hash("GCHQ")), 2);
    assert!(df.idf(term_hash("warrington")) > df.idf(term_hash("gchq")));
    let bytes = df.to_bytes();
    assert!(
        bytes.len() < 1_000,
        "{} bytes for two documents",
        bytes.len()
    );
    let back = DocFreq::from_bytes(&bytes).unwrap();
    assert_eq!(back.docs(), 2);
    assert_eq!(back.df(term_hash("gchq")), 2);
    assert!(DocFreq::from_bytes(b"NWD1").is_err());
    assert!(DocFreq::from_bytes(b"nope").is_err());
    let mut bad = bytes.clone();
    bad.extend_from_slice(&[0xff, 0xff, 0xff, 0x7f, 1]);
    assert!(DocFreq::from_bytes(&bad).is_err());
}

#[test]
fn term_hash_matches_the_tokenizer_hash_and_folds_accents() {
    let mut toks = crate::pipeline::normalise::tokens("Warrington");
    let (_, h) = toks.next_hashed().unwrap();
    assert_eq!(h, Some(term_hash("warrington")));
    assert_eq!(term_hash("Théresa"), term_hash("theresa"));
}

/// `term_hash` folds char by char: the same as folding the whole token, for every script
/// and for marks that NFD reorders, also when chars collide in the per-thread table.
#[test]
fn term_hash_by_chars_equals_folding_the_token() {
    use features::term_hash_folding;
    let words = [
        "Théresa",
        "ΑΘΗΝΑ",
        "Ünïcode",
        "İstanbul",
        "café",
        "GCHQ",
        "",
        "Йошкар-Ола",
        "ёлка",
        "北京市",
        "가\u{11a8}각",
        "a\u{308}\u{301}b",
        "o\u{31b}\u{323}x",
        "\u{301}\u{301}a\u{308}",
        "ﬁnal",
        "ＧＣＨＱ",
        "①②",
        "ǅemal",
        "ΣΊΣΥΦΟΣ",
        "ß",
        "がぎ",
        "\u{212b}ngström",
        "ﷺ",
    ];
    for w in words {
        assert_eq!(term_hash(w), term_hash_folding(w), "{w:?}");
        assert_eq!(term_hash(w), term_hash_folding(w), "{w:?} (second time)");
    }
    // Every char (in tokens of three, so the table's slots are reused by colliding chars).
    let all: Vec<char> = (0x80..0x11_0000u32).filter_map(char::from_u32).collect();
    for c in all.chunks(3) {
        let w: String = c.iter().collect();
        assert_eq!(term_hash(&w), term_hash_folding(&w), "{w:?}");
    }
}

/// Why folding char by char is exact: NFD reorders only chars of non-zero combining class,
/// and the fold drops every one of them (they are all marks).
#[test]
fn fold_is_per_char() {
    use unicode_normalization::char::{canonical_combining_class, is_combining_mark};
    for c in (0..0x11_0000u32).filter_map(char::from_u32) {
        if canonical_combining_class(c) != 0 {
            assert!(is_combining_mark(c), "{c:?} U+{:04X}", c as u32);
        }
    }
}

/// The bitmap sort of buckets equals `sort_unstable` + `dedup`, and leaves the bitmap clean
/// for the next list (short, long, repeated, extreme and out-of-range buckets).
#[test]
fn bucket_sort_equals_a_comparison_sort() {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for round in 0..200 {
        let len = (next() % 3_000) as usize;
        let spread = [1 << 19, 5_000, 64, 1][round % 4];
        let mut v: Vec<u32> = (0..len).map(|_| (next() % spread) as u32).collect();
        if round % 7 == 0 {
            v.extend([0, (1 << 19) - 1, 0, (1 << 19) - 1]);
        }
        let mut want = v.clone();
        want.sort_unstable();
        want.dedup();
        features::sort_dedup_buckets(&mut v);
        assert_eq!(v, want, "round {round}");
    }
    let mut out_of_range: Vec<u32> = (0..100).chain([1 << 19, u32::MAX]).collect();
    features::sort_dedup_buckets(&mut out_of_range);
    assert_eq!(out_of_range, (0..100).collect::<Vec<u32>>());
}

#[test]
fn boilerplate_shared_by_many_sites_is_not_a_quotation() {
    // 60 unrelated short reports from 60 sites, each ending in the same licence notice.
    let notice = "This article is republished under a Creative Commons licence, read the \
                  original article on the publisher's website for the full text and sources";
    let mut df = background();
    let texts: Vec<String> = (0..60)
        .map(|i| format!("Councillors in town{i} approved plan{i}. {notice}"))
        .collect();
    for t in &texts {
        df.observe_text("", t);
    }
    let mut index = StoryIndex::new(StorySettings::default());
    let mut stories = std::collections::HashSet::new();
    for (i, t) in texts.iter().enumerate() {
        let id = i as i64;
        let host = format!("site{i}.example");
        let p = index.place(
            id,
            features(&df, id, 0, &format!("Plan{i} approved"), t, &host),
        );
        assert_eq!(p.evidence.shared_runs, 0, "{}", p.evidence);
        stories.insert(p.story);
    }
    assert_eq!(stories.len(), 60);
}

/// Workers sharing one database each count their own entries and fold in the others' before
/// placing (issue 17): every document is counted once, and with no other writer nothing
/// changes.
#[test]
fn doc_freq_merged_by_two_counters_counts_each_document_once() {
    let mut base = DocFreq::new();
    base.observe_text("GCHQ report", "");
    let (mut a, mut b) = (base.clone(), base.clone());
    a.observe_text("GCHQ Warrington", "");
    b.observe_text("GCHQ Leeds", "");
    b.observe_text("Leeds council", "");
    // a places first: the stored copy is still base, so a stays as it is.
    let before = a.to_bytes();
    a.merge_since(&base, &base);
    assert_eq!(a.to_bytes(), before);
    // b places next, over a's saved copy.
    b.merge_since(&base, &a);
    assert_eq!(b.docs(), 4);
    assert_eq!(b.df(term_hash("GCHQ")), 3);
    assert_eq!(b.df(term_hash("Leeds")), 2);
    assert_eq!(b.df(term_hash("Warrington")), 1);
    assert_eq!(b.df(term_hash("report")), 1);
}
