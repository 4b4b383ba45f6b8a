//! Real-HTTP tests of the simulator: a reqwest client against a started
//! simulator on an ephemeral port.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::*;

const TOKEN: &str = "test-token";

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

fn spec(elements: Vec<ElementSpec>) -> InstanceSpec {
    InstanceSpec {
        org: "ttd".to_owned(),
        app: "archive-app".to_owned(),
        party_id: 50001337,
        elements,
        process_ended: true,
    }
}

fn element(size: u64, filename: Option<&str>) -> ElementSpec {
    ElementSpec {
        data_type: "ref-data-as-pdf".to_owned(),
        content_type: "application/pdf".to_owned(),
        filename: filename.map(str::to_owned),
        size,
    }
}

fn storage_url(sim: &SimulatorHandle, inst: &CreatedInstance) -> String {
    format!(
        "{}storage/api/v1/instances/{}/{}",
        sim.base_url(),
        inst.party_id,
        inst.instance_guid
    )
}

fn app_url(sim: &SimulatorHandle, inst: &CreatedInstance) -> String {
    format!(
        "{}{}/{}/instances/{}/{}",
        sim.base_url(),
        inst.org,
        inst.app,
        inst.party_id,
        inst.instance_guid
    )
}

fn data_url(sim: &SimulatorHandle, inst: &CreatedInstance, i: usize) -> String {
    format!("{}/data/{}", storage_url(sim, inst), inst.elements[i].id)
}

async fn get(url: &str) -> reqwest::Response {
    client()
        .get(url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("request sent")
}

async fn post(url: &str) -> reqwest::Response {
    client()
        .post(url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("request sent")
}

fn has_null(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.iter().any(has_null),
        Value::Object(o) => o.values().any(has_null),
        _ => false,
    }
}

fn is_rfc3339_utc(s: &str) -> bool {
    s.ends_with('Z')
        && time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).is_ok()
}

/// Streams a response body into SHA-256, returning (digest, length).
async fn hash_body(resp: reqwest::Response) -> ([u8; 32], u64) {
    let mut hasher = Sha256::new();
    let mut len = 0u64;
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.expect("body chunk");
        len += chunk.len() as u64;
        hasher.update(&chunk);
    }
    (hasher.finalize().into(), len)
}

#[tokio::test]
async fn unauthorized_call_gets_401_and_is_recorded() {
    let sim = sim().await;
    let inst = sim.add_instance(spec(vec![element(10, None)]));
    let url = storage_url(&sim, &inst);

    let none = client().get(&url).send().await.expect("sent");
    assert_eq!(none.status(), 401);
    let wrong = client()
        .get(&url)
        .bearer_auth("nope")
        .send()
        .await
        .expect("sent");
    assert_eq!(wrong.status(), 401);
    let data = client()
        .get(data_url(&sim, &inst, 0))
        .send()
        .await
        .expect("sent");
    assert_eq!(data.status(), 401);
    let complete = client()
        .post(format!("{url}/complete"))
        .send()
        .await
        .expect("sent");
    assert_eq!(complete.status(), 401);
    assert!(
        sim.confirmations().is_empty(),
        "unauthorized complete must not confirm"
    );
    assert_eq!(get(&url).await.status(), 200);

    let path = format!(
        "/storage/api/v1/instances/{}/{}",
        inst.party_id, inst.instance_guid
    );
    let calls = sim.calls();
    let for_instance: Vec<_> = calls.iter().filter(|c| c.path == path).collect();
    assert_eq!(for_instance.len(), 3, "{calls:?}");
    assert!(
        for_instance[..2]
            .iter()
            .all(|c| !c.authorized && c.status == 401 && c.method == "GET")
    );
    assert!(for_instance[2].authorized && for_instance[2].status == 200);
    assert!(
        calls
            .iter()
            .any(|c| c.path.ends_with("/complete") && c.method == "POST" && c.status == 401)
    );
}

