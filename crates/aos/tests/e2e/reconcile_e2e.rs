//! Reconciliation end to end: instances completed while their events never arrived (nothing is
//! posted to the webhook) are found by the `EventsReconciler` timer function under the host
//! harness, or by `aos reconcile` run as a separate process against the same Azurite and
//! simulator, and end archived and confirmed by the pipeline the host runs.

use std::time::Duration;

use altinn_sim::{CreatedInstance, InstanceSpec};
use aos_testkit::world::{Backends, TestApp, element, instance};
use serde_json::Value;

const ORG_SETTING: &str = "AltinnApplicationOwnerSystemSettings__Org";
const APPS_SETTING: &str = "AltinnApplicationOwnerSystemSettings__ReconcileApps";
const DRAIN: Duration = Duration::from_secs(120);

/// A world whose settings name the org (the simulator's host does not), plus `extra` settings.
async fn spawn(extra: &[(&str, &str)]) -> (TestApp, Vec<(String, String)>) {
    let backends = Backends::start().await;
    let mut env = backends.settings_env();
    env.push((ORG_SETTING.into(), "ttd".into()));
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let app = TestApp::spawn_with(backends, Duration::from_millis(200), env.clone()).await;
    (app, env)
}

/// `aos reconcile <args>` as its own process with the same settings; (exit code, stdout, stderr).
async fn aos_reconcile(env: &[(String, String)], args: &[&str]) -> (i32, String, String) {
    let out = aos_testkit::cli::run_aos(env, &[&["reconcile"], args].concat()).await;
    (out.code, out.stdout, out.stderr)
}

fn summary_line(stdout: &str) -> &str {
    stdout
        .lines()
        .find(|l| l.starts_with("reconcile summary:"))
        .unwrap_or_else(|| panic!("no summary line in {stdout}"))
}

fn data_downloads(app: &TestApp) -> usize {
    app.sim
        .calls()
        .iter()
        .filter(|c| c.method == "GET" && c.path.contains("/data/"))
        .count()
}

fn some_instances(app: &TestApp, n: u64) -> Vec<CreatedInstance> {
    (0..n)
        .map(|i| {
            app.sim.add_instance(instance(
                70_000 + i,
                vec![element(1024 + i, Some("form.xml")), element(5, None)],
            ))
        })
        .collect()
}

