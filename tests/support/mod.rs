//! Test support shared by the integration tests: a fake Azure Functions host that speaks the
//! custom-handler protocol (`host.rs`, built on the pure payload code in `invocation.rs` and the
//! app configuration reader in `app.rs`) and an Azurite storage emulator started per test
//! (`azurite.rs`).
//!
//! Each integration test file compiles this module tree separately and uses only part of it,
//! hence the blanket `dead_code` allowance.
#![allow(dead_code)]

pub mod app;
pub mod azurite;
pub mod blobs;
pub mod cli;
pub mod host;
pub mod invocation;
pub mod process;
pub mod queue;
pub mod standalone;
pub mod world;

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// The crate root, which is also the function app root (it holds `host.json`).
pub fn app_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A loopback port that was free a moment ago.
///
/// Binding port 0 lets the kernel choose; the listener is dropped so the process under test can
/// bind it. Another process could grab it in between — acceptable for tests, and far better
/// than fixed ports that collide when tests run in parallel.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .context("binding 127.0.0.1:0 to find a free port")?;
    Ok(listener.local_addr()?.port())
}

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

/// Where the shared protocol fixtures live: `$AOS_SHARED_DIR/fixtures/functions-host`, or the
/// `shared/` folder next to the repository (the layout of the workplace and of CI).
pub fn fixtures_dir() -> PathBuf {
    let shared = std::env::var_os("AOS_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| app_root().join("../shared"));
    shared.join("fixtures/functions-host")
}

/// Loads one JSON fixture from [`fixtures_dir`].
pub fn fixture(name: &str) -> anyhow::Result<serde_json::Value> {
    let path = fixtures_dir().join(name);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "reading fixture {} (set AOS_SHARED_DIR to the shared/ folder)",
            path.display()
        )
    })?;
    serde_json::from_str(&text).with_context(|| format!("parsing fixture {}", path.display()))
}
