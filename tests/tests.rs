//! The one integration-test binary (one link step on a 2-core machine).

mod corpus;
mod support;

mod cli_poll;
mod daemon;
mod digest;
mod ecosystem;
mod edges;
mod faults;
mod fetch;
mod hostile;
mod review;
mod stories_eval;
