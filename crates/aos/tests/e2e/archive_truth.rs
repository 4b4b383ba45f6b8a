//! The archive's truth over an instance's life (design §2.6), end to end under the host
//! harness: an element is current only in the version Altinn has now, a manifest is trusted
//! only against the blobs, reconciliation is fair and never downloads what the org confirmed,
//! permanent failures are held instead of retried forever, and the downstream hand-off queue
//! gets one message per confirmed instance.

use std::collections::HashMap;
use std::time::Duration;

use altinn_aos::archive::BlobInfo;
use altinn_sim::{CreatedInstance, InstanceSpec};
use aos_testkit::world::{Backends, TestApp, element, hex, instance};
use bytes::Bytes;
use serde_json::{Value, json};

const ORG_SETTING: &str = "AltinnApplicationOwnerSystemSettings__Org";
const APPS_SETTING: &str = "AltinnApplicationOwnerSystemSettings__ReconcileApps";
const EVENT_TYPES_SETTING: &str = "AltinnApplicationOwnerSystemSettings__EventTypes";
const MOVED_TO: &str = "app.instance.process.movedTo.Task_2";
const DRAIN: Duration = Duration::from_secs(120);

/// A world whose settings name the org, plus `extra`; the settings, for CLI runs beside it.
async fn spawn(extra: &[(&str, &str)]) -> (TestApp, Vec<(String, String)>) {
    let backends = Backends::start().await;
    let mut env = backends.settings_env();
    env.push((ORG_SETTING.into(), "ttd".into()));
    for (name, value) in extra {
        env.retain(|(n, _)| n != name);
        env.push((name.to_string(), value.to_string()));
    }
    let app = TestApp::spawn_with(backends, Duration::from_millis(200), env.clone()).await;
    (app, env)
}

fn data_downloads(app: &TestApp) -> usize {
    app.sim
        .calls()
        .iter()
        .filter(|c| c.method == "GET" && c.path.contains("/data/"))
        .count()
}

/// How many events for `inst` the timer runs have queued (the inbound outputs).
fn queued_for(outputs: &[Value], inst: &CreatedInstance) -> usize {
    let guid = inst.instance_guid.to_string();
    outputs
        .iter()
        .filter(|event| event["source"].as_str().is_some_and(|s| s.ends_with(&guid)))
        .count()
}

