//! Proves the fake Functions host is faithful: payloads equal the protocol fixtures derived
//! from the real host, responses are judged and bound like the host does, and queue retries,
//! poisoning, handler restarts and Azurite restarts behave as the spec says. Other integration
//! tests trust `aos-testkit` because these pass.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::{HeaderMap, Request, StatusCode};
use axum::response::Response;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use time::macros::datetime;
use uuid::Uuid;

use aos_testkit::app::{Binding, FunctionApp, FunctionDef, MessageEncoding, parse_timespan};
use aos_testkit::azurite::Azurite;
use aos_testkit::blobs::Blobs;
use aos_testkit::host::{FunctionsHost, HostConfig, HttpCall};
use aos_testkit::invocation::{
    BlobTriggerInfo, HandlerResponse, QueueMessageInfo, SysInfo, apply_outputs, blob_request,
    http_request, http_result_from_value, json_properties_binding_data, match_blob_name,
    parse_handler_response, queue_messages_from_value, queue_request,
};
use aos_testkit::{app_root, fixture, poll_until};

const JSON: Option<&str> = Some("application/json; charset=utf-8");

// ----------------------------------------------------------------------------------------------
// Payloads equal the fixtures
// ----------------------------------------------------------------------------------------------

fn binding(kind: &str, direction: &str, name: &str) -> Binding {
    Binding {
        kind: kind.into(),
        direction: direction.into(),
        name: name.into(),
        queue_name: None,
        path: None,
        connection: None,
        data_type: None,
        auth_level: None,
        methods: None,
        route: None,
    }
}

fn queue_trigger(name: &str, queue: &str) -> Binding {
    Binding {
        queue_name: Some(queue.into()),
        ..binding("queueTrigger", "in", name)
    }
}

fn queue_output(name: &str, queue: &str) -> Binding {
    Binding {
        queue_name: Some(queue.into()),
        ..binding("queue", "out", name)
    }
}

/// The message the queue fixtures describe, with their ids and times.
fn fixture_message(body: &[u8]) -> QueueMessageInfo {
    QueueMessageInfo {
        body: body.to_vec(),
        dequeue_count: 1,
        id: "800ae4b3-bdd2-4c08-badd-f08e5a34b865".into(),
        pop_receipt: "AgAAAAMAAAAAAAAAAgtnj8x+1QE=".into(),
        expiration_time: datetime!(2019-10-16 17:58:31.123 UTC),
        insertion_time: datetime!(2019-10-09 17:58:31.999 UTC),
        next_visible_time: datetime!(2019-10-09 18:08:32.5 UTC),
    }
}

fn fixture_sys(method: &str, utc_now: time::OffsetDateTime, guid: &str) -> anyhow::Result<SysInfo> {
    Ok(SysInfo {
        method_name: method.into(),
        utc_now,
        rand_guid: Uuid::parse_str(guid)?,
    })
}

/// Undoes one JSON string layer.
fn unquote(value: &Value) -> anyhow::Result<String> {
    let text = value
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("{value} is not a string"))?;
    Ok(serde_json::from_str::<String>(text)?)
}

#[test]
fn queue_request_for_a_json_message_equals_the_fixture() -> anyhow::Result<()> {
    let expected = fixture("queue-trigger-request.json-message.derived.json")?;
    // The message text is what the fixture's Data holds under two JSON string layers.
    let text = unquote(&expected["Data"]["myQueueItem"])?;
    assert!(text.starts_with("{\"orderNo\":1005"), "{text}");
    let sys = fixture_sys(
        "MyQueueFunction",
        datetime!(2019-10-09 17:58:32.2205399 UTC),
        "24ad4c06-24ad-4e5b-8294-3da9714877e9",
    )?;
    let actual = queue_request(
        &queue_trigger("myQueueItem", "q"),
        &fixture_message(text.as_bytes()),
        &sys,
    )
    .map_err(anyhow::Error::msg)?;
    assert_eq!(actual, expected);
    Ok(())
}

#[test]
fn queue_request_for_plain_text_and_binary_equal_the_fixtures() -> anyhow::Result<()> {
    let sys = fixture_sys(
        "MyQueueFunction",
        datetime!(2019-10-09 17:58:32.2205399 UTC),
        "24ad4c06-24ad-4e5b-8294-3da9714877e9",
    )?;
    let plain = queue_request(
        &queue_trigger("myQueueItem", "q"),
        &fixture_message(b"hello"),
        &sys,
    )
    .map_err(anyhow::Error::msg)?;
    assert_eq!(
        plain,
        fixture("queue-trigger-request.plain-text.derived.json")?
    );

    let expected = fixture("queue-trigger-request.binary-datatype.derived.json")?;
    let bytes = STANDARD.decode(expected["Data"]["myQueueItem"].as_str().unwrap_or_default())?;
    let trigger = Binding {
        data_type: Some("binary".into()),
        ..queue_trigger("myQueueItem", "q")
    };
    let binary =
        queue_request(&trigger, &fixture_message(&bytes), &sys).map_err(anyhow::Error::msg)?;
    assert_eq!(binary, expected);
    Ok(())
}

#[test]
fn queue_request_with_the_current_time_has_the_host_formats() -> anyhow::Result<()> {
    let message = QueueMessageInfo {
        dequeue_count: 3,
        ..fixture_message(b"{\"Id\":\"mine\",\"n\":null}")
    };
    let request = queue_request(
        &queue_trigger("event", "q"),
        &message,
        &SysInfo::now("EventsProcessor"),
    )
    .map_err(anyhow::Error::msg)?;
    let metadata = &request["Metadata"];
    assert_eq!(metadata["DequeueCount"], "3");
    // A message property overwrites the queue's own `Id`; nulls are not sent.
    assert_eq!(metadata["Id"], "\"mine\"");
    assert!(metadata.get("n").is_none());
    let utc_now = metadata["sys"]["UtcNow"].as_str().unwrap_or_default();
    assert_eq!(
        utc_now.len(),
        "2019-10-09T17:58:32.2205399Z".len(),
        "{utc_now}"
    );
    assert!(utc_now.ends_with('Z'));
    assert_eq!(metadata["ExpirationTime"], "2019-10-16T17:58:31+00:00");
    assert!(Uuid::parse_str(metadata["sys"]["RandGuid"].as_str().unwrap_or_default()).is_ok());
    Ok(())
}

