//! Alert delivery: turn the outbox ([`crate::store::alerts`]) into messages and send them.
//!
//! A pass ([`deliver_pending`]) runs after a poll (`newswatch poll`, before it exits) and in the
//! daemon's background sender task after each wave of polls and whenever a held message or a
//! retry falls due ([`spawn_sender`]); it never runs inside a poll, so a slow receiver delays
//! only other alerts, never the next poll. A pass with nothing to do costs one indexed count.
//!
//! Pacing is a pure function of the alert's settings, its recent message times and `now`
//! ([`next_send_time`]): `min_interval` (stories inside it wait and go as one message),
//! `max_per_hour` (the rest wait and go as one message when the hour allows, listing them
//! with "and N more"), `quiet_hours` in the config's time zone (held, sent as one batch at
//! the end). Delivery is at least once, made idempotent for receivers: every message carries
//! its key (`Idempotency-Key` header, `idempotency_key` JSON field, the e-mail's Message-ID,
//! `NEWSWATCH_IDEMPOTENCY_KEY` for commands); the outbox marks it sent only after the
//! destination accepted it, so a crash between sending and marking repeats it with the same
//! key. Failures are retried with backoff stored in the database (a restart resumes) until
//! `give_up_after`, when they are dropped with a log line.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::outputs::alerts::{AlertMessage, AlertSettings, AlertStory, Destination, QuietHours};
use crate::store::alerts as outbox;
use crate::store::sql::{AnyDb, Db};
use crate::store::{MatchRow, StoreError};

/// Test-only clock for alert pacing and retries (RFC 3339). Real deployments never set it;
/// the integration tests use it to step through quiet hours and backoff without sleeping.
pub const CLOCK_ENV: &str = "NEWSWATCH_ALERTS_CLOCK";

/// First retry delay of a failed message, doubled per attempt up to [`MAX_RETRY_DELAY`].
pub const RETRY_DELAY: Duration = Duration::from_secs(30);
/// Longest wait between two attempts.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(3600);
/// A destination failing this long without a success is reported by `feeds` and `stats`.
pub const FAILING_REPORT_AFTER: chrono::Duration = chrono::Duration::days(1);
/// Longest sleep of the background sender when nothing is due (it wakes after each wave).
const MAX_SENDER_SLEEP: Duration = Duration::from_secs(3600);

/// The time alert pacing uses: [`CLOCK_ENV`] when set (tests), else now.
pub fn now() -> DateTime<Utc> {
    std::env::var(CLOCK_ENV)
        .ok()
        .and_then(|s| crate::store::parse_ts(s.trim()))
        .unwrap_or_else(Utc::now)
}

/// Why a message was not sent.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The destination answered with a non-2xx status.
    #[error("{url}: HTTP {status}")]
    Status { url: String, status: u16 },
    /// Connection, timeout or protocol error.
    #[error("{0}")]
    Transport(String),
    /// The command failed, timed out or could not be started.
    #[error("{0}")]
    Command(String),
    /// A secret (signing key, SMTP password) could not be read.
    #[error("{0}")]
    Secret(String),
}

