//! Running newswatch: [`poll`] (one cycle over the feeds: pipeline into store) and [`daemon`]
//! (`newswatch run`: polls on the [`crate::schedule`], writes digests and output feeds,
//! reloads on SIGHUP) or, on PostgreSQL, [`cluster`] (`run` as one of several workers leasing
//! due feeds).

pub mod alerts;
pub mod cluster;
pub mod daemon;
pub mod metrics;
pub mod poll;
pub mod web;
