//! The storage side of `aos status`: containers, queues, and what `aos-state` records.
//!
//! Nothing is written: the archive's write probe stages one block and never commits it
//! ([`Archive::probe_write`]), so no blob appears, no `BlobCreated` event fires and an
//! immutability policy never sees it; a missing container is reported, never created (the
//! first archive creates it, as the product does on its first write). A part
//! that cannot be read in time is "unknown" with its reason, not "unreachable": a slow listing
//! of a large `aos-state` says nothing about whether storage works.

use time::OffsetDateTime;

use super::bounded;
use super::report::{
    ContainerCheck, CursorStatus, FailureSummary, QueueDepth, StoragePart, Unknown,
};
use crate::archive::{Archive, ArchiveError};
use crate::config::{SettingsError, StorageSettings};
use crate::domain::Printable;
use crate::failures::{FailureRecord, STATE_CONTAINER};
use crate::holds::HOLD_PREFIX;
use crate::pipeline::catchup::{CURSOR_PREFIX, Cursor};
use crate::pipeline::reconcile::{LAST_RUN_BLOB, LastRun};
use crate::poison::BLOB_TRIGGER_POISON;
use crate::queue::{QueueAccount, poison_queue_name};
use crate::redact::Redacted;
use crate::storage::StorageEndpoint;

/// How far back failure records count as recent.
const FAILURE_WINDOW_HOURS: u32 = 24;
/// Failure records read at most (the newest first); the rest are counted, not read.
const FAILURE_RECORDS_READ: usize = 200;
/// The name the write probe stages its block under (never committed).
const PROBE_BLOB: &str = "aos-status-probe";

/// Everything storage shows. A settings problem (a malformed endpoint, no queue connection) is
/// the only error; anything storage answers, or fails to, is in the report.
pub(super) async fn gather(settings: &StorageSettings) -> Result<StoragePart, SettingsError> {
    let blobs = StorageEndpoint::for_blobs(&settings.blob)?;
    let account = QueueAccount::from_settings(&settings.queues, "`aos status`")?;
    let archive = Archive::new(blobs.clone(), settings.blob.container.clone());
    let state = Archive::new(blobs, STATE_CONTAINER);
    let (archive_check, queues, state_part) = tokio::join!(
        check_archive(&archive),
        queue_depths(settings, &account),
        read_state(&state, settings.failure_hold)
    );
    Ok(StoragePart {
        archive: archive_check,
        queues,
        ..state_part
    })
}

/// Reachable and existing (the container's properties), then writable (the probe).
async fn check_archive(archive: &Archive) -> ContainerCheck {
    let mut check = ContainerCheck {
        container: archive.container_name().to_string(),
        ..Default::default()
    };
    match bounded(archive.container_exists()).await {
        Err(e) => {
            check.error = Some(e);
            return check;
        }
        Ok(exists) => {
            check.reachable = true;
            check.exists = exists;
        }
    }
    if !check.exists {
        return check;
    }
    match bounded(archive.probe_write(PROBE_BLOB)).await {
        Ok(()) => check.writable = Some(true),
        Err(e) => {
            check.writable = Some(false);
            check.error = Some(e);
        }
    }
    check
}

/// Every queue the product or the host uses: the step queues, their poison queues, the
/// hand-off queue when configured, and the host's blob-trigger poison queue. A queue not
/// created yet has no messages (the service's answer for it is "not found").
async fn queue_depths(settings: &StorageSettings, account: &QueueAccount) -> Vec<QueueDepth> {
    let names = &settings.queues;
    let mut wanted: Vec<(String, bool)> = Vec::new();
    for step in [&names.inbound, &names.confirmation, &names.feedback] {
        wanted.push((step.clone(), false));
        wanted.push((poison_queue_name(step), true));
    }
    if let Some(archived) = &names.archived {
        wanted.push((archived.clone(), false));
    }
    wanted.push((BLOB_TRIGGER_POISON.to_string(), true));

    let depth = |name: String, poison: bool| async move {
        let count = match account.queue(&name) {
            Ok(queue) => bounded(queue.approximate_count()).await,
            Err(e) => Err(Redacted(anyhow::Error::from(e)).to_string()),
        };
        let (messages, error) = match count {
            Ok(n) => (Some(n), None),
            Err(e) => (None, Some(e)),
        };
        QueueDepth {
            name,
            poison,
            messages,
            error,
        }
    };
    futures::future::join_all(wanted.into_iter().map(|(name, poison)| depth(name, poison))).await
}

