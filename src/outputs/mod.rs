//! What newswatch writes for people and other programs: [`digest`] (the daily digest and its
//! delivery), [`export`] (stored matches as Atom / JSON Feed) and [`opml`] (subscription lists
//! in and out).

pub mod alerts;
pub mod digest;
pub mod export;
pub mod opml;
