//! The files operators drop into `add-subscriptions` and `remove-subscriptions`, parsed and
//! checked before anything reaches Altinn.
//!
//! The rules are those of `aos subscriptions add`, so a file can never create a subscription
//! the CLI would refuse: the source filter must name an app on the configured apps host and is
//! sent as `{AppsBaseUrl}{org}/{app}` without a trailing slash (Altinn delivers nothing for
//! `…/{app}/`); the endpoint must be https (http only on loopback); a missing type filter means
//! `app.instance.process.completed`, an empty one is refused (it matches nothing). Every reason
//! names the problem but never the endpoint's query, which holds the function key.

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::altinn::subscriptions::{
    DEFAULT_TYPE_FILTER, app_source_filter, check_endpoint, redact_endpoint,
};
use crate::domain::{AppName, BaseUrl, OrgName};

/// Longest accepted `{name}`: far below Azure's 1024-character blob names, so
/// `subscriptions/failed/add/{name}.json` and friends always fit.
const MAX_NAME: usize = 128;

/// The `{name}` of `add-subscriptions/{name}.json`: it becomes part of other blob names, so it
/// is one plain segment (ASCII letters, digits, `-`, `_`, `.`; no leading dot, no `..`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileName(String);

impl FileName {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let ok_chars = raw
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if raw.is_empty() || raw.len() > MAX_NAME {
            return Err(format!(
                "the file name must have 1 to {MAX_NAME} characters"
            ));
        }
        if !ok_chars || raw.starts_with('.') || raw.contains("..") {
            return Err(
                "the file name may only contain ASCII letters, digits, `-`, `_` and \
                        `.` (no folders, no leading dot, no `..`)"
                    .into(),
            );
        }
        Ok(FileName(raw.to_string()))
    }

    /// `{name}.json`, the blob name inside each subscription container.
    pub fn blob(&self) -> String {
        format!("{}.json", self.0)
    }
}

/// A key for a report about a file whose name could not be used: the name itself when it is
/// valid, else a hash of it (the report records the raw name).
pub fn report_key(raw: &str) -> String {
    match FileName::parse(raw) {
        Ok(name) => name.0,
        Err(_) => format!("invalid-name-{:x}", Sha256::digest(raw.as_bytes())),
    }
}

/// A checked `add-subscriptions` file: the request body to POST.
#[derive(Clone, Debug)]
pub struct AddRequest {
    pub body: Value,
    pub source_filter: String,
    pub endpoint: String,
    /// What was changed on the way (e.g. a trailing slash removed), for the log.
    pub notes: Vec<String>,
}

/// The fields of the reference system's file (`SubscriptionRequestModel` plus its own
/// `consumer` and `description`, which Altinn does not take and are not sent).
const ADD_FIELDS: &[&str] = &[
    "endPoint",
    "sourceFilter",
    "typeFilter",
    "subjectFilter",
    "alternativeSubjectFilter",
    "consumer",
    "description",
];

/// The object's members by lower-cased name (the reference read the file with Newtonsoft and
/// Altinn binds with System.Text.Json, both case-insensitive).
fn members(content: &[u8]) -> Result<Map<String, Value>, String> {
    let text = std::str::from_utf8(content)
        .map_err(|_| "the file is not UTF-8 text".to_string())?
        .trim_start_matches('\u{feff}');
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect()),
        Ok(_) => Err("the file is JSON but not an object".into()),
        Err(e) => Err(format!("the file is not valid JSON ({e})")),
    }
}

/// A string member: `None` when absent or null, an error for any other type.
fn text(map: &Map<String, Value>, field: &str) -> Result<Option<String>, String> {
    match map.get(&field.to_ascii_lowercase()) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("`{field}` must be a string")),
    }
}

