//! `/api/v1/`: the JSON API. Rows have the fields of `newswatch query --format json` (the
//! store's `MatchRow` serialisation); lists are paged by an opaque `cursor` (`next_cursor` of
//! the previous page, `null` on the last); every error is `{"error": "<one line>"}` with a 4xx
//! or 5xx status. Described by `docs/openapi.json`, served at `/api/v1/openapi.json`.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::params::{cursor_text, list_params, parse_id, parse_period};
use super::{AppState, Failure, OPENAPI};
use crate::pipeline::matcher::Query;
use crate::store::MatchRow;
use crate::store::archive::{SearchFilter, SearchHit};
use crate::store::review;
use crate::store::web::MatchPage;

fn ok<T: Serialize>(v: &T) -> Response {
    axum::Json(v).into_response()
}

fn reply<T: Serialize>(r: Result<T, Failure>) -> Response {
    match r {
        Ok(v) => ok(&v),
        Err(f) => f.json(),
    }
}

async fn page(app: &AppState, query: Option<String>) -> Result<MatchPage, Failure> {
    let p = list_params(query.as_deref(), chrono::Utc::now())?;
    if p.q.is_some() {
        return Err(Failure::BadRequest(
            "q is for /api/v1/search; matches take rule, feed, status, period, cursor, limit"
                .into(),
        ));
    }
    app.db(move |s, _| {
        Ok(crate::store::web::match_page(
            s,
            &p.filter(),
            p.cursor.as_ref(),
            p.limit,
        )?)
    })
    .await
}

#[derive(Serialize)]
struct Matches {
    matches: Vec<MatchRow>,
    next_cursor: Option<String>,
}

/// `GET /api/v1/matches`.
pub(crate) async fn matches(State(app): State<AppState>, RawQuery(q): RawQuery) -> Response {
    reply(page(&app, q).await.map(|p| Matches {
        next_cursor: p.next.as_ref().map(cursor_text),
        matches: p.rows,
    }))
}

/// One story and the matches of the page it groups (`story_size` counts all its reports).
#[derive(Serialize)]
struct Story {
    story: i64,
    story_size: i64,
    title: String,
    items: Vec<MatchRow>,
}

#[derive(Serialize)]
struct Stories {
    stories: Vec<Story>,
    next_cursor: Option<String>,
}

/// `GET /api/v1/stories`: the page's matches grouped by story, in page order.
pub(crate) async fn stories(State(app): State<AppState>, RawQuery(q): RawQuery) -> Response {
    reply(page(&app, q).await.map(|p| {
        Stories {
            next_cursor: p.next.as_ref().map(cursor_text),
            stories: crate::store::stories::group(&p.rows, usize::MAX)
                .into_iter()
                .map(|s| Story {
                    story: s.story,
                    story_size: s.size,
                    title: s.headline,
                    items: s.rows,
                })
                .collect(),
        }
    }))
}

/// `GET /api/v1/matches/{id}`: one match in full, as `newswatch show --format json`.
pub(crate) async fn one_match(State(app): State<AppState>, Path(id): Path<String>) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(f) => return f.json(),
    };
    reply(
        app.db(move |s, _| {
            let mut m =
                review::show(s, id)?.ok_or_else(|| Failure::NotFound(format!("no match {id}")))?;
            m.link = crate::text::outgoing_link(m.link);
            Ok(m)
        })
        .await,
    )
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusBody {
    status: String,
}

#[derive(Serialize)]
struct StatusSet {
    id: i64,
    status: String,
    /// False when the match already had this status.
    changed: bool,
}

/// `POST /api/v1/matches/{id}/status` with `{"status": "read"}`.
pub(crate) async fn set_status(
    State(app): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let run = async {
        let id = parse_id(&id)?;
        let body: StatusBody = serde_json::from_slice(&body).map_err(|e| {
            Failure::BadRequest(format!(
                "body must be JSON like {{\"status\": \"read\"}}: {e}"
            ))
        })?;
        let status = body.status;
        if !review::STATUSES.contains(&status.as_str()) {
            return Err(Failure::BadRequest(format!(
                "status must be one of {}, got {:?}",
                review::STATUSES.join(", "),
                crate::text::sanitize(&status)
            )));
        }
        app.db(move |s, _| {
            let out = review::mark(s, &[id], &status)?;
            if !out.not_found.is_empty() {
                return Err(Failure::NotFound(format!("no match {id}")));
            }
            Ok(StatusSet {
                id,
                changed: !out.changed.is_empty(),
                status,
            })
        })
        .await
    };
    reply(run.await)
}

