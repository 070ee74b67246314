//! Parse-only CPU: the physical limit of a cold poll under the design card (issue 18).
//!
//!     cargo bench --bench parse_only -- DIR [PASSES=3]
//!
//! Reads every file of DIR (e.g. the `www/` of a peers.sh work dir: N feed documents, hard
//! links cycling the corpus) into memory, then, single-threaded, times
//!
//! - `feed-rs`: `feed_rs::parser::parse` on each document's raw bytes — what the issue calls
//!   the parse-only CPU;
//! - `newswatch-parse`: newswatch's own `parse::parse_feed` (decoding, repair scan, feed-rs,
//!   conversion to entries) on the same bytes, to show what the wrapper adds.
//!
//! Each is run PASSES times over all documents; the thread's CPU time
//! (`CLOCK_THREAD_CPUTIME_ID`) of each pass is measured and the minimum and median printed.
//! The last lines are machine-readable: `feed-rs-cpu-s <min>` and `newswatch-parse-cpu-s <min>`
//! (used by `scripts/cold-ratio.sh`). Documents feed-rs rejects are counted, not fatal.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn main() {
    // `cargo bench` passes `--bench` to harness = false targets; skip flags.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let Some(dir) = args.first().map(PathBuf::from) else {
        eprintln!("usage: cargo bench --bench parse_only -- DIR [PASSES=3]");
        std::process::exit(2);
    };
    let passes: usize = args.get(1).and_then(|p| p.parse().ok()).unwrap_or(3).max(1);
    let mut paths: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect(),
        Err(e) => {
            eprintln!("parse_only: cannot read {}: {e}", dir.display());
            std::process::exit(2);
        }
    };
    paths.sort();
    let docs: Vec<Vec<u8>> = paths.iter().filter_map(|p| std::fs::read(p).ok()).collect();
    let bytes: usize = docs.iter().map(Vec::len).sum();
    println!(
        "documents: {} ({:.1} MB) from {}",
        docs.len(),
        bytes as f64 / 1e6,
        dir.display()
    );

    let mut results = Vec::new();
    for name in ["feed-rs", "newswatch-parse"] {
        let mut times = Vec::new();
        let mut failed = 0usize;
        let mut entries = 0usize;
        for _ in 0..passes {
            failed = 0;
            entries = 0;
            let start = thread_cpu();
            for doc in &docs {
                if name == "feed-rs" {
                    match feed_rs::parser::parse(doc.as_slice()) {
                        Ok(feed) => entries += black_box(feed).entries.len(),
                        Err(_) => failed += 1,
                    }
                } else {
                    match newswatch::pipeline::parse::parse_feed(doc, None, None) {
                        Ok(feed) => entries += black_box(feed).entries.len(),
                        Err(_) => failed += 1,
                    }
                }
            }
            times.push((thread_cpu() - start).as_secs_f64());
        }
        let min = times.iter().copied().fold(f64::INFINITY, f64::min);
        let med = median(&mut times);
        println!(
            "{name}: CPU min {min:.3} s, median {med:.3} s over {passes} passes; \
             {entries} entries, {failed} documents rejected ({:.1} MB/s)",
            bytes as f64 / 1e6 / min
        );
        results.push((name, min));
    }
    for (name, min) in results {
        println!("{name}-cpu-s {min:.4}");
    }
}
