//! Property tests for the parsers that face untrusted input: the CloudEvent parser, the
//! source → InstanceRef validation, the webhook classifier and the invocation decoder.
//! Properties: never panic; whatever is accepted is safe to use as URL and blob path segments
//! and round-trips. `PROPTEST_CASES=N` runs more cases (see docs/robustness.md).

use altinn_aos::config::{SettingSource, Settings};
use altinn_aos::domain::{BaseUrl, CloudEvent, InstanceRef};
use altinn_aos::{HttpTriggerRequest, InvocationRequest};
use altinn_aos::{ReceiveOutcome, receive};
use proptest::prelude::*;
use serde_json::{Value, json};

fn apps() -> BaseUrl {
    BaseUrl::parse("https://ttd.apps.tt02.altinn.no/").unwrap()
}

fn settings() -> Settings {
    Settings::from_source(&SettingSource::from_pairs([
        (
            "AltinnApplicationOwnerSystemSettings__AppsBaseUrl",
            "https://ttd.apps.tt02.altinn.no/",
        ),
        (
            "AltinnApplicationOwnerSystemSettings__PlatformBaseUrl",
            "https://platform.tt02.altinn.no/",
        ),
        (
            "AltinnApplicationOwnerSystemSettings__BlobEndpoint",
            "http://127.0.0.1:10000/devstoreaccount1",
        ),
        ("AltinnApplicationOwnerSystemSettings__AltinnToken", "t"),
    ]))
    .unwrap()
}

/// Arbitrary JSON, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        ".{0,20}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::hash_map("[a-zA-Z]{1,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Sources near the valid shape: the right host with mutated segments, or other hosts.
fn near_sources() -> impl Strategy<Value = String> {
    let segment = prop_oneof![
        "[a-z][a-z0-9-]{0,12}",
        "[0-9]{1,12}",
        "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        Just("..".to_string()),
        Just("%2F".to_string()),
        ".{0,6}",
    ];
    let host = prop_oneof![
        Just("https://ttd.apps.tt02.altinn.no".to_string()),
        Just("https://ttd.apps.tt02.altinn.no:8443".to_string()),
        Just("http://ttd.apps.tt02.altinn.no".to_string()),
        Just("https://evil.example".to_string()),
        ".{0,12}",
    ];
    let free = (host, prop::collection::vec(segment, 0..7))
        .prop_map(|(host, segments)| format!("{host}/{}", segments.join("/")));
    // The valid shape with each part sometimes wrong, so accepted sources are common too.
    let shaped = (
        prop_oneof!["[a-z][a-z0-9-]{1,8}", ".{0,4}"],
        prop_oneof!["[a-z][a-z0-9-]{1,12}[a-z0-9]", ".{0,4}"],
        prop_oneof![Just("instances".to_string()), ".{0,4}"],
        prop_oneof!["[1-9][0-9]{0,8}", ".{0,4}"],
        prop_oneof![
            "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
            ".{0,4}"
        ],
    )
        .prop_map(|(org, app, instances, party, guid)| {
            format!("https://ttd.apps.tt02.altinn.no/{org}/{app}/{instances}/{party}/{guid}")
        });
    prop_oneof![free, shaped]
}

proptest! {
    #[test]
    fn cloudevent_parser_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = CloudEvent::parse(&bytes);
    }

    #[test]
    fn cloudevent_parser_accepts_exactly_events_with_the_four_string_attributes(value in any_json()) {
        let has = |name: &str| value.get(name).and_then(Value::as_str).is_some_and(|s| !s.trim().is_empty() && !s.chars().any(|c| c == ' ' || altinn_aos::domain::needs_escape(c)));
        let complete = value.is_object() && ["id", "type", "source", "specversion"].iter().all(|n| has(n));
        prop_assert_eq!(CloudEvent::from_value(value.clone()).is_ok(), complete);
    }

    #[test]
    fn accepted_sources_are_safe_and_round_trip(source in near_sources()) {
        if let Ok(instance) = InstanceRef::from_source(&source, &apps()) {
            let url = instance.source_url(&apps());
            prop_assert_eq!(url.as_str(), source.as_str());
            for segment in [instance.org.as_str(), instance.app.as_str()] {
                prop_assert!(segment.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
            }
        }
    }

    #[test]
    fn the_webhook_classifier_never_panics_and_queues_only_valid_instances(value in any_json(), source in near_sources(), t in prop_oneof![Just("app.instance.process.completed".to_string()), ".{0,10}"]) {
        let mut event = value;
        if let Value::Object(map) = &mut event {
            map.insert("source".into(), json!(source));
            map.insert("type".into(), json!(t));
        }
        let body = serde_json::to_vec(&event).unwrap();
        if let ReceiveOutcome::Queue(queued, _, text) = receive(&body, Some("application/json"), &settings()) {
            prop_assert!(InstanceRef::from_source(queued.source(), &apps()).is_ok());
            prop_assert_eq!(text.as_str(), queued.message_text());
        }
    }

    #[test]
    fn the_invocation_decoder_never_panics(data in any_json(), metadata in any_json()) {
        let body = serde_json::to_vec(&json!({"Data": data, "Metadata": metadata})).unwrap();
        if let Ok(request) = InvocationRequest::parse(&body) {
            let _ = request.queue_message("event");
            let _ = request.dequeue_count();
        }
        let _ = HttpTriggerRequest::parse(&body, "req");
        let as_request = serde_json::to_vec(&json!({"Data": {"req": data}, "Metadata": metadata})).unwrap();
        if let Ok(request) = HttpTriggerRequest::parse(&as_request, "req") {
            let _ = request.header("content-type");
        }
    }

    #[test]
    fn double_encoded_queue_messages_decode_to_the_original(text in ".{0,200}") {
        let once = serde_json::to_string(&text).unwrap();
        let body = serde_json::to_vec(&json!({"Data": {"event": once}, "Metadata": {"DequeueCount": "3"}})).unwrap();
        let request = InvocationRequest::parse(&body).unwrap();
        // One encoding layer is the host's; the message text itself may look like anything.
        let decoded = request.queue_message("event").unwrap();
        prop_assert!(decoded == text || serde_json::from_str::<String>(&text).ok().as_deref() == Some(decoded.as_str()));
        prop_assert_eq!(request.dequeue_count(), Some(3));
    }
}
