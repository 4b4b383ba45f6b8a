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
//! JSON value (the host never sends one) stands for its JSON text, written compactly (members
//! in name order).

use std::borrow::Cow;

use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, Error, IgnoredAny, MapAccess, SeqAccess, Visitor};
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
        while let Some(Text(key)) = map.next_key()? {
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

/// The members of the request object the handler reads: `Method` as raw JSON, `Headers`
/// ([`HeaderList`]) and `Body` ([`BodyText`]) decoded. As leniently as the host's own model
/// reads them: a repeated member's last value wins, and a `Method` or `Headers` of another type
/// than expected counts as absent rather than failing the invocation, as does a header value
/// that is neither a string nor a list. Text is decoded strictly: a `Body`, a header name or a
/// header string that is not valid JSON text (a lone surrogate escape), or a number beyond
/// `f64` in `Headers`, fails the invocation as undecodable, even when a later member would
/// replace it. The host writes none of these: one `Body`, a JSON string of valid text, and
/// headers as strings or lists of strings decoded from the request's bytes.
#[derive(Default)]
struct Request<'a> {
    method: Option<&'a RawValue>,
    headers: Option<HeaderList<'a>>,
    body: Option<BodyText<'a>>,
}

/// `Body`, decoded as it is read: the webhook's text is a JSON string of escaped JSON, and
/// unescaping it in the same pass that finds its end saves scanning it twice (once as raw JSON,
/// once to unescape): 2 % of the handler's instructions per webhook (docs/benchmarks.md,
/// "Instructions per invocation").
///
/// The host's form, a string, is the raw text, borrowed unless it holds escapes; `null` is
/// empty. Any other JSON value (the host never sends one) stands for its JSON text written
/// again compactly: members in name order, a repeated member once (the last), numbers as
/// `f64`, `i64` or `u64` write them.
struct BodyText<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for BodyText<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
        use serde_json::Value;

        struct Any;
        impl<'de> Visitor<'de> for Any {
            type Value = BodyText<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("the request body")
            }
            fn visit_borrowed_str<E: Error>(self, text: &'de str) -> Result<Self::Value, E> {
                Ok(BodyText(Cow::Borrowed(text)))
            }
            fn visit_str<E: Error>(self, text: &str) -> Result<Self::Value, E> {
                Ok(BodyText(Cow::Owned(text.to_owned())))
            }
            fn visit_string<E: Error>(self, text: String) -> Result<Self::Value, E> {
                Ok(BodyText(Cow::Owned(text)))
            }
            fn visit_unit<E: Error>(self) -> Result<Self::Value, E> {
                Ok(BodyText(Cow::Borrowed("")))
            }
            fn visit_bool<E: Error>(self, value: bool) -> Result<Self::Value, E> {
                Ok(BodyText(Cow::Owned(value.to_string())))
            }
            fn visit_i64<E: Error>(self, value: i64) -> Result<Self::Value, E> {
                Ok(BodyText(Cow::Owned(value.to_string())))
            }
            fn visit_u64<E: Error>(self, value: u64) -> Result<Self::Value, E> {
                Ok(BodyText(Cow::Owned(value.to_string())))
            }
            fn visit_f64<E: Error>(self, value: f64) -> Result<Self::Value, E> {
                Ok(BodyText(Cow::Owned(Value::from(value).to_string())))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                let value = Value::deserialize(MapAccessDeserializer::new(map))?;
                Ok(BodyText(Cow::Owned(value.to_string())))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                let value = Value::deserialize(SeqAccessDeserializer::new(seq))?;
                Ok(BodyText(Cow::Owned(value.to_string())))
            }
        }
        deserializer.deserialize_any(Any)
    }
}

impl<'de> Deserialize<'de> for Request<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> Visitor<'de> for Members {
            type Value = Request<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("the HTTP request object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut request = Request::default();
                while let Some(Text(key)) = map.next_key()? {
                    match key.as_ref() {
                        "Method" => request.method = Some(map.next_value()?),
                        "Headers" => request.headers = Some(map.next_value()?),
                        "Body" => request.body = Some(map.next_value()?),
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(request)
            }
        }
        deserializer.deserialize_map(Members)
    }
}

