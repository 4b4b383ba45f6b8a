//! Control API under `/_sim/` for the local dev command: create instances and
//! read confirmations over HTTP when the simulator runs in another process.
//! It needs no token (it is not part of Altinn) and is never faulted.
//! `POST /_sim/instances?publish=true` also publishes the instance's completed
//! event to matching Events subscriptions (and the pull feed), as the app would;
//! `POST /_sim/events/hold-back?secs=N` sets the pull API's hold-back.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use super::model::{completed_event, instance_json};
use super::spec::InstanceSpec;
use super::state::SimState;

pub(crate) fn router() -> Router<Arc<SimState>> {
    Router::new()
        .route("/_sim/instances", post(create_instance))
        .route("/_sim/confirmations", get(confirmations))
        .route("/_sim/events/hold-back", post(set_hold_back))
}

/// Query of `POST /_sim/events/hold-back`.
#[derive(Deserialize)]
struct HoldBackQuery {
    secs: f64,
}

/// `204`: events registered less than `secs` seconds ago are withheld from the pull API from
/// now on (Altinn: 30).
async fn set_hold_back(
    State(state): State<Arc<SimState>>,
    Query(query): Query<HoldBackQuery>,
) -> Response {
    match std::time::Duration::try_from_secs_f64(query.secs) {
        Ok(hold_back) => {
            state.events.feed().set_hold_back(hold_back);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(_) => (
            StatusCode::BAD_REQUEST,
            "secs must be a non-negative number",
        )
            .into_response(),
    }
}

/// Org and app become URL path segments and blob path parts, so they must be
/// plain, non-empty segments.
pub(crate) fn valid_segment(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

/// Query of `POST /_sim/instances`.
#[derive(Deserialize)]
struct CreateQuery {
    /// Also push the returned event to matching subscriptions.
    #[serde(default)]
    publish: bool,
}

/// `201 {"instance": <instance JSON>, "event": <CloudEvent>}`; the event is
/// what a dev would push to the AOS webhook to make it archive the instance
/// (or, with `?publish=true`, what the simulator pushes itself).
async fn create_instance(
    State(state): State<Arc<SimState>>,
    Query(query): Query<CreateQuery>,
    Json(spec): Json<InstanceSpec>,
) -> Response {
    if !valid_segment(&spec.org) || !valid_segment(&spec.app) {
        return (
            StatusCode::BAD_REQUEST,
            "org and app must be non-empty and use only [A-Za-z0-9._-]",
        )
            .into_response();
    }
    if spec.party_id == 0 {
        return (StatusCode::BAD_REQUEST, "party_id must be positive").into_response();
    }
    let created = state.add_instance(spec);
    let Some(stored) = state.instance(created.party_id, created.instance_guid) else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "instance vanished").into_response();
    };
    let event = completed_event(&state.base, &created);
    if query.publish {
        state.events.publish(&event);
    }
    let body = json!({
        "instance": instance_json(&state.base, &stored),
        "event": event,
    });
    (StatusCode::CREATED, Json(body)).into_response()
}

/// Instance ids of all successful complete calls, in order.
async fn confirmations(State(state): State<Arc<SimState>>) -> Json<Vec<String>> {
    Json(
        state
            .confirmations()
            .into_iter()
            .map(|c| c.instance_id)
            .collect(),
    )
}
