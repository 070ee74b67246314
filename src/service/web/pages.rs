//! The HTML pages: review (stories newest first, filters, archive search, one-click status),
//! feed health, digests written, login. Rendered by askama templates in `templates/`, which
//! escape every value; feed text is never marked safe. Highlighting is done by splitting the
//! snippet into plain and matched segments, each escaped, so no markup is ever built from text.
//!
//! Stories: the page renders [`StoryView`]s, each a headline with the reports (outlets'
//! items) of one story that the page holds; its buttons act on every report of the story.

use std::collections::HashMap;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono_tz::Tz;

use super::api::{Hits, run_search};
use super::auth::COOKIE;
use super::params::{ListParams, list_params, parse_id};
use super::{AppState, Failure};
use crate::outputs::digest::highlight_terms;
use crate::store::MatchRow;
use crate::store::review::{self, STATUSES, local};
use crate::store::web::OutletLink;

/// A piece of a snippet: text, and whether it is a matched term.
pub(crate) struct Seg {
    pub text: String,
    pub hit: bool,
}

/// `text` cut into plain and highlighted segments at the matched `terms`.
fn segments(text: &str, terms: &[String]) -> Vec<Seg> {
    let mut out = Vec::new();
    let mut at = 0;
    for r in highlight_terms(text, terms) {
        if r.start < at || r.end > text.len() {
            continue;
        }
        if let (Some(before), Some(hit)) = (text.get(at..r.start), text.get(r.clone())) {
            if !before.is_empty() {
                out.push(Seg {
                    text: before.to_string(),
                    hit: false,
                });
            }
            out.push(Seg {
                text: hit.to_string(),
                hit: true,
            });
            at = r.end;
        }
    }
    if let Some(rest) = text.get(at..).filter(|r| !r.is_empty()) {
        out.push(Seg {
            text: rest.to_string(),
            hit: false,
        });
    }
    out
}

