//! The custom-handler payload codec: what the Functions host sends, and what it accepts back.
//!
//! The host's real wire format differs from the documentation's examples (see
//! `docs/specs/functions-custom-handler.md` §3–4): queue message text arrives *double* JSON-encoded
//! (`"\"{\\\"id\\\":…}\""`), `DequeueCount` is a string, and the HTTP trigger request is an
//! object whose `Body` is the raw text. Responses must be 2xx with a non-empty JSON body to
//! count as success; queue outputs are returned as JSON objects because the host base64-decodes
//! string outputs that happen to be valid base64.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::redact::redact;

/// An invocation request did not have the shape the host sends.
#[derive(Debug, thiserror::Error)]
#[error("invocation request: {0}")]
pub struct InvocationError(pub String);

/// `{"Data": {...}, "Metadata": {...}}` as the host POSTs it.
#[derive(Debug, Default, Deserialize)]
pub struct InvocationRequest {
    #[serde(rename = "Data", default)]
    pub data: Map<String, Value>,
    #[serde(rename = "Metadata", default)]
    pub metadata: Map<String, Value>,
}

impl InvocationRequest {
    pub fn parse(body: &[u8]) -> Result<Self, InvocationError> {
        serde_json::from_slice(body)
            .map_err(|e| InvocationError(format!("not the host's JSON shape: {e}")))
    }

    /// The text of the queue message bound to `binding`, with the host's extra encoding removed.
    pub fn queue_message(&self, binding: &str) -> Result<String, InvocationError> {
        let value = self
            .data
            .get(binding)
            .ok_or_else(|| InvocationError(format!("Data has no `{binding}`")))?;
        host_text(value).ok_or_else(|| InvocationError(format!("Data.{binding} is not text")))
    }

    /// The content of the blob bound to `binding` (a blob trigger). With `dataType: "binary"`
    /// the host sends the bytes as one base64 string; as a `string` binding the text arrives
    /// JSON-encoded (`"\"{…}\""`, spec §3.1). Both are accepted: a value that is a JSON string
    /// literal is the text, anything else is base64 (or, failing that, the text as given).
    pub fn blob_content(&self, binding: &str) -> Result<Vec<u8>, InvocationError> {
        use base64::Engine;
        let value = self
            .data
            .get(binding)
            .ok_or_else(|| InvocationError(format!("Data has no `{binding}`")))?;
        match value {
            Value::String(s) if s.trim_start().starts_with('"') => {
                Ok(host_text(value).unwrap_or_default().into_bytes())
            }
            Value::String(s) => Ok(base64::engine::general_purpose::STANDARD
                .decode(s.trim())
                .unwrap_or_else(|_| s.clone().into_bytes())),
            Value::Null => Ok(Vec::new()),
            other => Ok(other.to_string().into_bytes()),
        }
    }

    /// A `Metadata` value as text, its §3.1 encoding removed (`"\"foo\""` → `foo`); keys are
    /// matched case-insensitively, as the host's binding data is.
    pub fn metadata_text(&self, key: &str) -> Option<String> {
        self.metadata
            .get(key)
            .or_else(|| {
                self.metadata
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(key))
                    .map(|(_, v)| v)
            })
            .and_then(host_text)
    }

    /// How many times the queue has handed out this message (1 on the first attempt).
    pub fn dequeue_count(&self) -> Option<u32> {
        self.metadata
            .get("DequeueCount")
            .and_then(host_text)
            .and_then(|t| t.trim().parse().ok())
    }
}

/// Removes the host's JSON-string encoding from a `Data`/`Metadata` value: a string holding a
/// JSON string literal yields the literal's content; any other string is taken as it is;
/// numbers and objects yield their JSON text.
fn host_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => match serde_json::from_str::<Value>(s) {
            Ok(Value::String(inner)) => Some(inner),
            _ => Some(s.clone()),
        },
        Value::Number(n) => Some(n.to_string()),
        Value::Object(_) | Value::Array(_) => Some(value.to_string()),
        _ => None,
    }
}

