//! The custom-handler wire protocol as pure functions: building invocation payloads (spec §3),
//! validating handler responses (§4.1) and turning `Outputs` into queue messages and an HTTP
//! response (§4.3–4.5). No processes, sockets or clocks in here, so every quirk of the real host
//! (double-encoded values, the base64 surprise on string outputs, array fan-out, …) can be
//! pinned by plain unit tests against the shared fixtures.

use base64::Engine;
use base64::alphabet;
use base64::engine::general_purpose::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde_json::{Map, Number, Value, json};
use time::{OffsetDateTime, UtcOffset};
use uuid::Uuid;

use crate::app::{Binding, FunctionDef, MessageEncoding, get_ci};

/// The host version the fake host claims (`X-Azure-Functions-HostVersion`, `User-Agent`): the
/// snapshot the protocol spec was written from.
pub const HOST_VERSION: &str = "4.1037.0";

/// Scheme and authority of the public URL the host reports in `Data.req.Url` (Core Tools'
/// default), independent of the loopback port the handler listens on.
pub const PUBLIC_ORIGIN: &str = "http://localhost:7071";

// ----------------------------------------------------------------------------------------------
// §3.1 value encoding
// ----------------------------------------------------------------------------------------------

/// `text` as a JSON string literal, quotes included: what Newtonsoft's `SerializeObject` makes
/// of a .NET string, and hence the first of the two encoding layers handlers must undo.
pub fn json_literal(text: &str) -> String {
    Value::String(text.to_string()).to_string()
}

/// The host's `GetHttpScriptInvocationContextValue` (§3.1): objects stay nested JSON, every
/// other value becomes a JSON string holding its serialized JSON text (`4` → `"4"`,
/// `"hello"` → `"\"hello\""`).
pub fn encode_binding_value(value: &Value) -> Value {
    match value {
        Value::Object(_) => value.clone(),
        other => Value::String(other.to_string()),
    }
}

/// What .NET's `ToString()` makes of a JSON scalar: booleans are `True`/`False`, whole doubles
/// lose their `.0`. `None` for null, arrays and objects.
pub fn dotnet_scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Bool(true) => Some("True".into()),
        Value::Bool(false) => Some("False".into()),
        Value::Number(n) => Some(dotnet_number(n)),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

fn dotnet_number(n: &Number) -> String {
    match n.as_f64() {
        Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
        _ => n.to_string(),
    }
}

/// The binding data the host derives from a JSON-object payload (queue message text or HTTP
/// request body) via `Utility.ApplyBindingData`: each top-level property, nested objects kept
/// as objects, scalars turned into .NET strings and then encoded per §3.1 (so `1005` arrives as
/// `"\"1005\""`), arrays and nulls skipped. Non-object text yields nothing.
pub fn json_properties_binding_data(text: &str) -> Vec<(String, Value)> {
    let Ok(Value::Object(map)) = serde_json::from_str::<Value>(text.trim()) else {
        return Vec::new();
    };
    map.into_iter()
        .filter_map(|(key, value)| match value {
            Value::Object(_) => Some((key, value)),
            scalar => dotnet_scalar_text(&scalar).map(|t| (key, Value::String(json_literal(&t)))),
        })
        .collect()
}

/// Drops what the host never sends in `Metadata`: keys ending in `trigger` (the trigger value
/// is already in `Data`) and nulls (§3.1).
fn finish_metadata(metadata: &mut Map<String, Value>) {
    metadata
        .retain(|key, value| !key.to_ascii_lowercase().ends_with("trigger") && !value.is_null());
}

/// A `DateTimeOffset` as the host serializes it after its precision loss: whole seconds, UTC,
/// explicit `+00:00` (§3.1).
pub fn host_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}+00:00",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// `sys.UtcNow`: a UTC timestamp with 7 fractional digits (.NET ticks) and `Z`.
pub fn sys_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:07}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.nanosecond() / 100
    )
}

/// The WebJobs SDK's `sys` binding data.
#[derive(Debug, Clone)]
pub struct SysInfo {
    pub method_name: String,
    pub utc_now: OffsetDateTime,
    pub rand_guid: Uuid,
}

