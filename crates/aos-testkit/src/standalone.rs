//! The real `aos run` process (the standalone runtime) against the test backends.

use std::io::{BufRead, BufReader};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::GroupChild;
use crate::world::Backends;
use crate::{free_port, poll_until};

pub const WEBHOOK_SECRET: &str = "test-webhook-secret";

pub struct Standalone {
    child: GroupChild,
    pub port: u16,
    output: Arc<Mutex<Vec<String>>>,
    http: reqwest::Client,
}

impl Standalone {
    /// Starts `aos run` with a short lease (3 s) and retry delay (1 s), so redelivery after a
    /// crash and retries after failures happen within a test's patience.
    pub async fn start(backends: &Backends) -> Standalone {
        Self::start_with_env(backends, &[]).await
    }

    /// Like [`Standalone::start`], with `extra` settings added to the environment.
    pub async fn start_with_env(backends: &Backends, extra: &[(&str, &str)]) -> Standalone {
        let port = free_port().unwrap();
        let mut command = Command::new(crate::aos_binary());
        command
            .args([
                "run",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--retry-delay-secs",
                "1",
                "--lease-secs",
                "3",
            ])
            .current_dir(tempfile::tempdir().unwrap().keep())
            .envs(backends.settings_env())
            .env(
                "AltinnApplicationOwnerSystemSettings__WebhookSecret",
                WEBHOOK_SECRET,
            )
            .envs(extra.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = GroupChild::spawn(command).expect("aos run starts");
        let output = Arc::new(Mutex::new(Vec::new()));
        if let Some(stdout) = child.take_stdout() {
            collect_lines(stdout, output.clone());
        }
        if let Some(stderr) = child.take_stderr() {
            collect_lines(stderr, output.clone());
        }
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let running = Standalone {
            child,
            port,
            output,
            http,
        };
        let url = format!("http://127.0.0.1:{port}/");
        let probe = running.http.clone();
        let ready = poll_until(
            "aos run to listen",
            Duration::from_secs(30),
            Duration::from_millis(25),
            || {
                let (probe, url) = (probe.clone(), url.clone());
                async move { Ok(probe.get(&url).send().await.ok().map(|_| ())) }
            },
        )
        .await;
        if let Err(e) = ready {
            panic!("{e}\noutput:\n{}", running.output().join("\n"));
        }
        running
    }

    pub fn webhook_url(&self, code: Option<&str>) -> String {
        match code {
            Some(code) => format!(
                "http://127.0.0.1:{}/api/EventsReceiver?code={code}",
                self.port
            ),
            None => format!("http://127.0.0.1:{}/api/EventsReceiver", self.port),
        }
    }

    /// POSTs an event as Altinn does, with the given `code`; returns status and body.
    pub async fn post(&self, event: &Value, code: Option<&str>) -> (u16, String) {
        let response = self
            .http
            .post(self.webhook_url(code))
            .header("content-type", "application/json; charset=utf-8")
            .body(event.to_string())
            .send()
            .await
            .expect("webhook reachable");
        (
            response.status().as_u16(),
            response.text().await.unwrap_or_default(),
        )
    }

    pub async fn post_event(&self, event: &Value) -> (u16, String) {
        self.post(event, Some(WEBHOOK_SECRET)).await
    }

    /// The `aos run` process's id (benchmarks read its CPU time).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn output(&self) -> Vec<String> {
        self.output.lock().unwrap().clone()
    }

    /// SIGKILL: the crash case — nothing gets to clean up.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
    }

    /// SIGTERM, then wait up to `grace` for a clean exit.
    pub async fn terminate(&mut self, grace: Duration) -> ExitStatus {
        self.child.terminate(grace).await.unwrap()
    }
}

fn collect_lines(stream: impl std::io::Read + Send + 'static, into: Arc<Mutex<Vec<String>>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if std::env::var_os("AOS_HARNESS_ECHO").is_some() {
                eprintln!("[aos run] {line}");
            }
            into.lock().unwrap().push(line);
        }
    });
}