#[tokio::test]
async fn unknown_path_and_root_are_recorded() {
    let sim = sim().await;
    let root = client().get(sim.base_url()).send().await.expect("sent");
    assert_eq!(root.status(), 200);
    assert_eq!(root.text().await.expect("text"), "altinn simulator");
    let missing = client()
        .get(format!("{}no/such/thing", sim.base_url()))
        .send()
        .await
        .expect("sent");
    assert_eq!(missing.status(), 404);
    let calls = sim.calls();
    assert!(calls.iter().any(|c| c.path == "/" && c.status == 200));
    assert!(
        calls
            .iter()
            .any(|c| c.path == "/no/such/thing" && c.status == 404 && !c.authorized)
    );
}

#[tokio::test]
async fn instance_round_trips_with_documented_fields() {
    let sim = sim().await;
    let inst = sim.add_instance(spec(vec![
        element(1234, Some("report.pdf")),
        element(0, None),
    ]));
    let base = sim.base_url().to_string();
    assert!(base.starts_with("http://127.0.0.1:") && base.ends_with('/'));
    let (p, g) = (inst.party_id, inst.instance_guid);

    let storage = get(&storage_url(&sim, &inst)).await;
    assert_eq!(storage.status(), 200);
    let v: Value = storage.json().await.expect("json");
    assert!(!has_null(&v), "storage style omits nulls: {v}");
    assert_eq!(v["id"], format!("{p}/{g}"));
    assert_eq!(v["instanceOwner"]["partyId"], json!(p.to_string()));
    assert_eq!(v["appId"], "ttd/archive-app");
    assert_eq!(v["org"], "ttd");
    assert_eq!(
        v["selfLinks"]["platform"],
        format!("{base}storage/api/v1/instances/{p}/{g}")
    );
    assert_eq!(
        v["selfLinks"]["apps"],
        format!("{base}ttd/archive-app/instances/{p}/{g}")
    );
    assert!(is_rfc3339_utc(
        v["process"]["ended"].as_str().expect("ended set")
    ));
    assert!(is_rfc3339_utc(
        v["process"]["started"].as_str().expect("started")
    ));
    assert_eq!(v["process"]["startEvent"], "StartEvent_1");
    assert!(v["process"].get("currentTask").is_none());
    assert!(v["process"]["endEvent"].is_string());
    assert_eq!(v["status"]["isArchived"], true);
    assert!(v["status"]["archived"].is_string());
    assert_eq!(v["status"]["readStatus"], "Read");
    assert!(is_rfc3339_utc(v["created"].as_str().expect("created")));
    assert!(is_rfc3339_utc(
        v["lastChanged"].as_str().expect("lastChanged")
    ));
    assert!(v.get("completeConfirmations").is_none());

    let data = v["data"].as_array().expect("data");
    assert_eq!(data.len(), 2);
    for (d, e) in data.iter().zip(&inst.elements) {
        assert_eq!(d["id"], e.id.to_string());
        assert_eq!(d["instanceGuid"], g.to_string());
        assert_eq!(d["dataType"], "ref-data-as-pdf");
        assert_eq!(d["contentType"], "application/pdf");
        assert_eq!(
            d["blobStoragePath"],
            format!("ttd/archive-app/{g}/data/{}", e.id)
        );
        assert_eq!(
            d["selfLinks"]["platform"],
            format!("{base}storage/api/v1/instances/{p}/{g}/data/{}", e.id)
        );
        assert_eq!(d["size"], e.size);
        assert_eq!(d["locked"], true);
        assert_eq!(d["fileScanResult"], "NotApplicable");
        assert!(is_rfc3339_utc(d["created"].as_str().expect("created")));
        assert!(is_rfc3339_utc(
            d["lastChanged"].as_str().expect("lastChanged")
        ));
    }
    assert_eq!(data[0]["filename"], "report.pdf");
    assert!(data[1].get("filename").is_none());

    // The App API serves the same instance.
    let app: Value = get(&app_url(&sim, &inst)).await.json().await.expect("json");
    assert_eq!(app, v);

    // Wrong app, unknown, malformed.
    let wrong_app = format!("{base}ttd/other-app/instances/{p}/{g}");
    assert_eq!(get(&wrong_app).await.status(), 404);
    let wrong_party = format!("{base}storage/api/v1/instances/{}/{g}", p + 1);
    assert_eq!(get(&wrong_party).await.status(), 404);
    let unknown = format!(
        "{base}storage/api/v1/instances/{p}/{}",
        uuid::Uuid::new_v4()
    );
    assert_eq!(get(&unknown).await.status(), 404);
    assert_eq!(
        get(&format!("{base}storage/api/v1/instances/abc/{g}"))
            .await
            .status(),
        400
    );
    assert_eq!(
        get(&format!("{base}storage/api/v1/instances/0/{g}"))
            .await
            .status(),
        400
    );
    assert_eq!(
        get(&format!("{base}storage/api/v1/instances/{p}/not-a-guid"))
            .await
            .status(),
        400
    );
    assert_eq!(
        get(&format!("{base}ttd/archive-app/instances/{p}/xyz"))
            .await
            .status(),
        400
    );
}

