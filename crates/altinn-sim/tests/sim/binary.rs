//! The `altinn-sim` binary: starts on the given address and serves the simulator.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[tokio::test]
async fn the_binary_serves_the_simulator_on_the_given_address() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_altinn-sim"))
        .args(["--listen", &format!("127.0.0.1:{port}"), "--token", "t"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(
        line.trim(),
        format!("Altinn simulator listening on http://127.0.0.1:{port}/")
    );
    let answer = reqwest::get(format!("http://127.0.0.1:{port}/_sim/confirmations"))
        .await
        .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(answer.status(), 200);
}