/// When the next message of `alert` may be created, and why it waits if that is after `now`:
/// `recent` are creation times of its messages in the last hour (any order), `last` the
/// newest ever.
pub fn next_send_time(
    alert: &AlertSettings,
    tz: chrono_tz::Tz,
    recent: &[DateTime<Utc>],
    last: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> (DateTime<Utc>, Option<&'static str>) {
    let mut t = now;
    let mut why = None;
    if let (Some(iv), Some(last)) = (alert.min_interval, last)
        && let Ok(iv) = chrono::Duration::from_std(iv)
        && last + iv > t
    {
        t = last + iv;
        why = Some("min_interval");
    }
    if let Some(max) = alert.max_per_hour {
        let hour = chrono::Duration::hours(1);
        let mut inside: Vec<DateTime<Utc>> =
            recent.iter().copied().filter(|r| *r > t - hour).collect();
        inside.sort();
        let max = usize::try_from(max).unwrap_or(usize::MAX);
        if inside.len() >= max {
            // The window frees a slot when the (len - max)th oldest leaves it.
            let free = inside[inside.len() - max] + hour;
            if free > t {
                t = free;
                why = Some("max_per_hour");
            }
        }
    }
    if let Some(q) = alert.quiet_hours
        && let Some(end) = quiet_end(q, tz, t)
    {
        t = end;
        why = Some("quiet hours");
    }
    (t, why)
}

/// If `t` falls in the quiet hours (in `tz`), when they end; else `None`.
pub fn quiet_end(q: QuietHours, tz: chrono_tz::Tz, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let local = t.with_timezone(&tz);
    let time = local.time();
    let inside = if q.start < q.end {
        q.start <= time && time < q.end
    } else {
        time >= q.start || time < q.end
    };
    if !inside {
        return None;
    }
    let day = if q.start > q.end && time >= q.start {
        local.date_naive().succ_opt()?
    } else {
        local.date_naive()
    };
    let end = day.and_time(q.end);
    // A quiet end inside a DST gap: the first valid time after it.
    let resolved = tz.from_local_datetime(&end).earliest().or_else(|| {
        tz.from_local_datetime(&(end + chrono::Duration::hours(1)))
            .earliest()
    })?;
    Some(resolved.with_timezone(&Utc))
}

/// Delay before attempt `attempts + 1` after `attempts` failures.
pub fn retry_delay(attempts: u32) -> Duration {
    RETRY_DELAY
        .saturating_mul(2u32.saturating_pow(attempts.min(20)))
        .min(MAX_RETRY_DELAY)
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassReport {
    pub sent: usize,
    pub failed: usize,
    /// Alerts whose stories wait (quiet hours, min_interval, max_per_hour).
    pub held: usize,
    pub dropped: usize,
    /// When the next pass has something to do (a held batch or a retry), if ever.
    pub next_wake: Option<DateTime<Utc>>,
}

/// The database (either backend), shared with blocking calls.
pub type SharedDb = Arc<Mutex<AnyDb>>;

async fn with_store<T: Send + 'static>(
    store: &SharedDb,
    f: impl FnOnce(&mut dyn Db) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let store = store.clone();
    match tokio::task::spawn_blocking(move || {
        let mut guard = store.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut *guard)
    })
    .await
    {
        Ok(r) => r,
        Err(e) => Err(StoreError::Corrupt(format!("internal error: {e}"))),
    }
}

/// One delivery pass at `now`: drop what is too old, put waiting stories into messages where
/// pacing allows, send every due message once. Errors are logged; the outbox keeps the state.
pub async fn deliver_pending(
    store: &SharedDb,
    alerts: &[AlertSettings],
    tz: chrono_tz::Tz,
    now: DateTime<Utc>,
) -> PassReport {
    let mut report = PassReport::default();
    if alerts.is_empty() {
        return report;
    }
    // The one check a pass without work makes.
    match with_store(store, |s| outbox::work(s)).await {
        Ok(0) => return report,
        Ok(_) => {}
        Err(e) => {
            tracing::error!(error = %e, "alerts: cannot read the outbox");
            return report;
        }
    }
    for a in alerts {
        let before = chrono::Duration::from_std(a.give_up_after)
            .ok()
            .and_then(|d| now.checked_sub_signed(d));
        let Some(before) = before else { continue };
        let name = a.name.clone();
        match with_store(store, move |s| outbox::drop_expired(s, &name, before, now)).await {
            Ok(dropped) => {
                for d in &dropped {
                    tracing::warn!(alert = %d.alert, key = %d.idem_key, enqueued = %d.created_at,
                        "alert dropped: not delivered within give_up_after");
                }
                report.dropped += dropped.len();
            }
            Err(e) => tracing::error!(alert = %a.name, error = %e, "alerts: cannot drop expired"),
        }
    }
    let waiting = with_store(store, |s| outbox::with_unassigned(s))
        .await
        .unwrap_or_default();
    for name in waiting {
        let Some(a) = alerts.iter().find(|a| a.name == name) else {
            continue;
        };
        let n = name.clone();
        let times = with_store(store, move |s| {
            outbox::message_times(s, &n, now - chrono::Duration::hours(1))
        })
        .await;
        let (recent, last) = match times {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(alert = %name, error = %e, "alerts: cannot read message times");
                continue;
            }
        };
        let (at, why) = next_send_time(a, tz, &recent, last, now);
        let n = name.clone();
        if at > now {
            report.held += 1;
            report.next_wake = Some(report.next_wake.map_or(at, |w| w.min(at)));
            let why = why.unwrap_or("pacing").to_string();
            tracing::debug!(alert = %name, until = %at, reason = %why, "alerts held");
            if let Err(e) = with_store(store, move |s| outbox::hold(s, &n, &why, at)).await {
                tracing::error!(alert = %name, error = %e, "alerts: cannot record hold");
            }
            continue;
        }
        if let Err(e) = with_store(store, move |s| outbox::claim(s, &n, now)).await {
            tracing::error!(alert = %name, error = %e, "alerts: cannot create message");
        }
    }
    let due = with_store(store, move |s| outbox::due_messages(s, now))
        .await
        .unwrap_or_default();
    let client = http_client();
    for id in due {
        let Some(outcome) = send_one(store, alerts, &client, id, now).await else {
            continue;
        };
        match outcome {
            Ok(()) => report.sent += 1,
            Err(()) => report.failed += 1,
        }
    }
    // Only configured alerts' messages wake the sender (others wait for their alert's return).
    let names: Vec<String> = alerts.iter().map(|a| a.name.clone()).collect();
    let next = with_store(store, move |s| {
        let mut next: Option<DateTime<Utc>> = None;
        for n in &names {
            if let Some(t) = outbox::next_due(s, n)? {
                next = Some(next.map_or(t, |w| w.min(t)));
            }
        }
        Ok(next)
    })
    .await;
    if let Ok(Some(t)) = next {
        report.next_wake = Some(report.next_wake.map_or(t, |w| w.min(t)));
    }
    report
}

