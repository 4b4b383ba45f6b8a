//! Long-run hardening (issue 13's remaining gaps), through the real binary: a certificate put
//! into Key Vault before Maskinporten knows it does not stop the working one; an unreadable
//! `functionTimeout` stops `aos serve` at start instead of silently dropping the deadline.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aos_testkit::auth::*;
use aos_testkit::world::instance;

use crate::auth_keyvault::{VaultAnswer, assert_done, fakes, serve_with_vault, vault_secret};

/// The vault's certificate is replaced by one Maskinporten does not accept (yet): the timed
/// reload reads it, Maskinporten refuses it, and the grant falls back to the certificate that
/// was working, so the next instance is archived and confirmed without a failed attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_certificate_maskinporten_refuses_does_not_replace_the_working_one() {
    let old = Pki::new();
    let fakes = fakes(vault_secret(&old)).await;
    let app = serve_with_vault(&fakes, &[("AOS_TEST_MASKINPORTEN_KEY_RELOAD_SECS", "1")]).await;
    app.sim
        .register_client(CLIENT_ID, old.client_key(), &SCOPES);
    // Altinn tokens that expire quickly, so the second instance needs a new grant.
    app.sim.set_altinn_token_lifetime(Duration::from_secs(2));

    let first = app.sim.add_instance(instance(50_101, vec![]));
    let posted = app.post_event(&app.sim.completed_event(&first)).await;
    assert_eq!(posted.status, 200);
    assert_done(&app, &first).await;
    let reads_before = fakes.authorised_reads();

    // A new certificate in the vault; Maskinporten still knows only the old one.
    fakes.answer(VaultAnswer::Secret(vault_secret(&Pki::new())));
    tokio::time::sleep(Duration::from_secs(3)).await;

    let second = app.sim.add_instance(instance(50_102, vec![]));
    let posted = app.post_event(&app.sim.completed_event(&second)).await;
    assert_eq!(posted.status, 200);
    assert_done(&app, &second).await;
    assert!(
        fakes.authorised_reads() > reads_before,
        "the new certificate was read"
    );
    assert!(
        !app.sim.grant_refusals().is_empty(),
        "the new certificate was tried and refused"
    );
    let failed = app
        .host
        .invocations()
        .iter()
        .filter(|r| !r.succeeded)
        .count();
    assert_eq!(failed, 0, "no attempt failed for the refused certificate");
}

/// `host.json` with a `functionTimeout` that is not a TimeSpan: `aos serve` stops at start with
/// one line naming the file, the setting and the value, instead of serving with no deadline
/// (and letting the host restart it at the real timeout, failing every invocation in flight).
#[test]
fn an_unreadable_function_timeout_stops_serve_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("host.json"),
        r#"{"version": "2.0", "functionTimeout": "10 minutes"}"#,
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_aos"))
        .args(["serve", "--port", "0"])
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("FUNCTIONS_APP_ROOT_PATH", dir.path())
        .envs([
            (
                "AltinnApplicationOwnerSystemSettings__AppsBaseUrl",
                "https://ttd.apps.tt02.altinn.no/",
            ),
            (
                "AltinnApplicationOwnerSystemSettings__PlatformBaseUrl",
                "https://platform.tt02.altinn.no/",
            ),
            (
                "AltinnApplicationOwnerSystemSettings__BlobEndpoint",
                "http://127.0.0.1:1/devstoreaccount1",
            ),
            ("AltinnApplicationOwnerSystemSettings__AltinnToken", "t"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(30) {
            child.kill().unwrap();
            let output = child.wait_with_output().unwrap();
            panic!(
                "aos serve kept running with an unreadable functionTimeout:\n{}",
                String::from_utf8_lossy(&output.stdout)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    for part in ["host.json", "functionTimeout", "10 minutes"] {
        assert!(stderr.contains(part), "{part}: {stderr}");
    }
}
