//! Process: archive one instance — its JSON and every data element — then write the manifest.
//!
//! One instance read and one listing of the instance's folder decide everything
//! ([`super::freshness`]): an instance archived as it is now is recognised with those two
//! requests — and, when this org has already confirmed it, as done, without passing anything
//! on; otherwise only the elements without a current copy (missing, short, or another version
//! of the same length) are downloaded, then the instance JSON and the manifest are written.
//! Elements are archived concurrently up to [`ELEMENT_CONCURRENCY`] per instance.
//!
//! Events made by reconciliation or catch-up ([`CloudEvent::is_synthetic`]) are requests to
//! look, not announcements of new data: an instance this org has already confirmed is done
//! for them, whatever this archive holds (design §2.6), and nothing is downloaded.

use std::collections::HashMap;

use anyhow::anyhow;
use futures::StreamExt;
use time::format_description::well_known::Rfc3339;

use crate::archive::{
    BlobInfo, InstanceListing, InstancePaths, Manifest, ManifestElement, ascii_metadata_value, meta,
};
use crate::config::DEFAULT_EVENT_TYPE;
use crate::domain::{CloudEvent, InstanceRef};

use super::Pipeline;
use super::error::StepError;
use super::freshness::{
    Current, archived, blob_name, element_current, elements_fingerprint, hashes_fingerprint,
};
use super::identity::{CheckedElement, Scan};

/// Data elements of one instance downloaded at the same time.
pub const ELEMENT_CONCURRENCY: usize = 4;

#[derive(Debug, PartialEq)]
pub enum ProcessOutcome {
    /// Archived (or found archived): pass the event on to confirmation.
    Archived {
        instance: InstanceRef,
        elements: usize,
        bytes_written: u64,
        already_archived: bool,
    },
    /// Archived and confirmed before (a duplicate event, recognised with one instance read and
    /// one listing), or confirmed by the org and asked about by reconciliation or catch-up:
    /// nothing is passed on.
    AlreadyDone { instance: InstanceRef },
    /// Nothing to do for this event (validation ping, type not processed).
    Skipped { reason: String },
}

impl Pipeline {
    pub async fn process(&self, event: &CloudEvent) -> Result<ProcessOutcome, StepError> {
        if event.is_validation_ping() || !self.archives_event(event) {
            return Ok(ProcessOutcome::Skipped {
                reason: format!("event type `{}` is not processed", event.event_type()),
            });
        }
        let instance = event.instance(&self.settings.apps_base_url)?;
        let (fetched, elements) = self.read_checked(&instance).await?;
        let confirmed = fetched.instance.confirmed_by(instance.org.as_str());
        if confirmed && event.is_synthetic() {
            return Ok(ProcessOutcome::AlreadyDone { instance });
        }
        if let Some(pending) = elements.iter().find(|e| e.scan == Scan::Pending) {
            return Err(StepError::retry(anyhow!(
                "data element {} of {instance} is waiting for its virus scan",
                pending.id
            )));
        }

        tracing::debug!(instance = %instance, elements = elements.len(), "instance read");
        let paths = InstancePaths::new(&instance);
        let listing = self.archive.list_instance(&paths).await?;
        let ignored = self.feedback_data_type();
        let current = Current {
            elements: &elements,
            process_ended: fetched.instance.process_ended_at(),
            ignored,
        };
        match archived(&listing, &paths, current) {
            Ok(()) if confirmed => return Ok(ProcessOutcome::AlreadyDone { instance }),
            Ok(()) => {
                return Ok(ProcessOutcome::Archived {
                    elements: elements.len(),
                    instance,
                    bytes_written: 0,
                    already_archived: true,
                });
            }
            Err(reason) if !listing.is_empty() => {
                tracing::debug!(instance = %instance, reason, "archive is not current; archiving");
            }
            Err(_) => {}
        }

        let instance_id = instance.instance_id();
        // Every element runs to its end even when another fails, so whatever could be stored is
        // stored and a retry downloads only what is missing; then the first error is reported.
        let uploads: Vec<_> = elements
            .iter()
            .map(|element| self.archive_element(&instance, &paths, &listing, element, &instance_id))
            .collect();
        let results: Vec<Result<ArchivedElement, StepError>> = futures::stream::iter(uploads)
            .buffer_unordered(ELEMENT_CONCURRENCY)
            .collect()
            .await;
        let mut bytes_written = 0u64;
        let mut sha256s = HashMap::new();
        for result in results {
            let element = result?;
            bytes_written += element.bytes_written;
            sha256s.insert(element.id, element.sha256);
        }

        let mut json_info = BlobInfo {
            content_type: "application/json".into(),
            metadata: HashMap::from([(meta::INSTANCE_ID.to_string(), instance_id.clone())]),
        };
        if let Some(ended) = fetched.instance.process_ended_at() {
            json_info
                .metadata
                .insert(meta::PROCESS_ENDED.to_string(), ascii_metadata_value(ended));
        }
        self.archive
            .put(&paths.instance_json(), fetched.raw.clone(), &json_info)
            .await?;

        let manifest = Manifest {
            instance_id,
            app_id: instance.app_id(),
            last_changed: fetched.instance.last_changed.clone(),
            archived_at: time::OffsetDateTime::now_utc()
                .format(&Rfc3339)
                .unwrap_or_default(),
            instance_blob: paths.instance_json(),
            elements: elements
                .iter()
                .map(|e| manifest_element(&paths, e, sha256s.remove(&e.id).unwrap_or_default()))
                .collect(),
        };
        let recorded: HashMap<_, _> = manifest
            .elements
            .iter()
            .map(|m| (m.id, m.sha256.as_str()))
            .collect();
        let hashes = hashes_fingerprint(&elements, ignored, |e| {
            recorded.get(&e.id).copied().unwrap_or_default()
        });
        self.archive
            .write_manifest(
                &paths,
                &manifest,
                &elements_fingerprint(&elements, ignored),
                &hashes,
            )
            .await?;
        Ok(ProcessOutcome::Archived {
            elements: elements.len(),
            instance,
            bytes_written,
            already_archived: false,
        })
    }

