//! The feedback step (`EventsFeedback`) end to end under the Functions host harness: with
//! `XMLFeedbackDataType` + `XMLFeedbackEventType` set, a feedback element rendered from the
//! template is uploaded once per instance, before the instance is confirmed; unset, no upload
//! call is made and everything is still archived and confirmed.

mod support;

use std::time::Duration;

use altinn_aos::simulator::CreatedInstance;
use support::world::{Backends, TestApp, element, instance};

const COMPLETED: &str = "app.instance.process.completed";
const FEEDBACK_TYPE: &str = "archive-feedback";
const TEMPLATE: &str =
    "<Feedback instance=\"{instanceId}\" event=\"{eventId}\" archivedAt=\"{archivedAt}\"/>\n";

async fn spawn_with_feedback(event_type: &str) -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("feedback.xml");
    std::fs::write(&template, TEMPLATE).unwrap();
    let overrides = vec![
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

fn uploads_for(app: &TestApp, inst: &CreatedInstance) -> Vec<altinn_aos::simulator::DataUpload> {
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