/// One archive search hit, with the fields of `newswatch search --format json`.
#[derive(Serialize)]
pub(crate) struct Hit {
    pub id: i64,
    pub feed: String,
    pub title: String,
    pub link: Option<String>,
    pub published: Option<String>,
    pub first_seen: String,
    pub r#match: Option<i64>,
    pub terms: Vec<String>,
    pub snippet: String,
}

impl From<SearchHit> for Hit {
    fn from(h: SearchHit) -> Self {
        Hit {
            id: h.row.id,
            feed: h.row.feed,
            link: h.row.text.link.filter(|l| crate::text::is_outgoing(l)),
            title: h.row.text.title,
            published: h.row.text.published.map(crate::store::ts),
            first_seen: h.row.first_seen,
            r#match: h.row.item_id,
            terms: h.terms,
            snippet: h.snippet,
        }
    }
}

#[derive(Serialize)]
pub(crate) struct Hits {
    pub hits: Vec<Hit>,
    /// True when `limit` cut the list.
    pub truncated: bool,
}

/// Run an archive search for `q` with the filters of `query`.
pub(crate) async fn run_search(app: &AppState, query: Option<String>) -> Result<Hits, Failure> {
    let p = list_params(query.as_deref(), chrono::Utc::now())?;
    let Some(expr) = p.q.clone() else {
        return Err(Failure::BadRequest(
            "q is required: an expression of the rule language, e.g. q=GCHQ%20NEAR/5%20NCA".into(),
        ));
    };
    if !p.rules.is_empty() || !p.statuses.is_empty() || p.cursor.is_some() {
        return Err(Failure::BadRequest(
            "search takes q, feed, period and limit (rule, status and cursor are for matches)"
                .into(),
        ));
    }
    let query = Query::parse(&expr).map_err(|e| {
        Failure::BadRequest(format!("q: {}", crate::text::sanitize(&e.to_string())))
    })?;
    let filter = SearchFilter {
        since: p.since,
        feeds: p.feeds.clone(),
        limit: Some(p.limit),
    };
    app.db(move |s, _| {
        let r = crate::store::archive::search_archive(s, &query, &filter)?;
        Ok(Hits {
            truncated: r.truncated,
            hits: r.hits.into_iter().map(Hit::from).collect(),
        })
    })
    .await
}

/// `GET /api/v1/search?q=…`: the archive, as `newswatch search`.
pub(crate) async fn search(State(app): State<AppState>, RawQuery(q): RawQuery) -> Response {
    reply(run_search(&app, q).await)
}

/// `GET /api/v1/feeds`: every feed's health, as `newswatch feeds --format json`.
pub(crate) async fn feeds(State(app): State<AppState>) -> Response {
    reply(
        app.db(|s, _| {
            #[derive(Serialize)]
            struct Feeds {
                feeds: Vec<crate::store::FeedStatus>,
            }
            Ok(Feeds {
                feeds: crate::store::feed_statuses(s)?,
            })
        })
        .await,
    )
}

/// `GET /api/v1/stats?period=7d&rule=…&feed=…`: as `newswatch stats --format json`.
pub(crate) async fn stats(State(app): State<AppState>, RawQuery(q): RawQuery) -> Response {
    let run = async {
        let now = chrono::Utc::now();
        let p = list_params(q.as_deref(), now)?;
        if p.q.is_some() || p.cursor.is_some() || !p.statuses.is_empty() {
            return Err(Failure::BadRequest(
                "stats takes period, rule and feed".into(),
            ));
        }
        let since = match p.since {
            Some(t) => t,
            None => parse_period("7d", now).map_err(Failure::BadRequest)?,
        };
        app.db(move |s, app| {
            Ok(review::stats(
                s,
                since,
                &p.rules,
                &p.feeds,
                app.settings.schedule.timezone,
                now,
            )?)
        })
        .await
    };
    reply(run.await)
}

/// `GET /api/v1/openapi.json`.
pub(crate) async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}
