//! A queue message's text, and its size in the form the Functions host writes it.
//!
//! One event is queued as text in two forms: compact JSON when `aos run` or catch-up writes
//! it, and the host's text of a JSON output when the webhook runs under the Functions host
//! (`JObject.ToString()`: two-space indentation, `\r\n` line ends on Windows, U+0085, U+2028
//! and U+2029 written as `\uXXXX`). The host's form is never the shorter, so it decides whether
//! an event fits one message ([`super::MAX_MESSAGE_TEXT_BYTES`]), in both runtimes alike.
//!
//! The webhook writes every event it queues once, as [`MessageText`]: the compact text, with
//! the host's size tallied while it is written ([`HostSize`]). The same text is then the
//! message `aos run` sends and the output the Functions adapter hands the host, so the event is
//! not serialised a second time (docs/benchmarks.md, "Ingest on one handler core").

use std::io;

use serde::Serialize;
use serde_json::ser::{CompactFormatter, Formatter};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// An event's queue message as compact JSON text, and the size of the text the Functions host
/// writes for it ([`MessageText::queued_size`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageText {
    /// Always one JSON object, as serde_json writes it: [`MessageText::into_raw`] relies on it.
    text: String,
    queued_size: usize,
}

impl MessageText {
    /// Writes an event's attributes as compact JSON, tallying the host's size as it goes.
    pub fn new(attributes: &Map<String, Value>) -> MessageText {
        let mut text = Vec::with_capacity(TEXT_CAPACITY);
        let mut host = HostSize::default();
        let mut serializer = serde_json::Serializer::with_formatter(&mut text, &mut host);
        // Writing a map of JSON values into memory cannot fail, and what serde_json writes is
        // UTF-8. Were either ever not so, the message is an empty object that fits nowhere, so
        // it is refused rather than queued.
        match (
            attributes.serialize(&mut serializer),
            String::from_utf8(text),
        ) {
            (Ok(()), Ok(text)) => MessageText {
                queued_size: text.len() + host.added,
                text,
            },
            _ => MessageText {
                text: "{}".to_string(),
                queued_size: usize::MAX,
            },
        }
    }

    /// The compact JSON text: what `aos run` puts on the queue.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The size of the host's text of this message, the larger of its two queued forms.
    pub fn queued_size(&self) -> usize {
        self.queued_size
    }

    /// The text as a JSON value written verbatim into the host's invocation response, without
    /// parsing it again (a validating parse was 2 % of a webhook's instructions).
    pub fn into_raw(self) -> Box<RawValue> {
        // SAFETY: `text` is one JSON object exactly as serde_json's serializer wrote it (or
        // `{}`), with no whitespace around it: what `from_string_unchecked` requires. Debug
        // builds (every test) parse it again to check.
        unsafe { RawValue::from_string_unchecked(self.text) }
    }
}

/// The room an event's text gets from the start: an Altinn CloudEvent is under 1 KiB.
const TEXT_CAPACITY: usize = 1024;

/// Writes compact JSON and tallies the bytes the host's text has beyond it: serde_json's
/// `PrettyFormatter` hook for hook (a line break and the indentation before each member or
/// element and before the bracket closing a non-empty one, a space after each colon), with
/// `\r\n` line breaks, and the longer escapes of U+0085, U+2028 and U+2029.
#[derive(Default)]
struct HostSize {
    added: usize,
    depth: usize,
    has_value: bool,
}

impl HostSize {
    /// A line break (`\r\n`) and the indentation of the current depth.
    fn new_line(&mut self) {
        self.added += 2 + 2 * self.depth;
    }

    fn open(&mut self) {
        self.depth += 1;
        self.has_value = false;
    }

    fn close(&mut self) {
        self.depth = self.depth.saturating_sub(1);
        if self.has_value {
            self.new_line();
        }
    }
}

impl Formatter for &mut HostSize {
    fn begin_array<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.open();
        CompactFormatter.begin_array(writer)
    }

    fn end_array<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.close();
        CompactFormatter.end_array(writer)
    }

    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.new_line();
        CompactFormatter.begin_array_value(writer, first)
    }

    fn end_array_value<W: ?Sized + io::Write>(&mut self, _writer: &mut W) -> io::Result<()> {
        self.has_value = true;
        Ok(())
    }

    fn begin_object<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.open();
        CompactFormatter.begin_object(writer)
    }

    fn end_object<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.close();
        CompactFormatter.end_object(writer)
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.new_line();
        CompactFormatter.begin_object_key(writer, first)
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.added += 1;
        CompactFormatter.begin_object_value(writer)
    }

    fn end_object_value<W: ?Sized + io::Write>(&mut self, _writer: &mut W) -> io::Result<()> {
        self.has_value = true;
        Ok(())
    }

    /// Plain string content (serde_json escapes only `"`, `\` and C0 controls, which never
    /// reach here). The host writes U+0085, U+2028 and U+2029 as 6-byte `\uXXXX` escapes.
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        if !fragment.is_ascii() {
            for c in fragment.chars() {
                self.added += match c {
                    '\u{85}' => 6 - 2,
                    '\u{2028}' | '\u{2029}' => 6 - 3,
                    _ => 0,
                };
            }
        }
        writer.write_all(fragment.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    /// The host's text of `message`, built rather than counted: the oracle of the tally.
    fn host_text(message: &Map<String, Value>) -> String {
        serde_json::to_string_pretty(message)
            .unwrap()
            .replace('\n', "\r\n")
            .replace('\u{85}', "\\u0085")
            .replace('\u{2028}', "\\u2028")
            .replace('\u{2029}', "\\u2029")
    }

    #[test]
    fn a_message_is_measured_as_the_larger_of_its_queued_forms() {
        let message = json!({ "id": "1", "data": { "a": "x\u{2028}y\u{85}", "b": [] } });
        let message = message.as_object().unwrap();
        let text = MessageText::new(message);
        assert_eq!(text.as_str(), serde_json::to_string(message).unwrap());
        assert_eq!(text.queued_size(), host_text(message).len());
        assert!(text.queued_size() > text.as_str().len());
    }

    #[test]
    fn the_text_is_written_verbatim_into_the_invocation_response() {
        let message = json!({ "id": "1", "source": "https://a/b" });
        let raw = MessageText::new(message.as_object().unwrap()).into_raw();
        assert_eq!(
            serde_json::to_string(&json!({ "inbound": raw })).unwrap(),
            format!(r#"{{"inbound":{message}}}"#)
        );
    }

    /// Texts with the characters the host escapes differently and the ones serde_json escapes.
    const TEXT: &str = "[a\"\\\\\n\t\u{1}\u{85}\u{2028}\u{2029}é€😀]{0,6}";

    /// Any JSON value: nested objects and arrays, empty ones, and strings with the characters
    /// the host escapes differently and the ones serde_json escapes.
    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            TEXT.prop_map(Value::from),
        ];
        leaf.prop_recursive(5, 48, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec((TEXT, inner), 0..6)
                    .prop_map(|members| Value::Object(members.into_iter().collect())),
            ]
        })
    }

    /// An event's attributes: names and values as in [`json_value`].
    fn attributes() -> impl Strategy<Value = Map<String, Value>> {
        prop::collection::vec((TEXT, json_value()), 0..8)
            .prop_map(|members| members.into_iter().collect())
    }

    proptest! {
        #[test]
        fn the_tally_is_the_length_of_the_hosts_text(message in attributes()) {
            let text = MessageText::new(&message);
            prop_assert_eq!(text.as_str(), serde_json::to_string(&message).unwrap());
            prop_assert_eq!(text.queued_size(), host_text(&message).len());
        }
    }
}
