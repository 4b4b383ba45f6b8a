//! End to end under the Functions host protocol: the real `aos` binary, spawned and driven by
//! the host harness (`aos_testkit::host`), against Azurite and the Altinn simulator.
//!
//! Each test builds its own world ([`TestApp::spawn`]): fresh Azurite, simulator and handler
//! on free ports, so tests run in parallel without sharing state.

use std::time::Duration;

use altinn_sim::{ElementSpec, Fault, FaultRule};
use aos_testkit::world::{TestApp, element, instance};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instances_flow_from_webhook_to_verified_archive_and_confirmation() {
    let app = TestApp::spawn().await;
    let mut created = Vec::new();
    // 0 elements; one empty element; several small ones with a non-ASCII filename; a large one
    // spanning several blocks with an odd size.
    let shapes: Vec<Vec<ElementSpec>> = vec![
        vec![],
        vec![element(0, Some("empty.txt"))],
        vec![
            element(10 * 1024, Some("skjema.xml")),
            element(3, None),
            element(64 * 1024 + 7, Some("søknad æøå.pdf")),
        ],
        vec![element(13 * 1024 * 1024 + 11, Some("big.bin"))],
    ];
    for (i, elements) in shapes.into_iter().enumerate() {
        for party in 0..3u64 {
            created.push(
                app.sim
                    .add_instance(instance(50_000 + i as u64 * 10 + party, elements.clone())),
            );
        }
    }
    for inst in &created {
        let response = app.post_event(&app.sim.completed_event(inst)).await;
        assert_eq!(
            response.status,
            200,
            "webhook answer: {}",
            response.body_text()
        );
    }

    app.host
        .wait_until_idle(Duration::from_secs(120))
        .await
        .expect("pipeline drains");

    for inst in &created {
        app.assert_archived(inst).await;
        assert!(
            app.confirmed(inst),
            "instance {} not confirmed",
            inst.instance_guid
        );
    }
    assert_eq!(
        app.sim.guard_violations(),
        Vec::<String>::new(),
        "a confirm came before its manifest"
    );
    app.assert_no_poison().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn validation_ping_and_other_types_are_answered_200_and_not_queued() {
    let app = TestApp::spawn().await;
    let ping = json!({
        "id": "694caa35-8b25-4cd7-b800-f6eeb93c56ed",
        "source": "https://platform.altinn.no/events/api/v1/subscriptions/1234",
        "type": "platform.events.validatesubscription",
        "specversion": "1.0"
    });
    let inst = app.sim.add_instance(instance(1, vec![]));
    let mut created_event = app.sim.completed_event(&inst);
    created_event["type"] = json!("app.instance.created");
    for event in [ping, created_event] {
        let response = app.post_event(&event).await;
        assert_eq!(response.status, 200);
        assert!(!response.queued(), "queued {event}");
    }
    app.host
        .wait_until_idle(Duration::from_secs(10))
        .await
        .unwrap();
    assert!(
        app.sim
            .calls()
            .iter()
            .all(|c| !c.path.contains("/instances/")),
        "no instance was read"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hopeless_requests_get_a_4xx_and_nothing_is_queued() {
    let app = TestApp::spawn().await;
    let inst = app.sim.add_instance(instance(7, vec![]));
    let good = app.sim.completed_event(&inst);
    let with = |key: &str, value: Value| {
        let mut e = good.clone();
        e[key] = value;
        e
    };
    let without = |key: &str| {
        let mut e = good.clone();
        e.as_object_mut().unwrap().remove(key);
        e
    };
    let source = good["source"].as_str().unwrap().to_string();
    let cases: Vec<(&str, Vec<u8>, &str, u16)> = vec![
        (
            "malformed JSON",
            b"{\"id\":".to_vec(),
            "application/json",
            400,
        ),
        (
            "missing id",
            without("id").to_string().into_bytes(),
            "application/json",
            400,
        ),
        (
            "missing type",
            without("type").to_string().into_bytes(),
            "application/json",
            400,
        ),
        (
            "missing source",
            without("source").to_string().into_bytes(),
            "application/json",
            400,
        ),
        (
            "foreign host",
            with("source", json!(source.replace("127.0.0.1", "evil.example")))
                .to_string()
                .into_bytes(),
            "application/json",
            400,
        ),
        (
            "not an instance path",
            with("source", json!(format!("{}/data", source)))
                .to_string()
                .into_bytes(),
            "application/json",
            400,
        ),
        (
            "non-numeric party",
            with(
                "source",
                json!(source.replace("/instances/7/", "/instances/x7/")),
            )
            .to_string()
            .into_bytes(),
            "application/json",
            400,
        ),
        (
            "non-GUID instance",
            with(
                "source",
                json!(format!("{}/x", source.rsplit_once('/').unwrap().0)),
            )
            .to_string()
            .into_bytes(),
            "application/json",
            400,
        ),
        (
            "org breaking Altinn's rules",
            with("source", json!(source.replace("/ttd/", "/t_d/")))
                .to_string()
                .into_bytes(),
            "application/json",
            400,
        ),
        (
            "app breaking Altinn's rules",
            with("source", json!(source.replace("/test-app/", "/Test-App-/")))
                .to_string()
                .into_bytes(),
            "application/json",
            400,
        ),
        (
            "id of the wrong type",
            with("id", json!(12)).to_string().into_bytes(),
            "application/json",
            400,
        ),
        (
            "source of the wrong type",
            with("source", json!({"url": source}))
                .to_string()
                .into_bytes(),
            "application/json",
            400,
        ),
        (
            "not an object",
            b"[1,2,3]".to_vec(),
            "application/json",
            400,
        ),
        (
            "deeply nested",
            format!("{}{}", "[".repeat(5000), "]".repeat(5000)).into_bytes(),
            "application/json",
            400,
        ),
        (
            "wrong content type",
            good.to_string().into_bytes(),
            "text/plain",
            415,
        ),
        (
            "over 1 MiB",
            with("padding", json!("x".repeat(1024 * 1024)))
                .to_string()
                .into_bytes(),
            "application/json",
            413,
        ),
    ];
    for (name, body, content_type, status) in cases {
        let response = app.post_raw(body, content_type).await;
        assert_eq!(response.status, status, "{name}: {}", response.body_text());
        assert!(!response.queued(), "{name}: queued");
    }
    app.host
        .wait_until_idle(Duration::from_secs(10))
        .await
        .unwrap();
    assert!(
        app.sim
            .calls()
            .iter()
            .all(|c| !c.path.contains("/instances/")),
        "nothing was processed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retryable_failures_are_retried_until_the_archive_is_complete() {
    let app = TestApp::spawn().await;
    let inst = app.sim.add_instance(instance(
        42,
        vec![
            element(6 * 1024 * 1024 + 5, Some("a.bin")),
            element(1000, Some("b.txt")),
        ],
    ));
    let first = inst.elements[0].id.to_string();
    let second = inst.elements[1].id.to_string();
    // A 503 and a truncated body on the large element, a 429 on the instance read, a 500 on
    // the confirm: each costs one attempt, all within the host's five.
    app.sim.inject(FaultRule {
        path_contains: format!("/data/{first}"),
        fault: Fault::Truncate {
            after_bytes: 5 * 1024 * 1024,
        },
        times: 1,
    });
    app.sim.inject(FaultRule {
        path_contains: format!("/data/{second}"),
        fault: Fault::Status(503),
        times: 1,
    });
    app.sim.inject(FaultRule {
        path_contains: "/complete".into(),
        fault: Fault::Status(500),
        times: 1,
    });
    app.sim.inject(FaultRule {
        path_contains: format!("/instances/{}", inst.instance_id()),
        fault: Fault::RetryAfter(1),
        times: 1,
    });

    let response = app.post_event(&app.sim.completed_event(&inst)).await;
    assert_eq!(response.status, 200);
    app.host
        .wait_until_idle(Duration::from_secs(60))
        .await
        .unwrap();

    app.assert_archived(&inst).await;
    assert!(app.confirmed(&inst));
    assert_eq!(app.sim.guard_violations(), Vec::<String>::new());
    app.assert_no_poison().await;
    let attempts: Vec<u32> = app
        .host
        .invocations()
        .iter()
        .filter(|i| i.function == "EventsProcessor")
        .filter_map(|i| i.dequeue_count)
        .collect();
    assert!(
        attempts.len() >= 2 && attempts.contains(&2),
        "processor was retried: {attempts:?}"
    );
    let reads: Vec<_> = app
        .sim
        .calls()
        .into_iter()
        .filter(|c| c.path.ends_with(&inst.instance_id()))
        .collect();
    assert_eq!(reads[0].status, 429);
    assert!(
        reads[1].at - reads[0].at >= Duration::from_secs(1),
        "Retry-After was honoured: {:?}",
        reads[1].at - reads[0].at
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retry_does_not_download_elements_already_stored() {
    let app = TestApp::spawn().await;
    let inst = app.sim.add_instance(instance(
        43,
        vec![
            element(2 * 1024 * 1024, Some("kept.bin")),
            element(100, Some("late.txt")),
        ],
    ));
    let kept = inst.elements[0].id.to_string();
    let late = inst.elements[1].id.to_string();
    // The second element's body breaks off, which fails the attempt after the first is stored.
    app.sim.inject(FaultRule {
        path_contains: format!("/data/{late}"),
        fault: Fault::Truncate { after_bytes: 10 },
        times: 1,
    });
    app.post_event(&app.sim.completed_event(&inst)).await;
    app.host
        .wait_until_idle(Duration::from_secs(60))
        .await
        .unwrap();

    app.assert_archived(&inst).await;
    let downloads = app
        .sim
        .calls()
        .iter()
        .filter(|c| c.path.ends_with(&kept) && c.method == "GET")
        .count();
    assert_eq!(downloads, 1, "the stored element was downloaded again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_instance_whose_process_has_not_ended_is_archived_but_not_confirmed() {
    let app = TestApp::spawn().await;
    let mut spec = instance(44, vec![element(10, None)]);
    spec.process_ended = false;
    let inst = app.sim.add_instance(spec);
    app.post_event(&app.sim.completed_event(&inst)).await;
    app.host
        .wait_until_idle(Duration::from_secs(30))
        .await
        .unwrap();
    app.assert_archived(&inst).await;
    assert!(
        !app.confirmed(&inst),
        "confirmed an instance whose process has not ended"
    );
    assert!(
        app.sim
            .calls()
            .iter()
            .all(|c| !c.path.ends_with("/complete"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unknown_instance_ends_in_the_poison_queue_after_five_attempts() {
    let app = TestApp::spawn().await;
    let inst = app.sim.add_instance(instance(45, vec![]));
    let mut event = app.sim.completed_event(&inst);
    let missing = uuid::Uuid::new_v4();
    event["source"] = json!(
        event["source"]
            .as_str()
            .unwrap()
            .replace(&inst.instance_guid.to_string(), &missing.to_string())
    );
    assert_eq!(app.post_event(&event).await.status, 200);
    app.host
        .wait_until_idle(Duration::from_secs(30))
        .await
        .unwrap();

    let poisoned = app.host.poison_texts("events-inbound").await.unwrap();
    assert_eq!(poisoned.len(), 1, "poison: {poisoned:?}");
    let message: Value = serde_json::from_str(&poisoned[0]).unwrap();
    assert_eq!(
        message["id"], event["id"],
        "the poison message is the event as received"
    );
    let attempts = app
        .host
        .invocations()
        .iter()
        .filter(|i| i.function == "EventsProcessor")
        .count();
    assert_eq!(attempts, 5);
    assert!(app.sim.confirmations().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exhausted_retries_land_in_poison_with_context_and_replay_to_success() {
    let app = TestApp::spawn().await;
    let inst = app
        .sim
        .add_instance(instance(46, vec![element(777, Some("r.txt"))]));
    // Storage fails every try of each of the host's five attempts (three tries per attempt).
    let tries = 5 * altinn_aos::ALTINN_ATTEMPTS;
    app.sim.inject(FaultRule {
        path_contains: format!("/instances/{}", inst.instance_id()),
        fault: Fault::Status(503),
        times: tries,
    });
    let event = app.sim.completed_event(&inst);
    assert_eq!(app.post_event(&event).await.status, 200);
    app.host
        .wait_until_idle(Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(
        app.host.poison_texts("events-inbound").await.unwrap().len(),
        1
    );

    let aos = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_aos"))
            .args(args)
            .current_dir(tempfile::tempdir().unwrap().path())
            .envs(app.settings_env())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "aos {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let listing = aos(&["poison", "list"]);
    assert!(listing.contains(event["id"].as_str().unwrap()), "{listing}");
    assert!(listing.contains(&inst.instance_id()), "{listing}");
    assert!(
        listing.contains("attempt 5") && listing.contains("503"),
        "the last error is shown: {listing}"
    );

    let replay = aos(&["poison", "replay", "--queue", "inbound", "--all"]);
    assert!(replay.contains("moved 1 message"), "{replay}");
    app.host
        .wait_until_idle(Duration::from_secs(30))
        .await
        .unwrap();
    app.assert_archived(&inst).await;
    assert!(app.confirmed(&inst));
    app.assert_no_poison().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn duplicates_make_one_archive_and_a_late_duplicate_is_cheap() {
    let app = TestApp::spawn().await;
    let inst = app.sim.add_instance(instance(
        47,
        vec![element(300_000, Some("a.pdf")), element(20, None)],
    ));
    let event = app.sim.completed_event(&inst);
    // At-least-once: the same event several times, and a second event for the same instance.
    for _ in 0..4 {
        assert_eq!(app.post_event(&event).await.status, 200);
    }
    assert_eq!(
        app.post_event(&app.sim.completed_event(&inst)).await.status,
        200
    );
    app.host
        .wait_until_idle(Duration::from_secs(60))
        .await
        .unwrap();
    app.assert_archived(&inst).await;
    assert!(app.confirmed(&inst));
    assert_eq!(app.sim.guard_violations(), Vec::<String>::new());
    app.assert_no_poison().await;
    for element in &inst.elements {
        let downloads = app
            .sim
            .calls()
            .iter()
            .filter(|c| c.path.ends_with(&element.id.to_string()))
            .count();
        assert!(
            downloads <= 5,
            "at most one download per delivery: {downloads}"
        );
    }

    // A duplicate after the instance is archived and confirmed: one instance read, nothing else.
    let before = app.sim.calls().len();
    assert_eq!(app.post_event(&event).await.status, 200);
    app.host
        .wait_until_idle(Duration::from_secs(30))
        .await
        .unwrap();
    let calls: Vec<String> = app.sim.calls()[before..]
        .iter()
        .map(|c| format!("{} {}", c.method, c.path))
        .collect();
    assert_eq!(
        calls,
        vec![format!(
            "GET /storage/api/v1/instances/{}",
            inst.instance_id()
        )],
        "a late duplicate costs one read"
    );
    assert!(
        app.host.invocations_of("EventsConfirmation").len() <= 5,
        "the late duplicate was not passed on"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn infected_elements_are_quarantined_and_pending_scans_wait() {
    let app = TestApp::spawn_with_retry_delay(Duration::from_secs(1)).await;
    let infected = app.sim.add_instance(instance(
        48,
        vec![
            element(4000, Some("virus.exe")),
            element(10, Some("ok.txt")),
        ],
    ));
    app.sim.tamper(
        infected.instance_guid,
        "/data/0/fileScanResult",
        json!("Infected"),
    );
    let pending = app
        .sim
        .add_instance(instance(49, vec![element(5000, Some("scan.pdf"))]));
    app.sim.tamper(
        pending.instance_guid,
        "/data/0/fileScanResult",
        json!("Pending"),
    );
    for inst in [&infected, &pending] {
        assert_eq!(
            app.post_event(&app.sim.completed_event(inst)).await.status,
            200
        );
    }
    // The pending element is not archived as final: the attempt fails and is retried.
    app.wait_for_a_failed_invocation(
        "EventsProcessor",
        "a failed attempt on the pending instance",
        Duration::from_secs(20),
    )
    .await;
    assert!(!app.confirmed(&pending));
    app.sim.tamper(
        pending.instance_guid,
        "/data/0/fileScanResult",
        json!("Clean"),
    );
    app.host
        .wait_until_idle(Duration::from_secs(60))
        .await
        .unwrap();

    app.assert_archived(&pending).await;
    assert!(app.confirmed(&pending) && app.confirmed(&infected));
    let paths = app.paths(&infected);
    let manifest = app.archive.manifest(&paths).await.unwrap().unwrap();
    let virus = &manifest
        .elements
        .iter()
        .find(|e| e.id == infected.elements[0].id)
        .unwrap();
    assert!(virus.quarantined);
    assert_eq!(virus.blob_name, paths.quarantine(infected.elements[0].id));
    assert_eq!(
        app.archive
            .blob_size(&paths.quarantine(infected.elements[0].id))
            .await
            .unwrap(),
        Some(4000)
    );
    assert_eq!(
        app.archive
            .blob_size(&paths.data(infected.elements[0].id))
            .await
            .unwrap(),
        None,
        "kept apart"
    );
    let clean = &manifest
        .elements
        .iter()
        .find(|e| e.id == infected.elements[1].id)
        .unwrap();
    assert!(!clean.quarantined && clean.blob_name == paths.data(infected.elements[1].id));
    app.assert_no_poison().await;
}

/// A copy of the Function App whose `host.json` has `functionTimeout` = `timeout`.
fn app_with_function_timeout(timeout: &str) -> tempfile::TempDir {
    let root = aos_testkit::app_root();
    let dir = tempfile::tempdir().unwrap();
    let host: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("host.json")).unwrap()).unwrap();
    let mut host = host;
    host["functionTimeout"] = serde_json::Value::String(timeout.into());
    std::fs::write(dir.path().join("host.json"), host.to_string()).unwrap();
    for function in altinn_aos::FUNCTIONS {
        std::fs::create_dir(dir.path().join(function)).unwrap();
        std::fs::copy(
            root.join(function).join("function.json"),
            dir.path().join(function).join("function.json"),
        )
        .unwrap();
    }
    dir
}

/// A step that cannot finish within the host's `functionTimeout` ends its invocation itself,
/// retryably, before the host would kill the handler (and every invocation running in it); the
/// next attempt resumes and completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_step_slower_than_function_timeout_fails_retryably_and_the_handler_lives_on() {
    let app_root = app_with_function_timeout("00:00:08");
    let app = TestApp::spawn_in(
        app_root.path().to_path_buf(),
        aos_testkit::world::Backends::start().await,
        Duration::from_secs(1),
        Vec::new(),
    )
    .await;
    let inst = app.sim.add_instance(instance(
        81_001,
        vec![
            element(2_000, Some("a.xml")),
            element(300_000, Some("b.pdf")),
        ],
    ));
    // The second element's download stalls for 20 s once: longer than functionTimeout.
    app.sim.inject(FaultRule {
        path_contains: format!("/data/{}", inst.elements[1].id),
        fault: Fault::Delay(Duration::from_secs(20)),
        times: 1,
    });
    let pid = app.host.handler_pid();
    assert_eq!(
        app.post_event(&app.sim.completed_event(&inst)).await.status,
        200
    );
    aos_testkit::poll_until(
        "the instance to be confirmed",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || async { Ok(app.confirmed(&inst).then_some(())) },
    )
    .await
    .unwrap();
    assert_eq!(app.host.restarts(), 0, "the host restarted the handler");
    assert_eq!(app.host.handler_pid(), pid);
    app.assert_archived(&inst).await;
    app.assert_no_poison().await;
}
