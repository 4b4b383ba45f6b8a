//! The CloudEvent as Altinn delivers it, and the instance it names.
//!
//! Parse, don't validate: a [`CloudEvent`] value has the four required attributes, none with a
//! control character, whitespace or an invisible character (so `id`, `type` and `source` can be
//! logged and printed as they are, and the `url` crate never gets to drop a TAB, CR or LF from
//! a `source` silently), and an [`InstanceRef`] can only be built from a `source` on the
//! configured app host whose path is exactly `/{org}/{app}/instances/{partyId}/{instanceGuid}`
//! with every segment checked. Every URL and blob path the system builds comes from an
//! `InstanceRef`, never from raw event text. Raw text quoted in an [`EventError`] is escaped
//! and shortened, since errors end up in logs and webhook answers.

use serde_json::{Map, Value};
use url::Url;
use uuid::Uuid;

use super::base_url::BaseUrl;
use super::names::{AppName, OrgName};
use super::printable::needs_escape;

/// The type of Altinn's subscription-validation ping: answered 200, never processed.
pub const VALIDATE_SUBSCRIPTION: &str = "platform.events.validatesubscription";

/// The extension attribute that marks an event made by reconciliation (value `"true"`).
/// CloudEvents allows producers to add extension attributes, and the queue message format
/// allows this product to add its own (design §2.4).
pub const RECONCILED_ATTRIBUTE: &str = "aosreconciled";
/// The extension attribute that marks an event pulled by catch-up from the Events API.
pub const CAUGHT_UP_ATTRIBUTE: &str = "aoscaughtup";

