//! Alerts as messages: the `[[alerts]]` settings and the documents each destination receives.
//!
//! Feed text is hostile, and every destination reads text differently: JSON bodies
//! (webhook, command) carry the fields as `query --format json` does and let the JSON encoder
//! escape; ntfy gets its JSON publishing shape with plain text (markdown off); Slack gets
//! `mrkdwn` with `&`, `<`, `>` escaped as Slack documents, formatting characters and
//! `@channel`/`@here`/`@everyone` neutralised with a zero-width space; Matrix-style incoming
//! webhooks (hookshot) get plain text with markdown escaped plus HTML-escaped `html`; e-mail
//! gets one-line headers and plain text. Titles lose control characters, newlines and bidi
//! controls everywhere ([`crate::text::sanitize`]); only http(s) links are ever included.

use std::time::Duration;

use serde::Serialize;

use crate::outputs::digest::{EmailSettings, SecretSource};
use crate::store::MatchRow;
use crate::text::{sanitize, web_link};

/// Default per-attempt timeout of a destination.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default age after which an unsent alert is dropped (with a log line) instead of retried.
pub const DEFAULT_GIVE_UP_AFTER: Duration = Duration::from_secs(2 * 24 * 3600);
/// Stories listed by name in one text message; the rest are counted ("and N more").
pub const MAX_LISTED: usize = 10;
/// ntfy's default priority (1 = min … 5 = max).
pub const DEFAULT_NTFY_PRIORITY: u8 = 3;

/// Where one alert goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Destination {
    /// POST of the JSON document; `secret` signs it (`X-Newswatch-Signature: sha256=…`).
    Webhook {
        url: url::Url,
        secret: Option<SecretSource>,
    },
    /// ntfy topic URL (`https://ntfy.sh/topic`), published as JSON to the server root.
    Ntfy { url: url::Url, priority: u8 },
    /// Slack incoming webhook.
    Slack { url: url::Url },
    /// Matrix-style incoming webhook (hookshot's generic webhooks: `text` + `html`).
    Matrix { url: url::Url },
    /// E-mail through the digest's SMTP settings, to these recipients.
    Email { smtp: EmailSettings },
    /// A program run without a shell, the JSON document on its stdin.
    Command { argv: Vec<String> },
}

impl Destination {
    /// Short name for logs and listings.
    pub fn kind(&self) -> &'static str {
        match self {
            Destination::Webhook { .. } => "webhook",
            Destination::Ntfy { .. } => "ntfy",
            Destination::Slack { .. } => "slack",
            Destination::Matrix { .. } => "matrix",
            Destination::Email { .. } => "email",
            Destination::Command { .. } => "command",
        }
    }
}

/// `HH:MM-HH:MM` in the config's time zone; the end is exclusive. May wrap midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietHours {
    pub start: chrono::NaiveTime,
    pub end: chrono::NaiveTime,
}

impl QuietHours {
    /// Parse `"22:00-07:00"`.
    pub fn parse(s: &str) -> Option<QuietHours> {
        let (a, b) = s.split_once('-')?;
        let t = |x: &str| chrono::NaiveTime::parse_from_str(x.trim(), "%H:%M").ok();
        let (start, end) = (t(a)?, t(b)?);
        (start != end).then_some(QuietHours { start, end })
    }
}

/// One `[[alerts]]` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertSettings {
    pub name: String,
    /// Rules covered; `None`: all.
    pub rules: Option<Vec<String>>,
    pub destination: Destination,
    /// Outlet counts at which a story is alerted again, ascending.
    pub update_at: Vec<u32>,
    /// At most one message per this interval; alerts inside it are batched.
    pub min_interval: Option<Duration>,
    pub quiet_hours: Option<QuietHours>,
    /// At most this many messages in any hour; the rest wait and go as one batch.
    pub max_per_hour: Option<u32>,
    pub timeout: Duration,
    pub give_up_after: Duration,
}

impl AlertSettings {
    /// What the store needs at commit time.
    pub fn trigger(&self) -> crate::store::alerts::AlertTrigger {
        crate::store::alerts::AlertTrigger {
            name: self.name.clone(),
            rules: self.rules.clone(),
            update_at: self.update_at.clone(),
        }
    }
}

/// The store's plan for a list of alerts.
pub fn plan(alerts: &[AlertSettings]) -> crate::store::alerts::AlertPlan {
    crate::store::alerts::AlertPlan {
        triggers: alerts.iter().map(AlertSettings::trigger).collect(),
    }
}

