//! Operating the product from its output: correlation ids on every log line of an event's
//! journey, the severity the Functions host gives each line, and CLI output that is clean in a
//! pipe (docs/operations.md, "Logs and correlation").

use std::collections::HashSet;
use std::time::Duration;

use aos_testkit::host::{ConsoleLine, HostLevel, HttpCall, Stream};
use aos_testkit::world::{Backends, TestApp, element, instance};
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
