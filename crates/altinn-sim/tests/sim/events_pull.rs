//! The simulator's Events pull API, `GET /events/api/v1/app/{org}/{app}` (spec §2.7 A), over
//! real HTTP: token, `after`/`from` rules and the 400 problem, paging with `next`, sequence
//! order, type and size, unknown `after` restarting from the beginning, the hold-back, and
//! events whose push failed still being in the feed.

use std::time::Duration;

use altinn_sim::{InstanceSpec, SimulatorConfig, SimulatorHandle, start};
use serde_json::{Value, json};

const TOKEN: &str = "pull-test-token";
const COMPLETED: &str = "app.instance.process.completed";

async fn sim() -> SimulatorHandle {
    let sim = start(SimulatorConfig {
        token: TOKEN.to_owned(),
        ..SimulatorConfig::default()
    })
    .await
    .expect("simulator starts");
    sim.set_events_hold_back(Duration::ZERO);
    sim
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

fn spec(app: &str, party_id: u64) -> InstanceSpec {
    InstanceSpec {
        org: "ttd".into(),
        app: app.into(),
        party_id,
        elements: vec![],
        process_ended: true,
    }
}

struct Page {
    status: u16,
    content_type: Option<String>,
    next: Option<String>,
    body: Value,
}

impl Page {
    fn ids(&self) -> Vec<String> {
        self.body
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| e["id"].as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }
}

async fn get(url: &str, token: Option<&str>) -> Page {
    let mut request = client().get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let resp = request.send().await.unwrap();
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    };
    let (content_type, next) = (header("content-type"), header("next"));
    Page {
        status: resp.status().as_u16(),
        content_type,
        next,
        body: resp.json().await.unwrap_or(Value::Null),
    }
}

fn url(sim: &SimulatorHandle, app: &str, query: &str) -> String {
    format!("{}events/api/v1/app/ttd/{app}?{query}", sim.base_url())
}

/// Publishes `n` completed events for `app`; returns their ids in order.
fn publish(sim: &SimulatorHandle, app: &str, n: u64) -> Vec<String> {
    (0..n)
        .map(|i| {
            let inst = sim.add_instance(spec(app, 5000 + i));
            let event = sim.completed_event(&inst);
            sim.publish(event.clone());
            event["id"].as_str().unwrap().to_string()
        })
        .collect()
}

#[tokio::test]
async fn the_api_needs_a_token_and_after_or_a_from_with_a_timezone() {
    let sim = sim().await;
    publish(&sim, "a1", 1);
    assert_eq!(get(&url(&sim, "a1", "after=0"), None).await.status, 401);
    assert_eq!(
        get(&url(&sim, "a1", "after=0"), Some("wrong")).await.status,
        401
    );

    let missing = get(&url(&sim, "a1", "size=5"), Some(TOKEN)).await;
    assert_eq!(missing.status, 400);
    let fixture: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fixtures/altinn/events-pull-response-400-problem.json"
        ))
        .unwrap(),
    )
    .unwrap();
    for field in ["type", "title", "status", "detail"] {
        assert_eq!(missing.body[field], fixture[field], "{field}");
    }
    assert!(missing.body["traceId"].is_string());

    let no_zone = get(&url(&sim, "a1", "from=2023-02-16T18:00:00"), Some(TOKEN)).await;
    assert_eq!(no_zone.status, 400);
    assert!(
        no_zone.body["detail"]
            .as_str()
            .unwrap()
            .contains("timezone")
    );
    let bad_size = get(&url(&sim, "a1", "after=0&size=0"), Some(TOKEN)).await;
    assert_eq!(bad_size.status, 400);

    let from = get(&url(&sim, "a1", "from=2000-01-01T00:00Z"), Some(TOKEN)).await;
    assert_eq!(from.status, 200);
    assert_eq!(from.ids().len(), 1);
    assert_eq!(
        from.content_type.as_deref(),
        Some("application/cloudevents+json; charset=utf-8")
    );
}

