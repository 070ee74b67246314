//! Deliver a written digest by e-mail (SMTP, HTML with a plain-text alternative) and/or
//! webhook (HTTP POST of the JSON digest).
//!
//! Why separate from writing: delivery is best-effort and slow; the digest file is always
//! written (and its run recorded) first, so a mail server outage loses nothing. Each channel
//! is retried with exponential backoff a bounded number of times and the outcome reported and
//! logged, never panicking the daemon. Secrets are never in the config file: the SMTP password
//! comes from an environment variable or a file named in the settings.

use std::path::PathBuf;
use std::time::Duration;

use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Body, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::{Digest, DigestError, DigestSettings, Format, Result, render};

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailSecurity {
    /// Plain connection upgraded with STARTTLS (required), usually port 587.
    StartTls,
    /// TLS from the first byte, usually port 465.
    Tls,
    /// No encryption. Only allowed to a loopback host (a local relay, or tests).
    Plain,
}

/// Where a secret is read from at send time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// An environment variable's name.
    Env(String),
    /// A file holding the secret (trailing newline ignored).
    File(PathBuf),
}

impl SecretSource {
    /// Read the secret now.
    pub fn read(&self) -> Result<String> {
        match self {
            SecretSource::Env(name) => std::env::var(name)
                .map_err(|_| DigestError::Email(format!("environment variable {name} is not set"))),
            SecretSource::File(path) => std::fs::read_to_string(path)
                .map(|s| s.trim_end_matches(['\r', '\n']).to_string())
                .map_err(|e| {
                    DigestError::Email(format!("cannot read password file {}: {e}", path.display()))
                }),
        }
    }
}

/// SMTP delivery settings (`[digest.smtp]`).
#[derive(Debug, Clone, PartialEq)]
pub struct EmailSettings {
    pub host: String,
    pub port: u16,
    pub security: EmailSecurity,
    /// `Name <address>` or `address`.
    pub from: String,
    pub to: Vec<String>,
    pub username: Option<String>,
    pub password: Option<SecretSource>,
    /// Per connection/command.
    pub timeout: Duration,
}

/// Webhook settings (`[digest.webhook]`).
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookSettings {
    pub url: url::Url,
    pub timeout: Duration,
}

/// Retries of a failed delivery: `attempts` in all, waiting `base_delay`, then twice that, …
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub base_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 3,
            base_delay: Duration::from_secs(1),
        }
    }
}

/// How one channel's delivery went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryReport {
    /// `email` or `webhook`.
    pub channel: &'static str,
    pub attempts: u32,
    /// `Err(reason of the last attempt)` when every attempt failed.
    pub result: std::result::Result<(), String>,
}

/// Deliver `digest` on every configured channel (e-mail, then webhook). Call after the files
/// are written. Never fails as a whole: read the reports.
pub async fn deliver(digest: &Digest, settings: &DigestSettings) -> Vec<DeliveryReport> {
    let mut reports = Vec::new();
    if let Some(email) = &settings.email {
        reports.push(retry("email", settings.retry, || send_email(digest, email)).await);
    }
    if let Some(hook) = &settings.webhook {
        reports.push(retry("webhook", settings.retry, || post_webhook(digest, hook)).await);
    }
    reports
}

async fn retry<F, Fut>(channel: &'static str, policy: RetryPolicy, mut f: F) -> DeliveryReport
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let attempts = policy.attempts.max(1);
    let mut last = String::new();
    for attempt in 1..=attempts {
        match f().await {
            Ok(()) => {
                tracing::info!(channel, attempt, "digest delivered");
                return DeliveryReport {
                    channel,
                    attempts: attempt,
                    result: Ok(()),
                };
            }
            Err(e) => {
                last = e.to_string();
                if attempt < attempts {
                    let delay = policy
                        .base_delay
                        .saturating_mul(2u32.saturating_pow(attempt - 1));
                    tracing::warn!(channel, attempt, error = %last, ?delay, "digest delivery failed; retrying");
                    tokio::time::sleep(delay).await;
                } else {
                    tracing::error!(channel, attempt, error = %last, "digest delivery failed; giving up");
                }
            }
        }
    }
    DeliveryReport {
        channel,
        attempts,
        result: Err(last),
    }
}