#[tokio::test]
async fn unfinished_process_has_current_task_and_no_end() {
    let sim = sim().await;
    let mut s = spec(vec![]);
    s.process_ended = false;
    let inst = sim.add_instance(s);
    let v: Value = get(&storage_url(&sim, &inst))
        .await
        .json()
        .await
        .expect("json");
    assert!(v["process"].get("ended").is_none(), "{v}");
    assert!(v["process"].get("endEvent").is_none());
    assert_eq!(v["process"]["currentTask"]["elementId"], "Task_1");
    assert_eq!(v["status"]["isArchived"], false);
    assert!(v["status"].get("archived").is_none());
    assert_eq!(v["data"], json!([]));
}

#[tokio::test]
async fn replaced_content_ended_process_and_foreign_confirmations_show_in_the_instance() {
    let sim = sim().await;
    let mut s = spec(vec![element(64, Some("form.xml"))]);
    s.process_ended = false;
    let inst = sim.add_instance(s);
    let before: Value = get(&storage_url(&sim, &inst)).await.json().await.unwrap();
    let (old_hash, _) = hash_body(get(&data_url(&sim, &inst, 0)).await).await;

    let changed = sim
        .replace_content(inst.instance_guid, inst.elements[0].id)
        .unwrap();
    assert_eq!(changed.size, 64);
    let (new_hash, len) = hash_body(get(&data_url(&sim, &inst, 0)).await).await;
    assert_eq!((new_hash, len), (changed.sha256(), 64));
    assert_ne!(new_hash, old_hash, "same length, other bytes");
    assert!(sim.end_process(inst.instance_guid));
    assert!(sim.mark_confirmed(inst.instance_guid, "ttd"));

    let after: Value = get(&storage_url(&sim, &inst)).await.json().await.unwrap();
    assert_ne!(
        after["data"][0]["lastChanged"],
        before["data"][0]["lastChanged"]
    );
    assert!(after["process"]["ended"].is_string(), "{after}");
    assert_eq!(after["completeConfirmations"][0]["stakeholderId"], "ttd");
    assert!(sim.confirmations().is_empty(), "no complete call was made");
    assert!(
        sim.replace_content(uuid::Uuid::new_v4(), inst.elements[0].id)
            .is_none()
    );
    assert!(!sim.end_process(uuid::Uuid::new_v4()));
}

#[tokio::test]
async fn data_get_streams_content_matching_sha256() {
    let sim = sim().await;
    let size = 5 * 1024 * 1024 + 3;
    let inst = sim.add_instance(spec(vec![
        element(size, Some("report.pdf")),
        element(0, None),
    ]));
    let el = &inst.elements[0];
    assert_eq!(el.seed, el.id.as_u128() as u64);

    let resp = get(&data_url(&sim, &inst, 0)).await;
    assert_eq!(resp.status(), 200);
    let h = resp.headers();
    assert_eq!(h["content-type"], "application/pdf");
    assert_eq!(h["content-length"], size.to_string().as_str());
    let cd = h["content-disposition"].to_str().expect("ascii");
    assert!(cd.starts_with("attachment; filename=report.pdf"), "{cd}");
    let (digest, len) = hash_body(resp).await;
    assert_eq!(len, size);
    assert_eq!(digest, content_sha256(el.seed, size));
    assert_eq!(digest, el.sha256());
    // A different seed must not match (the check above is meaningful).
    assert_ne!(digest, content_sha256(el.seed ^ 1, size));

    // Same content through the App API path.
    let app_data = format!("{}/data/{}", app_url(&sim, &inst), el.id);
    let (app_digest, _) = hash_body(get(&app_data).await).await;
    assert_eq!(app_digest, digest);

    // Empty element: no disposition without filename, empty body.
    let empty = get(&data_url(&sim, &inst, 1)).await;
    assert_eq!(empty.status(), 200);
    assert!(empty.headers().get("content-disposition").is_none());
    assert_eq!(empty.headers()["content-length"], "0");
    assert!(empty.bytes().await.expect("body").is_empty());

    let unknown = format!("{}/data/{}", storage_url(&sim, &inst), uuid::Uuid::new_v4());
    assert_eq!(get(&unknown).await.status(), 404);
    let bad = format!("{}/data/xyz", storage_url(&sim, &inst));
    assert_eq!(get(&bad).await.status(), 400);
}

