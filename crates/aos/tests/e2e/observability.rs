//! Operating the product from its output: correlation ids on every log line of an event's
//! journey, the severity the Functions host gives each line, and CLI output that is clean in a
//! pipe (docs/operations.md, "Logs and correlation"); metrics exported to an Application
//! Insights ingestion endpoint, and nothing sent when they are off ("Metrics").

use std::collections::HashSet;
use std::time::Duration;

use altinn_aos::metrics::names;
use altinn_aos::storage::AZURITE_KEY;
use aos_testkit::host::{ConsoleLine, HostLevel, HttpCall, Stream};
use aos_testkit::ingestion::Ingestion;
use aos_testkit::world::{Backends, TOKEN, TestApp, element, instance};
use serde_json::Value;

const DRAIN: Duration = Duration::from_secs(60);
const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// The handler's JSON console lines.
fn json_lines(console: &[ConsoleLine]) -> Vec<(ConsoleLine, Value)> {
    console
        .iter()
        .filter_map(|line| {
            serde_json::from_str::<Value>(&line.text)
                .ok()
                .filter(Value::is_object)
                .map(|json| (line.clone(), json))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_line_of_one_events_journey_carries_its_invocation_trace_and_event_ids() {
    // Debug level brings the receiver's own line to the console too.
    let overrides = vec![("AOS_LOG".to_string(), "altinn_aos=debug,warn".to_string())];
    let app = TestApp::spawn_with(
        Backends::start().await,
        Duration::from_millis(200),
        overrides,
    )
    .await;
    let inst = app
        .sim
        .add_instance(instance(81_001, vec![element(2048, Some("a.pdf"))]));
    let event = app.sim.completed_event(&inst);
    let event_id = event["id"].as_str().unwrap().to_string();
    let call = HttpCall::post_json(&event)
        .query("code", "test-function-key")
        .header(
            "traceparent",
            &format!("00-{CALLER_TRACE}-00f067aa0ba902b7-01"),
        );
    let outcome = app.host.invoke_http("EventsReceiver", call).await.unwrap();
    assert_eq!(outcome.status, 200, "{}", outcome.text());
    app.host.wait_until_idle(DRAIN).await.unwrap();
    assert!(app.confirmed(&inst));

    let journey = ["EventsReceiver", "EventsProcessor", "EventsConfirmation"];
    let invocations: Vec<_> = app
        .host
        .invocations()
        .into_iter()
        .filter(|i| journey.contains(&i.function.as_str()))
        .collect();
    assert_eq!(invocations.len(), 3, "{invocations:#?}");
    let ids: HashSet<&str> = invocations
        .iter()
        .map(|i| i.invocation_id.as_str())
        .collect();
    let lines = json_lines(&app.host.console());
    let guid = inst.instance_guid.to_string();
    let mut seen = HashSet::new();
    for (line, json) in &lines {
        let Some(invocation_id) = json["invocation_id"].as_str() else {
            // Outside any invocation (start-up): never about this event.
            assert!(
                !line.text.contains(&event_id) && !line.text.contains(&guid),
                "a line about the event without an invocation id: {}",
                line.text
            );
            continue;
        };
        assert!(
            ids.contains(invocation_id),
            "unknown invocation: {}",
            line.text
        );
        assert_eq!(json["trace_id"], CALLER_TRACE, "{}", line.text);
        assert_eq!(json["event_id"], event_id.as_str(), "{}", line.text);
        assert_eq!(json["instance_guid"], guid.as_str(), "{}", line.text);
        assert_eq!(json["org"], inst.org.as_str(), "{}", line.text);
        assert_eq!(json["app"], inst.app.as_str(), "{}", line.text);
        assert_eq!(json["party_id"], inst.party_id, "{}", line.text);
        seen.insert(invocation_id.to_string());
    }
    for invocation in &invocations {
        assert!(
            seen.contains(&invocation.invocation_id),
            "no log line of the {} invocation {} carries its id; lines: {:#?}",
            invocation.function,
            invocation.invocation_id,
            lines.iter().map(|(l, _)| &l.text).collect::<Vec<_>>()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn warn_and_error_lines_reach_the_host_at_their_severity() {
    let app = TestApp::spawn().await;
    // A WARN line: a webhook body that is not JSON.
    let rejected = app.post_raw(b"not json".to_vec(), "application/json").await;
    assert_eq!(rejected.status, 400);
    // An ERROR line: a queue message that is not a CloudEvent fails its invocation.
    app.azurite
        .queues()
        .send_raw("events-inbound", "bm90IGFuIGV2ZW50")
        .await
        .unwrap();
    app.wait_for_a_failed_invocation("EventsProcessor", "the bad message", DRAIN)
        .await;
    // The harness records an invocation when its answer arrives and reads the handler's stderr
    // apart from that, so a line written just before the answer can arrive a moment after it.
    // Wait for both lines; without them, the assertions below say what is missing.
    let poll = Duration::from_millis(50);
    let _ = aos_testkit::poll_until("the WARN and ERROR lines", DRAIN, poll, || async {
        let lines = json_lines(&app.host.console());
        let has = |message: &str| lines.iter().any(|(_, json)| json["message"] == message);
        Ok((has("webhook request rejected") && has("invocation failed")).then_some(()))
    })
    .await;
    let lines = json_lines(&app.host.console());
    let level_of = |message: &str| {
        lines
            .iter()
            .find(|(_, json)| json["message"] == message)
            .map(|(line, json)| (line.stream, line.level, json["level"].clone()))
            .unwrap_or_else(|| panic!("no `{message}` line in {:#?}", app.host.handler_output()))
    };
    assert_eq!(
        level_of("webhook request rejected"),
        (Stream::Stderr, HostLevel::Warning, "WARN".into())
    );
    assert_eq!(
        level_of("invocation failed"),
        (Stream::Stderr, HostLevel::Error, "ERROR".into())
    );
    assert_eq!(
        level_of("custom handler listening"),
        (Stream::Stdout, HostLevel::Information, "INFO".into())
    );
    // Nothing at WARN or ERROR is recorded as Information, nothing below as more.
    for (line, json) in &lines {
        let expected = match json["level"].as_str() {
            Some("WARN") => HostLevel::Warning,
            Some("ERROR") if line.text.to_lowercase().contains("warn") => HostLevel::Warning,
            Some("ERROR") => HostLevel::Error,
            _ => HostLevel::Information,
        };
        assert_eq!(line.level, expected, "{}", line.text);
    }
}

/// A human log line: `<timestamp> <LEVEL> <target>: …`.
fn is_log_line(line: &str) -> bool {
    let mut words = line.split_whitespace();
    let _timestamp = words.next();
    matches!(
        words.next(),
        Some("TRACE" | "DEBUG" | "INFO" | "WARN" | "ERROR")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cli_commands_in_a_pipe_print_no_colour_and_no_log_line_on_stdout() {
    let app = TestApp::spawn().await;
    let lost = app
        .sim
        .add_instance(instance(82_001, vec![element(16, None)]));
    let mut env = app.settings_env();
    env.push((
        "AltinnApplicationOwnerSystemSettings__ReconcileApps".into(),
        format!("{}/{}", lost.org, lost.app),
    ));
    env.push((
        "AltinnApplicationOwnerSystemSettings__Org".into(),
        lost.org.clone(),
    ));
    env.retain(|(name, _)| name != "AOS_LOG_FORMAT");
    // Every level, so the run certainly logs (with a token setting it has little to say).
    env.push(("AOS_LOG".into(), "debug".into()));
    let out = aos_testkit::cli::run_aos(&env, &["reconcile", "--dry-run"]).await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("would queue "), "{}", out.stdout);
    for (name, text) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        assert!(
            !text.contains('\x1b'),
            "an escape sequence on {name}: {text:?}"
        );
    }
    let logged: Vec<&str> = out.stdout.lines().filter(|l| is_log_line(l)).collect();
    assert!(logged.is_empty(), "log lines on stdout: {logged:#?}");
    assert!(
        out.stderr.lines().any(is_log_line),
        "the run's log lines are on stderr: {}",
        out.stderr
    );
}

/// The queues the points of gauge `name` name so far.
fn queues_named(ingestion: &Ingestion, name: &str) -> HashSet<String> {
    ingestion
        .points_of(name)
        .iter()
        .filter_map(|p| p.properties.get("queue").and_then(Value::as_str))
        .map(str::to_owned)
        .collect()
}

/// A world whose handler exports metrics to `ingestion` every 300 ms (or, with `disabled`,
/// has the connection string and the standard off switch).
async fn metrics_world(ingestion: &Ingestion, disabled: bool) -> TestApp {
    let mut overrides = vec![
        (
            "APPLICATIONINSIGHTS_CONNECTION_STRING".to_string(),
            ingestion.connection_string(),
        ),
        ("OTEL_METRIC_EXPORT_INTERVAL".to_string(), "300".to_string()),
        // The reconciler timer (which samples the gauges) needs the org.
        (
            "AltinnApplicationOwnerSystemSettings__Org".to_string(),
            "ttd".to_string(),
        ),
    ];
    if disabled {
        overrides.push(("OTEL_SDK_DISABLED".to_string(), "true".to_string()));
    }
    TestApp::spawn_with(
        Backends::start().await,
        Duration::from_millis(200),
        overrides,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_arrive_in_application_insights_with_the_counts_of_what_was_archived() {
    let ingestion = Ingestion::start().await.unwrap();
    let app = metrics_world(&ingestion, false).await;
    let sizes = [[1000u64, 7], [64 * 1024 + 3, 0], [5 * 1024 * 1024 + 11, 1]];
    let created: Vec<_> = sizes
        .iter()
        .enumerate()
        .map(|(i, pair)| {
            let elements = pair.iter().map(|s| element(*s, None)).collect();
            app.sim.add_instance(instance(83_000 + i as u64, elements))
        })
        .collect();
    for inst in &created {
        assert_eq!(
            app.post_event(&app.sim.completed_event(inst)).await.status,
            200
        );
    }
    app.host.wait_until_idle(DRAIN).await.unwrap();
    let timer = app.host.invoke_timer("EventsReconciler").await.unwrap();
    assert!(timer.succeeded, "{:?}", timer.error);
    let n = created.len() as f64;
    let bytes: u64 = sizes.iter().flatten().sum();
    aos_testkit::poll_until(
        "every metric exported",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async {
            let done = ingestion.total(names::ARCHIVED) >= n
                && ingestion.total(names::CONFIRMED) >= n
                && ingestion.total(names::ARCHIVE_BYTES) >= bytes as f64
                // One sample names every queue, but an export may fall between two of them.
                && queues_named(&ingestion, names::POISON_DEPTH).len() == 3
                && queues_named(&ingestion, names::QUEUE_DEPTH).len() == 3
                && ["receive", "process", "confirm", "reconcile"]
                    .iter()
                    .all(|step| {
                        ingestion
                            .points_of(names::STEP_DURATION)
                            .iter()
                            .any(|p| p.properties.get("step") == Some(&Value::from(*step)))
                    });
            Ok(done.then_some(()))
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}: {:#?}", ingestion.points()));
    assert_eq!(ingestion.total(names::ARCHIVED), n);
    assert_eq!(ingestion.total(names::CONFIRMED), n);
    assert_eq!(ingestion.total(names::ARCHIVE_BYTES), bytes as f64);
    assert_eq!(ingestion.total(names::FAILED), 0.0);
    // One duration per step run: a process and a confirm per instance.
    let durations = ingestion.points_of(names::STEP_DURATION);
    let runs = |step: &str| -> u64 {
        durations
            .iter()
            .filter(|p| p.properties.get("step") == Some(&Value::from(step)))
            .map(|p| p.count)
            .sum()
    };
    assert_eq!(runs("process"), created.len() as u64);
    assert_eq!(runs("confirm"), created.len() as u64);
    assert!(
        durations
            .iter()
            .all(|p| p.value >= 0.0 && p.value < 120.0 * p.count as f64)
    );
    // Depths after the drain: every queue named, all empty.
    for name in [names::QUEUE_DEPTH, names::POISON_DEPTH] {
        let points = ingestion.points_of(name);
        assert_eq!(
            queues_named(&ingestion, name).len(),
            3,
            "{name}: {points:#?}"
        );
        assert!(points.iter().all(|p| p.value == 0.0), "{name}: {points:#?}");
    }
    // The key is a fixed token, not a certificate: no certificate gauge.
    assert!(ingestion.points_of(names::CERTIFICATE_DAYS_LEFT).is_empty());
    // Nothing secret in what was sent.
    let sent = ingestion.bodies().join("\n");
    for secret in [AZURITE_KEY, TOKEN, "test-function-key", "sig="] {
        assert!(!sent.contains(secret), "`{secret}` was sent: {sent}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_metric_is_sent_when_switched_off_or_not_configured() {
    let ingestion = Ingestion::start().await.unwrap();
    let off = metrics_world(&ingestion, true).await;
    let unconfigured = TestApp::spawn().await;
    for app in [&off, &unconfigured] {
        let inst = app
            .sim
            .add_instance(instance(84_001, vec![element(100, None)]));
        assert_eq!(
            app.post_event(&app.sim.completed_event(&inst)).await.status,
            200
        );
        app.host.wait_until_idle(DRAIN).await.unwrap();
        assert!(app.confirmed(&inst));
        let timer = app.host.invoke_timer("EventsReconciler").await;
        assert!(timer.is_ok());
    }
    // Several export intervals of the switched-off handler.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(ingestion.bodies(), Vec::<String>::new());
}
