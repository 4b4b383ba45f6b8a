//! Logs: where they go, in which shape, at which severity.
//!
//! - **Streams.** The runtimes (`aos serve`, `aos run`) write INFO and DEBUG lines to stdout
//!   and WARN and ERROR lines to stderr: the Functions host records handler stdout lines at
//!   Information and stderr lines at Error, or Warning when the line contains "warn" in any
//!   case (its `WorkerProcess.ParseErrorMessageAndLog`, with `UseStdErrorStreamForErrorsOnly`,
//!   which is on for custom handlers). A WARN line's `"level":"WARN"` makes it Warning, an
//!   ERROR line is Error — unless its text contains "warn" somewhere, then it is Warning too.
//!   Every other command writes all its log lines to stderr: its stdout is data.
//! - **Shape.** JSON lines under the Functions host or with `AOS_LOG_FORMAT=json`
//!   ([`CorrelatedJson`]: the event's fields and every enclosing span's fields, so the
//!   `invocation` span's ids — `crate::correlation` — are on each line); human lines otherwise.
//!   A span's fields are kept as JSON members appended as they are recorded ([`SpanFields`]) and
//!   parsed only when a line is written: most invocations write none.
//! - **Colour** only when every stream the logs go to is a terminal, and never with a
//!   non-empty `NO_COLOR` (<https://no-color.org>).
//! - **Redaction.** Every formatted line passes [`crate::redact`] on its way out: whatever a
//!   field, a message or a dependency's own log carried, no credential reaches a stream.

use std::io::IsTerminal;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::writer::MakeWriterExt;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

use crate::redact::RedactingWriter;

/// Which streams log lines go to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Streams {
    /// INFO/DEBUG/TRACE on stdout, WARN/ERROR on stderr (the runtimes: the host maps the
    /// stream to a severity).
    BySeverity,
    /// Everything on stderr (commands whose stdout is data).
    Stderr,
}

/// Sets up logging for the process. `level` is the default for this crate; `AOS_LOG` (an
/// `EnvFilter`) overrides everything.
pub fn init(level: &str, streams: Streams) {
    let default = format!("{level},typespec_client_core=warn,azure_core=warn,azure_identity=warn");
    let filter = EnvFilter::try_from_env("AOS_LOG").unwrap_or_else(|_| EnvFilter::new(&default));
    let json = std::env::var("AOS_LOG_FORMAT")
        .map(|v| v == "json")
        .unwrap_or(false)
        || std::env::var_os("FUNCTIONS_CUSTOMHANDLER_PORT").is_some();
    // Colour codes only on a terminal (and never with `NO_COLOR`): in a pipe or a log store
    // they are noise, and they would split `name=value` pairs the redaction looks for.
    let terminal = match streams {
        Streams::BySeverity => std::io::stdout().is_terminal() && std::io::stderr().is_terminal(),
        Streams::Stderr => std::io::stderr().is_terminal(),
    };
    let ansi = terminal && no_color_unset(std::env::var_os("NO_COLOR"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi);
    match (streams, json) {
        (Streams::BySeverity, true) => builder
            .fmt_fields(SpanFields)
            .event_format(CorrelatedJson)
            .with_writer(by_severity())
            .init(),
        (Streams::BySeverity, false) => builder.with_writer(by_severity()).init(),
        (Streams::Stderr, true) => builder
            .fmt_fields(SpanFields)
            .event_format(CorrelatedJson)
            .with_writer(RedactingWriter(std::io::stderr))
            .init(),
        (Streams::Stderr, false) => builder.with_writer(RedactingWriter(std::io::stderr)).init(),
    }
}

/// WARN and ERROR to stderr, the rest to stdout; both redacted.
fn by_severity() -> impl for<'a> tracing_subscriber::fmt::MakeWriter<'a> + Send + Sync + 'static {
    RedactingWriter(std::io::stderr)
        .with_max_level(Level::WARN)
        .or_else(RedactingWriter(std::io::stdout))
}

