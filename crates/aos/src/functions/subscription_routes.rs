//! `EventsSubscriber` and `EventsDeSubscriber`: the blob triggers on the subscription files
//! (see [`crate::pipeline::subscription_files`] for what they do and why).
//!
//! The host's answer is chosen so that a file is retried only when retrying can help: a file
//! that was handled, or refused and reported, answers 2xx (a refused file is left in place, and
//! five identical attempts would only repeat the report); Altinn or storage being unavailable
//! answers non-2xx, so the host retries the blob (up to 5 times, then
//! `webjobs-blobtrigger-poison`). An invocation without a usable `name` is the host's
//! problem, not the file's, and fails too.

use std::sync::Arc;

use axum::body::Bytes;
use axum::response::Response;

use super::bindings::BLOB_TRIGGER;
use super::invocation::{InvocationRequest, InvocationResponse};
use super::routes::{failed, ok};
use crate::pipeline::Pipeline;
use crate::pipeline::error::ErrorKind;
use crate::pipeline::subscription_files::{Action, FileOutcome};

/// `Data.blob` is the file; `Metadata.name` is `{name}` of the trigger's path.
fn decode(body: &[u8]) -> Result<(String, Vec<u8>), String> {
    let request = InvocationRequest::parse(body).map_err(|e| e.to_string())?;
    let content = request
        .blob_content(BLOB_TRIGGER)
        .map_err(|e| e.to_string())?;
    let name = request
        .metadata_text("name")
        .ok_or("Metadata has no `name` (the {name} of the blob path)")?;
    Ok((name, content))
}

async fn run(function: &str, action: Action, pipeline: &Pipeline, body: &[u8]) -> Response {
    let (name, content) = match decode(body) {
        Ok(decoded) => decoded,
        Err(e) => return failed(function, "decode", &e, ErrorKind::Permanent),
    };
    let files = match &pipeline.subscription_files {
        Ok(files) => files,
        Err(e) => return failed(function, "settings", e, ErrorKind::Retry),
    };
    let outcome = match action {
        Action::Add => files.add(&name, &content).await,
        Action::Remove => files.remove(&name, &content).await,
    };
    match outcome {
        Ok(FileOutcome::Done(line)) => {
            tracing::info!(function, "{line}");
            ok(InvocationResponse::default().log(line))
        }
        Ok(FileOutcome::Refused(line)) => {
            let kind = ErrorKind::Permanent.label();
            tracing::error!(function, kind, "{line}");
            ok(InvocationResponse::default().log(format!("error: {line}")))
        }
        Err(e) => {
            let context = format!("subscription file {name:?}");
            failed(function, &context, &e, e.kind())
        }
    }
}

/// `EventsSubscriber`: `add-subscriptions/{name}.json` → Altinn → `active-subscriptions`.
pub async fn events_subscriber(pipeline: Arc<Pipeline>, body: Bytes) -> Response {
    run(
        super::names::EVENTS_SUBSCRIBER,
        Action::Add,
        &pipeline,
        &body,
    )
    .await
}

/// `EventsDeSubscriber`: `remove-subscriptions/{name}.json` → Altinn `DELETE` → clean-up.
pub async fn events_desubscriber(pipeline: Arc<Pipeline>, body: Bytes) -> Response {
    run(
        super::names::EVENTS_DESUBSCRIBER,
        Action::Remove,
        &pipeline,
        &body,
    )
    .await
}
