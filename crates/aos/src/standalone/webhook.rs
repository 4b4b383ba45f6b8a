//! The standalone webhook: `POST /api/EventsReceiver?code=<secret>`.
//!
//! Without a Functions host there is no function key, so the `code` query parameter (where
//! Altinn subscriptions carry it) is compared in constant time with the configured secret; a
//! request without it is answered 401 and never queued. A valid event is answered 200 only
//! after the queue accepted the message; if it could not be stored the answer is 503, so
//! Altinn delivers it again.
//!
//! The edge, in the order a request meets it (design 2.6):
//! 1. `code` is checked before a byte of the body is read: 401 at once, nothing buffered, and an
//!    unauthenticated request never takes one of the places of 3;
//! 2. a body declared larger than [`MAX_DRAINED_BYTES`] is answered 413 unread; one larger than
//!    [`MAX_BODY_BYTES`] (a whole queue message) is answered 413 after it was read to its end
//!    and dropped (memory for 64 KiB at most, and no reset under a sender mid-upload);
//! 3. at most [`EdgeLimits::concurrency`] requests are worked on at once; one more is answered
//!    503 with `Retry-After` (load shedding: Altinn retries), not queued behind the others;
//! 4. the body must arrive within [`EdgeLimits::body_timeout`], else 408 and the connection is
//!    closed; the headers within [`EdgeLimits::header_timeout`] ([`super::server`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{BoxError, Json, Router};
use serde_json::json;
use subtle::ConstantTimeEq;
use tower::ServiceBuilder;
use tower_http::limit::RequestBodyLimitLayer;

use crate::config::Settings;
use crate::correlation::{Correlation, record_queued};
use crate::domain::{Printable, Secret};
use crate::pipeline::Pipeline;
use crate::pipeline::receive::{MAX_BODY_BYTES, ReceiveOutcome, receive_traced};
use crate::queue::Queue;
use crate::request_body::{Capped, read_capped};

/// How the webhook treats slow clients and many at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EdgeLimits {
    /// Until a request's headers are complete (also ends idle keep-alive connections). Altinn
    /// sends its headers in one packet; 10 s leaves a slow network plenty.
    pub header_timeout: Duration,
    /// Until the body (at most 64 KiB) is complete, counted from the end of the headers.
    /// Together with the header timeout, a slow client is cut off within 30 s.
    pub body_timeout: Duration,
    /// Requests worked on at once. Each holds at most a 64 KiB body and one queue write of a
    /// few milliseconds, so 64 bound the memory to a few MiB while allowing thousands of events
    /// a second, far beyond what Altinn delivers; the queue workers are the bottleneck anyway.
    pub concurrency: usize,
}

/// An authenticated body over [`MAX_BODY_BYTES`] is read on to its end and dropped, up to this
/// much, so its sender gets a clean 413 instead of a connection reset mid-upload; a body
/// declared larger is answered 413 unread (tower-http's limit) and its connection closed.
const MAX_DRAINED_BYTES: usize = 16 * 1024 * 1024;

/// The answer's `Retry-After` when shedding load, in seconds. Altinn retries on its own
/// schedule; other senders get a hint.
const RETRY_AFTER_SECS: u32 = 5;

/// TEST ONLY: override [`EdgeLimits`] so an end-to-end test sees slow clients cut off and load
/// shed within its patience. Not settings for users: the defaults are what the edge contract
/// states (`docs/architecture.md`, `docs/robustness.md`).
const TEST_HEADER_TIMEOUT_ENV: &str = "AOS_TEST_WEBHOOK_HEADER_TIMEOUT_SECS";
const TEST_BODY_TIMEOUT_ENV: &str = "AOS_TEST_WEBHOOK_BODY_TIMEOUT_SECS";
const TEST_CONCURRENCY_ENV: &str = "AOS_TEST_WEBHOOK_CONCURRENCY";

impl Default for EdgeLimits {
    fn default() -> Self {
        EdgeLimits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(20),
            concurrency: 64,
        }
    }
}

impl EdgeLimits {
    /// The defaults with the test-only overrides applied.
    pub fn from_env() -> Self {
        let number = |name: &str| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
                .filter(|n| *n > 0)
        };
        let defaults = EdgeLimits::default();
        EdgeLimits {
            header_timeout: number(TEST_HEADER_TIMEOUT_ENV)
                .map_or(defaults.header_timeout, Duration::from_secs),
            body_timeout: number(TEST_BODY_TIMEOUT_ENV)
                .map_or(defaults.body_timeout, Duration::from_secs),
            concurrency: number(TEST_CONCURRENCY_ENV)
                .and_then(|n| usize::try_from(n).ok())
                .unwrap_or(defaults.concurrency),
        }
    }
}

/// Shared by every request behind one `Arc` (axum's `State` clones it per request).
pub struct WebhookState {
    /// For `GET /health` (the steps themselves run in the workers).
    pipeline: Pipeline,
    settings: Arc<Settings>,
    secret: Secret,
    inbound: Queue,
    body_timeout: Duration,
}