/// Subject line: `newswatch digest 2015-11-09: 3 new matches`.
pub fn subject(digest: &Digest) -> String {
    let first_line = render(digest, Format::Text);
    let day = first_line
        .lines()
        .next()
        .unwrap_or("newswatch digest")
        .to_string();
    match digest.total {
        0 => format!("{day}: no new matches"),
        1 => format!("{day}: 1 new match"),
        n => format!("{day}: {n} new matches"),
    }
}

fn is_loopback(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Send the HTML digest with its plain-text alternative. One attempt.
pub async fn send_email(digest: &Digest, s: &EmailSettings) -> Result<()> {
    send_mail(
        s,
        &subject(digest),
        render(digest, Format::Text),
        Some(render(digest, Format::Html)),
        None,
    )
    .await
}

/// Send one message through `s` (the digest, or an alert): plain text, with an HTML
/// alternative when given, and a fixed Message-ID when given (receivers can drop repeats).
/// One attempt.
pub async fn send_mail(
    s: &EmailSettings,
    subject: &str,
    text: String,
    html: Option<String>,
    message_id: Option<String>,
) -> Result<()> {
    let err = |what: &str, e: &dyn std::fmt::Display| DigestError::Email(format!("{what}: {e}"));
    if s.security == EmailSecurity::Plain && !is_loopback(&s.host) {
        return Err(DigestError::Email(format!(
            "refusing unencrypted SMTP to {} (plain is for loopback relays only; use starttls or tls)",
            s.host
        )));
    }
    let from: Mailbox = s.from.parse().map_err(|e| err("bad from address", &e))?;
    let mut builder = Message::builder().from(from).subject(subject);
    if message_id.is_some() {
        builder = builder.message_id(message_id);
    }
    if s.to.is_empty() {
        return Err(DigestError::Email("no recipients".into()));
    }
    for to in &s.to {
        let mb: Mailbox = to.parse().map_err(|e| err("bad to address", &e))?;
        builder = builder.to(mb);
    }
    // Quoted-printable keeps long lines and non-ASCII text intact through any relay.
    let body = |text: String| {
        Body::new_with_encoding(text, ContentTransferEncoding::QuotedPrintable)
            .map_err(|_| DigestError::Email("cannot encode body".into()))
    };
    let plain = SinglePart::builder()
        .header(ContentType::TEXT_PLAIN)
        .body(body(text)?);
    let message = match html {
        Some(html) => builder.multipart(
            MultiPart::alternative().singlepart(plain).singlepart(
                SinglePart::builder()
                    .header(ContentType::TEXT_HTML)
                    .body(body(html)?),
            ),
        ),
        None => builder.singlepart(plain),
    }
    .map_err(|e| err("cannot build message", &e))?;
    let mut transport = match s.security {
        EmailSecurity::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&s.host)
            .map_err(|e| err("smtp", &e))?,
        EmailSecurity::Tls => {
            AsyncSmtpTransport::<Tokio1Executor>::relay(&s.host).map_err(|e| err("smtp", &e))?
        }
        EmailSecurity::Plain => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&s.host),
    }
    .port(s.port)
    .timeout(Some(s.timeout));
    if let Some(user) = &s.username {
        let password = match &s.password {
            Some(src) => src.read()?,
            None => String::new(),
        };
        transport = transport.credentials(Credentials::new(user.clone(), password));
    }
    transport
        .build()
        .send(message)
        .await
        .map_err(|e| err(&format!("{}:{}", s.host, s.port), &e))?;
    Ok(())
}

/// POST the JSON digest. One attempt; any non-2xx status is a failure.
pub async fn post_webhook(digest: &Digest, s: &WebhookSettings) -> Result<()> {
    let client = reqwest::Client::builder()
        .timeout(s.timeout)
        .build()
        .map_err(|e| DigestError::Webhook(e.to_string()))?;
    let resp = client
        .post(s.url.clone())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(render(digest, Format::Json))
        .send()
        .await
        .map_err(|e| DigestError::Webhook(format!("{}: {e}", s.url)))?;
    let status = resp.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(DigestError::Webhook(format!(
            "{}: HTTP {}",
            s.url,
            status.as_u16()
        )))
    }
}