/// Why a CloudEvent or its source was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("body is not valid JSON: {0}")]
    Json(String),
    #[error("body is not a JSON object")]
    NotAnObject,
    #[error("attribute `{0}` is missing or not a non-empty string")]
    MissingAttribute(&'static str),
    #[error("attribute `{name}` contains a control character, whitespace or an invisible character: {}", quoted(.value))]
    Unprintable { name: &'static str, value: String },
    #[error("source {} is not on the configured app host", quoted(.0))]
    ForeignSource(String),
    #[error("source {} is not an instance URL: {reason}", quoted(.url))]
    BadSource { url: String, reason: String },
}

/// Raw event text as an error shows it: quoted with every special character escaped (Rust's
/// `Debug` for strings), and at most [`QUOTED_CHARS`] characters of it.
fn quoted(value: &str) -> String {
    match value.char_indices().nth(QUOTED_CHARS) {
        Some((end, _)) => format!("{:?}…", &value[..end]),
        None => format!("{value:?}"),
    }
}

/// How much of a raw value an error quotes: enough to recognise it, not a 48 KiB echo.
const QUOTED_CHARS: usize = 200;

/// The attributes every CloudEvent must have as non-empty strings without a character of
/// [`needs_escape`] or a space.
const REQUIRED: [&str; 4] = ["id", "type", "source", "specversion"];

/// A CloudEvent (structured JSON mode). Unknown attributes are kept as received, so the queue
/// message is the event exactly as Altinn sent it (the reference system's message format).
#[derive(Clone, Debug, PartialEq)]
pub struct CloudEvent {
    attributes: Map<String, Value>,
}

impl CloudEvent {
    /// Parses a JSON body; only `id`, `type`, `source` and `specversion` are required.
    pub fn parse(body: &[u8]) -> Result<Self, EventError> {
        let value: Value =
            serde_json::from_slice(body).map_err(|e| EventError::Json(e.to_string()))?;
        Self::from_value(value)
    }

    pub fn from_value(value: Value) -> Result<Self, EventError> {
        let Value::Object(attributes) = value else {
            return Err(EventError::NotAnObject);
        };
        let event = CloudEvent { attributes };
        for name in REQUIRED {
            let Some(value) = event.str_attr(name) else {
                return Err(EventError::MissingAttribute(name));
            };
            if value.chars().any(|c| c == ' ' || needs_escape(c)) {
                return Err(EventError::Unprintable {
                    name,
                    value: value.to_string(),
                });
            }
        }
        Ok(event)
    }

    fn str_attr(&self, name: &str) -> Option<&str> {
        self.attributes
            .get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
    }

    pub fn id(&self) -> &str {
        self.str_attr("id").unwrap_or_default()
    }

    pub fn event_type(&self) -> &str {
        self.str_attr("type").unwrap_or_default()
    }

    pub fn source(&self) -> &str {
        self.str_attr("source").unwrap_or_default()
    }

    pub fn is_validation_ping(&self) -> bool {
        self.event_type() == VALIDATE_SUBSCRIPTION
    }

    /// Made by reconciliation ([`RECONCILED_ATTRIBUTE`]).
    pub fn is_reconciled(&self) -> bool {
        self.attributes
            .get(RECONCILED_ATTRIBUTE)
            .and_then(Value::as_str)
            == Some("true")
    }

    /// Made by reconciliation or pulled by catch-up: a request to look at an instance, not a
    /// push announcing new data. The webhook removes both marks from what it receives
    /// ([`Self::without_product_marks`]), so a sender cannot set them.
    pub fn is_synthetic(&self) -> bool {
        self.is_reconciled()
            || self
                .attributes
                .get(CAUGHT_UP_ATTRIBUTE)
                .and_then(Value::as_str)
                == Some("true")
    }

    /// The event as a JSON object: the queue message body.
    pub fn to_json(&self) -> Value {
        Value::Object(self.attributes.clone())
    }

    /// The queue message text: the event as compact JSON, written without copying it into a
    /// `Value` first. (A map of JSON values always serialises; the empty default is never
    /// reached.)
    pub fn message_text(&self) -> String {
        serde_json::to_string(&self.attributes).unwrap_or_default()
    }

    /// Sets extension attribute `name` (e.g. `traceparent`), returning its previous value. The
    /// required attributes are validated at parse and cannot be set this way.
    pub fn set_extension(&mut self, name: &str, value: Value) -> Option<Value> {
        if REQUIRED.contains(&name) {
            debug_assert!(false, "`{name}` is not an extension attribute");
            return None;
        }
        self.attributes.insert(name.to_string(), value)
    }

    /// Removes extension attribute `name`; the required attributes stay.
    pub fn remove_extension(&mut self, name: &str) -> Option<Value> {
        if REQUIRED.contains(&name) {
            return None;
        }
        self.attributes.remove(name)
    }

    /// The attributes as received (what [`CloudEvent::to_json`] wraps), for measuring or
    /// writing the message without a copy.
    pub fn attributes(&self) -> &Map<String, Value> {
        &self.attributes
    }

    /// The instance named by `source`, which must be on the configured app host.
    pub fn instance(&self, apps_base_url: &BaseUrl) -> Result<InstanceRef, EventError> {
        InstanceRef::from_source(self.source(), apps_base_url)
    }

    /// The event without this product's own marks ([`RECONCILED_ATTRIBUTE`],
    /// [`CAUGHT_UP_ATTRIBUTE`]): only reconciliation and catch-up set them, never a sender.
    pub fn without_product_marks(mut self) -> Self {
        self.attributes.remove(RECONCILED_ATTRIBUTE);
        self.attributes.remove(CAUGHT_UP_ATTRIBUTE);
        self
    }

    /// The event with `source` in its normalised spelling, the one rebuilt from the instance it
    /// names (lower-case scheme, host and GUID): what is queued, so every reader sees the same
    /// text for the same instance.
    pub fn with_normalised_source(
        mut self,
        instance: &InstanceRef,
        apps_base_url: &BaseUrl,
    ) -> Self {
        let source = instance.source_url(apps_base_url);
        if self.source() != source {
            self.attributes
                .insert("source".to_string(), Value::String(source));
        }
        self
    }
}

/// An instance owner's party id: a positive decimal number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PartyId(u64);

impl PartyId {
    pub fn parse(value: &str) -> Result<Self, String> {
        if value.is_empty() || value.len() > 19 || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("party id `{value}` is not a decimal number"));
        }
        match value.parse::<u64>() {
            Ok(0) | Err(_) => Err(format!("party id `{value}` is out of range")),
            Ok(n) => Ok(PartyId(n)),
        }
    }
    pub fn get(self) -> u64 {
        self.0
    }
}

impl std::fmt::Display for PartyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Parses a GUID in its canonical hyphenated form only (what Altinn emits).
pub fn parse_guid(value: &str) -> Result<Uuid, String> {
    let canonical = value.len() == 36 && value.chars().filter(|c| *c == '-').count() == 4;
    match Uuid::try_parse(value) {
        Ok(id) if canonical => Ok(id),
        _ => Err(format!("`{value}` is not a GUID")),
    }
}

/// A validated reference to one instance: everything needed to build Altinn URLs and the
/// archive paths, and nothing taken verbatim from untrusted input.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct InstanceRef {
    pub org: OrgName,
    pub app: AppName,
    pub party_id: PartyId,
    pub instance_guid: Uuid,
}

