//! Receive: decide what to do with one webhook POST, without side effects.
//!
//! The adapter queues the event only for [`ReceiveOutcome::Queue`] and answers 200 only once
//! that write succeeded. A hopeless request gets a 4xx (Altinn does not retry 4xx forever; a
//! 5xx would make it retry for two days) — among them an event that no queue message can hold
//! (413), which would otherwise fail at the queue write, after the answer was decided.

use crate::config::Settings;
use crate::correlation::{TraceParent, stamp};
use crate::domain::{CloudEvent, InstanceRef, printable};
use crate::queue::{MAX_MESSAGE_TEXT_BYTES, MessageText};

/// Larger bodies are refused before they are parsed: a body larger than a whole (encoded) queue
/// message cannot become one. `aos run` stops reading at this size; an Altinn CloudEvent is
/// well under 1 KiB.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

#[derive(Debug, PartialEq)]
pub enum ReceiveOutcome {
    /// A valid event to archive, the instance it names, and the text to queue (the event
    /// written once, measured as it was written): queue it, then answer 200.
    Queue(CloudEvent, InstanceRef, MessageText),
    /// Altinn's subscription-validation ping: answer 200, queue nothing.
    ValidationPing,
    /// A valid event of a type not configured for processing: answer 200, queue nothing.
    Ignored { event_type: String },
    /// A request that can never succeed: answer `status`, queue nothing.
    Rejected { status: u16, reason: String },
}

/// The JSON body of a webhook's answer ([`ReceiveOutcome::answer`]): the members that are set,
/// in name order. Borrowed from the outcome and written once by the adapter, rather than built
/// as a `serde_json::Value` map (2 % of the webhook's instructions, with its drop).
#[derive(Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Answer<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub event_type: Option<&'a str>,
}

impl ReceiveOutcome {
    /// The HTTP status and JSON body to answer the webhook caller with. For `Queue` this is the
    /// answer *after* the message was stored; an adapter that could not store it answers 503.
    pub fn answer(&self) -> (u16, Answer<'_>) {
        let answer = Answer::default();
        match self {
            ReceiveOutcome::Queue(event, ..) => (
                200,
                Answer {
                    status: Some("queued"),
                    id: Some(event.id()),
                    ..answer
                },
            ),
            ReceiveOutcome::ValidationPing => (
                200,
                Answer {
                    status: Some("validated"),
                    ..answer
                },
            ),
            ReceiveOutcome::Ignored { event_type } => (
                200,
                Answer {
                    status: Some("ignored"),
                    event_type: Some(event_type),
                    ..answer
                },
            ),
            ReceiveOutcome::Rejected { status, reason } => (
                *status,
                Answer {
                    error: Some(reason),
                    ..answer
                },
            ),
        }
    }

    /// A line for the invocation log, with any event text in it escaped
    /// ([`crate::domain::Printable`]), so it stays one line.
    pub fn log_line(&self) -> String {
        let line = match self {
            ReceiveOutcome::Queue(event, ..) => {
                format!("queued event {} for {}", event.id(), event.source())
            }
            ReceiveOutcome::ValidationPing => "answered subscription validation".into(),
            ReceiveOutcome::Ignored { event_type } => {
                format!("ignored event of type {event_type} (not configured for processing)")
            }
            ReceiveOutcome::Rejected { status, reason } => {
                format!("rejected with {status}: {reason}")
            }
        };
        match printable(&line) {
            std::borrow::Cow::Borrowed(_) => line,
            std::borrow::Cow::Owned(escaped) => escaped,
        }
    }
}

/// Classifies one request body that carries no trace (catch-up's events).
pub fn receive(body: &[u8], content_type: Option<&str>, settings: &Settings) -> ReceiveOutcome {
    receive_traced(body, content_type, settings, None)
}

