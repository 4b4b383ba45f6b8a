//! No secret in any output (design 2.6): with a key-based storage connection (a known account
//! key), storage transport errors are provoked on every path — the webhook and the queue workers
//! of `aos run`, processing and confirmation under the Functions host harness, and the CLI
//! commands — and every byte the processes wrote (stdout, stderr, the host's `Logs`), every
//! record in `aos-state` and every queue message is scanned for the secrets the processes were
//! given: the account key, any `sig=` value, the webhook secret, the function key and the fixed
//! Altinn token.

use std::time::Duration;

use altinn_aos::storage::AZURITE_KEY;
use aos_testkit::blobs::Blobs;
use aos_testkit::cli::run_aos;
use aos_testkit::standalone::{Standalone, WEBHOOK_SECRET};
use aos_testkit::world::{Backends, TOKEN, TestApp, element, instance};

/// The function key the host harness sends with webhook calls (`?code=`).
const FUNCTION_KEY: &str = "test-function-key";

/// Every secret the processes were given, and the markers of an issued SAS (a signature that is
/// not masked, and the rest of it: the permissions it grants).
fn secrets() -> [&'static str; 6] {
    [
        AZURITE_KEY,
        "sig=",
        "sp=rwdl",
        WEBHOOK_SECRET,
        FUNCTION_KEY,
        TOKEN,
    ]
}

/// Debug logs, as an operator chasing an outage turns them on: the SDK's request lines too.
const DEBUG_LOGS: (&str, &str) = ("AOS_LOG", "debug");

/// Panics naming the first secret found in `text` (from `what`), with the line it is on.
fn assert_clean(what: &str, text: &str) {
    for secret in secrets() {
        let unmasked = text
            .match_indices(secret)
            .map(|(at, _)| at)
            .find(|&at| secret != "sig=" || !text[at + secret.len()..].starts_with("REDACTED"));
        if let Some(at) = unmasked {
            let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
            let end = text[at..].find('\n').map_or(text.len(), |i| at + i);
            panic!("{what} leaks `{secret}`: {}", &text[start..end]);
        }
    }
}

/// A port nothing listens on (bound once, then released).
fn closed_port() -> u16 {
    aos_testkit::free_port().expect("a free port")
}

/// Every blob in `aos-state` and every message of the system's queues, once storage is back.
async fn assert_storage_clean(backends: &Backends) {
    let blobs = Blobs::new(&backends.azurite.connection_string()).unwrap();
    for listed in blobs.list("aos-state").await.unwrap() {
        let bytes = blobs.read("aos-state", &listed.name).await.unwrap();
        let text = String::from_utf8_lossy(&bytes.unwrap_or_default()).into_owned();
        assert_clean(&format!("aos-state/{}", listed.name), &text);
    }
    for queue in [
        "events-inbound",
        "events-confirmation",
        "events-feedback",
        "events-inbound-poison",
        "events-confirmation-poison",
        "events-feedback-poison",
    ] {
        let raw = backends.azurite.queues().peek_raw(queue).await;
        assert_clean(queue, &format!("{raw:?}"));
        let texts = backends.azurite.queue_texts(queue).await;
        assert_clean(queue, &format!("{texts:?}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cli_commands_with_storage_unreachable_print_no_secret() {
    let mut backends = Backends::start().await;
    backends
        .sim
        .add_instance(instance(81_000, vec![element(100, Some("a.pdf"))]));
    let mut env = backends.settings_env();
    env.push((
        "AltinnApplicationOwnerSystemSettings__Org".into(),
        "ttd".into(),
    ));
    env.push((DEBUG_LOGS.0.into(), DEBUG_LOGS.1.into()));
    backends.azurite.stop().await.unwrap();

    let commands: [&[&str]; 8] = [
        &["status"],
        &["status", "--json"],
        &["poison", "list"],
        &["poison", "replay", "--queue", "inbound", "--all"],
        &["reconcile"],
        &["subscriptions", "list"],
        &["check-config"],
        &["catch-up"],
    ];
    let mut failed = 0;
    for args in commands {
        let out = run_aos(&env, args).await;
        failed += usize::from(out.code != 0);
        let what = format!("aos {}", args.join(" "));
        assert_clean(&format!("{what} (stderr)"), &out.stderr);
        assert_clean(&format!("{what} (stdout)"), &out.stdout);
    }
    assert!(
        failed >= 3,
        "storage was unreachable, yet only {failed} failed"
    );

    backends.azurite.restart().await.unwrap();
    assert_storage_clean(&backends).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn aos_run_with_storage_down_writes_no_secret() {
    let mut backends = Backends::start().await;
    let runtime = Standalone::start_with_env(&backends, &[DEBUG_LOGS]).await;
    let inst = backends
        .sim
        .add_instance(instance(82_000, vec![element(100, Some("a.pdf"))]));
    let event = backends.sim.completed_event(&inst);
    backends.azurite.stop().await.unwrap();

    // The webhook cannot queue: it must fail, and say why without the SAS.
    let (status, body) = runtime.post_event(&event).await;
    assert!(status >= 500, "{status} {body}");
    assert_clean("the webhook's answer", &body);
    // The queue workers poll a dead account for a while.
    tokio::time::sleep(Duration::from_secs(4)).await;
    backends.azurite.restart().await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;

    assert_clean("aos run output", &runtime.output().join("\n"));
    assert_storage_clean(&backends).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn processing_and_confirmation_under_the_host_with_blob_storage_unreachable_log_no_secret() {
    let backends = Backends::start().await;
    let inst = backends
        .sim
        .add_instance(instance(83_000, vec![element(100, Some("a.pdf"))]));
    let event = backends.sim.completed_event(&inst);
    // Queues work (the host needs them); the archive's account is a closed port.
    let dead = format!("http://127.0.0.1:{}/devstoreaccount1", closed_port());
    let app = TestApp::spawn_with(
        backends,
        Duration::from_millis(200),
        vec![
            (
                "AltinnApplicationOwnerSystemSettings__BlobEndpoint".into(),
                dead,
            ),
            (DEBUG_LOGS.0.into(), DEBUG_LOGS.1.into()),
        ],
    )
    .await;
    let response = app.post_event(&event).await;
    assert_clean("the webhook's answer", &response.body_text());
    app.backends
        .azurite
        .put_message("events-confirmation", &event.to_string())
        .await
        .unwrap();
    app.host
        .wait_until_idle(Duration::from_secs(40))
        .await
        .unwrap();

    let invocations = app.host.invocations();
    assert!(
        invocations.iter().any(|r| !r.succeeded),
        "storage was unreachable, yet nothing failed: {invocations:?}"
    );
    for record in &invocations {
        assert_clean(
            &format!("{} invocation", record.function),
            &format!("{:?} {:?} {}", record.logs, record.error, record.outputs),
        );
    }
    assert_clean("handler output", &app.host.handler_output().join("\n"));
    assert_clean("host events", &app.host.host_events().join("\n"));
    assert_storage_clean(&app.backends).await;
}
