//! newswatch: watch public news feeds for named topics and keep every match for review.
//!
//! Layers, imports pointing down:
//! - [`pipeline`]: the stages a feed goes through (fetch → parse → normalise → match → dedup);
//! - [`store`]: the database (SQLite, migrations) and the review queries over it;
//! - [`outputs`]: digest, export, OPML;
//! - [`config`]: the TOML file validated into runtime `Settings`;
//! - [`service`]: one poll cycle, the daemon;
//! - [`cli`]: the commands.
//!
//! Below them all: [`text`] (escaping feed text for every output), [`atomic`] (replace a file
//! atomically) and [`schedule`] (cron times, jitter, backoff).

// External data must never panic the daemon: no unwrap/expect/panic outside tests.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod atomic;
pub mod cli;
pub mod config;
pub mod outputs;
pub mod pipeline;
pub mod schedule;
pub mod service;
pub mod store;
pub mod text;