/// Parses and checks an `add-subscriptions` file against the configured apps host.
pub fn parse_add(content: &[u8], apps: &BaseUrl) -> Result<AddRequest, String> {
    let map = members(content)?;
    if let Some(unknown) = map
        .keys()
        .find(|k| !ADD_FIELDS.iter().any(|f| f.eq_ignore_ascii_case(k)))
    {
        return Err(format!(
            "unknown field `{unknown}` (known: {})",
            ADD_FIELDS.join(", ")
        ));
    }
    let endpoint = text(&map, "endPoint")?
        .filter(|e| !e.trim().is_empty())
        .ok_or("`endPoint` is required: the EventsReceiver URL with its ?code= function key")?;
    let endpoint = check_endpoint(&endpoint)?;
    let given_source = text(&map, "sourceFilter")?
        .ok_or("`sourceFilter` is required: the app's URL, {AppsBaseUrl}{org}/{app}")?;
    let (source_filter, mut notes) = app_filter(given_source.trim(), apps)?;
    let type_filter = match text(&map, "typeFilter")? {
        None => {
            notes.push(format!("typeFilter defaulted to {DEFAULT_TYPE_FILTER}"));
            DEFAULT_TYPE_FILTER.to_string()
        }
        Some(t) if t.trim().is_empty() => {
            return Err(
                "`typeFilter` is empty: Altinn would match no event with it \
                        (leave it out for app.instance.process.completed)"
                    .into(),
            );
        }
        Some(t) => t.trim().to_string(),
    };
    let mut body = json!({
        "endPoint": endpoint,
        "sourceFilter": source_filter,
        "typeFilter": type_filter,
    });
    for field in ["subjectFilter", "alternativeSubjectFilter"] {
        match text(&map, field)? {
            None => {}
            Some(v) if v.trim().is_empty() => {
                return Err(format!(
                    "`{field}` is empty: Altinn would match no event with it (leave it out)"
                ));
            }
            Some(v) => body[field] = v.trim().into(),
        }
    }
    Ok(AddRequest {
        body,
        source_filter,
        endpoint,
        notes,
    })
}

/// `{AppsBaseUrl}{org}/{app}`, with a trailing slash tolerated and removed; anything else on
/// the apps host, or any other host, is refused.
fn app_filter(given: &str, apps: &BaseUrl) -> Result<(String, Vec<String>), String> {
    let wrong = || {
        format!(
            "`sourceFilter` `{given}` must be {apps}{{org}}/{{app}} (an app on the configured \
             AppsBaseUrl, no instance path, no query)"
        )
    };
    let url = url::Url::parse(given).map_err(|_| wrong())?;
    if !apps.same_origin(&url) || url.query().is_some() || url.fragment().is_some() {
        return Err(wrong());
    }
    let rest = url
        .path()
        .strip_prefix(apps.url().path())
        .ok_or_else(wrong)?;
    let (org, app) = rest.split_once('/').ok_or_else(wrong)?;
    let app = app.strip_suffix('/').unwrap_or(app);
    let org = OrgName::parse(org).map_err(|e| format!("{}: org {e}", wrong()))?;
    let app = AppName::parse(app).map_err(|e| format!("{}: app {e}", wrong()))?;
    let filter = app_source_filter(apps, &org, &app);
    let notes = if filter != given {
        vec![format!("sourceFilter normalised to {filter}")]
    } else {
        Vec::new()
    };
    Ok((filter, notes))
}

/// The id of a `remove-subscriptions` file: `{"id": 123}` (a numeric string is accepted);
/// `None` when the file is empty or has no `id`, so the id comes from the
/// `active-subscriptions` file of the same name. Other members are ignored, so a copy of the
/// active subscription's JSON works as a removal request.
pub fn parse_remove(content: &[u8]) -> Result<Option<u64>, String> {
    if content.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    subscription_id(&members(content)?)
}

/// The `id` member of a subscription (request or Altinn's JSON).
pub fn subscription_id(map: &Map<String, Value>) -> Result<Option<u64>, String> {
    let bad = || "`id` must be a positive whole number".to_string();
    match map.get("id") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_u64().filter(|n| *n > 0).map(Some).ok_or_else(bad),
        Some(Value::String(s)) => s
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|n| *n > 0)
            .map(Some)
            .ok_or_else(bad),
        Some(_) => Err(bad()),
    }
}

/// The id in an `active-subscriptions` file (Altinn's response, as stored by the subscriber).
pub fn active_id(content: &[u8]) -> Result<u64, String> {
    subscription_id(&members(content)?)?.ok_or_else(|| "it has no `id`".to_string())
}

