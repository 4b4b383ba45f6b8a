//! Correlation: which invocation, which trace and which event a log line or a failure record
//! belongs to.
//!
//! Each invocation (a Functions host invocation, or in `aos run` one webhook request or one
//! queue message) runs inside one `invocation` span ([`Correlation::span`]) that carries
//! `invocation_id`, `trace_id` and, once the event is decoded, `event_id` and the instance
//! (`org`, `app`, `party_id`, `instance_guid`). The JSON log format (`cli::telemetry`) writes
//! those span fields on every line of the invocation. The same ids are held task-locally
//! ([`scope`], [`current`]) so a failure record (`crate::failures`) carries them too.
//!
//! - The invocation id is the host's `X-Azure-Functions-InvocationId` (the id the host's own
//!   telemetry in App Insights uses); `aos run` makes one per webhook request and per queue
//!   message.
//! - The trace id is the W3C trace id of a `traceparent`. An event carries the trace it came in
//!   with as the CloudEvents distributed-tracing extension attribute `traceparent` (an
//!   extension attribute is allowed in a queue message, design §2.4): the webhook adds the
//!   request's `traceparent` to the event it queues (unless the event has its own, or the
//!   message would no longer fit), and every queue step logs the event's trace id, so one trace
//!   id follows the event from the webhook to its confirmation in both runtimes.

use std::future::Future;

use serde_json::Value;
use tracing::Instrument;
use tracing::field::Empty;
use uuid::Uuid;

use crate::domain::{BaseUrl, CloudEvent, InstanceRef};
use crate::queue::{MAX_MESSAGE_TEXT_BYTES, MessageText};

/// The header carrying the host's invocation id (spec §2).
pub const INVOCATION_ID_HEADER: &str = "x-azure-functions-invocationid";
/// The W3C trace-context header, and the CloudEvents extension attribute of the same name.
pub const TRACEPARENT: &str = "traceparent";

/// A parsed W3C `traceparent` (version 00): `00-<32 hex trace id>-<16 hex parent id>-<2 hex
/// flags>`. Only a well-formed, non-zero value is accepted, so what lands in a log line or a
/// queue message is always 55 lower-case hex characters and dashes, whoever sent it.
///
/// Held as fixed-size ASCII, not `String`s: the webhook parses one or two per invocation and
/// every task-local read of the invocation's ids copies one, which took nine allocations per
/// webhook (`docs/benchmarks.md`, "Instructions per invocation").
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    trace_id: [u8; 32],
    parent_id: [u8; 16],
    flags: [u8; 2],
}

impl TraceParent {
    pub fn parse(text: &str) -> Option<TraceParent> {
        let text = text.trim();
        let mut parts = text.split('-');
        let (version, trace_id, parent_id, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
        let zero = |s: &str| s.bytes().all(|b| b == b'0');
        // Version 00 has exactly four parts; a later version may append more (W3C §3.2.4).
        if !hex(version, 2) || version.eq_ignore_ascii_case("ff") {
            return None;
        }
        if version == "00" && parts.next().is_some() {
            return None;
        }
        if !hex(trace_id, 32) || !hex(parent_id, 16) || !hex(flags, 2) {
            return None;
        }
        if zero(trace_id) || zero(parent_id) {
            return None;
        }
        Some(TraceParent {
            trace_id: lower_hex(trace_id)?,
            parent_id: lower_hex(parent_id)?,
            flags: lower_hex(flags)?,
        })
    }

    pub fn trace_id(&self) -> &str {
        ascii(&self.trace_id)
    }

    /// The header value (version 00).
    pub fn header(&self) -> String {
        // Written piece by piece: the webhook stamps one on every event it queues.
        let mut header = String::with_capacity(55);
        for part in [&b"00"[..], &self.trace_id, &self.parent_id, &self.flags] {
            if !header.is_empty() {
                header.push('-');
            }
            header.push_str(ascii(part));
        }
        header
    }

    /// The trace an event carries in its `traceparent` attribute, if well-formed.
    pub fn of_event(event: &CloudEvent) -> Option<TraceParent> {
        event
            .attributes()
            .get(TRACEPARENT)
            .and_then(Value::as_str)
            .and_then(TraceParent::parse)
    }
}

/// `hex` (checked to be hex digits of length `N`) in lower case.
fn lower_hex<const N: usize>(hex: &str) -> Option<[u8; N]> {
    let mut lower: [u8; N] = hex.as_bytes().try_into().ok()?;
    lower.make_ascii_lowercase();
    Some(lower)
}

/// The text of [`TraceParent`]'s parts, which hold only hex digits (checked at parse).
fn ascii(bytes: &[u8]) -> &str {
    debug_assert!(bytes.iter().all(u8::is_ascii_hexdigit), "{bytes:?}");
    std::str::from_utf8(bytes).unwrap_or_default()
}

/// As its header text, not as byte arrays.
impl std::fmt::Debug for TraceParent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("TraceParent").field(&self.header()).finish()
    }
}

