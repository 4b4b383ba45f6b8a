//! Azurite for `aos dev`: the Azure Storage emulator from the project's npm lock file, started
//! as a child process on free loopback ports with its data in a temporary folder.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::storage::{AZURITE_ACCOUNT, AZURITE_KEY};

/// A running Azurite; killed when dropped.
pub struct Azurite {
    child: Child,
    pub blob_port: u16,
    pub queue_port: u16,
    _data: tempfile::TempDir,
}

impl Azurite {
    /// Starts `node_modules/azurite` under `project_root`, or explains what is missing.
    pub fn start(project_root: &Path) -> anyhow::Result<Azurite> {
        let script = project_root.join("node_modules/azurite/dist/src/azurite.js");
        if Command::new("node")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_err()
        {
            bail!(
                "aos dev needs Node.js (20) and npm to run Azurite, the local Azure Storage emulator: install them, then run `npm ci` in {}",
                project_root.display()
            );
        }
        if !script.exists() {
            bail!(
                "Azurite is not installed: run `npm ci` in {} (it installs the version pinned in package-lock.json)",
                project_root.display()
            );
        }
        let data = tempfile::Builder::new()
            .prefix("aos-dev-azurite-")
            .tempdir()?;
        let (blob_port, queue_port, table_port) = (free_port()?, free_port()?, free_port()?);
        let child = Command::new("node")
            .arg(&script)
            .args([
                "--blobHost",
                "127.0.0.1",
                "--queueHost",
                "127.0.0.1",
                "--tableHost",
                "127.0.0.1",
            ])
            .args([
                "--blobPort",
                &blob_port.to_string(),
                "--queuePort",
                &queue_port.to_string(),
                "--tablePort",
                &table_port.to_string(),
            ])
            .arg("--location")
            .arg(data.path())
            .args([
                "--skipApiVersionCheck",
                "--loose",
                "--disableTelemetry",
                "--silent",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting Azurite with node")?;
        let mut azurite = Azurite {
            child,
            blob_port,
            queue_port,
            _data: data,
        };
        azurite.wait_ready(Duration::from_secs(30))?;
        Ok(azurite)
    }

    fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("Azurite exited during start-up ({status})");
            }
            let up = |port: u16| {
                TcpStream::connect_timeout(
                    &SocketAddr::from(([127, 0, 0, 1], port)),
                    Duration::from_millis(200),
                )
                .is_ok()
            };
            if up(self.blob_port) && up(self.queue_port) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("Azurite did not accept connections within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn blob_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{AZURITE_ACCOUNT}", self.blob_port)
    }

    pub fn connection_string(&self) -> String {
        format!(
            "DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};BlobEndpoint={};QueueEndpoint=http://127.0.0.1:{}/{AZURITE_ACCOUNT};",
            self.blob_endpoint(),
            self.queue_port
        )
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The project root: where `package.json` is, searched upwards from the working directory.
pub fn project_root() -> PathBuf {
    let start = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    start
        .ancestors()
        .find(|dir| dir.join("package.json").exists())
        .map(Path::to_path_buf)
        .unwrap_or(start)
}
