//! `EventsSubscriber` / `EventsDeSubscriber` under the host harness: files dropped into
//! `add-subscriptions` / `remove-subscriptions` in Azurite, found by the harness's blob listener
//! (`scan_blobs`: receipts per ETag, retries, poison), against the simulator's subscription
//! API, with a small webhook answering Altinn's validation pushes.

use std::time::Duration;

use altinn_sim::{Fault, FaultRule};
use axum::Router;
use axum::routing::post;
use serde_json::{Value, json};

use aos_testkit::blobs::Blobs;
use aos_testkit::poll_until;
use aos_testkit::world::{Backends, TestApp};

const SECRET: &str = "fn-key-do-not-print";
const ADD: &str = "add-subscriptions";
const REMOVE: &str = "remove-subscriptions";
const ACTIVE: &str = "active-subscriptions";
const STATE: &str = "aos-state";
const SUBSCRIBER: &str = "EventsSubscriber";
const DESUBSCRIBER: &str = "EventsDeSubscriber";
const SUBSCRIPTIONS_PATH: &str = "/events/api/v1/subscriptions";

struct World {
    app: TestApp,
    blobs: Blobs,
    endpoint: String,
}

impl World {
    async fn start() -> World {
        let backends = Backends::start().await;
        let blobs = Blobs::new(&backends.azurite.connection_string()).unwrap();
        // The webhook Altinn validates: answers every POST with 200.
        let webhook = Router::new().route("/api/EventsReceiver", post(|| async { "" }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, webhook).await.unwrap() });
        let app = TestApp::spawn_with(backends, Duration::from_millis(100), Vec::new()).await;
        World {
            app,
            blobs,
            endpoint: format!("http://127.0.0.1:{port}/api/EventsReceiver?code={SECRET}"),
        }
    }

    fn source(&self, app: &str) -> String {
        format!("{}ttd/{app}", self.app.sim.base_url())
    }

    async fn put(&self, container: &str, name: &str, content: &[u8]) {
        self.blobs.write(container, name, content).await.unwrap();
    }

    async fn exists(&self, container: &str, name: &str) -> bool {
        self.blobs.read(container, name).await.unwrap().is_some()
    }

    async fn json(&self, container: &str, name: &str) -> Value {
        let bytes = self
            .blobs
            .read(container, name)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{container}/{name} exists"));
        serde_json::from_slice(&bytes).unwrap()
    }

    /// One pass of the blob listener; every invocation's logs and outcome.
    async fn scan(&self) -> Vec<(String, bool, Vec<String>)> {
        self.app
            .host
            .scan_blobs()
            .await
            .unwrap()
            .into_iter()
            .map(|r| (r.function, r.succeeded, r.logs))
            .collect()
    }

    fn subscription_posts(&self) -> usize {
        self.app
            .sim
            .calls()
            .iter()
            .filter(|c| c.method == "POST" && c.path == SUBSCRIPTIONS_PATH)
            .count()
    }

    fn subscriptions(&self) -> Vec<Value> {
        self.app.sim.subscriptions()
    }

    /// Nothing the handler logged or answered shows the function key.
    fn assert_key_never_printed(&self) {
        let output = self.app.host.handler_output().join("\n");
        assert!(!output.contains(SECRET), "handler output shows the key");
        for record in self.app.host.invocations() {
            for line in &record.logs {
                assert!(!line.contains(SECRET), "{line}");
            }
        }
    }

    async fn add_file(&self, name: &str, app: &str) {
        let file = json!({
            "endPoint": self.endpoint,
            "sourceFilter": self.source(app),
            "consumer": "/org/ttd",
            "description": "archive",
        });
        self.put(ADD, name, file.to_string().as_bytes()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_file_subscribes_stores_altinns_answer_and_deletes_the_source() {
    let w = World::start().await;
    // A trailing slash on the source filter is the classic mistake: it is normalised away.
    let file = json!({
        "endPoint": w.endpoint,
        "sourceFilter": format!("{}/", w.source("test-app")),
        "description": "the archive's subscription",
    });
    w.put(ADD, "ttd-test-app.json", file.to_string().as_bytes())
        .await;

    let runs = w.scan().await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    let (function, succeeded, logs) = &runs[0];
    assert_eq!(
        (function.as_str(), *succeeded),
        (SUBSCRIBER, true),
        "{logs:?}"
    );
    assert!(logs[0].contains("normalised"), "{logs:?}");

    let subs = w.subscriptions();
    assert_eq!(subs.len(), 1, "{subs:?}");
    assert_eq!(subs[0]["sourceFilter"], w.source("test-app"));
    assert_eq!(subs[0]["typeFilter"], "app.instance.process.completed");
    let id = subs[0]["id"].as_u64().unwrap();
    let active = w.json(ACTIVE, "ttd-test-app.json").await;
    assert_eq!(active["id"], id, "Altinn's answer with the id: {active}");
    assert_eq!(active["sourceFilter"], w.source("test-app"));
    assert!(!w.exists(ADD, "ttd-test-app.json").await, "source deleted");

    // Altinn validates the endpoint (the simulator pushes the validation event).
    poll_until(
        "the subscription to be validated",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || async {
            Ok(w.subscriptions()[0]["validated"]
                .as_bool()
                .unwrap_or(false)
                .then_some(()))
        },
    )
    .await
    .unwrap();

    // Handled once: the next pass invokes nothing.
    assert!(w.scan().await.is_empty());
    // The same file again is idempotent: the same subscription.
    w.add_file("ttd-test-app.json", "test-app").await;
    let runs = w.scan().await;
    assert!(runs.iter().all(|r| r.1), "{runs:?}");
    assert_eq!(w.subscriptions().len(), 1);
    assert_eq!(w.json(ACTIVE, "ttd-test-app.json").await["id"], id);
    w.assert_key_never_printed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_invalid_files_are_left_in_place_reported_and_not_retried() {
    let w = World::start().await;
    let other_host =
        json!({"endPoint": w.endpoint, "sourceFilter": "https://evil.example/ttd/app"});
    let no_endpoint = json!({"sourceFilter": w.source("test-app")});
    let insecure = json!({
        "endPoint": format!("http://aos.example/api/EventsReceiver?code={SECRET}"),
        "sourceFilter": w.source("test-app"),
    });
    let cases: [(&str, Vec<u8>, &str); 5] = [
        (
            "bad-json.json",
            b"{\"endPoint\": ".to_vec(),
            "not valid JSON",
        ),
        (
            "other-host.json",
            other_host.to_string().into_bytes(),
            "sourceFilter",
        ),
        (
            "no-endpoint.json",
            no_endpoint.to_string().into_bytes(),
            "endPoint",
        ),
        ("insecure.json", insecure.to_string().into_bytes(), "https"),
        ("my sub.json", w.endpoint.clone().into_bytes(), "file name"),
    ];
    for (name, content, _) in &cases {
        w.put(ADD, name, content).await;
    }

    let runs = w.scan().await;
    assert_eq!(runs.len(), cases.len(), "each file invoked once: {runs:?}");
    for (function, succeeded, logs) in &runs {
        assert_eq!(function, SUBSCRIBER);
        assert!(
            *succeeded,
            "answered 2xx, so the host does not retry: {logs:?}"
        );
        assert!(logs.iter().any(|l| l.starts_with("error:")), "{logs:?}");
    }
    assert_eq!(w.subscription_posts(), 0, "nothing reached Altinn");
    assert!(w.subscriptions().is_empty());
    for (name, content, why) in &cases {
        let stored = w.blobs.read(ADD, name).await.unwrap();
        assert_eq!(
            stored.as_deref(),
            Some(&content[..]),
            "{name} left unchanged"
        );
        let key = name.trim_end_matches(".json");
        let report_name = if key.contains(' ') {
            // An unusable name gets a hashed report name; find it by its `file`.
            let listed = w.blobs.list(STATE).await.unwrap();
            let mut found = None;
            for blob in listed.iter().filter(|b| b.name.contains("invalid-name-")) {
                let report = w.json(STATE, &blob.name).await;
                if report["file"] == format!("{ADD}/{name}") {
                    found = Some(blob.name.clone());
                }
            }
            found.unwrap_or_else(|| panic!("a report for {name:?}"))
        } else {
            format!("subscriptions/failed/add/{key}.json")
        };
        let report = w.json(STATE, &report_name).await;
        let reason = report["reason"].as_str().unwrap();
        assert!(reason.contains(why), "{name}: {reason}");
        assert!(report["at"].as_str().is_some_and(|t| t.ends_with('Z')));
    }
    let output = w.app.host.handler_output().join("\n");
    assert!(
        output.contains("left in place"),
        "error lines on stdout: {output}"
    );

    // Not retried: nothing changed, so the next pass invokes nothing.
    assert!(w.scan().await.is_empty());
    assert!(w.app.host.blob_poison_texts().await.unwrap().is_empty());
    w.assert_key_never_printed();
}

/// An invocation over the handler's 8 MiB limit (here a 9 MiB file, which the host sends in
/// the invocation) fails, with one error line that says why: the host retries it and poisons
/// the blob, and the handler goes on with the next file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_too_large_for_an_invocation_fails_it_with_a_line_saying_why() {
    use aos_testkit::host::HostLevel;
    let w = World::start().await;
    w.put(ADD, "huge.json", &vec![b' '; 9 * 1024 * 1024]).await;
    let attempt = w
        .app
        .host
        .invoke_blob(SUBSCRIBER, "huge.json")
        .await
        .unwrap();
    assert!(!attempt.succeeded, "{attempt:?}");
    let console = w.app.host.console();
    let said = console.iter().any(|line| {
        line.level == HostLevel::Error
            && line.text.contains("invocation failed")
            && line.text.contains("over 8388608 bytes")
            && line.text.contains(SUBSCRIBER)
    });
    assert!(said, "no error line names the limit: {console:#?}");
    // The handler is still there for the next file.
    w.put(ADD, "small.json", b"{}").await;
    let attempt = w
        .app
        .host
        .invoke_blob(SUBSCRIBER, "small.json")
        .await
        .unwrap();
    assert!(attempt.succeeded, "a refused file answers 2xx: {attempt:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn altinn_refusal_is_reported_and_a_corrected_file_goes_through() {
    let w = World::start().await;
    w.app.sim.inject(FaultRule {
        path_contains: SUBSCRIPTIONS_PATH.into(),
        fault: Fault::Status(400),
        times: 1,
    });
    w.add_file("refused.json", "test-app").await;
    let runs = w.scan().await;
    assert_eq!(runs.len(), 1, "not retried: {runs:?}");
    assert!(runs[0].1, "a 4xx is permanent: answered 2xx");
    assert_eq!(w.subscription_posts(), 1, "no in-place retry of a 400");
    assert!(w.exists(ADD, "refused.json").await, "left in place");
    let report = w.json(STATE, "subscriptions/failed/add/refused.json").await;
    assert!(
        report["reason"].as_str().unwrap().contains("HTTP 400"),
        "{report}"
    );
    assert!(w.scan().await.is_empty(), "not retried");

    // The operator re-uploads the file (new ETag): it goes through and the report is gone.
    w.add_file("refused.json", "test-app").await;
    let runs = w.scan().await;
    assert!(runs.len() == 1 && runs[0].1, "{runs:?}");
    assert_eq!(w.subscriptions().len(), 1);
    assert!(!w.exists(ADD, "refused.json").await);
    assert!(
        !w.exists(STATE, "subscriptions/failed/add/refused.json")
            .await
    );
    w.assert_key_never_printed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn altinn_unavailable_fails_the_attempt_then_the_retry_succeeds_or_the_blob_is_poisoned() {
    let w = World::start().await;
    // Three 503s exhaust the client's in-place attempts: the first invocation fails.
    w.app.sim.inject(FaultRule {
        path_contains: SUBSCRIPTIONS_PATH.into(),
        fault: Fault::Status(503),
        times: 3,
    });
    w.add_file("flaky.json", "test-app").await;
    let runs = w.scan().await;
    let outcomes: Vec<bool> = runs.iter().map(|r| r.1).collect();
    assert_eq!(outcomes, [false, true], "{runs:?}");
    assert_eq!(w.subscriptions().len(), 1);
    assert!(w.exists(ACTIVE, "flaky.json").await);
    assert!(!w.exists(ADD, "flaky.json").await);
    assert!(!w.exists(STATE, "subscriptions/failed/add/flaky.json").await);

    // Down for good: every attempt fails, then the host poisons the blob; the file stays.
    w.app.sim.inject(FaultRule {
        path_contains: SUBSCRIPTIONS_PATH.into(),
        fault: Fault::Status(503),
        times: 1000,
    });
    w.add_file("down.json", "other-app").await;
    let runs = w.scan().await;
    assert_eq!(runs.iter().filter(|r| !r.1).count(), 5, "{runs:?}");
    let poison = w.app.host.blob_poison_texts().await.unwrap();
    assert_eq!(poison.len(), 1, "{poison:?}");
    let message: Value = serde_json::from_str(&poison[0]).unwrap();
    assert_eq!(message["BlobName"], "down.json");
    assert_eq!(message["ContainerName"], ADD);
    assert!(w.exists(ADD, "down.json").await);
    assert!(
        w.app
            .sim
            .subscriptions()
            .iter()
            .all(|s| s["sourceFilter"] != w.source("other-app"))
    );
    w.assert_key_never_printed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_files_delete_the_subscription_and_both_blobs() {
    let w = World::start().await;
    for (name, app) in [
        ("a.json", "app-a"),
        ("b.json", "app-b"),
        ("c.json", "app-c"),
    ] {
        w.add_file(name, app).await;
    }
    assert!(w.scan().await.iter().all(|r| r.1));
    let id_a = w.json(ACTIVE, "a.json").await["id"].as_u64().unwrap();
    let id_c = w.json(ACTIVE, "c.json").await["id"].as_u64().unwrap();
    assert_eq!(w.subscriptions().len(), 3);

    // With the id; without one (empty file: the id comes from active-subscriptions); and a
    // subscription already deleted in Altinn (404 = gone: still cleaned up).
    w.put(REMOVE, "a.json", json!({"id": id_a}).to_string().as_bytes())
        .await;
    w.put(REMOVE, "b.json", b"").await;
    let delete_c = reqwest::Client::new()
        .delete(format!(
            "{}events/api/v1/subscriptions/{id_c}",
            w.app.sim.base_url()
        ))
        .bearer_auth(w.app.sim.token())
        .send()
        .await
        .unwrap();
    assert!(delete_c.status().is_success());
    w.put(REMOVE, "c.json", json!({"id": id_c}).to_string().as_bytes())
        .await;

    let runs = w.scan().await;
    assert_eq!(runs.len(), 3, "{runs:?}");
    for (function, succeeded, logs) in &runs {
        assert_eq!(
            (function.as_str(), *succeeded),
            (DESUBSCRIBER, true),
            "{logs:?}"
        );
        assert!(!logs.iter().any(|l| l.starts_with("error:")), "{logs:?}");
    }
    assert!(
        runs.iter().any(|r| r.2[0].contains("already gone")),
        "{runs:?}"
    );
    assert!(w.subscriptions().is_empty(), "{:?}", w.subscriptions());
    for name in ["a.json", "b.json", "c.json"] {
        assert!(!w.exists(ACTIVE, name).await, "{ACTIVE}/{name}");
        assert!(!w.exists(REMOVE, name).await, "{REMOVE}/{name}");
    }

    // No id and nothing to take it from: reported, left in place.
    w.put(REMOVE, "unknown.json", b"{}").await;
    let runs = w.scan().await;
    assert!(runs.len() == 1 && runs[0].1, "{runs:?}");
    assert!(w.exists(REMOVE, "unknown.json").await);
    let report = w
        .json(STATE, "subscriptions/failed/remove/unknown.json")
        .await;
    assert!(
        report["reason"].as_str().unwrap().contains("no `id`"),
        "{report}"
    );
    w.assert_key_never_printed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_replaced_while_it_is_handled_is_left_for_its_own_trigger() {
    let w = World::start().await;
    w.add_file("ttd-apps.json", "test-app").await;
    // Altinn answers slowly, so the file can be replaced while the first version is handled.
    w.app.sim.inject(FaultRule {
        path_contains: SUBSCRIPTIONS_PATH.into(),
        fault: Fault::Delay(Duration::from_millis(1500)),
        times: 1,
    });
    let first_pass = {
        let host = &w.app.host;
        async move { host.scan_blobs().await.unwrap() }
    };
    let replace = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        w.add_file("ttd-apps.json", "other-app").await;
    };
    let (runs, ()) = tokio::join!(first_pass, replace);
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert!(runs[0].succeeded, "{:?}", runs[0].logs);
    assert!(
        runs[0].logs[0].contains("left in place"),
        "{:?}",
        runs[0].logs
    );
    let waiting = w.json(ADD, "ttd-apps.json").await;
    assert_eq!(
        waiting["sourceFilter"],
        w.source("other-app"),
        "the new file is kept"
    );

    // The new content fires its own trigger and is handled like any file.
    let runs = w.scan().await;
    assert!(runs.iter().all(|r| r.1), "{runs:?}");
    let mut sources: Vec<String> = w
        .subscriptions()
        .iter()
        .map(|s| s["sourceFilter"].as_str().unwrap().to_string())
        .collect();
    sources.sort();
    assert_eq!(sources, [w.source("other-app"), w.source("test-app")]);
    assert!(!w.exists(ADD, "ttd-apps.json").await, "source deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_source_stays_until_altinns_answer_is_stored() {
    let w = World::start().await;
    // An older answer under the same name, leased by someone else: storing the new one fails.
    w.put(ACTIVE, "ttd-test-app.json", b"{}").await;
    w.blobs
        .lease_forever(ACTIVE, "ttd-test-app.json")
        .await
        .unwrap();
    w.add_file("ttd-test-app.json", "test-app").await;

    let attempt = w
        .app
        .host
        .invoke_blob(SUBSCRIBER, "ttd-test-app.json")
        .await
        .unwrap();
    assert!(
        !attempt.succeeded,
        "storing the answer failed, so the attempt fails: {attempt:?}"
    );
    assert_eq!(w.subscriptions().len(), 1, "Altinn has the subscription");
    assert!(
        w.exists(ADD, "ttd-test-app.json").await,
        "the source is kept while Altinn's answer is not stored"
    );

    // Once storage accepts the write, the retry stores the answer and only then deletes.
    w.blobs
        .break_lease(ACTIVE, "ttd-test-app.json")
        .await
        .unwrap();
    let runs = w.scan().await;
    assert!(runs.iter().all(|r| r.1), "{runs:?}");
    assert_eq!(w.subscriptions().len(), 1, "the re-POST is idempotent");
    let id = w.subscriptions()[0]["id"].clone();
    assert_eq!(w.json(ACTIVE, "ttd-test-app.json").await["id"], id);
    assert!(!w.exists(ADD, "ttd-test-app.json").await);
}