/// The ids of one invocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Correlation {
    pub invocation_id: Uuid,
    pub trace: Option<TraceParent>,
}

impl Correlation {
    /// From the invocation's headers (or none): the host's invocation id when it is a GUID (a
    /// new one otherwise), and the trace of a valid `traceparent`.
    pub fn new(invocation_id: Option<&str>, traceparent: Option<&str>) -> Correlation {
        let invocation_id = invocation_id
            .and_then(|id| Uuid::parse_str(id.trim()).ok())
            .unwrap_or_else(Uuid::new_v4);
        Correlation {
            invocation_id,
            trace: traceparent.and_then(TraceParent::parse),
        }
    }

    /// A fresh invocation id and no trace (a queue message in `aos run`, a CLI run).
    pub fn fresh() -> Correlation {
        Correlation::new(None, None)
    }

    /// The trace of the event this invocation handles wins over the invocation's own: it is
    /// the trace the event came in with at the webhook.
    pub fn for_event(mut self, event: &CloudEvent) -> Correlation {
        if let Some(trace) = TraceParent::of_event(event) {
            self.trace = Some(trace);
        }
        self
    }

    pub fn trace_id(&self) -> Option<&str> {
        self.trace.as_ref().map(TraceParent::trace_id)
    }

    /// The `invocation` span. Its level is ERROR so it is enabled whenever any line is logged
    /// (an INFO span would vanish under `AOS_LOG=warn` and take the ids off the WARN lines).
    ///
    /// The trace id, if any, is given at creation rather than recorded after.
    pub fn span(&self, function: &str) -> tracing::Span {
        tracing::error_span!(
            "invocation",
            function,
            invocation_id = %self.invocation_id,
            trace_id = self.trace_id(),
            event_id = Empty,
            org = Empty,
            app = Empty,
            party_id = Empty,
            instance_guid = Empty,
        )
    }
}

/// `event` as the webhook queues it, and its [`MessageText`]: with `trace` added as its
/// `traceparent` attribute, so the queue steps log the same trace id. Unchanged when there is
/// no trace, when the event already carries a valid trace of its own, or when the attribute
/// would make it too large for one queue message. The event as received decides whether it can
/// be queued at all: the text's [`MessageText::queued_size`] is over [`MAX_MESSAGE_TEXT_BYTES`]
/// exactly when the unstamped event's is, so the webhook and catch-up (which stamps nothing)
/// judge an event alike. The webhook writes every event it queues, so the common case (no trace
/// of the event's own) writes it once.
pub fn stamp(mut event: CloudEvent, trace: Option<&TraceParent>) -> (CloudEvent, MessageText) {
    let Some(trace) = trace.filter(|_| TraceParent::of_event(&event).is_none()) else {
        let text = MessageText::new(event.attributes());
        return (event, text);
    };
    let header = Value::String(trace.header());
    let previous = event.set_extension(TRACEPARENT, header.clone());
    let stamped = MessageText::new(event.attributes());
    let stamped_fits = stamped.queued_size() <= MAX_MESSAGE_TEXT_BYTES;
    // A member added lengthens the text, so the event as received fits if the stamped one does.
    // A malformed trace replaced may have been longer than the stamp: measure without it too.
    if previous.is_none() && stamped_fits {
        return (event, stamped);
    }
    match previous {
        Some(previous) => event.set_extension(TRACEPARENT, previous),
        None => event.remove_extension(TRACEPARENT),
    };
    let unstamped = MessageText::new(event.attributes());
    if unstamped.queued_size() <= MAX_MESSAGE_TEXT_BYTES && stamped_fits {
        event.set_extension(TRACEPARENT, header);
        return (event, stamped);
    }
    (event, unstamped)
}

