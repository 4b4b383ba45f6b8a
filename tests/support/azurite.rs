//! Azurite (the Azure Storage emulator) started by the test itself, from the project's pinned
//! `node_modules`, on free loopback ports and with its data on disk in a temporary folder — so
//! `stop()` + `restart()` keeps blobs and queued messages, which chaos tests rely on.

use std::fs::File;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use altinn_aos::storage::{AZURITE_ACCOUNT, AZURITE_KEY, StorageEndpoint};
use anyhow::{Context, anyhow, bail};
use azure_core::http::{RetryOptions, StatusCode};

use super::app::MessageEncoding;
use super::process::GroupChild;
use super::queue::Queues;
use super::{app_root, free_port, poll_until};

/// How long Azurite may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long Azurite gets to flush its database on SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// A running (or stopped) Azurite instance owned by one test.
pub struct Azurite {
    child: Option<GroupChild>,
    blob_port: u16,
    queue_port: u16,
    table_port: u16,
    /// Azurite's workspace (`--location`) and log file; deleted on drop.
    dir: tempfile::TempDir,
    queues: Queues,
}

impl Azurite {
    /// Starts Azurite on free ports and waits until the blob and queue services accept
    /// connections.
    pub async fn start() -> anyhow::Result<Azurite> {
        let (blob_port, queue_port, table_port) = (free_port()?, free_port()?, free_port()?);
        let dir = tempfile::Builder::new()
            .prefix("azurite-")
            .tempdir()
            .context("creating Azurite's data folder")?;
        let connection_string = connection_string_for(blob_port, queue_port);
        let mut azurite = Azurite {
            child: None,
            blob_port,
            queue_port,
            table_port,
            dir,
            queues: Queues::new(&connection_string)?,
        };
        azurite.launch().await?;
        Ok(azurite)
    }

    /// `DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=…;BlobEndpoint=…;QueueEndpoint=…;`
    pub fn connection_string(&self) -> String {
        connection_string_for(self.blob_port, self.queue_port)
    }

    /// `http://127.0.0.1:<blob port>/devstoreaccount1`
    pub fn blob_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{AZURITE_ACCOUNT}", self.blob_port)
    }

    /// `http://127.0.0.1:<queue port>/devstoreaccount1`
    pub fn queue_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{AZURITE_ACCOUNT}", self.queue_port)
    }

    /// Queue helpers bound to this instance.
    pub fn queues(&self) -> &Queues {
        &self.queues
    }

    /// The Azurite (node) process id while it runs, for CPU and memory readings.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(GroupChild::id)
    }

    /// Azurite's data folder (`--location`): blobs are stored on disk here, not in memory.
    pub fn data_dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Stops Azurite gracefully (SIGTERM, so it saves its database), killing it if it does not
    /// exit within 10 s. The data folder and ports are kept for [`Azurite::restart`].
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child
                .terminate(STOP_GRACE)
                .await
                .context("stopping Azurite")?;
        }
        Ok(())
    }

    /// Starts Azurite again on the same ports and data folder.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop().await?;
        self.launch().await
    }

    /// Creates a blob container (an existing one is fine).
    pub async fn create_container(&self, name: &str) -> anyhow::Result<()> {
        let blobs = StorageEndpoint::blobs_from_connection_string(&self.connection_string())
            .map_err(|e| anyhow!("blob connection string: {e}"))?
            .with_retry(RetryOptions::none());
        match blobs.container(name)?.create(None).await {
            Err(e) if e.http_status() == Some(StatusCode::Conflict) => Ok(()),
            other => other
                .map(drop)
                .with_context(|| format!("creating container `{name}`")),
        }
    }

    /// The texts of up to 32 visible messages in `queue` (peeked, so they stay), decoded from
    /// base64 as the Functions host stores them; empty for a missing queue.
    pub async fn queue_texts(&self, queue: &str) -> anyhow::Result<Vec<String>> {
        self.queues.peek_texts(queue, MessageEncoding::Base64).await
    }

    /// Enqueues `text` base64-encoded, as the queue trigger expects (`messageEncoding: base64`);
    /// creates the queue if needed.
    pub async fn put_message(&self, queue: &str, text: &str) -> anyhow::Result<()> {
        self.queues
            .send(queue, text.as_bytes(), MessageEncoding::Base64)
            .await
    }

    /// Enqueues `text` exactly as given (e.g. deliberately not base64).
    pub async fn put_raw_message(&self, queue: &str, text: &str) -> anyhow::Result<()> {
        self.queues.send_raw(queue, text).await
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("azurite.log")
    }

    async fn launch(&mut self) -> anyhow::Result<()> {
        let command = self.command()?;
        let child = self.child.insert(GroupChild::spawn(command)?);
        let ports = [self.blob_port, self.queue_port];
        let result = poll_until(
            "Azurite to accept connections",
            START_TIMEOUT,
            Duration::from_millis(50),
            || {
                let state = child.try_wait();
                async move {
                    match state? {
                        Some(status) => bail!("Azurite exited during start-up ({status})"),
                        None => Ok(ports.iter().all(|p| accepts(*p)).then_some(())),
                    }
                }
            },
        )
        .await;
        result.map_err(|e| anyhow!("{e:#}\n--- azurite.log ---\n{}", self.log_tail()))
    }

    fn command(&self) -> anyhow::Result<Command> {
        let script = app_root().join("node_modules/azurite/dist/src/azurite.js");
        if !script.is_file() {
            bail!(
                "{} is missing: run `npm ci` in {} to install the pinned Azurite",
                script.display(),
                app_root().display()
            );
        }
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .context("opening azurite.log")?;
        let mut command = Command::new("node");
        command
            .arg(&script)
            .args([
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                &self.blob_port.to_string(),
            ])
            .args([
                "--queueHost",
                "127.0.0.1",
                "--queuePort",
                &self.queue_port.to_string(),
            ])
            .args([
                "--tableHost",
                "127.0.0.1",
                "--tablePort",
                &self.table_port.to_string(),
            ])
            .args([
                "--skipApiVersionCheck",
                "--loose",
                "--disableTelemetry",
                "--silent",
            ])
            .arg("--location")
            .arg(self.dir.path())
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log));
        Ok(command)
    }

    /// The last lines Azurite wrote, for start-up error messages.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

fn connection_string_for(blob_port: u16, queue_port: u16) -> String {
    format!(
        "DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};\
         BlobEndpoint=http://127.0.0.1:{blob_port}/{AZURITE_ACCOUNT};\
         QueueEndpoint=http://127.0.0.1:{queue_port}/{AZURITE_ACCOUNT};"
    )
}

/// Whether something accepts TCP connections on the loopback port.
fn accepts(port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok()
}
