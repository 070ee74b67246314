//! newswatch: watch public news feeds for named topics and keep every match for review.
//!
//! One module per pipeline stage: [`fetch`] → [`parse`] → [`normalise`] → [`matcher`] →
//! [`dedup`] → [`store`], driven by [`poll`] (one cycle) and configured by [`config`].

pub mod fetch;
pub mod matcher;
pub mod normalise;
pub mod parse;
