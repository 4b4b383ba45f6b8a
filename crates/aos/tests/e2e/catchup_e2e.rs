//! Catch-up from the Altinn Events pull API end to end: events whose push was dead-lettered are
//! pulled by `aos catch-up` (a separate process) or by the `EventsReconciler` timer (with
//! `EventsCatchUp=true`) under the host harness, queued, archived and confirmed; the cursor in
//! `aos-state` moves only past queued pages and makes the next run start after it; the
//! simulator's hold-back hides fresh events; a pulled event with a foreign source is refused and
//! never fetched; a `next` link to another host is never followed with the token.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use altinn_aos::Pipeline;
use altinn_aos::archive::{Archive, BlobInfo};
use altinn_aos::config::{SettingSource, Settings};
use altinn_aos::{CatchUpOptions, EventSink};
use altinn_sim::CreatedInstance;
use aos_testkit::world::{Backends, TestApp, element, instance};
use bytes::Bytes;
use serde_json::{Value, json};

const APPS_SETTING: &str = "AltinnApplicationOwnerSystemSettings__ReconcileApps";
const CURSOR: &str = "events-cursor/ttd/test-app.json";
const PULL_PATH: &str = "/events/api/v1/app/ttd/test-app";
const COMPLETED: &str = "app.instance.process.completed";
const DRAIN: Duration = Duration::from_secs(120);

/// A world for `ttd/test-app` whose simulator serves events at once (no hold-back).
async fn spawn(extra: &[(&str, &str)]) -> (TestApp, Vec<(String, String)>) {
    let backends = Backends::start().await;
    backends.sim.set_events_hold_back(Duration::ZERO);
    let mut env = backends.settings_env();
    env.push((
        "AltinnApplicationOwnerSystemSettings__Org".into(),
        "ttd".into(),
    ));
    env.push((APPS_SETTING.into(), "ttd/test-app".into()));
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let app = TestApp::spawn_with(backends, Duration::from_millis(200), env.clone()).await;
    (app, env)
}

/// `aos catch-up <args>` as its own process; (exit code, stdout, stderr).
async fn aos_catch_up(env: &[(String, String)], args: &[&str]) -> (i32, String, String) {
    let out = aos_testkit::cli::run_aos(env, &[&["catch-up"], args].concat()).await;
    (out.code, out.stdout, out.stderr)
}

fn line<'a>(stdout: &'a str, prefix: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no `{prefix}` line in {stdout}"))
}

fn summary(stdout: &str) -> &str {
    line(stdout, "catch-up summary:")
}

fn state(app: &Backends) -> Archive {
    Archive::new(app.blobs.clone(), "aos-state")
}

async fn cursor(app: &Backends) -> Option<Value> {
    state(app)
        .read_small(CURSOR)
        .await
        .unwrap()
        .map(|b| serde_json::from_slice(&b).unwrap())
}

async fn assert_done(app: &TestApp, created: &[CreatedInstance]) {
    for inst in created {
        app.assert_archived(inst).await;
        assert!(app.confirmed(inst), "{} not confirmed", inst.instance_id());
    }
    assert_eq!(app.sim.guard_violations(), Vec::<String>::new());
    app.assert_no_poison().await;
}

fn pulls(app: &TestApp) -> Vec<altinn_sim::RecordedCall> {
    app.sim
        .calls()
        .into_iter()
        .filter(|c| c.path == PULL_PATH)
        .collect()
}