#[test]
fn content_disposition_quotes_and_encodes_unusual_names() {
    let v = routes_content_disposition("my report (1).pdf");
    assert_eq!(
        v,
        "attachment; filename=\"my report (1).pdf\"; filename*=UTF-8''my%20report%20%281%29.pdf"
    );
    let v = routes_content_disposition("bl\u{e5}b\u{e6}r.txt");
    assert_eq!(
        v,
        "attachment; filename=\"bl_b_r.txt\"; filename*=UTF-8''bl%C3%A5b%C3%A6r.txt"
    );
}

fn routes_content_disposition(name: &str) -> String {
    super::routes::content_disposition_for_test(name)
}

#[test]
fn fill_content_is_chunking_independent() {
    let seed = 0xDEAD_BEEF_u64;
    let total = 100_003usize;
    let mut whole = vec![0u8; total];
    fill_content(seed, 0, &mut whole);

    // Odd chunk sizes, so chunk starts hit every alignment within a word.
    for step in [1usize, 3, 7, 8, 9, 13, 4096, 65_537] {
        let mut pieced = vec![0u8; total];
        let mut off = 0;
        while off < total {
            let end = (off + step).min(total);
            fill_content(seed, off as u64, &mut pieced[off..end]);
            off = end;
        }
        assert!(pieced == whole, "chunk size {step} changed the content");
    }

    // Position addressing from an arbitrary, unaligned offset.
    let mut window = vec![0u8; 1000];
    fill_content(seed, 12_345, &mut window);
    assert_eq!(&window[..], &whole[12_345..13_345]);

    // Not a constant byte, and seeds give different content.
    assert!(whole.iter().any(|b| *b != whole[0]));
    let distinct = whole.iter().collect::<std::collections::HashSet<_>>().len();
    assert!(distinct > 250, "only {distinct} distinct byte values");
    let mut other = vec![0u8; total];
    fill_content(seed + 1, 0, &mut other);
    assert!(other != whole);

    // content_sha256 hashes exactly these bytes.
    let expected: [u8; 32] = Sha256::digest(&whole).into();
    assert_eq!(content_sha256(seed, total as u64), expected);
    assert_eq!(
        content_sha256(seed, 0),
        <[u8; 32]>::from(Sha256::digest(b""))
    );
}

/// Pins the generator's output: content (and so digests recorded in test
/// expectations or by a dev) must not silently change between versions.
#[test]
fn fill_content_is_stable() {
    let mut buf = [0u8; 16];
    fill_content(1, 0, &mut buf);
    assert_eq!(buf, GOLDEN_SEED1_FIRST16);
}

/// Cross-checked against an independent (Python) splitmix64 implementation.
const GOLDEN_SEED1_FIRST16: [u8; 16] = [
    196, 0, 222, 37, 161, 22, 94, 89, 207, 101, 157, 117, 219, 143, 75, 114,
];

#[tokio::test]
async fn status_fault_fires_exactly_times() {
    let sim = sim().await;
    let inst = sim.add_instance(spec(vec![element(100, None)]));
    sim.inject(FaultRule {
        path_contains: "/data/".to_owned(),
        fault: Fault::Status(503),
        times: 2,
    });
    let url = data_url(&sim, &inst, 0);
    // Unmatched paths are not affected and do not consume the rule.
    assert_eq!(get(&storage_url(&sim, &inst)).await.status(), 200);
    assert_eq!(get(&url).await.status(), 503);
    assert_eq!(get(&url).await.status(), 503);
    let ok = get(&url).await;
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.bytes().await.expect("body").len(), 100);
    assert_eq!(get(&url).await.status(), 200);

    let statuses: Vec<u16> = sim
        .calls()
        .iter()
        .filter(|c| c.path.contains("/data/"))
        .map(|c| c.status)
        .collect();
    assert_eq!(statuses, vec![503, 503, 200, 200]);
}

