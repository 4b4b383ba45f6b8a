//! Azurite, the Azure Storage emulator, started as a child process: the one launcher behind
//! `aos dev` and the tests.
//!
//! It runs `node_modules/azurite` from the project's npm lock file (`npm ci` installs it) on
//! free loopback ports, with its data on disk in a temporary folder, so [`Azurite::stop`] +
//! [`Azurite::restart`] keep blobs and queued messages (chaos tests rely on that).
//!
//! - [`Azurite`] — start, stop, restart, endpoints and the connection string;
//! - [`GroupChild`] — a child process that cannot outlive its parent (used for Azurite here and
//!   for the `aos` processes the tests start).

mod child;

use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};

pub use child::GroupChild;

/// Azurite's well-known development account (public; the same in every Azurite).
pub const ACCOUNT: &str = "devstoreaccount1";
/// Azurite's well-known development account key (public; the same in every Azurite).
pub const KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// How long Azurite may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Starts on fresh ports when a port was taken before Azurite bound it ([`Azurite::start`]).
const START_ATTEMPTS: usize = 3;
/// How long Azurite gets to flush its database on SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// A running (or stopped) Azurite; killed with its process group when dropped.
pub struct Azurite {
    child: Option<GroupChild>,
    script: PathBuf,
    blob_port: u16,
    queue_port: u16,
    table_port: u16,
    /// Azurite's workspace (`--location`) and log file; deleted on drop.
    dir: tempfile::TempDir,
}

impl Azurite {
    /// Starts Azurite from `node_modules` under `project_root` and waits until the blob and
    /// queue services accept connections; or explains what is missing.
    pub async fn start(project_root: &Path) -> anyhow::Result<Azurite> {
        let script = project_root.join("node_modules/azurite/dist/src/azurite.js");
        if Command::new("node")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_err()
        {
            bail!(
                "Azurite, the local Azure Storage emulator, needs Node.js (20) and npm: install them, then run `npm ci` in {}",
                project_root.display()
            );
        }
        if !script.is_file() {
            bail!(
                "Azurite is not installed: run `npm ci` in {} (it installs the version pinned in package-lock.json)",
                project_root.display()
            );
        }
        Self::start_on(script, free_ports).await
    }