/// A choice of a filter's `<select>`.
pub(crate) struct Choice {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

fn choices(values: impl IntoIterator<Item = (String, String)>, chosen: &[String]) -> Vec<Choice> {
    values
        .into_iter()
        .map(|(value, label)| Choice {
            selected: chosen.contains(&value),
            value,
            label,
        })
        .collect()
}

/// One stored match on the page.
pub(crate) struct ItemView {
    pub id: i64,
    pub outlets: Vec<OutletLink>,
    pub snippet: Vec<Seg>,
    pub rules: Vec<String>,
    pub published: String,
    pub first_seen: String,
    pub status: String,
}

/// One story: a headline and the items (outlets' copies) it groups.
pub(crate) struct StoryView {
    /// The story's id (today: its only item's id).
    pub id: i64,
    pub headline: String,
    pub link: Option<String>,
    pub items: Vec<ItemView>,
    /// The item ids, comma-separated, for the status buttons.
    pub ids: String,
    /// The story's status: its items' if they agree, else "new" while any is new.
    pub status: String,
}

/// Group a page of matches into stories, in page order (a story where its newest report on
/// the page is): the headline and link of its fullest report on the page, each report with
/// its outlets; the buttons act on `members` of the story (all its reports).
fn stories_of(
    rows: Vec<MatchRow>,
    members: &HashMap<i64, Vec<i64>>,
    mut outlets: impl FnMut(&MatchRow) -> Vec<OutletLink>,
    tz: Tz,
) -> Vec<StoryView> {
    crate::store::stories::group(&rows, usize::MAX)
        .into_iter()
        .map(|story| {
            let items: Vec<ItemView> = story
                .rows
                .iter()
                .map(|m| ItemView {
                    id: m.id,
                    outlets: outlets(m),
                    snippet: segments(&m.snippet, &m.terms),
                    rules: m.rules.clone(),
                    published: m
                        .published
                        .as_deref()
                        .map_or_else(|| "—".to_string(), |p| local(p, tz)),
                    first_seen: local(&m.first_seen, tz),
                    status: m.status.clone(),
                })
                .collect();
            let statuses: std::collections::BTreeSet<&str> =
                story.rows.iter().map(|m| m.status.as_str()).collect();
            let status = match statuses.len() {
                1 => statuses.into_iter().next().unwrap_or("new").to_string(),
                _ if statuses.contains("new") => "new".to_string(),
                _ => "read".to_string(),
            };
            let ids = members
                .get(&story.story)
                .filter(|m| !m.is_empty())
                .cloned()
                .unwrap_or_else(|| story.reports.clone());
            StoryView {
                id: story.story,
                headline: story.headline,
                link: story.link,
                ids: ids.iter().map(i64::to_string).collect::<Vec<_>>().join(","),
                status,
                items,
            }
        })
        .collect()
}

pub(crate) struct SearchView {
    pub hits: Vec<HitView>,
    pub truncated: bool,
    pub error: Option<String>,
}

pub(crate) struct HitView {
    pub feed: String,
    pub title: String,
    pub link: Option<String>,
    pub published: String,
    pub first_seen: String,
    pub match_id: Option<i64>,
    pub snippet: Vec<Seg>,
}

fn search_view(h: Hits, tz: Tz) -> SearchView {
    SearchView {
        truncated: h.truncated,
        error: None,
        hits: h
            .hits
            .into_iter()
            .map(|h| HitView {
                snippet: segments(&h.snippet, &h.terms),
                published: h
                    .published
                    .as_deref()
                    .map_or_else(|| "—".to_string(), |p| local(p, tz)),
                first_seen: local(&h.first_seen, tz),
                feed: h.feed,
                title: h.title,
                link: h.link,
                match_id: h.r#match,
            })
            .collect(),
    }
}

#[derive(Template)]
#[template(path = "review.html")]
struct ReviewPage {
    stories: Vec<StoryView>,
    rules: Vec<Choice>,
    feeds: Vec<Choice>,
    statuses: Vec<Choice>,
    periods: Vec<Choice>,
    q: String,
    search: Option<SearchView>,
    next_url: Option<String>,
    first_query: String,
    shown_ids: String,
    return_to: String,
    filtered: bool,
    tz: String,
    actions: Vec<(&'static str, &'static str)>,
}

fn html(status: StatusCode, t: &impl Template) -> Response {
    match t.render() {
        Ok(body) => (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            body,
        )
            .into_response(),
        Err(e) => Failure::Internal(format!("template: {e}")).html(),
    }
}

/// `GET /`: the review page.
pub(crate) async fn review(State(app): State<AppState>, RawQuery(query): RawQuery) -> Response {
    let p = match list_params(query.as_deref(), chrono::Utc::now()) {
        Ok(p) => p,
        Err(f) => return f.html(),
    };
    let tz = app.settings.schedule.timezone;
    let mut status = StatusCode::OK;
    let search = match &p.q {
        None => None,
        Some(_) => Some(match run_search(&app, query.clone()).await {
            Ok(h) => search_view(h, tz),
            Err(Failure::BadRequest(m)) => {
                status = StatusCode::BAD_REQUEST;
                SearchView {
                    hits: Vec::new(),
                    truncated: false,
                    error: Some(m),
                }
            }
            Err(f) => return f.html(),
        }),
    };
    let listing = {
        let p = p.clone();
        let want = search.is_none();
        app.db(move |s, _| {
            let names = review::known_names(s)?;
            if !want {
                return Ok((names, Vec::new(), None, Default::default()));
            }
            let page = crate::store::web::match_page(s, &p.filter(), p.cursor.as_ref(), p.limit)?;
            let ids: Vec<i64> = page.rows.iter().map(|m| m.id).collect();
            let links = crate::store::web::outlet_links(s, &ids)?;
            // A story's buttons act on all of its reports, also those on other pages.
            let mut members: HashMap<i64, Vec<i64>> = HashMap::new();
            for m in &page.rows {
                if let std::collections::hash_map::Entry::Vacant(e) = members.entry(m.story) {
                    e.insert(crate::store::stories::story_items(s, m.story)?);
                }
            }
            Ok((names, page.rows, page.next, (links, members)))
        })
        .await
    };
    let (names, rows, next, (mut links, members)) = match listing {
        Ok(v) => v,
        Err(f) => return f.html(),
    };
    let stories = stories_of(
        rows,
        &members,
        |m| {
            links.remove(&m.id).unwrap_or_else(|| {
                m.feeds
                    .iter()
                    .map(|f| OutletLink {
                        feed: f.clone(),
                        link: None,
                    })
                    .collect()
            })
        },
        tz,
    );
    let shown_ids = stories
        .iter()
        .map(|s| s.ids.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let here = p.query_string(p.cursor.as_ref());
    let page = ReviewPage {
        rules: choices(names.rules.into_iter().map(|r| (r.clone(), r)), &p.rules),
        feeds: choices(names.feeds.into_iter().map(|f| (f.clone(), f)), &p.feeds),
        statuses: choices(
            STATUSES.iter().map(|s| (s.to_string(), s.to_string())),
            &p.statuses,
        ),
        periods: period_choices(&p),
        q: p.q.clone().unwrap_or_default(),
        search,
        next_url: next
            .as_ref()
            .map(|k| format!("/?{}", p.query_string(Some(k)))),
        first_query: p.query_string(None),
        shown_ids,
        return_to: if here.is_empty() {
            "/".into()
        } else {
            format!("/?{here}")
        },
        filtered: !p.rules.is_empty()
            || !p.feeds.is_empty()
            || !p.statuses.is_empty()
            || p.since.is_some(),
        tz: tz.to_string(),
        stories,
        actions: vec![
            ("read", "Mark read"),
            ("starred", "Star"),
            ("dismissed", "Dismiss"),
            ("new", "Mark new"),
        ],
    };
    html(status, &page)
}

fn period_choices(p: &ListParams) -> Vec<Choice> {
    let mut list: Vec<(String, String)> = [
        ("24h", "last 24 hours"),
        ("7d", "last 7 days"),
        ("30d", "last 30 days"),
        ("365d", "last year"),
    ]
    .iter()
    .map(|(v, l)| (v.to_string(), l.to_string()))
    .collect();
    if let Some(own) = &p.period
        && !list.iter().any(|(v, _)| v == own)
    {
        list.push((own.clone(), format!("since {own}")));
    }
    let chosen: Vec<String> = p.period.iter().cloned().collect();
    choices(list, &chosen)
}

/// One feed's row on the feed-health page.
pub(crate) struct FeedRow {
    pub name: String,
    pub title: Option<String>,
    pub url: String,
    pub in_config: bool,
    pub last_fetch: String,
    pub status: String,
    pub http: String,
    pub failures: i64,
    pub next_due: String,
    pub items: i64,
    pub matches: i64,
    pub last_error: String,
}

#[derive(Template)]
#[template(path = "feeds.html")]
struct FeedsPage {
    feeds: Vec<FeedRow>,
    tz: String,
    /// Alert destinations failing for a day or more, one line each.
    alerts_failing: Vec<String>,
}

/// `GET /feeds`: every feed's health.
pub(crate) async fn feeds(State(app): State<AppState>) -> Response {
    let tz = app.settings.schedule.timezone;
    let when = move |t: &Option<String>| {
        t.as_deref()
            .map_or_else(|| "never".into(), |t| local(t, tz))
    };
    let since = crate::service::alerts::now() - crate::service::alerts::FAILING_REPORT_AFTER;
    let listing = app
        .db(move |s, _| {
            let failing = crate::store::alerts::failing(s, since)?;
            Ok((crate::store::feed_statuses(s)?, failing))
        })
        .await;
    match listing {
        Ok((list, failing)) => html(
            StatusCode::OK,
            &FeedsPage {
                tz: tz.to_string(),
                alerts_failing: failing
                    .into_iter()
                    .map(|f| {
                        format!(
                            "{} failing since {}: {}",
                            f.alert,
                            local(&f.failing_since, tz),
                            f.last_error.unwrap_or_else(|| "unknown error".into())
                        )
                    })
                    .collect(),
                feeds: list
                    .into_iter()
                    .map(|f| FeedRow {
                        last_fetch: when(&f.last_fetch_at),
                        next_due: f
                            .next_due_at
                            .as_deref()
                            .map_or_else(|| "—".into(), |t| local(t, tz)),
                        status: f
                            .last_status
                            .clone()
                            .unwrap_or_else(|| "never polled".into()),
                        http: f
                            .last_http_status
                            .map_or_else(String::new, |s| s.to_string()),
                        failures: f.consecutive_failures,
                        items: f.items,
                        matches: f.matches,
                        last_error: f.last_error.clone().unwrap_or_default(),
                        name: f.name,
                        title: f.title,
                        url: f.url,
                        in_config: f.in_config,
                    })
                    .collect(),
            },
        ),
        Err(f) => f.html(),
    }
}

pub(crate) struct RunRow {
    pub id: i64,
    pub start: String,
    pub end: String,
    pub items: i64,
    pub files: Vec<String>,
}

#[derive(Template)]
#[template(path = "digests.html")]
struct DigestsPage {
    runs: Vec<RunRow>,
    dir: Option<String>,
    tz: String,
}

/// `GET /digests`: the scheduled digests written so far, newest first.
pub(crate) async fn digests(State(app): State<AppState>) -> Response {
    let tz = app.settings.schedule.timezone;
    let runs = app
        .db(|s, _| {
            crate::outputs::digest::scheduled_runs(s).map_err(|e| Failure::Internal(e.to_string()))
        })
        .await;
    match runs {
        Ok(runs) => html(
            StatusCode::OK,
            &DigestsPage {
                dir: app
                    .settings
                    .digest
                    .as_ref()
                    .map(|d| d.dir.display().to_string()),
                tz: tz.to_string(),
                runs: runs
                    .into_iter()
                    .rev()
                    .map(|r| RunRow {
                        id: r.id,
                        start: local(&crate::store::ts(r.period_start), tz),
                        end: local(&crate::store::ts(r.period_end), tz),
                        items: r.items,
                        files: r.files,
                    })
                    .collect(),
            },
        ),
        Err(f) => f.html(),
    }
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    code: String,
    message: &'a str,
}

pub(crate) fn login_page(error: Option<String>) -> String {
    LoginPage { error }
        .render()
        .unwrap_or_else(|_| "log in at /login".into())
}

pub(crate) fn error_page(status: StatusCode, message: &str) -> String {
    ErrorPage {
        code: status.to_string(),
        message,
    }
    .render()
    .unwrap_or_else(|_| status.to_string())
}

/// `GET /login`.
pub(crate) async fn login_form() -> Response {
    html(StatusCode::OK, &LoginPage { error: None })
}

fn form(body: &Bytes) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn field<'a>(f: &'a [(String, String)], name: &str) -> Option<&'a str> {
    f.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn see_other(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// `POST /login` with `token`: sets the session cookie.
pub(crate) async fn login(State(app): State<AppState>, body: Bytes) -> Response {
    if !app.auth.required() {
        return see_other("/");
    }
    let f = form(&body);
    let given = field(&f, "token").unwrap_or("");
    if !app.auth.token_matches(given) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            login_page(Some("That is not the token.".into())),
        )
            .into_response();
    }
    let mut r = see_other("/");
    if let Some(c) = app
        .auth
        .session_cookie()
        .and_then(|c| HeaderValue::from_str(&c).ok())
    {
        r.headers_mut().insert(header::SET_COOKIE, c);
    }
    r
}

