//! The HTTP trigger's request (the webhook), decoded from the invocation the host POSTs.
//!
//! `EventsReceiver` is the one function invoked at webhook rate, so its request is decoded in
//! one pass, borrowing from the invocation body: only `Data.<binding>` is read (its `Method`,
//! `Headers` and `Body`), `Metadata` — a copy of the same request plus `sys` — is skipped
//! without building anything, and a text is copied only when it holds JSON escapes (the body
//! always does: it is JSON inside a JSON string). The generic [`super::invocation`] decoder built
//! a `serde_json::Value` tree of the whole invocation instead: an eighth of the handler's CPU
//! per webhook in the ingest profile (`docs/benchmarks/ingest.md`).
//!
//! The shape (`docs/specs/functions-custom-handler.md` §3): `{"Data": {"req": {"Url": …,
//! "Method": "POST", "Query": {…}, "Headers": {"Content-Type": ["…"], …}, "Body": "<raw text>"}},
//! "Metadata": {…}}`. A header value is a list of strings (joined with `,`) or one string;
//! anything else is skipped. `Body` is the raw text; `null` or missing is empty, and any other
//! JSON value stands for its JSON text.

use std::borrow::Cow;
use std::collections::HashMap;

use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::invocation::InvocationError;

/// The webhook request as the handler sees it, borrowing from the invocation body.
#[derive(Debug, Default, PartialEq)]
pub struct HttpTriggerRequest<'a> {
    pub method: Cow<'a, str>,
    /// Names as the host sent them (matched case-insensitively by [`Self::header`]); a repeated
    /// header's values joined with `,`.
    pub headers: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    pub body: Cow<'a, str>,
}

/// Reads `{"Data": {<binding>: <request>, …}, …}` for the request alone, in one pass: every
/// other member (`Metadata`, other bindings) is skipped as it is read.
struct RequestIn<'b> {
    binding: &'b str,
    /// Inside `Data`, not yet at the top.
    in_data: bool,
}

impl<'de> DeserializeSeed<'de> for RequestIn<'_> {
    type Value = Option<Request<'de>>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RequestIn<'_> {
    type Value = Option<Request<'de>>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut request = None;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            match (self.in_data, key.as_ref()) {
                (false, "Data") => {
                    request = map.next_value_seed(RequestIn {
                        binding: self.binding,
                        in_data: true,
                    })?;
                }
                (true, name) if name == self.binding => request = Some(map.next_value()?),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(request)
    }
}

/// The request object of an HTTP binding: the three members the handler reads.
#[derive(Deserialize)]
struct Request<'a> {
    #[serde(rename = "Method", borrow, default)]
    method: Option<Cow<'a, str>>,
    #[serde(rename = "Headers", borrow, default)]
    headers: Option<HashMap<Cow<'a, str>, &'a RawValue>>,
    #[serde(rename = "Body", borrow, default)]
    body: Option<&'a RawValue>,
}

impl<'a> HttpTriggerRequest<'a> {
    /// The HTTP request bound to `binding` in the invocation `body`.
    pub fn parse(body: &'a [u8], binding: &str) -> Result<Self, InvocationError> {
        let mut deserializer = serde_json::Deserializer::from_slice(body);
        let request = RequestIn {
            binding,
            in_data: false,
        }
        .deserialize(&mut deserializer)
        .and_then(|request| deserializer.end().map(|()| request))
        .map_err(|e| InvocationError(format!("not the host's JSON shape: {e}")))?
        .ok_or_else(|| InvocationError(format!("Data has no `{binding}`")))?;
        let method = match request.method {
            Some(method) if method.bytes().any(|b| b.is_ascii_lowercase()) => {
                Cow::Owned(method.to_ascii_uppercase())
            }
            Some(method) => method,
            None => Cow::Borrowed("POST"),
        };
        let headers = request
            .headers
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(name, value)| Some((name, header_value(value)?)))
            .collect();
        let body = match request.body.map(RawValue::get) {
            None | Some("null") => Cow::Borrowed(""),
            Some(text) if text.starts_with('"') => string(text).ok_or_else(|| {
                InvocationError(format!("Data.{binding}.Body is not a JSON string"))
            })?,
            Some(json) => Cow::Borrowed(json),
        };
        Ok(HttpTriggerRequest {
            method,
            headers,
            body,
        })
    }

    /// The value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_ref())
    }
}

