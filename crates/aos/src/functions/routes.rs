//! One route per function. Each turns a step outcome into an [`InvocationResponse`].

use std::sync::Arc;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::bindings::*;
use super::http_trigger::HttpTriggerRequest;
use super::invocation::{InvocationRequest, InvocationResponse};
use crate::correlation::{TRACEPARENT, TraceParent, record_event, record_queued};
use crate::domain::{CloudEvent, Printable, printable};
use crate::pipeline::Pipeline;
use crate::pipeline::catchup::CatchUpOptions;
use crate::pipeline::error::{ErrorKind, StepError};
use crate::pipeline::messages::{Attempt, QueueStep, describe, parse_message};
use crate::pipeline::receive::{MAX_BODY_BYTES, ReceiveOutcome, receive_traced};
use crate::pipeline::reconcile::ReconcileOptions;
use crate::queue::QueueAccount;
use crate::redact::Redacted;
use crate::request_body::{Capped, read_capped};

/// `GET /`: the host's readiness and health probe.
pub async fn ready() -> Json<serde_json::Value> {
    Json(json!({ "status": "ready" }))
}

/// `Health` (`GET /api/health`, anonymous): readiness in the `res` output — 200 or 503 with
/// each check's word ([`crate::pipeline::health`]); the invocation itself succeeds either way.
pub async fn health(pipeline: Arc<Pipeline>) -> Response {
    let health = pipeline.health().await;
    ok(InvocationResponse::default().http(RESPONSE, health.http_status(), &health))
}

/// A failed invocation: non-2xx, so the host retries the message (and poisons it after the
/// last attempt). The host drops `Logs` of failed invocations, so the line also goes to stdout.
pub(super) fn failed(
    function: &str,
    context: &str,
    error: &dyn std::fmt::Display,
    kind: ErrorKind,
) -> Response {
    let kind = kind.label();
    tracing::error!(function, context, kind, error = %error, "invocation failed");
    // The body goes to the host (and App Insights): redacted, like the `Logs`.
    let body = json!({ "error": Redacted(error).to_string(), "kind": kind, "context": context });
    (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response()
}

/// A succeeded invocation. Written into a buffer that holds a webhook's answer (its `res`, the
/// queued event and the log line: about 800 bytes) from the start; axum's `Json` starts at 128
/// bytes and copies the text each time it grows.
pub(super) fn ok(response: InvocationResponse) -> Response {
    let mut text = Vec::with_capacity(RESPONSE_CAPACITY);
    match serde_json::to_writer(&mut text, &response) {
        Ok(()) => ([(CONTENT_TYPE, HeaderValue::from_static(JSON))], text).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot write the invocation response: {e}"),
        )
            .into_response(),
    }
}

/// See [`ok`].
const RESPONSE_CAPACITY: usize = 1024;
const JSON: &str = "application/json";

/// The largest `EventsReceiver` invocation read: a webhook body of [`MAX_BODY_BYTES`] with room
/// for the host's JSON escaping of it (up to six bytes per byte) and the request's metadata.
const MAX_RECEIVER_INVOCATION_BYTES: usize = 8 * MAX_BODY_BYTES;

/// `EventsReceiver`: the webhook. A valid event becomes one message on `events-inbound`; the
/// host writes it before answering Altinn, and fails the request (500) if it cannot — so an
/// event no queue message can hold is answered 413 here (`receive_traced`), in the `res` output
/// of a successful invocation, as is a webhook body too large to be read at all.
pub async fn events_receiver(pipeline: Arc<Pipeline>, body: Body) -> Response {
    crate::metrics::timed("receive", receive_invocation(pipeline, body)).await
}

