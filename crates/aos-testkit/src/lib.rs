//! The test kit for altinn-aos: what the end-to-end tests and the benchmarks use to run the real
//! `aos` binary the way Azure runs it.
//!
//! - [`host`] — a fake Azure Functions host that speaks the custom-handler protocol (built on
//!   the pure payload code in [`invocation`] and the app configuration reader in [`app`]):
//!   starts the handler with the host's environment, triggers functions over HTTP, queues,
//!   blobs and timers, retries and poisons as the host does;
//! - [`azurite`] — Azurite per test (the launcher of `aos-azurite`) with blob/queue helpers;
//!   [`blobs`], [`queue`] — storage as the host and the tests see it;
//! - [`world`] — Azurite + the Altinn simulator + the app under either runtime, in one value;
//! - [`standalone`] — `aos run` as a child process; [`cli`] — one `aos` CLI command;
//! - [`abuse`] — hostile HTTP clients on raw TCP (large, slow-body and slow-header requests)
//!   and a process's resident memory, for the edge tests;
//! - [`storage_proxy`] — an HTTP proxy in front of Azurite that counts the product's storage
//!   requests by operation and injects seeded storage faults (503, 500, 408, resets, delays);
//!   [`request_budget`] — those counts and the simulator's Altinn calls per instance;
//! - [`replicas`] — more Functions hosts on the same queues, a killed or stopped handler the
//!   host restarts, clock skew for a child process (libfaketime), the archive's whole listing;
//! - [`auth`] — test-only keys and certificates (made per run) and settings for Maskinporten
//!   against the simulator;
//! - [`GroupChild`] — child processes that cannot outlive the test.

pub mod abuse;
pub mod app;
pub mod auth;
pub mod azurite;
pub mod blobs;
pub mod cli;
pub mod host;
pub mod ingestion;
pub mod invocation;
pub mod queue;
pub mod replicas;
pub mod request_budget;
pub mod standalone;
pub mod storage_proxy;
pub mod world;

pub use aos_azurite::GroupChild;

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// The repository root, which is also the Function App root (it holds `host.json`,
/// `node_modules` and `fixtures/`).
pub fn app_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the repository root exists")
}

/// The `aos` binary under test: `$AOS_BINARY`, or the one Cargo built beside the running test
/// or bench executable (`target/<profile>/deps/<test>` → `target/<profile>/aos`). Cargo builds
/// the package's binaries before its integration tests and benches, so it is there.
pub fn aos_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("AOS_BINARY") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the test executable's path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test executable lives in target/<profile>/deps");
    profile_dir.join(format!("aos{}", std::env::consts::EXE_SUFFIX))
}

pub use aos_azurite::free_port;

/// Polls `check` every `interval` until it returns `Some`, failing after `timeout` with an error
/// that says what was awaited (so a hung test explains itself instead of timing out silently).
/// An `Err` from `check` ends the wait at once: it means the awaited state can no longer come.
pub async fn poll_until<T, F, Fut>(
    what: &str,
    timeout: Duration,
    interval: Duration,
    mut check: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check()
            .await
            .with_context(|| format!("while waiting for {what}"))?
        {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(interval).await;
    }
}

/// The `aos` binary as the deployment package ships it: built without the `dev` feature (no
/// simulator, no Azurite launcher), by Cargo in a target folder of its own
/// (`target/deploy-check`), so the binary the other tests run is never replaced. Built on every
/// call, which is a no-op when nothing changed, so it is never stale; `scripts/test` builds it
/// before the tests so that the first test does not wait for it.
pub fn deployment_binary() -> anyhow::Result<PathBuf> {
    let target = aos_binary()
        .parent()
        .and_then(|profile| profile.parent())
        .map(PathBuf::from)
        .context("the target folder")?;
    let target_dir = target.join("deploy-check");
    let status = std::process::Command::new(env!("CARGO"))
        .args([
            "build",
            "--quiet",
            "-p",
            "altinn-aos",
            "--no-default-features",
            "--bin",
            "aos",
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        .current_dir(app_root())
        .status()
        .context("running cargo build for the deployment binary")?;
    if !status.success() {
        bail!("cargo build --no-default-features failed ({status})");
    }
    Ok(target_dir.join("debug/aos"))
}

/// The Functions host protocol fixtures: `fixtures/functions-host` in the repository (see
/// `fixtures/README.md` for their sources).
pub fn fixtures_dir() -> PathBuf {
    app_root().join("fixtures/functions-host")
}

/// Loads one JSON fixture from [`fixtures_dir`].
pub fn fixture(name: &str) -> anyhow::Result<serde_json::Value> {
    let path = fixtures_dir().join(name);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading fixture {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing fixture {}", path.display()))
}
