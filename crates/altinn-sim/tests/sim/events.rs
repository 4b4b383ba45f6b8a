//! The simulator's Altinn Events over real HTTP: the subscription API, the
//! validation push, and push delivery with retries and dead-lettering. A small
//! axum server in each test plays the subscriber's webhook and answers from a
//! script.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use altinn_sim::{InstanceSpec, SimulatorConfig, SimulatorHandle, start};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::{Value, json};

const TOKEN: &str = "events-test-token";
const VALIDATE: &str = "platform.events.validatesubscription";
const COMPLETED: &str = "app.instance.process.completed";
const IDLE: Duration = Duration::from_secs(15);

async fn sim() -> SimulatorHandle {
    start(SimulatorConfig {
        token: TOKEN.to_owned(),
        ..SimulatorConfig::default()
    })
    .await
    .expect("simulator starts")
}

/// No proxy: a proxy from the environment must not intercept loopback calls.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client builds")
}

fn subscriptions_url(sim: &SimulatorHandle) -> String {
    format!("{}events/api/v1/subscriptions", sim.base_url())
}

fn app_source(sim: &SimulatorHandle, app: &str) -> String {
    format!("{}ttd/{app}", sim.base_url())
}

async fn post_subscription(sim: &SimulatorHandle, body: &Value) -> reqwest::Response {
    client()
        .post(subscriptions_url(sim))
        .bearer_auth(TOKEN)
        .json(body)
        .send()
        .await
        .expect("sent")
}

