//! `scripts/package` per hosting plan and against the Functions workers' glibc.
//!
//! Two ways a package that built fine still fails in Azure: Flex Consumption refuses to start
//! a function app holding a polling blob trigger (only `source: "EventGrid"` blob triggers run
//! there), and a binary linked against a newer glibc than the workers' Debian 12 (2.36) dies at
//! start with "GLIBC_2.xx not found". Both are checked here on real ELF files: the deployment
//! binary the suite builds, and a fixture whose version needs ask for GLIBC_2.38, linked in the
//! test against a stub `libc.so.6` (the same table the dynamic loader reads).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use altinn_aos::FUNCTIONS;
use serde_json::Value;

fn root() -> PathBuf {
    aos_testkit::app_root()
}

fn package(args: &[&str], binary: &Path, out: &Path) -> Output {
    Command::new(root().join("scripts/package"))
        .args(args)
        .arg("--binary")
        .arg(binary)
        .arg("--out")
        .arg(out)
        .output()
        .expect("run scripts/package")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The entry names of a zip, read with Python's zipfile (python3 is a prerequisite here).
fn zip_entries(zip: &Path) -> BTreeSet<String> {
    let output = Command::new("python3")
        .args([
            "-c",
            "import sys, zipfile\nfor n in zipfile.ZipFile(sys.argv[1]).namelist(): print(n)",
        ])
        .arg(zip)
        .output()
        .expect("python3");
    assert!(output.status.success(), "{}", text(&output.stderr));
    text(&output.stdout).lines().map(str::to_string).collect()
}

/// Functions whose `function.json` has a blob trigger that polls (no `source: "EventGrid"`).
fn polling_blob_trigger_functions() -> BTreeSet<String> {
    FUNCTIONS
        .iter()
        .filter(|f| {
            let path = root().join(f).join("function.json");
            let json: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            json["bindings"]
                .as_array()
                .unwrap()
                .iter()
                .any(|b| b["type"] == "blobTrigger" && b["source"].as_str() != Some("EventGrid"))
        })
        .map(|f| f.to_string())
        .collect()
}

fn expected_entries(functions: impl Iterator<Item = String>) -> BTreeSet<String> {
    let mut expected: BTreeSet<String> = ["host.json".to_string(), "aos".to_string()].into();
    expected.extend(functions.map(|f| format!("{f}/function.json")));
    expected
}

#[test]
fn flex_package_has_no_blob_trigger_function_and_every_other_function() {
    let blob_triggered = polling_blob_trigger_functions();
    assert_eq!(
        blob_triggered,
        BTreeSet::from([
            "EventsDeSubscriber".to_string(),
            "EventsSubscriber".to_string()
        ]),
        "the functions with polling blob triggers"
    );
    let binary = aos_testkit::deployment_binary().unwrap();
    let dir = tempfile::tempdir().unwrap();

    let flex = dir.path().join("flex.zip");
    let output = package(&["--plan", "flex"], &binary, &flex);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let entries = zip_entries(&flex);
    for function in &blob_triggered {
        assert!(
            !entries
                .iter()
                .any(|e| e.starts_with(&format!("{function}/"))),
            "{function} is in the Flex package: {entries:?}"
        );
    }
    assert_eq!(
        entries,
        expected_entries(
            FUNCTIONS
                .iter()
                .map(|f| f.to_string())
                .filter(|f| !blob_triggered.contains(f))
        ),
        "Flex package entries"
    );
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains("left out EventsSubscriber EventsDeSubscriber")
            || stdout.contains("left out EventsDeSubscriber EventsSubscriber"),
        "says what it left out: {stdout}"
    );

    // The default plan is Flex Consumption, the template's default.
    let default = dir.path().join("default.zip");
    let output = package(&[], &binary, &default);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(zip_entries(&default), entries, "default plan = flex");

    // Elastic Premium runs the polling blob trigger: every function ships.
    let premium = dir.path().join("premium.zip");
    let output = package(&["--plan", "premium"], &binary, &premium);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(
        zip_entries(&premium),
        expected_entries(FUNCTIONS.iter().map(|f| f.to_string())),
        "Premium package entries"
    );
}

