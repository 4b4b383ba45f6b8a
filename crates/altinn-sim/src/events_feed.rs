//! The Events pull API for a service owner, `GET /events/api/v1/app/{org}/{app}` (spec §2.7 A):
//! every event the simulator publishes is registered here with a sequence number, whether or
//! not a subscription matched it and whatever became of its push.
//!
//! What it mimics (EV `AppController.GetForOrg`, `getappevents_v2`):
//! - an org token is required (401 otherwise; the simulator's tokens all carry the org);
//! - `after` (event id) or `from` (time with a timezone) is required, else 400 with the problem
//!   JSON of `events-pull-response-400-problem.json`; `to`, `party`, repeated `type` and `size`
//!   (default 50) are optional; both `after` and `from` may be given (both apply);
//! - results are ordered by the sequence number; `after` means "strictly after the event with
//!   this id", and an unknown id (purged, or never seen) restarts from the beginning of the
//!   retained feed, not an error;
//! - events registered within the hold-back (30 s by default, like Altinn's
//!   `registeredtime <= now() - 30 s`) are withheld; tests shorten it with
//!   [`SimulatorHandle::set_events_hold_back`] or `POST /_sim/events/hold-back?secs=N`;
//! - a non-empty page carries a `next` header with the URL of the following page (the request's
//!   parameters with `after` set to the page's last event); an empty page has none;
//! - `Content-Type: application/cloudevents+json; charset=utf-8`.
//!
//! Deviations: an event belongs to `{org}/{app}` when its `source` path starts with
//! `/{org}/{app}/` (or is `/{org}/{app}`) on any host — so a test can put an event with a foreign
//! source host into the feed, which the product must refuse; there is no per-event
//! authorization step, so pages are never shorter than `size` while more events exist.
//! Test hooks: [`SimulatorHandle::purge_events`] (retention) and
//! [`SimulatorHandle::set_events_next_base`] (a `next` link pointing at another host).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use url::Url;

use super::SimulatorHandle;
use super::model::rfc3339;
use super::state::{SimState, lock, now};
use super::subscription::trace_id;

/// Altinn withholds events registered in the last 30 seconds.
pub(crate) const DEFAULT_HOLD_BACK: Duration = Duration::from_secs(30);
/// Altinn's default page size.
pub(crate) const DEFAULT_SIZE: usize = 50;
/// Largest page served (Altinn's generic API caps at 1000).
pub(crate) const MAX_SIZE: usize = 1000;

pub(crate) const APP_EVENTS: &str = "/events/api/v1/app/{org}/{app}";

const CLOUDEVENTS_JSON: &str = "application/cloudevents+json; charset=utf-8";

struct Entry {
    seq: u64,
    registered: Instant,
    event: Value,
}

struct Inner {
    last_seq: u64,
    entries: Vec<Entry>,
    hold_back: Duration,
    next_base: Option<Url>,
}

/// The registered events, in sequence order.
pub(crate) struct Feed {
    inner: Mutex<Inner>,
}

impl Default for Feed {
    fn default() -> Self {
        Feed {
            inner: Mutex::new(Inner {
                last_seq: 0,
                entries: Vec::new(),
                hold_back: DEFAULT_HOLD_BACK,
                next_base: None,
            }),
        }
    }
}

impl Feed {
    /// Registers `event` with the next sequence number and returns it as stored: like Altinn,
    /// registration sets `time` when the producer left it out.
    pub(crate) fn register(&self, event: &Value) -> Value {
        let mut event = event.clone();
        if let Value::Object(map) = &mut event
            && !map.get("time").is_some_and(Value::is_string)
        {
            map.insert("time".into(), rfc3339(now()).into());
        }
        let mut inner = lock(&self.inner);
        inner.last_seq += 1;
        let seq = inner.last_seq;
        inner.entries.push(Entry {
            seq,
            registered: Instant::now(),
            event: event.clone(),
        });
        event
    }

    pub(crate) fn set_hold_back(&self, hold_back: Duration) {
        lock(&self.inner).hold_back = hold_back;
    }

