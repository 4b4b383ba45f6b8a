//! The edge (design 2.6): what the webhook does with clients that are not Altinn, in both
//! runtimes. An event a queue message cannot hold is answered 413, never 5xx; `id`, `type`,
//! `source` and `specversion` with control characters or whitespace are answered 400 and the
//! queued message carries the normalised `source`; event text cannot forge log lines or put
//! terminal escapes into `aos run`'s output or `aos poison list`; and `aos run` answers
//! unauthenticated floods at once without buffering them, cuts off slow clients and sheds load
//! with 503 + `Retry-After` while valid pushes are still answered and archived.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use aos_testkit::abuse::{self, RawAnswer};
use aos_testkit::cli::run_aos;
use aos_testkit::poll_until;
use aos_testkit::standalone::{Standalone, WEBHOOK_SECRET};
use aos_testkit::world::{Backends, TestApp, element, instance};
use serde_json::{Value, json};

/// The most JSON one storage queue message holds: 64 KiB of base64 text.
const QUEUE_TEXT_MAX: usize = 48 * 1024;

/// `event` with a `padding` attribute that makes its JSON text exactly `len` bytes long.
fn padded(event: &Value, len: usize) -> Value {
    let mut event = event.clone();
    event["padding"] = json!("");
    let base = event.to_string().len();
    event["padding"] = json!("x".repeat(len - base));
    assert_eq!(event.to_string().len(), len);
    event
}

/// JSON text that fits a queue message in both runtimes, also once the Functions host has
/// re-indented it (its `JObject.ToString()` adds a line break and indentation per attribute).
const FITS: usize = QUEUE_TEXT_MAX - 1024;

/// Bodies a queue message cannot hold: JSON that fits compact but not as the Functions host
/// writes it, one byte more JSON than fits at all, a body the size of a whole queue message,
/// and one far beyond (larger than the Functions handler reads at all).
fn oversized(event: &Value) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (
            "fits compact, not indented",
            padded(event, QUEUE_TEXT_MAX - 4).to_string().into_bytes(),
        ),
        (
            "one byte over",
            padded(event, QUEUE_TEXT_MAX + 1).to_string().into_bytes(),
        ),
        ("64 KiB", padded(event, 64 * 1024).to_string().into_bytes()),
        (
            "9 MiB",
            padded(event, 9 * 1024 * 1024).to_string().into_bytes(),
        ),
    ]
}

