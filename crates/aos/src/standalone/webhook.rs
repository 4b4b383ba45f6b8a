//! The standalone webhook: `POST /api/EventsReceiver?code=<secret>`.
//!
//! Without a Functions host there is no function key, so the `code` query parameter (where
//! Altinn subscriptions carry it) is compared in constant time with the configured secret; a
//! request without it is answered 401 and never queued. A valid event is answered 200 only
//! after the queue accepted the message; if it could not be stored the answer is 503, so
//! Altinn delivers it again.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::config::Settings;
use crate::domain::Secret;
use crate::pipeline::receive::{MAX_BODY_BYTES, ReceiveOutcome, receive};
use crate::queue::Queue;

/// How much of a request body is read before giving up on it.
const READ_LIMIT: usize = 8 * MAX_BODY_BYTES;

#[derive(Clone)]
pub struct WebhookState {
    settings: Arc<Settings>,
    secret: Secret,
    inbound: Queue,
}

impl WebhookState {
    pub fn new(settings: Arc<Settings>, secret: Secret, inbound: Queue) -> Self {
        WebhookState {
            settings,
            secret,
            inbound,
        }
    }
}

pub fn router(state: WebhookState) -> Router {
    Router::new()
        .route("/", get(|| async { Json(json!({ "status": "ready" })) }))
        .route("/api/EventsReceiver", post(events_receiver))
        // Bodies up to READ_LIMIT are read, so an oversized event (> 64 KiB) gets a clean 413
        // from `receive` instead of a connection closed mid-upload; beyond that the server
        // stops reading (no sender of CloudEvents needs that much).
        .layer(DefaultBodyLimit::max(READ_LIMIT))
        .with_state(state)
}

async fn events_receiver(
    State(state): State<WebhookState>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let presented = query.get("code").map(String::as_bytes).unwrap_or_default();
    if !bool::from(presented.ct_eq(state.secret.expose().as_bytes())) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({ "error": "missing or wrong code" })),
        )
            .into_response();
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let outcome = receive(&body, content_type, &state.settings);
    if let ReceiveOutcome::Queue(event) = &outcome
        && let Err(e) = state.inbound.send(&event.to_json().to_string()).await
    {
        tracing::error!(event_id = event.id(), error = %e, "could not queue event; answering 503 so Altinn retries");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "error": "could not queue the event; retry" })),
        )
            .into_response();
    }
    tracing::info!("{}", outcome.log_line());
    let (status, body) = outcome.answer();
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    (status, Json(body)).into_response()
}
