//! Dedup: who an entry is, so that each story is stored once.
//!
//! Identity within a feed is the entry's guid, else its link, else a hash of title + summary;
//! a guid or link that several entries of one document share identifies none of them (the next
//! rule is used instead; a shared link becomes link + title, never merged across feeds).
//! Across feeds, entries are one item when their canonical URLs agree. A content fingerprint
//! tells an edited entry from an unchanged one; an entry identified by guid also carries the
//! identity its link would give ([`Identity::link_key_hash`]), so that the store can tell an
//! edit from a different story that reuses a guid across polls.

use std::collections::{HashMap, HashSet};

use sha2::{Digest, Sha256};
use url::Url;

use crate::pipeline::parse::Entry;

/// Query parameters that only track the reader, dropped from canonical URLs.
const TRACKING_PARAMS: &[&str] = &[
    "fbclid",
    "gclid",
    "gclsrc",
    "dclid",
    "msclkid",
    "mc_cid",
    "mc_eid",
    "igshid",
    "yclid",
    "twclid",
    "_ga",
    "_gl",
    "_hsenc",
    "_hsmi",
    "mkt_tok",
    "oly_anon_id",
    "oly_enc_id",
    "vero_id",
    "wt.mc_id",
    "s_cid",
    "cmpid",
    "ncid",
    "sr_share",
    "__twitter_impression",
];

/// How one entry of a document is identified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Identity within its feed, human-readable: `guid:…`, `link:…`, `link+title:…`, `hash:…`.
    pub key: String,
    /// Compact form of `key` stored for every entry ever seen (16 bytes of SHA-256).
    pub key_hash: [u8; 16],
    /// For a guid identity: the key hash the entry's link (else title + summary) would give.
    /// The store files an entry under it instead when the guid's stored item is another
    /// story (a site reusing one guid for every new entry). `None` for other identities.
    pub link_key_hash: Option<[u8; 16]>,
    /// Canonical URL for merging across feeds; `None` when the entry has no link or shares
    /// its link with other entries of the same document. The poller fills it only for
    /// entries that match a rule (the store merges stored items alone).
    pub canonical_url: Option<String>,
}

/// Identify every entry of one document. Entries whose identity repeats an earlier entry of
/// the same document are dropped (first occurrence wins); the result pairs each kept entry's
/// index with its identity, in document order.
pub fn identify(entries: &[Entry]) -> Vec<(usize, Identity)> {
    identify_deferred(entries)
        .into_iter()
        .map(|(i, mut identity, link)| {
            identity.canonical_url = link.and_then(canonical_url);
            (i, identity)
        })
        .collect()
}

/// [`identify`] without the canonical URLs, which only matched entries need (URL parsing was
/// a visible share of a cold poll): each identity comes with the link to canonicalise, `None`
/// when the entry has none or shares it.
pub(crate) fn identify_deferred(entries: &[Entry]) -> Vec<(usize, Identity, Option<&str>)> {
    let mut link_count: HashMap<&str, usize> = HashMap::new();
    let mut guid_count: HashMap<&str, usize> = HashMap::new();
    for e in entries {
        if let Some(link) = nonempty(e.link.as_deref()) {
            *link_count.entry(link).or_default() += 1;
        }
        if let Some(guid) = nonempty(e.guid.as_deref()) {
            *guid_count.entry(guid).or_default() += 1;
        }
    }
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        let link = nonempty(e.link.as_deref());
        let shared = link.is_some_and(|l| link_count.get(l).copied().unwrap_or(0) > 1);
        // A guid that several entries share (some sites emit one for every item) is no
        // identity, just as a shared link is not.
        let guid =
            nonempty(e.guid.as_deref()).filter(|g| guid_count.get(g).copied().unwrap_or(0) == 1);
        let fallback = || match link {
            Some(l) if shared => format!("link+title:{l}\u{1f}{}", e.title.trim()),
            Some(l) => format!("link:{l}"),
            None => format!("hash:{}", hex(&hash_parts(&[&e.title, &e.summary])[..16])),
        };
        let (key, link_key_hash) = match guid {
            Some(g) => (
                format!("guid:{g}"),
                Some(truncate16(&hash_parts(&[&fallback()]))),
            ),
            None => (fallback(), None),
        };
        if !seen.insert(key.clone()) {
            continue;
        }
        let key_hash = truncate16(&hash_parts(&[&key]));
        out.push((
            i,
            Identity {
                key,
                key_hash,
                link_key_hash,
                canonical_url: None,
            },
            link.filter(|_| !shared),
        ));
    }
    out
}

fn nonempty(s: Option<&str>) -> Option<&str> {
    s.map(str::trim).filter(|s| !s.is_empty())
}