/// One story of a message: the stored item (as `query --format json` shows it) and why it is
/// alerted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertStory {
    pub idempotency_key: String,
    /// `new`, or `outlets-N` when the story reached N outlets.
    pub kind: String,
    pub outlets: u32,
    #[serde(flatten)]
    pub item: MatchRow,
}

/// What one message says.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertMessage {
    pub idempotency_key: String,
    pub alert: String,
    /// `newswatch alerts test`: a sample, not a real story.
    pub test: bool,
    /// Why it was held before sending (`quiet hours`, `min_interval`, `max_per_hour`).
    pub held: Option<String>,
    pub stories: Vec<AlertStory>,
    /// Stories of the message that could no longer be read (deleted since).
    pub missing: usize,
}

/// `outlets-3` → `Some(3)`.
fn outlets_kind(kind: &str) -> Option<u32> {
    kind.strip_prefix("outlets-")?.parse().ok()
}

/// One line about a story, for any text format (raw: the caller escapes).
fn story_line(s: &AlertStory) -> String {
    let title = sanitize(&s.item.title);
    match outlets_kind(&s.kind) {
        Some(n) => format!("{title} (now in {n} outlets)"),
        None => title,
    }
}

impl AlertMessage {
    /// The JSON document for webhooks and commands.
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|_| "{}".into())
    }

    /// A one-line title (already sanitised; escape for the format).
    pub fn title(&self) -> String {
        let prefix = if self.test { "[test] " } else { "" };
        match self.stories.as_slice() {
            [one] => format!("{prefix}{}", story_line(one)),
            many => format!(
                "{prefix}newswatch {}: {} stories",
                sanitize(&self.alert),
                many.len() + self.missing
            ),
        }
    }

    /// The first http(s) link of the message, if any.
    pub fn click(&self) -> Option<String> {
        self.stories
            .iter()
            .find_map(|s| web_link(s.item.link.as_deref()))
            .map(|u| u.to_string())
    }

    fn more(&self) -> usize {
        self.stories.len().saturating_sub(MAX_LISTED) + self.missing
    }

    fn held_note(&self) -> Option<String> {
        self.held
            .as_ref()
            .map(|h| format!("(held: {})", sanitize(h)))
    }

    /// Plain text (ntfy, e-mail): one story per line with its link, "and N more" at the end.
    pub fn text(&self) -> String {
        let mut lines = Vec::new();
        for s in self.stories.iter().take(MAX_LISTED) {
            let mut line = format!("- {}", story_line(s));
            if !s.item.feeds.is_empty() {
                line.push_str(&format!(" [{}]", sanitize(&s.item.feeds.join(", "))));
            }
            lines.push(line);
            if let Some(u) = web_link(s.item.link.as_deref()) {
                lines.push(format!("  {u}"));
            }
        }
        if self.more() > 0 {
            lines.push(format!("and {} more", self.more()));
        }
        if let Some(h) = self.held_note() {
            lines.push(h);
        }
        lines.push(format!("key: {}", sanitize(&self.idempotency_key)));
        lines.join("\n")
    }

    /// ntfy's JSON publishing document (`topic`, `title`, `message`, `click`, `priority`).
    pub fn ntfy(&self, topic: &str, priority: u8) -> String {
        let mut doc = serde_json::json!({
            "topic": topic,
            "title": self.title(),
            "message": self.text(),
            "priority": priority.clamp(1, 5),
            "markdown": false,
        });
        if let Some(c) = self.click() {
            doc["click"] = serde_json::Value::String(c);
        }
        doc.to_string()
    }

    /// Slack incoming webhook document: `{"text": mrkdwn}` with feed text escaped.
    pub fn slack(&self) -> String {
        let mut lines = Vec::new();
        if self.stories.len() != 1 {
            lines.push(format!("*{}*", slack_escape(&self.title())));
        }
        for s in self.stories.iter().take(MAX_LISTED) {
            let line = slack_escape(&story_line(s));
            match web_link(s.item.link.as_deref()) {
                // Inside <url|text> the text ends at '>', which slack_escape already escaped.
                Some(u) => lines.push(format!("• <{}|{line}>", slack_escape(u.as_str()))),
                None => lines.push(format!("• {line}")),
            }
        }
        if self.more() > 0 {
            lines.push(format!("and {} more", self.more()));
        }
        if let Some(h) = self.held_note() {
            lines.push(slack_escape(&h));
        }
        serde_json::json!({ "text": lines.join("\n") }).to_string()
    }

    /// Matrix-style incoming webhook document (hookshot): `text` (markdown-escaped plain
    /// text), `html` (HTML-escaped) and `username`.
    pub fn matrix(&self) -> String {
        let mut text = Vec::new();
        let mut html = Vec::new();
        if self.stories.len() != 1 {
            text.push(markdown_escape(&self.title()));
            html.push(format!(
                "<b>{}</b>",
                html_escape::encode_text(&self.title())
            ));
        }
        for s in self.stories.iter().take(MAX_LISTED) {
            let line = story_line(s);
            match web_link(s.item.link.as_deref()) {
                Some(u) => {
                    text.push(format!("- {} {}", markdown_escape(&line), u));
                    html.push(format!(
                        "• <a href=\"{}\">{}</a>",
                        html_escape::encode_double_quoted_attribute(u.as_str()),
                        html_escape::encode_text(&line)
                    ));
                }
                None => {
                    text.push(format!("- {}", markdown_escape(&line)));
                    html.push(format!("• {}", html_escape::encode_text(&line)));
                }
            }
        }
        if self.more() > 0 {
            text.push(format!("and {} more", self.more()));
            html.push(format!("and {} more", self.more()));
        }
        serde_json::json!({
            "text": text.join("\n"),
            "html": html.join("<br>"),
            "username": "newswatch",
        })
        .to_string()
    }

    /// E-mail subject: one line, at most 200 characters.
    pub fn subject(&self) -> String {
        let t = self.title();
        let cut: String = t.chars().take(200).collect();
        format!("newswatch alert: {cut}")
    }
}