async fn receive_invocation(pipeline: Arc<Pipeline>, body: Body) -> Response {
    let function = super::names::EVENTS_RECEIVER;
    // The host holds the whole request already: read a body too large to its end (usize::MAX),
    // since leaving it unread would close the connection under the host and fail the invocation.
    let body = match read_capped(body, MAX_RECEIVER_INVOCATION_BYTES, usize::MAX).await {
        Ok(Capped::Whole(body)) => body,
        Ok(Capped::TooLarge { read: length }) => {
            let outcome = ReceiveOutcome::Rejected {
                status: 413,
                reason: format!(
                    "the invocation is {length} bytes; a webhook body is at most {MAX_BODY_BYTES}"
                ),
            };
            tracing::warn!(function, status = 413, length, "webhook request rejected");
            return ok(webhook_response(outcome));
        }
        Err(e) => return failed(function, "read", &e, ErrorKind::Retry),
    };
    let request = match HttpTriggerRequest::parse(&body, REQUEST) {
        Ok(request) => request,
        Err(e) => return failed(function, "decode", &e, ErrorKind::Permanent),
    };
    // The trace the event came in with: the host's (its HTTP client continues the webhook
    // caller's trace), else the webhook request's own `traceparent`.
    let trace = crate::correlation::current()
        .and_then(|correlation| correlation.trace)
        .or_else(|| request.header(TRACEPARENT).and_then(TraceParent::parse));
    let outcome = receive_traced(
        request.body.as_bytes(),
        request.header("content-type"),
        &pipeline.settings,
        trace.as_ref(),
    );
    if let ReceiveOutcome::Queue(event, instance, _) = &outcome {
        record_queued(event, instance);
    }
    match &outcome {
        // The success line goes to the host with the invocation (`Logs` below); repeating it on
        // stdout, which the host also records, cost a quarter of the handler's CPU per event
        // (docs/benchmarks/ingest.md), so stdout gets it only at debug level.
        ReceiveOutcome::Queue(event, ..) => tracing::debug!(
            function,
            event_id = event.id(),
            source = event.source(),
            "event queued"
        ),
        ReceiveOutcome::Rejected { status, reason } => {
            tracing::warn!(function, status, reason = %Printable(reason), "webhook request rejected")
        }
        _ => {}
    }
    ok(webhook_response(outcome))
}

/// The webhook's invocation response: the HTTP answer (`res`), the log line, and for an event
/// to queue, the `inbound` queue output.
fn webhook_response(outcome: ReceiveOutcome) -> InvocationResponse {
    let (status, body) = outcome.answer();
    let response = InvocationResponse::default()
        .http(RESPONSE, status, &body)
        .log(outcome.log_line());
    match outcome {
        // The text the event was measured as, not the event written again.
        ReceiveOutcome::Queue(_, _, text) => response.queue_raw(INBOUND_OUTPUT, text.into_raw()),
        _ => response,
    }
}

/// Decodes the queue message of a queue-triggered invocation into the CloudEvent it carries.
fn queue_event(body: &[u8]) -> Result<(CloudEvent, Option<u32>), StepError> {
    let request = InvocationRequest::parse(body).map_err(StepError::permanent)?;
    let text = request
        .queue_message(TRIGGER_EVENT)
        .map_err(StepError::permanent)?;
    Ok((parse_message(&text)?, request.dequeue_count()))
}

/// The output binding that writes to `step`'s queue.
fn output_binding(step: QueueStep) -> &'static str {
    match step {
        QueueStep::Process => INBOUND_OUTPUT,
        QueueStep::Feedback => FEEDBACK_OUTPUT,
        QueueStep::Confirm => CONFIRMATION_OUTPUT,
    }
}