/// `NO_COLOR` counts only when set to a non-empty value.
fn no_color_unset(value: Option<std::ffi::OsString>) -> bool {
    value.is_none_or(|v| v.is_empty())
}

/// One JSON object per line: `timestamp`, `level`, `target`, the event's fields (`message`
/// among them) and the fields of every span the event is in, outermost first; an event field
/// wins over a span field of the same name. tracing-subscriber's own JSON format nests span
/// fields under `span`/`spans`; flat fields keep queries simple (`message.event_id` after
/// `parse_json` in KQL).
pub struct CorrelatedJson;

impl<S> FormatEvent<S, SpanFields> for CorrelatedJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, SpanFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let metadata = event.metadata();
        let mut line = Map::new();
        let now = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        line.insert("timestamp".into(), Value::String(now));
        line.insert("level".into(), Value::String(metadata.level().to_string()));
        event.record(&mut JsonVisitor(&mut line));
        line.insert("target".into(), Value::String(metadata.target().into()));
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                let Some(fields) = extensions.get::<FormattedFields<SpanFields>>() else {
                    continue;
                };
                for (name, value) in SpanFields::parse(fields) {
                    line.entry(name).or_insert(value);
                }
            }
        }
        writeln!(writer, "{}", Value::Object(line))
    }
}

/// A span's fields as JSON object members, each written as `,"name":value` and appended as it
/// is recorded (tracing-subscriber's `add_fields` appends). A field recorded twice appears twice;
/// [`SpanFields::parse`] keeps the later value, as a re-recorded field should read.
///
/// Why not tracing-subscriber's `JsonFields`: it re-parses and re-serialises the span's whole
/// object on every `Span::record`, and a webhook invocation records up to seven fields after
/// the span is made — a tenth of the handler's CPU per invocation in the ingest profile
/// (`docs/benchmarks/ingest.md`), spent on lines that are mostly never written.
pub struct SpanFields;

impl SpanFields {
    /// The members as a map, in the order recorded (a later value of a name wins).
    fn parse(fields: &str) -> Map<String, Value> {
        let members = fields.trim_start().strip_prefix(',').unwrap_or(fields);
        match serde_json::from_str::<Value>(&format!("{{{members}}}")) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        }
    }
}

impl<'writer> FormatFields<'writer> for SpanFields {
    fn format_fields<R: RecordFields>(
        &self,
        writer: Writer<'writer>,
        fields: R,
    ) -> std::fmt::Result {
        let mut members = MemberWriter {
            writer,
            result: Ok(()),
        };
        fields.record(&mut members);
        members.result
    }

    /// Appends the recorded fields, in room reserved once: a webhook's span grows from about
    /// 130 to about 330 bytes in five `Span::record` calls, and growing the buffer by doubling
    /// took a dozen reallocations per invocation (`docs/benchmarks.md`, "Instructions per
    /// invocation"). No separator is added (the default adds a space): each member starts with
    /// its own `,`.
    fn add_fields(
        &self,
        current: &'writer mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> std::fmt::Result {
        let fields_text = &mut current.fields;
        if fields_text.capacity() < SPAN_FIELDS_CAPACITY {
            fields_text.reserve_exact(SPAN_FIELDS_CAPACITY - fields_text.len());
        }
        self.format_fields(current.as_writer(), fields)
    }
}

/// The room a span's fields get when the first is recorded after the span is made
/// ([`SpanFields::add_fields`]): the `invocation` span's eight fields with room to spare.
const SPAN_FIELDS_CAPACITY: usize = 512;

/// Writes each field it visits as `,"name":value`, straight into the span's buffer: no field
/// is copied into a `Value` or a `String` on the way (a webhook records seven fields; the
/// copies were a tenth of the recording in the ingest profile).
struct MemberWriter<'writer> {
    writer: Writer<'writer>,
    result: std::fmt::Result,
}

