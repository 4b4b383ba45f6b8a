//! Runs past every storage credential lifetime (design.md 2.6: with an account key, every
//! storage request carries a SAS minted within its lifetime).
//!
//! The real binary against Azurite with a key-based connection (Azurite's account name and
//! key, as the reference system's settings have them). Azurite rejects a SAS whose `se` has
//! passed, so a client that kept the SAS it was built with fails once that moment is behind
//! it. A production SAS lives two hours; the test-only `AOS_TEST_STORAGE_SAS_LIFETIME_SECS`
//! shortens it to a few seconds, and events are pushed in batches, each after more than two
//! lifetimes of waiting: every batch must be taken (200), archived byte for byte and confirmed.

use std::collections::HashSet;
use std::time::Duration;

use altinn_sim::{CreatedInstance, ElementSpec};
use aos_testkit::standalone::Standalone;
use aos_testkit::world::{Backends, TestApp, element, instance};

/// The shortened SAS lifetime handed to the process under test.
const SAS_LIFETIME: Duration = Duration::from_secs(4);
/// The test-only setting that shortens it (read by `storage.rs`).
const SAS_LIFETIME_SETTING: &str = "AOS_TEST_STORAGE_SAS_LIFETIME_SECS";
const BATCHES: u64 = 3;

/// The pause before each batch: past two lifetimes, so whatever SAS the process held at the
/// end of the previous batch has expired, and so has the one it might have re-minted since.
fn pause() -> Duration {
    SAS_LIFETIME * 2 + Duration::from_secs(1)
}

/// A batch's instances: no element, small elements, and one spanning several upload blocks.
fn shapes() -> Vec<Vec<ElementSpec>> {
    vec![
        vec![],
        vec![element(1000, Some("skjema.xml")), element(7, None)],
        vec![element(9 * 1024 * 1024 + 1, Some("stor.bin"))],
    ]
}

fn add_batch(backends: &Backends, batch: u64) -> Vec<CreatedInstance> {
    shapes()
        .into_iter()
        .enumerate()
        .map(|(i, elements)| {
            backends
                .sim
                .add_instance(instance(80_000 + batch * 10 + i as u64, elements))
        })
        .collect()
}

fn ids(created: &[CreatedInstance]) -> HashSet<String> {
    created.iter().map(|i| i.instance_id()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn aos_run_keeps_archiving_past_several_sas_lifetimes() {
    let backends = Backends::start().await;
    let lifetime = SAS_LIFETIME.as_secs().to_string();
    let runtime =
        Standalone::start_with_env(&backends, &[(SAS_LIFETIME_SETTING, lifetime.as_str())]).await;
    for batch in 0..BATCHES {
        tokio::time::sleep(pause()).await;
        let created = add_batch(&backends, batch);
        for inst in &created {
            let (status, body) = runtime
                .post_event(&backends.sim.completed_event(inst))
                .await;
            assert_eq!(
                status,
                200,
                "batch {batch}, {:?} after start: the webhook answered {body}\noutput:\n{}",
                pause() * (batch as u32 + 1),
                runtime.output().join("\n")
            );
        }
        if let Err(e) = backends
            .wait_all_confirmed(&ids(&created), Duration::from_secs(60))
            .await
        {
            panic!(
                "batch {batch}: {e}\noutput:\n{}",
                runtime.output().join("\n")
            );
        }
        for inst in &created {
            backends.assert_archived(inst).await;
        }
    }
    assert_eq!(backends.sim.guard_violations(), Vec::<String>::new());
    backends.assert_no_poison().await;
}

/// `aos serve` under the host harness: the host moves the queue messages, the handler reads and
/// writes the archive with its own blob clients — the same storage code, the same contract.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn aos_serve_keeps_archiving_past_several_sas_lifetimes() {
    let lifetime = SAS_LIFETIME.as_secs().to_string();
    let app = TestApp::spawn_with(
        Backends::start().await,
        Duration::from_millis(200),
        vec![(SAS_LIFETIME_SETTING.to_string(), lifetime)],
    )
    .await;
    for batch in 0..BATCHES {
        tokio::time::sleep(pause()).await;
        let created = add_batch(&app, batch);
        for inst in &created {
            let response = app.post_event(&app.sim.completed_event(inst)).await;
            assert_eq!(
                response.status,
                200,
                "batch {batch}: the webhook answered {}",
                response.body_text()
            );
        }
        app.host
            .wait_until_idle(Duration::from_secs(60))
            .await
            .expect("pipeline drains");
        for inst in &created {
            app.assert_archived(inst).await;
            assert!(
                app.confirmed(inst),
                "batch {batch}: instance {} not confirmed\nhandler output:\n{}",
                inst.instance_guid,
                app.host.handler_output().join("\n")
            );
        }
    }
    assert_eq!(app.sim.guard_violations(), Vec::<String>::new());
    app.assert_no_poison().await;
}