/// How good an entry's link is as the link of an item that several outlets carry: 2 when it
/// points into the site of the feed that carries it (the original publisher), 1 when it is
/// already in canonical form, else 0. The store keeps the best-ranked copy's link and title.
pub fn link_rank(link: Option<&str>, canonical: Option<&str>, site: Option<&str>) -> u8 {
    let Some(link) = nonempty(link) else { return 0 };
    let host = |u: &str| {
        Url::parse(u).ok().and_then(|u| {
            u.host_str()
                .map(|h| h.trim_end_matches('.').to_ascii_lowercase())
        })
    };
    let bare = |h: &str| h.strip_prefix("www.").unwrap_or(h).to_string();
    if let (Some(l), Some(s)) = (host(link), site.and_then(host)) {
        let (l, s) = (bare(&l), bare(&s));
        if !s.is_empty() && (l == s || l.ends_with(&format!(".{s}"))) {
            return 2;
        }
    }
    u8::from(canonical == Some(link))
}

/// Fingerprint of what a reader sees of an entry: a change means the entry was edited.
pub fn fingerprint(e: &Entry) -> [u8; 16] {
    let published = e
        .published
        .map(|p| p.timestamp().to_string())
        .unwrap_or_default();
    truncate16(&hash_parts(&[
        &e.title,
        &e.summary,
        &e.content,
        e.link.as_deref().unwrap_or(""),
        &published,
    ]))
}

/// Canonical form of a URL for cross-feed dedup: scheme-insensitive (http = https), host
/// lower-cased, default port, fragment and tracking parameters dropped, remaining parameters
/// sorted. `None` for text that is not an absolute URL.
pub fn canonical_url(link: &str) -> Option<String> {
    let mut url = Url::parse(link.trim()).ok()?;
    url.set_fragment(None);
    let scheme = url.scheme().to_string();
    if scheme != "http" && scheme != "https" {
        return fixed_point(url.to_string());
    }
    let host = url.host_str()?.trim_end_matches('.').to_ascii_lowercase();
    if host.is_empty() {
        return None;
    }
    let port = url.port().filter(|&p| p != 80 && p != 443);
    let mut params: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| !is_tracking_param(k))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    params.sort();
    let mut out = format!("https://{host}");
    if let Some(p) = port {
        out.push_str(&format!(":{p}"));
    }
    out.push_str(url.path());
    if !params.is_empty() {
        let q = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&params)
            .finish();
        out.push('?');
        out.push_str(&q);
    }
    // Trimming dots can turn a name into an address ("4.." → "4", which a URL parser reads
    // as 0.0.0.4) or into no valid host at all ("a..0.." → "a..0"; no canonical form then).
    fixed_point(out)
}

/// `s` re-parsed until its serialisation is stable, so that canonical forms are fixed points
/// (WHATWG parsing is not always idempotent: "file://s/e:" re-parses as "file:///e:").
/// `None` if it does not parse or does not settle.
fn fixed_point(s: String) -> Option<String> {
    let mut current = s;
    for _ in 0..4 {
        let next = Url::parse(&current).ok()?.to_string();
        if next == current {
            return Some(current);
        }
        current = next;
    }
    None
}

fn is_tracking_param(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.starts_with("utm_") || TRACKING_PARAMS.contains(&lower.as_str())
}

fn hash_parts(parts: &[&str]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    h.finalize().into()
}

