//! Render a [`Digest`] as Markdown, self-contained HTML, plain text or JSON.
//!
//! Why a separate file: all feed text is hostile until escaped, and each format escapes
//! differently. Every piece of feed text goes through exactly one escaper here: `md_text`,
//! `html_escape::encode_safe` / `encode_double_quoted_attribute`, or `sanitize` (text). Links
//! become links only when their scheme is http or https; anything else is shown as text.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::highlight::pieces;
use super::{Digest, Entry, Format};
use crate::text::{sanitize, web_link};

/// Render `digest` in `format`. Output ends with a newline.
pub fn render(digest: &Digest, format: Format) -> String {
    match format {
        Format::Md => markdown(digest),
        Format::Html => html(digest),
        Format::Text => text(digest),
        Format::Json => {
            let mut s = serde_json::to_string_pretty(digest).unwrap_or_else(|_| "{}".into());
            s.push('\n');
            s
        }
    }
}

/// `2015-11-09 08:30 GMT`
fn when(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z").to_string()
}

/// The calendar date the digest is "for": the last instant of its period, locally.
fn day(d: &Digest) -> String {
    let last = d.period_end - chrono::Duration::milliseconds(1);
    last.max(d.period_start)
        .with_timezone(&d.tz)
        .format("%Y-%m-%d")
        .to_string()
}

fn title(d: &Digest) -> String {
    match &d.rule {
        Some(r) => format!("newswatch digest {} — rule {}", day(d), sanitize(r)),
        None if !d.only.is_empty() => {
            format!(
                "newswatch digest {} — {}",
                day(d),
                sanitize(&d.only.join(", "))
            )
        }
        None => format!("newswatch digest {}", day(d)),
    }
}

/// A section's heading count: every entry of the rule, shown or not.
fn section_count(sec: &super::Section) -> usize {
    sec.entries.len() + sec.more
}

/// "and 12 more — newswatch query --rule nca" for a capped section (rule name quoted for a
/// shell when it needs to be), or `None`.
fn more_line(sec: &super::Section) -> Option<String> {
    if sec.more == 0 {
        return None;
    }
    let r = sanitize(&sec.rule);
    let arg = if !r.is_empty()
        && r.chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        r
    } else {
        format!("'{}'", r.replace('\'', "'\\''"))
    };
    Some(format!(
        "and {} more — newswatch query --rule {arg}",
        sec.more
    ))
}

fn period_line(d: &Digest) -> String {
    format!(
        "{} – {}",
        when(d.period_start, d.tz),
        when(d.period_end, d.tz)
    )
}

