//! Long-run hardening (issue 13's remaining gaps), through the real binary: a certificate put
//! into Key Vault before Maskinporten knows it does not stop the working one.

use std::time::Duration;

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