impl<'a> HttpTriggerRequest<'a> {
    /// The HTTP request bound to `binding` in the invocation `body`. The error names where the
    /// JSON went wrong, never what it held (the request's headers and body are the caller's).
    pub fn parse(body: &'a [u8], binding: &str) -> Result<Self, InvocationError> {
        let mut deserializer = serde_json::Deserializer::from_slice(body);
        let request = RequestIn {
            binding,
            in_data: false,
        }
        .deserialize(&mut deserializer)
        .and_then(|request| deserializer.end().map(|()| request))
        .map_err(|e| {
            InvocationError(format!(
                "not the host's JSON shape ({:?} error at line {} column {})",
                e.classify(),
                e.line(),
                e.column()
            ))
        })?
        .ok_or_else(|| InvocationError(format!("Data has no `{binding}`")))?;
        let method = match request.method.and_then(|raw| string(raw.get())) {
            Some(method) if method.bytes().any(|b| b.is_ascii_lowercase()) => {
                Cow::Owned(method.to_ascii_uppercase())
            }
            Some(method) => method,
            None => Cow::Borrowed("POST"),
        };
        let headers = request
            .headers
            .map(|HeaderList(list)| list)
            .unwrap_or_default();
        let body = request
            .body
            .map_or(Cow::Borrowed(""), |BodyText(text)| text);
        Ok(HttpTriggerRequest {
            method,
            headers,
            body,
        })
    }

    /// The value of header `name` (any case); of two spellings of one name, the first sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_ref())
    }
}

/// `Headers`, decoded in the pass that reads the request: its members in the order sent, each
/// with its [`HeaderText`]; members without one, or `Headers` not being an object, leave
/// nothing. (Read as raw JSON and then decoded, each value was scanned three times: 5 % of the
/// webhook's instructions.)
struct HeaderList<'a>(Vec<(Cow<'a, str>, Cow<'a, str>)>);

impl<'de> Deserialize<'de> for HeaderList<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> Visitor<'de> for Members {
            type Value = HeaderList<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("the Headers object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut headers = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some(Text(name)) = map.next_key()? {
                    let value = map.next_value_seed(HeaderTextSeed { item: false })?;
                    if let HeaderText(Some(value)) = value {
                        headers.push((name, value));
                    }
                }
                Ok(HeaderList(headers))
            }
            // Any other value: no headers.
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(HeaderList(Vec::new()))
            }
            fn visit_str<E: Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(HeaderList(Vec::new()))
            }
            fn visit_unit<E: Error>(self) -> Result<Self::Value, E> {
                Ok(HeaderList(Vec::new()))
            }
            fn visit_bool<E: Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(HeaderList(Vec::new()))
            }
            fn visit_i64<E: Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(HeaderList(Vec::new()))
            }
            fn visit_u64<E: Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(HeaderList(Vec::new()))
            }
            fn visit_f64<E: Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(HeaderList(Vec::new()))
            }
        }
        deserializer.deserialize_any(Members)
    }
}

/// A header's value: a string, or a list whose string items are joined with `,`; `None` for
/// anything else, and for a list without a string.
struct HeaderText<'a>(Option<Cow<'a, str>>);

/// Reads a [`HeaderText`], or with `item`, one item of a header's list: a string or nothing.
struct HeaderTextSeed {
    item: bool,
}

impl<'de> DeserializeSeed<'de> for HeaderTextSeed {
    type Value = HeaderText<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for HeaderTextSeed {
    type Value = HeaderText<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a header value")
    }
    fn visit_borrowed_str<E: Error>(self, text: &'de str) -> Result<Self::Value, E> {
        Ok(HeaderText(Some(Cow::Borrowed(text))))
    }
    fn visit_str<E: Error>(self, text: &str) -> Result<Self::Value, E> {
        Ok(HeaderText(Some(Cow::Owned(text.to_owned()))))
    }
    fn visit_string<E: Error>(self, text: String) -> Result<Self::Value, E> {
        Ok(HeaderText(Some(Cow::Owned(text))))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        if self.item {
            // A list in a list is no header text: skipped without decoding its strings.
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            return Ok(HeaderText(None));
        }
        let mut joined: Option<Cow<'de, str>> = None;
        while let Some(HeaderText(item)) = seq.next_element_seed(HeaderTextSeed { item: true })? {
            // An item that is not a string is no header text.
            let Some(item) = item else {
                continue;
            };
            joined = Some(match joined {
                None => item,
                Some(before) => {
                    let mut text = before.into_owned();
                    text.push(',');
                    text.push_str(&item);
                    Cow::Owned(text)
                }
            });
        }
        Ok(HeaderText(joined))
    }
    // Any other value: no header text.
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(HeaderText(None))
    }
    fn visit_unit<E: Error>(self) -> Result<Self::Value, E> {
        Ok(HeaderText(None))
    }
    fn visit_bool<E: Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(HeaderText(None))
    }
    fn visit_i64<E: Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(HeaderText(None))
    }
    fn visit_u64<E: Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(HeaderText(None))
    }
    fn visit_f64<E: Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(HeaderText(None))
    }
}

/// A JSON string literal's content, borrowed unless it holds escapes; `None` for anything else.
fn string(literal: &str) -> Option<Cow<'_, str>> {
    if !literal.starts_with('"') {
        return None;
    }
    serde_json::from_str::<Text>(literal).ok().map(|t| t.0)
}

