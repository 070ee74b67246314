//! Matcher: the rule language and the compiled multi-rule matcher.
//!
//! `query` parses a rule's text into an AST; [`Matcher`] compiles every rule of a config into one
//! automaton that scans an item's tokens once.

pub mod query;

pub use query::{Query, QueryError};

/// One rule that matched an item, with the query terms (as written in the rule, phrases in
/// double quotes, prefixes with their `*`) that were found in the item.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RuleMatch {
    pub rule: String,
    pub terms: Vec<String>,
}

/// What matching one item produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemMatch {
    /// Rules that matched, in rule order.
    pub rules: Vec<RuleMatch>,
    /// Up to ~240 characters of the item's plain text around the first hit ("…" marks cuts).
    pub snippet: String,
}

/// Every rule of a configuration, compiled once.
#[derive(Debug)]
pub struct Matcher {
    _private: (),
}

impl Matcher {
    /// Compile `(rule name, parsed query)` pairs. Cost is paid once per configuration.
    pub fn new(rules: Vec<(String, Query)>) -> Matcher {
        let _ = rules;
        todo!("Matcher::new")
    }

    /// Match one item. `title` and `body` are already plain text (see
    /// [`crate::normalise::to_plain_text`]); `body` is summary + content. `None` when no rule
    /// matched.
    pub fn match_item(&self, title: &str, body: &str) -> Option<ItemMatch> {
        let _ = (title, body);
        todo!("Matcher::match_item")
    }

    /// Byte ranges in `text` (plain text) of every positive term hit of any rule, sorted and
    /// non-overlapping: used to emphasise matched terms in digests.
    pub fn highlight(&self, text: &str) -> Vec<std::ops::Range<usize>> {
        let _ = text;
        todo!("Matcher::highlight")
    }
}