fn http_client() -> Option<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!(
            "newswatch/",
            env!("CARGO_PKG_VERSION"),
            " (alerts)"
        ))
        .build()
        .map_err(|e| tracing::error!(error = %e, "alerts: cannot build HTTP client"))
        .ok()
}

/// Lease, build, send and mark one message. `None`: not ours to send (leased elsewhere, or
/// its alert is no longer configured).
async fn send_one(
    store: &SharedDb,
    alerts: &[AlertSettings],
    client: &Option<reqwest::Client>,
    id: i64,
    now: DateTime<Utc>,
) -> Option<Result<(), ()>> {
    let queued = with_store(store, move |s| outbox::message(s, id))
        .await
        .ok()??;
    let Some(a) = alerts.iter().find(|a| a.name == queued.alert) else {
        tracing::debug!(alert = %queued.alert, "alert no longer configured; message left pending");
        return None;
    };
    // The lease outlasts the attempt: a crash mid-send leaves the message to be retried then.
    let lease = now
        + chrono::Duration::from_std(a.timeout).unwrap_or(chrono::Duration::seconds(30))
        + chrono::Duration::seconds(60);
    if !with_store(store, move |s| outbox::lease(s, id, now, lease))
        .await
        .unwrap_or(false)
    {
        return None;
    }
    let ids: Vec<i64> = queued.stories.iter().map(|s| s.story_id).collect();
    let heads = with_store(store, move |s| crate::store::stories::story_heads(s, &ids))
        .await
        .unwrap_or_default();
    let mut stories = Vec::new();
    let mut missing = 0;
    for q in &queued.stories {
        match heads.get(&q.story_id) {
            Some(item) => stories.push(AlertStory {
                idempotency_key: q.idem_key.clone(),
                kind: q.kind.clone(),
                outlets: q.outlets,
                item: item.clone(),
            }),
            None => missing += 1,
        }
    }
    let message = AlertMessage {
        idempotency_key: queued.idem_key.clone(),
        alert: queued.alert.clone(),
        test: false,
        held: queued.held.clone(),
        stories,
        missing,
    };
    let result = send(a, client, &message).await;
    let alert = a.name.clone();
    match result {
        Ok(()) => {
            tracing::info!(alert = %alert, key = %message.idempotency_key,
                stories = message.stories.len(), destination = a.destination.kind(), "alert sent");
            let at = self::now().max(now);
            if let Err(e) = with_store(store, move |s| outbox::mark_sent(s, id, &alert, at)).await {
                tracing::error!(error = %e, "alerts: sent but cannot mark sent (it will be repeated with the same key)");
            }
            Some(Ok(()))
        }
        Err(e) => {
            let reason = crate::text::sanitize(&e.to_string());
            let next = now
                + chrono::Duration::from_std(retry_delay(queued.attempts))
                    .unwrap_or(chrono::Duration::seconds(30));
            tracing::warn!(alert = %alert, key = %message.idempotency_key, attempt = queued.attempts + 1,
                error = %reason, retry_at = %next, "alert delivery failed");
            if let Err(e) = with_store(store, move |s| {
                outbox::mark_failed(s, id, &alert, &reason, now, next)
            })
            .await
            {
                tracing::error!(error = %e, "alerts: cannot record failure");
            }
            Some(Err(()))
        }
    }
}

