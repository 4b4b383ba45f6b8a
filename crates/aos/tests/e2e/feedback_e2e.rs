//! The feedback step (`EventsFeedback`) end to end under the Functions host harness: with
//! `XMLFeedbackDataType` + `XMLFeedbackEventType` set, a feedback element rendered from the
//! template is uploaded once per instance, before the instance is confirmed; unset, no upload
//! call is made and everything is still archived and confirmed.

use std::time::Duration;

use altinn_sim::{CreatedInstance, Fault, FaultRule};
use aos_testkit::poll_until;
use aos_testkit::standalone::Standalone;
use aos_testkit::world::{Backends, TestApp, element, instance};

const COMPLETED: &str = "app.instance.process.completed";
const FEEDBACK_TYPE: &str = "archive-feedback";
const TEMPLATE: &str =
    "<Feedback instance=\"{instanceId}\" event=\"{eventId}\" archivedAt=\"{archivedAt}\"/>\n";

/// The feedback settings for `event_type`, the template in a temporary directory.
fn feedback_settings(event_type: &str) -> (Vec<(String, String)>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("feedback.xml");
    std::fs::write(&template, TEMPLATE).unwrap();
    let settings = vec![
        (
            "AltinnApplicationOwnerSystemSettings__XMLFeedbackDataType".to_string(),
            FEEDBACK_TYPE.to_string(),
        ),
        (
            "AltinnApplicationOwnerSystemSettings__XMLFeedbackEventType".to_string(),
            event_type.to_string(),
        ),
        (
            "AltinnApplicationOwnerSystemSettings__XMLFeedbackTemplatePath".to_string(),
            template.display().to_string(),
        ),
    ];
    (settings, dir)
}

async fn spawn_with_feedback(event_type: &str) -> (TestApp, tempfile::TempDir) {
    let (overrides, dir) = feedback_settings(event_type);
    let app = TestApp::spawn_with(
        Backends::start().await,
        Duration::from_millis(200),
        overrides,
    )
    .await;
    (app, dir)
}

async fn drain(app: &TestApp) {
    app.host
        .wait_until_idle(Duration::from_secs(120))
        .await
        .expect("pipeline drains");
}

/// Index in the simulator's call log of the first call matching `method` and path suffix.
fn call_index(app: &TestApp, method: &str, suffix: &str) -> Option<usize> {
    app.sim
        .calls()
        .iter()
        .position(|c| c.method == method && c.path.ends_with(suffix) && c.status < 300)
}

async fn assert_no_feedback_poison(app: &TestApp) {
    let poisoned = app
        .azurite
        .queue_texts("events-feedback-poison")
        .await
        .unwrap_or_default();
    assert!(
        poisoned.is_empty(),
        "events-feedback-poison holds {poisoned:?}"
    );
}