#[tokio::test]
async fn retry_after_fault_answers_429_with_header() {
    let sim = sim().await;
    let inst = sim.add_instance(spec(vec![]));
    sim.inject(FaultRule {
        path_contains: inst.instance_guid.to_string(),
        fault: Fault::RetryAfter(7),
        times: 1,
    });
    let resp = get(&storage_url(&sim, &inst)).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "7");
    assert_eq!(get(&storage_url(&sim, &inst)).await.status(), 200);
}

#[tokio::test]
async fn truncate_fault_makes_body_read_fail() {
    let sim = sim().await;
    let size = 1024 * 1024;
    let inst = sim.add_instance(spec(vec![element(size, None)]));
    let after = 100_000;
    sim.inject(FaultRule {
        path_contains: "/data/".to_owned(),
        fault: Fault::Truncate { after_bytes: after },
        times: 1,
    });
    let url = data_url(&sim, &inst, 0);
    let resp = get(&url).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-length"], size.to_string().as_str());
    let mut stream = resp.bytes_stream();
    let mut received = Vec::new();
    let mut failed = false;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(c) => received.extend_from_slice(&c),
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    assert!(failed, "body read must fail, got {} bytes", received.len());
    assert!(received.len() as u64 <= after);
    // What did arrive is the genuine prefix.
    let mut expected = vec![0u8; received.len()];
    fill_content(inst.elements[0].seed, 0, &mut expected);
    assert!(received == expected);

    // The rule is used up: the retry gets everything.
    let (digest, len) = hash_body(get(&url).await).await;
    assert_eq!(len, size);
    assert_eq!(digest, content_sha256(inst.elements[0].seed, size));
}

/// Cuts at the very start and exactly at a 64 KiB chunk boundary still give
/// the client the headers and then a failing body.
#[tokio::test]
async fn truncate_fault_edge_offsets() {
    let sim = sim().await;
    let size = 3 * 64 * 1024;
    let inst = sim.add_instance(spec(vec![element(size, None)]));
    let url = data_url(&sim, &inst, 0);
    for after in [0, 64 * 1024] {
        sim.inject(FaultRule {
            path_contains: "/data/".to_owned(),
            fault: Fault::Truncate { after_bytes: after },
            times: 1,
        });
        let resp = get(&url).await;
        assert_eq!(resp.status(), 200);
        let mut stream = resp.bytes_stream();
        let mut got = 0u64;
        let mut failed = false;
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(c) => got += c.len() as u64,
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        assert!(
            failed && got <= after,
            "after={after}: got {got}, failed={failed}"
        );
    }
    // A limit at or past the end sends the body whole.
    sim.inject(FaultRule {
        path_contains: "/data/".to_owned(),
        fault: Fault::Truncate { after_bytes: size },
        times: 1,
    });
    let (_, len) = hash_body(get(&url).await).await;
    assert_eq!(len, size);
}

#[tokio::test]
async fn truncate_fault_also_cuts_json_bodies() {
    let sim = sim().await;
    let inst = sim.add_instance(spec(vec![element(1, None)]));
    sim.inject(FaultRule {
        path_contains: "/storage/".to_owned(),
        fault: Fault::Truncate { after_bytes: 10 },
        times: 1,
    });
    let resp = get(&storage_url(&sim, &inst)).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.bytes().await.is_err());
}

#[tokio::test]
async fn delay_fault_delays_then_answers() {
    let sim = sim().await;
    let inst = sim.add_instance(spec(vec![]));
    sim.inject(FaultRule {
        path_contains: "/storage/".to_owned(),
        fault: Fault::Delay(Duration::from_millis(300)),
        times: 1,
    });
    let t = Instant::now();
    assert_eq!(get(&storage_url(&sim, &inst)).await.status(), 200);
    assert!(t.elapsed() >= Duration::from_millis(300));
    let t = Instant::now();
    assert_eq!(get(&storage_url(&sim, &inst)).await.status(), 200);
    assert!(t.elapsed() < Duration::from_millis(300));
}

