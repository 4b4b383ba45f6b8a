//! Chaos: hundreds of instances through the Functions host harness while the simulator injects
//! 503s, 429s with Retry-After, truncated bodies, slow answers and failed confirms, Altinn
//! tokens expire every few seconds (the real Maskinporten grant + exchange path, against the
//! simulator), and Azurite is stopped and restarted once. Faults are sized to recover within the retry budget; the end
//! state must be exactly as without them.

use std::time::Duration;

use altinn_sim::{ElementSpec, Fault, FaultRule};
use aos_testkit::world::{Backends, TestApp, element, instance};
use rand::{Rng, SeedableRng};

const INSTANCES: u64 = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_instance_is_archived_and_confirmed_despite_faults_and_a_storage_outage() {
    let backends = Backends::start().await;
    // The real token path: a test-only certificate registered with the simulator's Maskinporten,
    // and Altinn tokens that live 4 s, so they expire (and are refreshed) throughout the run.
    let pki = aos_testkit::auth::Pki::new();
    backends.sim.register_client(
        aos_testkit::auth::CLIENT_ID,
        pki.client_key(),
        &aos_testkit::auth::SCOPES,
    );
    backends
        .sim
        .set_altinn_token_lifetime(Duration::from_secs(4));
    let key_dir = tempfile::tempdir().unwrap();
    let p12 = pki.pkcs12(
        aos_testkit::auth::PASSWORD,
        p12_keystore::EncryptionAlgorithm::PbeWithHmacSha256AndAes256,
    );
    let key_path = aos_testkit::auth::write(key_dir.path(), "client.p12", &p12);
    let settings = [
        (
            "AltinnApplicationOwnerSystemSettings__AltinnToken",
            String::new(),
        ),
        (
            "AltinnApplicationOwnerSystemSettings__MaskinportenBaseAddress",
            backends.sim.maskinporten_url().to_string(),
        ),
        (
            "AltinnApplicationOwnerSystemSettings__MaskinPortenClientId",
            aos_testkit::auth::CLIENT_ID.to_string(),
        ),
        (
            aos_testkit::auth::CERT_PATH,
            key_path.to_string_lossy().into_owned(),
        ),
        (
            aos_testkit::auth::CERT_PASSWORD,
            aos_testkit::auth::PASSWORD.to_string(),
        ),
    ];
    let overrides = settings
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let mut app = TestApp::spawn_with(backends, Duration::from_secs(1), overrides).await;
    let started = std::time::Instant::now();
    let mut rng = rand::rngs::StdRng::seed_from_u64(20261128);
    let mut created = Vec::new();
    let mut faults = 0;
    for n in 0..INSTANCES {
        let elements: Vec<ElementSpec> = (0..rng.random_range(0..4u64))
            .map(|i| {
                element(
                    if n % 25 == 0 && i == 0 {
                        1_500_000
                    } else {
                        rng.random_range(0..60_000)
                    },
                    Some("vedlegg.bin"),
                )
            })
            .collect();
        let inst = app.sim.add_instance(instance(80_000 + n, elements));
        let instance_path = format!("/instances/{}", inst.instance_id());
        let data_path = inst.elements.first().map(|e| format!("/data/{}", e.id));
        let fault = match (rng.random_range(0..8), &data_path) {
            (0, _) => Some((instance_path.clone(), Fault::Status(503), 2)),
            (1, Some(data)) => Some((data.clone(), Fault::RetryAfter(1), 1)),
            (2, Some(data)) if inst.elements[0].size > 10 => Some((
                data.clone(),
                Fault::Truncate {
                    after_bytes: inst.elements[0].size / 2,
                },
                1,
            )),
            (3, _) => Some((
                instance_path.clone(),
                Fault::Delay(Duration::from_millis(700)),
                1,
            )),
            (4, _) => Some((format!("{instance_path}/complete"), Fault::Status(500), 1)),
            _ => None,
        };
        if let Some((path_contains, fault, times)) = fault {
            app.sim.inject(FaultRule {
                path_contains,
                fault,
                times,
            });
            faults += 1;
        }
        created.push(inst);
    }
    assert!(faults > INSTANCES / 3, "enough faults: {faults}");

    for inst in &created {
        let response = app.post_event(&app.sim.completed_event(inst)).await;
        assert_eq!(response.status, 200, "{}", response.body_text());
    }
    // Storage disappears for a while in the middle of the work.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    app.backends.azurite.stop().await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    app.backends.azurite.restart().await.unwrap();

    app.host
        .wait_until_idle(Duration::from_secs(400))
        .await
        .expect("the pipeline drains");
    let elapsed = started.elapsed();
    for inst in &created {
        app.assert_archived(inst).await;
        assert!(app.confirmed(inst), "{} not confirmed", inst.instance_id());
    }
    assert_eq!(
        app.sim.guard_violations(),
        Vec::<String>::new(),
        "a confirm came before its manifest"
    );
    app.assert_no_poison().await;
    // Tokens were refreshed as they expired, about once per lifetime — not per request.
    let (grants, exchanges) = (app.sim.grants(), app.sim.exchanges());
    assert!(
        grants >= 2,
        "tokens expired and were refreshed: {grants} grants"
    );
    assert!(
        grants as f64 <= elapsed.as_secs_f64() / 3.0 + 4.0,
        "{grants} grants in {elapsed:?}"
    );
    assert_eq!(grants, exchanges);
}