impl InstanceRef {
    /// From an event `source`: `{AppsBaseUrl}{org}/{app}/instances/{partyId}/{guid}` on the same
    /// scheme, host and port as the configured app base URL. Encoded characters, dot segments,
    /// backslashes, credentials, queries and fragments are refused before the URL parser could
    /// normalise them away.
    pub fn from_source(source: &str, apps_base_url: &BaseUrl) -> Result<Self, EventError> {
        let bad = |reason: &str| EventError::BadSource {
            url: source.to_string(),
            reason: reason.to_string(),
        };
        if source.contains(['%', '\\', '?', '#', '@']) || source.contains("/.") {
            return Err(bad("contains encoded, dot or special characters"));
        }
        let parsed;
        let rest = match source.strip_prefix(apps_base_url.as_str()) {
            // The source spelled as the configured base URL serialises (every event Altinn
            // sends): same origin (`BaseUrl` text has no query or fragment and ends with `/`),
            // and what follows is the path below the base. The segments are checked below as
            // strictly as on the parsed path, and text they accept is a path the URL parser
            // returns unchanged. So for every source `CloudEvent` accepts (no spaces or control
            // characters), skipping the parser changes no answer; a raw tab or line break, which
            // the parser would drop, is refused on this path only.
            Some(rest) => rest,
            None => {
                parsed = Url::parse(source).map_err(|e| bad(&e.to_string()))?;
                if !apps_base_url.same_origin(&parsed) {
                    return Err(EventError::ForeignSource(source.to_string()));
                }
                parsed
                    .path()
                    .strip_prefix(apps_base_url.url().path())
                    .ok_or_else(|| bad("path is outside the app base URL"))?
            }
        };
        let mut segments = rest.split('/');
        let (Some(org), Some(app), Some("instances"), Some(party), Some(guid), None) = (
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
        ) else {
            return Err(bad(
                "path is not /{org}/{app}/instances/{partyId}/{instanceGuid}",
            ));
        };
        Ok(InstanceRef {
            org: OrgName::parse(org).map_err(|e| bad(&format!("org: {e}")))?,
            app: AppName::parse(app).map_err(|e| bad(&format!("app: {e}")))?,
            party_id: PartyId::parse(party).map_err(|e| bad(&e))?,
            instance_guid: parse_guid(guid).map_err(|e| bad(&e))?,
        })
    }

    /// Altinn's instance id, `{partyId}/{instanceGuid}`.
    pub fn instance_id(&self) -> String {
        format!("{}/{}", self.party_id, self.instance_guid)
    }

    /// `{org}/{app}`, Altinn's app id.
    pub fn app_id(&self) -> String {
        format!("{}/{}", self.org.as_str(), self.app.as_str())
    }

    /// The app-host URL of the instance, as it appears in an event `source`. Written, not
    /// joined by the URL parser: the base URL's text ends with `/` and every part is validated
    /// (names, digits, a GUID), so the text is already what the parser would make of it.
    pub fn source_url(&self, apps_base_url: &BaseUrl) -> String {
        format!("{}{self}", apps_base_url.as_str())
    }
}