#[test]
fn package_refuses_an_unknown_plan() {
    let dir = tempfile::tempdir().unwrap();
    let zip = dir.path().join("x.zip");
    let output = package(
        &["--plan", "consumption"],
        &aos_testkit::deployment_binary().unwrap(),
        &zip,
    );
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("--plan must be flex or premium"),
        "{}",
        text(&output.stderr)
    );
    assert!(!zip.exists());
}

/// Links an x86-64 executable whose version needs ask `libc.so.6` for GLIBC_2.38, as a binary
/// built on a newer distribution does: a stub shared library with that soname defines one
/// symbol in a `GLIBC_2.38` version node, and the executable calls it.
fn executable_needing_glibc_2_38(dir: &Path) -> PathBuf {
    std::fs::write(
        dir.join("stub.c"),
        "int aos_fixture_symbol(void) { return 0; }\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("stub.map"),
        "GLIBC_2.38 { global: aos_fixture_symbol; local: *; };\n",
    )
    .unwrap();
    // Exits at once (exit syscall) should anything ever run it.
    std::fs::write(
        dir.join("main.c"),
        "int aos_fixture_symbol(void);\n\
         void _start(void) { aos_fixture_symbol();\n\
         __asm__ volatile(\"mov $60, %eax\\n xor %edi, %edi\\n syscall\"); }\n",
    )
    .unwrap();
    let cc = |args: &[&str]| {
        let output = Command::new("cc")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("cc (the C compiler Rust links with)");
        assert!(
            output.status.success(),
            "cc {args:?}: {}",
            text(&output.stderr)
        );
    };
    cc(&[
        "-shared",
        "-fPIC",
        "-nostdlib",
        "-Wl,-soname,libc.so.6",
        "-Wl,--version-script=stub.map",
        "-o",
        "libc.so.6",
        "stub.c",
    ]);
    cc(&["-nostdlib", "-no-pie", "-o", "aos", "main.c", "./libc.so.6"]);
    // What binutils reads from it: the loader's version-needs table holds GLIBC_2.38.
    let readelf = Command::new("readelf")
        .args(["-V", "aos"])
        .current_dir(dir)
        .output();
    if let Ok(readelf) = readelf {
        let table = text(&readelf.stdout);
        assert!(table.contains("Name: GLIBC_2.38"), "{table}");
    }
    dir.join("aos")
}

#[test]
fn package_refuses_a_binary_that_needs_a_newer_glibc_than_the_workers() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = executable_needing_glibc_2_38(dir.path());
    let zip = dir.path().join("x.zip");
    let output = package(&[], &fixture, &zip);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("needs glibc 2.38, newer than 2.36"),
        "names the version: {stderr}"
    );
    assert!(
        stderr.contains("rust:1-bookworm"),
        "says how to build instead: {stderr}"
    );
    assert!(!zip.exists(), "no zip for a refused binary");
}

#[test]
fn package_reads_the_version_needs_not_strings_and_accepts_the_normal_build() {
    let dir = tempfile::tempdir().unwrap();
    // The normal build passes and says what it needs.
    let binary = aos_testkit::deployment_binary().unwrap();
    let output = package(&[], &binary, &dir.path().join("ok.zip"));
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let needed = stdout
        .lines()
        .find_map(|l| l.split_once("needs glibc >= ").map(|(_, v)| v.to_string()))
        .unwrap_or_else(|| panic!("prints the glibc it needs: {stdout}"));
    let minor: u32 = needed
        .split(' ')
        .next()
        .and_then(|v| v.strip_prefix("2."))
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("a glibc 2.x version: {needed}"));
    assert!(minor <= 36, "{needed}");

    // The same binary with a newer version's name as mere bytes in the file: still accepted,
    // because the loader never asks for it.
    let padded = dir.path().join("aos");
    let mut bytes = std::fs::read(&binary).unwrap();
    bytes.extend_from_slice(b"\0GLIBC_2.99\0GLIBC_2.38\0");
    std::fs::write(&padded, bytes).unwrap();
    let mut permissions = std::fs::metadata(&padded).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
    std::fs::set_permissions(&padded, permissions).unwrap();
    let output = package(&[], &padded, &dir.path().join("padded.zip"));
    assert!(
        output.status.success(),
        "a GLIBC_2.99 string outside the version needs: {}",
        text(&output.stderr)
    );
    assert!(
        text(&output.stdout).contains(&format!("needs glibc >= {needed}")),
        "{}",
        text(&output.stdout)
    );
}