fn uploads_for(app: &TestApp, inst: &CreatedInstance) -> Vec<altinn_sim::DataUpload> {
    let id = inst.instance_id();
    app.sim
        .uploads()
        .into_iter()
        .filter(|u| u.instance_id == id)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn feedback_is_uploaded_once_from_the_template_before_the_confirmation() {
    let (app, _dir) = spawn_with_feedback(COMPLETED).await;
    let inst = app.sim.add_instance(instance(
        71_001,
        vec![element(2048, Some("skjema.xml")), element(5, None)],
    ));
    let event = app.sim.completed_event(&inst);
    assert_eq!(app.post_event(&event).await.status, 200);
    drain(&app).await;

    app.assert_archived(&inst).await;
    assert!(app.confirmed(&inst), "instance confirmed");
    let uploads = uploads_for(&app, &inst);
    assert_eq!(uploads.len(), 1, "one feedback element: {uploads:?}");
    let manifest = app
        .archive
        .manifest(&app.paths(&inst))
        .await
        .unwrap()
        .expect("manifest");
    let expected = TEMPLATE
        .replace("{instanceId}", &inst.instance_id())
        .replace("{eventId}", event["id"].as_str().unwrap())
        .replace("{archivedAt}", &manifest.archived_at);
    assert_eq!(String::from_utf8_lossy(&uploads[0].body), expected);
    assert_eq!(uploads[0].data_type, FEEDBACK_TYPE);
    assert_eq!(uploads[0].content_type, "application/xml");
    // The manifest is the archive as it was: the feedback element came after it.
    assert_eq!(manifest.elements.len(), inst.elements.len());

    let uploaded = call_index(&app, "POST", &format!("{}/data", inst.instance_id()))
        .expect("upload call recorded");
    let completed = call_index(&app, "POST", &format!("{}/complete", inst.instance_id()))
        .expect("complete call recorded");
    assert!(
        uploaded < completed,
        "feedback uploaded before the confirmation"
    );

    // A duplicate event: no second feedback element, and still no failure.
    assert_eq!(
        app.post_event(&app.sim.completed_event(&inst)).await.status,
        200
    );
    drain(&app).await;
    assert_eq!(uploads_for(&app, &inst).len(), 1, "feedback uploaded once");
    assert_eq!(app.sim.guard_violations(), Vec::<String>::new());
    app.assert_no_poison().await;
    assert_no_feedback_poison(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn other_event_types_get_no_feedback() {
    let (app, _dir) = spawn_with_feedback("app.instance.process.movedTo").await;
    let inst = app
        .sim
        .add_instance(instance(71_002, vec![element(10, None)]));
    assert_eq!(
        app.post_event(&app.sim.completed_event(&inst)).await.status,
        200
    );
    drain(&app).await;
    app.assert_archived(&inst).await;
    assert!(app.confirmed(&inst), "instance confirmed");
    assert!(
        app.sim.uploads().is_empty(),
        "no feedback for a completed event"
    );
    app.assert_no_poison().await;
    assert_no_feedback_poison(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_feedback_settings_nothing_is_uploaded_and_queued_feedback_passes_through() {
    let app = TestApp::spawn().await;
    let inst = app
        .sim
        .add_instance(instance(71_003, vec![element(10, None)]));
    assert_eq!(
        app.post_event(&app.sim.completed_event(&inst)).await.status,
        200
    );
    drain(&app).await;
    app.assert_archived(&inst).await;
    assert!(app.confirmed(&inst), "instance confirmed");

    // A message already in `events-feedback` (e.g. queued before feedback was turned off) is
    // passed on to confirmation without an Altinn write.
    let confirmations_before = app.sim.confirmations().len();
    app.azurite
        .put_message(
            "events-feedback",
            &app.sim.completed_event(&inst).to_string(),
        )
        .await
        .unwrap();
    drain(&app).await;
    assert_eq!(app.sim.confirmations().len(), confirmations_before + 1);
    assert!(app.sim.uploads().is_empty(), "no upload with feedback off");
    assert!(
        !app.sim
            .calls()
            .iter()
            .any(|c| c.method == "POST" && c.path.ends_with("/data")),
        "no upload call with feedback off"
    );
    app.assert_no_poison().await;
    assert_no_feedback_poison(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redelivered_feedback_message_uploads_nothing_more() {
    let (app, _dir) = spawn_with_feedback(COMPLETED).await;
    let inst = app
        .sim
        .add_instance(instance(71_004, vec![element(700, Some("a.xml"))]));
    let event = app.sim.completed_event(&inst);
    assert_eq!(app.post_event(&event).await.status, 200);
    drain(&app).await;
    assert_eq!(uploads_for(&app, &inst).len(), 1);
    let confirmations = app.sim.confirmations().len();

    // The same message again on `events-feedback`, as after a crash between the upload and the
    // write of the confirmation message (the host then redelivers the feedback message): the
    // instance already holds the feedback element, so nothing is uploaded and the message is
    // passed on to confirmation.
    app.azurite
        .put_message("events-feedback", &event.to_string())
        .await
        .unwrap();
    drain(&app).await;
    assert_eq!(
        uploads_for(&app, &inst).len(),
        1,
        "a redelivered feedback message uploads no second element"
    );
    assert_eq!(app.sim.confirmations().len(), confirmations + 1);
    assert_eq!(app.sim.guard_violations(), Vec::<String>::new());
    app.assert_no_poison().await;
    assert_no_feedback_poison(&app).await;
}

/// A feedback run whose first upload Altinn holds for `upload_delay`, and a duplicate of the
/// event put on `events-feedback` `duplicate_after` the instance was archived: how many feedback
/// elements were uploaded once everything settled. Checks that the instance was confirmed and
/// nothing was poisoned.
async fn uploads_with_a_duplicate(
    party: u64,
    extra: &[(&str, &str)],
    retry_delay: Duration,
    upload_delay: Duration,
    duplicate_after: Duration,
) -> usize {
    let (mut overrides, _dir) = feedback_settings(COMPLETED);
    overrides.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let app = TestApp::spawn_with(Backends::start().await, retry_delay, overrides).await;
    // No elements: the only `/data` calls for this instance are feedback uploads.
    let inst = app.sim.add_instance(instance(party, vec![]));
    app.sim.inject(FaultRule {
        path_contains: format!("{}/data", inst.instance_id()),
        fault: Fault::Delay(upload_delay),
        times: 1,
    });
    let event = app.sim.completed_event(&inst);
    assert_eq!(app.post_event(&event).await.status, 200);
    let paths = app.paths(&inst);
    poll_until(
        "the instance to be archived",
        Duration::from_secs(30),
        Duration::from_millis(20),
        || async { Ok(app.archive.manifest(&paths).await?.map(|_| ())) },
    )
    .await
    .unwrap();
    tokio::time::sleep(duplicate_after).await;
    app.azurite
        .put_message("events-feedback", &event.to_string())
        .await
        .unwrap();
    drain(&app).await;
    assert!(app.confirmed(&inst));
    assert_eq!(app.sim.guard_violations(), Vec::<String>::new());
    app.assert_no_poison().await;
    assert_no_feedback_poison(&app).await;
    uploads_for(&app, &inst).len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_copies_of_a_feedback_message_at_once_upload_one_element() {
    // The first upload takes two seconds, so a duplicate runs while it is in flight; retries
    // one second apart, so the copy that waits is not poisoned meanwhile.
    let uploads = uploads_with_a_duplicate(
        71_006,
        &[],
        Duration::from_secs(1),
        Duration::from_secs(2),
        Duration::ZERO,
    )
    .await;
    assert_eq!(uploads, 1, "concurrent copies upload one feedback element");
}

/// An invocation that takes longer than its lease (a slow Altinn) keeps the lease: a copy that
/// arrives after the lease's first term finds it still taken, so there is still one element.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_feedback_invocation_slower_than_its_lease_keeps_it() {
    // The shortest lease Storage grants (15 s), a first upload of 22 s, a duplicate after 17 s;
    // retries 3 s apart, so the copy that waits for the lease (~5 s) is not poisoned meanwhile.
    let uploads = uploads_with_a_duplicate(
        71_007,
        &[("AOS_TEST_FEEDBACK_LEASE_SECS", "15")],
        Duration::from_secs(3),
        Duration::from_secs(22),
        Duration::from_secs(17),
    )
    .await;
    assert_eq!(
        uploads, 1,
        "a copy that came after the lease's first term uploaded a second element"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_standalone_runtime_uploads_feedback_once_then_confirms() {
    let backends = Backends::start().await;
    let (settings, _dir) = feedback_settings(COMPLETED);
    let extra: Vec<(&str, &str)> = settings
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let runtime = Standalone::start_with_env(&backends, &extra).await;
    let inst = backends
        .sim
        .add_instance(instance(71_005, vec![element(4096, Some("skjema.xml"))]));
    let event = backends.sim.completed_event(&inst);
    let (status, body) = runtime.post_event(&event).await;
    assert_eq!(status, 200, "{body}");

    let id = inst.instance_id();
    poll_until(
        "the instance to be confirmed",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || async {
            Ok(backends
                .sim
                .confirmations()
                .iter()
                .any(|c| c.instance_id == id)
                .then_some(()))
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", runtime.output().join("\n")));
    backends.assert_archived(&inst).await;
    let uploads: Vec<_> = backends
        .sim
        .uploads()
        .into_iter()
        .filter(|u| u.instance_id == id)
        .collect();
    assert_eq!(uploads.len(), 1, "one feedback element: {uploads:?}");
    assert_eq!(uploads[0].data_type, FEEDBACK_TYPE);
    let expected_start = format!(
        "<Feedback instance=\"{id}\" event=\"{}\"",
        event["id"].as_str().unwrap()
    );
    assert!(
        String::from_utf8_lossy(&uploads[0].body).starts_with(&expected_start),
        "{:?}",
        String::from_utf8_lossy(&uploads[0].body)
    );
    let calls = backends.sim.calls();
    let uploaded = calls
        .iter()
        .position(|c| c.method == "POST" && c.path.ends_with(&format!("{id}/data")))
        .expect("upload call");
    let completed = calls
        .iter()
        .position(|c| c.method == "POST" && c.path.ends_with(&format!("{id}/complete")))
        .expect("complete call");
    assert!(uploaded < completed, "feedback before the confirmation");
    assert_eq!(backends.sim.guard_violations(), Vec::<String>::new());
    backends.assert_no_poison().await;
    assert!(
        backends
            .azurite
            .queue_texts("events-feedback-poison")
            .await
            .unwrap_or_default()
            .is_empty()
    );
}