/// `{org}/{app}/instances/{partyId}/{instanceGuid}`: [`InstanceRef::app_id`], `instances` and
/// [`InstanceRef::instance_id`], written without building either (every webhook writes its
/// event's normalised source with it).
impl std::fmt::Display for InstanceRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}/instances/{}/{}",
            self.org.as_str(),
            self.app.as_str(),
            self.party_id,
            self.instance_guid
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn apps() -> BaseUrl {
        BaseUrl::parse("https://ttd.apps.at22.altinn.cloud/").unwrap()
    }

    use crate::test_fixtures::altinn as fixture;

    #[test]
    fn parses_the_completed_event_fixture() {
        let event =
            CloudEvent::parse(&fixture("event-app-instance-process-completed.at22.json")).unwrap();
        assert_eq!(event.id(), "b4d1d548-1280-464c-a8da-dee9840909de");
        assert_eq!(event.event_type(), "app.instance.process.completed");
        let instance = event.instance(&apps()).unwrap();
        assert_eq!(instance.org.as_str(), "ttd");
        assert_eq!(instance.app.as_str(), "apps-test");
        assert_eq!(instance.party_id.get(), 50019855);
        assert_eq!(
            instance.instance_id(),
            "50019855/6b3323c8-7baf-4612-b8a6-5eac407f4d0c"
        );
        assert_eq!(instance.source_url(&apps()).as_str(), event.source());
    }

    #[test]
    fn parses_validation_and_legacy_fixtures() {
        let ping = CloudEvent::parse(&fixture("event-platform-validatesubscription.json")).unwrap();
        assert!(ping.is_validation_ping());
        let legacy = CloudEvent::parse(&fixture(
            "event-app-instance-created.legacy-resource-format.json",
        ))
        .unwrap();
        assert_eq!(legacy.event_type(), "app.instance.created");
    }

    #[test]
    fn the_message_text_is_the_events_json() {
        let event =
            CloudEvent::parse(&fixture("event-app-instance-process-completed.at22.json")).unwrap();
        assert_eq!(event.message_text(), event.to_json().to_string());
    }

    #[test]
    fn unknown_attributes_are_kept() {
        let event = CloudEvent::parse(
            br#"{"id":"1","type":"t","source":"s","specversion":"1.0","x-ext":{"a":1}}"#,
        )
        .unwrap();
        assert_eq!(event.to_json()["x-ext"]["a"], 1);
    }

    #[test]
    fn required_attributes_are_enforced() {
        for (body, missing) in [
            (r#"{"type":"t","source":"s","specversion":"1.0"}"#, "id"),
            (r#"{"id":"1","source":"s","specversion":"1.0"}"#, "type"),
            (r#"{"id":"1","type":"t","specversion":"1.0"}"#, "source"),
            (r#"{"id":"1","type":"t","source":"s"}"#, "specversion"),
            (
                r#"{"id":7,"type":"t","source":"s","specversion":"1.0"}"#,
                "id",
            ),
            (
                r#"{"id":"  ","type":"t","source":"s","specversion":"1.0"}"#,
                "id",
            ),
        ] {
            assert_eq!(
                CloudEvent::parse(body.as_bytes()),
                Err(EventError::MissingAttribute(missing)),
                "{body}"
            );
        }
        assert!(matches!(
            CloudEvent::parse(b"[1]"),
            Err(EventError::NotAnObject)
        ));
        assert!(matches!(CloudEvent::parse(b"{"), Err(EventError::Json(_))));
    }

    #[test]
    fn hostile_sources_are_refused() {
        let g = "6b3323c8-7baf-4612-b8a6-5eac407f4d0c";
        let refused = [
            format!("https://evil.example/ttd/app/instances/1/{g}"),
            format!("https://ttd.apps.at22.altinn.cloud:8443/ttd/app/instances/1/{g}"),
            format!("http://ttd.apps.at22.altinn.cloud/ttd/app/instances/1/{g}"),
            format!("https://ttd.apps.at22.altinn.cloud/ttd/app/instances/1/../../x/{g}"),
            format!("https://ttd.apps.at22.altinn.cloud/ttd/app/instances/1%2F2/{g}"),
            format!("https://ttd.apps.at22.altinn.cloud/ttd/app/instances/abc/{g}"),
            format!("https://ttd.apps.at22.altinn.cloud/ttd/app/instances/0/{g}"),
            "https://ttd.apps.at22.altinn.cloud/ttd/app/instances/1/not-a-guid".to_string(),
            format!("https://ttd.apps.at22.altinn.cloud/TTD/app/instances/1/{g}"),
            format!("https://ttd.apps.at22.altinn.cloud/ttd/app_x/instances/1/{g}"),
            format!("https://ttd.apps.at22.altinn.cloud/ttd/app/instances/1/{g}/data"),
            format!("https://ttd.apps.at22.altinn.cloud/ttd/app/instances/1/{g}?x=1"),
            format!("https://user@ttd.apps.at22.altinn.cloud/ttd/app/instances/1/{g}"),
            format!("https://ttd.apps.at22.altinn.cloud/ttd/app/instance/1/{g}"),
        ];
        for source in refused {
            assert!(
                InstanceRef::from_source(&source, &apps()).is_err(),
                "accepted {source}"
            );
        }
        let ok = format!("https://ttd.apps.at22.altinn.cloud/ttd/app-2/instances/12/{g}");
        assert!(InstanceRef::from_source(&ok, &apps()).is_ok());
    }

    #[test]
    fn attributes_with_control_characters_or_whitespace_are_refused() {
        let g = "6b3323c8-7baf-4612-b8a6-5eac407f4d0c";
        let good = json!({
            "id": "1",
            "type": "app.instance.process.completed",
            "source": format!("https://ttd.apps.at22.altinn.cloud/ttd/app/instances/1/{g}"),
            "specversion": "1.0",
        });
        assert!(CloudEvent::from_value(good.clone()).is_ok());
        for bad in [
            "\t", "\n", "\r", " ", "\u{1b}", "\u{85}", "\u{a0}", "\u{2028}", "\u{202e}",
        ] {
            for name in REQUIRED {
                let mut event = good.clone();
                let value = event[name].as_str().unwrap();
                // The `url` crate would drop a TAB, CR or LF inside the source silently.
                let hostile = format!("{}{bad}{}", &value[..1], &value[1..]);
                event[name] = json!(hostile);
                let error = CloudEvent::from_value(event).unwrap_err();
                assert_eq!(
                    error,
                    EventError::Unprintable {
                        name,
                        value: hostile.clone()
                    },
                    "{name} {bad:?}"
                );
                let shown = error.to_string();
                assert!(!shown.chars().any(needs_escape), "{shown:?}");
            }
        }
    }

    #[test]
    fn errors_quote_raw_text_escaped_and_shortened() {
        let long = format!("https://evil.example/\n{}", "x".repeat(100_000));
        let shown = EventError::ForeignSource(long).to_string();
        assert!(shown.contains("\\n"), "{shown}");
        assert!(shown.len() < 400, "{}", shown.len());
    }

    #[test]
    fn the_normalised_source_is_rebuilt_from_the_instance() {
        let g = "6b3323c8-7baf-4612-b8a6-5eac407f4d0c";
        let event = CloudEvent::from_value(json!({
            "id": "1",
            "type": "app.instance.process.completed",
            "source": format!("HTTPS://TTD.apps.at22.altinn.cloud:443/ttd/app/instances/01/{}", g.to_uppercase()),
            "specversion": "1.0",
            "x-ext": 1,
        }))
        .unwrap();
        let instance = event.instance(&apps()).unwrap();
        let normalised = event.clone().with_normalised_source(&instance, &apps());
        assert_eq!(
            normalised.source(),
            format!("https://ttd.apps.at22.altinn.cloud/ttd/app/instances/1/{g}")
        );
        assert_eq!(normalised.id(), event.id());
        assert_eq!(normalised.to_json()["x-ext"], 1);
    }

    #[test]
    fn the_written_source_url_is_what_the_url_parser_makes_of_it() {
        let guid = Uuid::parse_str("6b3323c8-7baf-4612-b8a6-5eac407f4d0c").unwrap();
        for base in [
            "https://ttd.apps.at22.altinn.cloud",
            "http://127.0.0.1:5005/apps",
            "https://EXAMPLE.no:443/a/b/",
            "http://[::1]:8080/",
        ] {
            let base = BaseUrl::parse(base).unwrap();
            let instance = InstanceRef {
                org: OrgName::parse("ttd").unwrap(),
                app: AppName::parse("app-2").unwrap(),
                party_id: PartyId::parse("0012").unwrap(),
                instance_guid: guid,
            };
            assert_eq!(
                instance.to_string(),
                format!("{}/instances/{}", instance.app_id(), instance.instance_id())
            );
            let written = instance.source_url(&base);
            assert_eq!(written, base.join(&instance.to_string()).as_str());
            assert_eq!(written, Url::parse(&written).unwrap().as_str());
            assert_eq!(InstanceRef::from_source(&written, &base).unwrap(), instance);
        }
    }

    /// A source spelled as the base URL serialises is read without the URL parser; any other
    /// spelling of the same origin is parsed and names the same instance. Text the parser would
    /// have quietly dropped (a tab inside a segment) is refused on the unparsed path.
    #[test]
    fn a_source_in_another_spelling_names_the_same_instance() {
        let g = "6b3323c8-7baf-4612-b8a6-5eac407f4d0c";
        let canonical = format!("https://ttd.apps.at22.altinn.cloud/ttd/app/instances/12/{g}");
        let expected = InstanceRef::from_source(&canonical, &apps()).unwrap();
        for spelling in [
            format!("HTTPS://TTD.apps.at22.altinn.cloud/ttd/app/instances/12/{g}"),
            format!("https://ttd.apps.at22.altinn.cloud:443/ttd/app/instances/012/{g}"),
            format!(
                "https://ttd.apps.at22.altinn.cloud/ttd/app/instances/12/{}",
                g.to_uppercase()
            ),
        ] {
            assert_eq!(
                InstanceRef::from_source(&spelling, &apps()),
                Ok(expected.clone())
            );
        }
        let tab = format!("https://ttd.apps.at22.altinn.cloud/ttd/a\tpp/instances/12/{g}");
        assert!(InstanceRef::from_source(&tab, &apps()).is_err());
    }

    #[test]
    fn party_ids_are_positive_decimals() {
        assert!(PartyId::parse("00012").is_ok());
        assert!(PartyId::parse("-1").is_err());
        assert!(PartyId::parse("99999999999999999999").is_err());
    }
}