/// Send `message` to `alert`'s destination once.
pub async fn send(
    alert: &AlertSettings,
    client: &Option<reqwest::Client>,
    message: &AlertMessage,
) -> Result<(), SendError> {
    let key = message.idempotency_key.as_str();
    let http = || {
        client
            .as_ref()
            .ok_or_else(|| SendError::Transport("no HTTP client".into()))
    };
    match &alert.destination {
        Destination::Webhook { url, secret } => {
            let body = message.json();
            let mut req = http()?
                .post(url.clone())
                .timeout(alert.timeout)
                .header("Idempotency-Key", key)
                .header(reqwest::header::CONTENT_TYPE, "application/json");
            if let Some(secret) = secret {
                let secret = secret
                    .read()
                    .map_err(|e| SendError::Secret(e.to_string()))?;
                req = req.header("X-Newswatch-Signature", signature(&secret, body.as_bytes()));
            }
            post(req.body(body), url).await
        }
        Destination::Ntfy { url, priority } => {
            // JSON publishing goes to the server root with the topic in the document.
            let mut root = url.clone();
            let topic = url
                .path_segments()
                .and_then(|mut p| p.next_back())
                .unwrap_or_default()
                .to_string();
            if let Ok(mut segs) = root.path_segments_mut() {
                segs.pop();
            }
            let req = http()?
                .post(root)
                .timeout(alert.timeout)
                .header("Idempotency-Key", key)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(message.ntfy(&topic, *priority));
            post(req, url).await
        }
        Destination::Slack { url } | Destination::Matrix { url } => {
            let body = if matches!(alert.destination, Destination::Slack { .. }) {
                message.slack()
            } else {
                message.matrix()
            };
            let req = http()?
                .post(url.clone())
                .timeout(alert.timeout)
                .header("Idempotency-Key", key)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
            post(req, url).await
        }
        Destination::Email { smtp } => {
            let mut smtp = smtp.clone();
            smtp.timeout = alert.timeout;
            // A Message-ID fixed by the key: mail systems and people can spot a repeat.
            let digest = hex(&Sha256::digest(key.as_bytes())[..16]);
            let message_id = format!("<alert-{digest}@newswatch.invalid>");
            crate::outputs::digest::send_mail(
                &smtp,
                &message.subject(),
                message.text(),
                None,
                Some(message_id),
            )
            .await
            .map_err(|e| SendError::Transport(e.to_string()))
        }
        Destination::Command { argv } => {
            run_command(argv, key, &message.json(), alert.timeout).await
        }
    }
}

/// `sha256=<hex HMAC-SHA256 of body>`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    // HMAC accepts keys of any length; the error arm cannot happen.
    match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mut mac) => {
            mac.update(body);
            format!("sha256={}", hex(&mac.finalize().into_bytes()))
        }
        Err(_) => String::new(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn post(req: reqwest::RequestBuilder, url: &url::Url) -> Result<(), SendError> {
    let resp = req
        .send()
        .await
        .map_err(|e| SendError::Transport(format!("{url}: {e}")))?;
    let status = resp.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(SendError::Status {
            url: url.to_string(),
            status: status.as_u16(),
        })
    }
}