async fn get_json(url: &str) -> (u16, Value) {
    let resp = client()
        .get(url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("sent");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn subscription(sim: &SimulatorHandle, id: u64) -> Value {
    let (status, body) = get_json(&format!("{}/{id}", subscriptions_url(sim))).await;
    assert_eq!(status, 200);
    body
}

fn instance_spec(app: &str) -> InstanceSpec {
    InstanceSpec {
        org: "ttd".to_owned(),
        app: app.to_owned(),
        party_id: 50001337,
        elements: Vec::new(),
        process_ended: true,
    }
}

async fn idle(sim: &SimulatorHandle) {
    assert!(
        sim.wait_for_deliveries_idle(IDLE).await,
        "deliveries still pending after {IDLE:?}"
    );
}

async fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + IDLE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// How the webhook answers one push.
#[derive(Clone, Copy, Debug)]
enum Answer {
    Status(u16),
    /// Sleep, then 200 (for push timeouts).
    Hang(Duration),
}

/// The webhook's script: answers for validation pushes and for other events,
/// taken in order, then the defaults.
struct Script {
    pings: VecDeque<Answer>,
    events: VecDeque<Answer>,
    ping_default: u16,
    event_default: u16,
}

impl Script {
    fn ok() -> Self {
        Self {
            pings: VecDeque::new(),
            events: VecDeque::new(),
            ping_default: 200,
            event_default: 200,
        }
    }
}

/// One push as the webhook saw it.
#[derive(Clone, Debug)]
struct Received {
    body: Value,
    content_type: Option<String>,
    has_authorization: bool,
    query: Option<String>,
}

struct HookState {
    script: Mutex<Script>,
    received: Mutex<Vec<Received>>,
}

#[derive(Clone)]
struct Hook {
    /// `http://127.0.0.1:PORT/hook?code=s3cret` (the secret-in-URL pattern).
    url: String,
    state: Arc<HookState>,
}

impl Hook {
    async fn start(script: Script) -> Self {
        let state = Arc::new(HookState {
            script: Mutex::new(script),
            received: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route("/hook", post(webhook))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind webhook");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            url: format!("http://{addr}/hook?code=s3cret"),
            state,
        }
    }

    fn received(&self) -> Vec<Received> {
        self.state.received.lock().expect("lock").clone()
    }

    fn pings(&self) -> Vec<Value> {
        self.bodies(|t| t == VALIDATE)
    }

    fn events(&self) -> Vec<Value> {
        self.bodies(|t| t != VALIDATE)
    }

    fn bodies(&self, keep: impl Fn(&str) -> bool) -> Vec<Value> {
        self.received()
            .into_iter()
            .map(|r| r.body)
            .filter(|b| keep(b["type"].as_str().unwrap_or_default()))
            .collect()
    }
}

async fn webhook(
    State(state): State<Arc<HookState>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let is_ping = body["type"] == VALIDATE;
    state.received.lock().expect("lock").push(Received {
        body,
        content_type: headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        has_authorization: headers.contains_key("authorization"),
        query,
    });
    let answer = {
        let mut script = state.script.lock().expect("lock");
        if is_ping {
            let default = script.ping_default;
            script.pings.pop_front().unwrap_or(Answer::Status(default))
        } else {
            let default = script.event_default;
            script.events.pop_front().unwrap_or(Answer::Status(default))
        }
    };
    match answer {
        Answer::Status(code) => StatusCode::from_u16(code).expect("valid status"),
        Answer::Hang(delay) => {
            tokio::time::sleep(delay).await;
            StatusCode::OK
        }
    }
}

/// Subscribes `hook` to app `app` (optionally with a type filter) through the
/// handle and waits until its validation push is settled.
async fn subscribed(
    sim: &SimulatorHandle,
    hook: &Hook,
    app: &str,
    type_filter: Option<&str>,
) -> u64 {
    let id = sim
        .add_subscription(&hook.url, &app_source(sim, app), type_filter)
        .expect("subscription accepted");
    idle(sim).await;
    id
}

fn attempts_for(sim: &SimulatorHandle, event_id: &str) -> Vec<(u64, u32, Option<u16>)> {
    sim.deliveries()
        .into_iter()
        .filter(|d| d.event_id == event_id)
        .map(|d| (d.subscription_id, d.attempt, d.status))
        .collect()
}

#[tokio::test]
async fn post_creates_subscription_and_validation_push_validates_it() {
    let sim = sim().await;
    let hook = Hook::start(Script::ok()).await;
    let source = app_source(&sim, "archive-app");

    // `endpoint` in lower case, as in Altinn's curl example.
    let resp = post_subscription(
        &sim,
        &json!({"endpoint": hook.url, "sourceFilter": source, "typeFilter": COMPLETED}),
    )
    .await;
    assert_eq!(resp.status(), 201);
    let location = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let created: Value = resp.json().await.expect("json");
    let id = created["id"].as_u64().expect("integer id");
    assert_eq!(
        location.as_deref(),
        Some(format!("/events/api/v1/subscription/{id}").as_str())
    );
    assert_eq!(created["endPoint"], hook.url.as_str());
    assert_eq!(created["sourceFilter"], source.as_str());
    assert_eq!(
        created["resourceFilter"],
        "urn:altinn:resource:app_ttd_archive-app"
    );
    assert_eq!(created["typeFilter"], COMPLETED);
    assert_eq!(created["consumer"], "/org/ttd");
    assert_eq!(created["createdBy"], "/org/ttd");
    assert_eq!(created["validated"], false, "201 does not mean validated");
    assert_eq!(created["includeSubunits"], false);
    assert!(
        created["created"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    assert!(created.get("subjectFilter").is_none(), "nulls are omitted");

    idle(&sim).await;
    let received = hook.received();
    assert_eq!(received.len(), 1, "exactly one validation push");
    let ping = &received[0];
    let ping_id = ping.body["id"].as_str().expect("id");
    assert!(uuid::Uuid::try_parse(ping_id).is_ok(), "{ping_id}");
    assert_eq!(
        ping.body,
        json!({
            "id": ping_id,
            "source": format!("{}events/api/v1/subscriptions/{id}", sim.base_url()),
            "type": VALIDATE,
            "specversion": "1.0",
        })
    );
    assert_eq!(
        ping.content_type.as_deref(),
        Some("application/json; charset=utf-8")
    );
    assert!(!ping.has_authorization, "pushes carry no credentials");
    assert_eq!(
        ping.query.as_deref(),
        Some("code=s3cret"),
        "query string kept"
    );

    assert_eq!(subscription(&sim, id).await["validated"], true);
    let (status, list) = get_json(&subscriptions_url(&sim)).await;
    assert_eq!(status, 200);
    assert_eq!(list["count"], 1);
    assert_eq!(list["subscriptions"][0]["id"], id);
    assert_eq!(sim.subscriptions(), vec![subscription(&sim, id).await]);

    let anonymous = client()
        .get(subscriptions_url(&sim))
        .send()
        .await
        .expect("sent");
    assert_eq!(anonymous.status(), 401, "same bearer auth as Storage");
}

#[tokio::test]
async fn failed_validation_push_leaves_subscription_unvalidated_until_a_retry_succeeds() {
    let sim = sim().await;
    sim.set_push_retry_schedule(vec![Duration::from_millis(500)]);
    let hook = Hook::start(Script {
        pings: VecDeque::from([Answer::Status(500)]),
        ..Script::ok()
    })
    .await;
    let id = sim
        .add_subscription(&hook.url, &app_source(&sim, "app"), None)
        .expect("accepted");

    eventually("first validation attempt", || sim.deliveries().len() == 1).await;
    assert_eq!(subscription(&sim, id).await["validated"], false);
    // Not validated: events are not pushed to it.
    let inst = sim.add_instance(instance_spec("app"));
    assert_eq!(sim.publish(sim.completed_event(&inst)), 0);

    idle(&sim).await;
    assert_eq!(subscription(&sim, id).await["validated"], true);
    let pings = hook.pings();
    assert_eq!(pings.len(), 2);
    assert_eq!(
        pings[0]["id"], pings[1]["id"],
        "a retry resends the same event"
    );
    let ping_id = pings[0]["id"].as_str().expect("id");
    assert_eq!(
        attempts_for(&sim, ping_id),
        vec![(id, 1, Some(500)), (id, 2, Some(200))]
    );
    assert!(sim.dead_letters().is_empty());
}

#[tokio::test]
async fn unreachable_endpoint_is_never_validated_and_its_validation_is_dead_lettered() {
    let sim = sim().await;
    sim.set_push_retry_schedule(vec![Duration::from_millis(20)]);
    // A port nobody listens on: bind, note it, close it.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let endpoint = format!("http://{}/hook", closed.local_addr().expect("addr"));
    drop(closed);

    let id = sim
        .add_subscription(&endpoint, &app_source(&sim, "app"), None)
        .expect("accepted");
    idle(&sim).await;
    let deliveries = sim.deliveries();
    assert_eq!(deliveries.len(), 2, "schedule of 1 delay = 2 attempts");
    for d in &deliveries {
        assert_eq!(d.status, None);
        assert!(d.error.is_some(), "connection error recorded");
        assert_eq!(d.event_type, VALIDATE);
    }
    assert_eq!(
        sim.dead_letters(),
        vec![(id, deliveries[0].event_id.clone())]
    );
    assert_eq!(subscription(&sim, id).await["validated"], false);
}

#[tokio::test]
async fn invalid_subscription_requests_are_rejected_with_problem_json() {
    let sim = sim().await;
    let source = app_source(&sim, "app");
    let hook = "https://receiver.example/hook";

    let cases = [
        (
            "trailing slash",
            json!({"endPoint": hook, "sourceFilter": format!("{source}/")}),
            "sourceFilter",
        ),
        (
            "instance path",
            json!({"endPoint": hook, "sourceFilter": format!("{source}/instances/1/{}", uuid::Uuid::new_v4())}),
            "sourceFilter",
        ),
        (
            "org only",
            json!({"endPoint": hook, "sourceFilter": format!("{}ttd", sim.base_url())}),
            "sourceFilter",
        ),
        (
            "other apps host",
            json!({"endPoint": hook, "sourceFilter": "https://ttd.apps.tt02.altinn.no/ttd/app"}),
            "sourceFilter",
        ),
        ("no filter", json!({"endPoint": hook}), "sourceFilter"),
        (
            "relative endpoint",
            json!({"endPoint": "/hook", "sourceFilter": source}),
            "endPoint",
        ),
        (
            "plain http endpoint",
            json!({"endPoint": "http://receiver.example/hook", "sourceFilter": source}),
            "endPoint",
        ),
        (
            "missing endpoint",
            json!({"sourceFilter": source}),
            "endPoint",
        ),
        (
            "endpoint not a string",
            json!({"endPoint": 42, "sourceFilter": source}),
            "$.endPoint",
        ),
        (
            "resource disagrees",
            json!({"endPoint": hook, "sourceFilter": source, "resourceFilter": "urn:altinn:resource:app_ttd_other"}),
            "resourceFilter",
        ),
        ("not an object", json!(["x"]), "$"),
    ];
    for (name, body, field) in cases {
        let resp = post_subscription(&sim, &body).await;
        assert_eq!(resp.status(), 400, "{name}");
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .is_ok_and(|t| t.starts_with("application/problem+json")),
            "{name}"
        );
        let problem: Value = resp.json().await.expect("json");
        assert_eq!(problem["status"], 400, "{name}");
        assert_eq!(
            problem["title"], "One or more validation errors occurred.",
            "{name}"
        );
        assert!(problem["errors"][field][0].is_string(), "{name}: {problem}");
    }

    let bad_json = client()
        .post(subscriptions_url(&sim))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body("{\"endPoint\": \"https://h/\",}")
        .send()
        .await
        .expect("sent");
    assert_eq!(bad_json.status(), 400);
    let problem: Value = bad_json.json().await.expect("json");
    assert!(problem["errors"]["$"][0].is_string(), "{problem}");

    let text = client()
        .post(subscriptions_url(&sim))
        .bearer_auth(TOKEN)
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .expect("sent");
    assert_eq!(text.status(), 415);

    let err = sim
        .add_subscription(hook, &format!("{source}/"), None)
        .expect_err("trailing slash rejected on the handle too");
    assert!(err.to_string().contains("sourceFilter"), "{err}");

    // Empty filters are accepted (and then match nothing).
    let empty = post_subscription(
        &sim,
        &json!({"endPoint": hook, "sourceFilter": source, "typeFilter": "", "subjectFilter": ""}),
    )
    .await;
    assert_eq!(empty.status(), 201);

    let (status, _) = get_json(&format!("{}/999", subscriptions_url(&sim))).await;
    assert_eq!(status, 404);
    let (status, _) = get_json(&format!("{}/abc", subscriptions_url(&sim))).await;
    assert_eq!(status, 400);
    assert_eq!(
        sim.subscriptions().len(),
        1,
        "only the valid one was stored"
    );
}

#[tokio::test]
async fn identical_post_returns_the_same_subscription_and_revalidates() {
    let sim = sim().await;
    let hook = Hook::start(Script::ok()).await;
    let source = app_source(&sim, "app");

    let first: Value =
        post_subscription(&sim, &json!({"endPoint": hook.url, "sourceFilter": source}))
            .await
            .json()
            .await
            .expect("json");
    idle(&sim).await;
    // Same subscription, other key spelling and an explicit matching resource.
    let again = post_subscription(
        &sim,
        &json!({
            "endpoint": hook.url,
            "sourceFilter": source,
            "resourceFilter": "urn:altinn:resource:app_ttd_app",
            "includeSubunits": false,
        }),
    )
    .await;
    assert_eq!(again.status(), 201, "Altinn answers 201 again");
    let again: Value = again.json().await.expect("json");
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["created"], first["created"]);
    assert_eq!(
        again["validated"], true,
        "still validated from the first push"
    );

    idle(&sim).await;
    let pings = hook.pings();
    assert_eq!(pings.len(), 2, "every POST triggers a validation push");
    assert_ne!(
        pings[0]["id"], pings[1]["id"],
        "each validation is a new event"
    );
    assert_eq!(pings[0]["source"], pings[1]["source"]);

    let typed: Value = post_subscription(
        &sim,
        &json!({"endPoint": hook.url, "sourceFilter": source, "typeFilter": COMPLETED}),
    )
    .await
    .json()
    .await
    .expect("json");
    assert_ne!(
        typed["id"], first["id"],
        "a different filter is a new subscription"
    );
    assert_eq!(sim.subscriptions().len(), 2);
}

#[tokio::test]
async fn event_is_pushed_once_per_matching_validated_subscription() {
    let sim = sim().await;
    sim.set_push_retry_schedule(vec![Duration::from_millis(20)]);
    let all = Hook::start(Script::ok()).await;
    let completed = Hook::start(Script::ok()).await;
    let created_only = Hook::start(Script::ok()).await;
    let other_app = Hook::start(Script::ok()).await;
    let empty_type = Hook::start(Script::ok()).await;
    let never_validated = Hook::start(Script {
        ping_default: 503,
        ..Script::ok()
    })
    .await;

    let all_id = subscribed(&sim, &all, "app", None).await;
    let completed_id = subscribed(&sim, &completed, "app", Some(COMPLETED)).await;
    subscribed(&sim, &created_only, "app", Some("app.instance.created")).await;
    subscribed(&sim, &other_app, "other-app", None).await;
    subscribed(&sim, &empty_type, "app", Some("")).await;
    let unvalidated_id = subscribed(&sim, &never_validated, "app", None).await;
    assert_eq!(subscription(&sim, unvalidated_id).await["validated"], false);

    let inst = sim.add_instance(instance_spec("app"));
    let event = sim.completed_event(&inst);
    let event_id = event["id"].as_str().expect("id").to_owned();
    assert_eq!(sim.publish(event.clone()), 2);
    idle(&sim).await;

    assert_eq!(all.events(), vec![event.clone()], "pushed as given");
    assert_eq!(completed.events(), vec![event]);
    for (name, hook) in [
        ("type filter app.instance.created", &created_only),
        ("other app", &other_app),
        ("empty type filter", &empty_type),
        ("unvalidated", &never_validated),
    ] {
        assert!(hook.events().is_empty(), "{name} got an event");
    }
    let mut got = attempts_for(&sim, &event_id);
    got.sort();
    assert_eq!(
        got,
        vec![(all_id, 1, Some(200)), (completed_id, 1, Some(200))]
    );
    let pushed = all
        .received()
        .into_iter()
        .find(|r| r.body["id"] == event_id.as_str())
        .expect("pushed");
    assert_eq!(
        pushed.content_type.as_deref(),
        Some("application/json; charset=utf-8")
    );
    assert!(!pushed.has_authorization);
    assert_eq!(pushed.query.as_deref(), Some("code=s3cret"));
}

#[tokio::test]
async fn failing_webhook_is_retried_with_the_same_event_id() {
    let sim = sim().await;
    sim.set_push_retry_schedule(vec![Duration::from_millis(20); 5]);
    let hook = Hook::start(Script {
        events: VecDeque::from([Answer::Status(500), Answer::Status(500)]),
        ..Script::ok()
    })
    .await;
    let id = subscribed(&sim, &hook, "app", Some(COMPLETED)).await;

    let inst = sim.complete_instance(instance_spec("app"));
    idle(&sim).await;
    let events = hook.events();
    assert_eq!(events.len(), 3, "500, 500, then 200: three attempts");
    assert!(
        events.iter().all(|e| e == &events[0]),
        "same event each time"
    );
    assert_eq!(events[0]["resourceinstance"], inst.instance_id());
    let event_id = events[0]["id"].as_str().expect("id");
    assert_eq!(
        attempts_for(&sim, event_id),
        vec![(id, 1, Some(500)), (id, 2, Some(500)), (id, 3, Some(200))]
    );
    assert!(sim.dead_letters().is_empty());
}

#[tokio::test]
async fn always_failing_webhook_is_dead_lettered_after_schedule_plus_one_attempts() {
    let sim = sim().await;
    sim.set_push_retry_schedule(vec![Duration::from_millis(20); 3]);
    let hook = Hook::start(Script {
        event_default: 502,
        ..Script::ok()
    })
    .await;
    let id = subscribed(&sim, &hook, "app", None).await;

    sim.complete_instance(instance_spec("app"));
    idle(&sim).await;
    let events = hook.events();
    assert_eq!(events.len(), 4, "3 delays = 4 attempts");
    let event_id = events[0]["id"].as_str().expect("id").to_owned();
    let attempts: Vec<u32> = attempts_for(&sim, &event_id).iter().map(|a| a.1).collect();
    assert_eq!(attempts, vec![1, 2, 3, 4]);
    assert_eq!(sim.dead_letters(), vec![(id, event_id)]);
}

#[tokio::test]
async fn push_timeout_counts_as_a_failed_attempt() {
    let sim = sim().await;
    sim.set_push_retry_schedule(vec![Duration::from_millis(20)]);
    sim.set_push_timeout(Duration::from_millis(200));
    let hook = Hook::start(Script {
        events: VecDeque::from([Answer::Hang(Duration::from_secs(2))]),
        ..Script::ok()
    })
    .await;
    let id = subscribed(&sim, &hook, "app", None).await;

    sim.complete_instance(instance_spec("app"));
    idle(&sim).await;
    let events = hook.events();
    assert_eq!(events.len(), 2);
    let event_id = events[0]["id"].as_str().expect("id");
    let deliveries: Vec<_> = sim
        .deliveries()
        .into_iter()
        .filter(|d| d.event_id == event_id)
        .collect();
    assert_eq!(deliveries.len(), 2);
    assert_eq!(deliveries[0].status, None);
    assert!(
        deliveries[0]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("timed out"))
    );
    assert_eq!(
        (deliveries[1].subscription_id, deliveries[1].status),
        (id, Some(200))
    );
}

#[tokio::test]
async fn delete_stops_deliveries_and_cancels_pending_retries() {
    let sim = sim().await;
    let hook = Hook::start(Script::ok()).await;
    let id = subscribed(&sim, &hook, "app", None).await;
    let url = format!("{}/{id}", subscriptions_url(&sim));

    let deleted = client()
        .delete(&url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("sent");
    assert_eq!(deleted.status(), 200);
    assert_eq!(get_json(&url).await.0, 404);
    let again = client()
        .delete(&url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("sent");
    assert_eq!(again.status(), 404);
    sim.complete_instance(instance_spec("app"));
    idle(&sim).await;
    assert!(
        hook.events().is_empty(),
        "deleted subscription got an event"
    );

    // A delivery waiting for its next retry is dropped when its subscription goes.
    sim.set_push_retry_schedule(vec![Duration::from_millis(300); 3]);
    let failing = Hook::start(Script {
        event_default: 500,
        ..Script::ok()
    })
    .await;
    let failing_id = subscribed(&sim, &failing, "app", None).await;
    sim.complete_instance(instance_spec("app"));
    eventually("first attempt", || failing.events().len() == 1).await;
    let url = format!("{}/{failing_id}", subscriptions_url(&sim));
    let deleted = client()
        .delete(&url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("sent");
    assert_eq!(deleted.status(), 200);
    idle(&sim).await;
    assert_eq!(failing.events().len(), 1, "no retries after delete");
    assert!(
        sim.dead_letters().is_empty(),
        "cancelled, not dead-lettered"
    );
}

#[tokio::test]
async fn control_api_publishes_completed_event_on_request() {
    let sim = sim().await;
    let hook = Hook::start(Script::ok()).await;
    subscribed(&sim, &hook, "dev-app", Some(COMPLETED)).await;
    let url = format!("{}_sim/instances", sim.base_url());
    let spec = json!({"org": "ttd", "app": "dev-app", "partyId": 512345});

    let quiet: Value = client()
        .post(&url)
        .json(&spec)
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert!(quiet["instance"]["id"].is_string(), "response shape kept");
    idle(&sim).await;
    assert!(hook.events().is_empty(), "no publish without ?publish=true");

    let resp = client()
        .post(format!("{url}?publish=true"))
        .json(&spec)
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), 201);
    let body: Value = resp.json().await.expect("json");
    idle(&sim).await;
    assert_eq!(hook.events(), vec![body["event"].clone()]);
    assert_eq!(body["event"]["resourceinstance"], body["instance"]["id"]);
}
