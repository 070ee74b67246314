//! newswatch: watch public news feeds for named topics and keep every match for review.
//!
//! One module per pipeline stage: [`fetch`] → [`parse`] → [`normalise`] → [`matcher`] →
//! [`dedup`] → [`store`], driven by [`poll`] (one cycle) on a [`schedule`], configured by
//! [`config`], and served to people by [`cli`], [`review`] and [`digest`]. Around it, the
//! feed-reader ecosystem: [`opml`] (subscription lists in and out), [`discover`] (find a site's
//! feeds) and [`export`] (stored matches as an Atom or JSON feed).

// External data must never panic the daemon: no unwrap/expect/panic outside tests.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod atomic;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod dedup;
pub mod digest;
pub mod discover;
pub mod export;
pub mod fetch;
pub mod matcher;
pub mod normalise;
pub mod opml;
pub mod parse;
pub mod poll;
pub mod review;
pub mod schedule;
pub mod store;
