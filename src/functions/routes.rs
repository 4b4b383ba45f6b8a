//! One route per function. Each turns a step outcome into an [`InvocationResponse`].

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::bindings::*;
use super::invocation::{InvocationRequest, InvocationResponse};
use crate::event::CloudEvent;
use crate::pipeline::confirm::ConfirmOutcome;
use crate::pipeline::process::ProcessOutcome;
use crate::pipeline::receive::{ReceiveOutcome, receive};
use crate::pipeline::{Pipeline, StepError};

/// `GET /`: the host's readiness and health probe.
pub async fn ready() -> Json<serde_json::Value> {
    Json(json!({ "status": "ready" }))
}

/// A failed invocation: non-2xx, so the host retries the message (and poisons it after the
/// last attempt). The host drops `Logs` of failed invocations, so the line also goes to stdout.
fn failed(function: &str, context: &str, error: &dyn std::fmt::Display, retryable: bool) -> Response {
    let kind = if retryable { "retryable" } else { "permanent" };
    tracing::error!(function, context, kind, error = %error, "invocation failed");
    let body = json!({ "error": error.to_string(), "kind": kind, "context": context });
    (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response()
}

fn ok(response: InvocationResponse) -> Response {
    (StatusCode::OK, Json(response)).into_response()
}

/// `EventsReceiver`: the webhook. A valid event becomes one message on `events-inbound`; the
/// host writes it before answering Altinn, and fails the request (500) if it cannot.
pub async fn events_receiver(State(pipeline): State<Pipeline>, body: Bytes) -> Response {
    let function = super::EVENTS_RECEIVER;
    let request = match InvocationRequest::parse(&body).and_then(|r| r.http_request(REQUEST)) {
        Ok(request) => request,
        Err(e) => return failed(function, "decode", &e, false),
    };
    let outcome = receive(&request.body, request.header("content-type"), &pipeline.settings);
    let response = InvocationResponse::default();
    let response = match outcome {
        ReceiveOutcome::Queue(event) => {
            tracing::info!(function, event_id = event.id(), source = event.source(), "event queued");
            let line = format!("queued event {} for {}", event.id(), event.source());
            response.http(RESPONSE, 200, &json!({ "status": "queued", "id": event.id() })).queue(INBOUND_OUTPUT, event.to_json()).log(line)
        }
        ReceiveOutcome::ValidationPing => response.http(RESPONSE, 200, &json!({ "status": "validated" })).log("answered subscription validation"),
        ReceiveOutcome::Ignored { event_type } => {
            let line = format!("ignored event of type {event_type} (not configured for processing)");
            response.http(RESPONSE, 200, &json!({ "status": "ignored", "type": event_type })).log(line)
        }
        ReceiveOutcome::Rejected { status, reason } => {
            tracing::warn!(function, status, reason = %reason, "webhook request rejected");
            let line = format!("rejected with {status}: {reason}");
            response.http(RESPONSE, status, &json!({ "error": reason })).log(line)
        }
    };
    ok(response)
}

/// Decodes the queue message of a queue-triggered invocation into the CloudEvent it carries.
fn queue_event(body: &[u8]) -> Result<(CloudEvent, Option<u32>), StepError> {
    let request = InvocationRequest::parse(body).map_err(|e| StepError::Permanent(e.to_string()))?;
    let text = request.queue_message(TRIGGER_EVENT).map_err(|e| StepError::Permanent(e.to_string()))?;
    let event = CloudEvent::parse(text.as_bytes()).map_err(|e| StepError::Permanent(format!("queue message: {e}")))?;
    Ok((event, request.dequeue_count()))
}

/// `EventsProcessor`: archive the instance, then pass the event on to `events-confirmation`.
pub async fn events_processor(State(pipeline): State<Pipeline>, body: Bytes) -> Response {
    let function = super::EVENTS_PROCESSOR;
    let (event, attempt) = match queue_event(&body) {
        Ok(decoded) => decoded,
        Err(e) => return failed(function, "decode", &e, false),
    };
    let context = format!("event {} source {} attempt {}", event.id(), event.source(), attempt.unwrap_or(1));
    match pipeline.process(&event).await {
        Ok(ProcessOutcome::Archived { instance, elements, bytes_written, already_archived }) => {
            let line = if already_archived {
                format!("instance {instance} was already archived; passing on to confirmation ({context})")
            } else {
                format!("archived instance {instance}: {elements} elements, {bytes_written} bytes written ({context})")
            };
            tracing::info!(function, event_id = event.id(), instance = %instance, elements, bytes_written, already_archived, "instance archived");
            ok(InvocationResponse::default().queue(CONFIRMATION_OUTPUT, event.to_json()).log(line))
        }
        Ok(ProcessOutcome::Skipped { reason }) => ok(InvocationResponse::default().log(format!("skipped: {reason} ({context})"))),
        Err(e) => failed(function, &context, &e, e.is_retryable()),
    }
}

/// `EventsConfirmation`: confirm the instance once its archive is complete and verified.
pub async fn events_confirmation(State(pipeline): State<Pipeline>, body: Bytes) -> Response {
    let function = super::EVENTS_CONFIRMATION;
    let (event, attempt) = match queue_event(&body) {
        Ok(decoded) => decoded,
        Err(e) => return failed(function, "decode", &e, false),
    };
    let context = format!("event {} source {} attempt {}", event.id(), event.source(), attempt.unwrap_or(1));
    match pipeline.confirm(&event).await {
        Ok(ConfirmOutcome::Confirmed { instance }) => {
            tracing::info!(function, event_id = event.id(), instance = %instance, "instance confirmed");
            ok(InvocationResponse::default().log(format!("confirmed instance {instance} ({context})")))
        }
        Ok(ConfirmOutcome::NotEnded { instance }) => {
            tracing::info!(function, event_id = event.id(), instance = %instance, "process not ended; not confirmed");
            ok(InvocationResponse::default().log(format!("instance {instance}: process has not ended; not confirmed ({context})")))
        }
        Ok(ConfirmOutcome::Skipped { reason }) => ok(InvocationResponse::default().log(format!("skipped: {reason} ({context})"))),
        Err(e) => failed(function, &context, &e, e.is_retryable()),
    }
}
