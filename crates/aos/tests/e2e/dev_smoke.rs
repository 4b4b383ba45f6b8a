//! `aos dev` — the newcomer's demo — runs a short batch end to end and prints its summary.

use std::process::Command;

#[test]
fn aos_dev_archives_and_confirms_a_batch_and_summarises_it() {
    let (webhook, simulator) = (
        aos_testkit::free_port().unwrap(),
        aos_testkit::free_port().unwrap(),
    );
    let output = Command::new(env!("CARGO_BIN_EXE_aos"))
        .args(["dev", "--instances", "6", "--exit-after-summary"])
        .args([
            "--listen",
            &format!("127.0.0.1:{webhook}"),
            "--simulator",
            &format!("127.0.0.1:{simulator}"),
        ])
        .current_dir(aos_testkit::app_root())
        .env_remove("AOS_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "aos dev failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("validated by the endpoint"), "{stdout}");
    assert!(
        stdout.contains("instances archived and confirmed: 6/6"),
        "{stdout}"
    );
    // The summary prints the metrics' counters as the process counted them.
    assert!(
        stdout.contains("metrics:") && stdout.contains("6 archived, 6 confirmed"),
        "{stdout}"
    );
    assert!(
        stdout.contains("archive:") && stdout.contains("/inbound"),
        "{stdout}"
    );
}