    /// Starts Azurite (`script`) on the ports `choose` gives; after a port was taken, on the
    /// next ones it gives.
    async fn start_on(
        script: PathBuf,
        mut choose: impl FnMut() -> anyhow::Result<[u16; 3]>,
    ) -> anyhow::Result<Azurite> {
        let mut attempt = 1;
        loop {
            let [blob_port, queue_port, table_port] = choose()?;
            let dir = tempfile::Builder::new()
                .prefix("azurite-")
                .tempdir()
                .context("creating Azurite's data folder")?;
            let mut azurite = Azurite {
                child: None,
                script: script.clone(),
                blob_port,
                queue_port,
                table_port,
                dir,
            };
            match azurite.launch().await {
                Ok(()) => return Ok(azurite),
                // A port found free was taken before node bound it (an outgoing connection of
                // a test running beside this one gets its port from the same range): again,
                // on fresh ports.
                Err(e) if attempt < START_ATTEMPTS && format!("{e:#}").contains("EADDRINUSE") => {
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// `DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=…;BlobEndpoint=…;QueueEndpoint=…;`
    pub fn connection_string(&self) -> String {
        format!(
            "DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};\
             BlobEndpoint={};QueueEndpoint={};",
            self.blob_endpoint(),
            self.queue_endpoint()
        )
    }

    /// `http://127.0.0.1:<blob port>/devstoreaccount1`
    pub fn blob_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{ACCOUNT}", self.blob_port)
    }

    /// `http://127.0.0.1:<queue port>/devstoreaccount1`
    pub fn queue_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{ACCOUNT}", self.queue_port)
    }

    /// The Azurite (node) process id while it runs, for CPU and memory readings.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(GroupChild::id)
    }

    /// Azurite's data folder (`--location`): blobs are stored on disk here, not in memory.
    pub fn data_dir(&self) -> &Path {
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

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("azurite.log")
    }

    async fn launch(&mut self) -> anyhow::Result<()> {
        let command = self.command()?;
        let child = self.child.insert(GroupChild::spawn(command)?);
        let deadline = Instant::now() + START_TIMEOUT;
        let ports = [self.blob_port, self.queue_port];
        let result = loop {
            if let Some(status) = child.try_wait()? {
                break Err(anyhow!("Azurite exited during start-up ({status})"));
            }
            if ports.iter().all(|p| accepts(*p)) {
                break Ok(());
            }
            if Instant::now() >= deadline {
                break Err(anyhow!(
                    "Azurite did not accept connections within {START_TIMEOUT:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        result.map_err(|e| anyhow!("{e:#}\n--- azurite.log ---\n{}", self.log_tail()))
    }

    fn command(&self) -> anyhow::Result<Command> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .context("opening azurite.log")?;
        let mut command = Command::new("node");
        command
            .arg(&self.script)
            .args(["--blobHost", "127.0.0.1", "--blobPort"])
            .arg(self.blob_port.to_string())
            .args(["--queueHost", "127.0.0.1", "--queuePort"])
            .arg(self.queue_port.to_string())
            .args(["--tableHost", "127.0.0.1", "--tablePort"])
            .arg(self.table_port.to_string())
            // The SDK's API version is newer than Azurite's; the rest keeps it quiet and local.
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

/// A loopback port that was free a moment ago.
///
/// Binding port 0 lets the kernel choose; the listener is dropped so the child can bind it.
/// Another process could grab it in between (Azurite's start retries on fresh ports for that
/// reason) — far better than fixed ports that collide when tests run in parallel.
pub fn free_port() -> anyhow::Result<u16> {
    free_ports().map(|[port]| port)
}

/// `N` distinct loopback ports that were free a moment ago: the listeners are held until all
/// are chosen, so the kernel cannot hand out one port twice.
pub fn free_ports<const N: usize>() -> anyhow::Result<[u16; N]> {
    let listeners = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .context("binding 127.0.0.1:0 to find free ports")?;
    let mut ports = [0; N];
    for (port, listener) in ports.iter_mut().zip(&listeners) {
        *port = listener.local_addr()?.port();
    }
    Ok(ports)
}

/// Whether something accepts TCP connections on the loopback port.
fn accepts(port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok()
}

/// The project root: the nearest folder, from the working directory upwards, whose
/// `package.json` names Azurite (so an unrelated `package.json` above the checkout is passed
/// over); the working directory when there is none, so the error names where to run `npm ci`.
pub fn project_root() -> PathBuf {
    let start = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    start
        .ancestors()
        .find(|dir| {
            std::fs::read_to_string(dir.join("package.json"))
                .is_ok_and(|text| text.contains("\"azurite\""))
        })
        .map(Path::to_path_buf)
        .unwrap_or(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seen red before the retry: Azurite exited with `EADDRINUSE` and the start failed.
    #[tokio::test]
    async fn a_port_taken_before_azurite_binds_it_is_replaced_by_a_fresh_one() {
        let script = project_root().join("node_modules/azurite/dist/src/azurite.js");
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let taken_port = taken.local_addr().unwrap().port();
        let mut choices = 0;
        let mut azurite = Azurite::start_on(script, || {
            choices += 1;
            let [blob, queue, table] = free_ports()?;
            Ok(if choices == 1 {
                [taken_port, queue, table]
            } else {
                [blob, queue, table]
            })
        })
        .await
        .expect("Azurite starts on fresh ports (run `npm ci` first)");
        assert_eq!(choices, 2);
        assert_ne!(azurite.blob_port, taken_port);
        assert!(accepts(azurite.blob_port) && accepts(azurite.queue_port));
        azurite.stop().await.unwrap();
    }

    #[test]
    fn free_ports_are_distinct() {
        for _ in 0..50 {
            let [a, b, c] = free_ports().unwrap();
            assert!(a != b && b != c && a != c);
        }
    }
}