    /// Drops the `n` oldest events, as Altinn's retention job does after 90 days.
    fn purge(&self, n: usize) {
        let mut inner = lock(&self.inner);
        let n = n.min(inner.entries.len());
        inner.entries.drain(..n);
    }

    /// Every registered event, withheld ones included, in sequence order.
    fn all(&self) -> Vec<Value> {
        lock(&self.inner)
            .entries
            .iter()
            .map(|e| e.event.clone())
            .collect()
    }

    /// One page for `query` on `{org}/{app}`, and the base for its `next` link.
    fn page(&self, org: &str, app: &str, query: &PullQuery) -> (Vec<Value>, Option<Url>) {
        let inner = lock(&self.inner);
        // An unknown `after` restarts from the beginning (sequence 0).
        let after_seq = query
            .after
            .as_deref()
            .and_then(|id| {
                inner
                    .entries
                    .iter()
                    .find(|e| e.event.get("id").and_then(Value::as_str) == Some(id))
            })
            .map_or(0, |e| e.seq);
        let page = inner
            .entries
            .iter()
            .filter(|e| e.seq > after_seq)
            .filter(|e| e.registered.elapsed() >= inner.hold_back)
            .filter(|e| belongs_to(&e.event, org, app))
            .filter(|e| query.admits(&e.event))
            .take(query.size)
            .map(|e| e.event.clone())
            .collect();
        (page, inner.next_base.clone())
    }
}

/// Whether the event's `source` path is `/{org}/{app}` or below it.
fn belongs_to(event: &Value, org: &str, app: &str) -> bool {
    let Some(source) = event
        .get("source")
        .and_then(Value::as_str)
        .and_then(|s| Url::parse(s).ok())
    else {
        return false;
    };
    let prefix = format!("/{org}/{app}");
    let path = source.path();
    path == prefix || path.starts_with(&format!("{prefix}/"))
}

/// The bound query parameters (names case-insensitive, as ASP.NET binds them).
struct PullQuery {
    after: Option<String>,
    from: Option<OffsetDateTime>,
    to: Option<OffsetDateTime>,
    party: Option<String>,
    types: Vec<String>,
    size: usize,
    /// Every parameter as given, for the `next` link.
    raw: Vec<(String, String)>,
}

impl PullQuery {
    /// `Err` is the `detail` of the 400 problem.
    fn parse(raw_query: Option<&str>) -> Result<Self, String> {
        let raw: Vec<(String, String)> =
            url::form_urlencoded::parse(raw_query.unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
        let get = |name: &str| {
            raw.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
                .filter(|v| !v.is_empty())
        };
        let time = |name: &str| -> Result<Option<OffsetDateTime>, String> {
            match get(name) {
                None => Ok(None),
                // RFC 3339 requires an offset, which is Altinn's rule for `from`/`to`.
                Some(v) => parse_zoned(&v).map(Some).ok_or_else(|| {
                    format!(
                        "The '{}' parameter must specify timezone. E.g. 2022-07-07T11:00:53.3917Z for UTC",
                        capitalised(name)
                    )
                }),
            }
        };
        let after = get("after");
        let from = time("from")?;
        if after.is_none() && from.is_none() {
            return Err("The 'From' or 'After' parameter must be defined.".into());
        }
        let size = match get("size") {
            None => DEFAULT_SIZE,
            Some(v) => match v.parse::<i64>() {
                Ok(n) if n >= 1 => (n as usize).min(MAX_SIZE),
                _ => return Err("Size must be a number larger that 0.".into()),
            },
        };
        Ok(PullQuery {
            after,
            from,
            to: time("to")?,
            party: get("party"),
            types: raw
                .iter()
                .filter(|(k, v)| k.eq_ignore_ascii_case("type") && !v.is_empty())
                .map(|(_, v)| v.clone())
                .collect(),
            size,
            raw,
        })
    }

    fn admits(&self, event: &Value) -> bool {
        let text = |name: &str| event.get(name).and_then(Value::as_str);
        if !self.types.is_empty()
            && !text("type").is_some_and(|t| self.types.iter().any(|x| x == t))
        {
            return false;
        }
        if let Some(party) = &self.party
            && text("subject") != Some(format!("/party/{party}").as_str())
        {
            return false;
        }
        let time = text("time").and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok());
        if let Some(from) = self.from
            && time.is_none_or(|t| t < from)
        {
            return false;
        }
        if let Some(to) = self.to
            && time.is_none_or(|t| t > to)
        {
            return false;
        }
        true
    }

