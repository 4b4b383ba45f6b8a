//! The last failure of each message, kept in the `aos-state` container.
//!
//! When a message fails for the last time the Functions host moves it to `<queue>-poison`
//! unchanged — the CloudEvent as received, without the reason. So every failed attempt writes
//! a small record, `failures/{queue}/{event}.json` in `aos-state`, and `aos poison list` shows
//! it next to the poisoned message. The archive container holds nothing but archives.
//!
//! This module is below the pipeline: it stores what it is given (the kind's label and the
//! error's text) and knows nothing of steps or their error type.

use std::collections::HashMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::archive::{Archive, BlobInfo};
use crate::domain::{CloudEvent, parse_guid};
use crate::redact::redact;

/// The container for the system's own state.
pub const STATE_CONTAINER: &str = "aos-state";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FailureRecord {
    pub queue: String,
    pub event_id: String,
    pub source: String,
    pub attempt: u32,
    pub kind: String,
    pub error: String,
    pub at: String,
    /// The invocation that failed ([`crate::correlation`]); absent in records written before
    /// it was recorded, or outside an invocation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invocation_id: Option<String>,
    /// The W3C trace id the event came in with, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

/// Where failure records live.
#[derive(Clone)]
pub struct Failures {
    state: Archive,
}

impl Failures {
    pub fn new(state: Archive) -> Self {
        Failures { state }
    }

    /// The `aos-state` container (also home of the catch-up cursors).
    pub fn state(&self) -> &Archive {
        &self.state
    }

    /// Records a failed attempt: `kind` is the failure's label (`retryable` or `permanent`, as
    /// the pipeline's `ErrorKind::label` says) and `error` its text with the cause chain. Best
    /// effort: a storage problem here must not hide the original failure, so it is only logged.
    pub async fn record(
        &self,
        queue: &str,
        event: &CloudEvent,
        attempt: u32,
        kind: &str,
        error: &str,
    ) {
        let correlation = crate::correlation::current().map(|c| c.for_event(event));
        let record = FailureRecord {
            queue: queue.to_string(),
            event_id: event.id().to_string(),
            source: event.source().to_string(),
            attempt,
            kind: kind.to_string(),
            error: redact(error).into_owned(),
            at: time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            invocation_id: correlation.as_ref().map(|c| c.invocation_id.to_string()),
            trace_id: correlation.and_then(|c| c.trace_id().map(str::to_string)),
        };
        let json = serde_json::to_vec(&record).expect("a failure record serialises");
        let info = BlobInfo {
            content_type: "application/json".into(),
            metadata: HashMap::new(),
        };
        if let Err(e) = self
            .state
            .put(&blob_name(queue, event.id()), Bytes::from(json), &info)
            .await
        {
            tracing::warn!(queue, event_id = event.id(), error = %e, "could not record the failure in aos-state");
        }
    }

    /// The last recorded failure of `event_id` on `queue`.
    pub async fn last(&self, queue: &str, event_id: &str) -> Option<FailureRecord> {
        let bytes = self
            .state
            .read_small(&blob_name(queue, event_id))
            .await
            .ok()??;
        serde_json::from_slice(&bytes).ok()
    }
}

/// Event ids are GUIDs in Altinn, but a message can carry anything: non-GUIDs are hashed so
/// the blob name stays a plain, safe segment.
fn blob_name(queue: &str, event_id: &str) -> String {
    let key = match parse_guid(event_id) {
        Ok(guid) => guid.to_string(),
        Err(_) => format!("{:x}", Sha256::digest(event_id.as_bytes())),
    };
    format!("failures/{queue}/{key}.json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_names_are_safe_for_any_event_id() {
        assert_eq!(
            blob_name("events-inbound", "b4d1d548-1280-464c-a8da-dee9840909de"),
            "failures/events-inbound/b4d1d548-1280-464c-a8da-dee9840909de.json"
        );
        let hostile = blob_name("events-inbound", "../../x?y");
        assert!(
            hostile.starts_with("failures/events-inbound/") && !hostile.contains(".."),
            "{hostile}"
        );
    }
}
