//! The deployment package and the Function App files agree with the code.
//!
//! Mismatches here fail silently in Azure: a function folder without a route is a 404 on every
//! invocation, an output binding the code writes but `function.json` lacks is dropped by the
//! host, and a queue named differently than the settings makes `aos run`/`aos poison` work a
//! queue nobody fills. So they are checked here, without building a release binary: the
//! packaging script runs on the debug binary the test suite already built.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use altinn_aos::FUNCTIONS;
use altinn_aos::bindings::{BLOB_TRIGGER_PATHS, QueueRole, USED};
use altinn_aos::config::{SettingSource, Settings};
use serde_json::Value;

fn root() -> PathBuf {
    aos_testkit::app_root()
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Folders of the app root that hold a `function.json`.
fn function_folders() -> BTreeSet<String> {
    std::fs::read_dir(root())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.path().join("function.json").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

fn bindings_of(function: &str) -> Vec<Value> {
    let json = read_json(&root().join(function).join("function.json"));
    json["bindings"]
        .as_array()
        .unwrap_or_else(|| panic!("{function}/function.json has no bindings array"))
        .clone()
}

#[test]
fn every_function_folder_is_served_by_the_handler_and_vice_versa() {
    let folders = function_folders();
    let served: BTreeSet<String> = FUNCTIONS.iter().map(|s| s.to_string()).collect();
    assert_eq!(
        folders, served,
        "function folders (left) and FUNCTIONS routes (right) differ"
    );
}

#[test]
fn every_binding_the_code_uses_is_declared_in_function_json() {
    // The queue names the settings default to, which `aos run` and `aos poison` use.
    let settings = Settings::from_source(&SettingSource::from_pairs([
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
            "https://acct.blob.core.windows.net/",
        ),
        ("AltinnApplicationOwnerSystemSettings__AltinnToken", "t"),
    ]))
    .expect("minimal settings");
    for used in USED {
        let bindings = bindings_of(used.function);
        let declared = bindings
            .iter()
            .find(|b| b["name"] == used.name)
            .unwrap_or_else(|| {
                panic!(
                    "{}/function.json has no binding `{}` (the code uses it)",
                    used.function, used.name
                )
            });
        assert_eq!(
            (declared["type"].as_str(), declared["direction"].as_str()),
            (Some(used.kind), Some(used.direction)),
            "{}/function.json binding `{}`: type/direction",
            used.function,
            used.name
        );
        if used.kind == "blobTrigger" {
            let path = BLOB_TRIGGER_PATHS
                .iter()
                .find(|(f, _)| *f == used.function)
                .map(|(_, p)| *p);
            assert!(
                path.is_some(),
                "{}: no BLOB_TRIGGER_PATHS entry",
                used.function
            );
            assert_eq!(declared["path"].as_str(), path, "{}: path", used.function);
            // One base64 string for the content (spec §3.1), on the same account as the queues.
            assert_eq!(
                declared["dataType"], "binary",
                "{}: dataType",
                used.function
            );
            assert_eq!(
                declared["connection"], "QueueStorageSettings:ConnectionString",
                "{}: connection",
                used.function
            );
        }
        if let Some(role) = used.queue {
            let expected = match role {
                QueueRole::Inbound => &settings.queues.inbound,
                QueueRole::Confirmation => &settings.queues.confirmation,
                QueueRole::Feedback => &settings.queues.feedback,
            };
            assert_eq!(
                declared["queueName"].as_str(),
                Some(expected.as_str()),
                "{}/function.json binding `{}`: queueName must be the settings default",
                used.function,
                used.name
            );
            // Every queue binding uses the reference system's connection name, which the
            // infrastructure sets up (identity-based sub-settings under the same name).
            assert_eq!(
                declared["connection"].as_str(),
                Some("QueueStorageSettings:ConnectionString"),
                "{}/function.json binding `{}`: connection",
                used.function,
                used.name
            );
        }
    }
    // And nothing declared that the code does not know about (an output nobody writes, or a
    // trigger nobody reads, is a mistake too).
    for function in FUNCTIONS {
        for b in bindings_of(function) {
            let name = b["name"].as_str().unwrap_or_default();
            assert!(
                USED.iter()
                    .any(|u| u.function == *function && u.name == name),
                "{function}/function.json declares `{name}`, which the code does not use"
            );
        }
    }
}

#[test]
fn host_json_runs_the_aos_binary() {
    let host = read_json(&root().join("host.json"));
    let description = &host["customHandler"]["description"];
    assert_eq!(description["defaultExecutablePath"], "aos");
    assert_eq!(description["arguments"], serde_json::json!(["serve"]));
    // Flex Consumption requires the v4 bundle range.
    assert_eq!(host["extensionBundle"]["version"], "[4.*, 5.0.0)");
}

#[test]
fn package_holds_exactly_host_json_function_folders_and_the_deployment_binary() {
    let dir = tempfile::tempdir().unwrap();
    let zip = dir.path().join("altinn-aos.zip");
    // Elastic Premium: every function folder (the Flex package is checked in deploy_package).
    let output = Command::new(root().join("scripts/package"))
        .args(["--plan", "premium"])
        .arg("--binary")
        .arg(aos_testkit::deployment_binary().unwrap())
        .arg("--out")
        .arg(&zip)
        .output()
        .expect("run scripts/package");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "scripts/package failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("bytes"), "prints the size: {stdout}");
    assert!(stdout.contains("aos"), "prints the contents: {stdout}");

    // List names and unix modes with Python's zipfile (python3 is a build prerequisite here).
    let listing = Command::new("python3")
        .arg("-c")
        .arg(
            "import sys, zipfile\n\
             for i in zipfile.ZipFile(sys.argv[1]).infolist():\n\
             \x20   print(oct((i.external_attr >> 16) & 0o777), i.filename)",
        )
        .arg(&zip)
        .output()
        .expect("python3");
    assert!(listing.status.success());
    let listing = String::from_utf8_lossy(&listing.stdout);
    let entries: BTreeSet<(String, String)> = listing
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(mode, name)| (name.to_string(), mode.to_string()))
        .collect();
    let names: BTreeSet<String> = entries.iter().map(|(n, _)| n.clone()).collect();

    let mut expected: BTreeSet<String> = ["host.json".to_string(), "aos".to_string()].into();
    expected.extend(FUNCTIONS.iter().map(|f| format!("{f}/function.json")));
    assert_eq!(names, expected, "zip entries");
    assert!(
        entries.contains(&("aos".to_string(), "0o755".to_string())),
        "aos must be executable: {listing}"
    );
    assert_no_simulator_and_no_dev_command(&zip, dir.path());
}