/// `{"Outputs": {...}, "Logs": [...], "ReturnValue": null}`: always a non-empty JSON object.
#[derive(Debug, Default, Serialize)]
pub struct InvocationResponse {
    #[serde(rename = "Outputs", serialize_with = "outputs_as_map")]
    outputs: Vec<(String, Output)>,
    #[serde(rename = "Logs")]
    pub logs: Vec<String>,
    #[serde(rename = "ReturnValue")]
    pub return_value: Option<Value>,
}

/// One output binding's value. Typed rather than a `Value` tree: every webhook answers with an
/// HTTP output, and building its object as a map was a measurable part of the handler's CPU.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Output {
    Http(HttpOutput),
    /// A queue message (a JSON object), or several (an array of them).
    Messages(Value),
    /// A queue message as JSON text, written verbatim.
    Raw(Box<RawValue>),
}

/// The HTTP output (`res`): a JSON body written verbatim, with its content type.
#[derive(Debug, Serialize)]
struct HttpOutput {
    #[serde(rename = "statusCode")]
    status_code: u16,
    body: String,
    headers: JsonContentType,
}

#[derive(Debug, Serialize)]
struct JsonContentType {
    #[serde(rename = "Content-Type")]
    content_type: &'static str,
}

fn outputs_as_map<S: serde::Serializer>(
    outputs: &[(String, Output)],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_map(outputs.iter().map(|(binding, output)| (binding, output)))
}

impl InvocationResponse {
    /// Adds a `Logs` line, redacted: the host forwards it to App Insights.
    pub fn log(mut self, line: impl Into<String>) -> Self {
        let line = line.into();
        let line = match redact(&line) {
            Cow::Borrowed(_) => line,
            Cow::Owned(redacted) => redacted,
        };
        self.logs.push(line);
        self
    }

    /// Sets a queue output. The message is a JSON object, never a bare string (the host would
    /// base64-decode a string that looks like base64).
    pub fn queue(self, binding: &str, message: Value) -> Self {
        debug_assert!(message.is_object(), "queue outputs must be JSON objects");
        self.set(binding, Output::Messages(message))
    }

    /// Sets a queue output to a message written already (the webhook's event, written once
    /// when it was measured: [`crate::queue::MessageText`]). A JSON object, as for
    /// [`InvocationResponse::queue`].
    pub fn queue_raw(self, binding: &str, message: Box<RawValue>) -> Self {
        debug_assert!(
            message.get().starts_with('{'),
            "queue outputs must be JSON objects"
        );
        self.set(binding, Output::Raw(message))
    }

    /// Sets a queue output to several messages: the host writes one message per array element
    /// (each a JSON object, for the same reason as in [`InvocationResponse::queue`]). An empty
    /// list sets nothing.
    pub fn queue_all(self, binding: &str, messages: Vec<Value>) -> Self {
        debug_assert!(messages.iter().all(Value::is_object));
        if messages.is_empty() {
            return self;
        }
        self.set(binding, Output::Messages(Value::Array(messages)))
    }

    /// Sets the HTTP response (`res`): a JSON body written verbatim with its content type.
    pub fn http(self, binding: &str, status: u16, body: &impl Serialize) -> Self {
        // Today's bodies (the webhook's answer, the health report, a `Value`) always write;
        // a type that could not would answer with an error body and an error line, not silently.
        let body = serde_json::to_string(body).unwrap_or_else(|e| {
            tracing::error!(binding, error = %e, "cannot write the HTTP output's body");
            r#"{"error":"the answer could not be written"}"#.to_string()
        });
        self.set(
            binding,
            Output::Http(HttpOutput {
                status_code: status,
                body,
                headers: JsonContentType {
                    content_type: "application/json",
                },
            }),
        )
    }