/// A header's value: a string, or a list whose string items are joined with `,`.
fn header_value(raw: &RawValue) -> Option<Cow<'_, str>> {
    let text = raw.get();
    if text.starts_with('"') {
        return string(text);
    }
    let items: Vec<&RawValue> = serde_json::from_str(text).ok()?;
    let mut strings = items
        .into_iter()
        .filter(|item| item.get().starts_with('"'))
        .filter_map(|item| string(item.get()));
    let first = strings.next()?;
    match strings.next() {
        None => Some(first),
        Some(second) => {
            let mut joined = format!("{first},{second}");
            for more in strings {
                joined.push(',');
                joined.push_str(&more);
            }
            Some(Cow::Owned(joined))
        }
    }
}

/// A JSON string literal's content, borrowed unless it holds escapes.
fn string(literal: &str) -> Option<Cow<'_, str>> {
    #[derive(Deserialize)]
    struct Text<'a>(#[serde(borrow)] Cow<'a, str>);
    serde_json::from_str::<Text>(literal).ok().map(|t| t.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_fixtures::functions_host as fixture;
    use serde_json::{Value, json};

    #[test]
    fn reads_the_hosts_http_trigger_request() {
        let invocation = fixture("http-trigger-request.order.derived.json");
        let request = HttpTriggerRequest::parse(&invocation, "req").unwrap();
        assert_eq!(request.method, "POST");
        assert_eq!(request.header("content-type"), Some("application/json"));
        assert_eq!(request.header("Content-Type"), Some("application/json"));
        let body: Value = serde_json::from_str(&request.body).unwrap();
        assert_eq!(body["id"], 1005);
    }

    #[test]
    fn header_lists_are_joined_and_other_values_skipped() {
        let invocation = json!({
            "Data": {"req": {
                "Method": "post",
                "Headers": {
                    "Accept": ["a", "b", 3, "c"],
                    "X-One": "one",
                    "X-Escaped": ["q\"uote"],
                    "X-Number": 7,
                    "X-Empty": [],
                },
                "Body": {"id": 1},
            }},
            "Metadata": {"sys": {"MethodName": "EventsReceiver"}, "Headers": {"X": ["y"]}},
        })
        .to_string();
        let request = HttpTriggerRequest::parse(invocation.as_bytes(), "req").unwrap();
        assert_eq!(request.method, "POST");
        assert_eq!(request.header("accept"), Some("a,b,c"));
        assert_eq!(request.header("x-one"), Some("one"));
        assert_eq!(request.header("x-escaped"), Some("q\"uote"));
        assert_eq!(request.header("x-number"), None);
        assert_eq!(request.header("x-empty"), None);
        assert_eq!(request.header("x"), None, "Metadata is not the request");
        // A body the host sent as JSON stands for its JSON text.
        assert_eq!(request.body, r#"{"id":1}"#);
    }

    #[test]
    fn a_missing_or_null_body_is_empty_and_a_plain_body_is_borrowed() {
        for data in [json!({"req": {}}), json!({"req": {"Body": null}})] {
            let invocation = json!({ "Data": data }).to_string();
            let request = HttpTriggerRequest::parse(invocation.as_bytes(), "req").unwrap();
            assert_eq!(request.body, "");
            assert_eq!(request.method, "POST");
        }
        let invocation = json!({"Data": {"req": {"Body": "plain"}}}).to_string();
        let request = HttpTriggerRequest::parse(invocation.as_bytes(), "req").unwrap();
        assert!(matches!(request.body, Cow::Borrowed("plain")));
    }

    #[test]
    fn only_data_and_its_binding_are_read_in_any_member_order() {
        let invocation = br#"{"Metadata": {"req": {"Body": "wrong"}, "Data": 1},
            "Data": {"other": {"Body": "wrong"}, "req": {"Body": "right", "Url": "http://x"},
            "$return": null}}"#;
        let request = HttpTriggerRequest::parse(invocation, "req").unwrap();
        assert_eq!(request.body, "right");
    }

    #[test]
    fn anything_but_the_hosts_shape_is_an_error() {
        for bad in [
            "",
            "[]",
            r#"{"Data": {}}"#,
            r#"{"Data": {"req": "text"}}"#,
            r#"{"Data": {"other": {}}}"#,
            r#"{"Data": {"req": {"Body": 1"#,
        ] {
            let error = HttpTriggerRequest::parse(bad.as_bytes(), "req").unwrap_err();
            assert!(
                error.0.contains("host's JSON shape") || error.0.contains("Data has no `req`"),
                "{bad}: {error}"
            );
        }
    }
}
