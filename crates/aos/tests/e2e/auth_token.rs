//! The Altinn token provider against the simulator: grant → exchange → cache, single-flight
//! refresh, expiry, 401 handling, exchange body formats, `TestMode`, error classification.

use std::sync::Arc;
use std::time::{Duration, Instant};

use altinn_aos::AltinnClient;
use altinn_aos::AltinnTokenProvider;
use altinn_aos::config::{Settings, TokenSettings};
use altinn_aos::domain::InstanceRef;
use altinn_aos::{AccessToken, TokenError, TokenProvider, altinn_provider};
use altinn_sim::{ExchangeBody, Fault, FaultRule, InstanceSpec, SimulatorHandle};
use aos_testkit::auth::*;

async fn provider(settings: &Settings) -> Arc<AltinnTokenProvider> {
    let TokenSettings::Maskinporten(m) = &settings.token else {
        panic!("Maskinporten settings expected")
    };
    Arc::new(
        altinn_provider(m, &settings.platform_base_url)
            .await
            .expect("provider"),
    )
}

fn instance(sim: &SimulatorHandle, settings: &Settings) -> InstanceRef {
    let created = sim.add_instance(InstanceSpec {
        org: "ttd".into(),
        app: "auth-app".into(),
        party_id: 50001337,
        elements: vec![],
        process_ended: true,
    });
    let event = sim.completed_event(&created);
    InstanceRef::from_source(
        event["source"].as_str().expect("source"),
        &settings.apps_base_url,
    )
    .expect("instance ref")
}

fn client(settings: &Settings, tokens: Arc<dyn TokenProvider>) -> AltinnClient {
    AltinnClient::new(
        settings.apps_base_url.clone(),
        settings.platform_base_url.clone(),
        tokens,
    )
}