async fn assert_done(app: &TestApp, created: &[CreatedInstance]) {
    for inst in created {
        app.assert_archived(inst).await;
        assert!(app.confirmed(inst), "{} not confirmed", inst.instance_id());
    }
    assert_eq!(app.sim.guard_violations(), Vec::<String>::new());
    app.assert_no_poison().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_timer_finds_instances_whose_events_never_arrived_and_a_second_run_is_a_no_op() {
    let (app, _) = spawn(&[]).await;
    let lost = some_instances(&app, 5);
    let running = app.sim.add_instance(InstanceSpec {
        process_ended: false,
        ..instance(79_999, vec![element(10, None)])
    });

    let run = app.host.invoke_timer("EventsReconciler").await.unwrap();
    assert!(run.succeeded, "{:?}", run.error);
    let queued = run.outputs["inbound"].as_array().expect("an array output");
    assert_eq!(queued.len(), 5, "{:?}", run.logs);
    for event in queued {
        assert_eq!(event["aosreconciled"], "true");
        assert_eq!(event["type"], "app.instance.process.completed");
    }
    assert_eq!(
        run.logs.last().map(String::as_str),
        Some("reconcile summary: found 5, already confirmed 0, queued 5, held 0, failed 0")
    );

    app.host
        .wait_until_idle(DRAIN)
        .await
        .expect("pipeline drains");
    assert_done(&app, &lost).await;
    assert!(
        !app.confirmed(&running),
        "a running instance is never confirmed"
    );

    let downloads = data_downloads(&app);
    let again = app.host.invoke_timer("EventsReconciler").await.unwrap();
    assert!(again.succeeded, "{:?}", again.error);
    assert!(
        again.outputs.get("inbound").is_none_or(Value::is_null),
        "second run queued {}",
        again.outputs
    );
    assert_eq!(
        again.logs.last().map(String::as_str),
        Some("reconcile summary: found 5, already confirmed 5, queued 0, held 0, failed 0")
    );
    app.host.wait_until_idle(DRAIN).await.unwrap();
    assert_eq!(data_downloads(&app), downloads, "nothing downloaded again");
    assert_eq!(app.host.invocations_of("EventsProcessor").len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cli_queues_only_what_is_not_done_and_dry_run_queues_nothing() {
    let (app, env) = spawn(&[]).await;
    // Three instances whose events did arrive: archived and confirmed the normal way.
    let delivered = some_instances(&app, 3);
    for inst in &delivered {
        let response = app.post_event(&app.sim.completed_event(inst)).await;
        assert_eq!(response.status, 200);
    }
    app.host.wait_until_idle(DRAIN).await.unwrap();
    assert_done(&app, &delivered).await;
    let downloads = data_downloads(&app);
    assert_eq!(downloads, 6);

    let lost: Vec<_> = (0..2)
        .map(|i| {
            app.sim
                .add_instance(instance(71_000 + i, vec![element(2048, Some("a.pdf"))]))
        })
        .collect();

    let (code, stdout, stderr) = aos_reconcile(&env, &["--dry-run"]).await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        summary_line(&stdout).starts_with(
            "reconcile summary: found 5, already confirmed 3, queued 0, held 0, failed 0"
        ),
        "{stdout}"
    );
    assert_eq!(stdout.matches("would queue ").count(), 2, "{stdout}");
    app.host.wait_until_idle(DRAIN).await.unwrap();
    assert!(lost.iter().all(|i| !app.confirmed(i)), "dry run queued");
    assert_eq!(app.host.invocations_of("EventsProcessor").len(), 3);

    let (code, stdout, stderr) = aos_reconcile(&env, &[]).await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        summary_line(&stdout).starts_with(
            "reconcile summary: found 5, already confirmed 3, queued 2, held 0, failed 0"
        ),
        "{stdout}"
    );
    assert!(stderr.contains("page 1"), "progress lines: {stderr}");
    app.host.wait_until_idle(DRAIN).await.unwrap();
    assert_done(&app, &lost).await;
    assert_eq!(
        data_downloads(&app),
        downloads + 2,
        "only the two new elements were downloaded"
    );

    let (code, stdout, _) = aos_reconcile(&env, &[]).await;
    assert_eq!(code, 0);
    assert!(
        summary_line(&stdout).contains("already confirmed 5, queued 0, held 0, failed 0"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_instance_the_confirmed_filter_misses_is_caught_by_the_time_window_sweep() {
    let (app, env) = spawn(&[]).await;
    let missed = some_instances(&app, 1).remove(0);
    app.sim.miss_in_confirmed_filter(missed.instance_guid);

    // A window that starts in the future: only the confirmed filter runs, and it misses it.
    let (code, stdout, stderr) = aos_reconcile(&env, &["--since", "2100-01-01"]).await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        summary_line(&stdout).starts_with("reconcile summary: found 0,"),
        "{stdout}"
    );

    // The default window (the last 7 days) has it.
    let (code, stdout, stderr) = aos_reconcile(&env, &[]).await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        summary_line(&stdout).contains("queued 1, held 0, failed 0"),
        "{stdout}"
    );
    app.host.wait_until_idle(DRAIN).await.unwrap();
    assert_done(&app, &[missed]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn configured_apps_limit_the_search_and_invalid_names_fail_without_being_used() {
    let (app, env) = spawn(&[(APPS_SETTING, "ttd/test-app")]).await;
    let wanted = some_instances(&app, 2);
    let other_app = app.sim.add_instance(InstanceSpec {
        app: "other-app".into(),
        ..instance(72_000, vec![])
    });

    let (code, stdout, stderr) = aos_reconcile(&env, &[]).await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        summary_line(&stdout).starts_with("reconcile summary: found 2,"),
        "{stdout}"
    );
    app.host.wait_until_idle(DRAIN).await.unwrap();
    assert_done(&app, &wanted).await;
    assert!(!app.confirmed(&other_app));

    // Org-wide (no ReconcileApps): an app name Altinn would never issue is counted as failed
    // with its reason, and nothing is queued for it; the valid instance still is.
    let org_wide: Vec<(String, String)> = env
        .iter()
        .filter(|(k, _)| k != APPS_SETTING)
        .cloned()
        .collect();
    let bad = app.sim.add_instance(InstanceSpec {
        app: "../Evil".into(),
        ..instance(72_001, vec![element(3, None)])
    });
    let (code, stdout, stderr) = aos_reconcile(&org_wide, &[]).await;
    assert_eq!(
        code, 1,
        "failures make the exit status 1: {stdout}\n{stderr}"
    );
    assert!(
        summary_line(&stdout).contains("queued 1, held 0, failed 1"),
        "{stdout}"
    );
    assert!(
        stdout.contains("failed: instance") && stdout.contains("app in appId"),
        "{stdout}"
    );
    app.host.wait_until_idle(DRAIN).await.unwrap();
    assert_done(&app, std::slice::from_ref(&other_app)).await;
    assert!(!app.confirmed(&bad));
}