fn truncate16(h: &[u8; 32]) -> [u8; 16] {
    let mut out = [0u8; 16];
    out.copy_from_slice(&h[..16]);
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(guid: Option<&str>, link: Option<&str>, title: &str) -> Entry {
        Entry {
            guid: guid.map(String::from),
            link: link.map(String::from),
            title: title.into(),
            summary: format!("summary of {title}"),
            ..Entry::default()
        }
    }

    #[test]
    fn canonical_urls() {
        let cases = [
            (
                "http://Example.COM/a?b=2&a=1#frag",
                "https://example.com/a?a=1&b=2",
            ),
            ("https://example.com:443/a", "https://example.com/a"),
            ("http://example.com:80/a", "https://example.com/a"),
            ("https://example.com:8443/a", "https://example.com:8443/a"),
            (
                "https://example.com/a?utm_source=x&utm_medium=rss&id=7&fbclid=abc&gclid=1&mc_cid=2&mc_eid=3",
                "https://example.com/a?id=7",
            ),
            ("https://example.com", "https://example.com/"),
            (
                "https://example.com/p?q=a%20b",
                "https://example.com/p?q=a+b",
            ),
            ("https://example.com./a", "https://example.com/a"),
        ];
        for (input, want) in cases {
            assert_eq!(canonical_url(input).as_deref(), Some(want), "{input}");
        }
        assert_eq!(canonical_url("/relative/path"), None);
        assert_eq!(canonical_url("not a url"), None);
        assert_eq!(
            canonical_url("http://news.example/story?utm_campaign=x"),
            canonical_url("https://NEWS.example/story#comments")
        );
    }

    #[test]
    fn identity_prefers_guid_then_link_then_hash() {
        let entries = [
            entry(Some("g1"), Some("http://x/1"), "one"),
            entry(None, Some("http://x/2"), "two"),
            entry(None, None, "three"),
        ];
        let ids = identify(&entries);
        assert_eq!(ids[0].1.key, "guid:g1");
        assert_eq!(ids[1].1.key, "link:http://x/2");
        assert!(ids[2].1.key.starts_with("hash:"));
        assert_eq!(ids[0].1.canonical_url.as_deref(), Some("https://x/1"));
        assert_eq!(ids[2].1.canonical_url, None);
    }

    #[test]
    fn repeated_entry_in_one_document_keeps_the_first() {
        let entries = [
            entry(Some("g"), Some("http://x/1"), "first"),
            entry(Some("g"), Some("http://x/1"), "first"),
            entry(Some("h"), None, "x"),
        ];
        let ids = identify(&entries);
        assert_eq!(ids.iter().map(|(i, _)| *i).collect::<Vec<_>>(), vec![0, 2]);
    }

    /// Issue 12 item 3: a site giving every entry the same guid lost all entries but one.
    #[test]
    fn one_guid_shared_by_several_entries_identifies_none_of_them() {
        let entries: Vec<Entry> = (0..50)
            .map(|i| {
                entry(
                    Some("same"),
                    Some(&format!("http://x/{i}")),
                    &format!("s {i}"),
                )
            })
            .chain([entry(Some("same"), None, "no link")])
            .chain([entry(Some("own"), Some("http://x/own"), "own guid")])
            .collect();
        let ids = identify(&entries);
        assert_eq!(ids.len(), 52, "every entry kept");
        assert_eq!(ids[0].1.key, "link:http://x/0");
        assert!(ids[50].1.key.starts_with("hash:"));
        assert_eq!(
            ids[51].1.key, "guid:own",
            "an unshared guid still identifies"
        );
        assert!(ids[51].1.link_key_hash.is_some());
        assert!(ids[0].1.link_key_hash.is_none());
    }

    #[test]
    fn shared_link_identifies_none_and_is_not_merged_across_feeds() {
        let entries: Vec<Entry> = (0..99)
            .map(|i| entry(None, Some("http://site/page"), &format!("story {i}")))
            .collect();
        let ids = identify(&entries);
        assert_eq!(
            ids.len(),
            99,
            "guid-less entries sharing one link are all kept"
        );
        assert!(ids.iter().all(|(_, id)| id.canonical_url.is_none()));
        let keys: HashSet<_> = ids.iter().map(|(_, id)| id.key_hash).collect();
        assert_eq!(keys.len(), 99);
    }

    #[test]
    fn fingerprint_changes_when_content_changes() {
        let a = entry(Some("g"), None, "title");
        let mut b = a.clone();
        assert_eq!(fingerprint(&a), fingerprint(&b));
        b.content = "edited".into();
        assert_ne!(fingerprint(&a), fingerprint(&b));
    }

    /// Found by fuzzing (canonical_url): trimming trailing dots turned the host "4.." into
    /// "4", which parses as the address 0.0.0.4, so canon(canon(x)) != canon(x).
    #[test]
    fn canonical_url_is_idempotent_for_numeric_host_with_trailing_dots() {
        for link in [
            "https:/4../?a=b",
            "http://0x7f.1../x",
            "http://EXAMPLE.com./a?utm_source=z&b=1#f",
        ] {
            let once = canonical_url(link);
            assert!(once.is_some(), "{link}");
            assert_eq!(once.as_deref().and_then(canonical_url), once, "{link}");
        }
        assert_eq!(
            canonical_url("https:/4../").as_deref(),
            Some("https://0.0.0.4/")
        );
        // Trimmed into an invalid host (a dotted name ending in a number): no canonical form.
        assert_eq!(canonical_url("https:/le....0....:/x"), None);
    }

    /// Found by fuzzing (canonical_url): the URL parser itself is not idempotent on some file
    /// URLs ("file://s/e://S" re-parses as "file:///e://S"), and non-HTTP links were returned
    /// as parsed once.
    #[test]
    fn canonical_url_is_idempotent_for_file_url_with_drive_letter_after_host() {
        let once = canonical_url("file:/\t/S//e:/\t/S");
        assert!(once.is_some());
        assert_eq!(once.as_deref().and_then(canonical_url), once);
    }
}