impl SysInfo {
    pub fn now(method_name: &str) -> SysInfo {
        SysInfo {
            method_name: method_name.to_string(),
            utc_now: OffsetDateTime::now_utc(),
            rand_guid: Uuid::new_v4(),
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "MethodName": self.method_name,
            "UtcNow": sys_time(self.utc_now),
            "RandGuid": self.rand_guid.to_string(),
        })
    }
}

// ----------------------------------------------------------------------------------------------
// §3.2 queue trigger request
// ----------------------------------------------------------------------------------------------

/// A dequeued message as the Storage Queues extension hands it to the host (body already
/// decoded from the queue's `messageEncoding`).
#[derive(Debug, Clone)]
pub struct QueueMessageInfo {
    pub body: Vec<u8>,
    pub dequeue_count: u32,
    pub id: String,
    pub pop_receipt: String,
    pub expiration_time: OffsetDateTime,
    pub insertion_time: OffsetDateTime,
    pub next_visible_time: OffsetDateTime,
}

/// The invocation request for a queue-triggered function (§3.2,
/// `queue-trigger-request.json-message.derived.json`). Fails when a string trigger receives
/// bytes that are not UTF-8, which the host treats as a binding failure.
pub fn queue_request(
    trigger: &Binding,
    message: &QueueMessageInfo,
    sys: &SysInfo,
) -> Result<Value, String> {
    let (data_value, text) = if trigger.is_binary() {
        (Value::String(STANDARD.encode(&message.body)), None)
    } else {
        let text = std::str::from_utf8(&message.body).map_err(|e| {
            format!(
                "message for string trigger `{}` is not UTF-8: {e}",
                trigger.name
            )
        })?;
        (Value::String(json_literal(text)), Some(text))
    };
    let mut metadata = Map::new();
    metadata.insert(
        "DequeueCount".into(),
        Value::String(message.dequeue_count.to_string()),
    );
    metadata.insert(
        "ExpirationTime".into(),
        Value::String(host_time(message.expiration_time)),
    );
    metadata.insert("Id".into(), Value::String(json_literal(&message.id)));
    metadata.insert(
        "InsertionTime".into(),
        Value::String(host_time(message.insertion_time)),
    );
    metadata.insert(
        "NextVisibleTime".into(),
        Value::String(host_time(message.next_visible_time)),
    );
    metadata.insert(
        "PopReceipt".into(),
        Value::String(json_literal(&message.pop_receipt)),
    );
    metadata.insert("sys".into(), sys.to_json());
    // Applied last, so message properties overwrite same-named keys such as `Id` (§3.2, I14).
    for (key, value) in text.map(json_properties_binding_data).unwrap_or_default() {
        metadata.insert(key, value);
    }
    finish_metadata(&mut metadata);
    Ok(json!({ "Data": { trigger.name.clone(): data_value }, "Metadata": metadata }))
}

// ----------------------------------------------------------------------------------------------
// Blob trigger request
// ----------------------------------------------------------------------------------------------

/// A blob the blob trigger found, with what the Storage Blobs extension hands the host.
#[derive(Debug, Clone)]
pub struct BlobTriggerInfo {
    pub content: Vec<u8>,
    /// `container/name`, the extension's `BlobTrigger` binding data.
    pub blob_path: String,
    /// The blob's URI (`Uri`).
    pub uri: String,
    /// The parameters of the trigger's `path` pattern, e.g. `("name", "my-sub")`.
    pub path_data: Vec<(String, String)>,
    pub etag: String,
    pub length: u64,
    pub content_type: Option<String>,
    pub last_modified: OffsetDateTime,
    pub created: OffsetDateTime,
}

