//! `aos subscriptions` as a process against the simulator's subscription API, with a small
//! axum webhook answering the validation pushes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};

use altinn_sim::{SimulatorConfig, SimulatorHandle, start};
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::Value;

const TOKEN: &str = "subs-cli-token";
const COMPLETED: &str = "app.instance.process.completed";
const SECRET: &str = "s3cret-function-key";

struct World {
    sim: SimulatorHandle,
    /// What the webhook answers (the validation ping included).
    status: Arc<AtomicU16>,
    endpoint: String,
}

impl World {
    async fn start() -> World {
        let sim = start(SimulatorConfig {
            token: TOKEN.to_owned(),
            ..SimulatorConfig::default()
        })
        .await
        .expect("simulator starts");
        let status = Arc::new(AtomicU16::new(200));
        let app = Router::new()
            .route(
                "/api/EventsReceiver",
                post(|State(s): State<Arc<AtomicU16>>| async move {
                    StatusCode::from_u16(s.load(Ordering::SeqCst)).unwrap()
                }),
            )
            .with_state(status.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        World {
            sim,
            status,
            endpoint: format!("http://127.0.0.1:{port}/api/EventsReceiver?code={SECRET}"),
        }
    }

    /// The simulator's base URL, which is also its apps base (with a trailing slash).
    fn base(&self) -> String {
        self.sim.base_url().to_string()
    }

    fn env(&self, apps_base: &str) -> Vec<(String, String)> {
        let s = "AltinnApplicationOwnerSystemSettings__";
        vec![
            (format!("{s}AppsBaseUrl"), apps_base.to_string()),
            (format!("{s}PlatformBaseUrl"), self.base()),
            (
                format!("{s}BlobEndpoint"),
                "http://127.0.0.1:1/devstoreaccount1".into(),
            ),
            (format!("{s}AltinnToken"), TOKEN.into()),
        ]
    }

    async fn aos(&self, args: &[&str], env: &[(String, String)]) -> (i32, String, String) {
        let out = aos_testkit::cli::run_aos(env, &[&["subscriptions"], args].concat()).await;
        (out.code, out.stdout, out.stderr)
    }
}

fn ids(sim: &SimulatorHandle) -> Vec<u64> {
    sim.subscriptions()
        .iter()
        .map(|s| s["id"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn add_sends_the_exact_source_filter_with_or_without_a_trailing_slash_and_waits_for_validation()
 {
    let w = World::start().await;
    let with_slash = w.base();
    assert!(with_slash.ends_with('/'));
    let without_slash = with_slash.trim_end_matches('/').to_string();

    let (code, stdout, stderr) = w
        .aos(
            &["add", "--app", "ttd/app-a", "--endpoint", &w.endpoint],
            &w.env(&with_slash),
        )
        .await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("validated"), "{stdout}");
    assert!(stderr.contains("up to an hour"), "{stderr}");
    assert!(
        !stdout.contains(SECRET) && !stderr.contains(SECRET),
        "the function key is never printed"
    );

    let (code, stdout2, stderr) = w
        .aos(
            &["add", "--app", "ttd/app-a", "--endpoint", &w.endpoint],
            &w.env(&without_slash),
        )
        .await;
    assert_eq!(code, 0, "{stdout2}\n{stderr}");

    let subs = w.sim.subscriptions();
    assert_eq!(
        subs.len(),
        1,
        "same filter both times (idempotent): {subs:?}"
    );
    let sub = &subs[0];
    assert_eq!(
        sub["sourceFilter"],
        Value::from(format!("{with_slash}ttd/app-a"))
    );
    assert_eq!(sub["typeFilter"], COMPLETED);
    assert_eq!(sub["validated"], true);
    assert_eq!(sub["endPoint"], Value::from(w.endpoint.clone()));
}

#[tokio::test]
async fn add_explains_an_endpoint_that_never_validates() {
    let w = World::start().await;
    w.status.store(500, Ordering::SeqCst);
    let (code, stdout, stderr) = w
        .aos(
            &[
                "add",
                "--app",
                "ttd/app-a",
                "--endpoint",
                &w.endpoint,
                "--wait-secs",
                "2",
            ],
            &w.env(&w.base()),
        )
        .await;
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(stderr.contains("not validated"), "{stderr}");
    assert!(
        stderr.contains("2xx") && stderr.contains("unreachable"),
        "{stderr}"
    );
    assert!(!stderr.contains(SECRET), "{stderr}");
    let subs = w.sim.subscriptions();
    assert_eq!(subs.len(), 1);
    assert_eq!(subs[0]["validated"], false);

    // Endpoint fixed: verify re-posts, which triggers a new validation.
    w.status.store(200, Ordering::SeqCst);
    let (code, stdout, stderr) = w
        .aos(
            &["verify", "--app", "ttd/app-a", "--endpoint", &w.endpoint],
            &w.env(&w.base()),
        )
        .await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("fixed"), "{stdout}");
    assert_eq!(ids(&w.sim).len(), 1);
    assert_eq!(w.sim.subscriptions()[0]["validated"], true);
}

#[tokio::test]
async fn bad_apps_and_endpoints_are_usage_errors_and_webhook_url_supplies_the_endpoint() {
    let w = World::start().await;
    let env = w.env(&w.base());
    for app in ["ttd/App", "ttd", "ttd/app/x", "../x"] {
        let (code, _, stderr) = w
            .aos(&["add", "--app", app, "--endpoint", &w.endpoint], &env)
            .await;
        assert_eq!(code, 2, "{app}: {stderr}");
    }
    let (code, _, stderr) = w.aos(&["add", "--app", "ttd/app-a"], &env).await;
    assert_eq!(code, 2);
    assert!(stderr.contains("WebhookUrl"), "{stderr}");
    let (code, _, stderr) = w
        .aos(
            &[
                "add",
                "--app",
                "ttd/app-a",
                "--endpoint",
                "http://example.com/x",
            ],
            &env,
        )
        .await;
    assert_eq!(code, 2, "{stderr}");
    assert!(w.sim.subscriptions().is_empty());

    let mut env = env;
    env.push((
        "AltinnApplicationOwnerSystemSettings__WebhookUrl".into(),
        w.endpoint.clone(),
    ));
    let (code, stdout, stderr) = w
        .aos(
            &[
                "add",
                "--app",
                "ttd/app-a",
                "--type",
                "app.instance.created",
            ],
            &env,
        )
        .await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(
        w.sim.subscriptions()[0]["typeFilter"],
        "app.instance.created"
    );
}

#[tokio::test]
async fn list_show_and_remove() {
    let w = World::start().await;
    let env = w.env(&w.base());
    for app in ["ttd/app-a", "ttd/app-b"] {
        let (code, _, stderr) = w
            .aos(&["add", "--app", app, "--endpoint", &w.endpoint], &env)
            .await;
        assert_eq!(code, 0, "{stderr}");
    }
    let all = ids(&w.sim);
    assert_eq!(all.len(), 2);

    let (code, stdout, _) = w.aos(&["list"], &env).await;
    assert_eq!(code, 0);
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    assert!(stdout.contains("ttd/app-a") && stdout.contains("ttd/app-b"));
    assert!(!stdout.contains(SECRET));

    let id = all[0].to_string();
    let (code, stdout, _) = w.aos(&["show", &id], &env).await;
    assert_eq!(code, 0);
    let shown: Value = serde_json::from_str(&stdout).expect("show prints JSON");
    assert_eq!(shown["id"].as_u64(), Some(all[0]));
    assert!(!stdout.contains(SECRET));

    let (code, stdout, stderr) = w.aos(&["remove", &id], &env).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("removed"));
    assert_eq!(ids(&w.sim), vec![all[1]]);

    let (code, _, stderr) = w.aos(&["show", &id], &env).await;
    assert_eq!(code, 1, "an unknown id fails: {stderr}");
    assert!(stderr.contains("404"), "{stderr}");
}

#[tokio::test]
async fn verify_uses_reconcile_apps_and_is_a_no_op_when_all_are_validated() {
    let w = World::start().await;
    let mut env = w.env(&w.base());
    let (code, _, stderr) = w.aos(&["verify", "--endpoint", &w.endpoint], &env).await;
    assert_eq!(code, 2, "no apps: {stderr}");

    env.push((
        "AltinnApplicationOwnerSystemSettings__ReconcileApps".into(),
        "ttd/app-a,ttd/app-b".into(),
    ));
    let (code, stdout, stderr) = w.aos(&["verify", "--endpoint", &w.endpoint], &env).await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(stdout.matches("fixed").count(), 2, "{stdout}");
    assert_eq!(ids(&w.sim).len(), 2);

    let (code, stdout, stderr) = w.aos(&["verify", "--endpoint", &w.endpoint], &env).await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(stdout.matches("ok\t").count(), 2, "{stdout}");
    assert_eq!(ids(&w.sim).len(), 2);
}