/// What `aos-state` holds: recent failures, holds in force, the reconciler's last run, the
/// cursors. Each read on its own bound; one that fails is listed as unknown.
async fn read_state(state: &Archive, hold: time::Duration) -> StoragePart {
    let mut part = StoragePart {
        state: ContainerCheck {
            container: state.container_name().to_string(),
            ..Default::default()
        },
        ..Default::default()
    };
    match bounded(state.container_exists()).await {
        Err(e) => {
            part.state.error = Some(e);
            return part;
        }
        Ok(exists) => {
            part.state.reachable = true;
            // Created with the first record; until then there is nothing to read.
            part.state.exists = exists;
            if !exists {
                part.failures = Some(FailureSummary {
                    hours: FAILURE_WINDOW_HOURS,
                    ..Default::default()
                });
                part.holds = Some(0);
                return part;
            }
        }
    }
    let (failures, holds, last_run, cursors) = tokio::join!(
        bounded(recent_failures(state)),
        bounded(holds_in_force(state, hold)),
        bounded(state.read_small(LAST_RUN_BLOB)),
        bounded(cursors(state)),
    );
    let mut unknown = |what: &'static str, why: String| {
        part.unknown.push(Unknown {
            what: what.into(),
            why,
        })
    };
    match failures {
        Ok(f) => part.failures = Some(f),
        Err(e) => unknown("failure records", e),
    }
    match holds {
        Ok(n) => part.holds = Some(n),
        Err(e) => unknown("holds", e),
    }
    match last_run {
        Ok(None) => {}
        Ok(Some(bytes)) => match serde_json::from_slice::<LastRun>(bytes.as_ref()) {
            Ok(run) => part.last_reconcile = Some(run),
            Err(e) => unknown(
                "the reconciler's last run",
                format!("unreadable record: {e}"),
            ),
        },
        Err(e) => unknown("the reconciler's last run", e),
    }
    match cursors {
        Ok(c) => part.catch_up = c,
        Err(e) => unknown("the catch-up cursors", e),
    }
    part
}

/// Failure records written in the window, by queue and kind; the newest
/// [`FAILURE_RECORDS_READ`] are read (a record is one event's last failure), the rest counted.
async fn recent_failures(state: &Archive) -> Result<FailureSummary, ArchiveError> {
    let cutoff = OffsetDateTime::now_utc() - time::Duration::hours(FAILURE_WINDOW_HOURS.into());
    let mut recent: Vec<_> = state
        .list("failures/")
        .await?
        .into_iter()
        .filter(|(_, blob)| blob.last_modified.is_some_and(|at| at > cutoff))
        .collect();
    recent.sort_by_key(|(_, blob)| std::cmp::Reverse(blob.last_modified));
    let mut summary = FailureSummary {
        hours: FAILURE_WINDOW_HOURS,
        recent: recent.len() as u64,
        ..Default::default()
    };
    let reads = recent
        .iter()
        .take(FAILURE_RECORDS_READ)
        .map(|(name, _)| state.read_small(name));
    for record in futures::future::join_all(reads).await {
        summary.read += 1;
        let Some(record) = record
            .ok()
            .flatten()
            .and_then(|bytes| serde_json::from_slice::<FailureRecord>(&bytes).ok())
        else {
            summary.unreadable += 1;
            continue;
        };
        *summary
            .by_kind
            .entry(format!(
                "{} {}",
                Printable(&record.queue),
                Printable(&record.kind)
            ))
            .or_default() += 1;
    }
    Ok(summary)
}

/// Holds younger than `PermanentFailureHoldDays` (older ones no longer hold anything; the next
/// reconcile run deletes them).
async fn holds_in_force(state: &Archive, hold: time::Duration) -> Result<u64, ArchiveError> {
    let cutoff = OffsetDateTime::now_utc() - hold;
    Ok(state
        .list(HOLD_PREFIX)
        .await?
        .iter()
        .filter(|(_, blob)| blob.last_modified.is_none_or(|at| at > cutoff))
        .count() as u64)
}

/// Each app's catch-up cursor (`events-cursor/{org}/{app}.json`).
async fn cursors(state: &Archive) -> Result<Vec<CursorStatus>, ArchiveError> {
    let mut found = Vec::new();
    for (name, _) in state.list(&format!("{CURSOR_PREFIX}/")).await? {
        let app = name
            .trim_start_matches(CURSOR_PREFIX)
            .trim_start_matches('/')
            .trim_end_matches(".json")
            .to_string();
        let cursor = state
            .read_small(&name)
            .await?
            .and_then(|b| serde_json::from_slice::<Cursor>(&b).ok());
        found.push(CursorStatus {
            app,
            after: cursor.as_ref().map(|c| c.after.clone()),
            updated: cursor.and_then(|c| c.updated),
        });
    }
    Ok(found)
}