/// Records the queued event's id and trace and its `instance` on the current (`invocation`)
/// span, as both webhook adapters log it.
pub fn record_queued(event: &CloudEvent, instance: &InstanceRef) {
    let span = tracing::Span::current();
    record_event_ids(&span, event);
    record_instance(&span, instance);
}

/// Records the event's id and, when its source names an instance on the app host, the
/// instance on `span`. Event text is untrusted, but a [`CloudEvent`]'s id has no character that
/// would need escaping (it is refused at parse), so it is recorded as it is.
pub fn record_event(span: &tracing::Span, event: &CloudEvent, apps_base_url: &BaseUrl) {
    record_event_ids(span, event);
    if let Ok(instance) = event.instance(apps_base_url) {
        record_instance(span, &instance);
    }
}

/// The event's id and the trace it carries. The id is recorded as it is: a [`CloudEvent`]'s id
/// has no character [`crate::domain::Printable`] would escape (refused at parse).
fn record_event_ids(span: &tracing::Span, event: &CloudEvent) {
    span.record("event_id", event.id());
    if let Some(trace) = TraceParent::of_event(event) {
        span.record("trace_id", trace.trace_id());
    }
}

fn record_instance(span: &tracing::Span, instance: &InstanceRef) {
    span.record("org", instance.org.as_str());
    span.record("app", instance.app.as_str());
    span.record("party_id", instance.party_id.get());
    // As text at hand, not through `Display`: every webhook records it.
    let mut guid = Uuid::encode_buffer();
    let guid = instance.instance_guid.hyphenated().encode_lower(&mut guid);
    span.record("instance_guid", &*guid);
}

tokio::task_local! {
    static CURRENT: Correlation;
}

/// Runs `work` inside `span` with `correlation` as the task's [`current`] ids.
pub async fn scope<F: Future>(correlation: Correlation, span: tracing::Span, work: F) -> F::Output {
    CURRENT.scope(correlation, work.instrument(span)).await
}