async fn reconcile_by_timer(app: &TestApp) -> (Vec<Value>, String) {
    let run = app.host.invoke_timer("EventsReconciler").await.unwrap();
    assert!(run.succeeded, "{:?}", run.error);
    let queued = run.outputs["inbound"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let summary = run.logs.last().cloned().unwrap_or_default();
    (queued, summary)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_element_changed_with_the_same_length_after_an_early_archive_is_confirmed_only_with_its_final_bytes()
 {
    let types = format!("{MOVED_TO},app.instance.process.completed");
    let (app, _) = spawn(&[(EVENT_TYPES_SETTING, types.as_str())]).await;
    let mut inst = app.sim.add_instance(InstanceSpec {
        process_ended: false,
        ..instance(
            81_000,
            vec![element(2_000, Some("form.xml")), element(300, None)],
        )
    });
    // The app moves the process on: an event before completion, archived early.
    let mut early = app.sim.completed_event(&inst);
    early["type"] = json!(MOVED_TO);
    assert_eq!(app.post_event(&early).await.status, 200);
    app.host.wait_until_idle(DRAIN).await.unwrap();
    assert!(!app.confirmed(&inst), "the process has not ended");
    let paths = app.paths(&inst);
    assert!(app.archive.manifest(&paths).await.unwrap().is_some());

    // The form is then changed by one value: same length, other bytes, new lastChanged.
    let changed = app
        .sim
        .replace_content(inst.instance_guid, inst.elements[0].id)
        .unwrap();
    assert_eq!(changed.size, inst.elements[0].size);
    assert_ne!(changed.sha256(), inst.elements[0].sha256());
    inst.elements[0] = changed;
    assert!(app.sim.end_process(inst.instance_guid));
    assert_eq!(
        app.post_event(&app.sim.completed_event(&inst)).await.status,
        200
    );
    app.host.wait_until_idle(DRAIN).await.unwrap();

    assert!(app.confirmed(&inst));
    // Byte-exact with the final content, and the manifest's SHA-256 says so too.
    app.assert_archived(&inst).await;
    assert_eq!(
        app.sim.guard_violations(),
        Vec::<String>::new(),
        "no confirmation with stale bytes"
    );
    app.assert_no_poison().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_instance_archived_before_its_process_ended_is_confirmed_with_the_instance_json_after_it()
 {
    let types = format!("{MOVED_TO},app.instance.process.completed");
    let (app, _) = spawn(&[(EVENT_TYPES_SETTING, types.as_str())]).await;
    let inst = app.sim.add_instance(InstanceSpec {
        process_ended: false,
        ..instance(81_500, vec![element(900, Some("form.xml"))])
    });
    let mut early = app.sim.completed_event(&inst);
    early["type"] = json!(MOVED_TO);
    assert_eq!(app.post_event(&early).await.status, 200);
    app.host.wait_until_idle(DRAIN).await.unwrap();
    let downloads = data_downloads(&app);

    // The process ends; no element changes.
    assert!(app.sim.end_process(inst.instance_guid));
    assert_eq!(
        app.post_event(&app.sim.completed_event(&inst)).await.status,
        200
    );
    app.host.wait_until_idle(DRAIN).await.unwrap();
    assert!(app.confirmed(&inst));
    app.assert_archived(&inst).await;
    let json = app
        .archive
        .read_small(&app.paths(&inst).instance_json())
        .await
        .unwrap()
        .unwrap();
    let archived: Value = serde_json::from_slice(&json).unwrap();
    assert!(
        archived["process"]["ended"].is_string(),
        "the archived instance JSON is the completed instance: {}",
        archived["process"]
    );
    assert_eq!(
        data_downloads(&app),
        downloads,
        "no element downloaded again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_data_blob_deleted_or_overwritten_after_the_manifest_is_healed_by_one_replay() {
    let (app, _) = spawn(&[]).await;
    let deleted = app.sim.add_instance(instance(
        82_000,
        vec![element(5_000, Some("a.pdf")), element(40, None)],
    ));
    let overwritten = app
        .sim
        .add_instance(instance(82_001, vec![element(6_000, Some("b.pdf"))]));
    for inst in [&deleted, &overwritten] {
        assert_eq!(
            app.post_event(&app.sim.completed_event(inst)).await.status,
            200
        );
    }
    app.host.wait_until_idle(DRAIN).await.unwrap();
    for inst in [&deleted, &overwritten] {
        app.assert_archived(inst).await;
    }

    // Someone deletes one blob and overwrites another with bytes of the same length.
    let gone = app.paths(&deleted).data(deleted.elements[0].id);
    assert!(app.archive.delete(&gone).await.unwrap());
    let tampered = app.paths(&overwritten).data(overwritten.elements[0].id);
    let info = BlobInfo {
        content_type: "application/pdf".into(),
        metadata: HashMap::new(),
    };
    app.archive
        .put(&tampered, Bytes::from(vec![0u8; 6_000]), &info)
        .await
        .unwrap();

    // One replay of each event heals it.
    let downloads = data_downloads(&app);
    for inst in [&deleted, &overwritten] {
        assert_eq!(
            app.post_event(&app.sim.completed_event(inst)).await.status,
            200
        );
    }
    app.host.wait_until_idle(DRAIN).await.unwrap();
    for inst in [&deleted, &overwritten] {
        app.assert_archived(inst).await;
    }
    assert_eq!(
        data_downloads(&app),
        downloads + 2,
        "exactly the two damaged elements were downloaded again"
    );
    assert_eq!(app.sim.guard_violations(), Vec::<String>::new());
    app.assert_no_poison().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_busy_app_with_thousands_of_confirmed_instances_does_not_starve_the_next_app() {
    let (app, env) = spawn(&[(APPS_SETTING, "ttd/app-one,ttd/app-two")]).await;
    for i in 0..6_000 {
        let done = app.sim.add_instance(InstanceSpec {
            app: "app-one".into(),
            ..instance(90_000 + i, vec![])
        });
        assert!(app.sim.mark_confirmed(done.instance_guid, "ttd"));
    }
    let waiting: Vec<_> = (0..3)
        .map(|i| {
            app.sim.add_instance(InstanceSpec {
                app: "app-two".into(),
                ..instance(99_000 + i, vec![element(700 + i, Some("form.xml"))])
            })
        })
        .collect();

    let dry = aos_testkit::cli::run_aos(&env, &["reconcile", "--dry-run"]).await;
    assert_eq!(dry.code, 0, "{}\n{}", dry.stdout, dry.stderr);
    assert_eq!(
        dry.stdout.matches("would queue ").count(),
        3,
        "{}",
        dry.stdout
            .lines()
            .rev()
            .take(5)
            .collect::<Vec<_>>()
            .join("\n")
    );
    for inst in &waiting {
        assert!(
            dry.stdout.contains(&inst.instance_guid.to_string()),
            "app-two's instance {} is found",
            inst.instance_id()
        );
    }

    let run = aos_testkit::cli::run_aos(&env, &["reconcile"]).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("found 6003, already confirmed 6000, queued 3, held 0, failed 0"),
        "{}",
        run.stdout
    );
    app.host.wait_until_idle(DRAIN).await.unwrap();
    for inst in &waiting {
        app.assert_archived(inst).await;
        assert!(app.confirmed(inst));
    }
    assert_eq!(data_downloads(&app), 3, "nothing of app-one was downloaded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instances_the_org_confirmed_are_never_downloaded_by_reconciliation() {
    let (app, _) = spawn(&[]).await;
    // Confirmed by the system this one replaced, and not in this archive.
    let migrated: Vec<_> = (0..4)
        .map(|i| {
            let inst = app
                .sim
                .add_instance(instance(83_000 + i, vec![element(900, Some("x.pdf"))]));
            assert!(app.sim.mark_confirmed(inst.instance_guid, "ttd"));
            inst
        })
        .collect();
    let unconfirmed = app
        .sim
        .add_instance(instance(83_100, vec![element(901, Some("y.pdf"))]));

    let (queued, summary) = reconcile_by_timer(&app).await;
    assert_eq!(queued.len(), 1, "{summary}");
    assert_eq!(queued_for(&queued, &unconfirmed), 1);
    assert_eq!(
        summary,
        "reconcile summary: found 5, already confirmed 4, queued 1, held 0, failed 0"
    );
    app.host.wait_until_idle(DRAIN).await.unwrap();
    app.assert_archived(&unconfirmed).await;
    assert_eq!(data_downloads(&app), 1, "only the unconfirmed instance");
    for inst in &migrated {
        assert!(
            app.archive
                .manifest(&app.paths(inst))
                .await
                .unwrap()
                .is_none()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_permanent_failure_is_queued_once_over_three_reconcile_runs_until_replayed() {
    let (app, env) = spawn(&[]).await;
    let anomalous = app
        .sim
        .add_instance(instance(84_000, vec![element(100, Some("a.xml"))]));
    let id = anomalous.elements[0].id;
    let honest_path = format!("ttd/test-app/{}/data/{id}", anomalous.instance_guid);
    app.sim.tamper(
        anomalous.instance_guid,
        "/data/0/blobStoragePath",
        json!(format!("ttd/test-app/{}/data/{id}", uuid::Uuid::new_v4())),
    );
    let lying = app
        .sim
        .add_instance(instance(84_001, vec![element(100, Some("b.xml"))]));
    app.sim
        .tamper(lying.instance_guid, "/data/0/size", json!(120));

    let mut queued = Vec::new();
    let mut summaries = Vec::new();
    for _ in 0..3 {
        let (run, summary) = reconcile_by_timer(&app).await;
        queued.extend(run);
        summaries.push(summary);
        app.host.wait_until_idle(DRAIN).await.unwrap();
    }
    assert_eq!(queued_for(&queued, &anomalous), 1, "{summaries:#?}");
    assert_eq!(queued_for(&queued, &lying), 1, "{summaries:#?}");
    assert_eq!(
        summaries[2],
        "reconcile summary: found 2, already confirmed 0, queued 0, held 2 (permanent failures, see aos poison list), failed 0"
    );
    assert!(!app.confirmed(&anomalous) && !app.confirmed(&lying));

    // The operator fixes the cause and replays: the hold is released and the instance done.
    app.sim.tamper(
        anomalous.instance_guid,
        "/data/0/blobStoragePath",
        json!(honest_path),
    );
    let event_id = app
        .azurite
        .queue_texts("events-inbound-poison")
        .await
        .unwrap()
        .iter()
        .filter_map(|t| serde_json::from_str::<Value>(t).ok())
        .find(|e| {
            e["source"]
                .as_str()
                .is_some_and(|s| s.ends_with(&anomalous.instance_guid.to_string()))
        })
        .and_then(|e| e["id"].as_str().map(str::to_string))
        .expect("the anomalous instance's event is in the poison queue");
    let replay =
        aos_testkit::cli::run_aos(&env, &["poison", "replay", "--event-id", &event_id]).await;
    assert_eq!(replay.code, 0, "{}\n{}", replay.stdout, replay.stderr);
    assert!(
        replay.stdout.contains("released 1 hold(s)"),
        "{}",
        replay.stdout
    );
    app.host.wait_until_idle(DRAIN).await.unwrap();
    app.assert_archived(&anomalous).await;
    assert!(app.confirmed(&anomalous));
    let (_, summary) = reconcile_by_timer(&app).await;
    assert_eq!(
        summary,
        "reconcile summary: found 2, already confirmed 1, queued 0, held 1 (permanent failures, see aos poison list), failed 0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reconciliation_works_whatever_event_types_are_archived() {
    let (app, _) = spawn(&[(EVENT_TYPES_SETTING, MOVED_TO)]).await;
    let lost = app
        .sim
        .add_instance(instance(85_000, vec![element(1_234, Some("c.pdf"))]));
    let (queued, summary) = reconcile_by_timer(&app).await;
    assert_eq!(queued.len(), 1, "{summary}");
    app.host.wait_until_idle(DRAIN).await.unwrap();
    app.assert_archived(&lost).await;
    assert!(app.confirmed(&lost));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_confirmed_instance_is_handed_off_downstream_with_its_verified_manifest() {
    let (app, _) = spawn(&[("QueueStorageSettings__ArchivedQueueName", "aos-archived")]).await;
    let created: Vec<_> = (0..2)
        .map(|i| {
            app.sim.add_instance(instance(
                86_000 + i,
                vec![element(3_000 + i, Some("form.xml")), element(17, None)],
            ))
        })
        .collect();
    for inst in &created {
        assert_eq!(
            app.post_event(&app.sim.completed_event(inst)).await.status,
            200
        );
    }
    app.host.wait_until_idle(DRAIN).await.unwrap();

    let messages: Vec<Value> = app
        .azurite
        .queue_texts("aos-archived")
        .await
        .unwrap()
        .iter()
        .map(|t| serde_json::from_str(t).expect("a hand-off message is JSON"))
        .collect();
    assert_eq!(messages.len(), 2, "{messages:#?}");
    for inst in &created {
        assert!(app.confirmed(inst));
        let message = messages
            .iter()
            .find(|m| m["instanceId"] == inst.instance_id())
            .expect("one message per instance");
        assert_eq!(message["type"], "aos.instance.archived");
        assert_eq!(message["appId"], "ttd/test-app");
        assert_eq!(message["manifestBlob"], app.paths(inst).manifest());
        let elements = message["manifest"]["elements"].as_array().unwrap();
        assert_eq!(elements.len(), inst.elements.len());
        for element in &inst.elements {
            let listed = elements
                .iter()
                .find(|e| e["id"] == element.id.to_string())
                .unwrap();
            assert_eq!(listed["size"], element.size);
            assert_eq!(listed["sha256"], hex(&element.sha256()));
            assert_eq!(listed["blobName"], app.paths(inst).data(element.id));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn catch_up_does_not_queue_an_instance_held_after_a_permanent_failure() {
    let (app, env) = spawn(&[(APPS_SETTING, "ttd/test-app")]).await;
    app.sim.set_events_hold_back(Duration::ZERO);
    let lying = app
        .sim
        .add_instance(instance(87_000, vec![element(100, Some("a.xml"))]));
    app.sim
        .tamper(lying.instance_guid, "/data/0/size", json!(120));
    // Its pushed event fails permanently: the instance is held.
    let event = app.sim.completed_event(&lying);
    assert_eq!(app.post_event(&event).await.status, 200);
    app.host.wait_until_idle(DRAIN).await.unwrap();
    assert!(!app.confirmed(&lying));
    // The pull feed has the same event: catch-up must not queue it again.
    app.sim.publish(event);
    let run = aos_testkit::cli::run_aos(&env, &["catch-up"]).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let report = run
        .stdout
        .lines()
        .find(|l| l.starts_with("catch-up ttd/test-app"))
        .unwrap_or_else(|| panic!("{}", run.stdout));
    assert!(
        report.contains("queued 0") && report.contains("held (permanent failure) 1"),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_uploads_of_one_blob_at_once_never_leave_bytes_their_hash_does_not_describe() {
    use futures::channel::mpsc;
    use sha2::{Digest, Sha256};

    let backends = Backends::start().await;
    let archive = backends.archive.clone();
    const SIZE: usize = 9 * 1024 * 1024;
    const NAME: &str = "ttd/test-app/00000000-0000-4000-8000-000000000001/data/x";
    let info = BlobInfo {
        content_type: "application/octet-stream".into(),
        metadata: HashMap::new(),
    };

    // Upload A stages its first block, then waits in the middle of its body.
    let (send_a, body_a) = mpsc::unbounded::<Result<Bytes, String>>();
    send_a
        .unbounded_send(Ok(Bytes::from(vec![b'a'; 5 * 1024 * 1024])))
        .unwrap();
    let first = {
        let archive = archive.clone();
        let info = info.clone();
        tokio::spawn(async move {
            let buffers = archive.reserve_buffers(SIZE as u64).await;
            archive
                .upload_stream(NAME, body_a, SIZE as u64, &info, buffers)
                .await
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Upload B of the same blob, other bytes of the same length, runs to its end meanwhile.
    let body_b = futures::stream::iter(
        [Bytes::from(vec![b'b'; SIZE])]
            .into_iter()
            .map(Ok::<_, String>),
    );
    let buffers = archive.reserve_buffers(SIZE as u64).await;
    archive
        .upload_stream(NAME, body_b, SIZE as u64, &info, buffers)
        .await
        .unwrap();

    // Then A finishes (its commit may fail: that is a retry, not a mixed blob).
    send_a
        .unbounded_send(Ok(Bytes::from(vec![b'a'; SIZE - 5 * 1024 * 1024])))
        .unwrap();
    drop(send_a);
    let _ = first.await.unwrap();

    let bytes = archive.read_small(NAME).await.unwrap().unwrap();
    let listed = archive.list("ttd/test-app/").await.unwrap();
    let (_, blob) = listed.iter().find(|(n, _)| n == NAME).unwrap();
    assert_eq!(bytes.len(), SIZE);
    assert_eq!(
        blob.sha256(),
        Some(format!("{:x}", Sha256::digest(&bytes)).as_str()),
        "the stored bytes are what their recorded SHA-256 says (a: {}, b: {})",
        bytes.iter().filter(|&&b| b == b'a').count(),
        bytes.iter().filter(|&&b| b == b'b').count()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_permanent_failure_that_a_later_attempt_gets_past_holds_nothing() {
    let (app, _) = spawn(&[]).await;
    let inst = app
        .sim
        .add_instance(instance(88_000, vec![element(100, Some("a.xml"))]));
    // The first attempt meets a size the bytes contradict (an element replaced meanwhile).
    app.sim
        .tamper(inst.instance_guid, "/data/0/size", json!(120));
    assert_eq!(
        app.post_event(&app.sim.completed_event(&inst)).await.status,
        200
    );
    app.wait_for_a_failed_invocation(
        "EventsProcessor",
        "the first attempt fails",
        Duration::from_secs(20),
    )
    .await;
    app.sim
        .tamper(inst.instance_guid, "/data/0/size", json!(100));
    // Then Altinn's complete is down for every confirmation attempt: poisoned, unconfirmed.
    app.sim.inject(altinn_sim::FaultRule {
        path_contains: "/complete".into(),
        fault: altinn_sim::Fault::Status(503),
        times: u32::MAX,
    });
    app.host.wait_until_idle(DRAIN).await.unwrap();
    assert!(!app.confirmed(&inst));
    assert_eq!(
        app.azurite
            .queue_texts("events-confirmation-poison")
            .await
            .unwrap()
            .len(),
        1
    );
    // Reconciliation finds it again: nothing held it.
    let (queued, summary) = reconcile_by_timer(&app).await;
    assert_eq!(queued_for(&queued, &inst), 1, "{summary}");
    assert!(summary.contains("held 0"), "{summary}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hold_ends_after_its_age_and_a_zero_age_holds_nothing() {
    for (age, held_on_second_run) in [("4", true), ("0", false)] {
        let (app, _) = spawn(&[("AOS_TEST_FAILURE_HOLD_SECS", age)]).await;
        let inst = app
            .sim
            .add_instance(instance(89_000, vec![element(100, Some("a.xml"))]));
        app.sim
            .tamper(inst.instance_guid, "/data/0/size", json!(120));
        let (first, _) = reconcile_by_timer(&app).await;
        assert_eq!(queued_for(&first, &inst), 1);
        app.host.wait_until_idle(DRAIN).await.unwrap();
        let (second, summary) = reconcile_by_timer(&app).await;
        assert_eq!(
            queued_for(&second, &inst),
            usize::from(!held_on_second_run),
            "age {age}: {summary}"
        );
        if held_on_second_run {
            tokio::time::sleep(Duration::from_secs(5)).await;
            let (third, summary) = reconcile_by_timer(&app).await;
            assert_eq!(queued_for(&third, &inst), 1, "expired: {summary}");
            let state = altinn_aos::archive::Archive::new(app.blobs.clone(), "aos-state");
            assert!(
                state.list("holds/").await.unwrap().is_empty(),
                "the expired hold was removed"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_app_with_a_backlog_over_the_cap_leaves_the_other_app_its_share() {
    let (app, env) = spawn(&[(APPS_SETTING, "ttd/app-one,ttd/app-two")]).await;
    for i in 0..6_000 {
        app.sim.add_instance(InstanceSpec {
            app: "app-one".into(),
            ..instance(100_000 + i, vec![])
        });
    }
    let waiting: Vec<_> = (0..3)
        .map(|i| {
            app.sim.add_instance(InstanceSpec {
                app: "app-two".into(),
                ..instance(109_000 + i, vec![])
            })
        })
        .collect();
    let dry = aos_testkit::cli::run_aos(&env, &["reconcile", "--dry-run"]).await;
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    let would: Vec<&str> = dry
        .stdout
        .lines()
        .filter(|l| l.starts_with("would queue "))
        .collect();
    for inst in &waiting {
        let guid = inst.instance_guid.to_string();
        assert!(
            would.iter().any(|l| l.ends_with(&guid)),
            "app-two's {guid} is queued"
        );
    }
    // app-one gets its share (5000 / 2) in the first phase and the rest of the cap in the sweep.
    assert_eq!(would.len(), 5_000, "the cap counts queued instances");
    assert!(
        dry.stdout.contains("this app's share of the run"),
        "the stop is explained: {}",
        dry.stdout
            .lines()
            .rev()
            .take(3)
            .collect::<Vec<_>>()
            .join("\n")
    );
}