impl MemberWriter<'_> {
    /// `,"name":` followed by what `value` writes.
    fn member(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'_>) -> std::fmt::Result) {
        if self.result.is_ok() {
            self.result = write_member(&mut self.writer, field.name(), value);
        }
    }

    /// A float as JSON writes it (one that is not finite becomes `null`). Integers and booleans
    /// are written as Rust writes them, which is their JSON text.
    fn float(&mut self, field: &Field, value: f64) {
        let value = Value::from(value);
        self.member(field, |writer| write!(writer, "{value}"));
    }

    fn text(&mut self, field: &Field, text: std::fmt::Arguments<'_>) {
        self.member(field, |writer| write_json_string(writer, text));
    }

    /// [`MemberWriter::text`] for a value that is text already, without `fmt`'s machinery (most
    /// of a span's fields).
    fn str(&mut self, field: &Field, text: &str) {
        self.member(field, |writer| write_json_str(writer, text));
    }
}

impl Visit for MemberWriter<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.float(field, value);
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.member(field, |writer| write!(writer, "{value}"));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.member(field, |writer| write!(writer, "{value}"));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.member(field, |writer| write!(writer, "{value}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.str(field, value);
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.text(field, format_args!("{value}"));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.text(field, format_args!("{value:?}"));
    }
}

fn write_member(
    writer: &mut Writer<'_>,
    name: &str,
    value: impl FnOnce(&mut Writer<'_>) -> std::fmt::Result,
) -> std::fmt::Result {
    writer.write_str(",\"")?;
    std::fmt::Write::write_str(&mut JsonEscaping(writer), name)?;
    writer.write_str("\":")?;
    value(writer)
}

/// Writes `text` as a JSON string: quoted, with `"`, `\` and the control characters escaped
/// as serde_json escapes them, so [`SpanFields::parse`] reads back exactly `text`.
fn write_json_string(
    writer: &mut impl std::fmt::Write,
    text: std::fmt::Arguments<'_>,
) -> std::fmt::Result {
    writer.write_char('"')?;
    // Closed even when the value's own formatting fails midway, so the span's members stay
    // valid JSON (tracing-subscriber ignores the error and keeps the buffer).
    let written = std::fmt::Write::write_fmt(&mut JsonEscaping(writer), text);
    writer.write_char('"')?;
    written
}

/// [`write_json_string`] for text at hand.
fn write_json_str(writer: &mut impl std::fmt::Write, text: &str) -> std::fmt::Result {
    writer.write_char('"')?;
    let written = std::fmt::Write::write_str(&mut JsonEscaping(writer), text);
    writer.write_char('"')?;
    written
}

/// A `fmt::Write` that JSON-escapes what is written through it.
struct JsonEscaping<'a, W>(&'a mut W);

impl<W: std::fmt::Write> std::fmt::Write for JsonEscaping<'_, W> {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        // Most text needs no escape: checked first, in a loop without an early exit, and then
        // written whole (the byte-by-byte loop below was 4 % of the webhook's instructions).
        let plain = !text.bytes().fold(false, |escape, b| {
            escape | (b == b'"') | (b == b'\\') | (b < 0x20)
        });
        if plain {
            return self.0.write_str(text);
        }
        let mut plain_from = 0;
        for (at, byte) in text.bytes().enumerate() {
            let escape = match byte {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0x08 => "\\b",
                0x0c => "\\f",
                0x00..=0x1f => "",
                _ => continue,
            };
            // Every escaped byte is ASCII, so `at` is on a character boundary.
            self.0.write_str(&text[plain_from..at])?;
            plain_from = at + 1;
            if escape.is_empty() {
                write!(self.0, "\\u{byte:04x}")?;
            } else {
                self.0.write_str(escape)?;
            }
        }
        self.0.write_str(&text[plain_from..])
    }
}