/// The invocation request for a blob-triggered function. What is sourced and what inferred:
///
/// - `Data.<trigger>`: with `dataType: "binary"` the bytes as one base64 string, otherwise the
///   text JSON-encoded once more — §3.1's rule for `byte[]` and strings (sourced, H2).
/// - Binding data keys `BlobTrigger`, `Uri`, `Properties`, `Metadata` are the extension's
///   documented blob-trigger metadata (docs "functions-bindings-storage-blob-trigger",
///   "Metadata"); `BlobTrigger` ends in "trigger" and is dropped, `Uri` (a `System.Uri`) is not
///   an object and so arrives as a quoted string, `Metadata` (a dictionary) as an object
///   (§3.1, sourced). `Properties` is the SDK's `BlobProperties` object: its member set here
///   is a plausible subset (inferred; the handler must not depend on it).
/// - Each `{param}` of the `path` pattern is binding data too (`name` → `"\"my-sub\""`,
///   §3.1; the pattern parameters as binding data are sourced from the docs' "Blob name
///   patterns"); `sys` as for every trigger.
pub fn blob_request(
    trigger: &Binding,
    blob: &BlobTriggerInfo,
    sys: &SysInfo,
) -> Result<Value, String> {
    let data_value = if trigger.is_binary() {
        Value::String(STANDARD.encode(&blob.content))
    } else {
        let text = std::str::from_utf8(&blob.content).map_err(|e| {
            format!(
                "blob for string trigger `{}` is not UTF-8: {e}",
                trigger.name
            )
        })?;
        Value::String(json_literal(text))
    };
    let mut metadata = Map::new();
    metadata.insert(
        "BlobTrigger".into(),
        Value::String(json_literal(&blob.blob_path)),
    );
    metadata.insert("Uri".into(), Value::String(json_literal(&blob.uri)));
    metadata.insert(
        "Properties".into(),
        json!({
            "LastModified": host_time(blob.last_modified),
            "CreatedOn": host_time(blob.created),
            "ContentLength": blob.length,
            "ContentType": blob.content_type,
            "ETag": blob.etag,
            "BlobType": "Block",
            "Metadata": {},
        }),
    );
    metadata.insert("Metadata".into(), json!({}));
    for (key, value) in &blob.path_data {
        metadata.insert(key.clone(), Value::String(json_literal(value)));
    }
    metadata.insert("sys".into(), sys.to_json());
    finish_metadata(&mut metadata);
    Ok(json!({ "Data": { trigger.name.clone(): data_value }, "Metadata": metadata }))
}

/// Splits a blob trigger `path` into its container and the blob-name pattern.
pub fn split_blob_path(path: &str) -> Option<(&str, &str)> {
    path.split_once('/')
        .filter(|(c, p)| !c.is_empty() && !p.is_empty())
}

/// Matches a blob name against a `path` pattern's name part (`{name}.json`): literal text must
/// match exactly, each `{param}` takes one or more characters (including `/`, so a blob in a
/// virtual folder matches with the folder in the parameter — inferred from the docs'
/// "Blob name patterns"). The first way that matches wins. `None` when it does not match.
pub fn match_blob_name(pattern: &str, name: &str) -> Option<Vec<(String, String)>> {
    fn go(pattern: &str, name: &str, params: &mut Vec<(String, String)>) -> bool {
        match pattern.find('{') {
            None => pattern == name,
            Some(0) => {
                let Some(close) = pattern.find('}') else {
                    return false;
                };
                let param = &pattern[1..close];
                let rest = &pattern[close + 1..];
                for end in (1..=name.len()).filter(|i| name.is_char_boundary(*i)) {
                    params.push((param.to_string(), name[..end].to_string()));
                    if go(rest, &name[end..], params) {
                        return true;
                    }
                    params.pop();
                }
                false
            }
            Some(open) => {
                name.starts_with(&pattern[..open]) && go(&pattern[open..], &name[open..], params)
            }
        }
    }
    let mut params = Vec::new();
    go(pattern, name, &mut params).then_some(params)
}

// ----------------------------------------------------------------------------------------------
// Timer trigger request
// ----------------------------------------------------------------------------------------------

/// The invocation request for a timer-triggered function: `Data.<trigger>` is the WebJobs
/// `TimerInfo` as JSON (`Schedule`, `ScheduleStatus` with `Last`/`Next`/`LastUpdated`,
/// `IsPastDue`), `Metadata` only `sys`. Not in the spec's captures; this is the shape the
/// custom-handler documentation shows for timer triggers, which the handler must accept.
pub fn timer_request(trigger: &Binding, sys: &SysInfo, past_due: bool) -> Value {
    let now = sys.utc_now;
    let timer = json!({
        "Schedule": { "AdjustForDST": true },
        "ScheduleStatus": {
            "Last": host_time(now - time::Duration::minutes(15)),
            "Next": host_time(now + time::Duration::minutes(15)),
            "LastUpdated": host_time(now),
        },
        "IsPastDue": past_due,
    });
    let mut metadata = Map::new();
    metadata.insert("sys".into(), sys.to_json());
    json!({ "Data": { trigger.name.clone(): timer }, "Metadata": metadata })
}

