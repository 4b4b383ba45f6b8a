//! `aos status` end to end: one screen (or `--json`) of the whole system's state, and an exit
//! code a script or a probe can act on — 0 healthy, 1 degraded, 3 broken, 2 bad settings.

use altinn_aos::archive::{Archive, BlobInfo};
use aos_testkit::auth::{CERT_PASSWORD, CERT_PATH, CLIENT_ID, PASSWORD, Pki, SCOPES, write};
use aos_testkit::cli::run_aos;
use aos_testkit::world::{ARCHIVE_CONTAINER, Backends, element, instance};
use p12_keystore::EncryptionAlgorithm;
use serde_json::Value;

fn json(out: &str) -> Value {
    serde_json::from_str(out)
        .unwrap_or_else(|e| panic!("`aos status --json` prints JSON ({e}):\n{out}"))
}

fn queue<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["queues"]
        .as_array()
        .expect("queues")
        .iter()
        .find(|q| q["name"] == name)
        .unwrap_or_else(|| panic!("queue {name} in {status:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fresh_stack_is_healthy_and_the_probe_leaves_nothing_in_the_archive() {
    let backends = Backends::start().await;
    let env = backends.settings_env();

    // Before the first archive (or the templates) created the archive container: shown, not
    // created by looking, and not a problem.
    let out = run_aos(&env, &["status", "--json"]).await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let status = json(&out.stdout);
    assert_eq!(status["archive"]["exists"], false, "{status:#}");
    let archive = Archive::new(backends.blobs.clone(), ARCHIVE_CONTAINER);
    assert!(
        !archive.container_exists().await.unwrap(),
        "status created the archive container"
    );
    backends
        .azurite
        .create_container(ARCHIVE_CONTAINER)
        .await
        .unwrap();

    let text = run_aos(&env, &["status"]).await;
    assert_eq!(text.code, 0, "{}\n{}", text.stdout, text.stderr);
    assert_eq!(
        text.stdout.lines().next(),
        Some("aos status: healthy"),
        "{}",
        text.stdout
    );
    for line in ["events-inbound", "events-inbound-poison", "archive", "key"] {
        assert!(text.stdout.contains(line), "`{line}` in:\n{}", text.stdout);
    }

    let out = run_aos(&env, &["status", "--json"]).await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let status = json(&out.stdout);
    assert_eq!(status["status"], "healthy", "{status:#}");
    assert_eq!(status["problems"].as_array().map(Vec::len), Some(0));
    assert_eq!(status["archive"]["reachable"], true, "{status:#}");
    assert_eq!(status["archive"]["writable"], true, "{status:#}");
    for name in [
        "events-inbound",
        "events-confirmation",
        "events-feedback",
        "events-inbound-poison",
        "events-confirmation-poison",
        "events-feedback-poison",
        "webjobs-blobtrigger-poison",
    ] {
        assert_eq!(queue(&status, name)["messages"], 0, "{status:#}");
    }
    assert_eq!(status["key"]["status"], "ok", "{status:#}");
    assert!(status["subscriptions"]["items"].is_array(), "{status:#}");

    let left = backends.archive.list("").await.expect("archive listing");
    assert!(left.is_empty(), "the write probe left {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_poisoned_message_makes_it_degraded() {
    let backends = Backends::start().await;
    let event = r#"{"id":"00000000-0000-4000-8000-000000000001","specversion":"1.0","type":"app.instance.process.completed","source":"http://127.0.0.1:1/ttd/test-app/instances/1001/6b3323c8-7baf-4612-b8a6-000000000001"}"#;
    backends
        .azurite
        .put_message("events-inbound-poison", event)
        .await
        .unwrap();
    backends
        .azurite
        .put_message("events-inbound", event)
        .await
        .unwrap();
    let env = backends.settings_env();

    let out = run_aos(&env, &["status", "--json"]).await;
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    let status = json(&out.stdout);
    assert_eq!(status["status"], "degraded", "{status:#}");
    assert_eq!(queue(&status, "events-inbound-poison")["messages"], 1);
    assert_eq!(queue(&status, "events-inbound")["messages"], 1);
    let problems = status["problems"].to_string();
    assert!(
        problems.contains("events-inbound-poison") && problems.contains("aos poison list"),
        "{problems}"
    );

    let text = run_aos(&env, &["status"]).await;
    assert_eq!(text.code, 1);
    assert_eq!(text.stdout.lines().next(), Some("aos status: degraded"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn storage_that_cannot_be_reached_is_broken_exit_3_in_one_screen() {
    let backends = Backends::start().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let down = format!("http://127.0.0.1:{port}/devstoreaccount1");
    let (blob, queue_endpoint) = (
        backends.azurite.blob_endpoint(),
        backends.azurite.queue_endpoint(),
    );
    let env: Vec<(String, String)> = backends
        .settings_env()
        .into_iter()
        .map(|(name, value)| {
            let value = value.replace(&blob, &down).replace(&queue_endpoint, &down);
            (name, value)
        })
        .collect();

    let out = run_aos(&env, &["status", "--json"]).await;
    assert_eq!(out.code, 3, "{}\n{}", out.stdout, out.stderr);
    let status = json(&out.stdout);
    assert_eq!(status["status"], "broken", "{status:#}");
    assert_eq!(status["archive"]["reachable"], false, "{status:#}");
    assert_eq!(queue(&status, "events-inbound")["messages"], Value::Null);
    let problems = status["problems"].to_string();
    assert!(problems.contains("archive"), "{problems}");
    assert!(
        !out.stdout.contains(altinn_aos::storage::AZURITE_KEY),
        "no secret in the report"
    );

    let text = run_aos(&env, &["status"]).await;
    assert_eq!(text.code, 3);
    assert_eq!(text.stdout.lines().next(), Some("aos status: broken"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_certificate_that_expires_within_30_days_makes_it_degraded() {
    let backends = Backends::start().await;
    let now = time::OffsetDateTime::now_utc();
    let pki = Pki::with_leaf_validity(
        now - time::Duration::days(1),
        now + time::Duration::days(10),
    );
    backends
        .sim
        .register_client(CLIENT_ID, pki.client_key(), &SCOPES);
    let dir = tempfile::tempdir().unwrap();
    let p12 = write(
        dir.path(),
        "client.p12",
        &pki.pkcs12(PASSWORD, EncryptionAlgorithm::PbeWithShaAnd3KeyTripleDesCbc),
    );
    let mut env: Vec<(String, String)> = backends
        .settings_env()
        .into_iter()
        .filter(|(name, _)| !name.ends_with("__AltinnToken"))
        .collect();
    for (name, value) in [
        (
            "AltinnApplicationOwnerSystemSettings__MaskinportenBaseAddress",
            backends.sim.maskinporten_url().to_string(),
        ),
        (
            "AltinnApplicationOwnerSystemSettings__MaskinPortenClientId",
            CLIENT_ID.to_string(),
        ),
        (CERT_PATH, p12.to_str().unwrap().to_string()),
        (CERT_PASSWORD, PASSWORD.to_string()),
    ] {
        env.push((name.to_string(), value));
    }

    let out = run_aos(&env, &["status", "--json"]).await;
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    let status = json(&out.stdout);
    assert_eq!(status["status"], "degraded", "{status:#}");
    assert_eq!(status["key"]["status"], "ok", "{status:#}");
    assert_eq!(status["key"]["certificate"]["daysLeft"], 9, "{status:#}");
    assert!(
        status["problems"]
            .to_string()
            .contains("certificate expires in 9 days"),
        "{status:#}"
    );
    assert!(!out.stdout.contains(PASSWORD), "no secret in the report");
}

#[tokio::test]
async fn missing_settings_are_exit_2_all_named_at_once() {
    let out = run_aos(&[], &["status"]).await;
    assert_eq!(out.code, 2, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("BlobEndpoint"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_reconcilers_last_run_and_a_hold_are_shown_and_a_hold_degrades() {
    let backends = Backends::start().await;
    backends
        .sim
        .add_instance(instance(92_000, vec![element(64, Some("form.xml"))]));
    let mut env = backends.settings_env();
    env.push((
        "AltinnApplicationOwnerSystemSettings__ReconcileApps".into(),
        "ttd/test-app".into(),
    ));

    let dry = run_aos(&env, &["reconcile", "--dry-run"]).await;
    assert_eq!(dry.code, 0, "{}\n{}", dry.stdout, dry.stderr);
    let status = json(&run_aos(&env, &["status", "--json"]).await.stdout);
    assert_eq!(
        status["lastReconcile"],
        Value::Null,
        "a dry run records nothing"
    );

    let run = run_aos(&env, &["reconcile"]).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let out = run_aos(&env, &["status", "--json"]).await;
    let status = json(&out.stdout);
    let last = &status["lastReconcile"];
    assert_eq!(last["by"], "aos reconcile", "{status:#}");
    assert_eq!(last["found"], 1, "{status:#}");
    assert_eq!(last["queued"], 1, "{status:#}");
    assert!(
        last["at"].as_str().is_some_and(|t| t.starts_with("20")),
        "{status:#}"
    );
    let text = run_aos(&env, &["status"]).await;
    assert!(
        text.stdout
            .contains("by aos reconcile: found 1, already confirmed 0, queued 1"),
        "{}",
        text.stdout
    );

    // A permanent failure's hold (as the last attempt writes it) makes it degraded.
    Archive::new(backends.blobs.clone(), "aos-state")
        .put(
            "holds/ttd/test-app/92000/6b3323c8-7baf-4612-b8a6-000000000001.json",
            bytes::Bytes::from_static(br#"{"event":"x"}"#),
            &BlobInfo {
                content_type: "application/json".into(),
                metadata: Default::default(),
            },
        )
        .await
        .unwrap();
    let out = run_aos(&env, &["status", "--json"]).await;
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    let status = json(&out.stdout);
    assert_eq!(status["holds"], 1, "{status:#}");
    assert!(
        status["problems"]
            .to_string()
            .contains("held after a permanent failure")
    );
}