/// Run `argv` (no shell) with `json` on stdin and the key in `NEWSWATCH_IDEMPOTENCY_KEY`;
/// exit status 0 is success. Killed after `timeout`.
async fn run_command(
    argv: &[String],
    key: &str,
    json: &str,
    timeout: Duration,
) -> Result<(), SendError> {
    let Some((program, args)) = argv.split_first() else {
        return Err(SendError::Command("empty command".into()));
    };
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .env("NEWSWATCH_IDEMPOTENCY_KEY", key)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| SendError::Command(format!("cannot run {program}: {e}")))?;
    let mut stdin = child.stdin.take();
    let io = async {
        if let Some(stdin) = stdin.as_mut() {
            // A program that does not read its input is its own business.
            let _ = stdin.write_all(json.as_bytes()).await;
            let _ = stdin.shutdown().await;
        }
        drop(stdin);
        child.wait_with_output().await
    };
    match tokio::time::timeout(timeout, io).await {
        Err(_) => Err(SendError::Command(format!(
            "{program} timed out after {}",
            humantime::format_duration(timeout)
        ))),
        Ok(Err(e)) => Err(SendError::Command(format!("{program}: {e}"))),
        Ok(Ok(out)) if out.status.success() => Ok(()),
        Ok(Ok(out)) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let first = stderr.lines().next().unwrap_or("").trim();
            Err(SendError::Command(format!(
                "{program} exited with {}{}",
                out.status,
                if first.is_empty() {
                    String::new()
                } else {
                    format!(": {first}")
                }
            )))
        }
    }
}

/// A sample message for `newswatch alerts test NAME`.
pub fn sample_message(alert: &AlertSettings, now: DateTime<Utc>) -> AlertMessage {
    let at = crate::store::ts(now);
    AlertMessage {
        idempotency_key: format!("test-{}:{}", now.timestamp_millis(), alert.name),
        alert: alert.name.clone(),
        test: true,
        held: None,
        stories: vec![AlertStory {
            idempotency_key: format!("test-{}:{}:new", now.timestamp_millis(), alert.name),
            kind: crate::store::alerts::KIND_NEW.into(),
            outlets: 1,
            item: MatchRow {
                id: 0,
                title: "newswatch test alert: this is what an alert looks like".into(),
                link: Some("https://example.org/newswatch-test-alert".into()),
                published: Some(at.clone()),
                first_seen: at,
                feeds: vec!["test".into()],
                rules: alert.rules.clone().unwrap_or_default(),
                terms: Vec::new(),
                snippet: "A sample alert sent by `newswatch alerts test`.".into(),
                status: "new".into(),
                story: 0,
                story_size: 1,
                story_updated: String::new(),
                summary: String::new(),
                content: String::new(),
            },
        }],
        missing: 0,
    }
}

/// What the background sender needs; replaced on reload.
#[derive(Debug, Clone)]
pub struct SenderConfig {
    pub alerts: Vec<AlertSettings>,
    pub tz: chrono_tz::Tz,
}

impl SenderConfig {
    /// The sender's part of `settings`.
    pub fn of(settings: &crate::config::Settings) -> SenderConfig {
        SenderConfig {
            alerts: settings.alerts.clone(),
            tz: settings.schedule.timezone,
        }
    }
}

