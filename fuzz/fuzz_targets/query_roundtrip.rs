//! Rule language: `Query::parse` never panics, and its canonical Display form parses back to
//! the same tree (parse(display(q)) == q), and display is a fixed point.
#![no_main]

use libfuzzer_sys::fuzz_target;
use newswatch::pipeline::matcher::Query;

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(q) = Query::parse(src) else {
        return;
    };
    let shown = q.to_string();
    let again = match Query::parse(&shown) {
        Ok(again) => again,
        Err(e) => panic!("display form does not parse: {src:?} -> {shown:?}: {e}"),
    };
    assert_eq!(q, again, "round trip changed the query: {src:?} -> {shown:?}");
    assert_eq!(shown, again.to_string(), "display is not a fixed point");
});