/// The ids of the invocation this task runs, if it runs inside [`scope`].
pub fn current() -> Option<Correlation> {
    CURRENT.try_with(Clone::clone).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_a_valid_traceparent_and_refuses_malformed_ones() {
        let trace = TraceParent::parse(VALID).unwrap();
        assert_eq!(trace.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(trace.header(), VALID);
        assert_eq!(
            TraceParent::parse(&VALID.to_uppercase()).unwrap().header(),
            VALID
        );
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e4736\n-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad:?}");
        }
        // A later version may carry more parts.
        assert!(TraceParent::parse(&format!("01{}-x", &VALID[2..])).is_some());
    }

    #[test]
    fn keeps_the_hosts_invocation_id_and_makes_one_otherwise() {
        let id = "7c9e6679-7425-40de-944b-e07fc1f90ae7";
        assert_eq!(
            Correlation::new(Some(id), None).invocation_id.to_string(),
            id
        );
        let made = Correlation::new(Some("not a guid\n"), None).invocation_id;
        assert_ne!(made.to_string(), "not a guid");
    }

    /// The event [`stamp`] queues, checking that the text it gives is that event's.
    fn stamped(correlation: &Correlation, event: CloudEvent) -> CloudEvent {
        let (event, text) = stamp(event, correlation.trace.as_ref());
        assert_eq!(text, MessageText::new(event.attributes()));
        event
    }

    fn event(extra: &[(&str, &str)]) -> CloudEvent {
        let mut value = serde_json::json!({
            "id": "1", "type": "app.instance.process.completed",
            "source": "https://ttd.apps.example/ttd/app/instances/1/2", "specversion": "1.0",
        });
        for (k, v) in extra {
            value[*k] = Value::String((*v).to_string());
        }
        CloudEvent::from_value(value).unwrap()
    }

    #[test]
    fn stamps_the_trace_on_an_event_without_one_and_the_events_own_trace_wins() {
        let correlation = Correlation::new(None, Some(VALID));
        let with_trace = stamped(&correlation, event(&[]));
        assert_eq!(with_trace.attributes()[TRACEPARENT], VALID);
        let own = "00-11111111111111111111111111111111-2222222222222222-00";
        let kept = stamped(&correlation, event(&[(TRACEPARENT, own)]));
        assert_eq!(kept.attributes()[TRACEPARENT], own);
        let handled = Correlation::fresh().for_event(&kept);
        assert_eq!(handled.trace_id(), Some("11111111111111111111111111111111"));
        // No trace: the event stays as received.
        assert_eq!(stamped(&Correlation::fresh(), event(&[])), event(&[]));
    }

    #[test]
    fn an_event_that_would_no_longer_fit_is_not_stamped() {
        let correlation = Correlation::new(None, Some(VALID));
        let base = MessageText::new(event(&[]).attributes()).queued_size();
        let filler = "x".repeat(MAX_MESSAGE_TEXT_BYTES - base - 20);
        let large = event(&[("data", &filler)]);
        assert!(MessageText::new(large.attributes()).queued_size() <= MAX_MESSAGE_TEXT_BYTES);
        assert_eq!(stamped(&correlation, large.clone()), large);
    }

    #[test]
    fn an_event_too_large_for_a_queue_message_stays_too_large_when_the_stamp_would_shorten_it() {
        // A long malformed trace of the event's own: replaced by the 55-character stamp, the
        // event would fit; as received it does not, and that is what decides (catch-up, which
        // stamps nothing, judges it the same way).
        let correlation = Correlation::new(None, Some(VALID));
        let base = MessageText::new(event(&[(TRACEPARENT, "")]).attributes()).queued_size();
        let long = "x".repeat(MAX_MESSAGE_TEXT_BYTES - base + 100);
        let large = event(&[(TRACEPARENT, &long)]);
        assert!(MessageText::new(large.attributes()).queued_size() > MAX_MESSAGE_TEXT_BYTES);
        let (queued, text) = stamp(large.clone(), correlation.trace.as_ref());
        assert!(
            text.queued_size() > MAX_MESSAGE_TEXT_BYTES,
            "{}",
            text.queued_size()
        );
        assert_eq!(queued, large);
        assert_eq!(text, MessageText::new(queued.attributes()));
    }

    #[test]
    fn a_malformed_trace_of_the_events_own_is_replaced_unless_the_stamp_would_not_fit() {
        let correlation = Correlation::new(None, Some(VALID));
        let malformed = event(&[(TRACEPARENT, "not a trace")]);
        assert_eq!(
            stamped(&correlation, malformed).attributes()[TRACEPARENT],
            VALID
        );
        // Too large with the stamp: the event stays exactly as received.
        let base = MessageText::new(event(&[(TRACEPARENT, "x")]).attributes()).queued_size();
        let filler = "x".repeat(MAX_MESSAGE_TEXT_BYTES - base - 20);
        let large = event(&[(TRACEPARENT, "x"), ("data", &filler)]);
        assert!(MessageText::new(large.attributes()).queued_size() <= MAX_MESSAGE_TEXT_BYTES);
        assert_eq!(stamped(&correlation, large.clone()), large);
    }
}
