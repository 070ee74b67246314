//! The stages every feed goes through, in order: [`fetch`] (bytes over HTTP or from a file) →
//! [`parse`] (RSS / Atom / JSON Feed into entries) → [`normalise`] (plain text, tokens) →
//! [`matcher`] (the rule language) → [`dedup`] (identity, canonical URLs, fingerprints).
//! [`discover`] uses the first two to find a site's feeds.
//!
//! Stages import only each other, downwards: never the store, the service, the outputs or the
//! CLI.

pub mod dedup;
pub mod discover;
pub mod fetch;
pub mod matcher;
pub mod normalise;
pub mod parse;
pub mod stories;