#[tokio::test]
async fn complete_is_idempotent_and_runs_guard() {
    let sim = sim().await;
    let inst = sim.add_instance(spec(vec![element(5, None)]));
    let runs = Arc::new(AtomicUsize::new(0));
    let seen = runs.clone();
    let expected_guid = inst.instance_guid;
    sim.set_confirm_guard(Arc::new(move |ci: CreatedInstance| {
        let n = seen.fetch_add(1, Ordering::SeqCst) + 1;
        Box::pin(async move {
            if ci.instance_guid != expected_guid {
                return Err("guard got the wrong instance".to_owned());
            }
            if n == 2 {
                Err(format!("violation on call {n}"))
            } else {
                Ok(())
            }
        })
    }));

    let first = post(&format!("{}/complete", app_url(&sim, &inst))).await;
    assert_eq!(first.status(), 200);
    let v: Value = first.json().await.expect("json");
    let confs = v["completeConfirmations"]
        .as_array()
        .expect("confirmations");
    assert_eq!(confs.len(), 1);
    assert_eq!(confs[0]["stakeholderId"], "ttd");
    assert!(is_rfc3339_utc(
        confs[0]["confirmedOn"].as_str().expect("confirmedOn")
    ));

    // Second call (other API, guard fails): still 200, still one confirmation.
    let second = post(&format!("{}/complete", storage_url(&sim, &inst))).await;
    assert_eq!(second.status(), 200);
    let v2: Value = second.json().await.expect("json");
    assert_eq!(v2["completeConfirmations"], v["completeConfirmations"]);

    let fetched: Value = get(&storage_url(&sim, &inst))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(fetched["completeConfirmations"], v["completeConfirmations"]);

    assert_eq!(runs.load(Ordering::SeqCst), 2);
    assert_eq!(
        sim.guard_violations(),
        vec!["violation on call 2".to_owned()]
    );
    let confirmations = sim.confirmations();
    assert_eq!(confirmations.len(), 2);
    assert!(
        confirmations
            .iter()
            .all(|c| c.instance_id == inst.instance_id())
    );
    assert!(confirmations[0].at <= confirmations[1].at);

    // Unknown instance / wrong app: 403, guard not run, nothing recorded.
    let unknown = format!(
        "{}storage/api/v1/instances/{}/{}/complete",
        sim.base_url(),
        inst.party_id,
        uuid::Uuid::new_v4()
    );
    assert_eq!(post(&unknown).await.status(), 403);
    let wrong_app = format!(
        "{}ttd/other/instances/{}/{}/complete",
        sim.base_url(),
        inst.party_id,
        inst.instance_guid
    );
    assert_eq!(post(&wrong_app).await.status(), 403);
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    assert_eq!(sim.confirmations().len(), 2);
}

#[tokio::test]
async fn completed_event_has_documented_shape() {
    let sim = sim().await;
    let inst = sim.add_instance(spec(vec![]));
    let ev = sim.completed_event(&inst);
    let (p, g) = (inst.party_id, inst.instance_guid);
    assert!(uuid::Uuid::parse_str(ev["id"].as_str().expect("id")).is_ok());
    assert_eq!(ev["specversion"], "1.0");
    assert_eq!(ev["type"], "app.instance.process.completed");
    assert_eq!(
        ev["source"],
        format!("{}ttd/archive-app/instances/{p}/{g}", sim.base_url())
    );
    assert!(!ev["source"].as_str().expect("source")["http://".len()..].contains("//"));
    assert_eq!(ev["subject"], format!("/party/{p}"));
    assert!(is_rfc3339_utc(ev["time"].as_str().expect("time")));
    assert_eq!(ev["resource"], "urn:altinn:resource:app_ttd_archive-app");
    assert_eq!(ev["resourceinstance"], format!("{p}/{g}"));
    assert_ne!(
        sim.completed_event(&inst)["id"],
        ev["id"],
        "each event is new"
    );
    // The source is fetchable as the App API instance URL.
    assert_eq!(
        get(ev["source"].as_str().expect("source")).await.status(),
        200
    );
}

