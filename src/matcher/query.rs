//! The rule language: terms, "phrases", AND / OR / NOT, `-term`, parentheses, implicit AND,
//! trailing `*` prefixes and the `title:` field.

/// A parsed rule query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    _private: (),
}

/// A syntax error in a rule, with the 1-based character column where it was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column {column}: {message}")]
pub struct QueryError {
    pub column: usize,
    pub message: String,
}

impl Query {
    /// Parse a query. Empty or whitespace-only input is an error.
    pub fn parse(src: &str) -> Result<Query, QueryError> {
        let _ = src;
        todo!("Query::parse")
    }
}
