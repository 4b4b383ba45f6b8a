//! The Events subscription API under `/events/api/v1/subscriptions`
//! (spec §2.6), behind the same bearer-token check as Storage. Failures are
//! answered with ASP.NET-style problem JSON; nothing here panics on input.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::auth;
use super::events_feed;
use super::state::SimState;
use super::subscription::Problem;

type Sim = State<Arc<SimState>>;

const SUBSCRIPTIONS: &str = "/events/api/v1/subscriptions";

pub(crate) fn router(state: Arc<SimState>) -> Router<Arc<SimState>> {
    Router::new()
        .route(SUBSCRIPTIONS, post(create).get(list))
        .route(
            &format!("{SUBSCRIPTIONS}/{{id}}"),
            get(get_one).delete(delete_one),
        )
        .route(events_feed::APP_EVENTS, get(events_feed::app_events))
        .route_layer(middleware::from_fn_with_state(state, auth::require_token))
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/problem+json; charset=utf-8"),
            )],
            self.to_json().to_string(),
        )
            .into_response()
    }
}

/// Altinn's controller `[Consumes("application/json")]`: anything else (or
/// no content type) is 415 before the body is looked at.
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| {
            let mime = mime.trim().to_ascii_lowercase();
            mime == "application/json"
                || (mime.starts_with("application/") && mime.ends_with("+json"))
        })
}

/// `201` with the subscription and `Location: /events/api/v1/subscription/{id}`
/// (singular, as Altinn sends it). The body is taken as bytes (axum's default
/// 2 MB limit applies) so malformed JSON gets a problem answer, not an
/// extractor rejection.
async fn create(State(state): Sim, headers: HeaderMap, body: Bytes) -> Result<Response, Problem> {
    if !is_json(&headers) {
        return Err(Problem::status(415));
    }
    let body: Value =
        serde_json::from_slice(&body).map_err(|e| Problem::bad_request("$", e.to_string()))?;
    let sub = state.events.subscribe(&body)?;
    let location = format!("/events/api/v1/subscription/{}", sub.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(sub.to_json()),
    )
        .into_response())
}

async fn list(State(state): Sim) -> Json<Value> {
    let subs: Vec<Value> = state.events.list().iter().map(|s| s.to_json()).collect();
    Json(json!({ "count": subs.len(), "subscriptions": subs }))
}

/// Ids are integers in Altinn; a non-integer is a binding error (400).
fn parse_id(id: &str) -> Result<u64, Problem> {
    id.parse()
        .map_err(|_| Problem::bad_request("id", format!("The value '{id}' is not valid.")))
}

async fn get_one(State(state): Sim, Path(id): Path<String>) -> Result<Json<Value>, Problem> {
    let sub = state
        .events
        .get(parse_id(&id)?)
        .ok_or(Problem::status(404))?;
    Ok(Json(sub.to_json()))
}

/// `200` with an empty body, or `404`.
async fn delete_one(State(state): Sim, Path(id): Path<String>) -> Result<StatusCode, Problem> {
    if state.events.delete(parse_id(&id)?) {
        Ok(StatusCode::OK)
    } else {
        Err(Problem::status(404))
    }
}