/// A daemon's (or a worker's) handle on its background sender ([`spawn_sender`]).
#[derive(Debug)]
pub struct Sender {
    config: tokio::sync::watch::Sender<SenderConfig>,
    wake: Arc<tokio::sync::Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Sender {
    /// Start the sender for `settings`' database and alerts; it stops with `shutdown`.
    pub fn start(
        settings: &crate::config::Settings,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> Sender {
        let (config, rx) = tokio::sync::watch::channel(SenderConfig::of(settings));
        let wake = Arc::new(tokio::sync::Notify::new());
        let task = spawn_sender(settings.backend.clone(), rx, wake.clone(), shutdown);
        Sender { config, wake, task }
    }

    /// A wave of polls ended: look at the outbox now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// The config was reloaded: use its alerts from the next pass.
    pub fn reload(&self, settings: &crate::config::Settings) {
        let _ = self.config.send(SenderConfig::of(settings));
    }

    /// Wait for the sender to stop (after `shutdown`).
    pub async fn stopped(self) {
        let _ = self.task.await;
    }
}

/// Key of the session advisory lock that makes one worker of a PostgreSQL cluster the one
/// that delivers alerts ("nwalert" in ASCII). The leader holds it on its sender's own
/// connection; when that worker dies, its connection closes, the lock is free, and the next
/// worker to try takes over.
pub const ALERT_LOCK: i64 = 0x006e_7761_6c65_7274;

/// How often a worker that does not deliver alerts asks whether the leader is gone.
const FOLLOWER_RETRY: Duration = Duration::from_secs(5);

/// Longest sleep of a cluster's leading sender: other workers' commits do not wake it, so it
/// looks at the outbox (one indexed count) this often.
const CLUSTER_SENDER_POLL: Duration = Duration::from_secs(2);

/// Open the sender's own connection.
fn open_sender_db(database: &crate::config::Database) -> Result<AnyDb, StoreError> {
    match database {
        crate::config::Database::Sqlite(path) => crate::store::Store::open(path).map(AnyDb::Sqlite),
        crate::config::Database::Postgres { url, password } => {
            AnyDb::postgres(url.expose(), password.as_ref().map(|p| p.expose()))
        }
    }
}

/// Whether the sender's connection is gone (a PostgreSQL server restart, a failover).
fn lost(db: &mut AnyDb) -> bool {
    match db {
        AnyDb::Sqlite(_) => false,
        AnyDb::Postgres(p) => p.client().is_closed(),
    }
}

/// Take the cluster's alert lock ([`ALERT_LOCK`]) if it is free (kept until this connection
/// closes).
pub fn try_lead(db: &mut dyn Db) -> Result<bool, StoreError> {
    crate::store::sql::value(db, "SELECT pg_try_advisory_lock(?1)", &[ALERT_LOCK.into()])
}

/// The daemon's background sender: a pass at start (what a previous run left), after each
/// `wake` (a wave of polls ended) and when a held batch or retry falls due. Its own database
/// connection, opened once alerts are configured, so sending never waits for, or holds, the
/// poll's store. On PostgreSQL only the worker holding [`ALERT_LOCK`] delivers: one sender
/// for the cluster, taken over within [`FOLLOWER_RETRY`] when it dies.
fn spawn_sender(
    database: crate::config::Database,
    config: tokio::sync::watch::Receiver<SenderConfig>,
    wake: Arc<tokio::sync::Notify>,
    shutdown: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let cluster = matches!(database, crate::config::Database::Postgres { .. });
    tokio::spawn(async move {
        let mut db: Option<SharedDb> = None;
        let mut leading = false;
        loop {
            let cfg = config.borrow().clone();
            let mut sleep = MAX_SENDER_SLEEP;
            if !cfg.alerts.is_empty() {
                if let Some(shared) = &db {
                    let shared = shared.clone();
                    let gone = tokio::task::spawn_blocking(move || {
                        lost(&mut shared.lock().unwrap_or_else(|p| p.into_inner()))
                    })
                    .await
                    .unwrap_or(true);
                    if gone {
                        tracing::warn!("alerts: database connection lost, reconnecting");
                        if let Some(old) = db.take() {
                            let _ = tokio::task::spawn_blocking(move || drop(old)).await;
                        }
                        leading = false;
                    }
                }
                if db.is_none() {
                    let d = database.clone();
                    match tokio::task::spawn_blocking(move || open_sender_db(&d)).await {
                        Ok(Ok(s)) => db = Some(Arc::new(Mutex::new(s))),
                        Ok(Err(e)) => {
                            tracing::error!(error = %e, "alerts: sender cannot open the database")
                        }
                        Err(e) => tracing::error!(error = %e, "alerts: sender failed to start"),
                    }
                }
            }
            match &db {
                Some(shared) if !cfg.alerts.is_empty() => {
                    if cluster && !leading {
                        match with_store(shared, |s| try_lead(s)).await {
                            Ok(true) => {
                                leading = true;
                                tracing::info!("alerts: this worker delivers the cluster's alerts");
                            }
                            Ok(false) => {}
                            Err(e) => {
                                tracing::error!(error = %e, "alerts: cannot take the alert lock")
                            }
                        }
                    }
                    if cluster && !leading {
                        sleep = FOLLOWER_RETRY;
                    } else {
                        let report = tokio::select! {
                            r = deliver_pending(shared, &cfg.alerts, cfg.tz, now()) => r,
                            _ = shutdown.cancelled() => break,
                        };
                        if report.sent + report.failed + report.dropped > 0 {
                            tracing::info!(
                                sent = report.sent,
                                failed = report.failed,
                                held = report.held,
                                dropped = report.dropped,
                                "alerts pass"
                            );
                        }
                        let most = if cluster {
                            CLUSTER_SENDER_POLL
                        } else {
                            MAX_SENDER_SLEEP
                        };
                        sleep = report
                            .next_wake
                            .map(|t| (t - now()).to_std().unwrap_or(Duration::ZERO))
                            .unwrap_or(most)
                            .clamp(Duration::from_millis(200), most);
                    }
                }
                // No alerts, or the database cannot be opened now: try again later.
                Some(_) => {}
                None if !cfg.alerts.is_empty() => sleep = FOLLOWER_RETRY,
                None => {}
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = wake.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
            }
        }
        // The sync PostgreSQL client is closed on a blocking thread.
        if let Some(db) = db {
            let _ = tokio::task::spawn_blocking(move || drop(db)).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert() -> AlertSettings {
        AlertSettings {
            name: "a".into(),
            rules: None,
            destination: Destination::Command {
                argv: vec!["true".into()],
            },
            update_at: vec![],
            min_interval: None,
            quiet_hours: None,
            max_per_hour: None,
            timeout: Duration::from_secs(30),
            give_up_after: Duration::from_secs(172_800),
        }
    }

    fn t(s: &str) -> DateTime<Utc> {
        crate::store::parse_ts(s).unwrap()
    }

    #[test]
    fn first_alert_goes_at_once_then_min_interval_holds_the_rest() {
        let mut a = alert();
        a.min_interval = Some(Duration::from_secs(3600));
        let now = t("2026-01-05T10:00:00Z");
        assert_eq!(
            next_send_time(&a, chrono_tz::UTC, &[], None, now),
            (now, None)
        );
        let last = t("2026-01-05T09:30:00Z");
        assert_eq!(
            next_send_time(&a, chrono_tz::UTC, &[last], Some(last), now),
            (t("2026-01-05T10:30:00Z"), Some("min_interval"))
        );
    }

    #[test]
    fn quiet_hours_wrap_midnight_in_the_config_time_zone() {
        let mut a = alert();
        a.quiet_hours = QuietHours::parse("22:00-07:00");
        let tz: chrono_tz::Tz = "Europe/London".parse().unwrap();
        // 23:30 London in summer = 22:30 UTC; quiet ends 07:00 London = 06:00 UTC next day.
        let (at, why) = next_send_time(&a, tz, &[], None, t("2026-07-01T22:30:00Z"));
        assert_eq!((at, why), (t("2026-07-02T06:00:00Z"), Some("quiet hours")));
        // 03:00 London: ends the same day.
        let (at, _) = next_send_time(&a, tz, &[], None, t("2026-07-02T02:00:00Z"));
        assert_eq!(at, t("2026-07-02T06:00:00Z"));
        // Noon: not quiet.
        let noon = t("2026-07-02T11:00:00Z");
        assert_eq!(next_send_time(&a, tz, &[], None, noon), (noon, None));
    }

    #[test]
    fn max_per_hour_waits_until_the_oldest_message_leaves_the_hour() {
        let mut a = alert();
        a.max_per_hour = Some(2);
        let now = t("2026-01-05T10:00:00Z");
        let recent = [t("2026-01-05T09:10:00Z"), t("2026-01-05T09:40:00Z")];
        assert_eq!(
            next_send_time(&a, chrono_tz::UTC, &recent, Some(recent[1]), now),
            (t("2026-01-05T10:10:00Z"), Some("max_per_hour"))
        );
        assert_eq!(
            next_send_time(&a, chrono_tz::UTC, &recent[1..], Some(recent[1]), now),
            (now, None)
        );
    }

    #[test]
    fn retry_delay_doubles_and_is_capped() {
        assert_eq!(retry_delay(0), Duration::from_secs(30));
        assert_eq!(retry_delay(1), Duration::from_secs(60));
        assert_eq!(retry_delay(30), MAX_RETRY_DELAY);
    }

    #[test]
    fn signature_is_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