/// Classifies one webhook request body; an event to queue carries `trace` as its
/// `traceparent` attribute where [`stamp`] allows.
pub fn receive_traced(
    body: &[u8],
    content_type: Option<&str>,
    settings: &Settings,
    trace: Option<&TraceParent>,
) -> ReceiveOutcome {
    let reject = |status: u16, reason: String| ReceiveOutcome::Rejected { status, reason };
    if body.len() > MAX_BODY_BYTES {
        return reject(
            413,
            format!(
                "body is {} bytes; the limit is {MAX_BODY_BYTES}",
                body.len()
            ),
        );
    }
    if !is_json_content_type(content_type) {
        return reject(
            415,
            format!(
                "content type `{}` is not application/json or application/cloudevents+json",
                content_type.unwrap_or("")
            ),
        );
    }
    let event = match CloudEvent::parse(body) {
        Ok(event) => event,
        Err(e) => return reject(400, e.to_string()),
    };
    if event.is_validation_ping() {
        return ReceiveOutcome::ValidationPing;
    }
    if !settings.processes_event_type(event.event_type()) {
        return ReceiveOutcome::Ignored {
            event_type: event.event_type().to_string(),
        };
    }
    let instance = match event.instance(&settings.apps_base_url) {
        Ok(instance) => instance,
        Err(e) => return reject(400, e.to_string()),
    };
    let event = event
        .with_normalised_source(&instance, &settings.apps_base_url)
        .without_product_marks();
    let (event, text) = stamp(event, trace);
    if text.queued_size() > MAX_MESSAGE_TEXT_BYTES {
        return reject(
            413,
            format!(
                "the event is {} bytes as a queue message; a queue message holds \
                 {MAX_MESSAGE_TEXT_BYTES}",
                text.queued_size()
            ),
        );
    }
    ReceiveOutcome::Queue(event, instance, text)
}

