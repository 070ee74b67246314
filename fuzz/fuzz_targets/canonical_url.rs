//! URL canonicalisation: never panics, is idempotent (canon(canon(x)) == canon(x)), and its
//! output is an absolute URL.
#![no_main]

use libfuzzer_sys::fuzz_target;
use newswatch::pipeline::dedup::canonical_url;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let Some(once) = canonical_url(s) else { return };
    assert!(
        url::Url::parse(&once).is_ok(),
        "canonical form is not a URL: {s:?} -> {once:?}"
    );
    let twice = canonical_url(&once);
    assert_eq!(
        twice.as_deref(),
        Some(once.as_str()),
        "not idempotent: {s:?} -> {once:?} -> {twice:?}"
    );
});
