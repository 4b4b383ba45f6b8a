//! Holds: instances whose processing failed permanently, kept out of reconciliation and
//! catch-up (design §2.6, "terminal means terminal").
//!
//! A permanent failure (anomalous metadata, a `size` Altinn's bytes contradict, a refused
//! `complete`) never heals by itself. Without a hold, every reconcile run (each 15 minutes)
//! would queue the instance again — five attempts, new downloads and a new poison message,
//! forever. So a permanent failure of a step's last attempt (the message goes to poison) writes
//! `holds/{org}/{app}/{partyId}/{guid}.json` in `aos-state`, and reconciliation and catch-up
//! skip held instances until:
//! - an operator replays the instance's message (`aos poison replay` releases the hold), or
//! - the record is older than `PermanentFailureHoldDays` (default 7): a fixed Altinn-side
//!   problem is then picked up again without anyone remembering it.
//!
//! Pushed events are not held back: a new event is news (the instance may have been fixed),
//! and it is processed as usual. One listing of `holds/` per run finds every active hold, so
//! the check costs one request however many instances a run examines.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::archive::{Archive, ArchiveError, BlobInfo};
use crate::domain::{CloudEvent, InstanceRef};
use crate::redact::redact;

/// Where holds live in `aos-state`.
pub const HOLD_PREFIX: &str = "holds/";

/// What a hold records: which message failed how, and when.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HoldRecord {
    /// `{org}/{app}/instances/{partyId}/{guid}`.
    pub instance: String,
    pub queue: String,
    pub event_id: String,
    pub error: String,
    pub at: String,
}

/// The holds in `aos-state`.
#[derive(Clone)]
pub struct Holds {
    state: Archive,
}

/// The instances held at the time of one listing.
#[derive(Clone, Debug, Default)]
pub struct HeldInstances(HashSet<String>);

impl HeldInstances {
    pub fn contains(&self, instance: &InstanceRef) -> bool {
        self.0.contains(&blob_name(instance))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Holds {
    pub fn new(state: Archive) -> Self {
        Holds { state }
    }

    /// Holds `instance` after a permanent failure of `event` on `queue`. Best effort, like the
    /// failure record: a storage problem here must not hide the failure itself.
    pub async fn record(
        &self,
        instance: &InstanceRef,
        queue: &str,
        event: &CloudEvent,
        error: &str,
    ) {
        let record = HoldRecord {
            instance: instance.to_string(),
            queue: queue.to_string(),
            event_id: event.id().to_string(),
            error: redact(error).into_owned(),
            at: OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
        };
        let json = serde_json::to_vec(&record).expect("a hold record serialises");
        let info = BlobInfo {
            content_type: "application/json".into(),
            metadata: HashMap::new(),
        };
        if let Err(e) = self
            .state
            .put(&blob_name(instance), Bytes::from(json), &info)
            .await
        {
            tracing::warn!(instance = %instance, error = %e, "could not record the hold in aos-state");
        }
    }

    /// The instances held now: records younger than `max_age` (by the service's last-modified
    /// time; a skewed local clock shifts a hold's end by its skew, no more). Older records are
    /// deleted. A zero `max_age` holds nothing and costs no request.
    pub async fn active(&self, max_age: Duration) -> Result<HeldInstances, ArchiveError> {
        if max_age <= Duration::ZERO {
            return Ok(HeldInstances::default());
        }
        let cutoff = OffsetDateTime::now_utc() - max_age;
        let (active, expired): (Vec<_>, Vec<_>) = self
            .state
            .list(HOLD_PREFIX)
            .await?
            .into_iter()
            .partition(|(_, blob)| blob.last_modified.is_none_or(|at| at > cutoff));
        // Expired holds are removed as they are found, so `holds/` stays small (one listing
        // page) however long the system runs. Best effort: the next run tries again.
        for (name, _) in expired {
            if let Err(e) = self.state.delete(&name).await {
                tracing::debug!(hold = %name, error = %e, "could not remove an expired hold");
            }
        }
        Ok(HeldInstances(
            active.into_iter().map(|(name, _)| name).collect(),
        ))
    }

    /// Releases the hold on `instance` (an operator replays it); `false` when there was none.
    pub async fn release(&self, instance: &InstanceRef) -> Result<bool, ArchiveError> {
        self.state.delete(&blob_name(instance)).await
    }

    /// The hold on `instance`, if any.
    pub async fn get(&self, instance: &InstanceRef) -> Option<HoldRecord> {
        let bytes = self.state.read_small(&blob_name(instance)).await.ok()??;
        serde_json::from_slice(&bytes).ok()
    }
}

/// `holds/{org}/{app}/{partyId}/{guid}.json`: one per instance, from validated names only. The
/// party is part of the name: an event naming a real instance under another party fails (404)
/// and must not hold the real one.
fn blob_name(instance: &InstanceRef) -> String {
    let guid: &Uuid = &instance.instance_guid;
    format!(
        "{HOLD_PREFIX}{}/{}/{}/{guid}.json",
        instance.org.as_str(),
        instance.app.as_str(),
        instance.party_id.get()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::BaseUrl;

    #[test]
    fn one_hold_per_instance_under_its_own_prefix() {
        let apps = BaseUrl::parse("https://ttd.apps.tt02.altinn.no/").unwrap();
        let instance = InstanceRef::from_source(
            "https://ttd.apps.tt02.altinn.no/ttd/a1/instances/5/bd9edd59-b18c-4726-aa9e-6b150eade814",
            &apps,
        )
        .unwrap();
        assert_eq!(
            blob_name(&instance),
            "holds/ttd/a1/5/bd9edd59-b18c-4726-aa9e-6b150eade814.json"
        );
        let held = HeldInstances(HashSet::from([blob_name(&instance)]));
        assert!(held.contains(&instance));
        let other_party = InstanceRef::from_source(
            "https://ttd.apps.tt02.altinn.no/ttd/a1/instances/6/bd9edd59-b18c-4726-aa9e-6b150eade814",
            &apps,
        )
        .unwrap();
        assert!(
            !held.contains(&other_party),
            "another party's failure holds nothing here"
        );
    }
}