#[tokio::test]
async fn pages_are_in_sequence_order_and_next_leads_through_the_feed_once() {
    let sim = sim().await;
    let mut expected = Vec::new();
    for round in 0..3 {
        expected.extend(publish(&sim, "a1", 2));
        publish(&sim, "other-app", 1);
        if round == 0 {
            sim.publish(json!({"id": "x-created", "specversion": "1.0", "type": "app.instance.created",
                "source": format!("{}ttd/a1/instances/1/6b3323c8-7baf-4612-b8a6-5eac407f4d0c", sim.base_url())}));
        }
    }

    // All types: the created event is in the a1 feed too, in publication order.
    let all = get(&url(&sim, "a1", "after=0&size=50"), Some(TOKEN)).await;
    assert_eq!(all.ids().len(), 7);
    assert_eq!(all.ids()[2], "x-created");
    let first = &all.body[0];
    for field in ["specversion", "id", "time", "source", "subject", "type"] {
        assert!(first[field].is_string(), "{field} in {first}");
    }

    // Type filter, pages of 2, following `next` until an empty page without one.
    let mut link = Some(url(
        &sim,
        "a1",
        &format!("after=unknown&size=2&type={COMPLETED}"),
    ));
    let (mut seen, mut pages) = (Vec::new(), 0);
    while let Some(next) = link {
        let page = get(&next, Some(TOKEN)).await;
        assert_eq!(page.status, 200);
        pages += 1;
        if page.ids().is_empty() {
            assert!(page.next.is_none(), "an empty page has no next");
        } else {
            let next = page.next.clone().expect("a non-empty page has next");
            assert!(next.starts_with(sim.base_url().as_str()), "{next}");
            assert!(next.contains(&format!("after={}", page.ids().last().unwrap())));
            assert!(next.contains("size=2") && next.contains("type="), "{next}");
        }
        seen.extend(page.ids());
        link = page.next;
    }
    assert_eq!(seen, expected, "each completed a1 event once, in order");
    assert_eq!(pages, 4, "3 full pages and the empty last one");

    // `after` is strictly after; an id the feed does not know restarts from the beginning.
    let after_third = get(
        &url(
            &sim,
            "a1",
            &format!("after={}&type={COMPLETED}", expected[2]),
        ),
        Some(TOKEN),
    )
    .await;
    assert_eq!(after_third.ids(), expected[3..].to_vec());
    let unknown = get(
        &url(
            &sim,
            "a1",
            &format!("after={}&type={COMPLETED}", uuid::Uuid::new_v4()),
        ),
        Some(TOKEN),
    )
    .await;
    assert_eq!(unknown.ids(), expected);

    // Retention: with the oldest event purged, a cursor naming it restarts from what is left.
    sim.purge_events(1);
    let purged = get(
        &url(
            &sim,
            "a1",
            &format!("after={}&type={COMPLETED}", expected[0]),
        ),
        Some(TOKEN),
    )
    .await;
    assert_eq!(purged.ids(), expected[1..].to_vec());
}

#[tokio::test]
async fn events_inside_the_hold_back_are_withheld_until_it_passes() {
    let sim = sim().await;
    sim.set_events_hold_back(Duration::from_millis(1500));
    let ids = publish(&sim, "a1", 2);
    let early = get(&url(&sim, "a1", "after=0"), Some(TOKEN)).await;
    assert_eq!(early.status, 200);
    assert!(early.ids().is_empty(), "withheld: {:?}", early.ids());
    assert!(early.next.is_none());
    assert_eq!(sim.feed_events().len(), 2, "registered all the same");

    tokio::time::sleep(Duration::from_millis(1700)).await;
    assert_eq!(
        get(&url(&sim, "a1", "after=0"), Some(TOKEN)).await.ids(),
        ids
    );

    // Also settable over the control API (for `aos simulator` in another process).
    let resp = client()
        .post(format!("{}_sim/events/hold-back?secs=60", sim.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    let late = publish(&sim, "a1", 1);
    let page = get(&url(&sim, "a1", &format!("after={}", ids[1])), Some(TOKEN)).await;
    assert!(page.ids().is_empty(), "{late:?} withheld for 60 s");
}

#[tokio::test]
async fn the_default_hold_back_is_altinns_30_seconds() {
    let sim = start(SimulatorConfig {
        token: TOKEN.to_owned(),
        ..SimulatorConfig::default()
    })
    .await
    .unwrap();
    publish(&sim, "a1", 1);
    assert!(
        get(&url(&sim, "a1", "after=0"), Some(TOKEN))
            .await
            .ids()
            .is_empty()
    );
}

/// A webhook that validates subscriptions and fails every other push (503).
async fn failing_webhook() -> String {
    use axum::routing::post;
    let app = axum::Router::new().route(
        "/api/EventsReceiver",
        post(|body: axum::body::Bytes| async move {
            if String::from_utf8_lossy(&body).contains("platform.events.validatesubscription") {
                axum::http::StatusCode::OK
            } else {
                axum::http::StatusCode::SERVICE_UNAVAILABLE
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/api/EventsReceiver")
}

#[tokio::test]
async fn events_whose_push_was_dead_lettered_are_in_the_feed() {
    let sim = sim().await;
    sim.set_push_retry_schedule(vec![Duration::from_millis(10)]);
    let endpoint = failing_webhook().await;
    let sub = sim
        .add_subscription(
            &endpoint,
            &format!("{}ttd/a1", sim.base_url()),
            Some(COMPLETED),
        )
        .unwrap();
    assert!(sim.wait_for_deliveries_idle(Duration::from_secs(10)).await);
    let created = sim.complete_instance(spec("a1", 7001));
    assert!(sim.wait_for_deliveries_idle(Duration::from_secs(10)).await);
    let dead: Vec<String> = sim
        .dead_letters()
        .into_iter()
        .filter(|(id, _)| *id == sub)
        .map(|(_, event)| event)
        .collect();
    assert_eq!(dead.len(), 1, "the event's push was dead-lettered");

    let page = get(&url(&sim, "a1", "after=0"), Some(TOKEN)).await;
    assert_eq!(page.ids(), dead);
    assert!(
        page.body[0]["source"]
            .as_str()
            .unwrap()
            .ends_with(&created.instance_id())
    );
}
