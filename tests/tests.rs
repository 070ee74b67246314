//! The one integration-test binary (one link step on a 2-core machine).

/// This binary runs the suite on SQLite (`tests/on_postgres.rs` runs it on PostgreSQL).
const ON_POSTGRES: bool = false;

mod alerts;
mod archive;
mod corpus;
mod corpus_expect;
mod support;

mod cli_poll;
mod cluster;
mod daemon;
mod digest;
mod ecosystem;
mod edges;
mod faults;
mod fetch;
mod hostile;
mod identity;
mod pg_review;
mod postgres;
mod review;
mod security;
mod stories;
mod stories_eval;
mod text_lost;
mod web;
