//! The `aos` command line: bad settings stop it at start with one clear line naming every
//! setting to fix, and settings come from the environment only unless `--settings` names a file.

use std::path::Path;
use std::process::Command;

fn aos(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    aos_in(dir.path(), args, env)
}

/// Runs `aos` in `cwd` with exactly `env` (plus `PATH`).
fn aos_in(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_aos"))
        .args(args)
        .current_dir(cwd)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into(),
        String::from_utf8_lossy(&output.stderr).into(),
    )
}

const VALID: [(&str, &str); 4] = [
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
];

#[test]
fn a_missing_setting_stops_serve_with_one_line_naming_it() {
    let (code, _, stderr) = aos(&["serve", "--port", "1"], &VALID[1..]);
    assert_eq!(code, 2);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("AltinnApplicationOwnerSystemSettings__AppsBaseUrl"),
        "{stderr}"
    );
}

#[test]
fn a_malformed_setting_is_named_with_the_reason() {
    let mut env = VALID.to_vec();
    env[1].1 = "http://platform.tt02.altinn.no/";
    let (code, _, stderr) = aos(&["serve", "--port", "1"], &env);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("PlatformBaseUrl") && stderr.contains("https"),
        "{stderr}"
    );
}

#[test]
fn serve_is_the_default_under_the_functions_host() {
    let mut env = VALID.to_vec();
    env.remove(0);
    env.push(("FUNCTIONS_CUSTOMHANDLER_PORT", "1"));
    let (code, _, stderr) = aos(&[], &env);
    assert_eq!(
        code, 2,
        "it tried to serve and stopped on the missing setting: {stderr}"
    );
    assert!(stderr.contains("AppsBaseUrl"), "{stderr}");
}

#[test]
fn run_requires_the_webhook_secret() {
    let mut env = VALID.to_vec();
    env.push((
        "QueueStorageSettings__ConnectionString",
        "UseDevelopmentStorage=true",
    ));
    let (code, _, stderr) = aos(&["run", "--listen", "127.0.0.1:0"], &env);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("AltinnApplicationOwnerSystemSettings__WebhookSecret"),
        "{stderr}"
    );
}

/// A Function App's settings as an operator has them in a shell: Maskinporten with its key in
/// Key Vault, no fixed token, and (the mistake) no `BlobEndpoint`.
const PRODUCTION_WITHOUT_BLOB_ENDPOINT: [(&str, &str); 5] = [
    (
        "AltinnApplicationOwnerSystemSettings__AppsBaseUrl",
        "https://ttd.apps.tt02.altinn.no/",
    ),
    (
        "AltinnApplicationOwnerSystemSettings__PlatformBaseUrl",
        "https://platform.tt02.altinn.no/",
    ),
    (
        "AltinnApplicationOwnerSystemSettings__MaskinportenBaseAddress",
        "https://test.maskinporten.no",
    ),
    (
        "AltinnApplicationOwnerSystemSettings__MaskinPortenClientId",
        "prod-client",
    ),
    ("KeyVault__KeyVaultURI", "https://aos-prod.vault.azure.net/"),
];

/// The checkout's development file: a fixed `AltinnToken`, Azurite's connection string.
fn development_file() -> std::path::PathBuf {
    let file = aos_testkit::app_root().join("local.settings.json");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains("AltinnToken") && text.contains("UseDevelopmentStorage=true"),
        "the test relies on the development file's fixed token: {text}"
    );
    file
}

