//! `aos check-config` run as a process against the simulator, with settings in the
//! environment as a Function App would have them.

use std::process::Output;

use altinn_sim::SimulatorHandle;
use aos_testkit::auth::*;
use p12_keystore::EncryptionAlgorithm;
use time::OffsetDateTime;

/// Runs `aos check-config` with exactly `pairs` as its environment (and no `--settings`, so
/// nothing else), in an empty directory.
async fn check_config(pairs: Vec<(String, String)>) -> Output {
    let cwd = tempfile::tempdir().expect("temp dir");
    tokio::process::Command::new(env!("CARGO_BIN_EXE_aos"))
        .arg("check-config")
        .current_dir(cwd.path())
        .env_clear()
        .envs(pairs)
        .output()
        .await
        .expect("aos runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn p12_pairs(sim: &SimulatorHandle, dir: &std::path::Path, pki: &Pki) -> Vec<(String, String)> {
    let path = write(
        dir,
        "client.p12",
        &pki.pkcs12(PASSWORD, EncryptionAlgorithm::PbeWithShaAnd3KeyTripleDesCbc),
    );
    settings_pairs(
        sim,
        &[
            (CERT_PATH, path.to_str().unwrap()),
            (CERT_PASSWORD, PASSWORD),
        ],
    )
}

#[tokio::test]
async fn reports_client_certificate_and_token_expiry() {
    let sim = simulator().await;
    let pki = Pki::new();
    sim.register_client(CLIENT_ID, pki.client_key(), &SCOPES);
    let dir = tempfile::tempdir().unwrap();
    let output = check_config(p12_pairs(&sim, dir.path(), &pki)).await;
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        text(&output.stderr)
    );
    for expected in [
        &format!("client id: {CLIENT_ID}"),
        "certificate subject: C=NO, O=altinn-aos test-only PKI, CN=test-only business certificate",
        "certificate issuer: C=NO, O=altinn-aos test-only PKI, CN=test-only intermediate CA",
        "days left)",
        "maskinporten: grant accepted (expires in 120 s",
        "altinn: token exchanged; it expires ",
    ] {
        assert!(
            stdout.contains(expected),
            "missing `{expected}` in:\n{stdout}"
        );
    }
    // The simulator's Altinn token lives 1800 s; a second may pass before it is printed.
    assert!(
        stdout.contains("(in 1800 s)") || stdout.contains("(in 1799 s)"),
        "token expiry missing in:\n{stdout}"
    );
    assert!(stdout.trim_end().ends_with("ok"), "{stdout}");
    assert!(
        !stdout.contains("eyJ") && !text(&output.stderr).contains("eyJ"),
        "no token is printed:\n{stdout}"
    );
    assert_eq!((sim.grants(), sim.exchanges()), (1, 1));
}

#[tokio::test]
async fn reports_the_kid_of_a_jwk() {
    let sim = simulator().await;
    let key = jwk_key("test-only-kid-7");
    sim.register_client(CLIENT_ID, key.client_key.clone(), &SCOPES);
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "client.jwk",
        key.private_jwk.to_string().as_bytes(),
    );
    let output = check_config(settings_pairs(&sim, &[(JWK_PATH, path.to_str().unwrap())])).await;
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        text(&output.stderr)
    );
    assert!(
        stdout.contains("key: JWK with kid `test-only-kid-7`"),
        "{stdout}"
    );
    assert!(!stdout.contains(key.private_jwk["d"].as_str().unwrap()));
}

#[tokio::test]
async fn warns_about_a_certificate_that_expires_soon() {
    let sim = simulator().await;
    let now = OffsetDateTime::now_utc();
    let pki = Pki::with_leaf_validity(
        now - time::Duration::days(1),
        now + time::Duration::days(10),
    );
    sim.register_client(CLIENT_ID, pki.client_key(), &SCOPES);
    let dir = tempfile::tempdir().unwrap();
    let output = check_config(p12_pairs(&sim, dir.path(), &pki)).await;
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(
        stdout.contains("(WARNING: expires in 9 days; renew it)"),
        "{stdout}"
    );
    // Log lines go to stderr (stdout is the command's data).
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("WARN") && stderr.contains("expires soon"),
        "the start-up warning is logged:\n{stderr}"
    );
}

