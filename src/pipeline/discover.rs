//! Discover: find the feeds a web site offers, starting from one of its pages.
//!
//! People know a site's address, rarely its feed's. This module reads the page's advertised
//! feeds (`<link rel="alternate" type="application/rss+xml" …>` and the Atom / JSON Feed
//! equivalents, resolved against `<base href>` or the page URL) and, only when the page
//! advertises none, probes the paths where feeds usually live. A probe counts only when it
//! answers 200 with something [`crate::pipeline::parse::parse_feed`] accepts, so error pages and HTML
//! placeholders never show up as feeds. The HTML is tokenized by html5gum (a WHATWG tokenizer:
//! comments, `<script>` text and entities are handled as browsers do).

use html5gum::{DefaultEmitter, Token, Tokenizer};
use url::Url;

use crate::pipeline::fetch::{FetchError, Fetcher, Validators};

/// Paths probed on the site's root when a page advertises no feed, in this order.
pub const PROBE_PATHS: &[&str] = &[
    "/feed",
    "/rss",
    "/atom.xml",
    "/feed.xml",
    "/index.xml",
    "/rss.xml",
];

/// Link types that announce a feed.
const FEED_TYPES: &[&str] = &[
    "application/rss+xml",
    "application/atom+xml",
    "application/feed+json",
    "application/json",
];

/// One feed a site offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovered {
    pub url: Url,
    /// Media type, as advertised (lower case) or as sniffed for probed and direct feeds.
    pub kind: String,
    /// The link's `title`, or the feed's own title when probed.
    pub title: Option<String>,
}

/// Why discovery failed.
#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    /// The page itself could not be fetched.
    #[error("cannot fetch {url}: {source}")]
    Fetch {
        url: Url,
        #[source]
        source: FetchError,
    },
    /// The page answered without a body.
    #[error("{0} answered with no body")]
    Empty(Url),
}

/// The feeds an HTML page advertises, in document order, without duplicates. Relative `href`s
/// resolve against the first `<base href>` (itself resolved against `page`), else `page`.
pub fn advertised(html: &str, page: &Url) -> Vec<Discovered> {
    let mut emitter = DefaultEmitter::default();
    // Switch to raw-text states after <script>, <style>, … so their text is not read as tags.
    emitter.naively_switch_states(true);
    let mut base: Option<Url> = None;
    // (href, type, title) in order, resolved at the end once <base> is known.
    let mut links: Vec<(String, String, Option<String>)> = Vec::new();
    for token in Tokenizer::new_with_emitter(html, emitter).flatten() {
        let Token::StartTag(tag) = token else {
            continue;
        };
        let attr = |name: &str| {
            tag.attributes
                .get(name.as_bytes())
                .map(|v| String::from_utf8_lossy(&v.value).trim().to_string())
        };
        match tag.name.as_slice() {
            b"base" if base.is_none() => {
                base = attr("href").and_then(|h| page.join(&h).ok());
            }
            b"link" => {
                let rel = attr("rel").unwrap_or_default().to_ascii_lowercase();
                if !rel.split_ascii_whitespace().any(|r| r == "alternate") {
                    continue;
                }
                let kind = attr("type").unwrap_or_default().to_ascii_lowercase();
                let kind = kind.split(';').next().unwrap_or("").trim().to_string();
                if !FEED_TYPES.contains(&kind.as_str()) {
                    continue;
                }
                let Some(href) = attr("href").filter(|h| !h.is_empty()) else {
                    continue;
                };
                let title = attr("title").filter(|t| !t.is_empty());
                links.push((href, kind, title));
            }
            _ => {}
        }
    }
    let base = base.as_ref().unwrap_or(page);
    let mut out: Vec<Discovered> = Vec::new();
    for (href, kind, title) in links {
        let Ok(url) = base.join(&href) else { continue };
        if !matches!(url.scheme(), "http" | "https") || out.iter().any(|d| d.url == url) {
            continue;
        }
        out.push(Discovered { url, kind, title });
    }
    out
}

/// A feed's media type from its body (after a successful parse): JSON Feed, Atom or RSS.
fn sniff_kind(body: &[u8]) -> &'static str {
    let head = String::from_utf8_lossy(&body[..body.len().min(2048)]);
    let trimmed = head.trim_start_matches(['\u{feff}', ' ', '\t', '\r', '\n']);
    if trimmed.starts_with('{') {
        "application/feed+json"
    } else if head.contains("<feed") {
        "application/atom+xml"
    } else {
        "application/rss+xml"
    }
}

