//! End to end with the standalone runtime: the real `aos run` process, its webhook, Azurite
//! queues, the archive and confirmations — no Functions host.

use std::time::Duration;

use altinn_sim::{Fault, FaultRule};
use aos_testkit::poll_until;
use aos_testkit::standalone::{Standalone, WEBHOOK_SECRET};
use aos_testkit::world::{Backends, element, instance};

/// Waits until every instance is confirmed.
async fn until_confirmed(backends: &Backends, ids: &[String], timeout: Duration) {
    poll_until(
        "every instance to be confirmed",
        timeout,
        Duration::from_millis(100),
        || async {
            let confirmed: Vec<String> = backends
                .sim
                .confirmations()
                .into_iter()
                .map(|c| c.instance_id)
                .collect();
            Ok(ids.iter().all(|id| confirmed.contains(id)).then_some(()))
        },
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn webhook_to_archive_to_confirmation_through_azurite_queues() {
    let backends = Backends::start().await;
    let runtime = Standalone::start(&backends).await;
    let created: Vec<_> = (0..6u64)
        .map(|n| {
            backends.sim.add_instance(instance(
                60_000 + n,
                (0..n % 3)
                    .map(|i| element(1000 * i + n, Some("vedlegg.pdf")))
                    .collect(),
            ))
        })
        .chain(std::iter::once(backends.sim.add_instance(instance(
            60_100,
            vec![element(9 * 1024 * 1024 + 1, Some("stor.bin"))],
        ))))
        .collect();
    for inst in &created {
        let (status, body) = runtime
            .post_event(&backends.sim.completed_event(inst))
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let ids: Vec<String> = created.iter().map(|i| i.instance_id()).collect();
    until_confirmed(&backends, &ids, Duration::from_secs(60)).await;
    for inst in &created {
        backends.assert_archived(inst).await;
    }
    assert_eq!(backends.sim.guard_violations(), Vec::<String>::new());
    backends.assert_no_poison().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_without_the_secret_get_401_and_nothing_is_queued() {
    let backends = Backends::start().await;
    let runtime = Standalone::start(&backends).await;
    let inst = backends.sim.add_instance(instance(61_000, vec![]));
    let event = backends.sim.completed_event(&inst);
    let upper = WEBHOOK_SECRET.to_uppercase();
    for code in [
        None,
        Some("wrong"),
        Some(""),
        Some(upper.as_str()),
        Some(&WEBHOOK_SECRET[..WEBHOOK_SECRET.len() - 1]),
    ] {
        let (status, _) = runtime.post(&event, code).await;
        assert_eq!(status, 401, "code {code:?}");
    }
    // Let a wrongly queued message (there must be none) be picked up and show in the simulator.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        backends
            .azurite
            .queue_texts("events-inbound")
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        backends
            .sim
            .calls()
            .iter()
            .all(|c| !c.path.contains("/instances/")),
        "nothing was processed"
    );
    assert!(backends.sim.confirmations().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_runtime_killed_mid_download_loses_nothing() {
    let backends = Backends::start().await;
    let mut first = Standalone::start(&backends).await;
    let inst = backends.sim.add_instance(instance(
        62_000,
        vec![element(20 * 1024 * 1024 + 3, Some("stor.bin"))],
    ));
    let data_path = format!("/data/{}", inst.elements[0].id);
    // The first download answers only after 4 s: the runtime is killed while it waits.
    backends.sim.inject(FaultRule {
        path_contains: data_path.clone(),
        fault: Fault::Delay(Duration::from_secs(4)),
        times: 1,
    });
    let (status, _) = first.post_event(&backends.sim.completed_event(&inst)).await;
    assert_eq!(status, 200);
    poll_until(
        "the download to start",
        Duration::from_secs(10),
        Duration::from_millis(20),
        || async {
            let reads = backends
                .sim
                .calls()
                .iter()
                .filter(|c| c.path.ends_with(&inst.instance_id()))
                .count();
            Ok((reads > 0).then_some(()))
        },
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    first.kill();
    assert!(backends.sim.confirmations().is_empty());

    // A new runtime picks the message up once its lease (3 s) has run out.
    let _second = Standalone::start(&backends).await;
    until_confirmed(&backends, &[inst.instance_id()], Duration::from_secs(60)).await;
    backends.assert_archived(&inst).await;
    assert_eq!(backends.sim.confirmations().len(), 1);
    // The killed attempt's request died with its connection (the simulator records only
    // answered requests); the instance was read by both runtimes.
    let reads = backends
        .sim
        .calls()
        .iter()
        .filter(|c| c.path.ends_with(&inst.instance_id()))
        .count();
    assert!(reads >= 2, "both runtimes read the instance: {reads}");
    assert_eq!(backends.sim.guard_violations(), Vec::<String>::new());
    backends.assert_no_poison().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_lets_in_flight_work_finish() {
    let backends = Backends::start().await;
    let mut runtime = Standalone::start(&backends).await;
    let inst = backends
        .sim
        .add_instance(instance(63_000, vec![element(1024, Some("a.txt"))]));
    let data_path = format!("/data/{}", inst.elements[0].id);
    backends.sim.inject(FaultRule {
        path_contains: data_path.clone(),
        fault: Fault::Delay(Duration::from_secs(2)),
        times: 1,
    });
    runtime
        .post_event(&backends.sim.completed_event(&inst))
        .await;
    poll_until(
        "the instance read",
        Duration::from_secs(10),
        Duration::from_millis(20),
        || async {
            Ok(backends
                .sim
                .calls()
                .iter()
                .any(|c| c.path.ends_with(&inst.instance_id()))
                .then_some(()))
        },
    )
    .await
    .unwrap();
    let status = runtime.terminate(Duration::from_secs(15)).await;
    assert!(
        status.success(),
        "clean exit: {status:?}\n{}",
        runtime.output().join("\n")
    );
    // The in-flight archive finished before exit; the confirmation waits in its queue.
    backends.assert_archived(&inst).await;
    let _restarted = Standalone::start(&backends).await;
    until_confirmed(&backends, &[inst.instance_id()], Duration::from_secs(30)).await;
    let downloads = backends
        .sim
        .calls()
        .iter()
        .filter(|c| c.path.ends_with(&data_path))
        .count();
    assert_eq!(downloads, 1, "finished work was not redone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_message_queued_the_functions_host_way_is_processed_by_aos_run() {
    let backends = Backends::start().await;
    let _runtime = Standalone::start(&backends).await;
    let inst = backends
        .sim
        .add_instance(instance(64_000, vec![element(5000, Some("x.xml"))]));
    // Base64 text, as the host's queue output binding writes it.
    backends
        .azurite
        .put_message(
            "events-inbound",
            &backends.sim.completed_event(&inst).to_string(),
        )
        .await
        .unwrap();
    until_confirmed(&backends, &[inst.instance_id()], Duration::from_secs(30)).await;
    backends.assert_archived(&inst).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pushed_events_survive_a_storage_outage_through_altinn_retries() {
    let mut backends = Backends::start().await;
    let runtime = Standalone::start(&backends).await;
    backends.sim.set_push_retry_schedule(
        [300, 500, 1000, 2000, 3000, 5000, 5000]
            .map(Duration::from_millis)
            .to_vec(),
    );
    let source_filter = format!("{}ttd/test-app", backends.sim.base_url());
    let subscription = backends
        .sim
        .add_subscription(
            &runtime.webhook_url(Some(WEBHOOK_SECRET)),
            &source_filter,
            Some("app.instance.process.completed"),
        )
        .unwrap();
    poll_until(
        "the endpoint to validate the subscription",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || async {
            let subscriptions = backends.sim.subscriptions();
            Ok(subscriptions
                .iter()
                .any(|s| s["id"].as_u64() == Some(subscription) && s["validated"] == true)
                .then_some(()))
        },
    )
    .await
    .unwrap();

    // Storage goes away: the webhook cannot queue, so it must not answer 2xx.
    backends.azurite.stop().await.unwrap();
    let inst = backends
        .sim
        .complete_instance(instance(65_000, vec![element(2048, Some("a.pdf"))]));
    poll_until(
        "a failed push",
        Duration::from_secs(20),
        Duration::from_millis(50),
        || async {
            Ok(backends
                .sim
                .deliveries()
                .iter()
                .any(|d| d.event_type == "app.instance.process.completed" && !d.delivered())
                .then_some(()))
        },
    )
    .await
    .unwrap();
    backends.azurite.restart().await.unwrap();

    until_confirmed(&backends, &[inst.instance_id()], Duration::from_secs(60)).await;
    backends.assert_archived(&inst).await;
    let attempts: Vec<_> = backends
        .sim
        .deliveries()
        .into_iter()
        .filter(|d| d.event_type == "app.instance.process.completed")
        .collect();
    assert!(
        attempts.iter().any(|d| d.status.is_some_and(|s| s >= 500)),
        "the webhook answered 5xx while storage was down: {attempts:?}"
    );
    assert!(
        attempts.last().is_some_and(|d| d.delivered()),
        "{attempts:?}"
    );
    assert!(
        attempts.windows(2).all(|w| w[0].event_id == w[1].event_id),
        "retries carry the same event"
    );
    assert!(backends.sim.dead_letters().is_empty());
    drop(runtime);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_webhook_input_gets_a_clear_4xx() {
    let backends = Backends::start().await;
    let runtime = Standalone::start(&backends).await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let post = |body: Vec<u8>, content_type: &'static str| {
        let request = client
            .post(runtime.webhook_url(Some(WEBHOOK_SECRET)))
            .header("content-type", content_type)
            .body(body);
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.text().await.unwrap_or_default())
        }
    };
    let (status, body) = post(b"{\"id\":\"\xff\xfe\"}".to_vec(), "application/json").await;
    assert_eq!(status, 400, "invalid UTF-8: {body}");
    assert!(body.contains("error"), "{body}");
    assert_eq!(
        post(vec![b'x'; 2 * 1024 * 1024], "application/json")
            .await
            .0,
        413,
        "huge body"
    );
    assert_eq!(
        post(b"{}".to_vec(), "text/xml").await.0,
        415,
        "wrong content type"
    );
    assert_eq!(
        post(b"{\"id\":\"1\"}".to_vec(), "application/json").await.0,
        400,
        "missing attributes"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        backends
            .azurite
            .queue_texts("events-inbound")
            .await
            .unwrap()
            .is_empty()
    );
}