#[tokio::test]
async fn a_refused_grant_is_one_line_and_exit_1() {
    let sim = simulator().await;
    let pki = Pki::new(); // not registered
    let dir = tempfile::tempdir().unwrap();
    let output = check_config(p12_pairs(&sim, dir.path(), &pki)).await;
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let expected = format!(
        "aos: check-config: grant to {}/token failed: Maskinporten refused the grant (HTTP 400): invalid_grant: iss `{CLIENT_ID}` is not a registered client",
        sim.maskinporten_url()
    );
    assert_eq!(stderr.trim_end(), expected);
    assert!(
        text(&output.stdout).contains("certificate subject:"),
        "what was found is still shown"
    );
}

#[tokio::test]
async fn a_failed_exchange_is_one_line_and_exit_1() {
    let sim = simulator().await;
    let pki = Pki::new();
    sim.register_client(CLIENT_ID, pki.client_key(), &SCOPES);
    sim.set_maskinporten_token_lifetime(std::time::Duration::ZERO);
    let dir = tempfile::tempdir().unwrap();
    let output = check_config(p12_pairs(&sim, dir.path(), &pki)).await;
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("aos: check-config: exchange at ") && stderr.contains("HTTP 401"),
        "{stderr}"
    );
}

#[tokio::test]
async fn bad_settings_are_one_line_naming_the_setting_and_exit_2() {
    let sim = simulator().await;
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();

    let mut pairs = p12_pairs(&sim, dir.path(), &pki);
    pairs.retain(|(k, _)| !k.ends_with("MaskinPortenClientId"));
    let output = check_config(pairs).await;
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        text(&output.stderr).trim_end(),
        "aos: setting AltinnApplicationOwnerSystemSettings__MaskinPortenClientId: is required but not set"
    );

    let mut pairs = p12_pairs(&sim, dir.path(), &pki);
    for (k, v) in &mut pairs {
        if k.ends_with("CertPassword") {
            *v = "wrong".into();
        }
    }
    let output = check_config(pairs).await;
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!("aos: setting {CERT_PATH}: wrong password")),
        "{stderr}"
    );
    assert!(!stderr.contains("wrong\n") && !stderr.contains(PASSWORD));
    assert_eq!(sim.grants(), 0);
}

#[tokio::test]
async fn static_token_needs_no_maskinporten() {
    let sim = simulator().await;
    let mut pairs = settings_pairs(
        &sim,
        &[("AltinnApplicationOwnerSystemSettings__AltinnToken", "dev")],
    );
    // A fixed token with Maskinporten settings is refused (see the next test).
    pairs.retain(|(k, _)| !k.contains("Maskinporten") && !k.contains("MaskinPorten"));
    let output = check_config(pairs).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(text(&output.stdout).contains("the fixed AltinnToken setting"));
    assert_eq!(sim.grants(), 0);
}

#[tokio::test]
async fn a_static_token_beside_maskinporten_settings_is_refused_naming_both() {
    let sim = simulator().await;
    let output = check_config(settings_pairs(
        &sim,
        &[("AltinnApplicationOwnerSystemSettings__AltinnToken", "dev")],
    ))
    .await;
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(
            "aos: setting AltinnApplicationOwnerSystemSettings__AltinnToken: cannot be used together with \
             AltinnApplicationOwnerSystemSettings__MaskinportenBaseAddress, \
             AltinnApplicationOwnerSystemSettings__MaskinPortenClientId"
        ),
        "{stderr}"
    );
    assert_eq!(sim.grants(), 0);
}