/// `exp` of a JWT, seconds since the epoch.
fn jwt_exp(token: &AccessToken) -> f64 {
    use base64::Engine as _;
    let payload = token.secret().split('.').nth(1).expect("payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice::<serde_json::Value>(&bytes).expect("JSON")["exp"]
        .as_f64()
        .expect("exp")
}

fn storage_statuses(sim: &SimulatorHandle) -> Vec<u16> {
    sim.calls()
        .iter()
        .filter(|c| c.path.starts_with("/storage/"))
        .map(|c| c.status)
        .collect()
}

#[tokio::test]
async fn grant_then_exchange_gives_a_token_storage_accepts() {
    let world = cert_world(&[]).await;
    let tokens = provider(&world.settings).await;
    let inst = instance(&world.sim, &world.settings);
    let fetched = client(&world.settings, tokens.clone())
        .get_instance(&inst)
        .await
        .expect("instance read");
    assert_eq!(
        fetched.instance.id.as_deref(),
        Some(inst.instance_id().as_str())
    );
    assert_eq!((world.sim.grants(), world.sim.exchanges()), (1, 1));
    let exchange = &world.sim.exchange_requests()[0];
    assert_eq!(
        (exchange.status, exchange.test, exchange.accept.as_deref()),
        (200, false, Some("text/plain"))
    );
    assert_eq!(storage_statuses(&world.sim), vec![200]);
}

#[tokio::test]
async fn test_mode_adds_test_true_to_the_exchange() {
    let world = cert_world(&[("AltinnApplicationOwnerSystemSettings__TestMode", "true")]).await;
    provider(&world.settings)
        .await
        .token()
        .await
        .expect("token");
    assert!(world.sim.exchange_requests()[0].test);
}

#[tokio::test]
async fn exchange_body_may_be_json_quoted_or_plain() {
    for body in [ExchangeBody::JsonQuoted, ExchangeBody::Plain] {
        let world = cert_world(&[]).await;
        world.sim.set_exchange_body(body);
        let tokens = provider(&world.settings).await;
        let token = tokens
            .token()
            .await
            .unwrap_or_else(|e| panic!("{body:?}: {e}"));
        assert!(!token.secret().starts_with('"'), "{body:?}: quotes removed");
        let inst = instance(&world.sim, &world.settings);
        client(&world.settings, tokens)
            .get_instance(&inst)
            .await
            .unwrap_or_else(|e| panic!("{body:?}: {e}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_hundred_concurrent_callers_cause_one_grant_and_one_exchange() {
    let world = cert_world(&[]).await;
    let tokens = provider(&world.settings).await;
    let calls = (0..500).map(|_| {
        let tokens = tokens.clone();
        tokio::spawn(async move { tokens.token().await })
    });
    let results = futures::future::join_all(calls).await;
    let first = results[0]
        .as_ref()
        .expect("joined")
        .as_ref()
        .expect("token")
        .clone();
    for result in &results {
        assert!(
            result.as_ref().expect("joined").as_ref().expect("token") == &first,
            "every caller gets the same token"
        );
    }
    assert_eq!((world.sim.grants(), world.sim.exchanges()), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_instance_reads_share_one_token() {
    let world = cert_world(&[]).await;
    let altinn = client(&world.settings, provider(&world.settings).await);
    let inst = instance(&world.sim, &world.settings);
    let reads = (0..100).map(|_| {
        let (altinn, inst) = (altinn.clone(), inst.clone());
        tokio::spawn(async move { altinn.get_instance(&inst).await })
    });
    for read in futures::future::join_all(reads).await {
        read.expect("joined").expect("instance read");
    }
    assert_eq!((world.sim.grants(), world.sim.exchanges()), (1, 1));
    assert_eq!(storage_statuses(&world.sim).len(), 100);
}

#[tokio::test]
async fn token_is_refreshed_once_shortly_before_it_expires() {
    let world = cert_world(&[]).await;
    // The exp claim has whole seconds, so the client sees a lifetime in (3 s, 4 s]: it must
    // refresh 10 % early (0.3–0.4 s before exp), i.e. once within 4.5 s, and never let a call
    // go out with an expired token.
    world.sim.set_altinn_token_lifetime(Duration::from_secs(4));
    let tokens = provider(&world.settings).await;
    let altinn = client(&world.settings, tokens.clone());
    let inst = instance(&world.sim, &world.settings);
    let first = tokens.token().await.expect("token");
    let start = Instant::now();
    let mut seen = vec![first.clone()];
    while start.elapsed() < Duration::from_millis(4500) {
        altinn
            .get_instance(&inst)
            .await
            .expect("every read succeeds");
        let current = tokens.token().await.expect("token");
        if seen.last() != Some(&current) {
            let old_exp = jwt_exp(seen.last().expect("a token"));
            let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos() as f64 / 1e9;
            assert!(
                now < old_exp - 0.1,
                "refreshed {:.2} s before exp: not early enough",
                old_exp - now
            );
            seen.push(current);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen.len(), 2, "exactly one refresh");
    assert_eq!((world.sim.grants(), world.sim.exchanges()), (2, 2));
    assert!(
        storage_statuses(&world.sim).iter().all(|s| *s == 200),
        "refreshed before Altinn refused the old token"
    );
}

#[tokio::test]
async fn a_401_from_altinn_drops_the_token_and_retries_once() {
    let world = cert_world(&[]).await;
    let tokens = provider(&world.settings).await;
    let altinn = client(&world.settings, tokens.clone());
    let inst = instance(&world.sim, &world.settings);
    altinn.get_instance(&inst).await.expect("warm up");
    let before = tokens.token().await.unwrap();

    world.sim.inject(FaultRule {
        path_contains: "/storage/".into(),
        fault: Fault::Status(401),
        times: 1,
    });
    altinn
        .get_instance(&inst)
        .await
        .expect("the retry with a fresh token succeeds");
    assert_eq!(storage_statuses(&world.sim), vec![200, 401, 200]);
    assert_eq!((world.sim.grants(), world.sim.exchanges()), (2, 2));
    assert!(
        tokens.token().await.unwrap() != before,
        "the refused token was dropped"
    );

    world.sim.inject(FaultRule {
        path_contains: "/storage/".into(),
        fault: Fault::Status(401),
        times: 2,
    });
    let err = altinn
        .get_instance(&inst)
        .await
        .expect_err("a second 401 is an error, not a loop");
    assert!(err.to_string().contains("401"), "{err}");
    assert_eq!(storage_statuses(&world.sim), vec![200, 401, 200, 401, 401]);
    assert_eq!(world.sim.grants(), 3, "one refresh per call");
}

#[tokio::test]
async fn invalidate_drops_only_the_refused_token() {
    let world = cert_world(&[]).await;
    let tokens = provider(&world.settings).await;
    let t1 = tokens.token().await.unwrap();
    tokens.invalidate(&AccessToken::new("some other token"));
    assert!(tokens.token().await.unwrap() == t1);
    assert_eq!(world.sim.grants(), 1);
    tokens.invalidate(&t1);
    let t2 = tokens.token().await.unwrap();
    assert!(t2 != t1);
    tokens.invalidate(&t1); // a late 401 on the old token
    assert!(tokens.token().await.unwrap() == t2);
    assert_eq!(world.sim.grants(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_grant_is_permanent_and_shared_by_waiting_callers() {
    let sim = simulator().await;
    let pki = Pki::new();
    // The client is not registered: Maskinporten refuses every grant.
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "c.pem", pki.pem().as_bytes());
    let settings = settings(&sim, &[(CERT_PATH, path.to_str().unwrap())]);
    let tokens = provider(&settings).await;
    let calls = (0..50).map(|_| {
        let tokens = tokens.clone();
        tokio::spawn(async move { tokens.token().await })
    });
    for result in futures::future::join_all(calls).await {
        let err = result.expect("joined").expect_err("refused");
        assert!(
            matches!(err, TokenError::Refused { status: 400, .. }),
            "{err}"
        );
        assert!(!err.is_retryable());
        assert!(
            err.to_string().contains("invalid_grant")
                && err.to_string().contains("not a registered client"),
            "{err}"
        );
    }
    assert_eq!(sim.grants(), 1, "waiting callers share the failure");
    assert!(tokens.token().await.is_err());
    assert_eq!(sim.grants(), 2, "a later caller tries again");
}

#[tokio::test]
async fn maskinporten_5xx_is_retryable_and_recovers() {
    let world = cert_world(&[]).await;
    let tokens = provider(&world.settings).await;
    world.sim.inject(FaultRule {
        path_contains: "/maskinporten/token".into(),
        fault: Fault::Status(503),
        times: 1,
    });
    let err = tokens.token().await.expect_err("503");
    assert!(err.is_retryable(), "{err}");
    assert!(
        matches!(err, TokenError::Status { status: 503, .. }),
        "{err}"
    );
    tokens.token().await.expect("the next call gets a token");
    world.sim.inject(FaultRule {
        path_contains: "/maskinporten/token".into(),
        fault: Fault::RetryAfter(1),
        times: 1,
    });
    tokens.invalidate(&tokens.token().await.unwrap());
    assert!(tokens.token().await.expect_err("429").is_retryable());
}

#[tokio::test]
async fn exchange_refusal_is_permanent() {
    let world = cert_world(&[]).await;
    // Maskinporten tokens that are dead on arrival: Altinn answers 401.
    world.sim.set_maskinporten_token_lifetime(Duration::ZERO);
    let err = provider(&world.settings)
        .await
        .token()
        .await
        .expect_err("exchange refused");
    assert!(
        matches!(err, TokenError::Status { status: 401, .. }),
        "{err}"
    );
    assert!(
        err.to_string()
            .starts_with("Altinn token exchange: HTTP 401"),
        "{err}"
    );
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn unreachable_platform_is_retryable() {
    let world = cert_world(&[]).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut settings = world.settings.clone();
    settings.platform_base_url =
        altinn_aos::domain::BaseUrl::parse(&format!("http://{closed}/")).expect("base url");
    let err = provider(&settings)
        .await
        .token()
        .await
        .expect_err("connection refused");
    assert!(matches!(err, TokenError::Transport { .. }), "{err}");
    assert!(err.is_retryable());
}