impl WebhookState {
    pub fn new(pipeline: Pipeline, secret: Secret, inbound: Queue, limits: &EdgeLimits) -> Self {
        WebhookState {
            settings: pipeline.settings.clone(),
            pipeline,
            secret,
            inbound,
            body_timeout: limits.body_timeout,
        }
    }
}

pub fn router(state: WebhookState, limits: &EdgeLimits) -> Router {
    let state = Arc::new(state);
    let receiver = post(events_receiver).layer(
        ServiceBuilder::new()
            .layer(middleware::from_fn_with_state(state.clone(), require_code))
            .layer(RequestBodyLimitLayer::new(MAX_DRAINED_BYTES))
            .layer(HandleErrorLayer::new(overloaded))
            .load_shed()
            .concurrency_limit(limits.concurrency),
    );
    Router::new()
        .route("/", get(|| async { Json(json!({ "status": "ready" })) }))
        .route("/health", get(health))
        .route("/api/EventsReceiver", receiver)
        .with_state(state)
}

/// `GET /health`: readiness ([`crate::pipeline::health`]), 200 or 503, no key needed and no
/// detail beyond each check's word.
async fn health(State(state): State<Arc<WebhookState>>) -> Response {
    let health = state.pipeline.health().await;
    let status = StatusCode::from_u16(health.http_status()).unwrap_or(StatusCode::OK);
    (status, Json(health)).into_response()
}

fn answer(status: StatusCode, error: &str) -> Response {
    (status, Json(json!({ "error": error }))).into_response()
}

/// 401 unless `?code=` is the webhook secret; runs before the body is touched.
async fn require_code(
    State(state): State<Arc<WebhookState>>,
    Query(query): Query<HashMap<String, String>>,
    request: Request,
    next: Next,
) -> Response {
    let presented = query.get("code").map(String::as_bytes).unwrap_or_default();
    if !bool::from(presented.ct_eq(state.secret.expose().as_bytes())) {
        return answer(StatusCode::UNAUTHORIZED, "missing or wrong code");
    }
    next.run(request).await
}

/// The answer when every place is taken (the only error the load shedder produces).
async fn overloaded(error: BoxError) -> Response {
    tracing::warn!(error = %error, "webhook at its concurrency limit; answering 503");
    let mut response = answer(
        StatusCode::SERVICE_UNAVAILABLE,
        "too many requests in progress; retry later",
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, RETRY_AFTER_SECS.into());
    response
}

/// One webhook request is one invocation ([`crate::correlation`]): a new invocation id, and the
/// trace of the request's `traceparent`, which the queued event carries on to the queue steps.
async fn events_receiver(
    State(state): State<Arc<WebhookState>>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let traceparent = headers
        .get(crate::correlation::TRACEPARENT)
        .and_then(|v| v.to_str().ok());
    let correlation = Correlation::new(None, traceparent);
    let span = correlation.span(crate::functions::EVENTS_RECEIVER);
    let work = receive_request(state, headers, body, correlation.clone());
    crate::metrics::timed(
        "receive",
        crate::correlation::scope(correlation, span, work),
    )
    .await
}

async fn receive_request(
    state: Arc<WebhookState>,
    headers: HeaderMap,
    body: axum::body::Body,
    correlation: Correlation,
) -> Response {
    let read = tokio::time::timeout(
        state.body_timeout,
        read_capped(body, MAX_BODY_BYTES, MAX_DRAINED_BYTES),
    )
    .await;
    let too_large = || {
        answer(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("the body is larger than {MAX_BODY_BYTES} bytes"),
        )
    };
    let body = match read {
        Ok(Ok(Capped::Whole(body))) => body,
        Ok(Ok(Capped::TooLarge { .. })) => return too_large(),
        Ok(Err(e)) if is_length_limit(&e) => return too_large(),
        Ok(Err(_)) => return answer(StatusCode::BAD_REQUEST, "the body could not be read"),
        Err(_) => {
            tracing::warn!(timeout = ?state.body_timeout, "webhook body too slow; closing the connection");
            return answer(
                StatusCode::REQUEST_TIMEOUT,
                &format!(
                    "the body did not arrive within {} s",
                    state.body_timeout.as_secs()
                ),
            );
        }
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let outcome = receive_traced(
        &body,
        content_type,
        &state.settings,
        correlation.trace.as_ref(),
    );
    if let ReceiveOutcome::Queue(event, instance, _) = &outcome {
        record_queued(event, instance);
    }
    if let ReceiveOutcome::Queue(event, _, text) = &outcome
        && let Err(e) = state.inbound.send(text.as_str()).await
    {
        tracing::error!(event_id = %Printable(event.id()), error = %e, "could not queue event; answering 503 so Altinn retries");
        return answer(
            StatusCode::SERVICE_UNAVAILABLE,
            "could not queue the event; retry",
        );
    }
    tracing::info!("{}", outcome.log_line());
    let (status, body) = outcome.answer();
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    (status, Json(body)).into_response()
}

/// Whether reading the body stopped at the length limit (rather than failing).
fn is_length_limit(error: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = e.source();
    }
    false
}
