//! The `aos` command line: bad settings stop it at start with one clear line naming the setting.

use std::process::Command;

fn aos(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap(); // no local.settings.json here
    let output = Command::new(env!("CARGO_BIN_EXE_aos"))
        .args(args)
        .current_dir(dir.path())
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