/// Runs a queue step and maps its report to the host's language; the forwarded event goes to
/// the output binding of the next step's queue ([`QueueStep::next`]).
async fn queue_step(function: &str, pipeline: &Pipeline, step: QueueStep, body: &[u8]) -> Response {
    let (event, attempt) = match queue_event(body) {
        Ok(decoded) => decoded,
        Err(e) => return failed(function, "decode", &e, ErrorKind::Permanent),
    };
    record_event(
        &tracing::Span::current(),
        &event,
        &pipeline.settings.apps_base_url,
    );
    match pipeline
        .run_step_recorded(
            step,
            &event,
            Attempt::of(attempt.unwrap_or(1), pipeline.max_attempts),
        )
        .await
    {
        Ok(report) => {
            let mut response = InvocationResponse::default().log(report.line);
            let output = step.next(&pipeline.settings).map(output_binding);
            if let (Some(binding), Some(next)) = (output, report.forward) {
                response = response.queue(binding, next.to_json());
            }
            ok(response)
        }
        Err(e) => {
            let context = format!("{} attempt {}", describe(&event), attempt.unwrap_or(1));
            failed(function, &context, &e, e.kind())
        }
    }
}

/// `EventsProcessor`: archive the instance, then pass the event on to `events-confirmation`
/// (or to `events-feedback` when feedback is configured).
pub async fn events_processor(pipeline: Arc<Pipeline>, body: Bytes) -> Response {
    queue_step(
        super::names::EVENTS_PROCESSOR,
        &pipeline,
        QueueStep::Process,
        &body,
    )
    .await
}

/// `EventsFeedback`: upload the feedback element when configured, then pass the event on to
/// `events-confirmation`.
pub async fn events_feedback(pipeline: Arc<Pipeline>, body: Bytes) -> Response {
    queue_step(
        super::names::EVENTS_FEEDBACK,
        &pipeline,
        QueueStep::Feedback,
        &body,
    )
    .await
}

/// `EventsConfirmation`: confirm the instance once its archive is complete and verified.
pub async fn events_confirmation(pipeline: Arc<Pipeline>, body: Bytes) -> Response {
    queue_step(
        super::names::EVENTS_CONFIRMATION,
        &pipeline,
        QueueStep::Confirm,
        &body,
    )
    .await
}

/// `EventsReconciler` (timer): with `EventsCatchUp=true`, first catches up from the Events pull
/// API ([`catch_up`]); then finds completed instances not yet archived and confirmed and
/// queues a synthetic event for each on `events-inbound` (one message per element of the
/// `inbound` array). The timer payload carries nothing the run needs; the window and the cap
/// are [`ReconcileOptions::default`]. The invocation fails (non-2xx) only when reconciliation
/// cannot start or every query failed, so the host records a failed run; otherwise partial
/// failures are in the logs and the summary.
pub async fn events_reconciler(pipeline: Arc<Pipeline>, body: Bytes) -> Response {
    let function = super::names::EVENTS_RECONCILER;
    let past_due = InvocationRequest::parse(&body)
        .ok()
        .and_then(|r| r.data.get(TIMER_TRIGGER).cloned())
        .and_then(|t| t.get("IsPastDue").and_then(serde_json::Value::as_bool))
        .unwrap_or(false);
    let mut logs = Vec::new();
    if past_due {
        logs.push("timer is past due; reconciling now".to_string());
    }
    if pipeline.settings.catch_up.enabled {
        catch_up(&pipeline, &mut logs).await;
    }
    let options = ReconcileOptions::default();
    let mut progress = |line: String| {
        tracing::info!(function, "{line}");
        logs.push(line);
    };
    let run = match pipeline.reconcile(&options, &mut progress).await {
        Ok(run) => run,
        Err(e) => return failed(function, "reconcile", &e, e.kind()),
    };
    if run.all_queries_failed() {
        let error = run.reasons.join("; ");
        return failed(
            function,
            "every instance query failed",
            &error,
            ErrorKind::Retry,
        );
    }
    let summary = run.summary(run.events.len());
    tracing::info!(
        function,
        found = summary.found,
        already_done = summary.already_done,
        held = summary.held,
        queued = summary.queued,
        failed = summary.failed,
        "reconciled"
    );
    pipeline
        .record_reconcile_run(function, &summary, &run.stopped)
        .await;
    let mut response = InvocationResponse::default();
    for line in logs
        .into_iter()
        .chain(run.reasons.iter().map(|r| format!("failed: {r}")))
    {
        response = response.log(line);
    }
    // The timer samples the gauges (queue and poison depth, certificate days left).
    pipeline.sample_gauges().await;
    let messages = run.events.iter().map(CloudEvent::to_json).collect();
    ok(response
        .log(summary.to_string())
        .queue_all(INBOUND_OUTPUT, messages))
}