async fn until_archived(backends: &Backends, created: &[&altinn_sim::CreatedInstance]) {
    let wanted: HashSet<String> = created.iter().map(|i| i.instance_id()).collect();
    backends
        .wait_all_confirmed(&wanted, Duration::from_secs(60))
        .await
        .unwrap();
    for inst in created {
        backends.assert_archived(inst).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn functions_answer_413_for_an_event_no_queue_message_can_hold() {
    let app = TestApp::spawn().await;
    let fits = app
        .sim
        .add_instance(instance(80_001, vec![element(10, None)]));
    let refused = app.sim.add_instance(instance(80_002, vec![]));
    let response = app
        .post_event(&padded(&app.sim.completed_event(&fits), FITS))
        .await;
    assert_eq!(response.status, 200, "{}", response.body_text());
    assert!(response.queued());
    for (name, body) in oversized(&app.sim.completed_event(&refused)) {
        let response = app.post_raw(body, "application/json").await;
        assert_eq!(response.status, 413, "{name}: {}", response.body_text());
        assert!(!response.queued(), "{name}: queued");
    }
    let failed: Vec<_> = app
        .host
        .invocations_of("EventsReceiver")
        .into_iter()
        .filter(|i| !i.succeeded)
        .map(|i| i.error)
        .collect();
    assert!(failed.is_empty(), "failed invocations: {failed:?}");
    until_archived(&app, &[&fits]).await;
    assert!(!app.confirmed(&refused));
    app.assert_no_poison().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn aos_run_answers_413_for_an_event_no_queue_message_can_hold() {
    let backends = Backends::start().await;
    let runtime = Standalone::start(&backends).await;
    let fits = backends
        .sim
        .add_instance(instance(80_011, vec![element(10, None)]));
    let refused = backends.sim.add_instance(instance(80_012, vec![]));
    let (status, body) = runtime
        .post_event(&padded(&backends.sim.completed_event(&fits), FITS))
        .await;
    assert_eq!(status, 200, "{body}");
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    for (name, body) in oversized(&backends.sim.completed_event(&refused)) {
        let response = client
            .post(runtime.webhook_url(Some(WEBHOOK_SECRET)))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{name}: no answer: {e}"));
        assert_eq!(response.status().as_u16(), 413, "{name}");
    }
    until_archived(&backends, &[&fits]).await;
    assert!(!backends.confirmed(&refused));
    backends.assert_no_poison().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn attributes_with_control_characters_or_whitespace_are_answered_400() {
    let app = TestApp::spawn().await;
    let inst = app
        .sim
        .add_instance(instance(80_021, vec![element(10, None)]));
    let good = app.sim.completed_event(&inst);
    let source = good["source"].as_str().unwrap().to_string();
    let (head, guid) = source.rsplit_once('/').unwrap();
    let mut hostile: Vec<(&str, String)> = Vec::new();
    for bad in [
        "\t",
        "\r\n",
        " ",
        "\u{1b}[2J",
        "\u{85}",
        "\u{2028}",
        "\u{a0}",
    ] {
        hostile.push(("source", format!("{head}/{bad}{guid}")));
        hostile.push(("source", format!("{source}{bad}")));
        hostile.push(("id", format!("id{bad}forged")));
        hostile.push(("type", format!("app.instance.process.completed{bad}")));
    }
    hostile.push(("source", format!(" {source}")));
    for (attribute, value) in &hostile {
        let mut event = good.clone();
        event[*attribute] = json!(value);
        let response = app.post_event(&event).await;
        assert_eq!(
            response.status,
            400,
            "{attribute} {value:?}: {}",
            response.body_text()
        );
        assert!(!response.queued(), "{attribute} {value:?}: queued");
    }

    // A source the URL parser accepts in another spelling is queued in the normalised one.
    let mut spelled = good.clone();
    spelled["source"] = json!(format!(
        "{}/{}",
        head.replacen("http://", "HTTP://", 1),
        guid.to_uppercase()
    ));
    let response = app.post_event(&spelled).await;
    assert_eq!(response.status, 200, "{}", response.body_text());
    let queued = app
        .host
        .invocations_of("EventsReceiver")
        .last()
        .map(|i| i.outputs["inbound"].clone())
        .unwrap();
    let queued: Value = match queued {
        Value::String(text) => serde_json::from_str(&text).unwrap(),
        other => other,
    };
    assert_eq!(queued["source"], json!(source), "{queued}");
    assert_eq!(queued["id"], good["id"]);
    until_archived(&app, &[&inst]).await;
    app.assert_no_poison().await;
}

/// No line of `output` was forged by event text, and no terminal escape got through.
fn assert_unforged(what: &str, output: &str) {
    assert!(!output.contains('\u{1b}'), "{what}: a raw ESC:\n{output}");
    assert!(!output.contains('\u{85}'), "{what}: a raw NEL:\n{output}");
    for line in output.lines() {
        assert!(
            !line.trim_start().starts_with("FORGED"),
            "{what}: a forged line {line:?} in:\n{output}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn event_text_cannot_forge_log_lines_or_inject_terminal_escapes() {
    let backends = Backends::start().await;
    let runtime = Standalone::start(&backends).await;
    let inst = backends.sim.add_instance(instance(80_031, vec![]));
    let good = backends.sim.completed_event(&inst);
    let source = good["source"].as_str().unwrap().to_string();

    // Through the webhook: refused, and the refusal's log line is one line.
    let mut posted = good.clone();
    posted["source"] = json!(format!("{source}\nFORGED webhook \u{1b}]0;title\u{7}"));
    let (status, body) = runtime.post_event(&posted).await;
    assert_eq!(status, 400, "{body}");
    let mut ignored = good.clone();
    ignored["type"] = json!("app.instance.created\nFORGED type \u{1b}[31m");
    runtime.post_event(&ignored).await;

    // Put on the queue by another writer: poisoned, and `aos poison list` prints it safely.
    let mut queued = good.clone();
    queued["id"] = json!("evil\nFORGED id \u{1b}[2J\u{85}FORGED nel");
    queued["source"] = json!(source.replace("/ttd/", "/other/"));
    backends
        .azurite
        .put_message("events-inbound", &queued.to_string())
        .await
        .unwrap();
    poll_until(
        "the hostile message to be poisoned",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || async {
            let poisoned = backends
                .azurite
                .queue_texts("events-inbound-poison")
                .await?;
            Ok((!poisoned.is_empty()).then_some(()))
        },
    )
    .await
    .unwrap();
    let mut env = backends.settings_env();
    env.push((
        "AltinnApplicationOwnerSystemSettings__WebhookSecret".into(),
        WEBHOOK_SECRET.into(),
    ));
    let list = run_aos(&env, &["poison", "list"]).await;
    assert_eq!(list.code, 0, "{}{}", list.stdout, list.stderr);
    assert!(
        list.stdout.contains("1 poisoned message(s)"),
        "{}",
        list.stdout
    );
    assert_unforged("aos poison list", &list.stdout);
    assert_unforged("aos poison list stderr", &list.stderr);
    assert_unforged("aos run", &runtime.output().join("\n"));
    assert!(backends.sim.confirmations().is_empty());
}

/// `aos run` with short timeouts for slow clients, so the test sees them cut off quickly.
async fn standalone_with_short_timeouts(backends: &Backends, extra: &[(&str, &str)]) -> Standalone {
    let mut env = vec![
        ("AOS_TEST_WEBHOOK_HEADER_TIMEOUT_SECS", "2"),
        ("AOS_TEST_WEBHOOK_BODY_TIMEOUT_SECS", "2"),
    ];
    env.extend_from_slice(extra);
    Standalone::start_with_env(backends, &env).await
}

fn webhook_addr(runtime: &Standalone) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], runtime.port))
}

fn webhook_path(code: Option<&str>) -> String {
    match code {
        Some(code) => format!("/api/EventsReceiver?code={code}"),
        None => "/api/EventsReceiver".to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn aos_run_stays_responsive_under_floods_and_slow_clients() {
    let backends = Backends::start().await;
    let runtime = standalone_with_short_timeouts(&backends, &[]).await;
    let addr = webhook_addr(&runtime);
    let pid = runtime.pid();
    // One valid push first, so the baseline includes a warm queue client.
    let warm = backends.sim.add_instance(instance(80_040, vec![]));
    let (status, body) = runtime
        .post_event(&backends.sim.completed_event(&warm))
        .await;
    assert_eq!(status, 200, "{body}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let baseline = abuse::rss_kib(pid).expect("VmRSS of aos run");

    let sampling = tokio::spawn(async move {
        let mut peak = 0;
        for _ in 0..200 {
            peak = peak.max(abuse::rss_kib(pid).unwrap_or(0));
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        peak
    });
    let flood: Vec<_> = (0..40)
        .map(|_| {
            tokio::spawn(async move {
                abuse::large_post(addr, &webhook_path(None), 8 * 1024 * 1024).await
            })
        })
        .collect();
    let slow_body = tokio::spawn(async move {
        let path = webhook_path(Some(WEBHOOK_SECRET));
        abuse::slow_body(
            addr,
            &path,
            Duration::from_millis(200),
            Duration::from_secs(40),
        )
        .await
    });
    let slow_headers = tokio::spawn(async move {
        let path = webhook_path(Some(WEBHOOK_SECRET));
        abuse::slow_headers(
            addr,
            &path,
            Duration::from_millis(200),
            Duration::from_secs(40),
        )
        .await
    });
    // Valid pushes while the flood and the slow clients are on.
    let pushed: Vec<_> = (0..5u64)
        .map(|n| {
            backends
                .sim
                .add_instance(instance(80_041 + n, vec![element(1000 + n, None)]))
        })
        .collect();
    let mut push_times = Vec::new();
    for inst in &pushed {
        let started = Instant::now();
        let (status, body) = runtime
            .post_event(&backends.sim.completed_event(inst))
            .await;
        push_times.push(started.elapsed());
        assert_eq!(status, 200, "{body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut flood_answers: Vec<RawAnswer> = Vec::new();
    for request in flood {
        flood_answers.push(request.await.unwrap().expect("connects"));
    }
    let peak = sampling.await.unwrap();
    let slow_body = slow_body.await.unwrap().expect("connects");
    let slow_headers = slow_headers.await.unwrap().expect("connects");
    let growth_kib = peak.saturating_sub(baseline);
    let slowest_401 = flood_answers.iter().map(|a| a.elapsed).max().unwrap();
    eprintln!(
        "RSS baseline {baseline} KiB, peak {peak} KiB (+{growth_kib} KiB); slowest 401 {slowest_401:?}; \
         pushes {push_times:?}; slow body cut off after {:?} ({:?}); slow headers after {:?} ({:?})",
        slow_body.elapsed, slow_body.status, slow_headers.elapsed, slow_headers.status
    );
    for answer in &flood_answers {
        assert_eq!(answer.status, Some(401), "{answer:?}");
        assert!(answer.elapsed < Duration::from_secs(2), "{answer:?}");
    }
    assert!(
        growth_kib < 16 * 1024,
        "RSS grew by {growth_kib} KiB under the flood"
    );
    for elapsed in &push_times {
        assert!(
            *elapsed < Duration::from_secs(2),
            "a valid push took {elapsed:?}"
        );
    }
    // Cut off after the (test-shortened) 2 s timeout, well within the 30 s contract.
    assert!(
        slow_body.cut_off(),
        "slow body never cut off: {slow_body:?}"
    );
    assert!(slow_body.elapsed < Duration::from_secs(30), "{slow_body:?}");
    assert!(
        slow_headers.cut_off(),
        "slow headers never cut off: {slow_headers:?}"
    );
    assert!(
        slow_headers.elapsed < Duration::from_secs(30),
        "{slow_headers:?}"
    );

    let mut archived = vec![&warm];
    archived.extend(pushed.iter());
    until_archived(&backends, &archived).await;
    backends.assert_no_poison().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn aos_run_sheds_load_with_503_and_retry_after() {
    let backends = Backends::start().await;
    let runtime =
        standalone_with_short_timeouts(&backends, &[("AOS_TEST_WEBHOOK_CONCURRENCY", "2")]).await;
    let addr = webhook_addr(&runtime);
    // Two authenticated slow bodies hold both places until their body timeout.
    let holders: Vec<_> = (0..2)
        .map(|_| {
            tokio::spawn(async move {
                let path = webhook_path(Some(WEBHOOK_SECRET));
                abuse::slow_body(
                    addr,
                    &path,
                    Duration::from_millis(200),
                    Duration::from_secs(40),
                )
                .await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let inst = backends
        .sim
        .add_instance(instance(80_051, vec![element(10, None)]));
    let event = backends.sim.completed_event(&inst);
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let response = client
        .post(runtime.webhook_url(Some(WEBHOOK_SECRET)))
        .header("content-type", "application/json")
        .body(event.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 503);
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    assert!(retry_after.is_some_and(|s| s > 0), "{response:?}");
    // Unauthenticated requests are answered 401 even now: they never take a place.
    let (status, _) = runtime.post(&event, Some("wrong")).await;
    assert_eq!(status, 401);
    for holder in holders {
        let answer = holder.await.unwrap().unwrap();
        assert!(answer.cut_off(), "{answer:?}");
    }
    // The places are free again: Altinn's retry is answered and archived.
    let (status, body) = runtime.post_event(&event).await;
    assert_eq!(status, 200, "{body}");
    until_archived(&backends, &[&inst]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pulled_event_text_cannot_forge_catch_up_lines() {
    let backends = Backends::start().await;
    backends.sim.set_events_hold_back(Duration::ZERO);
    let mut env = backends.settings_env();
    env.push((
        "AltinnApplicationOwnerSystemSettings__Org".into(),
        "ttd".into(),
    ));
    env.push((
        "AltinnApplicationOwnerSystemSettings__ReconcileApps".into(),
        "ttd/test-app".into(),
    ));
    let inst = backends.sim.add_instance(instance(80_061, vec![]));
    let mut hostile = backends.sim.completed_event(&inst);
    hostile["id"] = json!("evil\nFORGED catch-up \u{1b}[2J");
    backends.sim.publish(hostile);
    let out = run_aos(&env, &["catch-up"]).await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("refused: event evil"), "{}", out.stdout);
    assert_unforged("aos catch-up", &out.stdout);
    assert_unforged("aos catch-up stderr", &out.stderr);
}
