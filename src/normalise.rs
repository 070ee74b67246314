//! Normalise: turn feed text (HTML fragments, entities, odd Unicode) into plain text and tokens.
//!
//! Everything the matcher and the stored snippets see has been through here, so matching is
//! defined on one canonical form: tags stripped, entities decoded, Unicode NFKC, whitespace folded.

/// Plain text from a feed's HTML or text field: tags removed (script/style content dropped),
/// entities decoded (named, decimal, hex), NFKC, control characters removed, every run of
/// whitespace folded to one ASCII space, trimmed.
pub fn to_plain_text(input: &str) -> String {
    let _ = input;
    todo!("normalise::to_plain_text")
}

/// A token: a maximal run of Unicode letters/digits (combining marks stay inside the token).
/// `start..end` are byte offsets into the text that was tokenised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token<'a> {
    pub text: &'a str,
    pub start: usize,
    pub end: usize,
}

/// Split plain text into tokens. Everything that is not a letter/digit separates tokens.
pub fn tokenize(text: &str) -> Vec<Token<'_>> {
    let _ = text;
    todo!("normalise::tokenize")
}

/// Case- and diacritic-folded form of a token: lower case, accents removed (Théresa -> theresa).
pub fn fold(token: &str) -> String {
    let _ = token;
    todo!("normalise::fold")
}