fn is_json_content_type(content_type: Option<&str>) -> bool {
    let Some(value) = content_type else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json" || essence == "application/cloudevents+json"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SettingSource;
    use crate::queue::MessageText;

    fn settings() -> Settings {
        Settings::from_source(&SettingSource::from_pairs([
            (
                "AltinnApplicationOwnerSystemSettings__AppsBaseUrl",
                "https://ttd.apps.at22.altinn.cloud/",
            ),
            (
                "AltinnApplicationOwnerSystemSettings__PlatformBaseUrl",
                "https://platform.at22.altinn.cloud/",
            ),
            (
                "AltinnApplicationOwnerSystemSettings__BlobEndpoint",
                "http://127.0.0.1:10000/devstoreaccount1",
            ),
            ("AltinnApplicationOwnerSystemSettings__AltinnToken", "t"),
        ]))
        .unwrap()
    }

    use crate::test_fixtures::altinn as fixture;

    const JSON: Option<&str> = Some("application/json; charset=utf-8");

    #[test]
    fn completed_event_is_queued() {
        let body = fixture("event-app-instance-process-completed.at22.json");
        assert!(matches!(
            receive(&body, JSON, &settings()),
            ReceiveOutcome::Queue(..)
        ));
        let ce = Some("application/cloudevents+json");
        assert!(matches!(
            receive(&body, ce, &settings()),
            ReceiveOutcome::Queue(..)
        ));
    }

    #[test]
    fn each_outcome_answers_with_its_own_members_in_name_order() {
        let text = |outcome: &ReceiveOutcome| {
            let (status, answer) = outcome.answer();
            (status, serde_json::to_string(&answer).unwrap())
        };
        let body = fixture("event-app-instance-process-completed.at22.json");
        let queued = receive(&body, JSON, &settings());
        let ReceiveOutcome::Queue(event, ..) = &queued else {
            panic!("not queued: {queued:?}");
        };
        let id = event.id().to_string();
        assert_eq!(
            text(&queued),
            (200, format!(r#"{{"id":"{id}","status":"queued"}}"#))
        );
        assert_eq!(
            text(&ReceiveOutcome::ValidationPing),
            (200, r#"{"status":"validated"}"#.to_string())
        );
        let ignored = ReceiveOutcome::Ignored {
            event_type: "app.instance.created".into(),
        };
        assert_eq!(
            text(&ignored),
            (
                200,
                r#"{"status":"ignored","type":"app.instance.created"}"#.into()
            )
        );
        let rejected = ReceiveOutcome::Rejected {
            status: 415,
            reason: "not \"JSON\"".into(),
        };
        assert_eq!(text(&rejected), (415, r#"{"error":"not \"JSON\""}"#.into()));
    }

    #[test]
    fn validation_ping_is_answered_not_queued() {
        let body = fixture("event-platform-validatesubscription.json");
        assert_eq!(
            receive(&body, JSON, &settings()),
            ReceiveOutcome::ValidationPing
        );
    }

    #[test]
    fn other_types_are_ignored() {
        let body = fixture("event-app-instance-created.legacy-resource-format.json");
        assert!(matches!(
            receive(&body, JSON, &settings()),
            ReceiveOutcome::Ignored { .. }
        ));
    }

    /// The completed-event fixture with a `padding` attribute making its queued text `size`
    /// bytes long.
    fn event_of_queued_size(size: usize) -> Vec<u8> {
        let mut event: serde_json::Value =
            serde_json::from_slice(&fixture("event-app-instance-process-completed.at22.json"))
                .unwrap();
        event["padding"] = "".into();
        let base = MessageText::new(event.as_object().unwrap()).queued_size();
        event["padding"] = "x".repeat(size - base).into();
        assert_eq!(
            MessageText::new(event.as_object().unwrap()).queued_size(),
            size
        );
        event.to_string().into_bytes()
    }

    #[test]
    fn an_event_no_queue_message_can_hold_is_413() {
        let s = settings();
        let fits = event_of_queued_size(MAX_MESSAGE_TEXT_BYTES);
        assert!(matches!(
            receive(&fits, JSON, &s),
            ReceiveOutcome::Queue(..)
        ));
        let over = event_of_queued_size(MAX_MESSAGE_TEXT_BYTES + 1);
        assert!(over.len() < MAX_BODY_BYTES);
        match receive(&over, JSON, &s) {
            ReceiveOutcome::Rejected {
                status: 413,
                reason,
            } => {
                assert!(reason.contains("queue message"), "{reason}")
            }
            other => panic!("not 413: {other:?}"),
        }
    }

    #[test]
    fn a_sender_cannot_set_the_products_own_marks() {
        let mut event: serde_json::Value =
            serde_json::from_slice(&fixture("event-app-instance-process-completed.at22.json"))
                .unwrap();
        event["aosreconciled"] = "true".into();
        event["aoscaughtup"] = "true".into();
        let ReceiveOutcome::Queue(queued, _, text) =
            receive(event.to_string().as_bytes(), JSON, &settings())
        else {
            panic!("queued");
        };
        assert!(!queued.is_synthetic());
        assert!(queued.to_json().get("aosreconciled").is_none());
        assert_eq!(text.as_str(), queued.message_text());
    }

    #[test]
    fn the_queued_event_carries_the_normalised_source() {
        let mut event: serde_json::Value =
            serde_json::from_slice(&fixture("event-app-instance-process-completed.at22.json"))
                .unwrap();
        let source = event["source"].as_str().unwrap().to_string();
        event["source"] = source
            .replacen("https://", "HTTPS://", 1)
            .replace("6b3323c8-7baf", "6B3323C8-7BAF")
            .into();
        match receive(event.to_string().as_bytes(), JSON, &settings()) {
            ReceiveOutcome::Queue(queued, _, text) => {
                assert_eq!(queued.source(), source);
                // The text queued is the event's as normalised, not as received.
                assert_eq!(text.as_str(), queued.message_text());
            }
            other => panic!("not queued: {other:?}"),
        }
    }

    #[test]
    fn log_lines_are_one_line_whatever_the_request_held() {
        let outcome = receive(b"{}", Some("text/plain\u{1b}[2J\nforged"), &settings());
        let line = outcome.log_line();
        assert!(line.starts_with("rejected with 415"), "{line}");
        assert!(!line.chars().any(crate::domain::needs_escape), "{line:?}");
    }

    #[test]
    fn bad_requests_are_rejected_with_the_right_status() {
        let s = settings();
        let status = |body: &[u8], ct| match receive(body, ct, &s) {
            ReceiveOutcome::Rejected { status, .. } => status,
            other => panic!("not rejected: {other:?}"),
        };
        assert_eq!(status(b"{", JSON), 400);
        assert_eq!(status(b"\xff\xfe", JSON), 400);
        assert_eq!(
            status(br#"{"type":"app.instance.process.completed"}"#, JSON),
            400
        );
        assert_eq!(status(&vec![b' '; MAX_BODY_BYTES + 1], JSON), 413);
        assert_eq!(
            status(
                &fixture("event-app-instance-process-completed.at22.json"),
                Some("text/plain")
            ),
            415
        );
        assert_eq!(
            status(
                &fixture("event-app-instance-process-completed.at22.json"),
                None
            ),
            415
        );
        let foreign = br#"{"id":"1","specversion":"1.0","type":"app.instance.process.completed","source":"https://evil.example/ttd/a/instances/1/6b3323c8-7baf-4612-b8a6-5eac407f4d0c"}"#;
        assert_eq!(status(foreign, JSON), 400);
    }
}
