//! The suite again, on PostgreSQL: the same test modules as `tests/tests.rs`, compiled with
//! [`ON_POSTGRES`], so every project whose config names no `[storage]` gets a fresh PostgreSQL
//! database of its own on the server `NEWSWATCH_PG_URL` names (`.ci/run` sets it). Without it
//! each test says SKIPPED and runs on SQLite. A test that is SQLite's alone (it reads the
//! SQLite file itself) says so with `support::sqlite_only` and returns.
//!
//! Left out: the modules that test PostgreSQL already (`postgres`, `pg_review`, `cluster`) and
//! those that never open a database (the parser's corpus checks, the story-quality
//! evaluation of the clustering itself).

/// This binary runs the suite on PostgreSQL.
const ON_POSTGRES: bool = true;

#[path = "alerts.rs"]
mod alerts;
#[path = "archive.rs"]
mod archive;
#[path = "cli_poll.rs"]
mod cli_poll;
#[path = "daemon.rs"]
mod daemon;
#[path = "digest.rs"]
mod digest;
#[path = "ecosystem.rs"]
mod ecosystem;
#[path = "edges.rs"]
mod edges;
#[path = "faults.rs"]
mod faults;
#[path = "hostile.rs"]
mod hostile;
#[path = "identity.rs"]
mod identity;
#[path = "review.rs"]
mod review;
#[path = "security.rs"]
mod security;
#[path = "stories.rs"]
mod stories;
#[path = "support/mod.rs"]
mod support;
#[path = "text_lost.rs"]
mod text_lost;
#[path = "web.rs"]
mod web;
