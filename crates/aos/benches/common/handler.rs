//! `aos serve` started the way the Functions host starts it: its settings in the environment,
//! `FUNCTIONS_CUSTOMHANDLER_PORT`, the app root as working directory, its output drained (a
//! full pipe would stall it), and ready once `GET /` answers 200.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::bail;

use super::http;
use aos_testkit::GroupChild;

/// Starts `binary serve` with `env`; returns the process and its port once it answers.
pub async fn start_handler(
    binary: &Path,
    env: &[(String, String)],
) -> anyhow::Result<(GroupChild, u16)> {
    start_handler_on(binary, env, None).await
}

/// [`start_handler`], pinned to CPU `cpu` when given (`taskset -c`, which execs the handler:
/// the process id is the handler's, and its runtime sees one CPU from its first instruction).
pub async fn start_handler_on(
    binary: &Path,
    env: &[(String, String)],
    cpu: Option<usize>,
) -> anyhow::Result<(GroupChild, u16)> {
    let port = aos_testkit::free_port()?;
    let mut command = match cpu {
        Some(cpu) => {
            let mut taskset = Command::new("taskset");
            taskset.arg("-c").arg(cpu.to_string()).arg(binary);
            taskset
        }
        None => Command::new(binary),
    };
    command
        .current_dir(aos_testkit::app_root())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        .env(
            "FUNCTIONS_CUSTOMHANDLER_WORKER_ID",
            uuid::Uuid::new_v4().to_string(),
        )
        .env("FUNCTIONS_APP_ROOT_PATH", aos_testkit::app_root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = GroupChild::spawn(command)?;
    for stream in child.take_output() {
        std::thread::spawn(move || {
            let mut stream = stream;
            let _ = std::io::copy(&mut stream, &mut std::io::sink());
        });
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut connection) = http::Connection::open(port).await
            && let Ok((response, _)) = connection
                .send(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                .await
            && response.status == 200
        {
            return Ok((child, port));
        }
        if Instant::now() > deadline {
            bail!("{} did not answer GET / within 30 s", binary.display());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