fn blob_info(content: &[u8]) -> BlobTriggerInfo {
    BlobTriggerInfo {
        content: content.to_vec(),
        blob_path: "add-subscriptions/my-sub.json".into(),
        uri: "http://127.0.0.1:10000/devstoreaccount1/add-subscriptions/my-sub.json".into(),
        path_data: vec![("name".into(), "my-sub".into())],
        etag: "\"0x8DC0000000000\"".into(),
        length: content.len() as u64,
        content_type: Some("application/json".into()),
        last_modified: datetime!(2019-10-09 17:58:31.999 UTC),
        created: datetime!(2019-10-09 17:58:31.999 UTC),
    }
}

#[test]
fn blob_request_encodes_content_and_binding_data_like_the_host() -> anyhow::Result<()> {
    let content = br#"{"id": 12}"#;
    let sys = fixture_sys(
        "EventsDeSubscriber",
        datetime!(2019-10-09 17:58:32.2205399 UTC),
        "24ad4c06-24ad-4e5b-8294-3da9714877e9",
    )?;
    let binary = Binding {
        data_type: Some("binary".into()),
        path: Some("add-subscriptions/{name}.json".into()),
        ..binding("blobTrigger", "in", "blob")
    };
    let request = blob_request(&binary, &blob_info(content), &sys).map_err(anyhow::Error::msg)?;
    // dataType binary: one base64 string (§3.1 byte[] rule).
    assert_eq!(
        STANDARD.decode(request["Data"]["blob"].as_str().unwrap_or_default())?,
        content
    );
    let metadata = &request["Metadata"];
    // Strings and Uri arrive JSON-encoded once more; objects stay objects; `BlobTrigger`
    // ends in "trigger" and is dropped.
    assert_eq!(metadata["name"], "\"my-sub\"");
    assert_eq!(
        unquote(&metadata["Uri"])?,
        "http://127.0.0.1:10000/devstoreaccount1/add-subscriptions/my-sub.json"
    );
    assert!(metadata.get("BlobTrigger").is_none());
    assert!(metadata["Properties"].is_object() && metadata["Metadata"].is_object());
    assert_eq!(
        metadata["Properties"]["LastModified"],
        "2019-10-09T17:58:31+00:00"
    );
    assert_eq!(metadata["sys"]["MethodName"], "EventsDeSubscriber");

    // As a string binding the text is JSON-encoded (the double encoding of §3.1).
    let string = Binding {
        data_type: None,
        ..binary
    };
    let request = blob_request(&string, &blob_info(content), &sys).map_err(anyhow::Error::msg)?;
    assert_eq!(unquote(&request["Data"]["blob"])?, r#"{"id": 12}"#);
    assert!(blob_request(&string, &blob_info(&[0xff, 0xfe]), &sys).is_err());
    Ok(())
}

#[test]
fn blob_names_match_the_trigger_path_pattern() {
    let name = |v: &str| vec![("name".to_string(), v.to_string())];
    assert_eq!(match_blob_name("{name}.json", "a.json"), Some(name("a")));
    assert_eq!(
        match_blob_name("{name}.json", "a.json.json"),
        Some(name("a.json"))
    );
    assert_eq!(
        match_blob_name("{name}.json", "dir/a.json"),
        Some(name("dir/a"))
    );
    assert_eq!(match_blob_name("{name}.json", "a.txt"), None);
    assert_eq!(match_blob_name("{name}.json", ".json"), None);
    assert_eq!(
        match_blob_name("in-{org}/{name}", "in-ttd/x"),
        Some(vec![
            ("org".to_string(), "ttd".to_string()),
            ("name".to_string(), "x".to_string())
        ])
    );
}

fn order_function() -> FunctionDef {
    let trigger = Binding {
        auth_level: Some("function".into()),
        methods: Some(vec!["post".into()]),
        ..binding("httpTrigger", "in", "req")
    };
    FunctionDef {
        name: "order".into(),
        bindings: vec![
            trigger,
            binding("http", "out", "res"),
            queue_output("message", "orders"),
        ],
    }
}

fn order_call() -> HttpCall {
    HttpCall::new("POST")
        .query("code", "REDACTED")
        .header("Accept", "*/*")
        .header("User-Agent", "curl/8.5.0")
        .header("Content-Type", "application/json")
        .body(r#"{"id":1005,"quantity":2,"color":"black"}"#)
}

#[test]
fn http_request_for_the_order_call_equals_the_fixture() -> anyhow::Result<()> {
    let expected = fixture("http-trigger-request.order.derived.json")?;
    let sys = fixture_sys(
        "order",
        datetime!(2024-05-01 10:00:00.1234567 UTC),
        "0f8fad5b-d9cb-469f-a165-70867728950e",
    )?;
    // `Host` and `Content-Length` are added as the client would have sent them.
    let actual =
        http_request(&order_function(), "api", &order_call(), &sys).map_err(anyhow::Error::msg)?;
    assert_eq!(actual, expected);
    // Given explicitly, they are not duplicated.
    let explicit = order_call()
        .header("Host", "localhost:7071")
        .header("Content-Length", "40");
    assert_eq!(
        http_request(&order_function(), "api", &explicit, &sys).map_err(anyhow::Error::msg)?,
        expected
    );
    Ok(())
}

#[test]
fn http_request_query_parameters_and_empty_body() -> anyhow::Result<()> {
    let call = HttpCall::new("get")
        .query("name", "Ink And Toner")
        .query("name", "x")
        .query("code", "k");
    let request = http_request(&order_function(), "api", &call, &SysInfo::now("order"))
        .map_err(anyhow::Error::msg)?;
    let req = &request["Data"]["req"];
    assert_eq!(
        req["Url"],
        "http://localhost:7071/api/order?name=Ink+And+Toner&name=x&code=k"
    );
    assert_eq!(req["Method"], "GET");
    assert_eq!(
        req["Query"],
        json!({"name": "Ink And Toner,x", "code": "k"})
    );
    assert!(req.get("Body").is_none(), "no Body without content");
    assert_eq!(request["Metadata"]["name"], "\"Ink And Toner,x\"");
    assert!(
        request["Metadata"].get("code").is_none(),
        "`code` is not binding data"
    );
    Ok(())
}

#[test]
fn json_properties_become_double_encoded_binding_data() {
    let data = json_properties_binding_data(
        r#"{"n":1005,"f":2.0,"b":true,"s":"x","o":{"k":[1]},"a":[1],"z":null}"#,
    );
    let data: serde_json::Map<String, Value> = data.into_iter().collect();
    assert_eq!(
        Value::Object(data),
        json!({"n": "\"1005\"", "f": "\"2\"", "b": "\"True\"", "s": "\"x\"", "o": {"k": [1]}})
    );
    assert!(json_properties_binding_data("[1,2]").is_empty());
    assert!(json_properties_binding_data("hello").is_empty());
}

// ----------------------------------------------------------------------------------------------
// Responses are judged and bound like the host does
// ----------------------------------------------------------------------------------------------

#[test]
fn string_outputs_get_the_base64_quirk() {
    assert_eq!(
        queue_messages_from_value(&json!("abcd1234"), false),
        vec![vec![0x69, 0xb7, 0x1d, 0xd7, 0x6d, 0xf8]]
    );
    assert_eq!(
        queue_messages_from_value(&json!("test"), false),
        vec![vec![0xb5, 0xeb, 0x2d]]
    );
    assert_eq!(
        queue_messages_from_value(&json!("hello"), false),
        vec![b"hello".to_vec()]
    );
    // `dataType: binary` switches the quirk off.
    assert_eq!(
        queue_messages_from_value(&json!("abcd1234"), true),
        vec![b"abcd1234".to_vec()]
    );
}

#[test]
fn queue_outputs_fan_out_and_convert_like_the_host() -> anyhow::Result<()> {
    let texts = |value: Value| -> Vec<String> {
        queue_messages_from_value(&value, false)
            .into_iter()
            .map(|m| String::from_utf8_lossy(&m).into_owned())
            .collect()
    };
    assert_eq!(
        texts(json!(["queue message 1", "queue message 2"])),
        ["queue message 1", "queue message 2"]
    );
    assert_eq!(texts(json!("[1,2]")), ["1", "2"]);
    assert_eq!(texts(json!([true, 5, null])), ["True", "5"]);
    assert_eq!(texts(json!(null)), Vec::<String>::new());
    let object = texts(json!({"id": 1005}));
    assert_eq!(object.len(), 1);
    assert_eq!(
        serde_json::from_str::<Value>(&object[0])?,
        json!({"id": 1005})
    );
    let from_string = texts(json!("{\"id\":1005,\"quantity\":2,\"color\":\"black\"}"));
    assert_eq!(
        serde_json::from_str::<Value>(&from_string[0])?,
        json!({"id":1005,"quantity":2,"color":"black"})
    );
    Ok(())
}

fn parse_fixture_response(name: &str) -> anyhow::Result<HandlerResponse> {
    let body = serde_json::to_vec(&fixture(name)?)?;
    parse_handler_response(200, JSON, &body).map_err(anyhow::Error::msg)
}

#[test]
fn docs_response_binds_res_and_fans_out_the_queue_array() -> anyhow::Result<()> {
    let function = FunctionDef {
        name: "f".into(),
        bindings: vec![
            binding("httpTrigger", "in", "req"),
            binding("http", "out", "res"),
            queue_output("myQueueOutput", "out"),
        ],
    };
    let response = parse_fixture_response("response.docs-example.json")?;
    assert_eq!(response.logs, ["Log message 1", "Log message 2"]);
    let applied = apply_outputs(&function, &response).map_err(anyhow::Error::msg)?;
    let messages: Vec<&[u8]> = applied
        .queue_messages
        .iter()
        .map(|m| m.message.as_slice())
        .collect();
    assert_eq!(
        messages,
        [b"queue message 1".as_slice(), b"queue message 2".as_slice()]
    );
    assert!(applied.queue_messages.iter().all(|m| m.queue == "out"));
    let http = applied
        .http
        .ok_or_else(|| anyhow::anyhow!("no http result"))?;
    assert_eq!(
        (http.status, http.body.as_slice()),
        (200, b"Message enqueued".as_slice())
    );
    assert_eq!(
        http.header("Content-Type"),
        Some("text/plain; charset=utf-8")
    );
    Ok(())
}

#[test]
fn res_status_code_may_be_a_string_or_a_number() -> anyhow::Result<()> {
    let function = FunctionDef {
        name: "f".into(),
        bindings: vec![binding("http", "out", "res")],
    };
    let response = parse_fixture_response("http-response-res-statuscode.host-unit-test.json")?;
    let http = apply_outputs(&function, &response)
        .map_err(anyhow::Error::msg)?
        .http;
    let http = http.ok_or_else(|| anyhow::anyhow!("no http result"))?;
    assert_eq!(
        (http.status, http.body.as_slice()),
        (201, b"my world".as_slice())
    );

    let numeric = http_result_from_value(&json!({"statusCode": 202, "body": {"a": [1]}, "headers": {"Content-Type": "application/json"}}))
        .map_err(anyhow::Error::msg)?;
    assert_eq!(numeric.status, 202);
    assert_eq!(
        numeric.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(
        serde_json::from_slice::<Value>(&numeric.body)?,
        json!({"a": [1]})
    );

    let headers = parse_fixture_response("http-response-res-headers.go-sample.json")?;
    let http = apply_outputs(&function, &headers)
        .map_err(anyhow::Error::msg)?
        .http;
    let http = http.ok_or_else(|| anyhow::anyhow!("no http result"))?;
    assert_eq!(
        (http.status, http.header("header1")),
        (201, Some("header1Val"))
    );

    let missing = http_result_from_value(&json!({"body": "x"})).map_err(anyhow::Error::msg)?;
    assert_eq!(missing.status, 200);
    assert!(
        http_result_from_value(&json!("not json")).is_err(),
        "a plain string res fails the invocation"
    );
    assert!(http_result_from_value(&json!({"statusCode": "abc"})).is_err());
    Ok(())
}

#[test]
fn absent_res_means_200_with_braces_or_204() -> anyhow::Result<()> {
    let function = FunctionDef {
        name: "f".into(),
        bindings: vec![binding("http", "out", "res")],
    };
    let outputs_without_res =
        parse_handler_response(200, JSON, br#"{"Outputs":{}}"#).map_err(anyhow::Error::msg)?;
    let http = apply_outputs(&function, &outputs_without_res)
        .map_err(anyhow::Error::msg)?
        .http;
    assert_eq!(
        http.map(|h| (h.status, h.body)),
        Some((200, b"{}".to_vec()))
    );
    let no_outputs = parse_handler_response(200, JSON, b"{}").map_err(anyhow::Error::msg)?;
    let http = apply_outputs(&function, &no_outputs)
        .map_err(anyhow::Error::msg)?
        .http;
    assert_eq!(http.map(|h| h.status), Some(204));
    Ok(())
}

#[test]
fn responses_are_validated_like_the_host() {
    let valid = br#"{"Outputs":{"res":{"body":"x"}},"Logs":["l"]}"#;
    assert!(parse_handler_response(200, JSON, valid).is_ok());
    assert!(parse_handler_response(201, Some("text/json"), valid).is_ok());
    let failures = [
        (500, JSON, valid.as_slice(), "non-2xx"),
        (200, Some("text/plain"), valid.as_slice(), "text/plain"),
        (200, None, valid.as_slice(), "no content type"),
        (200, JSON, b"".as_slice(), "empty body"),
        (200, JSON, b"{\"Outputs\":".as_slice(), "malformed JSON"),
        (200, JSON, b"[1]".as_slice(), "not an object"),
        (
            200,
            JSON,
            br#"{"Outputs":"x"}"#.as_slice(),
            "Outputs not an object",
        ),
    ];
    for (status, content_type, body, what) in failures {
        assert!(
            parse_handler_response(status, content_type, body).is_err(),
            "{what} must fail the invocation"
        );
    }
    // Member names are matched case-insensitively (Newtonsoft).
    let lower = parse_handler_response(
        200,
        JSON,
        br#"{"outputs":{"a":1},"logs":["x"],"returnValue":2}"#,
    );
    let lower = lower.unwrap_or_default();
    assert_eq!(
        (lower.logs, lower.return_value),
        (vec!["x".to_string()], json!(2))
    );
}

#[test]
fn app_configuration_comes_from_the_function_app_files() -> anyhow::Result<()> {
    let app = FunctionApp::load(&app_root())?;
    assert_eq!(app.host.arguments, ["serve"]);
    assert_eq!(app.host.queues.max_dequeue_count, 5);
    assert_eq!(app.host.queues.visibility_timeout, Duration::from_secs(30));
    assert_eq!(app.host.queues.message_encoding, MessageEncoding::Base64);
    assert_eq!(app.host.function_timeout, Some(Duration::from_secs(600)));
    assert_eq!(app.host.route_prefix, "api");
    let triggered: Vec<(&str, Option<&str>)> = app
        .queue_triggered()
        .map(|(f, t)| (f.name.as_str(), t.queue_name.as_deref()))
        .collect();
    assert_eq!(
        triggered,
        [
            ("EventsConfirmation", Some("events-confirmation")),
            ("EventsFeedback", Some("events-feedback")),
            ("EventsProcessor", Some("events-inbound"))
        ]
    );
    assert!(app.function("EventsReceiver")?.http_trigger().is_some());
    let blob_triggered: Vec<(&str, Option<&str>, bool, Option<&str>)> = app
        .blob_triggered()
        .map(|(f, t)| {
            (
                f.name.as_str(),
                t.path.as_deref(),
                t.is_binary(),
                t.connection.as_deref(),
            )
        })
        .collect();
    let connection = Some("QueueStorageSettings:ConnectionString");
    assert_eq!(
        blob_triggered,
        [
            (
                "EventsDeSubscriber",
                Some("remove-subscriptions/{name}.json"),
                true,
                connection
            ),
            (
                "EventsSubscriber",
                Some("add-subscriptions/{name}.json"),
                true,
                connection
            ),
        ]
    );
    assert_eq!(
        parse_timespan("1.02:00:00.5")?,
        Duration::from_millis(26 * 3_600_000 + 500)
    );
    assert!(parse_timespan("30s").is_err());
    Ok(())
}

// ----------------------------------------------------------------------------------------------
// A stand-in handler for end-to-end checks
// ----------------------------------------------------------------------------------------------

/// One invocation request as the stand-in handler received it.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    headers: HeaderMap,
    payload: Value,
}

type Reply = (u16, Option<&'static str>, Vec<u8>);
type Behaviour = Arc<dyn Fn(&str, &Value) -> Reply + Send + Sync>;

/// A tiny custom handler inside the test: answers `GET /` and replies to invocations with
/// `behaviour(function, payload)`, recording every request.
struct Standin {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    server: tokio::task::JoinHandle<()>,
}

impl Standin {
    async fn start(
        behaviour: impl Fn(&str, &Value) -> Reply + Send + Sync + 'static,
    ) -> anyhow::Result<Standin> {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let port = listener.local_addr()?.port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let behaviour: Behaviour = Arc::new(behaviour);
        let (log, reply) = (seen.clone(), behaviour.clone());
        let router = Router::new()
            .route("/", get(|| async { "stand-in handler" }))
            .fallback(move |request: Request<Body>| {
                invocation(request, log.clone(), reply.clone())
            });
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(Standin { port, seen, server })
    }

    fn seen(&self, function: &str) -> Vec<Seen> {
        let path = format!("/{function}");
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|s| s.path == path)
            .cloned()
            .collect()
    }
}

impl Drop for Standin {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn invocation(
    request: Request<Body>,
    seen: Arc<Mutex<Vec<Seen>>>,
    behaviour: Behaviour,
) -> Response {
    let path = request.uri().path().to_string();
    let headers = request.headers().clone();
    let payload = match to_bytes(request.into_body(), 1 << 24)
        .await
        .map(|b| serde_json::from_slice::<Value>(&b))
    {
        Ok(Ok(payload)) => payload,
        _ => return status_response(400, None, b"payload is not JSON".to_vec()),
    };
    let (status, content_type, body) = behaviour(path.trim_start_matches('/'), &payload);
    seen.lock().unwrap_or_else(|p| p.into_inner()).push(Seen {
        path,
        headers,
        payload,
    });
    status_response(status, content_type, body)
}

fn status_response(status: u16, content_type: Option<&str>, body: Vec<u8>) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Some(value) = content_type.and_then(|c| c.parse().ok()) {
        response.headers_mut().insert("content-type", value);
    }
    response
}

fn ok_json(body: Value) -> Reply {
    (200, Some("application/json"), body.to_string().into_bytes())
}

/// The queue message text a queue invocation carries (Data.event, two JSON layers).
fn event_text(payload: &Value) -> String {
    unquote(&payload["Data"]["event"]).unwrap_or_default()
}

/// A copy of the app with only the named functions, so their outputs stay in the queues
/// instead of being consumed by the next function. host.json and function.json are the
/// app's own files.
fn app_subset(functions: &[&str]) -> anyhow::Result<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    std::fs::copy(app_root().join("host.json"), dir.path().join("host.json"))?;
    for function in functions {
        std::fs::create_dir(dir.path().join(function))?;
        let from = app_root().join(function).join("function.json");
        std::fs::copy(from, dir.path().join(function).join("function.json"))?;
    }
    Ok(dir)
}

fn config(azurite: &Azurite, app: &Path) -> HostConfig {
    HostConfig {
        app_root: app.to_path_buf(),
        ..HostConfig::new(azurite.connection_string())
    }
    .visibility_timeout(Duration::ZERO)
}

const WAIT: Duration = Duration::from_secs(60);

async fn wait_for_poison(
    host: &FunctionsHost,
    queue: &str,
    count: usize,
) -> anyhow::Result<Vec<String>> {
    poll_until(
        &format!("{count} message(s) in {queue}-poison"),
        WAIT,
        Duration::from_millis(100),
        || async {
            let texts = host.poison_texts(queue).await?;
            Ok((texts.len() >= count).then_some(texts))
        },
    )
    .await
}

// ----------------------------------------------------------------------------------------------
// End-to-end: queues, retries, poison, outputs
// ----------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_message_is_tried_max_dequeue_count_times_then_poisoned() -> anyhow::Result<()> {
    let azurite = Azurite::start().await?;
    let handler = Standin::start(|_, _| {
        (
            500,
            Some("application/json"),
            br#"{"Logs":["dropped"]}"#.to_vec(),
        )
    })
    .await?;
    let host = FunctionsHost::attach(config(&azurite, &app_root()), handler.port).await?;

    azurite
        .put_message("events-inbound", "{\"always\":\"fails\"}")
        .await?;
    let poisoned = wait_for_poison(&host, "events-inbound", 1).await?;
    assert_eq!(
        poisoned,
        ["{\"always\":\"fails\"}"],
        "the original text lands in the poison queue"
    );
    host.wait_until_idle(WAIT).await?;

    let seen = handler.seen("EventsProcessor");
    let counts: Vec<&str> = seen
        .iter()
        .map(|s| {
            s.payload["Metadata"]["DequeueCount"]
                .as_str()
                .unwrap_or("?")
        })
        .collect();
    assert_eq!(counts, ["1", "2", "3", "4", "5"]);
    for request in &seen {
        assert_eq!(event_text(&request.payload), "{\"always\":\"fails\"}");
        assert_eq!(request.payload["Metadata"]["always"], "\"fails\"");
        assert_host_headers(&request.headers);
    }
    let records = host.invocations_of("EventsProcessor");
    assert_eq!(
        records
            .iter()
            .map(|r| (r.dequeue_count, r.succeeded, r.status))
            .collect::<Vec<_>>(),
        [
            (Some(1), false, 500),
            (Some(2), false, 500),
            (Some(3), false, 500),
            (Some(4), false, 500),
            (Some(5), false, 500),
        ]
    );
    assert!(
        records.iter().all(|r| r.logs.is_empty()),
        "logs of failed invocations are dropped"
    );
    assert!(azurite.queue_texts("events-inbound").await?.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_listener_retries_a_failing_blob_then_poisons_it_and_keeps_receipts()
-> anyhow::Result<()> {
    let azurite = Azurite::start().await?;
    let handler = Standin::start(|_, payload| {
        let content = STANDARD
            .decode(payload["Data"]["blob"].as_str().unwrap_or_default())
            .unwrap_or_default();
        if content == b"fail" {
            (
                500,
                Some("application/json"),
                br#"{"Logs":["dropped"]}"#.to_vec(),
            )
        } else {
            ok_json(json!({"Logs": ["handled"]}))
        }
    })
    .await?;
    let app = app_subset(&["EventsSubscriber"])?;
    let host = FunctionsHost::attach(config(&azurite, app.path()), handler.port).await?;
    let blobs = Blobs::new(&azurite.connection_string())?;
    blobs
        .write("add-subscriptions", "bad.json", b"fail")
        .await?;
    blobs.write("add-subscriptions", "good.json", b"{}").await?;
    blobs
        .write("add-subscriptions", "ignored.txt", b"{}")
        .await?;

    let records = host.scan_blobs().await?;
    let summary: Vec<(Option<u32>, bool)> = records
        .iter()
        .map(|r| (r.dequeue_count, r.succeeded))
        .collect();
    assert_eq!(
        summary,
        [
            (Some(1), false),
            (Some(2), false),
            (Some(3), false),
            (Some(4), false),
            (Some(5), false),
            (Some(1), true),
        ],
        "bad.json tried maxDequeueCount times, good.json once, ignored.txt not at all"
    );
    let poison = host.blob_poison_texts().await?;
    assert_eq!(poison.len(), 1, "{poison:?}");
    let message: Value = serde_json::from_str(&poison[0])?;
    assert_eq!(
        (
            message["ContainerName"].as_str(),
            message["BlobName"].as_str()
        ),
        (Some("add-subscriptions"), Some("bad.json"))
    );
    let seen = handler.seen("EventsSubscriber");
    assert_eq!(seen[0].payload["Metadata"]["name"], "\"bad\"");
    assert_host_headers(&seen[0].headers);

    // Receipts: unchanged blobs are not invoked again; a new version (new ETag) is.
    assert!(host.scan_blobs().await?.is_empty());
    blobs
        .write("add-subscriptions", "good.json", b"{\"v\":2}")
        .await?;
    let again = host.scan_blobs().await?;
    assert_eq!(again.len(), 1);
    assert!(again[0].succeeded);
    Ok(())
}

/// The transport of §2: POST, JSON content type, chunked body, the host's headers.
fn assert_host_headers(headers: &HeaderMap) {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(header("content-type"), "application/json; charset=utf-8");
    assert_eq!(header("transfer-encoding"), "chunked");
    assert!(headers.get("content-length").is_none());
    assert!(Uuid::parse_str(&header("x-azure-functions-invocationid")).is_ok());
    assert_eq!(
        header("x-azure-functions-hostversion"),
        aos_testkit::invocation::HOST_VERSION
    );
    assert_eq!(
        header("user-agent"),
        format!(
            "Azure-Functions-Host/{}",
            aos_testkit::invocation::HOST_VERSION
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_answers_fail_and_bind_no_outputs() -> anyhow::Result<()> {
    let azurite = Azurite::start().await?;
    let outputs = json!({"Outputs": {"confirmation": "must not be written"}, "Logs": ["x"]});
    let handler = Standin::start(move |_, payload| {
        let body = outputs.to_string().into_bytes();
        match event_text(payload).as_str() {
            "status-500" => (500, Some("application/json"), body),
            "text-plain" => (200, Some("text/plain"), body),
            _ => (200, Some("application/json"), Vec::new()),
        }
    })
    .await?;
    let app = app_subset(&["EventsProcessor"])?;
    let host = FunctionsHost::attach(config(&azurite, app.path()), handler.port).await?;

    for mode in ["status-500", "text-plain", "empty-body"] {
        azurite.put_message("events-inbound", mode).await?;
    }
    let mut poisoned = wait_for_poison(&host, "events-inbound", 3).await?;
    poisoned.sort();
    assert_eq!(poisoned, ["empty-body", "status-500", "text-plain"]);
    host.wait_until_idle(WAIT).await?;
    assert!(
        azurite.queue_texts("events-confirmation").await?.is_empty(),
        "failed invocations bind nothing"
    );
    let records = host.invocations_of("EventsProcessor");
    assert_eq!(records.len(), 15);
    assert!(
        records
            .iter()
            .all(|r| !r.succeeded && r.error.is_some() && r.outputs.is_null())
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn succeeding_message_is_deleted_and_its_outputs_are_enqueued_base64() -> anyhow::Result<()> {
    let azurite = Azurite::start().await?;
    let handler = Standin::start(|_, payload| {
        let confirmation = match event_text(payload).as_str() {
            "fan-out" => json!(["first", {"k": 1}]),
            "quirk" => json!("abcd1234"),
            other => json!(format!("confirmed {other}")),
        };
        ok_json(json!({"Outputs": {"confirmation": confirmation}, "Logs": ["done"], "ReturnValue": null}))
    })
    .await?;
    let app = app_subset(&["EventsProcessor"])?;
    let host = FunctionsHost::attach(config(&azurite, app.path()), handler.port).await?;

    azurite
        .put_message("events-inbound", "{\"instance\":\"1337/abc\",\"n\":2}")
        .await?;
    host.wait_until_idle(WAIT).await?;
    let raw = azurite.queues().peek_raw("events-confirmation").await?;
    let expected = "confirmed {\"instance\":\"1337/abc\",\"n\":2}";
    assert_eq!(raw, [STANDARD.encode(expected)], "stored base64-encoded");
    assert_eq!(
        azurite.queue_texts("events-confirmation").await?,
        [expected]
    );
    assert!(
        azurite.queue_texts("events-inbound").await?.is_empty(),
        "the trigger message was deleted"
    );

    let records = host.invocations_of("EventsProcessor");
    assert_eq!(records.len(), 1);
    assert!(records[0].succeeded && records[0].dequeue_count == Some(1));
    assert_eq!(records[0].logs, ["done"]);
    let request = &handler.seen("EventsProcessor")[0];
    let metadata = &request.payload["Metadata"];
    assert_eq!(
        (metadata["instance"].as_str(), metadata["n"].as_str()),
        (Some("\"1337/abc\""), Some("\"2\""))
    );
    assert!(
        metadata["Id"]
            .as_str()
            .is_some_and(|id| id.starts_with('"') && id.ends_with('"'))
    );
    assert!(
        metadata["PopReceipt"]
            .as_str()
            .is_some_and(|p| p.starts_with('"') && p.len() > 2)
    );
    assert!(
        metadata["InsertionTime"]
            .as_str()
            .is_some_and(|t| t.len() == 25 && t.ends_with("+00:00"))
    );
    assert_eq!(metadata["sys"]["MethodName"], "EventsProcessor");

    azurite.put_message("events-inbound", "fan-out").await?;
    azurite.put_message("events-inbound", "quirk").await?;
    host.wait_until_idle(WAIT).await?;
    let raw = azurite.queues().peek_raw("events-confirmation").await?;
    assert_eq!(raw.len(), 4, "{raw:?}");
    assert!(raw.contains(&STANDARD.encode("first")));
    assert!(raw.contains(&STANDARD.encode(serde_json::to_string_pretty(&json!({"k": 1}))?)));
    // "abcd1234" is valid base64, so the host enqueues its decoded bytes — whose base64 is the
    // same text again.
    assert!(raw.contains(&"abcd1234".to_string()));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_that_is_not_base64_is_poisoned_without_an_invocation() -> anyhow::Result<()> {
    let azurite = Azurite::start().await?;
    let handler = Standin::start(|_, _| ok_json(json!({}))).await?;
    let host = FunctionsHost::attach(config(&azurite, &app_root()), handler.port).await?;
    azurite
        .put_raw_message("events-inbound", "not base64!")
        .await?;
    assert_eq!(
        wait_for_poison(&host, "events-inbound", 1).await?,
        ["not base64!"]
    );
    host.wait_until_idle(WAIT).await?;
    assert!(handler.seen("EventsProcessor").is_empty());
    Ok(())
}

// ----------------------------------------------------------------------------------------------
// End-to-end: HTTP trigger
// ----------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_invocation_returns_res_and_enqueues_outputs() -> anyhow::Result<()> {
    let azurite = Azurite::start().await?;
    let handler = Standin::start(|function, payload| match function {
        "EventsReceiver" if payload["Data"]["req"]["Query"]["fail"] == "1" => {
            (500, None, Vec::new())
        }
        "EventsReceiver" => ok_json(json!({
            "Outputs": {
                "res": {"statusCode": "202", "body": "accepted", "headers": {"X-Id": "7"}},
                "inbound": {"instance": "1337/abc"},
            },
            "Logs": ["received"],
        })),
        _ => ok_json(json!({"Outputs": {}})),
    })
    .await?;
    let app = app_subset(&["EventsReceiver"])?;
    let host = FunctionsHost::attach(config(&azurite, app.path()), handler.port).await?;

    let call = HttpCall::post_json(&json!({"specversion": "1.0", "id": "e1"})).query("code", "key");
    let outcome = host.invoke_http("EventsReceiver", call).await?;
    assert_eq!((outcome.status, outcome.text().as_str()), (202, "accepted"));
    assert_eq!(outcome.header("X-Id"), Some("7"));
    assert_eq!(
        outcome.header("Content-Type"),
        Some("text/plain; charset=utf-8")
    );
    assert!(outcome.invocation_succeeded);
    assert_eq!(outcome.logs, ["received"]);
    assert_eq!(outcome.outputs["inbound"], json!({"instance": "1337/abc"}));
    let inbound = azurite.queue_texts("events-inbound").await?;
    assert_eq!(inbound.len(), 1);
    assert_eq!(
        serde_json::from_str::<Value>(&inbound[0])?,
        json!({"instance": "1337/abc"})
    );

    let request = &handler.seen("EventsReceiver")[0];
    assert_host_headers(&request.headers);
    let req = &request.payload["Data"]["req"];
    assert_eq!(
        req["Url"],
        "http://localhost:7071/api/EventsReceiver?code=key"
    );
    assert_eq!(req["Body"], r#"{"id":"e1","specversion":"1.0"}"#);
    assert_eq!(req["Headers"]["Content-Type"], json!(["application/json"]));
    assert_eq!(
        request.payload["Metadata"]["Headers"]["Content-Type"],
        "application/json"
    );
    assert_eq!(request.payload["Metadata"]["specversion"], "\"1.0\"");

    let failed = host
        .invoke_http(
            "EventsReceiver",
            HttpCall::post_json(&json!({})).query("fail", "1"),
        )
        .await?;
    assert_eq!((failed.status, failed.invocation_succeeded), (500, false));
    let not_allowed = host
        .invoke_http("EventsReceiver", HttpCall::new("GET"))
        .await?;
    assert_eq!(
        not_allowed.status, 404,
        "GET is not in the trigger's methods"
    );
    assert_eq!(
        azurite.queue_texts("events-inbound").await?.len(),
        1,
        "the failed call enqueued nothing"
    );
    assert_eq!(host.invocations().len(), 2);
    Ok(())
}

// ----------------------------------------------------------------------------------------------
// Processes: Azurite persistence, handler start-up and restarts
// ----------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azurite_restart_keeps_queued_messages_and_blobs() -> anyhow::Result<()> {
    let mut azurite = Azurite::start().await?;
    azurite.put_message("kept", "one").await?;
    azurite.put_message("kept", "two").await?;
    azurite.create_container("archive").await?;
    let connection_string = azurite.connection_string();

    azurite.stop().await?;
    assert!(!azurite.is_running());
    assert!(
        azurite.queue_texts("kept").await.is_err(),
        "a stopped Azurite refuses requests"
    );
    azurite.restart().await?;

    assert_eq!(azurite.connection_string(), connection_string, "same ports");
    assert_eq!(azurite.queue_texts("kept").await?, ["one", "two"]);
    let blobs =
        altinn_aos::storage::StorageEndpoint::blobs_from_connection_string(&connection_string)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    assert!(
        blobs.container("archive")?.exists().await?,
        "the container survived"
    );
    Ok(())
}

/// Environment variable that turns this test binary into a stand-in handler process.
const STANDIN_PROCESS: &str = "AOS_HARNESS_STANDIN_PROCESS";

/// Not a test of its own: when the fake host starts this test binary as the handler (with the
/// app's `arguments`, `serve`, as the test-name filter), this serves like a custom handler on
/// `FUNCTIONS_CUSTOMHANDLER_PORT` and reports its environment at `GET /env`. Otherwise it
/// returns at once. No other test name may contain "serve".
#[tokio::test]
async fn standin_process_serve() -> anyhow::Result<()> {
    if std::env::var_os(STANDIN_PROCESS).is_none() {
        return Ok(());
    }
    let port: u16 = std::env::var("FUNCTIONS_CUSTOMHANDLER_PORT")?.parse()?;
    let env_report = || async {
        let names = [
            "FUNCTIONS_CUSTOMHANDLER_PORT",
            "FUNCTIONS_HTTPWORKER_PORT",
            "FUNCTIONS_CUSTOMHANDLER_WORKER_ID",
            "FUNCTIONS_HTTPWORKER_ID",
            "FUNCTIONS_APP_ROOT_PATH",
            "APP_SETTING",
        ];
        let mut report: serde_json::Map<String, Value> = names
            .iter()
            .map(|n| (n.to_string(), json!(std::env::var(n).ok())))
            .collect();
        report.insert(
            "cwd".into(),
            json!(
                std::env::current_dir()
                    .ok()
                    .map(|d| d.display().to_string())
            ),
        );
        axum::Json(Value::Object(report))
    };
    let router = Router::new()
        .route("/", get(|| async { "ready" }))
        .route("/env", get(env_report))
        .fallback(|| async { axum::Json(json!({"Outputs": {"res": {"body": "from process"}}})) });
    // Straight to the stdout pipe: libtest captures `println!` but not direct writes.
    let mut stdout = std::io::stdout();
    writeln!(stdout, "stand-in handler listening on {port}")?;
    stdout.flush()?;
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
    axum::serve(listener, router).await?;
    Ok(())
}

fn standin_process_config(azurite: &Azurite) -> anyhow::Result<HostConfig> {
    Ok(HostConfig {
        binary: std::env::current_exe()?,
        ..HostConfig::new(azurite.connection_string())
    }
    .env(STANDIN_PROCESS, "1")
    .env("APP_SETTING", "value"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawned_handler_gets_the_host_environment_and_is_restarted_when_it_dies()
-> anyhow::Result<()> {
    let azurite = Azurite::start().await?;
    let host = FunctionsHost::start(standin_process_config(&azurite)?).await?;
    let port = host.port();
    let env: Value = reqwest::get(format!("http://127.0.0.1:{port}/env"))
        .await?
        .json()
        .await?;
    assert_eq!(env["FUNCTIONS_CUSTOMHANDLER_PORT"], port.to_string());
    assert_eq!(env["FUNCTIONS_HTTPWORKER_PORT"], port.to_string());
    assert_eq!(
        env["FUNCTIONS_HTTPWORKER_ID"],
        env["FUNCTIONS_CUSTOMHANDLER_WORKER_ID"]
    );
    assert!(
        env["FUNCTIONS_CUSTOMHANDLER_WORKER_ID"]
            .as_str()
            .is_some_and(|id| Uuid::parse_str(id).is_ok())
    );
    assert_eq!(
        env["FUNCTIONS_APP_ROOT_PATH"],
        app_root().display().to_string()
    );
    assert_eq!(env["cwd"], app_root().display().to_string());
    assert_eq!(env["APP_SETTING"], "value");

    let pid = host
        .handler_pid()
        .ok_or_else(|| anyhow::anyhow!("no handler process"))?;
    let pid = i32::try_from(pid)?;
    // SAFETY: plain kill(2) of the handler process this test started.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
    poll_until(
        "the handler to be restarted",
        WAIT,
        Duration::from_millis(50),
        || async {
            Ok(
                (host.restarts() == 1 && host.handler_pid().is_some_and(|p| p != pid as u32))
                    .then_some(()),
            )
        },
    )
    .await?;
    let outcome = host
        .invoke_http("EventsReceiver", HttpCall::post_json(&json!({})))
        .await?;
    assert_eq!(
        (outcome.status, outcome.text().as_str()),
        (200, "from process")
    );
    assert!(
        host.host_events()
            .iter()
            .any(|e| e.contains("restarting the handler")),
        "{:?}",
        host.host_events()
    );
    assert!(
        host.handler_output()
            .iter()
            .any(|l| l.contains("stand-in handler listening"))
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_fails_clearly_when_the_handler_exits() -> anyhow::Result<()> {
    let azurite = Azurite::start().await?;
    let config = HostConfig {
        binary: "/bin/false".into(),
        ..HostConfig::new(azurite.connection_string())
    };
    let error = match FunctionsHost::start(config).await {
        Ok(_) => anyhow::bail!("a handler that exits must not start"),
        Err(e) => format!("{e:#}"),
    };
    assert!(error.contains("exited before it was ready"), "{error}");
    Ok(())
}