/// The binary in the zip has no development commands and no simulator code; the test binary
/// (built with the `dev` feature) has both, so the checks can tell them apart.
fn assert_no_simulator_and_no_dev_command(zip: &Path, dir: &Path) {
    let unpacked = dir.join("unpacked");
    let status = Command::new("python3")
        .args([
            "-c",
            "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])",
        ])
        .arg(zip)
        .arg(&unpacked)
        .status()
        .expect("python3");
    assert!(status.success());
    let packaged = unpacked.join("aos");
    let mut permissions = std::fs::metadata(&packaged).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
    std::fs::set_permissions(&packaged, permissions).unwrap();

    let with_dev = Path::new(env!("CARGO_BIN_EXE_aos"));
    let (_, help, _) = run(with_dev, &["--help"]);
    assert!(
        help.contains("\n  dev ") && help.contains("\n  simulator "),
        "{help}"
    );
    assert!(contains(&std::fs::read(with_dev).unwrap(), SIMULATOR_ROUTE));

    let (code, help, _) = run(&packaged, &["--help"]);
    assert_eq!(code, Some(0));
    assert!(
        help.contains("\n  run ") && help.contains("\n  serve "),
        "{help}"
    );
    assert!(
        !help.contains("\n  dev ") && !help.contains("\n  simulator "),
        "{help}"
    );
    for command in ["dev", "simulator"] {
        let (code, _, stderr) = run(&packaged, &[command]);
        assert_eq!(code, Some(2), "aos {command}: {stderr}");
        assert!(
            stderr.contains("unrecognized subcommand"),
            "aos {command}: {stderr}"
        );
    }
    assert!(
        !contains(&std::fs::read(&packaged).unwrap(), SIMULATOR_ROUTE),
        "simulator code in the deployment binary"
    );
}

/// Runs `binary` with `args`: (exit code, stdout, stderr).
fn run(binary: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let output = Command::new(binary).args(args).output().expect("run aos");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// What marks simulator code in a binary: its control routes.
const SIMULATOR_ROUTE: &[u8] = b"/_sim/confirmations";

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn package_refuses_a_binary_built_with_the_dev_feature() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(root().join("scripts/package"))
        .arg("--binary")
        .arg(env!("CARGO_BIN_EXE_aos"))
        .arg("--out")
        .arg(dir.path().join("x.zip"))
        .output()
        .expect("run scripts/package");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("built with the dev feature"), "{stderr}");
    assert!(!dir.path().join("x.zip").exists());
}

#[test]
fn package_refuses_a_binary_that_is_not_linux_x86_64() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("aos");
    std::fs::write(&fake, b"#!/bin/sh\necho not an ELF\n").unwrap();
    let output = Command::new(root().join("scripts/package"))
        .arg("--binary")
        .arg(&fake)
        .arg("--out")
        .arg(dir.path().join("x.zip"))
        .output()
        .expect("run scripts/package");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("not a Linux x86-64 ELF"));
    assert!(!dir.path().join("x.zip").exists());
}
