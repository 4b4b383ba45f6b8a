//! No token leak, no archive of anomalous instances: hostile event sources and instance
//! metadata pointing elsewhere are refused, and a recording "attacker" server sees nothing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aos_testkit::world::{TestApp, element, instance};
use axum::extract::Request;
use serde_json::{Value, json};

/// A server that records every request it gets and whether it carried a token.
struct Attacker {
    base: String,
    seen: Arc<Mutex<Vec<(String, bool)>>>,
}

impl Attacker {
    async fn start() -> Attacker {
        let seen: Arc<Mutex<Vec<(String, bool)>>> = Arc::default();
        let record = seen.clone();
        let app = axum::Router::new().fallback(move |request: Request| {
            let record = record.clone();
            async move {
                let authorized = request.headers().contains_key("authorization");
                record
                    .lock()
                    .unwrap()
                    .push((request.uri().to_string(), authorized));
                "{}"
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Attacker { base, seen }
    }

    fn requests(&self) -> Vec<(String, bool)> {
        self.seen.lock().unwrap().clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_sources_are_refused_at_the_webhook_and_in_the_queue() {
    let app = TestApp::spawn().await;
    let attacker = Attacker::start().await;
    let inst = app.sim.add_instance(instance(70, vec![element(10, None)]));
    let good = app.sim.completed_event(&inst);
    let source = good["source"].as_str().unwrap().to_string();
    let path = source.split_once("/ttd/").unwrap().1.to_string();
    let sim_host = app.sim.base_url().host_str().unwrap().to_string();
    let sim_port = app.sim.base_url().port().unwrap();
    let hostile = [
        format!("{}ttd/{path}", attacker.base),
        source.replace(&format!(":{sim_port}/"), ":1/"),
        source.replace(&sim_host, "localhost"),
        source.replace("/instances/70/", "/instances/70%2F..%2F/"),
        source.replace("/instances/", "/instances/../instances/"),
        source.replace("/ttd/", "/TTD/"),
    ];
    for source in &hostile {
        let mut event = good.clone();
        event["source"] = json!(source);
        let response = app.post_event(&event).await;
        assert_eq!(response.status, 400, "{source}: {}", response.body_text());
        assert!(!response.queued());
    }
    // The same events put straight into the queue (e.g. by another writer) are refused too.
    for source in &hostile[..2] {
        let mut event = good.clone();
        event["source"] = json!(source);
        app.azurite
            .put_message("events-inbound", &event.to_string())
            .await
            .unwrap();
    }
    app.host
        .wait_until_idle(Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(
        app.host.poison_texts("events-inbound").await.unwrap().len(),
        2
    );
    assert_eq!(attacker.requests(), vec![], "the attacker saw requests");
    assert!(app.sim.confirmations().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn anomalous_instance_metadata_is_never_archived_confirmed_or_followed() {
    let app = TestApp::spawn().await;
    let attacker = Attacker::start().await;
    let other = uuid::Uuid::new_v4();
    let cases: Vec<(&str, &str, Value)> = vec![
        (
            "instance self link elsewhere",
            "/selfLinks/platform",
            json!(format!(
                "{}storage/api/v1/instances/71/{other}",
                attacker.base
            )),
        ),
        (
            "element self link elsewhere",
            "/data/0/selfLinks/platform",
            json!(format!("{}data", attacker.base)),
        ),
        (
            "traversal in blobStoragePath",
            "/data/0/blobStoragePath",
            json!("ttd/test-app/../../etc/data/x"),
        ),
        (
            "blobStoragePath of another instance",
            "/data/0/blobStoragePath",
            json!(format!("ttd/test-app/{other}/data/{other}")),
        ),
        (
            "id of another instance",
            "/id",
            json!(format!("71/{other}")),
        ),
        (
            "element of another instance",
            "/data/0/instanceGuid",
            json!(other.to_string()),
        ),
        (
            "encoded slashes in a link",
            "/data/0/selfLinks/platform",
            json!("http://127.0.0.1/storage/api/v1/instances/71%2F..%2F.."),
        ),
        (
            "element id that is not a GUID",
            "/data/0/id",
            json!("../../x"),
        ),
    ];
    let mut created = Vec::new();
    for (n, (name, pointer, value)) in cases.iter().enumerate() {
        let inst = app
            .sim
            .add_instance(instance(7100 + n as u64, vec![element(100, Some("x.pdf"))]));
        assert!(
            app.sim.tamper(inst.instance_guid, pointer, value.clone()),
            "{name}"
        );
        assert_eq!(
            app.post_event(&app.sim.completed_event(&inst)).await.status,
            200,
            "{name}"
        );
        created.push((name, inst));
    }
    app.host
        .wait_until_idle(Duration::from_secs(60))
        .await
        .unwrap();

    let poisoned = app.host.poison_texts("events-inbound").await.unwrap();
    assert_eq!(poisoned.len(), cases.len(), "every anomaly ends in poison");
    for (name, inst) in &created {
        let manifest = app.archive.manifest(&app.paths(inst)).await.unwrap();
        assert!(manifest.is_none(), "{name}: archived as complete");
        let data_reads = app
            .sim
            .calls()
            .iter()
            .filter(|c| c.path.contains(&format!("{}/data/", inst.instance_id())))
            .count();
        assert_eq!(
            data_reads, 0,
            "{name}: downloaded data of an anomalous instance"
        );
    }
    assert!(
        app.sim.confirmations().is_empty(),
        "an anomalous instance was confirmed"
    );
    assert_eq!(attacker.requests(), vec![], "the attacker saw requests");
}