/// A JSON string, borrowed from the input unless it holds escapes (serde's own `Cow<str>`
/// always copies; `#[serde(borrow)]` on a `Cow` field is what borrows).
#[derive(Deserialize)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

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
                    "X-Nested": [["a"], {"b": "c"}, "d"],
                    "X-Only-Nested": [["a"]],
                    "X-Object": {"a": "b"},
                    "X-Null": null,
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
        assert_eq!(
            request.header("x-nested"),
            Some("d"),
            "a list in a list is no text"
        );
        assert_eq!(request.header("x-only-nested"), None);
        assert_eq!(request.header("x-object"), None);
        assert_eq!(request.header("x-null"), None);
        assert_eq!(request.header("x"), None, "Metadata is not the request");
        // A body the host sent as JSON stands for its JSON text.
        assert_eq!(request.body, r#"{"id":1}"#);
    }

    #[test]
    fn a_list_in_a_header_list_is_skipped_without_decoding_it() {
        // Its strings are not decoded, so text that is not valid (a lone surrogate) in a
        // list nested in a header's list is skipped like any other nested list.
        let invocation = br#"{"Data": {"req": {"Headers": {"X": [["\ud800"], "b"],
            "Content-Type": ["application/json"]}, "Body": "x"}}}"#;
        let request = HttpTriggerRequest::parse(invocation, "req").unwrap();
        assert_eq!(request.header("x"), Some("b"));
        assert_eq!(request.header("content-type"), Some("application/json"));
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
    fn a_body_is_unescaped_as_it_is_read_and_any_other_value_is_its_json_text() {
        let invocation = json!({"Data": {"req": {"Body": "{\"id\": \"a\\u00e6\"}\n"}}});
        let invocation = invocation.to_string();
        let request = HttpTriggerRequest::parse(invocation.as_bytes(), "req").unwrap();
        assert_eq!(request.body, "{\"id\": \"a\\u00e6\"}\n");
        // Written again compactly, members in name order: not the text as sent.
        for (body, text) in [
            (
                r#"{ "b" : 1, "a": [1.50, true, null, "x"] }"#,
                r#"{"a":[1.5,true,null,"x"],"b":1}"#,
            ),
            ("[ ]", "[]"),
            ("-7", "-7"),
            ("2.50", "2.5"),
            ("false", "false"),
        ] {
            let invocation = format!(r#"{{"Data": {{"req": {{"Body": {body}}}}}}}"#);
            let request = HttpTriggerRequest::parse(invocation.as_bytes(), "req").unwrap();
            assert_eq!(request.body, text, "{invocation}");
        }
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
    fn members_are_read_as_leniently_as_the_host_writes_them() {
        // Two spellings of one header: the first sent, whatever the map order would be.
        let invocation = br#"{"Data": {"req": {"Headers": {"Content-Type": ["application/json"],
            "content-type": ["text/plain"]}, "Method": 5, "Body": "first", "Body": "last"}}}"#;
        let request = HttpTriggerRequest::parse(invocation, "req").unwrap();
        assert_eq!(request.header("content-type"), Some("application/json"));
        assert_eq!(
            request.method, "POST",
            "a Method that is not text is the default"
        );
        assert_eq!(request.body, "last", "a repeated member's last value wins");
        let invocation = br#"{"Data": {"req": {"Headers": "X-A: b", "Body": "x"}}}"#;
        let request = HttpTriggerRequest::parse(invocation, "req").unwrap();
        assert!(request.headers.is_empty());
        // Names, values and the body are borrowed when they hold no escapes.
        let invocation = br#"{"Data": {"req": {"Method": "POST", "Headers": {"X-A": ["b"]},
            "Body": "plain"}}}"#;
        let request = HttpTriggerRequest::parse(invocation, "req").unwrap();
        assert!(matches!(request.method, Cow::Borrowed(_)));
        assert!(matches!(
            request.headers[0],
            (Cow::Borrowed(_), Cow::Borrowed(_))
        ));
    }

    #[test]
    fn a_decoding_error_never_quotes_the_request() {
        for bad in [
            r#"{"Data": {"req": "Authorization: s3cr3t"}}"#,
            r#""Authorization: s3cr3t""#,
            r#"{"Data": {"req": ["s3cr3t", {}, "{}"]}}"#,
            r#"{"Data": {"req": {"Body": "s3cr3t"}}} trailing s3cr3t"#,
            // Not Unicode: a lone surrogate, in the body or in a header.
            r#"{"Data": {"req": {"Body": "s3cr3t \ud800 s3cr3t"}}}"#,
            r#"{"Data": {"req": {"Headers": {"X": "s3cr3t \ud800"}, "Body": ""}}}"#,
            r#"{"Data": {"req": {"Headers": {"X": ["a", "s3cr3t \ud800"]}}}}"#,
        ] {
            let error = HttpTriggerRequest::parse(bad.as_bytes(), "req").unwrap_err();
            assert!(!error.0.contains("s3cr3t"), "{bad}: {error}");
            assert!(error.0.contains("line 1 column"), "{bad}: {error}");
        }
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