    /// Sets `binding`'s output, replacing an earlier one.
    fn set(mut self, binding: &str, output: Output) -> Self {
        match self.outputs.iter_mut().find(|(name, _)| name == binding) {
            Some((_, earlier)) => *earlier = output,
            None => self.outputs.push((binding.to_string(), output)),
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use crate::test_fixtures::functions_host as fixture;

    #[test]
    fn decodes_the_double_encoded_queue_message_and_string_dequeue_count() {
        let req =
            InvocationRequest::parse(&fixture("queue-trigger-request.json-message.derived.json"))
                .unwrap();
        let text = req.queue_message("myQueueItem").unwrap();
        let message: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(message["orderNo"], 1005);
        assert_eq!(message["customer"]["name"], "Ana");
        assert_eq!(req.dequeue_count(), Some(1));
    }

    #[test]
    fn decodes_plain_text_and_the_docs_example() {
        let plain =
            InvocationRequest::parse(&fixture("queue-trigger-request.plain-text.derived.json"))
                .unwrap();
        assert_eq!(plain.queue_message("myQueueItem").unwrap(), "hello");
        // The documentation's simplified example (number DequeueCount) is accepted too.
        let docs =
            InvocationRequest::parse(&fixture("queue-trigger-request.docs-example.json")).unwrap();
        assert!(docs.dequeue_count().is_some());
    }

    #[test]
    fn decodes_blob_content_in_both_encodings_and_the_quoted_name() {
        let content = br#"{"id": 12}"#;
        let binary = json!({
            "Data": {"blob": "eyJpZCI6IDEyfQ=="},
            "Metadata": {"name": "\"my-sub\"", "Uri": "\"http://x/y\"", "Properties": {}},
        });
        let req = InvocationRequest::parse(binary.to_string().as_bytes()).unwrap();
        assert_eq!(req.blob_content("blob").unwrap(), content);
        assert_eq!(req.metadata_text("name").as_deref(), Some("my-sub"));
        assert_eq!(req.metadata_text("NAME").as_deref(), Some("my-sub"));
        let string = json!({"Data": {"blob": serde_json::to_string(r#"{"id": 12}"#).unwrap()}});
        let req = InvocationRequest::parse(string.to_string().as_bytes()).unwrap();
        assert_eq!(req.blob_content("blob").unwrap(), content);
        assert!(req.blob_content("other").is_err());
        assert_eq!(req.metadata_text("name"), None);
    }

    #[test]
    fn responses_are_json_objects_with_object_queue_outputs() {
        let response = InvocationResponse::default()
            .http("res", 200, &json!({"status": "queued"}))
            .queue("inbound", json!({"id": "1"}))
            .log("line");
        let v = serde_json::to_value(&response).unwrap();
        assert_eq!(v["Outputs"]["res"]["statusCode"], 200);
        assert_eq!(v["Outputs"]["res"]["body"], r#"{"status":"queued"}"#);
        assert!(v["Outputs"]["inbound"].is_object());
        assert_eq!(v["Logs"][0], "line");
    }

    #[test]
    fn the_response_is_the_hosts_shape_and_a_binding_set_twice_holds_the_later_value() {
        let response = InvocationResponse::default()
            .http("res", 500, &json!({"error": "first"}))
            .queue("inbound", json!({"id": "1"}))
            .queue_all("many", vec![json!({"id": "2"}), json!({"id": "3"})])
            .queue_all("none", Vec::new())
            .http("res", 202, &json!({"status": "queued"}));
        // Counted in the text: a `Value` would keep only the last of two `res` members.
        let text = serde_json::to_string(&response).unwrap();
        assert_eq!(text.matches(r#""res":"#).count(), 1, "{text}");
        assert_eq!(
            serde_json::from_str::<Value>(&text).unwrap(),
            json!({
                "Outputs": {
                    "res": {
                        "statusCode": 202,
                        "body": r#"{"status":"queued"}"#,
                        "headers": {"Content-Type": "application/json"},
                    },
                    "inbound": {"id": "1"},
                    "many": [{"id": "2"}, {"id": "3"}],
                },
                "Logs": [],
                "ReturnValue": null,
            })
        );
    }
}