/// Catch-up from the Events pull API, part of the `EventsReconciler` run when `EventsCatchUp` is
/// on. Its events are written to the inbound queue directly, not through the output binding:
/// the host writes outputs only after the invocation returns, and a cursor must move only after
/// the events before it are stored. A failure is logged (as an error, and in the invocation
/// log) and does not fail the invocation, so the reconciler's own output is still written.
async fn catch_up(pipeline: &Pipeline, logs: &mut Vec<String>) {
    let function = super::names::EVENTS_RECONCILER;
    let fail = |logs: &mut Vec<String>, line: String| {
        tracing::error!(function, error = %line, "catch-up failed");
        logs.push(format!("catch-up failed: {line}"));
    };
    let settings = &pipeline.settings;
    let account = match QueueAccount::from_settings(&settings.queues, "catch-up") {
        Ok(account) => account,
        Err(e) => return fail(logs, e.to_string()),
    };
    let queue = match account.existing_queue(&settings.queues.inbound).await {
        Ok(queue) => queue,
        Err(e) => return fail(logs, format!("{e:#}")),
    };
    let options = CatchUpOptions::from_settings(&settings.catch_up);
    let run = {
        // Catch-up lines quote pulled events (a refused event's raw id): escaped.
        let mut progress = |line: String| {
            let line = printable(&line).into_owned();
            tracing::info!(function, "{line}");
            logs.push(line);
        };
        pipeline
            .catch_up(&options, Some(&queue), &mut progress)
            .await
    };
    match run {
        Ok(run) => {
            for app in &run.apps {
                logs.extend(
                    app.reasons
                        .iter()
                        .map(|r| format!("refused: {}", Printable(r))),
                );
                logs.extend(
                    app.warnings
                        .iter()
                        .map(|w| format!("warning: {}", Printable(w))),
                );
                if let Some(failed) = &app.failed {
                    tracing::error!(function, app = %app.app, error = %failed, "catch-up of an app failed");
                }
            }
            tracing::info!(
                function,
                queued = run.queued(),
                failed = run.failed(),
                "caught up"
            );
            logs.push(printable(&run.to_string()).into_owned());
        }
        Err(e) => fail(logs, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::correlation::stamp;
    use crate::domain::BaseUrl;
    use crate::test_fixtures::altinn as fixture;

    #[test]
    fn a_webhooks_answer_fits_the_buffer_it_is_written_into() {
        let event =
            CloudEvent::parse(&fixture("event-app-instance-process-completed.at22.json")).unwrap();
        let apps = BaseUrl::parse("https://ttd.apps.at22.altinn.cloud/").unwrap();
        let instance = event.instance(&apps).unwrap();
        let trace = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        let (event, text) = stamp(event, trace.as_ref());
        let queued = event.to_json();
        let response = webhook_response(ReceiveOutcome::Queue(event, instance, text));
        let text = serde_json::to_vec(&response).unwrap();
        assert!(text.len() <= RESPONSE_CAPACITY, "{} bytes", text.len());
        // Half the buffer or more: a much smaller answer would want a smaller buffer.
        assert!(text.len() * 2 >= RESPONSE_CAPACITY, "{} bytes", text.len());
        // The queue output is the stamped event, as a JSON object.
        let written: serde_json::Value = serde_json::from_slice(&text).unwrap();
        assert_eq!(written["Outputs"][INBOUND_OUTPUT], queued);
    }
}
