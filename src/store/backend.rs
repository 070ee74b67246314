//! The seam between the poll service and the two databases: [`PollStore`] is everything a
//! poll cycle asks of the store, implemented by the SQLite [`Store`] (by delegating to its
//! own methods, so the SQLite path is the code it always was) and by PostgreSQL's
//! [`PgStore`](super::postgres::poll::PgStore). The poll service is generic over it, so each
//! backend's calls are direct (no dynamic dispatch on the hot path).
//!
//! Only the poll path is behind the seam: the other commands, the web, digests and alerts
//! still take the SQLite [`Store`] itself.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

use super::stories::Placed;
use super::{CommitCounts, FeedState, FeedWrite, KnownEntries, Reader, Result, Store};
use crate::pipeline::stories::DocFreq;

/// What a poll cycle reads and writes. One value is one connection, owned by one thread at a
/// time (the poll service keeps it behind a mutex and calls it on blocking threads); reads
/// take `&mut` too, as PostgreSQL's synchronous client needs it.
pub trait PollStore: Send + 'static {
    /// The remembered state of feed `name`.
    fn feed_state(&mut self, name: &str) -> Result<Option<FeedState>>;
    /// Every feed's state, by name.
    fn feed_states(&mut self) -> Result<HashMap<String, FeedState>>;
    /// Identity hash → fingerprint of every entry ever seen in feed `feed_id`.
    fn known_entries(&mut self, feed_id: i64) -> Result<KnownEntries>;
    /// The document frequencies the story engine weighs words with (observed by the poller).
    fn doc_freq(&mut self) -> Result<Arc<Mutex<DocFreq>>>;
    /// Several feeds' results in one transaction, a savepoint per feed (a failing feed is
    /// rolled back alone and its result is the error).
    fn write_feeds(&mut self, batch: &[FeedWrite]) -> Result<Vec<Result<CommitCounts>>>;
    /// Remember a failure; returns the new count of consecutive failures.
    fn record_failure(
        &mut self,
        feed_id: i64,
        reason: &str,
        http_status: Option<u16>,
        next_due_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<u32>;
    /// Set a feed's next due time (after a failure; a success writes it with the results).
    fn set_next_due(&mut self, feed_id: i64, at: DateTime<Utc>) -> Result<()>;
    /// End of a cycle: place the pending matches into stories.
    fn place_stories(&mut self, now: DateTime<Utc>) -> Result<Placed>;
    /// A second connection for the parsing threads' known-entries lookups, so that they do
    /// not wait for the writer; `None` where the backend has none (then they go through this
    /// one, under its lock).
    fn reader(&self) -> Result<Option<Box<dyn EntryReader>>> {
        Ok(None)
    }
}

/// Reads a feed's known entries beside the writer ([`PollStore::reader`]).
pub trait EntryReader: Send {
    /// As [`PollStore::known_entries`], from the last committed state.
    fn known_entries(&self, feed_id: i64) -> Result<KnownEntries>;
}

impl EntryReader for Reader {
    fn known_entries(&self, feed_id: i64) -> Result<KnownEntries> {
        Reader::known_entries(self, feed_id)
    }
}

impl PollStore for Store {
    fn feed_state(&mut self, name: &str) -> Result<Option<FeedState>> {
        Store::feed_state(self, name)
    }

    fn feed_states(&mut self) -> Result<HashMap<String, FeedState>> {
        Store::feed_states(self)
    }

    fn known_entries(&mut self, feed_id: i64) -> Result<KnownEntries> {
        Store::known_entries(self, feed_id)
    }

    fn doc_freq(&mut self) -> Result<Arc<Mutex<DocFreq>>> {
        Store::doc_freq(self)
    }

    fn write_feeds(&mut self, batch: &[FeedWrite]) -> Result<Vec<Result<CommitCounts>>> {
        Store::write_feeds(self, batch)
    }

    fn record_failure(
        &mut self,
        feed_id: i64,
        reason: &str,
        http_status: Option<u16>,
        next_due_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<u32> {
        Store::record_failure(self, feed_id, reason, http_status, next_due_at, now)
    }

    fn set_next_due(&mut self, feed_id: i64, at: DateTime<Utc>) -> Result<()> {
        Store::set_next_due(self, feed_id, at)
    }

    fn place_stories(&mut self, now: DateTime<Utc>) -> Result<Placed> {
        Store::place_stories(self, now)
    }

    fn reader(&self) -> Result<Option<Box<dyn EntryReader>>> {
        Ok(Some(Box::new(Store::reader(self)?)))
    }
}
