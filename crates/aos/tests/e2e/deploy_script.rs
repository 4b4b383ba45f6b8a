//! `scripts/deploy` chains the deployment's outputs itself and puts the Maskinporten
//! certificate into Key Vault before the code goes live.
//!
//! The az CLI is not installable here, so a stand-in `az` on PATH records every call and
//! answers the few queries the script reads (signed-in user, deployment outputs, function
//! key). The script, `scripts/package` and the binary are the real ones.

use std::path::Path;
use std::process::Command;

const FAKE_AZ: &str = r#"#!/usr/bin/env bash
echo "$*" >> "$AZ_LOG"
case "$*" in
  "ad signed-in-user show"*) echo 11111111-2222-3333-4444-555555555555 ;;
  "deployment group create"*)
    cat <<JSON
{"hostingPlan": {"type": "String", "value": "$AZ_PLAN"},
 "keyVaultName": {"type": "String", "value": "kv-aos-test"},
 "storageAccountName": {"type": "String", "value": "staostest"},
 "functionAppName": {"type": "String", "value": "func-aos-test"},
 "webhookUrlBase": {"type": "String", "value": "https://func-aos-test.azurewebsites.net/api/EventsReceiver"}}
JSON
    ;;
  "keyvault secret set"*)
    # The file holds the certificate, base64.
    file=$(echo "$*" | sed -n 's/.*--file \([^ ]*\).*/\1/p')
    base64 -d "$file" > "$AZ_LOG.secret"
    ;;
  "functionapp function keys list"*) echo function-key-value ;;
esac
"#;

fn run_deploy(dir: &Path, plan: &str) -> (std::process::Output, Vec<String>) {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let az = bin.join("az");
    std::fs::write(&az, FAKE_AZ).unwrap();
    let mut permissions = std::fs::metadata(&az).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
    std::fs::set_permissions(&az, permissions).unwrap();
    let certificate = dir.join("maskinporten.p12");
    std::fs::write(&certificate, b"\x30\x82not-a-real-pkcs12").unwrap();
    let log = dir.join("az.log");
    let output = Command::new(aos_testkit::app_root().join("scripts/deploy"))
        .args(["-g", "rg-aos-test", "-l", "norwayeast", "--certificate"])
        .arg(&certificate)
        .arg("--binary")
        .arg(aos_testkit::deployment_binary().unwrap())
        .env(
            "PATH",
            format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
        )
        .env("AZ_LOG", &log)
        .env("AZ_PLAN", plan)
        .output()
        .expect("run scripts/deploy");
    let calls = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    (output, calls)
}

fn position(calls: &[String], prefix: &str) -> usize {
    calls
        .iter()
        .position(|c| c.starts_with(prefix))
        .unwrap_or_else(|| panic!("no `az {prefix}` call in {calls:#?}"))
}

#[test]
fn deploy_script_writes_the_certificate_before_the_code_and_chains_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let (output, calls) = run_deploy(dir.path(), "FlexConsumption");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");

    let infra = position(&calls, "deployment group create");
    let secret = position(&calls, "keyvault secret set");
    let code = position(&calls, "functionapp deployment source config-zip");
    assert!(
        infra < secret && secret < code,
        "infrastructure, then the certificate, then the code: {calls:#?}"
    );
    // Values come from the outputs and the signed-in principal, not from the user.
    assert!(
        calls[infra].contains("deployerPrincipalId=11111111-2222-3333-4444-555555555555"),
        "{}",
        calls[infra]
    );
    assert!(
        calls[secret].contains("--vault-name kv-aos-test -n maskinportenclientcert"),
        "{}",
        calls[secret]
    );
    assert!(calls[code].contains("-n func-aos-test"), "{}", calls[code]);
    // The certificate is stored as base64 of the file's bytes.
    assert_eq!(
        std::fs::read(dir.path().join("az.log.secret")).unwrap(),
        b"\x30\x82not-a-real-pkcs12"
    );
    // The Flex package: without the polling blob-trigger functions.
    assert!(
        stdout
            .contains("webhook: https://func-aos-test.azurewebsites.net/api/EventsReceiver?code="),
        "{stdout}"
    );
    assert!(
        !stdout.contains("function-key-value") && !stderr.contains("function-key-value"),
        "the function key is not printed"
    );
    assert!(
        stderr.contains("left out") || stdout.contains("left out"),
        "{stdout}\n{stderr}"
    );
}

#[test]
fn deploy_script_on_premium_uploads_the_full_package_after_the_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (output, calls) = run_deploy(dir.path(), "ElasticPremium");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let secret = position(&calls, "keyvault secret set");
    let upload = position(&calls, "storage blob upload");
    let restart = position(&calls, "functionapp restart");
    assert!(secret < upload && upload < restart, "{calls:#?}");
    assert!(
        calls[upload].contains("--account-name staostest -c app-package"),
        "{}",
        calls[upload]
    );
    assert!(
        !stdout.contains("left out"),
        "premium ships every function: {stdout}"
    );
}

#[test]
fn deploy_script_names_every_missing_argument_at_once() {
    let output = Command::new(aos_testkit::app_root().join("scripts/deploy"))
        .output()
        .expect("run scripts/deploy");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for name in ["--resource-group", "--location", "--certificate"] {
        assert!(stderr.contains(name), "{stderr}");
    }
}