    /// Whether this step archives `event`: a type in `EventTypes`, or an event reconciliation
    /// made. Reconciliation's events always have the completed type, whatever `EventTypes`
    /// holds: finding completed instances is what it is for.
    fn archives_event(&self, event: &CloudEvent) -> bool {
        self.settings.processes_event_type(event.event_type())
            || (event.is_reconciled() && event.event_type() == DEFAULT_EVENT_TYPE)
    }

    /// Stores one element unless the listing shows a current copy of it; says what is stored.
    async fn archive_element(
        &self,
        instance: &InstanceRef,
        paths: &InstancePaths,
        listing: &InstanceListing,
        element: &CheckedElement,
        instance_id: &str,
    ) -> Result<ArchivedElement, StepError> {
        let blob_name = blob_name(paths, element);
        if element_current(listing, paths, element).is_ok() {
            tracing::debug!(instance = %instance, element = %element.id, "element already stored");
            let sha256 = listing
                .get(&blob_name)
                .and_then(|b| b.sha256())
                .unwrap_or_default()
                .to_string();
            return Ok(ArchivedElement {
                id: element.id,
                bytes_written: 0,
                sha256,
            });
        }
        // Buffer memory first: a waiting element must not hold an open download.
        let buffers = self.archive.reserve_buffers(element.size).await;
        tracing::debug!(instance = %instance, element = %element.id, size = element.size, "downloading element");
        let response = self.altinn.open_data(instance, element.id).await?;
        if let Some(length) = response.content_length()
            && length != element.size
        {
            return Err(StepError::permanent(anyhow!(
                "data element {} of {instance}: Altinn sent Content-Length {length}, the instance says size {}",
                element.id,
                element.size
            )));
        }
        let mut metadata = HashMap::from([
            (
                meta::DATA_TYPE.to_string(),
                ascii_metadata_value(&element.data_type),
            ),
            (meta::SIZE.to_string(), element.size.to_string()),
            (meta::INSTANCE_ID.to_string(), instance_id.to_string()),
        ]);
        if let Some(filename) = &element.filename {
            metadata.insert(meta::FILENAME.to_string(), ascii_metadata_value(filename));
        }
        if let Some(changed) = &element.last_changed {
            metadata.insert(
                meta::LAST_CHANGED.to_string(),
                ascii_metadata_value(changed),
            );
        }
        if let Some(hash) = &element.content_hash {
            metadata.insert(meta::CONTENT_HASH.to_string(), ascii_metadata_value(hash));
        }
        let info = BlobInfo {
            content_type: element.content_type.clone(),
            metadata,
        };
        let stored = self
            .archive
            .upload_stream(
                &blob_name,
                response.bytes_stream(),
                element.size,
                &info,
                buffers,
            )
            .await?;
        Ok(ArchivedElement {
            id: element.id,
            bytes_written: stored.bytes,
            sha256: stored.sha256,
        })
    }
}

/// One element as the manifest records it: stored now or found current.
struct ArchivedElement {
    id: uuid::Uuid,
    bytes_written: u64,
    sha256: String,
}

fn manifest_element(
    paths: &InstancePaths,
    element: &CheckedElement,
    sha256: String,
) -> ManifestElement {
    ManifestElement {
        id: element.id,
        data_type: element.data_type.clone(),
        size: element.size,
        content_type: element.content_type.clone(),
        blob_name: blob_name(paths, element),
        filename: element.filename.clone(),
        quarantined: element.scan == Scan::Infected,
        hard_deleted: element.hard_deleted,
        last_changed: element.last_changed.clone(),
        content_hash: element.content_hash.clone(),
        sha256,
    }
}