// ----------------------------------------------------------------------------------------------
// §3.3 HTTP trigger request
// ----------------------------------------------------------------------------------------------

/// An HTTP request to an HTTP-triggered function, as a client would send it to the host.
#[derive(Debug, Clone, Default)]
pub struct HttpCall {
    pub method: String,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpCall {
    pub fn new(method: &str) -> HttpCall {
        HttpCall {
            method: method.to_string(),
            ..HttpCall::default()
        }
    }

    /// A POST with a JSON body and `Content-Type: application/json`.
    pub fn post_json(body: &Value) -> HttpCall {
        HttpCall::new("POST")
            .header("Content-Type", "application/json")
            .body(body.to_string().into_bytes())
    }

    pub fn query(mut self, name: &str, value: &str) -> HttpCall {
        self.query.push((name.to_string(), value.to_string()));
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> HttpCall {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> HttpCall {
        self.body = body.into();
        self
    }

    pub fn header_value(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The invocation request for an HTTP-triggered function in JSON-payload mode (§3.3,
/// `http-trigger-request.order.derived.json`).
///
/// The call is treated as one arriving at Core Tools' `http://localhost:7071` with a valid
/// function key: `Host` and `Content-Length` are added as the client would have sent them, and
/// `Identities` carries the `WebJobsAuthLevel` identity the key grants (`Admin` for
/// `authLevel: admin`, else `Function`). Keys are not checked.
pub fn http_request(
    function: &FunctionDef,
    route_prefix: &str,
    call: &HttpCall,
    sys: &SysInfo,
) -> Result<Value, String> {
    let trigger = function
        .http_trigger()
        .ok_or_else(|| format!("function `{}` has no httpTrigger", function.name))?;
    let headers = effective_headers(call);
    let query = query_object(&call.query);
    let mut req = Map::new();
    req.insert(
        "Url".into(),
        Value::String(public_url(function, trigger, route_prefix, &call.query)),
    );
    req.insert(
        "Method".into(),
        Value::String(call.method.to_ascii_uppercase()),
    );
    req.insert("Query".into(), Value::Object(query.clone()));
    req.insert("Headers".into(), Value::Object(header_arrays(&headers)));
    req.insert("Params".into(), json!({}));
    req.insert(
        "Identities".into(),
        json!([auth_identity(trigger.auth_level.as_deref())]),
    );
    if let Some(body) = request_body(call) {
        req.insert("Body".into(), body);
    }
    let metadata = http_metadata(call, query, &headers, sys);
    Ok(json!({ "Data": { trigger.name.clone(): req }, "Metadata": metadata }))
}

/// `Metadata` of an HTTP invocation: the HTTP extension's binding data run through §3.1.
fn http_metadata(
    call: &HttpCall,
    query: Map<String, Value>,
    headers: &[(String, String)],
    sys: &SysInfo,
) -> Map<String, Value> {
    let mut metadata = Map::new();
    for (name, value) in &query {
        if !name.eq_ignore_ascii_case("code") {
            metadata.insert(name.clone(), encode_binding_value(value));
        }
    }
    if !body_is_binary(call) {
        for (key, value) in json_properties_binding_data(&String::from_utf8_lossy(&call.body)) {
            metadata.insert(key, value);
        }
    }
    metadata.insert("Query".into(), Value::Object(query));
    metadata.insert("Headers".into(), Value::Object(header_strings(headers)));
    metadata.insert("sys".into(), sys.to_json());
    finish_metadata(&mut metadata);
    metadata
}

/// `http://localhost:7071/<prefix>/<route or function name>[?query]`.
fn public_url(
    function: &FunctionDef,
    trigger: &Binding,
    route_prefix: &str,
    query: &[(String, String)],
) -> String {
    let route = trigger.route.as_deref().unwrap_or(&function.name);
    let mut path = String::new();
    for segment in [route_prefix, route] {
        let segment = segment.trim_matches('/');
        if !segment.is_empty() {
            path.push('/');
            path.push_str(segment);
        }
    }
    let mut url = format!("{PUBLIC_ORIGIN}{path}");
    if !query.is_empty() {
        let mut encoded = url::form_urlencoded::Serializer::new(String::new());
        encoded.extend_pairs(query);
        url.push('?');
        url.push_str(&encoded.finish());
    }
    url
}

/// The caller's headers plus `Host` and `Content-Length` where the caller left them out.
fn effective_headers(call: &HttpCall) -> Vec<(String, String)> {
    let mut headers = call.headers.clone();
    if call.header_value("Host").is_none() {
        headers.push((
            "Host".into(),
            PUBLIC_ORIGIN.trim_start_matches("http://").into(),
        ));
    }
    if !call.body.is_empty() && call.header_value("Content-Length").is_none() {
        headers.push(("Content-Length".into(), call.body.len().to_string()));
    }
    headers
}

/// Groups values by case-insensitive name, keeping the first spelling (as Kestrel does).
fn group_by_name(pairs: &[(String, String)]) -> Vec<(String, Vec<String>)> {
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for (name, value) in pairs {
        match groups
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some((_, values)) => values.push(value.clone()),
            None => groups.push((name.clone(), vec![value.clone()])),
        }
    }
    groups
}

/// `Query`: repeated keys joined with `,`.
fn query_object(query: &[(String, String)]) -> Map<String, Value> {
    group_by_name(query)
        .into_iter()
        .map(|(name, values)| (name, Value::String(values.join(","))))
        .collect()
}

/// `Data.req.Headers`: arrays of values.
fn header_arrays(headers: &[(String, String)]) -> Map<String, Value> {
    group_by_name(headers)
        .into_iter()
        .map(|(name, values)| (name, json!(values)))
        .collect()
}

/// `Metadata.Headers`: comma-joined strings, unlike `Data.req.Headers`.
fn header_strings(headers: &[(String, String)]) -> Map<String, Value> {
    group_by_name(headers)
        .into_iter()
        .map(|(name, values)| (name, Value::String(values.join(","))))
        .collect()
}

fn body_is_binary(call: &HttpCall) -> bool {
    let content_type = call
        .header_value("Content-Type")
        .unwrap_or_default()
        .to_ascii_lowercase();
    content_type.starts_with("application/octet-stream") || content_type.starts_with("multipart/")
}

/// `Data.req.Body`: only for a non-empty body; base64 for octet-stream and multipart, else the
/// raw text as a JSON string.
fn request_body(call: &HttpCall) -> Option<Value> {
    if call.body.is_empty() {
        None
    } else if body_is_binary(call) {
        Some(Value::String(STANDARD.encode(&call.body)))
    } else {
        Some(Value::String(
            String::from_utf8_lossy(&call.body).into_owned(),
        ))
    }
}

/// The serialized `ClaimsIdentity` of a key-authenticated call.
fn auth_identity(auth_level: Option<&str>) -> Value {
    let level = match auth_level {
        Some(l) if l.eq_ignore_ascii_case("admin") => "Admin",
        _ => "Function",
    };
    let claim = |kind: &str, value: &str| {
        json!({
            "Issuer": "LOCAL AUTHORITY",
            "OriginalIssuer": "LOCAL AUTHORITY",
            "Properties": {},
            "Type": format!("http://schemas.microsoft.com/2017/07/functions/claims/{kind}"),
            "Value": value,
            "ValueType": "http://www.w3.org/2001/XMLSchema#string",
        })
    };
    json!({
        "AuthenticationType": "WebJobsAuthLevel",
        "IsAuthenticated": true,
        "Actor": null,
        "BootstrapContext": null,
        "Claims": [claim("authlevel", level), claim("invoke", "true"), claim("keyid", "default")],
        "Label": null,
        "Name": null,
        "NameClaimType": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name",
        "RoleClaimType": "http://schemas.microsoft.com/ws/2008/06/identity/claims/role",
    })
}

// ----------------------------------------------------------------------------------------------
// §4.1–4.2 response validation
// ----------------------------------------------------------------------------------------------

/// A handler response that passed the host's checks.
#[derive(Debug, Clone, Default)]
pub struct HandlerResponse {
    /// `Outputs`; `None` when absent or null (then nothing is bound).
    pub outputs: Option<Map<String, Value>>,
    pub logs: Vec<String>,
    pub return_value: Value,
}

/// Validates a handler's answer the way the host does (§4.1). `Err` means the invocation
/// failed: the queue message is retried or poisoned, an HTTP caller gets 500, and nothing in
/// the body (logs, outputs) is used.
pub fn parse_handler_response(
    status: u16,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<HandlerResponse, String> {
    if !(200..300).contains(&status) {
        return Err(format!(
            "handler answered HTTP {status}; the host fails the invocation and ignores its body"
        ));
    }
    let media_type = content_type
        .and_then(|c| c.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase());
    match media_type.as_deref() {
        Some("application/json" | "text/json") => {}
        other => {
            return Err(format!(
                "response media type {other:?} is not JSON (UnsupportedMediaTypeException)"
            ));
        }
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err("empty response body (a real host would hang until functionTimeout and restart the handler)".into());
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| format!("Invalid HttpResponseMessage: body is not JSON ({e})"))?;
    let Value::Object(root) = value else {
        return Err(format!(
            "Invalid HttpResponseMessage: body is {value}, not an object"
        ));
    };
    response_members(&root)
}

/// Reads `Outputs`, `Logs` and `ReturnValue`, matched case-insensitively like Newtonsoft does.
fn response_members(root: &Map<String, Value>) -> Result<HandlerResponse, String> {
    let root = Value::Object(root.clone());
    let outputs = match get_ci(&root, "Outputs") {
        None | Some(Value::Null) => None,
        Some(Value::Object(map)) => Some(map.clone()),
        Some(other) => {
            return Err(format!(
                "Invalid HttpResponseMessage: Outputs is {other}, not an object"
            ));
        }
    };
    let logs = match get_ci(&root, "Logs") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|l| dotnet_scalar_text(l).unwrap_or_else(|| l.to_string()))
            .collect(),
        Some(other) => {
            return Err(format!(
                "Invalid HttpResponseMessage: Logs is {other}, not an array"
            ));
        }
    };
    let return_value = get_ci(&root, "ReturnValue").cloned().unwrap_or(Value::Null);
    Ok(HandlerResponse {
        outputs,
        logs,
        return_value,
    })
}

// ----------------------------------------------------------------------------------------------
// §4.3–4.5 outputs
// ----------------------------------------------------------------------------------------------

/// The response an HTTP caller receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResult {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResult {
    /// What the caller gets when the invocation failed.
    pub fn internal_server_error() -> HttpResult {
        HttpResult {
            status: 500,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// What the caller gets when no HTTP output was bound (Functions 2.x+ default).
    pub fn no_content() -> HttpResult {
        HttpResult {
            status: 204,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One message to enqueue, as bytes before the queue's `messageEncoding`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueOutput {
    pub binding: String,
    pub queue: String,
    pub message: Vec<u8>,
}

/// Everything a successful invocation binds.
#[derive(Debug, Clone, Default)]
pub struct AppliedOutputs {
    /// `None` when the function has no HTTP output binding.
    pub http: Option<HttpResult>,
    pub queue_messages: Vec<QueueOutput>,
}

/// Maps a validated response onto the function's output bindings. `Err` is a binding failure
/// (e.g. an `http` output that is not an object), which fails the invocation.
pub fn apply_outputs(
    function: &FunctionDef,
    response: &HandlerResponse,
) -> Result<AppliedOutputs, String> {
    let mut applied = AppliedOutputs::default();
    for binding in function.outputs() {
        if binding.is_http_output() {
            applied.http = Some(http_output(binding, response)?);
        } else if binding.is_queue_output() {
            let queue = binding
                .queue_name
                .clone()
                .ok_or_else(|| format!("queue output `{}` has no queueName", binding.name))?;
            let value = output_value(function, binding, response);
            for message in
                queue_messages_from_value(value.unwrap_or(&Value::Null), binding.is_binary())
            {
                applied.queue_messages.push(QueueOutput {
                    binding: binding.name.clone(),
                    queue: queue.clone(),
                    message,
                });
            }
        } else {
            return Err(format!(
                "output binding type `{}` ({}) is not emulated by the fake host",
                binding.kind, binding.name
            ));
        }
    }
    Ok(applied)
}

/// The value the host binds to a non-HTTP output: `ReturnValue` for `$return`, else
/// `Outputs[name]` (exact name), else — when there is no `$return` binding and `ReturnValue`
/// is an object — the same-named property of `ReturnValue`.
fn output_value<'a>(
    function: &FunctionDef,
    binding: &Binding,
    response: &'a HandlerResponse,
) -> Option<&'a Value> {
    if binding.name == "$return" {
        return Some(&response.return_value);
    }
    let from_outputs = response.outputs.as_ref().and_then(|o| o.get(&binding.name));
    let from_return = match (&response.return_value, function.return_binding()) {
        (Value::Object(map), None) => map.get(&binding.name),
        _ => None,
    };
    from_outputs.or(from_return)
}

/// The HTTP output (`res`, or `$return` fed from `ReturnValue`) → the caller's response (§4.4).
fn http_output(binding: &Binding, response: &HandlerResponse) -> Result<HttpResult, String> {
    if binding.name == "$return" {
        return match &response.return_value {
            Value::Null => Ok(HttpResult::no_content()),
            value => http_result_from_value(value),
        };
    }
    match &response.outputs {
        None => Ok(HttpResult::no_content()),
        Some(outputs) => match outputs.get(&binding.name) {
            Some(value) => http_result_from_value(value),
            // The host binds an empty response object, which is serialized as the body.
            None => Ok(HttpResult {
                status: 200,
                headers: vec![text_plain()],
                body: b"{}".to_vec(),
            }),
        },
    }
}

fn text_plain() -> (String, String) {
    ("Content-Type".into(), "text/plain; charset=utf-8".into())
}

/// Interprets an HTTP output value `{statusCode, headers, body}` (§4.4): the value must be an
/// object or a string containing one; `statusCode` is a string or number (default 200); a
/// string body is sent verbatim, an object/array body as indented JSON; without a
/// `Content-Type` header the response is `text/plain; charset=utf-8`.
pub fn http_result_from_value(value: &Value) -> Result<HttpResult, String> {
    let object = match value {
        Value::Object(_) => value.clone(),
        Value::String(s) => match serde_json::from_str::<Value>(s) {
            Ok(parsed @ Value::Object(_)) => parsed,
            _ => {
                return Err(format!(
                    "Failed while trying to Deserialize to httpOutputBindingResponse: {s:?}"
                ));
            }
        },
        other => {
            return Err(format!(
                "Failed while trying to Deserialize to httpOutputBindingResponse: {other}"
            ));
        }
    };
    let status = http_status(get_ci(&object, "statusCode"))?;
    let mut headers = http_headers(get_ci(&object, "headers"))?;
    let body = http_body(get_ci(&object, "body"));
    set_content_type(&mut headers);
    Ok(HttpResult {
        status,
        headers,
        body,
    })
}

fn http_status(value: Option<&Value>) -> Result<u16, String> {
    let parsed = match value {
        None | Some(Value::Null) => return Ok(200),
        Some(Value::String(s)) => s.trim().parse::<u16>().ok(),
        Some(Value::Number(n)) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
        Some(_) => None,
    };
    match parsed {
        Some(code) if (100..=999).contains(&code) => Ok(code),
        _ => Err(format!("statusCode {value:?} is not an HTTP status code")),
    }
}

fn http_headers(value: Option<&Value>) -> Result<Vec<(String, String)>, String> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Object(map)) => Ok(map
            .iter()
            .map(|(name, v)| {
                (
                    name.clone(),
                    dotnet_scalar_text(v).unwrap_or_else(|| v.to_string()),
                )
            })
            .collect()),
        Some(other) => Err(format!("headers {other} is not an object")),
    }
}

fn http_body(value: Option<&Value>) -> Vec<u8> {
    match value {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => s.clone().into_bytes(),
        Some(v @ (Value::Object(_) | Value::Array(_))) => newtonsoft_indented(v).into_bytes(),
        Some(scalar) => dotnet_scalar_text(scalar).unwrap_or_default().into_bytes(),
    }
}

/// The host appends `; charset=utf-8` to a given `Content-Type` and defaults to `text/plain`.
fn set_content_type(headers: &mut Vec<(String, String)>) {
    match headers
        .iter_mut()
        .find(|(n, _)| n.eq_ignore_ascii_case("Content-Type"))
    {
        Some((_, value)) if !value.to_ascii_lowercase().contains("charset") => {
            value.push_str("; charset=utf-8")
        }
        Some(_) => {}
        None => headers.push(text_plain()),
    }
}

/// `JToken.ToString()`: two-space indentation, `"key": value`, like serde's pretty printer.
fn newtonsoft_indented(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

/// The messages a queue output value produces (§4.3, §4.5):
/// - a string is first base64-decoded if it can be (unless the binding is `binary`) and then
///   the decoded bytes are the one message; otherwise a string that looks like a JSON array or
///   object is parsed and handled as that value; otherwise it is the message text;
/// - an array fans out into one message per element (elements taken as they are: strings as
///   their text, objects as JSON, scalars as .NET text, nulls skipped);
/// - an object is one message with its indented JSON text;
/// - numbers and booleans are their .NET text (`True`/`False`); null binds nothing.
pub fn queue_messages_from_value(value: &Value, binary: bool) -> Vec<Vec<u8>> {
    match value {
        Value::Null => Vec::new(),
        Value::String(s) => match (binary, host_base64_decode(s)) {
            (false, Some(bytes)) => vec![bytes],
            _ => string_messages(s),
        },
        Value::Array(items) => items.iter().filter_map(element_message).collect(),
        other => element_message(other).into_iter().collect(),
    }
}

fn string_messages(text: &str) -> Vec<Vec<u8>> {
    let trimmed = text.trim();
    let looks_like_json = (trimmed.starts_with('{') && trimmed.ends_with('}'))
        || (trimmed.starts_with('[') && trimmed.ends_with(']'));
    match serde_json::from_str::<Value>(trimmed) {
        Ok(parsed @ (Value::Object(_) | Value::Array(_))) if looks_like_json => {
            queue_messages_from_value(&parsed, true)
        }
        _ => vec![text.as_bytes().to_vec()],
    }
}

fn element_message(value: &Value) -> Option<Vec<u8>> {
    match value {
        Value::Null => None,
        Value::Object(_) | Value::Array(_) => Some(newtonsoft_indented(value).into_bytes()),
        scalar => dotnet_scalar_text(scalar).map(String::into_bytes),
    }
}

/// .NET's `Convert.FromBase64String`: whitespace ignored, length a multiple of 4, canonical
/// padding, trailing bits not checked. `None` when the text is not base64.
pub fn host_base64_decode(text: &str) -> Option<Vec<u8>> {
    const DOTNET_BASE64: GeneralPurpose = GeneralPurpose::new(
        &alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(DecodePaddingMode::RequireCanonical),
    );
    let compact: String = text
        .chars()
        .filter(|c| !matches!(c, ' ' | '\t' | '\r' | '\n'))
        .collect();
    if !compact.len().is_multiple_of(4) {
        return None;
    }
    DOTNET_BASE64.decode(compact).ok()
}

/// Message bytes → the text stored in the queue under `encoding`.
pub fn encode_message(bytes: &[u8], encoding: MessageEncoding) -> Result<String, String> {
    match encoding {
        MessageEncoding::Base64 => Ok(STANDARD.encode(bytes)),
        MessageEncoding::None => String::from_utf8(bytes.to_vec())
            .map_err(|_| "messageEncoding none cannot carry non-UTF-8 bytes".into()),
    }
}

/// Stored queue text → message bytes under `encoding`; `None` when base64 is expected and the
/// text is not base64 (the host poisons such messages at once, §7.3).
pub fn decode_message(stored: &str, encoding: MessageEncoding) -> Option<Vec<u8>> {
    match encoding {
        MessageEncoding::Base64 => host_base64_decode(stored),
        MessageEncoding::None => Some(stored.as_bytes().to_vec()),
    }
}
