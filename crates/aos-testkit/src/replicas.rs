//! What a soak with several replicas needs beyond the test world: more Functions hosts on the
//! same queues (the app scaled out), a crash or a stop of a host's handler process (which the
//! host then restarts), a skewed wall clock for a child process, and the archive container's
//! whole listing, uncommitted blobs included.
//!
//! Clock skew comes from libfaketime (`LD_PRELOAD`), the only way to move a process's wall
//! clock without root: the product reads the time from the system and has no clock input, so
//! without the library there is no skew (see [`clock_skew_env`]).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use azure_storage_blob::models::{BlobContainerClientListBlobsOptions, ListBlobsIncludeItem};
use futures::TryStreamExt;
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::host::{FunctionsHost, HostConfig, HttpCall};
use crate::poll_until;
use crate::world::{ARCHIVE_CONTAINER, Backends};

/// Where Debian and Ubuntu (`apt-get install libfaketime`) and a source build put the
/// multi-threaded libfaketime (the product runs many threads).
const FAKETIME_CANDIDATES: [&str; 4] = [
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
    "/usr/lib/faketime/libfaketimeMT.so.1",
    "/usr/local/lib/faketime/libfaketimeMT.so.1",
];

/// Names another libfaketime (a path), overriding [`FAKETIME_CANDIDATES`].
pub const FAKETIME_LIBRARY_ENV: &str = "AOS_FAKETIME_LIB";

/// The libfaketime this machine has, if any.
pub fn faketime_library() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(FAKETIME_LIBRARY_ENV) {
        return Some(PathBuf::from(path)).filter(|p| p.is_file());
    }
    FAKETIME_CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// The environment that runs a child process with its wall clock `offset_secs` away from the
/// machine's (monotonic time untouched, so timers and leases measured by the process itself
/// are not affected, as on a real machine whose clock is off). `None` when skew is asked for
/// and libfaketime is not installed; no offset needs nothing.
pub fn clock_skew_env(offset_secs: i64) -> Option<Vec<(String, String)>> {
    if offset_secs == 0 {
        return Some(Vec::new());
    }
    let library = faketime_library()?;
    Some(vec![
        ("LD_PRELOAD".into(), library.to_string_lossy().into_owned()),
        ("FAKETIME".into(), format!("{offset_secs:+}")),
        ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
    ])
}

/// The time stamp of the first log line that has one: the leading RFC 3339 stamp of a text
/// line, or the `timestamp` member of a JSON line (the handler under a host logs JSON).
pub fn first_log_time(lines: &[String]) -> Option<OffsetDateTime> {
    lines.iter().find_map(|line| {
        let stamp = match serde_json::from_str::<Value>(line) {
            Ok(value) => value["timestamp"].as_str()?.to_string(),
            Err(_) => line.split_whitespace().next()?.to_string(),
        };
        OffsetDateTime::parse(&stamp, &Rfc3339).ok()
    })
}

/// How far a process's clock is from the machine's, bounded from its first log line, which
/// was written between `started` and `ready` by the machine's clock: `(low, high)` in seconds.
pub fn clock_offset_bounds(
    lines: &[String],
    started: OffsetDateTime,
    ready: OffsetDateTime,
) -> Option<(f64, f64)> {
    let stamp = first_log_time(lines)?;
    Some((
        (stamp - ready).as_seconds_f64(),
        (stamp - started).as_seconds_f64(),
    ))
}

/// Another Functions host on `backends` (one more instance of the scaled-out app): its own
/// handler process, polling the same queues. Settings as [`crate::world::TestApp::spawn_with`]
/// gives them, plus `extra`.
pub async fn start_host(
    backends: &Backends,
    delay: Duration,
    extra: &[(String, String)],
) -> anyhow::Result<FunctionsHost> {
    let mut env = backends.settings_env();
    env.extend(extra.iter().cloned());
    FunctionsHost::start(HostConfig {
        app_root: crate::app_root(),
        binary: crate::aos_binary(),
        env,
        connection_string: backends.azurite.connection_string(),
        visibility_timeout: Some(delay),
    })
    .await
}

/// SIGKILLs the host's handler (its whole process group: nothing gets to clean up) and waits
/// until the host has started another. The host gives up after three handler failures in 30
/// minutes, as the real one does, so a host survives two of these.
pub async fn kill_handler(host: &FunctionsHost, timeout: Duration) -> anyhow::Result<()> {
    stop_handler(host, libc::SIGKILL, timeout).await
}

/// SIGTERMs the host's handler (a graceful stop: in-flight invocations finish) and waits until
/// the host has started another. Counts against the host's three failures like a crash.
pub async fn terminate_handler(host: &FunctionsHost, timeout: Duration) -> anyhow::Result<()> {
    stop_handler(host, libc::SIGTERM, timeout).await
}

async fn stop_handler(
    host: &FunctionsHost,
    signal: libc::c_int,
    timeout: Duration,
) -> anyhow::Result<()> {
    let pid = host
        .handler_pid()
        .context("no handler process is running")?;
    let before = host.restarts();
    let group = i32::try_from(pid).context("process id")?;
    // SAFETY: kill(2) of the process group the harness started the handler in (its id is the
    // handler's pid); no memory is involved.
    if unsafe { libc::kill(-group, signal) } != 0 {
        bail!(
            "signalling the handler {pid}: {}",
            std::io::Error::last_os_error()
        );
    }
    poll_until(
        "the host to restart its handler",
        timeout,
        Duration::from_millis(25),
        || async {
            Ok(
                (host.restarts() > before && host.handler_pid().is_some_and(|p| p != pid))
                    .then_some(()),
            )
        },
    )
    .await
}

/// POSTs a CloudEvent to `host`'s webhook as Altinn does; the status, or an error when the
/// host could not reach its handler (e.g. it was just killed).
pub async fn post_event_via(host: &FunctionsHost, event: &Value) -> anyhow::Result<(u16, String)> {
    let call = HttpCall {
        method: "POST".into(),
        query: vec![("code".into(), "test-function-key".into())],
        headers: vec![(
            "Content-Type".into(),
            "application/json; charset=utf-8".into(),
        )],
        body: event.to_string().into_bytes(),
    };
    let outcome = host.invoke_http("EventsReceiver", call).await?;
    Ok((outcome.status, outcome.text()))
}

/// Every blob name in the archive container, blobs with only uncommitted blocks (an upload cut
/// off before its block list) included, read from Azurite directly.
pub async fn archive_blob_names(backends: &Backends) -> anyhow::Result<Vec<String>> {
    let container = backends.blobs.container(ARCHIVE_CONTAINER)?;
    let options = BlobContainerClientListBlobsOptions {
        include: Some(vec![ListBlobsIncludeItem::UncommittedBlobs]),
        ..Default::default()
    };
    let mut pages = container.list_blobs(Some(options))?.into_pages();
    let mut names = Vec::new();
    while let Some(page) = pages
        .try_next()
        .await
        .context("listing the archive container")?
    {
        names.extend(
            page.into_model()?
                .blob_items
                .into_iter()
                .filter_map(|b| b.name),
        );
    }
    Ok(names)
}