#[tokio::test]
async fn exchange_refuses_tokens_its_maskinporten_did_not_issue() {
    let sim = sim().await;
    let url = format!(
        "{}authentication/api/v1/exchange/maskinporten",
        sim.base_url()
    );
    let foreign = client()
        .get(&url)
        .bearer_auth("maskinporten-jwt")
        .send()
        .await
        .expect("sent");
    assert_eq!(foreign.status(), 401);
    let none = client().get(&url).send().await.expect("sent");
    assert_eq!(none.status(), 401);
    assert_eq!(sim.exchanges(), 2);
    let calls = sim.calls();
    assert_eq!(
        calls.iter().map(|c| c.authorized).collect::<Vec<_>>(),
        vec![false, false]
    );
}

#[tokio::test]
async fn storage_accepts_live_altinn_tokens_and_refuses_expired_ones() {
    let sim = sim().await;
    let inst = sim.add_instance(spec(vec![]));
    let url = storage_url(&sim, &inst);
    let live = sim.issue_altinn_token(Duration::from_secs(60));
    let resp = client()
        .get(&url)
        .bearer_auth(&live)
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), 200);
    let expired = sim.issue_altinn_token(Duration::ZERO);
    let resp = client()
        .get(&url)
        .bearer_auth(&expired)
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), 401);
    // A token signed by someone else is refused even if it looks right.
    let mut forged = live.clone();
    forged.truncate(live.len() - 4);
    forged.push_str("AAAA");
    let resp = client()
        .get(&url)
        .bearer_auth(&forged)
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), 401);
}

#[tokio::test]
async fn control_api_creates_instance_and_lists_confirmations() {
    let sim = sim().await;
    let url = format!("{}_sim/instances", sim.base_url());
    let resp = client()
        .post(&url)
        .json(&json!({
            "org": "ttd",
            "app": "dev-app",
            "partyId": 512345,
            "elements": [{ "size": 42 }, { "filename": "a.xml", "contentType": "application/xml", "size": 7 }]
        }))
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), 201);
    let body: Value = resp.json().await.expect("json");
    let instance = &body["instance"];
    let event = &body["event"];
    assert_eq!(instance["appId"], "ttd/dev-app");
    assert_eq!(
        instance["status"]["isArchived"], true,
        "process_ended defaults to true"
    );
    assert_eq!(
        instance["data"][0]["contentType"],
        "application/octet-stream"
    );
    assert_eq!(instance["data"][0]["dataType"], "attachment");
    assert_eq!(instance["data"][0]["size"], 42);
    assert_eq!(instance["data"][1]["filename"], "a.xml");
    assert_eq!(event["type"], "app.instance.process.completed");
    assert_eq!(event["resourceinstance"], instance["id"]);

    // The created instance is served (with auth) and confirmable.
    let source = event["source"].as_str().expect("source");
    let fetched: Value = get(source).await.json().await.expect("json");
    assert_eq!(fetched["id"], instance["id"]);
    let data_link = instance["data"][0]["selfLinks"]["platform"]
        .as_str()
        .expect("link");
    assert_eq!(get(data_link).await.bytes().await.expect("body").len(), 42);
    assert_eq!(post(&format!("{source}/complete")).await.status(), 200);
    let confirmed: Value = client()
        .get(format!("{}_sim/confirmations", sim.base_url()))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(confirmed, json!([instance["id"]]));

    // Bad requests are 4xx, not crashes.
    let bad_json = client()
        .post(&url)
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .expect("sent");
    assert!(bad_json.status().is_client_error());
    let missing = client()
        .post(&url)
        .json(&json!({"org": "ttd"}))
        .send()
        .await
        .expect("sent");
    assert!(missing.status().is_client_error());
    let bad_org = client()
        .post(&url)
        .json(&json!({"org": "a/b", "app": "x", "party_id": 1}))
        .send()
        .await
        .expect("sent");
    assert_eq!(bad_org.status(), 400);
}

#[tokio::test]
async fn shutdown_stops_serving() {
    let sim = sim().await;
    let url = sim.base_url();
    assert_eq!(
        client()
            .get(url.clone())
            .send()
            .await
            .expect("sent")
            .status(),
        200
    );
    sim.shutdown();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        // Fresh client each time: no pooled keep-alive connection.
        if client().get(url.clone()).send().await.is_err() {
            break;
        }
        assert!(Instant::now() < deadline, "still serving after shutdown");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