/// Escape for Slack `mrkdwn`: `&`, `<`, `>` as Slack documents; `*`, `_`, `~` and `` ` ``
/// and the mentions `@channel`, `@here`, `@everyone` broken with a zero-width space so feed
/// text can neither format nor notify. (`<!channel>` cannot appear: `<` is escaped.)
pub fn slack_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '*' | '_' | '~' | '`' => {
                out.push(c);
                out.push('\u{200B}');
            }
            '@' => {
                out.push('@');
                out.push('\u{200B}');
            }
            _ => out.push(c),
        }
    }
    out
}

/// Escape CommonMark punctuation with backslashes, so text shows as written.
pub fn markdown_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(
            c,
            '\\' | '`'
                | '*'
                | '_'
                | '{'
                | '}'
                | '['
                | ']'
                | '('
                | ')'
                | '#'
                | '+'
                | '-'
                | '.'
                | '!'
                | '|'
                | '<'
                | '>'
                | '~'
                | '@'
                | '&'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn story(title: &str) -> AlertStory {
        AlertStory {
            idempotency_key: "story-1:a:new".into(),
            kind: "new".into(),
            outlets: 1,
            item: MatchRow {
                id: 1,
                title: title.into(),
                link: Some("https://example.org/a?x=1&y=2".into()),
                published: None,
                first_seen: "2026-01-01T00:00:00.000Z".into(),
                feeds: vec!["wire".into()],
                rules: vec!["nca".into()],
                terms: vec![],
                snippet: String::new(),
                status: "new".into(),
                story: 0,
                story_size: 1,
                story_updated: String::new(),
                summary: String::new(),
                content: String::new(),
            },
        }
    }

    fn message(stories: Vec<AlertStory>) -> AlertMessage {
        AlertMessage {
            idempotency_key: "story-1:a:new".into(),
            alert: "a".into(),
            test: false,
            held: None,
            stories,
            missing: 0,
        }
    }

    #[test]
    fn slack_text_cannot_mention_or_format() {
        let m = message(vec![story("*Raid* <!channel> @here & @channel\nx")]);
        let v: serde_json::Value = serde_json::from_str(&m.slack()).unwrap();
        let text = v["text"].as_str().unwrap();
        assert!(!text.contains("<!channel>"), "{text}");
        assert!(
            !text.contains("@here") && !text.contains("@channel"),
            "{text}"
        );
        assert!(
            text.contains("&lt;!channel&gt;") && text.contains("&amp;"),
            "{text}"
        );
        assert!(!text.contains("*Raid*"), "{text}");
        assert!(!text.contains('\n') || text.lines().count() == 1, "{text}");
    }

    #[test]
    fn more_than_listed_ends_with_and_n_more() {
        let m = message((0..13).map(|i| story(&format!("story {i}"))).collect());
        assert!(m.text().contains("and 3 more"), "{}", m.text());
        assert_eq!(m.title(), "newswatch a: 13 stories");
    }

    #[test]
    fn quiet_hours_parse() {
        let q = QuietHours::parse("22:00-07:00").unwrap();
        assert_eq!(q.start.to_string(), "22:00:00");
        assert!(QuietHours::parse("22:00").is_none());
        assert!(QuietHours::parse("07:00-07:00").is_none());
    }
}
