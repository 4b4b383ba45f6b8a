//! The storage side of `aos status`: containers, queues, and what `aos-state` records.
//!
//! The archive's write probe is one blob, `aos-status-probe-<uuid>` at the container's root,
//! written and deleted at once. Instance folders are always `{org}/{app}/{guid}/…`, so a
//! root-level name can never meet an archive; a downstream Event Grid subscription on the
//! archive sees the probe's create and delete events (filter on the subject `…/blobs/aos-status-probe-`
//! if that matters). Nothing else is written; expired holds are counted, not deleted.

use std::collections::HashMap;
use std::future::Future;

use bytes::Bytes;
use time::OffsetDateTime;

use super::CHECK_TIMEOUT;
use super::report::{ContainerCheck, CursorStatus, FailureSummary, QueueDepth, StoragePart};
use crate::archive::{Archive, BlobInfo};
use crate::config::{SettingsError, StorageSettings};
use crate::failures::{FailureRecord, STATE_CONTAINER};
use crate::holds::HOLD_PREFIX;
use crate::pipeline::catchup::CURSOR_PREFIX;
use crate::pipeline::reconcile::LAST_RUN_BLOB;
use crate::poison::BLOB_TRIGGER_POISON;
use crate::queue::{QueueAccount, poison_queue_name};
use crate::redact::Redacted;
use crate::storage::StorageEndpoint;

/// How far back failure records count as recent.
const FAILURE_WINDOW_HOURS: u32 = 24;
/// Failure records read at most (the newest first); the rest are counted, not read.
const FAILURE_RECORDS_READ: usize = 200;

/// Runs `check` within [`CHECK_TIMEOUT`]; its error (or the timeout) as a short redacted text.
async fn bounded<T, E>(check: impl Future<Output = Result<T, E>>) -> Result<T, String>
where
    E: Into<anyhow::Error>,
{
    match tokio::time::timeout(CHECK_TIMEOUT, check).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(Redacted(e.into()).to_string()),
        Err(_) => Err(format!("no answer within {} s", CHECK_TIMEOUT.as_secs())),
    }
}

/// Everything storage shows. A settings problem (a malformed endpoint) is the only error;
/// anything storage answers, or fails to, is in the report.
pub(super) async fn gather(settings: &StorageSettings) -> Result<StoragePart, SettingsError> {
    let blobs = StorageEndpoint::for_blobs(&settings.blob)?;
    let account = QueueAccount::from_settings(&settings.queues, "`aos status`")?;
    let archive = Archive::new(blobs.clone(), settings.blob.container.clone());
    let state = Archive::new(blobs, STATE_CONTAINER);
    let (archive_check, queues, state_part) = tokio::join!(
        check_archive(&archive),
        queue_depths(settings, &account),
        read_state(&state)
    );
    let (state_check, failures, holds, reconcile, catch_up) = state_part;
    Ok(StoragePart {
        archive: archive_check,
        state: state_check,
        queues,
        failures,
        holds,
        reconcile,
        catch_up,
    })
}

/// Reachable (the container's properties), then writable (the probe blob, deleted at once).
async fn check_archive(archive: &Archive) -> ContainerCheck {
    let mut check = ContainerCheck {
        container: archive.container_name().to_string(),
        ..Default::default()
    };
    if let Err(e) = bounded(archive.probe()).await {
        check.error = Some(e);
        check.writable = Some(false);
        return check;
    }
    check.reachable = true;
    let probe = format!("aos-status-probe-{}", uuid::Uuid::new_v4());
    let info = BlobInfo {
        content_type: "text/plain".into(),
        metadata: HashMap::new(),
    };
    let written = bounded(archive.put(&probe, Bytes::from_static(b"aos status"), &info)).await;
    match written {
        Ok(()) => {
            check.writable = Some(true);
            if let Err(e) = bounded(archive.delete(&probe)).await {
                tracing::warn!(blob = %probe, error = %e, "status: the write probe could not be deleted");
            }
        }
        Err(e) => {
            check.writable = Some(false);
            check.error = Some(e);
        }
    }
    check
}

/// Every queue the product or the host uses: the step queues, their poison queues, the
/// hand-off queue when configured, and the host's blob-trigger poison queue.
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
        {
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
        }
    };
    futures::future::join_all(wanted.into_iter().map(|(name, poison)| depth(name, poison))).await
}

type StateFindings = (
    ContainerCheck,
    FailureSummary,
    Option<u64>,
    Option<serde_json::Value>,
    Vec<CursorStatus>,
);

/// What `aos-state` holds: recent failures, holds, the reconciler's last run, the cursors.
async fn read_state(state: &Archive) -> StateFindings {
    let mut check = ContainerCheck {
        container: state.container_name().to_string(),
        ..Default::default()
    };
    let failures = bounded(recent_failures(state)).await;
    let (failures, holds, reconcile, cursors) = match failures {
        Err(e) => {
            check.error = Some(e);
            let empty = FailureSummary {
                hours: FAILURE_WINDOW_HOURS,
                ..Default::default()
            };
            return (check, empty, None, None, Vec::new());
        }
        Ok(failures) => {
            let (holds, reconcile, cursors) = tokio::join!(
                bounded(state.list(HOLD_PREFIX)),
                bounded(state.read_small(LAST_RUN_BLOB)),
                bounded(cursors(state)),
            );
            (failures, holds, reconcile, cursors)
        }
    };
    check.reachable = true;
    let reconcile = reconcile
        .ok()
        .flatten()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok());
    (
        check,
        failures,
        holds.ok().map(|h| h.len() as u64),
        reconcile,
        cursors.unwrap_or_default(),
    )
}

/// Failure records written in the window, by queue and kind; the newest
/// [`FAILURE_RECORDS_READ`] are read (a record is one event's last failure).
async fn recent_failures(state: &Archive) -> Result<FailureSummary, crate::archive::ArchiveError> {
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
        let Some(record) = record
            .ok()
            .flatten()
            .and_then(|bytes| serde_json::from_slice::<FailureRecord>(&bytes).ok())
        else {
            continue;
        };
        if record.kind == "permanent" {
            summary.permanent += 1;
        }
        *summary
            .by_kind
            .entry(format!("{} {}", record.queue, record.kind))
            .or_default() += 1;
    }
    Ok(summary)
}

/// Each app's catch-up cursor (`events-cursor/{org}/{app}.json`).
async fn cursors(state: &Archive) -> Result<Vec<CursorStatus>, crate::archive::ArchiveError> {
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
            .and_then(|b| serde_json::from_slice::<crate::pipeline::catchup::Cursor>(&b).ok());
        found.push(CursorStatus {
            app,
            after: cursor.as_ref().map(|c| c.after.clone()),
            updated: cursor.and_then(|c| c.updated),
        });
    }
    Ok(found)
}