fn quiet_line(d: &Digest) -> String {
    format!(
        "No new matches between {} and {}.",
        when(d.period_start, d.tz),
        when(d.period_end, d.tz)
    )
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// "security (also in: uknews)" — the first feed, then the others.
fn sources(e: &Entry) -> String {
    match e.feeds.split_first() {
        None => "unknown feed".into(),
        Some((first, [])) => sanitize(first),
        Some((first, rest)) => format!(
            "{} (also in: {})",
            sanitize(first),
            rest.iter()
                .map(|f| sanitize(f))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn dated(e: &Entry, tz: Tz) -> String {
    match e.published {
        Some(p) => format!("published {}", when(p, tz)),
        None => format!("first seen {}", when(e.first_seen, tz)),
    }
}

/// The facts line shared by md and text (already terminal/markup-neutral except for names).
fn facts(e: &Entry, tz: Tz) -> Vec<String> {
    let mut f = vec![sources(e), dated(e, tz), format!("id {}", e.id)];
    if e.status != "new" {
        f.push(e.status.clone());
    }
    if !e.also_matched.is_empty() {
        f.push(format!(
            "also matched: {}",
            e.also_matched
                .iter()
                .map(|r| sanitize(r))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    f
}

fn counts_line(d: &Digest, sep: &str) -> String {
    d.counts
        .iter()
        .map(|c| format!("{} {}", sanitize(&c.rule), c.count))
        .collect::<Vec<_>>()
        .join(sep)
}

fn problem_line(p: &super::FeedProblem, tz: Tz) -> (String, String) {
    let since = match p.last_success {
        Some(t) => format!("last success {}", when(t, tz)),
        None => "never succeeded".into(),
    };
    (
        format!(
            "{}, {}",
            plural(
                p.consecutive_failures as usize,
                "failure in a row",
                "failures in a row"
            ),
            since
        ),
        p.last_error
            .clone()
            .unwrap_or_else(|| "unknown error".into()),
    )
}

/// Entries of `sec` shown in full under an earlier section.
fn cross_refs(sec: &super::Section) -> Vec<&Entry> {
    sec.entries
        .iter()
        .filter(|e| e.listed_under != sec.rule)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Markdown

/// Escape feed text for Markdown: no emphasis, links, HTML or headings can come out of it.
fn md_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in sanitize(s).chars() {
        if matches!(
            c,
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '#' | '~' | '&'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A URL safe inside `(...)`: re-serialised (percent-encoded), parentheses encoded too.
fn md_url(u: &url::Url) -> String {
    u.as_str().replace('(', "%28").replace(')', "%29")
}

fn md_snippet(e: &Entry) -> String {
    pieces(&e.snippet, &e.highlights)
        .into_iter()
        .map(|(p, emph)| {
            if emph {
                format!("**{}**", md_text(p))
            } else {
                md_text(p)
            }
        })
        .collect()
}

fn markdown(d: &Digest) -> String {
    let mut s = format!("# {}\n\n", md_text(&title(d)));
    s.push_str(&format!("Period: {} ({})  \n", period_line(d), d.timezone));
    s.push_str(&format!("Generated: {}\n\n", when(d.generated_at, d.tz)));
    if d.total == 0 {
        s.push_str(&format!("**{}**\n", quiet_line(d)));
    } else {
        s.push_str(&format!(
            "**{}** — {}\n",
            plural(d.total, "new match", "new matches"),
            md_text(&counts_line(d, " · "))
        ));
    }
    for sec in &d.sections {
        s.push_str(&format!(
            "\n## {} ({})\n",
            md_text(&sec.rule),
            section_count(sec)
        ));
        for e in sec.entries.iter().filter(|e| e.listed_under == sec.rule) {
            let heading = match web_link(e.link.as_deref()) {
                Some(u) => format!("[{}]({})", md_text(&e.title), md_url(&u)),
                None => md_text(&e.title),
            };
            s.push_str(&format!("\n### {heading}\n\n"));
            s.push_str(&md_text(&facts(e, d.tz).join(" · ")));
            s.push('\n');
            if !e.also_reported.is_empty() {
                let others: Vec<String> = e
                    .also_reported
                    .iter()
                    .map(|o| match web_link(o.link.as_deref()) {
                        Some(u) => format!(
                            "{} ([{}]({}))",
                            md_text(&o.feed),
                            md_text(&o.title),
                            md_url(&u)
                        ),
                        None => format!("{} ({})", md_text(&o.feed), md_text(&o.title)),
                    })
                    .collect();
                s.push_str(&format!("\nalso reported by: {}\n", others.join(" · ")));
            }
            if let (Some(link), None) = (&e.link, web_link(e.link.as_deref())) {
                s.push_str(&format!("\nLink (not opened): {}\n", md_text(link)));
            }
            if !e.snippet.trim().is_empty() {
                s.push_str(&format!("\n> {}\n", md_snippet(e)));
            }
        }
        if let Some(m) = more_line(sec) {
            s.push_str(&format!("\n_{}_\n", md_text(&m)));
        }
        let refs = cross_refs(sec);
        if !refs.is_empty() {
            s.push_str("\nShown above under another rule:\n\n");
            for e in refs {
                let t = match web_link(e.link.as_deref()) {
                    Some(u) => format!("[{}]({})", md_text(&e.title), md_url(&u)),
                    None => md_text(&e.title),
                };
                s.push_str(&format!(
                    "- {t} — under {} · id {}\n",
                    md_text(&e.listed_under),
                    e.id
                ));
            }
        }
    }
    if !d.feed_problems.is_empty() {
        s.push_str("\n## Feed problems\n\n");
        for p in &d.feed_problems {
            let (what, err) = problem_line(p, d.tz);
            s.push_str(&format!(
                "- **{}** ({}): {} — {}\n",
                md_text(&p.feed),
                md_text(&p.url),
                md_text(&what),
                md_text(&err)
            ));
        }
    }
    s
}

// ---------------------------------------------------------------------------------------------
// Plain text

fn text(d: &Digest) -> String {
    let t = title(d);
    let mut s = format!("{t}\n{}\n\n", "=".repeat(t.chars().count()));
    s.push_str(&format!("Period: {} ({})\n", period_line(d), d.timezone));
    s.push_str(&format!("Generated: {}\n\n", when(d.generated_at, d.tz)));
    if d.total == 0 {
        s.push_str(&quiet_line(d));
        s.push('\n');
    } else {
        s.push_str(&format!(
            "{}: {}\n",
            plural(d.total, "new match", "new matches"),
            counts_line(d, ", ")
        ));
    }
    for sec in &d.sections {
        let h = format!("{} ({})", sanitize(&sec.rule), section_count(sec));
        s.push_str(&format!("\n{h}\n{}\n", "-".repeat(h.chars().count())));
        for e in sec.entries.iter().filter(|e| e.listed_under == sec.rule) {
            s.push_str(&format!("\n* {}\n", sanitize(&e.title)));
            if let Some(link) = &e.link {
                s.push_str(&format!("  {}\n", sanitize(link)));
            }
            s.push_str(&format!("  {}\n", facts(e, d.tz).join(" · ")));
            for o in &e.also_reported {
                s.push_str(&format!(
                    "  also reported by {}: {}{}\n",
                    sanitize(&o.feed),
                    sanitize(&o.title),
                    o.link
                        .as_deref()
                        .map(|l| format!(" <{}>", sanitize(l)))
                        .unwrap_or_default()
                ));
            }
            if !e.snippet.trim().is_empty() {
                let snip: String = pieces(&e.snippet, &e.highlights)
                    .into_iter()
                    .map(|(p, emph)| {
                        if emph {
                            format!("*{}*", sanitize(p))
                        } else {
                            sanitize(p)
                        }
                    })
                    .collect();
                s.push_str(&format!("  {snip}\n"));
            }
        }
        if let Some(m) = more_line(sec) {
            s.push_str(&format!("\n{m}\n"));
        }
        let refs = cross_refs(sec);
        if !refs.is_empty() {
            s.push_str("\nShown above under another rule:\n");
            for e in refs {
                s.push_str(&format!(
                    "- {} — under {} · id {}\n",
                    sanitize(&e.title),
                    sanitize(&e.listed_under),
                    e.id
                ));
            }
        }
    }
    if !d.feed_problems.is_empty() {
        s.push_str("\nFeed problems\n-------------\n");
        for p in &d.feed_problems {
            let (what, err) = problem_line(p, d.tz);
            s.push_str(&format!(
                "- {} ({}): {} — {}\n",
                sanitize(&p.feed),
                sanitize(&p.url),
                what,
                sanitize(&err)
            ));
        }
    }
    s
}

// ---------------------------------------------------------------------------------------------
// HTML

fn esc(s: &str) -> String {
    // encode_safe also escapes quotes and '/': text stays text even if misplaced in an attribute.
    html_escape::encode_safe(&sanitize(s)).into_owned()
}

fn attr(s: &str) -> String {
    html_escape::encode_double_quoted_attribute(s).into_owned()
}

const BODY: &str = "margin:0;padding:0;background:#f4f4f1;color:#1d1d1b;font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;font-size:16px;line-height:1.5";
const PAGE: &str = "max-width:720px;margin:0 auto;padding:24px 16px;background:#ffffff";
const H1: &str = "font-size:24px;margin:0 0 8px 0";
const META: &str = "color:#5f5f5a;font-size:14px;margin:0 0 4px 0";
const SUMMARY: &str =
    "margin:16px 0;padding:12px 16px;background:#eef3f8;border-left:4px solid #2f6690";
const H2: &str =
    "font-size:20px;margin:32px 0 8px 0;padding-bottom:4px;border-bottom:1px solid #d8d8d2";
const ITEM: &str = "margin:16px 0 20px 0";
const H3: &str = "font-size:17px;margin:0 0 4px 0";
const A: &str = "color:#1a4f7a;text-decoration:underline";
const SNIPPET: &str =
    "margin:6px 0 0 0;padding-left:12px;border-left:3px solid #d8d8d2;color:#33332f";
const MARK: &str = "background:#fff1a8;color:inherit;padding:0 1px";
const REF: &str = "margin:2px 0 2px 12px;font-size:15px";
const PROBLEM: &str = "margin:4px 0;color:#7a1f1f";

fn html(d: &Digest) -> String {
    let t = esc(&title(d));
    let mut s = String::new();
    s.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    s.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    s.push_str(&format!("<title>{t}</title>\n</head>\n"));
    s.push_str(&format!(
        "<body style=\"{BODY}\">\n<div style=\"{PAGE}\">\n"
    ));
    s.push_str(&format!("<h1 style=\"{H1}\">{t}</h1>\n"));
    s.push_str(&format!(
        "<p style=\"{META}\">Period: {} ({})</p>\n",
        esc(&period_line(d)),
        esc(&d.timezone)
    ));
    s.push_str(&format!(
        "<p style=\"{META}\">Generated: {}</p>\n",
        esc(&when(d.generated_at, d.tz))
    ));
    if d.total == 0 {
        s.push_str(&format!(
            "<p style=\"{SUMMARY}\"><strong>{}</strong></p>\n",
            esc(&quiet_line(d))
        ));
    } else {
        s.push_str(&format!(
            "<p style=\"{SUMMARY}\"><strong>{}</strong> — {}</p>\n",
            esc(&plural(d.total, "new match", "new matches")),
            esc(&counts_line(d, " · "))
        ));
    }
    for sec in &d.sections {
        s.push_str(&format!(
            "<h2 style=\"{H2}\">{} ({})</h2>\n",
            esc(&sec.rule),
            section_count(sec)
        ));
        for e in sec.entries.iter().filter(|e| e.listed_under == sec.rule) {
            s.push_str(&format!("<div style=\"{ITEM}\">\n"));
            match web_link(e.link.as_deref()) {
                Some(u) => s.push_str(&format!(
                    "<h3 style=\"{H3}\"><a style=\"{A}\" href=\"{}\">{}</a></h3>\n",
                    attr(u.as_str()),
                    esc(&e.title)
                )),
                None => {
                    s.push_str(&format!("<h3 style=\"{H3}\">{}</h3>\n", esc(&e.title)));
                    if let Some(link) = &e.link {
                        s.push_str(&format!(
                            "<p style=\"{META}\">Link (not opened): {}</p>\n",
                            esc(link)
                        ));
                    }
                }
            }
            s.push_str(&format!(
                "<p style=\"{META}\">{}</p>\n",
                esc(&facts(e, d.tz).join(" · "))
            ));
            if !e.also_reported.is_empty() {
                let others: Vec<String> = e
                    .also_reported
                    .iter()
                    .map(|o| match web_link(o.link.as_deref()) {
                        Some(u) => format!(
                            "{} (<a style=\"{A}\" href=\"{}\">{}</a>)",
                            esc(&o.feed),
                            attr(u.as_str()),
                            esc(&o.title)
                        ),
                        None => format!("{} ({})", esc(&o.feed), esc(&o.title)),
                    })
                    .collect();
                s.push_str(&format!(
                    "<p style=\"{META}\">also reported by: {}</p>\n",
                    others.join(" · ")
                ));
            }
            if !e.snippet.trim().is_empty() {
                let snip: String = pieces(&e.snippet, &e.highlights)
                    .into_iter()
                    .map(|(p, emph)| {
                        if emph {
                            format!("<mark style=\"{MARK}\">{}</mark>", esc(p))
                        } else {
                            esc(p)
                        }
                    })
                    .collect();
                s.push_str(&format!("<p style=\"{SNIPPET}\">{snip}</p>\n"));
            }
            s.push_str("</div>\n");
        }
        if let Some(m) = more_line(sec) {
            s.push_str(&format!("<p style=\"{META}\">{}</p>\n", esc(&m)));
        }
        let refs = cross_refs(sec);
        if !refs.is_empty() {
            s.push_str(&format!(
                "<p style=\"{META}\">Shown above under another rule:</p>\n"
            ));
            for e in refs {
                let t = match web_link(e.link.as_deref()) {
                    Some(u) => format!(
                        "<a style=\"{A}\" href=\"{}\">{}</a>",
                        attr(u.as_str()),
                        esc(&e.title)
                    ),
                    None => esc(&e.title),
                };
                s.push_str(&format!(
                    "<p style=\"{REF}\">{t} — under {} · id {}</p>\n",
                    esc(&e.listed_under),
                    e.id
                ));
            }
        }
    }
    if !d.feed_problems.is_empty() {
        s.push_str(&format!("<h2 style=\"{H2}\">Feed problems</h2>\n"));
        for p in &d.feed_problems {
            let (what, err) = problem_line(p, d.tz);
            s.push_str(&format!(
                "<p style=\"{PROBLEM}\"><strong>{}</strong> ({}): {} — {}</p>\n",
                esc(&p.feed),
                esc(&p.url),
                esc(&what),
                esc(&err)
            ));
        }
    }
    s.push_str("</div>\n</body>\n</html>\n");
    s
}
