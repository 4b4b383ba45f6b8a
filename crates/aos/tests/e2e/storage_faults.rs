//! Storage faults: the product works through the test kit's storage proxy, which answers a
//! share of its blob and queue requests with 503 `ServerBusy`, 500, 408, resets the connection
//! before or after the write, or holds the answer back (seeded, so a run can be repeated). The
//! end state must be exactly as without faults: every instance archived byte for byte and
//! confirmed, nothing in poison, no confirm before its manifest, each instance handed off
//! downstream.
//!
//! Under the Functions host the product's own storage traffic is blobs (the archive, the state
//! container) and the hand-off queue; the trigger and output queues are the host's, which talks
//! to Azurite directly. Under `aos run` every queue operation is the product's.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use altinn_sim::{CreatedInstance, ElementSpec};
use aos_testkit::poll_until;
use aos_testkit::standalone::Standalone;
use aos_testkit::storage_proxy::StorageProxy;
use aos_testkit::world::{Backends, TestApp, element, instance};
use base64::Engine as _;
use rand::{Rng, SeedableRng};
use serde_json::Value;

const SEED: u64 = 20261201;
const INSTANCES: u64 = 30;
const HANDOFF_QUEUE: &str = "aos-archived";

/// 30 instances of 0–3 elements, mostly small, every sixth with one element over the 4 MiB
/// block size (so staged blocks and a block-list commit are faulted too).
fn add_instances(backends: &Backends, party: u64) -> Vec<CreatedInstance> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(SEED);
    (0..INSTANCES)
        .map(|n| {
            let elements: Vec<ElementSpec> = (0..rng.random_range(0..4u64))
                .map(|i| {
                    let size = if n % 6 == 0 && i == 0 {
                        4 * 1024 * 1024 + rng.random_range(1..1_000_000)
                    } else {
                        rng.random_range(0..80_000)
                    };
                    element(size, Some("vedlegg.bin"))
                })
                .collect();
            backends.sim.add_instance(instance(party + n, elements))
        })
        .collect()
}

async fn until_all_confirmed(backends: &Backends, created: &[CreatedInstance]) {
    let wanted: HashSet<String> = created.iter().map(CreatedInstance::instance_id).collect();
    backends
        .wait_all_confirmed(&wanted, Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{e}; faults so far: {:?}", backends.proxy().faults()));
}

/// Everything the test expects of the end state, whatever the faults were.
async fn assert_end_state(backends: &Backends, created: &[CreatedInstance]) {
    for inst in created {
        backends.assert_archived(inst).await;
        assert!(backends.confirmed(inst));
    }
    assert_eq!(backends.sim.guard_violations(), Vec::<String>::new());
    backends.assert_no_poison().await;
    assert_handed_off(backends, created).await;
}

/// Every instance has a hand-off message (at least once): the messages are received as they
/// come, since the last ones are sent just after the last confirmation.
async fn assert_handed_off(backends: &Backends, created: &[CreatedInstance]) {
    let wanted: HashSet<String> = created.iter().map(CreatedInstance::instance_id).collect();
    let mut seen = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !wanted.is_subset(&seen) {
        let missing: Vec<_> = wanted.difference(&seen).collect();
        assert!(
            Instant::now() < deadline,
            "no hand-off message within 30 s for {missing:?}"
        );
        let batch = backends
            .azurite
            .queues()
            .receive(HANDOFF_QUEUE, 32, 300)
            .await
            .unwrap();
        if batch.is_empty() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        for message in batch {
            let text = base64::engine::general_purpose::STANDARD
                .decode(message.message_text.unwrap_or_default())
                .expect("hand-off messages are base64");
            let value: Value = serde_json::from_slice(&text).expect("hand-off messages are JSON");
            seen.insert(value["instanceId"].as_str().unwrap_or_default().to_string());
        }
    }
}

/// Prints what the proxy saw and did, and checks faults of every kind were injected.
fn report(runtime: &str, proxy: &StorageProxy, started: Instant) {
    let faults = proxy.faults();
    let requests: u64 = proxy.counts().values().sum();
    eprintln!(
        "{runtime}: {INSTANCES} instances in {:.1} s, {requests} storage requests, faults by kind: {faults:#?}\nrequests by operation: {:#?}",
        started.elapsed().as_secs_f64(),
        proxy.counts()
    );
    let kinds: BTreeMap<_, _> = faults.iter().filter(|(_, n)| **n > 0).collect();
    assert!(
        kinds.len() >= 5,
        "faults of most kinds were injected: {faults:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn under_functions_every_instance_is_archived_and_confirmed_despite_storage_faults() {
    let backends = Backends::start_behind_proxy(SEED).await;
    backends.proxy().add_typical_faults();
    let app = TestApp::spawn_with(
        backends,
        Duration::from_secs(1),
        vec![(
            "QueueStorageSettings__ArchivedQueueName".into(),
            HANDOFF_QUEUE.into(),
        )],
    )
    .await;
    let started = Instant::now();
    let created = add_instances(&app, 90_000);
    for inst in &created {
        let response = app.post_event(&app.sim.completed_event(inst)).await;
        assert_eq!(response.status, 200, "{}", response.body_text());
    }
    until_all_confirmed(&app, &created).await;
    app.host
        .wait_until_idle(Duration::from_secs(30))
        .await
        .unwrap();
    report("aos serve under the host harness", app.proxy(), started);
    app.proxy().clear_rules();
    assert_end_state(&app, &created).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn aos_run_archives_and_confirms_every_instance_despite_storage_faults() {
    let backends = Backends::start_behind_proxy(SEED + 1).await;
    backends.proxy().add_typical_faults();
    let runtime = Standalone::start_with_env(
        &backends,
        &[("QueueStorageSettings__ArchivedQueueName", HANDOFF_QUEUE)],
    )
    .await;
    let started = Instant::now();
    let created = add_instances(&backends, 91_000);
    for inst in &created {
        // The webhook answers 503 when its queue write fails after the SDK's retries; Altinn
        // retries then, and so does this loop.
        let event = backends.sim.completed_event(inst);
        poll_until(
            "the webhook to accept the event",
            Duration::from_secs(30),
            Duration::from_millis(200),
            || async {
                let (status, body) = runtime.post_event(&event).await;
                match status {
                    200 => Ok(Some(())),
                    503 => Ok(None),
                    other => anyhow::bail!("the webhook answered {other}: {body}"),
                }
            },
        )
        .await
        .unwrap();
    }
    until_all_confirmed(&backends, &created).await;
    report("aos run", backends.proxy(), started);
    backends.proxy().clear_rules();
    assert_end_state(&backends, &created).await;
    let output = runtime.output().join("\n");
    assert!(!output.contains("panicked"), "{output}");
}