/// Fetch `url` and, if it answers 200 with a feed, describe it.
async fn as_feed(fetcher: &Fetcher, url: &Url) -> Option<Discovered> {
    let fetched = fetcher.fetch(url, &Validators::default()).await.ok()?;
    if fetched.status != 200 {
        return None;
    }
    let body = fetched.body?;
    let feed = crate::pipeline::parse::parse_feed(
        &body,
        fetched.content_type.as_deref(),
        Some(fetched.final_url.as_str()),
    )
    .ok()?;
    Some(Discovered {
        url: url.clone(),
        kind: sniff_kind(&body).to_string(),
        title: feed.title.filter(|t| !t.trim().is_empty()),
    })
}

/// The feeds `page` offers: the page itself if it is a feed; else the feeds it advertises;
/// else those of [`PROBE_PATHS`] on its site that answer 200 with a parseable feed.
pub async fn discover(fetcher: &Fetcher, page: &Url) -> Result<Vec<Discovered>, DiscoverError> {
    let fetched = fetcher
        .fetch(page, &Validators::default())
        .await
        .map_err(|source| DiscoverError::Fetch {
            url: page.clone(),
            source,
        })?;
    let body = fetched
        .body
        .ok_or_else(|| DiscoverError::Empty(page.clone()))?;
    // Given a feed's own address: that is the answer.
    if let Ok(feed) = crate::pipeline::parse::parse_feed(
        &body,
        fetched.content_type.as_deref(),
        Some(fetched.final_url.as_str()),
    ) {
        return Ok(vec![Discovered {
            url: fetched.final_url.clone(),
            kind: sniff_kind(&body).to_string(),
            title: feed.title.filter(|t| !t.trim().is_empty()),
        }]);
    }
    let html = String::from_utf8_lossy(&body);
    let found = advertised(&html, &fetched.final_url);
    if !found.is_empty() {
        return Ok(found);
    }
    let mut probed = Vec::new();
    for path in PROBE_PATHS {
        let Ok(url) = fetched.final_url.join(path) else {
            continue;
        };
        if let Some(d) = as_feed(fetcher, &url).await {
            probed.push(d);
        }
    }
    Ok(probed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_alternate_links_resolved_against_base() {
        let page = Url::parse("https://site.example/blog/post.html").unwrap();
        let html = r#"<!doctype html><html><head>
            <base href="/sub/">
            <LINK REL="Alternate home" TYPE="application/rss+xml; charset=utf-8" href="feed.rss?a=1&amp;b=2" title="Posts &amp; more">
            <link rel="alternate" type="application/atom+xml" href="https://other.example/atom">
            <link rel="alternate" type="text/html" href="/fr/">
            <link rel="stylesheet" type="application/rss+xml" href="/not-alternate">
            <link rel="alternate" type="application/feed+json" href="feed.json">
            <link rel="alternate" type="application/rss+xml" href="feed.rss?a=1&amp;b=2">
            <!-- <link rel="alternate" type="application/rss+xml" href="/commented"> -->
            <script>var s = '<link rel="alternate" type="application/rss+xml" href="/scripted">';</script>
            </head><body></body></html>"#;
        let found = advertised(html, &page);
        let urls: Vec<&str> = found.iter().map(|d| d.url.as_str()).collect();
        assert_eq!(
            urls,
            vec![
                "https://site.example/sub/feed.rss?a=1&b=2",
                "https://other.example/atom",
                "https://site.example/sub/feed.json",
            ]
        );
        assert_eq!(found[0].kind, "application/rss+xml");
        assert_eq!(found[0].title.as_deref(), Some("Posts & more"));
        assert_eq!(found[2].kind, "application/feed+json");
    }

    #[test]
    fn without_base_links_resolve_against_the_page() {
        let page = Url::parse("https://site.example/a/b").unwrap();
        let html = r#"<link rel=alternate type=application/atom+xml href=../x.atom>"#;
        let found = advertised(html, &page);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].url.as_str(), "https://site.example/x.atom");
        assert!(advertised("<p>no feeds</p>", &page).is_empty());
    }
}