/// Collects an event's fields as JSON values.
struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for JsonVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0
            .insert(field.name().into(), Value::String(value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().into(), Value::String(format!("{value:?}")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_color_counts_only_when_non_empty() {
        assert!(no_color_unset(None));
        assert!(no_color_unset(Some("".into())));
        assert!(!no_color_unset(Some("1".into())));
    }

    /// Span fields are escaped as they are written; parsing them back gives the text recorded,
    /// whatever characters it holds and however it was recorded (`str`, `Display`, `Debug`).
    #[test]
    fn span_fields_read_back_exactly_as_recorded() {
        let text: String = (0u8..0x80)
            .map(char::from)
            .chain("é\u{2028}😀".chars())
            .collect();
        let mut buffer = String::new();
        let mut members = MemberWriter {
            writer: Writer::new(&mut buffer),
            result: Ok(()),
        };
        // Fields come from a span's metadata, which exists only under a subscriber.
        let span = tracing::subscriber::with_default(tracing_subscriber::registry(), || {
            tracing::info_span!("t", a = 1, b = 1, c = 1, d = 1, e = 1, f = 1, g = 1)
        });
        let field = |name| span.field(name).unwrap();
        members.record_str(&field("a"), &text);
        members.record_debug(&field("b"), &tracing::field::display(&text));
        members.record_debug(&field("c"), &text);
        members.record_f64(&field("d"), f64::NAN);
        members.record_i64(&field("e"), -7);
        members.record_u64(&field("f"), u64::MAX);
        members.record_bool(&field("g"), true);
        assert_eq!(members.result, Ok(()));
        let parsed = SpanFields::parse(&buffer);
        assert_eq!(parsed["a"], text.as_str());
        assert_eq!(parsed["b"], text.as_str());
        assert_eq!(parsed["c"], format!("{text:?}").as_str());
        assert_eq!(parsed["d"], Value::Null);
        assert_eq!(parsed["e"], -7);
        assert_eq!(parsed["f"], u64::MAX);
        assert_eq!(parsed["g"], true);
    }

    /// A field whose own formatting fails midway leaves a closed string, so the span's other
    /// fields still reach its lines.
    #[test]
    fn a_field_that_fails_to_format_keeps_the_other_fields_readable() {
        struct Failing;
        impl std::fmt::Debug for Failing {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("par")?;
                Err(std::fmt::Error)
            }
        }
        let mut buffer = String::new();
        let mut members = MemberWriter {
            writer: Writer::new(&mut buffer),
            result: Ok(()),
        };
        let span = tracing::subscriber::with_default(tracing_subscriber::registry(), || {
            tracing::info_span!("t", a = 1, b = 1)
        });
        members.record_str(&span.field("a").unwrap(), "kept");
        members.record_debug(&span.field("b").unwrap(), &Failing);
        let parsed = SpanFields::parse(&buffer);
        assert_eq!(parsed["a"], "kept", "{buffer}");
        assert_eq!(parsed["b"], "par", "{buffer}");
    }

    #[test]
    fn json_lines_carry_the_fields_of_every_enclosing_span() {
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Buffer(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buffer {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(SpanFields)
            .event_format(CorrelatedJson)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::error_span!(
                "invocation",
                invocation_id = "abc",
                event_id = tracing::field::Empty,
                trace_id = tracing::field::Empty,
                party_id = tracing::field::Empty,
            );
            let _entered = span.enter();
            span.record("event_id", "e-1");
            span.record("trace_id", "first");
            span.record("party_id", 50_019_855_u64);
            // Recorded again: the later value is the one on the line.
            span.record("trace_id", "second \"quoted\"\n");
            let inner = tracing::info_span!("step", step = "outer", attempt = 2);
            let _inner = inner.enter();
            tracing::info!(step = "process", "instance archived");
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let line: Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(line["message"], "instance archived");
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["invocation_id"], "abc");
        assert_eq!(line["event_id"], "e-1");
        assert_eq!(line["trace_id"], "second \"quoted\"\n");
        assert_eq!(line["party_id"], 50_019_855);
        assert_eq!(line["attempt"], 2);
        // An event field wins over a span field of the same name.
        assert_eq!(line["step"], "process");
    }
}