/// A webhook that validates subscriptions and answers every other push 503, and the
/// subscription of `ttd/test-app` to it: every event's push is dead-lettered.
async fn subscribe_failing_webhook(app: &TestApp) -> u64 {
    use axum::routing::post;
    let router = axum::Router::new().route(
        "/api/EventsReceiver",
        post(|body: Bytes| async move {
            if String::from_utf8_lossy(&body).contains("platform.events.validatesubscription") {
                axum::http::StatusCode::OK
            } else {
                axum::http::StatusCode::SERVICE_UNAVAILABLE
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    app.sim
        .set_push_retry_schedule(vec![Duration::from_millis(10), Duration::from_millis(10)]);
    let id = app
        .sim
        .add_subscription(
            &format!("http://{addr}/api/EventsReceiver"),
            &format!("{}ttd/test-app", app.sim.base_url()),
            Some(COMPLETED),
        )
        .unwrap();
    assert!(app.sim.wait_for_deliveries_idle(DRAIN).await);
    id
}

/// Requests a foreign host saw: (URI, Authorization header).
type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// A server standing for another host: records every request (path and Authorization
/// header) and answers `[]`.
async fn foreign_host() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let record = seen.clone();
    let router = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let record = record.clone();
        async move {
            let auth = req
                .headers()
                .get("authorization")
                .map(|v| v.to_str().unwrap_or("?").to_string());
            record.lock().unwrap().push((req.uri().to_string(), auth));
            ([("content-type", "application/json")], "[]")
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (format!("http://{addr}/"), seen)
}

fn complete(app: &TestApp, party_id: u64) -> CreatedInstance {
    app.sim.complete_instance(instance(
        party_id,
        vec![element(1500 + party_id % 100, Some("form.xml"))],
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dead_lettered_events_are_caught_up_across_pages_and_the_cursor_makes_the_next_run_start_after_them()
 {
    let (app, env) = spawn(&[]).await;
    let subscription = subscribe_failing_webhook(&app).await;
    let lost: Vec<_> = (0..3).map(|i| complete(&app, 80_000 + i)).collect();
    let other_app = app.sim.complete_instance(altinn_sim::InstanceSpec {
        app: "other-app".into(),
        ..instance(80_100, vec![element(10, None)])
    });
    assert!(app.sim.wait_for_deliveries_idle(DRAIN).await);
    let dead = app
        .sim
        .dead_letters()
        .iter()
        .filter(|(id, _)| *id == subscription)
        .count();
    assert_eq!(dead, 3, "every push of test-app was dead-lettered");

    // A dry run names what it would queue and moves no cursor.
    let (code, stdout, stderr) = aos_catch_up(&env, &["--dry-run", "--page-size", "2"]).await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(stdout.matches("would queue ").count(), 3, "{stdout}");
    assert!(summary(&stdout).contains("queued 0"), "{stdout}");
    assert!(cursor(&app).await.is_none(), "a dry run writes no cursor");
    app.host.wait_until_idle(DRAIN).await.unwrap();
    assert!(lost.iter().all(|i| !app.confirmed(i)), "a dry run queued");

    // Pages of 2: [2], [1], [] — following `next` to the end.
    let before = pulls(&app).len();
    let (code, stdout, stderr) = aos_catch_up(&env, &["--page-size", "2"]).await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        summary(&stdout).starts_with(
            "catch-up summary: apps 1, pages 3, events seen 3, queued 3, skipped 0, failed 0"
        ),
        "{stdout}"
    );
    assert!(
        line(&stdout, "catch-up ttd/test-app:").contains("cursor (none) -> "),
        "{stdout}"
    );
    let calls = pulls(&app);
    assert_eq!(calls.len() - before, 3, "three page requests");
    assert!(calls.iter().all(|c| c.authorized && c.status == 200));
    let feed = app.sim.feed_events();
    let last_id = feed
        .iter()
        .rfind(|e| e["source"].as_str().unwrap().contains("/ttd/test-app/"))
        .unwrap()["id"]
        .clone();
    let stored = cursor(&app).await.expect("the cursor is written");
    assert_eq!(stored["after"], last_id, "{stored}");
    assert!(stored["time"].is_string(), "{stored}");

    app.host.wait_until_idle(DRAIN).await.unwrap();
    assert_done(&app, &lost).await;
    assert!(
        !app.confirmed(&other_app),
        "an app outside ReconcileApps is not pulled"
    );

    // The next run starts after the cursor: nothing new, nothing queued, cursor unchanged.
    let (code, stdout, _) = aos_catch_up(&env, &[]).await;
    assert_eq!(code, 0);
    assert!(
        summary(&stdout).starts_with(
            "catch-up summary: apps 1, pages 1, events seen 0, queued 0, skipped 0, failed 0"
        ),
        "{stdout}"
    );
    assert_eq!(cursor(&app).await.unwrap()["after"], last_id);

    // One more lost event: only it is queued, and the cursor moves to it.
    let late = complete(&app, 80_010);
    assert!(app.sim.wait_for_deliveries_idle(DRAIN).await);
    let (code, stdout, _) = aos_catch_up(&env, &[]).await;
    assert_eq!(code, 0);
    assert!(
        summary(&stdout).contains("events seen 1, queued 1,"),
        "{stdout}"
    );
    assert_ne!(cursor(&app).await.unwrap()["after"], last_id);
    app.host.wait_until_idle(DRAIN).await.unwrap();
    assert_done(&app, std::slice::from_ref(&late)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_inside_the_hold_back_are_seen_only_once_it_has_passed() {
    let (app, env) = spawn(&[]).await;
    app.sim.set_events_hold_back(Duration::from_secs(3));
    let inst = complete(&app, 81_000);

    let (code, stdout, stderr) = aos_catch_up(&env, &[]).await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        summary(&stdout).contains("events seen 0, queued 0"),
        "{stdout}"
    );
    assert!(cursor(&app).await.is_none(), "nothing seen, no cursor");

    tokio::time::sleep(Duration::from_millis(3200)).await;
    let (code, stdout, _) = aos_catch_up(&env, &[]).await;
    assert_eq!(code, 0);
    assert!(
        summary(&stdout).contains("events seen 1, queued 1"),
        "{stdout}"
    );
    app.host.wait_until_idle(DRAIN).await.unwrap();
    assert_done(&app, &[inst]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pulled_event_with_a_foreign_source_is_refused_and_never_fetched() {
    let (app, env) = spawn(&[]).await;
    let (foreign, foreign_calls) = foreign_host().await;
    // An instance the simulator knows, announced with a source on another host.
    let target = app
        .sim
        .add_instance(instance(82_000, vec![element(5, None)]));
    let mut forged = app.sim.completed_event(&target);
    let source = forged["source"]
        .as_str()
        .unwrap()
        .replace(app.sim.base_url().as_str(), &foreign);
    forged["source"] = json!(source);
    app.sim.publish(forged.clone());
    let good = complete(&app, 82_001);

    let (code, stdout, stderr) = aos_catch_up(&env, &[]).await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        summary(&stdout).contains("events seen 2, queued 1, skipped 1"),
        "{stdout}"
    );
    assert!(
        line(&stdout, "refused:").contains(forged["id"].as_str().unwrap())
            && stdout.contains("not on the configured app host"),
        "{stdout}"
    );
    app.host.wait_until_idle(DRAIN).await.unwrap();
    assert_done(&app, &[good]).await;
    assert!(!app.confirmed(&target));
    let guid = target.instance_guid.to_string();
    assert!(
        app.sim.calls().iter().all(|c| !c.path.contains(&guid)),
        "the refused event's instance was never fetched"
    );
    assert!(foreign_calls.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_token_never_follows_a_next_link_to_another_host() {
    let (app, env) = spawn(&[]).await;
    let (foreign, foreign_calls) = foreign_host().await;
    app.sim
        .set_events_next_base(Some(url::Url::parse(&foreign).unwrap()));
    let lost: Vec<_> = (0..2).map(|i| complete(&app, 83_000 + i)).collect();

    let (code, stdout, stderr) = aos_catch_up(&env, &["--page-size", "1"]).await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        summary(&stdout).contains("pages 3, events seen 2, queued 2"),
        "{stdout}"
    );
    assert_eq!(
        foreign_calls.lock().unwrap().clone(),
        Vec::<(String, Option<String>)>::new(),
        "nothing was sent to the host in `next`"
    );
    assert_eq!(pulls(&app).len(), 3, "every page came from the platform");
    app.host.wait_until_idle(DRAIN).await.unwrap();
    assert_done(&app, &lost).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_timer_catches_up_only_when_events_catch_up_is_on() {
    let (app, _) = spawn(&[(
        "AltinnApplicationOwnerSystemSettings__EventsCatchUp",
        "true",
    )])
    .await;
    let lost = complete(&app, 84_000);

    let run = app.host.invoke_timer("EventsReconciler").await.unwrap();
    assert!(run.succeeded, "{:?}", run.error);
    let caught_up = run
        .logs
        .iter()
        .find(|l| l.starts_with("catch-up summary:"))
        .unwrap_or_else(|| panic!("no catch-up summary in {:?}", run.logs));
    assert!(caught_up.contains("events seen 1, queued 1"), "{caught_up}");
    assert!(
        run.logs
            .last()
            .is_some_and(|l| l.starts_with("reconcile summary:")),
        "{:?}",
        run.logs
    );
    assert!(cursor(&app).await.is_some(), "the timer wrote the cursor");
    app.host.wait_until_idle(DRAIN).await.unwrap();
    assert_done(&app, &[lost]).await;
    let pulled = pulls(&app).len();

    // Off (the default): the timer reconciles and never touches the pull API.
    let (off, _) = spawn(&[]).await;
    complete(&off, 84_001);
    let run = off.host.invoke_timer("EventsReconciler").await.unwrap();
    assert!(run.succeeded, "{:?}", run.error);
    assert!(
        run.logs.iter().all(|l| !l.starts_with("catch-up")),
        "{:?}",
        run.logs
    );
    assert!(pulls(&off).is_empty());
    assert_eq!(pulls(&app).len(), pulled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cursor_unknown_to_the_feed_restarts_it_with_a_warning() {
    let (app, env) = spawn(&[]).await;
    let inst = complete(&app, 85_000);
    // A cursor naming an event the feed does not have (purged), from after every event.
    let future = time::OffsetDateTime::now_utc() + time::Duration::hours(3);
    let stale = json!({
        "after": uuid::Uuid::new_v4().to_string(),
        "time": future.format(&time::format_description::well_known::Rfc3339).unwrap(),
    });
    let info = BlobInfo {
        content_type: "application/json".into(),
        metadata: Default::default(),
    };
    state(&app)
        .put(CURSOR, Bytes::from(stale.to_string()), &info)
        .await
        .unwrap();

    let (code, stdout, stderr) = aos_catch_up(&env, &[]).await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        line(&stdout, "warning:").contains("restarted from the beginning"),
        "{stdout}"
    );
    assert!(summary(&stdout).contains("queued 1"), "{stdout}");
    app.host.wait_until_idle(DRAIN).await.unwrap();
    assert_done(&app, &[inst]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cursor_writes_are_conditional_so_a_concurrent_run_cannot_move_it_back() {
    let backends = Backends::start().await;
    let state = Archive::new(backends.blobs.clone(), "aos-state");
    let info = BlobInfo {
        content_type: "application/json".into(),
        metadata: Default::default(),
    };
    let put = |body: &'static str, etag: Option<String>| {
        let state = state.clone();
        let info = info.clone();
        async move {
            state
                .put_if(CURSOR, Bytes::from(body), &info, etag.as_deref())
                .await
                .unwrap()
        }
    };
    assert!(put(r#"{"after":"1"}"#, None).await, "created");
    assert!(!put(r#"{"after":"0"}"#, None).await, "exists already");
    let (_, first) = state.read_tagged(CURSOR).await.unwrap().unwrap();
    assert!(put(r#"{"after":"2"}"#, Some(first.clone())).await);
    // A run that read the cursor before the write above must not overwrite it.
    assert!(!put(r#"{"after":"1"}"#, Some(first)).await);
    let (body, _) = state.read_tagged(CURSOR).await.unwrap().unwrap();
    assert_eq!(&body[..], br#"{"after":"2"}"#);
}

/// Stores events in memory and fails from the `fail_at`-th one on (1-based).
struct FlakySink {
    fail_at: usize,
    sent: Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl EventSink for FlakySink {
    async fn send(&self, event: &altinn_aos::domain::CloudEvent) -> anyhow::Result<()> {
        let mut sent = self.sent.lock().unwrap();
        if sent.len() + 1 >= self.fail_at {
            anyhow::bail!("queue unavailable");
        }
        sent.push(event.id().to_string());
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_page_not_queued_whole_leaves_the_cursor_where_it_was() {
    let backends = Backends::start().await;
    backends.sim.set_events_hold_back(Duration::ZERO);
    let mut env = backends.settings_env();
    env.push((APPS_SETTING.into(), "ttd/test-app".into()));
    let settings = Settings::from_source(&SettingSource::from_pairs(env)).unwrap();
    let pipeline = Pipeline::from_settings(settings).await.unwrap();
    let ids: Vec<String> = (0..3)
        .map(|i| {
            backends
                .sim
                .complete_instance(instance(86_000 + i, vec![element(5, None)]));
            backends.sim.feed_events().last().unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let options = CatchUpOptions {
        first_from: time::OffsetDateTime::now_utc() - time::Duration::hours(1),
        page_size: 2,
        max_events: 100,
    };
    let mut progress = |_: String| {};

    // The second event of the first page cannot be queued: the app stops, no cursor.
    let flaky = FlakySink {
        fail_at: 2,
        sent: Mutex::default(),
    };
    let run = pipeline
        .catch_up(&options, Some(&flaky), &mut progress)
        .await
        .unwrap();
    assert_eq!(run.failed(), 1, "{run}");
    assert_eq!(*flaky.sent.lock().unwrap(), ids[..1].to_vec());
    assert!(
        cursor(&backends).await.is_none(),
        "no cursor past an unqueued event"
    );

    // The first page queued, the second fails: the cursor is at the end of the first page.
    let flaky = FlakySink {
        fail_at: 3,
        sent: Mutex::default(),
    };
    let run = pipeline
        .catch_up(&options, Some(&flaky), &mut progress)
        .await
        .unwrap();
    assert_eq!(run.failed(), 1, "{run}");
    assert_eq!(cursor(&backends).await.unwrap()["after"], ids[1]);

    // Working again: the run continues after the cursor, with the unqueued event.
    let working = FlakySink {
        fail_at: usize::MAX,
        sent: Mutex::default(),
    };
    let run = pipeline
        .catch_up(&options, Some(&working), &mut progress)
        .await
        .unwrap();
    assert_eq!(run.failed(), 0, "{run}");
    assert_eq!(*working.sent.lock().unwrap(), ids[2..].to_vec());
    assert_eq!(cursor(&backends).await.unwrap()["after"], ids[2]);
}