#[test]
fn a_local_settings_json_in_the_working_directory_is_never_read() {
    development_file();
    let checkout = aos_testkit::app_root();
    let (code, stdout, stderr) = aos_in(
        &checkout,
        &["check-config"],
        &PRODUCTION_WITHOUT_BLOB_ENDPOINT,
    );
    assert_eq!(code, 2, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert_eq!(
        stderr.trim_end(),
        "aos: setting AltinnApplicationOwnerSystemSettings__BlobEndpoint: is required but not set"
    );
    assert!(
        !stdout.contains("AltinnToken") && !stdout.contains("file"),
        "nothing came from the development file:\n{stdout}"
    );
}

#[test]
fn a_settings_file_is_read_only_when_named_and_check_config_shows_each_origin() {
    let file = development_file();
    let file = file.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let env = &PRODUCTION_WITHOUT_BLOB_ENDPOINT[..2];
    for args in [
        ["check-config", "--settings", file],
        ["--settings", file, "check-config"],
    ] {
        let (code, stdout, stderr) = aos_in(dir.path(), &args, env);
        assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
        assert!(stdout.contains("the fixed AltinnToken setting"), "{stdout}");
        for expected in [
            "AltinnApplicationOwnerSystemSettings__AppsBaseUrl: environment".to_string(),
            "AltinnApplicationOwnerSystemSettings__PlatformBaseUrl: environment".to_string(),
            format!("AltinnApplicationOwnerSystemSettings__BlobEndpoint: settings file {file}"),
            format!("AltinnApplicationOwnerSystemSettings__AltinnToken: settings file {file}"),
            format!("AltinnApplicationOwnerSystemSettings__AccountKey: settings file {file}"),
        ] {
            assert!(
                stdout.contains(&expected),
                "missing `{expected}` in:\n{stdout}"
            );
        }
        assert!(
            !stdout.contains("dev-token") && !stdout.contains("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1"),
            "no secret value is printed:\n{stdout}"
        );
    }

    // Named on purpose, the file still cannot slip a fixed token under Maskinporten settings.
    let (code, _, stderr) = aos_in(
        dir.path(),
        &["check-config", "--settings", file],
        &PRODUCTION_WITHOUT_BLOB_ENDPOINT,
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("AltinnApplicationOwnerSystemSettings__AltinnToken")
            && stderr.contains("AltinnApplicationOwnerSystemSettings__MaskinPortenClientId"),
        "{stderr}"
    );
}

#[test]
fn a_fixed_token_with_maskinporten_settings_stops_naming_both() {
    let mut env = VALID.to_vec();
    env.push((
        "AltinnApplicationOwnerSystemSettings__MaskinPortenClientId",
        "prod-client",
    ));
    env.push((
        "AltinnApplicationOwnerSystemSettings__MaskinPortenCertPath",
        "/keys/client.p12",
    ));
    let (code, stdout, stderr) = aos(&["check-config"], &env);
    assert_eq!(code, 2, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    for name in [
        "AltinnApplicationOwnerSystemSettings__AltinnToken",
        "AltinnApplicationOwnerSystemSettings__MaskinPortenClientId",
        "AltinnApplicationOwnerSystemSettings__MaskinPortenCertPath",
    ] {
        assert!(stderr.contains(name), "`{name}` not named: {stderr}");
    }
}

#[test]
fn every_missing_or_malformed_setting_is_named_in_one_message() {
    let mut env = VALID.to_vec();
    env.retain(|(k, _)| !k.ends_with("AppsBaseUrl") && !k.ends_with("BlobEndpoint"));
    env[0].1 = "http://platform.tt02.altinn.no/";
    let (code, _, stderr) = aos(&["serve", "--port", "1"], &env);
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    for name in [
        "setting AltinnApplicationOwnerSystemSettings__AppsBaseUrl: is required but not set",
        "setting AltinnApplicationOwnerSystemSettings__PlatformBaseUrl: ",
        "setting AltinnApplicationOwnerSystemSettings__BlobEndpoint: is required but not set",
    ] {
        assert!(stderr.contains(name), "`{name}` missing: {stderr}");
    }
}

#[test]
fn a_missing_settings_file_is_a_usage_error_naming_it() {
    let (code, _, stderr) = aos(&["check-config", "--settings", "no-such.json"], &VALID);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("no-such.json"), "{stderr}");
}

#[test]
fn version_names_the_commit_it_was_built_from() {
    let (code, stdout, _) = aos(&["--version"], &[]);
    assert_eq!(code, 0);
    let version = stdout.trim();
    assert!(
        version.starts_with(&format!("aos {} (commit ", env!("CARGO_PKG_VERSION"))),
        "{version}"
    );
    // In a git checkout (CI clones one) the commit is HEAD's.
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(aos_testkit::app_root())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    match head {
        Some(head) => assert!(
            version.ends_with(&format!("(commit {head})")),
            "{version} vs {head}"
        ),
        None => assert!(version.ends_with("(commit unknown)"), "{version}"),
    }
}