/// `POST /logout`: forgets the session cookie.
pub(crate) async fn logout() -> Response {
    let mut r = see_other("/login");
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "newswatch_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0",
        ),
    );
    let _ = COOKIE;
    r
}

/// Where to go back to after a form: a path on this server only (no `//host`, no scheme).
fn safe_return(r: Option<&str>) -> String {
    match r {
        Some(r)
            if r.starts_with('/')
                && !r.starts_with("//")
                && !r.starts_with("/\\")
                && !r.chars().any(|c| c.is_control()) =>
        {
            r.to_string()
        }
        _ => "/".to_string(),
    }
}

/// `POST /mark` with `ids` (comma-separated), `status` and `return`: set the status of those
/// matches (a story's items, or every match shown). Answers JSON to our script (`Accept:
/// application/json`), else redirects back.
pub(crate) async fn mark(State(app): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let f = form(&body);
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json"));
    let fail = |f: Failure| if wants_json { f.json() } else { f.html() };
    let status = field(&f, "status").unwrap_or("").to_string();
    if !STATUSES.contains(&status.as_str()) {
        return fail(Failure::BadRequest(format!(
            "status must be one of {}, got {:?}",
            STATUSES.join(", "),
            crate::text::sanitize(&status)
        )));
    }
    let mut ids = Vec::new();
    for part in field(&f, "ids")
        .unwrap_or("")
        .split(',')
        .filter(|p| !p.trim().is_empty())
    {
        match parse_id(part) {
            Ok(id) => ids.push(id),
            Err(e) => return fail(e),
        }
    }
    if ids.is_empty() {
        return fail(Failure::BadRequest("ids: no match id given".into()));
    }
    if ids.len() > super::MAX_PAGE {
        return fail(Failure::BadRequest(format!(
            "ids: at most {} at once",
            super::MAX_PAGE
        )));
    }
    let back = safe_return(field(&f, "return"));
    let st = status.clone();
    match app.db(move |s, _| Ok(review::mark(s, &ids, &st)?)).await {
        Ok(out) if wants_json => {
            let mut done = out.changed;
            done.extend(out.unchanged);
            axum::Json(serde_json::json!({
                "status": status,
                "ids": done,
                "not_found": out.not_found,
            }))
            .into_response()
        }
        Ok(_) => see_other(&back),
        Err(e) => fail(e),
    }
}

/// `GET /assets/app.css`.
pub(crate) async fn css() -> Response {
    asset(
        "text/css; charset=utf-8",
        include_str!("../../../assets/app.css"),
    )
}

/// `GET /assets/app.js`: the only script, so buttons work without a reload.
pub(crate) async fn js() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("../../../assets/app.js"),
    )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_cover_the_text_and_mark_only_terms() {
        let s = segments("The NCA said <b>NCA</b> & co", &["NCA".to_string()]);
        let joined: String = s.iter().map(|s| s.text.as_str()).collect();
        assert_eq!(joined, "The NCA said <b>NCA</b> & co");
        let hits: Vec<&str> = s
            .iter()
            .filter(|s| s.hit)
            .map(|s| s.text.as_str())
            .collect();
        assert_eq!(hits, ["NCA", "NCA"]);
    }

    #[test]
    fn return_paths_stay_on_this_server() {
        assert_eq!(safe_return(Some("/?rule=a")), "/?rule=a");
        for bad in [
            "//evil.example/",
            "https://evil.example/",
            "/\\evil",
            "javascript:x",
            "/a\nb",
        ] {
            assert_eq!(safe_return(Some(bad)), "/", "{bad}");
        }
    }
}