/// `text` with the endpoint's query (the function key) hidden, for reasons that may quote
/// what Altinn answered.
pub fn redact(text: &str, endpoint: &str) -> String {
    let Some((_, query)) = endpoint.split_once('?') else {
        return text.to_string();
    };
    let mut redacted = text.replace(endpoint, &redact_endpoint(endpoint));
    // Each value on its own too (e.g. the bare key); short values would blank out ordinary
    // words, and a key is never that short.
    for value in query
        .split('&')
        .filter_map(|p| p.split_once('=').map(|(_, v)| v))
    {
        if value.len() >= 6 {
            redacted = redacted.replace(value, "…");
        }
    }
    redacted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apps() -> BaseUrl {
        BaseUrl::parse("https://ttd.apps.tt02.altinn.no/").unwrap()
    }

    const KEY: &str = "s3cret";

    fn add(json: Value) -> Result<AddRequest, String> {
        parse_add(json.to_string().as_bytes(), &apps())
    }

    #[test]
    fn names_are_single_plain_segments() {
        for ok in ["ttd-app", "my_app.v2", "A1"] {
            assert!(FileName::parse(ok).is_ok(), "{ok}");
        }
        let long = "a".repeat(129);
        for bad in [
            "", "../x", "a/b", ".hidden", "a..b", "a b", "æ", "a\\b", &long,
        ] {
            assert!(FileName::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(report_key("ok-name"), "ok-name");
        let hashed = report_key("../../etc");
        assert!(hashed.starts_with("invalid-name-") && !hashed.contains('/'));
    }

    #[test]
    fn add_files_are_checked_like_the_cli() {
        let endpoint = format!("https://aos.example/api/EventsReceiver?code={KEY}");
        let req = add(json!({
            "endPoint": endpoint,
            "sourceFilter": "https://ttd.apps.tt02.altinn.no/ttd/my-app/",
            "consumer": "/org/ttd",
            "description": "archive",
        }))
        .unwrap();
        assert_eq!(
            req.body,
            json!({
                "endPoint": endpoint,
                "sourceFilter": "https://ttd.apps.tt02.altinn.no/ttd/my-app",
                "typeFilter": DEFAULT_TYPE_FILTER,
            })
        );
        assert_eq!(req.notes.len(), 2, "{:?}", req.notes);

        // Case-insensitive names, like Altinn's binding.
        let req = add(json!({"endpoint": endpoint, "SOURCEFILTER": "https://ttd.apps.tt02.altinn.no/ttd/my-app", "typeFilter": "app.instance.created", "subjectFilter": "/party/1"})).unwrap();
        assert_eq!(req.body["typeFilter"], "app.instance.created");
        assert_eq!(req.body["subjectFilter"], "/party/1");
        assert!(req.notes.is_empty());

        let source = "https://ttd.apps.tt02.altinn.no/ttd/my-app";
        for (bad, why) in [
            (json!({"sourceFilter": source}), "endPoint"),
            (
                json!({"endPoint": "http://aos.example/x?code=s3cret", "sourceFilter": source}),
                "https",
            ),
            (json!({"endPoint": endpoint}), "sourceFilter"),
            (
                json!({"endPoint": endpoint, "sourceFilter": "https://other.example/ttd/my-app"}),
                "AppsBaseUrl",
            ),
            (
                json!({"endPoint": endpoint, "sourceFilter": format!("{source}/instances/1")}),
                "AppsBaseUrl",
            ),
            (
                json!({"endPoint": endpoint, "sourceFilter": "https://ttd.apps.tt02.altinn.no/ttd/../x"}),
                "AppsBaseUrl",
            ),
            (
                json!({"endPoint": endpoint, "sourceFilter": source, "typeFilter": ""}),
                "typeFilter",
            ),
            (
                json!({"endPoint": endpoint, "sourceFilter": source, "subjectFilter": " "}),
                "subjectFilter",
            ),
            (
                json!({"endPoint": endpoint, "sourceFilter": source, "typFilter": "x"}),
                "unknown field",
            ),
            (json!({"endPoint": 5, "sourceFilter": source}), "string"),
            (json!([1]), "not an object"),
        ] {
            let e = add(bad.clone()).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
            assert!(!e.contains(KEY), "{e}");
        }
        assert!(
            parse_add(b"{not json", &apps())
                .unwrap_err()
                .contains("not valid JSON")
        );
    }

    #[test]
    fn remove_files_name_the_id_or_nothing() {
        assert_eq!(parse_remove(br#"{"id": 12}"#), Ok(Some(12)));
        assert_eq!(parse_remove(br#"{"Id": "12"}"#), Ok(Some(12)));
        assert_eq!(parse_remove(b""), Ok(None));
        assert_eq!(parse_remove(b"{}"), Ok(None));
        assert_eq!(
            parse_remove(br#"{"id": 3, "endPoint": "https://x", "validated": true}"#),
            Ok(Some(3))
        );
        for bad in [
            &br#"{"id": -1}"#[..],
            br#"{"id": "x"}"#,
            br#"{"id": 0}"#,
            b"nope",
        ] {
            assert!(parse_remove(bad).is_err());
        }
        assert_eq!(active_id(br#"{"id": 7, "validated": false}"#), Ok(7));
        assert!(active_id(b"{}").is_err());
    }

    #[test]
    fn redaction_hides_the_key() {
        let endpoint = format!("https://aos.example/api/x?code={KEY}");
        let text = format!("refused {endpoint}; key {KEY}");
        let redacted = redact(&text, &endpoint);
        assert!(!redacted.contains(KEY), "{redacted}");
    }
}