    /// The following page: the same parameters with `after` = `last_id`.
    fn next_url(&self, base: &Url, org: &str, app: &str, last_id: &str) -> Url {
        let mut url = base
            .join(&format!("events/api/v1/app/{org}/{app}"))
            .unwrap_or_else(|_| base.clone());
        {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in &self.raw {
                if !k.eq_ignore_ascii_case("after") {
                    pairs.append_pair(k, v);
                }
            }
            pairs.append_pair("after", last_id);
        }
        url
    }
}

/// RFC 3339, also without seconds (`2023-02-16T18:00Z`, as Altinn's docs write it); an offset
/// is required either way.
fn parse_zoned(value: &str) -> Option<OffsetDateTime> {
    if let Ok(at) = OffsetDateTime::parse(value, &Rfc3339) {
        return Some(at);
    }
    // `YYYY-MM-DDTHH:MM` followed directly by the offset: add the seconds.
    let (minutes, rest) = (value.get(..16)?, value.get(16..)?);
    if rest.starts_with(['Z', 'z', '+', '-']) {
        OffsetDateTime::parse(&format!("{minutes}:00{rest}"), &Rfc3339).ok()
    } else {
        None
    }
}

fn capitalised(name: &str) -> String {
    let mut chars = name.chars();
    chars
        .next()
        .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

/// ASP.NET's problem details for a 400 with a `detail` (the shape of the fixture).
fn problem(detail: &str) -> Response {
    let body = json!({
        "type": "https://tools.ietf.org/html/rfc7231#section-6.5.1",
        "title": "Bad Request",
        "status": 400,
        "detail": detail,
        "traceId": trace_id(),
    });
    (
        StatusCode::BAD_REQUEST,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json; charset=utf-8"),
        )],
        body.to_string(),
    )
        .into_response()
}

/// `GET /events/api/v1/app/{org}/{app}` (behind the token check).
pub(crate) async fn app_events(
    State(state): State<Arc<SimState>>,
    Path((org, app)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Response {
    let query = match PullQuery::parse(raw.as_deref()) {
        Ok(query) => query,
        Err(detail) => return problem(&detail),
    };
    let (events, next_base) = state.events.feed().page(&org, &app, &query);
    let mut response = (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(CLOUDEVENTS_JSON),
        )],
        Value::Array(events.clone()).to_string(),
    )
        .into_response();
    if let Some(last_id) = events
        .last()
        .and_then(|e| e.get("id"))
        .and_then(Value::as_str)
    {
        let base = next_base.unwrap_or_else(|| state.base.clone());
        let next = query.next_url(&base, &org, &app, last_id);
        if let Ok(value) = HeaderValue::from_str(next.as_str()) {
            response.headers_mut().insert("next", value);
        }
    }
    response
}

impl SimulatorHandle {
    /// How long a newly registered event is withheld from the pull API (default 30 s, as in
    /// Altinn). Applies at once, to events already registered too.
    pub fn set_events_hold_back(&self, hold_back: Duration) {
        self.state().events.feed().set_hold_back(hold_back)
    }

    /// Every event registered in the pull feed (withheld ones too), in sequence order.
    pub fn feed_events(&self) -> Vec<Value> {
        self.state().events.feed().all()
    }

    /// Deletes the `n` oldest events from the feed, as Altinn's 90-day retention does; an
    /// `after` cursor naming one of them then restarts from the beginning.
    pub fn purge_events(&self, n: usize) {
        self.state().events.feed().purge(n)
    }

    /// Makes `next` links point at `base` instead of the simulator (a misbehaving or hostile
    /// response: clients must not follow it with their token). `None` restores the default.
    pub fn set_events_next_base(&self, base: Option<Url>) {
        lock(&self.state().events.feed().inner).next_base = base;
    }
}
